"""Advisor and multi-account logins: sub-accounts listed, the right account selected before every account call.

The simulator's advisor login acts on the *selected* account whatever the path names (harsher than
IBKR documents, so a client that forgets to select is caught): an order "for B" sent while A is
selected lands on A. These tests show ours never does, also when calls for several accounts run at once.
"""

from collections.abc import AsyncIterator
from decimal import Decimal

import anyio
import httpx2
import pytest
from ibkr_gateway_core.errors import ErrorCode, GatewayError
from ibkr_gateway_core.orders import BrokerQuestion, OrderTicket
from ibkr_gateway_cpapi.backend import CpapiBackend, open_simulator_backend
from ibkr_gateway_cpapi.simulator import QuestionRule, SimulatorState, create_simulator_app

from .conftest import frozen_clock

pytestmark = pytest.mark.anyio

MASTER, CLIENT_A, CLIENT_B, CLIENT_C = "DF1234560", "DU2000001", "DU2000002", "DU2000003"
AAPL = 265598
API = "http://sim/v1/api"


def ticket(account_id: str, **changes: object) -> OrderTicket:
    fields: dict[str, object] = {
        "account_id": account_id,
        "contract_id": AAPL,
        "symbol": "AAPL",
        "asset_class": "stock",
        "currency": "USD",
        "side": "buy",
        "quantity": Decimal(1),
        "order_type": "limit",
        "limit_price": Decimal("210.00"),
    }
    return OrderTicket.model_validate(fields | changes)


def allow_all(question: BrokerQuestion) -> bool:
    return True


@pytest.fixture
def advisor() -> SimulatorState:
    sim = SimulatorState(clock=frozen_clock)
    sim.log_in_advisor()
    return sim


@pytest.fixture
async def backend(advisor: SimulatorState) -> AsyncIterator[CpapiBackend]:
    async with open_simulator_backend(advisor, clock=frozen_clock, preflight_delays_s=(0.0,) * 5) as opened:
        yield opened


@pytest.fixture
async def http(advisor: SimulatorState) -> AsyncIterator[httpx2.AsyncClient]:
    transport = httpx2.ASGITransport(app=create_simulator_app(advisor))
    async with httpx2.AsyncClient(transport=transport, base_url=API) as client:
        yield client


# -- the simulator -------------------------------------------------------------------------------


async def test_simulator_advisor_login_names_its_selected_account_and_switches(http: httpx2.AsyncClient) -> None:
    accounts = (await http.get("/iserver/accounts")).json()
    assert accounts["accounts"] == [MASTER, CLIENT_A, CLIENT_B, CLIENT_C]
    assert accounts["selectedAccount"] == MASTER
    assert accounts["allowFeatures"]["allowFA"] is True
    assert accounts["acctProps"][MASTER]["hasChildAccounts"] is True
    switched = await http.post("/iserver/account", json={"acctId": CLIENT_B})
    assert switched.json() == {"set": True, "acctId": CLIENT_B}
    again = await http.post("/iserver/account", json={"acctId": CLIENT_B})
    assert again.json()["message"] == "Account already set"
    assert (await http.get("/iserver/accounts")).json()["selectedAccount"] == CLIENT_B
    unknown = await http.post("/iserver/account", json={"acctId": "DU9999999"})
    assert unknown.status_code == 400


async def test_simulator_advisor_places_on_the_selected_account_whatever_the_path_says(
    http: httpx2.AsyncClient, advisor: SimulatorState
) -> None:
    """The hazard the gateway guards against: the path names B, A is selected, the order lands on A."""
    await http.get("/iserver/accounts")
    await http.post("/iserver/account", json={"acctId": CLIENT_A})
    body = {"orders": [{"acctId": CLIENT_B, "conid": AAPL, "cOID": "raw-1", "orderType": "LMT", "price": 210,
                        "side": "BUY", "tif": "DAY", "quantity": 1}]}  # fmt: skip
    answer = (await http.post(f"/iserver/account/{CLIENT_B}/orders", json=body)).json()
    assert "order_id" in answer[0]
    assert [o.account_id for o in advisor.orders_with_client_order_id("raw-1")] == [CLIENT_A]


async def test_simulator_nightly_reset_selects_the_first_account_again(
    http: httpx2.AsyncClient, advisor: SimulatorState
) -> None:
    await http.get("/iserver/accounts")
    await http.post("/iserver/account", json={"acctId": CLIENT_C})
    advisor.reset_brokerage_session()
    assert (await http.get("/iserver/accounts")).json()["selectedAccount"] == MASTER


