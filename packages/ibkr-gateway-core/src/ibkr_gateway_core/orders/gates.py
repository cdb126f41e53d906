"""Safety gates: pure functions over (request, policy, state, clock) that return a `Decision`.

No I/O, no clock reads, no raising: the order desk gathers the state, calls the gates in their
documented order and raises the first refusal as a `GatewayError`, which the Gateway audits. Each
refusal names its limit and the value that broke it.

Order of the risk checks (one code each; preview codes start `ORDER_`, live codes `LIVE_`):
order type, fractional quantity, asset class, symbol, quantity, quote (missing, stale), notional,
price collar, then for live only: orders per window, orders per trading day, notional per trading day.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Final, Literal

from ..errors import ErrorCode
from ..models import MarketSnapshot
from .risk import DEFAULT_MARKET_QUOTE_MAX_AGE_SECONDS, LiveUsage, RiskPolicy
from .tickets import OrderTicket

Stage = Literal["preview", "live"]
"""Which codes a risk check uses: `ORDER_*` at preview, `LIVE_*` at live submit."""

_BPS: Final = Decimal(10_000)


@dataclass(frozen=True, slots=True)
class Decision:
    """Allow, or refuse with a stable code and a message naming the limit and the value."""

    allowed: bool
    code: ErrorCode | None = None
    message: str = ""
    details: Mapping[str, object] = field(default_factory=lambda: {})
    """JSON-safe context: the limit, the value."""


ALLOW: Final = Decision(allowed=True)
"""The one allowing decision."""


def refuse(code: ErrorCode, message: str, **details: object) -> Decision:
    """A refusal with `code`."""
    return Decision(allowed=False, code=code, message=message, details=details)


def first_refusal(*decisions: Decision) -> Decision:
    """The first refusal of already computed decisions, else `ALLOW`."""
    return next((decision for decision in decisions if not decision.allowed), ALLOW)


# ----------------------------------------------------------------------------- enablement


def check_preview_enabled(enabled: bool) -> Decision:
    """Previews need `--enable-preview` (CLI) or `orders.preview_enabled` (other callers)."""
    if enabled:
        return ALLOW
    return refuse(ErrorCode.ORDER_PREVIEW_DISABLED, "Order preview is disabled for this call.")


def check_paper_enabled(enabled: bool) -> Decision:
    """Paper writes need `--enable-paper` (CLI) or `orders.paper_enabled` (other callers)."""
    if enabled:
        return ALLOW
    return refuse(ErrorCode.PAPER_TRADING_DISABLED, "Paper trading is disabled for this call.")


def check_paper_account(account_id: str, account_mode: str | None) -> Decision:
    """Paper orders go only to accounts the broker itself marks as paper (`isPaper`), never by prefix."""
    if account_mode == "paper":
        return ALLOW
    return refuse(
        ErrorCode.PAPER_ACCOUNT_REQUIRED,
        f"Account {account_id!r} is not a paper account according to the broker (mode {account_mode or 'unknown'}).",
        account_mode=account_mode,
    )


@dataclass(frozen=True, slots=True)
class LiveSwitches:
    """What enables one live call: the operator's flags, or for other callers the config."""

    enabled: bool
    """`--enable-live` and, with a real broker, both config switches."""
    scope_confirmed: bool
    """`--live-scope` (the scope itself is checked by the Gateway)."""
    account_allowlisted: bool
    checklist_acknowledged: bool
    """`--acknowledge-paper-to-live` and, with a real broker, `paper_to_live_checklist_acknowledged`."""
    policy_known: bool


def check_live_switches(account_id: str, switches: LiveSwitches, *, policy_id: str | None) -> Decision:
    """The live enablement gates, in their documented order."""
    if not switches.enabled:
        return refuse(ErrorCode.LIVE_TRADING_DISABLED, "Live trading is disabled for this call.")
    if not switches.scope_confirmed:
        return refuse(ErrorCode.LIVE_SCOPE_MISSING, "The live scope was not confirmed (--live-scope).")
    if not switches.account_allowlisted:
        return refuse(
            ErrorCode.LIVE_ACCOUNT_NOT_ALLOWLISTED,
            f"Account {account_id!r} is not in live_trading.allowed_accounts.",
        )
    if not switches.checklist_acknowledged:
        return refuse(ErrorCode.LIVE_MIGRATION_REQUIRED, "The paper-to-live checklist is not acknowledged.")
    if not switches.policy_known:
        return refuse(
            ErrorCode.LIVE_POLICY_UNKNOWN,
            f"The live risk policy {policy_id or '(none)'!r} is not defined under risk_policies.",
            policy_id=policy_id,
        )
    return ALLOW


