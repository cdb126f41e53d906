"""The remote MCP server's token checks and HTTP edges, case by case (reliability plan R1–R4, R6, R7, R9, R11, R13).

The verifier is checked in process against a `FakeIssuer` app on an ASGI transport, with injected clocks; the
HTTP cases run the whole app under uvicorn on loopback, as `test_http_app.py` does.
"""

import json
import socket
import ssl
import statistics
import time
import warnings
from collections.abc import AsyncGenerator, AsyncIterator, Callable, MutableMapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
import trustme
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from ibkr_gateway_core.config import GatewayConfig
from ibkr_gateway_core.gateway import Gateway
from ibkr_gateway_core.scopes import Scope
from ibkr_gateway_mcp.auth import (
    KEYS_RETRY_AFTER_S,
    MAX_TOKEN_CHARS,
    Denial,
    DenyReason,
    JwksTokenVerifier,
    VerifiedToken,
    VerifierSettings,
)
from ibkr_gateway_mcp.catalog import visible_tools
from ibkr_gateway_mcp.http_app import RemoteMcpApp, verifier_settings
from ibkr_gateway_mcp.remote import serve_http
from ibkr_gateway_mcp.testing import FakeIssuer, loopback_socket, serve_loopback
from joserfc.jwk import ECKey, RSAKey
from joserfc.jws import JWSRegistry
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

pytestmark = pytest.mark.anyio

ISSUER = "https://issuer.example"
"""The in-process issuer's URL; never dialled, the verifier's client runs the issuer app on an ASGI transport."""
RESOURCE = "https://gw.example/mcp"
LEEWAY = 30
RSA_KEY = RSAKey.generate_key(2048, parameters={"kid": "key-1", "use": "sig"}, private=True)
ATTACKER_KEY = RSAKey.generate_key(2048, parameters={"kid": "attacker"}, private=True)
with warnings.catch_warnings():  # joserfc warns about short keys; this one stays small to fit a `jwk` header
    warnings.simplefilter("ignore")
    SMALL_ATTACKER_KEY = RSAKey.generate_key(1024, parameters={"kid": "attacker-small"}, private=True)
"""An attacker key small enough to ride in a `jwk` header under joserfc's 512-byte header limit."""
EC_KEY = ECKey.generate_key("P-256", parameters={"kid": "ec-1", "use": "sig"}, private=True)
ATTACKER_URL = "https://attacker.example/jwks"
"""A key-set URL an attacker names in `jku`/`x5u`; the verifier must never fetch it."""
GENERIC = "The access token is not valid for this server."
TOKEN_KEY_ENV = "IBKR_TEST_REMOTE_TOKEN_KEY"
TOKEN_KEY = "k" * 40
INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
}
MCP_HEADERS = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
PING = {"jsonrpc": "2.0", "id": 2, "method": "ping"}


@dataclass
class Clock:
    """A settable clock, for both the wall clock and the monotonic one."""

    now: float

    def __call__(self) -> float:
        return self.now


@dataclass(frozen=True)
class Minting:
    """What a corpus case needs to build its token."""

    issuer: FakeIssuer
    resource: str
    now: float

    def mint(self, **kwargs: Any) -> str:
        kwargs.setdefault("audience", self.resource)
        return self.issuer.mint(now=self.now, **kwargs)

    def claims(self, **extra: Any) -> dict[str, Any]:
        return {
            "iss": self.issuer.url,
            "aud": self.resource,
            "sub": "agent-1",
            "scope": "ibkr:accounts:read",
            "iat": int(self.now),
            "exp": int(self.now) + 300,
        } | extra


def _b64(data: bytes) -> str:
    import base64

    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _compact(header: dict[str, Any], payload: bytes, signature: bytes) -> str:
    return f"{_b64(json.dumps(header).encode())}.{_b64(payload)}.{_b64(signature)}"


def _signed(header: dict[str, Any], payload: bytes, key: RSAKey | ECKey, alg: str = "RS256") -> str:
    """A JWS signed with `key` under `alg`, whatever the header says (joserfc refuses to write odd headers)."""
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(payload)}".encode()
    signature = JWSRegistry.algorithms[alg].sign(signing_input, key)
    return f"{signing_input.decode()}.{_b64(signature)}"


def _hmac_signed(alg_header: str, secret: bytes, m: Minting) -> str:
    import hashlib
    import hmac

    header = {"alg": alg_header, "kid": RSA_KEY.kid, "typ": "at+jwt"}
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(m.claims()).encode())}".encode()
    return f"{signing_input.decode()}.{_b64(hmac.new(secret, signing_input, hashlib.sha256).digest())}"


def _raw_claims(m: Minting, payload: str) -> str:
    """Issuer-signed claims written as raw JSON text (for `Infinity`, `NaN` and non-objects)."""
    return _signed({"alg": "RS256", "kid": RSA_KEY.kid, "typ": "at+jwt"}, payload.encode(), RSA_KEY)


def _tampered(m: Minting) -> str:
    head, _, signature = m.mint().split(".")
    return f"{head}.{_b64(json.dumps(m.claims(scope='ibkr:orders:live:submit')).encode())}.{signature}"


def _public_der() -> bytes:
    return RSA_KEY.public_key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def _public_pkcs1_der() -> bytes:
    return RSA_KEY.public_key.public_bytes(Encoding.DER, PublicFormat.PKCS1)


Build = Callable[[Minting], str]


@dataclass(frozen=True)
class Case:
    build: Build
    reason: DenyReason
    over_http: bool = True
    """False for tokens uvicorn refuses before the app sees them (oversize heads)."""


def _case(build: Build, reason: DenyReason, case_id: str, *, over_http: bool = True) -> Any:
    return pytest.param(Case(build, reason, over_http), id=case_id)


FUTURE = LEEWAY + 1
"""Seconds beyond the leeway: just out of bounds."""

