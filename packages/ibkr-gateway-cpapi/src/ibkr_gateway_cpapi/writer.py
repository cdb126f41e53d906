"""`ClientPortalOrderWriter`: core's `OrderWriter` over CPAPI's place, reply, cancel and order lookups.

Placement follows IBKR's rules: one placement at a time per writer, held until it is fully answered
(IBKR invalidates a pending question when another order arrives); every reply question goes to the
caller's policy and is never confirmed on our own; the request's `cOID` is the caller's client order
id, so an order whose answer was lost can be found again.

Outcomes, and what they promise about the broker:

- `PlacedOrder`: the broker holds the order (a duplicate `cOID` whose order matches the ticket is
  the same order, placed by an earlier attempt, and is returned as such).
- `ORDER_CONFIRMATION_REFUSED`: the policy refused a question, or more questions came than
  `max_rounds` allows; the question was declined, nothing was placed.
- `ORDER_VALIDATION_FAILED`: the ticket was refused before sending, or the broker rejected it
  (its text in `details["broker_message"]`); nothing was placed.
- `IDEMPOTENCY_CONFLICT`: the `cOID` is taken by a different order; nothing was placed.
- `ORDER_CONFIRMATION_CONFLICT`: another process on the same login held the order-question slot (see
  `_questions`), so this order was not sent, or its question was never confirmed; nothing was placed.
- `BROKER_OUTCOME_UNKNOWN`: the request may have reached the broker; look the `cOID` up first.
- other `BROKER_*` codes: the request surely did not reach the broker.
"""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Final, Literal

import anyio
from ibkr_gateway_core.errors import ErrorCode, GatewayError
from ibkr_gateway_core.models import BrokerSessionStatus, OrderRecord
from ibkr_gateway_core.orders import BrokerQuestion, CancelAck, OrderTicket, PlacedLeg, PlacedOrder, QuestionPolicy

from . import _order_mapping as order_mapping
from . import _wire as wire
from ._accounts import AccountSelection, read_iserver_accounts
from ._order_body import bracket_body, check_account_id, check_client_order_id, modify_body, order_body
from ._questions import QuestionSlot, SlotLost
from .client import BrokerHttpError, CpapiClient

WRITER_NAME: Final = "client-portal"

DECLINE_TIMEOUT_S: Final = 5.0
"""Longest wait for the broker to take a declined question (best effort: an unanswered question expires)."""

EXECUTION_LOOKBACK_DAYS: Final = 7
"""Days of executions searched for a `cOID` that is no longer among live orders (CPAPI's maximum)."""

_BROKER_TEXT_LIMIT: Final = 500
"""Longest broker text carried in a message or in `details`."""

_DUPLICATE_COID: Final = re.compile(r"local order id.*already registered", re.IGNORECASE)
"""IBKR's refusal of a `cOID` it has seen: "Order couldn't be submitted: Local order ID=… is already registered."."""

_UNKNOWN_ORDER: Final = re.compile(r"doesn't exist|does not exist|not found|invalid order", re.IGNORECASE)

_NOT_MODIFIABLE: Final = re.compile(
    r"cannot be modified|can't be modified|not editable|already (?:filled|cancel)", re.I
)

_REPLY_NOT_FOUND: Final = re.compile(r"reply id not found|reply.*(?:expired|invalid)", re.IGNORECASE)
"""IBKR's answer to a reply whose question expired or a newer question superseded."""

_CANCEL_STATUSES: Final = frozenset({"cancelled", "pendingcancel", "apicancelled"})


def _broker_text(text: str) -> str:
    return text.strip()[:_BROKER_TEXT_LIMIT]


def _messages(reply: wire.WireOrderReply) -> list[str]:
    if reply.message is None:
        return []
    items = [reply.message] if isinstance(reply.message, str) else reply.message
    return [_broker_text(item) for item in items if item.strip()]


