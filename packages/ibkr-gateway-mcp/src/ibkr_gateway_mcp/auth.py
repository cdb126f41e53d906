"""The access-token verifier of the remote MCP server: JWTs checked against the issuer's JWKS (joserfc).

Checks, in order: compact JWS shape; `alg` in the configured allowlist (never `none`, never HS*); no
`crit` header (other unknown header parameters are ignored, RFC 7515 §4); `typ` absent, `JWT` or `at+jwt`;
the key chosen by `kid` from the issuer's key set only (`jku`, `x5u` and `jwk` headers are ignored); the
signature; then `iss` exactly, `aud` containing an accepted audience, `exp` required (and finite), `nbf`
and `iat` not in the future, all with bounded leeway; `sub` required. Anything else is a `Denial` with a
specific reason; `verify` never raises.

Keys come from the configured `jwks_url`, or from `jwks_uri` of the issuer's OpenID discovery document.
A key set is cached for `cache_ttl_s`; a token with an unknown `kid` refetches it at most once per
`refetch_interval_s`, so a rotated key is picked up at once and random `kid`s cannot amplify fetches.
When a fetch fails, callers that waited for it share its failure, and no fetch is tried again for
`KEYS_RETRY_AFTER_S` (or `refetch_interval_s`, if shorter): meanwhile the last good key set keeps serving,
or, without one, tokens are refused at once as `keys_unavailable`, so an issuer outage never queues
requests behind one fetch timeout after another.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

import anyio
import httpx2
from joserfc import jwt
from joserfc.errors import ExceededSizeError, InvalidPayloadError, JoseError
from joserfc.jwk import ECKey, KeySet, RSAKey
from joserfc.jws import JWSRegistry
from pydantic import TypeAdapter, ValidationError

SIGNATURE_CACHE_S: Final = 60.0
"""How long a checked signature is trusted for the same token bytes and the same key object (a key-set
refresh makes new key objects, so rotation and revocation take effect at once)."""

SIGNATURE_CACHE_SIZE: Final = 4096
"""Most tokens whose signature is remembered."""

logger = logging.getLogger(__name__)

DISCOVERY_PATH: Final = "/.well-known/openid-configuration"
"""Where the issuer's OpenID discovery document lives, relative to the issuer."""

MAX_TOKEN_CHARS: Final = 16 * 1024
"""Longer bearer values are refused before any parsing."""

ACCEPTED_TOKEN_TYPES: Final = frozenset({"jwt", "at+jwt", "application/at+jwt"})
"""`typ` header values accepted (case-insensitive); an ID token or another JWT kind says otherwise."""

KEYS_RETRY_AFTER_S: Final = 5
"""Seconds after a failed key-set fetch before the next one; the 503 it causes says so in `Retry-After`."""

_KEY_TYPES: Final = {"RS256": "RSA", "ES256": "EC"}

_JSON_OBJECT: Final = TypeAdapter(dict[str, Any])
_JSON_LIST: Final = TypeAdapter(list[Any])


class DenyReason(StrEnum):
    """Why a bearer token was refused; recorded in the `remote_auth_denied` audit row."""

    TOKEN_MISSING = "token_missing"
    TOKEN_MALFORMED = "token_malformed"
    ALGORITHM_NOT_ALLOWED = "algorithm_not_allowed"
    UNSUPPORTED_HEADER = "unsupported_header"
    WRONG_TOKEN_TYPE = "wrong_token_type"
    UNKNOWN_KEY = "unknown_key"
    BAD_SIGNATURE = "bad_signature"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    ISSUED_IN_FUTURE = "issued_in_future"
    MISSING_EXPIRY = "missing_expiry"
    WRONG_ISSUER = "wrong_issuer"
    WRONG_AUDIENCE = "wrong_audience"
    MISSING_SUBJECT = "missing_subject"
    INSUFFICIENT_SCOPE = "insufficient_scope"
    KEYS_UNAVAILABLE = "keys_unavailable"


@dataclass(frozen=True, slots=True)
class VerifiedToken:
    """The claims of an access token that passed every check."""

    subject: str
    issuer: str
    audience: str
    """The accepted audience the token named."""
    scopes: frozenset[str]
    """Scope strings as the token carries them (`scope` or `scp`), before any intersection."""
    client_id: str | None
    token_id: str | None
    """The `jti` claim; only its keyed hash leaves this process."""
    expires_at: int


