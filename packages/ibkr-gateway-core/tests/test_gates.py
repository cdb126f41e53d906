"""The pure gates as tables: one row per refusal, each with its stable code (our decision, issue 4)."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from ibkr_gateway_core.errors import ErrorCode
from ibkr_gateway_core.models import MarketSnapshot
from ibkr_gateway_core.orders import LiveUsage, OrderTicket, RiskPolicy
from ibkr_gateway_core.orders.gates import (
    ApprovalState,
    LiveSwitches,
    check_approval,
    check_approval_ttl,
    check_approver,
    check_kill_switch,
    check_live_budgets,
    check_live_switches,
    check_no_unknown_outcome,
    check_paper_account,
    check_risk,
    check_self_approval,
    check_ticket_shape,
    exposure_price,
    is_resting,
)

NOW = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)

TICKET = OrderTicket(
    account_id="DU1234567",
    contract_id=265598,
    symbol="AAPL",
    asset_class="stock",
    currency="USD",
    side="buy",
    quantity=Decimal(10),
    order_type="limit",
    limit_price=Decimal(100),
)

QUOTE = MarketSnapshot(
    contract_id=265598,
    currency="USD",
    bid=Decimal("99.90"),
    ask=Decimal("100.10"),
    last=Decimal(100),
    data_status="live",
    received_at=NOW,
    staleness_seconds=1.0,
)

POLICY = RiskPolicy(
    policy_id="p",
    max_quantity=Decimal(10),
    max_notional=Decimal(1000),
    allowed_symbols=["AAPL"],
    max_price_deviation_bps=Decimal(100),
    max_quote_age_seconds=5,
)


def ticket(**changes: object) -> OrderTicket:
    return TICKET.model_copy(update=changes)


@pytest.mark.parametrize(
    ("order", "policy", "quote", "expected"),
    [
        pytest.param(TICKET, POLICY, QUOTE, None, id="within-every-limit"),
        pytest.param(
            ticket(order_type="market", limit_price=None),
            POLICY.model_copy(update={"allowed_order_types": ["limit"]}),
            QUOTE,
            "ORDER_TYPE_REFUSED",
            id="order-type",
        ),
        pytest.param(ticket(quantity=Decimal("1.5")), POLICY, QUOTE, "ORDER_FRACTIONAL_REFUSED", id="fractional"),
        pytest.param(ticket(asset_class="option"), POLICY, QUOTE, "ORDER_ASSET_CLASS_REFUSED", id="asset-class"),
        pytest.param(ticket(symbol="MSFT"), POLICY, QUOTE, "ORDER_SYMBOL_REFUSED", id="symbol"),
        pytest.param(ticket(quantity=Decimal(11)), POLICY, QUOTE, "ORDER_QUANTITY_LIMIT_REFUSED", id="over-quantity"),
        pytest.param(TICKET, POLICY, None, "ORDER_QUOTE_MISSING", id="collar-without-quote"),
        pytest.param(
            TICKET, POLICY, QUOTE.model_copy(update={"staleness_seconds": 6.0}), "ORDER_QUOTE_STALE", id="stale-quote"
        ),
        pytest.param(
            ticket(limit_price=Decimal("100.01")), POLICY, QUOTE, "ORDER_NOTIONAL_LIMIT_REFUSED", id="over-notional"
        ),
        pytest.param(
            ticket(order_type="market", limit_price=None, quantity=Decimal(10)),
            POLICY.model_copy(update={"max_price_deviation_bps": None}),
            QUOTE,
            "ORDER_NOTIONAL_LIMIT_REFUSED",
            id="market-priced-from-the-ask",
        ),
        pytest.param(
            ticket(quantity=Decimal(9), limit_price=Decimal(102)),
            POLICY,
            QUOTE,
            "ORDER_PRICE_COLLAR_REFUSED",
            id="outside-collar",
        ),
        pytest.param(ticket(quantity=Decimal(9), limit_price=Decimal(101)), POLICY, QUOTE, None, id="at-collar"),
        pytest.param(ticket(currency="EUR"), POLICY, QUOTE, "ORDER_QUOTE_MISSING", id="quote-in-another-currency"),
    ],
)
def test_preview_risk_checks_name_the_limit(
    order: OrderTicket, policy: RiskPolicy, quote: MarketSnapshot | None, expected: str | None
) -> None:
    """Each preview limit refuses with its own code, never one lumped code (the Rust system's weak spot)."""
    decision = check_risk(order, policy, stage="preview", quote=quote)
    assert decision.code == (ErrorCode(expected) if expected else None), decision.message
    if expected:
        assert policy.policy_id in decision.message or "quote" in decision.message.lower()


@pytest.mark.parametrize(
    ("order", "usage", "expected"),
    [
        pytest.param(ticket(quantity=Decimal(11)), LiveUsage(), "LIVE_QUANTITY_LIMIT_REFUSED", id="quantity"),
        pytest.param(ticket(symbol="MSFT"), LiveUsage(), "LIVE_SYMBOL_REFUSED", id="symbol"),
        pytest.param(ticket(asset_class="future"), LiveUsage(), "LIVE_ASSET_CLASS_REFUSED", id="asset-class"),
        pytest.param(ticket(limit_price=Decimal(200)), LiveUsage(), "LIVE_NOTIONAL_LIMIT_REFUSED", id="notional"),
        pytest.param(
            ticket(quantity=Decimal(5), limit_price=Decimal(110)), LiveUsage(), "LIVE_PRICE_COLLAR_REFUSED", id="collar"
        ),
        pytest.param(
            ticket(quantity=Decimal(1)), LiveUsage(orders_in_window=3), "LIVE_FREQUENCY_LIMIT_REFUSED", id="frequency"
        ),
        pytest.param(
            ticket(quantity=Decimal(1)), LiveUsage(orders_today=5), "LIVE_DAILY_ORDER_LIMIT_REFUSED", id="daily-orders"
        ),
        pytest.param(
            ticket(quantity=Decimal(1)),
            LiveUsage(notional_today=Decimal(1950)),
            "LIVE_DAILY_NOTIONAL_LIMIT_REFUSED",
            id="daily-notional",
        ),
        pytest.param(
            ticket(quantity=Decimal(1)),
            LiveUsage(orders_in_window=2, orders_today=4, notional_today=Decimal(1900)),
            None,
            id="last-of-every-budget",
        ),
    ],
)
def test_live_limits_refuse_with_live_codes(order: OrderTicket, usage: LiveUsage, expected: str | None) -> None:
    """Live submit re-checks the policy with `LIVE_*` codes and counts this order against the budgets."""
    policy = POLICY.model_copy(
        update={"max_orders_per_window": 3, "max_orders_per_day": 5, "max_notional_per_day": Decimal(2000)}
    )
    decision = check_risk(order, policy, stage="live", quote=QUOTE, usage=usage)
    assert decision.code == (ErrorCode(expected) if expected else None), decision.message


def test_stale_live_quote_is_refused_with_its_age() -> None:
    """A quote older than max_quote_age_seconds never prices or collars a live order."""
    decision = check_risk(TICKET, POLICY, stage="live", quote=QUOTE.model_copy(update={"staleness_seconds": 30.0}))
    assert decision.code is ErrorCode.LIVE_STALE_QUOTE
    assert "30.0 s" in decision.message


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        pytest.param({"quantity": Decimal(0)}, "ORDER_QUANTITY_INVALID", id="zero-quantity"),
        pytest.param({"quantity": Decimal("NaN")}, "ORDER_QUANTITY_INVALID", id="nan-quantity"),
        pytest.param({"limit_price": None}, "ORDER_LIMIT_PRICE_REQUIRED", id="limit-without-price"),
        pytest.param({"limit_price": Decimal(-1)}, "ORDER_PRICE_INVALID", id="negative-price"),
        pytest.param({"order_type": "stop", "limit_price": None}, "ORDER_STOP_PRICE_REQUIRED", id="stop-without-stop"),
        pytest.param(
            {"order_type": "trailing_stop", "limit_price": None},
            "ORDER_TRAILING_OFFSET_REQUIRED",
            id="trailing-without-offset",
        ),
        pytest.param(
            {"order_type": "trailing_stop", "limit_price": None, "trailing_amount": Decimal(0)},
            "ORDER_TRAILING_OFFSET_INVALID",
            id="zero-trailing",
        ),
        pytest.param({"trailing_percent": Decimal(1)}, "ORDER_TRAILING_OFFSET_INVALID", id="trailing-on-a-limit"),
        pytest.param({"order_type": "market", "limit_price": None}, None, id="market"),
    ],
)
def test_ticket_shape(changes: dict[str, object], expected: str | None) -> None:
    """Structural checks run before any broker call."""
    fields: dict[str, object] = {
        "quantity": Decimal(1),
        "order_type": "limit",
        "limit_price": Decimal(100),
        "stop_price": None,
        "trailing_amount": None,
        "trailing_percent": None,
        **changes,
    }
    decision = check_ticket_shape(**fields)  # type: ignore[arg-type]
    assert decision.code == (ErrorCode(expected) if expected else None)


