"""The simulator speaks CPAPI: auth states, priming, pre-flight, paging, live-order quirk, orders and replies."""

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx2
import pytest
from dirty_equals import IsStr
from ibkr_gateway_cpapi.simulator import AuthState, QuestionRule, SimulatorState, create_simulator_app

from .conftest import NOW

pytestmark = pytest.mark.anyio

API = "http://sim/v1/api"


@pytest.fixture
async def http(sim: SimulatorState) -> AsyncIterator[httpx2.AsyncClient]:
    transport = httpx2.ASGITransport(app=create_simulator_app(sim))
    async with httpx2.AsyncClient(transport=transport, base_url=API) as client:
        yield client


async def prime(http: httpx2.AsyncClient) -> None:
    assert (await http.get("/iserver/accounts")).status_code == 200
    assert (await http.get("/portfolio/accounts")).status_code == 200


def test_app_exposes_its_state_for_tests(sim: SimulatorState) -> None:
    """Tests reach the simulator through app.state.simulator."""
    assert create_simulator_app(sim).state.simulator is sim
    assert isinstance(create_simulator_app().state.simulator, SimulatorState)


async def test_auth_status_answers_get_and_post(http: httpx2.AsyncClient) -> None:
    """The spec lists POST; clients use both (reference §1)."""
    for response in (await http.get("/iserver/auth/status"), await http.post("/iserver/auth/status", json={})):
        assert response.json() | {"serverInfo": None} == {
            "authenticated": True,
            "competing": False,
            "connected": True,
            "message": "",
            "MAC": IsStr(),
            "serverInfo": None,
            "hardware_info": IsStr(),
            "fail": "",
        }


async def test_tickle_reports_a_random_session_id_and_the_misspelled_collission(
    http: httpx2.AsyncClient, sim: SimulatorState
) -> None:
    """`collission` is IBKR's spelling; the session id is random per login, not a fixed secret."""
    body = (await http.get("/tickle")).json()
    assert body["session"] == sim.session_id
    assert body["session"] == IsStr(regex=r"^[0-9a-f]{32}$")
    assert body["collission"] is False
    assert body["iserver"]["authStatus"]["authenticated"] is True
    assert 0 < body["ssoExpires"] <= 9 * 60 * 1000
    other = SimulatorState()
    assert other.session_id != sim.session_id


async def test_without_login_every_endpoint_is_401(http: httpx2.AsyncClient, sim: SimulatorState) -> None:
    """NO_SESSION: 401, and /logout ends the login (reference §9.1)."""
    assert (await http.post("/logout", json={})).json() == {"status": True}
    assert sim.auth_state == AuthState.NO_SESSION
    for path in ("/tickle", "/iserver/auth/status", "/portfolio/accounts", "/sso/validate"):
        assert (await http.get(path)).status_code == 401


async def test_optional_no_session_body_mode(http: httpx2.AsyncClient, sim: SimulatorState) -> None:
    """Some gateway builds answer 200 {"error": "no session"} instead of 401."""
    sim.log_out()
    sim.answer_no_session_with_body()
    response = await http.get("/tickle")
    assert (response.status_code, response.json()) == (200, {"error": "no session"})


async def test_sso_only_login_has_no_bridge_until_ssodh_init(http: httpx2.AsyncClient, sim: SimulatorState) -> None:
    """Portfolio works, /iserver says no bridge, ssodh/init opens the brokerage session."""
    sim.log_in_sso_only()
    assert (await http.get("/iserver/auth/status")).json()["authenticated"] is False
    refused = await http.get("/iserver/accounts")
    assert (refused.status_code, refused.json()) == (400, {"error": "Bad Request: no bridge", "statusCode": 400})
    assert (await http.get("/portfolio/accounts")).status_code == 200
    opened = await http.post("/iserver/auth/ssodh/init", json={"publish": True, "compete": True})
    assert opened.json()["authenticated"] is True
    assert (await http.get("/iserver/accounts")).status_code == 200


async def test_competing_session_is_taken_back_only_with_compete(http: httpx2.AsyncClient, sim: SimulatorState) -> None:
    """Another platform's login makes this one competing; ssodh/init with compete=true takes it back."""
    sim.set_competing()
    status = (await http.post("/iserver/auth/status")).json()
    assert (status["authenticated"], status["competing"]) == (False, True)
    assert (await http.post("/iserver/auth/ssodh/init", json={"compete": False})).json()["passed"] is False
    assert (await http.post("/iserver/auth/ssodh/init", json={"compete": True})).json()["competing"] is False


