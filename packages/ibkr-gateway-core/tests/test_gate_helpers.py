"""Small helpers of the gates and keyed writes, one row per case."""

from decimal import Decimal

import pytest
from ibkr_gateway_core.errors import ErrorCode, GatewayError
from ibkr_gateway_core.orders.gates import ALLOW, first_refusal, refuse
from ibkr_gateway_core.orders.keyed_writes import worst_notional

FIRST = refuse(ErrorCode.ORDER_NOTIONAL_LIMIT_REFUSED, "first")
SECOND = refuse(ErrorCode.ORDER_QUANTITY_LIMIT_REFUSED, "second")


def test_first_refusal_is_the_first_refused_decision_or_allow() -> None:
    assert first_refusal() == ALLOW
    assert first_refusal(ALLOW, ALLOW) == ALLOW
    assert first_refusal(ALLOW, FIRST, SECOND) == FIRST
    assert first_refusal(SECOND, ALLOW, FIRST) == SECOND


def test_worst_notional_is_the_largest_known_leg() -> None:
    assert worst_notional([]) is None
    assert worst_notional([None, None]) is None
    assert worst_notional([Decimal(5), None, Decimal(7), Decimal(6)]) == Decimal(7)
    assert worst_notional([None, Decimal(3)]) == Decimal(3)


def test_a_refusal_without_a_human_message_is_a_programming_error() -> None:
    with pytest.raises(TypeError, match="needs a human message"):
        GatewayError(ErrorCode.ORDER_VALIDATION_FAILED, None)  # type: ignore[arg-type]
    assert GatewayError(ErrorCode.ORDER_VALIDATION_FAILED, "").message == ""
