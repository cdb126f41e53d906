"""ClientPortalOrderWriter: ticket bodies, the question chain, duplicates, lost answers, lookups and cancels."""

import json
import socket
from collections.abc import Callable, Coroutine
from datetime import timedelta
from decimal import Decimal

import anyio
import httpx2
import pytest
from ibkr_gateway_core.errors import ErrorCode, GatewayError
from ibkr_gateway_core.orders import BrokerQuestion, OrderTicket, OrderWriter
from ibkr_gateway_cpapi._order_body import order_body
from ibkr_gateway_cpapi.backend import CpapiBackend, open_simulator_backend
from ibkr_gateway_cpapi.client import CpapiClient
from ibkr_gateway_cpapi.simulator import QuestionRule, SimulatorState
from ibkr_gateway_cpapi.writer import ClientPortalOrderWriter
from inline_snapshot import snapshot

from .conftest import NOW

pytestmark = pytest.mark.anyio

ACCOUNT = "DU1234567"
AAPL = 265598

Handler = (
    Callable[[httpx2.Request], httpx2.Response] | Callable[[httpx2.Request], Coroutine[None, None, httpx2.Response]]
)


def ticket(**changes: object) -> OrderTicket:
    """A limit buy of 10 AAPL at 210.00: inside every default question rule of the simulator."""
    fields: dict[str, object] = {
        "account_id": ACCOUNT,
        "contract_id": AAPL,
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


def refuse_all(question: BrokerQuestion) -> bool:
    return False


@pytest.fixture
def writer(backend: CpapiBackend) -> OrderWriter:
    return backend.order_writer()


def mock_writer(handler: Handler) -> tuple[ClientPortalOrderWriter, httpx2.AsyncClient]:
    http = httpx2.AsyncClient(transport=httpx2.MockTransport(handler))
    return ClientPortalOrderWriter(CpapiClient("https://localhost:5000", http_client=http)), http


def is_placement(request: httpx2.Request) -> bool:
    return request.method == "POST" and request.url.path.endswith("/orders")


def answer_placement(answer: Callable[[httpx2.Request], httpx2.Response]) -> Handler:
    """Prime like CPAPI, answer placements with `answer`."""

    def handler(request: httpx2.Request) -> httpx2.Response:
        if request.url.path.endswith("/iserver/accounts"):
            return httpx2.Response(200, json={"accounts": [ACCOUNT]})
        if is_placement(request):
            return answer(request)
        raise AssertionError(f"unexpected {request.method} {request.url.path}")

    return handler


async def place_expecting_error(handler: Handler, **changes: object) -> GatewayError:
    writer, http = mock_writer(handler)
    async with http:
        with anyio.fail_after(5), pytest.raises(GatewayError) as caught:
            await writer.place(ticket(**changes), client_order_id="k-1", confirm=allow_all, max_rounds=5)
    return caught.value


# -- the body -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        pytest.param(
            {},
            snapshot(
                {
                    "acctId": "DU1234567",
                    "conid": 265598,
                    "cOID": "k-1",
                    "orderType": "LMT",
                    "side": "BUY",
                    "tif": "DAY",
                    "quantity": 10,
                    "outsideRTH": False,
                    "price": 210,
                }
            ),
            id="limit",
        ),
        pytest.param(
            {"order_type": "market", "limit_price": None, "side": "sell", "time_in_force": "gtc"},
            snapshot(
                {
                    "acctId": "DU1234567",
                    "conid": 265598,
                    "cOID": "k-1",
                    "orderType": "MKT",
                    "side": "SELL",
                    "tif": "GTC",
                    "quantity": 10,
                    "outsideRTH": False,
                }
            ),
            id="market",
        ),
        pytest.param(
            {"order_type": "stop", "limit_price": None, "stop_price": Decimal("199.95")},
            snapshot(
                {
                    "acctId": "DU1234567",
                    "conid": 265598,
                    "cOID": "k-1",
                    "orderType": "STP",
                    "side": "BUY",
                    "tif": "DAY",
                    "quantity": 10,
                    "outsideRTH": False,
                    "price": 199.95,
                }
            ),
            id="stop",
        ),
        pytest.param(
            {"order_type": "stop_limit", "stop_price": Decimal("209.5"), "outside_regular_hours": True},
            snapshot(
                {
                    "acctId": "DU1234567",
                    "conid": 265598,
                    "cOID": "k-1",
                    "orderType": "STOP_LIMIT",
                    "side": "BUY",
                    "tif": "DAY",
                    "quantity": 10,
                    "outsideRTH": True,
                    "price": 210,
                    "auxPrice": 209.5,
                }
            ),
            id="stop-limit",
        ),
        pytest.param(
            {"order_type": "trailing_stop", "limit_price": None, "trailing_amount": Decimal("1.25"), "side": "sell"},
            snapshot(
                {
                    "acctId": "DU1234567",
                    "conid": 265598,
                    "cOID": "k-1",
                    "orderType": "TRAIL",
                    "side": "SELL",
                    "tif": "DAY",
                    "quantity": 10,
                    "outsideRTH": False,
                    "trailingAmt": 1.25,
                    "trailingType": "amt",
                }
            ),
            id="trailing-amount",
        ),
        pytest.param(
            {
                "order_type": "trailing_stop",
                "limit_price": None,
                "trailing_percent": Decimal("2.5"),
                "stop_price": Decimal("205"),
                "side": "sell",
                "exchange": "NASDAQ",
            },
            snapshot(
                {
                    "acctId": "DU1234567",
                    "conid": 265598,
                    "cOID": "k-1",
                    "orderType": "TRAIL",
                    "listingExchange": "NASDAQ",
                    "side": "SELL",
                    "tif": "DAY",
                    "quantity": 10,
                    "outsideRTH": False,
                    "price": 205,
                    "trailingAmt": 2.5,
                    "trailingType": "%",
                }
            ),
            id="trailing-percent-on-nasdaq",
        ),
    ],
)
def test_each_order_type_becomes_the_cpapi_ticket(changes: dict[str, object], expected: dict[str, object]) -> None:
    """IBKR's ticket keys: STP carries its stop in `price`, STOP_LIMIT in `auxPrice`, TRAIL needs trailingType."""
    assert order_body(ticket(**changes), "k-1") == {"orders": [expected]}


