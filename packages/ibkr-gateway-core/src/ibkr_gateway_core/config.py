"""Configuration: one pydantic root loaded from YAML, closed by default.

Unknown keys are refused at every level, risky switches default to off, and a secret is named by
the environment variable that holds it, never written in the file.
"""

# Field types are objects, not text (no `from __future__ import annotations`): pydantic would compile each
# from its text when the class is made, about 60,000 instructions a field at every start-up.
import os
from pathlib import Path
from typing import Annotated, Any, Final, Literal, Self, cast
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from .errors import ErrorCode, GatewayError
from .orders.risk import RiskPolicy
from .principal import ApproverRef, Principal, is_approver
from .scopes import WITH_LIVE, Scope, parse_scopes
from .state.database import PostgresLocation, StateLocation

LOCAL_HOSTS: Final = frozenset({"localhost", "127.0.0.1", "::1"})
"""The only hosts for which TLS verification may be turned off."""

STATE_DIR_ENV: Final = "IBKR_AGENT_STATE_DIR"
"""Environment variable that overrides the default state directory."""

DEFAULT_TIMEOUT_SECONDS: Final = 10.0
DEFAULT_MAX_RESPONSE_BYTES: Final = 4 * 1024 * 1024

BackendName = Literal["fake", "client_portal_gateway", "cpapi_oauth"]

OAUTH_DEFAULT_BASE_URL: Final = "https://api.ibkr.com"
"""Where `cpapi_oauth` goes when `broker.base_url` is not set: IBKR's Web API itself (`/v1/api` is added)."""


def default_state_dir(backend: BackendName = "fake") -> Path:
    """Where state lives when the config names no directory.

    `$IBKR_AGENT_STATE_DIR` when set; otherwise one directory per backend under the user's XDG state
    dir (`.../ibkr-agent-gateway/simulator` or `.../client-portal`), so simulated and real events never
    share an audit log (and a log is never met with the other backend's key).
    """
    override = os.environ.get(STATE_DIR_ENV)
    if override:
        return Path(override)
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "ibkr-agent-gateway" / ("simulator" if backend == "fake" else "client-portal")


class _Section(BaseModel):
    model_config = ConfigDict(defer_build=True, extra="forbid", frozen=True)


class OAuthConfig(_Section):
    """IBKR Web API OAuth 1.0a (first party), for `broker.backend: cpapi_oauth`.

    What IBKR's self-service portal gave you. Secrets are named by an environment variable or a file, never
    written here; paths are relative to the configuration file.
    """

    consumer_key: str | None = None
    """The consumer key chosen in the portal (`TESTCONS` with realm `test_realm` for IBKR's test consumer)."""
    realm: str = "limited_poa"
    """`limited_poa` for a first-party consumer; `test_realm` for `TESTCONS`."""
    access_token_env: str | None = None
    """Name of the environment variable holding the access token (or `access_token_file`)."""
    access_token_file: Path | None = None
    """File holding the access token."""
    access_token_secret_env: str | None = None
    """Name of the environment variable holding the access token secret as the portal showed it (base64,
    encrypted to your encryption key); or `access_token_secret_file`."""
    access_token_secret_file: Path | None = None
    """File holding the encrypted access token secret."""
    signature_key_file: Path | None = None
    """PEM file of the private RSA signature key (its public half is uploaded in the portal); mode 0600."""
    encryption_key_file: Path | None = None
    """PEM file of the private RSA encryption key that decrypts the access token secret; mode 0600."""
    dh_param_file: Path | None = None
    """PEM file of the Diffie-Hellman parameters uploaded in the portal (`openssl dhparam`); or `dh_prime`."""
    dh_prime: str | None = None
    """The Diffie-Hellman prime in hex, instead of `dh_param_file`."""
    dh_generator: Annotated[int, Field(ge=2)] = 2
    """The Diffie-Hellman generator, with `dh_prime` (a `dh_param_file` names its own)."""
    refresh_margin_seconds: Annotated[float, Field(ge=0, le=3600)] = 300.0
    """A live session token is renewed this long before it expires (IBKR's last about 24 hours)."""
    open_brokerage_session: bool = True
    """After each new live session token, open the brokerage session (`POST /iserver/auth/ssodh/init`,
    never competing), as IBKR requires before `/iserver` requests."""

    @field_validator("consumer_key", "realm")
    @classmethod
    def _plain(cls, value: str | None) -> str | None:
        if value is not None and not (0 < len(value) <= 64 and value.replace("_", "").isalnum() and value.isascii()):
            raise ValueError("must be 1 to 64 ASCII letters, digits or underscores")
        return value

    @field_validator("dh_prime")
    @classmethod
    def _hex(cls, value: str | None) -> str | None:
        if value is None:
            return None
        trimmed = value.strip().lower().removeprefix("0x")
        if not trimmed or any(c not in "0123456789abcdef" for c in trimmed):
            raise ValueError("must be the prime in hexadecimal digits")
        return trimmed

    def missing(self) -> list[str]:
        """The keys still needed for `cpapi_oauth`, or where two alternatives are both given."""
        problems: list[str] = []
        if not self.consumer_key:
            problems.append("broker.oauth.consumer_key")
        for name, env, file in (
            ("access_token", self.access_token_env, self.access_token_file),
            ("access_token_secret", self.access_token_secret_env, self.access_token_secret_file),
        ):
            if (env is None) == (file is None):
                problems.append(f"exactly one of broker.oauth.{name}_env and broker.oauth.{name}_file")
        for name, value in (
            ("signature_key_file", self.signature_key_file),
            ("encryption_key_file", self.encryption_key_file),
        ):
            if value is None:
                problems.append(f"broker.oauth.{name}")
        if (self.dh_param_file is None) == (self.dh_prime is None):
            problems.append("exactly one of broker.oauth.dh_param_file and broker.oauth.dh_prime")
        return problems


