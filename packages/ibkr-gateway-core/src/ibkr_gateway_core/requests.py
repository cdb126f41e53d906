"""Inputs of gateway operations: one closed model per shape, validated before any broker call.

CLI flags and MCP tool arguments both become these models, so a bad argument gets the same code
everywhere. Money and quantities accept a JSON number or a decimal string.
"""

from __future__ import annotations

import re
from typing import Annotated, Final

from pydantic import AfterValidator, BeforeValidator, Field

from .audit.checkpoint import Checkpoint
from .input_base import NoInput as NoInput  # re-exported: every input model is importable from here
from .input_base import OperationInput as OperationInput
from .models import AccountId, AssetClass, ContractId, Currency


def _strip_numeric_string(value: object) -> object:
    """Accept `" 265598 "` as well as `265598`; refuse floats such as `265598.5`."""
    if isinstance(value, str):
        return value.strip()
    return value


class AccountInput(OperationInput):
    """An operation on one account."""

    account_id: AccountId = Field(description="IBKR account id, e.g. DU1234567.")


class PositionsInput(AccountInput):
    """A read of one account's positions, optionally past IBKR's positions cache."""

    fresh: bool = Field(
        default=False,
        description="Invalidate IBKR's positions cache first (one extra broker call); "
        "use after fills made outside this gateway.",
    )


class ContractQueryInput(OperationInput):
    """A contract search by symbol, with optional filters."""

    query: Annotated[str, Field(min_length=1, max_length=32, description="Symbol to search for, e.g. AAPL.")]
    asset_class: AssetClass | None = Field(default=None, description="Keep only this asset class.")
    currency: Currency | None = Field(default=None, description="Keep only contracts in this currency.")
    exchange: Annotated[str | None, Field(max_length=16)] = Field(default=None, description="Keep only this exchange.")


class ContractInput(OperationInput):
    """An operation on one contract."""

    contract_id: Annotated[ContractId, BeforeValidator(_strip_numeric_string)] = Field(
        description="IBKR contract id (conid), e.g. 265598 for AAPL."
    )


_DURATION_UNITS: Final = {
    "s": "s",
    "sec": "s",
    "secs": "s",
    "second": "s",
    "seconds": "s",
    "min": "min",
    "mins": "min",
    "minute": "min",
    "minutes": "min",
    "h": "h",
    "hour": "h",
    "hours": "h",
    "d": "d",
    "day": "d",
    "days": "d",
    "w": "w",
    "week": "w",
    "weeks": "w",
    "m": "m",
    "month": "m",
    "months": "m",
    "y": "y",
    "year": "y",
    "years": "y",
}
_PERIOD_LIMITS: Final = {"min": 30, "h": 8, "d": 1000, "w": 792, "m": 182, "y": 15}
"""Largest count CPAPI accepts per period unit."""
_BAR_SIZES: Final = frozenset(
    {"1min", "2min", "3min", "5min", "10min", "15min", "30min", "1h", "2h", "3h", "4h", "8h", "1d", "1w", "1m"}
)
_SPAN = re.compile(r"^\s*(\d{1,4})\s*([A-Za-z]+)\s*$")


def _span(value: str, *, what: str) -> tuple[int, str]:
    match = _SPAN.match(value)
    if match is None:
        raise ValueError(f"{what} {value!r} is not like '1 D' or '5 mins'")
    count, unit = int(match.group(1)), match.group(2)
    # TWS spells months "M" and minutes "mins"; an upper-case single letter is the TWS form.
    key = unit.lower() if len(unit) > 1 else {"S": "s", "D": "d", "W": "w", "M": "m", "Y": "y"}.get(unit, unit)
    if key not in _DURATION_UNITS:
        raise ValueError(f"{what} {value!r} has an unknown unit {unit!r}")
    return count, _DURATION_UNITS[key]


def normalise_period(value: str) -> str:
    """`'1 D'`, `'2 weeks'`, `'1d'` → CPAPI period (`1d`, `2w`)."""
    count, unit = _span(value, what="duration")
    if unit == "s" or count < 1 or count > _PERIOD_LIMITS[unit]:
        raise ValueError(f"duration {value!r} is out of range")
    return f"{count}{unit}"


def normalise_bar(value: str) -> str:
    """`'5 mins'`, `'1 hour'`, `'1d'` → CPAPI bar size (`5min`, `1h`, `1d`)."""
    count, unit = _span(value, what="bar size")
    bar = f"{count}{unit}"
    if bar not in _BAR_SIZES:
        raise ValueError(f"bar size {value!r} is not one of {', '.join(sorted(_BAR_SIZES))}")
    return bar


class BarsInput(ContractInput):
    """Historical bars of one contract.

    The defaults go through the same normalisation as given values (`'1 hour'` becomes `1h`).
    """

    duration: Annotated[str, AfterValidator(normalise_period)] = Field(
        default="1 D", validate_default=True, description="How far back, e.g. '1 D', '2 W', '6 M', '1 Y'."
    )
    bar_size: Annotated[str, AfterValidator(normalise_bar)] = Field(
        default="1 hour", validate_default=True, description="Bar size, e.g. '5 mins', '1 hour', '1 day'."
    )
    outside_regular_hours: bool = Field(default=False, description="Include bars outside regular trading hours.")


class OrderLookupInput(AccountInput):
    """One order of one account."""

    broker_order_id: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$")] = Field(
        description="Broker order id, or the client order id (cOID) the order was placed with."
    )


class ExecutionsInput(AccountInput):
    """Fills of one account."""

    days: Annotated[int, Field(ge=1, le=7)] = Field(default=1, description="How many days back, 1 to 7.")


class AuditTailInput(OperationInput):
    """The newest audit events."""

    limit: Annotated[int, Field(ge=1, le=1000)] = Field(default=100, description="How many events, 1 to 1000.")


class AuditExportInput(OperationInput):
    """A redacted JSONL export of the newest audit events."""

    limit: Annotated[int, Field(ge=1, le=100_000)] = Field(default=500, description="How many events, 1 to 100000.")


class AuditVerifyInput(OperationInput):
    """A full verification of the audit chain, optionally against a signed checkpoint."""

    checkpoint: Checkpoint | None = Field(
        default=None, description="A signed checkpoint from `audit checkpoint`; detects truncation and rollback."
    )
