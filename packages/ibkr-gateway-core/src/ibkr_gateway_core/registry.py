"""The operation registry: each gateway operation named once.

An entry fixes the Gateway method, the MCP tool name, the CLI words, the scope, the audit event
type, the input model and the output type. The CLI and the MCP server are both built from it, so
scope checks, audit and CLI/MCP parity cannot drift apart.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Generic, TypeVar, cast

from pydantic import BaseModel, ConfigDict

from .audit.checkpoint import Checkpoint
from .audit.log import AuditExport, AuditRecord, VerifyReport
from .scopes import Scope

M = TypeVar("M", bound=BaseModel)


class ModelRef:
    """A model class named by its module and name, imported when an operation's model is first read.

    The registry names every operation's input and output models; importing all their modules took
    a large share of a CLI command's start-up, though a command uses the models of one operation.
    """

    __slots__ = ("module", "name")

    def __init__(self, module: str, name: str) -> None:
        self.module = module
        self.name = name

    def __repr__(self) -> str:
        return f"ModelRef({self.module!r}, {self.name!r})"

    def load(self) -> type[BaseModel]:
        """The class itself (its module is imported now if it was not yet)."""
        return cast(type[BaseModel], getattr(importlib.import_module(self.module, __package__), self.name))


class _ModelField(Generic[M]):
    """An `Operation` field holding a model class, given as the class or as a `ModelRef` loaded on first read."""

    def __set_name__(self, owner: type[object], name: str) -> None:
        self._slot = f"_{name}"

    def __get__(self, instance: object | None, owner: type[object] | None = None) -> type[M]:
        if instance is None:
            raise AttributeError(self._slot)  # no class-level default: the field is required
        value: type[M] | ModelRef = instance.__dict__[self._slot]
        if isinstance(value, ModelRef):
            value = cast(type[M], value.load())
            instance.__dict__[self._slot] = value
        return value

    def __set__(self, instance: object, value: type[M]) -> None:
        instance.__dict__[self._slot] = value


if TYPE_CHECKING:
    from .capabilities import Capabilities
    from .input_base import NoInput, OperationInput
    from .market.models import (
        AccountMetadata,
        CurrencyRate,
        DailyPnl,
        Fundamentals,
        MarketDepth,
        MarketHolidays,
        MarketSchedule,
        NewsArticle,
        NewsList,
        OptionChain,
        OptionExpirations,
        OptionGreeks,
        OptionStrikes,
        OrdersHistory,
        PnlBreakdown,
        ScannerParams,
        ScannerResult,
        TransactionHistory,
        TransferHistory,
    )
    from .market.requests import (
        CurrencyRateInput,
        DepthInput,
        NewsArticleInput,
        NewsListInput,
        OptionChainInput,
        OptionStrikesInput,
        OrdersHistoryInput,
        ScannerRunInput,
        ScheduleInput,
        TransactionsInput,
        UnderlyingInput,
    )
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
    from .orders.models import (
        ApprovalRecord,
        KillSwitchState,
        LimitsStatus,
        OrderLifecycle,
        OrderPreview,
        PreviewDenial,
        PreviewEntry,
        ReconcileReport,
    )
    from .orders.requests import (
        ApprovalCreateInput,
        ApprovalListInput,
        ApprovalRevokeInput,
        BracketPreviewInput,
        KillSwitchChangeInput,
        ModifyPreviewInput,
        OrderCancelInput,
        OrderPreviewInput,
        OrderSubmitInput,
        PreviewDenyInput,
        PreviewListInput,
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
        OrderLookupInput,
        PositionsInput,
    )
    from .state.transfer import StateBackup, StateBackupInput, StateImport, StateImportInput
else:

    def _refs(homes: Mapping[str, tuple[str, ...]]) -> dict[str, ModelRef]:
        return {name: ModelRef(module, name) for module, names in homes.items() for name in names}

    # At run time the names above are references, loaded on first read (`Operation.input_model`).
    globals().update(
        _refs(
            {
                ".input_base": ("NoInput", "OperationInput"),
                ".capabilities": ("Capabilities",),
                ".state.transfer": ("StateBackup", "StateBackupInput", "StateImport", "StateImportInput"),
                ".market.models": (
                    "AccountMetadata",
                    "CurrencyRate",
                    "DailyPnl",
                    "Fundamentals",
                    "MarketDepth",
                    "MarketHolidays",
                    "MarketSchedule",
                    "NewsArticle",
                    "NewsList",
                    "OptionChain",
                    "OptionExpirations",
                    "OptionGreeks",
                    "OptionStrikes",
                    "OrdersHistory",
                    "PnlBreakdown",
                    "ScannerParams",
                    "ScannerResult",
                    "TransactionHistory",
                    "TransferHistory",
                ),
                ".market.requests": (
                    "CurrencyRateInput",
                    "DepthInput",
                    "NewsArticleInput",
                    "NewsListInput",
                    "OptionChainInput",
                    "OptionStrikesInput",
                    "OrdersHistoryInput",
                    "ScannerRunInput",
                    "ScheduleInput",
                    "TransactionsInput",
                    "UnderlyingInput",
                ),
                ".models": (
                    "AccountSummary",
                    "BrokerAccount",
                    "BrokerSessionStatus",
                    "ContractCandidate",
                    "Execution",
                    "HealthStatus",
                    "HistoricalBars",
                    "MarketSnapshot",
                    "OrderRecord",
                    "PortfolioSnapshot",
                    "Position",
                    "SessionRequirements",
                ),
                ".orders.models": (
                    "ApprovalRecord",
                    "KillSwitchState",
                    "LimitsStatus",
                    "OrderLifecycle",
                    "OrderPreview",
                    "PreviewDenial",
                    "PreviewEntry",
                    "ReconcileReport",
                ),
                ".orders.requests": (
                    "ApprovalCreateInput",
                    "ApprovalListInput",
                    "ApprovalRevokeInput",
                    "BracketPreviewInput",
                    "KillSwitchChangeInput",
                    "ModifyPreviewInput",
                    "OrderCancelInput",
                    "OrderPreviewInput",
                    "OrderSubmitInput",
                    "PreviewDenyInput",
                    "PreviewListInput",
                ),
                ".requests": (
                    "AccountInput",
                    "AuditExportInput",
                    "AuditTailInput",
                    "AuditVerifyInput",
                    "BarsInput",
                    "ContractInput",
                    "ContractQueryInput",
                    "ExecutionsInput",
                    "OrderLookupInput",
                    "PositionsInput",
                ),
            }
        )
    )


@dataclass(frozen=True)
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
    input_model: _ModelField[OperationInput] = _ModelField()
    output_model: _ModelField[BaseModel] = _ModelField()
    many: bool = False
    """True when the operation returns a list of `output_model`."""
    read_only: bool = True
    destructive: bool = False
    idempotent: bool = True
    open_world: bool = True
    """True when the operation reaches the broker (outside this process)."""
    event_type: str = "tool_completed"
    """Audit event type on success."""
    operator_only: bool = False
    """True when only the operator at the CLI may call it, whatever scopes an agent holds: it is then left
    out of every agent's `tools/list`, `mcp serve --describe` and `ibkr_capabilities`."""

    @property
    def cli_command(self) -> str:
        """The command as typed, e.g. `accounts list`."""
        return " ".join(self.cli)


