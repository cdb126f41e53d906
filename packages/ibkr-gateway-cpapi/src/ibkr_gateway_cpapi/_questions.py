"""`QuestionSlot`: one pending order question per IBKR login, across processes, kept in the state store.

IBKR invalidates a pending order question (its reply id) as soon as the same login is asked a newer
one. Two processes placing orders through one Client Portal Gateway (two CLI runs, two replicas) could
then confirm a reply id another process's question superseded, or answer a question that is no longer
the one they think. So every exchange that may raise questions (a placement, a bracket, a modify) runs
inside `claim`:

- it takes the login's slot in the shared state store (SQLite or PostgreSQL, through core's state seam)
  before the first request, waiting while another process holds it, and releases it when the exchange
  ends; a slot left by a stopped process expires after `ttl`;
- each question's reply id is recorded in the slot, and a reply is sent only while the slot still holds
  *that* reply id for *this* holder (the check renews the lease); otherwise nothing is confirmed and
  the order is refused with `ORDER_CONFIRMATION_CONFLICT` (never confirmed, so never placed);
- when the slot cannot be had before `wait`, the order is refused the same way before anything is sent.

The decisions are made by the database (one write transaction each), not by in-process locks.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import AsyncGenerator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Final

import anyio
import anyio.to_thread
from ibkr_gateway_core.errors import ErrorCode, GatewayError
from ibkr_gateway_core.state import StateConnection, StateLocation, open_state, write_transaction

DEFAULT_TTL: Final = timedelta(seconds=60)
"""How long a claim lasts without being renewed: longer than any one request of the exchange."""

DEFAULT_WAIT: Final = timedelta(seconds=20)
"""Longest wait for another process's exchange to finish before refusing."""

_POLL_S: Final = (0.05, 0.1, 0.2, 0.4)
"""Pauses between attempts to take a busy slot (the last one repeats)."""


def _utcnow() -> datetime:
    return datetime.now(UTC)


def broker_key(base_url: str) -> str:
    """The slot's key for one Client Portal Gateway: a hash of its URL (no host name is stored in clear)."""
    return "cpapi:" + hashlib.sha256(base_url.rstrip("/").lower().encode("utf-8")).hexdigest()[:32]


class SlotLost(Exception):
    """Another process holds the slot now; the current exchange must not confirm anything."""


class QuestionSlot:
    """One login's order-question slot in the state store; one instance per writer (process)."""

    def __init__(
        self,
        location: Callable[[], StateLocation],
        key: str,
        *,
        ttl: timedelta = DEFAULT_TTL,
        wait: timedelta = DEFAULT_WAIT,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        """Keep the slot `key` in the state database `location()` names (opened on first use)."""
        self._location = location
        self._key = key
        self._ttl = ttl
        self._wait = wait
        self._clock = clock
        self._holder = secrets.token_hex(12)
        """This writer's claim id (random; the row names no process, host or path)."""
        self._db: StateConnection | None = None
        self._lock = anyio.Lock()
        """One database call at a time on this writer's connection."""

    async def _run(self, step: Callable[[StateConnection], bool]) -> bool:
        async with self._lock:
            if self._db is None:
                self._db = await anyio.to_thread.run_sync(lambda: open_state(self._location()))
            db = self._db

            def transaction() -> bool:
                with write_transaction(db):
                    return step(db)

            return await anyio.to_thread.run_sync(transaction)

    def _take(self, db: StateConnection) -> bool:
        now = self._clock()
        row = db.execute(
            "SELECT holder, expires_at FROM broker_order_questions WHERE broker_key = ?", (self._key,)
        ).fetchone()
        if row is not None and row[0] != self._holder and str(row[1]) > now.isoformat():
            return False
        db.execute(
            "INSERT INTO broker_order_questions (broker_key, holder, reply_id, expires_at, updated_at) "
            "VALUES (?, ?, NULL, ?, ?) ON CONFLICT (broker_key) DO UPDATE SET holder = excluded.holder, "
            "reply_id = NULL, expires_at = excluded.expires_at, updated_at = excluded.updated_at",
            (self._key, self._holder, (now + self._ttl).isoformat(), now.isoformat()),
        )
        return True

    def _set_reply(self, reply_id: str, *, expected: str | None) -> Callable[[StateConnection], bool]:
        """A step that records `reply_id` only while this holder's claim (with `expected` in it) stands."""

        def step(db: StateConnection) -> bool:
            now = self._clock()
            row = db.execute(
                "SELECT holder, reply_id, expires_at FROM broker_order_questions WHERE broker_key = ?", (self._key,)
            ).fetchone()
            if row is None or row[0] != self._holder or str(row[2]) <= now.isoformat():
                return False
            if expected is not None and row[1] != expected:
                return False
            db.execute(
                "UPDATE broker_order_questions SET reply_id = ?, expires_at = ?, updated_at = ? "
                "WHERE broker_key = ? AND holder = ?",
                (reply_id, (now + self._ttl).isoformat(), now.isoformat(), self._key, self._holder),
            )
            return True

        return step

    def _release(self, db: StateConnection) -> bool:
        db.execute("DELETE FROM broker_order_questions WHERE broker_key = ? AND holder = ?", (self._key, self._holder))
        return True

    @asynccontextmanager
    async def claim(self) -> AsyncGenerator[QuestionSlot]:
        """Hold the login's slot for one exchange; released on exit, whatever happens.

        Raises:
            GatewayError: `ORDER_CONFIRMATION_CONFLICT` when another process holds it past `wait`.
        """
        deadline = anyio.current_time() + self._wait.total_seconds()
        attempt = 0
        while not await self._run(self._take):
            if anyio.current_time() >= deadline:
                raise GatewayError(
                    ErrorCode.ORDER_CONFIRMATION_CONFLICT,
                    "Another process is placing an order on the same IBKR login; this order was not sent.",
                    details={"reason": "slot_busy"},
                )
            await anyio.sleep(_POLL_S[min(attempt, len(_POLL_S) - 1)])
            attempt += 1
        try:
            yield self
        finally:
            with anyio.CancelScope(shield=True):
                await self._run(self._release)

    async def asked(self, reply_id: str) -> None:
        """Record the question the broker just asked this holder.

        Raises:
            SlotLost: the claim expired and another process took the slot (its question supersedes this one).
        """
        if not await self._run(self._set_reply(reply_id, expected=None)):
            raise SlotLost

    async def may_confirm(self, reply_id: str) -> None:
        """Check, and renew, that `reply_id` is still this holder's pending question, just before confirming it.

        Raises:
            SlotLost: another process holds the slot now; `reply_id` may be superseded and must not be confirmed.
        """
        if not await self._run(self._set_reply(reply_id, expected=reply_id)):
            raise SlotLost

    async def aclose(self) -> None:
        """Close the state connection."""
        async with self._lock:
            db, self._db = self._db, None
        if db is not None:
            await anyio.to_thread.run_sync(db.close)
