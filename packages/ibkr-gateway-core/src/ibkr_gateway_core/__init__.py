"""Core of ibkr-agent-gateway: models, config, errors, scopes, the operation registry, the audit log, the Gateway.

The names below load on first use (PEP 562), so importing one module of the package (`errors`,
`config`) does not import them all: the CLI starts without the audit, crypto and order modules.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

_MODULES = {
    "AuditEvent": "audit",
    "AuditExport": "audit",
    "AuditLog": "audit",
    "AuditRecord": "audit",
    "VerifyReport": "audit",
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
}
"""Public name → the module that defines it."""


def __getattr__(name: str) -> Any:
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
