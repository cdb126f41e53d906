"""Server-rendered HTML of the desk: every value escaped, no script but the vendored `desk.js`."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from html import escape
from typing import Any

from ibkr_gateway_core.models import MarketSnapshot, Money
from ibkr_gateway_core.orders import PreviewEntry, RiskPolicy
from ibkr_gateway_core.orders.gates import reference_price

from .notify import masked_account
from .sessions import DeskSession


def e(value: object) -> str:
    """`value` as escaped HTML text; None as an em dash."""
    if value is None:
        return "—"
    return escape(str(value), quote=True)


def money(value: Money | None) -> str:
    """`1,234.50 USD`, or a dash."""
    if value is None:
        return "—"
    return f"{value.amount:,.2f} {e(value.currency)}"


def number(value: Decimal | float | None, places: int = 2) -> str:
    """A number with thousands separators, or a dash."""
    if value is None:
        return "—"
    return f"{value:,.{places}f}"


def when(value: datetime | None) -> str:
    """A UTC time as `2026-12-06 04:01:02 UTC`."""
    if value is None:
        return "—"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@dataclass(frozen=True, slots=True)
class Check:
    """One row of the risk table: the limit, this order's value, and whether it passes."""

    name: str
    limit: str
    value: str
    ok: bool | None
    """None: not applicable (no limit set)."""


@dataclass(frozen=True, slots=True)
class PendingCard:
    """Everything the page shows about one pending preview."""

    entry: PreviewEntry
    quote: MarketSnapshot | None
    quote_error: str | None
    exposure: Decimal | None
    checks: Sequence[Check]
    verdict: tuple[bool, str]
    """(passes now, text): the preview policy run again on the fresh quote."""
    mode: str = "paper"
    """The approval's default mode: the account's mode at the broker."""


def layout(
    title: str,
    body: str,
    *,
    session: DeskSession | None,
    kill_switch: str | None = None,
    stamp: str = "",
    refresh_seconds: float = 2.0,
) -> str:
    """The page frame: header, navigation, flash messages and `body`."""
    nav = ""
    if session is not None:
        who = session.principal
        switch = ""
        if kill_switch is not None:
            css = "pill-ok" if kill_switch == "open" else "pill-halt"
            label = "Live trading allowed" if kill_switch == "open" else "Kill switch CLOSED"
            switch = f'<span class="pill {css}" id="kill-switch-pill">{label}</span>'
        nav = (
            '<nav><a href="/">Pending</a><a href="/history">Decisions</a><a href="/orders">Orders &amp; fills</a>'
            '<a href="/limits">Limits</a></nav>'
            f'<div class="who">{switch}<span class="subject" id="who">{e(who.subject)}'
            f" <small>({e(_role(session))})</small></span>"
            f'<form method="post" action="/logout" class="inline">{csrf(session)}'
            '<button class="link" type="submit">Sign out</button></form></div>'
        )
    flashes = ""
    if session is not None and session.flash:
        items = "".join(
            f'<div class="flash flash-{e(kind)}" role="status">{text}</div>' for kind, text in session.flash
        )
        session.flash.clear()
        flashes = f'<div class="flashes">{items}</div>'
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{e(title)} · ibkr-agent approval desk</title>"
        '<link rel="stylesheet" href="/static/desk.css"><script src="/static/desk.js" defer></script></head>'
        f'<body data-stamp="{e(stamp)}" data-refresh="{refresh_seconds:g}">'
        f'<header><div class="brand">ibkr-agent <b>approval desk</b></div>{nav}</header>'
        f"<main>{flashes}<h1>{e(title)}</h1>{body}</main></body></html>"
    )


def _role(session: DeskSession) -> str:
    if session.principal.kind == "local_operator":
        return "operator, one-time link"
    return "approver"


def csrf(session: DeskSession) -> str:
    """The hidden CSRF field of a form."""
    return f'<input type="hidden" name="csrf_token" value="{e(session.csrf_token)}">'


def login_page(*, oidc: bool, message: str | None = None) -> str:
    """The sign-in page."""
    parts = ['<section class="card narrow">']
    if message:
        parts.append(f'<div class="flash flash-error" role="alert">{message}</div>')
    parts.append("<p>Only people listed as approvers may sign in. Agents never approve here.</p>")
    if oidc:
        parts.append('<p><a class="button primary" id="login-oidc" href="/login">Sign in with OpenID Connect</a></p>')
    parts.append(
        '<p class="muted">At the machine running the gateway, <code>ibkr-agent desk serve</code> prints a one-time '
        "sign-in link.</p></section>"
    )
    return layout("Sign in", "".join(parts), session=None)


