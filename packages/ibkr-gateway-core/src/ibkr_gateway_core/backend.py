"""The seam between the Gateway and a broker: the `Backend` Protocol and how one is found.

Core never imports a backend implementation. `ibkr-gateway-cpapi` registers factories under the
`ibkr_gateway.backends` entry-point group, one per `broker.backend` value, and the Gateway loads the
one the config names, lazily, on the first broker call. A name is looked up first among the entry
points of `ibkr-gateway-cpapi` itself (one metadata file), then among every installed distribution's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from importlib.metadata import EntryPoint, PackageNotFoundError, distribution, entry_points
from typing import TYPE_CHECKING, Final, Protocol

from .errors import ErrorCode, GatewayError
from .models import (
    AccountSummary,
    BrokerAccount,
    BrokerSessionStatus,
    CashBalance,
    ContractCandidate,
    Execution,
    HistoricalBars,
    MarketSnapshot,
    OrderRecord,
    Position,
)

if TYPE_CHECKING:
    from .config import GatewayConfig
    from .orders.tickets import OrderTicket, OrderWriter, WhatIf

BACKEND_ENTRY_POINT_GROUP: Final = "ibkr_gateway.backends"


class Backend(Protocol):
    """Reads from one broker. Every method raises `GatewayError` with a broker or input code on failure."""

    name: str
    """`fake` or `client_portal_gateway`; shown in health and session status."""

    async def session_status(self) -> BrokerSessionStatus:
        """Brokerage-session state; never raises for an unauthenticated session, reports it."""
        ...

    async def keepalive(self) -> BrokerSessionStatus:
        """Tickle the session so it does not expire."""
        ...

    async def list_accounts(self) -> list[BrokerAccount]:
        """Accounts visible in the session, with the broker's paper/live signal."""
        ...

    async def account_summary(self, account_id: str) -> AccountSummary:
        """Balances and margin of one account."""
        ...

    async def cash_balances(self, account_id: str) -> list[CashBalance]:
        """Cash per currency (the ledger), without the synthetic `BASE` row."""
        ...

    async def positions(self, account_id: str, *, fresh: bool = False) -> list[Position]:
        """Every position of one account (all pages); `fresh` invalidates the broker's positions cache first."""
        ...

    async def search_contracts(self, symbol: str) -> list[ContractCandidate]:
        """Candidates for a symbol; `is_unique_match` is decided by the Gateway, not here."""
        ...

    async def contract(self, contract_id: int) -> ContractCandidate:
        """Details of one contract; `INPUT_UNKNOWN_CONTRACT` when the broker does not know it."""
        ...

    async def market_snapshot(self, contract_id: int) -> MarketSnapshot:
        """A quote with prices (the CPAPI pre-flight call is handled inside)."""
        ...

    async def historical_bars(
        self, contract_id: int, *, period: str, bar: str, outside_regular_hours: bool
    ) -> HistoricalBars:
        """Bars; `period` and `bar` use CPAPI spellings (`1d`, `5min`)."""
        ...

    async def live_orders(self, account_id: str) -> list[OrderRecord]:
        """Working orders and those finished in this session."""
        ...

    async def order_status(self, account_id: str, broker_order_id: str) -> OrderRecord:
        """One order by broker id; `INPUT_UNKNOWN_ORDER` when the broker does not know it."""
        ...

    async def executions(self, account_id: str, days: int) -> list[Execution]:
        """Fills of the last `days` days (1 to 7)."""
        ...

    async def what_if(self, ticket: OrderTicket) -> WhatIf:
        """The broker's commission and margin estimate for a ticket, placing nothing."""
        ...

    def order_writer(self) -> OrderWriter:
        """The writer that places orders through this backend's broker session (`client-portal`)."""
        ...

    async def aclose(self) -> None:
        """Release connections this backend opened."""
        ...


BackendFactory = Callable[["GatewayConfig"], Backend]
"""What an entry point in `ibkr_gateway.backends` must be."""


def load_backend_factory(name: str) -> BackendFactory:
    """The factory registered for `name`.

    Raises:
        GatewayError: `CONFIG_BACKEND_NOT_INSTALLED` when no installed distribution provides it.
    """
    for entry_point in _backend_entry_points():
        if entry_point.name == name:
            factory: BackendFactory = entry_point.load()
            return factory
    raise GatewayError(
        ErrorCode.CONFIG_BACKEND_NOT_INSTALLED,
        f"No backend named {name!r} is installed.",
    )


BUILT_IN_BACKENDS_DISTRIBUTION: Final = "ibkr-gateway-cpapi"
"""The distribution that registers `fake`, `client_portal_gateway` and `cpapi_oauth`."""


def _backend_entry_points() -> Iterator[EntryPoint]:
    """The built-in backends first, read from their own distribution's metadata; then every distribution's.

    Finding `fake` this way reads one small file instead of the entry points of every installed
    distribution (a CLI start-up cost), and a third-party package cannot take a built-in name.
    """
    try:
        yield from distribution(BUILT_IN_BACKENDS_DISTRIBUTION).entry_points.select(group=BACKEND_ENTRY_POINT_GROUP)
    except PackageNotFoundError:
        pass
    yield from entry_points(group=BACKEND_ENTRY_POINT_GROUP)