async def test_simulator_subaccounts_and_the_paged_large_variant(http: httpx2.AsyncClient) -> None:
    await http.get("/portfolio/accounts")
    assert [row["accountId"] for row in (await http.get("/portfolio/accounts")).json()] == [MASTER]
    subaccounts = (await http.get("/portfolio/subaccounts")).json()
    assert [row["accountId"] for row in subaccounts] == [MASTER, CLIENT_A, CLIENT_B, CLIENT_C]
    page = (await http.get("/portfolio/subaccounts2", params={"page": "0"})).json()
    assert page["metadata"] == {"total": 4, "pageSize": 20, "pageNum": 0}
    assert len(page["subaccounts"]) == 4


# -- listing -------------------------------------------------------------------------------------


async def test_advisor_accounts_list_names_every_client_with_its_title(backend: CpapiBackend) -> None:
    accounts = await backend.list_accounts()
    assert [(a.account_id, a.account_label, a.account_mode) for a in accounts] == [
        (MASTER, "Sim Advisor Master", "paper"),
        (CLIENT_A, "Sim Advisor Client One", "paper"),
        (CLIENT_B, "Sim Advisor Client Two", "paper"),
        (CLIENT_C, "Sim Advisor Client Three", "paper"),
    ]
    assert accounts[3].base_currency == "EUR"


async def test_a_large_advisor_structure_is_read_through_the_paged_subaccounts() -> None:
    """More than 100 clients: `/portfolio/subaccounts` stops at 100, `/portfolio/subaccounts2` pages the rest."""
    sim = SimulatorState(clock=frozen_clock)
    sim.log_in_advisor(subaccounts=250)
    async with open_simulator_backend(sim, clock=frozen_clock) as backend:
        accounts = await backend.list_accounts()
    assert len(accounts) == 251
    assert all(a.account_label for a in accounts)  # every title came from a sub-accounts page
    assert accounts[-1].account_id == "DU9000250"
    pages = [p for p in sim.paths() if p == "GET /portfolio/subaccounts2"]
    assert len(pages) == 13  # 251 accounts, 20 a page


# -- account-scoped calls ------------------------------------------------------------------------


async def test_an_order_for_b_lands_on_b_when_a_was_selected(backend: CpapiBackend, advisor: SimulatorState) -> None:
    await backend.list_accounts()
    advisor.select_account(CLIENT_A)  # another program selected A
    writer = backend.order_writer()
    placed = await writer.place(ticket(CLIENT_B), client_order_id="b-1", confirm=allow_all, max_rounds=5)
    assert [o.account_id for o in advisor.orders_with_client_order_id("b-1")] == [CLIENT_B]
    assert placed.broker_order_id == str(advisor.orders_with_client_order_id("b-1")[0].order_id)
    orders = await backend.live_orders(CLIENT_B)
    assert [o.broker_order_id for o in orders if o.client_order_id == "b-1"] == [placed.broker_order_id]


async def test_concurrent_orders_and_reads_for_different_accounts_never_cross(
    backend: CpapiBackend, advisor: SimulatorState
) -> None:
    """Placements with a question each (place, then reply) and reads for other accounts, all at once."""
    advisor.set_question_rules([QuestionRule.always("o451", "Total value of {quantity} {symbol}?")])
    writer = backend.order_writer()
    targets = [CLIENT_A, CLIENT_B, CLIENT_C, MASTER] * 4
    seen_orders: dict[str, list[str]] = {}

    async def place(n: int, account_id: str) -> None:
        await writer.place(ticket(account_id), client_order_id=f"c-{n}", confirm=allow_all, max_rounds=5)

    async def read(account_id: str) -> None:
        for _ in range(3):
            orders = await backend.live_orders(account_id)
            seen_orders.setdefault(account_id, []).extend(o.account_id for o in orders)
            await backend.executions(account_id, 1)

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tasks:
            for n, account_id in enumerate(targets):
                tasks.start_soon(place, n, account_id)
            for account_id in (CLIENT_C, CLIENT_A, MASTER, CLIENT_B):
                tasks.start_soon(read, account_id)
    for n, account_id in enumerate(targets):
        assert [o.account_id for o in advisor.orders_with_client_order_id(f"c-{n}")] == [account_id], n
    for account_id, owners in seen_orders.items():
        assert set(owners) <= {account_id}
    assert advisor.engine.superseded_replies == 0