_READS: Final = (
    Operation(
        name="capabilities",
        tool="ibkr_capabilities",
        cli=("capabilities",),
        scope=Scope.HEALTH_READ,
        title="Capabilities",
        description=(
            "What this caller may do right now: granted scopes, callable and withheld tools, the backend "
            "(simulator or real broker), whether any write is possible, live-trading and kill-switch state. "
            "Call it first to plan without trial and error."
        ),
        input_model=NoInput,
        output_model=Capabilities,
        open_world=False,
    ),
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
        input_model=PositionsInput,
        output_model=PortfolioSnapshot,
    ),
    Operation(
        name="list_positions",
        tool="ibkr_positions_list",
        cli=("positions", "list"),
        scope=Scope.POSITIONS_READ,
        title="List positions",
        description="Positions of one account, as the broker reports them now.",
        input_model=PositionsInput,
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

    # defer_build: the schema is built on first use, not when the registry is imported (CLI start-up)
    model_config = ConfigDict(defer_build=True, frozen=True, extra="forbid")

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
    Operation(
        name="backup_state",
        tool="ibkr_state_backup",
        cli=("state", "backup"),
        scope=Scope.STATE_BACKUP,
        title="Back up state",
        description="Write a consistent copy of the SQLite state database to a new file while servers keep "
        "running, its audit chain verified with the configured key; restore it with `state import`. Only the "
        "operator at the CLI may.",
        input_model=StateBackupInput,
        output_model=StateBackup,
        read_only=False,  # it writes a file, though it changes no state
        idempotent=False,
        open_world=False,
        operator_only=True,
    ),
    Operation(
        name="import_state",
        tool="ibkr_state_import",
        cli=("state", "import"),
        scope=Scope.STATE_IMPORT,
        title="Import state",
        description="Copy a single host's SQLite state file (audit chain, verified with the configured key, and "
        "order workflow state) into the configured state database, which must be new. Approvals still unused in "
        "the copy are revoked and the live kill switch is left closed. Only the operator at the CLI may.",
        input_model=StateImportInput,
        output_model=StateImport,
        read_only=False,
        idempotent=False,
        open_world=False,
        event_type="state_imported",
        operator_only=True,
    ),
)