async def test_idle_session_expires_on_the_virtual_clock() -> None:
    """No request for the idle window drops the login (reference §5)."""
    now = [NOW]
    sim = SimulatorState(clock=lambda: now[0], idle_timeout=timedelta(minutes=6))
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=create_simulator_app(sim)), base_url=API) as http:
        assert (await http.get("/tickle")).status_code == 200
        now[0] += timedelta(minutes=5)
        assert (await http.get("/tickle")).status_code == 200
        now[0] += timedelta(minutes=6)
        assert (await http.get("/tickle")).status_code == 401
    assert sim.auth_state == AuthState.NO_SESSION


async def test_sso_validate_tells_paper_from_live() -> None:
    """LOGIN_TYPE 2 for paper, 1 for live (reference §8)."""
    for profile, login_type in (("paper", 2), ("live", 1)):
        sim = SimulatorState(profile=profile)
        async with httpx2.AsyncClient(
            transport=httpx2.ASGITransport(app=create_simulator_app(sim)), base_url=API
        ) as http:
            assert (await http.get("/sso/validate")).json()["LOGIN_TYPE"] == login_type


async def test_brokerage_calls_need_accounts_first(http: httpx2.AsyncClient, sim: SimulatorState) -> None:
    """500 "Please query /accounts first" until /iserver/accounts, again after a reset (reference §9.3)."""
    for path in ("/iserver/marketdata/snapshot?conids=265598", "/iserver/account/orders", "/iserver/account/trades"):
        response = await http.get(path)
        assert (response.status_code, response.json()) == (500, {"error": "Please query /accounts first"})
    accounts = (await http.get("/iserver/accounts")).json()
    assert (accounts["accounts"], accounts["isPaper"]) == (["DU1234567", "DU7654321"], True)
    assert (await http.get("/iserver/account/trades")).status_code == 200
    sim.reset_brokerage_session()
    assert (await http.get("/iserver/account/trades")).status_code == 500


async def test_portfolio_calls_need_portfolio_accounts_first(http: httpx2.AsyncClient) -> None:
    """/portfolio/{id}/* before /portfolio/accounts is refused."""
    assert (await http.get("/portfolio/DU1234567/ledger")).status_code == 500
    await http.get("/portfolio/accounts")
    assert (await http.get("/portfolio/DU1234567/ledger")).status_code == 200


async def test_ledger_has_currencies_base_seconds_and_endofbundle(http: httpx2.AsyncClient) -> None:
    """Ledger shape per reference §2.2: keyed by currency plus BASE, timestamp in seconds."""
    await prime(http)
    ledger = (await http.get("/portfolio/DU1234567/ledger")).json()
    assert list(ledger) == ["EUR", "USD", "BASE"]
    assert ledger["USD"]["endofbundle"] == 1 and "endofbundle" not in ledger["EUR"]
    assert ledger["USD"]["timestamp"] == int(NOW.timestamp())
    assert ledger["BASE"]["cashbalance"] == pytest.approx(96602.17 + 1500 * 1.0825)


async def test_summary_has_segment_variants(http: httpx2.AsyncClient) -> None:
    """netliquidation, netliquidation-c and netliquidation-s (reference §2.2)."""
    await prime(http)
    summary = (await http.get("/portfolio/DU1234567/summary")).json()
    assert {"netliquidation", "netliquidation-c", "netliquidation-s", "accountcode"} <= set(summary)
    assert summary["accountcode"]["value"] == "DU1234567"
    assert summary["netliquidation"]["timestamp"] == int(NOW.timestamp() * 1000)


async def test_positions_page_past_the_end_is_empty(http: httpx2.AsyncClient) -> None:
    """Pages start at 0; a page past the end answers []."""
    await prime(http)
    assert len((await http.get("/portfolio/DU1234567/positions/0")).json()) == 3
    assert (await http.get("/portfolio/DU1234567/positions/1")).json() == []


async def test_secdef_search_sends_conid_as_a_string(http: httpx2.AsyncClient) -> None:
    """A known CPAPI inconsistency (reference §1)."""
    await prime(http)
    [aapl] = (await http.get("/iserver/secdef/search", params={"symbol": "AAPL"})).json()
    assert aapl["conid"] == "265598"
    assert [s["secType"] for s in aapl["sections"]][0] == "STK"


