"""IBKR Web API OAuth 1.0a (first party): the live session token and the signature of every request.

Without a Client Portal Gateway, requests go straight to IBKR's Web API, each signed with OAuth 1.0a.
What IBKR's self-service portal gives a first-party consumer, and what each piece is for:

- the consumer key, and the realm (`limited_poa`; `test_realm` for IBKR's test consumer `TESTCONS`);
- the access token, and its secret encrypted to the consumer's RSA *encryption* key (base64);
- the RSA *signature* key pair and the Diffie-Hellman parameters, whose public halves were uploaded.

The handshake (`OAuthSession`), as IBKR documents it:

1. the access token secret is decrypted with the private encryption key (RSA PKCS#1 v1.5): its hex is the
   *prepend*;
2. a random 256-bit `a` gives the challenge `A = g^a mod p`;
3. `POST /oauth/live_session_token` carries `diffie_hellman_challenge` among the OAuth parameters and is
   signed RSA-SHA256 (PKCS#1 v1.5) with the private signature key over prepend + the OAuth base string;
4. IBKR answers `diffie_hellman_response` (`B`), `live_session_token_signature` and
   `live_session_token_expiration` (epoch milliseconds, about 24 hours ahead);
5. `K = B^a mod p`; the live session token (LST) is HMAC-SHA1 keyed with K's big-endian two's-complement
   bytes over the prepend's bytes; it is genuine when HMAC-SHA1(LST, consumer key) in hex equals the
   signature IBKR sent;
6. every later request is signed HMAC-SHA256 keyed with the LST over its base string;
7. after each new LST, `POST /iserver/auth/ssodh/init` (never competing) opens the brokerage session.

The base string is RFC 5849's: the method, the percent-encoded URL without its query, and the
percent-encoded, sorted `name=value` pairs of the OAuth parameters and the query parameters. A JSON
body is not signed (OAuth 1.0a signs only form bodies), so the signature protects the method, URL and
query of a request, its nonce and timestamp, but not the body.

The LST is renewed `refresh_margin_seconds` before it expires, and at once when IBKR answers 401 (or
410 Gone) to a signed request; the request is then sent again, once: it was refused before it was acted on.
Nothing secret leaves this module: no key, secret, token or signature appears in a message, a log
record or a `repr`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final, Protocol, cast
from urllib.parse import quote, urlsplit, urlunsplit

import anyio
import httpx2
from ibkr_gateway_core.config import OAuthConfig
from ibkr_gateway_core.errors import ErrorCode, GatewayError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

LIVE_SESSION_TOKEN_PATH: Final = "/oauth/live_session_token"
"""Below `/v1/api`: where the live session token is asked for."""

BROKERAGE_INIT_PATH: Final = "/iserver/auth/ssodh/init"

DH_RANDOM_BITS: Final = 256
"""Size of the random Diffie-Hellman exponent `a`, as IBKR's documents say."""

MIN_DH_PRIME_BITS: Final = 2048
"""The portal asks for 2048-bit Diffie-Hellman parameters; anything shorter is a wrong file."""

_REJECTED_ACTION: Final = (
    "Check broker.oauth: the consumer key, the access token and realm, and that the signature key, encryption "
    "key, access token secret and DH parameters are the ones of this consumer in IBKR's self-service portal."
)


def percent_encode(value: str) -> str:
    """RFC 3986 percent-encoding as OAuth 1.0 wants it: everything but `A-Z a-z 0-9 - . _ ~` is escaped."""
    return quote(value, safe="~")


