"""The simulator over real HTTPS on loopback, as `ibkr-agent simulator serve` runs it."""

import statistics
import time
from decimal import Decimal
from pathlib import Path

import anyio
import httpx2
import pytest
from dirty_equals import IsStr
from ibkr_gateway_core.config import GatewayConfig
from ibkr_gateway_core.errors import ErrorCode, GatewayError
from ibkr_gateway_core.orders import OrderTicket
from ibkr_gateway_cpapi.backend import open_client_portal_backend
from ibkr_gateway_cpapi.serve import serve_simulator, serving_simulator
from ibkr_gateway_cpapi.simulator import SimulatorState

pytestmark = [pytest.mark.anyio]

pytest.importorskip("uvicorn")


async def test_https_simulator_on_a_free_port_serves_accounts_with_verify_tls_off() -> None:
    """The printed base URL works as broker.base_url with verify_tls false (the localhost rule)."""
    sim = SimulatorState()
    with anyio.fail_after(20):
        async with serving_simulator(port=0, state=sim) as base_url:
            assert base_url == IsStr(regex=r"^https://127\.0\.0\.1:\d+$")
            backend = open_client_portal_backend(GatewayConfig.client_portal(base_url, verify_tls=False))
            try:
                accounts = await backend.list_accounts()
                status = await backend.session_status()
            finally:
                await backend.aclose()
    assert [a.account_id for a in accounts] == ["DU1234567", "DU7654321"]
    assert status.status == "usable"
    assert "GET /iserver/accounts" in sim.paths()


async def test_small_answers_are_not_held_back_by_nagle_and_delayed_acks() -> None:
    """Each small answer comes back at once over a kept-alive connection, not after a 40 ms delayed ACK.

    uvicorn writes an answer's head and body separately; without TCP_NODELAY on the accepted socket the
    body waits for the client's delayed ACK (40 ms on Linux), so every small CPAPI answer took ~44 ms.
    """
    async with serving_simulator() as base_url:
        async with httpx2.AsyncClient(verify=False, timeout=10) as http:
            await http.post(base_url + "/v1/api/iserver/auth/status")  # connect and handshake once
            times: list[float] = []
            for _ in range(15):
                started = time.perf_counter()
                answer = await http.post(base_url + "/v1/api/iserver/auth/status")
                times.append(time.perf_counter() - started)
                assert answer.status_code == 200
    assert statistics.median(times) < 0.030, f"median {statistics.median(times) * 1000:.1f} ms per small answer"


async def test_the_self_signed_certificate_is_refused_when_tls_is_verified() -> None:
    """It is really HTTPS with a self-signed certificate: a verifying client cannot connect."""
    with anyio.fail_after(20):
        async with serving_simulator() as base_url:
            backend = open_client_portal_backend(GatewayConfig.client_portal(base_url))
            try:
                with pytest.raises(GatewayError) as caught:
                    await backend.list_accounts()
            finally:
                await backend.aclose()
    assert caught.value.code == ErrorCode.BROKER_BACKEND_UNAVAILABLE


async def test_serve_simulator_announces_the_url_and_stops_when_cancelled() -> None:
    """The CLI entry: on_ready gets the URL once listening; cancelling stops the server."""
    announced: list[str] = []
    ready = anyio.Event()

    def on_ready(url: str) -> None:
        announced.append(url)
        ready.set()

    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: serve_simulator(port=0, on_ready=on_ready))
            await ready.wait()
            backend = open_client_portal_backend(GatewayConfig.client_portal(announced[0], verify_tls=False))
            try:
                assert (await backend.keepalive()).status == "usable"
            finally:
                await backend.aclose()
            tg.cancel_scope.cancel()
    assert announced == [IsStr(regex=r"^https://127\.0\.0\.1:\d+$")]


async def test_serving_refuses_a_non_loopback_host() -> None:
    """The simulator has no authentication of its own, so it never listens beyond loopback."""
    with pytest.raises(GatewayError) as caught:
        async with serving_simulator(host="0.0.0.0"):
            pass
    assert caught.value.code == ErrorCode.INPUT_INVALID_ARGUMENT


