"""Pure mapping from CPAPI's real shapes (reference payloads) to core's domain models."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ibkr_gateway_core.models import Money
from ibkr_gateway_cpapi import _mapping as mapping
from ibkr_gateway_cpapi import _order_mapping as order_mapping
from ibkr_gateway_cpapi import _wire as wire

RECEIVED = datetime(2024, 6, 10, 7, 10, 13, tzinfo=UTC)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param("212.41", Decimal("212.41"), id="string"),
        pytest.param("1,300", Decimal("1300"), id="thousands-separator"),
        pytest.param(150.0, Decimal("150"), id="integral-float"),
        pytest.param(212.4100037, Decimal("212.4100037"), id="float-via-str"),
        pytest.param("+2.37", Decimal("2.37"), id="signed"),
        pytest.param("41.2M", Decimal("41200000.0"), id="scaled-volume"),
        pytest.param("", None, id="empty"),
        pytest.param("N/A", None, id="not-available"),
        pytest.param(None, None, id="absent"),
        pytest.param(float("nan"), None, id="nan"),
        pytest.param(float("inf"), None, id="infinite"),
        pytest.param(-0.0, Decimal("0"), id="negative-zero"),
        pytest.param(True, None, id="boolean"),
        pytest.param(7, Decimal("7"), id="integer"),
    ],
)
def test_numbers_are_exact_decimals_whatever_spelling_cpapi_uses(
    raw: wire.WireNumber | None, expected: Decimal | None
) -> None:
    """CPAPI sends numbers as JSON numbers, plain strings and formatted strings (reference §1)."""
    assert mapping.to_decimal(raw) == expected
    assert mapping.to_decimal(raw) == expected  # a remembered conversion gives the same answer


def test_field_31_prefix_c_marks_the_prior_close_and_h_a_halt() -> None:
    """IBKR prefixes the last price with C (prior close) or H (halted)."""
    assert mapping.parse_last("C171.02") == (Decimal("171.02"), True, False)
    assert mapping.parse_last("H1,020.50") == (Decimal("1020.50"), False, True)
    assert mapping.parse_last("212.41") == (Decimal("212.41"), False, False)


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("RpB", "live"),
        ("DPB", "delayed"),
        ("ZpB", "frozen"),
        ("YpB", "frozen"),
        ("NpB", "unavailable"),
        (None, "unavailable"),
    ],
)
def test_field_6509_first_character_decides_the_data_status(code: str | None, status: str) -> None:
    """R real time, D delayed, Z/Y frozen, N not subscribed (IBKR field table)."""
    assert mapping.data_status(code) == status


@pytest.mark.parametrize(
    ("is_paper", "account_id", "mode"),
    [
        pytest.param(True, "DU1234567", "paper", id="paper-agrees"),
        pytest.param(True, "DF1234567", "paper", id="fa-paper"),
        pytest.param(False, "U7654321", "live", id="live-agrees"),
        pytest.param(False, "F1234567", "live", id="fa-live"),
        pytest.param(False, "I1234567", "live", id="ibroker-live"),
        pytest.param(True, "U7654321", "unknown", id="paper-flag-live-prefix"),
        pytest.param(False, "DU1234567", "unknown", id="live-flag-paper-prefix"),
        pytest.param(None, "DU1234567", "unknown", id="no-flag"),
    ],
)
def test_account_mode_needs_the_flag_and_the_prefix_to_agree(is_paper: bool | None, account_id: str, mode: str) -> None:
    """isPaper is authoritative only when the id prefix says the same (reference §8)."""
    assert mapping.account_mode(is_paper, account_id) == mode


@pytest.mark.parametrize(
    ("word", "status"),
    [
        ("PendingSubmit", "pending_submit"),
        ("PreSubmitted", "submitted"),
        ("Submitted", "submitted"),
        ("PendingCancel", "pending_cancel"),
        ("Filled", "filled"),
        ("Cancelled", "cancelled"),
        ("Inactive", "inactive"),
        ("Pending Submit", "pending_submit"),
        ("WarnState", "unknown"),
        (None, "unknown"),
    ],
)
def test_order_status_words_map_to_the_domain_statuses(word: str | None, status: str) -> None:
    """The statuses live orders and order status report."""
    assert order_mapping.order_status(word) == status


@pytest.mark.parametrize(
    ("sec_type", "is_etf", "asset_class"),
    [
        ("STK", False, "stock"),
        ("STK", True, "etf"),
        ("OPT", False, "option"),
        ("FUT", False, "future"),
        ("CASH", False, "forex"),
        ("IND", False, "index"),
        ("BOND", False, "bond"),
        ("FUND", False, "fund"),
        ("CRYPTO", False, "crypto"),
        ("WAR", False, "other"),
        (None, False, "other"),
    ],
)
def test_security_types_map_to_asset_classes(sec_type: str | None, is_etf: bool, asset_class: str) -> None:
    """secType spellings of CPAPI; an ETF hint turns a stock into an etf."""
    assert mapping.asset_class(sec_type, is_etf=is_etf) == asset_class


def test_sides_accept_both_spellings() -> None:
    """Live orders say BUY/SELL, order status and trades say B/S."""
    assert [order_mapping.order_side(w) for w in ("BUY", "B", "SELL", "S", "X")] == ["buy", "buy", "sell", "sell", None]
    assert [order_mapping.order_side(w) for w in (" bot ", "BOT", "sld", "SLD", None)] == [
        "buy",
        "buy",
        "sell",
        "sell",
        None,
    ]  # the executions' BOT/SLD, in any case


def test_account_combines_iserver_paper_flag_with_portfolio_currency_and_title() -> None:
    """list_accounts joins /iserver/accounts and /portfolio/accounts (reference §2.2 payloads)."""
    iserver = wire.WireIserverAccounts.model_validate(
        {
            "accounts": ["DU7654321"],
            "aliases": {"DU7654321": "DU7654321"},
            "isPaper": True,
            "selectedAccount": "DU7654321",
        }
    )
    portfolio = wire.WirePortfolioAccount.model_validate(
        {"id": "DU7654321", "accountId": "DU7654321", "accountTitle": "Sim Trader", "currency": "USD", "type": "DEMO"}
    )
    account = mapping.to_broker_account("DU7654321", iserver, portfolio)
    assert account.model_dump() == {
        "account_id": "DU7654321",
        "account_label": "Sim Trader",
        "account_mode": "paper",
        "base_currency": "USD",
        "account_type": "DEMO",
    }


def test_summary_uses_plain_metrics_not_segment_variants() -> None:
    """Summary keys come plain, -c and -s; the plain one is the account total."""
    metrics = wire.parse_keyed(
        wire.WireSummaryValue,
        {
            "accountcode": {
                "amount": 0.0,
                "currency": None,
                "isNull": False,
                "timestamp": 1718003000000,
                "value": "DU7654321",
            },
            "netliquidation": {"amount": 1012345.67, "currency": "USD", "isNull": False, "timestamp": 1718003000000},
            "netliquidation-s": {"amount": 1.0, "currency": "USD", "isNull": False, "timestamp": 1718003000000},
            "buyingpower": {"amount": 3995250.0, "currency": "USD", "isNull": False, "timestamp": 1718003000000},
            "totalcashvalue": {"amount": 966020.17, "currency": "USD", "isNull": True, "timestamp": 1718003000000},
            "accountready": True,
        },
        "summary",
    )
    summary = mapping.to_account_summary("DU7654321", metrics, mapping.summary_currency(metrics) or "EUR")
    assert summary.currency == "USD"
    assert summary.net_liquidation == Decimal("1012345.67")
    assert summary.buying_power == Decimal("3995250")
    assert summary.total_cash is None
    assert summary.as_of == datetime(2024, 6, 10, 7, 3, 20, tzinfo=UTC)


def test_ledger_skips_base_and_keeps_each_currency() -> None:
    """The ledger's BASE row is synthetic; cash is per currency."""
    ledger = wire.parse_keyed(
        wire.WireLedgerEntry,
        {
            "USD": {
                "cashbalance": 966020.17,
                "currency": "USD",
                "exchangerate": 1,
                "settledcash": 966020.17,
                "timestamp": 1718003000,
                "endofbundle": 1,
            },
            "EUR": {"cashbalance": 1500, "currency": "EUR", "exchangerate": 1.0825, "timestamp": 1718003000},
            "BASE": {"cashbalance": 967643.92, "currency": "BASE", "exchangerate": 1, "timestamp": 1718003000},
        },
        "ledger",
    )
    balances = mapping.to_cash_balances(ledger)
    assert [(b.currency, b.cash, b.exchange_rate) for b in balances] == [
        ("EUR", Decimal("1500"), Decimal("1.0825")),
        ("USD", Decimal("966020.17"), Decimal("1")),
    ]


