"""`ibkr_capabilities`: what this caller may do right now, so an agent can plan without trial and error.

The answer is a pure function of the caller, the configuration, the registry and the gateway's health.
Later gates (kill switch, live acknowledgements) add their state here as fields; each new field
defaults to "unknown" so older clients keep working.
"""

from __future__ import annotations

from collections.abc import Mapping

from ibkr_gateway_core.config import GatewayConfig
from ibkr_gateway_core.models import HealthStatus
from ibkr_gateway_core.principal import Principal
from ibkr_gateway_core.registry import OPERATIONS_BY_TOOL, Operation
from ibkr_gateway_core.scopes import Scope
from pydantic import BaseModel, ConfigDict, Field


class Capabilities(BaseModel):
    """What this caller may do right now."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    principal_kind: str
    """`local_agent` over stdio, `remote` over HTTP."""
    principal_subject: str
    granted_scopes: list[str]
    """Scopes this caller holds, sorted."""
    tools: list[str]
    """Tools this caller may call, in listing order."""
    withheld_tools: dict[str, str]
    """Tools this server has that this caller may not call, each with the scope it would need."""
    backend: str
    """`fake` (the embedded CPAPI simulator) or `client_portal_gateway` (a real broker session)."""
    simulated: bool
    """True when no real broker is reached: nothing done here moves real money."""
    gateway_version: str
    read_only: bool
    """True while the caller holds no tool that changes state."""
    write_tools: list[str]
    """Granted tools that change state (previews, approvals, submits, cancels)."""
    order_preview_allowed: bool
    """An order-preview tool exists and the caller holds its scope."""
    paper_submit_allowed: bool
    """A paper-submit tool exists and the caller holds its scope."""
    live_submit_allowed: bool
    """A live-submit tool exists, the caller holds its scope and the config enables live trading."""
    live_trading_enabled: bool
    """`safety.live_trading_enabled` in the configuration."""
    kill_switch: str = Field(default="unknown")
    """Kill-switch state; `unknown` while this gateway version keeps no kill switch."""
    notes: list[str]
    """Plain-language hints on what is possible and how an operator widens it."""


def build_capabilities(
    *,
    principal: Principal,
    config: GatewayConfig,
    health: HealthStatus,
    tool_scopes: Mapping[str, Scope],
    operations: Mapping[str, Operation] = OPERATIONS_BY_TOOL,
) -> Capabilities:
    """The capabilities of `principal` given the config, the gateway's health and the tool catalogue."""
    granted = [tool for tool, scope in tool_scopes.items() if principal.has(scope)]
    withheld = {tool: scope.value for tool, scope in tool_scopes.items() if not principal.has(scope)}
    writes = [tool for tool in granted if tool in operations and not operations[tool].read_only]

    def allowed(scope: Scope) -> bool:
        return principal.has(scope) and any(op.scope is scope for op in operations.values())

    live_enabled = config.safety.live_trading_enabled
    notes: list[str] = []
    if config.is_fake:
        notes.append("The broker is the embedded simulator: accounts, prices and orders are fictitious.")
    if not writes:
        if any(not op.read_only for op in operations.values()):
            notes.append(
                "This caller may only read. Writes need scopes the operator enables in auth.enabled_scopes "
                "(tiers with_preview, with_paper, with_live)."
            )
        else:
            notes.append("This gateway version offers read operations only.")
    if principal.has(Scope.ORDERS_LIVE_SUBMIT) and not live_enabled:
        notes.append("Live trading is switched off in the configuration (safety.live_trading_enabled).")
    return Capabilities(
        principal_kind=principal.kind,
        principal_subject=principal.subject,
        granted_scopes=sorted(scope.value for scope in principal.scopes),
        tools=granted,
        withheld_tools=withheld,
        backend=health.backend,
        simulated=config.is_fake,
        gateway_version=health.version,
        read_only=not writes,
        write_tools=writes,
        order_preview_allowed=allowed(Scope.ORDERS_PREVIEW),
        paper_submit_allowed=allowed(Scope.ORDERS_PAPER_SUBMIT),
        live_submit_allowed=allowed(Scope.ORDERS_LIVE_SUBMIT) and live_enabled,
        live_trading_enabled=live_enabled,
        notes=notes,
    )
