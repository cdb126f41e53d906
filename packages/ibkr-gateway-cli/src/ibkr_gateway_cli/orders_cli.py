"""Order commands: preview, approvals, paper and live submit/cancel, kill switch, limits, reconcile.

Each command parses its flags, passes the per-call enablement flags (`--enable-preview`,
`--enable-paper`, `--enable-live`, ...) to the Gateway as operator switches (never as arguments),
calls one operation as the CLI operator and renders the result. Every gate lives in core.
"""

from typing import TYPE_CHECKING, Annotated, Any

import typer

from .app import (
    AccountOption,
    ConfigOption,
    ContractIdOption,
    JsonOption,
    RequestIdOption,
    _options,  # pyright: ignore[reportPrivateUsage]
    app,
    orders_app,
)
from .render import block, table
from .runner import run_operation

if TYPE_CHECKING:
    pass

approvals_app = typer.Typer(help="Approvals of order previews.", no_args_is_help=True)
kill_switch_app = typer.Typer(help="The live kill switch.", no_args_is_help=True)
limits_app = typer.Typer(help="Live risk limits.", no_args_is_help=True)
app.add_typer(approvals_app, name="approvals")
app.add_typer(kill_switch_app, name="kill-switch")
app.add_typer(limits_app, name="limits")

IdempotencyKeyOption = Annotated[
    str | None,
    typer.Option("--idempotency-key", help="Unique per intended order; a retry never sends twice.", show_default=False),
]
ApprovalIdOption = Annotated[
    str | None, typer.Option("--approval-id", help="Approval id from `approvals create`.", show_default=False)
]
BrokerOrderIdOption = Annotated[
    str | None, typer.Option("--broker-order-id", help="Broker order id to cancel.", show_default=False)
]
EnablePaperOption = Annotated[bool, typer.Option("--enable-paper", help="Enable paper trading for this call.")]
EnableLiveOption = Annotated[bool, typer.Option("--enable-live", help="Enable live trading for this call.")]
LiveScopeOption = Annotated[bool, typer.Option("--live-scope", help="Confirm the live scope for this call.")]
OpenKillSwitchOption = Annotated[
    bool,
    typer.Option(
        "--open-kill-switch",
        help="Confirm the kill switch is open (with the simulator, open it); a real broker needs `kill-switch open`.",
    ),
]
AcknowledgeOption = Annotated[
    bool,
    typer.Option("--acknowledge-paper-to-live", help="Acknowledge the paper-to-live checklist for this call."),
]
LiveBrokerOption = Annotated[
    str,
    typer.Option("--live-broker", help="local-candidate (no broker call), client-portal or refusing."),
]
ReasonOption = Annotated[
    str | None, typer.Option("--reason", help="Why; kept with the switch and audited.", show_default=False)
]

_LIFECYCLE_COLUMNS = ["mode", "action", "broker_order_id", "client_order_id", "status", "writer", "replayed"]
_APPROVAL_COLUMNS = ["approval_id", "preview_id", "account_id", "status", "approved_by", "expires_at"]


def _switches(**flags: bool) -> frozenset[str]:
    return frozenset(name for name, on in flags.items() if on)


def _r(result: Any) -> Any:
    return result.value


@orders_app.command("preview")
def orders_preview(
    ctx: typer.Context,
    account: AccountOption = None,
    symbol: Annotated[str | None, typer.Option("--symbol", help="Symbol, e.g. AAPL.", show_default=False)] = None,
    contract_id: ContractIdOption = None,
    side: Annotated[str | None, typer.Option("--side", help="buy or sell.", show_default=False)] = None,
    quantity: Annotated[str | None, typer.Option("--quantity", help="Quantity, e.g. 1.", show_default=False)] = None,
    order_type: Annotated[
        str, typer.Option("--order-type", help="limit, stop, stop-limit, trailing-stop or market.")
    ] = "limit",
    limit_price: Annotated[str | None, typer.Option("--limit-price", help="Limit price.", show_default=False)] = None,
    stop_price: Annotated[str | None, typer.Option("--stop-price", help="Stop price.", show_default=False)] = None,
    trailing_amount: Annotated[
        str | None, typer.Option("--trailing-amount", help="Trailing offset as an amount.", show_default=False)
    ] = None,
    trailing_percent: Annotated[
        str | None, typer.Option("--trailing-percent", help="Trailing offset in percent.", show_default=False)
    ] = None,
    currency: Annotated[str, typer.Option("--currency", help="Order currency.")] = "USD",
    tif: Annotated[str, typer.Option("--tif", help="Time in force: day or gtc.")] = "day",
    exchange: Annotated[
        str | None, typer.Option("--exchange", help="Routing exchange (default SMART).", show_default=False)
    ] = None,
    enable_preview: Annotated[
        bool, typer.Option("--enable-preview", help="Enable order preview for this call.")
    ] = False,
    config: ConfigOption = None,
    json_output: JsonOption = False,
    request_id: RequestIdOption = None,
) -> None:
    """Preview an order: risk policy and broker what-if; nothing is placed."""

    def render(result: Any) -> str:
        value = _r(result)
        t = value.ticket
        price = f" @ {t.limit_price}" if t.limit_price is not None else ""
        lines = [
            f"preview {value.preview_id}: {t.side} {t.quantity} {t.symbol} {t.order_type}{price} {t.time_in_force}",
            f"estimated cost: {block(value.estimated_cost) if value.estimated_cost else '-'}".replace("\n", " "),
            f"commission: {value.estimated_commission.amount if value.estimated_commission else '-'}",
            f"expires at: {value.expires_at.isoformat()}",
        ]
        lines += [f"warning (broker text, untrusted): {w}" for w in value.warnings]
        return "\n".join(lines)

    run_operation(
        _options(ctx, config, json_output, request_id),
        "preview_order",
        {
            "account_id": account,
            "symbol": symbol,
            "contract_id": contract_id,
            "side": side,
            "quantity": quantity,
            "order_type": order_type,
            "limit_price": limit_price,
            "stop_price": stop_price,
            "trailing_amount": trailing_amount,
            "trailing_percent": trailing_percent,
            "currency": currency,
            "time_in_force": tif,
            "exchange": exchange,
        },
        render,
        switches=_switches(enable_preview=enable_preview),
    )


