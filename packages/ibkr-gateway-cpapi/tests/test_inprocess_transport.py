"""Fake mode's in-process transport answers exactly as the simulator's Starlette app does.

The same script of requests runs against two identically built simulators, one behind
`httpx2.ASGITransport(create_simulator_app(...))` and one behind `SimulatorTransport`; every answer
(status, headers, body bytes) must be the same, errors, redirects and dropped connections included.
"""

import itertools
import secrets
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest
from ibkr_gateway_cpapi.simulator import SimulatorState, create_simulator_app
from ibkr_gateway_cpapi.simulator.inprocess import SimulatorTransport

from .conftest import frozen_clock

pytestmark = pytest.mark.anyio

HOST = "http://cpapi-simulator.invalid"

BIG = {
    "json": {
        "orders": [
            {
                "acctId": "DU1234567",
                "conid": 265598,
                "orderType": "LMT",
                "side": "BUY",
                "quantity": 501,
                "price": 190,
                "tif": "DAY",
            }
        ]
    }
}
"""A ticket large enough to raise the broker's questions (answered through `/iserver/reply`)."""

PLACE = {"acctId": "DU1234567", "conid": 265598, "orderType": "LMT", "side": "BUY", "quantity": 10, "tif": "DAY"}

Step = tuple[str, str, dict[str, Any]]

