"""The operation registry: each gateway operation named once.

An entry fixes the Gateway method, the MCP tool name, the CLI words, the scope, the audit event
type, the input model and the output type. The CLI and the MCP server are both built from it, so
scope checks, audit and CLI/MCP parity cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from pydantic import BaseModel, ConfigDict

from .audit import AuditExport, AuditRecord, VerifyReport
from .checkpoint import Checkpoint
from .models import (
    AccountSummary,
    BrokerAccount,
    BrokerSessionStatus,
    ContractCandidate,
    Execution,
    HealthStatus,
    HistoricalBars,
    MarketSnapshot,
    OrderRecord,
    PortfolioSnapshot,
    Position,
    SessionRequirements,
)
from .requests import (
    AccountInput,
    AuditExportInput,
    AuditTailInput,
    AuditVerifyInput,
    BarsInput,
    ContractInput,
    ContractQueryInput,
    ExecutionsInput,
    NoInput,
    OperationInput,
    OrderLookupInput,
)
from .scopes import Scope


@dataclass(frozen=True, slots=True)
class Operation:
    """One operation of the gateway, as every surface sees it."""

    name: str
    """Gateway method name, e.g. `list_accounts`."""
    tool: str
    """MCP tool name, e.g. `ibkr_accounts_list`."""
    cli: tuple[str, ...]
    """CLI words after `ibkr-agent`, e.g. `("accounts", "list")`."""
    scope: Scope
    title: str
    description: str
    """One or two sentences for `--help` and the MCP tool description."""
    input_model: type[OperationInput]
    output_model: type[BaseModel]
    many: bool = False
    """True when the operation returns a list of `output_model`."""
    read_only: bool = True
    destructive: bool = False
    idempotent: bool = True
    open_world: bool = True
    """True when the operation reaches the broker (outside this process)."""
    event_type: str = "tool_completed"
    """Audit event type on success."""

    @property
    def cli_command(self) -> str:
        """The command as typed, e.g. `accounts list`."""
        return " ".join(self.cli)


_READS: Final = (
    Operation(
        name="health",
        tool="ibkr_health",
        cli=("health",),
        scope=Scope.HEALTH_READ,
        title="Gateway health",
        description="Liveness of the gateway itself; makes no broker call.",
        input_model=NoInput,
        output_model=HealthStatus,
        open_world=False,
    ),
    Operation(
        name="backend_status",
        tool="ibkr_backend_status",
        cli=("backend", "status"),
        scope=Scope.HEALTH_READ,
        title="Broker session status",
        description="Whether the broker session is usable, without any session material.",
        input_model=NoInput,
        output_model=BrokerSessionStatus,
        event_type="backend_session_checked",
    ),
    Operation(
        name="session_requirements",
        tool="ibkr_session_requirements",
        cli=("session", "requirements"),
        scope=Scope.HEALTH_READ,
        title="Session requirements",
        description="What must be true for broker calls to work, and the manual step a person must take now.",
        input_model=NoInput,
        output_model=SessionRequirements,
    ),
    Operation(
        name="list_accounts",
        tool="ibkr_accounts_list",
        cli=("accounts", "list"),
        scope=Scope.ACCOUNTS_READ,
        title="List accounts",
        description="Accounts visible in the broker session, each marked paper or live by the broker's own signal.",
        input_model=NoInput,
        output_model=BrokerAccount,
        many=True,
    ),
    Operation(
        name="account_summary",
        tool="ibkr_account_summary",
        cli=("account", "summary"),
        scope=Scope.PORTFOLIO_READ,
        title="Account summary",
        description="Net liquidation, cash, buying power and margin of one account.",
        input_model=AccountInput,
        output_model=AccountSummary,
    ),
    Operation(
        name="portfolio_snapshot",
        tool="ibkr_portfolio_snapshot",
        cli=("portfolio", "snapshot"),
        scope=Scope.PORTFOLIO_READ,
        title="Portfolio snapshot",
        description="Summary, cash per currency and every position of one account at one moment.",
        input_model=AccountInput,
        output_model=PortfolioSnapshot,
    ),
    Operation(
        name="list_positions",
        tool="ibkr_positions_list",
        cli=("positions", "list"),
        scope=Scope.POSITIONS_READ,
        title="List positions",
        description="Positions of one account, as the broker reports them now.",
        input_model=AccountInput,
        output_model=Position,
        many=True,
    ),
    Operation(
        name="search_contracts",
        tool="ibkr_contracts_search",
        cli=("contracts", "search"),
        scope=Scope.MARKETDATA_READ,
        title="Search contracts",
        description="Contracts matching a symbol, optionally filtered by asset class, currency and exchange.",
        input_model=ContractQueryInput,
        output_model=ContractCandidate,
        many=True,
    ),
    Operation(
        name="resolve_contract",
        tool="ibkr_contract_resolve",
        cli=("contracts", "resolve"),
        scope=Scope.MARKETDATA_READ,
        title="Resolve a contract",
        description="The one contract a symbol means; refuses with INPUT_AMBIGUOUS_CONTRACT when it means several.",
        input_model=ContractQueryInput,
        output_model=ContractCandidate,
    ),
    Operation(
        name="market_snapshot",
        tool="ibkr_market_snapshot",
        cli=("market", "snapshot"),
        scope=Scope.MARKETDATA_READ,
        title="Market snapshot",
        description="Bid, ask and last of one contract, with data status (live, delayed, frozen) and staleness.",
        input_model=ContractInput,
        output_model=MarketSnapshot,
    ),
    Operation(
        name="historical_bars",
        tool="ibkr_historical_bars",
        cli=("market", "bars"),
        scope=Scope.MARKETDATA_READ,
        title="Historical bars",
        description="OHLCV bars of one contract over a duration, regular trading hours unless asked otherwise.",
        input_model=BarsInput,
        output_model=HistoricalBars,
    ),
    Operation(
        name="list_orders",
        tool="ibkr_orders_list",
        cli=("orders", "list"),
        scope=Scope.ORDERS_READ,
        title="List orders",
        description="Working orders of one account and those finished in this broker session.",
        input_model=AccountInput,
        output_model=OrderRecord,
        many=True,
    ),
    Operation(
        name="order_status",
        tool="ibkr_order_status",
        cli=("orders", "status"),
        scope=Scope.ORDERS_READ,
        title="Order status",
        description="One order of one account, found by broker order id or client order id (cOID).",
        input_model=OrderLookupInput,
        output_model=OrderRecord,
    ),
    Operation(
        name="list_executions",
        tool="ibkr_executions_list",
        cli=("executions", "list"),
        scope=Scope.ORDERS_READ,
        title="List executions",
        description="Fills of one account over the last days (1 to 7).",
        input_model=ExecutionsInput,
        output_model=Execution,
        many=True,
    ),
)


class AuditTail(BaseModel):
    """The newest audit events, newest first."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    events: list[AuditRecord]