def normalized_url(url: str) -> str:
    """The base string URI: scheme and host in lower case, the default port dropped, no query or fragment."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    port = parts.port
    netloc = host if port is None or (scheme, port) in (("http", 80), ("https", 443)) else f"{host}:{port}"
    return urlunsplit((scheme, netloc, parts.path or "/", "", ""))


def base_string(method: str, url: str, params: Iterable[tuple[str, str]]) -> str:
    """The OAuth 1.0 signature base string (RFC 5849 §3.4.1) of a request.

    Args:
        method: The HTTP method.
        url: The request URL; its query is ignored here (pass the query pairs in `params`).
        params: The OAuth parameters (without `oauth_signature` and `realm`) and the decoded query pairs.
    """
    pairs = sorted((percent_encode(name), percent_encode(value)) for name, value in params)
    normalized = "&".join(f"{name}={value}" for name, value in pairs)
    return "&".join((method.upper(), percent_encode(normalized_url(url)), percent_encode(normalized)))


def authorization_header(realm: str, params: Mapping[str, str]) -> str:
    """`OAuth realm="…", name="value", …` with the parameters sorted and their values percent-encoded."""
    fields = ", ".join(f'{name}="{percent_encode(value)}"' for name, value in sorted(params.items()))
    return f'OAuth realm="{realm}", {fields}'


def signed_bytes(value: int) -> bytes:
    """`value` as big-endian two's-complement bytes (a leading zero byte when its top bit is set).

    Java's `BigInteger.toByteArray` writes it so: the form IBKR keys the live session token with.
    """
    return value.to_bytes(value.bit_length() // 8 + 1, "big")


def live_session_token(shared_secret: int, prepend: bytes) -> bytes:
    """HMAC-SHA1 keyed with the Diffie-Hellman shared secret over the decrypted access token secret."""
    return hmac.new(signed_bytes(shared_secret), prepend, hashlib.sha1).digest()


def live_session_token_signature(token: bytes, consumer_key: str) -> str:
    """What IBKR sends to prove it derived the same token: hex HMAC-SHA1 keyed with it over the consumer key."""
    return hmac.new(token, consumer_key.encode("utf-8"), hashlib.sha1).hexdigest()


def hmac_signature(token: bytes, text: str) -> str:
    """The HMAC-SHA256 signature (base64) of a base string, keyed with the live session token."""
    return base64.b64encode(hmac.new(token, text.encode("utf-8"), hashlib.sha256).digest()).decode("ascii")


def query_pairs(url: str, params: Mapping[str, str] | None) -> tuple[str, list[tuple[str, str]]]:
    """The URL as sent (its query merged with `params`, as the HTTP client does) and its decoded query pairs."""
    merged = httpx2.URL(url)
    if params:
        merged = merged.copy_merge_params(dict(params))
    return str(merged), list(merged.params.multi_items())


@dataclass(frozen=True, slots=True, repr=False)
class OAuthCredentials:
    """Everything the handshake needs, read from the files and environment `broker.oauth` names.

    Its `repr` shows the consumer key only; never log the other fields.
    """

    consumer_key: str
    realm: str
    access_token: str
    prepend: bytes
    """The decrypted access token secret."""
    signature_key: RSAPrivateKey
    dh_prime: int
    dh_generator: int

    def __repr__(self) -> str:
        return f"OAuthCredentials(consumer_key={self.consumer_key!r}, secrets withheld)"


def _missing(message: str, user_action: str | None = None) -> GatewayError:
    return GatewayError(ErrorCode.CONFIG_OAUTH_CREDENTIAL_MISSING, message, user_action=user_action)


def _invalid(message: str, user_action: str | None = None) -> GatewayError:
    return GatewayError(ErrorCode.CONFIG_OAUTH_CREDENTIAL_INVALID, message, user_action=user_action)


def _read_file(key: str, path: Path, *, private: bool) -> bytes:
    """The bytes of the file `broker.oauth.<key>` names; its path is never shown (it is local)."""
    try:
        with path.open("rb") as handle:
            if private and os.name == "posix" and os.fstat(handle.fileno()).st_mode & 0o077:
                raise _invalid(
                    f"The file of broker.oauth.{key} is readable by other users.",
                    user_action=f"Run `chmod 600` on the file broker.oauth.{key} names, then retry.",
                )
            data = handle.read()
    except FileNotFoundError:
        raise _missing(f"The file of broker.oauth.{key} does not exist.") from None
    except OSError as exc:
        raise _missing(f"The file of broker.oauth.{key} cannot be read ({exc.strerror or 'error'}).") from None
    if not data.strip():
        raise _missing(f"The file of broker.oauth.{key} is empty.")
    return data


def _secret_text(name: str, env: str | None, file: Path | None, environ: Mapping[str, str]) -> str:
    """A credential from its environment variable or file (surrounding whitespace removed)."""
    if env is not None:
        value = environ.get(env, "").strip()
        if not value:
            raise _missing(
                f"The environment variable {env} (broker.oauth.{name}_env) is unset or empty.",
                user_action=f"Export {env} with the value IBKR's self-service portal showed, then retry.",
            )
        return value
    assert file is not None  # the config requires one of the two
    try:
        return _read_file(f"{name}_file", file, private=True).decode("utf-8").strip()
    except UnicodeDecodeError:
        raise _invalid(f"The file of broker.oauth.{name}_file is not text.") from None


def _private_key(key: str, path: Path) -> RSAPrivateKey:
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    data = _read_file(key, path, private=True)
    try:
        loaded = load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise _invalid(f"broker.oauth.{key} is not an unencrypted PEM private key.") from None
    except Exception:  # the Rust backend raises its own types for some malformed keys
        raise _invalid(f"broker.oauth.{key} is not an unencrypted PEM private key.") from None
    if not isinstance(loaded, RSAPrivateKey):
        raise _invalid(f"broker.oauth.{key} is not an RSA key.")
    return loaded


_DH_PEM_LABEL: Final = "DH PARAMETERS"
"""What `openssl dhparam` writes: PKCS #3 `DHParameter ::= SEQUENCE { prime INTEGER, base INTEGER, ... }`."""


