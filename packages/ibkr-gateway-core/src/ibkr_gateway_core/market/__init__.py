"""Trading-desk market reads: P&L, options, scanner, calendar, FX, depth, fundamentals.

`models` and `requests` are the operations' outputs and inputs; `backend` is what a backend may offer
beyond `Backend`; `desk` serves the reads through the gateway's door.
The names below load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

if TYPE_CHECKING:
    from .backend import MarketBackend
    from .desk import MarketDesk

__all__ = [
    "MarketBackend",
    "MarketDesk",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "MarketBackend": "backend",
        "MarketDesk": "desk",
    },
)