def refusal_page(title: str, text: str, *, status_code: int) -> str:
    """A page that says why a request was refused."""
    body = (
        f'<section class="card narrow"><div class="flash flash-error" role="alert" id="refusal">{text}</div>'
        '<p><a href="/">Back to the desk</a> · <a href="/login">Sign in again</a></p>'
        f'<p class="muted">HTTP {status_code}</p>'
        "</section>"
    )
    return layout(title, body, session=None)


def dashboard(
    session: DeskSession,
    cards: Sequence[PendingCard],
    *,
    kill_switch: Any,
    ttl_choices: Sequence[int],
    default_ttl: int,
    stamp: str,
    refresh_seconds: float,
) -> str:
    """Pending previews, each with approve and deny, and the kill switch."""
    parts: list[str] = []
    if not cards:
        parts.append(
            '<section class="card empty" id="no-pending"><p>No preview is waiting for a decision.</p>'
            f'<p class="muted">This page refreshes itself when an agent asks (checked every {refresh_seconds:g} s).</p>'
            "</section>"
        )
    parts.extend(_pending_card(session, card, ttl_choices, default_ttl) for card in cards)
    parts.append(_kill_switch_card(session, kill_switch))
    body = f'<div class="summary">{len(cards)} waiting for a decision</div>' + "".join(parts)
    return layout(
        "Pending approvals",
        body,
        session=session,
        kill_switch=kill_switch.state,
        stamp=stamp,
        refresh_seconds=refresh_seconds,
    )