REFUSED = [
    # --- shape
    _case(lambda m: "not-a-jwt", DenyReason.TOKEN_MALFORMED, "garbage"),
    _case(lambda m: ".".join(m.mint().split(".")[:2]), DenyReason.TOKEN_MALFORMED, "two-segments"),
    _case(lambda m: m.mint() + ".x", DenyReason.TOKEN_MALFORMED, "four-segments"),
    _case(lambda m: m.mint().rsplit(".", 1)[0] + ".", DenyReason.TOKEN_MALFORMED, "signature-stripped"),
    _case(lambda m: "%%%." + m.mint().split(".", 1)[1], DenyReason.TOKEN_MALFORMED, "header-not-base64"),
    _case(lambda m: _b64(b"[1]") + "." + m.mint().split(".", 1)[1], DenyReason.TOKEN_MALFORMED, "header-not-object"),
    _case(
        lambda m: m.mint(claims={"pad": "x" * MAX_TOKEN_CHARS}),
        DenyReason.TOKEN_MALFORMED,
        "oversize",
        over_http=False,
    ),
    _case(lambda m: _raw_claims(m, "[1, 2]"), DenyReason.TOKEN_MALFORMED, "signed-payload-not-object"),
    _case(_tampered, DenyReason.BAD_SIGNATURE, "tampered-payload"),
    _case(
        lambda m: _signed(
            {"alg": "RS256", "kid": RSA_KEY.kid, "x-pad": "x" * 600}, json.dumps(m.claims()).encode(), RSA_KEY
        ),
        DenyReason.TOKEN_MALFORMED,
        "header-over-512-bytes",
    ),
    # --- algorithm and key confusion (RFC 8725; PyJWT CVE-2022-29217, Authlib CVE-2024-37568)
    _case(
        lambda m: _compact({"alg": "none"}, json.dumps(m.claims()).encode(), b""),
        DenyReason.TOKEN_MALFORMED,
        "alg-none-unsigned",
    ),
    _case(
        lambda m: _compact({"alg": "none"}, json.dumps(m.claims()).encode(), b"x"),
        DenyReason.ALGORITHM_NOT_ALLOWED,
        "alg-none",
    ),
    _case(
        lambda m: _compact({"alg": "None"}, json.dumps(m.claims()).encode(), b"x"),
        DenyReason.ALGORITHM_NOT_ALLOWED,
        "alg-None",
    ),
    _case(
        lambda m: _compact({"alg": "NONE"}, json.dumps(m.claims()).encode(), b"x"),
        DenyReason.ALGORITHM_NOT_ALLOWED,
        "alg-NONE",
    ),
    _case(
        lambda m: _signed({"kid": RSA_KEY.kid}, json.dumps(m.claims()).encode(), RSA_KEY),
        DenyReason.ALGORITHM_NOT_ALLOWED,
        "alg-missing",
    ),
    _case(
        lambda m: _hmac_signed("HS256", RSA_KEY.as_pem(private=False), m),
        DenyReason.ALGORITHM_NOT_ALLOWED,
        "hs256-with-pem-public-key",
    ),
    _case(
        lambda m: _hmac_signed("HS256", _public_der(), m), DenyReason.ALGORITHM_NOT_ALLOWED, "hs256-with-der-public-key"
    ),
    _case(
        lambda m: _hmac_signed("HS256", _public_pkcs1_der(), m),
        DenyReason.ALGORITHM_NOT_ALLOWED,
        "hs256-with-pkcs1-der-public-key",
    ),
    _case(
        lambda m: _hmac_signed("HS256", json.dumps(RSA_KEY.as_dict(private=False)).encode(), m),
        DenyReason.ALGORITHM_NOT_ALLOWED,
        "hs256-with-jwk-json",
    ),
    _case(
        lambda m: _hmac_signed("RS256", RSA_KEY.as_pem(private=False), m),
        DenyReason.BAD_SIGNATURE,
        "rs256-header-hmac-signature",
    ),
    _case(
        lambda m: m.mint(header={"alg": "ES256", "kid": EC_KEY.kid}, key=EC_KEY),
        DenyReason.ALGORITHM_NOT_ALLOWED,
        "es256-not-allowlisted",
    ),
    _case(lambda m: m.mint(header={"alg": "RS512"}), DenyReason.ALGORITHM_NOT_ALLOWED, "rs512-not-allowlisted"),
    _case(
        lambda m: m.mint(key=ATTACKER_KEY, header={"kid": RSA_KEY.kid}),
        DenyReason.BAD_SIGNATURE,
        "attacker-key-with-real-kid",
    ),
    # --- headers that must be refused or ignored (RFC 7515 crit; CVE-2018-0114 class)
    _case(
        lambda m: _signed(
            {"alg": "RS256", "kid": RSA_KEY.kid, "crit": ["urn:x"], "urn:x": 1},
            json.dumps(m.claims()).encode(),
            RSA_KEY,
        ),
        DenyReason.UNSUPPORTED_HEADER,
        "crit-unknown",
    ),
    _case(lambda m: m.mint(header={"crit": []}), DenyReason.UNSUPPORTED_HEADER, "crit-empty"),
    _case(
        lambda m: _signed(
            {"alg": "RS256", "kid": RSA_KEY.kid, "b64": False, "crit": ["b64"]},
            json.dumps(m.claims()).encode(),
            RSA_KEY,
        ),
        DenyReason.UNSUPPORTED_HEADER,
        "b64-unencoded-payload",
    ),
    _case(
        lambda m: m.mint(key=SMALL_ATTACKER_KEY, header={"jwk": SMALL_ATTACKER_KEY.as_dict(private=False)}),
        DenyReason.UNKNOWN_KEY,
        "jwk-header-attacker-kid",
    ),
    _case(
        lambda m: m.mint(
            key=SMALL_ATTACKER_KEY, header={"kid": RSA_KEY.kid, "jwk": SMALL_ATTACKER_KEY.as_dict(private=False)}
        ),
        DenyReason.BAD_SIGNATURE,
        "jwk-header-real-kid",
    ),
    _case(
        lambda m: m.mint(
            key=SMALL_ATTACKER_KEY, header={"kid": None, "jwk": SMALL_ATTACKER_KEY.as_dict(private=False)}
        ),
        DenyReason.BAD_SIGNATURE,
        "jwk-header-no-kid",
    ),
    _case(lambda m: m.mint(key=ATTACKER_KEY, header={"jku": ATTACKER_URL}), DenyReason.UNKNOWN_KEY, "jku-header"),
    _case(
        lambda m: m.mint(key=ATTACKER_KEY, header={"kid": RSA_KEY.kid, "x5u": ATTACKER_URL}),
        DenyReason.BAD_SIGNATURE,
        "x5u-header",
    ),
    _case(
        lambda m: m.mint(key=ATTACKER_KEY, header={"kid": "../../../../dev/null"}),
        DenyReason.UNKNOWN_KEY,
        "kid-path-traversal",
    ),
    _case(lambda m: m.mint(key=ATTACKER_KEY, header={"kid": "' OR '1'='1"}), DenyReason.UNKNOWN_KEY, "kid-sql"),
    _case(
        lambda m: _signed({"alg": "RS256", "kid": 7}, json.dumps(m.claims()).encode(), RSA_KEY),
        DenyReason.TOKEN_MALFORMED,
        "kid-not-a-string",
    ),
    # --- token type (RFC 9068; RFC 8725 cross-JWT confusion)
    _case(lambda m: m.mint(header={"typ": "dpop+jwt"}), DenyReason.WRONG_TOKEN_TYPE, "typ-dpop"),
    _case(lambda m: m.mint(header={"typ": "logout+jwt"}), DenyReason.WRONG_TOKEN_TYPE, "typ-logout"),
    _case(lambda m: m.mint(header={"typ": "secevent+jwt"}), DenyReason.WRONG_TOKEN_TYPE, "typ-secevent"),
    _case(lambda m: m.mint(header={"typ": "JOSE"}), DenyReason.WRONG_TOKEN_TYPE, "typ-jose"),
    _case(
        lambda m: _signed({"alg": "RS256", "kid": RSA_KEY.kid, "typ": 1}, json.dumps(m.claims()).encode(), RSA_KEY),
        DenyReason.WRONG_TOKEN_TYPE,
        "typ-not-a-string",
    ),
    # --- issuer: exact match only (PyJWT CVE-2024-53861)
    _case(lambda m: m.mint(claims={"iss": m.issuer.url[:-1]}), DenyReason.WRONG_ISSUER, "iss-prefix"),
    _case(lambda m: m.mint(claims={"iss": m.issuer.url + "0"}), DenyReason.WRONG_ISSUER, "iss-suffix"),
    _case(
        lambda m: m.mint(claims={"iss": m.issuer.url + ".evil.example"}),
        DenyReason.WRONG_ISSUER,
        "iss-subdomain-suffix",
    ),
    _case(lambda m: m.mint(claims={"iss": m.issuer.url + "/"}), DenyReason.WRONG_ISSUER, "iss-trailing-slash"),
    _case(
        lambda m: m.mint(claims={"iss": "https://evil.example/" + m.issuer.url}),
        DenyReason.WRONG_ISSUER,
        "iss-embedding",
    ),
    _case(lambda m: m.mint(claims={"iss": m.issuer.url.upper()}), DenyReason.WRONG_ISSUER, "iss-uppercase"),
    _case(lambda m: m.mint(claims={"iss": [m.issuer.url]}), DenyReason.WRONG_ISSUER, "iss-list"),
    _case(lambda m: m.mint(claims={"iss": None}), DenyReason.WRONG_ISSUER, "iss-missing"),
    # --- audience (RFC 8707; unlike the SDK's sample verifier, which accepts any audience)
    _case(lambda m: m.mint(audience="https://other.example/mcp"), DenyReason.WRONG_AUDIENCE, "aud-other-resource"),
    _case(
        lambda m: m.mint(audience=m.resource.rsplit("/", 1)[0] + "/"), DenyReason.WRONG_AUDIENCE, "aud-parent-prefix"
    ),
    _case(lambda m: m.mint(audience=m.resource + "/tools"), DenyReason.WRONG_AUDIENCE, "aud-child-path"),
    _case(lambda m: m.mint(audience=m.issuer.url), DenyReason.WRONG_AUDIENCE, "aud-the-issuer"),
    _case(
        lambda m: m.mint(audience=["https://other.example/mcp", "test-client"]),
        DenyReason.WRONG_AUDIENCE,
        "aud-list-without-us",
    ),
    _case(lambda m: m.mint(claims={"aud": None}), DenyReason.WRONG_AUDIENCE, "aud-missing"),
    _case(lambda m: m.mint(claims={"aud": 1}), DenyReason.WRONG_AUDIENCE, "aud-not-a-string"),
    # --- time claims, leeway 30 s
    _case(lambda m: m.mint(claims={"exp": None}), DenyReason.MISSING_EXPIRY, "exp-missing"),
    _case(lambda m: m.mint(claims={"exp": str(int(m.now) + 300)}), DenyReason.MISSING_EXPIRY, "exp-a-string"),
    _case(lambda m: m.mint(claims={"exp": True}), DenyReason.MISSING_EXPIRY, "exp-a-boolean"),
    _case(
        lambda m: _raw_claims(m, json.dumps(m.claims(exp=0))[:-1] + ', "exp": Infinity}'),
        DenyReason.MISSING_EXPIRY,
        "exp-infinity",
    ),
    _case(
        lambda m: _raw_claims(m, json.dumps(m.claims(exp=0))[:-1] + ', "exp": NaN}'),
        DenyReason.MISSING_EXPIRY,
        "exp-nan",
    ),
    _case(lambda m: m.mint(claims={"exp": 10**400}), DenyReason.MISSING_EXPIRY, "exp-beyond-float"),
    _case(lambda m: m.mint(claims={"exp": int(m.now) - FUTURE}), DenyReason.EXPIRED, "exp-just-beyond-leeway"),
    _case(lambda m: m.mint(claims={"nbf": int(m.now) + FUTURE}), DenyReason.NOT_YET_VALID, "nbf-just-beyond-leeway"),
    _case(lambda m: _raw_claims(m, json.dumps(m.claims())[:-1] + ', "nbf": NaN}'), DenyReason.NOT_YET_VALID, "nbf-nan"),
    _case(lambda m: m.mint(claims={"iat": int(m.now) + FUTURE}), DenyReason.ISSUED_IN_FUTURE, "iat-just-beyond-leeway"),
    _case(
        lambda m: m.mint(claims={"iat": int(m.now) + 10 * 365 * 86_400, "exp": int(m.now) + 11 * 365 * 86_400}),
        DenyReason.ISSUED_IN_FUTURE,
        "iat-years-ahead",
    ),
    # --- subject
    _case(lambda m: m.mint(subject=None), DenyReason.MISSING_SUBJECT, "sub-missing"),
    _case(lambda m: m.mint(subject="  "), DenyReason.MISSING_SUBJECT, "sub-blank"),
    _case(lambda m: m.mint(claims={"sub": 42}), DenyReason.MISSING_SUBJECT, "sub-not-a-string"),
]


