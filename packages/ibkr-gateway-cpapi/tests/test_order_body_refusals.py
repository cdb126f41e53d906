"""Order bodies the writer refuses to build: the code, the field named in the details, and a message."""

from decimal import Decimal

import pytest
from ibkr_gateway_core.errors import ErrorCode, GatewayError
from ibkr_gateway_core.orders import OrderTicket
from ibkr_gateway_cpapi._order_body import bracket_body, check_account_id

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
