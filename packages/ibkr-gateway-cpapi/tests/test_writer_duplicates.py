"""A placement the broker refuses as a duplicate client order id: the writer looks the order up, and says
exactly why when it cannot tell (the lookup failed, or the broker does not list the order yet)."""

from decimal import Decimal

import pytest
from ibkr_gateway_core.errors import ErrorCode, GatewayError
from ibkr_gateway_core.orders import BrokerQuestion, OrderTicket, OrderWriter
from ibkr_gateway_cpapi.backend import CpapiBackend
from ibkr_gateway_cpapi.simulator import SimulatorState

pytestmark = pytest.mark.anyio

ACCOUNT = "DU1234567"


def ticket(**changes: object) -> OrderTicket:
    fields: dict[str, object] = {
        "account_id": ACCOUNT,
        "contract_id": 265598,
        "symbol": "AAPL",
        "asset_class": "stock",
        "currency": "USD",
        "side": "buy",
        "quantity": Decimal(10),
        "order_type": "limit",
        "limit_price": Decimal("210.00"),
    }
    return OrderTicket.model_validate(fields | changes)


def allow_all(question: BrokerQuestion) -> bool:
    return True


@pytest.fixture
def writer(backend: CpapiBackend) -> OrderWriter:
    return backend.order_writer()


async def duplicate_error(writer: OrderWriter) -> GatewayError:
    with pytest.raises(GatewayError) as caught:
        await writer.place(ticket(), client_order_id="k-1", confirm=allow_all, max_rounds=5)
    return caught.value


async def test_the_same_order_under_a_duplicate_id_is_that_order_with_its_status(
    writer: OrderWriter, sim: SimulatorState
) -> None:
    first = await writer.place(ticket(), client_order_id="k-1", confirm=allow_all, max_rounds=5)
    again = await writer.place(ticket(), client_order_id="k-1", confirm=allow_all, max_rounds=5)
    assert (again.broker_order_id, again.client_order_id, again.broker_status, again.status) == (
        first.broker_order_id,
        "k-1",
        first.broker_status,
        first.status,
    )
    assert first.broker_status is not None


async def test_a_duplicate_id_whose_lookup_fails_is_an_unknown_outcome_naming_the_lookup_error(
    writer: OrderWriter, sim: SimulatorState
) -> None:
    await writer.place(ticket(), client_order_id="k-1", confirm=allow_all, max_rounds=5)
    sim.fail_next(401, {"error": "not authenticated"}, path_contains="/iserver/account/orders")
    error = await duplicate_error(writer)
    assert error.code is ErrorCode.BROKER_OUTCOME_UNKNOWN
    assert "looking it up failed" in error.message
    assert error.details["client_order_id"] == "k-1"
    assert "already registered" in str(error.details["broker_message"])
    assert error.details["lookup_error"] == "BROKER_SESSION_REQUIRED"


async def test_a_duplicate_id_the_broker_does_not_list_yet_is_an_unknown_outcome(
    writer: OrderWriter, sim: SimulatorState
) -> None:
    await writer.place(ticket(), client_order_id="k-1", confirm=allow_all, max_rounds=5)
    sim.fail_next(200, {"orders": []}, times=2, path_contains="/iserver/account/orders")
    error = await duplicate_error(writer)
    assert error.code is ErrorCode.BROKER_OUTCOME_UNKNOWN
    assert "does not list it yet" in error.message
    assert error.details == {
        "broker_message": error.details["broker_message"],
        "client_order_id": "k-1",
    }
    assert "already registered" in str(error.details["broker_message"])