def _accept(build: Build, case_id: str) -> Any:
    return pytest.param(build, id=case_id)


ACCEPTED = [
    _accept(lambda m: m.mint(), "control"),
    _accept(lambda m: m.mint(audience=["https://other.example/mcp", m.resource, "test-client"]), "aud-list-with-us"),
    _accept(
        lambda m: m.mint(audience=m.resource.replace("https://gw.example", "HTTPS://GW.EXAMPLE")),
        "aud-uppercase-scheme-and-host",
    ),
    _accept(lambda m: m.mint(audience=m.resource + "/"), "aud-trailing-slash"),
    _accept(lambda m: m.mint(header={"typ": None}), "typ-absent"),
    _accept(lambda m: m.mint(header={"typ": "JWT"}), "typ-JWT"),
    _accept(lambda m: m.mint(header={"typ": "AT+JWT"}), "typ-AT+JWT"),
    _accept(lambda m: m.mint(header={"typ": "application/at+jwt"}), "typ-application-at+jwt"),
    _accept(lambda m: m.mint(header={"kid": None}), "no-kid-single-key"),
    _accept(
        lambda m: _signed(
            {"alg": "RS256", "kid": RSA_KEY.kid, "x-vendor": "1"}, json.dumps(m.claims()).encode(), RSA_KEY
        ),
        "unknown-non-critical-header-ignored",
    ),
    _accept(lambda m: m.mint(header={"jku": ATTACKER_URL, "x5u": ATTACKER_URL}), "jku-x5u-ignored"),
    _accept(lambda m: m.mint(header={"jwk": SMALL_ATTACKER_KEY.as_dict(private=False)}), "jwk-ignored"),
    _accept(lambda m: m.mint(claims={"exp": int(m.now) - LEEWAY + 1}), "exp-just-within-leeway"),
    _accept(lambda m: m.mint(claims={"nbf": int(m.now) + LEEWAY - 1}), "nbf-just-within-leeway"),
    _accept(lambda m: m.mint(claims={"iat": int(m.now) + LEEWAY - 1}), "iat-just-within-leeway"),
]

