"""OAuth 1.0a (`cpapi_oauth`): the live session token handshake and signed requests, against the simulator.

The simulator plays IBKR: it holds only the public signature key, the DH parameters and the plain access
token secret of a throwaway consumer made per test session, and refuses what IBKR refuses with 401.
"""

import base64
import hashlib
import hmac
import shutil
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import httpx2
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from ibkr_gateway_core.config import GatewayConfig, OAuthConfig
from ibkr_gateway_core.errors import ErrorCode, GatewayError
from ibkr_gateway_cpapi.backend import FAKE_BASE_URL, CpapiBackend, open_oauth_backend
from ibkr_gateway_cpapi.client import CpapiClient
from ibkr_gateway_cpapi.oauth import (
    OAuthSession,
    base_string,
    live_session_token,
    load_credentials,
    normalized_url,
    parse_dh_parameters_pem,
    signed_bytes,
)
from ibkr_gateway_cpapi.serve import serving_simulator
from ibkr_gateway_cpapi.simulator import (
    ConsumerFiles,
    OAuthAuthority,
    OAuthConsumer,
    SimHttpError,
    SimulatorState,
    create_simulator_app,
    write_test_credentials,
)
from ibkr_gateway_cpapi.simulator._oauth import RFC3526_MODP_2048, dh_parameters_pem

pytestmark = pytest.mark.anyio

ACCOUNT = "DU1234567"
AAPL = 265598


@pytest.fixture(scope="module")
def consumer_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[OAuthConsumer, ConsumerFiles]:
    """One throwaway consumer per module (RSA key generation takes a moment)."""
    return write_test_credentials(tmp_path_factory.mktemp("oauth-consumer"))


@pytest.fixture
def consumer(consumer_dir: tuple[OAuthConsumer, ConsumerFiles]) -> OAuthConsumer:
    return consumer_dir[0]


@pytest.fixture
def files(consumer_dir: tuple[OAuthConsumer, ConsumerFiles]) -> ConsumerFiles:
    return consumer_dir[1]


class Clock:
    """Epoch seconds shared by the client and the simulator, moved by hand."""

    def __init__(self) -> None:
        self.now = 1_790_000_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Rig:
    sim: SimulatorState
    authority: OAuthAuthority
    session: OAuthSession
    backend: CpapiBackend


def oauth_config(files: ConsumerFiles, **overrides: object) -> OAuthConfig:
    return OAuthConfig.model_validate({**files.oauth_config(), **overrides})


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def rig(consumer: OAuthConsumer, files: ConsumerFiles, clock: Clock) -> AsyncIterator[Rig]:
    """The real client over the in-process simulator playing IBKR's Web API."""
    sim = SimulatorState()
    authority = OAuthAuthority(consumer, clock=clock)
    sim.use_oauth(authority)
    app = create_simulator_app(sim)
    session = OAuthSession(load_credentials(oauth_config(files)), clock=clock)
    client = CpapiClient(FAKE_BASE_URL, transport_factory=lambda: httpx2.ASGITransport(app=app), oauth=session)
    async with CpapiBackend(client, name="cpapi_oauth", preflight_delays_s=(0.0,) * 5) as backend:
        yield Rig(sim, authority, session, backend)


# -- the protocol's pieces -------------------------------------------------------------------------


def test_the_base_string_is_rfc_5849s() -> None:
    """RFC 5849 §3.4.1.1's own example: query and form pairs, repeated names, encoded `=` and `%`, sorted."""
    params = [
        ("b5", "=%3D"),
        ("a3", "a"),
        ("c@", ""),
        ("a2", "r b"),
        ("c2", ""),
        ("a3", "2 q"),
        ("oauth_consumer_key", "9djdj82h48djs9d2"),
        ("oauth_token", "kkk9d7dh3k39sjv7"),
        ("oauth_signature_method", "HMAC-SHA1"),
        ("oauth_timestamp", "137131201"),
        ("oauth_nonce", "7d8f3e4a"),
    ]
    assert base_string("post", "HTTP://Example.com:80/request?b5=x", params) == (
        "POST&http%3A%2F%2Fexample.com%2Frequest&a2%3Dr%2520b%26a3%3D2%2520q%26a3%3Da%26b5%3D%253D%25253D%26"
        "c%2540%3D%26c2%3D%26oauth_consumer_key%3D9djdj82h48djs9d2%26oauth_nonce%3D7d8f3e4a%26"
        "oauth_signature_method%3DHMAC-SHA1%26oauth_timestamp%3D137131201%26oauth_token%3Dkkk9d7dh3k39sjv7"
    )
    assert normalized_url("https://API.ibkr.com:443/v1/api/tickle?x=1#f") == "https://api.ibkr.com/v1/api/tickle"
    assert normalized_url("https://127.0.0.1:5000/v1/api") == "https://127.0.0.1:5000/v1/api"


