"""Order bodies the writer refuses to build: the code, the field named in the details, and a message."""

from decimal import Decimal

import pytest
from ibkr_gateway_core.errors import ErrorCode, GatewayError
from ibkr_gateway_core.orders import OrderTicket
from ibkr_gateway_cpapi._order_body import (
    bracket_body,
    check_account_id,
    check_client_order_id,
    validate_ticket,
)

PARENT = OrderTicket(
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
TAKE_PROFIT = PARENT.model_copy(update={"side": "sell", "limit_price": Decimal(110)})
STOP_LOSS = PARENT.model_copy(
    update={"side": "sell", "order_type": "stop", "limit_price": None, "stop_price": Decimal(90)}
)


@pytest.mark.parametrize(
    "leg",
    [{"contract_id": 8314}, {"account_id": "DU7654321"}],
    ids=["other-contract", "other-account"],
)
def test_a_bracket_leg_of_another_contract_or_account_is_refused(leg: dict[str, object]) -> None:
    with pytest.raises(GatewayError) as caught:
        bracket_body(PARENT, TAKE_PROFIT, STOP_LOSS.model_copy(update=leg), "k-1")
    assert (caught.value.code, caught.value.details) == (ErrorCode.ORDER_VALIDATION_FAILED, {"field": "contract_id"})
    assert "bracket" in caught.value.message


def test_an_account_id_that_is_not_letters_and_digits_is_refused_naming_the_field() -> None:
    with pytest.raises(GatewayError) as caught:
        check_account_id("DU1/../x")
    assert (caught.value.code, caught.value.details) == (ErrorCode.ORDER_VALIDATION_FAILED, {"field": "account_id"})
    assert "account id" in caught.value.message
    assert bracket_body(PARENT, TAKE_PROFIT, STOP_LOSS, "k-1")["orders"]


def refusal(ticket: OrderTicket) -> GatewayError:
    with pytest.raises(GatewayError) as caught:
        validate_ticket(ticket)
    return caught.value


@pytest.mark.parametrize(
    ("change", "field"),
    [
        pytest.param({"contract_id": 0}, "contract_id", id="conid-zero"),
        pytest.param({"limit_price": None}, "limit_price", id="limit-without-price"),
        pytest.param({"stop_price": Decimal(99)}, "stop_price", id="limit-with-stop"),
        pytest.param({"trailing_percent": Decimal(1)}, "trailing_percent", id="limit-with-trailing"),
        pytest.param({"limit_price": Decimal(0)}, "limit_price", id="price-zero"),
        pytest.param({"limit_price": Decimal("1234567890.123456")}, "limit_price", id="sixteen-digits"),
    ],
)
def test_each_ticket_the_body_cannot_carry_is_refused_naming_its_field(change: dict[str, object], field: str) -> None:
    error = refusal(PARENT.model_copy(update=change))
    assert (error.code, error.details) == (ErrorCode.ORDER_VALIDATION_FAILED, {"field": field})


def test_the_edges_a_ticket_may_reach() -> None:
    validate_ticket(PARENT.model_copy(update={"contract_id": 1, "limit_price": Decimal("123456789.012345")}))
    assert check_client_order_id("k") == "k"  # one character is enough
    with pytest.raises(GatewayError) as caught:
        check_client_order_id("")
    assert (caught.value.code, caught.value.details) == (
        ErrorCode.ORDER_VALIDATION_FAILED,
        {"field": "client_order_id"},
    )
    assert (
        refusal(PARENT.model_copy(update={"contract_id": 0})).message
        == "The contract id must be a positive IBKR conid."
    )
    assert refusal(PARENT.model_copy(update={"limit_price": None})).message == "A limit order needs limit_price."


_TYPED: dict[str, dict[str, object]] = {
    "market": {"order_type": "market", "limit_price": None},
    "stop": {"order_type": "stop", "limit_price": None, "stop_price": Decimal(90)},
    "stop_limit": {"order_type": "stop_limit", "limit_price": Decimal(95), "stop_price": Decimal(90)},
    "trailing_stop": {"order_type": "trailing_stop", "limit_price": None, "trailing_amount": Decimal(2)},
}


@pytest.mark.parametrize(
    ("order_type", "change", "field", "message"),
    [
        ("market", {"limit_price": Decimal(1)}, "limit_price", "A market order takes no limit_price."),
        ("market", {"stop_price": Decimal(1)}, "stop_price", "A market order takes no stop_price."),
        ("market", {"trailing_amount": Decimal(1)}, "trailing_amount", "A market order takes no trailing_amount."),
        ("market", {"trailing_percent": Decimal(1)}, "trailing_percent", "A market order takes no trailing_percent."),
        ("stop", {"stop_price": None}, "stop_price", "A stop order needs stop_price."),
        ("stop", {"limit_price": Decimal(1)}, "limit_price", "A stop order takes no limit_price."),
        ("stop", {"trailing_amount": Decimal(1)}, "trailing_amount", "A stop order takes no trailing_amount."),
        ("stop", {"trailing_percent": Decimal(1)}, "trailing_percent", "A stop order takes no trailing_percent."),
        ("stop_limit", {"limit_price": None}, "limit_price", "A stop_limit order needs limit_price."),
        ("stop_limit", {"stop_price": None}, "stop_price", "A stop_limit order needs stop_price."),
        ("stop_limit", {"trailing_amount": Decimal(1)}, "trailing_amount", None),
        ("stop_limit", {"trailing_percent": Decimal(1)}, "trailing_percent", None),
        ("trailing_stop", {"trailing_percent": Decimal(1)}, "trailing_amount", None),
        ("trailing_stop", {"trailing_amount": None}, "trailing_amount", None),
        ("trailing_stop", {"limit_price": Decimal(1)}, "limit_price", "A trailing_stop order takes no limit_price."),
    ],
)  # fmt: skip
def test_each_order_type_takes_its_prices_and_no_others(
    order_type: str, change: dict[str, object], field: str, message: str | None
) -> None:
    error = refusal(PARENT.model_copy(update={**_TYPED[order_type], **change}))
    assert (error.code, error.details) == (ErrorCode.ORDER_VALIDATION_FAILED, {"field": field})
    if message is not None:
        assert error.message == message
