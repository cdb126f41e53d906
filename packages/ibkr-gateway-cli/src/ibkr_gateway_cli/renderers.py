"""Human text of each operation's result, by operation name: what a command prints without `--json`."""

from collections.abc import Callable, Mapping
from typing import Any, Final

from .render import block, cell, table

Renderer = Callable[[Any], str]
"""The text of one result value (`CallResult.value`)."""

_POSITION_COLUMNS: Final = [
    "contract_id",
    "symbol",
    "asset_class",
    "quantity",
    "market_price",
    "market_value",
    "currency",
    "unrealized_pnl",
]
_CONTRACT_COLUMNS: Final = [
    "contract_id",
    "symbol",
    "asset_class",
    "exchange",
    "currency",
    "company_name",
    "is_unique_match",
]
_ORDER_COLUMNS: Final = [
    "broker_order_id",
    "client_order_id",
    "symbol",
    "side",
    "order_type",
    "quantity",
    "filled_quantity",
    "limit_price",
    "status",
]
_EXECUTION_COLUMNS: Final = ["execution_id", "symbol", "side", "quantity", "price", "commission", "executed_at"]
_LIFECYCLE_COLUMNS: Final = ["mode", "action", "broker_order_id", "client_order_id", "status", "writer", "replayed"]
_APPROVAL_COLUMNS: Final = ["approval_id", "preview_id", "account_id", "status", "approved_by", "expires_at"]


def _capabilities(value: Any) -> str:
    lines = [
        f"caller: {value.principal_kind} {value.principal_subject}, backend {value.backend}",
        f"may preview: {cell(value.order_preview_allowed)}, paper: {cell(value.paper_submit_allowed)}, "
        f"live: {cell(value.live_submit_allowed)}; kill switch {value.kill_switch}",
        f"tools ({len(value.tools)}):",
        *(f"  {tool}" for tool in value.tools),
    ]
    return "\n".join([*lines, *(f"note: {note}" for note in value.notes)])


def _health(value: Any) -> str:
    mode = "read-only" if value.read_only else "write scopes enabled"
    return f"gateway: {value.gateway} (version {value.version}, backend {value.backend}, {mode})"


_PACING_COLUMNS: Final = [
    "endpoint",
    "limit",
    "window_seconds",
    "used",
    "queued",
    "in_flight",
    "max_concurrent",
    "boxed_for_seconds",
]


def _backend_status(value: Any) -> str:
    text = block(value, skip=("pacing",))
    if value.pacing:
        text += "\n\npacing budgets:\n" + table(value.pacing, _PACING_COLUMNS)
    return text


def _session_requirements(value: Any) -> str:
    lines = [f"manual_action: {value.manual_action}"]
    lines += [f"[{'x' if check.satisfied else ' '}] {check.name}: {check.detail}" for check in value.checks]
    return "\n".join(lines)


def _portfolio_snapshot(value: Any) -> str:
    return "\n\n".join(
        [
            f"account: {value.account_id} ({value.base_currency}) as of {value.as_of.isoformat()}",
            block(value.summary, skip=("account_id", "as_of")),
            table(value.cash, ["currency", "cash", "settled_cash", "exchange_rate"]),
            table(value.positions, _POSITION_COLUMNS, empty="(no positions)"),
        ]
    )


def _historical_bars(value: Any) -> str:
    head = f"{value.symbol or value.contract_id}: {len(value.bars)} bars of {value.bar_size} over {value.duration}"
    return head + "\n" + table(value.bars, ["timestamp", "open", "high", "low", "close", "volume"], empty="(no bars)")


def _audit_tail(value: Any) -> str:
    if not value.events:
        return "(no events)"
    header = f"{'SEQUENCE':>8}  {'TIMESTAMP':<32}  {'TOOL':<28} {'RESULT':<12} ERROR_CODE"
    lines = [
        f"{r.sequence:>8}  {r.event.timestamp.isoformat():<32}  {r.event.tool_name or '-':<28} "
        f"{r.event.result_status:<12} {r.event.error_code or ''}".rstrip()
        for r in value.events
    ]
    return "\n".join([header, *lines])


def _checkpoint(value: Any) -> str:
    return f"checkpoint at sequence {value.sequence}: {value.chain_hash} (key {value.key_id})"