APPROVAL = ApprovalState(
    approval_id="ap-1",
    status="approved",
    account_id="DU1234567",
    expires_at=NOW + timedelta(seconds=300),
    fingerprint="f1",
    preview_fingerprint="f1",
    mode="paper",
)


@pytest.mark.parametrize(
    ("approval", "account", "now", "expected"),
    [
        pytest.param(APPROVAL, "DU1234567", NOW, None, id="valid"),
        pytest.param(None, "DU1234567", NOW, "APPROVAL_NOT_FOUND", id="unknown"),
        pytest.param(APPROVAL, "DU1234567", NOW + timedelta(seconds=300), "APPROVAL_EXPIRED", id="at-expiry"),
        pytest.param(APPROVAL, "DU1234567", NOW + timedelta(seconds=299), None, id="one-second-before-expiry"),
        pytest.param(
            ApprovalState("ap-1", "consumed", "DU1234567", NOW + timedelta(seconds=300), "f1", "f1", "paper"),
            "DU1234567",
            NOW,
            "APPROVAL_CONSUMED",
            id="consumed",
        ),
        pytest.param(
            ApprovalState("ap-1", "revoked", "DU1234567", NOW + timedelta(seconds=300), "f1", "f1", "paper"),
            "DU1234567",
            NOW,
            "APPROVAL_REVOKED",
            id="revoked",
        ),
        pytest.param(APPROVAL, "DU7654321", NOW, "APPROVAL_ACCOUNT_MISMATCH", id="other-account"),
        pytest.param(
            ApprovalState("ap-1", "approved", "DU1234567", NOW + timedelta(seconds=300), "f1", "f2", "paper"),
            "DU1234567",
            NOW,
            "APPROVAL_PREVIEW_MISMATCH",
            id="preview-changed",
        ),
        pytest.param(
            ApprovalState("ap-1", "approved", "DU1234567", NOW + timedelta(seconds=300), "f1", "f1", "live"),
            "DU1234567",
            NOW,
            "APPROVAL_MODE_MISMATCH",
            id="live-approval-for-paper",
        ),
        pytest.param(
            ApprovalState("ap-1", "approved", "DU1234567", NOW + timedelta(seconds=300), "f1", "f1", None),
            "DU1234567",
            NOW,
            "APPROVAL_MODE_MISMATCH",
            id="approval-without-mode",
        ),
    ],
)
def test_approval_gate(approval: ApprovalState | None, account: str, now: datetime, expected: str | None) -> None:
    """An approval is single use, expiring, revocable and bound to one mode, one account and one exact order."""
    decision = check_approval(approval, account, now, mode="paper")
    assert decision.code == (ErrorCode(expected) if expected else None)