def test_position_row_maps_warm_fields_and_etf_type() -> None:
    """A warm positions row (reference §2.2) becomes a Position; type ETF makes an etf."""
    row = wire.parse_positions(
        [
            {
                "acctId": "DU7654321",
                "conid": 756733,
                "contractDesc": "SPY",
                "position": 25.0,
                "mktPrice": 545.3099976,
                "mktValue": 13632.75,
                "currency": "USD",
                "avgCost": 501.22,
                "avgPrice": 501.22,
                "realizedPnl": 0.0,
                "unrealizedPnl": 1102.25,
                "assetClass": "STK",
                "ticker": "SPY",
                "name": "SPDR S&P 500 ETF TRUST",
                "type": "ETF",
            }
        ]
    )[0]
    position = mapping.to_position(row, "DU7654321")
    assert position.asset_class == "etf"
    assert position.quantity == Decimal("25")
    assert position.market_price == Decimal("545.3099976")
    assert position.symbol == "SPY"


def test_cold_position_row_falls_back_to_the_contract_description() -> None:
    """Before the secdef part arrives, only contractDesc names the instrument."""
    row = wire.parse_positions(
        [
            {
                "acctId": "DU1",
                "conid": 265598,
                "contractDesc": "AAPL",
                "position": 10,
                "currency": "USD",
                "assetClass": "STK",
            }
        ]
    )[0]
    position = mapping.to_position(row, "DU1")
    assert (position.symbol, position.description, position.asset_class) == ("AAPL", "AAPL", "stock")