def test_the_shared_secret_is_keyed_as_javas_big_integer_bytes() -> None:
    """A leading zero byte exactly when the top bit is set: 0x7f → 7f, 0x80 → 00 80, 0 → 00."""
    assert signed_bytes(0) == b"\x00"
    assert signed_bytes(0x7F) == b"\x7f"
    assert signed_bytes(0x80) == b"\x00\x80"
    assert signed_bytes(0x0100) == b"\x01\x00"
    assert signed_bytes(0xFFFF) == b"\x00\xff\xff"
    prepend = bytes(range(16))
    expected = hmac.new(b"\x00\x80", prepend, hashlib.sha1).digest()
    assert live_session_token(0x80, prepend) == expected


OPENSSL_DHPARAM = """\
-----BEGIN DH PARAMETERS-----
MIIBCAKCAQEAliS6022yq2C6OLwKnUV1MuYVK//eKCV6INRmmqy+8pJBK0mMnIMk
g7iNezCDwmVRE547QdgAoy0uAuKkZ4DK/ShLVHf6jKMLJMfUxnLDvSxo8hGUzayI
MAwGDs8N+ADBDlhXOA61S2268K8vFltpuMsthEunWZdxpaIyHCnXSlssoEXGxNFO
lEw3W3Rp6vIKnuWraeKtygDpOZE8COyYZbOCOFDsoGN8ghralVebWzoqqUxV1bA/
cQlxjD91hiwYbbgLEz0lLw9nE0WzX1a3AhHrshDeatyt+L0ElXmiwnIYHgin7gQ+
n+4HLacbHvOn+W7P5/2gnm4MYrV2jb5GhwIBAg==
-----END DH PARAMETERS-----
"""
"""Public parameters made by `openssl dhparam -out dhparam.pem 2048` (OpenSSL 3.0), as users upload them."""

OPENSSL_DHPARAM_PRIME_HEAD = "9624BAD36DB2AB60BA38BC0A9D457532"
OPENSSL_DHPARAM_PRIME_TAIL = "7FDA09E6E0C62B5768DBE4687"
"""The prime's first and last hex digits as `openssl asn1parse` shows them."""


def test_an_openssl_dhparam_file_reads_as_its_prime_and_generator() -> None:
    prime, generator = parse_dh_parameters_pem(OPENSSL_DHPARAM.encode("ascii"))
    shown = format(prime, "X")
    assert (prime.bit_length(), generator) == (2048, 2)
    assert shown.startswith(OPENSSL_DHPARAM_PRIME_HEAD) and shown.endswith(OPENSSL_DHPARAM_PRIME_TAIL)


