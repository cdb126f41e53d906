"""The simulator's order engine: placement with reply prompts, cancel, modify, what-if, and fills.

Deterministic fill model: a limit buy at or above the ask (a sell at or below the bid), every
market order, and a stop whose trigger the quote reached (a buy stop at or below the ask, a sell
stop at or above the bid) fill at once at the quote, producing an execution, a position change and
a cash movement; anything else works (`Submitted`) until cancelled or until a quote change crosses it.

Brackets: a placement may hold a parent (with `cOID`) and exits naming it in `parentId`. The exits
wait (`PreSubmitted`) until the parent fills; when one exit fills the other is cancelled (OCA); a
cancel of the parent cancels its exits, and a cancel of one exit cancels its sibling.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Final

from ._book import FIRST_ORDER_ID, SimBook, SimContract, SimExecution, SimOrder, SimPosition
from ._portfolio import figures
from ._session import BrokerageSession, SimHttpError, error_body
from ._tickets import DEFAULT_QUESTION_RULES, OrderTicket, QuestionRule, parse_ticket, ticket_list

COMMISSION: Final = Decimal("1.00")
"""Flat commission per fill, in the contract's currency."""

REPLY_TTL: Final = timedelta(minutes=5)
"""How long a reply prompt id stays valid."""


@dataclass(slots=True)
class _Pending:
    tickets: list[OrderTicket]
    questions: list[tuple[QuestionRule, OrderTicket]]
    created_at: datetime
    modify_of: int | None = None
    """The order a pending modify changes; None for a placement."""


def _money(value: Decimal, currency: str | None = None) -> str:
    text = f"{value:,.2f}"
    return f"{text} {currency}" if currency else text


def _whole(value: Decimal) -> str:
    return f"{value:,.0f}"


