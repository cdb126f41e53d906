"""Two real processes place orders with questions through one Client Portal login at the same time.

`ibkr-agent simulator serve` (HTTPS) asks a question for every order (a limit far from the market), and
invalidates a pending question's reply id whenever the login is asked a newer one. Two Python processes,
each with the real `client_portal_gateway` backend opened from one config, share the state store
(SQLite file, or one PostgreSQL database): the login's order-question slot there serialises their
exchanges, so no stale reply id is ever confirmed and every order is placed exactly once.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_harness import AUDIT_KEY_ENV, serve_simulator, sim_control

pytestmark = pytest.mark.slow

PER_PROCESS = 6
DSN_ENV = "IBKR_TEST_STATE_DSN"

PLACER = r"""
import json, sys
from pathlib import Path
from decimal import Decimal

import anyio
from ibkr_gateway_core.config import GatewayConfig
from ibkr_gateway_core.errors import GatewayError
from ibkr_gateway_core.orders import OrderTicket
from ibkr_gateway_cpapi.backend import open_client_portal_backend

config_path, prefix, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
ticket = OrderTicket.model_validate({
    "account_id": "DU1234567", "contract_id": 265598, "symbol": "AAPL", "asset_class": "stock",
    "currency": "USD", "side": "buy", "quantity": Decimal(1), "order_type": "limit", "limit_price": Decimal(100),
})
results = {}

async def main():
    backend = open_client_portal_backend(GatewayConfig.load(Path(config_path)))
    questions = []
    def allow(question):
        questions.append(question.message_ids)
        return True
    async with backend:
        writer = backend.order_writer()
        async def one(n):
            key = f"{prefix}-{n}"
            try:
                placed = await writer.place(ticket, client_order_id=key, confirm=allow, max_rounds=3)
                results[key] = {"placed": placed.broker_order_id}
            except GatewayError as exc:
                results[key] = {"code": str(exc.code)}
        async with anyio.create_task_group() as tasks:
            for n in range(count):
                tasks.start_soon(one, n)
    results["questions"] = len(questions)

anyio.run(main)
print(json.dumps(results))
"""


@pytest.fixture(scope="module")
def simulator() -> Iterator[str]:
    with serve_simulator() as url:
        yield url


control = sim_control


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_two_processes_on_one_login_place_every_order_once_and_confirm_no_stale_reply_id(
    simulator: str, tmp_path: Path, store: str, request: pytest.FixtureRequest
) -> None:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path / "home"),
        AUDIT_KEY_ENV: "integration-test-audit-key-0123456789abcdef",
        "PYTHONWARNDEFAULTENCODING": "1",
    }
    state = f"  directory: {tmp_path / 'state'}\n"
    if store == "postgres":
        env[DSN_ENV] = request.getfixturevalue("postgres_dsn")
        state += f"  backend: postgres\n  postgres_dsn_env: {DSN_ENV}\n"
    config = tmp_path / "gateway.yaml"
    config.write_text(
        "broker:\n"
        "  backend: client_portal_gateway\n"
        f"  base_url: {simulator}\n"
        "  verify_tls: false\n"
        "audit:\n"
        f"  hmac_secret_env: {AUDIT_KEY_ENV}\n"
        f"state:\n{state}",
        encoding="utf-8",
    )
    before = control(simulator)["superseded_replies"]
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", PLACER, str(config), f"{store}-{name}", str(PER_PROCESS)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            encoding="utf-8",
            env=env,
        )
        for name in ("one", "two")
    ]
    outputs = [proc.communicate(timeout=180) for proc in processes]
    for proc, (_, err) in zip(processes, outputs, strict=True):
        assert proc.returncode == 0, err
    results = [json.loads(out) for out, _ in outputs]
    assert [r.pop("questions") for r in results] == [PER_PROCESS, PER_PROCESS]  # every order was asked a question
    placed = {key: value for r in results for key, value in r.items()}
    assert all("placed" in value for value in placed.values()), placed
    assert len({value["placed"] for value in placed.values()}) == 2 * PER_PROCESS  # each its own order
    assert control(simulator)["superseded_replies"] == before  # no stale reply id was ever sent
