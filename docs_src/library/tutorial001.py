import asyncio

from ibkr_gateway_core import Gateway, GatewayConfig


async def main() -> None:
    async with Gateway.from_config(GatewayConfig.fake_local()) as gateway:
        # Reads are typed methods of the gateway itself.
        pnl = await gateway.pnl_daily("DU1234567")
        chain = await gateway.options_chain("AAPL", strike_count=2, right="call")
        print(f"pnl_available={pnl.available} options={len(chain.options)}")

        # Writes name who acts: here the operator, with the CLI's --enable-preview.
        operator = gateway.as_operator(enable_preview=True)
        preview = await operator.preview_order("DU1234567", side="buy", quantity="1", symbol="AAPL", limit_price="200")
        print(f"preview={preview.ticket.symbol} {preview.ticket.quantity} @ {preview.ticket.limit_price}")


asyncio.run(main())
