"""Market data as CPAPI renders it: snapshot rows with string values, and history bars.

Pure functions over a contract: quotes are the seed's, bars are a deterministic function of the
conid and the bar's position in time (no randomness), so equal requests get equal answers.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Final

from ._book import SimContract
from ._session import SimHttpError, error_body

DEFAULT_FIELDS: Final = ("31", "84", "86", "55", "6509")
"""Fields served when a request names none and none are remembered."""

MAX_BARS: Final = 1000
"""CPAPI's usual ceiling on bars per history answer."""

_BAR_SECONDS: Final = {"min": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "m": 30 * 86400, "y": 365 * 86400}
_BAR_SIZES: Final = frozenset(
    {"1min", "2min", "3min", "5min", "10min", "15min", "30min", "1h", "2h", "3h", "4h", "8h", "1d", "1w", "1m"}
)
_DURATION: Final = re.compile(r"^(\d{1,4})(min|h|d|w|m|y)$")


def _price(value: Decimal) -> str:
    return f"{value:,.2f}"


def _volume(value: int) -> str:
    if value >= 1_000_000:
        return f"{value / 1_000_000:.1f}M"
    if value >= 1_000:
        return f"{value / 1_000:.1f}K"
    return str(value)


def field_values(contract: SimContract) -> dict[str, str]:
    """Every snapshot field the simulator can fill for a contract, as CPAPI's strings."""
    values: dict[str, str] = {
        "55": contract.symbol,
        "6008": str(contract.conid),
        "6070": contract.sec_type,
        "6509": contract.availability,
        "7051": contract.company_name,
        "7221": contract.listing_exchange,
    }
    if contract.last is not None:
        values["31"] = ("C" if contract.last_is_prior_close else "") + _price(contract.last)
        values["7059"] = "100"
    if contract.bid is not None:
        values["84"] = _price(contract.bid)
    if contract.ask is not None:
        values["86"] = _price(contract.ask)
    if contract.bid_size is not None:
        values["88"] = f"{contract.bid_size:,}"
    if contract.ask_size is not None:
        values["85"] = f"{contract.ask_size:,}"
    if contract.volume is not None:
        values["87"] = _volume(contract.volume)
        values["7762"] = str(contract.volume)
    if contract.prior_close is not None:
        values["7741"] = _price(contract.prior_close)
        if contract.last is not None:
            change = contract.last - contract.prior_close
            values["82"] = f"{change:+.2f}"
            values["83"] = f"{change / contract.prior_close * 100:+.2f}"
    return values


def snapshot_row(contract: SimContract, fields: Sequence[str], *, server_id: str, updated_ms: int) -> dict[str, object]:
    """A warm snapshot row: the requested fields that have a value, plus CPAPI's bookkeeping keys."""
    available = field_values(contract)
    row: dict[str, object] = {code: available[code] for code in fields if code in available}
    row.update(
        {
            "6509": contract.availability,
            "6119": server_id,
            "server_id": server_id,
            "_updated": updated_ms,
            "conid": contract.conid,
            "conidEx": str(contract.conid),
        }
    )
    return row


def preflight_row(conid: int) -> dict[str, object]:
    """The first answer for a conid: the stream is being opened, no values yet."""
    return {"conid": conid, "conidEx": str(conid)}


def _seconds(spelling: str, *, what: str) -> int:
    match = _DURATION.match(spelling)
    if match is None or int(match.group(1)) == 0:
        raise SimHttpError(400, error_body(f"Invalid {what}: {spelling!r}"))
    return int(match.group(1)) * _BAR_SECONDS[match.group(2)]


def _close_at(contract: SimContract, index: int) -> Decimal:
    base = float(contract.last or contract.prior_close or Decimal(100))
    phase = contract.conid % 97
    wave = 0.015 * math.sin(0.37 * index + phase) + 0.005 * math.sin(1.7 * index + phase / 3)
    return Decimal(str(round(base * (1 + wave), 2)))


def history(
    contract: SimContract | None, *, period: str, bar: str, outside_rth: bool, now: datetime
) -> dict[str, object]:
    """`/iserver/marketdata/history` for a contract; `{"error": "No data."}` when there is none.

    Bars are continuous (no session calendar) and end at the last bar boundary before `now`;
    each bar's prices depend only on the conid and the bar's start time.

    Raises:
        SimHttpError: 400 for a bad bar or period, 500 "No data." for an unknown contract.
    """
    if bar not in _BAR_SIZES:
        raise SimHttpError(400, error_body(f"Invalid bar: {bar!r}"))
    bar_s = _seconds(bar, what="bar")
    period_s = _seconds(period, what="period")
    if contract is None or contract.last is None and contract.prior_close is None:
        raise SimHttpError(500, error_body("No data."))
    count = max(1, min(period_s // bar_s, MAX_BARS))
    last_index = int(now.timestamp()) // bar_s - 1
    bars: list[tuple[Decimal, Decimal, Decimal, Decimal, int, int]] = []
    for index in range(last_index - count + 1, last_index + 1):
        open_ = _close_at(contract, index - 1)
        close = _close_at(contract, index)
        spread = (abs(close - open_) / 2 + Decimal("0.05")).quantize(Decimal("0.01"))
        volume = 0 if contract.volume is None else 1000 + (contract.conid * 7 + index * 131) % 50_000
        high, low = max(open_, close) + spread, min(open_, close) - spread
        bars.append((open_, high, low, close, volume, index * bar_s * 1000))
    data: list[dict[str, object]] = [
        {"o": float(o), "c": float(c), "h": float(h), "l": float(lo), "v": float(v), "t": t}
        for o, h, lo, c, v, t in bars
    ]
    highest = max(bars, key=lambda item: item[1])
    lowest = min(bars, key=lambda item: item[2])
    first = datetime.fromtimestamp((last_index - count + 1) * bar_s, tz=UTC)
    return {
        "serverId": str(30000 + contract.conid % 1000),
        "symbol": contract.symbol,
        "text": contract.company_name,
        "priceFactor": 100,
        "startTime": first.strftime("%Y%m%d-%H:%M:%S"),
        "high": f"{int(highest[1] * 100)}/{highest[4]}/0",
        "low": f"{int(lowest[2] * 100)}/{lowest[4]}/0",
        "timePeriod": period,
        "barLength": bar_s,
        "mdAvailability": "S",
        "mktDataDelay": 0,
        "outsideRth": outside_rth,
        "volumeFactor": 1,
        "priceDisplayRule": 1,
        "priceDisplayValue": "2",
        "negativeCapable": False,
        "messageVersion": 2,
        "data": data,
        "points": len(data) - 1,
        "travelTime": 14,
    }
