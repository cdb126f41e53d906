"""From one host to replicas with `ibkr-agent state import`, as an operator would: real processes, real PostgreSQL.

The old host is the CLI on the simulator with a SQLite state directory; the new state is a fresh database
of a real PostgreSQL server, configured by the replicas' own `deploy/config/gateway.yaml`. A checkpoint
signed on the old host must verify against the new database, a mistyped first attempt must not spoil the
target, and an import killed half-way must leave the target new, so that it can simply be run again.
"""

import base64
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import yaml
from cli_harness import ibkr_agent, run_cli
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from ibkr_gateway_core.audit import AuditEvent, AuditLog

ROOT = Path(__file__).resolve().parents[1]
HMAC_KEY = "state-import-test-audit-key-0123456789abcdef"
ACCOUNT = "DU1234567"


def _env(tmp_path: Path, dsn: str) -> dict[str, str]:
    signing = Ed25519PrivateKey.generate().private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    return {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path / "home"),
        "IBKR_AUDIT_HMAC_SECRET": HMAC_KEY,
        "IBKR_TOKEN_ID_KEY": "token-id-key-for-the-import-test-0123456789",
        "IBKR_CHECKPOINT_KEY": base64.b64encode(signing).decode("ascii"),
        "IBKR_STATE_DSN": dsn,
        "TERMINAL_WIDTH": "160",
    }


def _configs(tmp_path: Path) -> tuple[Path, Path]:
    """The old host's config (simulator, SQLite) and the replicas' shipped config on the test database."""
    old = tmp_path / "old.yaml"
    old.write_text(
        yaml.safe_dump(
            {
                "state": {"directory": str(tmp_path / "old-state")},
                "audit": {"hmac_secret_env": "IBKR_AUDIT_HMAC_SECRET", "checkpoint_key_env": "IBKR_CHECKPOINT_KEY"},
            }
        ),
        encoding="utf-8",
    )
    replicas = yaml.safe_load((ROOT / "deploy" / "config" / "gateway.yaml").read_text(encoding="utf-8"))
    replicas["state"]["directory"] = str(tmp_path / "replica-state")
    replicas["audit"]["checkpoint_key_env"] = "IBKR_CHECKPOINT_KEY"
    replicas["orders"]["operator_scopes"] = ["with_paper", "ibkr:state:import"]
    new = tmp_path / "replicas.yaml"
    new.write_text(yaml.safe_dump(replicas), encoding="utf-8")
    return old, new