NOW = 1_900_000_000.0


@dataclass
class InProcess:
    """A verifier whose issuer runs in process, with settable clocks and a log of every URL it fetched."""

    issuer: FakeIssuer
    verifier: JwksTokenVerifier
    clock: Clock
    monotonic: Clock
    requested: list[str] = field(default_factory=list[str])

    @property
    def minting(self) -> Minting:
        return Minting(self.issuer, RESOURCE, self.clock.now)


@asynccontextmanager
async def _in_process(
    *, key: RSAKey | ECKey = RSA_KEY, algorithms: tuple[str, ...] = ("RS256",), timeout_s: float = 5.0
) -> AsyncGenerator[InProcess]:
    issuer = FakeIssuer(key=key, algorithm="ES256" if isinstance(key, ECKey) else "RS256")
    issuer.url = ISSUER
    clock, monotonic = Clock(NOW), Clock(1000.0)
    settings = VerifierSettings(
        issuer=ISSUER, audiences=[RESOURCE], algorithms=algorithms, leeway_s=LEEWAY, timeout_s=timeout_s
    )
    requested: list[str] = []

    async def record(request: httpx2.Request) -> None:
        requested.append(str(request.url))

    http = httpx2.AsyncClient(transport=httpx2.ASGITransport(app=issuer.app), event_hooks={"request": [record]})
    async with http, JwksTokenVerifier(settings, http_client=http, clock=clock, monotonic=monotonic) as verifier:
        try:
            yield InProcess(issuer, verifier, clock, monotonic, requested)
        finally:
            issuer.end_outage()


@pytest.fixture
async def env() -> AsyncIterator[InProcess]:
    async with _in_process() as running:
        yield running


@pytest.mark.parametrize("case", REFUSED)
async def test_a_forged_or_invalid_token_is_refused_with_its_specific_reason(env: InProcess, case: Case) -> None:
    """Each corpus token is refused for its own reason (RFC 8725, RFC 9068, RFC 8707; the R2 corpus), and no
    URL a token names is ever fetched: keys come from the issuer's key set only."""
    with anyio.fail_after(5):
        result = await env.verifier.verify(case.build(env.minting))
    assert result == Denial(case.reason)
    assert all(url.startswith(ISSUER + "/") for url in env.requested), env.requested


@pytest.mark.parametrize("build", ACCEPTED)
async def test_a_valid_token_variant_is_accepted(env: InProcess, build: Build) -> None:
    """Audience lists naming us, canonical-URI variants, the accepted `typ` values, claims just inside the
    leeway, and ignored key-location headers all pass; `jku`/`x5u`/`jwk` are never fetched or used."""
    with anyio.fail_after(5):
        result = await env.verifier.verify(build(env.minting))
    assert isinstance(result, VerifiedToken), result
    assert (result.subject, result.audience) == ("agent-1", RESOURCE)
    assert all(url.startswith(ISSUER + "/") for url in env.requested), env.requested


async def test_scopes_in_scp_as_a_list_are_read_like_a_scope_string(env: InProcess) -> None:
    """`scp` (a JSON list, as some IdPs send it) carries the scopes when `scope` is absent."""
    token = env.minting.mint(claims={"scope": None, "scp": ["ibkr:accounts:read", "ibkr:health:read"]})
    with anyio.fail_after(5):
        result = await env.verifier.verify(token)
    assert isinstance(result, VerifiedToken), result
    assert result.scopes == {"ibkr:accounts:read", "ibkr:health:read"}


async def test_a_token_replayed_after_its_expiry_is_refused(env: InProcess) -> None:
    """The same token passes until `exp` + leeway and is refused as expired from then on (R4)."""
    token = env.minting.mint(lifetime_s=60)
    with anyio.fail_after(5):
        assert isinstance(await env.verifier.verify(token), VerifiedToken)
        env.clock.now += 60 + LEEWAY
        assert isinstance(await env.verifier.verify(token), VerifiedToken)
        env.clock.now += 1
        assert await env.verifier.verify(token) == Denial(DenyReason.EXPIRED)


async def test_es256_tokens_verify_against_the_issuers_ec_key() -> None:
    """ES256 end to end in the verifier; a token claiming RS256 under the EC key's `kid` finds no key."""
    async with _in_process(key=EC_KEY, algorithms=("RS256", "ES256")) as ec:
        with anyio.fail_after(5):
            accepted = await ec.verifier.verify(ec.minting.mint())
            confused = await ec.verifier.verify(ec.minting.mint(header={"alg": "RS256"}, key=ATTACKER_KEY))
    assert isinstance(accepted, VerifiedToken), accepted
    assert confused == Denial(DenyReason.UNKNOWN_KEY)


