"""The order path: tickets, previews, approvals, gates, the live and paper desks, the order store.

`tickets` holds the ticket and the `OrderWriter` seam; `models` and `requests` the operations'
outputs and inputs; `gates` and `risk` the pure checks; `store` the durable workflow state;
`desk` wires the previews, approvals, keyed writes, live and paper desks, brackets, modifications
and the kill switch behind the gateway's door; `reconciler` follows live orders in the background.
The names below load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

if TYPE_CHECKING:
    from .desk import OrderDesk
    from .models import (
        ApprovalRecord,
        KillSwitchState,
        LimitsStatus,
        OrderLifecycle,
        OrderPreview,
        PreviewDenial,
        PreviewEntry,
        ReconcileReport,
    )
    from .reconciler import BackgroundReconciler
    from .risk import LiveUsage, RiskPolicy
    from .store import LiveOrder, NewRecord, OrderStore
    from .tickets import (
        BrokerQuestion,
        CancelAck,
        OrderTicket,
        OrderType,
        OrderWriter,
        PlacedLeg,
        PlacedOrder,
        QuestionPolicy,
        TimeInForce,
        WhatIf,
    )

__all__ = [
    "ApprovalRecord",
    "BackgroundReconciler",
    "BrokerQuestion",
    "CancelAck",
    "KillSwitchState",
    "LimitsStatus",
    "LiveOrder",
    "LiveUsage",
    "NewRecord",
    "OrderDesk",
    "OrderLifecycle",
    "OrderPreview",
    "OrderStore",
    "OrderTicket",
    "OrderType",
    "OrderWriter",
    "PlacedLeg",
    "PlacedOrder",
    "PreviewDenial",
    "PreviewEntry",
    "QuestionPolicy",
    "ReconcileReport",
    "RiskPolicy",
    "TimeInForce",
    "WhatIf",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "ApprovalRecord": "models",
        "BackgroundReconciler": "reconciler",
        "BrokerQuestion": "tickets",
        "CancelAck": "tickets",
        "KillSwitchState": "models",
        "LimitsStatus": "models",
        "LiveOrder": "store",
        "LiveUsage": "risk",
        "NewRecord": "store",
        "OrderDesk": "desk",
        "OrderLifecycle": "models",
        "OrderPreview": "models",
        "OrderStore": "store",
        "OrderTicket": "tickets",
        "OrderType": "tickets",
        "OrderWriter": "tickets",
        "PlacedLeg": "tickets",
        "PlacedOrder": "tickets",
        "PreviewDenial": "models",
        "PreviewEntry": "models",
        "QuestionPolicy": "tickets",
        "ReconcileReport": "models",
        "RiskPolicy": "risk",
        "TimeInForce": "tickets",
        "WhatIf": "tickets",
    },
)