_AUDIT: Final = (
    Operation(
        name="audit_tail",
        tool="ibkr_audit_tail",
        cli=("audit", "tail"),
        scope=Scope.AUDIT_READ,
        title="Audit tail",
        description="The newest audit events, newest first; reads only those rows, it does not re-verify the chain.",
        input_model=AuditTailInput,
        output_model=AuditTail,
        open_world=False,
    ),
    Operation(
        name="audit_export",
        tool="ibkr_audit_export",
        cli=("audit", "export"),
        scope=Scope.AUDIT_EXPORT,
        title="Audit export",
        description="The newest audit events as redacted JSONL with its SHA-256; refused if a secret marker remains.",
        input_model=AuditExportInput,
        output_model=AuditExport,
        open_world=False,
    ),
    Operation(
        name="audit_verify",
        tool="ibkr_audit_verify",
        cli=("audit", "verify"),
        scope=Scope.AUDIT_READ,
        title="Audit verify",
        description="Recompute the whole HMAC chain and check a signed checkpoint; names the first break.",
        input_model=AuditVerifyInput,
        output_model=VerifyReport,
        open_world=False,
    ),
    Operation(
        name="audit_checkpoint",
        tool="ibkr_audit_checkpoint",
        cli=("audit", "checkpoint"),
        scope=Scope.AUDIT_EXPORT,
        title="Audit checkpoint",
        description="A signed head of the audit chain (sequence, chain hash, time); keep it outside the database.",
        input_model=NoInput,
        output_model=Checkpoint,
        open_world=False,
    ),
)

OPERATIONS: Final[Mapping[str, Operation]] = {op.name: op for op in (*_READS, *_AUDIT)}
"""Every operation by Gateway method name."""

OPERATIONS_BY_TOOL: Final[Mapping[str, Operation]] = {op.tool: op for op in OPERATIONS.values()}
"""Every operation by MCP tool name."""


def operation(name: str) -> Operation:
    """The operation named `name` (method or tool name).

    Raises:
        KeyError: when no operation has that name.
    """
    return OPERATIONS.get(name) or OPERATIONS_BY_TOOL[name]
