"""`SimulatorState`: everything the simulator knows, the CPAPI operations over it, and test hooks.

The endpoint handlers (`simulator._handlers`, carried by the Starlette app and by fake mode's in-process
transport) only parse requests and render what these methods return;
a `SimHttpError` becomes an HTTP error answer. Tests drive the simulator through the hooks here
(`log_out`, `set_competing`, `expire_session`, `set_question_rules`, `set_position`…), never over HTTP.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import anyio
import anyio.to_thread

from . import _portfolio
from ._book import FIRST_ORDER_ID, SimAccount, SimBook, SimContract, SimOrder, SimPosition, SimProfile, load_seed_book
from ._clock import ScaledClock
from ._json import as_array, as_object
from ._pacing import DEFAULT_PACING_RULES, DEFAULT_PENALTY, GLOBAL_PER_SECOND, HISTORY_CONCURRENCY, Pacer, PacingRule
from ._session import AuthState, SessionMachine, SimConnectionDropped, SimHttpError, SimRequest, error_body
from ._store import COMPACT_HISTORY_BYTES, RETENTION, BookStore, Lease, Loaded

if TYPE_CHECKING:
    from ._oauth import OAuthAuthority
    from ._orders import OrderEngine
    from ._tickets import QuestionRule
    from ._trading import TradingDesk

_MAC = "02:5C:51:4D:00:01"

_SHARED_LOGIN: Final = timedelta(hours=24)
"""How long processes sharing a saved book share one simulated login (CPAPI caps a login at 24 h)."""

_BOOK_WRITES: Final = ("/iserver/account/", "/iserver/reply/")

SUBACCOUNTS_LIMIT: Final = 100
"""Most accounts `/portfolio/subaccounts` lists; larger advisor structures page through `/portfolio/subaccounts2`."""

SUBACCOUNTS_PAGE_SIZE: Final = 20
"""Accounts per page of `/portfolio/subaccounts2`."""
"""Paths whose POST or DELETE may change the book (placement, reply, cancel, modify)."""


def _utcnow() -> datetime:
    return datetime.now(UTC)


class SimulatorState:
    """The simulated Client Portal Gateway: login, brokerage session, book and order engine."""

    def __init__(
        self,
        *,
        profile: str = "paper",
        clock: Callable[[], datetime] = _utcnow,
        idle_timeout: timedelta | None = None,
        session_lifetime: timedelta | None = None,
        book: SimBook | None = None,
        book_path: Path | None = None,
        scaled_clock: ScaledClock | None = None,
    ) -> None:
        """A logged-in simulator with an open brokerage session, seeded from the packaged data.

        Args:
            profile: `paper` (DU1234567 and DU7654321, `isPaper` true), `live` (U7654321) or `advisor`
                (master DF1234560 with clients DU2000001 to DU2000003).
            clock: Time source for expiry, timestamps and seed ages; tests pass a frozen clock.
            idle_timeout: Drop the session after this long without a request (CPAPI: about 6 minutes).
            session_lifetime: Drop the session this long after login (CPAPI: 24 hours).
            book: A book to serve instead of the packaged seed.
            book_path: Keep the book in this file, shared with other processes (fake mode's
                `simulator-book.json`); read on the first request, saved after each change.
            scaled_clock: An accelerated clock to run on instead of `clock` (the control endpoint
                can then change its speed and move it forward).
        """
        if scaled_clock is not None:
            clock = scaled_clock.now
        self.scaled_clock = scaled_clock
        self._clock = clock
        self.book = book if book is not None else load_seed_book(clock())
        self._profile = self._profile_named(profile)
        self.session = SessionMachine(clock, idle_timeout=idle_timeout, session_lifetime=session_lifetime)
        self.oauth: OAuthAuthority | None = None
        """IBKR's Web API with OAuth 1.0a instead of a gateway's login (`use_oauth`)."""
        self._accounts_loading = 0
        self._engine: OrderEngine | None = None
        self._engine_counters = (max(self.book.orders, default=FIRST_ORDER_ID - 1) + 1, 1)
        """(next order id, next execution) until the engine is made: what it would start from, raised by `_restore`."""
        self._engine_client_ids: set[tuple[str, str]] | None = None
        """The (account, cOID) pairs `_restore` found before the engine was made."""
        self.withheld_quotes: set[int] = set()
        """Conids whose snapshot never gets past the pre-flight answer (a stalled market-data stream)."""
        self._drops_after_accept = 0
        self._store = BookStore(book_path) if book_path is not None else None
        self._store_lock = anyio.Lock()
        self._archived_orders: set[int] = set()
        """Finished orders already in the saved history (they never change again)."""
        self._archived_executions: set[str] = set()
        self.pacer: Pacer | None = None
        """The pacing limits while pacing is on."""
        self.positions_cache = False
        """Serve `/portfolio/{id}/positions` from a cache that goes stale until `/positions/invalidate`."""
        self.live_orders_empty_calls = 0
        """Further empty live-orders answers after each warm-up (IBKR's slow order subscription)."""
        self.history_latency_s = 0.0
        """Real seconds each history request takes (so concurrent requests overlap)."""
        self._trading: TradingDesk | None = None

    @property
    def engine(self) -> OrderEngine:
        """The order engine, made (and its modules imported) on first use: a read never needs it."""
        if self._engine is None:
            from ._orders import OrderEngine

            engine = OrderEngine(self.book, self._clock)
            engine.next_order_id, engine.next_execution = self._engine_counters
            if self._engine_client_ids is not None:
                engine.client_ids = self._engine_client_ids
            self._engine = engine
        return self._engine

    @property
    def trading(self) -> TradingDesk:
        """Options, scanner, schedules, FX, P&L, transactions and depth (made on first use)."""
        if self._trading is None:
            from ._trading import TradingDesk

            self._trading = TradingDesk(self)
        return self._trading

    # -- inspection ------------------------------------------------------------------------------

    def now(self) -> datetime:
        """The simulator's clock."""
        return self._clock()

    @property
    def profile(self) -> SimProfile:
        """The logged-in user and its accounts."""
        return self._profile

    @property
    def auth_state(self) -> AuthState:
        """Where the login stands."""
        return self.session.state

    @property
    def session_id(self) -> str:
        """The tickle `session` id of the current login (random, never a real secret)."""
        return self.session.session_id

    @property
    def requests(self) -> list[SimRequest]:
        """Every request seen, oldest first."""
        return self.session.requests

    def use_oauth(self, authority: OAuthAuthority) -> None:
        """Behave as IBKR's Web API for one OAuth consumer.

        Logged out until a live session token is issued, then every request must be signed with it (the
        brokerage session opens with `ssodh/init`).
        """
        self.oauth = authority
        self.session.log_out()

    def paths(self) -> list[str]:
        """`METHOD /path` of every request seen, for assertions on call order."""
        return [f"{r.method} {r.path}" for r in self.session.requests]

    @property
    def placements(self) -> list[SimOrder]:
        """Orders this simulator accepted (by placement or by a confirming reply), oldest first."""
        return [self.book.orders[order_id] for order_id in self.engine.accepted if order_id in self.book.orders]

    @property
    def placement_requests(self) -> int:
        """Placement requests received (`POST /iserver/account/{acct}/orders`), accepted or not."""
        return sum(
            1
            for r in self.session.requests
            if r.method == "POST" and r.path.startswith("/iserver/account/") and r.path.endswith("/orders")
        )

    def orders_with_client_order_id(self, client_order_id: str) -> list[SimOrder]:
        """Every order in the book placed with this `cOID` (at most one, as IBKR refuses duplicates)."""
        return [order for order in self.book.orders.values() if order.c_oid == client_order_id]

    # -- the saved book --------------------------------------------------------------------------

    @asynccontextmanager
    async def book_transaction(self, method: str, path: str) -> AsyncGenerator[None]:
        """Serve one request against the saved book: reread what another process changed, save changes.

        A no-op without `book_path`. Requests queue on one lock, in this process and across processes.
        """
        if self._store is None:
            yield
            return
        store = self._store
        async with self._store_lock:
            lease = store.try_acquire() or await anyio.to_thread.run_sync(store.acquire)  # may wait, may read
            try:
                if lease.loaded is not None:
                    self._restore(lease.loaded)
                yield
                if method in ("POST", "DELETE") and path.startswith(_BOOK_WRITES) and not path.endswith("/whatif"):
                    await self._save(store, lease)
            finally:
                store.release(lease)

    async def _save(self, store: BookStore, lease: Lease) -> None:
        from ._saved import HistoryEntry, SavedBook, book_bytes, history_bytes  # with the first save

        now = self._clock()
        finished = [
            o for o in self.book.orders.values() if not o.is_working and o.order_id not in self._archived_orders
        ]
        fills = [e for e in self.book.executions if e.execution_id not in self._archived_executions]
        self._archived_orders.update(o.order_id for o in finished)
        self._archived_executions.update(e.execution_id for e in fills)
        snapshot = book_bytes(
            SavedBook(
                login_at=self.session.logged_in_at,
                next_order_id=self.engine.next_order_id,
                next_execution=self.engine.next_execution,
                cash={account_id: dict(account.cash) for account_id, account in self.book.accounts.items()},
                positions=list(self.book.positions.values()),
                orders=[o for o in self.book.orders.values() if o.is_working],
            )
        )
        if store.history_size < COMPACT_HISTORY_BYTES:
            history = history_bytes([HistoryEntry(orders=finished, executions=fills)])
            await anyio.to_thread.run_sync(store.save, lease, snapshot, history)  # file I/O off the event loop
            return
        self._forget_expired(now)
        history = history_bytes(
            [
                HistoryEntry(
                    orders=[o for o in self.book.orders.values() if o.order_id in self._archived_orders],
                    executions=list(self.book.executions),
                )
            ]
        )
        await anyio.to_thread.run_sync(store.rewrite, lease, snapshot, history)

    def _forget_expired(self, now: datetime) -> None:
        cutoff = now - RETENTION
        for order_id in [oid for oid, o in self.book.orders.items() if not o.is_working and o.updated_at < cutoff]:
            del self.book.orders[order_id]
            self._archived_orders.discard(order_id)
        self.book.executions[:] = [e for e in self.book.executions if e.executed_at >= cutoff]
        self._archived_executions &= {e.execution_id for e in self.book.executions}

    def _restore(self, loaded: Loaded) -> None:
        """Apply what another process saved: finished orders and fills from the history, the rest from the snapshot."""
        cutoff = self._clock() - RETENTION
        orders = self.book.orders
        saved = loaded.book
        if saved is not None and loaded.full:
            orders.clear()
            self.book.executions.clear()
            self._archived_orders.clear()
            self._archived_executions.clear()
        elif saved is not None:
            for order_id in [oid for oid in orders if oid not in self._archived_orders]:
                del orders[order_id]  # working orders: the snapshot has their current state
        if saved is not None:  # without a snapshot (nothing saved yet, or damaged) memory stays as it is
            orders.update({o.order_id: o for o in saved.orders})
            self.book.positions.clear()
            self.book.positions.update({(p.account_id, p.conid): p for p in saved.positions})
            for account_id, cash in saved.cash.items():
                if account_id in self.book.accounts:
                    self.book.accounts[account_id].cash = dict(cash)
            if self._engine is not None:
                self._engine.next_order_id = max(saved.next_order_id, self._engine.next_order_id)
                self._engine.next_execution = max(saved.next_execution, self._engine.next_execution)
            else:  # a read: the engine (and its modules) wait until an order needs them
                next_order_id, next_execution = self._engine_counters
                self._engine_counters = (
                    max(saved.next_order_id, next_order_id),
                    max(saved.next_execution, next_execution),
                )
            if self._clock() - _SHARED_LOGIN < saved.login_at < self.session.logged_in_at:
                self.session.logged_in_at = saved.login_at  # one simulated login: earlier orders stay listed
        for order in loaded.finished:
            if order.updated_at >= cutoff:
                orders[order.order_id] = order  # a finished order outranks a stale working copy
                self._archived_orders.add(order.order_id)
        for execution in loaded.executions:
            if execution.executed_at >= cutoff and execution.execution_id not in self._archived_executions:
                self.book.executions.append(execution)
                self._archived_executions.add(execution.execution_id)
        client_ids = {(o.account_id, o.c_oid) for o in orders.values() if o.c_oid is not None}
        if self._engine is not None:
            self._engine.client_ids = client_ids
        else:
            self._engine_client_ids = client_ids

    # -- test hooks ------------------------------------------------------------------------------

    def log_in(self, profile: str | None = None) -> None:
        """Log in (optionally as another profile) with a fresh brokerage session."""
        if profile is not None:
            self._profile = self._profile_named(profile)
        self.session.log_in()

    def log_in_advisor(self, subaccounts: int | None = None) -> None:
        """Log in as an advisor: the seed's `advisor` profile, or a master with `subaccounts` (1 to 1,000) clients.

        Account-scoped `/iserver` calls then act on the selected account (`POST /iserver/account`), whatever
        account their path names, so a client that forgets to select the account is caught.
        """
        if subaccounts is None:
            self.log_in("advisor")
            return
        count = min(max(subaccounts, 1), 1000)
        accounts = ["DF9000000", *(f"DU9{n:06d}" for n in range(1, count + 1))]
        for n, account_id in enumerate(accounts):
            if account_id not in self.book.accounts:
                title = "Sim Large Advisor Master" if n == 0 else f"Sim Large Advisor Client {n}"
                self.book.accounts[account_id] = SimAccount(account_id, title, "USD", "DEMO", {"USD": Decimal(100_000)})
        name = f"advisor-{count}"
        self.book.profiles[name] = SimProfile(name, "simadvisor02", 81234570, True, tuple(accounts), advisor=True)
        self.log_in(name)

    def log_in_sso_only(self) -> None:
        """Log in without a brokerage session: `/iserver` answers "no bridge" until `ssodh/init`."""
        self.session.log_in_sso_only()

    def log_out(self) -> None:
        """End the login; every endpoint answers 401."""
        self.session.log_out()

    def expire_session(self) -> None:
        """The session timed out: same as a logout from the client's point of view."""
        self.session.log_out()

    def set_competing(self) -> None:
        """Another platform took the brokerage session (`competing: true`)."""
        self.session.set_competing()

    def reset_brokerage_session(self) -> None:
        """The nightly reset: priming, pre-flights and live-order subscriptions are lost."""
        self.session.reset_brokerage_session()

    def answer_no_session_with_body(self, enabled: bool = True) -> None:
        """Without a login, answer 200 `{"error": "no session"}` instead of 401."""
        self.session.no_session_body = enabled

    def fail_next(self, status: int, body: object = None, *, times: int = 1, path_contains: str | None = None) -> None:
        """Answer the next `times` requests with `status` and `body` (text when a `str`).

        With `path_contains`, only requests whose path holds it take the failure; the others pass.
        """
        self.session.fail_next(status, body, times=times, path_contains=path_contains)

    def enable_pacing(
        self,
        *,
        rules: Sequence[PacingRule] = DEFAULT_PACING_RULES,
        global_per_second: int = GLOBAL_PER_SECOND,
        penalty: timedelta = DEFAULT_PENALTY,
        history_concurrency: int = HISTORY_CONCURRENCY,
        retry_after: bool = False,
    ) -> Pacer:
        """Refuse requests over IBKR's pacing limits with 429 and box the offender for `penalty` (0: no box).

        With `retry_after`, each 429 carries `Retry-After` in real seconds (scaled by the accelerated clock).
        """
        scaled = self.scaled_clock
        to_real = scaled.real_seconds if scaled is not None else timedelta.total_seconds
        pacer = Pacer(
            self._clock,
            rules=rules,
            global_per_second=global_per_second,
            penalty=penalty,
            history_concurrency=history_concurrency,
            retry_after=to_real if retry_after else None,
        )
        self.pacer = pacer
        self.session.pace = pacer.check
        return pacer

    def disable_pacing(self) -> None:
        """Serve every request regardless of rate (the default)."""
        self.pacer = None
        self.session.pace = None

    def control(self, body: dict[str, object]) -> None:
        """Apply a control request (`POST /sim/control`); see `docs/rate-limits-and-sessions.md`.

        Raises:
            ValueError: a value of the wrong type or out of range (nothing after it is applied).
        """
        if body.get("unkind") is True:
            self.make_unkind()
        session = body.get("session")
        if session is not None:
            actions: dict[str, Callable[[], None]] = {
                "log_out": self.log_out,
                "log_in": self.log_in,
                "sso_only": self.log_in_sso_only,
                "competing": self.set_competing,
                "nightly_reset": self.session.nightly_reset,
            }
            if session not in actions:
                raise ValueError(f"session must be one of {sorted(actions)}")
            actions[str(session)]()
        failure = as_object(body.get("fail_next"))
        if failure is not None:
            contains = failure.get("path_contains")
            self.fail_next(
                int(_number(failure["status"])),
                failure.get("body"),
                times=int(_number(failure.get("times", 1))),
                path_contains=None if contains is None else str(contains),
            )
        if "idle_timeout_seconds" in body:
            idle = body["idle_timeout_seconds"]
            self.session.idle_timeout = None if idle is None else timedelta(seconds=_number(idle))
        advisor = body.get("advisor")
        if advisor is True:
            self.log_in_advisor()
        elif as_object(advisor) is not None:
            self.log_in_advisor(int(_number((as_object(advisor) or {})["subaccounts"])))
        clock = as_object(body.get("clock"))
        if clock is not None:
            if self.scaled_clock is None:
                raise ValueError("this simulator runs on a fixed clock")
            if "speed" in clock:
                self.scaled_clock.set_speed(_number(clock["speed"]))
            if "advance_seconds" in clock:
                self.scaled_clock.advance(_number(clock["advance_seconds"]))
        pacing = body.get("pacing")
        pacing_options = as_object(pacing)
        if pacing is False:
            self.disable_pacing()
        elif pacing is True:
            self.enable_pacing()
        elif pacing_options is not None:
            self.enable_pacing(**_pacing_options(pacing_options))
        if "positions_cache" in body:
            self.positions_cache = bool(body["positions_cache"])
        if "live_orders_empty_calls" in body:
            self.live_orders_empty_calls = int(_number(body["live_orders_empty_calls"]))
        if "history_latency_seconds" in body:
            self.history_latency_s = _number(body["history_latency_seconds"])
        position = as_object(body.get("set_position"))
        if position is not None:
            self.set_position(
                str(position["account_id"]),
                int(_number(position["conid"])),
                Decimal(str(position["quantity"])),
                Decimal(str(position.get("avg_cost", "100"))),
            )
        if "live_orders_empty_now" in body:
            self.session.brokerage.live_orders_empty_left = int(_number(body["live_orders_empty_now"]))
        if "add_contracts" in body:
            self.add_stock_contracts(int(_number(body["add_contracts"])))
        if body.get("reset_counters") is True:
            self.session.requests.clear()
            if self.pacer is not None:
                self.pacer.refused = self.pacer.boxes = 0
                self.pacer.counted.clear()
                self.pacer.peak.clear()

    def control_status(self) -> dict[str, object]:
        """What `GET /sim/control` answers: behaviours, clock and counters."""
        counts: dict[str, int] = {}
        for request in self.session.requests:
            key = f"{request.method} {request.path}"
            counts[key] = counts.get(key, 0) + 1
        return {
            "now": self._clock().isoformat(),
            "clock_speed": self.scaled_clock.speed if self.scaled_clock is not None else 1.0,
            "pacing": self.pacer.stats() if self.pacer is not None else None,
            "positions_cache": self.positions_cache,
            "live_orders_empty_calls": self.live_orders_empty_calls,
            "history_latency_seconds": self.history_latency_s,
            "auth_state": str(self.session.state),
            "idle_timeout_seconds": idle.total_seconds() if (idle := self.session.idle_timeout) is not None else None,
            "profile": self._profile.name,
            "selected_account": self.selected_account,
            "superseded_replies": self.engine.superseded_replies,
            "requests": len(self.session.requests),
            "requests_by_path": counts,
        }

    def add_stock_contracts(self, count: int) -> list[int]:
        """Add `count` (at most 1,000) made-up US stocks with live quotes; returns their conids (9,000,001 up)."""
        conids: list[int] = []
        for n in range(1, min(count, 1000) + 1):
            conid = 9_000_000 + n
            price = Decimal(20 + n)
            self.book.contracts[conid] = SimContract(
                conid=conid,
                symbol=f"SIM{n:03d}",
                company_name=f"SIMULATED STOCK {n}",
                sec_type="STK",
                listing_exchange="NASDAQ",
                currency="USD",
                category="Simulated",
                industry="Simulated",
                stock_type="COMMON",
                valid_exchanges="SMART,NASDAQ",
                bid=price - Decimal("0.01"),
                ask=price + Decimal("0.01"),
                last=price,
                prior_close=price - Decimal("0.50"),
                bid_size=3,
                ask_size=5,
                volume=100_000 + n,
                availability="RpB",
            )
            conids.append(conid)
        return conids

    def make_unkind(self) -> None:
        """Behave like the real gateway at its worst: pacing with IBKR's limits and penalty box, stale positions."""
        self.enable_pacing()
        self.positions_cache = True

    def drop_response_after_accept(self, times: int = 1) -> None:
        """The next `times` accepted orders stay in the book, but each answer is lost to a dropped connection.

        Applies to whichever request accepts the order (the placement, or the reply confirming its
        last question). Over the in-process transport the client sees `httpx2.RemoteProtocolError`
        at once; over a socket the connection closes mid-response.
        """
        self._drops_after_accept += times

    def set_question_rules(self, rules: Iterable[QuestionRule]) -> None:
        """Replace the reply prompts placement raises (an empty list accepts every valid ticket)."""
        self.engine.question_rules = list(rules)

    def add_contract(self, contract: SimContract) -> None:
        """Add or replace an instrument."""
        self.book.contracts[contract.conid] = contract

    def set_quote(
        self, conid: int, *, bid: Decimal | None = None, ask: Decimal | None = None, last: Decimal | None = None
    ) -> None:
        """Move a quote; working orders it crosses fill."""
        contract = self.book.contracts[conid]
        contract.bid = bid if bid is not None else contract.bid
        contract.ask = ask if ask is not None else contract.ask
        contract.last = last if last is not None else contract.last
        self.engine.match_working()

    def set_position(self, account_id: str, conid: int, quantity: Decimal, avg_cost: Decimal) -> None:
        """Set (or with quantity 0 remove) a position; the contract must exist."""
        if conid not in self.book.contracts:
            raise KeyError(conid)
        self.book.positions[(account_id, conid)] = SimPosition(account_id, conid, quantity, avg_cost)

    def fill_order(self, order_id: int, price: Decimal | None = None) -> None:
        """Fill a working order now."""
        self.engine.fill(order_id, price)

    def _profile_named(self, name: str) -> SimProfile:
        if name not in self.book.profiles:
            raise KeyError(f"unknown simulator profile {name!r}; known: {sorted(self.book.profiles)}")
        return self.book.profiles[name]

    # -- session endpoints -----------------------------------------------------------------------

    def admit(self, method: str, path: str, query: str) -> None:
        """Record a request and refuse it as CPAPI would (raises `SimHttpError`)."""
        self.session.admit(method, path, query)

    def auth_status(self) -> dict[str, object]:
        """`/iserver/auth/status`."""
        state = self.session.state
        return {
            "authenticated": state == AuthState.AUTHENTICATED,
            "competing": state == AuthState.COMPETING,
            "connected": True,
            "message": "",
            "MAC": _MAC,
            "serverInfo": dict(_portfolio.SERVER_INFO),
            "hardware_info": f"5c1d7a09|{_MAC}",
            "fail": "",
        }

    def open_brokerage_session(self, *, compete: bool) -> dict[str, object]:
        """`/iserver/auth/ssodh/init` and `/iserver/reauthenticate`."""
        opened = self.session.open_brokerage_session(compete=compete)
        return {**self.auth_status(), "passed": opened, "established": opened}

    def tickle(self) -> dict[str, object]:
        """`/tickle`: session id, SSO time left and the brokerage auth status."""
        return {
            "session": self.session.session_id,
            "ssoExpires": self.session.sso_expires_ms(),
            "collission": False,
            "userId": self._profile.user_id,
            "hmds": {"error": "no bridge"},
            "iserver": {"authStatus": self.auth_status()},
        }

    def logout(self) -> dict[str, object]:
        """`/logout`."""
        self.session.log_out()
        return {"status": True}

    def sso_validate(self) -> dict[str, object]:
        """`/sso/validate`: `LOGIN_TYPE` 2 for paper, 1 for live."""
        now_ms = int(self._clock().timestamp() * 1000)
        user = self._profile.user_name
        return {
            "USER_ID": self._profile.user_id,
            "USER_NAME": user,
            "RESULT": True,
            "AUTH_TIME": int(self.session.logged_in_at.timestamp() * 1000),
            "SF_ENABLED": False,
            "IS_FREE_TRIAL": False,
            "CREDENTIAL": user,
            "IP": "127.0.0.1",
            "EXPIRES": self.session.sso_expires_ms(),
            "QUALIFIED_FOR_MOBILE_AUTH": None,
            "LANDING_APP": "UNIVERSAL",
            "IS_MASTER": False,
            "lastAccessed": now_ms,
            "LOGIN_TYPE": 2 if self._profile.is_paper else 1,
            "PAPER_USER_NAME": user if self._profile.is_paper else None,
            "features": {"env": "PROD", "wlms": True, "realtime": True, "bond": True, "optionChains": True},
            "region": "NJ",
        }

    # -- accounts and portfolio ------------------------------------------------------------------

    def _account(self, account_id: str) -> SimAccount:
        if account_id not in self._profile.accounts or account_id not in self.book.accounts:
            raise SimHttpError(400, error_body(f"Account {account_id} is not available in this session"))
        return self.book.accounts[account_id]

    def load_accounts_slowly(self, answers: int = 2) -> None:
        """The next `answers` `/iserver/accounts` calls name no account yet, as right after a real login."""
        self._accounts_loading = answers

    def iserver_accounts(self) -> dict[str, object]:
        """`/iserver/accounts` (also primes the brokerage session); empty while accounts are still loading."""
        if self._accounts_loading > 0:
            self._accounts_loading -= 1
            return {"accounts": [], "aliases": {}, "selectedAccount": ""}
        return _portfolio.iserver_accounts(self.book, self._profile, self.session.session_id, self.selected_account)

    @property
    def selected_account(self) -> str:
        """The account account-scoped `/iserver` calls act on in an advisor login (reset with the brokerage session)."""
        return self.session.brokerage.selected_account or (self._profile.accounts[0] if self._profile.accounts else "")

    def select_account(self, account_id: str) -> dict[str, object]:
        """`POST /iserver/account` `{"acctId": ...}`: select the account later `/iserver` calls act on."""
        if account_id not in self._profile.accounts:
            raise SimHttpError(400, error_body(f"Account {account_id} is not available in this session"))
        if account_id == self.selected_account:
            return {"set": False, "acctId": account_id, "message": "Account already set"}
        self.session.brokerage.selected_account = account_id
        return {"set": True, "acctId": account_id}

    def _acting(self) -> str | None:
        """The account an account-scoped `/iserver` call acts on instead of its path's: the selected one (advisors)."""
        return self.selected_account if self._profile.advisor else None

    def portfolio_accounts(self) -> list[dict[str, object]]:
        """`/portfolio/accounts`: an advisor login lists only its master (the clients are sub-accounts)."""
        created = int(self.session.logged_in_at.timestamp() * 1000) - 86_400_000 * 365
        accounts = self._profile.accounts[:1] if self._profile.advisor else self._profile.accounts
        return [_portfolio.portfolio_account(self._account(a), created) for a in accounts]

    def portfolio_subaccounts(self) -> list[dict[str, object]]:
        """`/portfolio/subaccounts`: every account of the login, at most `SUBACCOUNTS_LIMIT`."""
        created = int(self.session.logged_in_at.timestamp() * 1000) - 86_400_000 * 365
        accounts = self._profile.accounts[:SUBACCOUNTS_LIMIT]
        return [_portfolio.portfolio_account(self._account(a), created) for a in accounts]

    def portfolio_subaccounts_page(self, page: int) -> dict[str, object]:
        """`/portfolio/subaccounts2?page=N`: `SUBACCOUNTS_PAGE_SIZE` accounts per page, with paging metadata."""
        created = int(self.session.logged_in_at.timestamp() * 1000) - 86_400_000 * 365
        accounts = self._profile.accounts
        size = SUBACCOUNTS_PAGE_SIZE
        rows = accounts[page * size : (page + 1) * size] if page >= 0 else ()
        return {
            "metadata": {"total": len(accounts), "pageSize": size, "pageNum": page},
            "subaccounts": [_portfolio.portfolio_account(self._account(a), created) for a in rows],
        }

    def portfolio_meta(self, account_id: str) -> dict[str, object]:
        """`/portfolio/{id}/meta`."""
        created = int(self.session.logged_in_at.timestamp() * 1000) - 86_400_000 * 365
        return _portfolio.portfolio_account(self._account(account_id), created)

    def summary(self, account_id: str) -> dict[str, object]:
        """`/portfolio/{id}/summary`."""
        return _portfolio.summary(self.book, self._account(account_id), self._clock())

    def ledger(self, account_id: str) -> dict[str, object]:
        """`/portfolio/{id}/ledger`."""
        return _portfolio.ledger(self.book, self._account(account_id), self._clock())

    def positions(self, account_id: str, page: int) -> list[dict[str, object]]:
        """`/portfolio/{id}/positions/{page}`; with the cache on, what the first read saw until invalidated."""
        account = self._account(account_id).account_id
        if not self.positions_cache:
            return _portfolio.positions_page(self.book, account, page)
        cache = self.session.brokerage.positions_cache
        if account not in cache:
            cache[account] = [_portfolio.position_row(self.book, p) for p in self.book.positions_of(account)]
        rows = cache[account]
        size = _portfolio.PAGE_SIZE
        return [dict(row) for row in rows[page * size : (page + 1) * size]] if page >= 0 else []

    def invalidate_positions(self, account_id: str) -> dict[str, object]:
        """`POST /portfolio/{id}/positions/invalidate`: the next read sees the book as it is now."""
        self.session.brokerage.positions_cache.pop(self._account(account_id).account_id, None)
        return {"message": "success"}

    # -- contracts and market data ---------------------------------------------------------------

    def secdef_search(self, symbol: str, *, by_name: bool = False) -> list[dict[str, object]]:
        """`/iserver/secdef/search`: `conid` is a string here, as in CPAPI."""
        wanted = symbol.strip().upper()
        results: list[dict[str, object]] = []
        for contract in self.book.contracts.values():
            matches = contract.symbol == wanted or (by_name and wanted in contract.company_name.upper())
            if not matches:
                continue
            sections: list[dict[str, object]] = [{"secType": contract.sec_type}]
            if contract.sec_type == "STK":
                sections.append(
                    {"secType": "OPT", "months": self.trading.option_months(), "exchange": "SMART;AMEX;CBOE"}
                )
            results.append(
                {
                    "conid": str(contract.conid),
                    "companyHeader": f"{contract.company_name} - {contract.listing_exchange}",
                    "companyName": contract.company_name,
                    "symbol": contract.symbol,
                    "description": contract.listing_exchange,
                    "restricted": None,
                    "sections": sections,
                }
            )
        return results

    def _contract(self, conid: int) -> SimContract:
        contract = self.book.contracts.get(conid)
        if contract is None:
            raise SimHttpError(400, error_body(f"Contract info not found for conid {conid}"))
        return contract

    def contract_info(self, conid: int) -> dict[str, object]:
        """`/iserver/contract/{conid}/info` (snake case)."""
        option = self.trading.option(conid)
        if option is not None:
            return self.trading.option_info(option)
        contract = self._contract(conid)
        return {
            "con_id": contract.conid,
            "symbol": contract.symbol,
            "company_name": contract.company_name,
            "instrument_type": contract.sec_type,
            "exchange": "SMART" if contract.sec_type == "STK" else contract.listing_exchange,
            "currency": contract.currency,
            "local_symbol": contract.symbol,
            "trading_class": "NMS" if contract.listing_exchange == "NASDAQ" else contract.symbol,
            "valid_exchanges": contract.valid_exchanges,
            "r_t_h": True,
            "allow_sell_long": False,
            "is_zero_commission_security": False,
            "smart_available": contract.sec_type == "STK",
            "category": contract.category,
            "industry": contract.industry,
            "underlying_con_id": 0,
        }

    def snapshot(self, conids: Sequence[int], fields: Sequence[str]) -> list[dict[str, object]]:
        """`/iserver/marketdata/snapshot`: the first request per conid only opens the stream."""
        from . import _market  # loaded by the reads that use it

        brokerage = self.session.brokerage
        updated_ms = int(self._clock().timestamp() * 1000)
        rows: list[dict[str, object]] = []
        for conid in conids:
            contract = self.book.contracts.get(conid)
            option = self.trading.option(conid) if contract is None else None
            if contract is None and option is None:
                continue
            remembered = brokerage.snapshot_fields.setdefault(conid, [])
            remembered.extend(code for code in fields if code not in remembered)
            if conid not in brokerage.preflighted or conid in self.withheld_quotes:
                brokerage.preflighted.add(conid)
                rows.append(_market.preflight_row(conid))
                continue
            server_id = f"q{sorted(brokerage.preflighted).index(conid)}"
            wanted = remembered or list(_market.DEFAULT_FIELDS)
            base = contract if contract is not None else option.underlying if option is not None else None
            assert base is not None
            extra = self.trading.option_fields(option) if option is not None else self.trading.stock_fields(base)
            row = _market.snapshot_row(base, wanted, server_id=server_id, updated_ms=updated_ms)
            if option is not None:  # an option has its own prices, not its underlying's
                row = {k: v for k, v in row.items() if k not in _market.field_values(base)} | {"55": base.symbol}
                row["conid"], row["conidEx"] = conid, str(conid)
            row.update({code: extra[code] for code in wanted if code in extra})
            rows.append(row)
        return rows

    def unsubscribe(self, conid: int) -> dict[str, object]:
        """`/iserver/marketdata/unsubscribe`: 404 for a conid with no open stream."""
        brokerage = self.session.brokerage
        if conid not in brokerage.preflighted:
            raise SimHttpError(404, error_body("Not Found"))
        brokerage.preflighted.discard(conid)
        brokerage.snapshot_fields.pop(conid, None)
        return {"success": True}

    def unsubscribe_all(self) -> dict[str, object]:
        """`/iserver/marketdata/unsubscribeall`."""
        self.session.brokerage.preflighted.clear()
        self.session.brokerage.snapshot_fields.clear()
        return {"unsubscribed": True}

    @asynccontextmanager
    async def history_slot(self) -> AsyncGenerator[None]:
        """One history request in flight for `history_latency_s`; a 429 past IBKR's concurrency cap."""
        pacer = self.pacer
        if pacer is not None:
            pacer.history_started()
        try:
            if self.history_latency_s > 0:
                await anyio.sleep(self.history_latency_s)
            yield
        finally:
            if pacer is not None:
                pacer.history_finished()

    def history(self, conid: int, *, period: str, bar: str, outside_rth: bool) -> dict[str, object]:
        """`/iserver/marketdata/history`."""
        from . import _market  # loaded by the reads that use it

        contract = self.book.contracts.get(conid)
        return _market.history(contract, period=period, bar=bar, outside_rth=outside_rth, now=self._clock())

    # -- orders ----------------------------------------------------------------------------------

    def _visible_order(self, order: SimOrder) -> bool:
        return order.account_id in self._profile.accounts

    def live_orders(self, *, account_id: str | None, filters: Sequence[str], force: bool) -> dict[str, object]:
        """`/iserver/account/orders`: empty on the first call of a session and on every `force=true`.

        An advisor login lists the selected account's orders, whatever `accountId` says.
        """
        from . import _order_views  # loaded by the reads that use it

        brokerage = self.session.brokerage
        if self._profile.advisor:
            account_id = self.selected_account
        if force or not brokerage.live_orders_warmed:
            brokerage.live_orders_warmed = True
            brokerage.live_orders_empty_left = self.live_orders_empty_calls
            return {"orders": [], "snapshot": True}
        if brokerage.live_orders_empty_left > 0:
            brokerage.live_orders_empty_left -= 1
            return {"orders": [], "snapshot": True}
        since = self.session.logged_in_at
        rows: list[dict[str, object]] = []
        for order in sorted(self.book.orders.values(), key=lambda o: o.order_id, reverse=True):
            if not self._visible_order(order) or account_id not in (None, order.account_id):
                continue
            if not order.is_working and order.updated_at < since:
                continue
            if filters and _order_views.FILTER_KEYS.get(order.status) not in filters:
                continue
            rows.append(_order_views.live_order_row(order, self.book.contracts[order.conid]))
        return {"orders": rows, "snapshot": True}

    def order_status(self, order_id: int) -> dict[str, object]:
        """`/iserver/account/order/status/{id}`."""
        from . import _order_views  # loaded by the reads that use it

        order = self.book.orders.get(order_id)
        if order is None or not self._visible_order(order):
            raise SimHttpError(400, error_body(f"OrderID {order_id} doesn't exist"))
        return _order_views.order_status_body(order, self.book.contracts[order.conid])

    def trades(self, *, days: int, account_id: str | None) -> list[dict[str, object]]:
        """`/iserver/account/trades`: executions of the last `days` days (1 to 7); an advisor's selected account's."""
        from . import _order_views  # loaded by the reads that use it

        if self._profile.advisor:
            account_id = self.selected_account
        cutoff = self._clock() - timedelta(days=min(max(days, 1), 7))
        return [
            _order_views.trade_row(e, self.book.contracts[e.conid], self._profile.user_name)
            for e in sorted(self.book.executions, key=lambda e: e.executed_at, reverse=True)
            if e.account_id in self._profile.accounts and account_id in (None, e.account_id) and e.executed_at >= cutoff
        ]

    def place_orders(self, account_id: str, body: object) -> object:
        """`POST /iserver/account/{acct}/orders`."""
        self._account(account_id)
        accepted = len(self.engine.accepted)
        answer = self.engine.place(account_id, body, self.session.brokerage, acting_account=self._acting())
        self._drop_if_accepted(accepted)
        return answer

    def reply(self, reply_id: str, confirmed: bool) -> object:
        """`POST /iserver/reply/{id}`."""
        accepted = len(self.engine.accepted)
        acting = self.selected_account if self._profile.advisor else None
        answer = self.engine.reply(reply_id, confirmed, acting_account=acting)
        self._drop_if_accepted(accepted)
        return answer

    def _drop_if_accepted(self, accepted_before: int) -> None:
        if len(self.engine.accepted) > accepted_before and self._drops_after_accept > 0:
            self._drops_after_accept -= 1
            raise SimConnectionDropped

    def whatif(self, account_id: str, body: object) -> dict[str, object]:
        """`POST /iserver/account/{acct}/orders/whatif`."""
        self._account(account_id)
        return self.engine.whatif(account_id, body, acting_account=self._acting())

    def cancel_order(self, account_id: str, order_id: int) -> dict[str, object]:
        """`DELETE /iserver/account/{acct}/order/{id}`."""
        self._account(account_id)
        return self.engine.cancel(self._acting() or account_id, order_id)

    def modify_order(self, account_id: str, order_id: int, body: object) -> list[dict[str, object]]:
        """`POST /iserver/account/{acct}/order/{id}`."""
        self._account(account_id)
        return self.engine.modify(account_id, order_id, body, self.session.brokerage, acting_account=self._acting())

    def suppress_questions(self, message_ids: Iterable[str]) -> dict[str, object]:
        """`/iserver/questions/suppress`: for this brokerage session only."""
        self.session.brokerage.suppressed.update(message_ids)
        return {"status": "submitted"}

    def reset_suppressed_questions(self) -> dict[str, object]:
        """`/iserver/questions/suppress/reset`."""
        self.session.brokerage.suppressed.clear()
        return {"status": "submitted"}


def _number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{value!r} is not a number")
    if value < 0:
        raise ValueError(f"{value!r} is negative")
    return float(value)


def _pacing_options(options: dict[str, object]) -> dict[str, Any]:
    """`enable_pacing` keyword arguments from a control request's `pacing` object."""
    known = {"penalty_seconds", "global_per_second", "history_concurrency", "retry_after", "rules"}
    unknown = set(options) - known
    if unknown:
        raise ValueError(f"unknown pacing options {sorted(unknown)}")
    out: dict[str, Any] = {}
    if "penalty_seconds" in options:
        out["penalty"] = timedelta(seconds=_number(options["penalty_seconds"]))
    if "global_per_second" in options:
        out["global_per_second"] = max(int(_number(options["global_per_second"])), 1)
    if "history_concurrency" in options:
        out["history_concurrency"] = int(_number(options["history_concurrency"]))
    if "retry_after" in options:
        out["retry_after"] = options["retry_after"] is True
    rules = as_array(options.get("rules"))
    if rules is not None:
        given: dict[str, PacingRule] = {r.path: r for r in DEFAULT_PACING_RULES}
        for raw in rules:
            rule = as_object(raw)
            if rule is None:
                raise ValueError("each rule is an object with path, limit and window_seconds")
            path = str(rule["path"])
            given[path] = PacingRule(
                path, max(int(_number(rule["limit"])), 1), timedelta(seconds=_number(rule["window_seconds"]))
            )
        out["rules"] = list(given.values())
    return out