async def test_cancel_and_modify_act_on_the_account_they_name(backend: CpapiBackend, advisor: SimulatorState) -> None:
    writer = backend.order_writer()
    placed = await writer.place(ticket(CLIENT_B), client_order_id="m-1", confirm=allow_all, max_rounds=5)
    advisor.select_account(CLIENT_A)
    changed = await writer.modify(
        placed.broker_order_id, ticket(CLIENT_B, limit_price=Decimal("211.00")), confirm=allow_all, max_rounds=5
    )
    assert changed.broker_order_id == placed.broker_order_id
    assert advisor.book.orders[int(placed.broker_order_id)].price == Decimal("211.00")
    advisor.select_account(CLIENT_A)
    ack = await writer.cancel(CLIENT_B, placed.broker_order_id)
    assert ack.accepted
    assert advisor.book.orders[int(placed.broker_order_id)].status == "Cancelled"


async def test_a_bracket_for_b_lands_on_b_when_a_was_selected(backend: CpapiBackend, advisor: SimulatorState) -> None:
    writer = backend.order_writer()
    await writer.place(ticket(CLIENT_B), client_order_id="first", confirm=allow_all, max_rounds=5)
    advisor.select_account(CLIENT_A)  # another program selected A; the writer last selected B itself
    parent = ticket(CLIENT_B, quantity=Decimal(2), limit_price=Decimal(200))
    take_profit = parent.model_copy(update={"side": "sell", "limit_price": Decimal(230)})
    stop_loss = parent.model_copy(
        update={"side": "sell", "order_type": "stop", "limit_price": None, "stop_price": Decimal(190)}
    )
    placed = await writer.place_bracket(
        parent, take_profit, stop_loss, client_order_id="br-1", confirm=allow_all, max_rounds=5
    )
    ids = {int(str(leg.broker_order_id)) for leg in placed.legs}
    assert len(ids) == 3
    assert {advisor.book.orders[order_id].account_id for order_id in ids} == {CLIENT_B}


async def test_what_if_previews_the_account_it_names(backend: CpapiBackend, advisor: SimulatorState) -> None:
    advisor.set_position(CLIENT_C, AAPL, Decimal(7), Decimal(100))
    await backend.list_accounts()
    estimate = await backend.what_if(ticket(CLIENT_C))
    assert estimate.error is None
    assert advisor.selected_account == CLIENT_C
    assert "POST /iserver/account" in advisor.paths()


async def test_a_nightly_reset_between_selection_and_placement_selects_again(
    backend: CpapiBackend, advisor: SimulatorState
) -> None:
    """The reset selects the first account; the client primes again and re-selects before resending."""
    writer = backend.order_writer()
    await writer.place(ticket(CLIENT_B), client_order_id="r-1", confirm=allow_all, max_rounds=5)
    advisor.reset_brokerage_session()  # selected: the master again, priming lost
    await writer.place(ticket(CLIENT_B), client_order_id="r-2", confirm=allow_all, max_rounds=5)
    assert [o.account_id for o in advisor.orders_with_client_order_id("r-2")] == [CLIENT_B]


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param((200, {"set": False, "acctId": CLIENT_B}), id="not-set"),
        pytest.param((200, {"set": True, "acctId": CLIENT_A}), id="other-account"),
        pytest.param((400, {"error": "Account switch is not allowed"}), id="refused"),
    ],
)
async def test_an_unconfirmed_switch_refuses_the_order_and_sends_nothing(
    backend: CpapiBackend, advisor: SimulatorState, answer: tuple[int, object]
) -> None:
    await backend.list_accounts()
    advisor.fail_next(answer[0], answer[1], path_contains="/iserver/account")
    before = advisor.placement_requests
    with pytest.raises(GatewayError) as caught:
        await backend.order_writer().place(ticket(CLIENT_B), client_order_id="x-1", confirm=allow_all, max_rounds=5)
    assert caught.value.code == ErrorCode.BROKER_ACCOUNT_NOT_SELECTED
    assert CLIENT_B not in caught.value.message and CLIENT_B not in str(caught.value.details)
    assert advisor.placement_requests == before
    assert advisor.orders_with_client_order_id("x-1") == []


async def test_a_single_account_login_never_switches(sim: SimulatorState) -> None:
    sim.log_in("live")
    async with open_simulator_backend(sim, clock=frozen_clock) as backend:
        await backend.order_writer().place(ticket("U7654321"), client_order_id="s-1", confirm=allow_all, max_rounds=5)
        await backend.live_orders("U7654321")
    assert "POST /iserver/account" not in sim.paths()
