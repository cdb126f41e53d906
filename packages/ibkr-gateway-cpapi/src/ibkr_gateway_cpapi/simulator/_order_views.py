"""Orders and executions as CPAPI renders them: live-order rows, snake-case status, trade rows."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Final

from ._book import SimContract, SimExecution, SimOrder

_TYPE_NAMES: Final = {
    "LMT": ("Limit", "LIMIT"),
    "MKT": ("Market", "MARKET"),
    "STP": ("Stop", "STOP"),
    "STOP_LIMIT": ("Stop Limit", "STOP_LIMIT"),
    "TRAIL": ("TRAILING_STOP", "TRAIL"),
    "MIDPRICE": ("MidPrice", "MIDPRICE"),
    "MOC": ("Market on Close", "MOC"),
    "LOC": ("Limit on Close", "LOC"),
}
"""Ticket order type → (`orderType` of live orders, `origOrderType` / `order_type`)."""

FILTER_KEYS: Final = {
    "Inactive": "inactive",
    "PendingSubmit": "pending_submit",
    "PreSubmitted": "pre_submitted",
    "Submitted": "submitted",
    "Filled": "filled",
    "PendingCancel": "pending_cancel",
    "Cancelled": "cancelled",
}
"""Status word → the `filters` spelling of `/iserver/account/orders`."""

_CCP_STATUS: Final = {"Filled": "Filled", "Cancelled": "Cancelled", "PendingSubmit": "Pending Submit"}


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _price(value: Decimal | None) -> str | None:
    return None if value is None else f"{value:.2f}"


def _number(value: Decimal) -> int | float:
    return int(value) if value == value.to_integral_value() else float(value)


def order_description(order: SimOrder) -> str:
    """`Buy 10 Limit 205.50, Day` — CPAPI's one-line summary."""
    name = _TYPE_NAMES.get(order.order_type, (order.order_type, order.order_type))[0]
    price = f" {_price(order.price)}" if order.price is not None else ""
    tif = "GTC" if order.tif == "GTC" else order.tif.capitalize()
    return f"{order.side.capitalize()} {order.quantity:f} {name}{price}, {tif}"


def live_order_row(order: SimOrder, contract: SimContract) -> dict[str, object]:
    """One element of `/iserver/account/orders`."""
    type_name, orig_type = _TYPE_NAMES.get(order.order_type, (order.order_type, order.order_type))
    size_and_fills = f"{order.quantity:f}" if order.status == "Filled" else f"{order.filled:f}/{order.quantity:f}"
    row: dict[str, object] = {
        "acct": order.account_id,
        "account": order.account_id,
        "conid": order.conid,
        "conidex": str(order.conid),
        "orderId": order.order_id,
        "cashCcy": contract.currency,
        "sizeAndFills": size_and_fills,
        "orderDesc": order_description(order),
        "description1": contract.symbol,
        "ticker": contract.symbol,
        "secType": contract.sec_type,
        "listingExchange": contract.listing_exchange,
        "remainingQuantity": float(order.remaining),
        "filledQuantity": float(order.filled),
        "totalSize": float(order.quantity),
        "companyName": contract.company_name,
        "status": order.status,
        "order_ccp_status": _CCP_STATUS.get(order.status, "Submitted"),
        "origOrderType": orig_type,
        "orderType": type_name,
        "supportsTaxOpt": "1",
        "lastExecutionTime": order.updated_at.strftime("%y%m%d%H%M%S"),
        "lastExecutionTime_r": _ms(order.updated_at),
        "timeInForce": order.tif,
        "side": order.side,
        "outsideRTH": order.outside_rth,
        "bgColor": "#FFFFFF",
        "fgColor": "#0000CC" if order.is_working else "#000000",
        "isEventTrading": "0",
    }
    if order.price is not None:
        row["price"] = _price(order.price)
    if order.aux_price is not None:
        row["auxPrice"] = _price(order.aux_price)
    if order.c_oid is not None:
        row["order_ref"] = order.c_oid
    if order.avg_fill_price is not None:
        row["avgPrice"] = _price(order.avg_fill_price)
    return row