def _state_import(value: Any) -> str:
    head = f"head {value.head_sequence}: {value.head_chain_hash}" if value.head_chain_hash else "empty chain"
    rows = ", ".join(f"{table} {count}" for table, count in value.tables.items())
    lines = [f"imported {value.audit_events} audit events, verified ({head})", f"order state rows: {rows}"]
    lines.append(f"approvals revoked (unused in the copy): {value.approvals_revoked}")
    if value.earlier_attempts:
        lines.append(
            f"records of earlier refused attempts, chained after the imported events: {value.earlier_attempts}"
        )
    lines.append(f"kill switch: closed (it was {value.kill_switch_was or 'never set'}); open it when ready")
    return "\n".join(lines)


def _state_backup(value: Any) -> str:
    head = f"head {value.head_sequence}: {value.head_chain_hash}" if value.head_chain_hash else "empty chain"
    return f"backed up {value.audit_events} audit events, verified ({head})\n{value.bytes} bytes, sha256 {value.sha256}"


def _money(value: Any) -> str:
    """`100000 USD`: a `Money` as people write it, the amount as a plain decimal."""
    return f"{cell(value.amount)} {value.currency}" if value is not None else "-"


def _preview(value: Any) -> str:
    t = value.ticket
    prices = [
        f"limit {cell(t.limit_price)}" if t.limit_price is not None else "",
        f"stop {cell(t.stop_price)}" if t.stop_price is not None else "",
        f"trail {cell(t.trailing_amount)}" if t.trailing_amount is not None else "",
        f"trail {cell(t.trailing_percent)}%" if t.trailing_percent is not None else "",
    ]
    terms = ", ".join(price for price in prices if price)
    order = f"{t.side} {cell(t.quantity)} {t.symbol} {t.order_type}" + (f" ({terms})" if terms else "")
    lines = [
        f"preview {value.preview_id}: {order} {t.time_in_force}",
        f"estimated cost: {_money(value.estimated_cost)}",
        f"commission: {_money(value.estimated_commission)}",
        f"expires at: {value.expires_at.isoformat()}",
    ]
    if value.take_profit is not None and value.stop_loss is not None:
        # the exits in the entry's words: `sell limit (limit 230)`, `sell stop (stop 190)`
        lines.insert(1, f"take-profit: {value.take_profit.side} limit (limit {cell(value.take_profit.limit_price)})")
        lines.insert(2, f"stop-loss: {value.stop_loss.side} stop (stop {cell(value.stop_loss.stop_price)})")
    if value.broker_order_id is not None:
        lines.insert(1, f"modifies order {value.broker_order_id}")
    lines += [f"warning (broker text, untrusted): {w}" for w in value.warnings]
    return "\n".join(lines)


def _lifecycle(value: Any) -> str:
    text = table([value], _LIFECYCLE_COLUMNS)
    if value.legs:
        text += "\n" + table(value.legs, ["role", "broker_order_id", "status", "broker_status"])
    return text


def _kill_switch(value: Any) -> str:
    text = f"kill switch: {value.state}"
    if value.changed_at is not None:
        text += f" (by {value.changed_by} at {value.changed_at.isoformat()}: {value.reason})"
    if value.cancelled_orders:
        text += "\ncancelled: " + ", ".join(value.cancelled_orders)
    return text


def _previews(value: Any) -> str:
    lines: list[str] = []
    for entry in value:
        p, t = entry.preview, entry.preview.ticket
        price = f" @ {t.limit_price}" if t.limit_price is not None else ""
        lines.append(
            f"{p.preview_id}  {entry.status:<8} {t.side} {t.quantity} {t.symbol} {t.order_type}{price}  "
            f"by {p.created_by} ({entry.created_by_kind}) at {p.created_at.isoformat()}"
        )
    return "\n".join(lines) or "(no previews)"


def _denial(value: Any) -> str:
    text = f"preview {value.preview_id} denied by {value.denied_by} at {value.denied_at.isoformat()}: {value.reason}"
    if value.revoked_approvals:
        text += "\nrevoked approvals: " + ", ".join(value.revoked_approvals)
    return text


def _options_chain(value: Any) -> str:
    head = f"{value.symbol} {value.month}: underlying {value.underlying_price or '-'}, expiries " + (
        ", ".join(day.isoformat() for day in value.expiries) or "-"
    )
    columns = ["expiry", "strike", "right", "bid", "ask", "last", "delta", "implied_volatility_percent", "contract_id"]
    lines = [head, table(value.options, columns, empty="(no options)")]
    return "\n".join([*lines, *(f"warning: {w}" for w in value.warnings)])


