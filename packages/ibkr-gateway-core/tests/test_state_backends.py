"""The state stores on both backends (SQLite, PostgreSQL): same behaviour, and races decided by the database.

Every test takes `state_location`, so it runs once on a SQLite file and once on a fresh PostgreSQL
database. The race tests open several independent stores on the same location (as separate replicas
would) and let threads collide on one idempotency key, one approval, one kill switch and one audit chain.
"""

import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from ibkr_gateway_core.audit import AuditEvent, AuditLog
from ibkr_gateway_core.config import GatewayConfig
from ibkr_gateway_core.errors import ErrorCode, GatewayError
from ibkr_gateway_core.orders import (
    ApprovalRecord,
    KillSwitchState,
    LiveOrder,
    NewRecord,
    OrderPreview,
    OrderStore,
    OrderTicket,
    PreviewDenial,
)
from ibkr_gateway_core.state import (
    MIGRATIONS,
    Migration,
    PostgresLocation,
    StateConnection,
    StateLocation,
    open_database,
    open_state,
    schema_version,
)
from ibkr_gateway_core.state.database import database_errors
from ibkr_gateway_core.state.postgres import POSTGRES_MIGRATIONS, open_postgres

NOW = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)
ACCOUNT = "DU1234567"
KEY = b"k" * 32
TICKET = OrderTicket(
    account_id=ACCOUNT,
    contract_id=265598,
    symbol="AAPL",
    asset_class="stock",
    currency="USD",
    side="buy",
    quantity=Decimal(10),
    order_type="limit",
    limit_price=Decimal(100),
)


def preview(n: int = 1) -> OrderPreview:
    return OrderPreview(
        preview_id=f"pv-{n}",
        account_id=ACCOUNT,
        ticket=TICKET,
        fingerprint="f" * 64,
        risk_policy_id="default",
        created_by="op",
        created_at=NOW,
        expires_at=NOW + timedelta(minutes=5),
        audit_event_id=f"ev-{n}",
    )


def approval(n: int = 1) -> ApprovalRecord:
    return ApprovalRecord(
        approval_id=f"ap-{n}",
        preview_id=f"pv-{n}",
        account_id=ACCOUNT,
        fingerprint="f" * 64,
        status="approved",
        approved_by="op",
        approved_by_kind="local_operator",
        approved_at=NOW,
        expires_at=NOW + timedelta(minutes=5),
        audit_event_id=f"ev-a{n}",
    )


def new_record(key: str, approval_id: str | None = None, notional: str | None = None) -> NewRecord:
    return NewRecord(
        scope_key=key,
        flow="live_submit",
        account_id=ACCOUNT,
        request_hash="h" * 64,
        client_order_id=f"coid-{key}",
        writer="client-portal",
        approval_id=approval_id,
        context={"ticket": "t"},
        notional=Decimal(notional) if notional is not None else None,
    )


def event(n: int) -> AuditEvent:
    return AuditEvent(
        event_type="tool_completed",
        timestamp=NOW,
        principal_kind="local_agent",
        principal_subject=f"agent-{n}",
        scopes=[],
        decision="allow",
        result_status="completed",
    )


@pytest.fixture
def stores(state_location: StateLocation) -> Iterator[Callable[[], OrderStore]]:
    """Opens independent stores on one location (each like a separate replica); closes them all after."""
    opened: list[OrderStore] = []

    def open_one() -> OrderStore:
        store = OrderStore.open(state_location)
        opened.append(store)
        return store

    yield open_one
    for store in opened:
        store.close()


def race(count: int, call: Callable[[int], Any]) -> list[Any]:
    """Run `call(i)` for i in range(count) on `count` threads released together."""
    barrier = threading.Barrier(count)

    def run(i: int) -> Any:
        barrier.wait()
        return call(i)

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(run, range(count)))