SCRIPT: list[Step] = [
    ("GET", "/v1/api/iserver/auth/status", {}),
    ("POST", "/v1/api/iserver/auth/status", {"json": {}}),
    ("GET", "/v1/api/tickle", {}),
    ("POST", "/v1/portal/tickle", {}),
    ("GET", "/v1/api/sso/validate", {}),
    ("GET", "/v1/api/portfolio/DU1234567/positions/0", {}),  # before priming: CPAPI's refusal
    ("GET", "/v1/api/iserver/accounts", {}),
    ("GET", "/v1/api/portfolio/accounts", {}),
    ("GET", "/v1/api/portfolio/subaccounts", {}),
    ("GET", "/v1/api/portfolio/subaccounts2", {"params": {"page": "0"}}),
    ("GET", "/v1/api/portfolio/subaccounts2", {"params": {"page": "x"}}),
    ("POST", "/v1/api/iserver/account", {"json": {"acctId": "DU1234567"}}),
    ("POST", "/v1/api/iserver/account", {"json": {}}),
    ("POST", "/v1/api/iserver/account", {"content": b"{not json", "headers": {"content-type": "application/json"}}),
    ("GET", "/v1/api/portfolio/DU1234567/meta", {}),
    ("GET", "/v1/api/portfolio/DU1234567/summary", {}),
    ("GET", "/v1/portal/portfolio/DU1234567/ledger", {}),
    ("GET", "/v1/api/portfolio/DU1234567/positions/0", {}),
    ("GET", "/v1/api/portfolio/DU1234567/positions/1", {}),
    ("GET", "/v1/api/portfolio/DU1234567/positions/x", {}),
    ("GET", "/v1/api/portfolio/DU0000000/summary", {}),
    ("GET", "/v1/api/portfolio/DU1%2F2/summary", {}),  # an encoded slash splits the segment, as in Starlette
    ("GET", "/v1/api/portfolio//summary", {}),  # an empty path parameter matches no route
    ("POST", "/v1/api/portfolio/DU1234567/positions/invalidate", {}),
    ("GET", "/v1/api/iserver/secdef/search", {"params": {"symbol": "AAPL"}}),
    ("POST", "/v1/api/iserver/secdef/search", {"json": {"symbol": "Apple", "name": True}}),
    ("GET", "/v1/api/iserver/secdef/search", {}),
    ("GET", "/v1/api/iserver/contract/265598/info", {}),
    ("GET", "/v1/api/iserver/contract/nope/info", {}),
    ("GET", "/v1/api/iserver/marketdata/snapshot", {"params": {"conids": "265598,8314", "fields": "31,84,86"}}),
    ("GET", "/v1/api/iserver/marketdata/snapshot", {"params": {"conids": "265598,8314", "fields": "31,84,86"}}),
    ("GET", "/v1/api/iserver/marketdata/snapshot", {"params": {"conids": "a,b"}}),
    ("GET", "/v1/api/iserver/marketdata/snapshot", {"params": [("conids", "1"), ("conids", "265598")]}),
    ("POST", "/v1/api/iserver/marketdata/unsubscribe", {"json": {"conid": 265598}}),
    ("GET", "/v1/api/iserver/marketdata/unsubscribeall", {}),
    ("GET", "/v1/api/iserver/marketdata/history", {"params": {"conid": "265598", "bar": "1h", "period": "1d"}}),
    ("GET", "/v1/api/iserver/marketdata/history", {"params": {"conid": "265598"}}),
    ("GET", "/v1/api/iserver/account/orders", {}),
    ("GET", "/v1/api/iserver/account/orders", {"params": {"force": "true", "filters": "filled"}}),
    ("POST", "/v1/api/iserver/account/DU1234567/orders/whatif", {"json": {"orders": [PLACE | {"price": 212.0}]}}),
    ("POST", "/v1/api/iserver/account/DU1234567/orders", {"json": {"orders": [PLACE | {"price": 212.42}]}}),
    ("POST", "/v1/api/iserver/account/DU1234567/orders", BIG),
    ("POST", "/v1/api/iserver/account/DU1234567/orders", {"json": [PLACE | {"price": 200.0, "cOID": "c-1"}]}),
    ("POST", "/v1/api/iserver/account/DU1234567/orders", {"json": {"orders": [PLACE]}}),
    ("POST", "/v1/api/iserver/reply/00000000-0000-4000-8000-000000000001", {"json": {"confirmed": True}}),
    ("POST", "/v1/api/iserver/reply/unknown", {"json": {"confirmed": True}}),
    ("POST", "/v1/api/iserver/reply/unknown", {"json": {"confirmed": "yes"}}),
    ("GET", "/v1/api/iserver/account/orders", {}),
    ("GET", "/v1/api/iserver/account/order/status/1", {}),
    ("GET", "/v1/api/iserver/account/trades", {"params": {"days": "2"}}),
    ("POST", "/v1/api/iserver/account/DU1234567/order/1", {"json": {"price": 201.0, "quantity": 10}}),
    ("DELETE", "/v1/api/iserver/account/DU1234567/order/1", {}),
    ("POST", "/v1/api/iserver/questions/suppress", {"json": {"messageIds": ["o163"]}}),
    ("POST", "/v1/api/iserver/questions/suppress", {"json": {}}),
    ("POST", "/v1/api/iserver/questions/suppress/reset", {}),
    ("GET", "/v1/api/iserver/secdef/strikes", {"params": {"conid": "265598", "sectype": "OPT", "month": "jan27"}}),
    ("GET", "/v1/api/iserver/secdef/strikes", {"params": {"conid": "x"}}),
    ("GET", "/v1/api/iserver/scanner/params", {}),
    ("POST", "/v1/api/iserver/scanner/run", {"json": {"instrument": "STK", "type": "TOP_PERC_GAIN"}}),
    ("POST", "/v1/api/iserver/scanner/run", {"content": b"[1]", "headers": {"content-type": "application/json"}}),
    ("GET", "/v1/api/trsrv/secdef/schedule", {"params": {"assetClass": "STK", "symbol": "AAPL"}}),
    ("GET", "/v1/api/iserver/exchangerate", {"params": {"source": "EUR", "target": "USD"}}),
    ("GET", "/v1/api/iserver/exchangerate", {}),
    ("GET", "/v1/api/iserver/account/pnl/partitioned", {}),
    ("POST", "/v1/api/pa/transactions", {"json": {"acctIds": ["DU1234567"], "conids": [265598], "days": 3}}),
    ("POST", "/v1/api/oauth/live_session_token", {}),  # OAuth off: 404 as the app
    ("GET", "/v1/api/oauth/live_session_token", {}),  # wrong method
    ("HEAD", "/v1/api/tickle", {}),
    ("PUT", "/v1/api/tickle", {}),
    ("DELETE", "/v1/api/iserver/accounts", {}),
    ("GET", "/v1/api/no/such/path", {}),
    ("GET", "/v1/api/ws", {}),
    ("GET", "/v1/api/", {}),
    ("GET", "/elsewhere", {}),
    ("GET", "/", {}),
    ("GET", "/v1/api/tickle/", {}),  # Starlette's trailing-slash redirect
    ("GET", "/v1/api/iserver/accounts/", {"params": {"a": "b c"}}),
    ("GET", "/v1/api", {}),
    ("GET", "/sim/control/", {}),
    ("GET", "/v1/api/päth/ü", {"params": {"q": "é"}}),
    ("GET", "/sim/control", {}),
    ("POST", "/sim/control", {"json": {"fail_next": {"status": 503, "body": "down", "path_contains": "tickle"}}}),
    ("GET", "/v1/api/tickle", {}),
    ("POST", "/sim/control", {"json": {"fail_next": {"status": 429, "times": 1}}}),
    ("GET", "/v1/api/iserver/accounts", {}),
    ("POST", "/sim/control", {"json": []}),
    ("POST", "/sim/control", {"json": {"session": "nope"}}),
    ("PUT", "/sim/control", {}),
    ("POST", "/sim/control", {"json": {"session": "log_out"}}),
    ("GET", "/v1/api/iserver/accounts", {}),
    ("POST", "/v1/api/iserver/auth/ssodh/init", {"json": {"compete": True}}),
    ("GET", "/v1/api/iserver/reauthenticate", {}),
    ("POST", "/v1/api/logout", {}),
    ("GET", "/v1/api/iserver/auth/status", {}),
]
"""Every route with good and bad input, the app's own errors, redirects and control switches."""


