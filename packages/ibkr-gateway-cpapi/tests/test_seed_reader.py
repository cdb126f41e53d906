"""The simulator's seed is read as plain JSON, checked field by field, as strictly as models would.

Starting the simulator (every fake-mode command) builds no model for its seed. These tests hold the
reader to the models the seed used to be validated with: the packaged seed gives the same book, and
a malformed seed file is refused with a clear message.
"""

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

import pytest
from ibkr_gateway_cpapi.simulator import _book
from ibkr_gateway_cpapi.simulator._book import SeedError, load_seed_book
from pydantic import BaseModel, ConfigDict, Field

NOW = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)


class _Seed(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _ProfileSeed(_Seed):
    name: str
    user_name: str
    user_id: int
    is_paper: bool
    accounts: list[str]
    advisor: bool = False


class _AccountSeed(_Seed):
    account_id: str
    title: str
    currency: str
    type: str
    cash: dict[str, Decimal]


class _AccountsFile(_Seed):
    profiles: list[_ProfileSeed]
    accounts: list[_AccountSeed]
    fx_rates_to_usd: dict[str, Decimal]


class _ContractSeed(_Seed):
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
    last_is_prior_close: bool = False


class _PositionSeed(_Seed):
    account_id: str
    conid: int
    quantity: Decimal
    avg_cost: Decimal


class _OrderSeed(_Seed):
    order_id: int
    account_id: str
    conid: int
    side: Literal["BUY", "SELL"]
    order_type: str
    quantity: Decimal
    price: Decimal | None = None
    tif: str
    c_oid: str | None = None
    age_minutes: int = Field(ge=0)


class _ExecutionSeed(_Seed):
    execution_id: str
    account_id: str
    order_id: int | None
    c_oid: str | None
    conid: int
    side: Literal["BUY", "SELL"]
    quantity: Decimal
    price: Decimal
    commission: Decimal
    exchange: str
    age_minutes: int = Field(ge=0)


class _BookFile(_Seed):
    positions: list[_PositionSeed]
    orders: list[_OrderSeed]
    executions: list[_ExecutionSeed]


def _by_models(now: datetime) -> _book.SimBook:
    """The book as the seed models read it (the reader's reference)."""
    accounts = _AccountsFile.model_validate(json.loads(_book._read("accounts.json")))  # pyright: ignore[reportPrivateUsage]
    contracts = [_ContractSeed.model_validate(c) for c in json.loads(_book._read("contracts.json"))]  # pyright: ignore[reportPrivateUsage]
    seeded = _BookFile.model_validate(json.loads(_book._read("book.json")))  # pyright: ignore[reportPrivateUsage]
    book = _book.SimBook(
        profiles={
            p.name: _book.SimProfile(p.name, p.user_name, p.user_id, p.is_paper, tuple(p.accounts), p.advisor)
            for p in accounts.profiles
        },
        accounts={
            a.account_id: _book.SimAccount(a.account_id, a.title, a.currency, a.type, dict(a.cash))
            for a in accounts.accounts
        },
        contracts={c.conid: _book.SimContract(**c.model_dump()) for c in contracts},
        fx_rates_to_usd=dict(accounts.fx_rates_to_usd),
    )
    for p in seeded.positions:
        book.positions[(p.account_id, p.conid)] = _book.SimPosition(p.account_id, p.conid, p.quantity, p.avg_cost)
    for o in seeded.orders:
        at = now - timedelta(minutes=o.age_minutes)
        book.orders[o.order_id] = _book.SimOrder(
            o.order_id, o.account_id, o.conid, o.side, o.order_type, o.quantity, o.price, None, o.tif, o.c_oid,
            "Submitted", at, at,
        )  # fmt: skip
    for e in seeded.executions:
        book.executions.append(
            _book.SimExecution(
                e.execution_id, e.account_id, e.order_id, e.c_oid, e.conid, e.side, e.quantity, e.price,
                e.commission, e.exchange, now - timedelta(minutes=e.age_minutes),
            )
        )  # fmt: skip
    return book


def test_the_packaged_seed_reads_as_the_models_read_it() -> None:
    """Every profile, account, contract, position, order and fill: equal, Decimals and types included."""
    plain, modelled = load_seed_book(NOW), _by_models(NOW)
    assert plain == modelled
    assert repr(plain) == repr(modelled)  # Decimal('212.40') stays 212.40, not 212.4
    assert plain.orders and plain.executions and plain.positions


def _seed_with(monkeypatch: pytest.MonkeyPatch, name: str, change: Any) -> None:
    original = _book._read  # pyright: ignore[reportPrivateUsage]

    def read(file: str) -> str:
        data = json.loads(original(file))
        return json.dumps(change(data) if file == name else data)

    monkeypatch.setattr(_book, "_read", read)


@pytest.mark.parametrize(
    ("name", "change", "message"),
    [
        ("accounts.json", lambda d: d | {"extra": 1}, "accounts.json: unknown field 'extra'"),
        ("accounts.json", lambda d: {k: v for k, v in d.items() if k != "profiles"}, "'profiles' is required"),
        ("accounts.json", lambda d: d | {"profiles": {}}, "accounts.json.profiles: expected list"),
        ("contracts.json", lambda d: [d[0] | {"conid": "265598"}], "contracts.json[0].conid: expected int"),
        ("contracts.json", lambda d: [d[0] | {"conid": True}], "contracts.json[0].conid: expected int"),
        ("contracts.json", lambda d: [d[0] | {"bid": "abc"}], "contracts.json[0].bid: not a number"),
        ("contracts.json", lambda d: [d[0] | {"bid": 1.5}], "contracts.json[0].bid: expected decimal"),
        ("contracts.json", lambda d: [{k: v for k, v in d[0].items() if k != "symbol"}], "'symbol' is required"),
        ("book.json", lambda d: d | {"orders": [d["orders"][0] | {"side": "buy"}]}, "expected side"),
        ("book.json", lambda d: d | {"orders": [d["orders"][0] | {"age_minutes": -1}]}, "never negative"),
        ("book.json", lambda d: d | {"positions": [7]}, "book.json positions[0]: expected an object"),
    ],
)
def test_a_malformed_seed_is_refused(monkeypatch: pytest.MonkeyPatch, name: str, change: Any, message: str) -> None:
    """Unknown names, missing names, wrong types and out-of-range values: a `SeedError` naming the place."""
    _seed_with(monkeypatch, name, change)
    with pytest.raises(SeedError, match=message.replace("[", r"\[").replace("]", r"\]").replace(".", r"\.")):
        load_seed_book(NOW)