async def test_a_dropped_answer_over_a_real_socket_is_an_unknown_outcome() -> None:
    """Over uvicorn the connection closes mid-response; the client says BROKER_OUTCOME_UNKNOWN, the order exists."""
    sim = SimulatorState()
    sim.drop_response_after_accept()
    ticket = OrderTicket(
        account_id="DU1234567",
        contract_id=265598,
        symbol="AAPL",
        asset_class="stock",
        currency="USD",
        side="buy",
        quantity=Decimal(1),
        order_type="limit",
        limit_price=Decimal(210),
    )
    with anyio.fail_after(20):
        async with serving_simulator(port=0, state=sim) as base_url:
            backend = open_client_portal_backend(GatewayConfig.client_portal(base_url, verify_tls=False))
            try:
                with pytest.raises(GatewayError) as caught:
                    await backend.order_writer().place(
                        ticket, client_order_id="k-net", confirm=lambda question: True, max_rounds=5
                    )
                found = await backend.order_writer().find_by_client_order_id("DU1234567", "k-net")
            finally:
                await backend.aclose()
    assert caught.value.code == ErrorCode.BROKER_OUTCOME_UNKNOWN
    assert found is not None and [o.c_oid for o in sim.placements] == ["k-net"]


async def test_a_gateway_certificate_from_a_private_ca_is_trusted_through_broker_ca_file(tmp_path: Path) -> None:
    """A gateway on another host (e.g. in a container) with its own CA: verify_tls stays on, ca_file names the CA."""
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    chain, key, ca_pem = tmp_path / "chain.pem", tmp_path / "key.pem", tmp_path / "ca.pem"
    leaf.private_key_pem.write_to_path(str(key))
    chain.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    ca.cert_pem.write_to_path(str(ca_pem))
    with anyio.fail_after(20):
        async with serving_simulator(certificate=(chain, key)) as base_url:
            trusting = GatewayConfig.from_mapping(
                {"broker": {"backend": "client_portal_gateway", "base_url": base_url, "ca_file": str(ca_pem)}}
            )
            backend = open_client_portal_backend(trusting)
            try:
                accounts = await backend.list_accounts()
            finally:
                await backend.aclose()
            system_trust = open_client_portal_backend(GatewayConfig.client_portal(base_url))
            try:
                with pytest.raises(GatewayError) as untrusted:
                    await system_trust.list_accounts()
            finally:
                await system_trust.aclose()
    assert [a.account_id for a in accounts] == ["DU1234567", "DU7654321"]
    assert untrusted.value.code == ErrorCode.BROKER_BACKEND_UNAVAILABLE


async def test_an_unreadable_ca_file_is_a_config_error_that_names_no_path(tmp_path: Path) -> None:
    """A missing or non-PEM CA file fails closed with CONFIG_INVALID; the message keeps the local path private."""
    (tmp_path / "not-pem.pem").write_text("hello", encoding="utf-8")
    for ca_file in (tmp_path / "missing.pem", tmp_path / "not-pem.pem"):
        config = GatewayConfig.from_mapping(
            {"broker": {"backend": "client_portal_gateway", "base_url": "https://127.0.0.1:1", "ca_file": str(ca_file)}}
        )
        backend = open_client_portal_backend(config)
        try:
            with pytest.raises(GatewayError) as caught:
                await backend.list_accounts()
        finally:
            await backend.aclose()
        assert caught.value.code == ErrorCode.CONFIG_INVALID
        assert str(tmp_path) not in caught.value.message


def test_ca_file_with_verification_off_is_refused_and_a_relative_path_follows_the_config_file(tmp_path: Path) -> None:
    """A CA that would never be used is a contradiction; a relative ca_file is read next to the config file."""
    with pytest.raises(GatewayError) as caught:
        GatewayConfig.from_mapping(
            {"broker": {"base_url": "https://127.0.0.1:5000", "verify_tls": False, "ca_file": "ca.pem"}}
        )
    assert caught.value.code == ErrorCode.CONFIG_INVALID
    path = tmp_path / "gateway.yaml"
    path.write_text("broker:\n  base_url: https://10.0.0.5:5000\n  ca_file: certs/ca.pem\n", encoding="utf-8")
    assert GatewayConfig.load(path).broker.ca_file == tmp_path / "certs" / "ca.pem"
