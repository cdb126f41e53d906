"""`cpapi_oauth` as a user runs it: `ibkr-agent simulator serve --oauth-dir`, then the CLI and an MCP client.

The simulator writes a throwaway consumer's keys and a `gateway.yaml`; every command and tool goes
through the OAuth 1.0a handshake over real HTTPS. Afterwards nothing secret (the access token, its
secret, encrypted or decrypted, the private keys, an OAuth header) is in any stdout, stderr, server
log, audit row or audit export, and no local path either.
"""

import base64
import json
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest
from cli_harness import ibkr_agent, run_cli, serve_simulator
from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from mcp import Client, StdioServerParameters

pytestmark = [pytest.mark.filterwarnings("ignore::ResourceWarning")]

AUDIT_ENV = "IBKR_AUDIT_HMAC_SECRET"


@dataclass
class OAuthSimulator:
    base_url: str
    directory: Path
    config: Path


@pytest.fixture(scope="module")
def oauth_simulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OAuthSimulator]:
    directory = tmp_path_factory.mktemp("oauth-user") / "sim-oauth"
    with serve_simulator("--oauth-dir", str(directory)) as base_url:
        yield OAuthSimulator(base_url, directory, directory / "gateway.yaml")


def user_env(tmp_path: Path) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path / "home"),
        AUDIT_ENV: "oauth-test-audit-key-0123456789abcdef0123456789",
        "TERMINAL_WIDTH": "160",
        "PYTHONWARNDEFAULTENCODING": "1",
    }


def secrets_of(directory: Path) -> dict[str, str]:
    """Every secret value of the consumer, in the forms it could leak in."""
    found: dict[str, str] = {}
    token = (directory / "access_token").read_text(encoding="utf-8").strip()
    encrypted = (directory / "access_token_secret").read_text(encoding="utf-8").strip()
    found["access_token"] = token
    found["encrypted_secret"] = encrypted
    found["encrypted_secret_piece"] = encrypted[40:80]
    key = load_pem_private_key((directory / "private_encryption.pem").read_bytes(), password=None)
    assert isinstance(key, RSAPrivateKey)
    plain = key.decrypt(base64.b64decode(encrypted), PKCS1v15())
    found["secret_hex"] = plain.hex()
    found["secret_b64"] = base64.b64encode(plain).decode("ascii")
    for name in ("private_signature.pem", "private_encryption.pem"):
        lines = (directory / name).read_text(encoding="utf-8").splitlines()
        for number, line in enumerate(lines[1:-1]):
            if len(line) >= 40:
                found[f"{name}:{number}"] = line
    found["oauth header"] = "oauth_signature"
    found["oauth scheme"] = "OAuth realm"
    return found


