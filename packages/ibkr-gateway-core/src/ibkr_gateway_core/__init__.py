"""Core of ibkr-agent-gateway: models, config, errors, scopes, the operation registry, the audit log, the Gateway.

The top level holds the door (`gateway`, `registry`) and what every part uses (`errors`, `config`,
`principal`, `scopes`, `models`, `requests`, `capabilities`, `call_context`, `observability`,
`input_limits`, `redaction`, `backend`); the subpackages group the rest by concern: `audit` (the
hash-chained log, keys, checkpoints), `state` (the database seam, SQLite and PostgreSQL), `orders` (the
order path from ticket to broker) and `market` (the trading-desk market reads).

The names below load on first use (PEP 562), so importing one module of the package (`errors`,
`config`) does not import them all: the CLI starts without the audit, crypto and order modules.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._lazy import lazy_exports

if TYPE_CHECKING:
    from .audit.events import AuditEvent
    from .audit.log import AuditExport, AuditLog, AuditRecord, VerifyReport
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

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "AuditEvent": "audit.events",
        "AuditExport": "audit.log",
        "AuditLog": "audit.log",
        "AuditRecord": "audit.log",
        "VerifyReport": "audit.log",
        "Backend": "backend",
        "GatewayConfig": "config",
        "ErrorCode": "errors",
        "GatewayError": "errors",
        "CallResult": "gateway",
        "Gateway": "gateway",
        "AccountSummary": "models",
        "BrokerAccount": "models",
        "BrokerSessionStatus": "models",
        "CashBalance": "models",
        "ContractCandidate": "models",
        "Execution": "models",
        "HealthStatus": "models",
        "HistoricalBar": "models",
        "HistoricalBars": "models",
        "MarketSnapshot": "models",
        "Money": "models",
        "OrderRecord": "models",
        "PortfolioSnapshot": "models",
        "Position": "models",
        "SessionRequirements": "models",
        "Principal": "principal",
        "OPERATIONS": "registry",
        "Operation": "registry",
        "Scope": "scopes",
    },
)
