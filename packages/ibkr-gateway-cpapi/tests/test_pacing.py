"""The rate governor: IBKR's pacing limits kept client-side, 429 backoff, and what is never retried."""

from collections.abc import AsyncIterator, Callable
from datetime import timedelta

import anyio
import httpx2
import pytest
from ibkr_gateway_core.config import BrokerConfig
from ibkr_gateway_core.errors import ErrorCode, GatewayError
from ibkr_gateway_cpapi.backend import CpapiBackend, open_simulator_backend
from ibkr_gateway_cpapi.client import CpapiClient
from ibkr_gateway_cpapi.pacing import PaceLimit, RateGovernor, parse_retry_after
from ibkr_gateway_cpapi.simulator import SimulatorState
from ibkr_gateway_cpapi.testing import FakeTime

pytestmark = pytest.mark.anyio

ACCOUNT = "DU1234567"
AAPL = 265598


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture
def paced_sim(fake_time: FakeTime) -> SimulatorState:
    """A simulator refusing, with a 10-minute penalty box, anything over IBKR's limits."""
    sim = SimulatorState(clock=fake_time.wall)
    sim.enable_pacing()
    return sim


def governor(fake_time: FakeTime, **kwargs: object) -> RateGovernor:
    max_wait = kwargs.get("max_wait", timedelta(seconds=6))
    assert isinstance(max_wait, timedelta)
    return RateGovernor(clock=fake_time.monotonic, sleep=fake_time.sleep, max_wait=max_wait, margin_s=0.0)


@pytest.fixture
async def paced_backend(paced_sim: SimulatorState, fake_time: FakeTime) -> AsyncIterator[CpapiBackend]:
    async with open_simulator_backend(
        paced_sim, clock=fake_time.wall, preflight_delays_s=(0.0,) * 5, governor=governor(fake_time)
    ) as opened:
        yield opened


def mock_client(handler: Callable[[httpx2.Request], httpx2.Response], fake_time: FakeTime) -> CpapiClient:
    http = httpx2.AsyncClient(transport=httpx2.MockTransport(handler))
    return CpapiClient("https://localhost:5000", http_client=http, governor=governor(fake_time))


async def test_the_governor_spaces_calls_to_one_endpoint_by_its_window(fake_time: FakeTime) -> None:
    """IBKR allows /iserver/account/trades once per 5 s; the query string does not make a new key."""
    paced = governor(fake_time)
    with anyio.fail_after(5):
        await paced.acquire("/iserver/account/trades", {"days": "1"})
        await paced.acquire("/iserver/account/trades", {"days": "7"})
        await paced.acquire("/iserver/accounts")
    assert fake_time.sleeps == [5.0]


async def test_the_global_window_allows_ten_requests_per_second(fake_time: FakeTime) -> None:
    """Through a Client Portal Gateway IBKR allows 10 requests per second over all paths."""
    paced = governor(fake_time)
    with anyio.fail_after(5):
        for conid in range(11):
            await paced.acquire(f"/iserver/contract/{conid}/info")
    assert fake_time.sleeps == [1.0]


async def test_a_wait_beyond_the_bound_is_rate_limited_with_a_retry_hint(fake_time: FakeTime) -> None:
    """The governor never queues a caller for minutes: past `max_wait` it refuses and says when to retry."""
    paced = RateGovernor(
        clock=fake_time.monotonic,
        sleep=fake_time.sleep,
        limits=[PaceLimit("/sso/validate", 1, timedelta(minutes=1))],
    )
    await paced.acquire("/sso/validate")
    with pytest.raises(GatewayError) as caught:
        await paced.acquire("/sso/validate")
    assert caught.value.code == ErrorCode.BROKER_RATE_LIMITED
    assert caught.value.details == {"retry_after_seconds": 60.0}
    assert fake_time.sleeps == []