async def test_without_keys_an_issuer_outage_refuses_at_once_until_the_retry_interval() -> None:
    """A failed fetch is not retried for `KEYS_RETRY_AFTER_S`; after that, a recovered issuer is used again."""
    async with _in_process() as env:
        env.issuer.jwks_outage = "error"
        token = env.minting.mint()
        with anyio.fail_after(5):
            assert await env.verifier.verify(token) == Denial(DenyReason.KEYS_UNAVAILABLE)
            assert await env.verifier.verify(token) == Denial(DenyReason.KEYS_UNAVAILABLE)
            assert env.issuer.jwks_fetches == 1
            env.issuer.end_outage()
            env.monotonic.now += KEYS_RETRY_AFTER_S - 0.5
            assert await env.verifier.verify(token) == Denial(DenyReason.KEYS_UNAVAILABLE)
            env.monotonic.now += 0.5
            assert isinstance(await env.verifier.verify(token), VerifiedToken)
        assert env.issuer.jwks_fetches == 2


async def test_callers_waiting_on_a_hanging_key_fetch_share_its_failure() -> None:
    """Eight requests during a hanging JWKS fetch cost one fetch timeout, not eight in a row (R6 d)."""
    async with _in_process(timeout_s=0.5) as env:
        env.issuer.jwks_outage = "hang"
        token = env.minting.mint()
        results: list[VerifiedToken | Denial] = []

        async def verify() -> None:
            results.append(await env.verifier.verify(token))

        with anyio.fail_after(1.5):  # one timeout plus slack; eight in a row would take 4 s
            async with anyio.create_task_group() as tasks:
                for _ in range(8):
                    tasks.start_soon(verify)
    assert results == [Denial(DenyReason.KEYS_UNAVAILABLE)] * 8
    assert env.issuer.jwks_fetches == 1


async def test_stale_keys_keep_serving_while_a_refresh_hangs() -> None:
    """With the cache expired and the issuer hanging, valid tokens pass on the last good keys without
    queueing behind the refresh, and the failed refresh is not retried at once (R6 e)."""
    async with _in_process(timeout_s=0.5) as env:
        token = env.minting.mint()
        with anyio.fail_after(5):
            assert isinstance(await env.verifier.verify(token), VerifiedToken)
        env.monotonic.now += env.verifier.settings.cache_ttl_s + 1
        env.issuer.jwks_outage = "hang"
        results: list[VerifiedToken | Denial] = []

        async def verify() -> None:
            results.append(await env.verifier.verify(token))

        with anyio.fail_after(1.5):
            async with anyio.create_task_group() as tasks:
                for _ in range(8):
                    tasks.start_soon(verify)
            assert isinstance(await env.verifier.verify(token), VerifiedToken)
    assert len(results) == 8
    assert all(isinstance(result, VerifiedToken) for result in results), results
    assert env.issuer.jwks_fetches == 2


# ------------------------------------------------------------------------------------------------ over HTTP


@dataclass
class Remote:
    issuer: FakeIssuer
    base_url: str
    resource: str
    app: RemoteMcpApp
    gateway: Gateway
    clock: Clock
    monotonic: Clock

    @property
    def minting(self) -> Minting:
        return Minting(self.issuer, self.resource, self.clock.now)

    def mint(self, **kwargs: Any) -> str:
        return self.minting.mint(**kwargs)

    async def post(
        self,
        token: str | None = None,
        *,
        headers: dict[str, str] | list[tuple[str, str]] | None = None,
        body: Any = INIT,
        url: str | None = None,
    ) -> httpx2.Response:
        sent: list[tuple[str, str]] = list(MCP_HEADERS.items())
        if token is not None:
            sent.append(("authorization", f"Bearer {token}"))
        extra = list(headers.items()) if isinstance(headers, dict) else list(headers or [])
        replaced = {name.lower() for name, _ in extra}
        sent = [(name, value) for name, value in sent if name not in replaced or name == "authorization"] + extra
        async with httpx2.AsyncClient(timeout=5) as http:
            with anyio.fail_after(10):
                return await http.post(url or self.resource, headers=sent, content=json.dumps(body))

    async def audit_rows(self, event_type: str) -> list[dict[str, Any]]:
        tail = await self.gateway.audit.tail(limit=1000)  # newest first
        return [row.event.model_dump(mode="json") for row in reversed(tail) if row.event.event_type == event_type]


def _config(tmp_path: Path, resource: str, issuer: FakeIssuer, overrides: dict[str, Any]) -> GatewayConfig:
    section: dict[str, Any] = {
        "enabled": True,
        "resource": resource,
        "issuer": issuer.url,
        "allowed_scopes": ["read_only"],
        "token_id_hmac_secret_env": TOKEN_KEY_ENV,
        "clock_skew_seconds": LEEWAY,
        "max_request_bytes": 4096,
        "rate_limit_max_requests": 1000,
    } | overrides
    return GatewayConfig.from_mapping(
        {
            "auth": {"enabled_scopes": ["read_only"]},
            "state": {"directory": str(tmp_path / "state")},
            "safety": {"remote_mcp_enabled": True},
            "remote_mcp": section,
        }
    )


ServedFactory = Callable[..., Any]


@pytest.fixture
async def issuer(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeIssuer]:
    monkeypatch.setenv(TOKEN_KEY_ENV, TOKEN_KEY)
    async with FakeIssuer(key=RSA_KEY).serve() as running:
        yield running


@pytest.fixture
def served(tmp_path: Path, issuer: FakeIssuer) -> ServedFactory:
    """Runs the remote app on loopback with injected verifier clocks; keyword arguments override `remote_mcp`."""

    @asynccontextmanager
    async def run(*, using: FakeIssuer = issuer, **overrides: Any) -> AsyncGenerator[Remote]:
        sock = loopback_socket()
        resource = f"http://127.0.0.1:{sock.getsockname()[1]}/mcp"
        config = _config(tmp_path, resource, using, overrides)
        clock, monotonic = Clock(float(int(time.time()))), Clock(1000.0)
        async with (
            Gateway.from_config(config) as gateway,
            JwksTokenVerifier(verifier_settings(config.remote_mcp), clock=clock, monotonic=monotonic) as verifier,
        ):
            app = RemoteMcpApp(gateway, config.remote_mcp, verifier, token_id_key=TOKEN_KEY.encode())
            async with serve_loopback(app, sock) as base_url:
                yield Remote(using, base_url, resource, app, gateway, clock, monotonic)

    return run


