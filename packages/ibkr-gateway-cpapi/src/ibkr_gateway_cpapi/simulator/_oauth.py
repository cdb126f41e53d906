"""IBKR's side of OAuth 1.0a: the live session token handshake and the check of every signed request.

`OAuthAuthority` holds only what IBKR holds after a consumer's onboarding: the consumer key and realm,
the public half of the consumer's signature key, the Diffie-Hellman parameters, the access token and
the plain access token secret (IBKR issued it; the consumer receives it encrypted). It never sees a
private key. On `POST /oauth/live_session_token` it checks the RSA-SHA256 signature over the
prepend and the base string, does its half of Diffie-Hellman and answers `diffie_hellman_response`,
`live_session_token_signature` and `live_session_token_expiration`. Afterwards every request must be
signed HMAC-SHA256 with a live session token it issued and that has not expired, with a timestamp
within `timestamp_window` of its clock and a nonce it has not seen; anything else is answered 401.

`write_test_credentials` makes a throwaway consumer: fresh RSA keys, the RFC 3526 2048-bit MODP group
as DH parameters, a random access token and secret; the consumer's files in a directory (private
keys mode 0600), IBKR's half as the returned `OAuthConsumer`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final
from urllib.parse import unquote

from ..oauth import base_string
from ._json import as_object
from ._session import SimHttpError, error_body

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

RFC3526_MODP_2048: Final = int(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A08798E3404DD"
    "EF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED"
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF0598DA48361C55D39A69163FA8FD24CF5F"
    "83655D23DCA3AD961C62F356208552BB9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B"
    "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF6955817183995497CEA956AE515D2261898FA0510"
    "15728E5A8AACAA68FFFFFFFFFFFFFFFF",
    16,
)
"""The 2048-bit MODP group of RFC 3526 (generator 2): public, fixed parameters for throwaway test consumers."""

DEFAULT_TOKEN_LIFETIME_S: Final = 24 * 3600.0
"""IBKR's live session tokens last about 24 hours."""

DEFAULT_TIMESTAMP_WINDOW_S: Final = 300.0
"""How far `oauth_timestamp` may be from the simulator's clock."""

CONSUMER_FILES: Final = (
    "private_signature.pem",
    "private_encryption.pem",
    "dhparam.pem",
    "access_token",
    "access_token_secret",
)
"""What `write_test_credentials` writes (it refuses a directory that already holds any of them)."""

GATEWAY_CONFIG_FILE: Final = "gateway.yaml"


@dataclass(frozen=True, slots=True, repr=False)
class OAuthConsumer:
    """What IBKR knows of one first-party consumer and its access token."""

    consumer_key: str
    realm: str
    signature_public_key: RSAPublicKey
    dh_prime: int
    dh_generator: int
    access_token: str
    access_token_secret: bytes
    """The plain secret (the consumer holds it encrypted to its encryption key)."""

    def __repr__(self) -> str:
        return f"OAuthConsumer(consumer_key={self.consumer_key!r})"


@dataclass(slots=True)
class _Issued:
    token: bytes
    expires_at: float


def _unauthorized(reason: str) -> SimHttpError:
    return SimHttpError(401, error_body(reason))


def parse_authorization(header: str | None) -> tuple[str | None, dict[str, str]]:
    """(realm, parameters) of an `Authorization: OAuth ...` header, values percent-decoded.

    Raises:
        SimHttpError: 401 for a missing or malformed header, or a parameter given twice.
    """
    if header is None or not header.startswith("OAuth "):
        raise _unauthorized("Missing OAuth authorization")
    realm: str | None = None
    params: dict[str, str] = {}
    for part in header[len("OAuth ") :].split(","):
        name, sep, quoted = part.strip().partition("=")
        if not sep or len(quoted) < 2 or not quoted.startswith('"') or not quoted.endswith('"'):
            raise _unauthorized("Malformed OAuth authorization")
        value = unquote(quoted[1:-1])
        if name == "realm":
            realm = value
            continue
        if name in params:
            raise _unauthorized("Malformed OAuth authorization")
        params[name] = value
    return realm, params


