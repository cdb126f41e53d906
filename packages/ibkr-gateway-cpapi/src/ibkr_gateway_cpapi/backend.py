"""`CpapiBackend`: core's `Backend` over `CpapiClient`, and the two entry-point factories.

Both backends are the same class over the same client: `client_portal_gateway` sends real HTTP to
`broker.base_url`; `fake` hands it to the simulator in the same process (`simulator.inprocess`: its
handlers called directly, no server and no web framework), so fake mode exercises the real client and
mapping. Factories do no I/O; the simulator is imported on the first request of a fake backend only,
and Starlette only if a fake backend opens the websocket.

In fake mode the simulator's book (orders, executions, positions, cash, `cOID`s seen) lives in the
state directory (`simulator-book.json` and its history), so a later process sees what an earlier
one placed. The login is the paper profile unless `IBKR_AGENT_SIMULATOR_PROFILE=live` (a test
hook, read by `open_fake_backend`) logs in as the live profile instead.
"""

from __future__ import annotations

import os
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar

import anyio
import httpx2
from ibkr_gateway_core.backend import Backend
from ibkr_gateway_core.config import OAUTH_DEFAULT_BASE_URL, GatewayConfig
from ibkr_gateway_core.errors import ErrorCode, GatewayError
from ibkr_gateway_core.models import (
    AccountSummary,
    BrokerAccount,
    BrokerSessionStatus,
    CashBalance,
    ContractCandidate,
    Execution,
    HistoricalBars,
    MarketSnapshot,
    OrderRecord,
    PacingBudget,
    Position,
)

from . import _mapping as mapping
from . import _wire as wire
from ._accounts import AccountSelection, read_iserver_accounts
from ._market_reads import MarketReads
from ._questions import QuestionSlot, broker_key
from .client import BrokerHttpError, CpapiClient, Decoder, api_base_url
from .supervisor import DEFAULT_TICKLE_INTERVAL, SessionSupervisor, Sleep
from .ws import AsgiConnector, WebsocketConnector, WsConnector

if TYPE_CHECKING:  # the order tickets load with the first preview or order (`orders.tickets`)
    from ibkr_gateway_core.orders import OrderTicket, OrderWriter, WhatIf

    from .pacing import RateGovernor
    from .simulator import SimulatorState
    from .writer import ClientPortalOrderWriter

_T = TypeVar("_T")

FAKE_BASE_URL: Final = "http://cpapi-simulator.invalid"
"""Base URL of the in-process simulator; the `.invalid` host can never resolve to a real server."""

POSITIONS_PAGE_SIZE: Final = 100
"""CPAPI's positions page size; a shorter page is the last one."""

MAX_POSITION_PAGES: Final = 500
"""Upper bound on pages read, so a misbehaving broker cannot loop us forever."""

MAX_PAGES_IN_FLIGHT: Final = 4
"""Most positions pages asked for at once (an account of 400 positions and more reads four at a time)."""

ACCOUNTS_REUSE_S: Final = 5.0
"""How long an accounts answer is reused within one brokerage session (IBKR paces `/portfolio/accounts` at 1/5 s)."""

MAX_CONTRACT_LOOKUPS: Final = 10
"""Stock candidates of one search that get a contract-info call."""

SNAPSHOT_FIELDS: Final = "31,84,85,86,88,87,7762,55,6509,7059"
"""Last, bid, ask size, ask, bid size, volume (formatted, raw), symbol, availability, last size."""

SIMULATOR_PROFILE_ENV: Final = "IBKR_AGENT_SIMULATOR_PROFILE"
"""Test hook: `live` makes fake mode log in as the simulator's live user (U7654321, `isPaper` false),
`advisor` as its advisor (master DF1234560 and three client accounts)."""

SIMULATOR_PROFILES: Final = ("paper", "live", "advisor")
"""The simulator's logins (its packaged seed defines them)."""

SIMULATOR_BOOK_FILE: Final = "simulator-book.json"
"""Fake mode's saved book, in the state directory (its history and lock file sit beside it)."""

DEFAULT_PREFLIGHT_DELAYS_S: Final = (0.05, 0.1, 0.2, 0.4, 0.4)
"""Waits before re-polling a snapshot whose first answer was only the pre-flight (6 tries in all)."""

SNAPSHOT_REUSE: Final = timedelta(seconds=1)
"""With pacing on, a quote with prices is served again for this long: IBKR's snapshot pacing window (10/s)."""

SUBACCOUNTS_LIMIT: Final = 100
"""Most accounts `/portfolio/subaccounts` lists; a full answer means `/portfolio/subaccounts2` pages hold the rest."""

MAX_SUBACCOUNT_PAGES: Final = 100
"""Upper bound on `/portfolio/subaccounts2` pages read (20 accounts each)."""

ACCOUNTS_LOADING_WAITS_S: Final = (0.25, 0.5, 1.0)
"""Pauses before asking `/iserver/accounts` again while it names no account (just after a login)."""

LIVE_ORDERS_RECHECK_S: Final = 1.0
"""Without a governor, the pause before asking again after a suspicious empty live-orders answer."""

