"""Pacing, the penalty box and CPAPI's lying caches, against `ibkr-agent simulator serve --unkind` over HTTPS.

One simulator process serves the module; each test sets the behaviours it needs through the
simulator's control endpoint (`/sim/control`) and talks to it through the real `CpapiClient` and
`CpapiBackend` (or the CLI) over HTTPS. The accelerated clock lets a test cross IBKR's 10-minute
penalty box in about two seconds.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import pytest
from cli_harness import client_portal_config, run_cli, serve_simulator, sim_control
from ibkr_gateway_core.errors import ErrorCode, GatewayError
from ibkr_gateway_cpapi.backend import CpapiBackend
from ibkr_gateway_cpapi.client import CpapiClient
from ibkr_gateway_cpapi.pacing import LIVE_ORDERS_PATH, PaceLimit, RateGovernor

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

ACCOUNT = "DU1234567"
AAPL = 265598
MSFT = 272093


@pytest.fixture(scope="module")
def unkind_simulator() -> Iterator[str]:
    """`ibkr-agent simulator serve --unkind` in a subprocess; yields its base URL."""
    with serve_simulator("--unkind") as base_url:
        yield base_url


control = sim_control


@pytest.fixture
def sim(unkind_simulator: str) -> str:
    """The simulator reset to real time, IBKR's limits with a fresh penalty box, and the positions cache on."""
    control(
        unkind_simulator,
        {
            "clock": {"speed": 1},
            "pacing": True,
            "positions_cache": True,
            "live_orders_empty_calls": 0,
            "history_latency_seconds": 0,
            "reset_counters": True,
        },
    )
    return unkind_simulator


def open_backend(base_url: str, governor: RateGovernor | None = None) -> CpapiBackend:
    client = CpapiClient(base_url, verify_tls=False, governor=governor or RateGovernor())
    return CpapiBackend(client, name="client_portal_gateway")


@pytest.fixture
async def backend(sim: str) -> AsyncIterator[CpapiBackend]:
    async with open_backend(sim) as opened:
        yield opened


def refused(base_url: str) -> int:
    pacing = control(base_url)["pacing"]
    return int(pacing["refused"])


async def test_concurrent_snapshots_queue_and_coalesce_without_a_single_429(backend: CpapiBackend, sim: str) -> None:
    """60 concurrent quotes of 20 conids: all answered with prices, no 429, never over 10 snapshots/s upstream."""
    conids = control(sim, {"add_contracts": 20})  # idempotent: the same 20 made-up stocks each time
    assert conids["pacing"] is not None
    ids = [9_000_000 + n for n in range(1, 21)]
    quotes: list[Any] = []

    async def quote(conid: int) -> None:
        quotes.append(await backend.market_snapshot(conid))

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tasks:
            for _ in range(3):
                for conid in ids:
                    tasks.start_soon(quote, conid)
    assert len(quotes) == 60 and all(q.last is not None for q in quotes)
    status = control(sim)
    assert status["pacing"]["refused"] == 0
    assert status["pacing"]["peak"]["/iserver/marketdata/snapshot"] <= 10
    assert status["pacing"]["peak"]["*"] <= 10
    assert status["requests_by_path"]["GET /iserver/marketdata/snapshot"] <= 2 * len(ids)  # pre-flight + data


async def test_identical_reads_in_flight_share_one_upstream_request(backend: CpapiBackend, sim: str) -> None:
    """30 concurrent identical reads reach the gateway as one request (single flight)."""
    client = backend._client  # pyright: ignore[reportPrivateUsage]
    await client.get("/iserver/accounts")
    control(sim, {"reset_counters": True})
    answers: list[object] = []

    async def read() -> None:
        answers.append(await client.get("/iserver/secdef/search", {"symbol": "AAPL"}))

    async with anyio.create_task_group() as tasks:
        for _ in range(30):
            tasks.start_soon(read)
    assert len(answers) == 30 and all(a == answers[0] for a in answers)
    assert control(sim)["requests_by_path"] == {"GET /iserver/secdef/search": 1}


