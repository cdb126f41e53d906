"""Fake mode's saved book: what one process places, the next one sees; concurrent processes lose nothing."""

import stat
import subprocess
import sys
import time
from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from ibkr_gateway_core.backend import Backend
from ibkr_gateway_core.config import GatewayConfig
from ibkr_gateway_core.errors import ErrorCode, GatewayError
from ibkr_gateway_core.orders import BrokerQuestion, OrderTicket
from ibkr_gateway_cpapi.backend import SIMULATOR_PROFILE_ENV, CpapiBackend, open_fake_backend, open_simulator_backend
from ibkr_gateway_cpapi.simulator import SimOrder, SimulatorState
from ibkr_gateway_cpapi.simulator._store import BOOK_FILE_NAME, HISTORY_FILE_NAME, read_saved

from .conftest import NOW

pytestmark = pytest.mark.anyio

ACCOUNT = "DU1234567"


def ticket(**changes: object) -> OrderTicket:
    fields: dict[str, object] = {
        "account_id": ACCOUNT,
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


def allow_all(question: BrokerQuestion) -> bool:
    return True


def saved_orders(state_dir: Path) -> dict[int, SimOrder]:
    """Every order on disk: finished ones from the history, working ones from the snapshot (which wins)."""
    book, history = read_saved(state_dir)
    orders = {o.order_id: o for entry in history for o in entry.orders}
    for order in book.orders if book is not None else []:
        orders.setdefault(order.order_id, order)
    return orders


@asynccontextmanager
async def fake_backend(state_dir: Path) -> AsyncGenerator[Backend]:
    """A fake-mode backend as `ibkr-agent` opens it: config only, book in the state directory."""
    backend = open_fake_backend(GatewayConfig.fake_local(state_dir=state_dir))
    try:
        yield backend
    finally:
        await backend.aclose()


async def test_an_order_placed_by_one_backend_is_seen_by_the_next(tmp_path: Path) -> None:
    """Orders, fills, positions and cash outlive the process that made them (issue 4: paper in fake mode)."""
    async with fake_backend(tmp_path) as first:
        writer = first.order_writer()
        resting = await writer.place(ticket(), client_order_id="k-rest", confirm=allow_all, max_rounds=5)
        await writer.place(
            ticket(order_type="market", limit_price=None), client_order_id="k-fill", confirm=allow_all, max_rounds=5
        )
        cash_before = next(c for c in await first.cash_balances(ACCOUNT) if c.currency == "USD")
    async with fake_backend(tmp_path) as second:
        orders = {o.client_order_id: o for o in await second.live_orders(ACCOUNT)}
        fills = [e for e in await second.executions(ACCOUNT, 1) if e.client_order_id == "k-fill"]
        positions = {p.contract_id: p.quantity for p in await second.positions(ACCOUNT)}
        cash_after = next(c for c in await second.cash_balances(ACCOUNT) if c.currency == "USD")
    assert orders["k-rest"].broker_order_id == resting.broker_order_id
    assert orders["k-rest"].status == "submitted" and orders["k-fill"].status == "filled"
    assert [(f.quantity, f.price) for f in fills] == [(Decimal(10), Decimal("212.42"))]
    assert positions[265598] == Decimal(160)
    assert cash_after == cash_before


async def test_a_later_process_cancels_and_never_duplicates_an_earlier_order(tmp_path: Path) -> None:
    """cOIDs and order ids persist: the same cOID resolves to the saved order, new ids keep counting."""
    async with fake_backend(tmp_path) as first:
        placed = await first.order_writer().place(ticket(), client_order_id="k-1", confirm=allow_all, max_rounds=5)
    async with fake_backend(tmp_path) as second:
        writer = second.order_writer()
        again = await writer.place(ticket(), client_order_id="k-1", confirm=allow_all, max_rounds=5)
        other = await writer.place(ticket(), client_order_id="k-2", confirm=allow_all, max_rounds=5)
        ack = await writer.cancel(ACCOUNT, placed.broker_order_id)
    assert again.broker_order_id == placed.broker_order_id
    assert int(other.broker_order_id) == int(placed.broker_order_id) + 1
    assert ack.accepted
    by_coid = {o.c_oid: o for o in saved_orders(tmp_path).values() if o.c_oid in ("k-1", "k-2")}
    assert (by_coid["k-1"].status, by_coid["k-2"].status) == ("Cancelled", "Submitted")


async def test_an_order_whose_answer_was_lost_is_saved_and_found_by_the_next_process(tmp_path: Path) -> None:
    """The drop happens after the save: a crashed caller's successor resolves the cOID (test plan R35/R36)."""
    sim = SimulatorState(book_path=tmp_path / BOOK_FILE_NAME)
    sim.drop_response_after_accept()
    async with open_simulator_backend(sim) as first:
        with pytest.raises(GatewayError) as caught:
            await first.order_writer().place(ticket(), client_order_id="k-lost", confirm=allow_all, max_rounds=5)
    assert caught.value.code == ErrorCode.BROKER_OUTCOME_UNKNOWN
    async with fake_backend(tmp_path) as second:
        found = await second.order_writer().find_by_client_order_id(ACCOUNT, "k-lost")
    assert found is not None and found.broker_order_id == str(sim.placements[0].order_id)


async def test_the_book_file_is_private_and_replaced_atomically(tmp_path: Path) -> None:
    """Mode 0600, no temporary file left behind; reads and what-ifs write nothing."""
    async with fake_backend(tmp_path) as backend:
        await backend.live_orders(ACCOUNT)
        await backend.what_if(ticket())
        assert not (tmp_path / BOOK_FILE_NAME).exists()
        await backend.order_writer().place(ticket(), client_order_id="k-1", confirm=allow_all, max_rounds=5)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "simulator-book.history.jsonl",
        "simulator-book.json",
        "simulator-book.lock",
    ]
    assert {stat.S_IMODE(p.stat().st_mode) for p in tmp_path.iterdir()} == {0o600}


