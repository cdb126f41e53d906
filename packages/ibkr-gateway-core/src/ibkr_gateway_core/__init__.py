"""Core of ibkr-agent-gateway: models, config, errors, scopes, the operation registry, the audit log, the Gateway."""

from .audit import AuditEvent, AuditExport, AuditLog, AuditRecord, VerifyReport
from .backend import Backend
from .config import GatewayConfig
from .errors import ErrorCode, GatewayError
from .gateway import CallResult, Gateway
from .models import (
    AccountSummary,
    BrokerAccount,
    BrokerSessionStatus,
    CashBalance,
    ContractCandidate,
    Execution,
    HealthStatus,
    HistoricalBar,
    HistoricalBars,
    MarketSnapshot,
    Money,
    OrderRecord,
    PortfolioSnapshot,
    Position,
    SessionRequirements,
)
from .principal import Principal
from .registry import OPERATIONS, Operation
from .scopes import Scope

__all__ = [
    "AccountSummary",
    "AuditEvent",
    "AuditExport",
    "AuditLog",
    "AuditRecord",
    "Backend",
    "BrokerAccount",
    "BrokerSessionStatus",
    "CallResult",
    "CashBalance",
    "ContractCandidate",
    "ErrorCode",
    "Execution",
    "Gateway",
    "GatewayConfig",
    "GatewayError",
    "HealthStatus",
    "HistoricalBar",
    "HistoricalBars",
    "MarketSnapshot",
    "Money",
    "OPERATIONS",
    "Operation",
    "OrderRecord",
    "PortfolioSnapshot",
    "Position",
    "Principal",
    "Scope",
    "SessionRequirements",
    "VerifyReport",
]
