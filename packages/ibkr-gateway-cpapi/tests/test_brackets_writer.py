"""ClientPortalOrderWriter brackets and modifications: the exact CPAPI bodies, the acknowledgements, the
reply chain, refusals, and the simulator's bracket engine (held exits, OCA, cancels, modify questions)."""

import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any, cast

import anyio
import httpx2
import pytest
from ibkr_gateway_core.errors import ErrorCode, GatewayError
from ibkr_gateway_core.orders import BrokerQuestion, OrderTicket
from ibkr_gateway_cpapi.backend import CpapiBackend
from ibkr_gateway_cpapi.simulator import QuestionRule, SimulatorState
from ibkr_gateway_cpapi.writer import ClientPortalOrderWriter

from .test_writer import AAPL, ACCOUNT, allow_all, mock_writer, refuse_all, ticket

pytestmark = pytest.mark.anyio


def legs() -> tuple[OrderTicket, OrderTicket, OrderTicket]:
    parent = ticket(quantity=Decimal(2), limit_price=Decimal(200))
    take_profit = parent.model_copy(update={"side": "sell", "limit_price": Decimal(230)})
    stop_loss = parent.model_copy(
        update={"side": "sell", "order_type": "stop", "limit_price": None, "stop_price": Decimal(190)}
    )
    return parent, take_profit, stop_loss


@pytest.fixture
def writer(backend: CpapiBackend) -> ClientPortalOrderWriter:
    return cast(ClientPortalOrderWriter, backend.order_writer())


async def test_a_bracket_is_one_request_whose_exits_name_the_parents_coid() -> None:
    """CPAPI: the parent carries `cOID`; the exits carry `parentId` = that cOID and no cOID of their own."""
    bodies: list[dict[str, Any]] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        if request.url.path.endswith("/iserver/accounts"):
            return httpx2.Response(200, json={"accounts": [ACCOUNT]})
        bodies.append(json.loads(request.content))
        return httpx2.Response(
            200,
            json=[
                {"order_id": "11", "order_status": "Submitted", "local_order_id": "k-1"},
                {"order_id": "12", "order_status": "PreSubmitted"},
                {"order_id": "13", "order_status": "PreSubmitted"},
            ],
        )

    writer, http = mock_writer(handler)
    async with http:
        placed = await writer.place_bracket(*legs(), client_order_id="k-1", confirm=allow_all, max_rounds=5)
    [body] = bodies
    parent, take_profit, stop_loss = cast(list[dict[str, Any]], body["orders"])
    assert parent["cOID"] == "k-1" and "parentId" not in parent
    assert (take_profit["parentId"], stop_loss["parentId"]) == ("k-1", "k-1")
    assert "cOID" not in take_profit and "cOID" not in stop_loss
    assert (take_profit["side"], take_profit["orderType"], take_profit["price"]) == ("SELL", "LMT", 230)
    assert (stop_loss["side"], stop_loss["orderType"], stop_loss["price"]) == ("SELL", "STP", 190)
    assert placed.broker_order_id == "11"
    assert [(leg.role, leg.broker_order_id, leg.broker_status) for leg in placed.legs] == [
        ("parent", "11", "Submitted"),
        ("take_profit", "12", "PreSubmitted"),
        ("stop_loss", "13", "PreSubmitted"),
    ]


async def test_a_missing_exit_acknowledgement_leaves_that_legs_id_unknown() -> None:
    """Never invent an id: an exit the broker did not acknowledge is reported without one."""

    def handler(request: httpx2.Request) -> httpx2.Response:
        if request.url.path.endswith("/iserver/accounts"):
            return httpx2.Response(200, json={"accounts": [ACCOUNT]})
        return httpx2.Response(200, json=[{"order_id": "11", "order_status": "Submitted", "local_order_id": "k-1"}])

    writer, http = mock_writer(handler)
    async with http:
        placed = await writer.place_bracket(*legs(), client_order_id="k-1", confirm=allow_all, max_rounds=5)
    assert [(leg.broker_order_id, leg.status) for leg in placed.legs[1:]] == [(None, "unknown"), (None, "unknown")]


async def test_legs_of_different_contracts_are_refused_before_sending() -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        raise AssertionError("nothing may be sent")

    parent, take_profit, stop_loss = legs()
    writer, http = mock_writer(handler)
    async with http:
        with pytest.raises(GatewayError) as caught:
            await writer.place_bracket(
                parent,
                take_profit.model_copy(update={"contract_id": 272093}),
                stop_loss,
                client_order_id="k-1",
                confirm=allow_all,
                max_rounds=5,
            )
    assert caught.value.code is ErrorCode.ORDER_VALIDATION_FAILED


