"""Errors every surface may show, with stable codes.

One exception class carries every code; the code decides the family, and the family decides the
CLI exit code, the HTTP status and whether a retry can help::

    GatewayError                     code: ErrorCode, message, retryable, user_action, audit_event_id
    ├── family "input"     exit 2    bad arguments, unknown account, ambiguous contract, chain invalid
    ├── family "broker"    exit 3    no broker session, backend down
    ├── family "auth"      exit 4    missing scope, bad token
    ├── family "upstream"  exit 5    rate limited, capability missing, malformed broker response
    ├── family "output"    exit 6    output would leak a secret
    ├── family "config"    exit 7    invalid or forbidden configuration
    └── family "refusal"   exit 1    every order, paper, live, approval and idempotency refusal

Codes are never renamed: agents and scripts match on them. The catalogue in the docs is generated
from `ERROR_CATALOGUE`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Final, Literal

Family = Literal["input", "broker", "auth", "upstream", "output", "config", "refusal"]

EXIT_CODES: Final[Mapping[Family, int]] = {
    "refusal": 1,
    "input": 2,
    "broker": 3,
    "auth": 4,
    "upstream": 5,
    "output": 6,
    "config": 7,
}
"""Process exit code for each family; 0 is success."""


class ErrorCode(StrEnum):
    """Stable machine codes; documented in the error catalogue, never renamed."""

    CONFIG_INVALID = "CONFIG_INVALID"
    CONFIG_MISSING_BROKER_BASE_URL = "CONFIG_MISSING_BROKER_BASE_URL"
    CONFIG_REMOTE_MCP_FORBIDDEN = "CONFIG_REMOTE_MCP_FORBIDDEN"
    CONFIG_LIVE_TRADING_FORBIDDEN = "CONFIG_LIVE_TRADING_FORBIDDEN"
    CONFIG_BACKEND_NOT_INSTALLED = "CONFIG_BACKEND_NOT_INSTALLED"
    AUTH_MISSING_SCOPE = "AUTH_MISSING_SCOPE"
    AUTH_TOKEN_MISSING = "AUTH_TOKEN_MISSING"
    AUTH_TOKEN_INVALID = "AUTH_TOKEN_INVALID"
    AUTH_TOKEN_EXPIRED = "AUTH_TOKEN_EXPIRED"
    AUTH_INVALID_ISSUER = "AUTH_INVALID_ISSUER"
    AUTH_INVALID_AUDIENCE = "AUTH_INVALID_AUDIENCE"
    AUTH_SCOPE_UNKNOWN = "AUTH_SCOPE_UNKNOWN"
    AUDIT_READ_FORBIDDEN = "AUDIT_READ_FORBIDDEN"
    INPUT_MISSING_ACCOUNT = "INPUT_MISSING_ACCOUNT"
    INPUT_UNAUTHORIZED_ACCOUNT = "INPUT_UNAUTHORIZED_ACCOUNT"
    INPUT_AMBIGUOUS_CONTRACT = "INPUT_AMBIGUOUS_CONTRACT"
    INPUT_UNKNOWN_CONTRACT = "INPUT_UNKNOWN_CONTRACT"
    INPUT_UNSUPPORTED_ASSET_CLASS = "INPUT_UNSUPPORTED_ASSET_CLASS"
    INPUT_INVALID_CONTRACT = "INPUT_INVALID_CONTRACT"
    INPUT_INVALID_TIME_RANGE = "INPUT_INVALID_TIME_RANGE"
    INPUT_INVALID_ARGUMENT = "INPUT_INVALID_ARGUMENT"
    INPUT_UNKNOWN_ORDER = "INPUT_UNKNOWN_ORDER"
    INPUT_UNKNOWN_OPERATION = "INPUT_UNKNOWN_OPERATION"
    MARKET_DATA_STALE = "MARKET_DATA_STALE"
    AUDIT_CHAIN_INVALID = "AUDIT_CHAIN_INVALID"
    BROKER_SESSION_REQUIRED = "BROKER_SESSION_REQUIRED"
    BROKER_SESSION_EXPIRED = "BROKER_SESSION_EXPIRED"
    BROKER_BACKEND_UNAVAILABLE = "BROKER_BACKEND_UNAVAILABLE"
    BROKER_RATE_LIMITED = "BROKER_RATE_LIMITED"
    BROKER_CAPABILITY_UNAVAILABLE = "BROKER_CAPABILITY_UNAVAILABLE"
    BROKER_RESPONSE_INVALID = "BROKER_RESPONSE_INVALID"
    BROKER_OUTCOME_UNKNOWN = "BROKER_OUTCOME_UNKNOWN"
    ORDER_CONFIRMATION_REFUSED = "ORDER_CONFIRMATION_REFUSED"
    MARKET_DATA_UNAVAILABLE = "MARKET_DATA_UNAVAILABLE"
    HISTORICAL_BARS_UNAVAILABLE = "HISTORICAL_BARS_UNAVAILABLE"
    OUTPUT_UNSAFE = "OUTPUT_UNSAFE"
    AUDIT_WRITE_FAILED = "AUDIT_WRITE_FAILED"
    STATE_DATABASE_UNAVAILABLE = "STATE_DATABASE_UNAVAILABLE"
    READONLY_WRITE_FORBIDDEN = "READONLY_WRITE_FORBIDDEN"
    INTERNAL_ERROR = "INTERNAL_ERROR"


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """What the catalogue says about one code."""

    family: Family
    retryable: bool
    user_action: str
    """One sentence telling a person (or an agent) what to do next."""


_FIX_INPUT = "Correct the argument and run the command again."
_FIX_CONFIG = "Fix the configuration file (see the configuration reference) and start again."

ERROR_CATALOGUE: Final[Mapping[ErrorCode, ErrorInfo]] = {
    ErrorCode.CONFIG_INVALID: ErrorInfo("config", False, _FIX_CONFIG),
    ErrorCode.CONFIG_MISSING_BROKER_BASE_URL: ErrorInfo(
        "config", False, "Set broker.base_url to the Client Portal Gateway URL, e.g. https://localhost:5000."
    ),
    ErrorCode.CONFIG_REMOTE_MCP_FORBIDDEN: ErrorInfo(
        "config",
        False,
        "Set remote_mcp.enabled and safety.remote_mcp_enabled in the config and pass --enable-remote-mcp.",
    ),
    ErrorCode.CONFIG_LIVE_TRADING_FORBIDDEN: ErrorInfo(
        "config", False, "Complete the live_trading section and the safety flag together, or leave both off."
    ),
    ErrorCode.CONFIG_BACKEND_NOT_INSTALLED: ErrorInfo(
        "config", False, "Install ibkr-gateway-cpapi (pip install ibkr-gateway-cpapi), which provides the backends."
    ),
    ErrorCode.AUTH_MISSING_SCOPE: ErrorInfo(
        "auth", False, "Enable the required scope in auth.enabled_scopes, or ask for a token that grants it."
    ),
    ErrorCode.AUTH_TOKEN_MISSING: ErrorInfo("auth", False, "Send an OAuth bearer token."),
    ErrorCode.AUTH_TOKEN_INVALID: ErrorInfo("auth", False, "Obtain a new access token from the issuer."),
    ErrorCode.AUTH_TOKEN_EXPIRED: ErrorInfo("auth", True, "Refresh the access token and retry."),
    ErrorCode.AUTH_INVALID_ISSUER: ErrorInfo("auth", False, "Use a token from the configured issuer."),
    ErrorCode.AUTH_INVALID_AUDIENCE: ErrorInfo("auth", False, "Request a token for this resource (audience)."),
    ErrorCode.AUTH_SCOPE_UNKNOWN: ErrorInfo("auth", False, "Use only the scopes listed in the scope reference."),
    ErrorCode.AUDIT_READ_FORBIDDEN: ErrorInfo("auth", False, "Grant ibkr:audit:read to read the audit log."),
    ErrorCode.INPUT_MISSING_ACCOUNT: ErrorInfo("input", False, "Pass --account with one of the visible accounts."),
    ErrorCode.INPUT_UNAUTHORIZED_ACCOUNT: ErrorInfo(
        "input", False, "Run `ibkr-agent accounts list` and use one of the accounts it shows."
    ),
    ErrorCode.INPUT_AMBIGUOUS_CONTRACT: ErrorInfo(
        "input", False, "Run `ibkr-agent contracts search` and pass the exact contract id (conid)."
    ),
    ErrorCode.INPUT_UNKNOWN_CONTRACT: ErrorInfo(
        "input", False, "Check the symbol or contract id with `ibkr-agent contracts search`."
    ),
    ErrorCode.INPUT_UNSUPPORTED_ASSET_CLASS: ErrorInfo("input", False, "Use a stock or ETF contract."),
    ErrorCode.INPUT_INVALID_CONTRACT: ErrorInfo("input", False, "Pass a numeric IBKR contract id, e.g. 265598."),
    ErrorCode.INPUT_INVALID_TIME_RANGE: ErrorInfo(
        "input", False, "Use a duration such as '1 D', '2 W', '6 M' and a bar size such as '5 mins' or '1 day'."
    ),
    ErrorCode.INPUT_INVALID_ARGUMENT: ErrorInfo("input", False, _FIX_INPUT),
    ErrorCode.INPUT_UNKNOWN_ORDER: ErrorInfo("input", False, "Run `ibkr-agent orders list` to see known order ids."),
    ErrorCode.INPUT_UNKNOWN_OPERATION: ErrorInfo("input", False, "Use one of the operations the gateway lists."),
    ErrorCode.MARKET_DATA_STALE: ErrorInfo("input", True, "Request a fresh quote and retry."),
    ErrorCode.AUDIT_CHAIN_INVALID: ErrorInfo(
        "input", False, "Stop all writers and follow the audit-incident runbook; keep a copy of the database."
    ),
    ErrorCode.BROKER_SESSION_REQUIRED: ErrorInfo(
        "broker", True, "Log in to the Client Portal Gateway in a browser, then retry."
    ),
    ErrorCode.BROKER_SESSION_EXPIRED: ErrorInfo(
        "broker", True, "Reauthenticate the Client Portal Gateway session, then retry."
    ),
    ErrorCode.BROKER_BACKEND_UNAVAILABLE: ErrorInfo(
        "broker", True, "Start the Client Portal Gateway (or `ibkr-agent simulator serve`) and check broker.base_url."
    ),
    ErrorCode.BROKER_RATE_LIMITED: ErrorInfo("upstream", True, "Wait a few seconds and retry; IBKR paces requests."),
    ErrorCode.BROKER_CAPABILITY_UNAVAILABLE: ErrorInfo(
        "upstream", False, "This broker session does not offer that data; check market-data subscriptions."
    ),
    ErrorCode.BROKER_RESPONSE_INVALID: ErrorInfo(
        "upstream", True, "Retry once; if it persists, check the Client Portal Gateway version and logs."
    ),
    ErrorCode.BROKER_OUTCOME_UNKNOWN: ErrorInfo(
        "broker",
        False,
        "The order may have reached the broker: check `ibkr-agent orders list` before trying anything else.",
    ),
    ErrorCode.ORDER_CONFIRMATION_REFUSED: ErrorInfo(
        "refusal",
        False,
        "The broker asked for a confirmation the warning policy does not allow; review the warning and the policy.",
    ),
    ErrorCode.MARKET_DATA_UNAVAILABLE: ErrorInfo(
        "upstream", True, "Retry in a moment; check the market-data subscription for this contract."
    ),
    ErrorCode.HISTORICAL_BARS_UNAVAILABLE: ErrorInfo(
        "upstream", False, "Try a different duration or bar size; the broker has no bars for this request."
    ),
    ErrorCode.OUTPUT_UNSAFE: ErrorInfo(
        "output", False, "The output was withheld because it looked like it contained a secret; report this."
    ),
    ErrorCode.AUDIT_WRITE_FAILED: ErrorInfo(
        "refusal", True, "Check the audit database path, disk space and permissions, then retry."
    ),
    ErrorCode.STATE_DATABASE_UNAVAILABLE: ErrorInfo(
        "config",
        False,
        "Check that the state directory is a writable local directory holding a database from this or an older "
        "version.",
    ),
    ErrorCode.READONLY_WRITE_FORBIDDEN: ErrorInfo(
        "refusal", False, "Use the gated commands: orders preview, approvals create, orders submit."
    ),
    ErrorCode.INTERNAL_ERROR: ErrorInfo("refusal", False, "Report this with the audit event id."),
}
"""Family, retry advice and user action for every code; a test keeps it complete."""


class GatewayError(Exception):
    """Base of every error a surface may show: `code` for machines, `message` for people."""

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        *,
        retryable: bool | None = None,
        user_action: str | None = None,
        details: Mapping[str, object] | None = None,
    ) -> None:
        super().__init__(message)
        info = ERROR_CATALOGUE[code]
        self.code = code
        self.message = message
        self.retryable = info.retryable if retryable is None else retryable
        self.user_action = user_action or info.user_action
        self.details: dict[str, object] = dict(details or {})
        """JSON-safe context (never secrets or tokens)."""
        self.audit_event_id: str | None = None
        """Id of the audit event that recorded this error, once written."""

    @property
    def family(self) -> Family:
        """The code's family."""
        return ERROR_CATALOGUE[self.code].family

    @property
    def exit_code(self) -> int:
        """Process exit code of the family."""
        return EXIT_CODES[self.family]

    def to_dict(self) -> dict[str, object]:
        """The stable error shape shown by every surface."""
        return {
            "code": str(self.code),
            "message": self.message,
            "retryable": self.retryable,
            "user_action": self.user_action,
            "audit_event_id": self.audit_event_id,
        }

    def __str__(self) -> str:
        return f"[{self.code}] {self.message}"


def exit_code_for(code: ErrorCode) -> int:
    """Process exit code for a code."""
    return EXIT_CODES[ERROR_CATALOGUE[code].family]
