"""CPAPI's market-data and contract answers as loose models (`_wire` re-exports them, loaded on first use)."""

from __future__ import annotations

from typing import Final

from pydantic import Field, TypeAdapter

from ._wire import _DEFERRED, WireModel, WireNumber, _parse_list  # pyright: ignore[reportPrivateUsage]


class WireSection(WireModel):
    """One entry of `sections` in a secdef search result."""

    sec_type: str | None = Field(default=None, alias="secType")


class WireSearchResult(WireModel):
    """One element of `/iserver/secdef/search`; `conid` arrives as a string here."""

    conid: int | str
    symbol: str | None = None
    company_name: str | None = Field(default=None, alias="companyName")
    company_header: str | None = Field(default=None, alias="companyHeader")
    description: str | None = None
    """The listing exchange, e.g. `NASDAQ`."""
    sections: list[WireSection] = Field(default_factory=list[WireSection])


class WireContractInfo(WireModel):
    """`/iserver/contract/{conid}/info` (snake case)."""

    con_id: int | str
    symbol: str | None = None
    company_name: str | None = None
    instrument_type: str | None = None
    exchange: str | None = None
    listing_exchange: str | None = None
    currency: str | None = None
    local_symbol: str | None = None
    category: str | None = None
    industry: str | None = None


class WireSnapshotRow(WireModel):
    """One element of `/iserver/marketdata/snapshot`; field codes are the JSON keys."""

    conid: int | str
    updated_ms: int | None = Field(default=None, alias="_updated")
    last: WireNumber | None = Field(default=None, alias="31")
    bid: WireNumber | None = Field(default=None, alias="84")
    ask_size: WireNumber | None = Field(default=None, alias="85")
    ask: WireNumber | None = Field(default=None, alias="86")
    volume_formatted: WireNumber | None = Field(default=None, alias="87")
    bid_size: WireNumber | None = Field(default=None, alias="88")
    symbol: str | None = Field(default=None, alias="55")
    availability: str | None = Field(default=None, alias="6509")
    last_size: WireNumber | None = Field(default=None, alias="7059")
    volume: WireNumber | None = Field(default=None, alias="7762")

    @property
    def has_prices(self) -> bool:
        """False for the pre-flight answer, which carries only `conid` and `conidEx`."""
        return any(value is not None for value in (self.last, self.bid, self.ask))


class WireBar(WireModel):
    """One bar of `/iserver/marketdata/history`; `t` is milliseconds."""

    o: WireNumber
    h: WireNumber
    low: WireNumber = Field(alias="l")
    c: WireNumber
    v: WireNumber = 0
    t: int


class WireHistory(WireModel):
    """`/iserver/marketdata/history`."""

    symbol: str | None = None
    text: str | None = None
    price_factor: WireNumber | None = Field(default=None, alias="priceFactor")
    data: list[WireBar] = Field(default_factory=list[WireBar])


_SEARCH: Final = TypeAdapter(list[WireSearchResult], config=_DEFERRED)
_SNAPSHOT: Final = TypeAdapter(list[WireSnapshotRow], config=_DEFERRED)


def parse_search(data: object) -> list[WireSearchResult]:
    """Validate a secdef search answer."""
    return _parse_list(_SEARCH, data, "contract search")


def parse_snapshot(data: object) -> list[WireSnapshotRow]:
    """Validate a market-data snapshot answer."""
    return _parse_list(_SNAPSHOT, data, "market snapshot")