def _pending_card(session: DeskSession, card: PendingCard, ttl_choices: Sequence[int], default_ttl: int) -> str:
    entry = card.entry
    p = entry.preview
    t = p.ticket
    pid = e(p.preview_id)
    price_bits = [
        ("Limit", t.limit_price),
        ("Stop", t.stop_price),
        ("Trailing amount", t.trailing_amount),
        ("Trailing %", t.trailing_percent),
    ]
    prices = "".join(f"<dt>{name}</dt><dd>{e(v)}</dd>" for name, v in price_bits if v is not None)
    ticket = (
        "<dl class='grid'>"
        f"<dt>Account</dt><dd>{e(masked_account(p.account_id))}</dd>"
        f"<dt>Contract</dt><dd>{e(t.symbol)} · {e(t.asset_class)} · conid {e(t.contract_id)}</dd>"
        f"<dt>Side</dt><dd class='side-{e(t.side)}'>{e(t.side.upper())}</dd>"
        f"<dt>Quantity</dt><dd>{e(t.quantity)}</dd>"
        f"<dt>Type</dt><dd>{e(t.order_type)}</dd>{prices}"
        f"<dt>Time in force</dt><dd>{e(t.time_in_force)}{' · outside RTH' if t.outside_regular_hours else ''}</dd>"
        f"<dt>Route</dt><dd>{e(t.exchange)} · {e(t.currency)}</dd>"
        "</dl>"
    )
    q = card.quote
    if q is not None:
        quote = (
            "<dl class='grid'>"
            f"<dt>Bid</dt><dd>{number(q.bid)}</dd><dt>Ask</dt><dd>{number(q.ask)}</dd>"
            f"<dt>Last</dt><dd>{number(q.last)}{' (prior close)' if q.last_is_prior_close else ''}</dd>"
            f"<dt>Data</dt><dd>{e(q.data_status)} · {number(q.staleness_seconds, 1)} s old</dd>"
            "</dl>"
        )
    else:
        quote = f"<p class='warn'>No fresh quote: {e(card.quote_error)}</p>"
    whatif = (
        "<dl class='grid'>"
        f"<dt>Estimated cost</dt><dd>{money(p.estimated_cost)}</dd>"
        f"<dt>Commission</dt><dd>{money(p.estimated_commission)}</dd>"
        f"<dt>Total</dt><dd>{money(p.estimated_total)}</dd>"
        f"<dt>Initial margin change</dt><dd>{number(p.initial_margin_change)}</dd>"
        f"<dt>Maint. margin change</dt><dd>{number(p.maintenance_margin_change)}</dd>"
        f"<dt>Equity with loan after</dt><dd>{number(p.equity_with_loan_after)}</dd>"
        "</dl>"
    )
    if p.warnings:
        whatif += (
            "<p class='muted'>Broker warnings (untrusted text):</p><ul class='warnings'>"
            + "".join(f"<li>{e(w)}</li>" for w in p.warnings)
            + "</ul>"
        )
    rows = "".join(
        f"<tr class='{'pass' if c.ok else 'fail' if c.ok is False else 'na'}'><td>{e(c.name)}</td><td>{e(c.limit)}</td>"
        f"<td>{e(c.value)}</td><td>{'✔ pass' if c.ok else '✘ breach' if c.ok is False else 'no limit'}</td></tr>"
        for c in card.checks
    )
    passes, verdict = card.verdict
    risk = (
        f"<p class='verdict {'pass' if passes else 'fail'}'>{e(verdict)}</p>"
        f"<table class='checks'><thead><tr><th>Check ({e(p.risk_policy_id)})</th><th>Limit</th><th>This order</th>"
        f"<th>Result</th></tr></thead><tbody>{rows}</tbody></table>"
    )
    exposure = f"{number(card.exposure)} {e(t.currency)}" if card.exposure is not None else "cannot be priced"
    options = "".join(
        f"<option value='{ttl}'{' selected' if ttl == default_ttl else ''}>{_duration(ttl)}</option>"
        for ttl in ttl_choices
    )
    modes = "".join(
        f"<option value='{m}'{' selected' if m == card.mode else ''}>{m}</option>" for m in ("paper", "live")
    )
    asked = (
        f"<span class='agent'>{e(p.created_by)}</span> <small>({e(entry.created_by_kind)})</small> asked at "
        f"{when(p.created_at)} · preview expires {when(p.expires_at)}"
    )
    actions = (
        f"<div class='actions'>"
        f"<form method='post' action='/previews/{pid}/approve' class='approve'>{csrf(session)}"
        f"<input type='hidden' name='fingerprint' value='{e(p.fingerprint)}'>"
        f"<label>For a <select name='mode'>{modes}</select> submit</label>"
        f"<label>valid for <select name='ttl_seconds'>{options}</select></label>"
        f"<button type='submit' class='primary' id='approve-{pid}'>Approve</button></form>"
        f"<form method='post' action='/previews/{pid}/deny' class='deny'>{csrf(session)}"
        f"<input name='reason' maxlength='500' placeholder='Reason (shown to the agent)' required>"
        f"<button type='submit' class='danger' id='deny-{pid}'>Deny</button></form>"
        "</div>"
    )
    return (
        f"<section class='card pending' id='preview-{pid}' data-fingerprint='{e(p.fingerprint)}'>"
        f"<div class='card-head'><h2>{e(t.side.upper())} {e(t.quantity)} {e(t.symbol)} "
        f"<small>{e(t.order_type)}{' @ ' + e(t.limit_price) if t.limit_price is not None else ''}</small></h2>"
        f"<div class='exposure'>Worst-case exposure <b>{exposure}</b></div></div>"
        f"<p class='asked'>{asked}</p>"
        "<div class='columns'>"
        f"<div><h3>Ticket</h3>{ticket}</div><div><h3>Fresh quote</h3>{quote}</div>"
        f"<div><h3>Broker what-if</h3>{whatif}</div></div>"
        f"<h3>Risk checks</h3>{risk}"
        f"<p class='fingerprint'>Fingerprint <code>{e(p.fingerprint[:16])}…</code> · "
        f"<a href='/audit/{pid}'>audit trail</a></p>{actions}</section>"
    )


def _duration(seconds: int) -> str:
    if seconds % 3600 == 0:
        return f"{seconds // 3600} h"
    if seconds % 60 == 0:
        return f"{seconds // 60} min"
    return f"{seconds} s"


