"""What the simulator holds: profiles, accounts, contracts, positions, orders and executions.

The seed set ships as package data (`simulator/data/*.json`) and is read with `importlib.resources`,
so fake mode works from an installed wheel. Times in the seed are ages relative to the simulator's
clock at start, so "today's" executions stay today's whenever the simulator runs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from importlib.resources import files
from typing import Any, Final, Literal, NamedTuple, cast

SEED_PACKAGE: Final = "ibkr_gateway_cpapi.simulator"
SEED_DIRECTORY: Final = "data"
"""Folder of `SEED_PACKAGE` holding the seed JSON files."""

Side = Literal["BUY", "SELL"]

FIRST_ORDER_ID: Final = 1873266401
"""The order id the engine starts from over a book without orders (ids continue after the book's highest)."""


class SimProfile(NamedTuple):
    """One login of the simulator: a paper or a live user and the accounts it sees.

    A named tuple, not a dataclass: a dataclass compiles its generated methods at import (start-up).
    """

    name: str
    user_name: str
    user_id: int
    is_paper: bool
    accounts: tuple[str, ...]
    advisor: bool = False
    """An advisor (FA) login: its first account is the master, the others its clients; account-scoped
    `/iserver` calls act on the selected account (`POST /iserver/account`), whatever their path says."""


@dataclass(slots=True)
class SimAccount:
    """One account and its cash per currency."""

    account_id: str
    title: str
    currency: str
    account_type: str
    cash: dict[str, Decimal]


@dataclass(slots=True)
class SimContract:
    """One instrument and its (static, deterministic) quote."""

    conid: int
    symbol: str
    company_name: str
    sec_type: str
    listing_exchange: str
    currency: str
    category: str | None
    industry: str | None
    stock_type: str
    valid_exchanges: str
    bid: Decimal | None
    ask: Decimal | None
    last: Decimal | None
    prior_close: Decimal | None
    bid_size: int | None
    ask_size: int | None
    volume: int | None
    availability: str
    """Field 6509: `RpB` real time, `DPB` delayed."""
    last_is_prior_close: bool = False


@dataclass(slots=True)
class SimPosition:
    """Holdings of one contract in one account."""

    account_id: str
    conid: int
    quantity: Decimal
    avg_cost: Decimal
    realized_pnl: Decimal = Decimal(0)


@dataclass(slots=True)
class SimOrder:
    """One order the simulator's engine knows."""

    order_id: int
    account_id: str
    conid: int
    side: Side
    order_type: str
    """CPAPI ticket spelling: `LMT`, `MKT`, `STP`, `STOP_LIMIT`, `TRAIL`."""
    quantity: Decimal
    price: Decimal | None
    aux_price: Decimal | None
    tif: str
    c_oid: str | None
    status: str
    """CPAPI status word: `Submitted`, `Filled`, `Cancelled`…"""
    created_at: datetime
    updated_at: datetime
    filled: Decimal = Decimal(0)
    avg_fill_price: Decimal | None = None
    outside_rth: bool = False
    trailing_amount: Decimal | None = None
    trailing_type: str | None = None
    """`amt` or `%` for `TRAIL` orders."""
    parent_id: int | None = None
    """A bracket exit: the order id of its parent. Held (`PreSubmitted`) until the parent fills; the exits
    of one parent are one-cancels-the-other."""

    @property
    def remaining(self) -> Decimal:
        """Quantity not yet filled."""
        return self.quantity - self.filled

    @property
    def is_working(self) -> bool:
        """True while the order can still fill or be cancelled."""
        return self.status in ("PendingSubmit", "PreSubmitted", "Submitted")


@dataclass(slots=True)
class SimExecution:
    """One fill."""

    execution_id: str
    account_id: str
    order_id: int | None
    c_oid: str | None
    conid: int
    side: Side
    quantity: Decimal
    price: Decimal
    commission: Decimal
    exchange: str
    executed_at: datetime


@dataclass(slots=True)
class SimBook:
    """Everything the simulator serves; tests change it through `SimulatorState`'s hooks."""

    profiles: dict[str, SimProfile]
    accounts: dict[str, SimAccount]
    contracts: dict[int, SimContract]
    fx_rates_to_usd: dict[str, Decimal]
    positions: dict[tuple[str, int], SimPosition] = field(default_factory=dict[tuple[str, int], SimPosition])
    orders: dict[int, SimOrder] = field(default_factory=dict[int, SimOrder])
    executions: list[SimExecution] = field(default_factory=list[SimExecution])

    def positions_of(self, account_id: str) -> list[SimPosition]:
        """Non-zero positions of one account, in conid order (stable paging)."""
        rows = [p for (acct, _), p in self.positions.items() if acct == account_id and p.quantity != 0]
        return sorted(rows, key=lambda p: p.conid)

    def fx_rate(self, currency: str, base: str) -> Decimal:
        """Units of `base` per unit of `currency`."""
        to_usd = self.fx_rates_to_usd.get(currency, Decimal(1))
        base_to_usd = self.fx_rates_to_usd.get(base, Decimal(1))
        return (to_usd / base_to_usd).quantize(Decimal("0.000001"))


class SeedError(ValueError):
    """A seed file that does not have the shape the simulator reads (a packaging mistake)."""


_Kind = str
"""`str`, `int`, `bool`, `decimal`, `side`, `age` (minutes, >= 0), `strs` (a list of str), `cash`
(currency to decimal), `list` (records, checked by their reader); a trailing `?` also allows null."""


def _value(kind: _Kind, value: object, where: str) -> object:
    if kind.endswith("?"):
        return None if value is None else _value(kind[:-1], value, where)
    if kind == "str" and isinstance(value, str):
        return value
    if kind == "bool" and isinstance(value, bool):
        return value
    if kind in ("int", "age") and isinstance(value, int) and not isinstance(value, bool):
        if kind == "age" and value < 0:
            raise SeedError(f"{where}: an age is never negative")
        return value
    if kind == "decimal" and isinstance(value, str | int) and not isinstance(value, bool):
        try:
            return Decimal(value)
        except ArithmeticError:
            raise SeedError(f"{where}: not a number: {value!r}") from None
    if kind == "side" and value in ("BUY", "SELL"):
        return value
    if kind == "list" and isinstance(value, list):
        return cast(list[object], value)
    if kind == "strs" and isinstance(value, list):
        return [_value("str", item, where) for item in cast(list[object], value)]
    if kind == "cash" and isinstance(value, dict):
        items = cast(dict[object, object], value).items()
        return {_value("str", key, where): _value("decimal", amount, where) for key, amount in items}
    raise SeedError(f"{where}: expected {kind}, got {type(value).__name__}")


def _record(
    raw: object, where: str, kinds: dict[str, _Kind], defaults: dict[str, object] | None = None
) -> dict[str, Any]:
    """`raw` checked against `kinds` (every name required unless it has a default, no other name allowed)."""
    if not isinstance(raw, dict):
        raise SeedError(f"{where}: expected an object")
    given = cast(dict[str, object], raw)
    unknown = sorted(set(given) - set(kinds))
    if unknown:
        raise SeedError(f"{where}: unknown field {unknown[0]!r}")
    record = dict(defaults or {})
    for name, kind in kinds.items():
        if name in given:
            record[name] = _value(kind, given[name], f"{where}.{name}")
        elif name not in record:
            raise SeedError(f"{where}: {name!r} is required")
    return record


def _records(
    raw: object, where: str, kinds: dict[str, _Kind], defaults: dict[str, object] | None = None
) -> list[dict[str, Any]]:
    if not isinstance(raw, list):
        raise SeedError(f"{where}: expected a list")
    return [_record(item, f"{where}[{index}]", kinds, defaults) for index, item in enumerate(cast(list[object], raw))]


_PROFILE: Final = {
    "name": "str",
    "user_name": "str",
    "user_id": "int",
    "is_paper": "bool",
    "accounts": "strs",
    "advisor": "bool",
}
_ACCOUNT: Final = {"account_id": "str", "title": "str", "currency": "str", "type": "str", "cash": "cash"}
_CONTRACT: Final = {
    "conid": "int",
    "symbol": "str",
    "company_name": "str",
    "sec_type": "str",
    "listing_exchange": "str",
    "currency": "str",
    "category": "str?",
    "industry": "str?",
    "stock_type": "str",
    "valid_exchanges": "str",
    "bid": "decimal?",
    "ask": "decimal?",
    "last": "decimal?",
    "prior_close": "decimal?",
    "bid_size": "int?",
    "ask_size": "int?",
    "volume": "int?",
    "availability": "str",
    "last_is_prior_close": "bool",
}
_POSITION: Final = {"account_id": "str", "conid": "int", "quantity": "decimal", "avg_cost": "decimal"}
_ORDER: Final = {
    "order_id": "int",
    "account_id": "str",
    "conid": "int",
    "side": "side",
    "order_type": "str",
    "quantity": "decimal",
    "price": "decimal?",
    "tif": "str",
    "c_oid": "str?",
    "age_minutes": "age",
}
_EXECUTION: Final = {
    "execution_id": "str",
    "account_id": "str",
    "order_id": "int?",
    "c_oid": "str?",
    "conid": "int",
    "side": "side",
    "quantity": "decimal",
    "price": "decimal",
    "commission": "decimal",
    "exchange": "str",
    "age_minutes": "age",
}
_FILES: Final = {
    "accounts.json": {"profiles": "list", "accounts": "list", "fx_rates_to_usd": "cash"},
    "book.json": {"positions": "list", "orders": "list", "executions": "list"},
}
"""The seed files and their records: plain JSON checked field by field (unknown names refused, every
name without a default required), so starting the simulator builds no model."""


def _read(name: str) -> str:
    return (files(SEED_PACKAGE) / SEED_DIRECTORY / name).read_text(encoding="utf-8")


def load_seed_book(now: datetime) -> SimBook:
    """A fresh book from the packaged seed files; ages in the seed count back from `now`.

    Raises:
        SeedError: a seed file without the expected shape (unknown or missing field, wrong type).
    """
    accounts_file = _record(json.loads(_read("accounts.json")), "accounts.json", _FILES["accounts.json"])
    book_file = _record(json.loads(_read("book.json")), "book.json", _FILES["book.json"])
    book = SimBook(
        profiles={
            p["name"]: SimProfile(
                p["name"], p["user_name"], p["user_id"], p["is_paper"], tuple(p["accounts"]), p["advisor"]
            )
            for p in _records(accounts_file["profiles"], "accounts.json profiles", _PROFILE, {"advisor": False})
        },
        accounts={
            a["account_id"]: SimAccount(a["account_id"], a["title"], a["currency"], a["type"], a["cash"])
            for a in _records(accounts_file["accounts"], "accounts.json accounts", _ACCOUNT)
        },
        contracts={
            c["conid"]: SimContract(**c)
            for c in _records(
                json.loads(_read("contracts.json")), "contracts.json", _CONTRACT, {"last_is_prior_close": False}
            )
        },
        fx_rates_to_usd=accounts_file["fx_rates_to_usd"],
    )
    for p in _records(book_file["positions"], "book.json positions", _POSITION):
        book.positions[(p["account_id"], p["conid"])] = SimPosition(
            p["account_id"], p["conid"], p["quantity"], p["avg_cost"]
        )
    for o in _records(book_file["orders"], "book.json orders", _ORDER, {"price": None, "c_oid": None}):
        at = now - timedelta(minutes=o["age_minutes"])
        book.orders[o["order_id"]] = SimOrder(
            order_id=o["order_id"],
            account_id=o["account_id"],
            conid=o["conid"],
            side=o["side"],
            order_type=o["order_type"],
            quantity=o["quantity"],
            price=o["price"],
            aux_price=None,
            tif=o["tif"],
            c_oid=o["c_oid"],
            status="Submitted",
            created_at=at,
            updated_at=at,
        )
    for e in _records(book_file["executions"], "book.json executions", _EXECUTION):
        book.executions.append(
            SimExecution(
                execution_id=e["execution_id"],
                account_id=e["account_id"],
                order_id=e["order_id"],
                c_oid=e["c_oid"],
                conid=e["conid"],
                side=e["side"],
                quantity=e["quantity"],
                price=e["price"],
                commission=e["commission"],
                exchange=e["exchange"],
                executed_at=now - timedelta(minutes=e["age_minutes"]),
            )
        )
    return book
