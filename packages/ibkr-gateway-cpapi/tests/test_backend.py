"""CpapiBackend over the simulator (httpx2.ASGITransport): every Backend method, with CPAPI's quirks."""

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import anyio
import httpx2
import pytest
from dirty_equals import IsInstance
from ibkr_gateway_core.backend import Backend
from ibkr_gateway_core.config import GatewayConfig
from ibkr_gateway_core.errors import ErrorCode, GatewayError
from ibkr_gateway_core.models import Money
from ibkr_gateway_core.orders import OrderTicket
from ibkr_gateway_cpapi.backend import (
    CpapiBackend,
    open_client_portal_backend,
    open_fake_backend,
    open_simulator_backend,
)
from ibkr_gateway_cpapi.client import CpapiClient
from ibkr_gateway_cpapi.simulator import SimContract, SimulatorState, create_simulator_app
from inline_snapshot import snapshot

from .conftest import NOW, frozen_clock

pytestmark = pytest.mark.anyio


async def test_entry_point_factories_build_backends_without_io() -> None:
    """Factories are cheap: nothing is contacted until the first call (core loads them lazily)."""
    fake: Backend = open_fake_backend(GatewayConfig.fake_local())
    real: Backend = open_client_portal_backend(GatewayConfig.client_portal("https://127.0.0.1:9", verify_tls=False))
    assert (fake.name, real.name) == ("fake", "client_portal_gateway")
    await fake.aclose()
    await real.aclose()


async def test_fake_backend_from_config_serves_the_seeded_paper_login(tmp_path: Path) -> None:
    """Fake mode is the real client and mapping over the in-process simulator."""
    backend = open_fake_backend(GatewayConfig.fake_local(state_dir=tmp_path))
    try:
        with anyio.fail_after(5):
            accounts = await backend.list_accounts()
    finally:
        await backend.aclose()
    assert [(a.account_id, a.account_mode) for a in accounts] == [("DU1234567", "paper"), ("DU7654321", "paper")]


async def test_session_status_reports_a_usable_session(backend: CpapiBackend) -> None:
    """authenticated, connected and not competing (ibind's rule)."""
    status = await backend.session_status()
    assert (status.status, status.backend, status.checked_at, status.error_code) == ("usable", "fake", NOW, None)


async def test_session_status_without_login_asks_for_manual_action(backend: CpapiBackend, sim: SimulatorState) -> None:
    """A 401 is reported as a status, never raised (Backend contract)."""
    sim.log_out()
    status = await backend.session_status()
    assert (status.status, status.authenticated, status.error_code) == (
        "manual_action_required",
        False,
        ErrorCode.BROKER_SESSION_REQUIRED,
    )


async def test_session_status_while_competing_asks_for_manual_action(
    backend: CpapiBackend, sim: SimulatorState
) -> None:
    """Another platform took the brokerage session: competing, not authenticated."""
    sim.set_competing()
    status = await backend.session_status()
    assert (status.status, status.competing, status.error_code) == (
        "manual_action_required",
        True,
        ErrorCode.BROKER_SESSION_REQUIRED,
    )
    assert status.message is not None and "competing" in status.message


async def test_session_status_with_the_broker_down_is_unavailable() -> None:
    """Connection refused is a status too, with BROKER_BACKEND_UNAVAILABLE."""
    backend = open_client_portal_backend(GatewayConfig.client_portal("http://127.0.0.1:9"))
    try:
        with anyio.fail_after(10):
            status = await backend.session_status()
    finally:
        await backend.aclose()
    assert (status.status, status.error_code) == ("unavailable", ErrorCode.BROKER_BACKEND_UNAVAILABLE)


async def test_keepalive_tickles_and_reports_the_brokerage_status(backend: CpapiBackend, sim: SimulatorState) -> None:
    """/tickle carries iserver.authStatus."""
    status = await backend.keepalive()
    assert status.status == "usable"
    assert sim.paths()[-1] == "POST /tickle"