class OrderEngine:
    """Orders, reply prompts and fills over a `SimBook`."""

    def __init__(self, book: SimBook, clock: Callable[[], datetime]) -> None:
        self._book = book
        self._clock = clock
        self.question_rules: list[QuestionRule] = list(DEFAULT_QUESTION_RULES)
        self._pending: dict[str, _Pending] = {}
        self.client_ids: set[tuple[str, str]] = {(o.account_id, o.c_oid) for o in book.orders.values() if o.c_oid}
        """(account, cOID) pairs seen; IBKR refuses a known one."""
        self.next_order_id = max(book.orders, default=FIRST_ORDER_ID - 1) + 1
        self.next_execution = 1
        self.accepted: list[int] = []
        """Ids of the orders this engine accepted, oldest first."""
        self._superseded: set[str] = set()
        """Reply ids a newer question invalidated."""
        self.superseded_replies = 0
        """Replies that named a reply id a newer question had invalidated (IBKR answers them `reply id not found`)."""

    # -- placement -------------------------------------------------------------------------------

    def place(
        self, account_id: str, body: object, session: BrokerageSession, *, acting_account: str | None = None
    ) -> object:
        """`POST /iserver/account/{acct}/orders`: a reply prompt, an acknowledgement, or an error body.

        `acting_account` (an advisor login's selected account) receives the order whatever the path names.
        """
        tickets = [parse_ticket(raw, account_id) for raw in ticket_list(body)]
        if acting_account is not None:
            tickets = [replace(ticket, account_id=acting_account) for ticket in tickets]
        account_id = acting_account or account_id
        for ticket in tickets:
            self._contract(ticket.conid)
            duplicate = self._duplicate(ticket)
            if duplicate is not None:
                return duplicate
        parents = {t.c_oid for t in tickets if t.c_oid is not None}
        for ticket in tickets:
            if ticket.parent_c_oid is not None and ticket.parent_c_oid not in parents:
                return error_body(f"Parent order {ticket.parent_c_oid} is not in this request")
        questions = self._questions(tickets, account_id, session)
        if questions:
            return self._ask(_Pending(tickets, questions, self._clock()))
        return self._submit(tickets)

    def _questions(
        self, tickets: Sequence[OrderTicket], account_id: str, session: BrokerageSession
    ) -> list[tuple[QuestionRule, OrderTicket]]:
        return [
            (rule, ticket)
            for ticket in tickets
            for rule in self.question_rules
            if rule.message_id not in session.suppressed
            and (rule.accounts is None or account_id in rule.accounts)
            and rule.applies(ticket, self._contract(ticket.conid))
        ]

    def reply(self, reply_id: str, confirmed: bool, *, acting_account: str | None = None) -> object:
        """`POST /iserver/reply/{id}`: the next prompt or the acknowledgement; an id works once.

        A newer question invalidated every older reply id of the session (`superseded` counts them).
        `acting_account` (an advisor login's selected account now) receives a confirmed placement.

        Raises:
            SimHttpError: 400 `reply id not found` for an unknown, used, superseded or expired id.
        """
        pending = self._pending.pop(reply_id, None)
        if pending is None or self._clock() - pending.created_at > REPLY_TTL:
            if reply_id in self._superseded:
                self.superseded_replies += 1
            raise SimHttpError(400, error_body(f"reply id not found: '{reply_id}'"))
        if acting_account is not None and pending.modify_of is None:
            pending.tickets = [replace(ticket, account_id=acting_account) for ticket in pending.tickets]
        if not confirmed:
            return error_body("The order was not confirmed and has been discarded.")
        pending.questions.pop(0)
        if pending.questions:
            pending.created_at = self._clock()
            return self._ask(pending)
        if pending.modify_of is not None:
            return self._apply_modify(pending.modify_of, pending.tickets[0])
        for ticket in pending.tickets:
            duplicate = self._duplicate(ticket)
            if duplicate is not None:
                return duplicate
        return self._submit(pending.tickets)

    def _ask(self, pending: _Pending) -> list[dict[str, object]]:
        reply_id = str(uuid.uuid4())
        self._superseded.update(self._pending)
        self._pending.clear()  # IBKR: a newer question invalidates every older reply id of the session
        self._pending[reply_id] = pending
        rule, ticket = pending.questions[0]
        return [
            {
                "id": reply_id,
                "message": [rule.render(ticket, self._contract(ticket.conid))],
                "isSuppressed": False,
                "messageIds": [rule.message_id],
            }
        ]

    def _duplicate(self, ticket: OrderTicket) -> dict[str, object] | None:
        if ticket.c_oid is not None and (ticket.account_id, ticket.c_oid) in self.client_ids:
            return error_body(f"Order couldn't be submitted: Local order ID={ticket.c_oid} is already registered.")
        return None

    def _submit(self, tickets: Sequence[OrderTicket]) -> list[dict[str, object]]:
        acks: list[dict[str, object]] = []
        placed: dict[str, SimOrder] = {}
        orders: list[SimOrder] = []
        for ticket in tickets:
            now = self._clock()
            parent = placed.get(ticket.parent_c_oid) if ticket.parent_c_oid is not None else None
            order = SimOrder(
                order_id=self.next_order_id,
                account_id=ticket.account_id,
                conid=ticket.conid,
                side=ticket.side,
                order_type=ticket.order_type,
                quantity=ticket.quantity,
                price=ticket.price,
                aux_price=ticket.aux_price,
                tif=ticket.tif,
                c_oid=ticket.c_oid,
                status="Submitted",
                created_at=now,
                updated_at=now,
                outside_rth=ticket.outside_rth,
                trailing_amount=ticket.trailing_amount,
                trailing_type=ticket.trailing_type,
                parent_id=parent.order_id if parent is not None else None,
            )
            if parent is not None:
                order.status = "PreSubmitted"  # held until the parent fills
            self.next_order_id += 1
            self._book.orders[order.order_id] = order
            self.accepted.append(order.order_id)
            if ticket.c_oid is not None:
                self.client_ids.add((ticket.account_id, ticket.c_oid))
                placed[ticket.c_oid] = order
            orders.append(order)
        for order in orders:  # parents first: an exit may fill as soon as its parent did
            if order.parent_id is None:
                self._try_fill(order)
        for order in orders:
            ack: dict[str, object] = {
                "order_id": str(order.order_id),
                "order_status": order.status,
                "encrypt_message": "1",
            }
            if order.c_oid is not None:
                ack["local_order_id"] = order.c_oid
            if order.parent_id is not None:
                ack["parent_order_id"] = str(order.parent_id)
            acks.append(ack)
        return acks

    # -- cancel and modify -----------------------------------------------------------------------

    def cancel(self, account_id: str, order_id: int) -> dict[str, object]:
        """`DELETE /iserver/account/{acct}/order/{id}`: acknowledges receipt; `-1` cancels every working order.

        Raises:
            SimHttpError: 400 for an order this account does not have.
        """
        if order_id == -1:
            for order in self._book.orders.values():
                if order.account_id == account_id and order.is_working:
                    self._set_status(order, "Cancelled")
            return {"msg": "Request was submitted", "order_id": -1, "account": account_id}
        order = self._order(account_id, order_id)
        if order.is_working:
            self._set_status(order, "Cancelled")
            for linked in self._linked(order):  # a parent takes its exits along; an exit its sibling
                self._set_status(linked, "Cancelled")
        return {"msg": "Request was submitted", "order_id": order.order_id, "conid": order.conid, "account": account_id}

    def _linked(self, order: SimOrder) -> list[SimOrder]:
        """Working orders cancelled with `order`: a parent's exits, or an exit's sibling."""
        if order.parent_id is None:
            return [o for o in self._book.orders.values() if o.parent_id == order.order_id and o.is_working]
        return [
            o
            for o in self._book.orders.values()
            if o.parent_id == order.parent_id and o.order_id != order.order_id and o.is_working
        ]

    def modify(
        self,
        account_id: str,
        order_id: int,
        body: object,
        session: BrokerageSession | None = None,
        *,
        acting_account: str | None = None,
    ) -> list[dict[str, object]]:
        """`POST /iserver/account/{acct}/order/{id}`: the full ticket again with changed price, size or tif.

        The question rules apply as for a placement: a matching change is answered with a reply prompt.

        Raises:
            SimHttpError: 400 for an unknown or finished order, or a ticket for another contract or side.
        """
        order = self._order(acting_account or account_id, order_id)
        ticket = parse_ticket(body, account_id)
        if acting_account is not None:
            account_id = acting_account
            ticket = replace(ticket, account_id=acting_account)
        if not order.is_working:
            raise SimHttpError(400, error_body(f"Order {order_id} cannot be modified in status {order.status}"))
        if ticket.conid != order.conid or ticket.side != order.side or ticket.order_type != order.order_type:
            raise SimHttpError(400, error_body("Modify must repeat the original conid, side and orderType"))
        if ticket.quantity < order.filled:
            raise SimHttpError(400, error_body(f"Quantity {ticket.quantity} is below the filled {order.filled}"))
        questions = self._questions([ticket], account_id, session) if session is not None else []
        if questions:
            return self._ask(_Pending([ticket], questions, self._clock(), modify_of=order_id))
        return self._apply_modify(order_id, ticket)

    def _apply_modify(self, order_id: int, ticket: OrderTicket) -> list[dict[str, object]]:
        order = self._book.orders[order_id]
        if not order.is_working:  # it finished while the question was open
            return [error_body(f"Order {order_id} cannot be modified in status {order.status}")]
        order.quantity, order.price, order.aux_price, order.tif = (
            ticket.quantity,
            ticket.price,
            ticket.aux_price,
            ticket.tif,
        )
        order.updated_at = self._clock()
        if not self._held(order):
            self._try_fill(order)
        ack: dict[str, object] = {"order_id": str(order.order_id), "order_status": order.status}
        if order.c_oid is not None:
            ack["local_order_id"] = order.c_oid
        return [ack]

    def _order(self, account_id: str, order_id: int) -> SimOrder:
        order = self._book.orders.get(order_id)
        if order is None or order.account_id != account_id:
            raise SimHttpError(400, error_body(f"OrderID {order_id} doesn't exist"))
        return order

    def _set_status(self, order: SimOrder, status: str) -> None:
        order.status = status
        order.updated_at = self._clock()

    # -- what-if ---------------------------------------------------------------------------------

    def whatif(self, account_id: str, body: object, *, acting_account: str | None = None) -> dict[str, object]:
        """`POST /iserver/account/{acct}/orders/whatif`: effects as formatted strings; nothing is placed."""
        ticket = parse_ticket(ticket_list(body)[0], account_id)
        if acting_account is not None:
            account_id = acting_account
            ticket = replace(ticket, account_id=acting_account)
        contract = self._contract(ticket.conid)
        account = self._book.accounts[account_id]
        before = figures(self._book, account)
        price = ticket.reference_price(contract)
        notional = ticket.quantity * price
        rate = self._book.fx_rate(contract.currency, account.currency)
        held = self._book.positions.get((account_id, ticket.conid))
        position = held.quantity if held else Decimal(0)
        change = ticket.quantity if ticket.side == "BUY" else -ticket.quantity
        initial_change = notional * rate * Decimal("0.25")
        maintenance_change = notional * rate * Decimal("0.20")
        warnings = [rule.render(ticket, contract) for rule in self.question_rules if rule.applies(ticket, contract)]
        error = None
        if ticket.side == "BUY" and initial_change > before["availablefunds"]:
            error = "Insufficient available funds for this order."
        return {
            "amount": {
                "amount": _money(notional, contract.currency),
                "commission": _money(COMMISSION, contract.currency),
                "total": _money(notional + COMMISSION, contract.currency),
            },
            "equity": {
                "current": _whole(before["netliquidation"]),
                "change": _whole(-COMMISSION * rate),
                "after": _whole(before["netliquidation"] - COMMISSION * rate),
            },
            "initial": {
                "current": _whole(before["initmarginreq"]),
                "change": _whole(initial_change),
                "after": _whole(before["initmarginreq"] + initial_change),
            },
            "maintenance": {
                "current": _whole(before["maintmarginreq"]),
                "change": _whole(maintenance_change),
                "after": _whole(before["maintmarginreq"] + maintenance_change),
            },
            "position": {"current": _whole(position), "change": _whole(change), "after": _whole(position + change)},
            "warn": "\n".join(warnings) or None,
            "error": error,
        }

    # -- fills -----------------------------------------------------------------------------------

    def match_working(self) -> None:
        """Fill every working order the current quotes cross (after a test moved a quote)."""
        for order in sorted(self._book.orders.values(), key=lambda o: o.order_id):
            if order.is_working and not self._held(order):
                self._try_fill(order)

    def _held(self, order: SimOrder) -> bool:
        """A bracket exit waits until its parent has filled."""
        if order.parent_id is None:
            return False
        parent = self._book.orders.get(order.parent_id)
        return parent is None or parent.status != "Filled"

    def fill(self, order_id: int, price: Decimal | None = None) -> None:
        """Fill a working order now, at `price` or at its crossing quote (a test hook)."""
        order = self._book.orders[order_id]
        contract = self._contract(order.conid)
        quote = contract.ask if order.side == "BUY" else contract.bid
        self._execute(order, price or order.price or quote or contract.last or Decimal(0))

    def _try_fill(self, order: SimOrder) -> None:
        contract = self._contract(order.conid)
        if order.side == "BUY":
            quote = contract.ask
            crosses = quote is not None and (order.order_type == "MKT" or (order.price or 0) >= quote)
            triggered = quote is not None and order.aux_price is not None and quote >= order.aux_price
        else:
            quote = contract.bid
            crosses = quote is not None and (order.order_type == "MKT" or (order.price or Decimal(0)) <= quote)
            triggered = quote is not None and order.aux_price is not None and quote <= order.aux_price
        if quote is None:
            return
        if (order.order_type in ("LMT", "MKT") and crosses) or (order.order_type == "STP" and triggered):
            self._execute(order, quote)

    def _execute(self, order: SimOrder, price: Decimal) -> None:
        contract = self._contract(order.conid)
        quantity = order.remaining
        now = self._clock()
        execution = SimExecution(
            execution_id=f"0000f1a2.{order.order_id:08x}.{self.next_execution:02d}.01",
            account_id=order.account_id,
            order_id=order.order_id,
            c_oid=order.c_oid,
            conid=order.conid,
            side=order.side,
            quantity=quantity,
            price=price,
            commission=COMMISSION,
            exchange="ISLAND" if contract.listing_exchange == "NASDAQ" else contract.listing_exchange,
            executed_at=now,
        )
        self.next_execution += 1
        self._book.executions.append(execution)
        order.filled += quantity
        order.avg_fill_price = price
        self._set_status(order, "Filled")
        self._apply_to_position(order.account_id, contract, order.side, quantity, price)
        if order.parent_id is not None:
            for sibling in self._linked(order):  # one exit filled: the other is cancelled (OCA)
                self._set_status(sibling, "Cancelled")
            return
        for child in self._linked(order):  # the parent filled: its exits go live
            if child.status == "PreSubmitted":
                self._set_status(child, "Submitted")
        for child in self._linked(order):
            if child.is_working:
                self._try_fill(child)

    def _apply_to_position(
        self, account_id: str, contract: SimContract, side: str, quantity: Decimal, price: Decimal
    ) -> None:
        signed = quantity if side == "BUY" else -quantity
        key = (account_id, contract.conid)
        position = self._book.positions.get(key) or SimPosition(account_id, contract.conid, Decimal(0), Decimal(0))
        after = position.quantity + signed
        if position.quantity == 0 or (position.quantity > 0) == (signed > 0):
            cost = position.quantity * position.avg_cost + signed * price
            position.avg_cost = (cost / after).quantize(Decimal("0.0001")) if after else Decimal(0)
        else:
            closed = min(abs(signed), abs(position.quantity))
            direction = 1 if position.quantity > 0 else -1
            position.realized_pnl += closed * (price - position.avg_cost) * direction
            if after != 0 and (after > 0) != (position.quantity > 0):
                position.avg_cost = price
        position.quantity = after
        self._book.positions[key] = position
        cash = self._book.accounts[account_id].cash
        cash[contract.currency] = cash.get(contract.currency, Decimal(0)) - signed * price - COMMISSION

    def _contract(self, conid: int) -> SimContract:
        contract = self._book.contracts.get(conid)
        if contract is None:
            raise SimHttpError(400, error_body(f"Invalid contract id: {conid}"))
        return contract