_ORDERS: Final = (
    Operation(
        name="preview_order",
        tool="ibkr_order_preview",
        cli=("orders", "preview"),
        scope=Scope.ORDERS_PREVIEW,
        title="Preview an order",
        description="Resolve the contract, run the risk policy and the broker's what-if, and keep the exact order "
        "for approval; nothing is placed. Returns the preview id, costs, margin impact, warnings and expiry.",
        input_model=OrderPreviewInput,
        output_model=OrderPreview,
        read_only=False,
        idempotent=False,
        event_type="order_preview_created",
    ),
    Operation(
        name="create_approval",
        tool="ibkr_approvals_create",
        cli=("approvals", "create"),
        scope=Scope.APPROVALS_CREATE,
        title="Approve a preview",
        description="Approve one unexpired preview for its account: single use, expiring; an agent may not approve "
        "a preview it created itself.",
        input_model=ApprovalCreateInput,
        output_model=ApprovalRecord,
        read_only=False,
        idempotent=False,
        open_world=False,
        event_type="approval_created",
    ),
    Operation(
        name="list_approvals",
        tool="ibkr_approvals_list",
        cli=("approvals", "list"),
        scope=Scope.APPROVALS_READ,
        title="List approvals",
        description="Approvals, newest first, with their status (approved, consumed, revoked, expired).",
        input_model=ApprovalListInput,
        output_model=ApprovalRecord,
        many=True,
        open_world=False,
    ),
    Operation(
        name="revoke_approval",
        tool="ibkr_approvals_revoke",
        cli=("approvals", "revoke"),
        scope=Scope.APPROVALS_CREATE,
        title="Revoke an approval",
        description="Revoke an unused approval so it can never be submitted.",
        input_model=ApprovalRevokeInput,
        output_model=ApprovalRecord,
        read_only=False,
        open_world=False,
        event_type="approval_revoked",
    ),
    Operation(
        name="list_previews",
        tool="ibkr_previews_list",
        cli=("previews", "list"),
        scope=Scope.APPROVALS_READ,
        title="List previews",
        description="Previews, newest first, with their status (pending, approved, consumed, revoked, denied, "
        "expired); pending ones wait for a person's decision.",
        input_model=PreviewListInput,
        output_model=PreviewEntry,
        many=True,
        open_world=False,
    ),
    Operation(
        name="deny_preview",
        tool="ibkr_previews_deny",
        cli=("previews", "deny"),
        scope=Scope.APPROVALS_CREATE,
        title="Deny a preview",
        description="Refuse one preview for good: it can never be approved, and its unused approvals are revoked.",
        input_model=PreviewDenyInput,
        output_model=PreviewDenial,
        read_only=False,
        open_world=False,
        event_type="preview_denied",
    ),
    Operation(
        name="submit_paper_order",
        tool="ibkr_paper_order_submit",
        cli=("orders", "submit"),
        scope=Scope.ORDERS_PAPER_SUBMIT,
        title="Submit a paper order",
        description="Send the approved preview's order to a paper account (the broker's isPaper); the idempotency "
        "key makes a retry return the first result instead of sending again.",
        input_model=OrderSubmitInput,
        output_model=OrderLifecycle,
        read_only=False,
        destructive=True,
        event_type="paper_order_submitted",
    ),
    Operation(
        name="cancel_paper_order",
        tool="ibkr_paper_order_cancel",
        cli=("orders", "cancel"),
        scope=Scope.ORDERS_PAPER_CANCEL,
        title="Cancel a paper order",
        description="Cancel an order of a paper account, keyed by an idempotency key.",
        input_model=OrderCancelInput,
        output_model=OrderLifecycle,
        read_only=False,
        destructive=True,
        event_type="paper_order_cancelled",
    ),
    Operation(
        name="submit_live_order",
        tool="ibkr_live_order_submit",
        cli=("orders", "live-submit"),
        scope=Scope.ORDERS_LIVE_SUBMIT,
        title="Submit a live order",
        description="Send the approved preview's order through every live gate (enablement, allowlist, "
        "acknowledgement, policy, approval, risk limits, kill switch) to the configured live writer.",
        input_model=OrderSubmitInput,
        output_model=OrderLifecycle,
        read_only=False,
        destructive=True,
        event_type="live_order_lifecycle_changed",
    ),
    Operation(
        name="cancel_live_order",
        tool="ibkr_live_order_cancel",
        cli=("orders", "live-cancel"),
        scope=Scope.ORDERS_LIVE_CANCEL,
        title="Cancel a live order",
        description="Cancel a live order; the kill switch never blocks a cancel.",
        input_model=OrderCancelInput,
        output_model=OrderLifecycle,
        read_only=False,
        destructive=True,
        event_type="live_order_lifecycle_changed",
    ),
    Operation(
        name="reconcile_orders",
        tool="ibkr_orders_reconcile",
        cli=("orders", "reconcile"),
        scope=Scope.ORDERS_READ,
        title="Reconcile orders",
        description="Settle writes whose outcome is unknown by their client order id, and poll tracked live "
        "orders until they finish; every change is audited.",
        input_model=NoInput,
        output_model=ReconcileReport,
    ),
    Operation(
        name="kill_switch_status",
        tool="ibkr_kill_switch_status",
        cli=("kill-switch", "status"),
        scope=Scope.RISK_READ,
        title="Kill switch status",
        description="Whether the live kill switch is open or closed, who changed it, when and why.",
        input_model=NoInput,
        output_model=KillSwitchState,
        open_world=False,
    ),
    Operation(
        name="open_kill_switch",
        tool="ibkr_kill_switch_open",
        cli=("kill-switch", "open"),
        scope=Scope.KILLSWITCH_MANAGE,
        title="Open the kill switch",
        description="Allow new live orders again; only the operator at the CLI may.",
        input_model=KillSwitchChangeInput,
        output_model=KillSwitchState,
        read_only=False,
        open_world=False,
        event_type="kill_switch_changed",
        operator_only=True,
    ),
    Operation(
        name="close_kill_switch",
        tool="ibkr_kill_switch_close",
        cli=("kill-switch", "close"),
        scope=Scope.KILLSWITCH_CLOSE,
        title="Close the kill switch",
        description="Stop every new live order now, and cancel the working live orders the gateway tracks "
        "(configurable); any write tier may.",
        input_model=KillSwitchChangeInput,
        output_model=KillSwitchState,
        read_only=False,
        event_type="kill_switch_changed",
    ),
    Operation(
        name="limits_status",
        tool="ibkr_limits_status",
        cli=("limits", "status"),
        scope=Scope.RISK_READ,
        title="Live limits status",
        description="Used and remaining budgets of the live risk policy for one account (window, trading day).",
        input_model=AccountInput,
        output_model=LimitsStatus,
        open_world=False,
    ),
)

