"""`ibkr_capabilities`: what this caller may do right now, so an agent can plan without trial and error.

The answer is a pure function of the caller, the configuration, the registry, the gateway's health
and the persisted kill switch. A new gate adds its state here as a field with a default, so older
clients keep working.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

from .config import GatewayConfig
from .models import HealthStatus
from .principal import Principal, is_approver
from .scopes import Scope

if TYPE_CHECKING:
    from .registry import Operation


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
    """Tools this server has that this caller may not call, each with the scope it would need.

    Operator-only tools (`ibkr_session_renew`, `ibkr_kill_switch_open`, `ibkr_state_backup`,
    `ibkr_state_import`) are in neither list for any caller but the operator: no scope would let another
    caller call them."""
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
    """The caller holds the preview scope and previews are on (the CLI flag, or `orders.preview_enabled`)."""
    paper_submit_allowed: bool
    """The caller holds the paper-submit scope and paper orders are enabled (the flag, or `orders.paper_enabled`)."""
    live_submit_allowed: bool
    """The caller holds the live-submit scope, the config enables live trading and the kill switch is open."""
    live_trading_enabled: bool
    """`safety.live_trading_enabled` and `live_trading.enabled` in the configuration."""
    role: str = Field(default="agent")
    """`approver` (a person: the CLI operator, or a remote subject listed under `auth.approvers`) or `agent`."""
    approval_required: bool = Field(default=True)
    """Always true: every paper or live submit needs a person's approval of that exact preview, for that mode."""
    how_to_get_approval: str = Field(
        default="A person approves the preview: the operator runs "
        "`ibkr-agent approvals create --account ACCOUNT --preview-id PREVIEW_ID --mode paper|live` "
        "and passes the approval id back; agents cannot approve."
    )
    """How a person approves a preview, in words an agent can relay."""
    kill_switch: str = Field(default="unknown")
    """`open` or `closed` (the persisted live kill switch); `unknown` when it could not be read."""
    notes: list[str]
    """Plain-language hints on what is possible and how an operator widens it."""


def build_capabilities(
    *,
    principal: Principal,
    config: GatewayConfig,
    health: HealthStatus,
    tool_scopes: Mapping[str, Scope],
    kill_switch: str = "unknown",
    operations: Mapping[str, Operation] | None = None,
) -> Capabilities:
    """The capabilities of `principal` given the config, the gateway's health and the tool catalogue."""
    if operations is None:
        from .registry import OPERATIONS_BY_TOOL  # the registry's output model lives here

        operations = OPERATIONS_BY_TOOL
    operator = principal.kind == "local_operator"
    # Operator-only tools are not offered to anyone else: no scope would let them call one.
    hidden = [tool for tool in tool_scopes if not operator and tool in operations and operations[tool].operator_only]
    offered = {tool: scope for tool, scope in tool_scopes.items() if tool not in hidden}
    granted = [tool for tool, scope in offered.items() if principal.has(scope)]
    withheld = {tool: scope.value for tool, scope in offered.items() if not principal.has(scope)}
    writes = [tool for tool in granted if tool in operations and not operations[tool].read_only]

    def allowed(scope: Scope) -> bool:
        return principal.has(scope) and any(op.scope is scope for op in operations.values())

    live_enabled = config.safety.live_trading_enabled and config.live_trading.enabled
    # The operator enables each write per call with a CLI flag; agents get the config's switches instead.
    preview_on = operator or config.orders.preview_enabled
    paper_on = operator or config.orders.paper_enabled
    # With the simulator, `--enable-live` and `--open-kill-switch` suffice for the operator.
    live_on = live_enabled or (operator and config.is_fake)
    switch_open = kill_switch == "open" or (operator and config.is_fake)
    approver = is_approver(principal, config.auth.approvers)
    notes: list[str] = []
    if config.is_fake:
        notes.append("The broker is the embedded simulator: accounts, prices and orders are fictitious.")
    if operator:
        notes.append("The CLI operator enables each write per call: --enable-preview, --enable-paper, --enable-live.")
    if not writes:
        if any(not op.read_only for op in operations.values()):
            notes.append(
                "This caller may only read. Writes need scopes the operator enables in auth.enabled_scopes "
                "(tiers with_preview, with_paper, with_live)."
            )
        else:
            notes.append("This gateway version offers read operations only.")
    if writes and not approver:
        notes.append(
            "Submits need a person's approval of the exact preview, for paper or live: ask the operator to run "
            "`ibkr-agent approvals create --account ACCOUNT --preview-id PREVIEW_ID --mode paper|live` and to "
            "give you the approval id. This caller cannot approve."
        )
    if principal.has(Scope.ORDERS_PREVIEW) and not preview_on:
        notes.append("Order previews are switched off for agents in the configuration (orders.preview_enabled).")
    if principal.has(Scope.ORDERS_PAPER_SUBMIT) and not paper_on:
        notes.append("Paper orders are switched off for agents in the configuration (orders.paper_enabled).")
    if principal.has(Scope.ORDERS_LIVE_SUBMIT) and not live_on:
        notes.append("Live trading is switched off in the configuration (safety.live_trading_enabled).")
    if principal.has(Scope.ORDERS_LIVE_SUBMIT) and not switch_open:
        notes.append(f"The live kill switch is {kill_switch}: live submits are refused until the operator opens it.")
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
        order_preview_allowed=allowed(Scope.ORDERS_PREVIEW) and preview_on,
        paper_submit_allowed=allowed(Scope.ORDERS_PAPER_SUBMIT) and paper_on,
        live_submit_allowed=allowed(Scope.ORDERS_LIVE_SUBMIT) and live_on and switch_open,
        live_trading_enabled=live_enabled,
        role="approver" if approver else "agent",
        kill_switch=kill_switch,
        notes=notes,
    )