@orders_app.command("submit")
def orders_submit(
    ctx: typer.Context,
    account: AccountOption = None,
    approval_id: ApprovalIdOption = None,
    idempotency_key: IdempotencyKeyOption = None,
    enable_paper: EnablePaperOption = False,
    config: ConfigOption = None,
    json_output: JsonOption = False,
    request_id: RequestIdOption = None,
) -> None:
    """Submit an approved preview to a paper account."""
    run_operation(
        _options(ctx, config, json_output, request_id),
        "submit_paper_order",
        {"account_id": account, "approval_id": approval_id, "idempotency_key": idempotency_key},
        lambda r: table([_r(r)], _LIFECYCLE_COLUMNS),
        switches=_switches(enable_paper=enable_paper),
    )


@orders_app.command("cancel")
def orders_cancel(
    ctx: typer.Context,
    account: AccountOption = None,
    broker_order_id: BrokerOrderIdOption = None,
    idempotency_key: IdempotencyKeyOption = None,
    enable_paper: EnablePaperOption = False,
    config: ConfigOption = None,
    json_output: JsonOption = False,
    request_id: RequestIdOption = None,
) -> None:
    """Cancel an order of a paper account."""
    run_operation(
        _options(ctx, config, json_output, request_id),
        "cancel_paper_order",
        {"account_id": account, "broker_order_id": broker_order_id, "idempotency_key": idempotency_key},
        lambda r: table([_r(r)], _LIFECYCLE_COLUMNS),
        switches=_switches(enable_paper=enable_paper),
    )


def _live_switches(
    enable_live: bool, live_scope: bool, open_kill_switch: bool, acknowledge: bool, live_broker: str
) -> frozenset[str]:
    return _switches(
        enable_live=enable_live,
        live_scope=live_scope,
        open_kill_switch=open_kill_switch,
        acknowledge_paper_to_live=acknowledge,
    ) | {f"live_broker:{live_broker}"}


@orders_app.command("live-submit")
def orders_live_submit(
    ctx: typer.Context,
    account: AccountOption = None,
    approval_id: ApprovalIdOption = None,
    idempotency_key: IdempotencyKeyOption = None,
    enable_live: EnableLiveOption = False,
    live_scope: LiveScopeOption = False,
    open_kill_switch: OpenKillSwitchOption = False,
    acknowledge_paper_to_live: AcknowledgeOption = False,
    live_broker: LiveBrokerOption = "local-candidate",
    config: ConfigOption = None,
    json_output: JsonOption = False,
    request_id: RequestIdOption = None,
) -> None:
    """Submit an approved preview through every live gate to the chosen live writer."""
    run_operation(
        _options(ctx, config, json_output, request_id),
        "submit_live_order",
        {"account_id": account, "approval_id": approval_id, "idempotency_key": idempotency_key},
        lambda r: table([_r(r)], _LIFECYCLE_COLUMNS),
        switches=_live_switches(enable_live, live_scope, open_kill_switch, acknowledge_paper_to_live, live_broker),
    )


@orders_app.command("live-cancel")
def orders_live_cancel(
    ctx: typer.Context,
    account: AccountOption = None,
    broker_order_id: BrokerOrderIdOption = None,
    idempotency_key: IdempotencyKeyOption = None,
    enable_live: EnableLiveOption = False,
    live_scope: LiveScopeOption = False,
    open_kill_switch: OpenKillSwitchOption = False,
    acknowledge_paper_to_live: AcknowledgeOption = False,
    live_broker: LiveBrokerOption = "local-candidate",
    config: ConfigOption = None,
    json_output: JsonOption = False,
    request_id: RequestIdOption = None,
) -> None:
    """Cancel a live order (the kill switch never blocks a cancel)."""
    run_operation(
        _options(ctx, config, json_output, request_id),
        "cancel_live_order",
        {"account_id": account, "broker_order_id": broker_order_id, "idempotency_key": idempotency_key},
        lambda r: table([_r(r)], _LIFECYCLE_COLUMNS),
        switches=_live_switches(enable_live, live_scope, open_kill_switch, acknowledge_paper_to_live, live_broker),
    )