def order_status_body(order: SimOrder, contract: SimContract) -> dict[str, object]:
    """`/iserver/account/order/status/{id}` (snake case, side `B`/`S`)."""
    orig_type = _TYPE_NAMES.get(order.order_type, (order.order_type, order.order_type))[1]
    body: dict[str, object] = {
        "sub_type": None,
        "request_id": "209",
        "server_id": "0",
        "order_id": order.order_id,
        "conidex": str(order.conid),
        "conid": order.conid,
        "symbol": contract.symbol,
        "side": "B" if order.side == "BUY" else "S",
        "contract_description_1": contract.symbol,
        "listing_exchange": contract.listing_exchange,
        "option_acct": "c",
        "company_name": contract.company_name,
        "size": f"{order.remaining:f}",
        "total_size": f"{order.quantity:f}",
        "currency": contract.currency,
        "account": order.account_id,
        "order_clearing_account": order.account_id,
        "order_type": orig_type,
        "cum_fill": f"{order.filled:f}",
        "order_status": order.status,
        "order_ccp_status": _CCP_STATUS.get(order.status, "Submitted"),
        "order_status_description": f"Order {order.status}",
        "tif": order.tif,
        "fg_color": "#000000",
        "bg_color": "#FFFFFF",
        "order_not_editable": not order.is_working,
        "editable_fields": "",
        "cannot_cancel_order": not order.is_working,
        "deactivate_order": False,
        "sec_type": contract.sec_type,
        "available_chart_periods": "#R|1",
        "order_description": order_description(order),
        "order_description_with_contract": f"{order_description(order)} {contract.symbol}",
        "alert_active": 1,
        "child_order_type": "0",
        "order_clearing_account_type": "",
        "size_and_fills": f"{order.filled:f}/{order.quantity:f}",
        "exit_strategy_display_price": _price(order.price),
        "exit_strategy_chart_description": "",
        "average_price": _price(order.avg_fill_price),
        "exit_strategy_tool_availability": "1",
        "allowed_duplicate_opposite": True,
        "order_time": order.created_at.strftime("%y%m%d%H%M%S"),
        "outside_rth": order.outside_rth,
    }
    if order.price is not None:
        body["limit_price"] = _price(order.price)
    if order.aux_price is not None:
        body["stop_price"] = _price(order.aux_price)
    return body


def trade_row(execution: SimExecution, contract: SimContract, user_name: str) -> dict[str, object]:
    """One element of `/iserver/account/trades`."""
    verb = "Bot" if execution.side == "BUY" else "Sld"
    gross = execution.quantity * execution.price
    return {
        "execution_id": execution.execution_id,
        "symbol": contract.symbol,
        "supports_tax_opt": "1",
        "side": "B" if execution.side == "BUY" else "S",
        "order_description": f"{verb} {execution.quantity:f} @ {execution.price:.2f} on {execution.exchange}",
        "trade_time": execution.executed_at.strftime("%Y%m%d-%H:%M:%S"),
        "trade_time_r": _ms(execution.executed_at),
        "size": _number(execution.quantity),
        "price": f"{execution.price:.2f}",
        "order_ref": execution.c_oid,
        "submitter": user_name,
        "exchange": execution.exchange,
        "commission": f"{execution.commission:.2f}",
        "net_amount": float(gross),
        "account": execution.account_id,
        "accountCode": execution.account_id,
        "account_allocation_name": execution.account_id,
        "company_name": contract.company_name,
        "contract_description_1": contract.symbol,
        "sec_type": contract.sec_type,
        "listing_exchange": contract.listing_exchange,
        "conid": contract.conid,
        "conidEx": str(contract.conid),
        "clearing_id": "IB",
        "clearing_name": "IB",
        "liquidation_trade": "0",
        "is_event_trading": "0",
    }