async def test_a_burst_of_30_snapshots_never_trips_the_brokers_pacing(
    paced_backend: CpapiBackend, paced_sim: SimulatorState, fake_time: FakeTime
) -> None:
    """IBKR allows 10 snapshots per second and puts violators in a 10-minute penalty box (reference §4)."""
    client = paced_backend._client  # pyright: ignore[reportPrivateUsage]
    answers: list[object] = []

    async def snapshot(fields: str) -> None:
        answers.append(await client.get("/iserver/marketdata/snapshot", {"conids": str(AAPL), "fields": fields}))

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tasks:
            for n in range(30):
                tasks.start_soon(snapshot, f"31,{7000 + n}")  # 30 different reads: none coalesces
    assert len(answers) == 30
    assert paced_sim.paths().count("GET /iserver/marketdata/snapshot") == 30
    assert fake_time.now_s >= 2.0  # 30 requests need at least three one-second windows


async def test_the_burst_trips_the_simulator_without_the_governor(paced_sim: SimulatorState) -> None:
    """The same burst unpaced is refused: the test above would fail if the governor did nothing."""
    async with open_simulator_backend(paced_sim) as unpaced:
        with pytest.raises(GatewayError) as caught:
            for _ in range(30):
                await unpaced._client.get(  # pyright: ignore[reportPrivateUsage]
                    "/iserver/marketdata/snapshot", {"conids": str(AAPL), "fields": "31"}
                )
    assert caught.value.code == ErrorCode.BROKER_RATE_LIMITED


async def test_the_live_orders_warm_up_passes_under_pacing(
    paced_backend: CpapiBackend, paced_sim: SimulatorState, fake_time: FakeTime
) -> None:
    """`force=true` and the read after it count as one request; a second listing waits its 5 s (IBKR)."""
    with anyio.fail_after(5):
        first = await paced_backend.live_orders(ACCOUNT)
        assert fake_time.sleeps == []
        second = await paced_backend.live_orders(ACCOUNT)
    assert fake_time.sleeps == [5.0]
    assert first and first == second  # the seeded working orders, not the warm-up's empty list
    assert [p for p in paced_sim.paths() if p.endswith("/account/orders")] == ["GET /iserver/account/orders"] * 3


async def test_portfolio_accounts_is_reused_within_its_window_instead_of_waiting(
    paced_backend: CpapiBackend, paced_sim: SimulatorState, fake_time: FakeTime
) -> None:
    """/portfolio/accounts is paced at 1 per 5 s; the account list does not change in seconds, so it is reused."""
    with anyio.fail_after(5):
        first = await paced_backend.list_accounts()
        await paced_backend.positions(ACCOUNT)
        second = await paced_backend.list_accounts()
    assert first == second
    assert paced_sim.paths().count("GET /portfolio/accounts") == 1
    assert fake_time.sleeps == []


async def test_a_429_boxes_its_endpoint_until_retry_after_and_is_never_retried(fake_time: FakeTime) -> None:
    """A read answered 429 fails at once with the broker's Retry-After; the endpoint is not called until it passed."""
    sent: list[float] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        sent.append(fake_time.now_s)
        if len(sent) == 1:
            return httpx2.Response(429, headers={"Retry-After": "3"}, text="Too Many Requests")
        return httpx2.Response(200, json={"ok": True})

    async with mock_client(handler, fake_time) as client:
        with anyio.fail_after(5):
            for _ in range(2):
                with pytest.raises(GatewayError) as caught:
                    await client.get("/trsrv/stocks", {"symbols": "AAPL"})
                assert caught.value.code == ErrorCode.BROKER_RATE_LIMITED
                assert caught.value.details["retry_after_seconds"] == 3.0
            assert await client.get("/trsrv/secdef", {"conids": "1"}) == {"ok": True}  # another endpoint is free
            fake_time.advance(3.0)
            assert await client.get("/trsrv/stocks", {"symbols": "AAPL"}) == {"ok": True}
    assert sent == [0.0, 0.0, 3.0]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        pytest.param("POST", f"/iserver/account/{ACCOUNT}/orders", id="place"),
        pytest.param("POST", "/iserver/reply/abc", id="reply"),
        pytest.param("DELETE", f"/iserver/account/{ACCOUNT}/order/12", id="cancel"),
    ],
)
async def test_an_order_write_answered_429_is_never_retried(method: str, path: str, fake_time: FakeTime) -> None:
    """A 429 on a placement, reply or cancellation is reported, never resent (an order must not double)."""
    sent: list[str] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        if request.url.path.endswith("/iserver/accounts"):  # priming
            return httpx2.Response(200, json={"accounts": [ACCOUNT]})
        sent.append(request.method)
        return httpx2.Response(429, headers={"Retry-After": "1"}, text="Too Many Requests")

    async with mock_client(handler, fake_time) as client:
        with anyio.fail_after(5), pytest.raises(GatewayError) as caught:
            if method == "POST":
                await client.post(path, {"orders": []}, mutating=True)
            else:
                await client.delete(path, mutating=True)
    assert caught.value.code == ErrorCode.BROKER_RATE_LIMITED
    assert sent == [method]