async def test_a_429_boxes_its_endpoint_fails_fast_and_clears_after_the_window(sim: str) -> None:
    """The penalty box on an accelerated clock: 10 simulated minutes pass in 2 real seconds; nothing probes it."""
    control(
        sim,
        {
            "clock": {"speed": 300},
            "pacing": {
                "retry_after": True,
                "rules": [{"path": "/iserver/secdef/search", "limit": 1, "window_seconds": 60}],
            },
        },
    )
    async with open_backend(sim) as backend:
        assert await backend.search_contracts("AAPL")
        with pytest.raises(GatewayError) as caught:
            await backend.search_contracts("MSFT")  # the simulator is stricter than the governor: a 429
        assert caught.value.code == ErrorCode.BROKER_RATE_LIMITED
        assert 1.0 <= caught.value.details["retry_after_seconds"] <= 2.0
        sent = control(sim)["requests_by_path"]["GET /iserver/secdef/search"]
        started = time.monotonic()
        with pytest.raises(GatewayError) as again:
            await backend.search_contracts("IBM")
        assert again.value.code == ErrorCode.BROKER_RATE_LIMITED
        assert time.monotonic() - started < 0.5  # failed fast, no waiting
        assert (await backend.contract(AAPL)).contract_id == AAPL  # other endpoints are not boxed
        assert control(sim)["requests_by_path"]["GET /iserver/secdef/search"] == sent  # nothing was sent
        status = await backend.session_status()
        boxed = {b.endpoint: b.boxed_for_seconds for b in status.pacing}
        assert boxed["/iserver/secdef/search"] > 0
        await anyio.sleep(caught.value.details["retry_after_seconds"] + 0.3)
        assert [c.contract_id for c in await backend.search_contracts("IBM")] == [8314]
    assert refused(sim) == 1


async def test_a_429_naming_the_ip_stops_every_endpoint(sim: str) -> None:
    """Breaking the global rate puts the whole client in the box; the client stops calling anything."""
    control(sim, {"pacing": {"global_per_second": 3, "penalty_seconds": 600}})
    async with open_backend(sim) as backend:
        with pytest.raises(GatewayError) as caught:
            for conid in (AAPL, MSFT, 8314, 756733, 416904):
                await backend.contract(conid)
        assert caught.value.code == ErrorCode.BROKER_RATE_LIMITED
        sent = control(sim)["requests"]
        for call in (backend.list_accounts(), backend.search_contracts("AAPL"), backend.positions(ACCOUNT)):
            with pytest.raises(GatewayError) as boxed:
                await call
            assert boxed.value.code == ErrorCode.BROKER_RATE_LIMITED
            assert boxed.value.details["retry_after_seconds"] > 500
        assert control(sim)["requests"] == sent  # nothing more reached the gateway
        status = await backend.session_status()
        assert {b.endpoint: b.boxed_for_seconds for b in status.pacing}["*"] > 500
    assert refused(sim) == 1


async def test_history_never_runs_more_than_five_at_once(backend: CpapiBackend, sim: str) -> None:
    """IBKR serves 5 concurrent history requests and refuses the sixth; 12 concurrent calls all succeed."""
    control(sim, {"history_latency_seconds": 0.3})
    bars: list[Any] = []

    async def history(conid: int, period: str) -> None:
        bars.append(await backend.historical_bars(conid, period=period, bar="1h", outside_regular_hours=False))

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tasks:
            for n in range(12):
                tasks.start_soon(history, (AAPL, MSFT, 8314)[n % 3], f"{n + 1}d")
    assert len(bars) == 12
    assert refused(sim) == 0


async def test_history_over_the_cap_is_refused_by_the_simulator(sim: str) -> None:
    """Without the client's cap (its concurrency limit raised) the sixth concurrent request gets a 429."""
    control(sim, {"history_latency_seconds": 0.5})
    async with open_backend(sim, RateGovernor(concurrency={})) as backend:
        outcomes: list[str] = []

        async def history(n: int) -> None:
            try:
                await backend.historical_bars(AAPL, period=f"{n + 1}d", bar="1h", outside_regular_hours=False)
                outcomes.append("ok")
            except GatewayError as exc:
                outcomes.append(exc.code)

        await backend.prime()
        async with anyio.create_task_group() as tasks:
            for n in range(7):
                tasks.start_soon(history, n)
    assert outcomes.count(ErrorCode.BROKER_RATE_LIMITED) >= 1
    assert refused(sim) >= 1


async def test_positions_stay_stale_until_invalidated_and_fresh_reads_through(backend: CpapiBackend, sim: str) -> None:
    """IBKR caches positions: a change outside this gateway shows only after `fresh` invalidates the cache."""
    before = {p.contract_id: p.quantity for p in await backend.positions(ACCOUNT)}
    control(sim, {"set_position": {"account_id": ACCOUNT, "conid": 8314, "quantity": 77, "avg_cost": 150}})
    stale = {p.contract_id: p.quantity for p in await backend.positions(ACCOUNT)}
    assert stale == before
    fresh = {p.contract_id: p.quantity for p in await backend.positions(ACCOUNT, fresh=True)}
    assert fresh[8314] == Decimal(77)
    assert "POST /portfolio/DU1234567/positions/invalidate" in control(sim)["requests_by_path"]