_BRACKETS_AND_MODIFY: Final = (
    Operation(
        name="preview_bracket_order",
        tool="ibkr_bracket_order_preview",
        cli=("orders", "bracket-preview"),
        scope=Scope.ORDERS_PREVIEW,
        title="Preview a bracket",
        description="A limit entry with a take-profit limit and a stop-loss stop on the other side, one cancelling "
        "the other, checked leg by leg and kept as one ticket with one fingerprint for one approval; nothing is "
        "placed. The estimated cost is the worst leg's.",
        input_model=BracketPreviewInput,
        output_model=OrderPreview,
        read_only=False,
        idempotent=False,
        event_type="order_preview_created",
    ),
    Operation(
        name="submit_paper_bracket_order",
        tool="ibkr_paper_bracket_order_submit",
        cli=("orders", "bracket-submit"),
        scope=Scope.ORDERS_PAPER_SUBMIT,
        title="Submit a paper bracket",
        description="Send an approved bracket preview to a paper account: all three legs in one placement, the "
        "exits linked to the entry; the idempotency key makes a retry return the first result.",
        input_model=OrderSubmitInput,
        output_model=OrderLifecycle,
        read_only=False,
        destructive=True,
        event_type="paper_order_submitted",
    ),
    Operation(
        name="submit_live_bracket_order",
        tool="ibkr_live_bracket_order_submit",
        cli=("orders", "live-bracket-submit"),
        scope=Scope.ORDERS_LIVE_SUBMIT,
        title="Submit a live bracket",
        description="Send an approved bracket preview through every live gate; each leg passes the live risk "
        "policy and the budgets count the worst leg.",
        input_model=OrderSubmitInput,
        output_model=OrderLifecycle,
        read_only=False,
        destructive=True,
        event_type="live_order_lifecycle_changed",
    ),
    Operation(
        name="cancel_paper_bracket_order",
        tool="ibkr_paper_bracket_order_cancel",
        cli=("orders", "bracket-cancel"),
        scope=Scope.ORDERS_PAPER_CANCEL,
        title="Cancel a paper bracket",
        description="Cancel every leg of a paper bracket this gateway placed, named by its parent's broker order id.",
        input_model=OrderCancelInput,
        output_model=OrderLifecycle,
        read_only=False,
        destructive=True,
        event_type="paper_order_cancelled",
    ),
    Operation(
        name="cancel_live_bracket_order",
        tool="ibkr_live_bracket_order_cancel",
        cli=("orders", "live-bracket-cancel"),
        scope=Scope.ORDERS_LIVE_CANCEL,
        title="Cancel a live bracket",
        description="Cancel every leg of a live bracket this gateway placed; the kill switch never blocks a cancel.",
        input_model=OrderCancelInput,
        output_model=OrderLifecycle,
        read_only=False,
        destructive=True,
        event_type="live_order_lifecycle_changed",
    ),
    Operation(
        name="preview_order_modify",
        tool="ibkr_order_modify_preview",
        cli=("orders", "modify-preview"),
        scope=Scope.ORDERS_PREVIEW,
        title="Preview a modification",
        description="Read one working order of the account from the broker, apply a new price, quantity or time "
        "in force, and keep the changed order for approval; nothing is sent.",
        input_model=ModifyPreviewInput,
        output_model=OrderPreview,
        read_only=False,
        idempotent=False,
        event_type="order_preview_created",
    ),
    Operation(
        name="modify_paper_order",
        tool="ibkr_paper_order_modify",
        cli=("orders", "modify"),
        scope=Scope.ORDERS_PAPER_MODIFY,
        title="Modify a paper order",
        description="Send an approved modification of a working paper order; refused once the order has finished. "
        "The idempotency key makes a retry return the first result.",
        input_model=OrderSubmitInput,
        output_model=OrderLifecycle,
        read_only=False,
        destructive=True,
        event_type="paper_order_modified",
    ),
    Operation(
        name="modify_live_order",
        tool="ibkr_live_order_modify",
        cli=("orders", "live-modify"),
        scope=Scope.ORDERS_LIVE_MODIFY,
        title="Modify a live order",
        description="Send an approved modification of a working live order through every live gate; the changed "
        "order passes the live risk policy.",
        input_model=OrderSubmitInput,
        output_model=OrderLifecycle,
        read_only=False,
        destructive=True,
        event_type="live_order_lifecycle_changed",
    ),
)