async def test_a_429_without_retry_after_is_the_ten_minute_penalty_box(fake_time: FakeTime) -> None:
    """IBKR documents no Retry-After: the endpoint is boxed for the configured penalty (600 s), never probed."""
    sent: list[float] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        sent.append(fake_time.now_s)
        return httpx2.Response(429, text="Too Many Requests")

    async with mock_client(handler, fake_time) as client:
        with anyio.fail_after(5):
            for _ in range(3):
                with pytest.raises(GatewayError) as caught:
                    await client.get("/iserver/accounts")
                assert caught.value.code == ErrorCode.BROKER_RATE_LIMITED
            assert caught.value.details["retry_after_seconds"] == 600.0
            fake_time.advance(599.0)
            with pytest.raises(GatewayError) as caught:
                await client.get("/iserver/accounts")
            assert caught.value.code is ErrorCode.BROKER_RATE_LIMITED
            assert caught.value.details["retry_after_seconds"] == 1.0
    assert sent == [0.0]
    assert fake_time.sleeps == []


async def test_a_429_naming_the_ip_holds_every_request_off_the_host(fake_time: FakeTime) -> None:
    """A penalty-box answer for the whole client (its IP) is not waited out; no endpoint is called again."""
    sent: list[str] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        sent.append(request.url.path)
        return httpx2.Response(
            429, headers={"Retry-After": "600"}, json={"error": "Too many requests: this IP is in the penalty box"}
        )

    async with mock_client(handler, fake_time) as client:
        for path in ("/iserver/accounts", "/portfolio/accounts"):
            with anyio.fail_after(5), pytest.raises(GatewayError) as caught:
                await client.get(path)
            assert caught.value.code == ErrorCode.BROKER_RATE_LIMITED
            assert caught.value.details["retry_after_seconds"] == 600.0
    assert sent == ["/v1/api/iserver/accounts"]


def test_retry_after_reads_seconds_and_http_dates() -> None:
    """RFC 9110 allows both forms; anything else is ignored."""
    assert parse_retry_after("7", now_epoch_s=0) == 7.0
    assert parse_retry_after("Thu, 01 Jan 1970 00:00:30 GMT", now_epoch_s=10) == 20.0
    assert parse_retry_after("soon", now_epoch_s=0) is None
    assert parse_retry_after(None, now_epoch_s=0) is None


def test_pacing_is_on_for_a_real_gateway_by_default_and_can_be_switched_off() -> None:
    """`broker.pacing_enabled` (default true) gives the client a governor with the configured rate."""
    paced = CpapiClient.from_config(BrokerConfig(backend="client_portal_gateway", base_url="https://localhost:5000"))
    assert paced.governor is not None
    unpaced = CpapiClient.from_config(
        BrokerConfig(backend="client_portal_gateway", base_url="https://localhost:5000", pacing_enabled=False)
    )
    assert unpaced.governor is None