def _k_bytes(shared: int) -> bytes:
    """The shared secret as Java's `BigInteger.toByteArray` writes it: minimal, with a sign byte when needed."""
    raw = shared.to_bytes((shared.bit_length() + 7) // 8 or 1, "big").lstrip(b"\x00")
    return b"\x00" + raw if not raw or raw[0] & 0x80 else raw


class OAuthAuthority:
    """IBKR's half of OAuth 1.0a for one consumer: issues live session tokens, checks signed requests."""

    def __init__(
        self,
        consumer: OAuthConsumer,
        *,
        token_lifetime_s: float = DEFAULT_TOKEN_LIFETIME_S,
        timestamp_window_s: float = DEFAULT_TIMESTAMP_WINDOW_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Serve `consumer`; `clock` gives epoch seconds (token expiry, timestamps)."""
        self.consumer = consumer
        self.token_lifetime_s = token_lifetime_s
        self.timestamp_window_s = timestamp_window_s
        self._clock = clock
        self._issued: list[_Issued] = []
        self._nonces: dict[str, float] = {}
        self.tokens_issued = 0
        self.refusals: Counter[str] = Counter()
        """Why requests were refused (the 401 error text), counted."""
        self.verified = 0
        """Signed requests that passed."""

    def __repr__(self) -> str:
        return f"OAuthAuthority(consumer_key={self.consumer.consumer_key!r}, tokens_issued={self.tokens_issued})"

    def expire_tokens(self) -> None:
        """End every live session token now (as IBKR does after about 24 hours, or at a reset)."""
        now = self._clock()
        for issued in self._issued:
            issued.expires_at = min(issued.expires_at, now)

    # -- the handshake ---------------------------------------------------------------------------

    def live_session_token(self, method: str, url: str, query: Iterable[tuple[str, str]], header: str | None) -> object:
        """Answer `POST /oauth/live_session_token`.

        Raises:
            SimHttpError: 401 for anything IBKR would refuse (signature, consumer, token, replay, time).
        """
        try:
            return self._live_session_token(method, url, list(query), header)
        except SimHttpError as exc:
            self._count(exc)
            raise

    def _live_session_token(self, method: str, url: str, query: list[tuple[str, str]], header: str | None) -> object:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15
        from cryptography.hazmat.primitives.hashes import SHA256

        consumer = self.consumer
        params = self._common_checks(header, "RSA-SHA256")
        challenge_hex = params.get("diffie_hellman_challenge", "")
        try:
            challenge = int(challenge_hex, 16)
            signature = base64.b64decode(params["oauth_signature"], validate=True)
        except (ValueError, KeyError):
            raise _unauthorized("Invalid signature") from None
        signed = {name: value for name, value in params.items() if name != "oauth_signature"}
        text = consumer.access_token_secret.hex() + base_string(method, url, [*signed.items(), *query])
        try:
            consumer.signature_public_key.verify(signature, text.encode("utf-8"), PKCS1v15(), SHA256())
        except InvalidSignature:
            raise _unauthorized("Invalid signature") from None
        self._use_nonce(params)
        prime = consumer.dh_prime
        if not 1 < challenge < prime - 1:
            raise _unauthorized("Invalid diffie_hellman_challenge")
        exponent = secrets.randbelow(prime - 3) + 2
        response = pow(consumer.dh_generator, exponent, prime)
        shared = pow(challenge, exponent, prime)
        token = hmac.new(_k_bytes(shared), consumer.access_token_secret, hashlib.sha1).digest()
        expires_at = self._clock() + self.token_lifetime_s
        self._issued = [issued for issued in self._issued if issued.expires_at > self._clock() - 3600][-16:]
        self._issued.append(_Issued(token, expires_at))
        self.tokens_issued += 1
        proof = hmac.new(token, consumer.consumer_key.encode("utf-8"), hashlib.sha1).hexdigest()
        return {
            "diffie_hellman_response": format(response, "x"),
            "live_session_token_signature": proof,
            "live_session_token_expiration": int(expires_at * 1000),
        }

    # -- every other request ---------------------------------------------------------------------

    def verify(self, method: str, url: str, query: Iterable[tuple[str, str]], header: str | None) -> None:
        """Admit a request signed HMAC-SHA256 with a live session token issued here.

        Raises:
            SimHttpError: 401 `Invalid signature`, `Live session token expired`, `Nonce already used`,
                `Invalid timestamp`, `Invalid consumer` or `Invalid token`.
        """
        try:
            self._verify(method, url, list(query), header)
        except SimHttpError as exc:
            self._count(exc)
            raise
        self.verified += 1

    def _verify(self, method: str, url: str, query: list[tuple[str, str]], header: str | None) -> None:
        params = self._common_checks(header, "HMAC-SHA256")
        given = params.get("oauth_signature", "")
        if not given.isascii():
            raise _unauthorized("Invalid signature")
        signed = [(name, value) for name, value in params.items() if name != "oauth_signature"]
        text = base_string(method, url, [*signed, *query]).encode("utf-8")
        now = self._clock()
        for issued in reversed(self._issued):
            expected = base64.b64encode(hmac.new(issued.token, text, hashlib.sha256).digest()).decode("ascii")
            if hmac.compare_digest(expected, given):
                if issued.expires_at <= now:
                    raise _unauthorized("Live session token expired")
                self._use_nonce(params)
                return
        raise _unauthorized("Invalid signature")

    def _common_checks(self, header: str | None, signature_method: str) -> dict[str, str]:
        consumer = self.consumer
        realm, params = parse_authorization(header)
        if realm != consumer.realm or params.get("oauth_consumer_key") != consumer.consumer_key:
            raise _unauthorized("Invalid consumer")
        if params.get("oauth_token") != consumer.access_token:
            raise _unauthorized("Invalid token")
        if params.get("oauth_signature_method") != signature_method:
            raise _unauthorized("Invalid signature method")
        stamp = params.get("oauth_timestamp", "")
        if not stamp.isdigit() or abs(int(stamp) - self._clock()) > self.timestamp_window_s:
            raise _unauthorized("Invalid timestamp")
        if not params.get("oauth_nonce") or "oauth_signature" not in params:
            raise _unauthorized("Invalid signature")
        return params

    def _use_nonce(self, params: dict[str, str]) -> None:
        now = self._clock()
        if len(self._nonces) > 10_000:
            horizon = now - 2 * self.timestamp_window_s
            self._nonces = {nonce: seen for nonce, seen in self._nonces.items() if seen > horizon}
        nonce = params["oauth_nonce"]
        if nonce in self._nonces:
            raise _unauthorized("Nonce already used")
        self._nonces[nonce] = now

    def _count(self, exc: SimHttpError) -> None:
        body = as_object(exc.body)
        reason = str(body.get("error")) if body is not None else str(exc.body)
        self.refusals[reason] += 1


@dataclass(frozen=True, slots=True)
class ConsumerFiles:
    """Where `write_test_credentials` put the consumer's files."""

    directory: Path
    signature_key: Path
    encryption_key: Path
    dh_params: Path
    access_token: Path
    access_token_secret: Path
    consumer_key: str
    realm: str

    def write_gateway_config(self, base_url: str, *, audit_key_env: str = "IBKR_AUDIT_HMAC_SECRET") -> Path:
        """Write `gateway.yaml` beside the files: `cpapi_oauth` to the simulator at `base_url`, state in `state/`."""
        path = self.directory / GATEWAY_CONFIG_FILE
        path.write_text(
            "# A throwaway OAuth 1.0a consumer known only to the simulator at base_url "
            "(ibkr-agent simulator serve --oauth-dir).\n"
            "broker:\n"
            "  backend: cpapi_oauth\n"
            f"  base_url: {base_url}\n"
            "  verify_tls: false   # loopback, self-signed certificate\n"
            "  oauth:\n"
            f"    consumer_key: {self.consumer_key}\n"
            f"    realm: {self.realm}\n"
            f"    access_token_file: {self.access_token.name}\n"
            f"    access_token_secret_file: {self.access_token_secret.name}\n"
            f"    signature_key_file: {self.signature_key.name}\n"
            f"    encryption_key_file: {self.encryption_key.name}\n"
            f"    dh_param_file: {self.dh_params.name}\n"
            "audit:\n"
            f"  hmac_secret_env: {audit_key_env}\n"
            "state:\n"
            "  directory: state\n",
            encoding="utf-8",
        )
        return path

    def oauth_config(self) -> dict[str, object]:
        """The `broker.oauth` mapping that names these files."""
        return {
            "consumer_key": self.consumer_key,
            "realm": self.realm,
            "access_token_file": str(self.access_token),
            "access_token_secret_file": str(self.access_token_secret),
            "signature_key_file": str(self.signature_key),
            "encryption_key_file": str(self.encryption_key),
            "dh_param_file": str(self.dh_params),
        }


def _write_private(path: Path, data: bytes) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)
    os.chmod(path, 0o600)


def _der(tag: int, content: bytes) -> bytes:
    size = len(content)
    if size < 0x80:
        return bytes([tag, size]) + content
    length = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(length)]) + length + content