def test_dh_parameters_round_trip_through_pem() -> None:
    assert parse_dh_parameters_pem(dh_parameters_pem(RFC3526_MODP_2048, 2)) == (RFC3526_MODP_2048, 2)
    with pytest.raises(ValueError, match="DH PARAMETERS"):
        parse_dh_parameters_pem(b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")


# -- the handshake and reads -----------------------------------------------------------------------


async def test_the_handshake_then_reads_accounts_positions_and_a_snapshot(rig: Rig) -> None:
    """One live session token, the brokerage session opened, then every request signed and accepted."""
    accounts = await rig.backend.list_accounts()
    positions = await rig.backend.positions(ACCOUNT)
    quote = await rig.backend.market_snapshot(AAPL)
    assert [a.account_id for a in accounts] == ["DU1234567", "DU7654321"]
    assert positions
    assert quote.contract_id == AAPL
    assert rig.sim.paths()[:2] == ["POST /oauth/live_session_token", "POST /iserver/auth/ssodh/init"]
    assert rig.authority.tokens_issued == 1
    assert rig.session.tokens_obtained == 1
    assert not rig.authority.refusals
    assert rig.authority.verified == len(rig.sim.paths()) - 1  # every request but the token's own


async def test_session_status_is_usable_after_the_handshake(rig: Rig) -> None:
    status = await rig.backend.session_status()
    assert status.status == "usable"
    assert status.backend == "cpapi_oauth"


async def test_without_the_brokerage_init_iserver_says_no_bridge(consumer: OAuthConsumer, files: ConsumerFiles) -> None:
    """`open_brokerage_session: false`: the token works, `/iserver` needs `ssodh/init` (a session error)."""
    sim = SimulatorState()
    sim.use_oauth(OAuthAuthority(consumer))
    app = create_simulator_app(sim)
    session = OAuthSession(load_credentials(oauth_config(files)), open_brokerage_session=False)
    client = CpapiClient(FAKE_BASE_URL, transport_factory=lambda: httpx2.ASGITransport(app=app), oauth=session)
    async with CpapiBackend(client, name="cpapi_oauth") as backend:
        with pytest.raises(GatewayError) as caught:
            await backend.list_accounts()
        assert caught.value.code == ErrorCode.BROKER_SESSION_REQUIRED
        status = await backend.session_status()
        assert (status.status, status.authenticated) == ("manual_action_required", False)
        assert status.message is not None and "OAuth consumer" in status.message
        assert "Client Portal Gateway" not in (status.user_action or "")
        await backend.open_brokerage_session(compete=False)
        assert [a.account_id for a in await backend.list_accounts()] == ["DU1234567", "DU7654321"]


# -- refusals ----------------------------------------------------------------------------------------


def other_key(path: Path) -> Path:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    path.chmod(0o600)
    return path


async def test_a_wrong_signature_key_is_a_coded_session_error_with_a_user_action(
    consumer: OAuthConsumer, files: ConsumerFiles, tmp_path: Path
) -> None:
    sim = SimulatorState()
    authority = OAuthAuthority(consumer)
    sim.use_oauth(authority)
    app = create_simulator_app(sim)
    wrong = oauth_config(files, signature_key_file=str(other_key(tmp_path / "wrong.pem")))
    client = CpapiClient(
        FAKE_BASE_URL,
        transport_factory=lambda: httpx2.ASGITransport(app=app),
        oauth=OAuthSession(load_credentials(wrong)),
    )
    async with CpapiBackend(client, name="cpapi_oauth") as backend:
        with pytest.raises(GatewayError) as caught:
            await backend.list_accounts()
        status = await backend.session_status()
    error = caught.value
    assert error.code == ErrorCode.BROKER_OAUTH_REJECTED
    assert error.exit_code == 3
    assert "signature key" in error.user_action
    assert "HTTP 401" in error.message
    assert authority.refusals == {"Invalid signature": 2}  # the call and the status check; nothing else sent
    assert authority.tokens_issued == 0
    assert status.status == "manual_action_required"
    assert status.error_code == ErrorCode.BROKER_OAUTH_REJECTED


async def test_a_wrong_encryption_key_never_yields_a_session(
    consumer: OAuthConsumer, files: ConsumerFiles, tmp_path: Path
) -> None:
    """The secret decrypts to the wrong prepend (or not at all): refused at load or by the broker, never used."""
    sim = SimulatorState()
    authority = OAuthAuthority(consumer)
    sim.use_oauth(authority)
    app = create_simulator_app(sim)
    wrong = oauth_config(files, encryption_key_file=str(other_key(tmp_path / "wrong-enc.pem")))
    with pytest.raises(GatewayError) as caught:
        credentials = load_credentials(wrong)
        client = CpapiClient(
            FAKE_BASE_URL, transport_factory=lambda: httpx2.ASGITransport(app=app), oauth=OAuthSession(credentials)
        )
        async with CpapiBackend(client, name="cpapi_oauth") as backend:
            await backend.list_accounts()
    if caught.value.code == ErrorCode.CONFIG_OAUTH_CREDENTIAL_INVALID:
        assert "encryption_key_file" in caught.value.message
    else:  # OpenSSL's implicit rejection: a wrong key decrypts to random bytes, which IBKR refuses
        assert caught.value.code == ErrorCode.BROKER_OAUTH_REJECTED
        assert authority.refusals == {"Invalid signature": 1}
    assert authority.tokens_issued == 0


async def signed_request(rig: Rig, method: str, path: str, params: dict[str, str] | None = None) -> httpx2.Response:
    """Send through the rig's token, bypassing the client (to tamper with the request)."""
    await rig.backend.list_accounts()  # a token exists
    return await raw_send(rig, method, path, params, rig.session.sign(token_of(rig), method, url_of(path), params))


def token_of(rig: Rig) -> bytes:
    token = rig.session._token  # pyright: ignore[reportPrivateUsage]
    assert token is not None
    return token.value


def url_of(path: str) -> str:
    return f"{FAKE_BASE_URL}/v1/api{path}"


async def raw_send(
    rig: Rig, method: str, path: str, params: dict[str, str] | None, headers: dict[str, str]
) -> httpx2.Response:
    app = create_simulator_app(rig.sim)
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app)) as http:
        return await http.request(method, url_of(path), params=params, headers=headers)