@pytest.fixture
async def remote(served: ServedFactory) -> AsyncIterator[Remote]:
    async with served() as running:
        yield running


def _challenge(response: httpx2.Response) -> str:
    value = response.headers.get("www-authenticate")
    assert value is not None, response.text
    return value


async def test_every_refused_token_gets_a_generic_401_and_one_audit_row_with_its_reason(remote: Remote) -> None:
    """R2 over HTTP: 401 `invalid_token` with a generic description (expiry alone is named, so a client
    refreshes), one `remote_auth_denied` row per request with the specific reason, no token text, no tool run."""
    cases: list[Case] = [param.values[0] for param in REFUSED if param.values[0].over_http]
    tokens: list[str] = []
    for case in cases:
        token = case.build(remote.minting)
        tokens.append(token)
        response = await remote.post(token)
        assert response.status_code == 401, (case.reason, response.text)
        description = "The access token has expired." if case.reason is DenyReason.EXPIRED else GENERIC
        assert _challenge(response) == (
            f'Bearer realm="ibkr-agent-gateway", resource_metadata="{remote.base_url}/.well-known/oauth-protected-'
            f'resource/mcp", error="invalid_token", error_description="{description}"'
        )
    denied = await remote.audit_rows("remote_auth_denied")
    assert [row["metadata"]["reason"] for row in denied] == [case.reason.value for case in cases]
    assert all(row["principal_subject"] == "anonymous" for row in denied)
    logged = json.dumps(denied)
    assert not [token for token in tokens if len(token) > 20 and token in logged]
    assert await remote.audit_rows("remote_auth_succeeded") == []
    assert await remote.audit_rows("tool_completed") == []


async def test_an_audience_list_naming_us_grants_the_scp_scopes(remote: Remote) -> None:
    """`aud` as a list holding the resource and others is accepted; `scp` as a list grants its scopes."""
    token = remote.mint(
        audience=["https://other.example/mcp", remote.resource],
        claims={"scope": None, "scp": ["ibkr:accounts:read", "ibkr:health:read", "ibkr:orders:live:submit"]},
    )
    response = await remote.post(token)
    assert response.status_code == 200, response.text
    [row] = await remote.audit_rows("remote_auth_succeeded")
    assert row["scopes"] == ["ibkr:accounts:read", "ibkr:health:read"]
    assert row["metadata"]["audience"] == remote.resource


async def test_the_bearer_scheme_is_case_insensitive(remote: Remote) -> None:
    """RFC 7235: the auth scheme is case-insensitive, so `bearer` and `BEARER` work (R7)."""
    token = remote.mint()
    for scheme in ("bearer", "BEARER", "bEaReR"):
        response = await remote.post(headers=[("authorization", f"{scheme} {token}")])
        assert response.status_code == 200, (scheme, response.text)


async def test_credentials_other_than_one_bearer_header_are_refused(remote: Remote) -> None:
    """R1/R7: Basic, an empty bearer and a bare scheme get `invalid_token`; a token only in the query string
    counts as no credential (and is not recorded); two Authorization headers get 400 before any check."""
    token = remote.mint()
    for value in ("Basic dXNlcjpwYXNz", "Bearer", "Token " + token, token):
        response = await remote.post(headers=[("authorization", value)])
        assert response.status_code == 401, value
        assert 'error="invalid_token"' in _challenge(response)
    query = await remote.post(url=f"{remote.resource}?access_token={token}")
    assert query.status_code == 401
    assert "error=" not in _challenge(query)
    twice = await remote.post(token, headers=[("authorization", f"Bearer {token}")])
    assert twice.status_code == 400
    denied = await remote.audit_rows("remote_auth_denied")
    assert [row["metadata"]["reason"] for row in denied] == ["token_malformed"] * 4 + ["token_missing"]
    assert token not in json.dumps(denied)
    assert await remote.audit_rows("remote_auth_succeeded") == []


async def test_a_token_replayed_after_expiry_gets_401_naming_the_expiry(remote: Remote) -> None:
    """A token that worked is refused once `exp` + leeway has passed, though its first use was audited."""
    token = remote.mint(lifetime_s=60)
    assert (await remote.post(token)).status_code == 200
    remote.clock.now += 60 + LEEWAY + 1
    replay = await remote.post(token)
    assert replay.status_code == 401
    assert 'error_description="The access token has expired."' in _challenge(replay)
    [row] = await remote.audit_rows("remote_auth_denied")
    assert row["metadata"]["reason"] == "expired"
    assert row["error_code"] == "AUTH_TOKEN_EXPIRED"


async def test_es256_tokens_work_end_to_end_with_the_sdk_client(served: ServedFactory) -> None:
    """An ES256 issuer: the SDK client lists and calls tools; an RS256 token is refused under an ES256 allowlist."""
    ec_issuer = FakeIssuer(key=EC_KEY, algorithm="ES256")
    async with ec_issuer.serve(), served(using=ec_issuer, algorithms=["ES256"]) as remote:
        token = remote.mint()
        async with (
            httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=10) as http,
            Client(streamable_http_client(remote.resource, http_client=http)) as client,
        ):
            with anyio.fail_after(10):
                tools = sorted(tool.name for tool in (await client.list_tools()).tools)
                result = await client.call_tool("ibkr_accounts_list", {})
        assert tools == sorted(visible_tools({Scope.ACCOUNTS_READ, Scope.HEALTH_READ}))
        assert not result.is_error, result
        rs256 = remote.mint(header={"alg": "RS256", "kid": RSA_KEY.kid}, key=RSA_KEY)
        assert (await remote.post(rs256)).status_code == 401
        reasons = [row["metadata"]["reason"] for row in await remote.audit_rows("remote_auth_denied")]
        assert reasons == ["algorithm_not_allowed"]


