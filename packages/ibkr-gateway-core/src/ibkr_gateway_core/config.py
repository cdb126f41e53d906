"""Configuration: one pydantic root loaded from YAML, closed by default.

Unknown keys are refused at every level, risky switches default to off, and a secret is named by
the environment variable that holds it, never written in the file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Final, Literal, Self
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import ErrorCode, GatewayError
from .scopes import Scope, parse_scopes

LOCAL_HOSTS: Final = frozenset({"localhost", "127.0.0.1", "::1"})
"""The only hosts for which TLS verification may be turned off."""

STATE_DIR_ENV: Final = "IBKR_AGENT_STATE_DIR"
"""Environment variable that overrides the default state directory."""

DEFAULT_TIMEOUT_SECONDS: Final = 10.0
DEFAULT_MAX_RESPONSE_BYTES: Final = 4 * 1024 * 1024

BackendName = Literal["fake", "client_portal_gateway"]


def default_state_dir() -> Path:
    """Where state lives without a config: `$IBKR_AGENT_STATE_DIR`, else the user's XDG state dir."""
    override = os.environ.get(STATE_DIR_ENV)
    if override:
        return Path(override)
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "ibkr-agent-gateway"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BrokerConfig(_Section):
    """Where broker calls go."""

    backend: BackendName = "fake"
    """`fake` runs the embedded CPAPI simulator; `client_portal_gateway` talks to a running gateway."""
    base_url: str | None = None
    """Client Portal Gateway URL, e.g. `https://localhost:5000` (`/v1/api` is added when missing)."""
    verify_tls: bool = True
    """May be false only when `base_url` is on localhost, 127.0.0.1 or ::1."""
    timeout_seconds: Annotated[float, Field(gt=0, le=120)] = DEFAULT_TIMEOUT_SECONDS
    max_response_bytes: Annotated[int, Field(ge=1024, le=64 * 1024 * 1024)] = DEFAULT_MAX_RESPONSE_BYTES

    @field_validator("base_url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("broker.base_url must be an http(s) URL with a host")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _check_backend(self) -> Self:
        if self.backend == "client_portal_gateway" and self.base_url is None:
            raise GatewayError(
                ErrorCode.CONFIG_MISSING_BROKER_BASE_URL, "broker.base_url is required for client_portal_gateway."
            )
        if not self.verify_tls and self.base_url is not None:
            host = urlsplit(self.base_url).hostname or ""
            if host not in LOCAL_HOSTS:
                raise GatewayError(
                    ErrorCode.CONFIG_INVALID,
                    "broker.verify_tls may be false only for localhost, 127.0.0.1 or ::1.",
                    user_action="Turn TLS verification on, or run the gateway on localhost.",
                )
        return self


class AuthConfig(_Section):
    """Which scopes local callers (CLI and stdio MCP) hold."""

    enabled_scopes: list[str] = Field(default_factory=lambda: ["read_only"])
    """Scope strings or tier names (`read_only`, `with_preview`, `with_paper`, `with_live`)."""

    @field_validator("enabled_scopes")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        parse_scopes(value)
        return value

    def scopes(self) -> frozenset[Scope]:
        """The enabled scopes as a set."""
        return parse_scopes(self.enabled_scopes)


class AuditConfig(_Section):
    """Where the tamper-evident audit log lives and which key chains it."""

    sqlite_path: Path | None = None
    """The state database (audit log and workflow state); defaults to `state.sqlite3` in the state directory."""
    hmac_secret_env: str | None = None
    """Name of the environment variable holding the chain key (>= 32 bytes); required with a real broker."""
    checkpoint_key_env: str | None = None
    """Name of the environment variable holding the Ed25519 checkpoint signing key (PEM, or base64 of 32 bytes)."""
    checkpoint_key_file: Path | None = None
    """File holding the checkpoint signing key (PEM PKCS#8, mode 0600); the simulator default is generated."""


class StateConfig(_Section):
    """Where durable state (audit, previews, approvals, simulator book) is kept."""

    directory: Path | None = None
    """Defaults to `$IBKR_AGENT_STATE_DIR`, else `~/.local/state/ibkr-agent-gateway`."""


class SafetyConfig(_Section):
    """Independent safety switches; all off by default."""

    remote_mcp_enabled: bool = False
    live_trading_enabled: bool = False


class GatewayConfig(_Section):
    """The whole configuration of one gateway."""

    broker: BrokerConfig = Field(default_factory=BrokerConfig)
    auth: AuthConfig = Field(default_factory=AuthConfig)
    audit: AuditConfig = Field(default_factory=AuditConfig)
    state: StateConfig = Field(default_factory=StateConfig)
    safety: SafetyConfig = Field(default_factory=SafetyConfig)

    @classmethod
    def fake_local(cls, *, state_dir: Path | None = None) -> GatewayConfig:
        """The embedded CPAPI simulator, deterministic fixtures, no broker session needed."""
        return cls(state=StateConfig(directory=state_dir))

    @classmethod
    def client_portal(cls, url: str, *, verify_tls: bool = True, state_dir: Path | None = None) -> GatewayConfig:
        """A running, already authenticated Client Portal Gateway at `url`."""
        return cls.from_mapping(
            {
                "broker": {"backend": "client_portal_gateway", "base_url": url, "verify_tls": verify_tls},
                "state": {"directory": str(state_dir) if state_dir else None},
            }
        )

    def with_verify_tls(self, verify_tls: bool) -> GatewayConfig:
        """A copy with TLS verification switched; off is allowed only for localhost."""
        data = self.model_dump(mode="json")
        data["broker"]["verify_tls"] = verify_tls
        return GatewayConfig.from_mapping(data)

    @classmethod
    def from_mapping(cls, data: object) -> GatewayConfig:
        """Validate a mapping, turning every problem into `CONFIG_INVALID` with its location.

        Raises:
            GatewayError: `CONFIG_INVALID` (or a more specific `CONFIG_*` code).
        """
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise GatewayError(ErrorCode.CONFIG_INVALID, "The configuration must be a YAML mapping.")
        try:
            return cls.model_validate(data)
        except GatewayError:
            raise
        except ValidationError as exc:
            raise _config_error(exc) from None

    @classmethod
    def load(cls, path: Path) -> GatewayConfig:
        """Load and validate a YAML file; a missing file is an error, never a silent fallback.

        Raises:
            GatewayError: `CONFIG_INVALID` for a missing, unreadable or invalid file.
        """
        import yaml  # lazy: only config users pay for it

        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise GatewayError(
                ErrorCode.CONFIG_INVALID,
                f"Config file {path.name!r} was not found.",
                user_action="Pass --config with the path of an existing YAML file, or omit it for the simulator.",
            ) from None
        except OSError as exc:
            raise GatewayError(
                ErrorCode.CONFIG_INVALID, f"Config file {path.name!r} cannot be read: {exc.strerror}."
            ) from None
        try:
            data: Any = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark is not None else ""
            raise GatewayError(
                ErrorCode.CONFIG_INVALID, f"Config file {path.name!r} is not valid YAML{where}."
            ) from None
        config = cls.from_mapping(data)
        return config._anchored(path.parent)

    def _anchored(self, base: Path) -> GatewayConfig:
        """Resolve relative paths in the file against the file's own directory."""
        data = self.model_dump(mode="python")
        if self.state.directory is not None and not self.state.directory.is_absolute():
            data["state"]["directory"] = base / self.state.directory
        if self.audit.sqlite_path is not None and not self.audit.sqlite_path.is_absolute():
            data["audit"]["sqlite_path"] = base / self.audit.sqlite_path
        return GatewayConfig.model_validate(data)

    @property
    def is_fake(self) -> bool:
        """True when broker calls go to the embedded simulator."""
        return self.broker.backend == "fake"

    def state_dir(self) -> Path:
        """The directory that holds durable state."""
        return self.state.directory or default_state_dir()

    def audit_path(self) -> Path:
        """The state database file that holds the audit log."""
        return self.audit.sqlite_path or self.state_dir() / "state.sqlite3"


def _config_error(exc: ValidationError) -> GatewayError:
    """Name every invalid location, never echo a value (it may be a secret)."""
    problems: list[str] = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"]) or "(root)"
        if error["type"] == "extra_forbidden":
            problems.append(f"unknown key {where!r}")
        else:
            problems.append(f"{where}: {error['msg']}")
    return GatewayError(ErrorCode.CONFIG_INVALID, "Invalid configuration: " + "; ".join(problems) + ".")