async def test_a_damaged_book_is_moved_aside_and_the_simulator_carries_on(tmp_path: Path) -> None:
    """A file that does not parse is kept for inspection, never silently overwritten in place."""
    (tmp_path / BOOK_FILE_NAME).write_text("{not json", encoding="utf-8")
    async with fake_backend(tmp_path) as backend:
        orders = await backend.live_orders(ACCOUNT)
        await backend.order_writer().place(ticket(), client_order_id="k-1", confirm=allow_all, max_rounds=5)
    assert {o.client_order_id for o in orders} == {"seed-0001", "seed-0002"}
    assert (tmp_path / "simulator-book.json.damaged").read_text(encoding="utf-8") == "{not json"
    assert read_saved(tmp_path)[0] is not None


async def test_history_past_its_size_limit_is_rewritten_without_expired_entries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Finished orders and fills older than a week go; working orders stay whatever their age."""
    now = [NOW]
    path = tmp_path / BOOK_FILE_NAME
    async with open_simulator_backend(SimulatorState(clock=lambda: now[0], book_path=path)) as first:
        writer = first.order_writer()
        old = await writer.place(ticket(), client_order_id="k-old", confirm=allow_all, max_rounds=5)
        await writer.cancel(ACCOUNT, old.broker_order_id)
        await writer.place(ticket(), client_order_id="k-working", confirm=allow_all, max_rounds=5)
    now[0] += timedelta(days=8)
    monkeypatch.setattr("ibkr_gateway_cpapi.simulator.state.COMPACT_HISTORY_BYTES", 1)
    async with open_simulator_backend(SimulatorState(clock=lambda: now[0], book_path=path)) as second:
        assert await second.order_writer().find_by_client_order_id(ACCOUNT, "k-old") is None  # not even loaded
        await second.order_writer().place(ticket(), client_order_id="k-new", confirm=allow_all, max_rounds=5)
    coids = {o.c_oid for o in saved_orders(tmp_path).values()}
    assert {"k-working", "k-new"} <= coids and "k-old" not in coids
    assert b"k-old" not in (tmp_path / HISTORY_FILE_NAME).read_bytes()
    assert not any(
        e.executed_at < now[0] - timedelta(days=7) for entry in read_saved(tmp_path)[1] for e in entry.executions
    )


async def test_a_torn_last_history_line_is_cut_off(tmp_path: Path) -> None:
    """A crash mid-append leaves half a line; the next process drops it and appends cleanly after it."""
    async with fake_backend(tmp_path) as first:
        await first.order_writer().place(
            ticket(order_type="market", limit_price=None), client_order_id="k-1", confirm=allow_all, max_rounds=5
        )
    history = tmp_path / HISTORY_FILE_NAME
    with history.open("ab") as torn:
        torn.write(b'{"orders": [{"order_id"')
    async with fake_backend(tmp_path) as second:
        await second.order_writer().place(
            ticket(order_type="market", limit_price=None), client_order_id="k-2", confirm=allow_all, max_rounds=5
        )
        fills = {e.client_order_id for e in await second.executions(ACCOUNT, 1)}
    assert {"k-1", "k-2"} <= fills
    assert all(line.endswith(b"}") for line in history.read_bytes().splitlines())


_PLACER = """
import sys
import time
import anyio
from decimal import Decimal
from pathlib import Path
from ibkr_gateway_core.config import GatewayConfig
from ibkr_gateway_core.orders import OrderTicket
from ibkr_gateway_cpapi.backend import open_fake_backend

