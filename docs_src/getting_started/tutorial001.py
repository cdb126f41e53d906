import asyncio
from ibkr_gateway_core import Gateway, GatewayConfig


async def main() -> None:
    async with Gateway.from_config(GatewayConfig.fake_local()) as gateway:
        accounts = await gateway.list_accounts()
        print(f"visible_accounts={len(accounts)}")


asyncio.run(main())