def check_kill_switch(is_open: bool) -> Decision:
    """New live orders need the persisted kill switch open; cancels never do."""
    if is_open:
        return ALLOW
    return refuse(ErrorCode.LIVE_KILL_SWITCH_CLOSED, "The kill switch is closed: no new live orders.")


def check_no_unknown_outcome(earlier_client_order_id: str | None) -> Decision:
    """No new order for an account while an earlier keyed order's outcome there is unknown (not yet settled)."""
    if earlier_client_order_id is None:
        return ALLOW
    return refuse(
        ErrorCode.ORDER_OUTCOME_PENDING,
        f"The outcome of an earlier order for this account (client order id {earlier_client_order_id}) is "
        "unknown; no new order is sent until it settles.",
        client_order_id=earlier_client_order_id,
    )


# ----------------------------------------------------------------------------- previews and approvals


def check_preview_fresh(preview_id: str, expires_at: datetime, now: datetime) -> Decision:
    """A preview may be approved and submitted only until it expires."""
    if now < expires_at:
        return ALLOW
    return refuse(
        ErrorCode.PREVIEW_EXPIRED,
        f"Preview {preview_id} expired at {expires_at.isoformat()}.",
        expires_at=expires_at.isoformat(),
    )


def check_approval_ttl(ttl_seconds: int, minimum: int, maximum: int) -> Decision:
    """The requested TTL must lie within the configured bounds; it is never clamped silently."""
    if minimum <= ttl_seconds <= maximum:
        return ALLOW
    return refuse(
        ErrorCode.APPROVAL_TTL_OUT_OF_RANGE,
        f"Approval TTL {ttl_seconds} s is outside {minimum}..{maximum} s.",
        ttl_seconds=ttl_seconds,
        min_ttl_seconds=minimum,
        max_ttl_seconds=maximum,
    )


def check_approver(*, approver: bool, kind: str) -> Decision:
    """Only a person approves: the operator at the CLI or a remote subject listed under `auth.approvers`."""
    if approver:
        return ALLOW
    who = "An MCP stdio agent" if kind == "local_agent" else "This caller"
    return refuse(
        ErrorCode.APPROVAL_APPROVER_REQUIRED,
        f"{who} is not an approver: a person must approve (the operator with `ibkr-agent approvals create`, "
        "or a remote subject listed under auth.approvers).",
        principal_kind=kind,
    )


def check_self_approval(
    *,
    approver: tuple[str, str | None, str],
    creator: tuple[str, str | None, str],
    forbidden: bool,
) -> Decision:
    """Nobody approves a preview it created itself, compared as (kind, issuer, subject); the CLI operator may.

    The operator previewing and approving at the CLI is one person deciding twice at the same terminal
    (the guide's own flow); any other identity that created the preview may not approve it.
    """
    if not forbidden or approver[0] == "local_operator":
        return ALLOW
    if approver == creator:
        return refuse(
            ErrorCode.APPROVAL_SELF_FORBIDDEN,
            "A caller may not approve a preview it created itself; another person must.",
        )
    return ALLOW


def check_approval_mode(approval_id: str, approval_mode: str | None, mode: str) -> Decision:
    """An approval names its mode (paper or live) and allows only submits of that mode."""
    if approval_mode == mode:
        return ALLOW
    return refuse(
        ErrorCode.APPROVAL_MODE_MISMATCH,
        f"Approval {approval_id} is for {approval_mode or 'no mode'}, not {mode}.",
        approval_mode=approval_mode,
        mode=mode,
    )