def test_a_user_walks_the_oauth_backend_and_no_secret_comes_out(
    oauth_simulator: OAuthSimulator, tmp_path: Path
) -> None:
    sim = oauth_simulator
    workdir = tmp_path / "work"
    shutil.copytree(sim.directory, workdir, ignore=shutil.ignore_patterns("state"))
    config = workdir / "gateway.yaml"
    with config.open("a", encoding="utf-8") as handle:
        handle.write("observability:\n  log_level: DEBUG\n")
    env = user_env(tmp_path)
    seen: list[str] = []

    def cli(*args: str, expect: int = 0) -> subprocess.CompletedProcess[str]:
        done = run_cli(["--config", str(config), *args], env)
        seen.extend([done.stdout, done.stderr])
        assert done.returncode == expect, (args, done.stdout, done.stderr)
        return done

    accounts = json.loads(cli("accounts", "list", "--json").stdout)
    assert [row["account_id"] for row in accounts] == ["DU1234567", "DU7654321"]
    cli("positions", "list", "--account", "DU1234567")
    quote = json.loads(cli("market", "snapshot", "--contract-id", "265598", "--json").stdout)
    assert quote["contract_id"] == 265598
    status = json.loads(cli("backend", "status", "--json").stdout)
    assert (status["backend"], status["status"]) == ("cpapi_oauth", "usable")
    requirements = json.loads(cli("session", "requirements", "--json").stdout)
    assert requirements["usable"] is True
    assert requirements["checks"][0]["detail"] == "IBKR's Web API answers."

    # a wrong signature key: the broker refuses, the user is told what to check
    bad = workdir / "bad.yaml"
    bad.write_text(
        config.read_text(encoding="utf-8").replace(
            "signature_key_file: private_signature.pem", "signature_key_file: private_encryption.pem"
        ),
        encoding="utf-8",
    )
    refused = run_cli(["--config", str(bad), "accounts", "list", "--json"], env)
    seen.extend([refused.stdout, refused.stderr])
    assert refused.returncode == 3
    error = json.loads(refused.stderr)
    assert error["code"] == "BROKER_OAUTH_REJECTED"
    assert "signature key" in error["user_action"]
    told = run_cli(["--config", str(bad), "session", "requirements", "--json"], env)
    seen.extend([told.stdout, told.stderr])
    details = {check["name"]: check["detail"] for check in json.loads(told.stdout)["checks"]}
    assert details["brokerage_session_authenticated"] == (
        "Not logged in: IBKR refused this OAuth consumer's credentials (broker.oauth)."
    )

    # an unset secret variable: a config error naming the variable, not a value
    unset = workdir / "unset.yaml"
    unset.write_text(
        config.read_text(encoding="utf-8").replace(
            "access_token_secret_file: access_token_secret", "access_token_secret_env: OAUTH_SECRET_NOT_SET"
        ),
        encoding="utf-8",
    )
    missing = run_cli(["--config", str(unset), "accounts", "list", "--json"], env)
    seen.extend([missing.stdout, missing.stderr])
    assert missing.returncode == 7
    assert json.loads(missing.stderr)["code"] == "CONFIG_OAUTH_CREDENTIAL_MISSING"
    assert "OAUTH_SECRET_NOT_SET" in missing.stderr

    # an MCP client over stdio, the server's log on stderr at DEBUG
    log = tmp_path / "mcp-stderr.log"
    answers = anyio.run(_mcp_session, config, env, log)
    assert list(answers) == ["ibkr_accounts_list", "ibkr_positions_list", "ibkr_market_snapshot", "ibkr_backend_status"]
    assert "DU7654321" in answers["ibkr_accounts_list"]
    assert "cpapi_oauth" in answers["ibkr_backend_status"]
    seen.extend(answers.values())
    seen.append(log.read_text(encoding="utf-8"))

    cli("audit", "tail", "--limit", "200", "--json")
    cli("audit", "export", "--limit", "1000")
    database = workdir / "state" / "state.sqlite3"
    with sqlite3.connect(database) as db:
        rows = [str(row) for row in db.execute("SELECT * FROM audit_events")]
    assert len(rows) >= 10
    seen.extend(rows)
    seen.append(database.read_bytes().decode("latin-1"))

    everything = "\n".join(seen)
    assert "DU1234567" in everything
    for name, value in secrets_of(sim.directory).items():
        assert value not in everything, f"{name} leaked"
    assert str(tmp_path) not in everything
    assert str(sim.directory) not in everything


async def _mcp_session(config: Path, env: dict[str, str], log: Path) -> dict[str, str]:
    """Each tool's whole answer (content and structured content) as text."""
    shell = shutil.which("sh")
    assert shell is not None
    command = [*ibkr_agent(), "--config", str(config), "mcp", "serve", "--transport", "stdio"]
    script = 'exec "$@" 2>>"$IBKR_TEST_MCP_LOG"'
    params = StdioServerParameters(
        command=shell, args=["-c", script, "sh", *command], env={**env, "IBKR_TEST_MCP_LOG": str(log)}
    )
    called: dict[str, str] = {}
    calls: list[tuple[str, dict[str, object]]] = [
        ("ibkr_accounts_list", {}),
        ("ibkr_positions_list", {"account_id": "DU1234567"}),
        ("ibkr_market_snapshot", {"contract_id": 265598}),
        ("ibkr_backend_status", {}),
    ]
    with anyio.fail_after(90):
        async with Client(params) as client:
            for name, arguments in calls:
                result = await client.call_tool(name, arguments)
                assert not result.is_error, (name, result)
                called[name] = result.model_dump_json()
    return called


def test_serve_never_overwrites_key_files(oauth_simulator: OAuthSimulator, tmp_path: Path) -> None:
    """A directory that already holds OAuth files (perhaps a real consumer's) is refused, untouched."""
    before = {path.name: path.read_bytes() for path in oauth_simulator.directory.iterdir() if path.is_file()}
    done = run_cli(
        ["simulator", "serve", "--port", "0", "--oauth-dir", str(oauth_simulator.directory), "--json"],
        user_env(tmp_path),
    )
    assert done.returncode == 2
    assert json.loads(done.stderr)["code"] == "INPUT_INVALID_ARGUMENT"
    assert str(oauth_simulator.directory) not in done.stderr
    after = {path.name: path.read_bytes() for path in oauth_simulator.directory.iterdir() if path.is_file()}
    assert after == before
