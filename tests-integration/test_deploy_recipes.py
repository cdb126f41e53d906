"""The deployment recipes under deploy/: each file the deployment guide shows is checked or run here.

- the systemd unit passes `systemd-analyze verify` (with ExecStart pointed at this venv's `ibkr-agent`);
- the container image cannot be built on this machine (no registry for base images), so its
  ENTRYPOINT is run as it stands in this venv, with the shipped `deploy/config/gateway.yaml` and a real
  PostgreSQL, and answers its HEALTHCHECK and `/metrics`;
- the compose file wires the same entry point, ports, nginx site and read-only root.
The nginx site itself runs in test_replicas_behind_nginx.py.
"""

import json
import os
import re
import shutil
import socket
import subprocess
from pathlib import Path

import httpx2
import pytest
import yaml
from cli_harness import ibkr_agent
from ibkr_gateway_core.config import GatewayConfig
from postgres_server import PostgresServer

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
UNIT = DEPLOY / "systemd" / "ibkr-agent-gateway@.service"
CONTAINERFILE = DEPLOY / "container" / "Containerfile"
COMPOSE = DEPLOY / "compose.yaml"
CONFIG = DEPLOY / "config" / "gateway.yaml"
NGINX_SITE = DEPLOY / "nginx" / "ibkr-agent-gateway.conf"
SECRETS = {
    "IBKR_AUDIT_HMAC_SECRET": "deploy-test-audit-key-0123456789abcdef",
    "IBKR_TOKEN_ID_KEY": "deploy-test-token-key-0123456789abcdef",
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _entrypoint() -> list[str]:
    found = re.search(r"^ENTRYPOINT (\[.*\])$", CONTAINERFILE.read_text(encoding="utf-8"), re.MULTILINE)
    assert found is not None
    return json.loads(found.group(1))


def test_the_systemd_unit_verifies_and_is_hardened(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.fail("systemd-analyze is missing: apt-get install -y systemd")
    text = UNIT.read_text(encoding="utf-8")
    for option in (
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "DynamicUser=yes",
        "CapabilityBoundingSet=",
        "MemoryDenyWriteExecute=yes",
        "SystemCallFilter=@system-service",
        "UMask=0077",
    ):
        assert option in text
    assert "--bind 127.0.0.1:%i" in text and "IBKR_STATE_DSN" in text
    binary = "/opt/ibkr-agent-gateway/bin/ibkr-agent"
    assert binary in text
    local = tmp_path / "ibkr-agent-gateway@8081.service"
    local.write_text(text.replace(binary, ibkr_agent()[0]), encoding="utf-8")
    checked = subprocess.run([analyze, "verify", str(local)], capture_output=True, encoding="utf-8", timeout=60)
    assert checked.returncode == 0, checked.stderr
    assert checked.stderr.strip() == "", checked.stderr  # an unknown or misspelt option is only a warning
    broken = tmp_path / "broken@8081.service"
    broken.write_text(
        local.read_text(encoding="utf-8").replace("ProtectHome=yes", "ProtectHome=sometimes"), encoding="utf-8"
    )
    assert subprocess.run([analyze, "verify", str(broken)], capture_output=True, encoding="utf-8").stderr  # it can fail


def test_the_shipped_config_is_valid_and_keeps_secrets_out(monkeypatch: pytest.MonkeyPatch) -> None:
    config = GatewayConfig.load(CONFIG)
    assert config.state.backend == "postgres" and config.state.postgres_dsn_env == "IBKR_STATE_DSN"
    assert config.remote_mcp.behind_proxy and config.remote_mcp.trusted_proxies == ["127.0.0.1/32"]
    assert config.observability.metrics_enabled and config.observability.log_format == "json"
    monkeypatch.setenv("IBKR_STATE_DSN", "postgresql://gateway:pw@127.0.0.1/ibkr_gateway")
    assert "pw" not in repr(config.state_location())
    settings = [line for line in CONFIG.read_text(encoding="utf-8").splitlines() if not line.startswith("#")]
    assert not any("postgresql://" in line or "PASSWORD" in line for line in settings)


def test_the_container_and_compose_recipes_agree(tmp_path: Path) -> None:
    containerfile = CONTAINERFILE.read_text(encoding="utf-8")
    assert re.search(r"^USER 10001$", containerfile, re.MULTILINE), "the image must not run as root"
    assert "HEALTHCHECK" in containerfile and "/healthz" in containerfile
    assert '"ibkr-gateway-core[postgres,otel]"' in containerfile  # OpenTelemetry is then a switch in the config
    entry = _entrypoint()
    compose = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    services = compose["services"]
    site = NGINX_SITE.read_text(encoding="utf-8")
    for name, port in (("gateway-a", 8081), ("gateway-b", 8082)):
        service = services[name]
        assert service["entrypoint"] == [*entry[:-1], f"127.0.0.1:{port}"]
        assert service["read_only"] is True and service["network_mode"] == "host"
        assert f"server 127.0.0.1:{port} " in site
        assert f"127.0.0.1:{port}/healthz" in json.dumps(service["healthcheck"])
        assert service["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "./nginx/ibkr-agent-gateway.conf:/etc/nginx/conf.d/default.conf:ro" in services["nginx"]["volumes"]
    assert services["postgres"]["healthcheck"]["test"][1] == "pg_isready"


def test_the_container_entry_point_serves_health_and_metrics_in_a_venv(
    tmp_path: Path, postgres_server: PostgresServer
) -> None:
    """The image's ENTRYPOINT with the shipped config, run here (no image can be built on this machine)."""
    port = _free_port()
    text = CONFIG.read_text(encoding="utf-8")
    text = text.replace("/var/lib/ibkr-agent-gateway", str(tmp_path / "state"))
    text = text.replace('allowed_hosts: ["127.0.0.1:8081", "127.0.0.1:8082"]', f'allowed_hosts: ["127.0.0.1:{port}"]')
    config = tmp_path / "gateway.yaml"
    config.write_text(text, encoding="utf-8")
    entry = _entrypoint()
    assert entry[0] == "ibkr-agent" and entry[2] == "/etc/ibkr-agent-gateway/gateway.yaml"
    command = [*ibkr_agent(), entry[1], str(config), *entry[3:-1], f"127.0.0.1:{port}"]
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "IBKR_STATE_DSN": postgres_server.new_database(),
        **SECRETS,
    }
    log = tmp_path / "server.log"
    with log.open("w", encoding="utf-8") as stderr:
        server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, encoding="utf-8", env=env)
    try:
        assert server.stdout is not None
        assert server.stdout.readline().strip() == f"http://127.0.0.1:{port}", log.read_text(encoding="utf-8")
        health = httpx2.get(f"http://127.0.0.1:{port}/healthz", timeout=10)  # the HEALTHCHECK's request
        metrics = httpx2.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
        assert health.status_code == 200 and health.json() == {"status": "ok"}
        assert metrics.status_code == 200 and "# TYPE ibkr_gateway_calls_total counter" in metrics.text
    finally:
        server.terminate()
        server.communicate(timeout=20)
    assert server.returncode in (0, -15)
    assert SECRETS["IBKR_AUDIT_HMAC_SECRET"] not in log.read_text(encoding="utf-8")


def test_the_proxy_drops_idle_replica_connections_before_the_replica_does() -> None:
    """nginx reusing a connection the replica is closing counts as a replica failure (max_fails=1)."""
    site = NGINX_SITE.read_text(encoding="utf-8")
    remote = (ROOT / "packages/ibkr-gateway-mcp/src/ibkr_gateway_mcp/remote.py").read_text(encoding="utf-8")
    proxy_idle = re.search(r"^\s*keepalive_timeout\s+(\d+)s;", site, re.MULTILINE)
    replica_idle = re.search(r"timeout_keep_alive=(\d+)", remote)
    assert proxy_idle and replica_idle
    assert int(proxy_idle.group(1)) < int(replica_idle.group(1))