@dataclass(frozen=True, slots=True)
class ApprovalState:
    """What a gate needs to know about one approval and its preview."""

    approval_id: str
    status: str
    """`approved`, `consumed` or `revoked`."""
    account_id: str
    expires_at: datetime
    fingerprint: str
    """The preview fingerprint the approval was bound to."""
    preview_fingerprint: str
    """The fingerprint of the preview as stored now."""
    mode: str | None = None
    """`paper` or `live`, the mode the approval was given for."""


def check_approval(approval: ApprovalState | None, account_id: str, now: datetime, *, mode: str) -> Decision:
    """The approval exists, is unused, unrevoked, unexpired, for this mode, this account and this exact preview."""
    if approval is None:
        return refuse(ErrorCode.APPROVAL_NOT_FOUND, "No approval with this id.")
    if approval.status == "revoked":
        return refuse(ErrorCode.APPROVAL_REVOKED, f"Approval {approval.approval_id} was revoked.")
    if approval.status == "consumed":
        return refuse(ErrorCode.APPROVAL_CONSUMED, f"Approval {approval.approval_id} was already used.")
    if now >= approval.expires_at:
        return refuse(
            ErrorCode.APPROVAL_EXPIRED,
            f"Approval {approval.approval_id} expired at {approval.expires_at.isoformat()}.",
        )
    mode_decision = check_approval_mode(approval.approval_id, approval.mode, mode)
    if not mode_decision.allowed:
        return mode_decision
    if approval.account_id != account_id:
        return refuse(
            ErrorCode.APPROVAL_ACCOUNT_MISMATCH,
            f"Approval {approval.approval_id} is for another account, not {account_id!r}.",
        )
    if approval.fingerprint != approval.preview_fingerprint:
        return refuse(
            ErrorCode.APPROVAL_PREVIEW_MISMATCH,
            f"Approval {approval.approval_id} does not match its preview's order any more.",
        )
    return ALLOW


# ----------------------------------------------------------------------------- order shape


def check_ticket_shape(
    *,
    quantity: Decimal,
    order_type: str,
    limit_price: Decimal | None,
    stop_price: Decimal | None,
    trailing_amount: Decimal | None,
    trailing_percent: Decimal | None,
) -> Decision:
    """Structural checks before any broker call: a positive quantity and the prices the type needs."""
    if not quantity.is_finite() or quantity <= 0:
        return refuse(
            ErrorCode.ORDER_QUANTITY_INVALID, f"Quantity {quantity} must be positive.", quantity=str(quantity)
        )
    for name, price in (("limit price", limit_price), ("stop price", stop_price)):
        if price is not None and (not price.is_finite() or price <= 0):
            return refuse(ErrorCode.ORDER_PRICE_INVALID, f"The {name} {price} must be positive.", price=str(price))
    if order_type in ("limit", "stop_limit") and limit_price is None:
        return refuse(ErrorCode.ORDER_LIMIT_PRICE_REQUIRED, f"A {order_type} order needs a limit price.")
    if order_type in ("stop", "stop_limit") and stop_price is None:
        return refuse(ErrorCode.ORDER_STOP_PRICE_REQUIRED, f"A {order_type} order needs a stop price.")
    if order_type == "trailing_stop":
        if (trailing_amount is None) == (trailing_percent is None):
            return refuse(
                ErrorCode.ORDER_TRAILING_OFFSET_REQUIRED,
                "A trailing-stop order needs exactly one of a trailing amount and a trailing percent.",
            )
        offset = trailing_amount if trailing_amount is not None else trailing_percent
        if (
            offset is None
            or not offset.is_finite()
            or offset <= 0
            or (trailing_percent is not None and trailing_percent >= 100)
        ):
            return refuse(
                ErrorCode.ORDER_TRAILING_OFFSET_INVALID, f"Trailing offset {offset} must be positive (percent < 100)."
            )
    elif trailing_amount is not None or trailing_percent is not None:
        return refuse(ErrorCode.ORDER_TRAILING_OFFSET_INVALID, "Trailing offsets apply only to trailing-stop orders.")
    return ALLOW


# ----------------------------------------------------------------------------- risk limits

