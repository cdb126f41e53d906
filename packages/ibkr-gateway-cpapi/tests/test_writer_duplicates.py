"""A placement the broker refuses as a duplicate client order id: the writer looks the order up, and says
exactly why when it cannot tell (the lookup failed, or the broker does not list the order yet)."""

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import httpx2
import pytest
from ibkr_gateway_core.errors import ErrorCode, GatewayError
from ibkr_gateway_core.orders import BrokerQuestion, OrderTicket, OrderWriter
from ibkr_gateway_cpapi.backend import CpapiBackend
from ibkr_gateway_cpapi.simulator import SimulatorState

from .test_writer import mock_writer

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


# -- the requests of a lookup and a cancel, and each answer -------------------------------------

Route = Callable[[httpx2.Request], httpx2.Response | None]


def broker(route: Route) -> tuple[list[tuple[str, str, dict[str, str]]], Callable[[httpx2.Request], httpx2.Response]]:
    """A CPAPI stand-in with one account: `route` answers the rest; every request is recorded."""
    seen: list[tuple[str, str, dict[str, str]]] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        if request.url.path.endswith("/iserver/accounts"):
            return httpx2.Response(200, json={"accounts": [ACCOUNT]})
        seen.append((request.method, request.url.path.removeprefix("/v1/api"), dict(request.url.params)))
        answer = route(request)
        assert answer is not None, request.url.path
        return answer

    return seen, handler


def lookup_route(live: list[dict[str, Any]], trades: list[dict[str, Any]]) -> Route:
    def route(request: httpx2.Request) -> httpx2.Response | None:
        if request.url.path.endswith("/iserver/account/orders"):
            return httpx2.Response(200, json={"orders": live})
        if request.url.path.endswith("/iserver/account/trades"):
            return httpx2.Response(200, json=trades)
        return None

    return route


async def test_a_coid_lookup_asks_for_that_accounts_live_orders_then_a_weeks_fills() -> None:
    fill = {"execution_id": "e1", "order_ref": "k-1", "conid": 265598, "side": "B", "size": 2, "price": "10",
            "trade_time_r": 1718027122000}  # fmt: skip
    other = {**fill, "execution_id": "e2", "order_ref": "k-2"}
    seen, handler = broker(lookup_route([{"orderId": 5, "order_ref": "k-2", "status": "Submitted"}], [other, fill]))
    writer, http = mock_writer(handler)
    async with http:
        found = await writer.find_by_client_order_id(ACCOUNT, "k-1")
    assert seen == [
        ("GET", "/iserver/account/orders", {"accountId": ACCOUNT, "force": "true"}),
        ("GET", "/iserver/account/orders", {"accountId": ACCOUNT}),
        ("GET", "/iserver/account/trades", {"days": "7", "accountId": ACCOUNT}),
    ]
    assert found is not None
    assert (found.account_id, found.broker_order_id, found.client_order_id) == (ACCOUNT, "execution:e1", "k-1")
    assert (found.status, found.filled_quantity, found.average_fill_price) == ("filled", Decimal(2), Decimal(10))


async def test_a_live_order_without_an_account_field_is_the_asked_accounts() -> None:
    row = {"orderId": 7, "order_ref": "k-1", "conid": 265598, "side": "BUY", "status": "Submitted", "totalSize": 10}
    seen, handler = broker(lookup_route([row], []))
    writer, http = mock_writer(handler)
    async with http:
        found = await writer.find_by_client_order_id(ACCOUNT, "k-1")
    assert found is not None and (found.account_id, found.broker_order_id) == (ACCOUNT, "7")
    assert len(seen) == 2  # found among the live orders: no fills asked for


async def test_no_live_order_and_no_fill_under_the_coid_is_none() -> None:
    _, handler = broker(lookup_route([{"orderId": 5, "order_ref": "k-2"}], []))
    writer, http = mock_writer(handler)
    async with http:
        assert await writer.find_by_client_order_id(ACCOUNT, "k-1") is None


def cancel_route(status: int, body: object) -> Route:
    def route(request: httpx2.Request) -> httpx2.Response | None:
        return httpx2.Response(status, json=body) if request.method == "DELETE" else None

    return route


async def cancel_answered(status: int, body: object) -> Any:
    seen, handler = broker(cancel_route(status, body))
    writer, http = mock_writer(handler)
    async with http:
        ack = await writer.cancel(ACCOUNT, "77")
    assert seen == [("DELETE", f"/iserver/account/{ACCOUNT}/order/77", {})]
    return ack


@pytest.mark.parametrize(
    ("body", "accepted", "status", "order_id"),
    [
        pytest.param({"order_id": 77, "order_status": "Pending_Cancel"}, True, "Pending_Cancel", "77", id="pending"),
        pytest.param({"order_id": 78, "order_status": "Filled"}, False, "Filled", "78", id="too-late-other-id"),
        pytest.param({"msg": "Request was submitted"}, True, None, "77", id="message-only"),
        pytest.param({"msg": "Request was received"}, False, None, "77", id="other-message"),
        pytest.param({"order_id": "n/a", "order_status": "Cancelled"}, True, "Cancelled", "77", id="odd-id"),
    ],
)
async def test_each_cancel_answer_is_acknowledged_as_the_broker_gave_it(
    body: dict[str, object], accepted: bool, status: str | None, order_id: str
) -> None:
    ack = await cancel_answered(200, body)
    assert (ack.accepted, ack.broker_status, ack.broker_order_id) == (accepted, status, order_id)


async def test_a_cancel_refused_with_a_reason_is_not_accepted_and_a_server_error_is_raised() -> None:
    ack = await cancel_answered(400, {"error": "Order cannot be cancelled"})
    assert (ack.accepted, ack.message) == (False, "Order cannot be cancelled")
    for status, body, code in (
        (500, {"error": "internal"}, ErrorCode.BROKER_OUTCOME_UNKNOWN),  # it may have reached the broker
        (400, {}, ErrorCode.BROKER_BACKEND_UNAVAILABLE),  # a refusal without a reason is no answer to read
    ):
        _, handler = broker(cancel_route(status, body))
        writer, http = mock_writer(handler)
        async with http:
            with pytest.raises(GatewayError) as caught:
                await writer.cancel(ACCOUNT, "77")
        assert caught.value.code is code, status
