"""What each risk refusal tells the caller (its code and the limit and value in its details), and each limit
at its exact edge: equal to a limit is allowed, one step past it is refused."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from ibkr_gateway_core.errors import ErrorCode
from ibkr_gateway_core.models import MarketSnapshot
from ibkr_gateway_core.orders import LiveUsage, OrderTicket, RiskPolicy
from ibkr_gateway_core.orders.gates import (
    ALLOW,
    Stage,
    check_live_budgets,
    check_risk,
    order_notional,
    reference_price,
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
POLICY = RiskPolicy(policy_id="p")


def ticket(**changes: object) -> OrderTicket:
    return TICKET.model_copy(update=changes)


def policy(**changes: object) -> RiskPolicy:
    return POLICY.model_copy(update=changes)


def quote(**changes: object) -> MarketSnapshot:
    return QUOTE.model_copy(update=changes)


@pytest.mark.parametrize("stage", ["preview", "live"])
@pytest.mark.parametrize(
    ("order", "limits", "codes", "details"),
    [
        pytest.param(
            ticket(order_type="market", limit_price=None),
            policy(allowed_order_types=["limit"]),
            (ErrorCode.ORDER_TYPE_REFUSED, ErrorCode.LIVE_ORDER_TYPE_REFUSED),
            {"limit": ["limit"], "value": "market"},
            id="order-type",
        ),
        pytest.param(
            ticket(quantity=Decimal("1.5")),
            policy(),
            (ErrorCode.ORDER_FRACTIONAL_REFUSED, ErrorCode.LIVE_FRACTIONAL_REFUSED),
            {},
            id="fractional",
        ),
        pytest.param(
            ticket(asset_class="option"),
            policy(),
            (ErrorCode.ORDER_ASSET_CLASS_REFUSED, ErrorCode.LIVE_ASSET_CLASS_REFUSED),
            {"limit": ["stock", "etf"], "value": "option"},
            id="asset-class",
        ),
        pytest.param(
            ticket(symbol="MSFT"),
            policy(allowed_symbols=["aapl"]),
            (ErrorCode.ORDER_SYMBOL_REFUSED, ErrorCode.LIVE_SYMBOL_REFUSED),
            {"limit": ["aapl"], "value": "MSFT"},
            id="symbol",
        ),
        pytest.param(
            ticket(quantity=Decimal(11)),
            policy(max_quantity=Decimal(10)),
            (ErrorCode.ORDER_QUANTITY_LIMIT_REFUSED, ErrorCode.LIVE_QUANTITY_LIMIT_REFUSED),
            {"limit": "10", "value": "11"},
            id="quantity",
        ),
        pytest.param(
            ticket(limit_price=Decimal("100.01")),
            policy(max_notional=Decimal(1000)),
            (ErrorCode.ORDER_NOTIONAL_LIMIT_REFUSED, ErrorCode.LIVE_NOTIONAL_LIMIT_REFUSED),
            {"limit": "1000", "value": "1000.10"},
            id="notional",
        ),
        pytest.param(
            ticket(currency="EUR"),
            policy(max_notional=Decimal(1000)),
            (ErrorCode.ORDER_NOTIONAL_LIMIT_REFUSED, ErrorCode.LIVE_NOTIONAL_LIMIT_REFUSED),
            {"value": "EUR"},
            id="notional-currency",
        ),
        pytest.param(
            ticket(limit_price=Decimal(102)),
            policy(max_price_deviation_bps=Decimal(100), price_collar="both"),
            (ErrorCode.ORDER_PRICE_COLLAR_REFUSED, ErrorCode.LIVE_PRICE_COLLAR_REFUSED),
            {"limit": "100", "value": "200.00"},
            id="collar",
        ),
    ],
)
def test_each_refusal_names_its_limit_and_value(
    order: OrderTicket, limits: RiskPolicy, codes: tuple[ErrorCode, ErrorCode], details: dict[str, object], stage: str
) -> None:
    decision = check_risk(order, limits, stage="live" if stage == "live" else "preview", quote=QUOTE)
    assert (decision.allowed, decision.code, dict(decision.details)) == (
        False,
        codes[1] if stage == "live" else codes[0],
        details,
    )


def test_a_stale_quote_names_the_bound_and_its_age() -> None:
    stale = check_risk(
        ticket(side="sell"), policy(max_quote_age_seconds=5), stage="preview", quote=quote(staleness_seconds=5.5)
    )
    assert (stale.code, dict(stale.details)) == (ErrorCode.ORDER_QUOTE_STALE, {"limit": 5, "value": 5.5})
    at_bound = check_risk(
        ticket(side="sell"), policy(max_quote_age_seconds=5), stage="preview", quote=quote(staleness_seconds=5.0)
    )
    assert at_bound == ALLOW
    unknown = check_risk(ticket(side="sell"), policy(), stage="live", quote=quote(staleness_seconds=None))
    assert (unknown.code, dict(unknown.details)) == (ErrorCode.LIVE_STALE_QUOTE, {"limit": 60.0, "value": None})


@pytest.mark.parametrize(
    ("order", "limits"),
    [
        pytest.param(ticket(quantity=Decimal(10)), policy(max_quantity=Decimal(10)), id="quantity"),
        pytest.param(TICKET, policy(max_notional=Decimal(1000)), id="notional"),
        pytest.param(ticket(limit_price=Decimal(101)), policy(max_price_deviation_bps=Decimal(100)), id="collar"),
        pytest.param(ticket(symbol="aapl"), policy(allowed_symbols=["AAPL"]), id="symbol-any-case"),
        pytest.param(ticket(quantity=Decimal("2.0")), policy(), id="whole-decimal"),
    ],
)
def test_an_order_exactly_at_a_limit_is_allowed(order: OrderTicket, limits: RiskPolicy) -> None:
    assert check_risk(order, limits, stage="live", quote=QUOTE) == ALLOW


def test_live_budgets_name_their_limit_and_count_this_order() -> None:
    budgets = policy(max_orders_per_window=2, max_orders_per_day=3, max_notional_per_day=Decimal(500))
    window = check_live_budgets(budgets, LiveUsage(orders_in_window=2, orders_today=2, notional_today=Decimal(0)), None)
    assert (window.code, dict(window.details)) == (ErrorCode.LIVE_FREQUENCY_LIMIT_REFUSED, {"limit": 2, "value": 2})
    day = check_live_budgets(budgets, LiveUsage(orders_in_window=1, orders_today=3, notional_today=Decimal(0)), None)
    assert (day.code, dict(day.details)) == (ErrorCode.LIVE_DAILY_ORDER_LIMIT_REFUSED, {"limit": 3, "value": 3})
    usage = LiveUsage(orders_in_window=1, orders_today=2, notional_today=Decimal(400))
    over = check_live_budgets(budgets, usage, Decimal("100.01"))
    assert (over.code, dict(over.details)) == (
        ErrorCode.LIVE_DAILY_NOTIONAL_LIMIT_REFUSED,
        {"limit": "500", "value": "500.01"},
    )
    assert check_live_budgets(budgets, usage, Decimal(100)) == ALLOW
    assert check_live_budgets(budgets, usage, None) == ALLOW


def test_the_daily_notional_budget_is_a_live_limit_only() -> None:
    budget = policy(max_notional_per_day=Decimal(10))
    assert check_risk(ticket(currency="EUR"), budget, stage="preview", quote=QUOTE) == ALLOW
    live = check_risk(ticket(currency="EUR"), budget, stage="live", quote=QUOTE)
    assert live.code is ErrorCode.LIVE_NOTIONAL_LIMIT_REFUSED


def test_the_reference_price_is_the_midpoint_else_a_positive_last() -> None:
    assert reference_price(QUOTE) == Decimal(100)
    assert reference_price(quote(bid=Decimal(0))) == Decimal(100)
    assert reference_price(quote(ask=None, last=Decimal(99))) == Decimal(99)
    assert reference_price(quote(bid=None, last=Decimal(0))) is None
    assert reference_price(None) is None


def test_the_notional_is_the_exposure_price_times_the_quantity() -> None:
    assert order_notional(ticket(quantity=Decimal(3)), None, POLICY) == Decimal(300)
    market_sell = ticket(side="sell", order_type="market", limit_price=None, quantity=Decimal(2))
    assert order_notional(market_sell, QUOTE, policy(slippage_bps=Decimal(0))) == Decimal("199.80")
    assert order_notional(market_sell, None, POLICY) is None


S = Decimal("1.005")  # the default 50 bps slippage margin


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        pytest.param(
            {"order_type": "trailing_stop", "limit_price": None, "trailing_percent": Decimal(10)},
            Decimal("100.10") * Decimal("1.1") * S,
            id="buy-trailing-percent-above-the-ask",
        ),
        pytest.param(
            {"order_type": "trailing_stop", "side": "sell", "limit_price": None, "trailing_percent": Decimal(10)},
            Decimal("99.90") * S,
            id="sell-trailing-percent-at-the-bid",
        ),
        pytest.param(
            {"order_type": "stop_limit", "side": "sell", "limit_price": Decimal(1), "stop_price": Decimal(90)},
            Decimal("99.90") * S,
            id="sell-stop-limit-far-below-at-the-bid",
        ),
        pytest.param(
            {"order_type": "stop_limit", "side": "sell", "limit_price": Decimal(120), "stop_price": Decimal(119)},
            Decimal(120),
            id="sell-stop-limit-above-at-its-limit",
        ),
    ],
)
def test_trailing_and_stop_limits_count_at_their_worst_fill(changes: dict[str, object], expected: Decimal) -> None:
    """A buy trailing by a percentage can fill that far above the ask; a sell stop-limit never below its limit."""
    assert order_notional(ticket(quantity=Decimal(1), **changes), QUOTE, POLICY) == expected


@pytest.mark.parametrize("stage", ["preview", "live"])
def test_an_order_in_another_currency_than_the_notional_limit_is_refused_naming_it(stage: Stage) -> None:
    """A buy limit needs no quote to be priced, so the currency check is what stops a EUR order under a USD cap."""
    euro = ticket(currency="EUR")
    limited = policy(max_notional=Decimal(10**6))
    decision = check_risk(euro, limited, stage=stage, quote=None)
    expected = ErrorCode.ORDER_NOTIONAL_LIMIT_REFUSED if stage == "preview" else ErrorCode.LIVE_NOTIONAL_LIMIT_REFUSED
    assert (decision.code, decision.details) == (expected, {"value": "EUR"})
    assert "EUR" in decision.message and "USD" in decision.message
    assert check_risk(euro, POLICY, stage=stage, quote=None).allowed
