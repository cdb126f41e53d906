"""Order writers without a broker, the warning policy, and the client order id (IBKR `cOID`).

The Client Portal writer lives in `ibkr_gateway_cpapi` (`backend.order_writer()`); the two here
never do I/O: `LocalCandidateWriter` records what would have been sent under a deterministic id,
`RefusingWriter` refuses everything.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final, Literal

from ..errors import ErrorCode, GatewayError
from ..models import OrderRecord
from .tickets import BrokerQuestion, CancelAck, OrderTicket, PlacedLeg, PlacedOrder, QuestionPolicy

WriterName = Literal["local-candidate", "client-portal", "refusing"]

CLIENT_ORDER_ID_PREFIX: Final = "iag-"
CLIENT_ORDER_ID_HEX: Final = 24
"""`iag-` + 24 hex characters: 28 characters, within IBKR's cOID length limit."""


def client_order_id(scope_key: str) -> str:
    """The `cOID` of a keyed submit: deterministic, so an unknown outcome can be looked up by it."""
    return CLIENT_ORDER_ID_PREFIX + hashlib.sha256(scope_key.encode("utf-8")).hexdigest()[:CLIENT_ORDER_ID_HEX]


@dataclass(frozen=True, slots=True)
class WarningPolicy:
    """Answers IBKR order warnings by message id; any id not allowed (or unknown) refuses the order."""

    actions: Mapping[str, str]
    """Message id → `allow`, `allow_resting` or `deny` (from `orders.warning_policy`)."""
    resting: bool = False
    """The order rests on its own side of the market (a buy limit below the ask, a sell limit above the bid)."""
    answered: list[BrokerQuestion] = field(default_factory=lambda: [])
    """Questions this policy was asked, in order (for the audit and the result)."""

    def __call__(self, question: BrokerQuestion) -> bool:
        """True only when every message id of the question is allowed (`allow_resting`: for a resting order only)."""
        self.answered.append(question)
        return bool(question.message_ids) and all(self._allows(mid) for mid in question.message_ids)

    def _allows(self, message_id: str) -> bool:
        action = self.actions.get(message_id)
        return action == "allow" or (action == "allow_resting" and self.resting)


LIVE_CANDIDATE_PREFIX: Final = "local-candidate-"
"""The order id of a local candidate is this prefix + its cOID."""


class LocalCandidateWriter:
    """Sends nothing: the order id is `local-candidate-` + the cOID, the status `submitted`."""

    name: str = "local-candidate"

    async def place(
        self, ticket: OrderTicket, *, client_order_id: str, confirm: QuestionPolicy, max_rounds: int
    ) -> PlacedOrder:
        """A deterministic candidate id; no broker call."""
        return PlacedOrder(
            broker_order_id=f"{LIVE_CANDIDATE_PREFIX}{client_order_id}",
            client_order_id=client_order_id,
            broker_status="LocalCandidate",
            status="submitted",
        )

    async def place_bracket(
        self,
        parent: OrderTicket,
        take_profit: OrderTicket,
        stop_loss: OrderTicket,
        *,
        client_order_id: str,
        confirm: QuestionPolicy,
        max_rounds: int,
    ) -> PlacedOrder:
        """Deterministic candidate ids for the three legs (`-tp`, `-sl` for the exits); no broker call."""
        base = f"local-candidate-{client_order_id}"
        legs = [
            PlacedLeg(role="parent", broker_order_id=base, broker_status="LocalCandidate"),
            PlacedLeg(role="take_profit", broker_order_id=f"{base}-tp", broker_status="LocalCandidate"),
            PlacedLeg(role="stop_loss", broker_order_id=f"{base}-sl", broker_status="LocalCandidate"),
        ]
        return PlacedOrder(
            broker_order_id=base, client_order_id=client_order_id, broker_status="LocalCandidate", legs=legs
        )

    async def modify(
        self, broker_order_id: str, ticket: OrderTicket, *, confirm: QuestionPolicy, max_rounds: int
    ) -> PlacedOrder:
        """Accepted locally under the same id; no broker call."""
        return PlacedOrder(broker_order_id=broker_order_id, broker_status="LocalCandidate", status="submitted")

    async def find_by_client_order_id(self, account_id: str, client_order_id: str) -> OrderRecord | None:
        """Nothing was ever sent, so nothing can be found."""
        return None

    async def cancel(self, account_id: str, broker_order_id: str) -> CancelAck:
        """The candidate is withdrawn locally (status `LocalCandidate`, as its submit); no broker call.

        The live desk checks first that this writer submitted the candidate (`LIVE_CANDIDATE_PREFIX`).
        """
        return CancelAck(broker_order_id=broker_order_id, accepted=True, broker_status="LocalCandidate")


class RefusingWriter:
    """Refuses every write (`LIVE_TRADING_DISABLED`): for fail-closed checks."""

    name: str = "refusing"

    async def place(
        self, ticket: OrderTicket, *, client_order_id: str, confirm: QuestionPolicy, max_rounds: int
    ) -> PlacedOrder:
        """Always refuses.

        Raises:
            GatewayError: `LIVE_TRADING_DISABLED`.
        """
        raise GatewayError(ErrorCode.LIVE_TRADING_DISABLED, "The refusing writer sends no orders.")

    async def place_bracket(
        self,
        parent: OrderTicket,
        take_profit: OrderTicket,
        stop_loss: OrderTicket,
        *,
        client_order_id: str,
        confirm: QuestionPolicy,
        max_rounds: int,
    ) -> PlacedOrder:
        """Always refuses.

        Raises:
            GatewayError: `LIVE_TRADING_DISABLED`.
        """
        raise GatewayError(ErrorCode.LIVE_TRADING_DISABLED, "The refusing writer sends no orders.")

    async def modify(
        self, broker_order_id: str, ticket: OrderTicket, *, confirm: QuestionPolicy, max_rounds: int
    ) -> PlacedOrder:
        """Always refuses.

        Raises:
            GatewayError: `LIVE_TRADING_DISABLED`.
        """
        raise GatewayError(ErrorCode.LIVE_TRADING_DISABLED, "The refusing writer modifies no orders.")

    async def find_by_client_order_id(self, account_id: str, client_order_id: str) -> OrderRecord | None:
        """Nothing was ever sent."""
        return None

    async def cancel(self, account_id: str, broker_order_id: str) -> CancelAck:
        """Always refuses.

        Raises:
            GatewayError: `LIVE_TRADING_DISABLED`.
        """
        raise GatewayError(ErrorCode.LIVE_TRADING_DISABLED, "The refusing writer cancels no orders.")