class _Counters:
    """Session ids and reply ids from counters, restarted for each simulator, so two built alike answer alike."""

    def __init__(self) -> None:
        self.restart()

    def restart(self) -> None:
        self.sessions = itertools.count()
        self.replies = itertools.count(1)

    def token_hex(self, nbytes: int | None = None) -> str:
        return f"{next(self.sessions):0{2 * (nbytes or 32)}x}"

    def uuid4(self) -> uuid.UUID:
        return uuid.UUID(int=(4 << 76) | (2 << 62) | next(self.replies))


@pytest.fixture
def deterministic(monkeypatch: pytest.MonkeyPatch) -> Iterator[_Counters]:
    counters = _Counters()
    monkeypatch.setattr(secrets, "token_hex", counters.token_hex)
    monkeypatch.setattr(uuid, "uuid4", counters.uuid4)
    yield counters


async def _run(transport: httpx2.AsyncBaseTransport) -> list[tuple[object, ...]]:
    answers: list[tuple[object, ...]] = []
    async with httpx2.AsyncClient(transport=transport, base_url=HOST, follow_redirects=False) as http:
        for method, path, options in SCRIPT:
            response = await http.request(method, path, **options)
            headers = [(k, v) for k, v in response.headers.multi_items() if k != "allow"]
            allow = sorted(part.strip() for part in response.headers.get("allow", "").split(",") if part)
            answers.append((method, path, response.status_code, headers, allow, response.content))
    return answers


async def test_every_answer_is_the_apps_byte_for_byte(deterministic: _Counters) -> None:
    """Status, headers and body of every scripted request: identical through both carriers."""
    over_app = await _run(httpx2.ASGITransport(app=create_simulator_app(SimulatorState(clock=frozen_clock))))
    deterministic.restart()
    in_process = await _run(SimulatorTransport(SimulatorState(clock=frozen_clock)))
    assert [answer[:3] for answer in in_process] == [answer[:3] for answer in over_app]
    for mine, theirs in zip(in_process, over_app, strict=True):
        assert mine == theirs, mine[:2]
    statuses = {answer[2] for answer in over_app}
    assert {200, 400, 401, 404, 405, 307, 429, 503} <= statuses  # the script reaches every kind of answer


async def test_a_dropped_answer_is_a_protocol_error_through_both(deterministic: _Counters) -> None:
    """An accepted order whose answer is lost: both carriers raise the same error and keep the order."""
    for make in (
        lambda sim: httpx2.ASGITransport(app=create_simulator_app(sim)),
        lambda sim: SimulatorTransport(sim),
    ):
        sim = SimulatorState(clock=frozen_clock)
        sim.drop_response_after_accept()
        async with httpx2.AsyncClient(transport=make(sim), base_url=HOST) as http:
            await http.get("/v1/api/iserver/accounts")
            with pytest.raises(httpx2.RemoteProtocolError):
                await http.post(f"/v1/api/iserver/account/{PLACE['acctId']}/orders", json=[PLACE | {"price": 212.42}])
            assert [order.status for order in sim.book.orders.values()].count("Filled") >= 1