def test_approval_ttl_outside_bounds_is_refused_not_clamped() -> None:
    """We refuse an out-of-range TTL instead of silently clamping it (the Rust clamp window was undocumented)."""
    assert check_approval_ttl(29, 30, 3600).code is ErrorCode.APPROVAL_TTL_OUT_OF_RANGE
    assert check_approval_ttl(3601, 30, 3600).code is ErrorCode.APPROVAL_TTL_OUT_OF_RANGE
    assert check_approval_ttl(30, 30, 3600).allowed


A = "https://as.example"


@pytest.mark.parametrize(
    ("approver", "creator", "forbidden", "expected"),
    [
        pytest.param(("remote", A, "alice"), ("remote", A, "alice"), True, "APPROVAL_SELF_FORBIDDEN", id="remote-self"),
        pytest.param(("remote", A, "bob"), ("remote", A, "alice"), True, None, id="another-principal"),
        pytest.param(("remote", "https://b", "alice"), ("remote", A, "alice"), True, None, id="another-issuer"),
        pytest.param(("remote", A, "alice"), ("local_agent", None, "alice"), True, None, id="another-kind"),
        pytest.param(("local_operator", None, "op"), ("local_operator", None, "op"), True, None, id="operator-self"),
        pytest.param(("remote", A, "alice"), ("remote", A, "alice"), False, None, id="rule-off"),
    ],
)
def test_self_approval(
    approver: tuple[str, str | None, str], creator: tuple[str, str | None, str], forbidden: bool, expected: str | None
) -> None:
    """Nobody approves their own preview, compared as (kind, issuer, subject); the operator at the CLI may."""
    decision = check_self_approval(approver=approver, creator=creator, forbidden=forbidden)
    assert decision.code == (ErrorCode(expected) if expected else None)


