"""The "not ready" answers IBKR gives right after a login read as session states, never as "no such account"."""

from pathlib import Path

import anyio
import pytest
from ibkr_gateway_core.audit import AuditLog
from ibkr_gateway_core.config import GatewayConfig
from ibkr_gateway_core.errors import ErrorCode, GatewayError
from ibkr_gateway_core.gateway import Gateway
from ibkr_gateway_cpapi.backend import open_simulator_backend
from ibkr_gateway_cpapi.simulator import SimulatorState

pytestmark = pytest.mark.anyio


async def test_accounts_that_load_slowly_after_a_login_are_waited_for() -> None:
    sim = SimulatorState()
    sim.load_accounts_slowly(2)
    backend = open_simulator_backend(sim)
    try:
        with anyio.fail_after(10):
            accounts = await backend.list_accounts()
    finally:
        await backend.aclose()
    assert [a.account_id for a in accounts] == ["DU1234567", "DU7654321"]
    assert sim.paths().count("GET /iserver/accounts") >= 3


async def test_accounts_that_never_load_are_a_retryable_session_error_not_an_unknown_account(tmp_path: Path) -> None:
    sim = SimulatorState()
    sim.load_accounts_slowly(100)
    config = GatewayConfig.fake_local(state_dir=tmp_path)
    audit = AuditLog.open(config.audit_path(), b"k" * 32)
    async with Gateway(config, audit, backend_factory=lambda _: open_simulator_backend(sim)) as gateway:
        for name, args in (("list_accounts", {}), ("account_summary", {"account_id": "DU1234567"})):
            with anyio.fail_after(10), pytest.raises(GatewayError) as caught:
                await gateway.call(name, args)
            assert caught.value.code == ErrorCode.BROKER_SESSION_REQUIRED, name
            assert "not loaded its accounts yet" in caught.value.message
            assert caught.value.retryable


async def test_init_session_first_is_a_brokerage_session_error_that_says_so() -> None:
    sim = SimulatorState()
    backend = open_simulator_backend(sim)
    try:
        sim.fail_next(400, {"error": "Init session first"})
        with pytest.raises(GatewayError) as caught:
            await backend.list_accounts()
    finally:
        await backend.aclose()
    assert caught.value.code == ErrorCode.BROKER_SESSION_REQUIRED
    assert "brokerage session is not initialised" in caught.value.message
    assert "ssodh/init" in (caught.value.user_action or "")