def test_the_schema_is_migrated_once_and_versioned(state_location: StateLocation) -> None:
    first, second = open_state(state_location), open_state(state_location)
    try:
        assert schema_version(first) == schema_version(second) == 5
        rows = first.execute("SELECT version, name FROM schema_migrations ORDER BY version").fetchall()
        assert [tuple(row) for row in rows] == [
            (1, "audit events"),
            (2, "order workflow"),
            (3, "preview denials"),
            (4, "broker order questions"),
            (5, "reconciliation claims"),
        ]
    finally:
        first.close()
        second.close()


def open_with(location: StateLocation, extra: tuple[Migration, ...] = ()) -> StateConnection:
    """Open `location` with its backend's own migrations plus `extra` (a later version's steps)."""
    if isinstance(location, PostgresLocation):
        return open_postgres(location, migrations=(*POSTGRES_MIGRATIONS, *extra))
    return open_database(location, migrations=(*MIGRATIONS, *extra))


def test_an_appended_migration_upgrades_an_existing_database(state_location: StateLocation) -> None:
    """A later version's step runs once on a database at today's version, recorded with its name."""
    open_with(state_location).close()
    extra = Migration(MIGRATIONS[-1].version + 1, "extension", ("CREATE TABLE extension_example (id INTEGER)",))
    db = open_with(state_location, (extra,))
    try:
        assert schema_version(db) == extra.version
        assert tuple(db.execute("SELECT count(*) FROM extension_example").fetchone()) == (0,)
        rows = db.execute("SELECT version, name FROM schema_migrations ORDER BY version").fetchall()
        assert [tuple(row) for row in rows][-2:] == [
            (MIGRATIONS[-1].version, MIGRATIONS[-1].name),
            (extra.version, "extension"),
        ]
    finally:
        db.close()
    open_with(state_location, (extra,)).close()  # current: nothing runs again (a second CREATE TABLE would fail)


def test_a_failing_migration_leaves_the_schema_as_it_was(state_location: StateLocation) -> None:
    """All missing steps run in one transaction: a failing step rolls back the steps before it too."""
    open_with(state_location).close()
    good = Migration(MIGRATIONS[-1].version + 1, "good", ("CREATE TABLE good_step (id INTEGER)",))
    bad = Migration(good.version + 1, "bad", ("CREATE TABLE bad_step (id INTEGER)", "SELECT * FROM no_such_table"))
    with pytest.raises(GatewayError) as caught:
        open_with(state_location, (good, bad))
    assert caught.value.code is ErrorCode.STATE_DATABASE_UNAVAILABLE
    db = open_with(state_location)
    try:
        assert schema_version(db) == MIGRATIONS[-1].version
        with pytest.raises(database_errors()):
            db.execute("SELECT count(*) FROM good_step").fetchone()
    finally:
        db.close()


def test_a_database_from_a_newer_version_is_refused(state_location: StateLocation) -> None:
    """Old code on a newer schema stops at open with the stable code and an upgrade action."""
    extra = Migration(MIGRATIONS[-1].version + 1, "future", ("CREATE TABLE future (id INTEGER)",))
    open_with(state_location, (extra,)).close()
    with pytest.raises(GatewayError) as caught:
        open_with(state_location)
    assert caught.value.code is ErrorCode.STATE_DATABASE_UNAVAILABLE
    assert f"schema version {extra.version}" in caught.value.message
    assert caught.value.user_action is not None and caught.value.user_action.startswith("Upgrade ibkr-agent-gateway")


def test_replicas_starting_together_migrate_once(state_location: StateLocation) -> None:
    """Eight processes' worth of connections opening a fresh database at once: one migration, no error."""
    opened = race(8, lambda _: open_with(state_location))
    try:
        rows = opened[0].execute("SELECT version FROM schema_migrations ORDER BY version").fetchall()
        assert [row[0] for row in rows] == [m.version for m in MIGRATIONS]
    finally:
        for db in opened:
            db.close()