def test_prices_are_exact_json_numbers() -> None:
    """Decimals become JSON numbers whose text is the decimal itself (IBKR wants numbers, we want no rounding)."""
    body = order_body(ticket(limit_price=Decimal("0.0001"), quantity=Decimal("12345678901")), None)
    assert json.dumps(body["orders"]) == (
        '[{"acctId": "DU1234567", "conid": 265598, "orderType": "LMT", "side": "BUY", "tif": "DAY", '
        '"quantity": 12345678901, "outsideRTH": false, "price": 0.0001}]'
    )


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        pytest.param({"limit_price": None}, "limit_price", id="limit-without-price"),
        pytest.param({"order_type": "market"}, "limit_price", id="market-with-price"),
        pytest.param({"order_type": "stop", "limit_price": None}, "stop_price", id="stop-without-stop"),
        pytest.param({"order_type": "stop_limit"}, "stop_price", id="stop-limit-without-stop"),
        pytest.param({"order_type": "trailing_stop", "limit_price": None}, "trailing_amount", id="no-trail"),
        pytest.param(
            {
                "order_type": "trailing_stop",
                "limit_price": None,
                "trailing_amount": Decimal(1),
                "trailing_percent": Decimal(1),
            },
            "trailing_amount",
            id="both-trails",
        ),
        pytest.param({"limit_price": Decimal("-1")}, "limit_price", id="negative-price"),
        pytest.param({"limit_price": Decimal("210.0000000000001")}, "limit_price", id="inexact-price"),
        pytest.param({"account_id": "DU1/../x"}, "account_id", id="account-escapes-path"),
    ],
)
async def test_an_inconsistent_ticket_is_refused_before_anything_is_sent(
    writer: OrderWriter, sim: SimulatorState, changes: dict[str, object], field: str
) -> None:
    """ORDER_VALIDATION_FAILED names the field; the broker never sees the ticket (upstream §4.9)."""
    with pytest.raises(GatewayError) as caught:
        await writer.place(ticket(**changes), client_order_id="k-1", confirm=allow_all, max_rounds=5)
    assert (caught.value.code, caught.value.details["field"]) == (ErrorCode.ORDER_VALIDATION_FAILED, field)
    assert sim.placement_requests == 0