async def test_a_modify_sends_one_whole_ticket_object_without_coid() -> None:
    """CPAPI: the modify body is a single ticket (not wrapped) repeating every field; the answer's
    `local_order_id` is the original cOID."""
    seen: list[tuple[str, object]] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        if request.url.path.endswith("/iserver/accounts"):
            return httpx2.Response(200, json={"accounts": [ACCOUNT]})
        seen.append((request.url.path, json.loads(request.content)))
        return httpx2.Response(200, json=[{"order_id": "77", "order_status": "Submitted", "local_order_id": "orig"}])

    writer, http = mock_writer(handler)
    async with http:
        placed = await writer.modify("77", ticket(limit_price=Decimal("211.5")), confirm=allow_all, max_rounds=5)
    [(path, body)] = seen
    assert path.endswith(f"/iserver/account/{ACCOUNT}/order/77")
    assert isinstance(body, dict) and "orders" not in body and "cOID" not in body
    assert (body["conid"], body["side"], body["orderType"], body["price"], body["quantity"]) == (
        AAPL,
        "BUY",
        "LMT",
        211.5,
        10,
    )
    assert (placed.broker_order_id, placed.client_order_id, placed.status) == ("77", "orig", "submitted")


@pytest.mark.parametrize(
    ("text", "code"),
    [
        pytest.param("OrderID 77 doesn't exist", ErrorCode.INPUT_UNKNOWN_ORDER, id="unknown"),
        pytest.param("Order 77 cannot be modified in status Filled", ErrorCode.ORDER_NOT_MODIFIABLE, id="finished"),
        pytest.param("Price is outside the allowed range", ErrorCode.ORDER_VALIDATION_FAILED, id="rejected"),
    ],
)
async def test_modify_refusals_map_to_their_codes(text: str, code: ErrorCode) -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        if request.url.path.endswith("/iserver/accounts"):
            return httpx2.Response(200, json={"accounts": [ACCOUNT]})
        return httpx2.Response(400, json={"error": text})

    writer, http = mock_writer(handler)
    async with http:
        with pytest.raises(GatewayError) as caught:
            await writer.modify("77", ticket(), confirm=allow_all, max_rounds=5)
    assert caught.value.code is code


async def test_a_modify_of_a_non_numeric_id_never_reaches_the_broker() -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        raise AssertionError("nothing may be sent")

    writer, http = mock_writer(handler)
    async with http:
        with pytest.raises(GatewayError) as caught:
            await writer.modify("local-candidate-x", ticket(), confirm=allow_all, max_rounds=5)
    assert caught.value.code is ErrorCode.INPUT_UNKNOWN_ORDER


# -- against the simulator -----------------------------------------------------------------------


async def test_the_simulator_holds_the_exits_and_cancels_them_with_the_parent(
    writer: ClientPortalOrderWriter, sim: SimulatorState
) -> None:
    with anyio.fail_after(5):
        placed = await writer.place_bracket(*legs(), client_order_id="b-1", confirm=allow_all, max_rounds=5)
    parent, take_profit, stop_loss = sim.placements
    assert [leg.broker_order_id for leg in placed.legs] == [str(o.order_id) for o in (parent, take_profit, stop_loss)]
    assert (take_profit.status, stop_loss.status) == ("PreSubmitted", "PreSubmitted")
    sim.set_quote(AAPL, bid=Decimal(229), ask=Decimal("229.05"))  # above the exits' prices: nothing fills yet
    assert (parent.status, take_profit.status) == ("Submitted", "PreSubmitted")
    await writer.cancel(ACCOUNT, str(parent.order_id))
    assert {o.status for o in (parent, take_profit, stop_loss)} == {"Cancelled"}


async def test_cancelling_one_exit_cancels_its_sibling(writer: ClientPortalOrderWriter, sim: SimulatorState) -> None:
    await writer.place_bracket(*legs(), client_order_id="b-2", confirm=allow_all, max_rounds=5)
    parent, take_profit, stop_loss = sim.placements
    sim.fill_order(parent.order_id)
    assert (take_profit.status, stop_loss.status) == ("Submitted", "Submitted")
    await writer.cancel(ACCOUNT, str(stop_loss.order_id))
    assert (parent.status, take_profit.status, stop_loss.status) == ("Filled", "Cancelled", "Cancelled")


