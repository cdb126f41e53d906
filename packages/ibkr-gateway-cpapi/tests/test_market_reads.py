"""The trading-desk reads against the HTTPS simulator (`ibkr-agent simulator serve`), real sockets only.

Every read goes through the real client and mapping over TLS on loopback, and the websocket reads
(depth, the P&L stream) over a real `wss://` connection. Injected answers (`fail_next(200, body)`)
carry IBKR's other real shapes: formatted strings, missing fields and empty answers.
"""

from collections.abc import AsyncIterator
from datetime import date
from decimal import Decimal

import anyio
import pytest
from ibkr_gateway_core.config import GatewayConfig
from ibkr_gateway_core.errors import ErrorCode, GatewayError
from ibkr_gateway_core.market.requests import OptionChainInput, ScannerRunInput
from ibkr_gateway_cpapi.backend import CpapiBackend
from ibkr_gateway_cpapi.client import CpapiClient, api_base_url
from ibkr_gateway_cpapi.serve import serving_simulator
from ibkr_gateway_cpapi.simulator import SimulatorState
from ibkr_gateway_cpapi.ws import WebsocketConnector

from .conftest import NOW, frozen_clock

pytestmark = [pytest.mark.anyio]

pytest.importorskip("uvicorn")

ACCOUNT = "DU1234567"


@pytest.fixture
async def https(sim: SimulatorState) -> AsyncIterator[CpapiBackend]:
    """The real `client_portal_gateway` backend over HTTPS and WSS to a served simulator."""
    with anyio.fail_after(60):
        async with serving_simulator(port=0, state=sim) as base_url:
            config = GatewayConfig.client_portal(base_url, verify_tls=False)
            # IBKR paces P&L and orders at 1 per 5 s; pacing has its own tests, these check shapes.
            broker = config.broker.model_copy(update={"pacing_enabled": False})
            ws = WebsocketConnector(api_base_url(base_url), verify_tls=False, timeout_s=10)
            backend = CpapiBackend(
                CpapiClient.from_config(broker),
                name="client_portal_gateway",
                clock=frozen_clock,
                preflight_delays_s=(0.0,) * 5,
                ws=ws,
            )
            try:
                yield backend
            finally:
                await backend.aclose()


async def test_daily_pnl_starts_the_pnl_stream_when_the_partitioned_answer_is_empty(
    https: CpapiBackend, sim: SimulatorState
) -> None:
    """CPAPI answers `{"upnl": {}}` until `spl` ran; the stream's first frame answers, later calls read REST."""
    first = await https.daily_pnl(ACCOUNT)
    second = await https.daily_pnl(ACCOUNT)
    assert first.available and second == first.model_copy(update={"received_at": second.received_at})
    assert first.net_liquidation is not None and first.net_liquidation > 0
    assert first.daily_pnl is not None and first.unrealized_pnl is not None
    assert sim.paths().count("GET /iserver/account/pnl/partitioned") == 2  # empty (then the stream), then full


async def test_pnl_with_missing_account_row_is_not_available_and_invents_nothing(
    https: CpapiBackend, sim: SimulatorState
) -> None:
    await https.daily_pnl(ACCOUNT)  # the stream has run in this session
    sim.fail_next(200, {"upnl": {"DU7654321.Core": {"rowType": 1, "dpl": "1,234.50", "nl": 10.0}}})
    missing = await https.daily_pnl(ACCOUNT)
    assert missing.available is False
    assert missing.daily_pnl is None and missing.net_liquidation is None
    sim.fail_next(200, {"upnl": {f"{ACCOUNT}.Core": {"rowType": 1, "dpl": "1,234.50", "upl": "-12.5"}}})
    formatted = await https.daily_pnl(ACCOUNT)
    assert formatted.daily_pnl == Decimal("1234.50")
    assert formatted.unrealized_pnl == Decimal("-12.5")
    assert formatted.net_liquidation is None  # not sent, not guessed


async def test_pnl_breakdown_has_the_ledger_split_base_first(https: CpapiBackend) -> None:
    breakdown = await https.pnl_breakdown(ACCOUNT)
    assert [c.currency for c in breakdown.currencies][0] == "BASE"
    assert {"USD", "EUR"} <= {c.currency for c in breakdown.currencies}
    assert breakdown.realized_pnl == Decimal(0)


async def test_account_metadata_reads_meta_and_the_session_properties(https: CpapiBackend) -> None:
    meta = await https.account_metadata(ACCOUNT)
    assert meta.account_mode == "paper"
    assert meta.account_type == "DEMO"
    assert meta.base_currency == "USD"
    assert "OPT" in meta.allowed_asset_types