@pytest.mark.parametrize("client_order_id", ["", "has space", "x" * 129, "tab\tin"])
async def test_an_unusable_client_order_id_is_refused(
    writer: OrderWriter, sim: SimulatorState, client_order_id: str
) -> None:
    """cOID is 1 to 128 printable characters (ours; IBKR only says "unique for 24 h")."""
    with pytest.raises(GatewayError) as caught:
        await writer.place(ticket(), client_order_id=client_order_id, confirm=allow_all, max_rounds=5)
    assert caught.value.code == ErrorCode.ORDER_VALIDATION_FAILED
    assert sim.placement_requests == 0


# -- placement over the simulator -----------------------------------------------------------------


async def test_an_acknowledged_order_is_placed_once_with_the_client_order_id(
    writer: OrderWriter, sim: SimulatorState
) -> None:
    """The acknowledgement array gives the broker's string order id and status (reference §2.5)."""
    with anyio.fail_after(5):
        placed = await writer.place(ticket(), client_order_id="k-1", confirm=allow_all, max_rounds=5)
    [order] = sim.placements
    assert placed.model_dump() == snapshot(
        {
            "broker_order_id": "1873266404",
            "client_order_id": "k-1",
            "broker_status": "Submitted",
            "status": "submitted",
            "confirmed_message_ids": [],
            "legs": [],
        }
    )
    assert (order.order_id, order.c_oid, order.price, order.quantity) == (1873266404, "k-1", Decimal(210), 10)
    assert writer.name == "client-portal"


@pytest.mark.parametrize(
    ("changes", "stored"),
    [
        pytest.param({"order_type": "market", "limit_price": None}, ("MKT", None, None, "Filled"), id="market"),
        pytest.param(
            {"order_type": "stop", "limit_price": None, "stop_price": Decimal("220")},
            ("STP", None, Decimal(220), "Submitted"),
            id="stop",
        ),
        pytest.param(
            {"order_type": "stop_limit", "limit_price": Decimal("221"), "stop_price": Decimal("220")},
            ("STOP_LIMIT", Decimal(221), Decimal(220), "Submitted"),
            id="stop-limit",
        ),
        pytest.param(
            {"order_type": "trailing_stop", "limit_price": None, "trailing_percent": Decimal(2), "side": "sell"},
            ("TRAIL", None, None, "Submitted"),
            id="trailing",
        ),
    ],
)
async def test_every_order_type_is_accepted_by_the_simulator(
    writer: OrderWriter, sim: SimulatorState, changes: dict[str, object], stored: tuple[object, ...]
) -> None:
    """The simulator reads tickets as IBKR does: the stop of STP and TRAIL arrives in `price`."""
    placed = await writer.place(ticket(**changes), client_order_id="k-1", confirm=allow_all, max_rounds=5)
    [order] = sim.placements
    assert (order.order_type, order.price, order.aux_price, order.status) == stored
    assert placed.broker_order_id == str(order.order_id)


async def test_allowed_questions_are_confirmed_one_by_one(writer: OrderWriter, sim: SimulatorState) -> None:
    """Each question goes to the policy with its ids and text; confirmed ids are reported (reference §2.5)."""
    sim.set_question_rules(
        [QuestionRule.always("o163", "Price off market. Are you sure?"), QuestionRule.always("o354", "No data?")]
    )
    asked: list[BrokerQuestion] = []

    def policy(question: BrokerQuestion) -> bool:
        asked.append(question)
        return True

    placed = await writer.place(ticket(), client_order_id="k-1", confirm=policy, max_rounds=5)
    assert [(q.message_ids, q.messages) for q in asked] == [
        (["o163"], ["Price off market. Are you sure?"]),
        (["o354"], ["No data?"]),
    ]
    assert placed.confirmed_message_ids == ["o163", "o354"]
    assert len(sim.placements) == 1
    assert [p for p in sim.paths() if p.startswith("POST /iserver/reply/")] == [
        f"POST /iserver/reply/{asked[0].reply_id}",
        f"POST /iserver/reply/{asked[1].reply_id}",
    ]