async def test_an_issuer_outage_gets_503_with_retry_after_and_service_resumes_after_it(
    served: ServedFactory, issuer: FakeIssuer
) -> None:
    """While the JWKS cannot be fetched: 503 + `Retry-After`, /readyz 503, no failed-attempt count against the
    client (so no 429 after recovery); once the issuer answers and the retry interval passes, 200."""
    issuer.jwks_outage = "error"
    async with served(rate_limit_max_requests=2) as remote:
        token = remote.mint()
        for _ in range(4):
            response = await remote.post(token)
            assert response.status_code == 503, response.text
            assert response.headers["retry-after"] == str(KEYS_RETRY_AFTER_S)
            assert response.json()["error"] == "temporarily_unavailable"
        async with httpx2.AsyncClient(base_url=remote.base_url, timeout=5) as http:
            assert (await http.get("/readyz")).status_code == 503
            issuer.end_outage()
            remote.monotonic.now += KEYS_RETRY_AFTER_S
            assert (await http.get("/readyz")).status_code == 200
        assert (await remote.post(token)).status_code == 200
        reasons = [row["metadata"]["reason"] for row in await remote.audit_rows("remote_auth_denied")]
        assert reasons == ["keys_unavailable"] * 4


async def test_forwarded_for_from_a_trusted_proxy_limits_each_client_on_its_own(served: ServedFactory) -> None:
    """Behind a trusted proxy, failed attempts count per the nearest untrusted `X-Forwarded-For` hop; a
    client-forged hop to the left of it changes nothing."""
    async with served(rate_limit_max_requests=2, trusted_proxies=["127.0.0.1/32", "10.9.0.0/16"]) as remote:

        async def status(forwarded: str) -> int:
            return (await remote.post("bad", headers={"x-forwarded-for": forwarded})).status_code

        flood = [await status(f"198.51.100.{n}, 203.0.113.7, 10.9.0.1") for n in range(4)]
        assert flood == [401, 401, 401, 429]
        assert await status("203.0.113.8") == 401
        assert await status("203.0.113.7") == 429


async def test_forwarded_for_from_a_peer_outside_trusted_proxies_is_ignored(served: ServedFactory) -> None:
    """With proxies configured but the peer not among them, `X-Forwarded-For` is not believed."""
    async with served(rate_limit_max_requests=2, trusted_proxies=["10.9.0.0/16"]) as remote:
        statuses = [
            (await remote.post("bad", headers={"x-forwarded-for": f"203.0.113.{n}"})).status_code for n in range(4)
        ]
    assert statuses == [401, 401, 401, 429]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_https_is_served_from_the_configured_certificate_and_key(tmp_path: Path, issuer: FakeIssuer) -> None:
    """`tls_cert_file`/`tls_key_file` make `serve_http` speak HTTPS: a client trusting the CA is served, one
    that does not trust it cannot connect."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    cert.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    port = _free_port()
    resource = f"https://127.0.0.1:{port}/mcp"
    config = _config(
        tmp_path,
        resource,
        issuer,
        {
            "bind_address": f"127.0.0.1:{port}",
            "tls_cert_file": str(tmp_path / "cert.pem"),
            "tls_key_file": str(tmp_path / "key.pem"),
        },
    )
    trusted = ssl.create_default_context()
    ca.configure_trust(trusted)  # pyright: ignore[reportUnknownMemberType]  (trustme's partial annotations)
    ready = anyio.Event()
    urls: list[str] = []

    def on_ready(url: str) -> None:
        urls.append(url)
        ready.set()

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(lambda: serve_http(config, enable_remote_mcp=True, on_ready=on_ready))
        with anyio.fail_after(10):
            await ready.wait()
            token = Minting(issuer, resource, time.time()).mint()
            headers = MCP_HEADERS | {"authorization": f"Bearer {token}"}
            async with httpx2.AsyncClient(verify=trusted, timeout=5) as http:
                response = await http.post(resource, headers=headers, content=json.dumps(INIT))
                metadata = await http.get(f"https://127.0.0.1:{port}/.well-known/oauth-protected-resource/mcp")
                rounds: list[float] = []
                for _ in range(15):  # small answers over the kept-alive connection: no Nagle/delayed-ACK stall
                    started = time.perf_counter()
                    await http.get(f"https://127.0.0.1:{port}/healthz")
                    rounds.append(time.perf_counter() - started)
            async with httpx2.AsyncClient(timeout=5) as untrusting:
                with pytest.raises(httpx2.ConnectError):
                    await untrusting.get(f"https://127.0.0.1:{port}/healthz")
        tasks.cancel_scope.cancel()
        assert urls == [f"https://127.0.0.1:{port}"]
        assert response.status_code == 200, response.text
        assert metadata.json()["resource"] == resource
        assert statistics.median(rounds) < 0.030, f"{statistics.median(rounds) * 1000:.1f} ms per small answer"


async def test_hostile_host_or_origin_is_refused_on_every_endpoint_before_auth(remote: Remote) -> None:
    """R9: a foreign Host gets 421 and a foreign Origin (other port, other scheme, `null`, a look-alike) 403,
    on the MCP path, the metadata and health endpoints; a valid Origin or none proceeds to the token check."""
    port = remote.base_url.rsplit(":", 1)[1]
    hostile_hosts = [
        "evil.example",
        f"127.0.0.1:{int(port) + 1}",
        f"localhost:{port}",
        "127.0.0.1",
        f"127.0.0.1:{port}.evil",
    ]
    hostile_origins = [
        "null",
        "http://evil.example",
        f"http://localhost:{port}",
        f"http://127.0.0.1:{int(port) + 1}",
        f"https://127.0.0.1:{port}",
        f"http://127.0.0.1:{port}.evil.example",
        f"http://127.0.0.1:{port}@evil.example",
    ]
    token = remote.mint()
    paths = ["/mcp", "/.well-known/oauth-protected-resource/mcp", "/healthz", "/readyz"]
    async with httpx2.AsyncClient(base_url=remote.base_url, timeout=5) as http:
        for path in paths:
            for host in hostile_hosts:
                response = await http.post(
                    path, headers=MCP_HEADERS | {"host": host, "authorization": f"Bearer {token}"}
                )
                assert response.status_code == 421, (path, host)
            for origin in hostile_origins:
                response = await http.post(
                    path, headers=MCP_HEADERS | {"origin": origin, "authorization": f"Bearer {token}"}
                )
                assert response.status_code == 403, (path, origin)
        for headers in ({"origin": remote.base_url}, {"origin": remote.base_url + "/"}, {}):
            response = await http.post("/mcp", headers=MCP_HEADERS | headers, content=json.dumps(INIT))
            assert response.status_code == 401, headers
    denied = await remote.audit_rows("remote_auth_denied")
    assert [row["metadata"]["reason"] for row in denied] == ["token_missing"] * 3


async def test_a_chunked_body_over_the_cap_gets_413_without_a_content_length(remote: Remote) -> None:
    """A body streamed without Content-Length is still capped at `max_request_bytes` (R11), never a 5xx."""
    payload = json.dumps(dict(INIT, padding="x" * 8000)).encode()

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(payload), 1024):
            yield payload[start : start + 1024]

    headers = MCP_HEADERS | {"authorization": f"Bearer {remote.mint()}"}
    async with httpx2.AsyncClient(timeout=5) as http:
        with anyio.fail_after(10):
            response = await http.post(remote.resource, headers=headers, content=chunks())
    assert "content-length" not in response.request.headers
    assert response.status_code == 413, response.text


async def test_a_content_length_that_is_not_ascii_digits_gets_413_not_a_crash(remote: Remote) -> None:
    """`str.isdigit` accepts `²`, which `int` refuses; the size check must not raise on it (or on two values)."""
    host = remote.base_url.removeprefix("http://").encode()
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(dict(message))

    for lengths in ([b"\xb2"], [b"10", b"10"]):  # latin-1 `²`, as ASGI decodes it
        sent.clear()
        scope = {
            "type": "http",
            "method": "POST",
            "path": "/mcp",
            "headers": [(b"host", host)] + [(b"content-length", value) for value in lengths],
            "client": ("127.0.0.1", 1),
        }
        with anyio.fail_after(5):
            await remote.app(scope, receive, send)
        assert sent[0]["status"] == 413


async def _open_session(remote: Remote, token: str) -> str:
    response = await remote.post(token)
    assert response.status_code == 200, response.text
    return response.headers["mcp-session-id"]


async def test_a_session_opened_by_one_subject_cannot_be_fixed_on_another(remote: Remote) -> None:
    """R13 session fixation: a victim sent the attacker's session id gets 404 rather than joining it, and an
    id the server never issued is unknown to everyone; the victim's own session works."""
    alice, mallory = remote.mint(subject="alice"), remote.mint(subject="mallory")
    fixed = await _open_session(remote, mallory)
    assert (await remote.post(alice, headers={"mcp-session-id": fixed}, body=PING)).status_code == 404
    assert (await remote.post(alice, headers={"mcp-session-id": "0" * 32}, body=PING)).status_code == 404
    own = await _open_session(remote, alice)
    assert (await remote.post(alice, headers={"mcp-session-id": own}, body=PING)).status_code == 200
    assert (await remote.post(mallory, headers={"mcp-session-id": fixed}, body=PING)).status_code == 200