async def test_renew_session_takes_back_a_competing_session(https: CpapiBackend, sim: SimulatorState) -> None:
    sim.set_competing()
    assert (await https.session_status()).competing
    renewed = await https.renew_session()
    assert renewed.status == "usable"
    assert "POST /iserver/auth/ssodh/init" in sim.paths()


async def test_option_expirations_strikes_and_chain(https: CpapiBackend, sim: SimulatorState) -> None:
    expirations = await https.option_expirations("AAPL", None)
    assert expirations.underlying_contract_id == 265598
    assert expirations.months[0] == "DEC26"  # November's third Friday (the 20th) has passed on the 25th
    strikes = await https.option_strikes(265598, "DEC26")
    assert Decimal(210) in strikes.calls and strikes.calls == strikes.puts
    chain = await https.option_chain(OptionChainInput(symbol="AAPL", strike_count=4))
    assert chain.month == "DEC26" and chain.underlying_price == Decimal("212.41")
    assert chain.expiries == [date(2026, 12, 11), date(2026, 12, 18)]
    assert {o.strike for o in chain.options} == {Decimal(205), Decimal(210), Decimal(215), Decimal(220)}
    assert len(chain.options) == 4 * 2 * 2  # strikes × rights × expiries
    call = next(o for o in chain.options if o.right == "call" and o.strike == Decimal(210))
    assert call.delta is not None and Decimal(0) < call.delta < Decimal(1)
    assert call.implied_volatility_percent is not None and call.implied_volatility_percent > 0  # from "24.2%"
    assert call.data_status == "live" and call.multiplier == Decimal(100)
    # CPAPI wants a secdef search before strikes and info: it was made first.
    paths = sim.paths()
    assert paths.index("GET /iserver/secdef/search") < paths.index("GET /iserver/secdef/strikes")


async def test_a_worthless_option_has_no_bid_and_no_last(https: CpapiBackend) -> None:
    chain = await https.option_chain(OptionChainInput(symbol="AAPL", strike_count=20, right="put"))
    far = min(chain.options, key=lambda o: o.strike)
    assert far.bid is None and far.last is None  # the broker sent neither field
    assert far.ask is not None


async def test_option_chain_refusals(https: CpapiBackend) -> None:
    with pytest.raises(GatewayError) as ambiguous:
        await https.option_chain(OptionChainInput(symbol="ABC"))
    assert ambiguous.value.code == ErrorCode.INPUT_AMBIGUOUS_CONTRACT
    chain = await https.option_chain(OptionChainInput(symbol="ABC", contract_id=4815162, strike_count=1))
    assert chain.underlying_contract_id == 4815162
    with pytest.raises(GatewayError) as month:
        await https.option_chain(OptionChainInput(symbol="AAPL", month="JAN99"))
    assert month.value.code == ErrorCode.INPUT_INVALID_ARGUMENT
    with pytest.raises(GatewayError) as unknown:
        await https.option_chain(OptionChainInput(symbol="NOPE"))
    assert unknown.value.code == ErrorCode.INPUT_UNKNOWN_CONTRACT


async def test_option_greeks_of_an_option_and_refusal_for_a_stock(https: CpapiBackend) -> None:
    chain = await https.option_chain(OptionChainInput(symbol="MSFT", strike_count=1, right="call"))
    option = chain.options[0]
    greeks = await https.option_greeks(option.contract_id)
    assert greeks.right == "call" and greeks.strike == option.strike and greeks.expiry == option.expiry
    assert greeks.delta == option.delta and greeks.theta is not None and greeks.theta < 0
    with pytest.raises(GatewayError) as stock:
        await https.option_greeks(265598)
    assert stock.value.code == ErrorCode.INPUT_INVALID_CONTRACT


async def test_scanner_params_run_and_an_empty_scan(https: CpapiBackend, sim: SimulatorState) -> None:
    params = await https.scanner_params()
    assert "TOP_PERC_GAIN" in [s.code for s in params.scan_types]
    assert "STK.US.MAJOR" in [loc.code for loc in params.locations]
    await https.scanner_params()
    assert sim.paths().count("GET /iserver/scanner/params") == 1  # IBKR paces it at 1 per 15 minutes
    gainers = await https.scanner_run(ScannerRunInput(scan_code="TOP_PERC_GAIN"))
    assert gainers.rows[0].symbol == "AAPL" and gainers.rows[0].scan_value == "+1.13%"
    assert [r.rank for r in gainers.rows] == list(range(1, len(gainers.rows) + 1))
    empty = await https.scanner_run(ScannerRunInput(scan_code="MOST_ACTIVE", location="STK.US.MINOR"))
    assert empty.rows == []
    with pytest.raises(GatewayError) as bad:
        await https.scanner_run(ScannerRunInput(scan_code="NO_SUCH_SCAN"))
    assert bad.value.code == ErrorCode.INPUT_INVALID_ARGUMENT