async def test_an_exit_naming_no_parent_of_the_request_is_refused(sim: SimulatorState) -> None:
    body = {"orders": [{"acctId": ACCOUNT, "conid": AAPL, "orderType": "LMT", "price": 230, "side": "SELL",
                        "tif": "DAY", "quantity": 2, "parentId": "nobody"}]}  # fmt: skip
    answer = sim.place_orders(ACCOUNT, body)
    assert "error" in json.dumps(answer) and "nobody" in json.dumps(answer)
    assert sim.placements == []


async def test_a_modify_goes_through_the_reply_chain(writer: ClientPortalOrderWriter, sim: SimulatorState) -> None:
    """The simulator asks about a modification as about a placement; a declined question changes nothing."""
    placed = await writer.place(ticket(), client_order_id="m-1", confirm=allow_all, max_rounds=5)
    sim.set_question_rules([QuestionRule.always("o163", "Price off market. Are you sure?")])
    asked: list[BrokerQuestion] = []

    def record(question: BrokerQuestion) -> bool:
        asked.append(question)
        return True

    modified = await writer.modify(
        placed.broker_order_id, ticket(limit_price=Decimal(205)), confirm=record, max_rounds=5
    )
    assert [q.message_ids for q in asked] == [["o163"]] and modified.confirmed_message_ids == ["o163"]
    [order] = sim.placements
    assert order.price == Decimal(205)
    with pytest.raises(GatewayError) as caught:
        await writer.modify(placed.broker_order_id, ticket(limit_price=Decimal(204)), confirm=refuse_all, max_rounds=5)
    assert caught.value.code is ErrorCode.ORDER_CONFIRMATION_REFUSED
    assert order.price == Decimal(205)


# -- each answer as the writer reports it --------------------------------------------------------


def answering(status: int, body: object) -> Callable[[httpx2.Request], httpx2.Response]:
    """Prime like CPAPI (one account), answer every order request with `status` and `body`."""

    def handler(request: httpx2.Request) -> httpx2.Response:
        if request.url.path.endswith("/iserver/accounts"):
            return httpx2.Response(200, json={"accounts": [ACCOUNT]})
        return httpx2.Response(status, json=body)

    return handler


async def bracket_answered(status: int, body: object) -> Any:
    writer, http = mock_writer(answering(status, body))
    async with http:
        return await writer.place_bracket(*legs(), client_order_id="k-1", confirm=allow_all, max_rounds=5)


async def test_the_parent_is_the_acknowledgement_naming_the_coid_whatever_its_place() -> None:
    placed = await bracket_answered(
        200,
        [
            {"order_id": "12", "order_status": "PreSubmitted"},
            {"order_id": "11", "order_status": "Filled", "local_order_id": " k-1 "},
            {"order_id": "13"},
        ],
    )
    assert (placed.broker_order_id, placed.client_order_id, placed.broker_status, placed.status) == (
        "11",
        "k-1",
        "Filled",
        "filled",
    )
    assert [(leg.role, leg.broker_order_id, leg.broker_status, leg.status) for leg in placed.legs] == [
        ("parent", "11", "Filled", "filled"),
        ("take_profit", "12", "PreSubmitted", "submitted"),
        ("stop_loss", "13", None, "submitted"),
    ]


async def test_without_a_coid_in_the_answer_the_first_acknowledgement_is_the_parent() -> None:
    placed = await bracket_answered(200, [{"order_id": "21", "order_status": "Submitted"}, {"order_id": "22"}])
    assert (placed.broker_order_id, placed.client_order_id) == ("21", "k-1")
    assert [(leg.role, leg.broker_order_id, leg.status) for leg in placed.legs] == [
        ("parent", "21", "submitted"),
        ("take_profit", "22", "submitted"),
        ("stop_loss", None, "unknown"),
    ]


async def test_a_rejected_bracket_names_the_brokers_reason_and_the_coid() -> None:
    with pytest.raises(GatewayError) as caught:
        await bracket_answered(400, {"error": "Order rejected: size"})
    assert (caught.value.code, caught.value.details) == (
        ErrorCode.ORDER_VALIDATION_FAILED,
        {"broker_message": "Order rejected: size", "client_order_id": "k-1", "reason": "broker_rejected"},
    )


async def modify_answered(status: int, body: Any) -> Any:
    writer, http = mock_writer(answering(status, body))
    async with http:
        return await writer.modify("77", ticket(), confirm=allow_all, max_rounds=5)