def _ok(args: list[str], env: dict[str, str]) -> dict:  # type: ignore[type-arg]
    done = run_cli([*args, "--json"], env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_an_operator_moves_a_single_host_to_postgresql(tmp_path: Path, postgres_dsn: str) -> None:
    env = _env(tmp_path, postgres_dsn)
    old, new = _configs(tmp_path)
    host = ["--config", str(old)]
    preview = _ok([*host, "orders", "preview", "--account", ACCOUNT, "--symbol", "AAPL", "--side", "buy",
                   "--quantity", "1", "--limit-price", "100", "--enable-preview"], env)  # fmt: skip
    approval = _ok([*host, "approvals", "create", "--account", ACCOUNT, "--preview-id", preview["preview_id"],
                    "--ttl-seconds", "3600"], env)  # fmt: skip
    placed = _ok([*host, "orders", "submit", "--account", ACCOUNT, "--approval-id", approval["approval_id"],
                  "--idempotency-key", "move-1", "--enable-paper"], env)  # fmt: skip
    _ok([*host, "kill-switch", "close", "--reason", "moving to replicas"], env)
    checkpoint = tmp_path / "checkpoint.json"
    signed = _ok([*host, "audit", "checkpoint", "--output", str(checkpoint)], env)

    replicas = ["--config", str(new)]
    typo = run_cli([*replicas, "state", "import", "--from", str(tmp_path / "old-stat" / "state.sqlite3")], env)
    assert typo.returncode == 2
    assert "INPUT_INVALID_ARGUMENT" in typo.stderr and "Traceback" not in typo.stderr
    assert str(tmp_path) not in typo.stderr

    imported = _ok([*replicas, "state", "import", "--from", str(tmp_path / "old-state" / "state.sqlite3")], env)
    assert imported["earlier_attempts"] == 1
    assert imported["head_sequence"] == signed["sequence"] + 1  # the checkpoint's own event came after it
    assert imported["tables"]["order_idempotency"] == 1
    assert (imported["kill_switch"], imported["kill_switch_was"]) == ("closed", "closed")
    assert imported["approvals_revoked"] == 0  # the one approval was used before the move

    verified = _ok([*replicas, "audit", "verify", "--checkpoint", str(checkpoint)], env)
    assert verified["chain_valid"] and verified["checkpoint_checked"]
    assert _ok([*replicas, "kill-switch", "status"], env)["state"] == "closed"
    again = run_cli([*replicas, "state", "import", "--from", str(tmp_path / "old-state" / "state.sqlite3")], env)
    assert again.returncode == 1
    assert "STATE_IMPORT_TARGET_NOT_EMPTY" in again.stderr
    with psycopg.connect(postgres_dsn) as db:
        rows = db.execute("SELECT payload FROM audit_events ORDER BY sequence").fetchall()
        stored = db.execute("SELECT result FROM order_idempotency").fetchone()
    assert placed["broker_order_id"] in (stored[0] or "")
    assert not any(str(tmp_path) in row[0] for row in rows)  # no local path in any stored event


def test_an_import_killed_half_way_leaves_the_target_new(tmp_path: Path, postgres_dsn: str) -> None:
    env = _env(tmp_path, postgres_dsn)
    _, new = _configs(tmp_path)
    source = tmp_path / "big" / "state.sqlite3"
    log = AuditLog.open(source, HMAC_KEY.encode())
    try:
        head = log._append_batch_sync(  # pyright: ignore[reportPrivateUsage]
            AuditEvent(
                event_type="tool_completed",
                timestamp=datetime.now(UTC),
                principal_kind="local_agent",
                principal_subject="bulk",
                decision="allow",
                result_status="completed",
                metadata={"n": n, "padding": "x" * 200},
            )
            for n in range(60_000)
        )
    finally:
        log.close()
    command = [*ibkr_agent(), "--config", str(new), "state", "import", "--from", str(source)]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seen = False
    with psycopg.connect(postgres_dsn, autocommit=True) as watcher:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            found = watcher.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND query LIKE 'INSERT INTO audit_events%%' AND xact_start IS NOT NULL"
            ).fetchone()
            if found and found[0]:
                seen = True
                break
            time.sleep(0.01)
        assert seen, "the import never started writing"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        time.sleep(0.5)  # the server notices the closed connection and rolls its transaction back
        count = watcher.execute("SELECT count(*) FROM audit_events").fetchone()
        approvals = watcher.execute("SELECT count(*) FROM order_approvals").fetchone()
    assert proc.returncode == -signal.SIGKILL
    assert count is not None and count[0] == 0
    assert approvals is not None and approvals[0] == 0

    done = run_cli(["--config", str(new), "state", "import", "--from", str(source), "--json"], env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["head_sequence"] == head
    verified = run_cli(["--config", str(new), "audit", "verify", "--json"], env, timeout=300)
    assert json.loads(verified.stdout)["chain_valid"] is True


def test_a_backup_taken_by_the_cli_restores_into_postgresql(tmp_path: Path, postgres_dsn: str) -> None:
    env = _env(tmp_path, postgres_dsn)
    old, new = _configs(tmp_path)
    host = ["--config", str(old)]
    _ok([*host, "kill-switch", "close", "--reason", "before the backup"], env)
    backup = tmp_path / "backups" / "state-2026-12-06.sqlite3"
    backup.parent.mkdir()
    taken = _ok([*host, "state", "backup", "--to", str(backup)], env)
    assert taken["sha256"] == hashlib.sha256(backup.read_bytes()).hexdigest()
    assert oct(backup.stat().st_mode & 0o777) == "0o600"
    again = run_cli([*host, "state", "backup", "--to", str(backup)], env)
    assert again.returncode == 2 and "exists already" in again.stderr

    restored = _ok(["--config", str(new), "state", "import", "--from", str(backup)], env)
    assert (restored["head_sequence"], restored["head_chain_hash"]) == (
        taken["head_sequence"],
        taken["head_chain_hash"],
    )
    assert restored["kill_switch"] == "closed"
    assert hashlib.sha256(backup.read_bytes()).hexdigest() == taken["sha256"]  # the restore only read it
    assert sorted(p.name for p in backup.parent.iterdir()) == [backup.name]  # no -wal, -shm or partial file


def test_the_state_transfer_benchmark_runs() -> None:
    """benchmarks/state_transfer.py measures verify, backup and both imports in one run and prints the ratios."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "state_transfer.py"), "--events", "200"],
        capture_output=True,
        encoding="utf-8",
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    for step in ("audit verify (baseline)", "state backup", "state import into SQLite", "state import into PostgreSQL"):
        assert step in proc.stdout