def test_previews_approvals_and_revocation_round_trip(stores: Callable[[], OrderStore]) -> None:
    store = stores()
    store.save_preview(preview(), "local_operator")
    store.save_approval(approval())
    found = store.preview("pv-1")
    assert found is not None and found[0] == preview() and found[1] == "local_operator"
    record, linked = store.approval_with_preview("ap-1")
    assert record == approval() and linked == preview()
    assert [a.approval_id for a in store.approvals(ACCOUNT, 10)] == ["ap-1"]
    assert store.approvals("DU0000000", 10) == []
    revoked = store.revoke_approval("ap-1", "changed my mind", NOW)
    assert revoked is not None and revoked.status == "revoked" and revoked.revoke_reason == "changed my mind"
    again = store.revoke_approval("ap-1", "twice", NOW)
    assert again is not None and again.revoke_reason == "changed my mind"
    assert store.revoke_approval("ap-none", "x", NOW) is None


def test_previews_list_with_approvals_and_denials_and_a_denial_is_made_once(stores: Callable[[], OrderStore]) -> None:
    one, two = stores(), stores()
    stamp = one.change_stamp()
    for n in (1, 2, 3):
        one.save_preview(preview(n), "remote")
    assert one.change_stamp() != stamp
    one.save_approval(approval(2))
    denial = PreviewDenial(
        preview_id="pv-2", denied_by="alice", denied_by_kind="remote", denied_at=NOW, reason="no", audit_event_id="ev-d"
    )
    before = two.change_stamp()
    stored = two.deny_preview(denial)
    assert isinstance(stored, PreviewDenial) and stored.revoked_approvals == ["ap-2"]
    assert one.change_stamp() != before
    again = one.deny_preview(denial.model_copy(update={"reason": "twice"}))
    assert isinstance(again, PreviewDenial) and again.reason == "no"
    assert one.deny_preview(denial.model_copy(update={"preview_id": "pv-9"})) == "missing"
    rows = {p.preview_id: (kind, a, d) for p, kind, a, d in two.previews(None, 10)}
    assert set(rows) == {"pv-1", "pv-2", "pv-3"}
    kind, approved, denied = rows["pv-2"]
    assert kind == "remote" and approved is not None and approved.status == "revoked" and denied is not None
    assert rows["pv-1"][1:] == (None, None)
    assert len(two.previews(ACCOUNT, 2)) == 2 and two.previews("DU0000000", 10) == []
    assert two.preview_denial("pv-2") is not None and two.preview_denial("pv-1") is None


def test_a_duplicate_preview_id_is_refused_by_the_database(stores: Callable[[], OrderStore]) -> None:
    store = stores()
    store.save_preview(preview(), "local_operator")
    with pytest.raises(Exception) as caught:
        store.save_preview(preview(), "local_operator")
    assert "Integrity" in type(caught.value).__name__ or "UniqueViolation" in type(caught.value).__name__
    assert store.preview("pv-1") is not None


def test_the_record_lifecycle_and_live_backlog(stores: Callable[[], OrderStore]) -> None:
    store = stores()
    outcome, record = store.reserve(new_record("k1", notional="1000"), NOW, kill_switch_required=False)
    assert outcome == "reserved" and record is not None and record.status == "pending"
    track = LiveOrder(ACCOUNT, "b-1", "client-portal", "coid-k1", "Submitted")
    store.complete("k1", {"broker_order_id": "b-1"}, NOW, track=track)
    store.complete("k1", {"broker_order_id": "b-1"}, NOW, track=track)  # the upsert is idempotent
    assert store.live_orders() == [track]
    done = store.record("k1")
    assert done is not None and done.status == "completed" and done.result == {"broker_order_id": "b-1"}
    assert store.live_usage(ACCOUNT, NOW - timedelta(minutes=1), NOW - timedelta(hours=1)) == (1, 1, Decimal(1000))
    store.update_live_orders([(LiveOrder(ACCOUNT, "b-1", "client-portal", "coid-k1", "PreSubmitted"), False)], NOW)
    assert store.live_orders()[0].last_status == "PreSubmitted"
    store.update_live_orders([(track, True)], NOW)
    assert store.live_orders() == []
    store.reserve(new_record("k2"), NOW, kill_switch_required=False)
    store.mark_unknown("k2", {"code": "BROKER_TIMEOUT"}, NOW)
    assert [r.scope_key for r in store.unsettled()] == ["k2"]
    assert store.unknown_submit(ACCOUNT, other_than="zz") == "coid-k2"
    store.reserve(new_record("k3"), NOW, kill_switch_required=False)
    store.forget("k3")
    assert store.record("k3") is None