def _kill_switch_card(session: DeskSession, state: Any) -> str:
    closed = state.state == "closed"
    status = (
        "<p class='halt-text'>The kill switch is <b>closed</b>: no new live order leaves the gateway.</p>"
        if closed
        else "<p>The kill switch is <b>open</b>: live orders may be sent when every other gate allows them.</p>"
    )
    if state.changed_at is None:
        detail = "<p class='muted'>Closed since the gateway started; the operator opens it.</p>"
    else:
        detail = (
            f"<p class='muted'>Last changed by {e(state.changed_by)} at {when(state.changed_at)}"
            f"{' — ' + e(state.reason) if state.reason else ''}</p>"
        )
    if closed:
        form = (
            f"<form method='post' action='/kill-switch/open'>{csrf(session)}"
            "<input name='reason' maxlength='500' placeholder='Why it is safe to resume' required>"
            "<button type='submit' id='kill-switch-open'>Open the kill switch</button></form>"
        )
    else:
        form = (
            f"<form method='post' action='/kill-switch/close'>{csrf(session)}"
            "<input name='reason' maxlength='500' placeholder='Why trading must stop' required>"
            "<button type='submit' class='danger' id='kill-switch-close'>Close the kill switch — halt</button></form>"
        )
    css = "closed" if closed else "open"
    return (
        f"<section class='card killswitch {css}' id='kill-switch'><h2>Kill switch</h2>{status}{detail}{form}</section>"
    )


def history(session: DeskSession, entries: Iterable[PreviewEntry], approvals: Iterable[Any], kill_switch: str) -> str:
    """Decided and expired previews, and approvals with a revoke button for unused ones."""
    rows = "".join(
        f"<tr><td>{when(x.preview.created_at)}</td><td>{e(x.preview.created_by)}</td>"
        f"<td>{e(x.preview.ticket.side.upper())} {e(x.preview.ticket.quantity)} {e(x.preview.ticket.symbol)}</td>"
        f"<td><span class='status status-{e(x.status)}'>{e(x.status)}</span>"
        f"{' — ' + e(x.denial.reason) + ' (' + e(x.denial.denied_by) + ')' if x.denial else ''}</td>"
        f"<td><a href='/audit/{e(x.preview.preview_id)}'>audit trail</a></td></tr>"
        for x in entries
    )
    approval_rows = ""
    for a in approvals:
        revoke = ""
        if a.status == "approved":
            revoke = (
                f"<form method='post' action='/approvals/{e(a.approval_id)}/revoke' class='inline'>{csrf(session)}"
                f"<button type='submit' class='danger small' id='revoke-{e(a.approval_id)}'>Revoke</button></form>"
            )
        approval_rows += (
            f"<tr><td>{when(a.approved_at)}</td><td>{e(a.approved_by)} <small>({e(a.approved_by_kind)})</small></td>"
            f"<td><code>{e(a.preview_id)}</code></td>"
            f"<td><span class='status status-{e(a.status)}'>{e(a.status)}</span></td>"
            f"<td>{when(a.expires_at)}</td><td>{revoke}</td></tr>"
        )
    body = (
        "<section class='card'><h2>Previews</h2><table><thead><tr><th>Asked</th><th>Agent</th><th>Order</th>"
        f"<th>Status</th><th></th></tr></thead><tbody>{rows or _none(5)}</tbody></table></section>"
        "<section class='card'><h2>Approvals</h2><table><thead><tr><th>Approved</th><th>By</th><th>Preview</th>"
        "<th>Status</th><th>Expires</th><th></th></tr></thead>"
        f"<tbody>{approval_rows or _none(6)}</tbody></table></section>"
    )
    return layout("Decisions", body, session=session, kill_switch=kill_switch)


def _none(columns: int) -> str:
    return f"<tr><td colspan='{columns}' class='muted'>None yet.</td></tr>"


