"""Scopes: one per operation, no hierarchy, no wildcards.

A caller may run an operation only when its scope set holds the operation's scope. Tiers are
ready-made sets for configuration; the default for agents is the read-only tier.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from typing import Final

from .errors import ErrorCode, GatewayError


class Scope(StrEnum):
    """Every scope the gateway knows."""

    HEALTH_READ = "ibkr:health:read"
    ACCOUNTS_READ = "ibkr:accounts:read"
    PORTFOLIO_READ = "ibkr:portfolio:read"
    POSITIONS_READ = "ibkr:positions:read"
    MARKETDATA_READ = "ibkr:marketdata:read"
    ORDERS_READ = "ibkr:orders:read"
    AUDIT_READ = "ibkr:audit:read"
    AUDIT_EXPORT = "ibkr:audit:export"
    RISK_READ = "ibkr:risk:read"
    OPTIONS_READ = "ibkr:options:read"
    MARKETDATA_DEPTH_READ = "ibkr:marketdata:depth:read"
    SCANNER_READ = "ibkr:scanner:read"
    NEWS_READ = "ibkr:news:read"
    FUNDAMENTALS_READ = "ibkr:fundamentals:read"
    CALENDAR_READ = "ibkr:calendar:read"
    CURRENCY_READ = "ibkr:currency:read"
    TRANSFERS_READ = "ibkr:transfers:read"
    ORDERS_PREVIEW = "ibkr:orders:preview"
    ORDERS_PAPER_SUBMIT = "ibkr:orders:paper:submit"
    ORDERS_PAPER_CANCEL = "ibkr:orders:paper:cancel"
    ORDERS_PAPER_MODIFY = "ibkr:orders:paper:modify"
    APPROVALS_CREATE = "ibkr:approvals:create"
    ORDERS_LIVE_SUBMIT = "ibkr:orders:live:submit"
    ORDERS_LIVE_CANCEL = "ibkr:orders:live:cancel"
    ORDERS_LIVE_MODIFY = "ibkr:orders:live:modify"
    APPROVALS_READ = "ibkr:approvals:read"
    KILLSWITCH_CLOSE = "ibkr:killswitch:close"
    KILLSWITCH_MANAGE = "ibkr:killswitch:manage"
    STATE_IMPORT = "ibkr:state:import"
    STATE_BACKUP = "ibkr:state:backup"


READ_ONLY: Final = frozenset(
    {
        Scope.HEALTH_READ,
        Scope.ACCOUNTS_READ,
        Scope.PORTFOLIO_READ,
        Scope.POSITIONS_READ,
        Scope.MARKETDATA_READ,
        Scope.ORDERS_READ,
        Scope.AUDIT_READ,
        Scope.AUDIT_EXPORT,
        Scope.RISK_READ,
        Scope.OPTIONS_READ,
        Scope.MARKETDATA_DEPTH_READ,
        Scope.SCANNER_READ,
        Scope.NEWS_READ,
        Scope.FUNDAMENTALS_READ,
        Scope.CALENDAR_READ,
        Scope.CURRENCY_READ,
        Scope.TRANSFERS_READ,
        Scope.APPROVALS_READ,
    }
)
"""Reads only: the default for agents."""

WITH_PREVIEW: Final = READ_ONLY | {Scope.ORDERS_PREVIEW, Scope.KILLSWITCH_CLOSE}
"""Reads plus non-executable order previews; every write tier may also close the kill switch."""

WITH_PAPER: Final = WITH_PREVIEW | {
    Scope.ORDERS_PAPER_SUBMIT,
    Scope.ORDERS_PAPER_CANCEL,
    Scope.ORDERS_PAPER_MODIFY,
    Scope.APPROVALS_CREATE,
}
"""Everything short of live trading."""

WITH_LIVE: Final = frozenset(Scope)
"""Every scope; live writes still need every live gate."""

TIERS: Final = {"read_only": READ_ONLY, "with_preview": WITH_PREVIEW, "with_paper": WITH_PAPER, "with_live": WITH_LIVE}
"""Named tiers accepted wherever a scope list is."""


def parse_scopes(values: Iterable[str]) -> frozenset[Scope]:
    """Scopes from strings; a tier name expands to its set.

    Raises:
        GatewayError: `AUTH_SCOPE_UNKNOWN` for a string that is neither a scope nor a tier.
    """
    scopes: set[Scope] = set()
    for value in values:
        if value in TIERS:
            scopes |= TIERS[value]
            continue
        try:
            scopes.add(Scope(value))
        except ValueError:
            raise GatewayError(ErrorCode.AUTH_SCOPE_UNKNOWN, f"Unknown scope {value!r}.") from None
    return frozenset(scopes)