def test_a_page_of_positions_maps_as_each_row_does_and_a_bad_row_fails_the_page() -> None:
    """`to_positions` validates a page in one pass with exactly the checks of `to_position`."""
    rows = wire.parse_positions(
        [
            {"acctId": "DU1", "conid": 1, "contractDesc": "A", "position": 10.0, "currency": "USD", "mktPrice": 1.1},
            {"conid": "2", "ticker": "B", "position": -3, "currency": "EUR", "avgPrice": 0.30000000000000004},
            {"conid": 3, "contractDesc": "C", "position": "1,300", "currency": "GBP", "unrealizedPnl": -0.0},
        ]
    )
    assert mapping.to_positions(rows, "DU9") == [mapping.to_position(row, "DU9") for row in rows]
    assert [p.quantity for p in mapping.to_positions(rows, "DU9")] == [Decimal(10), Decimal(-3), Decimal(1300)]
    assert mapping.to_positions(rows, "DU9")[1].average_cost == Decimal("0.30000000000000004")
    no_currency = wire.parse_positions([{"conid": 4, "contractDesc": "D", "position": 1}])
    with pytest.raises(ValueError):
        mapping.to_positions([*rows, *no_currency], "DU9")
    with pytest.raises(ValueError):
        mapping.to_position(no_currency[0], "DU9")


_TEXTS = st.none() | st.sampled_from(["", " ", "AAPL", " SPY ", "APPLE INC", "\t"]) | st.text(max_size=6)
_NUMBERS = (
    st.none()
    | st.floats()
    | st.integers(-(10**20), 10**20)
    | st.sampled_from(["1,300", "+2.37", "41.2M", "N/A", "", "-", "C12.5", "0.30000000000000004", "nan"])
)