_CODES: Final[Mapping[str, tuple[ErrorCode, ErrorCode]]] = {
    "order_type": (ErrorCode.ORDER_TYPE_REFUSED, ErrorCode.LIVE_ORDER_TYPE_REFUSED),
    "fractional": (ErrorCode.ORDER_FRACTIONAL_REFUSED, ErrorCode.LIVE_FRACTIONAL_REFUSED),
    "asset_class": (ErrorCode.ORDER_ASSET_CLASS_REFUSED, ErrorCode.LIVE_ASSET_CLASS_REFUSED),
    "symbol": (ErrorCode.ORDER_SYMBOL_REFUSED, ErrorCode.LIVE_SYMBOL_REFUSED),
    "quantity": (ErrorCode.ORDER_QUANTITY_LIMIT_REFUSED, ErrorCode.LIVE_QUANTITY_LIMIT_REFUSED),
    "quote_missing": (ErrorCode.ORDER_QUOTE_MISSING, ErrorCode.LIVE_MARKET_SNAPSHOT_MISSING),
    "quote_stale": (ErrorCode.ORDER_QUOTE_STALE, ErrorCode.LIVE_STALE_QUOTE),
    "notional": (ErrorCode.ORDER_NOTIONAL_LIMIT_REFUSED, ErrorCode.LIVE_NOTIONAL_LIMIT_REFUSED),
    "collar": (ErrorCode.ORDER_PRICE_COLLAR_REFUSED, ErrorCode.LIVE_PRICE_COLLAR_REFUSED),
}
"""Limit name → (preview code, live code)."""


def _code(limit: str, stage: Stage) -> ErrorCode:
    preview, live = _CODES[limit]
    return preview if stage == "preview" else live


def reference_price(quote: MarketSnapshot | None) -> Decimal | None:
    """The collar's reference: the bid/ask midpoint when both are positive, else the last price."""
    if quote is None:
        return None
    if quote.bid is not None and quote.ask is not None and quote.bid > 0 and quote.ask > 0:
        return (quote.bid + quote.ask) / 2
    if quote.last is not None and quote.last > 0:
        return quote.last
    return None


def side_quote(ticket: OrderTicket, quote: MarketSnapshot | None) -> Decimal | None:
    """The quote the order would fill against: the ask for a buy, the bid for a sell, else the last price."""
    if quote is None:
        return None
    side = quote.ask if ticket.side == "buy" else quote.bid
    if side is not None and side > 0:
        return side
    return quote.last if quote.last is not None and quote.last > 0 else None


def _buy_capped_by_limit(ticket: OrderTicket) -> bool:
    """A buy limit (or stop-limit) never fills above its limit: `limit × quantity` bounds it without a quote."""
    return ticket.side == "buy" and ticket.order_type in ("limit", "stop_limit") and ticket.limit_price is not None


def exposure_price(ticket: OrderTicket, quote: MarketSnapshot | None, slippage_bps: Decimal) -> Decimal | None:
    """The highest price per unit the order can plausibly fill at; None when it needs a quote it lacks.

    - buy limit, buy stop-limit: the limit (a buy never fills above it);
    - sell limit, sell stop-limit: the larger of the limit and the bid plus slippage (a sell far below the
      market fills at the market);
    - stop: the larger of the stop and the side's quote, plus slippage (it becomes a market order);
    - market: the side's quote plus slippage; trailing stop: the same, a buy's offset added.

    It is never less than the limit (or the stop) price.
    """
    if _buy_capped_by_limit(ticket):
        return ticket.limit_price
    market = side_quote(ticket, quote)
    if market is None:
        return None
    margin = 1 + slippage_bps / _BPS
    if ticket.order_type in ("limit", "stop_limit") and ticket.limit_price is not None:
        return max(ticket.limit_price, market * margin)
    if ticket.order_type == "stop" and ticket.stop_price is not None:
        return max(ticket.stop_price, market) * margin
    if ticket.order_type == "trailing_stop" and ticket.side == "buy":
        if ticket.trailing_amount is not None:
            return (market + ticket.trailing_amount) * margin
        if ticket.trailing_percent is not None:
            return market * (1 + ticket.trailing_percent / 100) * margin
    return market * margin