class BrokerConfig(_Section):
    """Where broker calls go."""

    backend: BackendName = "fake"
    """`fake` runs the embedded CPAPI simulator; `client_portal_gateway` talks to a running gateway;
    `cpapi_oauth` talks to IBKR's Web API directly with OAuth 1.0a (see `broker.oauth`)."""
    base_url: str | None = None
    """Client Portal Gateway URL, e.g. `https://localhost:5000` (`/v1/api` is added when missing); for
    `cpapi_oauth`, IBKR's Web API, `https://api.ibkr.com` when not set."""
    verify_tls: bool = True
    """May be false only when `base_url` is on localhost, 127.0.0.1 or ::1."""
    ca_file: Path | None = None
    """PEM file of the certificate authorities that sign the gateway's certificate, trusted instead of the
    system's (a gateway on another host, e.g. in a container, with its own CA). Needs `verify_tls: true`."""
    timeout_seconds: Annotated[float, Field(gt=0, le=120)] = DEFAULT_TIMEOUT_SECONDS
    max_response_bytes: Annotated[int, Field(ge=1024, le=64 * 1024 * 1024)] = DEFAULT_MAX_RESPONSE_BYTES
    pacing_enabled: bool = True
    """Pace `client_portal_gateway` requests by IBKR's limits (the in-process simulator of `fake` never paces)."""
    pacing_requests_per_second: Annotated[float, Field(ge=1, le=50)] = 10.0
    """Global request rate; IBKR allows 10/s through a Client Portal Gateway (per-endpoint limits are built in)."""
    pacing_max_wait_seconds: Annotated[float, Field(ge=0, le=60)] = 6.0
    """Longest a request queues for its slot; beyond it the call fails with `BROKER_RATE_LIMITED` and a retry hint."""
    pacing_penalty_seconds: Annotated[float, Field(ge=1, le=3600)] = 600.0
    """After a 429: seconds nothing goes to that endpoint (everything, when IBKR says so) unless `Retry-After` says."""
    rate_limit_retries: Annotated[int, Field(ge=0, le=5)] = 2
    """No longer used: a 429 is IBKR's penalty box and is never retried (the key is still accepted)."""
    keepalive_enabled: bool = True
    """Long-running servers (MCP stdio and HTTP) tickle the session and track its health; the CLI never does."""
    reopen_brokerage_session: bool = True
    """Long-running servers re-open a logged-in gateway's closed brokerage session (`ssodh/init`, without
    `compete`): never a takeover of another platform's session, which stays a person's decision."""
    keepalive_interval_seconds: Annotated[float, Field(ge=1, le=300)] = 60.0
    """Seconds between tickles; CPAPI drops a session after about 6 idle minutes."""
    oauth: OAuthConfig | None = None
    """The OAuth 1.0a credentials of `cpapi_oauth`; refused with any other backend."""

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
        if self.backend == "cpapi_oauth":
            missing = (self.oauth or OAuthConfig()).missing()
            if missing:
                raise GatewayError(
                    ErrorCode.CONFIG_OAUTH_CREDENTIAL_MISSING,
                    "broker.backend cpapi_oauth needs " + "; ".join(missing) + ".",
                )
        elif self.oauth is not None:
            raise GatewayError(
                ErrorCode.CONFIG_INVALID,
                "broker.oauth is set but broker.backend is not cpapi_oauth, so it would never be used.",
                user_action="Set broker.backend to cpapi_oauth, or remove broker.oauth.",
            )
        if not self.verify_tls and self.base_url is not None:
            host = urlsplit(self.base_url).hostname or ""
            if host not in LOCAL_HOSTS:
                raise GatewayError(
                    ErrorCode.CONFIG_INVALID,
                    "broker.verify_tls may be false only for localhost, 127.0.0.1 or ::1.",
                    user_action="Turn TLS verification on, or run the gateway on localhost.",
                )
        if not self.verify_tls and self.ca_file is not None:
            raise GatewayError(
                ErrorCode.CONFIG_INVALID,
                "broker.ca_file is set but broker.verify_tls is false, so the CA would never be used.",
                user_action="Set broker.verify_tls to true to check the gateway's certificate against broker.ca_file.",
            )
        return self


