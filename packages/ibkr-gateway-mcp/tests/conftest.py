from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any, cast

import pytest
from ibkr_gateway_core.config import GatewayConfig
from ibkr_gateway_core.gateway import Gateway
from ibkr_gateway_mcp.stdio import stdio_principal
from mcp.types import CallToolResult

GatewayFactory = Callable[[Iterable[str]], Awaitable[Gateway]]


def make_config(state_dir: Path, scopes: Iterable[str] = ("read_only",)) -> GatewayConfig:
    """The simulator-backed config with these `auth.enabled_scopes`."""
    return GatewayConfig.from_mapping(
        {"auth": {"enabled_scopes": list(scopes)}, "state": {"directory": str(state_dir)}}
    )


def structured(result: CallToolResult) -> dict[str, Any]:
    """The structured content of a result, which this server always makes a JSON object."""
    content = result.structured_content
    assert isinstance(content, dict), result
    return cast(dict[str, Any], content)


def schema_accepts(schema: dict[str, Any], instance: Any) -> bool:
    """True when `instance` is valid under the JSON schema (draft 2020-12, as MCP hosts check it)."""
    from jsonschema import Draft202012Validator

    validator: Any = Draft202012Validator(schema)  # jsonschema's own annotations are partial
    return bool(validator.is_valid(instance))


@pytest.fixture(params=["auto", "legacy"])
def mode(request: pytest.FixtureRequest) -> str:
    """Both protocol eras: `auto` negotiates 2026-07-28, `legacy` the 2025-11-25 handshake."""
    return request.param


@pytest.fixture
async def gateways(tmp_path: Path) -> AsyncIterator[GatewayFactory]:
    """Opens simulator-backed gateways whose default caller is the stdio agent with the given scopes."""
    async with AsyncExitStack() as stack:

        async def open_gateway(scopes: Iterable[str]) -> Gateway:
            config = make_config(tmp_path / "state", scopes)
            return await stack.enter_async_context(Gateway.from_config(config, principal=stdio_principal(config)))

        yield open_gateway


@pytest.fixture
async def gateway(gateways: GatewayFactory) -> Gateway:
    """A gateway for the stdio agent with the default (read-only) tier."""
    return await gateways(["read_only"])