@pytest.mark.parametrize(
    ("approver", "kind", "expected"),
    [
        pytest.param(True, "local_operator", None, id="approver"),
        pytest.param(False, "local_agent", "APPROVAL_APPROVER_REQUIRED", id="stdio-agent"),
        pytest.param(False, "remote", "APPROVAL_APPROVER_REQUIRED", id="unlisted-remote"),
    ],
)
def test_only_approvers_approve(approver: bool, kind: str, expected: str | None) -> None:
    decision = check_approver(approver=approver, kind=kind)
    assert decision.code == (ErrorCode(expected) if expected else None)


ALL_ON = LiveSwitches(True, True, True, True, True)


@pytest.mark.parametrize(
    ("switches", "expected"),
    [
        pytest.param(ALL_ON, None, id="all-on"),
        pytest.param(LiveSwitches(False, True, True, True, True), "LIVE_TRADING_DISABLED", id="not-enabled"),
        pytest.param(LiveSwitches(True, False, True, True, True), "LIVE_SCOPE_MISSING", id="scope-not-confirmed"),
        pytest.param(LiveSwitches(True, True, False, True, True), "LIVE_ACCOUNT_NOT_ALLOWLISTED", id="not-allowlisted"),
        pytest.param(LiveSwitches(True, True, True, False, True), "LIVE_MIGRATION_REQUIRED", id="not-acknowledged"),
        pytest.param(LiveSwitches(True, True, True, True, False), "LIVE_POLICY_UNKNOWN", id="unknown-policy"),
        pytest.param(LiveSwitches(False, False, False, False, False), "LIVE_TRADING_DISABLED", id="first-gate-wins"),
    ],
)
def test_live_switch_gates_in_documented_order(switches: LiveSwitches, expected: str | None) -> None:
    """The live enablement gates refuse in one documented order, one code each."""
    decision = check_live_switches("U7654321", switches, policy_id="p")
    assert decision.code == (ErrorCode(expected) if expected else None)


def test_kill_switch_and_paper_account_gates() -> None:
    """A closed switch refuses new live orders; paper needs the broker's own paper signal."""
    assert check_kill_switch(False).code is ErrorCode.LIVE_KILL_SWITCH_CLOSED
    assert check_kill_switch(True).allowed
    assert check_paper_account("U7654321", "live").code is ErrorCode.PAPER_ACCOUNT_REQUIRED
    assert check_paper_account("DU1234567", "unknown").code is ErrorCode.PAPER_ACCOUNT_REQUIRED
    assert check_paper_account("DU1234567", "paper").allowed


def test_an_unknown_outcome_blocks_new_orders_of_the_account() -> None:
    """An earlier order with an unknown outcome refuses new ones and names its cOID; none lets them pass."""
    assert check_no_unknown_outcome(None).allowed
    decision = check_no_unknown_outcome("agw-1")
    assert (decision.code, decision.details) == (ErrorCode.ORDER_OUTCOME_PENDING, {"client_order_id": "agw-1"})