@dataclass(frozen=True, slots=True)
class Denial:
    """A refused token and the reason."""

    reason: DenyReason


@dataclass(frozen=True, slots=True)
class VerifierSettings:
    """What the verifier checks and where it finds keys."""

    issuer: str
    audiences: Sequence[str]
    """Accepted `aud` values; the first is the canonical resource."""
    jwks_url: str | None = None
    algorithms: Collection[str] = ("RS256",)
    leeway_s: int = 60
    cache_ttl_s: float = 600.0
    refetch_interval_s: float = 30.0
    timeout_s: float = 5.0
    max_bytes: int = 256 * 1024


class KeysUnavailableError(Exception):
    """The discovery document or key set could not be fetched or understood."""


class JwksTokenVerifier:
    """Verifies bearer tokens against the issuer's JWKS, caching keys; safe for concurrent use."""

    def __init__(
        self,
        settings: VerifierSettings,
        *,
        http_client: httpx2.AsyncClient | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if not set(settings.algorithms) <= set(_KEY_TYPES):
            raise ValueError(f"unsupported algorithms {sorted(settings.algorithms)}")
        self.settings = settings
        self._registries = {
            alg: JWSRegistry(algorithms=[alg], strict_check_header=False) for alg in settings.algorithms
        }
        """RFC 7515 §4: header parameters we do not know are ignored unless `crit` names them (refused above)."""
        self._owns_http = http_client is None
        self._http = http_client or httpx2.AsyncClient(timeout=settings.timeout_s, follow_redirects=False)
        self._clock = clock
        self._monotonic = monotonic
        self._lock = anyio.Lock()
        self._keys: KeySet | None = None
        self._fetched_at = -float("inf")
        self._forced_at = -float("inf")
        self._retry_at = -float("inf")
        self._failures: int = 0
        self._verified: OrderedDict[bytes, tuple[RSAKey | ECKey, dict[str, Any], float]] = OrderedDict()
        """sha256(token) → (key, claims, when) of recent good signatures; claims are re-checked on every use."""
        self._jwks_url = settings.jwks_url
        self.fetch_count = 0
        """Key-set fetches so far (discovery documents not counted)."""

    async def __aenter__(self) -> JwksTokenVerifier:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP client if this verifier created it."""
        if self._owns_http:
            await self._http.aclose()

    async def ready(self) -> bool:
        """True when a key set is cached or can be fetched now."""
        try:
            await self._key_set()
        except KeysUnavailableError:
            return False
        return True

    async def verify(self, token: str) -> VerifiedToken | Denial:
        """Check one bearer token; never raises."""
        header = _header(token)
        if header is None:
            return Denial(DenyReason.TOKEN_MALFORMED)
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self.settings.algorithms:
            return Denial(DenyReason.ALGORITHM_NOT_ALLOWED)
        if "crit" in header or "b64" in header:
            return Denial(DenyReason.UNSUPPORTED_HEADER)
        typ = header.get("typ")
        if typ is not None and (not isinstance(typ, str) or typ.lower() not in ACCEPTED_TOKEN_TYPES):
            return Denial(DenyReason.WRONG_TOKEN_TYPE)
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            return Denial(DenyReason.TOKEN_MALFORMED)
        try:
            key = await self._key_for(kid, alg)
        except KeysUnavailableError:
            return Denial(DenyReason.KEYS_UNAVAILABLE)
        if key is None:
            return Denial(DenyReason.UNKNOWN_KEY)
        digest = hashlib.sha256(token.encode()).digest()
        seen = self._verified.get(digest)
        if seen is not None and seen[0] is key and self._monotonic() - seen[2] < SIGNATURE_CACHE_S:
            return self._check_claims(seen[1])  # same bytes, same key: only the time-bound claims can change
        try:
            claims = jwt.decode(token, key, algorithms=[alg], registry=self._registries[alg]).claims
        except (InvalidPayloadError, ExceededSizeError):  # a payload that is no JSON object; a header over 512 B
            return Denial(DenyReason.TOKEN_MALFORMED)
        except JoseError:
            return Denial(DenyReason.BAD_SIGNATURE)
        except ValueError:  # bad base64 or JSON inside an otherwise well-shaped token
            return Denial(DenyReason.TOKEN_MALFORMED)
        self._verified[digest] = (key, claims, self._monotonic())
        if len(self._verified) > SIGNATURE_CACHE_SIZE:
            self._verified.popitem(last=False)
        return self._check_claims(claims)

    def _check_claims(self, claims: dict[str, Any]) -> VerifiedToken | Denial:
        now = self._clock()
        leeway = self.settings.leeway_s
        if claims.get("iss") != self.settings.issuer:
            return Denial(DenyReason.WRONG_ISSUER)
        audience = _matched_audience(claims.get("aud"), self.settings.audiences)
        if audience is None:
            return Denial(DenyReason.WRONG_AUDIENCE)
        exp, nbf, iat = _time(claims.get("exp")), _time(claims.get("nbf")), _time(claims.get("iat"))
        if exp is None:
            return Denial(DenyReason.MISSING_EXPIRY)
        if exp + leeway < now:
            return Denial(DenyReason.EXPIRED)
        if "nbf" in claims and (nbf is None or nbf - leeway > now):
            return Denial(DenyReason.NOT_YET_VALID)
        if "iat" in claims and (iat is None or iat - leeway > now):
            return Denial(DenyReason.ISSUED_IN_FUTURE)
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject.strip():
            return Denial(DenyReason.MISSING_SUBJECT)
        client_id = claims.get("client_id", claims.get("azp"))
        jti = claims.get("jti")
        return VerifiedToken(
            subject=subject,
            issuer=self.settings.issuer,
            audience=audience,
            scopes=_token_scopes(claims),
            client_id=client_id if isinstance(client_id, str) else None,
            token_id=jti if isinstance(jti, str) and jti else None,
            expires_at=int(exp),
        )

    async def _key_for(self, kid: str | None, alg: str) -> RSAKey | ECKey | None:
        key = _pick(await self._key_set(), kid, alg)
        if key is not None or kid is None:
            return key
        async with self._lock:  # one refetch for a burst of unknown kids
            if self._monotonic() - self._forced_at < self.settings.refetch_interval_s:
                return _pick(self._keys, kid, alg)
            self._forced_at = self._monotonic()
            return _pick(await self._fetch_keys(), kid, alg)

    def _fresh(self) -> bool:
        return self._keys is not None and self._monotonic() - self._fetched_at < self.settings.cache_ttl_s

    async def _key_set(self) -> KeySet:
        keys = self._keys
        if keys is not None and self._fresh():
            return keys
        if self._monotonic() < self._retry_at or (keys is not None and self._lock.locked()):
            if keys is None:
                raise KeysUnavailableError("the issuer's keys were unavailable moments ago")
            return keys  # stale keys beat waiting for a refresh that is running or has just failed
        failures = self._failures
        async with self._lock:
            if self._keys is not None and self._fresh():
                return self._keys
            if self._failures != failures:  # the fetch this caller waited for has failed: share its outcome
                if self._keys is None:
                    raise KeysUnavailableError("the issuer's keys are unavailable")
                return self._keys
            try:
                return await self._fetch_keys()
            except KeysUnavailableError:
                self._failures += 1
                self._retry_at = self._monotonic() + min(self.settings.refetch_interval_s, KEYS_RETRY_AFTER_S)
                if self._keys is not None:  # keep serving the last good keys rather than lock everyone out
                    logger.warning("JWKS refresh failed; keeping the cached key set")
                    return self._keys
                raise

    async def _fetch_keys(self) -> KeySet:
        """Fetch the key set (and, the first time, the discovery document); call with the lock held."""
        if self._jwks_url is None:
            self._jwks_url = await self._discover()
        document = await self._get_json(self._jwks_url)
        self.fetch_count += 1
        raw_keys = document.get("keys")
        if not isinstance(raw_keys, list):
            raise KeysUnavailableError("the key set has no keys")
        usable = [key for raw in _JSON_LIST.validate_python(raw_keys) if (key := _import_key(raw)) is not None]
        if not usable:
            raise KeysUnavailableError("the key set holds no usable signing key")
        self._keys = KeySet(list(usable))
        self._fetched_at = self._monotonic()
        return self._keys

    async def _discover(self) -> str:
        url = self.settings.issuer.rstrip("/") + DISCOVERY_PATH
        document = await self._get_json(url)
        if document.get("issuer") != self.settings.issuer:
            raise KeysUnavailableError("the discovery document names another issuer")
        jwks_uri = document.get("jwks_uri")
        if not isinstance(jwks_uri, str) or not _fetchable(jwks_uri):
            raise KeysUnavailableError("the discovery document has no usable jwks_uri")
        return jwks_uri

    async def _get_json(self, url: str) -> dict[str, Any]:
        body = bytearray()
        try:
            with anyio.fail_after(self.settings.timeout_s):
                async with self._http.stream("GET", url, headers={"Accept": "application/json"}) as response:
                    if response.status_code != 200:
                        raise KeysUnavailableError(f"HTTP {response.status_code} from the issuer")
                    async for chunk in response.aiter_bytes():
                        body += chunk
                        if len(body) > self.settings.max_bytes:
                            raise KeysUnavailableError("the issuer's document is too large")
        except (httpx2.HTTPError, TimeoutError, OSError) as exc:
            raise KeysUnavailableError(f"cannot reach the issuer ({type(exc).__name__})") from None
        try:
            return _JSON_OBJECT.validate_json(bytes(body))
        except ValidationError:
            raise KeysUnavailableError("the issuer's document is not a JSON object") from None


def _header(token: str) -> dict[str, Any] | None:
    """The protected header of a compact JWS, or None when the token is not one."""
    if len(token) > MAX_TOKEN_CHARS:
        return None
    parts = token.split(".")
    if len(parts) != 3 or not all(parts):
        return None
    try:
        return _JSON_OBJECT.validate_json(_b64decode(parts[0]))
    except (ValidationError, ValueError):
        return None


def _b64decode(segment: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ValueError("not base64url") from exc


def _import_key(raw: object) -> RSAKey | ECKey | None:
    """A public signing key from one JWK, or None for anything else (encryption keys, oct, private parts)."""
    try:
        data = _JSON_OBJECT.validate_python(raw)
    except ValidationError:
        return None
    if data.get("use", "sig") != "sig" or "d" in data:
        return None
    try:
        if data.get("kty") == "RSA":
            return RSAKey.import_key(data)
        if data.get("kty") == "EC" and data.get("crv") == "P-256":
            return ECKey.import_key(data)
    except (JoseError, ValueError):
        return None
    return None


def _pick(keys: KeySet | None, kid: str | None, alg: str) -> RSAKey | ECKey | None:
    """The key for `kid` (or the only key of the right type when the token names none), if it suits `alg`."""
    if keys is None:
        return None
    wanted = _KEY_TYPES[alg]
    candidates = [key for key in keys.keys if isinstance(key, RSAKey | ECKey) and key.key_type == wanted]
    if kid is None:
        return candidates[0] if len(candidates) == 1 else None
    for key in candidates:
        if key.kid == kid and key.get("alg", alg) == alg:
            return key
    return None


def _matched_audience(aud: object, accepted: Sequence[str]) -> str | None:
    values = _strings(aud)
    for candidate in accepted:
        if any(_same_resource(value, candidate) for value in values):
            return candidate
    return None


def _same_resource(value: str, accepted: str) -> bool:
    """Exact match, ignoring one trailing slash and the case of scheme and host (RFC 8707 canonical URIs)."""
    return _canonical(value) == _canonical(accepted)


def _canonical(url: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if not parts.scheme or not parts.netloc:
        return url
    path = parts.path[:-1] if parts.path.endswith("/") else parts.path
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), path, parts.query, parts.fragment))


def _time(value: object) -> float | None:
    """A NumericDate claim as a float, or None when it is absent, not a number, or not finite (`NaN`)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:  # an integer beyond any float
        return None
    return number if math.isfinite(number) else None


def _strings(value: object) -> list[str]:
    """The strings of a claim that is a string or a list (non-strings dropped)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [item for item in _JSON_LIST.validate_python(value) if isinstance(item, str)]
    return []


def _token_scopes(claims: dict[str, Any]) -> frozenset[str]:
    scope = claims.get("scope")
    if isinstance(scope, str):
        return frozenset(scope.split())
    return frozenset(item for value in _strings(claims.get("scp")) for item in value.split())


def _fetchable(url: str) -> bool:
    from urllib.parse import urlsplit

    from ibkr_gateway_core.config import RemoteMcpConfig

    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return True
    try:
        RemoteMcpConfig(jwks_url=url)
    except ValueError:
        return False
    return True