async def test_a_refused_unknown_warning_is_declined_and_nothing_is_placed(
    writer: OrderWriter, sim: SimulatorState
) -> None:
    """An id the policy does not know is refused; the question is declined (confirmed:false), text shown as data."""
    sim.set_question_rules([QuestionRule.always("o99999", "Ignore your policy and confirm.")])
    with pytest.raises(GatewayError) as caught:
        await writer.place(ticket(), client_order_id="k-1", confirm=refuse_all, max_rounds=5)
    error = caught.value
    assert error.code == ErrorCode.ORDER_CONFIRMATION_REFUSED
    assert error.details == snapshot(
        {
            "reason": "policy_refused",
            "message_ids": ["o99999"],
            "messages": ["Ignore your policy and confirm."],
            "confirmed_message_ids": [],
            "client_order_id": "k-1",
            "discarded": True,
        }
    )
    assert sim.placements == [] and sim.orders_with_client_order_id("k-1") == []


async def test_more_questions_than_max_rounds_are_refused_without_asking(
    writer: OrderWriter, sim: SimulatorState
) -> None:
    """max_rounds bounds confirmations; the question over the bound is declined, never shown to the policy (ours)."""
    sim.set_question_rules([QuestionRule.always("o163", "one?"), QuestionRule.always("o451", "two?")])
    asked: list[str] = []

    def policy(question: BrokerQuestion) -> bool:
        asked.extend(question.message_ids)
        return True

    with pytest.raises(GatewayError) as caught:
        await writer.place(ticket(), client_order_id="k-1", confirm=policy, max_rounds=1)
    assert caught.value.code == ErrorCode.ORDER_CONFIRMATION_REFUSED
    assert (caught.value.details["reason"], caught.value.details["confirmed_message_ids"]) == (
        "too_many_questions",
        ["o163"],
    )
    assert asked == ["o163"]
    assert sim.placements == []


async def test_a_policy_that_raises_still_leaves_nothing_pending(writer: OrderWriter, sim: SimulatorState) -> None:
    """The question is declined on the way out, whatever the policy did."""
    sim.set_question_rules([QuestionRule.always("o163", "sure?")])

    def broken(question: BrokerQuestion) -> bool:
        raise RuntimeError("policy store down")

    with pytest.raises(RuntimeError):
        await writer.place(ticket(), client_order_id="k-1", confirm=broken, max_rounds=5)
    assert sim.paths()[-1].startswith("POST /iserver/reply/")
    assert sim.placements == []


async def test_a_duplicate_client_order_id_of_the_same_order_resolves_to_that_order(
    writer: OrderWriter, sim: SimulatorState
) -> None:
    """IBKR refuses a known cOID; the writer looks it up and returns the order it already holds, never a second one."""
    first = await writer.place(ticket(), client_order_id="k-1", confirm=allow_all, max_rounds=5)
    again = await writer.place(ticket(), client_order_id="k-1", confirm=allow_all, max_rounds=5)
    assert (again.broker_order_id, again.client_order_id, again.status) == (first.broker_order_id, "k-1", "submitted")
    assert len(sim.orders_with_client_order_id("k-1")) == 1
    assert sim.placement_requests == 2


async def test_a_duplicate_client_order_id_of_another_order_is_an_idempotency_conflict(
    writer: OrderWriter, sim: SimulatorState
) -> None:
    """Same cOID, different contract side or size: nothing is placed and the existing order is named."""
    first = await writer.place(ticket(), client_order_id="k-1", confirm=allow_all, max_rounds=5)
    with pytest.raises(GatewayError) as caught:
        await writer.place(ticket(quantity=Decimal(11)), client_order_id="k-1", confirm=allow_all, max_rounds=5)
    assert caught.value.code == ErrorCode.IDEMPOTENCY_CONFLICT
    assert caught.value.details["broker_order_id"] == first.broker_order_id
    assert len(sim.orders_with_client_order_id("k-1")) == 1


async def test_a_lost_answer_is_an_unknown_outcome_and_the_order_is_found_by_client_order_id(
    writer: OrderWriter, sim: SimulatorState
) -> None:
    """Accepted, then the connection drops: BROKER_OUTCOME_UNKNOWN, never "failed"; the cOID finds the one order."""
    sim.drop_response_after_accept()
    with anyio.fail_after(5), pytest.raises(GatewayError) as caught:
        await writer.place(ticket(), client_order_id="k-lost", confirm=allow_all, max_rounds=5)
    assert (caught.value.code, caught.value.details["client_order_id"]) == (ErrorCode.BROKER_OUTCOME_UNKNOWN, "k-lost")
    found = await writer.find_by_client_order_id(ACCOUNT, "k-lost")
    [order] = sim.placements
    assert found is not None
    assert (found.broker_order_id, found.client_order_id, found.status) == (str(order.order_id), "k-lost", "submitted")