_MARKET: Final = (
    Operation(
        name="renew_session",
        tool="ibkr_session_renew",
        cli=("session", "renew"),
        scope=Scope.HEALTH_READ,
        title="Renew the broker session",
        description="Re-open the brokerage session (CPAPI ssodh/init, taking it back from a competing login) "
        "and report its state; changes no account or order. Only the operator at the CLI may.",
        input_model=NoInput,
        output_model=BrokerSessionStatus,
        event_type="backend_session_renewed",
        operator_only=True,
    ),
    Operation(
        name="account_metadata",
        tool="ibkr_account_metadata",
        cli=("account", "metadata"),
        scope=Scope.ACCOUNTS_READ,
        title="Account metadata",
        description="Mode (paper or live), type, base currency and tradable security types of one account.",
        input_model=AccountInput,
        output_model=AccountMetadata,
    ),
    Operation(
        name="pnl_daily",
        tool="ibkr_pnl_daily",
        cli=("pnl", "daily"),
        scope=Scope.PORTFOLIO_READ,
        title="Daily P&L",
        description="Today's P&L, unrealised P&L, net liquidation and market value of one account.",
        input_model=AccountInput,
        output_model=DailyPnl,
    ),
    Operation(
        name="pnl_breakdown",
        tool="ibkr_pnl_realtime",
        cli=("pnl", "breakdown"),
        scope=Scope.PORTFOLIO_READ,
        title="P&L breakdown",
        description="Daily, unrealised and realised P&L of one account, with realised and unrealised per currency.",
        input_model=AccountInput,
        output_model=PnlBreakdown,
    ),
    Operation(
        name="option_expirations",
        tool="ibkr_option_expirations",
        cli=("options", "expirations"),
        scope=Scope.OPTIONS_READ,
        title="Option expirations",
        description="Option expiry months and exchanges of one underlying symbol.",
        input_model=UnderlyingInput,
        output_model=OptionExpirations,
    ),
    Operation(
        name="option_strikes",
        tool="ibkr_option_strikes",
        cli=("options", "strikes"),
        scope=Scope.OPTIONS_READ,
        title="Option strikes",
        description="Call and put strikes of one underlying (conid) for one expiry month.",
        input_model=OptionStrikesInput,
        output_model=OptionStrikes,
    ),
    Operation(
        name="options_chain",
        tool="ibkr_options_chain",
        cli=("options", "chain"),
        scope=Scope.OPTIONS_READ,
        title="Options chain",
        description="Options of one underlying for one month around the money, each with bid, ask, last, "
        "greeks and implied volatility.",
        input_model=OptionChainInput,
        output_model=OptionChain,
    ),
    Operation(
        name="option_greeks",
        tool="ibkr_option_greeks",
        cli=("options", "greeks"),
        scope=Scope.OPTIONS_READ,
        title="Option greeks",
        description="Delta, gamma, theta, vega and implied volatility of one option contract (conid).",
        input_model=ContractInput,
        output_model=OptionGreeks,
    ),
    Operation(
        name="scanner_params",
        tool="ibkr_scanner_params",
        cli=("scanner", "params"),
        scope=Scope.SCANNER_READ,
        title="Scanner parameters",
        description="Scan types, instruments, locations and filters a market scan accepts.",
        input_model=NoInput,
        output_model=ScannerParams,
    ),
    Operation(
        name="scanner_run",
        tool="ibkr_scanner_run",
        cli=("scanner", "run"),
        scope=Scope.SCANNER_READ,
        title="Run a market scan",
        description="Contracts a broker market scan returns (e.g. TOP_PERC_GAIN on STK.US.MAJOR), best first.",
        input_model=ScannerRunInput,
        output_model=ScannerResult,
    ),
    Operation(
        name="market_schedule",
        tool="ibkr_market_session",
        cli=("market", "schedule"),
        scope=Scope.CALENDAR_READ,
        title="Market schedule",
        description="Whether a symbol's exchange is open now, its current and next session, and its trading "
        "days about a month ahead.",
        input_model=ScheduleInput,
        output_model=MarketSchedule,
    ),
    Operation(
        name="market_holidays",
        tool="ibkr_market_holidays",
        cli=("market", "holidays"),
        scope=Scope.CALENDAR_READ,
        title="Market holidays",
        description="Weekdays without trading and early closes in the schedule the broker publishes for a "
        "symbol's exchange (about a month ahead).",
        input_model=ScheduleInput,
        output_model=MarketHolidays,
    ),
    Operation(
        name="currency_rate",
        tool="ibkr_currency_rate",
        cli=("fx", "rate"),
        scope=Scope.CURRENCY_READ,
        title="Currency rate",
        description="The broker's exchange rate from one currency to another.",
        input_model=CurrencyRateInput,
        output_model=CurrencyRate,
    ),
    Operation(
        name="orders_history",
        tool="ibkr_orders_history",
        cli=("orders", "history"),
        scope=Scope.ORDERS_READ,
        title="Orders history",
        description="Orders of one account the broker still keeps (current and recent sessions), filtered by "
        "status and time, newest first.",
        input_model=OrdersHistoryInput,
        output_model=OrdersHistory,
    ),
    Operation(
        name="transactions",
        tool="ibkr_transactions_list",
        cli=("transactions", "list"),
        scope=Scope.ORDERS_READ,
        title="Transactions",
        description="Portfolio Analyst transactions (trades, dividends, transfers) of one account in one "
        "contract over up to a year.",
        input_model=TransactionsInput,
        output_model=TransactionHistory,
    ),
    Operation(
        name="transfer_history",
        tool="ibkr_transfer_history",
        cli=("transfers", "history"),
        scope=Scope.TRANSFERS_READ,
        title="Transfer history",
        description="Cash transfers of one account; refused with BACKEND_UNSUPPORTED, as the Client Portal "
        "Web API offers none.",
        input_model=AccountInput,
        output_model=TransferHistory,
        open_world=False,
    ),
    Operation(
        name="market_depth",
        tool="ibkr_market_depth",
        cli=("market", "depth"),
        scope=Scope.MARKETDATA_DEPTH_READ,
        title="Market depth",
        description="The order book (bid and ask levels) of one contract, read once from the broker's "
        "depth stream; needs a depth market-data subscription.",
        input_model=DepthInput,
        output_model=MarketDepth,
    ),
    Operation(
        name="fundamentals",
        tool="ibkr_fundamentals_get",
        cli=("fundamentals", "get"),
        scope=Scope.FUNDAMENTALS_READ,
        title="Fundamentals",
        description="Market cap, P/E, EPS, dividend, 52-week range, average volume, industry and category of "
        "one stock (conid), from the broker's snapshot fields.",
        input_model=ContractInput,
        output_model=Fundamentals,
    ),
    Operation(
        name="news_list",
        tool="ibkr_news_list",
        cli=("news", "list"),
        scope=Scope.NEWS_READ,
        title="News headlines",
        description="News headlines about a symbol; refused with BACKEND_UNSUPPORTED, as the Client Portal "
        "Web API offers no news.",
        input_model=NewsListInput,
        output_model=NewsList,
        open_world=False,
    ),
    Operation(
        name="news_article",
        tool="ibkr_news_article",
        cli=("news", "article"),
        scope=Scope.NEWS_READ,
        title="News article",
        description="One news article; refused with BACKEND_UNSUPPORTED, as the Client Portal Web API offers no news.",
        input_model=NewsArticleInput,
        output_model=NewsArticle,
        open_world=False,
    ),
)

OPERATIONS: Final[Mapping[str, Operation]] = {
    op.name: op for op in (*_READS, *_AUDIT, *_ORDERS, *_BRACKETS_AND_MODIFY, *_MARKET)
}
"""Every operation by Gateway method name."""

OPERATIONS_BY_TOOL: Final[Mapping[str, Operation]] = {op.tool: op for op in OPERATIONS.values()}
"""Every operation by MCP tool name."""


def operation(name: str) -> Operation:
    """The operation named `name` (method or tool name).

    Raises:
        KeyError: when no operation has that name.
    """
    return OPERATIONS.get(name) or OPERATIONS_BY_TOOL[name]
