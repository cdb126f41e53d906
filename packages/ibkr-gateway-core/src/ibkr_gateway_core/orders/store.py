"""Durable order workflow state: previews, approvals, idempotency records, kill switch, live backlog.

Everything lives in the state database next to the audit log. Writes take the write lock up front
(`BEGIN IMMEDIATE` on SQLite, the `state` advisory lock on PostgreSQL, see `state.write_transaction`),
so the check-then-write steps below are atomic across threads, processes *and* replicas:
reserving an idempotency key, consuming the approval and reading the kill switch happen in one
transaction, before any writer call.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Final, Literal

from ..errors import ErrorCode, GatewayError
from ..state.database import (
    StateConnection,
    StateLocation,
    claim_clause,
    open_state,
    read_transaction,
    write_transaction,
)
from .models import ApprovalRecord, KillSwitchState, OrderPreview, PreviewDenial

RecordStatus = Literal["pending", "completed", "failed", "unknown"]
"""`pending`: reserved, writer not yet answered; `unknown`: the broker may have the order."""


def _ts(value: datetime) -> str:
    return value.astimezone(UTC).isoformat()


def _dt(value: str) -> datetime:
    return datetime.fromisoformat(value)


@dataclass(frozen=True, slots=True)
class IdempotencyRecord:
    """The write-ahead record of one keyed write."""

    scope_key: str
    flow: str
    account_id: str
    request_hash: str
    client_order_id: str | None
    writer: str
    status: RecordStatus
    approval_id: str | None
    context: dict[str, Any]
    """What recovery needs: the ticket, the audit event id of the call, ..."""
    result: dict[str, Any] | None
    error: dict[str, Any] | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class NewRecord:
    """A record to reserve."""

    scope_key: str
    flow: str
    account_id: str
    request_hash: str
    client_order_id: str | None
    writer: str
    approval_id: str | None
    context: dict[str, Any]
    notional: Decimal | None = None


Reservation = Literal["reserved", "existing", "kill_switch_closed", "approval_unavailable"]


@dataclass(frozen=True, slots=True)
class BudgetCheck:
    """The live budgets of one submit, checked inside the transaction that reserves it.

    `check(orders_in_window, orders_today, notional_today)` raises a `GatewayError` to refuse; the
    reservation (and the approval's consumption) is then rolled back. Because the usage is read under
    the same write lock that inserts the new record, concurrent submits cannot all see room for one.
    """

    window_start: datetime
    day_start: datetime
    check: Callable[[int, int, Decimal], None]


@dataclass(frozen=True, slots=True)
class LiveOrder:
    """One live order in the reconciliation backlog."""

    account_id: str
    broker_order_id: str
    writer: str
    client_order_id: str | None
    last_status: str


class OrderStore:
    """The order workflow tables of one state database; every method blocks (call it from a worker thread)."""

    def __init__(self, db: StateConnection) -> None:
        self._db: StateConnection | None = db
        self._lock = threading.Lock()  # one statement sequence at a time on the shared connection

    @classmethod
    def open(cls, location: StateLocation) -> OrderStore:
        """Open the state database at `location` (migrating it if needed)."""
        return cls(open_state(location))

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            db, self._db = self._db, None
            if db is not None:
                db.close()

    def _conn(self) -> StateConnection:
        if self._db is None:
            raise GatewayError(ErrorCode.STATE_DATABASE_UNAVAILABLE, "The order store is closed.")
        return self._db

    # ------------------------------------------------------------------ previews

    def save_preview(self, preview: OrderPreview, created_by_kind: str) -> None:
        """Persist a new preview."""
        with self._lock, write_transaction(self._conn()) as db:
            db.execute(
                "INSERT INTO order_previews VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    preview.preview_id,
                    preview.account_id,
                    preview.fingerprint,
                    created_by_kind,
                    preview.created_by,
                    _ts(preview.created_at),
                    _ts(preview.expires_at),
                    preview.model_dump_json(),
                ),
            )

    def preview(self, preview_id: str) -> tuple[OrderPreview, str] | None:
        """A preview and the kind of principal that created it."""
        with self._lock:
            row = (
                self._conn()
                .execute("SELECT payload, created_by_kind FROM order_previews WHERE preview_id = ?", (preview_id,))
                .fetchone()
            )
        if row is None:
            return None
        return OrderPreview.model_validate_json(row[0]), str(row[1])

    def previews(
        self, account_id: str | None, limit: int
    ) -> list[tuple[OrderPreview, str, ApprovalRecord | None, PreviewDenial | None]]:
        """Previews newest first, each with its creator's kind, its newest approval and its denial."""
        sql = (
            "SELECT p.payload, p.created_by_kind, d.payload, "
            "(SELECT a.payload FROM order_approvals a WHERE a.preview_id = p.preview_id "
            "ORDER BY a.approved_at DESC LIMIT 1), "
            "(SELECT a.status FROM order_approvals a WHERE a.preview_id = p.preview_id "
            "ORDER BY a.approved_at DESC LIMIT 1) "
            "FROM order_previews p LEFT JOIN preview_denials d ON d.preview_id = p.preview_id"
        )
        params: tuple[object, ...] = ()
        if account_id is not None:
            sql += " WHERE p.account_id = ?"
            params = (account_id,)
        with self._lock, read_transaction(self._conn()) as db:
            rows = db.execute(sql + " ORDER BY p.created_at DESC LIMIT ?", (*params, limit)).fetchall()
        return [
            (
                OrderPreview.model_validate_json(row[0]),
                str(row[1]),
                _approval((row[3], row[4])) if row[3] is not None else None,
                PreviewDenial.model_validate_json(row[2]) if row[2] is not None else None,
            )
            for row in rows
        ]

    def preview_denial(self, preview_id: str) -> PreviewDenial | None:
        """The denial of a preview, if a person denied it."""
        with self._lock:
            row = (
                self._conn()
                .execute("SELECT payload FROM preview_denials WHERE preview_id = ?", (preview_id,))
                .fetchone()
            )
        return PreviewDenial.model_validate_json(row[0]) if row is not None else None

    def deny_preview(self, denial: PreviewDenial) -> PreviewDenial | Literal["missing", "consumed"]:
        """Record a denial and revoke the preview's unused approvals, in one transaction.

        Returns the stored denial (an earlier one if the preview was already denied), `missing` when
        there is no such preview, or `consumed` when an approval of it was already used.
        """
        with self._lock, write_transaction(self._conn()) as db:
            if db.execute("SELECT 1 FROM order_previews WHERE preview_id = ?", (denial.preview_id,)).fetchone() is None:
                return "missing"
            earlier = db.execute(
                "SELECT payload FROM preview_denials WHERE preview_id = ?", (denial.preview_id,)
            ).fetchone()
            if earlier is not None:
                return PreviewDenial.model_validate_json(earlier[0])
            rows = db.execute(
                "SELECT payload, status FROM order_approvals WHERE preview_id = ?", (denial.preview_id,)
            ).fetchall()
            approvals = [_approval(row) for row in rows]
            if any(approval.status == "consumed" for approval in approvals):
                return "consumed"
            revoked: list[str] = []
            for approval in approvals:
                if approval.status != "approved":
                    continue
                update = {"status": "revoked", "revoked_at": denial.denied_at, "revoke_reason": "preview denied"}
                db.execute(
                    "UPDATE order_approvals SET status = 'revoked', payload = ? WHERE approval_id = ?",
                    (approval.model_copy(update=update).model_dump_json(), approval.approval_id),
                )
                revoked.append(approval.approval_id)
            stored = denial.model_copy(update={"revoked_approvals": revoked})
            db.execute(
                "INSERT INTO preview_denials VALUES (?, ?, ?)",
                (stored.preview_id, _ts(stored.denied_at), stored.model_dump_json()),
            )
            return stored

    def change_stamp(self) -> str:
        """A short value that changes whenever a preview, approval, denial or the kill switch changes.

        For a page that refreshes itself: it holds no data, only counts and times.
        """
        with self._lock, read_transaction(self._conn()) as db:
            row = db.execute(
                "SELECT (SELECT count(*) || ':' || coalesce(max(created_at), '') FROM order_previews), "
                "(SELECT count(*) || ':' || coalesce(sum(length(payload)), 0) FROM order_approvals), "
                "(SELECT count(*) FROM preview_denials), "
                "(SELECT coalesce(max(payload), '') FROM kill_switch)"
            ).fetchone()
        return hashlib.sha256(repr(tuple(row)).encode()).hexdigest()[:16]

    # ----------------------------------------------------------------- approvals

    def save_approval(self, approval: ApprovalRecord) -> None:
        """Persist a new approval."""
        with self._lock, write_transaction(self._conn()) as db:
            db.execute(
                "INSERT INTO order_approvals VALUES (?, ?, ?, ?, ?, ?)",
                (
                    approval.approval_id,
                    approval.preview_id,
                    approval.account_id,
                    approval.status,
                    _ts(approval.approved_at),
                    approval.model_dump_json(),
                ),
            )

    def approval(self, approval_id: str) -> ApprovalRecord | None:
        """One approval with its current status."""
        with self._lock:
            row = (
                self._conn()
                .execute("SELECT payload, status FROM order_approvals WHERE approval_id = ?", (approval_id,))
                .fetchone()
            )
        return _approval(row) if row is not None else None

    def approval_with_preview(self, approval_id: str) -> tuple[ApprovalRecord | None, OrderPreview | None]:
        """An approval and the preview it names, read together."""
        with self._lock:
            row = (
                self._conn()
                .execute(
                    "SELECT a.payload, a.status, p.payload FROM order_approvals a "
                    "LEFT JOIN order_previews p ON p.preview_id = a.preview_id WHERE a.approval_id = ?",
                    (approval_id,),
                )
                .fetchone()
            )
        if row is None:
            return None, None
        preview = OrderPreview.model_validate_json(row[2]) if row[2] is not None else None
        return _approval(row[:2]), preview

    def approvals(self, account_id: str | None, limit: int) -> list[ApprovalRecord]:
        """Approvals, newest first."""
        sql = "SELECT payload, status FROM order_approvals"
        params: tuple[object, ...] = ()
        if account_id is not None:
            sql += " WHERE account_id = ?"
            params = (account_id,)
        with self._lock:
            rows = self._conn().execute(sql + " ORDER BY approved_at DESC LIMIT ?", (*params, limit)).fetchall()
        return [_approval(row) for row in rows]

    def revoke_approval(self, approval_id: str, reason: str, now: datetime) -> ApprovalRecord | None:
        """Revoke an approval that is still `approved`; returns it as stored after the attempt."""
        with self._lock, write_transaction(self._conn()) as db:
            row = db.execute(
                "SELECT payload, status FROM order_approvals WHERE approval_id = ?", (approval_id,)
            ).fetchone()
            if row is None:
                return None
            current = _approval(row)
            if current.status != "approved":
                return current
            return _revoke(db, current, reason, now)

    # --------------------------------------------------------------- idempotency

    def record(self, scope_key: str) -> IdempotencyRecord | None:
        """The record of a key, if any."""
        with self._lock:
            row = self._conn().execute(_SELECT_RECORD + " WHERE scope_key = ?", (scope_key,)).fetchone()
        return _record(row) if row is not None else None

    def reserve(
        self, new: NewRecord, now: datetime, *, kill_switch_required: bool, budget: BudgetCheck | None = None
    ) -> tuple[Reservation, IdempotencyRecord | None]:
        """Reserve a key before the writer call: one transaction, so concurrent duplicates see each other.

        Returns `("reserved", record)` with the new pending record, `("existing", record)` for a key seen
        before, or a refusal found under the lock (kill switch closed, approval consumed or revoked meanwhile).
        """
        with self._lock, write_transaction(self._conn()) as db:
            row = db.execute(_SELECT_RECORD + " WHERE scope_key = ?", (new.scope_key,)).fetchone()
            if row is not None:
                return "existing", _record(row)
            if kill_switch_required and _kill_switch_state(db) != "open":
                return "kill_switch_closed", None
            if budget is not None:  # raises to refuse: the whole transaction rolls back
                budget.check(*_live_usage(db, new.account_id, budget.window_start, budget.day_start))
            if new.approval_id is not None:
                consumed = _consume(db, new.approval_id, now)
                if not consumed:
                    return "approval_unavailable", None
            db.execute(
                "INSERT INTO order_idempotency VALUES (?, ?, ?, ?, ?, ?, 'pending', ?, ?, NULL, NULL, ?, ?, ?)",
                (
                    new.scope_key,
                    new.flow,
                    new.account_id,
                    new.request_hash,
                    new.client_order_id,
                    new.writer,
                    new.approval_id,
                    json.dumps(new.context),
                    str(new.notional) if new.notional is not None else None,
                    _ts(now),
                    _ts(now),
                ),
            )
            created = db.execute(_SELECT_RECORD + " WHERE scope_key = ?", (new.scope_key,)).fetchone()
        return "reserved", _record(created)

    def record_completed(self, new: NewRecord, result: dict[str, Any], now: datetime) -> IdempotencyRecord | None:
        """Store a finished write that needed no write-ahead record (a cancel).

        Returns the earlier record of the same key instead, when one exists.
        """
        with self._lock, write_transaction(self._conn()) as db:
            row = db.execute(_SELECT_RECORD + " WHERE scope_key = ?", (new.scope_key,)).fetchone()
            if row is not None:
                return _record(row)
            db.execute(
                "INSERT INTO order_idempotency VALUES (?, ?, ?, ?, ?, ?, 'completed', ?, ?, ?, NULL, ?, ?, ?)",
                (
                    new.scope_key,
                    new.flow,
                    new.account_id,
                    new.request_hash,
                    new.client_order_id,
                    new.writer,
                    new.approval_id,
                    json.dumps(new.context),
                    json.dumps(result),
                    str(new.notional) if new.notional is not None else None,
                    _ts(now),
                    _ts(now),
                ),
            )
        return None

    def complete(
        self, scope_key: str, result: dict[str, Any], now: datetime, *, track: LiveOrder | Sequence[LiveOrder] | None
    ) -> None:
        """Store the result; a live submit (each leg of a bracket) enters the backlog in the same transaction."""
        tracked = [track] if isinstance(track, LiveOrder) else list(track or ())
        with self._lock, write_transaction(self._conn()) as db:
            db.execute(
                "UPDATE order_idempotency SET status = 'completed', result = ?, error = NULL, updated_at = ? "
                "WHERE scope_key = ?",
                (json.dumps(result), _ts(now), scope_key),
            )
            for track in tracked:
                db.execute(
                    "INSERT INTO live_orders "
                    "(account_id, broker_order_id, writer, client_order_id, last_status, created_at) "
                    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (account_id, broker_order_id) "
                    "DO UPDATE SET writer = excluded.writer, client_order_id = excluded.client_order_id, "
                    "last_status = excluded.last_status, created_at = excluded.created_at, last_polled_at = NULL, "
                    "claimed_by = NULL, claimed_until = NULL",
                    (
                        track.account_id,
                        track.broker_order_id,
                        track.writer,
                        track.client_order_id,
                        track.last_status,
                        _ts(now),
                    ),
                )

    def fail(self, scope_key: str, error: dict[str, Any], now: datetime, *, release_approval: bool) -> None:
        """The writer surely did not place the order: store the error; optionally give the approval back."""
        with self._lock, write_transaction(self._conn()) as db:
            row = db.execute("SELECT approval_id FROM order_idempotency WHERE scope_key = ?", (scope_key,)).fetchone()
            db.execute(
                "UPDATE order_idempotency SET status = 'failed', error = ?, updated_at = ? WHERE scope_key = ?",
                (json.dumps(error), _ts(now), scope_key),
            )
            if release_approval and row is not None and row[0] is not None:
                _release(db, str(row[0]))

    def forget(self, scope_key: str) -> None:
        """Drop a pending record and give its approval back: the order surely never left, so the key is free.

        For a broker that was unreachable, pacing or logged out; the same key can simply be tried again.
        """
        with self._lock, write_transaction(self._conn()) as db:
            row = db.execute("SELECT approval_id FROM order_idempotency WHERE scope_key = ?", (scope_key,)).fetchone()
            db.execute("DELETE FROM order_idempotency WHERE scope_key = ? AND status = 'pending'", (scope_key,))
            if row is not None and row[0] is not None:
                _release(db, str(row[0]))

    def mark_unknown(self, scope_key: str, error: dict[str, Any], now: datetime) -> None:
        """The broker may have the order: keep the record `unknown` until a cOID lookup settles it."""
        with self._lock, write_transaction(self._conn()) as db:
            db.execute(
                "UPDATE order_idempotency SET status = 'unknown', error = ?, updated_at = ? WHERE scope_key = ?",
                (json.dumps(error), _ts(now), scope_key),
            )

    def touch(self, scope_key: str, now: datetime) -> None:
        """Restart the clock of an unknown record before it is sent again."""
        with self._lock, write_transaction(self._conn()) as db:
            db.execute("UPDATE order_idempotency SET updated_at = ? WHERE scope_key = ?", (_ts(now), scope_key))

    def bracket_result(self, account_id: str, parent_order_id: str) -> dict[str, Any] | None:
        """The stored result of the completed bracket submit whose parent is `parent_order_id`, if any."""
        with self._lock:
            rows = (
                self._conn()
                .execute(
                    "SELECT result FROM order_idempotency WHERE status = 'completed' AND account_id = ? "
                    "AND flow IN ('paper_submit', 'live_submit') AND result LIKE ?",
                    (account_id, '%"legs": [{%'),
                )
                .fetchall()
            )
        for (text,) in rows:
            result = json.loads(str(text))
            if result.get("broker_order_id") == parent_order_id and result.get("legs"):
                return result
        return None

    def bracket_with_leg(self, account_id: str, broker_order_id: str) -> dict[str, Any] | None:
        """The stored result of the completed bracket submit that has `broker_order_id` among its legs, if any."""
        with self._lock:
            rows = (
                self._conn()
                .execute(
                    "SELECT result FROM order_idempotency WHERE status = 'completed' AND account_id = ? "
                    "AND flow IN ('paper_submit', 'live_submit') AND result LIKE ?",
                    (account_id, '%"legs": [{%'),
                )
                .fetchall()
            )
        for (text,) in rows:
            result: dict[str, Any] = json.loads(str(text))
            legs: list[dict[str, Any]] = result.get("legs") or []
            if any(leg.get("broker_order_id") == broker_order_id for leg in legs):
                return result
        return None

    def unsettled(self) -> list[IdempotencyRecord]:
        """Records still `pending` or `unknown`, oldest first."""
        with self._lock:
            rows = (
                self._conn()
                .execute(_SELECT_RECORD + " WHERE status IN ('pending', 'unknown') ORDER BY created_at")
                .fetchall()
            )
        return [_record(row) for row in rows]

    def has_live_submit(self, account_id: str, client_order_id: str, writer: str) -> bool:
        """True when a completed live submit of this account went through `writer` with this cOID."""
        with self._lock:
            row = (
                self._conn()
                .execute(
                    "SELECT 1 FROM order_idempotency WHERE flow = 'live_submit' AND status = 'completed' "
                    "AND account_id = ? AND client_order_id = ? AND writer = ? LIMIT 1",
                    (account_id, client_order_id, writer),
                )
                .fetchone()
            )
        return row is not None

    def unknown_submit(self, account_id: str, *, other_than: str) -> str | None:
        """The cOID of the oldest submit of an account whose outcome is `unknown`, other than key `other_than`."""
        with self._lock:
            row = (
                self._conn()
                .execute(
                    "SELECT client_order_id FROM order_idempotency WHERE status = 'unknown' AND account_id = ? "
                    "AND flow IN ('paper_submit', 'live_submit') AND scope_key != ? ORDER BY created_at LIMIT 1",
                    (account_id, other_than),
                )
                .fetchone()
            )
        return str(row[0]) if row is not None else None

    def live_usage(self, account_id: str, window_start: datetime, day_start: datetime) -> tuple[int, int, Decimal]:
        """Live submits of an account (sent or possibly sent): in the window, today, and today's notional."""
        with self._lock, read_transaction(self._conn()) as db:
            return _live_usage(db, account_id, window_start, day_start)

    def record_fill_value(self, client_order_id: str, value: Decimal) -> None:
        """Count a live order's real fills: its notional becomes at least `value` (fills at their real price)."""
        with self._lock, write_transaction(self._conn()) as db:
            row = db.execute(
                "SELECT notional FROM order_idempotency WHERE client_order_id = ? AND flow = 'live_submit'",
                (client_order_id,),
            ).fetchone()
            if row is None:
                return
            counted = Decimal(str(row[0])) if row[0] is not None else Decimal(0)
            if value > counted:
                db.execute(
                    "UPDATE order_idempotency SET notional = ? WHERE client_order_id = ? AND flow = 'live_submit'",
                    (str(value), client_order_id),
                )

    # --------------------------------------------------------------- kill switch

    def kill_switch(self) -> KillSwitchState:
        """The persisted switch; closed when never set."""
        with self._lock:
            row = self._conn().execute("SELECT payload FROM kill_switch WHERE id = 1").fetchone()
        if row is None:
            return KillSwitchState(state="closed", reason="closed by default")
        return KillSwitchState.model_validate_json(row[0])

    def set_kill_switch(self, state: KillSwitchState) -> KillSwitchState:
        """Persist a new position; returns the previous one."""
        with self._lock, write_transaction(self._conn()) as db:
            row = db.execute("SELECT payload FROM kill_switch WHERE id = 1").fetchone()
            store_kill_switch(db, state)
        if row is None:
            return KillSwitchState(state="closed", reason="closed by default")
        return KillSwitchState.model_validate_json(row[0])

    # ------------------------------------------------------------------ backlog

    def live_orders(self) -> list[LiveOrder]:
        """The reconciliation backlog."""
        with self._lock:
            rows = (
                self._conn()
                .execute(
                    "SELECT account_id, broker_order_id, writer, client_order_id, last_status FROM live_orders "
                    "ORDER BY created_at"
                )
                .fetchall()
            )
        return [LiveOrder(str(a), str(b), str(w), str(c) if c is not None else None, str(s)) for a, b, w, c, s in rows]

    def claim_live_orders(
        self, owner: str, *, round_start: datetime, now: datetime, lease_s: float, limit: int
    ) -> list[LiveOrder]:
        """Claim up to `limit` backlog orders for `owner` until `now + lease_s`, least recently polled first.

        Only orders not under another live claim and not polled after `round_start` (by another replica
        in a pass running at the same time) are taken, so replicas reconciling at once split the
        backlog; a claim whose lease ran out (its replica died or stalled) is free again. The caller
        skips what it polled itself earlier in its pass. On PostgreSQL the candidate rows are locked
        `FOR UPDATE SKIP LOCKED` without the state lock: claimers skip each other's rows instead of
        queueing. Release with `finish_claims`.
        """
        with self._lock, write_transaction(self._conn(), lock=None) as db:
            rows = db.execute(
                "UPDATE live_orders SET claimed_by = ?, claimed_until = ? "
                "WHERE (account_id, broker_order_id) IN ("
                "SELECT account_id, broker_order_id FROM live_orders "
                "WHERE (claimed_until IS NULL OR claimed_until <= ?) "
                "AND (last_polled_at IS NULL OR last_polled_at <= ?) "
                "ORDER BY last_polled_at IS NOT NULL, last_polled_at, created_at, account_id, broker_order_id "
                f"LIMIT ?{claim_clause(db)}) "
                "RETURNING account_id, broker_order_id, writer, client_order_id, last_status",
                (owner, _ts(now + timedelta(seconds=lease_s)), _ts(now), _ts(round_start), limit),
            ).fetchall()
        return [LiveOrder(str(a), str(b), str(w), str(c) if c is not None else None, str(s)) for a, b, w, c, s in rows]

    def finish_claims(
        self,
        owner: str,
        updates: Sequence[tuple[LiveOrder, bool]],
        unpolled: Sequence[LiveOrder],
        now: datetime,
        *,
        skipped: Sequence[LiveOrder] = (),
    ) -> None:
        """Store what one claimed batch found and release its claims.

        `updates`: each order's new status, `True` (terminal) removing it from the backlog; `unpolled`:
        orders whose poll failed, released as polled (the next pass tries again); `skipped`: orders
        released untouched. An order another replica claimed meanwhile (this lease ran out) is left to it.
        """
        mine = "AND (claimed_by IS NULL OR claimed_by = ?)"
        with self._lock, write_transaction(self._conn()) as db:
            for order, terminal in updates:
                if terminal:
                    db.execute(
                        "DELETE FROM live_orders WHERE account_id = ? AND broker_order_id = ?",
                        (order.account_id, order.broker_order_id),
                    )
                else:
                    db.execute(
                        "UPDATE live_orders SET last_status = ?, last_polled_at = ?, claimed_by = NULL, "
                        f"claimed_until = NULL WHERE account_id = ? AND broker_order_id = ? {mine}",
                        (order.last_status, _ts(now), order.account_id, order.broker_order_id, owner),
                    )
            for order in skipped:
                db.execute(
                    "UPDATE live_orders SET claimed_by = NULL, claimed_until = NULL "
                    "WHERE account_id = ? AND broker_order_id = ? AND claimed_by = ?",
                    (order.account_id, order.broker_order_id, owner),
                )
            for order in unpolled:
                db.execute(
                    "UPDATE live_orders SET last_polled_at = ?, claimed_by = NULL, claimed_until = NULL "
                    f"WHERE account_id = ? AND broker_order_id = ? {mine}",
                    (_ts(now), order.account_id, order.broker_order_id, owner),
                )

    def update_live_orders(self, updates: Sequence[tuple[LiveOrder, bool]], now: datetime) -> None:
        """Store each order's new status; `True` (terminal) removes it from the backlog."""
        with self._lock, write_transaction(self._conn()) as db:
            for order, terminal in updates:
                if terminal:
                    db.execute(
                        "DELETE FROM live_orders WHERE account_id = ? AND broker_order_id = ?",
                        (order.account_id, order.broker_order_id),
                    )
                else:
                    db.execute(
                        "UPDATE live_orders SET last_status = ?, last_polled_at = ? "
                        "WHERE account_id = ? AND broker_order_id = ?",
                        (order.last_status, _ts(now), order.account_id, order.broker_order_id),
                    )


_SELECT_RECORD: Final = (
    "SELECT scope_key, flow, account_id, request_hash, client_order_id, writer, status, approval_id, context, "
    "result, error, created_at, updated_at FROM order_idempotency"
)


def _record(row: Sequence[object]) -> IdempotencyRecord:
    (key, flow, account, request_hash, coid, writer, status, approval, context, result, error, created, updated) = row
    return IdempotencyRecord(
        scope_key=str(key),
        flow=str(flow),
        account_id=str(account),
        request_hash=str(request_hash),
        client_order_id=str(coid) if coid is not None else None,
        writer=str(writer),
        status=_status(str(status)),
        approval_id=str(approval) if approval is not None else None,
        context=json.loads(str(context)),
        result=json.loads(str(result)) if result is not None else None,
        error=json.loads(str(error)) if error is not None else None,
        created_at=_dt(str(created)),
        updated_at=_dt(str(updated)),
    )


def _status(value: str) -> RecordStatus:
    if value == "pending":
        return "pending"
    if value == "completed":
        return "completed"
    if value == "failed":
        return "failed"
    return "unknown"


def _approval(row: Sequence[object]) -> ApprovalRecord:
    record = ApprovalRecord.model_validate_json(str(row[0]))
    status = str(row[1])
    return record if record.status == status else record.model_copy(update={"status": status})


def _live_usage(
    db: StateConnection, account_id: str, window_start: datetime, day_start: datetime
) -> tuple[int, int, Decimal]:
    """Live submits of an account that were or may have been sent: in the window, today, today's notional."""
    rows = db.execute(
        "SELECT created_at, notional FROM order_idempotency WHERE flow = 'live_submit' AND account_id = ? "
        "AND status IN ('pending', 'completed', 'unknown') AND created_at >= ?",
        (account_id, _ts(min(window_start, day_start))),
    ).fetchall()
    window = today = 0
    notional = Decimal(0)
    for created_at, amount in rows:
        created = _dt(str(created_at))
        if created >= window_start:
            window += 1
        if created >= day_start:
            today += 1
            notional += Decimal(str(amount)) if amount is not None else Decimal(0)
    return window, today, notional


def revoke_open_approvals(db: StateConnection, reason: str, now: datetime) -> int:
    """Revoke every approval still `approved`, inside the caller's write transaction; how many were."""
    rows = db.execute("SELECT payload, status FROM order_approvals WHERE status = 'approved'").fetchall()
    for row in rows:
        _revoke(db, _approval(row), reason, now)
    return len(rows)


def store_kill_switch(db: StateConnection, state: KillSwitchState) -> None:
    """Write the kill switch's position, inside the caller's write transaction."""
    db.execute(
        "INSERT INTO kill_switch VALUES (1, ?, ?) "
        "ON CONFLICT (id) DO UPDATE SET state = excluded.state, payload = excluded.payload",
        (state.state, state.model_dump_json()),
    )


def _revoke(db: StateConnection, current: ApprovalRecord, reason: str, now: datetime) -> ApprovalRecord:
    revoked = current.model_copy(update={"status": "revoked", "revoked_at": now, "revoke_reason": reason})
    db.execute(
        "UPDATE order_approvals SET status = 'revoked', payload = ? WHERE approval_id = ?",
        (revoked.model_dump_json(), current.approval_id),
    )
    return revoked


def _kill_switch_state(db: StateConnection) -> str:
    row = db.execute("SELECT state FROM kill_switch WHERE id = 1").fetchone()
    return str(row[0]) if row is not None else "closed"


def _consume(db: StateConnection, approval_id: str, now: datetime) -> bool:
    row = db.execute("SELECT payload, status FROM order_approvals WHERE approval_id = ?", (approval_id,)).fetchone()
    if row is None or str(row[1]) != "approved":
        return False
    consumed = _approval(row).model_copy(update={"status": "consumed", "consumed_at": now})
    db.execute(
        "UPDATE order_approvals SET status = 'consumed', payload = ? WHERE approval_id = ?",
        (consumed.model_dump_json(), approval_id),
    )
    return True


def _release(db: StateConnection, approval_id: str) -> None:
    row = db.execute("SELECT payload, status FROM order_approvals WHERE approval_id = ?", (approval_id,)).fetchone()
    if row is None or str(row[1]) != "consumed":
        return
    released = _approval(row).model_copy(update={"status": "approved", "consumed_at": None})
    db.execute(
        "UPDATE order_approvals SET status = 'approved', payload = ? WHERE approval_id = ?",
        (released.model_dump_json(), approval_id),
    )