_WORKING_STATUSES: Final = frozenset({"pending_submit", "submitted", "pending_cancel", "unknown"})

_SESSION_ACTION: Final = "Log in to the Client Portal Gateway in a browser, then retry."
_OPEN_BROKERAGE_ACTION: Final = (
    "Open the brokerage session (POST /iserver/auth/ssodh/init) or log in to the Client Portal Gateway again."
)
_OAUTH_SESSION_ACTION: Final = (
    "IBKR's Web API holds no brokerage session for this OAuth consumer: retry (a new live session token opens "
    "one), and check that no other platform uses this login."
)
_COMPETING_ACTION: Final = (
    "Another IBKR platform uses this login: close it, or take the session back "
    "(POST /iserver/auth/ssodh/init with compete=true)."
)


def _utcnow() -> datetime:
    return datetime.now(UTC)


class CpapiBackend(MarketReads):
    """Reads one broker through CPAPI; satisfies core's `Backend` Protocol."""

    def __init__(
        self,
        client: CpapiClient,
        *,
        name: str,
        clock: Callable[[], datetime] = _utcnow,
        preflight_delays_s: Sequence[float] = DEFAULT_PREFLIGHT_DELAYS_S,
        ws: WsConnector | None = None,
        questions: QuestionSlot | None = None,
    ) -> None:
        """Wrap a client.

        Args:
            client: The CPAPI client; the backend closes it in `aclose`.
            name: `fake` or `client_portal_gateway`.
            clock: Source of `checked_at` and `received_at` times.
            preflight_delays_s: Waits between snapshot re-polls after a pre-flight answer.
            ws: Opens websocket connections to the same broker (market depth, the P&L stream).
            questions: The login's order-question slot in the shared state store (real gateways).
        """
        self.name = name
        self._client = client
        self._clock = clock
        self._preflight_delays_s = tuple(preflight_delays_s)
        self._contracts: dict[int, wire.WireContractInfo | None] = {}
        """Contract info per conid (None: unknown to the broker); conids are stable, so it never expires."""
        self._accounts: tuple[int, datetime, list[BrokerAccount]] | None = None
        """(brokerage generation, time, accounts) of the last accounts answer."""
        self._live_orders_generation: int | None = None
        """The client's brokerage generation when live orders were last warmed up."""
        self._streams: set[int] = set()
        """Conids whose market-data stream is open in the brokerage session of `_streams_generation`."""
        self._streams_generation: int | None = None
        self._writer: ClientPortalOrderWriter | None = None
        self._supervisor: SessionSupervisor | None = None
        self._quotes: dict[int, MarketSnapshot] = {}
        """Latest quote with prices per conid (reused for `SNAPSHOT_REUSE` with pacing on)."""
        self._quote_flights: dict[int, anyio.Event] = {}
        self._positions_dirty: set[str] = set()
        """Accounts whose positions this gateway's own orders may have changed since the broker cached them."""
        self._position_pages: dict[str, int] = {}
        """Pages the last positions read of each account took: the next read asks for that many at once."""
        self._orders_working: dict[str, tuple[int, int]] = {}
        """Account → (brokerage generation, working orders in the last non-empty live-orders answer)."""
        client.on_write = self._order_written
        self._selection = AccountSelection(client, lambda: read_iserver_accounts(client))
        """Selects the broker's account before account-scoped `/iserver` calls (multi-account and advisor logins)."""
        self._ws = ws
        self._questions = questions
        self._scanner_params = None
        self._searched = (-1, set())
        self._pnl_primed = None

    async def __aenter__(self) -> CpapiBackend:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the client and its connections."""
        await self._client.aclose()
        if self._questions is not None:
            await self._questions.aclose()

    # -- session ---------------------------------------------------------------------------------

    async def session_status(self) -> BrokerSessionStatus:
        """Brokerage-session state; an absent session or unreachable broker is reported, not raised.

        While supervised, a usable status from the latest check (younger than the tickle interval)
        is answered at once; anything else is asked of the broker.
        """
        supervisor = self._supervisor
        if supervisor is not None:
            last = supervisor.last_status
            if last is not None and last.status == "usable" and self._clock() - last.checked_at < supervisor.interval:
                return self._with_pacing(last)
        status = await self._status_from(lambda: self._client.post("/iserver/auth/status"), tickle=False)
        return self._with_pacing(self._recorded(status))

    def _with_pacing(self, status: BrokerSessionStatus) -> BrokerSessionStatus:
        governor = self._client.governor
        if governor is None:
            return status
        budgets = [PacingBudget(**asdict(budget)) for budget in governor.budgets()]
        return status.model_copy(update={"pacing": budgets})

    async def keepalive(self) -> BrokerSessionStatus:
        """Tickle the session and report its state."""
        return await self._status_from(lambda: self._client.post("/tickle"), tickle=True)

    async def prime(self) -> None:
        """Query `/iserver/accounts` now, as CPAPI wants first in each brokerage session."""
        await self._client.prime()

    async def open_brokerage_session(self, *, compete: bool) -> None:
        """`POST /iserver/auth/ssodh/init`: open the brokerage session of a logged-in gateway.

        `compete=True` takes the session from another platform using the same login; only a person decides that.
        """
        await self._client.post("/iserver/auth/ssodh/init", {"publish": True, "compete": compete})

    @asynccontextmanager
    async def supervised(
        self, *, interval: timedelta = DEFAULT_TICKLE_INTERVAL, sleep: Sleep = anyio.sleep, reopen: bool = False
    ) -> AsyncGenerator[SessionSupervisor]:
        """Keep the session alive while the block runs: tickle every `interval`, re-prime after a reset.

        With `reopen`, a closed brokerage session is re-opened (never competing). The supervisor task starts
        at once (its first check runs in the background) and is cancelled on exit.
        """
        supervisor = SessionSupervisor(self, interval=interval, sleep=sleep, reopen=reopen)
        async with anyio.create_task_group() as tasks:
            await tasks.start(supervisor.run)
            self._supervisor = supervisor
            try:
                yield supervisor
            finally:
                self._supervisor = None
                tasks.cancel_scope.cancel()

    def _supervised_status(self) -> BrokerSessionStatus | None:
        """The latest status the supervisor saw; None when no supervisor runs (one-shot CLI commands)."""
        return self._supervisor.last_status if self._supervisor is not None else None

    def _recorded(self, status: BrokerSessionStatus) -> BrokerSessionStatus:
        if self._supervisor is not None:
            self._supervisor.record(status)
        return status

    async def _status_from(self, call: Callable[[], Awaitable[object]], *, tickle: bool) -> BrokerSessionStatus:
        try:
            data = await call()
        except GatewayError as exc:
            return self.status_for_error(exc)
        if tickle:
            auth = wire.parse(wire.WireTickle, data, "tickle")
            status = auth.iserver.auth_status if auth.iserver and auth.iserver.auth_status else None
            if status is None:
                status = wire.WireAuthStatus()
        else:
            status = wire.parse(wire.WireAuthStatus, data, "auth status")
        checked_at = self._clock()
        if status.authenticated and status.connected and not status.competing:
            return BrokerSessionStatus(
                status="usable",
                backend=self.name,
                authenticated=True,
                connected=True,
                competing=False,
                checked_at=checked_at,
                message=status.message or None,
            )
        if status.competing:
            message = "Another IBKR platform holds the brokerage session (competing)."
            action = _COMPETING_ACTION
        elif self.name == "cpapi_oauth":  # no gateway and no browser login: the OAuth session opens it
            message = "IBKR's Web API has not opened the brokerage session of this OAuth consumer."
            action = _OAUTH_SESSION_ACTION
        elif not status.connected:
            message = "The Client Portal Gateway is not connected to IBKR."
            action = _SESSION_ACTION
        else:
            message = "The brokerage session is not open."
            action = _OPEN_BROKERAGE_ACTION
        return BrokerSessionStatus(
            status="manual_action_required",
            backend=self.name,
            authenticated=status.authenticated,
            connected=status.connected,
            competing=status.competing,
            checked_at=checked_at,
            message=message,
            user_action=action,
            error_code=ErrorCode.BROKER_SESSION_REQUIRED,
        )

    def status_for_error(self, exc: GatewayError) -> BrokerSessionStatus:
        """The session status a broker error implies: a missing session needs a person, else unavailable."""
        session_missing = exc.code in (
            ErrorCode.BROKER_SESSION_REQUIRED,
            ErrorCode.BROKER_SESSION_EXPIRED,
            ErrorCode.BROKER_OAUTH_REJECTED,
        )
        return BrokerSessionStatus(
            status="manual_action_required" if session_missing else "unavailable",
            backend=self.name,
            authenticated=False,
            connected=not session_missing and exc.code != ErrorCode.BROKER_BACKEND_UNAVAILABLE,
            competing=False,
            checked_at=self._clock(),
            message=exc.message,
            user_action=exc.user_action,
            error_code=exc.code,
        )

    # -- accounts and portfolio ------------------------------------------------------------------

    async def list_accounts(self) -> list[BrokerAccount]:
        """Accounts of the brokerage session, with `isPaper` cross-checked against each id.

        The answer is reused for `ACCOUNTS_REUSE` within one brokerage session: IBKR paces
        `/portfolio/accounts` at one request per 5 s, and accounts do not change between two calls.
        """
        now = self._clock()
        cached = self._accounts
        fresh = cached is not None and (now - cached[1]).total_seconds() < ACCOUNTS_REUSE_S
        degraded = (status := self._supervised_status()) is not None and status.status != "usable"
        if cached is not None and fresh and cached[0] == self._client.brokerage_generation and not degraded:
            return cached[2]  # never while the session is known to be down: the read says so instead
        iserver = await self._loaded_iserver_accounts()
        portfolio = wire.parse_portfolio_accounts(await self._client.get("/portfolio/accounts"))
        if iserver.is_advisor:  # the clients of an advisor are sub-accounts, not portfolio accounts
            portfolio = [*portfolio, *await self._subaccounts()]
        by_id = {row.key: row for row in portfolio if row.key}
        accounts = _mapped(lambda: [mapping.to_broker_account(a, iserver, by_id.get(a)) for a in iserver.accounts])
        self._accounts = (self._client.brokerage_generation, now, accounts)
        return accounts

    async def _subaccounts(self) -> list[wire.WirePortfolioAccount]:
        """An advisor's sub-accounts: `/portfolio/subaccounts`, then `/portfolio/subaccounts2` pages when it is full."""
        rows = wire.parse_portfolio_accounts(await self._client.get("/portfolio/subaccounts"))
        if len(rows) < SUBACCOUNTS_LIMIT:
            return rows
        rows: list[wire.WirePortfolioAccount] = []
        for page in range(MAX_SUBACCOUNT_PAGES):
            data = await self._client.get("/portfolio/subaccounts2", {"page": str(page)})
            answer = wire.parse(wire.WireSubaccountsPage, data, "subaccounts")
            rows.extend(answer.subaccounts)
            total = answer.metadata.get("total")
            if not answer.subaccounts or (isinstance(total, int) and len(rows) >= total):
                break
        return rows

    async def _loaded_iserver_accounts(self) -> wire.WireIserverAccounts:
        """`/iserver/accounts` once it names accounts: right after a login IBKR answers an empty list for a while.

        Raises:
            GatewayError: `BROKER_SESSION_REQUIRED` (retryable) when the accounts are still not loaded after
                `ACCOUNTS_LOADING_WAITS_S`: a session that is not ready yet, never "no such account".
        """
        iserver = wire.parse(wire.WireIserverAccounts, await self._client.get("/iserver/accounts"), "accounts")
        for wait in ACCOUNTS_LOADING_WAITS_S:
            if iserver.accounts:
                break
            await anyio.sleep(wait)
            iserver = wire.parse(wire.WireIserverAccounts, await self._client.get("/iserver/accounts"), "accounts")
        if not iserver.accounts:
            raise GatewayError(
                ErrorCode.BROKER_SESSION_REQUIRED,
                "The brokerage session is open, but IBKR has not loaded its accounts yet.",
                user_action="Wait a few seconds and retry; IBKR loads the accounts shortly after a login.",
            )
        self._selection.observe(iserver)
        return iserver

    async def account_summary(self, account_id: str) -> AccountSummary:
        """Balances and margin from `/portfolio/{id}/summary`."""
        data = await self._account_get(account_id, f"/portfolio/{account_id}/summary")
        metrics = wire.parse_keyed(wire.WireSummaryValue, data, "account summary")
        currency = mapping.summary_currency(metrics) or await self._account_currency(account_id)
        return _mapped(lambda: mapping.to_account_summary(account_id, metrics, currency))

    async def _account_currency(self, account_id: str) -> str:
        meta = wire.parse(
            wire.WirePortfolioAccount, await self._account_get(account_id, f"/portfolio/{account_id}/meta"), "meta"
        )
        if meta.currency is None:
            raise wire.invalid_response("account meta")
        return meta.currency

    async def cash_balances(self, account_id: str) -> list[CashBalance]:
        """Cash per currency from the ledger, without `BASE`."""
        data = await self._account_get(account_id, f"/portfolio/{account_id}/ledger")
        ledger = wire.parse_keyed(wire.WireLedgerEntry, data, "ledger")
        return _mapped(lambda: mapping.to_cash_balances(ledger))

    async def positions(self, account_id: str, *, fresh: bool = False) -> list[Position]:
        """Every position, reading pages of 100 until an empty or short page.

        IBKR caches `/portfolio/{id}/positions` on its side. The cache is invalidated first when the
        caller asks for `fresh`, and on its own while this gateway's orders in the account may have
        changed the positions (an order was placed, modified or cancelled, and no live-orders read
        has shown the account without working orders since).
        """
        if fresh or account_id in self._positions_dirty:
            await self._account_post(account_id, f"/portfolio/{account_id}/positions/invalidate")
            if not self._orders_still_working(account_id):
                self._positions_dirty.discard(account_id)
        rows: list[wire.WirePosition] = []
        page = 0
        while page < MAX_POSITION_PAGES:
            remembered = self._position_pages.get(account_id, 1) - page
            ahead = max(1, min(remembered, MAX_PAGES_IN_FLIGHT, MAX_POSITION_PAGES - page))
            for batch in await self._position_batches(account_id, range(page, page + ahead)):
                rows.extend(batch)
                page += 1
                if len(batch) < POSITIONS_PAGE_SIZE:
                    self._position_pages[account_id] = page
                    return _mapped(lambda: mapping.to_positions(rows, account_id))
        self._position_pages[account_id] = page
        return _mapped(lambda: mapping.to_positions(rows, account_id))

    async def _position_batches(self, account_id: str, pages: range) -> Iterator[list[wire.WirePosition]]:
        """The rows of `pages`, requested at once and given in page order, each as its request ends.

        An account that took several pages last time is read with that many requests in flight, so the broker
        prepares the next page while this one is decoded instead of after it. The reader stops at the first
        short page: the pages after it, and their failures, are never looked at, as if never asked for.
        """
        if len(pages) == 1:
            path = f"/portfolio/{account_id}/positions/{pages[0]}"
            return iter(
                [wire.parse_positions(await self._account_get(account_id, path, decoder=wire.positions_from_json))]
            )
        done = [anyio.Event() for _ in pages]
        bodies: list[object] = [None] * len(pages)
        failures: list[BaseException | None] = [None] * len(pages)

        async def fetch(index: int) -> None:
            try:
                path = f"/portfolio/{account_id}/positions/{pages[index]}"
                bodies[index] = await self._account_get(account_id, path, decoder=wire.positions_from_json)
            except Exception as exc:  # reported only if the reader gets as far as this page
                failures[index] = exc
            finally:
                done[index].set()

        batches: list[list[wire.WirePosition]] = []
        failure: BaseException | None = None
        async with anyio.create_task_group() as tasks:
            for index in range(len(pages)):
                tasks.start_soon(fetch, index)
            for index in range(len(pages)):
                await done[index].wait()
                failure = failures[index]
                if failure is None:
                    try:
                        batches.append(wire.parse_positions(bodies[index]))
                    except Exception as exc:  # raised below, outside the task group, which would wrap it in a group
                        failure = exc
                if failure is not None or len(batches[-1]) < POSITIONS_PAGE_SIZE:
                    break
            tasks.cancel_scope.cancel()
        if failure is not None:
            raise failure
        return iter(batches)

    def _order_written(self, path: str) -> None:
        """The client sent an order write: positions of its account (every account, for a reply) may change."""
        parts = path.split("/")
        if path.startswith("/iserver/account/") and len(parts) > 3 and parts[3] not in ("orders", "order", "trades"):
            if not path.endswith("/whatif"):
                self._positions_dirty.add(parts[3])  # a reply always follows its account's placement
                self._orders_working.pop(parts[3], None)  # unknown until live orders are read again

    def _orders_still_working(self, account_id: str) -> bool:
        seen = self._orders_working.get(account_id)
        return seen is None or seen[1] > 0

    async def _account_post(self, account_id: str, path: str) -> object:
        try:
            return await self._client.post(path)
        except BrokerHttpError as exc:
            if exc.status_code in (400, 403, 404):
                raise GatewayError(
                    ErrorCode.INPUT_UNAUTHORIZED_ACCOUNT,
                    f"The broker session does not serve account {account_id!r}.",
                    details={"status_code": exc.status_code},
                ) from None
            raise

    async def _account_get(self, account_id: str, path: str, *, decoder: Decoder | None = None) -> object:
        try:
            return await self._client.get(path, decoder=decoder)
        except BrokerHttpError as exc:
            if exc.status_code in (400, 403, 404):
                raise GatewayError(
                    ErrorCode.INPUT_UNAUTHORIZED_ACCOUNT,
                    f"The broker session does not serve account {account_id!r}.",
                    details={"status_code": exc.status_code},
                ) from None
            raise

    # -- contracts and market data ---------------------------------------------------------------

    async def search_contracts(self, symbol: str) -> list[ContractCandidate]:
        """Candidates for `symbol`; the first stock candidates are enriched with contract info."""
        try:
            data = await self._client.get("/iserver/secdef/search", {"symbol": symbol})
        except BrokerHttpError as exc:
            if exc.status_code in (400, 404) or "no symbol" in (exc.broker_message or "").lower():
                return []
            raise
        if wire.error_text(data) is not None:
            return []  # "No symbol found" arrives as an error body on some gateways
        results = wire.parse_search(data)
        infos: dict[int, wire.WireContractInfo] = {}
        stocks = [int(r.conid) for r in results if mapping.primary_sec_type(r) == "STK"][:MAX_CONTRACT_LOOKUPS]
        for conid in stocks:
            info = await self._contract_info(conid)
            if info is not None:
                infos[conid] = info
        return _mapped(lambda: [mapping.to_search_candidate(r, infos.get(int(r.conid))) for r in results])

    async def contract(self, contract_id: int) -> ContractCandidate:
        """One contract by id; `INPUT_UNKNOWN_CONTRACT` when the broker does not know it."""
        info = await self._contract_info(contract_id)
        if info is None:
            raise GatewayError(ErrorCode.INPUT_UNKNOWN_CONTRACT, f"The broker knows no contract {contract_id}.")
        return _mapped(lambda: mapping.to_contract_candidate(info))

    async def _contract_info(self, contract_id: int) -> wire.WireContractInfo | None:
        if contract_id in self._contracts:
            return self._contracts[contract_id]
        info: wire.WireContractInfo | None = None
        try:
            data = await self._client.get(f"/iserver/contract/{contract_id}/info")
        except BrokerHttpError as exc:
            if exc.status_code not in (400, 404):
                raise
        else:
            if wire.error_text(data) is None:
                info = wire.parse(wire.WireContractInfo, data, "contract info")
        self._contracts[contract_id] = info
        return info

    async def market_snapshot(self, contract_id: int) -> MarketSnapshot:
        """A quote; the pre-flight answer is re-polled with a short bounded backoff.

        With pacing on, concurrent calls for one conid share one upstream read (and its pre-flight
        re-polls), and a quote with prices is served again for `SNAPSHOT_REUSE` (its `received_at`
        stays the time it came from the broker, so its age is never hidden).

        Raises:
            GatewayError: `INPUT_UNKNOWN_CONTRACT` when the broker does not know the conid.
        """
        if self._client.governor is None:
            return await self._fetch_snapshot(contract_id)
        while True:
            quote = self._quotes.get(contract_id)
            if quote is not None and self._clock() - quote.received_at < SNAPSHOT_REUSE:
                return quote
            flight = self._quote_flights.get(contract_id)
            if flight is None:
                break
            await flight.wait()
            if (
                contract_id not in self._quotes
                or self._clock() - self._quotes[contract_id].received_at >= SNAPSHOT_REUSE
            ):
                break  # the shared read failed or brought no prices: ask for ourselves
        done = self._quote_flights[contract_id] = anyio.Event()
        try:
            quote = await self._fetch_snapshot(contract_id)
            if quote.last is not None or quote.bid is not None or quote.ask is not None:
                self._quotes[contract_id] = quote
            return quote
        finally:
            del self._quote_flights[contract_id]
            done.set()

    async def _fetch_snapshot(self, contract_id: int) -> MarketSnapshot:
        info = await self._contract_info(contract_id)
        if info is None:
            raise GatewayError(ErrorCode.INPUT_UNKNOWN_CONTRACT, f"The broker knows no contract {contract_id}.")
        params = {"conids": str(contract_id), "fields": SNAPSHOT_FIELDS}
        row = await self._snapshot_row(contract_id, params)
        for delay in self._preflight_delays_s:
            if row is not None and row.has_prices:
                break
            await anyio.sleep(delay)
            row = await self._snapshot_row(contract_id, params)
        currency = info.currency
        if row is None:
            row = wire.WireSnapshotRow(conid=contract_id)
        final_row = row
        return _mapped(
            lambda: mapping.to_market_snapshot(
                final_row, contract_id=contract_id, currency=currency, received_at=self._clock()
            )
        )

    async def _snapshot_row(self, contract_id: int, params: dict[str, str]) -> wire.WireSnapshotRow | None:
        rows = wire.parse_snapshot(await self._client.get("/iserver/marketdata/snapshot", params))
        self._stream_opened(contract_id)
        return next((r for r in rows if str(r.conid) == str(contract_id)), None)

    def _stream_opened(self, contract_id: int) -> None:
        if self._streams_generation != self._client.brokerage_generation:
            self._streams = set()
            self._streams_generation = self._client.brokerage_generation
        self._streams.add(contract_id)

    async def _open_stream(self, contract_id: int) -> None:
        """The pre-flight snapshot IBKR asks for before a what-if, once per conid and brokerage session."""
        if self._streams_generation == self._client.brokerage_generation and contract_id in self._streams:
            return
        await self._snapshot_row(contract_id, {"conids": str(contract_id), "fields": SNAPSHOT_FIELDS})

    async def historical_bars(
        self, contract_id: int, *, period: str, bar: str, outside_regular_hours: bool
    ) -> HistoricalBars:
        """Bars from `/iserver/marketdata/history`; "No data." becomes `HISTORICAL_BARS_UNAVAILABLE`."""
        params = {
            "conid": str(contract_id),
            "period": period,
            "bar": bar,
            "outsideRth": "true" if outside_regular_hours else "false",
        }
        try:
            data = await self._client.get("/iserver/marketdata/history", params)
        except BrokerHttpError as exc:
            raise _history_error(contract_id, exc.status_code, exc.broker_message) from None
        broker_error = wire.error_text(data)
        if broker_error is not None:
            raise _history_error(contract_id, 200, broker_error)
        history = wire.parse(wire.WireHistory, data, "history")
        return _mapped(
            lambda: mapping.to_historical_bars(
                history,
                contract_id=contract_id,
                period=period,
                bar=bar,
                outside_regular_hours=outside_regular_hours,
            )
        )

    # -- orders and executions -------------------------------------------------------------------

    async def live_orders(self, account_id: str) -> list[OrderRecord]:
        """Working orders and those finished in this session, for one account.

        CPAPI answers an empty list while it builds its order subscription. An empty answer when
        orders were working in the account at the previous read of this brokerage session is
        suspicious: it is asked once more after the endpoint's pacing window, and still empty it is
        `BROKER_ANSWER_INCOMPLETE`, never "no orders".

        Raises:
            GatewayError: `BROKER_ANSWER_INCOMPLETE` for an empty answer that cannot be trusted.
        """
        async with self._selection.holding(account_id):
            records = await self._read_live_orders(account_id)
            if not records and self._expects_working_orders(account_id):
                if self._client.governor is None:
                    await anyio.sleep(LIVE_ORDERS_RECHECK_S)  # with a governor, the read waits for its slot
                records = await self._read_live_orders(account_id)
                if not records:
                    raise GatewayError(
                        ErrorCode.BROKER_ANSWER_INCOMPLETE,
                        "The gateway listed no orders for this account although orders were working in it; "
                        "its order list is not ready yet.",
                    )
        working = sum(1 for record in records if record.status in _WORKING_STATUSES)
        self._orders_working[account_id] = (self._client.brokerage_generation, working)
        return records

    def _expects_working_orders(self, account_id: str) -> bool:
        seen = self._orders_working.get(account_id)
        return seen is not None and seen[0] == self._client.brokerage_generation and seen[1] > 0

    async def _read_live_orders(self, account_id: str) -> list[OrderRecord]:
        params = {"accountId": account_id}
        data: object = None
        for _ in range(2):  # a second round when the brokerage session changed during the read
            if self._live_orders_generation != self._client.brokerage_generation:
                await self._client.get("/iserver/account/orders", {**params, "force": "true"})  # [] while warming
                self._live_orders_generation = self._client.brokerage_generation
            data = await self._client.get("/iserver/account/orders", params)
            if self._live_orders_generation == self._client.brokerage_generation:
                break
        orders = wire.parse(wire.WireLiveOrders, data, "orders")
        rows = [row for row in orders.orders if row.account_id in (None, account_id)]
        from . import _order_mapping as order_mapping  # with the first order read: account reads never need it

        return _mapped(lambda: [order_mapping.to_order_record(row, account_id) for row in rows])

    async def order_status(self, account_id: str, broker_order_id: str) -> OrderRecord:
        """One order; `INPUT_UNKNOWN_ORDER` when the broker does not know it in this account."""
        unknown = GatewayError(
            ErrorCode.INPUT_UNKNOWN_ORDER, f"The broker knows no order {broker_order_id!r} in this account."
        )
        if not broker_order_id.isdigit():
            raise unknown
        try:
            data = await self._client.get(f"/iserver/account/order/status/{broker_order_id}")
        except BrokerHttpError as exc:
            if exc.status_code in (400, 404):
                raise unknown from None
            raise
        if wire.error_text(data) is not None:
            raise unknown
        status = wire.parse(wire.WireOrderStatus, data, "order status")
        if status.account not in (None, account_id):
            raise unknown
        from . import _order_mapping as order_mapping

        return _mapped(lambda: order_mapping.to_order_record_from_status(status, account_id))

    async def executions(self, account_id: str, days: int) -> list[Execution]:
        """Fills of the last `days` days (1 to 7) in one account."""
        if not 1 <= days <= 7:
            raise GatewayError(ErrorCode.INPUT_INVALID_ARGUMENT, "days must be between 1 and 7.")
        async with self._selection.holding(account_id):
            data = await self._client.get("/iserver/account/trades", {"days": str(days), "accountId": account_id})
        trades = [t for t in wire.parse_trades(data) if t.account_id in (None, account_id)]
        from . import _order_mapping as order_mapping

        return _mapped(lambda: [order_mapping.to_execution(t, account_id) for t in trades])

    # -- order preview and writing ---------------------------------------------------------------

    async def what_if(self, ticket: OrderTicket) -> WhatIf:
        """The broker's commission and margin estimate (CPAPI what-if); nothing is placed.

        A broker refusal is a value (`WhatIf.error`), not an exception.

        Raises:
            GatewayError: `ORDER_VALIDATION_FAILED` for a ticket whose prices do not fit its type;
                `BROKER_*` when the broker cannot be asked.
        """
        from ._order_body import order_body

        body = order_body(ticket, None)
        await self._open_stream(ticket.contract_id)
        try:
            async with self._selection.holding(ticket.account_id):
                data = await self._client.post(f"/iserver/account/{ticket.account_id}/orders/whatif", body)
        except BrokerHttpError as exc:
            if 400 <= exc.status_code < 500 and exc.broker_message:
                from ibkr_gateway_core.orders import WhatIf

                return WhatIf(error=exc.broker_message)
            raise
        answer = wire.parse(wire.WireWhatIf, data, "what-if")
        from . import _order_mapping as order_mapping

        return _mapped(lambda: order_mapping.to_what_if(answer, ticket.currency))

    def order_writer(self) -> OrderWriter:
        """The `client-portal` writer over this backend's client; one per backend, so placements queue."""
        if self._writer is None:
            from .writer import ClientPortalOrderWriter  # lazy: reads (and start-up) never need the writer

            self._writer = ClientPortalOrderWriter(
                self._client, session=self._supervised_status, selection=self._selection, questions=self._questions
            )
        return self._writer


