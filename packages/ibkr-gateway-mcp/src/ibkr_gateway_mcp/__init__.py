"""MCP server of ibkr-agent-gateway: every gateway operation as a scoped, typed, audited tool.

Names load lazily, so importing `ibkr_gateway_mcp.stdio` for `describe` does not load the MCP SDK.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .catalog import CAPABILITIES_TOOL, visible_tools
    from .server import INSTRUCTIONS, GatewayMCPServer, build_server, error_result
    from .stdio import describe, run_stdio, stdio_principal

__all__ = [
    "CAPABILITIES_TOOL",
    "GatewayMCPServer",
    "INSTRUCTIONS",
    "build_server",
    "describe",
    "error_result",
    "run_stdio",
    "stdio_principal",
    "visible_tools",
]

_HOMES = {
    "CAPABILITIES_TOOL": "catalog",
    "INSTRUCTIONS": "server",
    "GatewayMCPServer": "server",
    "build_server": "server",
    "describe": "stdio",
    "error_result": "server",
    "run_stdio": "stdio",
    "stdio_principal": "stdio",
    "visible_tools": "catalog",
}


def __getattr__(name: str) -> object:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f".{_HOMES[name]}", __name__), name)