@pytest.mark.parametrize(
    ("body", "code", "details"),
    [
        pytest.param(
            {"error": "OrderID 77 doesn't exist"},
            ErrorCode.INPUT_UNKNOWN_ORDER,
            {"broker_message": "OrderID 77 doesn't exist", "broker_order_id": "77"},
            id="unknown",
        ),
        pytest.param(
            {"error": "Order 77 cannot be modified in status Filled"},
            ErrorCode.ORDER_NOT_MODIFIABLE,
            {"broker_message": "Order 77 cannot be modified in status Filled", "broker_order_id": "77"},
            id="finished",
        ),
        pytest.param(
            {"error": "Price is outside the allowed range"},
            ErrorCode.ORDER_VALIDATION_FAILED,
            {
                "broker_message": "Price is outside the allowed range",
                "broker_order_id": "77",
                "reason": "broker_rejected",
            },
            id="rejected",
        ),
        pytest.param(
            [{"text": "Price is outside the allowed range"}],
            ErrorCode.ORDER_VALIDATION_FAILED,
            {
                "broker_message": "Price is outside the allowed range",
                "broker_order_id": "77",
                "reason": "broker_rejected",
            },
            id="rejected-as-text",
        ),
        pytest.param(
            [dict[str, object]()], ErrorCode.BROKER_OUTCOME_UNKNOWN, {"broker_order_id": "77"}, id="undocumented"
        ),
    ],
)
async def test_each_modify_answer_as_the_writer_reports_it(body: Any, code: ErrorCode, details: object) -> None:
    with pytest.raises(GatewayError) as caught:
        await modify_answered(400 if isinstance(body, dict) else 200, body)
    assert (caught.value.code, caught.value.details) == (code, details)
    if code is ErrorCode.ORDER_VALIDATION_FAILED:
        assert caught.value.user_action == (
            "Read the broker's reason (untrusted broker text), correct the change and preview it again."
        )
    if code is ErrorCode.BROKER_OUTCOME_UNKNOWN:
        assert caught.value.message == (
            "The broker's answer to the modification is not one CPAPI documents; it may have taken it."
        )


async def test_a_modify_answer_without_the_original_coid_names_none() -> None:
    placed = await modify_answered(200, [{"order_id": "77", "order_status": "Submitted"}])
    assert (placed.broker_order_id, placed.client_order_id, placed.status) == ("77", None, "submitted")


async def test_a_bracket_whose_answer_failed_is_an_unknown_outcome_naming_the_coid() -> None:
    with pytest.raises(GatewayError) as caught:
        await bracket_answered(500, {"error": "internal error"})
    assert caught.value.code is ErrorCode.BROKER_OUTCOME_UNKNOWN
    assert caught.value.details["client_order_id"] == "k-1"


async def test_an_order_request_lost_in_transit_or_answered_by_a_server_error_names_what_is_known() -> None:
    with pytest.raises(GatewayError) as answered:
        await bracket_answered(502, {"error": "bad gateway"})
    assert (answered.value.code, answered.value.details) == (
        ErrorCode.BROKER_OUTCOME_UNKNOWN,
        {"status_code": 502, "client_order_id": "k-1"},
    )

    def dropped(request: httpx2.Request) -> httpx2.Response:
        if request.url.path.endswith("/iserver/accounts"):
            return httpx2.Response(200, json={"accounts": [ACCOUNT]})
        raise httpx2.RemoteProtocolError("connection closed mid-answer", request=request)

    writer, http = mock_writer(dropped)
    async with http:
        with pytest.raises(GatewayError) as lost:
            await writer.place_bracket(*legs(), client_order_id="k-1", confirm=allow_all, max_rounds=5)
    assert (lost.value.code, lost.value.details) == (ErrorCode.BROKER_OUTCOME_UNKNOWN, {"client_order_id": "k-1"})


@pytest.mark.parametrize("body", [[], "ok", [{"message": ["?"]}]], ids=["empty", "text", "no-id"])
async def test_an_answer_with_no_reply_in_it_is_an_unknown_outcome_naming_the_coid(body: Any) -> None:
    with pytest.raises(GatewayError) as caught:
        await bracket_answered(200, body)
    assert (caught.value.code, caught.value.details) == (ErrorCode.BROKER_OUTCOME_UNKNOWN, {"client_order_id": "k-1"})


async def test_a_placement_acknowledged_without_a_status_is_submitted() -> None:
    writer, http = mock_writer(answering(200, [{"order_id": "31", "local_order_id": "k-1"}]))
    async with http:
        placed = await writer.place(ticket(), client_order_id="k-1", confirm=allow_all, max_rounds=5)
    assert (placed.broker_order_id, placed.broker_status, placed.status) == ("31", None, "submitted")