async def test_positions_are_invalidated_after_this_gateways_own_order(backend: CpapiBackend, sim: str) -> None:
    """After an order of ours fills, the next positions read invalidates the cache by itself."""
    before = {p.contract_id: p.quantity for p in await backend.positions(ACCOUNT)}
    client = backend._client  # pyright: ignore[reportPrivateUsage]
    ticket = {
        "conid": MSFT,
        "orderType": "MKT",
        "side": "BUY",
        "quantity": 3,
        "tif": "DAY",
        "cOID": f"pace-{time.time_ns()}",
    }
    answer = await client.post(f"/iserver/account/{ACCOUNT}/orders", {"orders": [ticket]}, mutating=True)
    for _ in range(5):
        assert isinstance(answer, list) and answer, answer
        first: dict[str, Any] = answer[0]
        if "order_id" in first:
            break
        answer = await client.post(f"/iserver/reply/{first['id']}", {"confirmed": True}, mutating=True)
    after = {p.contract_id: p.quantity for p in await backend.positions(ACCOUNT)}
    assert after.get(MSFT, Decimal(0)) == before.get(MSFT, Decimal(0)) + 3


async def test_an_empty_live_orders_answer_after_working_orders_is_unknown_not_none(sim: str) -> None:
    """IBKR's order list comes back empty for a while: that is BROKER_ANSWER_INCOMPLETE, then the orders again."""
    control(sim, {"clock": {"speed": 10}})  # the simulator's 5 s live-orders window lasts 0.5 s
    governor = RateGovernor(limits=[PaceLimit(LIVE_ORDERS_PATH, 1, timedelta(seconds=0.6))])
    async with open_backend(sim, governor) as backend:
        working = await backend.live_orders(ACCOUNT)
        assert any(o.status == "submitted" for o in working), "the seed has working orders"
        control(sim, {"live_orders_empty_now": 2})
        with pytest.raises(GatewayError) as caught:
            await backend.live_orders(ACCOUNT)
        assert caught.value.code == ErrorCode.BROKER_ANSWER_INCOMPLETE
        assert [o.broker_order_id for o in await backend.live_orders(ACCOUNT)] == [o.broker_order_id for o in working]
    assert refused(sim) == 0


async def test_a_newer_question_invalidates_an_older_reply_id(backend: CpapiBackend, sim: str) -> None:
    """Two orders waiting for confirmation: only the newer reply id still works (IBKR's rule)."""
    client = backend._client  # pyright: ignore[reportPrivateUsage]

    async def ask(c_oid: str) -> str:
        big = {
            "conid": AAPL,
            "orderType": "LMT",
            "price": 100,
            "side": "BUY",
            "quantity": 600,
            "tif": "DAY",
            "cOID": c_oid,
        }
        answer = await client.post(f"/iserver/account/{ACCOUNT}/orders", {"orders": [big]}, mutating=True)
        assert isinstance(answer, list) and "id" in answer[0], answer
        return str(answer[0]["id"])

    older = await ask(f"old-{time.time_ns()}")
    newer = await ask(f"new-{time.time_ns()}")
    with pytest.raises(GatewayError) as caught:
        await client.post(f"/iserver/reply/{older}", {"confirmed": False}, mutating=True)
    assert caught.value.code is ErrorCode.BROKER_BACKEND_UNAVAILABLE  # the broker's 400, its text quoted
    assert "reply id not found" in caught.value.message
    declined = await client.post(f"/iserver/reply/{newer}", {"confirmed": False}, mutating=True)
    assert isinstance(declined, dict) and "error" in declined


def test_the_cli_reads_fresh_positions_and_shows_budgets(sim: str, cli_env: dict[str, str], tmp_path: Path) -> None:
    """`positions list --fresh` invalidates first; `backend status` lists each budget with its queue."""
    config = client_portal_config(tmp_path, sim)
    control(sim, {"set_position": {"account_id": ACCOUNT, "conid": 756733, "quantity": 5, "avg_cost": 400}})
    listed = run_cli(["--config", str(config), "positions", "list", "--account", ACCOUNT, "--fresh", "--json"], cli_env)
    assert listed.returncode == 0, listed.stderr
    assert "POST /portfolio/DU1234567/positions/invalidate" in control(sim)["requests_by_path"]
    status = run_cli(["--config", str(config), "backend", "status"], cli_env)
    assert status.returncode == 0, status.stderr
    assert "pacing budgets:" in status.stdout
    assert "/iserver/marketdata/history" in status.stdout
