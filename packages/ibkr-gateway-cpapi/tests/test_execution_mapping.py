"""Fills as the gateway reports them: every field of an execution, the fallbacks when CPAPI leaves one out, and
an order known only from its fills (filled quantity, average price, latest time)."""

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from ibkr_gateway_cpapi import _order_mapping as order_mapping
from ibkr_gateway_cpapi import _wire as wire

FULL: dict[str, Any] = {
    "execution_id": "0000f1a2.01",
    "account": "DU7654321",
    "order_id": 1873266404,
    "order_ref": "iag-abc",
    "conid": 265598,
    "symbol": "AAPL",
    "side": "S",
    "size": 10,
    "price": "205.48",
    "commission": "1.00",
    "net_amount": 2054.8,
    "exchange": "ISLAND",
    "trade_time": "20240610-13:45:22",
    "trade_time_r": 1718027122000,
}
BARE: dict[str, Any] = {"execution_id": "x1", "conid": 1, "side": "B", "size": 2, "price": "3"}


def trade(**fields: Any) -> wire.WireTrade:
    return wire.parse_trades([fields])[0]


def test_every_field_of_a_full_execution() -> None:
    execution = order_mapping.to_execution(trade(**FULL), "DU1234567")
    assert execution.model_dump() == {
        "execution_id": "0000f1a2.01",
        "account_id": "DU7654321",
        "broker_order_id": "1873266404",
        "client_order_id": "iag-abc",
        "contract_id": 265598,
        "symbol": "AAPL",
        "side": "sell",
        "quantity": Decimal(10),
        "price": Decimal("205.48"),
        "commission": Decimal("1.00"),
        "net_amount": Decimal("2054.8"),
        "exchange": "ISLAND",
        "executed_at": datetime(2024, 6, 10, 13, 45, 22, tzinfo=UTC),
    }


def test_the_epoch_time_wins_over_the_compact_time_when_both_are_given() -> None:
    """`trade_time_r` is exact (milliseconds, UTC); `trade_time` is only the fallback."""
    execution = order_mapping.to_execution(trade(**{**FULL, "trade_time_r": 1718027123500}), "DU1234567")
    assert execution.executed_at == datetime(2024, 6, 10, 13, 45, 23, 500_000, tzinfo=UTC)


def test_a_bare_execution_falls_back_to_the_asked_account_and_the_compact_time() -> None:
    execution = order_mapping.to_execution(trade(**BARE, trade_time="20240611-09:30:01"), "DU1234567")
    assert (execution.account_id, execution.broker_order_id, execution.client_order_id) == ("DU1234567", None, None)
    assert (execution.symbol, execution.commission, execution.net_amount, execution.exchange) == (
        None,
        None,
        None,
        None,
    )
    assert execution.executed_at == datetime(2024, 6, 11, 9, 30, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("missing", "named"),
    [
        pytest.param({"side": "?"}, "execution side", id="side"),
        pytest.param({"size": "n/a"}, "execution size", id="size"),
        pytest.param({"price": "n/a"}, "execution price", id="price"),
        pytest.param({}, "execution time", id="time"),
    ],
)
def test_an_execution_missing_a_required_field_names_it(missing: dict[str, Any], named: str) -> None:
    with pytest.raises(ValueError, match=f"^the broker sent no {named}$"):
        order_mapping.to_execution(trade(**{**BARE, "trade_time_r": 0, **missing} if missing else BARE), "DU1")


def test_an_order_known_only_from_its_fills() -> None:
    fills = [
        trade(**{**FULL, "execution_id": "e1", "size": 4, "price": "10", "trade_time_r": 1718027122000}),
        trade(**{**FULL, "execution_id": "e2", "size": 6, "price": "20", "trade_time_r": 1718027182000}),
    ]
    order = order_mapping.order_from_executions(fills, "DU1234567")
    assert (order.account_id, order.broker_order_id, order.client_order_id, order.contract_id, order.symbol) == (
        "DU7654321",
        "1873266404",
        "iag-abc",
        265598,
        "AAPL",
    )
    assert (order.side, order.status, order.filled_quantity, order.average_fill_price) == (
        "sell",
        "filled",
        Decimal(10),
        Decimal(16),
    )
    assert order.updated_at == datetime(2024, 6, 10, 13, 46, 22, tzinfo=UTC)


def test_an_order_from_bare_fills_names_its_first_fill_and_reads_the_compact_time() -> None:
    fills = [
        trade(**{**BARE, "execution_id": "e1", "trade_time": "20240611-09:30:01"}),
        trade(**{**BARE, "execution_id": "e2", "trade_time": "20240611-09:31:01"}),
        trade(**{**BARE, "execution_id": "e3"}),
    ]
    order = order_mapping.order_from_executions(fills, "DU1234567")
    assert (order.account_id, order.broker_order_id, order.client_order_id, order.symbol) == (
        "DU1234567",
        "execution:e1",
        None,
        None,
    )
    assert (order.filled_quantity, order.average_fill_price) == (Decimal(6), Decimal(3))
    assert order.updated_at == datetime(2024, 6, 11, 9, 31, 1, tzinfo=UTC)


def test_an_order_from_fills_without_any_time_has_none() -> None:
    order = order_mapping.order_from_executions([trade(**BARE)], "DU1")
    assert order.updated_at is None


@pytest.mark.parametrize(("field", "named"), [("size", "execution size"), ("price", "price")])
def test_an_order_from_fills_with_an_unreadable_figure_names_it(field: str, named: str) -> None:
    with pytest.raises(ValueError, match=f"^the broker sent no {named}$"):
        order_mapping.order_from_executions([trade(**BARE), trade(**{**BARE, field: "n/a"})], "DU1")


def test_every_field_of_an_order_status() -> None:
    status = wire.WireOrderStatus.model_validate(
        {
            "order_id": 1873266404,
            "account": "DU7654321",
            "conid": "265598",
            "symbol": "AAPL",
            "side": "S",
            "order_type": "STP LMT",
            "total_size": "10",
            "cum_fill": "4",
            "limit_price": "99.5",
            "stop_price": "100",
            "average_price": "99.75",
            "tif": "GTC",
            "order_status": "PreSubmitted",
            "order_ref": "iag-abc",
            "order_time": "240610134522",
        }
    )
    record = order_mapping.to_order_record_from_status(status, "DU1234567")
    assert record.model_dump(exclude_none=True) == {
        "account_id": "DU7654321",
        "broker_order_id": "1873266404",
        "client_order_id": "iag-abc",
        "contract_id": 265598,
        "symbol": "AAPL",
        "side": "sell",
        "order_type": "stop_limit",
        "quantity": Decimal(10),
        "filled_quantity": Decimal(4),
        "remaining_quantity": Decimal(6),
        "limit_price": Decimal("99.5"),
        "stop_price": Decimal(100),
        "average_fill_price": Decimal("99.75"),
        "time_in_force": "GTC",
        "status": record.status,
        "broker_status": "PreSubmitted",
        "updated_at": datetime(2024, 6, 10, 13, 45, 22, tzinfo=UTC),
    }


def test_a_bare_order_status_falls_back_to_the_asked_account_and_knows_no_remainder() -> None:
    record = order_mapping.to_order_record_from_status(
        wire.WireOrderStatus.model_validate({"order_id": "7", "total_size": "5"}), "DU1234567"
    )
    assert (record.account_id, record.broker_order_id, record.contract_id, record.remaining_quantity) == (
        "DU1234567",
        "7",
        None,
        None,
    )
    assert (record.quantity, record.filled_quantity, record.client_order_id, record.symbol) == (
        Decimal(5),
        None,
        None,
        None,
    )