class AuthConfig(_Section):
    """Which scopes local callers (CLI and stdio MCP) hold."""

    enabled_scopes: list[str] = Field(default_factory=lambda: ["read_only"])
    """Scope strings or tier names (`read_only`, `with_preview`, `with_paper`, `with_live`)."""
    approvers: list[ApproverRef] = Field(default_factory=list[ApproverRef])
    """Remote subjects (`issuer` + `subject` of their tokens) who are people allowed to approve previews.
    The CLI operator always is one; an MCP stdio caller never is; no remote subject is unless listed."""

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
    read_sync: Literal["full", "normal"] = "full"
    """How a completed read's event reaches the disk (SQLite): `full` syncs it before the call returns (it
    survives a power cut); `normal` commits it without a sync (it survives a crash of the process, not of the
    machine) until the next synced commit: a write's, a refusal's, a denial's or a checkpoint's, which stay `full`."""


class StateConfig(_Section):
    """Where durable state (audit, previews, approvals, simulator book) is kept."""

    directory: Path | None = None
    """Defaults to `$IBKR_AGENT_STATE_DIR`, else `~/.local/state/ibkr-agent-gateway/simulator` (or `client-portal`)."""
    backend: Literal["sqlite", "postgres"] = "sqlite"
    """Where the audit log and order workflow state live: one SQLite file (`sqlite`, one host) or a
    PostgreSQL database shared by several replicas (`postgres`, needs `ibkr-gateway-core[postgres]`)."""
    postgres_dsn_env: str | None = None
    """With `backend: postgres`: name of the environment variable holding the libpq DSN or URL (it may
    hold a password, so it is never written in the file)."""
    postgres_pool_size: Annotated[int, Field(ge=1, le=64)] = 4
    """With `backend: postgres`: most connections each store of one process opens."""

    @model_validator(mode="after")
    def _postgres_needs_dsn(self) -> "StateConfig":
        if self.backend == "postgres" and not self.postgres_dsn_env:
            raise ValueError("state.backend postgres needs state.postgres_dsn_env")
        return self


class SafetyConfig(_Section):
    """Independent safety switches; all off by default."""

    remote_mcp_enabled: bool = False
    live_trading_enabled: bool = False


WarningAction = Literal["allow", "allow_resting", "deny"]

DEFAULT_WARNING_POLICY: Final[dict[str, WarningAction]] = {
    "o163": "allow_resting",
    "o354": "deny",
    "o383": "deny",
    "o451": "deny",
}
"""IBKR order warnings: "price far from the market" (o163) is confirmed only for a resting limit (a buy below
the ask, a sell above the bid: it cannot fill worse than its limit); unusual size (o383) and value (o451)
and an order without market data (o354) are refused. Allow an id explicitly to change that."""


class OrdersConfig(_Section):
    """Order previews, paper orders and the broker's order warnings."""

    preview_enabled: bool = False
    """Whether callers other than the CLI operator (MCP) may preview; the CLI passes --enable-preview per call."""
    paper_enabled: bool = False
    """Whether callers other than the CLI operator (MCP) may submit and cancel paper orders."""
    preview_ttl_seconds: Annotated[int, Field(ge=10, le=3600)] = 300
    """How long a preview can be approved and submitted."""
    preview_policy_id: str | None = None
    """Risk policy for previews (an id under `risk_policies`); without it a built-in policy applies:
    stocks and ETFs, whole shares, at most 10,000 shares and 1,000,000 USD per order."""
    warning_policy: dict[str, WarningAction] = Field(default_factory=lambda: dict(DEFAULT_WARNING_POLICY))
    """Answer per IBKR message id: `allow`, `allow_resting` (only for a limit resting on its own side of the
    market) or `deny`; a warning whose id is not listed refuses the order."""
    max_confirmation_rounds: Annotated[int, Field(ge=1, le=20)] = 5
    """Most broker questions answered for one order before it is refused."""
    operator_scopes: list[str] | None = None
    """Scopes of the CLI operator; default: every scope with the simulator, else `auth.enabled_scopes`."""
    background_reconcile_seconds: Annotated[float, Field(ge=1, le=3600)] | None = 30.0
    """Long-running servers (MCP stdio and HTTP) settle unknown writes and follow live orders every this many
    seconds while there are any (null: only on request, `orders reconcile`); the CLI never does on its own."""
    reconcile_lease_seconds: Annotated[float, Field(ge=5, le=3600)] = 120.0
    """A reconciliation pass claims the tracked live orders it polls for this long, so replicas sharing one
    PostgreSQL database split the backlog; the claims of a replica that dies come back after it."""
    recovery_min_age_seconds: Annotated[float, Field(ge=0, le=3600)] = 30.0
    """Pending idempotency records younger than this belong to a call still running and are left to it."""
    unknown_resend_after_seconds: Annotated[float, Field(ge=0, le=86_400)] = 60.0
    """An order whose outcome is unknown and that the broker does not show by its cOID is sent again (with
    the same cOID) only after this long."""