def _history_error(contract_id: int, status_code: int, broker_message: str | None) -> GatewayError:
    if "no data" in (broker_message or "").lower():
        return GatewayError(
            ErrorCode.HISTORICAL_BARS_UNAVAILABLE, f"The broker has no bars for contract {contract_id} in that range."
        )
    if status_code == 400:
        return GatewayError(
            ErrorCode.INPUT_INVALID_TIME_RANGE,
            f"The broker refused the period or bar size: {broker_message or 'bad request'}",
        )
    return GatewayError(
        ErrorCode.BROKER_BACKEND_UNAVAILABLE, f"The broker failed the history request (HTTP {status_code})."
    )


def _mapped(build: Callable[[], _T]) -> _T:
    """Run a mapping; a payload that cannot become a domain model is `BROKER_RESPONSE_INVALID`."""
    try:
        return build()
    except ValueError:  # pydantic's ValidationError is a ValueError too
        raise GatewayError(
            ErrorCode.BROKER_RESPONSE_INVALID, "The broker's response is missing fields the gateway needs."
        ) from None


def open_client_portal_backend(config: GatewayConfig) -> Backend:
    """The `client_portal_gateway` entry point: real HTTP to `broker.base_url`; no I/O until first use."""
    client = CpapiClient.from_config(config.broker)
    base_url = config.broker.base_url or ""
    ws = WebsocketConnector(
        api_base_url(base_url), verify_tls=config.broker.verify_tls, timeout_s=config.broker.timeout_seconds
    )
    questions = QuestionSlot(config.state_location, broker_key(api_base_url(base_url)))
    return CpapiBackend(client, name="client_portal_gateway", ws=ws, questions=questions)


