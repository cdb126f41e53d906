"""The tool catalogue: every MCP tool name with its scope, without loading the MCP SDK.

Tools are the operation registry's entries, `ibkr_capabilities` among them. `tools/list` and
`mcp serve --describe` both filter this catalogue by the caller's scopes, so they cannot disagree.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Final

from ibkr_gateway_core.registry import OPERATIONS_BY_TOOL
from ibkr_gateway_core.scopes import Scope

SERVER_NAME: Final = "ibkr-agent-gateway"
"""Name the server reports in `initialize` and `server/discover`."""

CAPABILITIES_TOOL: Final = "ibkr_capabilities"
"""The tool that tells a caller what it may do right now (the registry's `capabilities` operation)."""

META_PREFIX: Final = "ibkr-agent-gateway/"
"""Prefix of every `_meta` key this server writes (MCP reserves unprefixed and `mcp`-prefixed keys)."""


def tool_scopes() -> Mapping[str, Scope]:
    """Every tool this server can expose, in listing order, with the scope it needs."""
    return {tool: op.scope for tool, op in OPERATIONS_BY_TOOL.items()}


def visible_tools(scopes: Iterable[Scope]) -> list[str]:
    """Names of the tools a caller holding `scopes` sees in `tools/list`, in listing order.

    An MCP caller is never the operator, so operator-only tools are never listed, whatever the scopes.
    """
    granted = frozenset(scopes)
    return [tool for tool, op in OPERATIONS_BY_TOOL.items() if op.scope in granted and not op.operator_only]