def test_fifty_replicas_racing_on_one_key_reserve_it_once(stores: Callable[[], OrderStore]) -> None:
    """Each thread has its own store (its own connection): the database alone decides who wins."""
    replicas = [stores() for _ in range(8)]
    replicas[0].save_preview(preview(), "local_operator")
    replicas[0].save_approval(approval())
    outcomes = race(
        50, lambda i: replicas[i % 8].reserve(new_record("one-key", "ap-1"), NOW, kill_switch_required=False)[0]
    )
    assert sorted(outcomes) == ["existing"] * 49 + ["reserved"]
    consumed = replicas[3].approval("ap-1")
    assert consumed is not None and consumed.status == "consumed"


def test_one_approval_is_consumed_once_across_replicas(stores: Callable[[], OrderStore]) -> None:
    """Different keys, one approval: exactly one reservation, the rest find it unavailable."""
    replicas = [stores() for _ in range(6)]
    replicas[0].save_preview(preview(), "local_operator")
    replicas[0].save_approval(approval())
    outcomes = race(
        24, lambda i: replicas[i % 6].reserve(new_record(f"key-{i}", "ap-1"), NOW, kill_switch_required=False)[0]
    )
    assert sorted(outcomes) == ["approval_unavailable"] * 23 + ["reserved"]


def test_the_kill_switch_closed_by_one_replica_refuses_on_another_at_once(stores: Callable[[], OrderStore]) -> None:
    one, two = stores(), stores()
    assert two.kill_switch() == KillSwitchState(state="closed", reason="closed by default")
    never_set = one.set_kill_switch(KillSwitchState(state="open", changed_by="op", changed_at=NOW))
    assert never_set == KillSwitchState(state="closed", reason="closed by default")
    assert two.kill_switch().state == "open"
    assert two.reserve(new_record("a"), NOW, kill_switch_required=True)[0] == "reserved"
    previous = one.set_kill_switch(KillSwitchState(state="closed", changed_by="op", changed_at=NOW, reason="halt"))
    assert previous.state == "open"
    assert two.reserve(new_record("b"), NOW, kill_switch_required=True)[0] == "kill_switch_closed"
    assert two.kill_switch().reason == "halt"


def test_risk_usage_counts_every_replica_s_submits(stores: Callable[[], OrderStore]) -> None:
    replicas = [stores() for _ in range(4)]
    race(20, lambda i: replicas[i % 4].reserve(new_record(f"u{i}", notional="10.5"), NOW, kill_switch_required=False))
    usage = replicas[1].live_usage(ACCOUNT, NOW - timedelta(minutes=1), NOW - timedelta(hours=1))
    assert usage == (20, 20, Decimal("210.0"))


def test_a_failed_write_gives_its_approval_back_once_and_never_revives_a_revoked_one(
    stores: Callable[[], OrderStore],
) -> None:
    store = stores()
    store.save_preview(preview(), "local_operator")
    store.save_approval(approval())
    assert store.reserve(new_record("k", "ap-1"), NOW, kill_switch_required=False)[0] == "reserved"
    used = store.approval("ap-1")
    assert used is not None and (used.status, used.consumed_at) == ("consumed", NOW)
    store.fail("k", {"code": "ORDER_VALIDATION_FAILED"}, NOW, release_approval=True)
    released = store.approval("ap-1")
    assert released is not None and (released.status, released.consumed_at) == ("approved", None)
    store.revoke_approval("ap-1", "no longer wanted", NOW)
    store.fail("k", {"code": "ORDER_VALIDATION_FAILED"}, NOW, release_approval=True)  # a second failure
    store.forget("k")
    revoked = store.approval("ap-1")
    assert revoked is not None and revoked.status == "revoked"
    store.forget("never-seen")  # an unknown key: nothing to drop, nothing to give back
    assert store.record("never-seen") is None


