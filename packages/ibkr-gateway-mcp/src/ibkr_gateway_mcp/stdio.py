"""The stdio transport: `run_stdio` serves one local agent; `describe` says what it would serve.

Over stdio the caller is one local agent (`local_agent`, subject `stdio`) holding the scopes of the
config's `auth.enabled_scopes`. stdout carries protocol bytes only: the SDK's transport claims the
descriptor and diverts stray writes to stderr, and logging goes to stderr.

This module imports the MCP SDK only inside `run_stdio`, so `describe` stays cheap for the CLI.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, Final

from ibkr_gateway_core.config import GatewayConfig
from ibkr_gateway_core.errors import ErrorCode, GatewayError
from ibkr_gateway_core.principal import Principal

from .catalog import SERVER_NAME, visible_tools

TRANSPORTS: Final = ("stdio",)
"""Transports this version serves."""

STDIO_SUBJECT: Final = "stdio"
"""Subject of the local agent on the other end of stdio, as the audit log records it."""

LOG_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def stdio_principal(config: GatewayConfig) -> Principal:
    """The caller over stdio: a local agent holding the config's enabled scopes."""
    return Principal(kind="local_agent", subject=STDIO_SUBJECT, scopes=config.auth.scopes())


def describe(config: GatewayConfig, transport: str) -> dict[str, Any]:
    """What `run_stdio` would serve with `config`, without opening anything.

    Raises:
        GatewayError: `INPUT_INVALID_ARGUMENT` for a transport this version does not serve.
    """
    if transport not in TRANSPORTS:
        raise GatewayError(
            ErrorCode.INPUT_INVALID_ARGUMENT,
            f"Transport {transport!r} is not available; this version serves {', '.join(TRANSPORTS)}.",
        )
    # `mcp_types` is the wire-types distribution `mcp` pins exactly (`mcp.types` aliases it);
    # importing it directly spares `--describe` loading the whole SDK.
    from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, LATEST_PROTOCOL_VERSION, MODERN_PROTOCOL_VERSIONS

    principal = stdio_principal(config)
    tools = visible_tools(principal.scopes)
    return {
        "transport": transport,
        "server": SERVER_NAME,
        "protocol_versions": [*HANDSHAKE_PROTOCOL_VERSIONS, *MODERN_PROTOCOL_VERSIONS],
        "latest_protocol_version": LATEST_PROTOCOL_VERSION,
        "backend": config.broker.backend,
        "principal": {"kind": principal.kind, "subject": principal.subject},
        "scopes": sorted(scope.value for scope in principal.scopes),
        "tool_count": len(tools),
        "tools": tools,
        "status": f"local MCP {transport} server ready with {len(tools)} scope-filtered tools",
    }


def run_stdio(config: GatewayConfig) -> None:
    """Serve MCP over stdin/stdout until the client closes stdin.

    Raises:
        GatewayError: `CONFIG_*` when the gateway cannot be opened (audit key, state directory).
    """
    import anyio

    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format=LOG_FORMAT)
    from ibkr_gateway_core.observability import start_server_telemetry

    start_server_telemetry(config.observability)
    anyio.run(serve_stdio, config)


async def serve_stdio(config: GatewayConfig) -> None:
    """`run_stdio` inside a running event loop; a real gateway's session is kept alive meanwhile."""
    from ibkr_gateway_core.gateway import Gateway
    from ibkr_gateway_core.orders.reconciler import reconcile_in_background
    from ibkr_gateway_cpapi.supervisor import supervise_session

    from .server import build_server

    async with Gateway.from_config(config, principal=stdio_principal(config)) as gateway:
        async with supervise_session(gateway.backend, config.broker), reconcile_in_background(gateway):
            await build_server(gateway).run_stdio_async()