def _der_length(data: bytes, at: int) -> tuple[int, int]:
    """(length, offset of the content) of the DER element whose length byte is at `at`."""
    first = data[at]
    if first < 0x80:
        return first, at + 1
    count = first & 0x7F
    if not 0 < count <= 4 or at + 1 + count > len(data):
        raise ValueError("bad DER length")
    return int.from_bytes(data[at + 1 : at + 1 + count], "big"), at + 1 + count


def parse_dh_parameters_pem(text: bytes) -> tuple[int, int]:
    """(prime, generator) of a PEM `DH PARAMETERS` block (PKCS #3, as `openssl dhparam` writes it).

    Raises:
        ValueError: anything else.
    """
    lines = text.decode("ascii").strip().splitlines()
    if len(lines) < 3 or lines[0].strip() != f"-----BEGIN {_DH_PEM_LABEL}-----":
        raise ValueError("not a DH PARAMETERS block")
    end = lines.index(f"-----END {_DH_PEM_LABEL}-----")
    der = base64.b64decode("".join(line.strip() for line in lines[1:end]), validate=True)
    if not der or der[0] != 0x30:
        raise ValueError("not a DER sequence")
    length, at = _der_length(der, 1)
    if at + length != len(der):
        raise ValueError("trailing bytes")
    numbers: list[int] = []
    while at < len(der) and len(numbers) < 2:
        if der[at] != 0x02:
            raise ValueError("not an INTEGER")
        size, start = _der_length(der, at + 1)
        if size == 0 or start + size > len(der):
            raise ValueError("bad INTEGER")
        numbers.append(int.from_bytes(der[start : start + size], "big", signed=True))
        at = start + size
    if len(numbers) != 2:
        raise ValueError("prime and generator expected")
    return numbers[0], numbers[1]


def _dh_parameters(oauth: OAuthConfig) -> tuple[int, int]:
    if oauth.dh_param_file is not None:
        data = _read_file("dh_param_file", oauth.dh_param_file, private=False)
        try:
            prime, generator = parse_dh_parameters_pem(data)
        except (ValueError, UnicodeDecodeError, IndexError):
            raise _invalid("broker.oauth.dh_param_file is not a PEM file of Diffie-Hellman parameters.") from None
    else:
        assert oauth.dh_prime is not None  # the config requires one of the two
        prime, generator = int(oauth.dh_prime, 16), oauth.dh_generator
    if prime.bit_length() < MIN_DH_PRIME_BITS or prime % 2 == 0:
        raise _invalid(
            f"The Diffie-Hellman prime of broker.oauth is not an odd prime of {MIN_DH_PRIME_BITS} bits or more."
        )
    if not 1 < generator < prime - 1:
        raise _invalid("The Diffie-Hellman generator of broker.oauth is out of range.")
    return prime, generator