async def test_schedule_is_open_on_a_wednesday_morning_and_knows_thanksgiving(https: CpapiBackend) -> None:
    schedule = await https.market_schedule("AAPL", None)
    assert schedule.time_zone == "America/New_York" and schedule.exchange == "NASDAQ"
    assert schedule.is_open_now is True  # 10:00 in New York on 25 November 2026
    assert schedule.current_session is not None and schedule.current_session.kind == "regular"
    thanksgiving = next(d for d in schedule.days if d.date == date(2026, 11, 26))
    assert thanksgiving.open is False and thanksgiving.sessions == []  # the broker sends no `sessions` key
    friday = next(d for d in schedule.days if d.date == date(2026, 11, 27))
    regular = next(s for s in friday.sessions if s.kind == "regular")
    assert regular.closes_at.hour == 13
    with pytest.raises(GatewayError) as unknown:
        await https.market_schedule("NOPE", None)
    assert unknown.value.code == ErrorCode.INPUT_UNKNOWN_CONTRACT


async def test_currency_rate_and_an_empty_rate_answer(https: CpapiBackend) -> None:
    rate = await https.currency_rate("EUR", "USD")
    assert rate.rate == Decimal("1.0825")
    with pytest.raises(GatewayError) as empty:
        await https.currency_rate("JPY", "USD")  # the broker answers {} for a pair it does not price
    assert empty.value.code == ErrorCode.MARKET_DATA_UNAVAILABLE


async def test_order_history_with_filters(https: CpapiBackend, sim: SimulatorState) -> None:
    everything = await https.order_history(ACCOUNT, [])
    assert {o.broker_order_id for o in everything} >= {"1873266401"}
    sim.fill_order(1873266401)
    filled = await https.order_history(ACCOUNT, ["filled"])
    assert [o.broker_order_id for o in filled] == ["1873266401"]
    assert any("filters=filled" in r.query for r in sim.requests if r.path == "/iserver/account/orders")


async def test_transactions_from_portfolio_analyst_and_an_empty_answer(
    https: CpapiBackend, sim: SimulatorState
) -> None:
    before = await https.transactions(ACCOUNT, 265598, "USD", 90)
    sim.fill_order(1873266401, Decimal("205.48"))
    history = await https.transactions(ACCOUNT, 265598, "USD", 90)
    assert len(history.transactions) == len(before.transactions) + 1
    bought = history.transactions[0]  # newest first
    assert bought.kind == "Buy"
    assert bought.quantity == Decimal(10) and bought.price == Decimal("205.48")
    assert bought.date == NOW.date()  # from "Wed Nov 25 00:00:00 EST 2026"
    none = await https.transactions(ACCOUNT, 8314, "USD", 30)
    assert none.transactions == []


async def test_market_depth_over_wss_and_a_delayed_contract_without_depth(https: CpapiBackend) -> None:
    depth = await https.market_depth(ACCOUNT, 265598, None)
    assert depth.bids[0].price == Decimal("212.40") and depth.asks[0].price == Decimal("212.42")
    assert [b.price for b in depth.bids] == sorted((b.price for b in depth.bids), reverse=True)
    assert depth.asks[-1].size == Decimal(1900)  # "1,900" in the frame
    with pytest.raises(GatewayError) as delayed:
        await https.market_depth(ACCOUNT, 8314, None)
    assert delayed.value.code == ErrorCode.BROKER_CAPABILITY_UNAVAILABLE


async def test_fundamentals_parse_scaled_and_percent_strings_and_leave_out_what_an_etf_lacks(
    https: CpapiBackend,
) -> None:
    apple = await https.fundamentals(265598)
    assert apple.market_cap is not None and apple.market_cap > Decimal(10) ** 11  # "987.28B"
    assert apple.dividend_yield_percent == Decimal("1.60")  # "1.60%"
    assert apple.industry == "Technology"
    spy = await https.fundamentals(756733)
    assert spy.pe_ratio is None and spy.eps is None and spy.market_cap is not None