class ClientPortalOrderWriter:
    """Places and cancels orders through a Client Portal Gateway; satisfies core's `OrderWriter`."""

    def __init__(
        self,
        client: CpapiClient,
        *,
        session: Callable[[], BrokerSessionStatus | None] | None = None,
        selection: AccountSelection | None = None,
        questions: QuestionSlot | None = None,
    ) -> None:
        """Write through `client`; the writer does not close it (the backend that owns it does).

        `session` gives the latest session status a supervisor saw (None when nobody supervises it): new orders
        and changes are refused while it is not usable, before anything is sent. `selection` selects the
        broker's account before each account-scoped call (the backend's, shared with its reads; one is made
        for a writer used alone). `questions` is the login's order-question slot in the shared state store;
        without it, placements are serialised in this process only.
        """
        self.name = WRITER_NAME
        self._client = client
        self._session = session
        self._selection = selection or AccountSelection(client, lambda: read_iserver_accounts(client))
        self._placement_lock = anyio.Lock()
        self._questions = questions

    def _refuse_while_degraded(self) -> None:
        """Raise `BROKER_SESSION_REQUIRED` when the supervised session is known not to be usable.

        The order is then surely not sent, so its idempotency key and approval stay usable for a retry.
        Cancels are never refused here: a cancel is always worth trying.
        """
        status = self._session() if self._session is not None else None
        if status is None or status.status == "usable":
            return
        raise GatewayError(
            ErrorCode.BROKER_SESSION_REQUIRED,
            f"New orders are refused while the broker session is degraded: {status.message or status.status}",
            user_action=status.user_action or "Restore the broker session (`ibkr-agent session status`), then retry.",
        )

    async def place(
        self, ticket: OrderTicket, *, client_order_id: str, confirm: QuestionPolicy, max_rounds: int
    ) -> PlacedOrder:
        """Place the ticket with `client_order_id` as `cOID`, asking `confirm` about every question.

        Args:
            ticket: The approved order.
            client_order_id: Sent as `cOID`; the key to find the order again.
            confirm: Decides each broker question; it is never answered without it.
            max_rounds: Most questions that may be confirmed; one more is refused.

        Raises:
            GatewayError: see the module docstring for each code.
        """
        self._refuse_while_degraded()
        body = order_body(ticket, check_client_order_id(client_order_id))
        path = f"/iserver/account/{ticket.account_id}/orders"
        async with self._selection.holding(ticket.account_id, verify=True), self._placement_lock:
            # IBKR: the next order waits until this one is fully answered, on the account it is for
            replies, confirmed = await self._exchange(path, body, client_order_id, confirm, max_rounds)
        reply = replies[0]
        if reply.order_id is not None:
            return self._placed(reply, client_order_id, confirmed)
        return await self._resolve_error(ticket, client_order_id, reply)

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
        """Place a bracket in one request: the parent with `client_order_id` as `cOID`, each exit with `parentId`.

        IBKR links the exits to the parent by `parentId` (they carry no `cOID` of their own), holds them until
        the parent fills, and cancels the other exit when one fills, or all three when the parent is cancelled.

        Raises:
            GatewayError: as `place`.
        """
        self._refuse_while_degraded()
        body = bracket_body(parent, take_profit, stop_loss, check_client_order_id(client_order_id))
        path = f"/iserver/account/{parent.account_id}/orders"
        async with self._selection.holding(parent.account_id, verify=True), self._placement_lock:
            replies, confirmed = await self._exchange(path, body, client_order_id, confirm, max_rounds)
        if replies[0].order_id is None:
            return await self._resolve_error(parent, client_order_id, replies[0])
        return self._placed_bracket(replies, client_order_id, confirmed)

    async def modify(
        self, broker_order_id: str, ticket: OrderTicket, *, confirm: QuestionPolicy, max_rounds: int
    ) -> PlacedOrder:
        """Replace the working order `broker_order_id` by the whole `ticket`, answering questions like a placement.

        Raises:
            GatewayError: `INPUT_UNKNOWN_ORDER` when the broker does not know the order; `ORDER_NOT_MODIFIABLE`
                when it has finished; `ORDER_VALIDATION_FAILED` for another refusal; otherwise as `place`.
        """
        if not broker_order_id.isdigit():
            raise GatewayError(ErrorCode.INPUT_UNKNOWN_ORDER, f"{broker_order_id!r} is not a broker order id.")
        self._refuse_while_degraded()
        body = modify_body(ticket)
        path = f"/iserver/account/{ticket.account_id}/order/{broker_order_id}"
        async with self._selection.holding(ticket.account_id, verify=True), self._placement_lock:
            replies, confirmed = await self._exchange(path, body, None, confirm, max_rounds)  # ibind locks it too
        reply = replies[0]
        if reply.order_id is not None:
            placed = self._placed(reply, None, confirmed)
            return placed.model_copy(update={"client_order_id": (reply.local_order_id or "").strip() or None})
        text = _broker_text(reply.error or reply.text or "")
        if not text:
            raise GatewayError(
                ErrorCode.BROKER_OUTCOME_UNKNOWN,
                "The broker's answer to the modification is not one CPAPI documents; it may have taken it.",
                details={"broker_order_id": broker_order_id},
            )
        details: dict[str, object] = {"broker_message": text, "broker_order_id": broker_order_id}
        if _UNKNOWN_ORDER.search(text):
            raise GatewayError(
                ErrorCode.INPUT_UNKNOWN_ORDER,
                f"The broker knows no order {broker_order_id!r} in this account.",
                details=details,
            )
        if _NOT_MODIFIABLE.search(text):
            raise GatewayError(
                ErrorCode.ORDER_NOT_MODIFIABLE,
                f"The broker will not modify order {broker_order_id}: {text}",
                details=details,
            )
        raise GatewayError(
            ErrorCode.ORDER_VALIDATION_FAILED,
            f"The broker rejected the modification: {text}",
            user_action="Read the broker's reason (untrusted broker text), correct the change and preview it again.",
            details={**details, "reason": "broker_rejected"},
        )

    async def _exchange(
        self, path: str, body: object, client_order_id: str | None, confirm: QuestionPolicy, max_rounds: int
    ) -> tuple[list[wire.WireOrderReply], list[str]]:
        """Send `body`, then answer each question with `confirm`, until acknowledgements or an error come back.

        Returns the final answer's elements and the message ids confirmed on the way.
        """
        async with self._claimed():
            data = await self._send(path, body, client_order_id)
            confirmed: list[str] = []
            rounds = 0
            while True:
                replies = self._replies(data, client_order_id)
                reply = replies[0]
                if reply.order_id is not None or reply.id is None:
                    return replies, confirmed
                question = BrokerQuestion(
                    reply_id=reply.id, message_ids=list(reply.message_ids), messages=_messages(reply)
                )
                await self._slot_step("asked", question.reply_id, client_order_id, confirmed)
                rounds += 1
                too_many = rounds > max_rounds
                allowed = discarded = False
                try:
                    allowed = not too_many and confirm(question)
                finally:
                    if not allowed:  # also when the policy raised: leave nothing pending at the broker
                        discarded = await self._decline(question.reply_id)
                if not allowed:
                    raise _refused(question, client_order_id, confirmed, discarded, too_many=too_many)
                await self._slot_step("confirm", question.reply_id, client_order_id, confirmed)
                confirmed.extend(question.message_ids)
                data = await self._send(f"/iserver/reply/{question.reply_id}", {"confirmed": True}, client_order_id)
                self._check_reply_known(data, client_order_id, confirmed)

    @asynccontextmanager
    async def _claimed(self) -> AsyncGenerator[None]:
        """Hold the login's order-question slot for one exchange (a no-op without a shared state store)."""
        if self._questions is None:
            yield
            return
        async with self._questions.claim():
            yield

    async def _slot_step(
        self, step: Literal["asked", "confirm"], reply_id: str, client_order_id: str | None, confirmed: Sequence[str]
    ) -> None:
        """Record a question, or check it before confirming; a lost slot refuses the order before any confirmation."""
        if self._questions is None:
            return
        try:
            if step == "asked":
                await self._questions.asked(reply_id)
            else:
                await self._questions.may_confirm(reply_id)
        except SlotLost:
            raise GatewayError(
                ErrorCode.ORDER_CONFIRMATION_CONFLICT,
                "Another process on the same IBKR login asked a newer order question, which invalidates this "
                "order's; it was not confirmed, so it was not placed.",
                details={
                    "reason": "superseded",
                    "client_order_id": client_order_id,
                    "confirmed_message_ids": [*confirmed],
                },
            ) from None

    def _check_reply_known(self, data: object, client_order_id: str | None, confirmed: Sequence[str]) -> None:
        """A confirmation IBKR no longer knows (expired or superseded): the order's fate is looked up, not guessed."""
        text = wire.error_text(data)
        if text is not None and _REPLY_NOT_FOUND.search(text):
            raise GatewayError(
                ErrorCode.BROKER_OUTCOME_UNKNOWN,
                "The broker no longer knows the order question this gateway confirmed (expired or superseded by "
                "a newer one); the order is looked up by its client order id before anything else.",
                details={
                    "reason": "reply_id_not_found",
                    "client_order_id": client_order_id,
                    "confirmed_message_ids": list(confirmed),
                    "broker_message": _broker_text(text),
                },
            )

    async def _send(self, path: str, body: object, client_order_id: str | None) -> object:
        try:
            return await self._client.post(path, body, mutating=True)
        except BrokerHttpError as exc:
            if 400 <= exc.status_code < 500 and exc.broker_message:
                return {"error": exc.broker_message}  # a 4xx refusal reads like the 200 error body
            raise
        except GatewayError as exc:
            if exc.code == ErrorCode.BROKER_OUTCOME_UNKNOWN and client_order_id is not None:
                exc.details["client_order_id"] = client_order_id
            raise

    def _replies(self, data: object, client_order_id: str | None) -> list[wire.WireOrderReply]:
        try:
            replies = wire.parse_order_replies(data)
        except GatewayError:
            replies = []
        if not replies:
            raise GatewayError(
                ErrorCode.BROKER_OUTCOME_UNKNOWN,
                "The broker's answer to the order is not one CPAPI documents; it may have accepted the order.",
                details={"client_order_id": client_order_id},
            )
        return replies

    def _placed_bracket(
        self, replies: Sequence[wire.WireOrderReply], client_order_id: str, confirmed: Sequence[str]
    ) -> PlacedOrder:
        """The parent's acknowledgement (its `local_order_id` is our cOID) and the exits' in the order sent."""
        acks = [r for r in replies if r.order_id is not None]
        parent = next((r for r in acks if (r.local_order_id or "").strip() == client_order_id), acks[0])
        exits = [r for r in acks if r is not parent]
        placed = self._placed(parent, client_order_id, confirmed)
        legs = [
            PlacedLeg(
                role="parent",
                broker_order_id=placed.broker_order_id,
                broker_status=placed.broker_status,
                status=placed.status,
            )
        ]
        take_profit = exits[0] if exits else None
        stop_loss = exits[1] if len(exits) > 1 else None
        legs.append(_leg("take_profit", take_profit))
        legs.append(_leg("stop_loss", stop_loss))
        return placed.model_copy(update={"legs": legs})

    def _placed(self, reply: wire.WireOrderReply, client_order_id: str | None, confirmed: Sequence[str]) -> PlacedOrder:
        broker_status = (reply.order_status or "").strip() or None
        return PlacedOrder(
            broker_order_id=str(reply.order_id),
            client_order_id=client_order_id,
            broker_status=broker_status,
            status=order_mapping.order_status(broker_status) if broker_status else "submitted",
            confirmed_message_ids=list(confirmed),
        )

    async def _decline(self, reply_id: str) -> bool:
        with anyio.move_on_after(DECLINE_TIMEOUT_S, shield=True):
            try:
                await self._client.post(f"/iserver/reply/{reply_id}", {"confirmed": False}, mutating=True)
            except GatewayError:
                return False  # an unanswered question expires at the broker; nothing is placed either way
            return True
        return False

    async def _resolve_error(
        self, ticket: OrderTicket, client_order_id: str, reply: wire.WireOrderReply
    ) -> PlacedOrder:
        text = _broker_text(reply.error or reply.text or "")
        if not text:
            raise GatewayError(
                ErrorCode.BROKER_OUTCOME_UNKNOWN,
                "The broker's answer to the order is not one CPAPI documents; it may have accepted the order.",
                details={"client_order_id": client_order_id},
            )
        if _DUPLICATE_COID.search(text):
            return await self._resolve_duplicate(ticket, client_order_id, text)
        raise GatewayError(
            ErrorCode.ORDER_VALIDATION_FAILED,
            f"The broker rejected the order: {text}",
            user_action="Read the broker's reason (untrusted broker text), correct the order and preview it again.",
            details={"broker_message": text, "client_order_id": client_order_id, "reason": "broker_rejected"},
        )

    async def _resolve_duplicate(self, ticket: OrderTicket, client_order_id: str, text: str) -> PlacedOrder:
        details: dict[str, object] = {"broker_message": text, "client_order_id": client_order_id}
        try:
            existing = await self.find_by_client_order_id(ticket.account_id, client_order_id)
        except GatewayError as exc:
            raise GatewayError(
                ErrorCode.BROKER_OUTCOME_UNKNOWN,
                "The broker already holds an order with this client order id, and looking it up failed.",
                details={**details, "lookup_error": str(exc.code)},
            ) from None
        if existing is None:
            raise GatewayError(
                ErrorCode.BROKER_OUTCOME_UNKNOWN,
                "The broker already holds an order with this client order id, but does not list it yet.",
                details=details,
            )
        if not _same_order(existing, ticket):
            raise GatewayError(
                ErrorCode.IDEMPOTENCY_CONFLICT,
                f"The client order id is already used by a different order at the broker ({existing.broker_order_id}).",
                details={**details, "broker_order_id": existing.broker_order_id},
            )
        return PlacedOrder(
            broker_order_id=existing.broker_order_id,
            client_order_id=client_order_id,
            broker_status=existing.broker_status,
            status=existing.status,
        )

    async def find_by_client_order_id(self, account_id: str, client_order_id: str) -> OrderRecord | None:
        """The order with this `cOID`: live orders (force-refreshed), then up to 7 days of executions.

        Raises:
            GatewayError: `ORDER_VALIDATION_FAILED` for an unusable id; `BROKER_*` when the broker
                cannot be asked (then the order's existence is unknown, not denied).
        """
        check_account_id(account_id)
        check_client_order_id(client_order_id)
        params = {"accountId": account_id}
        async with self._selection.holding(account_id):
            await self._client.get("/iserver/account/orders", {**params, "force": "true"})  # [] while CPAPI rebuilds
            data = await self._client.get("/iserver/account/orders", params)
        orders = wire.parse(wire.WireLiveOrders, data, "orders")
        live = next(
            (
                row
                for row in orders.orders
                if (row.order_ref or "").strip() == client_order_id and row.account_id in (None, account_id)
            ),
            None,
        )
        if live is not None:
            return _mapped(lambda: order_mapping.to_order_record(live, account_id))
        days = {"days": str(EXECUTION_LOOKBACK_DAYS), "accountId": account_id}
        async with self._selection.holding(account_id):
            data = await self._client.get("/iserver/account/trades", days)
        trades = wire.parse_trades(data)
        fills = [
            t for t in trades if (t.order_ref or "").strip() == client_order_id and t.account_id in (None, account_id)
        ]
        if not fills:
            return None
        return _mapped(lambda: order_mapping.order_from_executions(fills, account_id))

    async def cancel(self, account_id: str, broker_order_id: str) -> CancelAck:
        """Ask the broker to cancel one order; the answer acknowledges the request, not the cancellation.

        Raises:
            GatewayError: `INPUT_UNKNOWN_ORDER` when the broker does not know the order;
                `BROKER_OUTCOME_UNKNOWN` when the request may have reached the broker unanswered.
        """
        check_account_id(account_id)
        if not broker_order_id.isdigit():
            raise GatewayError(ErrorCode.INPUT_UNKNOWN_ORDER, f"{broker_order_id!r} is not a broker order id.")
        try:
            async with self._selection.holding(account_id, verify=True):
                path = f"/iserver/account/{account_id}/order/{broker_order_id}"
                data = await self._client.delete(path, mutating=True)
        except BrokerHttpError as exc:
            if not 400 <= exc.status_code < 500 or not exc.broker_message:
                raise
            data = {"error": exc.broker_message}
        answer = wire.parse(wire.WireCancelAck, data, "cancel")
        if answer.error is not None:
            text = _broker_text(answer.error)
            if _UNKNOWN_ORDER.search(text):
                raise GatewayError(
                    ErrorCode.INPUT_UNKNOWN_ORDER,
                    f"The broker knows no order {broker_order_id!r} in this account.",
                    details={"broker_message": text},
                )
            return CancelAck(broker_order_id=broker_order_id, accepted=False, message=text)
        status = (answer.order_status or "").strip() or None
        message = _broker_text(answer.msg) if answer.msg else None
        if status is not None:
            accepted = status.replace(" ", "").replace("_", "").lower() in _CANCEL_STATUSES
        else:
            accepted = "submitted" in (message or "").lower()
        answered_id = str(answer.order_id) if answer.order_id is not None else broker_order_id
        return CancelAck(
            broker_order_id=answered_id if answered_id.lstrip("-").isdigit() else broker_order_id,
            accepted=accepted,
            broker_status=status,
            message=message,
        )