async def test_a_session_binding_survives_other_subjects_session_churn(served: ServedFactory) -> None:
    """Another subject opening and closing many sessions must not evict a live session's owner and leave the
    session open to anyone: bindings of closed sessions are dropped, and a session without one is unknown."""
    async with served(max_sessions=2) as remote:
        alice, mallory = remote.mint(subject="alice"), remote.mint(subject="mallory")
        victim = await _open_session(remote, alice)
        async with httpx2.AsyncClient(timeout=5) as http:
            with anyio.fail_after(20):
                for _ in range(72):
                    opened = await http.post(
                        remote.resource,
                        headers=MCP_HEADERS | {"authorization": f"Bearer {mallory}"},
                        content=json.dumps(INIT),
                    )
                    session = opened.headers["mcp-session-id"]
                    closed = await http.delete(
                        remote.resource, headers={"authorization": f"Bearer {mallory}", "mcp-session-id": session}
                    )
                    assert closed.status_code == 200, closed.text
        hijack = await remote.post(mallory, headers={"mcp-session-id": victim}, body=PING)
        assert hijack.status_code == 404
        assert (await remote.post(alice, headers={"mcp-session-id": victim}, body=PING)).status_code == 200


async def test_an_oversize_authorization_header_gets_431_unparsed(remote: Remote) -> None:
    """R7: a 64 KB Authorization header gets 431 without being parsed, audited as a malformed token."""
    with anyio.fail_after(5):
        response = await remote.post(headers={"authorization": "Bearer " + "a" * 64 * 1024})
    assert response.status_code == 431
    [row] = await remote.audit_rows("remote_auth_denied")
    assert row["metadata"]["reason"] == "token_malformed"


async def test_malformed_mcp_requests_never_get_a_server_error(remote: Remote) -> None:
    """R11: bad content type, invalid JSON, a batch, an unknown method, a stray GET/DELETE get 4xx or a
    JSON-RPC error, never a 5xx, and run no tool."""
    token = remote.mint()
    auth = {"authorization": f"Bearer {token}"}
    async with httpx2.AsyncClient(timeout=5) as http:
        with anyio.fail_after(10):
            answers = {
                "text-plain": await http.post(
                    remote.resource,
                    headers=MCP_HEADERS | auth | {"content-type": "text/plain"},
                    content=json.dumps(INIT),
                ),
                "invalid-json": await http.post(remote.resource, headers=MCP_HEADERS | auth, content=b"{"),
                "batch": await http.post(remote.resource, headers=MCP_HEADERS | auth, content=json.dumps([INIT, PING])),
                "get": await http.get(remote.resource, headers=auth | {"accept": "text/event-stream"}),
                "delete": await http.delete(remote.resource, headers=auth),
            }
    assert {name: response.status_code for name, response in answers.items()} == dict.fromkeys(answers, 400)
    assert answers["invalid-json"].json()["error"]["code"] == -32700
    assert await remote.audit_rows("tool_completed") == []


async def test_a_remembered_signature_stops_counting_once_its_key_leaves_the_key_set(env: InProcess) -> None:
    """Signatures are remembered per token and key object only: when the issuer replaces the key behind a
    `kid` and the verifier refreshes its key set, the same token bytes are checked (and refused) again."""
    token = env.minting.mint(lifetime_s=3600)
    with anyio.fail_after(5):
        assert isinstance(await env.verifier.verify(token), VerifiedToken)
        assert isinstance(await env.verifier.verify(token), VerifiedToken)  # served from the signature memory
        replacement = env.issuer.rotate("key-1")  # new key material under the same kid
        newest = env.issuer.rotate("key-2")
        env.issuer.published = [replacement, newest]
        # A token under the new kid makes the verifier refetch the key set at once (well inside 60 s).
        assert isinstance(await env.verifier.verify(env.minting.mint()), VerifiedToken)
        assert await env.verifier.verify(token) == Denial(DenyReason.BAD_SIGNATURE)
