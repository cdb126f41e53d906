"""What the Client Portal writer reports for each broker answer to a placement or a cancel: the code, and the
details a caller (and the audit log) gets with it."""

from decimal import Decimal
from typing import Any

import pytest
from ibkr_gateway_core.errors import ErrorCode, GatewayError
from ibkr_gateway_core.orders import BrokerQuestion, OrderTicket, OrderWriter
from ibkr_gateway_cpapi.backend import CpapiBackend
from ibkr_gateway_cpapi.simulator import SimulatorState

pytestmark = pytest.mark.anyio

ACCOUNT = "DU1234567"
TICKET = OrderTicket(
    account_id=ACCOUNT,
    contract_id=265598,
    symbol="AAPL",
    asset_class="stock",
    currency="USD",
    side="buy",
    quantity=Decimal(10),
    order_type="limit",
    limit_price=Decimal("210.00"),
)


def allow_all(question: BrokerQuestion) -> bool:
    return True


@pytest.fixture
def writer(backend: CpapiBackend) -> OrderWriter:
    return backend.order_writer()


async def placement_error(writer: OrderWriter) -> GatewayError:
    with pytest.raises(GatewayError) as caught:
        await writer.place(TICKET, client_order_id="k-1", confirm=allow_all, max_rounds=5)
    return caught.value


@pytest.mark.parametrize(
    ("status", "body"),
    [(400, {"error": "Order rejected: size"}), (200, [{"error": "Order rejected: size"}])],
    ids=["http-400", "reply-error"],
)
async def test_a_rejected_placement_names_the_brokers_reason(
    writer: OrderWriter, sim: SimulatorState, status: int, body: Any
) -> None:
    sim.fail_next(status, body, path_contains="/orders")
    error = await placement_error(writer)
    assert (error.code, error.details) == (
        ErrorCode.ORDER_VALIDATION_FAILED,
        {"broker_message": "Order rejected: size", "client_order_id": "k-1", "reason": "broker_rejected"},
    )
    assert "untrusted broker text" in error.user_action


@pytest.mark.parametrize("body", [[{}], {"foo": 1}], ids=["empty-reply", "other-shape"])
async def test_an_undocumented_placement_answer_is_an_unknown_outcome_naming_the_coid(
    writer: OrderWriter, sim: SimulatorState, body: Any
) -> None:
    sim.fail_next(200, body, path_contains="/orders")
    error = await placement_error(writer)
    assert (error.code, error.details) == (ErrorCode.BROKER_OUTCOME_UNKNOWN, {"client_order_id": "k-1"})


async def test_each_cancel_answer_as_the_writer_reports_it(writer: OrderWriter, sim: SimulatorState) -> None:
    placed = await writer.place(TICKET, client_order_id="k-ok", confirm=allow_all, max_rounds=5)
    order = placed.broker_order_id
    sim.fail_next(400, {"error": "OrderID 999 doesn't exist"}, path_contains="/order/")
    with pytest.raises(GatewayError) as caught:
        await writer.cancel(ACCOUNT, order)
    assert (caught.value.code, caught.value.details) == (
        ErrorCode.INPUT_UNKNOWN_ORDER,
        {"broker_message": "OrderID 999 doesn't exist"},
    )
    sim.fail_next(404, {"error": "Order cannot be cancelled"}, path_contains="/order/")
    refused = await writer.cancel(ACCOUNT, order)
    assert (refused.accepted, refused.broker_status, refused.message) == (False, None, "Order cannot be cancelled")
    sim.fail_next(200, {"order_status": "Pending Cancel", "order_id": "not-a-number"}, path_contains="/order/")
    pending = await writer.cancel(ACCOUNT, order)
    assert (pending.accepted, pending.broker_status, pending.broker_order_id) == (True, "Pending Cancel", order)
    sim.fail_next(200, {"order_status": "Filled"}, path_contains="/order/")
    assert (await writer.cancel(ACCOUNT, order)).accepted is False
    sim.fail_next(200, {"msg": "Request was submitted", "order_id": int(str(order))}, path_contains="/order/")
    submitted = await writer.cancel(ACCOUNT, order)
    assert (submitted.accepted, submitted.message, submitted.broker_order_id) == (True, "Request was submitted", order)
    sim.fail_next(502, {"error": "bad gateway"}, path_contains="/order/")
    with pytest.raises(GatewayError) as unanswered:
        await writer.cancel(ACCOUNT, order)
    assert unanswered.value.code is ErrorCode.BROKER_OUTCOME_UNKNOWN


async def test_a_cancel_of_an_id_that_is_not_a_broker_order_id_sends_nothing(
    writer: OrderWriter, sim: SimulatorState
) -> None:
    before = len(sim.requests)
    with pytest.raises(GatewayError) as caught:
        await writer.cancel(ACCOUNT, "local-candidate-x")
    assert caught.value.code is ErrorCode.INPUT_UNKNOWN_ORDER
    assert len(sim.requests) == before
