"""Audit key management: never a constant key, never a printed secret (inventory §11.5)."""

import base64
import os
import stat
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from ibkr_gateway_core.audit import load_audit_key, load_checkpoint_key, public_key_id
from ibkr_gateway_core.config import GatewayConfig
from ibkr_gateway_core.errors import ErrorCode, GatewayError

SECRET = "s3cr3t-value-that-is-long-enough-for-hmac-0123456789"


def real_config(tmp_path: Path, **audit: object) -> GatewayConfig:
    return GatewayConfig.from_mapping(
        {
            "broker": {"backend": "client_portal_gateway", "base_url": "https://localhost:5000"},
            "state": {"directory": str(tmp_path)},
            "audit": audit,
        }
    )


def test_the_key_comes_from_the_named_environment_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`audit.hmac_secret_env` names the variable; its bytes are the key."""
    monkeypatch.setenv("TEST_AUDIT_KEY", SECRET)
    config = real_config(tmp_path, hmac_secret_env="TEST_AUDIT_KEY")
    assert load_audit_key(config) == SECRET.encode()
    assert not (tmp_path / "audit.key").exists()


@pytest.mark.parametrize("value", [None, "", "too-short"])
def test_a_missing_or_short_env_key_is_config_invalid_naming_only_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str | None
) -> None:
    """The message helps the operator without echoing the (possibly real) secret."""
    if value is None:
        monkeypatch.delenv("TEST_AUDIT_KEY", raising=False)
    else:
        monkeypatch.setenv("TEST_AUDIT_KEY", value)
    with pytest.raises(GatewayError) as caught:
        load_audit_key(real_config(tmp_path, hmac_secret_env="TEST_AUDIT_KEY"))
    assert caught.value.code is ErrorCode.CONFIG_INVALID
    assert "TEST_AUDIT_KEY" in caught.value.message
    assert not value or value not in str(caught.value.to_dict())


def test_a_real_broker_without_an_audit_key_is_refused(tmp_path: Path) -> None:
    """No development key in production: the real-broker config must name one."""
    with pytest.raises(GatewayError) as caught:
        load_audit_key(real_config(tmp_path))
    assert caught.value.code is ErrorCode.CONFIG_INVALID
    assert "audit.hmac_secret_env" in caught.value.message


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX modes")
def test_fake_mode_creates_a_private_random_key_file_once_and_reuses_it(tmp_path: Path) -> None:
    """First use writes `audit.key` (0600) in the state directory; later uses read the same key."""
    state = tmp_path / "state" / "dir"
    config = GatewayConfig.fake_local(state_dir=state)
    key = load_audit_key(config)
    file = state / "audit.key"
    assert stat.S_IMODE(file.stat().st_mode) == 0o600
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert len(key) >= 32
    assert load_audit_key(config) == key
    other = load_audit_key(GatewayConfig.fake_local(state_dir=tmp_path / "elsewhere"))
    assert other != key  # random per installation, never a constant
    assert [path.name for path in state.iterdir()] == ["audit.key"]  # no temporary files left


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX modes")
def test_a_key_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    """A leaked key lets anyone re-chain the log, so a world-readable key file is not used."""
    config = GatewayConfig.fake_local(state_dir=tmp_path)
    load_audit_key(config)
    os.chmod(tmp_path / "audit.key", 0o644)
    with pytest.raises(GatewayError) as caught:
        load_audit_key(config)
    assert caught.value.code is ErrorCode.CONFIG_INVALID


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX modes")
def test_fake_mode_generates_a_private_checkpoint_signing_key(tmp_path: Path) -> None:
    """`checkpoint.key` (PEM, 0600) is created once; the same key signs every later checkpoint."""
    config = GatewayConfig.fake_local(state_dir=tmp_path)
    key = load_checkpoint_key(config)
    assert stat.S_IMODE((tmp_path / "checkpoint.key").stat().st_mode) == 0o600
    assert public_key_id(load_checkpoint_key(config).public_key()) == public_key_id(key.public_key())


def test_the_checkpoint_key_can_come_from_the_environment_as_pem_or_base64(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Operators keep the signing key outside the state directory."""
    key = Ed25519PrivateKey.generate()
    raw = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    config = real_config(tmp_path, checkpoint_key_env="TEST_CHECKPOINT_KEY")
    for value in (base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode().rstrip("="), pem.decode()):
        monkeypatch.setenv("TEST_CHECKPOINT_KEY", value)
        assert public_key_id(load_checkpoint_key(config).public_key()) == public_key_id(key.public_key())


def test_the_checkpoint_key_can_come_from_a_file(tmp_path: Path) -> None:
    """`audit.checkpoint_key_file` holds a PEM key."""
    key = Ed25519PrivateKey.generate()
    file = tmp_path / "signing.pem"
    file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    file.chmod(0o600)
    loaded = load_checkpoint_key(real_config(tmp_path, checkpoint_key_file=str(file)))
    assert public_key_id(loaded.public_key()) == public_key_id(key.public_key())


@pytest.mark.parametrize("value", ["not a key", base64.b64encode(b"x" * 31).decode()])
def test_a_bad_checkpoint_key_is_config_invalid_without_echoing_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    """Garbage in the variable is named by the variable, never printed."""
    monkeypatch.setenv("TEST_CHECKPOINT_KEY", value)
    with pytest.raises(GatewayError) as caught:
        load_checkpoint_key(real_config(tmp_path, checkpoint_key_env="TEST_CHECKPOINT_KEY"))
    assert caught.value.code is ErrorCode.CONFIG_INVALID
    assert "TEST_CHECKPOINT_KEY" in caught.value.message and value not in caught.value.message


def test_a_real_broker_needs_a_configured_checkpoint_key(tmp_path: Path) -> None:
    """No generated signing key beside a real account's log."""
    with pytest.raises(GatewayError) as caught:
        load_checkpoint_key(real_config(tmp_path))
    assert caught.value.code is ErrorCode.CONFIG_INVALID