@st.composite
def _position_rows(draw: st.DrawFn) -> dict[str, object]:
    row: dict[str, object] = {
        "conid": draw(st.integers(1, 10**9) | st.integers(1, 10**9).map(str)),
        "position": draw(_NUMBERS.filter(lambda number: number is not None)),
    }
    optional = {
        "acctId": st.none() | st.sampled_from(["", "DU1", "U7"]),
        "contractDesc": _TEXTS,
        "ticker": _TEXTS,
        "name": _TEXTS,
        "currency": st.none() | st.sampled_from(["USD", "", "usd"]),
        "assetClass": st.none() | st.sampled_from(["STK", "stk", "OPT", "CASH", "FUT", "XYZ", ""]),
        "type": st.none() | st.sampled_from(["COMMON", "ETF", "etf fund", "ADR", "", "ETFS"]),
        **dict.fromkeys(["mktPrice", "mktValue", "avgCost", "avgPrice", "realizedPnl", "unrealizedPnl"], _NUMBERS),
    }
    for key, values in optional.items():
        if draw(st.booleans()):
            row[key] = draw(values)
    return row


def _reference_position_fields(row: wire.WirePosition, account_id: str) -> dict[str, object]:
    """The mapping of one row spelled with the general helpers, field by field."""
    contract_desc = mapping.text_or_none(row.contract_desc)
    kind = mapping.asset_class(row.asset_class)
    if kind == "stock" and mapping.info_says_etf(row.stock_type):
        kind = "etf"
    return {
        "account_id": row.acct_id or account_id,
        "contract_id": int(row.conid),
        "symbol": mapping.text_or_none(row.ticker) or contract_desc or str(row.conid),
        "description": mapping.text_or_none(row.name) or contract_desc,
        "asset_class": kind,
        "quantity": mapping.required(mapping.to_decimal(row.position), "position size"),
        "currency": row.currency or "",
        "market_price": mapping.to_decimal(row.mkt_price),
        "market_value": mapping.to_decimal(row.mkt_value),
        "average_cost": mapping.to_decimal(row.avg_cost if row.avg_cost is not None else row.avg_price),
        "unrealized_pnl": mapping.to_decimal(row.unrealized_pnl),
        "realized_pnl": mapping.to_decimal(row.realized_pnl),
    }


@settings(max_examples=400, deadline=None)
@given(raw=_position_rows())
def test_a_position_row_maps_as_the_general_helpers_spell_it(raw: dict[str, object]) -> None:
    """Fall-backs for cold rows, the ETF flag, every spelling of a number: the same fields, the same Decimals."""
    row = wire.parse_positions([raw])[0]
    try:
        expected: dict[str, object] | None = _reference_position_fields(row, "DU9")
    except ValueError:
        expected = None
    if expected is None:
        with pytest.raises(ValueError):
            mapping._position_fields(row, "DU9")  # pyright: ignore[reportPrivateUsage]
    else:
        assert repr(mapping._position_fields(row, "DU9")) == repr(expected)  # pyright: ignore[reportPrivateUsage]


def test_search_result_with_string_conid_and_info_becomes_a_candidate() -> None:
    """secdef search sends conid as a string; contract info adds the currency."""
    result = wire.parse_search(
        [
            {
                "conid": "265598",
                "companyHeader": "APPLE INC - NASDAQ",
                "companyName": "APPLE INC",
                "symbol": "AAPL",
                "description": "NASDAQ",
                "restricted": None,
                "sections": [{"secType": "OPT"}, {"secType": "STK"}],
            }
        ]
    )[0]
    info = wire.WireContractInfo.model_validate(
        {
            "con_id": 265598,
            "symbol": "AAPL",
            "company_name": "APPLE INC",
            "instrument_type": "STK",
            "exchange": "SMART",
            "currency": "USD",
            "category": "Computers",
            "industry": "Technology",
        }
    )
    candidate = mapping.to_search_candidate(result, info)
    assert candidate.model_dump() == {
        "contract_id": 265598,
        "symbol": "AAPL",
        "company_name": "APPLE INC",
        "description": "APPLE INC - NASDAQ",
        "asset_class": "stock",
        "exchange": "NASDAQ",
        "currency": "USD",
        "is_unique_match": False,
    }