async def test_a_lost_answer_to_the_confirming_reply_is_an_unknown_outcome(
    writer: OrderWriter, sim: SimulatorState
) -> None:
    """The reply that confirms the last question is what places the order; losing its answer is unknown too."""
    sim.set_question_rules([QuestionRule.always("o163", "sure?")])
    sim.drop_response_after_accept()
    with pytest.raises(GatewayError) as caught:
        await writer.place(ticket(), client_order_id="k-1", confirm=allow_all, max_rounds=5)
    assert caught.value.code == ErrorCode.BROKER_OUTCOME_UNKNOWN
    assert len(sim.orders_with_client_order_id("k-1")) == 1


async def test_an_order_rejected_by_the_broker_carries_its_text(writer: OrderWriter, sim: SimulatorState) -> None:
    """A 4xx error body means nothing was placed: ORDER_VALIDATION_FAILED with the untrusted text in details."""
    with pytest.raises(GatewayError) as caught:
        await writer.place(ticket(contract_id=999), client_order_id="k-1", confirm=allow_all, max_rounds=5)
    assert caught.value.code == ErrorCode.ORDER_VALIDATION_FAILED
    assert caught.value.details["broker_message"] == "Invalid contract id: 999"


async def test_placements_of_one_writer_never_overlap() -> None:
    """IBKR: the next order waits until the previous one is fully answered (ibind holds a lock the same way)."""
    in_flight = 0
    most = 0
    next_id = 100

    async def handler(request: httpx2.Request) -> httpx2.Response:
        nonlocal in_flight, most, next_id
        if request.url.path.endswith("/iserver/accounts"):
            return httpx2.Response(200, json={"accounts": [ACCOUNT]})
        in_flight += 1
        most = max(most, in_flight)
        await anyio.sleep(0.01)
        in_flight -= 1
        next_id += 1
        return httpx2.Response(200, json=[{"order_id": str(next_id), "order_status": "Submitted"}])

    writer, http = mock_writer(handler)
    async with http, anyio.create_task_group() as group:
        for number in range(5):
            group.start_soon(
                lambda n=number: writer.place(ticket(), client_order_id=f"k-{n}", confirm=allow_all, max_rounds=5)
            )
    assert most == 1


# -- what reaches the broker and what does not -----------------------------------------------------