async def main(state_dir: str, prefix: str, count: int, start_at: float) -> None:
    backend = open_fake_backend(GatewayConfig.fake_local(state_dir=Path(state_dir)))
    await backend.list_accounts()  # imports and priming done before the start line
    await anyio.sleep(max(0.0, start_at - time.time()))
    ticket = OrderTicket(account_id="DU1234567", contract_id=265598, symbol="AAPL", asset_class="stock",
                         currency="USD", side="buy", quantity=Decimal(1), order_type="limit",
                         limit_price=Decimal("210"))
    try:
        for n in range(count):
            await backend.order_writer().place(ticket, client_order_id=f"{prefix}-{n}",
                                               confirm=lambda q: True, max_rounds=5)
    finally:
        await backend.aclose()

anyio.run(main, sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))
"""


def test_two_processes_placing_at_once_keep_every_order(tmp_path: Path) -> None:
    """flock around load-modify-save: neither process overwrites the other's orders (issue 4)."""
    count = 40
    start_at = time.time() + 2.0  # both loops start together, after both interpreters are up
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _PLACER, str(tmp_path), prefix, str(count), str(start_at)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            encoding="utf-8",
        )
        for prefix in ("a", "b")
    ]
    for proc in procs:
        _, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 0, stderr
    placed = [o for o in saved_orders(tmp_path).values() if o.c_oid is not None and o.c_oid[:2] in ("a-", "b-")]
    assert sorted(o.c_oid for o in placed if o.c_oid) == sorted(f"{p}-{n}" for p in "ab" for n in range(count))
    assert len({o.order_id for o in placed}) == 2 * count


async def test_the_live_profile_is_chosen_by_an_environment_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """IBKR_AGENT_SIMULATOR_PROFILE=live logs fake mode in as the live user (for refusal tests)."""
    monkeypatch.setenv(SIMULATOR_PROFILE_ENV, "live")
    async with fake_backend(tmp_path) as backend:
        accounts = await backend.list_accounts()
    assert [(a.account_id, a.account_mode) for a in accounts] == [("U7654321", "live")]


async def test_an_unknown_simulator_profile_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """A typo must not silently fall back to paper."""
    monkeypatch.setenv(SIMULATOR_PROFILE_ENV, "lvie")
    with pytest.raises(GatewayError) as caught:
        open_fake_backend(GatewayConfig.fake_local())
    assert caught.value.code == ErrorCode.CONFIG_INVALID


async def test_a_simulator_without_a_book_path_writes_nothing(tmp_path: Path, backend: CpapiBackend) -> None:
    """Tests driving a SimulatorState directly stay in memory."""
    await backend.order_writer().place(ticket(), client_order_id="k-1", confirm=allow_all, max_rounds=5)
    assert list(tmp_path.iterdir()) == []