async def test_a_signed_request_is_accepted_and_a_tampered_one_refused(rig: Rig) -> None:
    ok = await signed_request(rig, "GET", f"/portfolio/{ACCOUNT}/positions/0")
    assert ok.status_code == 200
    token = token_of(rig)
    headers = rig.session.sign(token, "GET", url_of(f"/portfolio/{ACCOUNT}/positions/0"))
    other_account = await raw_send(rig, "GET", "/portfolio/DU7654321/positions/0", None, headers)
    assert other_account.status_code == 401
    assert other_account.json() == {"error": "Invalid signature"}
    headers = rig.session.sign(token, "GET", url_of("/iserver/marketdata/snapshot"), {"conids": "265598"})
    other_conid = await raw_send(rig, "GET", "/iserver/marketdata/snapshot", {"conids": "8314"}, headers)
    assert other_conid.status_code == 401
    headers = rig.session.sign(token, "GET", url_of("/iserver/account/orders"))
    other_method = await raw_send(rig, "DELETE", "/iserver/account/orders", None, headers)
    assert other_method.status_code in (401, 405)  # no route answers DELETE there; never a 200
    forged = rig.session.sign(b"\x00" * 20, "GET", url_of("/iserver/accounts"))
    assert (await raw_send(rig, "GET", "/iserver/accounts", None, forged)).status_code == 401
    unsigned = await raw_send(rig, "GET", "/iserver/accounts", None, {})
    assert unsigned.status_code == 401
    assert unsigned.json() == {"error": "Missing OAuth authorization"}
    assert rig.authority.refusals["Invalid signature"] >= 3


async def test_a_replayed_nonce_and_a_stale_timestamp_are_refused(rig: Rig, clock: Clock) -> None:
    await rig.backend.list_accounts()
    token = token_of(rig)
    headers = rig.session.sign(token, "GET", url_of("/iserver/accounts"))
    assert (await raw_send(rig, "GET", "/iserver/accounts", None, headers)).status_code == 200
    replay = await raw_send(rig, "GET", "/iserver/accounts", None, headers)
    assert (replay.status_code, replay.json()) == (401, {"error": "Nonce already used"})
    stale = rig.session.sign(token, "GET", url_of("/iserver/accounts"), timestamp=int(clock.now) - 3600)
    answer = await raw_send(rig, "GET", "/iserver/accounts", None, stale)
    assert (answer.status_code, answer.json()) == (401, {"error": "Invalid timestamp"})


async def test_another_access_token_or_realm_is_refused(rig: Rig) -> None:
    await rig.backend.list_accounts()
    headers = rig.session.sign(token_of(rig), "GET", url_of("/iserver/accounts"))
    for field, wrong, reason in (
        ('realm="test_realm"', 'realm="limited_poa"', "Invalid consumer"),
        ('oauth_token="', 'oauth_token="00', "Invalid token"),
    ):
        tampered = {"Authorization": headers["Authorization"].replace(field, wrong)}
        answer = await raw_send(rig, "GET", "/iserver/accounts", None, tampered)
        assert (answer.status_code, answer.json()) == (401, {"error": reason})


# -- expiry ----------------------------------------------------------------------------------------


async def test_a_token_near_its_expiry_is_renewed_before_it_is_used(rig: Rig, clock: Clock) -> None:
    await rig.backend.list_accounts()
    expires_at = rig.session.expires_at
    assert expires_at is not None and expires_at == pytest.approx(clock.now + 24 * 3600, abs=1)
    clock.now = expires_at - 200  # inside the 300 s margin
    await rig.backend.positions(ACCOUNT)
    assert rig.session.tokens_obtained == 2
    assert not rig.authority.refusals  # renewed before IBKR had to refuse anything