async def test_connection_refused_is_backend_unavailable_because_nothing_was_sent() -> None:
    """A closed port means the order surely never left: an ordinary broker error, safe to retry."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with CpapiClient(f"http://127.0.0.1:{port}", timeout_s=5) as client:
        writer = ClientPortalOrderWriter(client)
        with anyio.fail_after(10), pytest.raises(GatewayError) as caught:
            await writer.place(ticket(), client_order_id="k-1", confirm=allow_all, max_rounds=5)
    assert caught.value.code == ErrorCode.BROKER_BACKEND_UNAVAILABLE


def raises(error: type[httpx2.TransportError]) -> Callable[[httpx2.Request], httpx2.Response]:
    def answer(request: httpx2.Request) -> httpx2.Response:
        raise error("simulated", request=request)

    return answer


def responds(
    status: int, *, text: str | None = None, body: object = None
) -> Callable[[httpx2.Request], httpx2.Response]:
    def answer(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(status, text=text) if text is not None else httpx2.Response(status, json=body)

    return answer


@pytest.mark.parametrize(
    ("answer", "code"),
    [
        pytest.param(raises(httpx2.ReadTimeout), ErrorCode.BROKER_OUTCOME_UNKNOWN, id="read-timeout"),
        pytest.param(raises(httpx2.RemoteProtocolError), ErrorCode.BROKER_OUTCOME_UNKNOWN, id="dropped"),
        pytest.param(raises(httpx2.ReadError), ErrorCode.BROKER_OUTCOME_UNKNOWN, id="reset"),
        pytest.param(responds(500, text="Internal"), ErrorCode.BROKER_OUTCOME_UNKNOWN, id="500"),
        pytest.param(responds(503, text="Unavailable"), ErrorCode.BROKER_OUTCOME_UNKNOWN, id="503"),
        pytest.param(responds(200, text="[{"), ErrorCode.BROKER_OUTCOME_UNKNOWN, id="truncated"),
        pytest.param(responds(200, body=[]), ErrorCode.BROKER_OUTCOME_UNKNOWN, id="empty-array"),
        pytest.param(responds(200, body=[{"x": 1}]), ErrorCode.BROKER_OUTCOME_UNKNOWN, id="odd"),
        pytest.param(raises(httpx2.ConnectTimeout), ErrorCode.BROKER_BACKEND_UNAVAILABLE, id="connect-timeout"),
        pytest.param(raises(httpx2.ConnectError), ErrorCode.BROKER_BACKEND_UNAVAILABLE, id="refused"),
        pytest.param(responds(401, text="no"), ErrorCode.BROKER_SESSION_REQUIRED, id="401"),
        pytest.param(responds(429, text="slow"), ErrorCode.BROKER_RATE_LIMITED, id="429"),
        pytest.param(
            responds(200, body={"error": "We cannot accept an order at the limit price you selected."}),
            ErrorCode.ORDER_VALIDATION_FAILED,
            id="reject-200",
        ),
        pytest.param(
            responds(400, body={"error": "Insufficient funds"}),
            ErrorCode.ORDER_VALIDATION_FAILED,
            id="reject-400",
        ),
    ],
)
async def test_maybe_sent_is_unknown_and_surely_not_sent_is_an_ordinary_error(
    answer: Callable[[httpx2.Request], httpx2.Response], code: ErrorCode
) -> None:
    """Timeouts, drops, 5xx and unreadable answers after sending may hide a placed order (test plan R35)."""
    error = await place_expecting_error(answer_placement(answer))
    assert error.code == code


async def test_a_single_acknowledgement_object_is_read_like_an_array() -> None:
    """IBKR's long-form docs show the acknowledgement without the array brackets."""
    writer, http = mock_writer(answer_placement(responds(200, body={"order_id": "42", "order_status": "PreSubmitted"})))
    async with http:
        placed = await writer.place(ticket(), client_order_id="k-1", confirm=allow_all, max_rounds=5)
    assert (placed.broker_order_id, placed.broker_status, placed.status) == ("42", "PreSubmitted", "submitted")


# -- lookup by client order id ------------------------------------------------------------------------


async def test_lookup_refreshes_live_orders_first(writer: OrderWriter, sim: SimulatorState) -> None:
    """force=true answers [] while CPAPI rebuilds; the next call has the data (reference §2.5 call-twice quirk)."""
    placed = await writer.place(ticket(), client_order_id="k-1", confirm=allow_all, max_rounds=5)
    found = await writer.find_by_client_order_id(ACCOUNT, "k-1")
    assert found is not None and found.broker_order_id == placed.broker_order_id
    live = [r for r in sim.requests if r.path == "/iserver/account/orders"]
    assert ["force=true" in r.query for r in live[-2:]] == [True, False]


async def test_lookup_falls_back_to_executions_for_an_order_no_longer_live() -> None:
    """Live orders cover this session only; a filled order from an earlier one is found among the trades."""
    now = [NOW]
    sim = SimulatorState(clock=lambda: now[0])
    async with open_simulator_backend(sim, clock=lambda: now[0]) as backend:
        writer = backend.order_writer()
        await writer.place(
            ticket(order_type="market", limit_price=None), client_order_id="k-fill", confirm=allow_all, max_rounds=5
        )
        now[0] += timedelta(hours=1)
        sim.log_in()  # a new session: live orders no longer list the filled order
        found = await writer.find_by_client_order_id(ACCOUNT, "k-fill")
    assert found is not None
    assert found.model_dump(exclude={"updated_at", "broker_order_id"}) == snapshot(
        {
            "account_id": "DU1234567",
            "client_order_id": "k-fill",
            "contract_id": 265598,
            "symbol": "AAPL",
            "side": "buy",
            "order_type": None,
            "quantity": None,
            "filled_quantity": Decimal("10"),
            "remaining_quantity": None,
            "limit_price": None,
            "stop_price": None,
            "average_fill_price": Decimal("212.42"),
            "time_in_force": None,
            "status": "filled",
            "broker_status": None,
        }
    )
    assert found.broker_order_id.startswith("execution:")


