"""Keys of the audit log: the HMAC chain key and the Ed25519 checkpoint signing key.

With a real broker both come from the configuration (an environment variable, or a key file for the
signing key). With the simulator and no configuration, each is generated on first use into a file of
the state directory, readable only by its owner. There is never a constant key in the code.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Final

from ..config import GatewayConfig
from ..errors import ErrorCode, GatewayError
from ..state.database import make_private_dirs

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

MIN_KEY_BYTES: Final = 32
"""Shortest accepted chain key."""

AUDIT_KEY_FILE: Final = "audit.key"
"""Generated chain key in the state directory (simulator only)."""

CHECKPOINT_KEY_FILE: Final = "checkpoint.key"
"""Generated checkpoint signing key in the state directory (simulator only)."""


def load_audit_key(config: GatewayConfig) -> bytes:
    """The chain key: from `audit.hmac_secret_env`, else (simulator only) a generated key file.

    Raises:
        GatewayError: `CONFIG_INVALID` when the variable is missing or too short, when a real broker is
            configured without one, or when the key file is unsafe.
    """
    env_name = config.audit.hmac_secret_env
    if env_name:
        value = os.environ.get(env_name)
        if not value:
            raise GatewayError(
                ErrorCode.CONFIG_INVALID,
                f"The environment variable {env_name} (audit.hmac_secret_env) is not set.",
                user_action=f"Set {env_name} to a random secret of at least {MIN_KEY_BYTES} bytes.",
            )
        key = value.encode("utf-8")
        if len(key) < MIN_KEY_BYTES:
            raise GatewayError(
                ErrorCode.CONFIG_INVALID,
                f"The environment variable {env_name} (audit.hmac_secret_env) holds fewer than {MIN_KEY_BYTES} bytes.",
                user_action=f"Set {env_name} to a random secret of at least {MIN_KEY_BYTES} bytes.",
            )
        return key
    if not config.is_fake:
        raise GatewayError(
            ErrorCode.CONFIG_INVALID,
            "audit.hmac_secret_env is required with a real broker.",
            user_action="Name an environment variable holding a random secret of at least 32 bytes.",
        )
    path = config.state_dir() / AUDIT_KEY_FILE
    key = _private_file(path, lambda: secrets.token_hex(MIN_KEY_BYTES).encode("ascii")).strip()
    if len(key) < MIN_KEY_BYTES:
        raise GatewayError(ErrorCode.CONFIG_INVALID, f"The key file {AUDIT_KEY_FILE} is damaged (too short).")
    return key


def load_checkpoint_key(config: GatewayConfig) -> Ed25519PrivateKey:
    """The checkpoint signing key: from `audit.checkpoint_key_env` or `audit.checkpoint_key_file`, else generated.

    The generated key file exists only with the simulator; a real broker needs one of the two settings.

    Raises:
        GatewayError: `CONFIG_INVALID` when the key is missing, unreadable or not an Ed25519 key.
    """
    env_name, file = config.audit.checkpoint_key_env, config.audit.checkpoint_key_file
    if env_name and file:
        raise GatewayError(
            ErrorCode.CONFIG_INVALID, "Set audit.checkpoint_key_env or audit.checkpoint_key_file, not both."
        )
    if env_name:
        value = os.environ.get(env_name)
        if not value:
            raise GatewayError(
                ErrorCode.CONFIG_INVALID,
                f"The environment variable {env_name} (audit.checkpoint_key_env) is not set.",
                user_action=f"Set {env_name} to an Ed25519 private key (PEM, or base64 of its 32 raw bytes).",
            )
        return _parse_signing_key(value.encode("utf-8"), f"the environment variable {env_name}")
    if file is not None:
        try:
            data = _read_private(file)
        except FileNotFoundError:
            raise GatewayError(
                ErrorCode.CONFIG_INVALID,
                f"The checkpoint key file {file.name!r} (audit.checkpoint_key_file) is missing.",
            ) from None
        return _parse_signing_key(data, f"the checkpoint key file {file.name!r}")
    if not config.is_fake:
        raise GatewayError(
            ErrorCode.CONFIG_INVALID,
            "audit.checkpoint_key_env or audit.checkpoint_key_file is required with a real broker.",
        )
    path = config.state_dir() / CHECKPOINT_KEY_FILE
    return _parse_signing_key(_private_file(path, _new_signing_key_pem), f"the key file {CHECKPOINT_KEY_FILE}")


def public_key_id(public_key: Ed25519PublicKey) -> str:
    """Fingerprint of a checkpoint public key: the first 16 hex digits of SHA-256 of its raw bytes."""
    from cryptography.hazmat.primitives import serialization

    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def _new_signing_key_pem() -> bytes:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _parse_signing_key(data: bytes, source: str) -> Ed25519PrivateKey:
    """An Ed25519 key from PEM or from base64 of its 32 raw bytes; errors name the source, never the value."""
    from cryptography.hazmat.primitives import serialization  # loaded only when a checkpoint key is
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # needed, not at start-up

    problem = f"{source} does not hold an Ed25519 private key (PEM, or base64 of 32 raw bytes)."
    text = data.strip()
    try:
        if text.startswith(b"-----BEGIN"):
            key = serialization.load_pem_private_key(text, password=None)
        else:
            unpadded = text.rstrip(b"=").replace(b"+", b"-").replace(b"/", b"_")
            raw = base64.urlsafe_b64decode(unpadded + b"=" * (-len(unpadded) % 4))
            key = Ed25519PrivateKey.from_private_bytes(raw)
    except (ValueError, TypeError, binascii.Error):
        raise GatewayError(ErrorCode.CONFIG_INVALID, problem[0].upper() + problem[1:]) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise GatewayError(ErrorCode.CONFIG_INVALID, problem[0].upper() + problem[1:])
    return key


def _private_file(path: Path, make: Callable[[], bytes]) -> bytes:
    """Read a private key file, creating it (0600) first if missing; concurrent first uses agree on one file."""
    try:
        return _read_private(path)
    except FileNotFoundError:
        pass
    make_private_dirs(path.parent)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(temporary, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(make())
            handle.flush()
            os.fsync(handle.fileno())  # the key must survive a crash: the audit log depends on it
        try:
            os.link(temporary, path)  # atomic, and never replaces a key another process just wrote
        except FileExistsError:
            pass
    finally:
        temporary.unlink(missing_ok=True)
    return _read_private(path)


def _read_private(path: Path) -> bytes:
    """The file's bytes, refusing a key file that other users may read."""
    with path.open("rb") as handle:
        if os.name == "posix" and os.fstat(handle.fileno()).st_mode & 0o077:
            raise GatewayError(
                ErrorCode.CONFIG_INVALID,
                f"The key file {path.name!r} is readable by other users.",
                user_action=f"Run `chmod 600` on {path.name} in the state directory, then retry.",
            )
        return handle.read()