def test_a_fill_raises_the_counted_notional_and_never_lowers_it(stores: Callable[[], OrderStore]) -> None:
    store = stores()
    today = (NOW - timedelta(minutes=1), NOW - timedelta(hours=1))
    store.reserve(new_record("k", notional="1000"), NOW, kill_switch_required=False)
    store.record_fill_value("coid-k", Decimal(900))  # filled below the worst case: the worst case stays
    assert store.live_usage(ACCOUNT, *today)[2] == Decimal(1000)
    store.record_fill_value("coid-k", Decimal(1200))  # filled above it: the fill counts
    assert store.live_usage(ACCOUNT, *today)[2] == Decimal(1200)
    store.reserve(new_record("unpriced"), NOW, kill_switch_required=False)  # a record without a notional
    store.record_fill_value("coid-unpriced", Decimal("0.5"))
    assert store.live_usage(ACCOUNT, *today)[2] == Decimal("1200.5")
    store.record_fill_value("coid-unknown", Decimal(70))  # no such live submit: nothing to count
    assert store.live_usage(ACCOUNT, *today) == (2, 2, Decimal("1200.5"))


def test_a_claim_holds_its_orders_for_the_lease_and_returns_them_as_tracked(stores: Callable[[], OrderStore]) -> None:
    one, two = stores(), stores()
    tracked = LiveOrder(ACCOUNT, "b-1", "client-portal", "coid-k1", "submitted")
    untracked_coid = LiveOrder(ACCOUNT, "b-2", "local-candidate", None, "submitted")
    one.reserve(new_record("k1"), NOW, kill_switch_required=False)
    one.complete("k1", {"broker_order_id": "b-1"}, NOW, track=[tracked, untracked_coid])
    claimed = one.claim_live_orders("replica-1", round_start=NOW, now=NOW, lease_s=30, limit=16)
    assert claimed == [tracked, untracked_coid]
    later = NOW + timedelta(seconds=29)
    assert two.claim_live_orders("replica-2", round_start=later, now=later, lease_s=30, limit=16) == []
    expired = NOW + timedelta(seconds=30)
    assert len(two.claim_live_orders("replica-2", round_start=expired, now=expired, lease_s=30, limit=16)) == 2


def test_stored_records_keep_their_context_notional_and_error(stores: Callable[[], OrderStore]) -> None:
    store = stores()
    assert store.record_completed(new_record("done", notional="10"), {"ok": True}, NOW) is None
    assert store.record_completed(new_record("unpriced"), {"ok": True}, NOW) is None
    done = store.record("done")
    assert done is not None and (done.status, done.context, done.result) == ("completed", {"ticket": "t"}, {"ok": True})
    assert store.live_usage(ACCOUNT, NOW - timedelta(minutes=1), NOW - timedelta(hours=1)) == (2, 2, Decimal(10))
    again = store.record_completed(new_record("done", notional="99"), {"ok": False}, NOW)
    assert again is not None and again.result == {"ok": True}
    store.reserve(new_record("lost"), NOW, kill_switch_required=False)
    store.mark_unknown("lost", {"code": "BROKER_OUTCOME_UNKNOWN", "message": "lost"}, NOW + timedelta(seconds=1))
    lost = store.record("lost")
    assert lost is not None and (lost.status, lost.error, lost.updated_at) == (
        "unknown",
        {"code": "BROKER_OUTCOME_UNKNOWN", "message": "lost"},
        NOW + timedelta(seconds=1),
    )