def orders_page(
    session: DeskSession, accounts: Sequence[tuple[Any, list[Any], list[Any], str | None]], kill_switch: str
) -> str:
    """Recent orders and fills of every visible account."""
    parts: list[str] = []
    for account, orders, fills, problem in accounts:
        label = f"{masked_account(account.account_id)} · {e(account.account_mode)}"
        if problem:
            parts.append(f"<section class='card'><h2>{label}</h2><p class='warn'>{e(problem)}</p></section>")
            continue
        order_rows = "".join(
            f"<tr><td>{e(o.broker_order_id)}</td><td>{e(o.symbol)}</td><td>{e((o.side or '').upper())}</td>"
            f"<td>{e(o.quantity)}</td><td>{e(o.filled_quantity)}</td><td>{e(o.order_type)}</td>"
            f"<td>{e(o.limit_price)}</td><td><span class='status'>{e(o.status)}</span></td></tr>"
            for o in orders
        )
        fill_rows = "".join(
            f"<tr><td>{e(f.execution_id)}</td><td>{e(f.symbol)}</td><td>{e(f.side.upper())}</td><td>{e(f.quantity)}</td>"
            f"<td>{number(f.price)}</td><td>{number(f.commission)}</td><td>{e(f.broker_order_id)}</td></tr>"
            for f in fills
        )
        parts.append(
            f"<section class='card'><h2>Account {label}</h2><h3>Orders</h3>"
            "<table><thead><tr><th>Order</th><th>Symbol</th>"
            "<th>Side</th><th>Qty</th><th>Filled</th><th>Type</th><th>Limit</th><th>Status</th></tr></thead>"
            f"<tbody>{order_rows or _none(8)}</tbody></table><h3>Fills (today)</h3><table><thead><tr><th>Execution</th>"
            "<th>Symbol</th><th>Side</th><th>Qty</th><th>Price</th><th>Commission</th><th>Order</th></tr></thead>"
            f"<tbody>{fill_rows or _none(7)}</tbody></table></section>"
        )
    return layout("Orders and fills", "".join(parts), session=session, kill_switch=kill_switch)


def limits_page(session: DeskSession, rows: Sequence[tuple[Any, Any, str | None]], kill_switch: str) -> str:
    """Live budgets used today, per account."""
    parts: list[str] = []
    for account, limits, problem in rows:
        label = f"{masked_account(account.account_id)} · {e(account.account_mode)}"
        if limits is None:
            parts.append(f"<section class='card'><h2>{label}</h2><p class='warn'>{e(problem)}</p></section>")
            continue

        def bar(used: Decimal | int, limit: Decimal | int | None) -> str:
            if limit is None:
                return (
                    f"{number(Decimal(used), 0 if isinstance(used, int) else 2)} <span class='muted'>(no limit)</span>"
                )
            share = min(Decimal(used) / Decimal(limit) * 100, Decimal(100)) if limit else Decimal(100)
            return (
                f"<div class='meter'><span style='--fill:{share:.0f}%'></span></div>"
                f"{number(Decimal(used), 0 if isinstance(used, int) else 2)} of "
                f"{number(Decimal(limit), 0 if isinstance(limit, int) else 2)}"
            )

        symbols = ", ".join(limits.allowed_symbols) if limits.allowed_symbols is not None else "any"
        parts.append(
            f"<section class='card'><h2>Account {label}</h2>"
            f"<p class='muted'>Policy {e(limits.policy_id)} · trading day "
            f"{e(limits.trading_day)} ({e(limits.timezone)}) · kill switch {e(limits.kill_switch)}</p>"
            "<table class='limits'><tbody>"
            f"<tr><th>Orders in the last {e(limits.window_seconds)} s</th>"
            f"<td>{bar(limits.orders_in_window, limits.max_orders_per_window)}</td></tr>"
            f"<tr><th>Orders today</th><td>{bar(limits.orders_today, limits.max_orders_per_day)}</td></tr>"
            f"<tr><th>Notional today ({e(limits.currency)})</th>"
            f"<td>{bar(limits.notional_today, limits.max_notional_per_day)}</td></tr>"
            f"<tr><th>Per order</th><td>at most {e(limits.max_quantity)} shares, "
            f"{number(limits.max_notional)} {e(limits.currency)}</td></tr>"
            f"<tr><th>Symbols</th><td>{e(symbols)}</td></tr>"
            "</tbody></table></section>"
        )
    return layout("Limits used today", "".join(parts), session=session, kill_switch=kill_switch)