def _leg(role: Literal["take_profit", "stop_loss"], ack: wire.WireOrderReply | None) -> PlacedLeg:
    """An exit as acknowledged; a missing acknowledgement leaves its id unknown."""
    if ack is None:
        return PlacedLeg(role=role, status="unknown")
    word = (ack.order_status or "").strip() or None
    return PlacedLeg(
        role=role,
        broker_order_id=str(ack.order_id),
        broker_status=word,
        status=order_mapping.order_status(word) if word else "submitted",
    )


def _same_order(existing: OrderRecord, ticket: OrderTicket) -> bool:
    """Whether the order the broker holds under a `cOID` is this ticket (contract, side and size)."""
    return (
        existing.contract_id in (None, ticket.contract_id)
        and existing.side in (None, ticket.side)
        and existing.quantity in (None, ticket.quantity)
    )


def _refused(
    question: BrokerQuestion, client_order_id: str | None, confirmed: Sequence[str], discarded: bool, *, too_many: bool
) -> GatewayError:
    if too_many:
        message = "The broker asked more confirmation questions than allowed; the order was not placed."
    else:
        message = "The warning policy refused a broker confirmation question; the order was not placed."
    return GatewayError(
        ErrorCode.ORDER_CONFIRMATION_REFUSED,
        message,
        details={
            "reason": "too_many_questions" if too_many else "policy_refused",
            "message_ids": list(question.message_ids),
            "messages": list(question.messages),
            "confirmed_message_ids": list(confirmed),
            "client_order_id": client_order_id,
            "discarded": discarded,
        },
    )


def _mapped(build: Callable[[], OrderRecord]) -> OrderRecord:
    try:
        return build()
    except ValueError:  # pydantic's ValidationError is a ValueError too
        raise GatewayError(
            ErrorCode.BROKER_RESPONSE_INVALID, "The broker's order lookup is missing fields the gateway needs."
        ) from None