def is_resting(ticket: OrderTicket, quote: MarketSnapshot | None) -> bool:
    """True for a limit order priced on its own side of the market (a buy below the ask, a sell above the bid).

    Such an order waits in the book and cannot fill worse than its limit. Anything else (market, stop,
    trailing, a marketable limit, or no usable quote) is not resting.
    """
    market = side_quote(ticket, quote)
    if ticket.order_type != "limit" or ticket.limit_price is None or market is None:
        return False
    return ticket.limit_price < market if ticket.side == "buy" else ticket.limit_price > market


def needs_quote(ticket: OrderTicket, policy: RiskPolicy) -> bool:
    """True when the checks need a fresh quote: to bound the fill price, or for a price collar.

    Only a buy limit (or stop-limit) without a collar is bounded by its own price.
    """
    return not _buy_capped_by_limit(ticket) or policy.max_price_deviation_bps is not None


def check_risk(
    ticket: OrderTicket,
    policy: RiskPolicy,
    *,
    stage: Stage,
    quote: MarketSnapshot | None,
    usage: LiveUsage | None = None,
) -> Decision:
    """Every limit of `policy` for one order, in the documented order; the first breach refuses."""
    p = policy.policy_id
    if ticket.order_type not in policy.allowed_order_types:
        return refuse(
            _code("order_type", stage),
            f"Order type {ticket.order_type} is not in {p}.allowed_order_types {policy.allowed_order_types}.",
            limit=list(policy.allowed_order_types),
            value=ticket.order_type,
        )
    if not policy.allow_fractional and ticket.quantity != ticket.quantity.to_integral_value():
        return refuse(
            _code("fractional", stage), f"Quantity {ticket.quantity} is fractional; {p} allows whole quantities only."
        )
    if ticket.asset_class not in policy.allowed_asset_classes:
        return refuse(
            _code("asset_class", stage),
            f"Asset class {ticket.asset_class} is not in {p}.allowed_asset_classes {policy.allowed_asset_classes}.",
            limit=list(policy.allowed_asset_classes),
            value=ticket.asset_class,
        )
    if policy.allowed_symbols is not None and ticket.symbol.upper() not in {s.upper() for s in policy.allowed_symbols}:
        return refuse(
            _code("symbol", stage),
            f"Symbol {ticket.symbol} is not in {p}.allowed_symbols {policy.allowed_symbols}.",
            limit=list(policy.allowed_symbols),
            value=ticket.symbol,
        )
    if policy.max_quantity is not None and ticket.quantity > policy.max_quantity:
        return refuse(
            _code("quantity", stage),
            f"Quantity {ticket.quantity} exceeds {p}.max_quantity {policy.max_quantity}.",
            limit=str(policy.max_quantity),
            value=str(ticket.quantity),
        )
    quote_decision = _check_quote(ticket, policy, stage, quote)
    if not quote_decision.allowed:
        return quote_decision
    notional = order_notional(ticket, quote, policy)
    notional_decision = _check_notional(ticket, policy, stage, notional)
    if not notional_decision.allowed:
        return notional_decision
    collar = _check_collar(ticket, policy, stage, quote)
    if not collar.allowed or stage == "preview" or usage is None:
        return collar
    return check_live_budgets(policy, usage, notional)


def _check_quote(ticket: OrderTicket, policy: RiskPolicy, stage: Stage, quote: MarketSnapshot | None) -> Decision:
    if not needs_quote(ticket, policy):
        return ALLOW
    usable = side_quote(ticket, quote) if not _buy_capped_by_limit(ticket) else reference_price(quote)
    if quote is None or usable is None:
        return refuse(
            _code("quote_missing", stage), f"No usable quote for {ticket.symbol}: the order cannot be priced."
        )
    if quote.currency is not None and quote.currency != ticket.currency:
        return refuse(
            _code("quote_missing", stage),
            f"The quote for {ticket.symbol} is in {quote.currency}, the order in {ticket.currency}.",
        )
    max_age = policy.max_quote_age_seconds or DEFAULT_MARKET_QUOTE_MAX_AGE_SECONDS
    age = quote.staleness_seconds
    if age is None or age > max_age:
        shown = "unknown" if age is None else f"{age:.1f} s"
        return refuse(
            _code("quote_stale", stage),
            f"The quote for {ticket.symbol} is {shown} old; {policy.policy_id} accepts at most {max_age:g} s.",
            limit=max_age,
            value=age,
        )
    return ALLOW