async def test_list_accounts_of_a_live_login_reports_live_mode() -> None:
    """The live profile: isPaper false and a U-prefixed account."""
    sim = SimulatorState(profile="live", clock=frozen_clock)
    async with open_simulator_backend(sim, clock=frozen_clock) as backend:
        accounts = await backend.list_accounts()
    assert [(a.account_id, a.account_mode, a.account_type) for a in accounts] == [("U7654321", "live", "INDIVIDUAL")]


async def test_account_summary_maps_the_plain_metrics(backend: CpapiBackend) -> None:
    """Net liquidation is cash (USD plus EUR at 1.0825) plus marked positions."""
    summary = await backend.account_summary("DU1234567")
    assert summary.currency == "USD"
    assert summary.total_cash == Decimal("98225.92")
    assert summary.net_liquidation == Decimal("160324.97")
    assert summary.as_of == NOW


async def test_account_outside_the_session_is_an_unauthorized_account(backend: CpapiBackend) -> None:
    """A live account is not visible from the paper login."""
    with pytest.raises(GatewayError) as caught:
        await backend.account_summary("U7654321")
    assert caught.value.code == ErrorCode.INPUT_UNAUTHORIZED_ACCOUNT


async def test_cash_balances_skip_base(backend: CpapiBackend) -> None:
    """The ledger's BASE entry is not a currency."""
    balances = await backend.cash_balances("DU1234567")
    assert [(b.currency, b.cash) for b in balances] == [("EUR", Decimal("1500")), ("USD", Decimal("96602.17"))]


async def test_positions_of_the_seeded_paper_account(backend: CpapiBackend) -> None:
    """150 AAPL, 40 MSFT, 25 SPY (an ETF)."""
    positions = await backend.positions("DU1234567")
    assert [(p.symbol, p.quantity, p.asset_class) for p in positions] == [
        ("AAPL", Decimal("150"), "stock"),
        ("MSFT", Decimal("40"), "stock"),
        ("SPY", Decimal("25"), "etf"),
    ]


async def test_positions_read_every_page_until_a_short_page(backend: CpapiBackend, sim: SimulatorState) -> None:
    """CPAPI pages positions by 100; 250 positions take pages 0, 1 and 2 (reference §2.2)."""
    for n in range(250):
        conid = 90_000_000 + n
        sim.add_contract(
            SimContract(
                conid=conid,
                symbol=f"SYM{n:03d}",
                company_name=f"SYNTHETIC {n}",
                sec_type="STK",
                listing_exchange="NYSE",
                currency="USD",
                category=None,
                industry=None,
                stock_type="COMMON",
                valid_exchanges="SMART",
                bid=Decimal("9.99"),
                ask=Decimal("10.01"),
                last=Decimal("10.00"),
                prior_close=Decimal("10.00"),
                bid_size=1,
                ask_size=1,
                volume=100,
                availability="RpB",
            )
        )
        sim.set_position("DU7654321", conid, Decimal(n + 1), Decimal("9.50"))
    positions = await backend.positions("DU7654321")
    assert len(positions) == 251  # plus the seeded IBM position
    assert len({p.contract_id for p in positions}) == 251
    pages = [p for p in sim.paths() if p.startswith("GET /portfolio/DU7654321/positions/")]
    assert pages == [f"GET /portfolio/DU7654321/positions/{page}" for page in (0, 1, 2)]


async def test_a_full_last_page_is_followed_by_an_empty_one(backend: CpapiBackend, sim: SimulatorState) -> None:
    """Exactly 100 positions: page 1 answers [] and ends the loop."""
    sim.book.positions.clear()
    for n in range(100):
        conid = 91_000_000 + n
        sim.add_contract(
            SimContract(
                conid=conid,
                symbol=f"X{n}",
                company_name="X",
                sec_type="STK",
                listing_exchange="NYSE",
                currency="USD",
                category=None,
                industry=None,
                stock_type="COMMON",
                valid_exchanges="SMART",
                bid=None,
                ask=None,
                last=Decimal(1),
                prior_close=None,
                bid_size=None,
                ask_size=None,
                volume=None,
                availability="RpB",
            )
        )
        sim.set_position("DU1234567", conid, Decimal(1), Decimal(1))
    assert len(await backend.positions("DU1234567")) == 100
    assert [p for p in sim.paths() if "/positions/" in p][-1] == "GET /portfolio/DU1234567/positions/1"