def open_oauth_backend(config: GatewayConfig) -> Backend:
    """The `cpapi_oauth` entry point: IBKR's Web API signed with OAuth 1.0a, no Client Portal Gateway.

    The credentials `broker.oauth` names are read and checked here; the live session token is obtained on
    the first request. The websocket (market depth, the P&L stream) is not offered in this mode.

    Raises:
        GatewayError: `CONFIG_OAUTH_CREDENTIAL_MISSING` or `CONFIG_OAUTH_CREDENTIAL_INVALID`.
    """
    broker = config.broker
    if broker.base_url is None:
        broker = broker.model_copy(update={"base_url": OAUTH_DEFAULT_BASE_URL})
    questions = QuestionSlot(config.state_location, broker_key(api_base_url(broker.base_url or "")))
    return CpapiBackend(CpapiClient.from_config(broker), name="cpapi_oauth", questions=questions)


def open_fake_backend(config: GatewayConfig) -> Backend:
    """The `fake` entry point: the same backend and client over the in-process simulator.

    The simulator's book is saved in the state directory; `IBKR_AGENT_SIMULATOR_PROFILE` picks the login.

    Raises:
        GatewayError: `CONFIG_INVALID` for an unknown `IBKR_AGENT_SIMULATOR_PROFILE`.
    """
    profile = os.environ.get(SIMULATOR_PROFILE_ENV) or "paper"
    if profile not in SIMULATOR_PROFILES:
        raise GatewayError(
            ErrorCode.CONFIG_INVALID,
            f"{SIMULATOR_PROFILE_ENV} must be one of {', '.join(SIMULATOR_PROFILES)}.",
            user_action=f"Unset {SIMULATOR_PROFILE_ENV} or set it to paper, live or advisor.",
        )
    return open_simulator_backend(
        timeout_s=config.broker.timeout_seconds,
        max_response_bytes=config.broker.max_response_bytes,
        profile=profile,
        book_path=config.state_dir() / SIMULATOR_BOOK_FILE,
    )