async def test_snapshot_preflight_then_string_values(http: httpx2.AsyncClient) -> None:
    """First request per conid opens the stream; later ones carry strings, 6509, _updated, server_id."""
    await prime(http)
    params = {"conids": "265598,8314", "fields": "31,84,86,55"}
    assert (await http.get("/iserver/marketdata/snapshot", params=params)).json() == [
        {"conid": 265598, "conidEx": "265598"},
        {"conid": 8314, "conidEx": "8314"},
    ]
    aapl, ibm = (await http.get("/iserver/marketdata/snapshot", params={"conids": "265598,8314"})).json()
    assert {k: aapl[k] for k in ("31", "84", "86", "55", "6509")} == {
        "31": "212.41",
        "84": "212.40",
        "86": "212.42",
        "55": "AAPL",
        "6509": "RpB",
    }
    assert aapl["_updated"] == int(NOW.timestamp() * 1000) and aapl["server_id"] == aapl["6119"]
    assert (ibm["31"], ibm["6509"]) == ("C171.02", "DPB")


async def test_snapshot_preflight_starts_over_in_a_new_brokerage_session(
    http: httpx2.AsyncClient, sim: SimulatorState
) -> None:
    """Pre-flights are per brokerage session."""
    await prime(http)
    await http.get("/iserver/marketdata/snapshot", params={"conids": "265598"})
    sim.log_in()
    await http.get("/iserver/accounts")
    assert (await http.get("/iserver/marketdata/snapshot", params={"conids": "265598"})).json() == [
        {"conid": 265598, "conidEx": "265598"}
    ]


async def test_history_has_ms_times_price_factor_and_no_data(http: httpx2.AsyncClient) -> None:
    """Deterministic bars, t in ms, priceFactor, and "No data." for an unknown conid (reference §2.3)."""
    await prime(http)
    body = (
        await http.get("/iserver/marketdata/history", params={"conid": "265598", "period": "2d", "bar": "1d"})
    ).json()
    assert (body["symbol"], body["priceFactor"], len(body["data"])) == ("AAPL", 100, 2)
    assert body["data"][-1]["t"] == int(
        datetime(2026, 11, 24, tzinfo=UTC).timestamp() * 1000
    )  # daily bars start at 00:00
    missing = await http.get("/iserver/marketdata/history", params={"conid": "1", "period": "1d", "bar": "1h"})
    assert (missing.status_code, missing.json()) == (500, {"error": "No data."})


async def test_live_orders_are_empty_on_the_first_call_and_on_force(http: httpx2.AsyncClient) -> None:
    """The call-twice quirk (reference §2.5)."""
    await prime(http)
    assert (await http.get("/iserver/account/orders")).json() == {"orders": [], "snapshot": True}
    assert len((await http.get("/iserver/account/orders")).json()["orders"]) == 2
    assert (await http.get("/iserver/account/orders", params={"force": "true"})).json()["orders"] == []
    filtered = (await http.get("/iserver/account/orders", params={"filters": "filled"})).json()
    assert filtered["orders"] == []


PLACE = {"acctId": "DU1234567", "conid": 265598, "orderType": "LMT", "side": "BUY", "quantity": 10, "tif": "DAY"}


async def test_limit_buy_at_the_ask_fills_at_once(http: httpx2.AsyncClient, sim: SimulatorState) -> None:
    """Deterministic engine: a buy at or above the ask fills, producing an execution and a position."""
    await prime(http)
    ack = (
        await http.post(
            "/iserver/account/DU1234567/orders", json={"orders": [PLACE | {"price": 212.42, "cOID": "t-1"}]}
        )
    ).json()
    assert ack == [
        {"order_id": IsStr(regex=r"^\d+$"), "order_status": "Filled", "encrypt_message": "1", "local_order_id": "t-1"}
    ]
    assert sim.book.positions[("DU1234567", 265598)].quantity == Decimal(160)
    trades = (await http.get("/iserver/account/trades")).json()
    assert (trades[0]["order_ref"], trades[0]["price"], trades[0]["side"]) == ("t-1", "212.42", "B")
    status = (await http.get(f"/iserver/account/order/status/{ack[0]['order_id']}")).json()
    assert (status["order_status"], status["average_price"]) == ("Filled", "212.42")