def dh_parameters_pem(prime: int, generator: int) -> bytes:
    """A PEM `DH PARAMETERS` block (PKCS #3), as `openssl dhparam` writes it."""
    integers = b"".join(_der(0x02, value.to_bytes(value.bit_length() // 8 + 1, "big")) for value in (prime, generator))
    body = base64.encodebytes(_der(0x30, integers)).decode("ascii")
    return f"-----BEGIN DH PARAMETERS-----\n{body}-----END DH PARAMETERS-----\n".encode("ascii")


def write_test_credentials(
    directory: Path, *, consumer_key: str = "TESTCONS", realm: str = "test_realm", key_size: int = 2048
) -> tuple[OAuthConsumer, ConsumerFiles]:
    """A throwaway consumer: its files in `directory`, IBKR's half returned.

    These keys exist only for the simulator; IBKR knows nothing of them.

    Raises:
        FileExistsError: the directory already holds one of `CONSUMER_FILES` or `gateway.yaml` (never
            overwritten: it may be a real consumer's key).
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15

    directory.mkdir(parents=True, exist_ok=True)
    taken = [name for name in (*CONSUMER_FILES, GATEWAY_CONFIG_FILE) if (directory / name).exists()]
    if taken:
        raise FileExistsError(", ".join(taken))
    signature_key = rsa.generate_private_key(public_exponent=65537, key_size=key_size)
    encryption_key = rsa.generate_private_key(public_exponent=65537, key_size=key_size)
    access_token = secrets.token_hex(10)
    secret = secrets.token_bytes(32)
    encrypted = base64.b64encode(encryption_key.public_key().encrypt(secret, PKCS1v15())).decode("ascii")

    def pem(key: rsa.RSAPrivateKey) -> bytes:
        return key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    files = ConsumerFiles(
        directory=directory,
        signature_key=directory / "private_signature.pem",
        encryption_key=directory / "private_encryption.pem",
        dh_params=directory / "dhparam.pem",
        access_token=directory / "access_token",
        access_token_secret=directory / "access_token_secret",
        consumer_key=consumer_key,
        realm=realm,
    )
    _write_private(files.signature_key, pem(signature_key))
    _write_private(files.encryption_key, pem(encryption_key))
    files.dh_params.write_bytes(dh_parameters_pem(RFC3526_MODP_2048, 2))
    _write_private(files.access_token, access_token.encode("ascii") + b"\n")
    _write_private(files.access_token_secret, encrypted.encode("ascii") + b"\n")
    consumer = OAuthConsumer(
        consumer_key=consumer_key,
        realm=realm,
        signature_public_key=signature_key.public_key(),
        dh_prime=RFC3526_MODP_2048,
        dh_generator=2,
        access_token=access_token,
        access_token_secret=secret,
    )
    return consumer, files