def _schedule(value: Any) -> str:
    now = "unknown" if value.is_open_now is None else ("open" if value.is_open_now else "closed")
    head = f"{value.symbol} on {value.exchange} ({value.time_zone or '-'}): {now} now"
    nxt = value.next_session
    if nxt is not None:
        head += f"; next session {nxt.kind} {nxt.opens_at.isoformat()} to {nxt.closes_at.isoformat()}"
    lines = [
        f"{day.date.isoformat()}  {'open  ' if day.open else 'closed'}  "
        + " ".join(f"{s.opens_at:%H:%M}-{s.closes_at:%H:%M} {s.kind}" for s in day.sessions)
        for day in value.days
    ]
    return "\n".join([head, *(line.rstrip() for line in lines)])


def _depth(value: Any) -> str:
    lines = [f"book of {value.contract_id}: {len(value.bids)} bid and {len(value.asks)} ask levels"]
    lines += [f"bid {cell(level.price):>12}  x {cell(level.size)}" for level in value.bids]
    lines += [f"ask {cell(level.price):>12}  x {cell(level.size)}" for level in value.asks]
    return "\n".join(lines)


def _rows(columns: list[str], empty: str = "(none)") -> Renderer:
    return lambda value: table(value, columns, empty=empty)


RENDERERS: Final[Mapping[str, Renderer]] = {
    "capabilities": _capabilities,
    "health": _health,
    "backend_status": _backend_status,
    "session_requirements": _session_requirements,
    "list_accounts": _rows(["account_id", "account_mode", "base_currency", "account_label"]),
    "account_summary": block,
    "portfolio_snapshot": _portfolio_snapshot,
    "list_positions": _rows(_POSITION_COLUMNS, "(no positions)"),
    "search_contracts": _rows(_CONTRACT_COLUMNS, "(no contracts)"),
    "resolve_contract": block,
    "market_snapshot": block,
    "historical_bars": _historical_bars,
    "list_orders": _rows(_ORDER_COLUMNS, "(no orders)"),
    "order_status": block,
    "list_executions": _rows(_EXECUTION_COLUMNS, "(no executions)"),
    "audit_tail": _audit_tail,
    "audit_export": lambda value: value.jsonl,
    "audit_verify": block,
    "audit_checkpoint": _checkpoint,
    "preview_order": _preview,
    "create_approval": block,
    "list_approvals": _rows(_APPROVAL_COLUMNS, "(no approvals)"),
    "revoke_approval": block,
    "list_previews": _previews,
    "deny_preview": _denial,
    "submit_paper_order": _lifecycle,
    "cancel_paper_order": _lifecycle,
    "submit_live_order": _lifecycle,
    "cancel_live_order": _lifecycle,
    "reconcile_orders": block,
    "kill_switch_status": _kill_switch,
    "open_kill_switch": _kill_switch,
    "close_kill_switch": _kill_switch,
    "import_state": _state_import,
    "backup_state": _state_backup,
    "limits_status": block,
    "preview_bracket_order": _preview,
    "submit_paper_bracket_order": _lifecycle,
    "submit_live_bracket_order": _lifecycle,
    "cancel_paper_bracket_order": _lifecycle,
    "cancel_live_bracket_order": _lifecycle,
    "preview_order_modify": _preview,
    "modify_paper_order": _lifecycle,
    "modify_live_order": _lifecycle,
    "renew_session": block,
    "account_metadata": block,
    "pnl_daily": block,
    "pnl_breakdown": lambda value: (
        block(value, skip=("currencies",))
        + "\n"
        + table(value.currencies, ["currency", "realized_pnl", "unrealized_pnl"])
    ),
    "option_expirations": block,
    "option_strikes": block,
    "options_chain": _options_chain,
    "option_greeks": block,
    "scanner_params": lambda value: table(value.scan_types, ["code", "name"], empty="(no scans)"),
    "scanner_run": lambda value: table(
        value.rows, ["rank", "contract_id", "symbol", "company_name", "exchange", "scan_value"], empty="(no rows)"
    ),
    "market_schedule": _schedule,
    "market_holidays": block,
    "currency_rate": lambda value: f"1 {value.base} = {value.rate} {value.quote}",
    "orders_history": lambda value: table(value.orders, _ORDER_COLUMNS, empty="(no orders)") + "\n" + value.note,
    "transactions": lambda value: table(
        value.transactions, ["date", "kind", "quantity", "price", "amount", "currency"], empty="(no transactions)"
    ),
    "transfer_history": block,
    "market_depth": _depth,
    "fundamentals": block,
    "news_list": block,
    "news_article": block,
}
"""Every registry operation's renderer; a test checks the keys equal the registry's."""