def order_notional(ticket: OrderTicket, quote: MarketSnapshot | None, policy: RiskPolicy) -> Decimal | None:
    """Worst-case value of the order: `exposure_price` × quantity (None when it cannot be priced)."""
    price = exposure_price(ticket, quote, policy.slippage_bps)
    return price * ticket.quantity if price is not None else None


def _check_notional(ticket: OrderTicket, policy: RiskPolicy, stage: Stage, notional: Decimal | None) -> Decision:
    limits = policy.max_notional is not None or (stage == "live" and policy.max_notional_per_day is not None)
    if not limits:
        return ALLOW
    if ticket.currency != policy.currency:
        return refuse(
            _code("notional", stage),
            f"The order is in {ticket.currency}; {policy.policy_id} limits notional in {policy.currency} only.",
            value=ticket.currency,
        )
    if notional is None:
        return refuse(_code("quote_missing", stage), f"The order for {ticket.symbol} cannot be priced.")
    if policy.max_notional is not None and notional > policy.max_notional:
        return refuse(
            _code("notional", stage),
            f"Notional {notional} {ticket.currency} exceeds {policy.policy_id}.max_notional "
            f"{policy.max_notional} {policy.currency}.",
            limit=str(policy.max_notional),
            value=str(notional),
        )
    return ALLOW


def _check_collar(ticket: OrderTicket, policy: RiskPolicy, stage: Stage, quote: MarketSnapshot | None) -> Decision:
    if policy.max_price_deviation_bps is None:
        return ALLOW
    price = ticket.limit_price if ticket.limit_price is not None else ticket.stop_price
    reference = reference_price(quote)
    if price is None or reference is None:
        return ALLOW  # market orders trade at the market; a missing reference was refused above
    if policy.price_collar == "marketable":
        if ticket.limit_price is None:
            return ALLOW  # a stop's fill is counted at the market; only a limit through the market is collared
        through = price - reference if ticket.side == "buy" else reference - price
        deviation = max(through, Decimal(0)) / reference * _BPS
    else:
        deviation = abs(price - reference) / reference * _BPS
    if deviation > policy.max_price_deviation_bps:
        return refuse(
            _code("collar", stage),
            f"Price {price} is {deviation:.0f} bps from the reference {reference}; "
            f"{policy.policy_id}.max_price_deviation_bps is {policy.max_price_deviation_bps}.",
            limit=str(policy.max_price_deviation_bps),
            value=str(deviation.quantize(Decimal("0.01"))),
        )
    return ALLOW


def check_live_budgets(policy: RiskPolicy, usage: LiveUsage, notional: Decimal | None) -> Decision:
    """Orders per window, orders per trading day and notional per trading day, counting this order."""
    p = policy.policy_id
    if policy.max_orders_per_window is not None and usage.orders_in_window >= policy.max_orders_per_window:
        return refuse(
            ErrorCode.LIVE_FREQUENCY_LIMIT_REFUSED,
            f"{usage.orders_in_window} live orders in the last {policy.window_seconds} s; "
            f"{p}.max_orders_per_window is {policy.max_orders_per_window}.",
            limit=policy.max_orders_per_window,
            value=usage.orders_in_window,
        )
    if policy.max_orders_per_day is not None and usage.orders_today >= policy.max_orders_per_day:
        return refuse(
            ErrorCode.LIVE_DAILY_ORDER_LIMIT_REFUSED,
            f"{usage.orders_today} live orders today; {p}.max_orders_per_day is {policy.max_orders_per_day}.",
            limit=policy.max_orders_per_day,
            value=usage.orders_today,
        )
    if policy.max_notional_per_day is not None and notional is not None:
        total = usage.notional_today + notional
        if total > policy.max_notional_per_day:
            return refuse(
                ErrorCode.LIVE_DAILY_NOTIONAL_LIMIT_REFUSED,
                f"Today's live notional would be {total} {policy.currency}; "
                f"{p}.max_notional_per_day is {policy.max_notional_per_day}.",
                limit=str(policy.max_notional_per_day),
                value=str(total),
            )
    return ALLOW
