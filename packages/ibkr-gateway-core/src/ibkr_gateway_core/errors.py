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
from enum import StrEnum
from typing import Final, Literal, NamedTuple

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
    CONFIG_OAUTH_CREDENTIAL_MISSING = "CONFIG_OAUTH_CREDENTIAL_MISSING"
    CONFIG_OAUTH_CREDENTIAL_INVALID = "CONFIG_OAUTH_CREDENTIAL_INVALID"
    AUTH_MISSING_SCOPE = "AUTH_MISSING_SCOPE"
    AUTH_TOKEN_MISSING = "AUTH_TOKEN_MISSING"
    AUTH_TOKEN_INVALID = "AUTH_TOKEN_INVALID"
    AUTH_TOKEN_EXPIRED = "AUTH_TOKEN_EXPIRED"
    AUTH_INVALID_ISSUER = "AUTH_INVALID_ISSUER"
    AUTH_INVALID_AUDIENCE = "AUTH_INVALID_AUDIENCE"
    AUTH_SCOPE_UNKNOWN = "AUTH_SCOPE_UNKNOWN"
    DESK_LOGIN_REFUSED = "DESK_LOGIN_REFUSED"
    DESK_SESSION_INVALID = "DESK_SESSION_INVALID"
    DESK_CSRF_INVALID = "DESK_CSRF_INVALID"
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
    INPUT_NON_FINITE_NUMBER = "INPUT_NON_FINITE_NUMBER"
    INPUT_NUMBER_TOO_LARGE = "INPUT_NUMBER_TOO_LARGE"
    INPUT_INVALID_UNICODE = "INPUT_INVALID_UNICODE"
    INPUT_TOO_DEEP = "INPUT_TOO_DEEP"
    INPUT_MALFORMED_REQUEST = "INPUT_MALFORMED_REQUEST"
    MARKET_DATA_STALE = "MARKET_DATA_STALE"
    AUDIT_CHAIN_INVALID = "AUDIT_CHAIN_INVALID"
    BROKER_SESSION_REQUIRED = "BROKER_SESSION_REQUIRED"
    BROKER_SESSION_EXPIRED = "BROKER_SESSION_EXPIRED"
    BROKER_BACKEND_UNAVAILABLE = "BROKER_BACKEND_UNAVAILABLE"
    BROKER_RATE_LIMITED = "BROKER_RATE_LIMITED"
    BROKER_CAPABILITY_UNAVAILABLE = "BROKER_CAPABILITY_UNAVAILABLE"
    BROKER_RESPONSE_INVALID = "BROKER_RESPONSE_INVALID"
    BROKER_OUTCOME_UNKNOWN = "BROKER_OUTCOME_UNKNOWN"
    BROKER_ANSWER_INCOMPLETE = "BROKER_ANSWER_INCOMPLETE"
    BROKER_ACCOUNT_NOT_SELECTED = "BROKER_ACCOUNT_NOT_SELECTED"
    BROKER_OAUTH_REJECTED = "BROKER_OAUTH_REJECTED"
    ORDER_CONFIRMATION_REFUSED = "ORDER_CONFIRMATION_REFUSED"
    ORDER_CONFIRMATION_CONFLICT = "ORDER_CONFIRMATION_CONFLICT"
    MARKET_DATA_UNAVAILABLE = "MARKET_DATA_UNAVAILABLE"
    HISTORICAL_BARS_UNAVAILABLE = "HISTORICAL_BARS_UNAVAILABLE"
    OUTPUT_UNSAFE = "OUTPUT_UNSAFE"
    AUDIT_WRITE_FAILED = "AUDIT_WRITE_FAILED"
    STATE_DATABASE_UNAVAILABLE = "STATE_DATABASE_UNAVAILABLE"
    STATE_IMPORT_TARGET_NOT_EMPTY = "STATE_IMPORT_TARGET_NOT_EMPTY"
    READONLY_WRITE_FORBIDDEN = "READONLY_WRITE_FORBIDDEN"
    INTERNAL_ERROR = "INTERNAL_ERROR"
    ORDER_PREVIEW_DISABLED = "ORDER_PREVIEW_DISABLED"
    ORDER_VALIDATION_FAILED = "ORDER_VALIDATION_FAILED"
    ORDER_QUANTITY_INVALID = "ORDER_QUANTITY_INVALID"
    ORDER_PRICE_INVALID = "ORDER_PRICE_INVALID"
    ORDER_FRACTIONAL_REFUSED = "ORDER_FRACTIONAL_REFUSED"
    ORDER_LIMIT_PRICE_REQUIRED = "ORDER_LIMIT_PRICE_REQUIRED"
    ORDER_STOP_PRICE_REQUIRED = "ORDER_STOP_PRICE_REQUIRED"
    ORDER_TRAILING_OFFSET_REQUIRED = "ORDER_TRAILING_OFFSET_REQUIRED"
    ORDER_TRAILING_OFFSET_INVALID = "ORDER_TRAILING_OFFSET_INVALID"
    ORDER_TYPE_REFUSED = "ORDER_TYPE_REFUSED"
    ORDER_ASSET_CLASS_REFUSED = "ORDER_ASSET_CLASS_REFUSED"
    ORDER_SYMBOL_REFUSED = "ORDER_SYMBOL_REFUSED"
    ORDER_QUANTITY_LIMIT_REFUSED = "ORDER_QUANTITY_LIMIT_REFUSED"
    ORDER_NOTIONAL_LIMIT_REFUSED = "ORDER_NOTIONAL_LIMIT_REFUSED"
    ORDER_QUOTE_MISSING = "ORDER_QUOTE_MISSING"
    ORDER_QUOTE_STALE = "ORDER_QUOTE_STALE"
    ORDER_PRICE_COLLAR_REFUSED = "ORDER_PRICE_COLLAR_REFUSED"
    ORDER_BROKER_WOULD_REJECT = "ORDER_BROKER_WOULD_REJECT"
    ORDER_BRACKET_PRICES_INVALID = "ORDER_BRACKET_PRICES_INVALID"
    ORDER_NOT_MODIFIABLE = "ORDER_NOT_MODIFIABLE"
    PREVIEW_NOT_FOUND = "PREVIEW_NOT_FOUND"
    PREVIEW_EXPIRED = "PREVIEW_EXPIRED"
    PREVIEW_DENIED = "PREVIEW_DENIED"
    PAPER_APPROVAL_REQUIRED = "PAPER_APPROVAL_REQUIRED"
    APPROVAL_NOT_FOUND = "APPROVAL_NOT_FOUND"
    APPROVAL_EXPIRED = "APPROVAL_EXPIRED"
    APPROVAL_CONSUMED = "APPROVAL_CONSUMED"
    APPROVAL_REVOKED = "APPROVAL_REVOKED"
    APPROVAL_ACCOUNT_MISMATCH = "APPROVAL_ACCOUNT_MISMATCH"
    APPROVAL_PREVIEW_MISMATCH = "APPROVAL_PREVIEW_MISMATCH"
    APPROVAL_OPERATION_MISMATCH = "APPROVAL_OPERATION_MISMATCH"
    APPROVAL_SELF_FORBIDDEN = "APPROVAL_SELF_FORBIDDEN"
    APPROVAL_TTL_OUT_OF_RANGE = "APPROVAL_TTL_OUT_OF_RANGE"
    APPROVAL_APPROVER_REQUIRED = "APPROVAL_APPROVER_REQUIRED"
    APPROVAL_MODE_MISMATCH = "APPROVAL_MODE_MISMATCH"
    IDEMPOTENCY_KEY_REQUIRED = "IDEMPOTENCY_KEY_REQUIRED"
    IDEMPOTENCY_CONFLICT = "IDEMPOTENCY_CONFLICT"
    IDEMPOTENCY_IN_PROGRESS = "IDEMPOTENCY_IN_PROGRESS"
    ORDER_OUTCOME_PENDING = "ORDER_OUTCOME_PENDING"
    PAPER_TRADING_DISABLED = "PAPER_TRADING_DISABLED"
    PAPER_ACCOUNT_REQUIRED = "PAPER_ACCOUNT_REQUIRED"
    LIVE_TRADING_DISABLED = "LIVE_TRADING_DISABLED"
    LIVE_SCOPE_MISSING = "LIVE_SCOPE_MISSING"
    LIVE_ACCOUNT_NOT_ALLOWLISTED = "LIVE_ACCOUNT_NOT_ALLOWLISTED"
    LIVE_MIGRATION_REQUIRED = "LIVE_MIGRATION_REQUIRED"
    LIVE_POLICY_UNKNOWN = "LIVE_POLICY_UNKNOWN"
    LIVE_ORDER_TYPE_REFUSED = "LIVE_ORDER_TYPE_REFUSED"
    LIVE_FRACTIONAL_REFUSED = "LIVE_FRACTIONAL_REFUSED"
    LIVE_ASSET_CLASS_REFUSED = "LIVE_ASSET_CLASS_REFUSED"
    LIVE_SYMBOL_REFUSED = "LIVE_SYMBOL_REFUSED"
    LIVE_QUANTITY_LIMIT_REFUSED = "LIVE_QUANTITY_LIMIT_REFUSED"
    LIVE_NOTIONAL_LIMIT_REFUSED = "LIVE_NOTIONAL_LIMIT_REFUSED"
    LIVE_MARKET_SNAPSHOT_MISSING = "LIVE_MARKET_SNAPSHOT_MISSING"
    LIVE_STALE_QUOTE = "LIVE_STALE_QUOTE"
    LIVE_PRICE_COLLAR_REFUSED = "LIVE_PRICE_COLLAR_REFUSED"
    LIVE_FREQUENCY_LIMIT_REFUSED = "LIVE_FREQUENCY_LIMIT_REFUSED"
    LIVE_DAILY_ORDER_LIMIT_REFUSED = "LIVE_DAILY_ORDER_LIMIT_REFUSED"
    LIVE_DAILY_NOTIONAL_LIMIT_REFUSED = "LIVE_DAILY_NOTIONAL_LIMIT_REFUSED"
    LIVE_KILL_SWITCH_CLOSED = "LIVE_KILL_SWITCH_CLOSED"
    KILL_SWITCH_OPERATOR_ONLY = "KILL_SWITCH_OPERATOR_ONLY"
    BACKEND_UNSUPPORTED = "BACKEND_UNSUPPORTED"
    OPERATOR_ONLY = "OPERATOR_ONLY"