def test_snapshot_row_maps_string_values_and_marks_staleness() -> None:
    """A warm snapshot row (reference §2.3): string values, C-prefixed last, delayed availability."""
    row = wire.parse_snapshot(
        [
            {
                "31": "C171.02",
                "84": "170.98",
                "86": "171.10",
                "88": "1,300",
                "85": "2",
                "7762": "3120455",
                "55": "IBM",
                "6509": "DPB",
                "6119": "q1",
                "server_id": "q1",
                "_updated": 1718003012345,
                "conid": 8314,
                "conidEx": "8314",
            }
        ]
    )[0]
    snapshot = mapping.to_market_snapshot(row, contract_id=8314, currency="USD", received_at=RECEIVED)
    assert snapshot.last == Decimal("171.02")
    assert snapshot.last_is_prior_close is True
    assert snapshot.bid_size == Decimal("1300")
    assert snapshot.data_status == "delayed"
    assert snapshot.source_timestamp == datetime(2024, 6, 10, 7, 3, 32, 345000, tzinfo=UTC)
    assert snapshot.staleness_seconds == pytest.approx(400.655)
    assert "The last price is the prior close." in snapshot.warnings


def test_preflight_row_maps_to_an_unavailable_quote_with_a_warning() -> None:
    """The first snapshot answer carries no values; the backend reports that, not zeros."""
    row = wire.parse_snapshot([{"conid": 265598, "conidEx": "265598"}])[0]
    snapshot = mapping.to_market_snapshot(row, contract_id=265598, currency=None, received_at=RECEIVED)
    assert (snapshot.data_status, snapshot.bid, snapshot.last) == ("unavailable", None, None)
    assert snapshot.warnings == ["The broker returned no prices for this contract yet."]


def test_history_bars_use_millisecond_times_and_unscaled_prices() -> None:
    """`t` is ms; data prices are plain even though high/low summaries are scaled by priceFactor."""
    history = wire.parse(
        wire.WireHistory,
        {
            "symbol": "AAPL",
            "priceFactor": 100,
            "high": "21305/1840112.5/57",
            "data": [{"o": 209.88, "c": 211.02, "h": 211.4, "l": 209.51, "v": 412233.0, "t": 1718026200000}],
        },
        "history",
    )
    bars = mapping.to_historical_bars(history, contract_id=265598, period="1d", bar="1h", outside_regular_hours=False)
    assert bars.bars[0].model_dump() == {
        "timestamp": datetime(2024, 6, 10, 13, 30, tzinfo=UTC),
        "open": Decimal("209.88"),
        "high": Decimal("211.4"),
        "low": Decimal("209.51"),
        "close": Decimal("211.02"),
        "volume": Decimal("412233"),
    }


def test_live_order_row_maps_string_prices_and_order_ref() -> None:
    """A live-orders row (reference §2.5)."""
    rows = wire.parse(
        wire.WireLiveOrders,
        {
            "orders": [
                {
                    "acct": "DU7654321",
                    "conid": 265598,
                    "orderId": 1873266401,
                    "ticker": "AAPL",
                    "side": "BUY",
                    "origOrderType": "LIMIT",
                    "orderType": "Limit",
                    "totalSize": 10.0,
                    "filledQuantity": 0.0,
                    "remainingQuantity": 10.0,
                    "price": "205.50",
                    "timeInForce": "DAY",
                    "status": "PreSubmitted",
                    "order_ref": "sim-20240610-0001",
                    "lastExecutionTime_r": 1718027112000,
                }
            ],
            "snapshot": True,
        },
        "orders",
    ).orders
    record = order_mapping.to_order_record(rows[0], "DU7654321")
    assert record.model_dump() == {
        "account_id": "DU7654321",
        "broker_order_id": "1873266401",
        "client_order_id": "sim-20240610-0001",
        "contract_id": 265598,
        "symbol": "AAPL",
        "side": "buy",
        "order_type": "limit",
        "quantity": Decimal("10"),
        "filled_quantity": Decimal("0"),
        "remaining_quantity": Decimal("10"),
        "limit_price": Decimal("205.50"),
        "stop_price": None,
        "average_fill_price": None,
        "time_in_force": "DAY",
        "status": "submitted",
        "broker_status": "PreSubmitted",
        "updated_at": datetime(2024, 6, 10, 13, 45, 12, tzinfo=UTC),
    }