class ApprovalsConfig(_Section):
    """Approvals of previews."""

    default_ttl_seconds: Annotated[int, Field(ge=1)] = 300
    min_ttl_seconds: Annotated[int, Field(ge=1)] = 30
    max_ttl_seconds: Annotated[int, Field(ge=1)] = 3600
    """A TTL outside min..max is refused (APPROVAL_TTL_OUT_OF_RANGE), never clamped."""
    forbid_self_approval: bool = True
    """An agent (MCP, local or remote) may not approve a preview it created; the CLI operator always may."""

    @model_validator(mode="after")
    def _check_bounds(self) -> Self:
        if not self.min_ttl_seconds <= self.default_ttl_seconds <= self.max_ttl_seconds:
            raise ValueError("approvals: min_ttl_seconds <= default_ttl_seconds <= max_ttl_seconds is required")
        return self


class LiveTradingConfig(_Section):
    """Live orders with a real broker; every item must be set for live to work (fake mode has defaults)."""

    enabled: bool = False
    """Must agree with `safety.live_trading_enabled`."""
    allowed_accounts: list[str] = Field(default_factory=list[str])
    """Accounts live orders may go to; with the simulator, empty means every simulator account."""
    risk_policy_id: str | None = None
    """The live risk policy (an id under `risk_policies`); fake mode has a built-in one."""
    paper_to_live_checklist_acknowledged: bool = False
    """Set after working through the paper-to-live runbook."""
    cancel_working_orders_on_close: bool = True
    """`kill-switch close` also cancels the working live orders the gateway tracks."""
    trading_day_timezone: str = "America/New_York"
    """Daily live budgets reset at midnight in this IANA time zone."""
    writer: Literal["local-candidate", "client-portal", "refusing"] = "local-candidate"
    """Live writer for callers without `--live-broker` (MCP): `local-candidate` sends nothing."""

    @field_validator("trading_day_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value


RemoteAlgorithm = Literal["RS256", "ES256"]
"""Signature algorithms remote access tokens may use; never HS*, never `none`."""


def _is_loopback_host(host: str) -> bool:
    """True for `localhost` and loopback IP literals (127.0.0.0/8, ::1)."""
    import ipaddress

    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def split_bind_address(bind: str) -> tuple[str, int]:
    """`host:port` (or `[v6]:port`) as its parts.

    Raises:
        GatewayError: `CONFIG_INVALID` when it is not `host:port` with a port in 0..65535.
    """
    host, sep, port = bind.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise GatewayError(ErrorCode.CONFIG_INVALID, f"Bind address {bind!r} is not host:port.")
    return host, int(port)


class RemoteMcpConfig(_Section):
    """The remote MCP server: streamable HTTP, an OAuth 2.1 resource server; off unless both switches are on."""

    enabled: bool = False
    """Must agree with `safety.remote_mcp_enabled`; `mcp serve --transport http` also needs `--enable-remote-mcp`."""
    resource: str | None = None
    """Canonical URL of the MCP endpoint as clients reach it (`https://gateway.example.com/mcp`); tokens must
    name it in `aud` (RFC 8707), and the protected-resource metadata advertises it."""
    issuer: str | None = None
    """The authorization server's issuer, compared exactly with the token's `iss`."""
    jwks_url: str | None = None
    """The issuer's key set; without it, `jwks_uri` of `{issuer}/.well-known/openid-configuration` is used."""
    audiences: list[str] = Field(default_factory=list[str])
    """Further accepted `aud` values (an IdP's audience alias); `resource` is always accepted."""
    allowed_scopes: list[str] = Field(default_factory=list[str])
    """Scopes (or tiers) a remote caller may ever hold: granted = token scopes ∩ these ∩ `auth.enabled_scopes`."""
    algorithms: list[RemoteAlgorithm] = Field(default_factory=lambda: list[RemoteAlgorithm](["RS256"]))
    """Accepted signature algorithms; the key type must match."""
    token_id_hmac_secret_env: str | None = None
    """Name of the environment variable holding the key (>= 32 bytes) that hashes token ids (`jti`) for audit."""
    clock_skew_seconds: Annotated[int, Field(ge=0, le=300)] = 60
    """Leeway on `exp`, `nbf` and `iat`."""
    jwks_cache_seconds: Annotated[int, Field(ge=10, le=86_400)] = 600
    """How long a fetched key set is used before it is fetched again."""
    jwks_refetch_interval_seconds: Annotated[float, Field(ge=0, le=3600)] = 30.0
    """A token with an unknown `kid` refetches the key set at most once per this interval."""
    jwks_timeout_seconds: Annotated[float, Field(gt=0, le=30)] = 5.0
    """Timeout of one discovery or key-set fetch."""
    jwks_max_bytes: Annotated[int, Field(ge=1024, le=4 * 1024 * 1024)] = 256 * 1024
    """Largest discovery document or key set accepted."""
    bind_address: str = "127.0.0.1:8080"
    """Where the HTTP server listens; `--bind` overrides it. Beyond loopback it needs TLS or `behind_proxy`."""
    tls_cert_file: Path | None = None
    """PEM certificate chain for HTTPS; set together with `tls_key_file`."""
    tls_key_file: Path | None = None
    """PEM private key for HTTPS."""
    behind_proxy: bool = False
    """True when a TLS-terminating reverse proxy is in front; allows a non-loopback bind without TLS here."""
    trusted_proxies: list[str] = Field(default_factory=list[str])
    """Proxy addresses or networks (CIDR) whose `X-Forwarded-For` is believed; nobody else's is."""
    allowed_hosts: list[str] = Field(default_factory=list[str])
    """Further accepted `Host` values (e.g. `127.0.0.1:8080` for local probes); the resource's host always is."""
    allowed_origins: list[str] = Field(default_factory=list[str])
    """Further accepted browser `Origin` values; the resource's origin is always accepted."""
    rate_limit_max_requests: Annotated[int, Field(ge=1, le=1_000_000)] = 120
    """Requests one authenticated subject may make per window (429 beyond)."""
    rate_limit_window_seconds: Annotated[int, Field(ge=1, le=3600)] = 60
    """Length of the rate-limit window."""
    max_sessions: Annotated[int, Field(ge=1, le=100_000)] = 64
    """Most MCP sessions open at once."""
    max_request_bytes: Annotated[int, Field(ge=1024, le=16 * 1024 * 1024)] = 1024 * 1024
    """Largest request body accepted (413 beyond)."""
    session_idle_timeout_seconds: Annotated[int, Field(ge=10, le=86_400)] = 1800
    """An MCP session idle this long is closed."""
    max_sessions_per_subject: Annotated[int, Field(ge=1, le=100_000)] = 8
    """Most MCP sessions one subject (issuer + subject) may hold open at once (429 beyond), so no one
    subject can take every slot of `max_sessions`."""
    max_inflight_per_subject: Annotated[int, Field(ge=1, le=10_000)] = 8
    """Most requests of one subject being served at once (429 beyond)."""
    sessions_fair_share: Annotated[int, Field(ge=1, le=100_000)] = 2
    """A subject's sessions beyond this many are closed after `over_share_idle_timeout_seconds` idle."""
    over_share_idle_timeout_seconds: Annotated[int, Field(ge=5, le=86_400)] = 60
    """Idle timeout of a subject's sessions beyond its fair share (its oldest-active sessions keep the long one)."""

    @field_validator("resource", "issuer", "jwks_url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.fragment or parts.query:
            raise ValueError("must be an absolute http(s) URL without query or fragment")
        if parts.scheme == "http" and not _is_loopback_host(parts.hostname):
            raise ValueError("must use https (plain http is allowed only on loopback)")
        return value

    @field_validator("allowed_scopes")
    @classmethod
    def _known_scopes(cls, value: list[str]) -> list[str]:
        parse_scopes(value)
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        import ipaddress

        for item in value:
            ipaddress.ip_network(item, strict=False)
        return value

    @model_validator(mode="after")
    def _check_complete(self) -> Self:
        split_bind_address(self.bind_address)
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("remote_mcp: tls_cert_file and tls_key_file go together")
        if not self.enabled:
            return self
        missing = [
            f"remote_mcp.{name}"
            for name, ok in (
                ("resource", self.resource is not None),
                ("issuer", self.issuer is not None),
                ("allowed_scopes", bool(self.allowed_scopes)),
                ("token_id_hmac_secret_env", bool(self.token_id_hmac_secret_env)),
            )
            if not ok
        ]
        if missing:
            raise GatewayError(
                ErrorCode.CONFIG_INVALID,
                "Remote MCP is enabled but incomplete: " + ", ".join(missing) + ".",
                user_action="Fill in the remote_mcp section (see docs/remote-mcp-oauth.md).",
            )
        self.check_bind(self.bind_address)
        return self

    def check_bind(self, bind: str) -> tuple[str, int]:
        """`bind` as (host, port), refused beyond loopback unless TLS or `behind_proxy` is configured.

        Raises:
            GatewayError: `CONFIG_REMOTE_MCP_FORBIDDEN` for an exposed bind without TLS or a proxy.
        """
        host, port = split_bind_address(bind)
        if not _is_loopback_host(host) and self.tls_cert_file is None and not self.behind_proxy:
            raise GatewayError(
                ErrorCode.CONFIG_REMOTE_MCP_FORBIDDEN,
                f"Binding the remote MCP server to {host} needs TLS (remote_mcp.tls_cert_file and tls_key_file) "
                "or remote_mcp.behind_proxy.",
                user_action="Bind to 127.0.0.1, configure TLS, or declare the TLS-terminating proxy.",
            )
        return host, port

    def scopes(self) -> frozenset[Scope]:
        """The allowed scopes as a set."""
        return parse_scopes(self.allowed_scopes)

    def token_id_key(self) -> bytes:
        """The token-id hashing key, read from `token_id_hmac_secret_env`.

        Raises:
            GatewayError: `CONFIG_INVALID` when the variable is unnamed, unset or shorter than 32 bytes.
        """
        name = self.token_id_hmac_secret_env
        value = os.environ.get(name) if name else None
        if not name or not value or len(value.encode("utf-8")) < 32:
            raise GatewayError(
                ErrorCode.CONFIG_INVALID,
                f"The environment variable {name or '(unnamed)'} (remote_mcp.token_id_hmac_secret_env) "
                "must hold a secret of at least 32 bytes.",
                user_action="Set it to a random secret of at least 32 bytes.",
            )
        return value.encode("utf-8")


class DeskConfig(_Section):
    """The approval desk: a web page where a person approves, denies and halts (`ibkr-agent desk serve`)."""

    bind_address: str = "127.0.0.1:8090"
    """Where the desk listens; `--bind` overrides it. Beyond loopback it needs `public_url` with https."""
    public_url: str | None = None
    """The desk's URL as people reach it (`https://desk.example.com`); links in notifications and the
    OpenID redirect use it. Default: `http://` + the bind address."""
    session_secret_env: str | None = None
    """Name of the environment variable holding the cookie signing key (>= 32 bytes); without it a random
    key is made at start, so sessions end when the desk stops."""
    session_ttl_seconds: Annotated[int, Field(ge=60, le=86_400)] = 8 * 3600
    """How long a desk login lasts."""
    oidc_issuer: str | None = None
    """OpenID provider people log in with (authorization code + PKCE); subjects in `auth.approvers` may approve."""
    oidc_client_id: str | None = None
    """The desk's client id at the OpenID provider."""
    oidc_client_secret_env: str | None = None
    """Name of the environment variable holding the client secret (none for a public client)."""
    oidc_scopes: list[str] = Field(default_factory=lambda: ["openid"])
    """Scopes requested at login; `openid` is required."""
    local_login: bool = True
    """`desk serve` prints a one-time login link for the operator at this machine (loopback binds only)."""
    refresh_seconds: Annotated[float, Field(ge=0.5, le=60)] = 2.0
    """How often an open page asks whether anything changed, and how often notifications are checked."""
    notify_webhook_url: str | None = None
    """A URL that gets a JSON POST for each new preview waiting for approval (no account id in clear)."""
    notify_ntfy_url: str | None = None
    """An ntfy-compatible topic URL (`https://ntfy.sh/my-topic`) that gets a short text message with a link."""
    notify_timeout_seconds: Annotated[float, Field(gt=0, le=30)] = 5.0
    """Timeout of one notification request; a failed one is logged and audited, never retried in a loop."""

    @field_validator("public_url", "oidc_issuer", "notify_webhook_url", "notify_ntfy_url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.fragment:
            raise ValueError("must be an absolute http(s) URL without a fragment")
        if parts.scheme == "http" and not _is_loopback_host(parts.hostname):
            raise ValueError("must use https (plain http is allowed only on loopback)")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _check_desk(self) -> Self:
        split_bind_address(self.bind_address)
        if (self.oidc_issuer is None) != (self.oidc_client_id is None):
            raise ValueError("desk: oidc_issuer and oidc_client_id go together")
        if self.oidc_issuer is not None and "openid" not in self.oidc_scopes:
            raise ValueError("desk.oidc_scopes must include openid")
        return self

    def base_url(self, bind: str | None = None) -> str:
        """The URL people reach the desk at: `public_url`, else `http://` + the bind address."""
        return self.public_url or f"http://{bind or self.bind_address}"


def _remote_mcp_agrees(value: RemoteMcpConfig, info: ValidationInfo) -> RemoteMcpConfig:
    safety = info.data.get("safety")
    if isinstance(safety, SafetyConfig) and safety.remote_mcp_enabled != value.enabled:
        raise GatewayError(
            ErrorCode.CONFIG_REMOTE_MCP_FORBIDDEN,
            "safety.remote_mcp_enabled and remote_mcp.enabled must both be true or both false.",
        )
    return value


class ObservabilityConfig(_Section):
    """Metrics and logs of a running server (see the deployment guide)."""

    metrics_enabled: bool = False
    """Serve Prometheus metrics on `/metrics` of the HTTP MCP server (no token; scrape it from the private
    network, never through the public proxy). Labels hold operation names, outcomes and error codes only."""
    log_format: Literal["text", "json"] = "text"
    """Server logs on stderr: text lines, or one JSON object per line with the request id and audit event id."""
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "WARNING"
    """Lowest level logged; `INFO` adds one record per gateway call."""
    otel_enabled: bool = False
    """Export OpenTelemetry traces (a span per gateway call, with its broker requests and audit append) and the
    metrics over OTLP/HTTP to the collector the standard `OTEL_EXPORTER_OTLP_*` variables name, from the MCP
    and desk servers. Needs the `ibkr-gateway-core[otel]` extra; without it the server refuses to start."""


SECTIONS: Final = (
    "broker",
    "auth",
    "audit",
    "state",
    "safety",
    "orders",
    "approvals",
    "live_trading",
    "observability",
    "remote_mcp",
    "desk",
)
"""The sections of `GatewayConfig` (each a model with a default for every key)."""


class GatewayConfig(_Section):
    """The whole configuration of one gateway."""

    broker: BrokerConfig = Field(default_factory=BrokerConfig)
    auth: AuthConfig = Field(default_factory=AuthConfig)
    audit: AuditConfig = Field(default_factory=AuditConfig)
    state: StateConfig = Field(default_factory=StateConfig)
    safety: SafetyConfig = Field(default_factory=SafetyConfig)
    orders: OrdersConfig = Field(default_factory=OrdersConfig)
    approvals: ApprovalsConfig = Field(default_factory=ApprovalsConfig)
    live_trading: LiveTradingConfig = Field(default_factory=LiveTradingConfig)
    observability: ObservabilityConfig = Field(default_factory=ObservabilityConfig)
    risk_policies: list[RiskPolicy] = Field(default_factory=list[RiskPolicy])
    """Named risk policies; `orders.preview_policy_id` and `live_trading.risk_policy_id` pick one."""
    remote_mcp: Annotated[RemoteMcpConfig, AfterValidator(_remote_mcp_agrees)] = Field(
        default_factory=RemoteMcpConfig, validate_default=True
    )
    """The remote (streamable HTTP, OAuth) MCP server."""
    desk: DeskConfig = Field(default_factory=DeskConfig)
    """The approval desk web page."""

    @model_validator(mode="before")
    @classmethod
    def _absent_sections_as_empty(cls, data: object) -> object:
        """An absent section is validated as `{}`: the same defaults and checks as its `default_factory`.

        Inside this model's own schema, so loading a config builds each section's validator once; a
        default factory would build every absent section's schema a second time on its own (about
        half of the CLI's configuration cost at start-up).
        """
        if not isinstance(data, dict):
            return data
        given = cast(dict[str, Any], data)
        absent: dict[str, Any] = {name: {} for name in SECTIONS if name not in given}
        return {**absent, **given} if absent else given

    @model_validator(mode="after")
    def _check_orders(self) -> Self:
        ids = [policy.policy_id for policy in self.risk_policies]
        if len(ids) != len(set(ids)):
            raise ValueError("risk_policies: policy ids must be unique")
        if self.orders.preview_policy_id is not None and self.orders.preview_policy_id not in ids:
            raise ValueError(f"orders.preview_policy_id {self.orders.preview_policy_id!r} is not under risk_policies")
        live = self.live_trading
        if self.safety.live_trading_enabled != live.enabled:
            raise GatewayError(
                ErrorCode.CONFIG_LIVE_TRADING_FORBIDDEN,
                "safety.live_trading_enabled and live_trading.enabled must both be true or both false.",
            )
        if live.enabled:
            missing = [
                name
                for name, ok in (
                    ("live_trading.allowed_accounts", bool(live.allowed_accounts)),
                    ("live_trading.risk_policy_id (a policy under risk_policies)", live.risk_policy_id in ids),
                    ("live_trading.paper_to_live_checklist_acknowledged", live.paper_to_live_checklist_acknowledged),
                )
                if not ok
            ]
            if missing:
                raise GatewayError(
                    ErrorCode.CONFIG_LIVE_TRADING_FORBIDDEN,
                    "Live trading is enabled but incomplete: " + ", ".join(missing) + ".",
                )
        return self

    def is_approver(self, principal: Principal) -> bool:
        """Whether `principal` has the approver role: the CLI operator, or a remote subject in `auth.approvers`."""
        return is_approver(principal, self.auth.approvers)

    def risk_policy(self, policy_id: str | None) -> RiskPolicy | None:
        """The policy with this id under `risk_policies`, or None."""
        return next((policy for policy in self.risk_policies if policy.policy_id == policy_id), None)

    def operator_scopes(self) -> frozenset[Scope]:
        """Scopes of the CLI operator: `orders.operator_scopes`, else all with the simulator, else `auth`'s."""
        if self.orders.operator_scopes is not None:
            return parse_scopes(self.orders.operator_scopes)
        return WITH_LIVE if self.is_fake else self.auth.scopes()

    @classmethod
    def fake_local(cls, *, state_dir: Path | None = None) -> "GatewayConfig":
        """The embedded CPAPI simulator, deterministic fixtures, no broker session needed."""
        return cls.model_validate({"state": {"directory": state_dir}})

    @classmethod
    def client_portal(cls, url: str, *, verify_tls: bool = True, state_dir: Path | None = None) -> "GatewayConfig":
        """A running, already authenticated Client Portal Gateway at `url`."""
        return cls.from_mapping(
            {
                "broker": {"backend": "client_portal_gateway", "base_url": url, "verify_tls": verify_tls},
                "state": {"directory": str(state_dir) if state_dir else None},
            }
        )

    def with_verify_tls(self, verify_tls: bool) -> "GatewayConfig":
        """A copy with TLS verification switched; off is allowed only for localhost."""
        data = self.model_dump(mode="json")
        data["broker"]["verify_tls"] = verify_tls
        return GatewayConfig.from_mapping(data)

    @classmethod
    def from_mapping(cls, data: object) -> "GatewayConfig":
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
    def load(cls, path: Path) -> "GatewayConfig":
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

    def _anchored(self, base: Path) -> "GatewayConfig":
        """Resolve relative paths in the file against the file's own directory."""
        data = self.model_dump(mode="python")
        if self.state.directory is not None and not self.state.directory.is_absolute():
            data["state"]["directory"] = base / self.state.directory
        if self.audit.sqlite_path is not None and not self.audit.sqlite_path.is_absolute():
            data["audit"]["sqlite_path"] = base / self.audit.sqlite_path
        if self.broker.ca_file is not None and not self.broker.ca_file.is_absolute():
            data["broker"]["ca_file"] = base / self.broker.ca_file
        oauth = self.broker.oauth
        if oauth is not None:
            for key in (
                "access_token_file",
                "access_token_secret_file",
                "signature_key_file",
                "encryption_key_file",
                "dh_param_file",
            ):
                value: Path | None = getattr(oauth, key)
                if value is not None and not value.is_absolute():
                    data["broker"]["oauth"][key] = base / value
        return GatewayConfig.model_validate(data)

    @property
    def is_fake(self) -> bool:
        """True when broker calls go to the embedded simulator."""
        return self.broker.backend == "fake"

    def state_dir(self) -> Path:
        """The directory that holds durable state."""
        return self.state.directory or default_state_dir(self.broker.backend)

    def audit_path(self) -> Path:
        """The state database file that holds the audit log (with `state.backend: sqlite`)."""
        return self.audit.sqlite_path or self.state_dir() / "state.sqlite3"

    def state_location(self) -> StateLocation:
        """Where the audit log and workflow state live: the SQLite file, or the PostgreSQL database.

        Raises:
            GatewayError: `CONFIG_INVALID` when the DSN's environment variable is unset or empty.
        """
        if self.state.backend == "sqlite":
            return self.audit_path()
        env = self.state.postgres_dsn_env or ""
        dsn = os.environ.get(env, "").strip()
        if not dsn:
            raise GatewayError(
                ErrorCode.CONFIG_INVALID,
                f"state.backend is postgres but the environment variable {env!r} is unset or empty.",
                user_action=f"Export {env} with the PostgreSQL DSN, e.g. postgresql://user:password@host/db.",
            )
        return PostgresLocation(dsn, pool_size=self.state.postgres_pool_size)


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