async def test_limit_below_the_ask_works_until_cancelled(http: httpx2.AsyncClient) -> None:
    """A resting order stays Submitted; DELETE answers "Request was submitted" and cancels it."""
    await prime(http)
    [ack] = (await http.post("/iserver/account/DU1234567/orders", json=[PLACE | {"price": 210.00}])).json()
    assert ack["order_status"] == "Submitted"
    order_id = int(ack["order_id"])
    cancelled = (await http.delete(f"/iserver/account/DU1234567/order/{order_id}")).json()
    assert cancelled == {"msg": "Request was submitted", "order_id": order_id, "conid": 265598, "account": "DU1234567"}
    assert (await http.get(f"/iserver/account/order/status/{order_id}")).json()["order_status"] == "Cancelled"


async def test_quote_move_fills_a_resting_order(http: httpx2.AsyncClient, sim: SimulatorState) -> None:
    """Moving the ask down through a resting buy fills it."""
    await prime(http)
    [ack] = (await http.post("/iserver/account/DU1234567/orders", json=[PLACE | {"price": 210.00}])).json()
    sim.set_quote(265598, bid=Decimal("209.90"), ask=Decimal("209.95"))
    assert sim.book.orders[int(ack["order_id"])].status == "Filled"


async def test_questions_chain_through_reply_ids(http: httpx2.AsyncClient) -> None:
    """A price 10% off market asks o163; size over 500 asks o383 next; confirming both places the order."""
    await prime(http)
    first = (
        await http.post(
            "/iserver/account/DU1234567/orders", json={"orders": [PLACE | {"price": 190.00, "quantity": 501}]}
        )
    ).json()
    assert first == [
        {"id": IsStr(regex=r"^[0-9a-f-]{36}$"), "message": [IsStr()], "isSuppressed": False, "messageIds": ["o163"]}
    ]
    second = (await http.post(f"/iserver/reply/{first[0]['id']}", json={"confirmed": True})).json()
    assert second[0]["messageIds"] == ["o383"]
    reused = await http.post(f"/iserver/reply/{first[0]['id']}", json={"confirmed": True})
    assert (reused.status_code, reused.json()) == (400, {"error": f"reply id not found: '{first[0]['id']}'"})
    ack = (await http.post(f"/iserver/reply/{second[0]['id']}", json={"confirmed": True})).json()
    assert ack[0]["order_status"] == "Submitted"


async def test_suppressed_and_reconfigured_questions(http: httpx2.AsyncClient, sim: SimulatorState) -> None:
    """Suppression lasts for the brokerage session; rules are configurable per test."""
    await prime(http)
    await http.post("/iserver/questions/suppress", json={"messageIds": ["o163"]})
    [ack] = (await http.post("/iserver/account/DU1234567/orders", json=[PLACE | {"price": 200.00}])).json()
    assert "order_id" in ack
    sim.set_question_rules([QuestionRule("o451", "Total value {quantity} {symbol}?", lambda ticket, contract: True)])
    [question] = (await http.post("/iserver/account/DU1234567/orders", json=[PLACE | {"price": 200.00}])).json()
    assert question["messageIds"] == ["o451"] and question["message"] == ["Total value 10 AAPL?"]


async def test_declined_question_discards_the_order(http: httpx2.AsyncClient, sim: SimulatorState) -> None:
    """confirmed:false discards; nothing is placed."""
    await prime(http)
    orders_before = len(sim.book.orders)
    [question] = (await http.post("/iserver/account/DU1234567/orders", json=[PLACE | {"price": 200.00}])).json()
    declined = (await http.post(f"/iserver/reply/{question['id']}", json={"confirmed": False})).json()
    assert "error" in declined
    assert len(sim.book.orders) == orders_before


async def test_duplicate_client_order_id_is_an_error_body(http: httpx2.AsyncClient) -> None:
    """cOID must be unique (reference §2.5)."""
    await prime(http)
    body = [PLACE | {"price": 210.00, "cOID": "dup-1"}]
    await http.post("/iserver/account/DU1234567/orders", json=body)
    again = (await http.post("/iserver/account/DU1234567/orders", json=body)).json()
    assert again == {"error": "Order couldn't be submitted: Local order ID=dup-1 is already registered."}


@pytest.mark.parametrize(
    ("ticket", "error"),
    [
        pytest.param({k: v for k, v in PLACE.items() if k != "side"}, "Missing required field: side", id="no-side"),
        pytest.param(
            PLACE | {"conidex": "265598@SMART"}, "Exactly one of conid and conidex is required", id="both-ids"
        ),
        pytest.param(PLACE, "price is required for LMT orders", id="limit-without-price"),
        pytest.param(
            PLACE | {"price": 1, "acctId": "DU7654321"}, "acctId does not match the account in the path", id="acct"
        ),
    ],
)
async def test_invalid_tickets_are_refused(http: httpx2.AsyncClient, ticket: dict[str, object], error: str) -> None:
    """Validation mirrors CPAPI's required keys."""
    await prime(http)
    response = await http.post("/iserver/account/DU1234567/orders", json={"orders": [ticket]})
    assert (response.status_code, response.json()) == (400, {"error": error})