async def test_a_token_the_broker_expired_is_renewed_and_the_request_sent_again(rig: Rig) -> None:
    """IBKR ends the token early (a reset): the 401 renews it and the read succeeds, with no error shown."""
    await rig.backend.list_accounts()
    rig.authority.expire_tokens()
    positions = await rig.backend.positions(ACCOUNT)
    assert positions
    assert rig.authority.refusals == {"Live session token expired": 1}
    assert rig.session.tokens_obtained == 2
    assert rig.sim.paths().count("POST /oauth/live_session_token") == 2


async def test_a_gone_answer_renews_the_token_and_sends_the_request_again(rig: Rig) -> None:
    """IBKR's intermittent 410 Gone on OAuth (the token's server-side session is gone): renew, resend once."""
    await rig.backend.list_accounts()
    rig.sim.fail_next(410, {"error": "Gone"}, path_contains="/positions")
    assert await rig.backend.positions(ACCOUNT)
    assert rig.session.tokens_obtained == 2
    rig.sim.fail_next(410, {"error": "Gone"}, times=2, path_contains="/positions")
    with pytest.raises(GatewayError) as caught:
        await rig.backend.positions(ACCOUNT, fresh=True)
    assert caught.value.code == ErrorCode.BROKER_BACKEND_UNAVAILABLE  # twice gone: shown, never a loop
    assert rig.session.tokens_obtained == 3


async def test_concurrent_requests_share_one_renewal(rig: Rig) -> None:
    await rig.backend.list_accounts()
    rig.authority.expire_tokens()
    results: list[object] = []

    async def read() -> None:
        results.append(await rig.backend.positions(ACCOUNT))

    async with anyio.create_task_group() as tasks:
        for _ in range(5):
            tasks.start_soon(read)
    assert len(results) == 5
    assert rig.session.tokens_obtained == 2