def test_order_status_body_computes_remaining_and_parses_compact_time() -> None:
    """Snake-case order status: side B, sizes as strings, order_time YYMMDDhhmmss."""
    status = wire.parse(
        wire.WireOrderStatus,
        {
            "order_id": 1873266401,
            "account": "DU7654321",
            "conid": 265598,
            "symbol": "AAPL",
            "side": "B",
            "order_type": "LIMIT",
            "total_size": "10.0",
            "cum_fill": "4.0",
            "limit_price": "205.50",
            "order_status": "Submitted",
            "tif": "DAY",
            "order_time": "240610134512",
            "average_price": "205.48",
        },
        "status",
    )
    record = order_mapping.to_order_record_from_status(status, "DU7654321")
    assert (record.remaining_quantity, record.average_fill_price) == (Decimal("6.0"), Decimal("205.48"))
    assert record.updated_at == datetime(2024, 6, 10, 13, 45, 12, tzinfo=UTC)


def test_trade_row_maps_to_an_execution() -> None:
    """An /iserver/account/trades row (reference §2.5)."""
    trade = wire.parse_trades(
        [
            {
                "execution_id": "0000f1a2.66671c3e.01.01",
                "symbol": "AAPL",
                "side": "B",
                "trade_time": "20240610-13:45:22",
                "trade_time_r": 1718027122000,
                "size": 10,
                "price": "205.48",
                "order_ref": "sim-20240610-0001",
                "exchange": "ISLAND",
                "commission": "1.00",
                "net_amount": 2054.8,
                "account": "DU7654321",
                "conid": 265598,
            }
        ]
    )[0]
    execution = order_mapping.to_execution(trade, "DU7654321")
    assert (execution.side, execution.quantity, execution.price, execution.commission) == (
        "buy",
        Decimal("10"),
        Decimal("205.48"),
        Decimal("1.00"),
    )
    assert execution.executed_at == datetime(2024, 6, 10, 13, 45, 22, tzinfo=UTC)


def test_trade_without_a_known_side_is_refused() -> None:
    """A fill with no buy/sell cannot be reported; the backend turns this into BROKER_RESPONSE_INVALID."""
    trade = wire.parse_trades(
        [{"execution_id": "x", "side": "?", "size": 1, "price": "1", "conid": 1, "trade_time_r": 0}]
    )[0]
    with pytest.raises(ValueError):
        order_mapping.to_execution(trade, "DU1")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param("2,055.00 USD", (Decimal("2055.00"), "USD"), id="suffix"),
        pytest.param("EUR 1,000", (Decimal("1000"), "EUR"), id="prefix"),
        pytest.param("-1,514.5", (Decimal("-1514.5"), None), id="signed-plain"),
        pytest.param(12.5, (Decimal("12.5"), None), id="number"),
        pytest.param("n/a", (None, None), id="text"),
        pytest.param(None, (None, None), id="absent"),
    ],
)
def test_what_if_figures_are_read_with_their_currency(
    raw: wire.WireNumber | None, expected: tuple[Decimal | None, str | None]
) -> None:
    """What-if values are formatted strings, sometimes with a currency (reference §2.5, [U])."""
    assert order_mapping.formatted_amount(raw) == expected


