"""The session supervisor: tickles keep the session alive, health is tracked, exit is clean."""

import math
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta

import anyio
import pytest
from ibkr_gateway_core.config import BrokerConfig
from ibkr_gateway_core.errors import ErrorCode, GatewayError
from ibkr_gateway_cpapi.backend import CpapiBackend, open_simulator_backend
from ibkr_gateway_cpapi.simulator import SimulatorState
from ibkr_gateway_cpapi.supervisor import supervise_session
from ibkr_gateway_cpapi.testing import FakeTime

pytestmark = pytest.mark.anyio

IDLE_TIMEOUT = timedelta(minutes=6)
"""CPAPI's idle timeout (reference §5)."""

INTERVAL = timedelta(seconds=60)


class SteppedSleep:
    """A sleep that returns only when the test allows one more tick, then moves the fake clock."""

    def __init__(self, fake_time: FakeTime) -> None:
        self._fake_time = fake_time
        self._send, self._receive = anyio.create_memory_object_stream[None](math.inf)

    async def sleep(self, seconds: float) -> None:
        await self._receive.receive()
        self._fake_time.advance(seconds)

    def step(self) -> None:
        self._send.send_nowait(None)

    def close(self) -> None:
        self._send.close()
        self._receive.close()


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture
def sim(fake_time: FakeTime) -> SimulatorState:
    return SimulatorState(clock=fake_time.wall, idle_timeout=IDLE_TIMEOUT)


@pytest.fixture
async def backend(sim: SimulatorState, fake_time: FakeTime) -> AsyncIterator[CpapiBackend]:
    async with open_simulator_backend(sim, clock=fake_time.wall) as opened:
        yield opened


@pytest.fixture
def stepper(fake_time: FakeTime) -> Iterator[SteppedSleep]:
    stepped = SteppedSleep(fake_time)
    yield stepped
    stepped.close()


async def test_the_supervisor_keeps_the_session_alive_past_the_idle_timeout(
    backend: CpapiBackend, sim: SimulatorState, stepper: SteppedSleep, fake_time: FakeTime
) -> None:
    """Ten idle minutes with a tickle each minute: the session is still there (CPAPI drops it after ~6)."""
    with anyio.fail_after(5):
        async with backend.supervised(interval=INTERVAL, sleep=stepper.sleep) as supervisor:
            await supervisor.wait_for_checks(1)
            for tick in range(2, 12):
                stepper.step()
                status = await supervisor.wait_for_checks(tick)
                assert status.status == "usable"
        assert fake_time.now_s == 600
        accounts = await backend.list_accounts()
    assert accounts
    assert sim.paths().count("POST /tickle") == 11


async def test_without_the_supervisor_the_idle_session_expires(backend: CpapiBackend, fake_time: FakeTime) -> None:
    """The control for the test above: the simulator does drop an idle session."""
    await backend.list_accounts()
    fake_time.advance(IDLE_TIMEOUT.total_seconds() + 1)
    with pytest.raises(GatewayError) as caught:
        await backend.list_accounts()
    assert caught.value.code == ErrorCode.BROKER_SESSION_REQUIRED


async def test_a_logout_is_reported_as_manual_action_required_and_a_login_is_reprimed(
    backend: CpapiBackend, sim: SimulatorState, stepper: SteppedSleep
) -> None:
    """A lost login needs a person; once back, `/iserver/accounts` is queried again (CPAPI wants it first)."""
    with anyio.fail_after(5):
        async with backend.supervised(interval=INTERVAL, sleep=stepper.sleep) as supervisor:
            assert (await supervisor.wait_for_checks(1)).status == "usable"
            sim.log_out()
            stepper.step()
            lost = await supervisor.wait_for_checks(2)
            assert (lost.status, lost.error_code) == ("manual_action_required", ErrorCode.BROKER_SESSION_REQUIRED)
            assert (await backend.session_status()).status == "manual_action_required"
            sim.log_in()
            before = len(sim.requests)
            stepper.step()
            assert (await supervisor.wait_for_checks(4)).status == "usable"  # the session_status call counted as 3
    assert sim.paths()[before:] == ["POST /tickle", "GET /iserver/accounts"]