def test_the_fake_accounts_read_imports_no_web_framework(tmp_path: Any) -> None:
    """`ibkr-agent accounts list` in fake mode serves the simulator in process: no Starlette, no ASGI app.

    Nor does it define the market and order wire models, which load with the reads that use them, or the
    order tickets, order mapping and order body, which load with the first order read, preview or order,
    or the saved-book models, which load with the first book saved or read.
    """
    code = (
        "import sys\n"
        "from ibkr_gateway_cli.fast import main\n"
        "sys.argv = ['ibkr-agent', 'accounts', 'list', '--json']\n"
        "try:\n    main()\nexcept SystemExit as exit:\n    assert exit.code == 0, exit.code\n"
        "loaded = sorted(name for name in sys.modules if name.split('.')[0] in ('starlette', 'uvicorn'))\n"
        "assert not loaded, loaded\n"
        "assert 'ibkr_gateway_cpapi.simulator.inprocess' in sys.modules\n"
        "unused = sorted(name for name in sys.modules if name.endswith(('._wire_market', '._wire_orders')))\n"
        "unused += [name for name in sys.modules if name.endswith(('._order_mapping', '._order_body', '._saved'))]\n"
        "unused += [name for name in sys.modules if name == 'ibkr_gateway_core.orders.tickets']\n"
        "assert not unused, unused\n"
    )
    env = {"IBKR_AGENT_STATE_DIR": str(tmp_path), "PATH": "/usr/bin:/bin", "PYTHONWARNDEFAULTENCODING": "1"}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, encoding="utf-8", check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert '"account_id": "DU1234567"' in done.stdout


async def test_a_later_process_that_only_reads_first_still_continues_ids_and_refuses_a_known_coid(
    tmp_path: Any,
) -> None:
    """The order engine is made on the first order, after reads restored the saved book: nothing is lost.

    Its counters (order ids, execution ids) and the cOIDs seen continue from the saved book.
    """
    first = SimulatorState(clock=frozen_clock, book_path=tmp_path / "simulator-book.json")
    async with httpx2.AsyncClient(transport=SimulatorTransport(first), base_url=HOST) as http:
        await http.get("/v1/api/iserver/accounts")
        placed = await http.post(
            "/v1/api/iserver/account/DU1234567/orders", json=[PLACE | {"price": 212.42, "cOID": "once"}]
        )
        [ack] = placed.json()
    later = SimulatorState(clock=frozen_clock, book_path=tmp_path / "simulator-book.json")
    async with httpx2.AsyncClient(transport=SimulatorTransport(later), base_url=HOST) as http:
        await http.get("/v1/api/iserver/accounts")  # a read: restores the book, makes no engine
        again = await http.post(
            "/v1/api/iserver/account/DU1234567/orders", json=[PLACE | {"price": 212.42, "cOID": "once"}]
        )
        assert "Local order ID=once is already registered" in again.text  # the saved cOID is known
        [fresh] = (
            await http.post("/v1/api/iserver/account/DU1234567/orders", json=[PLACE | {"price": 212.42, "cOID": "new"}])
        ).json()
        trades = (await http.get("/v1/api/iserver/account/trades", params={"days": "7"})).json()
    assert int(fresh["order_id"]) == int(ack["order_id"]) + 1
    ids = [trade["execution_id"] for trade in trades]
    assert len(ids) >= 2 and len(set(ids)) == len(ids)
    assert later.engine.next_execution == first.engine.next_execution + 1  # it went on from the saved counter


def test_the_lazy_wire_names_resolve_to_their_home_modules() -> None:
    """`_wire.WireTrade` and the rest: the very classes and parsers of `_wire_market` and `_wire_orders`."""
    import importlib

    from ibkr_gateway_cpapi import _wire as wire

    lazy: dict[str, str] = dict(wire._LAZY)  # pyright: ignore[reportPrivateUsage]
    assert len(lazy) == 19
    for name, home in lazy.items():
        module = importlib.import_module(home, "ibkr_gateway_cpapi")
        assert getattr(wire, name) is getattr(module, name)
    missing = "WireNothing"
    with pytest.raises(AttributeError):
        getattr(wire, missing)