async def test_whatif_answers_formatted_strings_and_places_nothing(
    http: httpx2.AsyncClient, sim: SimulatorState
) -> None:
    """What-if amounts are formatted strings with separators (reference §2.5)."""
    await prime(http)
    orders_before = len(sim.book.orders)
    preview = (
        await http.post("/iserver/account/DU1234567/orders/whatif", json={"orders": [PLACE | {"price": 212.00}]})
    ).json()
    assert preview["amount"] == {"amount": "2,120.00 USD", "commission": "1.00 USD", "total": "2,121.00 USD"}
    assert preview["position"] == {"current": "150", "change": "10", "after": "160"}
    assert (preview["warn"], preview["error"]) == (None, None)
    assert len(sim.book.orders) == orders_before


async def test_modify_changes_the_price_of_a_working_order(http: httpx2.AsyncClient) -> None:
    """Modify repeats the whole ticket with the changed price."""
    await prime(http)
    [ack] = (await http.post("/iserver/account/DU1234567/orders", json=[PLACE | {"price": 210.00}])).json()
    modified = (
        await http.post(f"/iserver/account/DU1234567/order/{ack['order_id']}", json=PLACE | {"price": 212.50})
    ).json()
    assert modified[0]["order_status"] == "Filled"


async def test_injected_failures_answer_before_anything_else(http: httpx2.AsyncClient, sim: SimulatorState) -> None:
    """fail_next lets tests produce 503s and 429s through the real app."""
    sim.fail_next(429, "Too Many Requests")
    response = await http.get("/tickle")
    assert (response.status_code, response.text) == (429, "Too Many Requests")
    assert (await http.get("/tickle")).status_code == 200


async def test_pacing_is_off_by_default_and_refuses_with_429_when_enabled(
    http: httpx2.AsyncClient, sim: SimulatorState
) -> None:
    """IBKR's per-endpoint windows (tickle 1/s) and the penalty box, on the simulator's clock (reference §4)."""
    for _ in range(3):
        assert (await http.get("/tickle")).status_code == 200
    pacer = sim.enable_pacing(penalty=timedelta(minutes=10))
    assert (await http.get("/tickle")).status_code == 200
    refused = await http.get("/tickle")
    assert (refused.status_code, refused.json()["error"]) == (429, "Too many requests")
    assert "retry-after" not in refused.headers  # IBKR documents none
    assert (await http.get("/tickle")).status_code == 429  # the endpoint's penalty box
    assert (await http.get("/iserver/auth/status")).status_code == 200  # other endpoints still answer
    assert pacer.refused == 2
    sim.disable_pacing()
    assert (await http.get("/tickle")).status_code == 200


async def test_breaking_the_global_rate_boxes_every_endpoint(http: httpx2.AsyncClient, sim: SimulatorState) -> None:
    """Over 10 requests per second in all, the whole client (its IP) is refused, and the answer says so."""
    pacer = sim.enable_pacing(penalty=timedelta(minutes=10))
    for n in range(10):
        assert (await http.get(f"/iserver/contract/{n}/info")).status_code in (200, 400)
    refused = await http.get("/iserver/auth/status")
    assert refused.status_code == 429
    assert "this IP" in refused.json()["error"]
    assert (await http.get("/tickle")).status_code == 429
    assert pacer.stats()["boxed"] == {"*": 600.0}


async def test_pacing_windows_slide_on_the_virtual_clock() -> None:
    """Once the window has passed, the endpoint answers again; no penalty box when it is zero."""
    now = [NOW]
    sim = SimulatorState(clock=lambda: now[0])
    sim.enable_pacing(penalty=timedelta(0))
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=create_simulator_app(sim)), base_url=API) as http:
        await http.get("/iserver/accounts")
        assert (await http.get("/iserver/account/trades")).status_code == 200
        assert (await http.get("/iserver/account/trades")).status_code == 429
        assert (await http.get("/iserver/accounts")).status_code == 200
        now[0] += timedelta(seconds=5)
        assert (await http.get("/iserver/account/trades")).status_code == 200