def load_credentials(oauth: OAuthConfig, environ: Mapping[str, str] | None = None) -> OAuthCredentials:
    """Read and check every credential `broker.oauth` names; decrypt the access token secret.

    Raises:
        GatewayError: `CONFIG_OAUTH_CREDENTIAL_MISSING` for an unset variable or a missing, unreadable or
            empty file; `CONFIG_OAUTH_CREDENTIAL_INVALID` for a key, secret or DH parameter that cannot be used.
            Messages name the configuration key, never its value or a path.
    """
    from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15

    env = os.environ if environ is None else environ
    missing = oauth.missing()
    if missing:
        raise _missing("broker.backend cpapi_oauth needs " + "; ".join(missing) + ".")
    assert oauth.consumer_key is not None and oauth.signature_key_file is not None
    assert oauth.encryption_key_file is not None
    access_token = _secret_text("access_token", oauth.access_token_env, oauth.access_token_file, env)
    if not access_token.isascii() or not access_token.isprintable() or '"' in access_token:
        raise _invalid("broker.oauth's access token holds characters an access token never has.")
    encrypted = _secret_text("access_token_secret", oauth.access_token_secret_env, oauth.access_token_secret_file, env)
    try:
        ciphertext = base64.b64decode(encrypted, validate=True)
    except ValueError:
        raise _invalid("broker.oauth's access token secret is not base64, as the portal shows it.") from None
    signature_key = _private_key("signature_key_file", oauth.signature_key_file)
    encryption_key = _private_key("encryption_key_file", oauth.encryption_key_file)
    try:
        prepend = encryption_key.decrypt(ciphertext, PKCS1v15())
    except ValueError:
        raise _invalid(
            "broker.oauth's access token secret cannot be decrypted with broker.oauth.encryption_key_file.",
            user_action="Use the access token secret IBKR's portal showed for the encryption key you uploaded.",
        ) from None
    prime, generator = _dh_parameters(oauth)
    return OAuthCredentials(
        consumer_key=oauth.consumer_key,
        realm=oauth.realm,
        access_token=access_token,
        prepend=prepend,
        signature_key=signature_key,
        dh_prime=prime,
        dh_generator=generator,
    )


class UnauthorizedError(GatewayError):
    """The broker answered HTTP 401 (the client raises it; the OAuth session renews its token on it)."""


class SendHttp(Protocol):
    """The client's raw exchange: one HTTP request with extra headers, decoded JSON back, errors as the client's."""

    def __call__(
        self,
        method: str,
        path: str,
        params: Mapping[str, str] | None,
        body: object,
        *,
        mutating: bool,
        headers: Mapping[str, str] | None,
    ) -> Awaitable[object]:
        """Send it and return the decoded JSON body."""
        ...


@dataclass(frozen=True, slots=True)
class _Token:
    value: bytes
    obtained_at: float
    expires_at: float
    generation: int