def open_simulator_backend(
    state: SimulatorState | None = None,
    *,
    timeout_s: float = 10.0,
    max_response_bytes: int = 4 * 1024 * 1024,
    preflight_delays_s: Sequence[float] = DEFAULT_PREFLIGHT_DELAYS_S,
    clock: Callable[[], datetime] = _utcnow,
    profile: str = "paper",
    book_path: Path | None = None,
    governor: RateGovernor | None = None,
    questions: QuestionSlot | None = None,
) -> CpapiBackend:
    """A `fake` backend over a simulator; pass `state` to drive the simulator from a test.

    `profile` and `book_path` configure the simulator made here when no `state` is given. Fake mode
    does not pace; a test passes a `governor` to exercise pacing against the simulator's limits, and
    `questions` to share the order-question slot with other backends on the same simulator.
    """
    simulators: list[SimulatorState] = []
    apps: list[Any] = []

    def simulator() -> SimulatorState:
        if not simulators:  # one simulator for HTTP and the websocket
            from .simulator.state import SimulatorState

            simulators.append(state if state is not None else SimulatorState(profile=profile, book_path=book_path))
        return simulators[0]

    def app() -> Any:
        if not apps:  # the websocket only: starlette loads when a stream is first opened
            from .simulator.app import create_simulator_app

            apps.append(create_simulator_app(simulator()))
        return apps[0]

    def transport() -> httpx2.AsyncBaseTransport:
        from .simulator.inprocess import SimulatorTransport  # the simulator's handlers, called in process

        return SimulatorTransport(simulator())

    client = CpapiClient(
        FAKE_BASE_URL,
        timeout_s=timeout_s,
        max_response_bytes=max_response_bytes,
        transport_factory=transport,
        governor=governor,
    )
    return CpapiBackend(
        client,
        name="fake",
        clock=clock,
        preflight_delays_s=preflight_delays_s,
        ws=AsgiConnector(app),
        questions=questions,
    )