async def test_a_supervised_backend_answers_status_from_the_last_usable_check(
    backend: CpapiBackend, sim: SimulatorState, stepper: SteppedSleep
) -> None:
    """`backend status` in a long-running server does not wait for the broker while the session is healthy."""
    with anyio.fail_after(5):
        async with backend.supervised(interval=INTERVAL, sleep=stepper.sleep) as supervisor:
            checked = await supervisor.wait_for_checks(1)
            seen = len(sim.requests)
            assert await backend.session_status() == checked
            assert len(sim.requests) == seen
        await backend.session_status()  # unsupervised again: asks the broker
    assert len(sim.requests) == seen + 1


async def test_leaving_the_block_cancels_the_supervisor_and_keeps_the_backend(
    backend: CpapiBackend, sim: SimulatorState, stepper: SteppedSleep
) -> None:
    """Exit is clean: the sleeping task is cancelled, no tickle follows, the backend still works."""
    with anyio.fail_after(5):
        async with backend.supervised(interval=INTERVAL, sleep=stepper.sleep) as supervisor:
            await supervisor.wait_for_checks(1)
        stepper.step()
        await anyio.lowlevel.checkpoint()
        tickles = sim.paths().count("POST /tickle")
        assert (await backend.keepalive()).status == "usable"
    assert sim.paths().count("POST /tickle") == tickles + 1 == 2


async def test_a_failing_check_does_not_stop_the_supervisor(
    backend: CpapiBackend, sim: SimulatorState, stepper: SteppedSleep
) -> None:
    """An unreachable or failing broker is a status (`unavailable`), and the next tick tries again."""
    with anyio.fail_after(5):
        async with backend.supervised(interval=INTERVAL, sleep=stepper.sleep) as supervisor:
            await supervisor.wait_for_checks(1)
            sim.fail_next(503, "Service Unavailable")
            stepper.step()
            assert (await supervisor.wait_for_checks(2)).status == "unavailable"
            stepper.step()
            assert (await supervisor.wait_for_checks(3)).status == "usable"


async def test_supervise_session_runs_only_for_a_real_gateway_with_keepalive_on(
    backend: CpapiBackend,
) -> None:
    """Fake mode's simulator never idles out, and `broker.keepalive_enabled: false` turns it off."""
    config = BrokerConfig()
    async with supervise_session(backend, config) as supervisor:
        assert supervisor is None
    backend.name = "client_portal_gateway"
    async with supervise_session(backend, config.model_copy(update={"keepalive_enabled": False})) as supervisor:
        assert supervisor is None
    with anyio.fail_after(5):
        async with supervise_session(backend, config) as supervisor:
            assert supervisor is not None
            assert supervisor.interval == timedelta(seconds=60)
            assert (await supervisor.wait_for_checks(1)).status == "usable"


async def _checked_once(sim: SimulatorState, *, reopen: bool) -> tuple[str, int]:
    """One supervisor check over `sim`: the resulting status and how many times it re-opened the session."""
    from ibkr_gateway_cpapi.supervisor import SessionSupervisor

    backend = open_simulator_backend(sim)
    try:
        supervisor = SessionSupervisor(backend, reopen=reopen)
        with anyio.fail_after(10):
            status = await supervisor.check()
    finally:
        await backend.aclose()
    return status.status, supervisor.reopened


async def test_a_closed_brokerage_session_of_a_logged_in_gateway_is_reopened_without_competing() -> None:
    sim = SimulatorState()
    sim.log_in_sso_only()
    assert await _checked_once(sim, reopen=True) == ("usable", 1)
    assert "POST /iserver/auth/ssodh/init" in sim.paths()


async def test_another_platforms_session_is_never_taken_over() -> None:
    sim = SimulatorState()
    sim.set_competing()
    assert await _checked_once(sim, reopen=True) == ("manual_action_required", 0)
    assert "POST /iserver/auth/ssodh/init" not in sim.paths()


async def test_without_reopen_the_closed_session_waits_for_a_person() -> None:
    sim = SimulatorState()
    sim.log_in_sso_only()
    assert await _checked_once(sim, reopen=False) == ("manual_action_required", 0)
    assert "POST /iserver/auth/ssodh/init" not in sim.paths()


async def test_a_logged_out_gateway_is_not_reopened_either() -> None:
    sim = SimulatorState()
    sim.log_out()
    assert await _checked_once(sim, reopen=True) == ("manual_action_required", 0)
    assert "POST /iserver/auth/ssodh/init" not in sim.paths()