def test_budgets_without_limits_allow() -> None:
    """A policy without budgets never refuses on usage."""
    assert check_live_budgets(RiskPolicy(policy_id="open"), LiveUsage(10**6, 10**6, Decimal(10**9)), None).allowed


S = Decimal("1.005")  # the default 50 bps slippage margin


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        pytest.param({}, Decimal(100), id="buy-limit-is-its-limit"),
        pytest.param({"limit_price": Decimal(1000)}, Decimal(1000), id="buy-limit-far-above-is-its-limit"),
        pytest.param({"side": "sell", "limit_price": Decimal(1)}, Decimal("99.90") * S, id="sell-far-below-at-bid"),
        pytest.param({"side": "sell", "limit_price": Decimal(120)}, Decimal(120), id="resting-sell-at-limit"),
        pytest.param({"order_type": "market", "limit_price": None}, Decimal("100.10") * S, id="market-buy-at-ask"),
        pytest.param(
            {"order_type": "market", "side": "sell", "limit_price": None}, Decimal("99.90") * S, id="market-sell-at-bid"
        ),
        pytest.param(
            {"order_type": "stop", "limit_price": None, "stop_price": Decimal(1)},
            Decimal("100.10") * S,
            id="buy-stop-below-market-at-ask",
        ),
        pytest.param(
            {"order_type": "stop", "limit_price": None, "stop_price": Decimal(150)},
            Decimal(150) * S,
            id="buy-stop-above-market-at-stop",
        ),
        pytest.param(
            {"order_type": "trailing_stop", "limit_price": None, "trailing_amount": Decimal(5)},
            Decimal("105.10") * S,
            id="buy-trailing-with-offset",
        ),
    ],
)
def test_exposure_is_the_worst_case_fill(changes: dict[str, object], expected: Decimal) -> None:
    """Orders are counted at the price they can fill at, never below their own limit."""
    assert exposure_price(ticket(**changes), QUOTE, Decimal(50)) == expected


def test_exposure_without_a_quote_is_unknown_except_for_a_buy_limit() -> None:
    assert exposure_price(ticket(), None, Decimal(50)) == Decimal(100)
    assert exposure_price(ticket(side="sell"), None, Decimal(50)) is None
    assert exposure_price(ticket(order_type="market", limit_price=None), None, Decimal(50)) is None


def test_resting_means_on_its_own_side_of_the_market() -> None:
    assert is_resting(ticket(limit_price=Decimal(99)), QUOTE)
    assert not is_resting(ticket(limit_price=Decimal("100.10")), QUOTE)
    assert is_resting(ticket(side="sell", limit_price=Decimal(101)), QUOTE)
    assert not is_resting(ticket(side="sell", limit_price=Decimal("99.90")), QUOTE)
    assert not is_resting(ticket(order_type="market", limit_price=None), QUOTE)
    assert not is_resting(ticket(limit_price=Decimal(99)), None)


def test_a_marketable_collar_bounds_only_the_price_through_the_market() -> None:
    collar = RiskPolicy(policy_id="c", max_price_deviation_bps=Decimal(100), price_collar="marketable")
    assert check_risk(ticket(limit_price=Decimal(50)), collar, stage="preview", quote=QUOTE).allowed
    assert check_risk(ticket(limit_price=Decimal(101)), collar, stage="preview", quote=QUOTE).allowed
    through = check_risk(ticket(limit_price=Decimal("101.01")), collar, stage="live", quote=QUOTE)
    assert through.code is ErrorCode.LIVE_PRICE_COLLAR_REFUSED
    sell = check_risk(ticket(side="sell", limit_price=Decimal("98.99")), collar, stage="preview", quote=QUOTE)
    assert sell.code is ErrorCode.ORDER_PRICE_COLLAR_REFUSED
    both = RiskPolicy(policy_id="b", max_price_deviation_bps=Decimal(100))
    assert check_risk(ticket(limit_price=Decimal(50)), both, stage="preview", quote=QUOTE).code is (
        ErrorCode.ORDER_PRICE_COLLAR_REFUSED
    )