async def test_a_request_refused_even_with_a_new_token_is_a_coded_error(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """IBKR keeps answering 401 to signed requests: one renewal, then `BROKER_OAUTH_REJECTED`, no loop."""
    await rig.backend.list_accounts()

    def refuse(*args: object) -> None:
        raise SimHttpError(401, {"error": "Invalid signature"})

    monkeypatch.setattr(rig.authority, "verify", refuse)
    with pytest.raises(GatewayError) as caught:
        await rig.backend.positions(ACCOUNT)
    assert caught.value.code == ErrorCode.BROKER_OAUTH_REJECTED
    assert rig.session.tokens_obtained == 2
    assert rig.sim.paths().count("POST /oauth/live_session_token") == 2


# -- configuration ---------------------------------------------------------------------------------


def base_mapping(files: ConsumerFiles, **oauth: object) -> dict[str, object]:
    return {
        "broker": {
            "backend": "cpapi_oauth",
            "base_url": "https://127.0.0.1:5000",
            "verify_tls": False,
            "oauth": {**files.oauth_config(), **oauth},
        }
    }


def config_error(mapping: dict[str, object]) -> GatewayError:
    with pytest.raises(GatewayError) as caught:
        open_oauth_backend(GatewayConfig.from_mapping(mapping))
    return caught.value


def test_missing_oauth_keys_are_named_at_config_load(files: ConsumerFiles) -> None:
    with pytest.raises(GatewayError) as caught:
        GatewayConfig.from_mapping({"broker": {"backend": "cpapi_oauth"}})
    assert caught.value.code == ErrorCode.CONFIG_OAUTH_CREDENTIAL_MISSING
    for key in ("consumer_key", "signature_key_file", "encryption_key_file", "access_token_secret_env"):
        assert key in caught.value.message
    both = base_mapping(files, access_token_env="SOME_VARIABLE")
    with pytest.raises(GatewayError) as caught:
        GatewayConfig.from_mapping(both)
    assert caught.value.code == ErrorCode.CONFIG_OAUTH_CREDENTIAL_MISSING
    assert "exactly one of broker.oauth.access_token_env" in caught.value.message
    with pytest.raises(GatewayError) as caught:
        GatewayConfig.from_mapping({"broker": {"backend": "fake", "oauth": files.oauth_config()}})
    assert caught.value.code == ErrorCode.CONFIG_INVALID


def test_an_unset_variable_or_a_missing_file_is_credential_missing(
    files: ConsumerFiles, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OAUTH_TEST_SECRET", raising=False)
    unset = base_mapping(files, access_token_secret_file=None, access_token_secret_env="OAUTH_TEST_SECRET")
    error = config_error(unset)
    assert error.code == ErrorCode.CONFIG_OAUTH_CREDENTIAL_MISSING
    assert "OAUTH_TEST_SECRET" in error.message
    for key, value in (
        ("signature_key_file", tmp_path / "absent.pem"),
        ("dh_param_file", tmp_path),  # a directory: cannot be read as a file
    ):
        error = config_error(base_mapping(files, **{key: str(value)}))
        assert error.code == ErrorCode.CONFIG_OAUTH_CREDENTIAL_MISSING
        assert key in error.message
        assert str(tmp_path) not in error.message and str(tmp_path) not in error.user_action


def test_unusable_credentials_are_credential_invalid(files: ConsumerFiles, tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n", encoding="utf-8")
    garbage.chmod(0o600)
    shared = tmp_path / "shared.pem"
    shutil.copy(files.signature_key, shared)
    shared.chmod(0o644)
    small_dh = tmp_path / "small-dh.pem"
    small_dh.write_bytes(dh_parameters_pem(2**127 - 1, 2))
    secret = tmp_path / "secret"
    secret.write_text("not base64 at all!\n", encoding="utf-8")
    secret.chmod(0o600)
    cases = {
        "signature_key_file": ({"signature_key_file": str(garbage)}, "PEM private key"),
        "shared key": ({"signature_key_file": str(shared)}, "readable by other users"),
        "dh": ({"dh_param_file": str(small_dh)}, "2048 bits"),
        "dh text": ({"dh_param_file": str(garbage)}, "Diffie-Hellman parameters"),
        "secret": ({"access_token_secret_file": str(secret)}, "not base64"),
    }
    for name, (override, words) in cases.items():
        error = config_error(base_mapping(files, **override))
        assert error.code == ErrorCode.CONFIG_OAUTH_CREDENTIAL_INVALID, name
        assert words in error.message, name
        assert str(tmp_path) not in error.message, name
    with pytest.raises(GatewayError) as caught:
        GatewayConfig.from_mapping(base_mapping(files, dh_param_file=None, dh_prime="xyz"))
    assert caught.value.code == ErrorCode.CONFIG_INVALID


def test_relative_credential_paths_follow_the_config_file(files: ConsumerFiles, tmp_path: Path) -> None:
    for source in (files.signature_key, files.encryption_key, files.dh_params, files.access_token):
        shutil.copy(source, tmp_path / source.name)
    shutil.copy(files.access_token_secret, tmp_path / "secret")
    config = tmp_path / "gateway.yaml"
    config.write_text(
        "broker:\n"
        "  backend: cpapi_oauth\n"
        "  oauth:\n"
        f"    consumer_key: {files.consumer_key}\n"
        f"    realm: {files.realm}\n"
        "    access_token_file: access_token\n"
        "    access_token_secret_file: secret\n"
        "    signature_key_file: private_signature.pem\n"
        "    encryption_key_file: private_encryption.pem\n"
        "    dh_param_file: dhparam.pem\n",
        encoding="utf-8",
    )
    loaded = GatewayConfig.load(config)
    assert loaded.broker.oauth is not None
    assert loaded.broker.oauth.signature_key_file == tmp_path / "private_signature.pem"
    backend = open_oauth_backend(loaded)
    assert isinstance(backend, CpapiBackend)
    assert backend._client.endpoint == "api.ibkr.com:443"  # pyright: ignore[reportPrivateUsage]


def test_nothing_secret_is_in_a_repr(files: ConsumerFiles) -> None:
    credentials = load_credentials(oauth_config(files))
    session = OAuthSession(credentials)
    shown = repr(credentials) + repr(session) + str(credentials)
    assert files.access_token.read_text(encoding="utf-8").strip() not in shown
    assert credentials.prepend.hex() not in shown
    assert "TESTCONS" in shown


# -- over HTTPS ------------------------------------------------------------------------------------


@pytest.fixture
def https_consumer(consumer: OAuthConsumer) -> Iterator[OAuthAuthority]:
    yield OAuthAuthority(consumer)


async def test_over_https_the_handshake_and_reads_work_as_against_ibkr(
    files: ConsumerFiles, https_consumer: OAuthAuthority
) -> None:
    pytest.importorskip("uvicorn")
    sim = SimulatorState()
    sim.use_oauth(https_consumer)
    with anyio.fail_after(30):
        async with serving_simulator(port=0, state=sim) as base_url:
            mapping = base_mapping(files)
            broker = mapping["broker"]
            assert isinstance(broker, dict)
            broker["base_url"] = base_url
            backend = open_oauth_backend(GatewayConfig.from_mapping(mapping))
            try:
                accounts = await backend.list_accounts()
                positions = await backend.positions(ACCOUNT)
                quote = await backend.market_snapshot(AAPL)
                tickled = await backend.keepalive()
            finally:
                await backend.aclose()
    assert [a.account_id for a in accounts] == ["DU1234567", "DU7654321"]
    assert positions and quote.contract_id == AAPL
    assert tickled.status == "usable"
    assert sim.paths()[:2] == ["POST /oauth/live_session_token", "POST /iserver/auth/ssodh/init"]
    assert https_consumer.tokens_issued == 1 and not https_consumer.refusals


def test_the_test_consumer_files_are_private(files: ConsumerFiles) -> None:
    for path in (files.signature_key, files.encryption_key, files.access_token, files.access_token_secret):
        assert path.stat().st_mode & 0o077 == 0
    secret = base64.b64decode(files.access_token_secret.read_text(encoding="utf-8").strip())
    assert len(secret) == 256  # RSA-2048 ciphertext, never the plain secret


# -- no secret in logs or audit rows -----------------------------------------------------------------


async def test_through_the_gateway_no_token_key_or_signature_reaches_logs_or_audit_rows(
    rig: Rig, files: ConsumerFiles, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Reads, a broker-expired token and a refused call, all at DEBUG: the live session token, the decrypted
    secret, the access token and the OAuth header are in no log record and no audit row."""
    import logging
    import sqlite3

    from ibkr_gateway_core.audit import AuditLog
    from ibkr_gateway_core.gateway import Gateway

    caplog.set_level(logging.DEBUG)
    config = GatewayConfig.from_mapping(base_mapping(files))
    database = tmp_path / "state.sqlite3"
    gateway = Gateway(config, AuditLog.open(database, b"k" * 32), backend_factory=lambda _: rig.backend)
    async with gateway:
        await gateway.call("list_accounts")
        await gateway.call("list_positions", {"account_id": ACCOUNT})
        rig.authority.expire_tokens()
        await gateway.call("market_snapshot", {"contract_id": AAPL})
        rig.authority.consumer = OAuthConsumer(**{**vars_of(rig.authority.consumer), "access_token": "other"})
        rig.authority.expire_tokens()
        with pytest.raises(GatewayError) as caught:
            await gateway.call("list_positions", {"account_id": ACCOUNT})
        assert caught.value.code == ErrorCode.BROKER_OAUTH_REJECTED
    assert rig.session.tokens_obtained == 2
    tokens = [issued.token for issued in rig.authority._issued]  # pyright: ignore[reportPrivateUsage]
    assert len(tokens) == 2
    credentials = load_credentials(oauth_config(files))
    secrets_ = {
        "access token": credentials.access_token,
        "secret hex": credentials.prepend.hex(),
        "secret b64": base64.b64encode(credentials.prepend).decode("ascii"),
        "encrypted secret": files.access_token_secret.read_text(encoding="utf-8").strip()[:60],
        "header": "oauth_signature",
        **{f"token {n} b64": base64.b64encode(t).decode("ascii") for n, t in enumerate(tokens)},
        **{f"token {n} hex": t.hex() for n, t in enumerate(tokens)},
    }
    with sqlite3.connect(database) as db:
        rows = [str(row) for row in db.execute("SELECT * FROM audit_events")]
    assert len(rows) == 4
    everything = "\n".join([caplog.text, *rows, database.read_bytes().decode("latin-1")])
    for name, value in secrets_.items():
        assert value not in everything, f"{name} leaked"


def vars_of(consumer: OAuthConsumer) -> dict[str, object]:
    return {name: getattr(consumer, name) for name in OAuthConsumer.__dataclass_fields__}


# -- a broker that answers the handshake badly -------------------------------------------------------


P = RFC3526_MODP_2048
FUTURE_MS = 1_790_000_000_000 + 86_400_000


@pytest.mark.parametrize(
    ("answer", "code"),
    [
        ([], ErrorCode.BROKER_RESPONSE_INVALID),
        ({}, ErrorCode.BROKER_RESPONSE_INVALID),
        (
            {
                "diffie_hellman_response": "zz",
                "live_session_token_signature": "00",
                "live_session_token_expiration": FUTURE_MS,
            },
            ErrorCode.BROKER_RESPONSE_INVALID,
        ),
        (
            {
                "diffie_hellman_response": "1",
                "live_session_token_signature": "00",
                "live_session_token_expiration": FUTURE_MS,
            },
            ErrorCode.BROKER_RESPONSE_INVALID,
        ),
        (
            {
                "diffie_hellman_response": format(P - 1, "x"),
                "live_session_token_signature": "00",
                "live_session_token_expiration": FUTURE_MS,
            },
            ErrorCode.BROKER_RESPONSE_INVALID,
        ),
        (
            {
                "diffie_hellman_response": "abc",
                "live_session_token_signature": "\u00e9",
                "live_session_token_expiration": FUTURE_MS,
            },
            ErrorCode.BROKER_RESPONSE_INVALID,
        ),
        (
            {
                "diffie_hellman_response": "abc",
                "live_session_token_signature": "00",
                "live_session_token_expiration": True,
            },
            ErrorCode.BROKER_RESPONSE_INVALID,
        ),
        (
            {
                "diffie_hellman_response": "abc",
                "live_session_token_signature": "00",
                "live_session_token_expiration": "soon",
            },
            ErrorCode.BROKER_RESPONSE_INVALID,
        ),
        (
            {
                "diffie_hellman_response": "abc",
                "live_session_token_signature": "00",
                "live_session_token_expiration": FUTURE_MS,
            },
            ErrorCode.BROKER_OAUTH_REJECTED,
        ),
    ],
)
async def test_a_malformed_handshake_answer_is_a_coded_error(
    files: ConsumerFiles, clock: Clock, answer: object, code: ErrorCode
) -> None:
    """Whatever the broker sends back for the token, the caller gets a stable code, never a crash or a session."""

    def handler(request: httpx2.Request) -> httpx2.Response:
        assert request.url.path == "/v1/api/oauth/live_session_token"
        return httpx2.Response(200, json=answer)

    session = OAuthSession(load_credentials(oauth_config(files)), clock=clock)
    http = httpx2.AsyncClient(transport=httpx2.MockTransport(handler))
    async with CpapiClient("https://127.0.0.1:5000", http_client=http, oauth=session) as client:
        with pytest.raises(GatewayError) as caught:
            await client.get("/iserver/accounts")
    await http.aclose()
    assert caught.value.code == code
    assert session.expires_at is None


async def test_a_signature_the_simulator_cannot_read_is_refused(rig: Rig) -> None:
    await rig.backend.list_accounts()
    headers = rig.session.sign(token_of(rig), "GET", url_of("/iserver/accounts"))
    start = headers["Authorization"].index('oauth_signature="') + len('oauth_signature="')
    hostile = headers["Authorization"][:start] + "%C3%A9" + headers["Authorization"][start:]
    answer = await raw_send(rig, "GET", "/iserver/accounts", None, {"Authorization": hostile})
    assert (answer.status_code, answer.json()) == (401, {"error": "Invalid signature"})
    for broken in ("OAuth ", 'OAuth realm="test_realm", oauth_nonce', "Bearer abc", 'OAuth a="1", a="2"'):
        answer = await raw_send(rig, "GET", "/iserver/accounts", None, {"Authorization": broken})
        assert answer.status_code == 401, broken


# -- the session supervisor in OAuth mode ------------------------------------------------------------


async def test_the_supervisor_tickles_signed_and_reopens_a_closed_brokerage_session(rig: Rig, clock: Clock) -> None:
    """After IBKR's nightly reset (brokerage closed) and near the token's expiry, one supervisor check renews
    the token, re-opens the brokerage session without competing, and reports the session usable."""
    from ibkr_gateway_cpapi.supervisor import SessionSupervisor

    await rig.backend.list_accounts()
    rig.sim.session.log_in_sso_only()  # the reset: still logged in, the brokerage session closed
    expires_at = rig.session.expires_at
    assert expires_at is not None
    clock.now = expires_at - 10
    supervisor = SessionSupervisor(rig.backend, reopen=True)
    with anyio.fail_after(10):
        status = await supervisor.check()
    assert status.status == "usable"
    assert rig.session.tokens_obtained == 2
    assert "POST /tickle" in rig.sim.paths()
    assert not rig.authority.refusals
    assert [a.account_id for a in await rig.backend.list_accounts()] == ["DU1234567", "DU7654321"]