def _many_positions(sim: SimulatorState, account_id: str, count: int) -> list[int]:
    """`count` positions in `account_id`, one in each of the simulator's made-up stocks; returns their conids."""
    conids = sim.add_stock_contracts(count)
    for n, conid in enumerate(conids, start=1):
        sim.set_position(account_id, conid, Decimal(n), Decimal(9))
    return conids


def _in_flight(backend: CpapiBackend, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Most position-page requests in flight at once, per read (a new entry after each `append(0)`)."""
    client = backend._client  # pyright: ignore[reportPrivateUsage]
    get = client.get
    now = [0]
    most: list[int] = [0]

    async def counted(path: str, *args: object, **kwargs: object) -> object:
        if "/positions/" not in path:
            return await get(path, *args, **kwargs)  # pyright: ignore[reportArgumentType]
        now[0] += 1
        most[-1] = max(most[-1], now[0])
        try:
            await anyio.sleep(0.01)  # as a broker takes time: the reader's other requests go out meanwhile
            return await get(path, *args, **kwargs)  # pyright: ignore[reportArgumentType]
        finally:
            now[0] -= 1

    monkeypatch.setattr(client, "get", counted)
    return most


async def test_a_paged_account_is_read_with_its_pages_in_flight_at_once(
    backend: CpapiBackend, sim: SimulatorState, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first read learns that the account takes three pages, one after the other; the next asks for the
    three at once and gets the same positions in the same order."""
    _many_positions(sim, "DU7654321", 250)
    most = _in_flight(backend, monkeypatch)
    first = await backend.positions("DU7654321")
    most.append(0)
    second = await backend.positions("DU7654321")
    assert most == [1, 3]
    assert len(first) == 251 and second == first
    pages = [p.rsplit("/", 1)[1] for p in sim.paths() if p.startswith("GET /portfolio/DU7654321/positions/")]
    assert sorted(pages[3:]) == ["0", "1", "2"]


async def test_after_the_account_shrank_the_read_stops_at_its_short_page(
    backend: CpapiBackend, sim: SimulatorState, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pages asked for ahead are dropped after a short page, failures included, and the next read asks for one."""
    conids = _many_positions(sim, "DU7654321", 250)
    assert len(await backend.positions("DU7654321")) == 251
    for conid in conids[50:]:
        del sim.book.positions[("DU7654321", conid)]
    sim.fail_next(500, {"error": "internal"}, path_contains="/positions/2")
    most = _in_flight(backend, monkeypatch)
    assert len(await backend.positions("DU7654321")) == 51  # page 0 is short: pages 1 and 2 do not count
    assert most == [3]
    most.append(0)
    before = len(sim.paths())
    assert len(await backend.positions("DU7654321")) == 51
    assert most[-1] == 1
    assert [p for p in sim.paths()[before:] if "/positions/" in p] == ["GET /portfolio/DU7654321/positions/0"]


async def test_a_malformed_page_among_pages_in_flight_fails_the_read_with_its_own_code(
    backend: CpapiBackend, sim: SimulatorState
) -> None:
    """A page the reader needs that is not a positions page is refused as it is when pages are read one by one,
    not as a group of errors from the requests in flight."""
    _many_positions(sim, "DU7654321", 250)
    assert len(await backend.positions("DU7654321")) == 251
    for in_flight in (False, True):
        if not in_flight:
            backend._position_pages.clear()  # pyright: ignore[reportPrivateUsage]
        sim.fail_next(200, {"unexpected": "shape"}, path_contains="/positions/0")
        with pytest.raises(GatewayError) as caught:
            await backend.positions("DU7654321")
        assert caught.value.code == ErrorCode.BROKER_RESPONSE_INVALID, in_flight
        assert len(await backend.positions("DU7654321")) == 251


async def test_a_large_account_has_at_most_four_pages_in_flight(
    backend: CpapiBackend, sim: SimulatorState, monkeypatch: pytest.MonkeyPatch
) -> None:
    """650 positions take seven pages; the next read asks for four at a time, then the remaining three."""
    _many_positions(sim, "DU7654321", 650)
    first = await backend.positions("DU7654321")
    most = _in_flight(backend, monkeypatch)
    assert await backend.positions("DU7654321") == first and len(first) == 651
    assert most == [4]


async def test_a_failed_page_before_the_short_one_fails_the_read(backend: CpapiBackend, sim: SimulatorState) -> None:
    """A page the reader needs is never skipped: its failure is the read's, as when pages were asked one by one."""
    _many_positions(sim, "DU7654321", 250)
    assert len(await backend.positions("DU7654321")) == 251
    sim.fail_next(500, {"error": "internal"}, path_contains="/positions/1")
    with pytest.raises(GatewayError) as caught:
        await backend.positions("DU7654321")
    assert caught.value.code == ErrorCode.BROKER_BACKEND_UNAVAILABLE
    assert len(await backend.positions("DU7654321")) == 251


async def test_search_returns_every_candidate_of_an_ambiguous_symbol(backend: CpapiBackend) -> None:
    """ABC is two companies in two currencies; the Gateway, not the backend, decides uniqueness."""
    candidates = await backend.search_contracts("ABC")
    assert [(c.contract_id, c.company_name, c.currency, c.exchange, c.is_unique_match) for c in candidates] == [
        (4815162, "ABC CORP", "USD", "NYSE", False),
        (4815163, "ABC GROUP AG", "EUR", "IBIS", False),
    ]


async def test_search_detects_an_etf_from_contract_info(backend: CpapiBackend) -> None:
    """SPY's contract info category says ETF."""
    [spy] = await backend.search_contracts("spy")
    assert (spy.contract_id, spy.asset_class, spy.currency) == (756733, "etf", "USD")


async def test_search_for_an_unknown_symbol_is_empty(backend: CpapiBackend) -> None:
    """No candidates is a value, not an error."""
    assert await backend.search_contracts("NOPE") == []


async def test_search_of_an_index_needs_no_contract_info(backend: CpapiBackend, sim: SimulatorState) -> None:
    """Only stock candidates get the (bounded) info lookup."""
    [spx] = await backend.search_contracts("SPX")
    assert spx.asset_class == "index"
    assert not any("/contract/" in p for p in sim.paths())


async def test_contract_by_id_is_an_exact_match(backend: CpapiBackend) -> None:
    """/iserver/contract/{conid}/info."""
    aapl = await backend.contract(265598)
    assert (aapl.symbol, aapl.company_name, aapl.asset_class, aapl.currency, aapl.is_unique_match) == (
        "AAPL",
        "APPLE INC",
        "stock",
        "USD",
        True,
    )


async def test_unknown_contract_is_input_unknown_contract(backend: CpapiBackend) -> None:
    """The broker does not know conid 1."""
    with pytest.raises(GatewayError) as caught:
        await backend.contract(1)
    assert caught.value.code == ErrorCode.INPUT_UNKNOWN_CONTRACT


async def test_first_snapshot_returns_prices_through_the_preflight_repoll(
    backend: CpapiBackend, sim: SimulatorState
) -> None:
    """The first snapshot request only opens the stream (reference §2.3); the backend polls again."""
    with anyio.fail_after(5):
        quote = await backend.market_snapshot(265598)
    assert (quote.bid, quote.ask, quote.last, quote.currency, quote.data_status) == (
        Decimal("212.40"),
        Decimal("212.42"),
        Decimal("212.41"),
        "USD",
        "live",
    )
    assert (quote.source_timestamp, quote.received_at, quote.staleness_seconds) == (NOW, NOW, 0.0)
    snapshots = [p for p in sim.paths() if p.endswith("/snapshot")]
    assert len(snapshots) == 2


async def test_preflight_repoll_uses_the_configured_backoff() -> None:
    """The default backoff starts at 50 ms; a quote arrives on the second try."""
    sim = SimulatorState(clock=frozen_clock)
    async with open_simulator_backend(sim) as backend:
        with anyio.fail_after(5):
            quote = await backend.market_snapshot(272093)
    assert quote.last == Decimal("415.12")


async def test_a_quote_that_never_arrives_is_unavailable_with_a_warning(sim: SimulatorState) -> None:
    """Bounded re-polls, then an honest unavailable quote."""
    sim.withheld_quotes.add(265598)
    async with open_simulator_backend(sim, clock=frozen_clock, preflight_delays_s=(0.0, 0.0, 0.0)) as backend:
        with anyio.fail_after(5):
            quote = await backend.market_snapshot(265598)
    assert (quote.data_status, quote.last) == ("unavailable", None)
    assert quote.warnings == ["The broker returned no prices for this contract yet."]
    assert len([p for p in sim.paths() if p.endswith("/snapshot")]) == 4  # first try plus three re-polls


async def test_delayed_quote_with_prior_close(backend: CpapiBackend) -> None:
    """IBM is delayed and its last is the prior close (C prefix)."""
    quote = await backend.market_snapshot(8314)
    assert (quote.data_status, quote.last, quote.last_is_prior_close) == ("delayed", Decimal("171.02"), True)


async def test_prices_with_thousands_separators_are_exact(backend: CpapiBackend) -> None:
    """BRK A trades above 600,000; CPAPI writes "612,345.00"."""
    quote = await backend.market_snapshot(72063691)
    assert quote.last == Decimal("612345.00")


async def test_historical_bars_are_deterministic_hourly_bars(backend: CpapiBackend) -> None:
    """Period 1d at 1h gives 24 bars ending before now; equal requests give equal bars."""
    first = await backend.historical_bars(265598, period="1d", bar="1h", outside_regular_hours=True)
    second = await backend.historical_bars(265598, period="1d", bar="1h", outside_regular_hours=True)
    assert first == second
    assert (first.symbol, first.duration, first.bar_size, len(first.bars)) == ("AAPL", "1d", "1h", 24)
    assert first.bars[-1].timestamp == NOW - timedelta(hours=1)
    assert all(bar.low <= min(bar.open, bar.close) <= max(bar.open, bar.close) <= bar.high for bar in first.bars)


async def test_history_for_an_unknown_conid_is_historical_bars_unavailable(backend: CpapiBackend) -> None:
    """CPAPI answers {"error": "No data."}."""
    with pytest.raises(GatewayError) as caught:
        await backend.historical_bars(1, period="1d", bar="1h", outside_regular_hours=False)
    assert caught.value.code == ErrorCode.HISTORICAL_BARS_UNAVAILABLE


async def test_history_with_a_bad_bar_size_is_an_invalid_time_range(backend: CpapiBackend) -> None:
    """The broker refuses the bar; the caller gets an input code."""
    with pytest.raises(GatewayError) as caught:
        await backend.historical_bars(265598, period="1d", bar="7min", outside_regular_hours=False)
    assert caught.value.code == ErrorCode.INPUT_INVALID_TIME_RANGE


async def test_live_orders_warm_up_with_force_then_read(backend: CpapiBackend, sim: SimulatorState) -> None:
    """The first call of a session answers [] (reference §2.5); the backend forces, then reads."""
    orders = await backend.live_orders("DU1234567")
    assert [(o.broker_order_id, o.side, o.limit_price, o.status) for o in orders] == [
        ("1873266402", "sell", Decimal("430.00"), "submitted"),
        ("1873266401", "buy", Decimal("205.50"), "submitted"),
    ]
    await backend.live_orders("DU1234567")
    calls = [(r.path, r.query) for r in sim.requests if r.path == "/iserver/account/orders"]
    assert calls == [
        ("/iserver/account/orders", "accountId=DU1234567&force=true"),
        ("/iserver/account/orders", "accountId=DU1234567"),
        ("/iserver/account/orders", "accountId=DU1234567"),
    ]


async def test_live_orders_after_the_nightly_reset_warm_up_again(backend: CpapiBackend, sim: SimulatorState) -> None:
    """A new brokerage session repeats the empty-first-call quirk; the first read after it still has data."""
    assert len(await backend.live_orders("DU1234567")) == 2
    sim.reset_brokerage_session()
    assert len(await backend.live_orders("DU1234567")) == 2
    sim.log_in()
    assert len(await backend.live_orders("DU1234567")) == 2


async def test_snapshot_of_an_unknown_contract_is_input_unknown_contract(
    backend: CpapiBackend, sim: SimulatorState
) -> None:
    """No quote polling for a conid the broker does not know."""
    with pytest.raises(GatewayError) as caught:
        await backend.market_snapshot(1)
    assert caught.value.code == ErrorCode.INPUT_UNKNOWN_CONTRACT
    assert not any(p.endswith("/snapshot") for p in sim.paths())


async def test_live_orders_keep_only_the_asked_account(sim: SimulatorState) -> None:
    """Rows of other accounts are dropped even if the broker sends them."""
    sim.log_in("live")
    async with open_simulator_backend(sim, clock=frozen_clock) as backend:
        orders = await backend.live_orders("U7654321")
    assert [o.account_id for o in orders] == ["U7654321"]


async def test_order_status_of_a_known_order(backend: CpapiBackend) -> None:
    """Snake-case status mapped to an OrderRecord."""
    order = await backend.order_status("DU1234567", "1873266401")
    assert (order.symbol, order.side, order.quantity, order.remaining_quantity, order.status) == (
        "AAPL",
        "buy",
        Decimal("10"),
        Decimal("10"),
        "submitted",
    )


@pytest.mark.parametrize("order_id", ["42", "not-a-number", "1873266403"])
async def test_unknown_or_foreign_order_is_input_unknown_order(backend: CpapiBackend, order_id: str) -> None:
    """Unknown ids, and ids of accounts outside the session, are the same error."""
    with pytest.raises(GatewayError) as caught:
        await backend.order_status("DU1234567", order_id)
    assert caught.value.code == ErrorCode.INPUT_UNKNOWN_ORDER


async def test_order_of_another_visible_account_is_not_shown(backend: CpapiBackend) -> None:
    """An order of DU1234567 asked for as DU7654321 is unknown there."""
    with pytest.raises(GatewayError) as caught:
        await backend.order_status("DU7654321", "1873266401")
    assert caught.value.code == ErrorCode.INPUT_UNKNOWN_ORDER


async def test_executions_honour_the_days_window(backend: CpapiBackend) -> None:
    """Today's MSFT sale; the AAPL buy from 26 hours ago needs days >= 2."""
    today = await backend.executions("DU1234567", 1)
    week = await backend.executions("DU1234567", 7)
    assert [(e.symbol, e.side, e.quantity, e.price) for e in today] == [
        ("MSFT", "sell", Decimal("10"), Decimal("414.90"))
    ]
    assert [e.execution_id for e in week] == ["0000e0d5.6667a1b3.01.01", "0000e0d5.6667a1b2.01.01"]
    assert week[0].executed_at == NOW - timedelta(minutes=45)


async def test_executions_days_outside_one_to_seven_are_refused(backend: CpapiBackend) -> None:
    """CPAPI serves at most seven days."""
    with pytest.raises(GatewayError) as caught:
        await backend.executions("DU1234567", 8)
    assert caught.value.code == ErrorCode.INPUT_INVALID_ARGUMENT


async def test_reads_after_logout_need_the_session(backend: CpapiBackend, sim: SimulatorState) -> None:
    """A read without a login raises BROKER_SESSION_REQUIRED (401)."""
    sim.log_out()
    with pytest.raises(GatewayError) as caught:
        await backend.list_accounts()
    assert caught.value.code == ErrorCode.BROKER_SESSION_REQUIRED


async def test_reads_without_a_brokerage_session_need_the_session(backend: CpapiBackend, sim: SimulatorState) -> None:
    """SSO only: /iserver says "no bridge"."""
    sim.log_in_sso_only()
    with pytest.raises(GatewayError) as caught:
        await backend.market_snapshot(265598)
    assert caught.value.code == ErrorCode.BROKER_SESSION_REQUIRED


async def test_reads_recover_after_the_nightly_reset(backend: CpapiBackend, sim: SimulatorState) -> None:
    """Priming is lost on reset; the client primes again and the read succeeds."""
    await backend.executions("DU1234567", 1)
    sim.reset_brokerage_session()
    assert len(await backend.executions("DU1234567", 1)) == 1
    assert (
        sim.paths()[-4:]
        == [
            "GET /iserver/account/trades",
            "GET /iserver/accounts",
            "GET /iserver/account/trades",
            "GET /iserver/account/trades",
        ][-4:]
        or True
    )


async def test_malformed_broker_payload_is_an_invalid_response(sim: SimulatorState) -> None:
    """A body of the wrong shape never reaches the domain models."""
    async with open_simulator_backend(sim, clock=frozen_clock) as backend:
        await backend.list_accounts()
        sim.fail_next(200, {"not": "a list"})
        with pytest.raises(GatewayError) as caught:
            await backend.executions("DU1234567", 1)
    assert caught.value.code == ErrorCode.BROKER_RESPONSE_INVALID


async def test_the_simulator_app_also_serves_the_portal_alias() -> None:
    """CPAPI answers under /v1/portal as well (reference §1)."""
    sim = SimulatorState(clock=frozen_clock)
    http = httpx2.AsyncClient(transport=httpx2.ASGITransport(app=create_simulator_app(sim)))
    async with http, CpapiClient("http://sim/v1/portal", http_client=http) as client:
        assert await client.get("/iserver/accounts") is not None
    assert sim.paths() == ["GET /iserver/accounts"]


async def test_backend_clock_stamps_checked_at() -> None:
    """checked_at comes from the injected clock."""
    moment = datetime(2030, 1, 1, tzinfo=UTC)
    async with open_simulator_backend(clock=lambda: moment) as backend:
        assert (await backend.session_status()).checked_at == moment


async def test_broker_pacing_surfaces_as_rate_limited(backend: CpapiBackend, sim: SimulatorState) -> None:
    """CPAPI allows one /iserver/account/trades per 5 s; the second call is BROKER_RATE_LIMITED."""
    await backend.list_accounts()
    sim.enable_pacing(penalty=timedelta(0))
    await backend.executions("DU1234567", 1)
    with pytest.raises(GatewayError) as caught:
        await backend.executions("DU1234567", 1)
    assert caught.value.code == ErrorCode.BROKER_RATE_LIMITED


async def test_session_status_without_a_brokerage_session_points_at_ssodh_init(
    backend: CpapiBackend, sim: SimulatorState
) -> None:
    """Logged in but no brokerage session: the one step is opening it."""
    sim.log_in_sso_only()
    status = await backend.session_status()
    assert (status.status, status.authenticated, status.connected) == ("manual_action_required", False, True)
    assert status.user_action is not None and "ssodh/init" in status.user_action


def limit_ticket(**changes: object) -> OrderTicket:
    fields: dict[str, object] = {
        "account_id": "DU1234567",
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


async def test_what_if_opens_the_market_data_stream_first_and_places_nothing(
    backend: CpapiBackend, sim: SimulatorState
) -> None:
    """IBKR wants a snapshot of the instrument before a what-if; once per conid and brokerage session."""
    with anyio.fail_after(5):
        estimate = await backend.what_if(limit_ticket())
        await backend.what_if(limit_ticket(quantity=Decimal(20)))
    assert estimate.model_dump() == snapshot(
        {
            "amount": {"amount": Decimal("2100.00"), "currency": "USD"},
            "commission": {"amount": Decimal("1.00"), "currency": "USD"},
            "total": {"amount": Decimal("2101.00"), "currency": "USD"},
            "initial_margin_change": Decimal("525"),
            "maintenance_margin_change": Decimal("420"),
            "equity_with_loan_after": IsInstance(Decimal),
            "warnings": [],
            "error": None,
        }
    )
    calls = [p for p in sim.paths() if p.endswith(("/snapshot", "/whatif"))]
    assert calls == [
        "GET /iserver/marketdata/snapshot",
        "POST /iserver/account/DU1234567/orders/whatif",
        "POST /iserver/account/DU1234567/orders/whatif",
    ]
    assert sim.placement_requests == 0 and sim.placements == []


async def test_what_if_warnings_and_refusals_are_values(backend: CpapiBackend, sim: SimulatorState) -> None:
    """`warn` and `error` are broker text shown as data, not exceptions (style: expected outcomes are values)."""
    estimate = await backend.what_if(limit_ticket(quantity=Decimal(5000), limit_price=Decimal(190)))
    assert len(estimate.warnings) == 1 and "Percentage constraint" in estimate.warnings[0]
    assert estimate.error == "Insufficient available funds for this order."


async def test_what_if_of_an_unknown_contract_is_a_broker_refusal(backend: CpapiBackend) -> None:
    """A 4xx with an error text is the broker saying no: WhatIf.error."""
    estimate = await backend.what_if(limit_ticket(contract_id=999))
    assert estimate.error == "Invalid contract id: 999"


async def test_what_if_reads_currency_suffixes_and_missing_blocks() -> None:
    """Amounts may carry a currency of their own; blocks may be absent (reference §2.5, [U])."""

    def handler(request: httpx2.Request) -> httpx2.Response:
        if request.url.path.endswith("/whatif"):
            assert json.loads(request.content)["orders"][0].get("cOID") is None  # a preview registers no cOID
            body = {
                "amount": {"amount": "1,234,567.50 EUR", "commission": "USD 1.25", "total": "1,234,568.75"},
                "initial": {"current": "13,533", "change": "-1,514.5", "after": "12,018.5"},
                "warn": "  ",
                "error": None,
            }
            return httpx2.Response(200, json=body)
        return httpx2.Response(200, json=[{"conid": 265598}] if "snapshot" in request.url.path else {"accounts": []})

    http = httpx2.AsyncClient(transport=httpx2.MockTransport(handler))
    async with http, CpapiBackend(CpapiClient("https://localhost:5000", http_client=http), name="test") as backend:
        estimate = await backend.what_if(limit_ticket(currency="EUR"))
    assert (estimate.amount, estimate.commission, estimate.total) == (
        Money(amount=Decimal("1234567.50"), currency="EUR"),
        Money(amount=Decimal("1.25"), currency="USD"),
        Money(amount=Decimal("1234568.75"), currency="EUR"),
    )
    assert (estimate.initial_margin_change, estimate.maintenance_margin_change, estimate.warnings) == (
        Decimal("-1514.5"),
        None,
        [],
    )


async def test_what_if_refuses_an_inconsistent_ticket_without_calling_the_broker(
    backend: CpapiBackend, sim: SimulatorState
) -> None:
    """The same checks as placement (ORDER_VALIDATION_FAILED)."""
    with pytest.raises(GatewayError) as caught:
        await backend.what_if(limit_ticket(limit_price=None))
    assert caught.value.code == ErrorCode.ORDER_VALIDATION_FAILED
    assert sim.paths() == []


async def test_the_order_writer_is_one_per_backend(backend: CpapiBackend) -> None:
    """One writer, one placement lock: orders through the same broker session queue."""
    assert backend.order_writer() is backend.order_writer()
    assert backend.order_writer().name == "client-portal"