def test_appends_from_several_logs_on_one_database_form_one_chain(state_location: StateLocation) -> None:
    """Four writers (one per replica) append concurrently: one linear chain, nothing lost, verify passes."""
    logs = [AuditLog.open(state_location, KEY) for _ in range(4)]
    try:
        results = race(40, lambda i: logs[i % 4].append_sync(event(i)).sequence)
        assert sorted(results) == list(range(1, 41))
        report = logs[0].verify_sync()
        assert report.chain_valid, report.reason
        assert report.events_scanned == 40
    finally:
        for log in logs:
            log.close()


def test_postgres_config_reads_the_dsn_from_the_named_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    config = GatewayConfig.from_mapping({"state": {"backend": "postgres", "postgres_dsn_env": "TEST_STATE_DSN"}})
    monkeypatch.delenv("TEST_STATE_DSN", raising=False)
    with pytest.raises(GatewayError) as caught:
        config.state_location()
    assert caught.value.code is ErrorCode.CONFIG_INVALID
    assert "TEST_STATE_DSN" in caught.value.message
    monkeypatch.setenv("TEST_STATE_DSN", "postgresql://u:secret-canary@127.0.0.1/db")
    location = config.state_location()
    assert location == PostgresLocation("postgresql://u:secret-canary@127.0.0.1/db")
    assert "secret-canary" not in repr(location) and "secret-canary" not in str(location)


def test_postgres_without_a_dsn_variable_is_a_config_error() -> None:
    with pytest.raises(GatewayError) as caught:
        GatewayConfig.from_mapping({"state": {"backend": "postgres"}})
    assert caught.value.code is ErrorCode.CONFIG_INVALID


def test_an_unreachable_postgres_is_state_unavailable_without_the_password() -> None:
    with socket_that_refuses() as port:
        with pytest.raises(GatewayError) as caught:
            open_state(PostgresLocation(f"postgresql://u:pw-canary-77@127.0.0.1:{port}/db", connect_timeout_s=1.0))
    assert caught.value.code is ErrorCode.STATE_DATABASE_UNAVAILABLE
    assert "pw-canary-77" not in f"{caught.value.message} {caught.value.details} {caught.value.user_action}"


def test_the_pools_own_log_lines_never_reach_a_terminal() -> None:
    """Without logging set up (a CLI command), psycopg's pool would print each failed attempt, host, port and
    database included, through Python's last-resort handler; the command's own error is all a person sees."""
    with socket_that_refuses() as port:
        script = (
            "from ibkr_gateway_core.state import PostgresLocation, open_state\n"
            "from ibkr_gateway_core.errors import GatewayError\n"
            "try:\n"
            f"    open_state(PostgresLocation('postgresql://u@127.0.0.1:{port}/db_canary', connect_timeout_s=1.0))\n"
            "except GatewayError as error:\n"
            "    print(error.code)\n"
        )
        done = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, encoding="utf-8", timeout=60, check=False
        )
    assert (done.stdout, done.stderr) == ("STATE_DATABASE_UNAVAILABLE\n", "")


def test_a_refused_postgres_connection_says_why_without_the_dsn(postgres_dsn: str) -> None:
    """The pool only times out; the gateway says what the server refused: a missing database, an unknown role."""
    server, _ = postgres_dsn.rsplit("/", 1)
    for dsn, meaning in (
        (f"{server}/no_such_db_canary", "the database does not exist"),
        (dsn_with_role(postgres_dsn, "no_such_role_canary"), "the server knows no such role"),
    ):
        with pytest.raises(GatewayError) as caught:
            open_state(PostgresLocation(dsn, connect_timeout_s=2.0))
        assert caught.value.code is ErrorCode.STATE_DATABASE_UNAVAILABLE
        assert caught.value.message == f"The PostgreSQL state database cannot be used: {meaning}."
        assert "canary" not in f"{caught.value.message} {caught.value.user_action}"


def dsn_with_role(dsn: str, role: str) -> str:
    scheme, rest = dsn.split("://", 1)
    return f"{scheme}://{role}@{rest.split('@', 1)[1]}"


class socket_that_refuses:
    """A loopback port with nothing listening."""

    def __enter__(self) -> int:
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return int(sock.getsockname()[1])

    def __exit__(self, *exc: object) -> None:
        return None
