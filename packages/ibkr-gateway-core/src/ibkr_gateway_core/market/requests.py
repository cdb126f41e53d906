"""Inputs of the trading-desk reads (options, scanner, calendar, FX, history, depth, news)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field

from ..models import AccountId, ContractId, Currency
from ..requests import AccountInput, ContractInput, OperationInput

_SYMBOL = r"^[A-Za-z0-9 .\-]{1,32}$"
_MONTH = r"^(JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|OCT|NOV|DEC)[0-9]{2}$"
_CODE = r"^[A-Za-z0-9_.\-]{1,64}$"


def _upper(value: object) -> object:
    return value.strip().upper() if isinstance(value, str) else value


Symbol = Annotated[str, BeforeValidator(_upper), Field(pattern=_SYMBOL, description="Symbol, e.g. AAPL.")]
Month = Annotated[
    str, BeforeValidator(_upper), Field(pattern=_MONTH, description="Expiry month as CPAPI spells it, e.g. AUG24.")
]
UpperCurrency = Annotated[Currency, BeforeValidator(_upper)]


class UnderlyingInput(OperationInput):
    """An option underlying, by symbol (and conid when the symbol means several contracts)."""

    symbol: Symbol
    contract_id: ContractId | None = Field(
        default=None, description="Underlying conid, when the symbol matches several contracts."
    )


class OptionStrikesInput(OperationInput):
    """Strikes of one underlying for one month."""

    contract_id: ContractId = Field(description="Underlying conid, e.g. 265598 for AAPL.")
    month: Month


class OptionChainInput(UnderlyingInput):
    """A chain of one underlying for one month, around the money."""

    month: Month | None = Field(default=None, description="Expiry month, e.g. AUG24; default the nearest.")
    expiry: Annotated[str, Field(pattern=r"^[0-9]{8}$")] | None = Field(
        default=None, description="One expiry date within the month, YYYYMMDD; default every expiry of the month."
    )
    strike_count: Annotated[int, Field(ge=1, le=20)] = Field(
        default=6, description="Strikes nearest the underlying's price, 1 to 20 (default 6)."
    )
    right: Literal["call", "put", "both"] = Field(default="both", description="call, put or both.")


class ScannerRunInput(OperationInput):
    """A market scan."""

    scan_code: Annotated[str, BeforeValidator(_upper), Field(pattern=_CODE)] = Field(
        description="Scan type code from `scanner params`, e.g. TOP_PERC_GAIN."
    )
    instrument: Annotated[str, BeforeValidator(_upper), Field(pattern=_CODE)] = Field(
        default="STK", description="Instrument code, e.g. STK."
    )
    location: Annotated[str, BeforeValidator(_upper), Field(pattern=_CODE)] = Field(
        default="STK.US.MAJOR", description="Location code, e.g. STK.US.MAJOR."
    )
    limit: Annotated[int, Field(ge=1, le=50)] = Field(default=25, description="Rows, 1 to 50 (default 25).")


class ScheduleInput(OperationInput):
    """The trading schedule of one symbol's exchange."""

    symbol: Symbol
    exchange: Annotated[str, BeforeValidator(_upper), Field(pattern=_CODE)] | None = Field(
        default=None, description="Exchange, e.g. NASDAQ; default the primary listing."
    )


class CurrencyRateInput(OperationInput):
    """One exchange rate."""

    base: UpperCurrency = Field(description="Currency to convert from, e.g. EUR.")
    quote: UpperCurrency = Field(description="Currency to convert to, e.g. USD.")


OrderHistoryStatus = Literal["open", "filled", "cancelled", "inactive", "all"]


class OrdersHistoryInput(AccountInput):
    """Orders of one account, filtered."""

    status: OrderHistoryStatus = Field(default="all", description="open, filled, cancelled, inactive or all.")
    since: datetime | None = Field(default=None, description="Only orders updated at or after (ISO 8601).")
    until: datetime | None = Field(default=None, description="Only orders updated at or before (ISO 8601).")
    limit: Annotated[int, Field(ge=1, le=500)] = Field(default=100, description="At most this many, 1 to 500.")


class TransactionsInput(AccountInput):
    """Portfolio Analyst transactions of one account and contract."""

    contract_id: ContractId = Field(description="IBKR contract id (conid), e.g. 265598.")
    currency: UpperCurrency = Field(default="USD", description="Currency of the amounts (default USD).")
    days: Annotated[int, Field(ge=1, le=365)] = Field(default=90, description="Days back, 1 to 365 (default 90).")


class DepthInput(ContractInput):
    """The order book of one contract, for one account's market-data permissions."""

    account_id: AccountId = Field(description="IBKR account id whose market-data subscription is used.")
    exchange: Annotated[str, BeforeValidator(_upper), Field(pattern=_CODE)] | None = Field(
        default=None, description="Exchange of the book; default the broker's aggregate."
    )
    levels: Annotated[int, Field(ge=1, le=20)] = Field(default=5, description="Levels per side, 1 to 20 (default 5).")


class NewsListInput(OperationInput):
    """Headlines about one symbol."""

    symbol: Symbol


class NewsArticleInput(OperationInput):
    """One news article."""

    article_id: Annotated[str, Field(pattern=_CODE)] = Field(description="Article id from a headline.")


__all__ = [
    "AccountInput",
    "ContractInput",
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
]
