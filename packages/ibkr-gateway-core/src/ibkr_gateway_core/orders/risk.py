"""Risk policies: the limits an order must stay within, defined in YAML (`risk_policies:`).

A policy is data; the checks that read it are pure functions in `gates.py`. Every limit is optional
(None: no limit) except the allow lists, whose defaults are narrow. The only policies not read from
YAML are the two built-in defaults below: a loose preview policy used when none is configured, and
the live policy of fake mode (the simulator), where no real money can move.
"""

# Field types are objects, not text (no `from __future__ import annotations`): pydantic would compile each
# from its text when the class is made, about 60,000 instructions a field at every start-up.
from decimal import Decimal
from typing import Annotated, Final, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from ..models import AssetClass, Currency, OrderType

PolicyId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
"""A policy id: letters, digits, `.`, `_`, `-`; at most 64 characters."""

ALL_ORDER_TYPES: Final[tuple[OrderType, ...]] = ("limit", "market", "stop", "stop_limit", "trailing_stop")

DEFAULT_MARKET_QUOTE_MAX_AGE_SECONDS: Final = 60.0
"""Oldest quote that may price a market or trailing order when the policy sets no `max_quote_age_seconds`."""


class RiskPolicy(BaseModel):
    """Limits one order (and, for live, one account's trading day) must stay within."""

    model_config = ConfigDict(defer_build=True, extra="forbid", frozen=True)

    policy_id: PolicyId
    """Named by `orders.preview_policy_id` or `live_trading.risk_policy_id`."""
    currency: Currency = "USD"
    """Currency of `max_notional` and `max_notional_per_day`; orders in another currency are refused
    whenever a notional limit is set."""
    max_quantity: Annotated[Decimal, Field(gt=0)] | None = None
    """Largest quantity of one order (shares, contracts)."""
    max_notional: Annotated[Decimal, Field(gt=0)] | None = None
    """Largest value of one order: price basis × quantity (market orders priced from a fresh quote)."""
    allowed_symbols: list[str] | None = None
    """Symbols that may be traded (upper case); None allows every symbol, an empty list none."""
    allowed_asset_classes: list[AssetClass] = Field(default_factory=lambda: ["stock", "etf"])
    """Asset classes that may be traded."""
    allowed_order_types: list[OrderType] = Field(default_factory=lambda: list(ALL_ORDER_TYPES))
    """Order types that may be used."""
    allow_fractional: bool = False
    """Whether quantities with a fractional part are allowed."""
    max_price_deviation_bps: Annotated[Decimal, Field(gt=0)] | None = None
    """Price collar: largest distance of the order's price from the reference (mid, else last), in basis points."""
    price_collar: Literal["both", "marketable"] = "both"
    """`both`: the collar bounds the price on either side of the reference; `marketable`: only how far a limit
    goes through the market (a buy above, a sell below the reference), so a resting order far away is allowed."""
    slippage_bps: Annotated[Decimal, Field(ge=0, le=10_000)] = Decimal(50)
    """Margin added to the quote when an order is counted at the market (market, stop, trailing, a sell limit
    below the bid), in basis points."""
    max_quote_age_seconds: Annotated[float, Field(gt=0)] | None = None
    """Oldest quote the collar and market pricing may use."""
    max_orders_per_window: Annotated[int, Field(ge=1)] | None = None
    """Live only: most orders per account within `window_seconds`."""
    window_seconds: Annotated[int, Field(ge=1, le=86_400)] = 60
    max_orders_per_day: Annotated[int, Field(ge=1)] | None = None
    """Live only: most orders per account per trading day (resets at midnight, `live_trading.trading_day_timezone`)."""
    max_notional_per_day: Annotated[Decimal, Field(gt=0)] | None = None
    """Live only: most notional per account per trading day, in `currency`."""


BUILTIN_COLLAR_BPS: Final = Decimal(1_000)
"""The built-in policies' price collar: a limit at most 10% through the market."""

DEFAULT_PREVIEW_POLICY: Final = RiskPolicy(
    policy_id="builtin-preview",
    max_quantity=Decimal(10_000),
    max_notional=Decimal(1_000_000),
    max_price_deviation_bps=BUILTIN_COLLAR_BPS,
    price_collar="marketable",
)
"""Used for previews (and paper submits) when `orders.preview_policy_id` names no policy: stocks and ETFs,
whole shares, at most 10,000 shares and 1,000,000 USD per order counted at the worst-case fill, and a
limit at most 10% through the market."""

FAKE_LIVE_POLICY: Final = RiskPolicy(
    policy_id="builtin-simulator-live",
    max_quantity=Decimal(100),
    max_notional=Decimal(25_000),
    max_orders_per_window=30,
    window_seconds=60,
    max_orders_per_day=500,
    max_notional_per_day=Decimal(250_000),
    max_price_deviation_bps=BUILTIN_COLLAR_BPS,
    price_collar="marketable",
)
"""Fake mode only (the simulator, no real money): the live policy when the config names none."""


class LiveUsage(NamedTuple):
    """What one account has already used of a live policy's budgets.

    A named tuple, not a dataclass: a dataclass compiles its generated methods at import (start-up).
    """

    orders_in_window: int = 0
    orders_today: int = 0
    notional_today: Decimal = Decimal(0)
    """In the policy's currency."""