class OAuthSession:
    """The live session token of one client: obtained on first use, renewed before expiry or after a 401."""

    def __init__(
        self,
        credentials: OAuthCredentials,
        *,
        refresh_margin_s: float = 300.0,
        open_brokerage_session: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Hold `credentials`; nothing is sent until the first request.

        Args:
            credentials: From `load_credentials`.
            refresh_margin_s: Renew the token this long before it expires (at most half its lifetime).
            open_brokerage_session: `POST /iserver/auth/ssodh/init` (never competing) after each new token.
            clock: Epoch seconds, the clock IBKR's expiration is compared with.
        """
        self._credentials = credentials
        self._margin_s = refresh_margin_s
        self._open_brokerage = open_brokerage_session
        self._clock = clock
        self._token: _Token | None = None
        self._lock = anyio.Lock()
        self.tokens_obtained = 0
        """How many live session tokens this session obtained (tests and `repr` show it)."""

    def __repr__(self) -> str:
        return f"OAuthSession(consumer_key={self._credentials.consumer_key!r}, tokens_obtained={self.tokens_obtained})"

    @property
    def expires_at(self) -> float | None:
        """Epoch seconds when the current token expires; None before the first one."""
        return self._token.expires_at if self._token is not None else None

    async def send(
        self,
        send_http: SendHttp,
        base_url: str,
        method: str,
        path: str,
        params: Mapping[str, str] | None,
        body: object,
        *,
        mutating: bool,
    ) -> object:
        """Send one request signed with a live session token; on a 401 renew the token and send it once more.

        Raises:
            GatewayError: `BROKER_OAUTH_REJECTED` when IBKR refuses the credentials or a freshly signed request;
                otherwise what `send_http` raises.
        """
        token = await self._current(send_http, base_url)
        try:
            return await send_http(
                method, path, params, body, mutating=mutating, headers=self.sign(token, method, base_url + path, params)
            )
        except GatewayError as exc:
            if not _token_refused(exc):
                raise
        token = await self._renew(send_http, base_url, stale=token)  # refused before it was acted on: send it again
        try:
            return await send_http(
                method, path, params, body, mutating=mutating, headers=self.sign(token, method, base_url + path, params)
            )
        except UnauthorizedError:
            raise GatewayError(
                ErrorCode.BROKER_OAUTH_REJECTED,
                "IBKR refused a request signed with a new live session token (HTTP 401).",
                user_action=_REJECTED_ACTION,
            ) from None

    def sign(
        self,
        token: _Token | bytes,
        method: str,
        url: str,
        params: Mapping[str, str] | None = None,
        *,
        timestamp: int | None = None,
        nonce: str | None = None,
    ) -> dict[str, str]:
        """The `Authorization` header of a request signed HMAC-SHA256 with the live session token."""
        key = token.value if isinstance(token, _Token) else token
        sent_url, query = query_pairs(url, params)
        oauth = self._oauth_params("HMAC-SHA256", timestamp=timestamp, nonce=nonce)
        oauth["oauth_signature"] = hmac_signature(key, base_string(method, sent_url, [*oauth.items(), *query]))
        return {"Authorization": authorization_header(self._credentials.realm, oauth)}

    def _oauth_params(self, method: str, *, timestamp: int | None = None, nonce: str | None = None) -> dict[str, str]:
        return {
            "oauth_consumer_key": self._credentials.consumer_key,
            "oauth_nonce": nonce or secrets.token_hex(16),
            "oauth_signature_method": method,
            "oauth_timestamp": str(int(self._clock()) if timestamp is None else timestamp),
            "oauth_token": self._credentials.access_token,
        }

    async def _current(self, send_http: SendHttp, base_url: str) -> _Token:
        token = self._token
        if token is not None and not self._due(token):
            return token
        return await self._renew(send_http, base_url, stale=token)

    def _due(self, token: _Token) -> bool:
        margin = min(self._margin_s, (token.expires_at - token.obtained_at) / 2)
        return self._clock() >= token.expires_at - margin

    async def _renew(self, send_http: SendHttp, base_url: str, *, stale: _Token | None) -> _Token:
        """A new token, unless another task already replaced `stale` (one handshake for many waiting requests)."""
        async with self._lock:
            current = self._token
            if current is not None and current is not stale and not self._due(current):
                return current
            token = await self._handshake(send_http, base_url)
            self._token = token
            if self._open_brokerage:
                await self._open_brokerage_session(send_http, base_url, token)
            return token

    async def _handshake(self, send_http: SendHttp, base_url: str) -> _Token:
        creds = self._credentials
        prime = creds.dh_prime
        secret_exponent = secrets.randbits(DH_RANDOM_BITS) | 1 << (DH_RANDOM_BITS - 1)
        challenge = pow(creds.dh_generator, secret_exponent, prime)
        prepend = creds.prepend.hex()
        oauth = self._oauth_params("RSA-SHA256")
        oauth["diffie_hellman_challenge"] = format(challenge, "x")
        text = prepend + base_string("POST", base_url + LIVE_SESSION_TOKEN_PATH, oauth.items())
        oauth["oauth_signature"] = _rsa_signature(creds.signature_key, text)
        headers = {"Authorization": authorization_header(creds.realm, oauth)}
        started = self._clock()
        try:
            answer = await send_http("POST", LIVE_SESSION_TOKEN_PATH, None, None, mutating=False, headers=headers)
        except UnauthorizedError:
            raise GatewayError(
                ErrorCode.BROKER_OAUTH_REJECTED,
                "IBKR refused the live session token request (HTTP 401): its RSA signature or OAuth parameters do "
                "not match this consumer and access token.",
                user_action=_REJECTED_ACTION,
            ) from None
        response, token_signature, expiration_ms = _parse_answer(answer)
        if not 1 < response < prime - 1:
            raise _bad_answer("a Diffie-Hellman response out of range")
        token = live_session_token(pow(response, secret_exponent, prime), creds.prepend)
        if not hmac.compare_digest(live_session_token_signature(token, creds.consumer_key), token_signature.lower()):
            raise GatewayError(
                ErrorCode.BROKER_OAUTH_REJECTED,
                "The live session token derived here does not match IBKR's signature of it: the encryption key, "
                "the access token secret or the Diffie-Hellman parameters are not this consumer's.",
                user_action=_REJECTED_ACTION,
            )
        expires_at = expiration_ms / 1000
        if expires_at <= started:
            raise _bad_answer("a live session token that had already expired")
        self.tokens_obtained += 1
        return _Token(token, started, expires_at, self.tokens_obtained)

    async def _open_brokerage_session(self, send_http: SendHttp, base_url: str, token: _Token) -> None:
        body = {"publish": True, "compete": False}
        headers = self.sign(token, "POST", base_url + BROKERAGE_INIT_PATH)
        try:
            await send_http("POST", BROKERAGE_INIT_PATH, None, body, mutating=False, headers=headers)
        except UnauthorizedError:
            raise GatewayError(
                ErrorCode.BROKER_OAUTH_REJECTED,
                "IBKR refused to open the brokerage session with a new live session token (HTTP 401).",
                user_action=_REJECTED_ACTION,
            ) from None
        except GatewayError:
            pass  # e.g. a competing login: `/iserver` answers then say what is wrong, with their own codes


def _token_refused(exc: GatewayError) -> bool:
    """401 (signature or token refused), or 410 Gone (IBKR no longer knows the token's session)."""
    return isinstance(exc, UnauthorizedError) or exc.details.get("status_code") == 410


def _rsa_signature(key: RSAPrivateKey, text: str) -> str:
    from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15
    from cryptography.hazmat.primitives.hashes import SHA256

    return base64.b64encode(key.sign(text.encode("utf-8"), PKCS1v15(), SHA256())).decode("ascii")


def _bad_answer(what: str) -> GatewayError:
    return GatewayError(ErrorCode.BROKER_RESPONSE_INVALID, f"IBKR answered the live session token request with {what}.")


def _parse_answer(answer: object) -> tuple[int, str, int]:
    """(`B`, the token's signature, expiration in epoch ms) from the live session token answer."""
    if not isinstance(answer, dict):
        raise _bad_answer("something other than a JSON object")
    fields = cast("dict[object, object]", answer)
    response = fields.get("diffie_hellman_response")
    signature = fields.get("live_session_token_signature")
    expiration = fields.get("live_session_token_expiration")
    if not isinstance(response, str) or not isinstance(signature, str) or not signature.isascii():
        raise _bad_answer("no Diffie-Hellman response or token signature")
    if isinstance(expiration, bool) or not isinstance(expiration, int):
        raise _bad_answer("no expiration time")
    try:
        value = int(response, 16)
    except ValueError:
        raise _bad_answer("a Diffie-Hellman response that is not hexadecimal") from None
    return value, signature, expiration


def oauth_session_from_config(oauth: OAuthConfig) -> OAuthSession:
    """The session `broker.oauth` describes, its credentials read and checked now.

    Raises:
        GatewayError: what `load_credentials` raises.
    """
    return OAuthSession(
        load_credentials(oauth),
        refresh_margin_s=oauth.refresh_margin_seconds,
        open_brokerage_session=oauth.open_brokerage_session,
    )
