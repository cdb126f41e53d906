"""The client a config builds carries every broker setting: URL, timeout, size cap, TLS check, CA file, pacing."""

from pathlib import Path

import httpx2
import pytest
from ibkr_gateway_core.config import BrokerConfig
from ibkr_gateway_core.errors import ErrorCode, GatewayError
from ibkr_gateway_cpapi.client import CpapiClient
from ibkr_gateway_cpapi.pacing import GLOBAL_KEY
from ibkr_gateway_cpapi.simulator import write_test_credentials

pytestmark = pytest.mark.anyio


def test_every_setting_reaches_the_client(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("not read until the first request\n", encoding="utf-8")
    broker = BrokerConfig.model_validate(
        {
            "backend": "client_portal_gateway",
            "base_url": "https://gateway.internal:5000",
            "timeout_seconds": 7.5,
            "max_response_bytes": 4096,
            "ca_file": str(ca),
            "pacing_requests_per_second": 4,
        }
    )
    client = CpapiClient.from_config(broker)
    assert client.endpoint == "gateway.internal:5000"
    settings = (client._timeout_s, client._max_response_bytes, client._verify_tls, client._ca_file)  # pyright: ignore[reportPrivateUsage]
    assert settings == (7.5, 4096, True, ca)
    assert client.governor is not None


def test_tls_off_for_localhost_and_pacing_off_reach_the_client() -> None:
    broker = BrokerConfig.model_validate(
        {
            "backend": "client_portal_gateway",
            "base_url": "https://127.0.0.1:5000",
            "verify_tls": False,
            "pacing_enabled": False,
        }
    )
    client = CpapiClient.from_config(broker)
    assert client._verify_tls is False  # pyright: ignore[reportPrivateUsage]
    assert client.governor is None


def test_a_config_without_a_url_is_refused_with_its_code() -> None:
    with pytest.raises(GatewayError) as caught:
        CpapiClient.from_config(BrokerConfig.model_validate({"backend": "client_portal_gateway"}))
    assert caught.value.code is ErrorCode.CONFIG_MISSING_BROKER_BASE_URL
    assert "base_url" in caught.value.message


async def test_the_given_http_client_is_used_and_the_size_cap_holds() -> None:
    seen: list[str] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(request.url.path)
        return httpx2.Response(200, content=b'{"x": "' + b"a" * 5000 + b'"}', headers={"content-length": "5009"})

    broker = BrokerConfig.model_validate(
        {"backend": "client_portal_gateway", "base_url": "https://127.0.0.1:5000", "max_response_bytes": 4096}
    )
    async with httpx2.AsyncClient(transport=httpx2.MockTransport(handler)) as http:
        client = CpapiClient.from_config(broker, http_client=http)
        with pytest.raises(GatewayError) as caught:
            await client.get("/portfolio/accounts")
    assert caught.value.code is ErrorCode.BROKER_RESPONSE_INVALID
    assert seen and seen[-1].endswith("/portfolio/accounts")


def test_an_oauth_config_gives_the_client_its_signing_session_and_pacing(tmp_path: Path) -> None:
    _, files = write_test_credentials(tmp_path)
    broker = BrokerConfig.model_validate(
        {
            "backend": "cpapi_oauth",
            "base_url": "https://127.0.0.1:5000",
            "oauth": files.oauth_config(),
            "pacing_requests_per_second": 4,
            "pacing_max_wait_seconds": 2.5,
            "pacing_penalty_seconds": 120,
        }
    )
    client = CpapiClient.from_config(broker)
    assert client._oauth is not None  # pyright: ignore[reportPrivateUsage]
    governor = client.governor
    assert governor is not None
    paced = (governor._windows[GLOBAL_KEY].limit, governor._max_wait_s, governor._penalty_s)  # pyright: ignore[reportPrivateUsage]
    assert paced == (4, 2.5, 120.0)
    plain = CpapiClient.from_config(
        BrokerConfig.model_validate({"backend": "client_portal_gateway", "base_url": "https://127.0.0.1:5000"})
    )
    assert plain._oauth is None  # pyright: ignore[reportPrivateUsage]