class ErrorInfo(NamedTuple):
    """What the catalogue says about one code.

    A named tuple, not a dataclass: a dataclass compiles its generated methods at import (start-up).
    """

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
    ErrorCode.CONFIG_OAUTH_CREDENTIAL_MISSING: ErrorInfo(
        "config",
        False,
        "Complete broker.oauth: the consumer key, the access token and its secret (an environment variable or a "
        "file each, set and non-empty), the signature and encryption key files and the Diffie-Hellman parameters.",
    ),
    ErrorCode.CONFIG_OAUTH_CREDENTIAL_INVALID: ErrorInfo(
        "config",
        False,
        "Check the named broker.oauth credential against what IBKR's self-service portal holds: the private keys "
        "whose public halves you uploaded (PEM), the access token secret the portal showed, the DH parameters "
        "you uploaded.",
    ),
    ErrorCode.AUTH_MISSING_SCOPE: ErrorInfo(
        "auth",
        False,
        "Enable the scope: auth.enabled_scopes for agents, orders.operator_scopes for the CLI operator, "
        "or a token that grants it.",
    ),
    ErrorCode.AUTH_TOKEN_MISSING: ErrorInfo("auth", False, "Send an OAuth bearer token."),
    ErrorCode.AUTH_TOKEN_INVALID: ErrorInfo("auth", False, "Obtain a new access token from the issuer."),
    ErrorCode.AUTH_TOKEN_EXPIRED: ErrorInfo("auth", True, "Refresh the access token and retry."),
    ErrorCode.AUTH_INVALID_ISSUER: ErrorInfo("auth", False, "Use a token from the configured issuer."),
    ErrorCode.AUTH_INVALID_AUDIENCE: ErrorInfo("auth", False, "Request a token for this resource (audience)."),
    ErrorCode.AUTH_SCOPE_UNKNOWN: ErrorInfo("auth", False, "Use only the scopes listed in the scope reference."),
    ErrorCode.DESK_LOGIN_REFUSED: ErrorInfo(
        "auth",
        False,
        "Log in to the approval desk as a subject listed in auth.approvers, or use the one-time link "
        "`ibkr-agent desk serve` prints.",
    ),
    ErrorCode.DESK_SESSION_INVALID: ErrorInfo(
        "auth", False, "Your desk session is unknown, expired or signed out; log in to the approval desk again."
    ),
    ErrorCode.DESK_CSRF_INVALID: ErrorInfo(
        "auth", False, "Reload the approval desk page and submit the form from it again."
    ),
    ErrorCode.AUDIT_READ_FORBIDDEN: ErrorInfo("auth", False, "Grant ibkr:audit:read to read the audit log."),
    ErrorCode.INPUT_MISSING_ACCOUNT: ErrorInfo(
        "input", False, "Give the account id (`--account`, `account_id`) of one of the visible accounts."
    ),
    ErrorCode.INPUT_UNAUTHORIZED_ACCOUNT: ErrorInfo(
        "input",
        False,
        "List the visible accounts (`ibkr-agent accounts list`, tool `ibkr_accounts_list`) and use one of them.",
    ),
    ErrorCode.INPUT_AMBIGUOUS_CONTRACT: ErrorInfo(
        "input",
        False,
        "Search contracts (`ibkr-agent contracts search`, tool `ibkr_contracts_search`) and pass the exact conid.",
    ),
    ErrorCode.INPUT_UNKNOWN_CONTRACT: ErrorInfo(
        "input", False, "Check the symbol or conid with `ibkr-agent contracts search` (tool `ibkr_contracts_search`)."
    ),
    ErrorCode.INPUT_UNSUPPORTED_ASSET_CLASS: ErrorInfo("input", False, "Use a stock or ETF contract."),
    ErrorCode.INPUT_INVALID_CONTRACT: ErrorInfo("input", False, "Pass a numeric IBKR contract id, e.g. 265598."),
    ErrorCode.INPUT_INVALID_TIME_RANGE: ErrorInfo(
        "input", False, "Use a duration such as '1 D', '2 W', '6 M' and a bar size such as '5 mins' or '1 day'."
    ),
    ErrorCode.INPUT_INVALID_ARGUMENT: ErrorInfo("input", False, _FIX_INPUT),
    ErrorCode.INPUT_UNKNOWN_ORDER: ErrorInfo(
        "input", False, "List orders (`ibkr-agent orders list`, tool `ibkr_orders_list`) to see known order ids."
    ),
    ErrorCode.INPUT_UNKNOWN_OPERATION: ErrorInfo("input", False, "Use one of the operations the gateway lists."),
    ErrorCode.INPUT_NON_FINITE_NUMBER: ErrorInfo(
        "input", False, "Send finite numbers only (no NaN, Infinity or overflowing exponents such as 1e999)."
    ),
    ErrorCode.INPUT_NUMBER_TOO_LARGE: ErrorInfo(
        "input", False, "Send integers of at most 64 digits; give exact amounts as decimal strings."
    ),
    ErrorCode.INPUT_INVALID_UNICODE: ErrorInfo(
        "input", False, "Send text as valid UTF-8 with no lone surrogate escapes (\\ud800 to \\udfff)."
    ),
    ErrorCode.INPUT_TOO_DEEP: ErrorInfo(
        "input", False, "Send flat arguments as the tool's input schema describes (at most 32 levels, 100,000 values)."
    ),
    ErrorCode.INPUT_MALFORMED_REQUEST: ErrorInfo(
        "input",
        False,
        "Send one JSON-RPC 2.0 message per line (stdio) or per request body (HTTP), "
        "with the params its method defines.",
    ),
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
    ErrorCode.BROKER_ACCOUNT_NOT_SELECTED: ErrorInfo(
        "upstream",
        True,
        "The broker login has several accounts and did not select this one; check the account with "
        "`ibkr-agent accounts list`, make sure no other program switches accounts on the same login, then retry.",
    ),
    ErrorCode.BROKER_ANSWER_INCOMPLETE: ErrorInfo(
        "upstream",
        True,
        "The gateway answered before its data was ready (e.g. an empty order list while orders work): "
        "retry in a few seconds; do not read it as 'nothing there'.",
    ),
    ErrorCode.BROKER_OAUTH_REJECTED: ErrorInfo(
        "broker",
        False,
        "IBKR refused the OAuth 1.0a credentials: check broker.oauth (consumer key, access token, realm, the "
        "signature key whose public half is in the self-service portal), or make new ones in the portal.",
    ),
    ErrorCode.BROKER_OUTCOME_UNKNOWN: ErrorInfo(
        "broker",
        False,
        "The order may have reached the broker: list orders (`ibkr-agent orders list`, tool `ibkr_orders_list`) first.",
    ),
    ErrorCode.ORDER_CONFIRMATION_REFUSED: ErrorInfo(
        "refusal",
        False,
        "The broker asked for a confirmation the warning policy does not allow; review the warning and the policy.",
    ),
    ErrorCode.ORDER_CONFIRMATION_CONFLICT: ErrorInfo(
        "refusal",
        True,
        "Another process on the same IBKR login was placing or confirming an order, so this one was not placed; "
        "retry the same call (same idempotency key) in a few seconds.",
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
        "version; with state on PostgreSQL, that the server is up and the DSN in state.postgres_dsn_env is right.",
    ),
    ErrorCode.STATE_IMPORT_TARGET_NOT_EMPTY: ErrorInfo(
        "refusal",
        False,
        "Import into a new, empty state database before any server or command uses it: create a new PostgreSQL "
        "database (or point state.directory at an empty directory) and run the import first.",
    ),
    ErrorCode.READONLY_WRITE_FORBIDDEN: ErrorInfo(
        "refusal", False, "Use the gated commands: orders preview, approvals create, orders submit."
    ),
    ErrorCode.INTERNAL_ERROR: ErrorInfo("refusal", False, "Report this with the audit event id."),
    ErrorCode.ORDER_PREVIEW_DISABLED: ErrorInfo(
        "refusal",
        False,
        "Pass --enable-preview on the CLI; MCP callers need orders.preview_enabled and the preview scope.",
    ),
    ErrorCode.ORDER_VALIDATION_FAILED: ErrorInfo("refusal", False, "Correct the order fields and preview again."),
    ErrorCode.ORDER_QUANTITY_INVALID: ErrorInfo("refusal", False, "Use a positive, finite quantity."),
    ErrorCode.ORDER_PRICE_INVALID: ErrorInfo("refusal", False, "Use positive, finite prices."),
    ErrorCode.ORDER_FRACTIONAL_REFUSED: ErrorInfo(
        "refusal", False, "Use a whole quantity, or allow fractions in the risk policy."
    ),
    ErrorCode.ORDER_LIMIT_PRICE_REQUIRED: ErrorInfo(
        "refusal", False, "Give a limit price (`--limit-price`, `limit_price`) for limit orders."
    ),
    ErrorCode.ORDER_STOP_PRICE_REQUIRED: ErrorInfo(
        "refusal", False, "Give a stop price (`--stop-price`, `stop_price`) for stop orders."
    ),
    ErrorCode.ORDER_TRAILING_OFFSET_REQUIRED: ErrorInfo(
        "refusal",
        False,
        "Give exactly one trailing offset: `trailing_amount` (`--trailing-amount`) or `trailing_percent`.",
    ),
    ErrorCode.ORDER_TRAILING_OFFSET_INVALID: ErrorInfo("refusal", False, "Use a positive trailing offset."),
    ErrorCode.ORDER_TYPE_REFUSED: ErrorInfo("refusal", False, "Use an order type the risk policy allows."),
    ErrorCode.ORDER_ASSET_CLASS_REFUSED: ErrorInfo(
        "refusal", False, "Trade an asset class the risk policy allows (allowed_asset_classes)."
    ),
    ErrorCode.ORDER_SYMBOL_REFUSED: ErrorInfo(
        "refusal", False, "Trade a symbol the risk policy allows (allowed_symbols)."
    ),
    ErrorCode.ORDER_QUANTITY_LIMIT_REFUSED: ErrorInfo(
        "refusal", False, "Reduce the quantity to the policy's max_quantity or below."
    ),
    ErrorCode.ORDER_NOTIONAL_LIMIT_REFUSED: ErrorInfo(
        "refusal", False, "Reduce quantity or price so the notional stays within the policy's max_notional."
    ),
    ErrorCode.ORDER_QUOTE_MISSING: ErrorInfo(
        "refusal", True, "The order needs a reference price and the broker has no quote; retry when it has one."
    ),
    ErrorCode.ORDER_QUOTE_STALE: ErrorInfo("refusal", True, "Wait for a fresh quote and preview again."),
    ErrorCode.ORDER_PRICE_COLLAR_REFUSED: ErrorInfo(
        "refusal", False, "Bring the price within the policy's max_price_deviation_bps of the market."
    ),
    ErrorCode.ORDER_BROKER_WOULD_REJECT: ErrorInfo(
        "refusal", False, "The broker's what-if says it would reject this order; read its message and adjust."
    ),
    ErrorCode.ORDER_BRACKET_PRICES_INVALID: ErrorInfo(
        "refusal",
        False,
        "Order the bracket's prices: for a buy, stop-loss below the entry limit below the take-profit; "
        "for a sell, the other way round.",
    ),
    ErrorCode.ORDER_NOT_MODIFIABLE: ErrorInfo(
        "refusal", False, "Only a working order can be modified; list the account's orders to see their status."
    ),
    ErrorCode.PREVIEW_NOT_FOUND: ErrorInfo(
        "refusal",
        False,
        "Preview the order (`ibkr-agent orders preview`, tool `ibkr_order_preview`) and use its preview_id.",
    ),
    ErrorCode.PREVIEW_EXPIRED: ErrorInfo("refusal", False, "Preview the order again; previews expire."),
    ErrorCode.PREVIEW_DENIED: ErrorInfo(
        "refusal", False, "A person denied this preview; change the order and preview it again, or ask them why."
    ),
    ErrorCode.PAPER_APPROVAL_REQUIRED: ErrorInfo(
        "refusal",
        False,
        "Have the operator approve the preview (`ibkr-agent approvals create`) and pass its approval_id.",
    ),
    ErrorCode.APPROVAL_NOT_FOUND: ErrorInfo(
        "refusal",
        False,
        "List approvals (`ibkr-agent approvals list`, tool `ibkr_approvals_list`) to see approval ids.",
    ),
    ErrorCode.APPROVAL_EXPIRED: ErrorInfo("refusal", False, "Create a new approval; this one expired."),
    ErrorCode.APPROVAL_CONSUMED: ErrorInfo(
        "refusal", False, "An approval is single use: preview and approve the order again."
    ),
    ErrorCode.APPROVAL_REVOKED: ErrorInfo("refusal", False, "The approval was revoked; create a new one."),
    ErrorCode.APPROVAL_ACCOUNT_MISMATCH: ErrorInfo("refusal", False, "Use an approval created for this account."),
    ErrorCode.APPROVAL_PREVIEW_MISMATCH: ErrorInfo(
        "refusal", False, "The approval does not match the preview; approve the preview you mean to submit."
    ),
    ErrorCode.APPROVAL_OPERATION_MISMATCH: ErrorInfo(
        "refusal",
        False,
        "Submit the approval with the operation of its preview: an order preview with `orders submit`, a bracket "
        "preview with `orders bracket-submit`, a modify preview with `orders modify` (or their live commands).",
    ),
    ErrorCode.APPROVAL_SELF_FORBIDDEN: ErrorInfo(
        "refusal",
        False,
        "Ask another person (the operator at the CLI, or another listed approver) to approve this preview.",
    ),
    ErrorCode.APPROVAL_APPROVER_REQUIRED: ErrorInfo(
        "refusal",
        False,
        "A person must approve: the operator at the CLI (`ibkr-agent approvals create`), or a remote subject "
        "listed under auth.approvers.",
    ),
    ErrorCode.APPROVAL_MODE_MISMATCH: ErrorInfo(
        "refusal",
        False,
        "The approval is for the other mode (paper or live); have a person approve the preview for this mode "
        "(`approvals create --mode live` or `--mode paper`).",
    ),
    ErrorCode.APPROVAL_TTL_OUT_OF_RANGE: ErrorInfo(
        "refusal",
        False,
        "Give a TTL (`--ttl-seconds`, `ttl_seconds`) within approvals.min_ttl_seconds and approvals.max_ttl_seconds.",
    ),
    ErrorCode.IDEMPOTENCY_KEY_REQUIRED: ErrorInfo(
        "refusal",
        False,
        "Give an idempotency key (`--idempotency-key`, `idempotency_key`) of 1 to 128 printable characters.",
    ),
    ErrorCode.IDEMPOTENCY_CONFLICT: ErrorInfo(
        "refusal", False, "This key was used for a different request; use a new key for a new order."
    ),
    ErrorCode.IDEMPOTENCY_IN_PROGRESS: ErrorInfo(
        "refusal", True, "The first request with this key is still running; retry the same call in a moment."
    ),
    ErrorCode.ORDER_OUTCOME_PENDING: ErrorInfo(
        "refusal",
        False,
        "An earlier order for this account has an unknown outcome: repeat that call with its idempotency key "
        "(`--idempotency-key`, `idempotency_key`) or run `ibkr-agent orders reconcile` (tool `ibkr_orders_reconcile`) "
        "until it settles.",
    ),
    ErrorCode.PAPER_TRADING_DISABLED: ErrorInfo(
        "refusal", False, "Pass --enable-paper on the CLI; MCP callers need orders.paper_enabled and the paper scopes."
    ),
    ErrorCode.PAPER_ACCOUNT_REQUIRED: ErrorInfo(
        "refusal", False, "Paper orders go only to accounts the broker marks as paper (isPaper)."
    ),
    ErrorCode.LIVE_TRADING_DISABLED: ErrorInfo(
        "refusal",
        False,
        "Pass --enable-live; with a real broker also set safety.live_trading_enabled and live_trading.enabled.",
    ),
    ErrorCode.LIVE_SCOPE_MISSING: ErrorInfo("refusal", False, "Pass --live-scope to confirm the live scope."),
    ErrorCode.LIVE_ACCOUNT_NOT_ALLOWLISTED: ErrorInfo(
        "refusal", False, "Add the account to live_trading.allowed_accounts (only the operator can)."
    ),
    ErrorCode.LIVE_MIGRATION_REQUIRED: ErrorInfo(
        "refusal",
        False,
        "Complete the paper-to-live runbook, set live_trading.paper_to_live_checklist_acknowledged and pass "
        "--acknowledge-paper-to-live.",
    ),
    ErrorCode.LIVE_POLICY_UNKNOWN: ErrorInfo(
        "refusal", False, "Set live_trading.risk_policy_id to the id of a policy under risk_policies."
    ),
    ErrorCode.LIVE_ORDER_TYPE_REFUSED: ErrorInfo("refusal", False, "Use an order type the live risk policy allows."),
    ErrorCode.LIVE_FRACTIONAL_REFUSED: ErrorInfo("refusal", False, "Use a whole quantity for live orders."),
    ErrorCode.LIVE_ASSET_CLASS_REFUSED: ErrorInfo(
        "refusal", False, "Trade an asset class the live risk policy allows."
    ),
    ErrorCode.LIVE_SYMBOL_REFUSED: ErrorInfo("refusal", False, "Trade a symbol the live risk policy allows."),
    ErrorCode.LIVE_QUANTITY_LIMIT_REFUSED: ErrorInfo(
        "refusal", False, "Reduce the quantity to the live policy's max_quantity or below."
    ),
    ErrorCode.LIVE_NOTIONAL_LIMIT_REFUSED: ErrorInfo(
        "refusal", False, "Reduce the order's notional to the live policy's max_notional or below."
    ),
    ErrorCode.LIVE_MARKET_SNAPSHOT_MISSING: ErrorInfo(
        "refusal", True, "The live policy needs a reference price and the broker has no usable quote; retry later."
    ),
    ErrorCode.LIVE_STALE_QUOTE: ErrorInfo("refusal", True, "Wait for a fresh quote, then retry."),
    ErrorCode.LIVE_PRICE_COLLAR_REFUSED: ErrorInfo(
        "refusal", False, "Bring the price within the live policy's max_price_deviation_bps of mid or last."
    ),
    ErrorCode.LIVE_FREQUENCY_LIMIT_REFUSED: ErrorInfo(
        "refusal", True, "Too many live orders in the window; wait for the window to pass."
    ),
    ErrorCode.LIVE_DAILY_ORDER_LIMIT_REFUSED: ErrorInfo(
        "refusal", False, "The live order count for this trading day is used up; it resets at the next trading day."
    ),
    ErrorCode.LIVE_DAILY_NOTIONAL_LIMIT_REFUSED: ErrorInfo(
        "refusal", False, "The live notional budget for this trading day is used up; see `ibkr-agent limits status`."
    ),
    ErrorCode.LIVE_KILL_SWITCH_CLOSED: ErrorInfo(
        "refusal", False, "The operator opens the kill switch with `ibkr-agent kill-switch open --reason ...`."
    ),
    ErrorCode.KILL_SWITCH_OPERATOR_ONLY: ErrorInfo(
        "auth", False, "Only the operator at the CLI may open the kill switch; anyone with a write scope may close it."
    ),
    ErrorCode.BACKEND_UNSUPPORTED: ErrorInfo(
        "upstream",
        False,
        "The broker's Client Portal Web API does not offer this; use another source for it (see the message).",
    ),
    ErrorCode.OPERATOR_ONLY: ErrorInfo(
        "auth", False, "Ask the operator to run the command at the CLI (`ibkr-agent ...`); agents may not."
    ),
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
        if not isinstance(message, str):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise TypeError(f"{code}: a GatewayError needs a human message")  # never shown as "None"
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