@orders_app.command("reconcile")
def orders_reconcile(
    ctx: typer.Context, config: ConfigOption = None, json_output: JsonOption = False, request_id: RequestIdOption = None
) -> None:
    """Settle unknown outcomes by client order id and poll tracked live orders."""
    run_operation(_options(ctx, config, json_output, request_id), "reconcile_orders", {}, lambda r: block(_r(r)))


@approvals_app.command("create")
def approvals_create(
    ctx: typer.Context,
    account: AccountOption = None,
    preview_id: Annotated[
        str | None, typer.Option("--preview-id", help="Preview to approve.", show_default=False)
    ] = None,
    ttl_seconds: Annotated[
        int | None, typer.Option("--ttl-seconds", help="Lifetime in seconds (default 300).", show_default=False)
    ] = None,
    config: ConfigOption = None,
    json_output: JsonOption = False,
    request_id: RequestIdOption = None,
) -> None:
    """Approve one preview for its account, once."""
    run_operation(
        _options(ctx, config, json_output, request_id),
        "create_approval",
        {"account_id": account, "preview_id": preview_id, "ttl_seconds": ttl_seconds},
        lambda r: block(_r(r)),
    )


@approvals_app.command("list")
def approvals_list(
    ctx: typer.Context,
    account: AccountOption = None,
    limit: Annotated[int | None, typer.Option("--limit", help="How many (default 50).", show_default=False)] = None,
    config: ConfigOption = None,
    json_output: JsonOption = False,
    request_id: RequestIdOption = None,
) -> None:
    """Approvals, newest first."""
    run_operation(
        _options(ctx, config, json_output, request_id),
        "list_approvals",
        {"account_id": account, "limit": limit},
        lambda r: table(_r(r), _APPROVAL_COLUMNS, empty="(no approvals)"),
    )


@approvals_app.command("revoke")
def approvals_revoke(
    ctx: typer.Context,
    approval_id: ApprovalIdOption = None,
    reason: ReasonOption = None,
    config: ConfigOption = None,
    json_output: JsonOption = False,
    request_id: RequestIdOption = None,
) -> None:
    """Revoke an unused approval."""
    run_operation(
        _options(ctx, config, json_output, request_id),
        "revoke_approval",
        {"approval_id": approval_id, "reason": reason},
        lambda r: block(_r(r)),
    )


def _kill_switch_text(result: Any) -> str:
    value = _r(result)
    text = f"kill switch: {value.state}"
    if value.changed_at is not None:
        text += f" (by {value.changed_by} at {value.changed_at.isoformat()}: {value.reason})"
    if value.cancelled_orders:
        text += "\ncancelled: " + ", ".join(value.cancelled_orders)
    return text


@kill_switch_app.command("status")
def kill_switch_status(
    ctx: typer.Context, config: ConfigOption = None, json_output: JsonOption = False, request_id: RequestIdOption = None
) -> None:
    """Whether the live kill switch is open or closed."""
    run_operation(_options(ctx, config, json_output, request_id), "kill_switch_status", {}, _kill_switch_text)


@kill_switch_app.command("open")
def kill_switch_open(
    ctx: typer.Context,
    reason: ReasonOption = None,
    config: ConfigOption = None,
    json_output: JsonOption = False,
    request_id: RequestIdOption = None,
) -> None:
    """Allow new live orders (operator only)."""
    run_operation(
        _options(ctx, config, json_output, request_id), "open_kill_switch", {"reason": reason}, _kill_switch_text
    )


@kill_switch_app.command("close")
def kill_switch_close(
    ctx: typer.Context,
    reason: ReasonOption = None,
    config: ConfigOption = None,
    json_output: JsonOption = False,
    request_id: RequestIdOption = None,
) -> None:
    """Stop new live orders now (and cancel tracked working live orders, by default)."""
    run_operation(
        _options(ctx, config, json_output, request_id), "close_kill_switch", {"reason": reason}, _kill_switch_text
    )


@limits_app.command("status")
def limits_status(
    ctx: typer.Context,
    account: AccountOption = None,
    config: ConfigOption = None,
    json_output: JsonOption = False,
    request_id: RequestIdOption = None,
) -> None:
    """Used and remaining budgets of the live risk policy for one account."""
    run_operation(
        _options(ctx, config, json_output, request_id), "limits_status", {"account_id": account}, lambda r: block(_r(r))
    )


__all__ = ["approvals_app", "kill_switch_app", "limits_app"]