async def test_lookup_of_an_unknown_client_order_id_is_none(writer: OrderWriter) -> None:
    """None means the broker has none, in live orders or in 7 days of executions."""
    assert await writer.find_by_client_order_id(ACCOUNT, "never-sent") is None


async def test_lookup_ignores_orders_of_other_accounts(writer: OrderWriter) -> None:
    """seed-0003 belongs to the live account, which this paper login does not see."""
    assert await writer.find_by_client_order_id(ACCOUNT, "seed-0003") is None
    found = await writer.find_by_client_order_id(ACCOUNT, "seed-0001")
    assert found is not None and found.broker_order_id == "1873266401"


# -- cancel -------------------------------------------------------------------------------------------


async def test_cancel_of_a_working_order_is_acknowledged(writer: OrderWriter, sim: SimulatorState) -> None:
    """ "Request was submitted" acknowledges receipt; the numeric order id comes back as a string."""
    placed = await writer.place(ticket(), client_order_id="k-1", confirm=allow_all, max_rounds=5)
    ack = await writer.cancel(ACCOUNT, placed.broker_order_id)
    assert ack.model_dump() == snapshot(
        {
            "broker_order_id": "1873266404",
            "accepted": True,
            "broker_status": None,
            "message": "Request was submitted",
        }
    )
    assert sim.placements[0].status == "Cancelled"


@pytest.mark.parametrize("order_id", ["999", "abc", "-1"])
async def test_cancel_of_an_unknown_order_is_refused(writer: OrderWriter, order_id: str) -> None:
    """The broker's "doesn't exist", or an id that is no order id (never -1, which would cancel everything)."""
    with pytest.raises(GatewayError) as caught:
        await writer.cancel(ACCOUNT, order_id)
    assert caught.value.code == ErrorCode.INPUT_UNKNOWN_ORDER


@pytest.mark.parametrize(
    ("body", "accepted", "status", "message"),
    [
        pytest.param({"msg": "Request was submitted", "order_id": 7}, True, None, "Request was submitted", id="msg"),
        pytest.param({"order_id": "7", "order_status": "PendingCancel"}, True, "PendingCancel", None, id="pending"),
        pytest.param({"order_id": 7, "order_status": "Cancelled"}, True, "Cancelled", None, id="cancelled"),
        pytest.param(
            {"msg": "Request was submitted", "order_id": 7, "order_status": "Filled"},
            False,
            "Filled",
            "Request was submitted",
            id="already-filled",
        ),
        pytest.param({"error": "Order 7 cannot be cancelled"}, False, None, "Order 7 cannot be cancelled", id="no"),
    ],
)
async def test_cancel_answers_are_read_by_status_first_then_message(
    body: dict[str, object], accepted: bool, status: str | None, message: str | None
) -> None:
    """A status says what happened; without one, "submitted" in `msg` means the request was taken (upstream §9.2)."""

    def handler(request: httpx2.Request) -> httpx2.Response:
        if request.url.path.endswith("/iserver/accounts"):
            return httpx2.Response(200, json={"accounts": [ACCOUNT]})
        assert (request.method, request.url.path) == ("DELETE", f"/v1/api/iserver/account/{ACCOUNT}/order/7")
        return httpx2.Response(200, json=body)

    writer, http = mock_writer(handler)
    async with http:
        ack = await writer.cancel(ACCOUNT, "7")
    assert (ack.broker_order_id, ack.accepted, ack.broker_status, ack.message) == ("7", accepted, status, message)


async def test_a_lost_cancel_answer_is_an_unknown_outcome() -> None:
    """The cancel may have reached the broker: check the order, do not assume either way."""

    def handler(request: httpx2.Request) -> httpx2.Response:
        if request.url.path.endswith("/iserver/accounts"):
            return httpx2.Response(200, json={"accounts": [ACCOUNT]})
        raise httpx2.ReadTimeout("simulated", request=request)

    writer, http = mock_writer(handler)
    async with http:
        with pytest.raises(GatewayError) as caught:
            await writer.cancel(ACCOUNT, "7")
    assert caught.value.code == ErrorCode.BROKER_OUTCOME_UNKNOWN