def live_row(**fields: object) -> wire.WireLiveOrder:
    return wire.parse(wire.WireLiveOrders, {"orders": [{"orderId": 9, **fields}]}, "orders").orders[0]


def test_a_live_order_row_maps_field_by_field_with_its_fallbacks() -> None:
    row = live_row(
        acct="DU7654321", conid=265598, ticker="AAPL", description1="APPLE INC", side="SELL", orderType="Limit",
        origOrderType="STP LMT", totalSize=10, filledQuantity=4, remainingQuantity=6, price="101.5", auxPrice="99",
        stop_price="98", avgPrice="101.6", timeInForce="GTC", status="PreSubmitted", order_ref="k-1",
        lastExecutionTime_r=1718027122000,
    )  # fmt: skip
    record = order_mapping.to_order_record(row, "DU1234567")
    assert (record.account_id, record.broker_order_id, record.client_order_id, record.contract_id) == (
        "DU7654321",
        "9",
        "k-1",
        265598,
    )
    assert (record.symbol, record.side, record.order_type, record.time_in_force) == (
        "AAPL",
        "sell",
        "stop_limit",
        "GTC",
    )
    assert (record.quantity, record.filled_quantity, record.remaining_quantity) == (Decimal(10), Decimal(4), Decimal(6))
    assert (record.limit_price, record.stop_price, record.average_fill_price) == (
        Decimal("101.5"),
        Decimal(99),
        Decimal("101.6"),
    )
    assert (record.status, record.broker_status) == ("submitted", "PreSubmitted")
    assert record.updated_at == datetime(2024, 6, 10, 13, 45, 22, tzinfo=UTC)
    bare = order_mapping.to_order_record(
        live_row(description1="APPLE INC", orderType="STP", stop_price="98"), "DU1234567"
    )
    assert (bare.account_id, bare.contract_id, bare.symbol, bare.order_type, bare.stop_price) == (
        "DU1234567",
        None,
        "APPLE INC",
        "stop",
        Decimal(98),
    )


def test_a_what_if_answer_maps_field_by_field_in_the_tickets_currency_unless_it_names_one() -> None:
    answer = wire.parse(
        wire.WireWhatIf,
        {
            "amount": {"amount": "2,055.00 USD", "commission": "1.5", "total": "EUR 2,056.50"},
            "equity": {"current": "100,000", "change": "-2,056.5", "after": "97,943.50 USD"},
            "initial": {"current": "0", "change": "411.10", "after": "411.10"},
            "maintenance": {"current": "0", "change": "374.00 USD", "after": "374"},
            "warn": " 21/Price is far from the market ",
            "error": " Order rejected: size ",
        },
        "what-if",
    )
    what_if = order_mapping.to_what_if(answer, "USD")
    assert (what_if.amount, what_if.commission, what_if.total) == (
        Money(amount=Decimal("2055.00"), currency="USD"),
        Money(amount=Decimal("1.5"), currency="USD"),
        Money(amount=Decimal("2056.50"), currency="EUR"),
    )
    assert (what_if.initial_margin_change, what_if.maintenance_margin_change) == (Decimal("411.10"), Decimal("374.00"))
    assert what_if.equity_with_loan_after == Decimal("97943.50")
    assert (what_if.warnings, what_if.error) == (["21/Price is far from the market"], "Order rejected: size")
    empty = order_mapping.to_what_if(wire.parse(wire.WireWhatIf, {}, "what-if"), "CHF")
    assert (empty.amount, empty.commission, empty.total, empty.initial_margin_change) == (None, None, None, None)
    assert (empty.maintenance_margin_change, empty.equity_with_loan_after, empty.warnings, empty.error) == (
        None,
        None,
        [],
        None,
    )
    plain = order_mapping.to_what_if(wire.parse(wire.WireWhatIf, {"amount": {"commission": 2}}, "what-if"), "CHF")
    assert (plain.amount, plain.commission, plain.total) == (None, Money(amount=Decimal(2), currency="CHF"), None)