def audit_page(
    session: DeskSession, preview_id: str, events: Sequence[Any], kill_switch: str, entry: PreviewEntry | None = None
) -> str:
    """The audit trail of one preview: its creation, approvals, denial and submits."""
    rows = "".join(
        f"<tr class='decision-{e(ev.decision)}'><td>{when(ev.timestamp)}</td><td>{e(ev.event_type)}</td>"
        f"<td>{e(ev.tool_name)}</td><td>{e(ev.principal_subject)} <small>({e(ev.principal_kind)})</small></td>"
        f"<td>{e(ev.result_status)}</td><td>{e(ev.error_code)}</td><td><code>{e(ev.event_id[:12])}</code></td></tr>"
        for ev in events
    )
    head = ""
    if entry is not None:
        t = entry.preview.ticket
        price = f" @ {e(t.limit_price)}" if t.limit_price is not None else ""
        head = (
            f"<section class='card'><h2>{e(t.side.upper())} {e(t.quantity)} {e(t.symbol)} <small>{e(t.order_type)}"
            f"{price}</small> <span class='status status-{e(entry.status)}'>{e(entry.status)}</span></h2>"
            f"<p class='asked'>Asked by <span class='agent'>{e(entry.preview.created_by)}</span> "
            f"({e(entry.created_by_kind)}) at {when(entry.preview.created_at)} · account "
            f"{e(masked_account(entry.preview.account_id))}</p></section>"
        )
    body = head + (
        f"<section class='card'><p>Every audited event that names preview <code>{e(preview_id)}</code> or one of its "
        "approvals, oldest first.</p><table><thead><tr><th>Time</th><th>Event</th><th>Operation</th><th>Who</th>"
        f"<th>Result</th><th>Code</th><th>Event id</th></tr></thead><tbody>{rows or _none(7)}</tbody></table></section>"
    )
    return layout("Audit trail", body, session=session, kill_switch=kill_switch)


def risk_checks(
    entry: PreviewEntry, policy: RiskPolicy, quote: MarketSnapshot | None, exposure: Decimal | None
) -> list[Check]:
    """The preview policy's limits against this order, one row each."""
    t = entry.preview.ticket
    checks = [
        Check(
            "Order type",
            ", ".join(policy.allowed_order_types),
            t.order_type,
            t.order_type in policy.allowed_order_types,
        ),
        Check(
            "Whole quantity",
            "fractions allowed" if policy.allow_fractional else "whole only",
            str(t.quantity),
            policy.allow_fractional or t.quantity == t.quantity.to_integral_value(),
        ),
        Check(
            "Asset class",
            ", ".join(policy.allowed_asset_classes),
            t.asset_class,
            t.asset_class in policy.allowed_asset_classes,
        ),
        Check(
            "Symbol",
            "any" if policy.allowed_symbols is None else ", ".join(policy.allowed_symbols),
            t.symbol,
            None if policy.allowed_symbols is None else t.symbol.upper() in {s.upper() for s in policy.allowed_symbols},
        ),
        Check(
            "Quantity",
            str(policy.max_quantity) if policy.max_quantity is not None else "—",
            str(t.quantity),
            None if policy.max_quantity is None else t.quantity <= policy.max_quantity,
        ),
        Check(
            f"Worst-case notional (slippage {policy.slippage_bps} bps)",
            f"{number(policy.max_notional)} {policy.currency}" if policy.max_notional is not None else "—",
            f"{number(exposure)} {t.currency}" if exposure is not None else "cannot be priced",
            None
            if policy.max_notional is None
            else exposure is not None and t.currency == policy.currency and exposure <= policy.max_notional,
        ),
    ]
    if policy.max_price_deviation_bps is not None:
        limit = f"{policy.max_price_deviation_bps} bps ({policy.price_collar})"
        price = t.limit_price if t.limit_price is not None else t.stop_price
        ref = reference_price(quote)
        if price is None or ref is None or (policy.price_collar == "marketable" and t.limit_price is None):
            checks.append(Check("Price collar", limit, "priced at the market", None))
        else:
            if policy.price_collar == "marketable":
                through = price - ref if t.side == "buy" else ref - price
                deviation = max(through, Decimal(0)) / ref * 10_000
                shown = f"{deviation:.0f} bps through {ref:.2f}"
            else:
                deviation = abs(price - ref) / ref * 10_000
                shown = f"{deviation:.0f} bps from {ref:.2f}"
            checks.append(Check("Price collar", limit, shown, deviation <= policy.max_price_deviation_bps))
    if quote is not None:
        age = quote.staleness_seconds
        limit = policy.max_quote_age_seconds
        checks.append(
            Check(
                "Quote age",
                f"{limit:g} s" if limit is not None else "—",
                f"{age:.1f} s" if age is not None else "unknown",
                None if limit is None else age is not None and age <= limit,
            )
        )
    return checks
