"""`AccountSelection`: the broker's selected account, switched before every account-scoped `/iserver` call.

A Client Portal login with several accounts (an advisor's master and its clients, or several linked
accounts) has one *selected* account per brokerage session. Live orders and executions list the
selected account's, and an advisor login acts on it even where the path names another account: an
order "for B" sent while A is selected may land on A. So every account-scoped `/iserver` call (orders
list, executions, what-if, place, reply, modify, cancel) runs inside `holding(account)`:

- calls for the account already held run side by side; a call for another account waits until they
  finish, then the account is switched (`POST /iserver/account`) and the call runs; nothing can switch
  the account between a placement and its replies, which stay inside one `holding` block;
- for writes (`verify=True`) on an advisor login the switch is asked of the broker before each request,
  even when this process believes the account is selected (another program may have switched it);
- the selection is learnt again in each brokerage session (a nightly reset selects the first account),
  and when the client primes a fresh session in the middle of a request it re-selects before resending;
- when the broker does not confirm the switch, the call is refused with `BROKER_ACCOUNT_NOT_SELECTED`
  and nothing is sent.

A login with one account never switches: the selection costs nothing there.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Final

import anyio
from ibkr_gateway_core.errors import ErrorCode, GatewayError

from . import _wire as wire
from .client import BrokerHttpError, CpapiClient

SWITCH_PATH: Final = "/iserver/account"
"""`POST {"acctId": ...}` selects the account of the brokerage session."""

_SWITCH_ACTION: Final = (
    "Check that the account is listed by `ibkr-agent accounts list`; if another program uses the same IBKR "
    "login, stop it switching accounts, then retry. Nothing was sent for this account."
)


class AccountSelection:
    """Serialises account-scoped calls by account and switches the broker's selected account between them."""

    def __init__(self, client: CpapiClient, load: Callable[[], Awaitable[wire.WireIserverAccounts]]) -> None:
        """Select through `client`; `load` reads `/iserver/accounts`."""
        self._client = client
        self._load = load
        self._condition = anyio.Condition()
        self._queue: list[tuple[object, str]] = []
        """Callers waiting to hold an account, first come first."""
        self._held: str | None = None
        self._holders = 0
        self._switch_lock = anyio.Lock()
        self._generation: int | None = None
        """The brokerage generation `_accounts` and `_selected` were learnt in."""
        self._accounts: tuple[str, ...] = ()
        self._advisor = False
        self._selected: str | None = None
        self.switches = 0
        """Switches the broker confirmed (for tests and `backend status`)."""
        client.on_reprimed = self._reprimed

    @property
    def selected(self) -> str | None:
        """The account this process last saw selected (None until learnt)."""
        return self._selected

    @asynccontextmanager
    async def holding(self, account_id: str, *, verify: bool = False) -> AsyncGenerator[None]:
        """Run the block with `account_id` selected at the broker; no other account is selected meanwhile.

        Args:
            account_id: The account the block's `/iserver` calls are for.
            verify: Ask the broker to select it even when it seems selected already (writes on advisor logins).

        Raises:
            GatewayError: `BROKER_ACCOUNT_NOT_SELECTED` when the broker does not confirm the switch; the
                block did not run.
        """
        await self._enter(account_id)
        try:
            async with self._switch_lock:
                await self._ensure(account_id, verify=verify)
            yield
        finally:
            with anyio.CancelScope(shield=True):
                await self._leave()

    async def _enter(self, account_id: str) -> None:
        token = object()
        async with self._condition:
            self._queue.append((token, account_id))
            try:
                while True:
                    ahead = [acct for key, acct in self._queue if key is not token]
                    mine = next(i for i, (key, _) in enumerate(self._queue) if key is token)
                    free = self._held in (None, account_id)
                    if free and all(acct == account_id for acct in ahead[:mine]):
                        break
                    await self._condition.wait()
            finally:
                self._queue = [(key, acct) for key, acct in self._queue if key is not token]
            self._held = account_id
            self._holders += 1

    async def _leave(self) -> None:
        async with self._condition:
            self._holders -= 1
            if self._holders == 0:
                self._held = None
            self._condition.notify_all()

    def observe(self, iserver: wire.WireIserverAccounts) -> None:
        """Learn the accounts and the selected one from an `/iserver/accounts` answer read just now."""
        self._accounts = tuple(iserver.accounts)
        self._advisor = iserver.is_advisor
        self._selected = iserver.selected_account or (self._accounts[0] if self._accounts else None)
        self._generation = self._client.brokerage_generation

    async def _learn(self) -> None:
        if self._generation == self._client.brokerage_generation and self._accounts:
            return
        self.observe(await self._load())  # as it answers now: a read goes on while it names no account

    async def _ensure(self, account_id: str, *, verify: bool) -> None:
        await self._learn()
        if verify and not self._accounts:
            raise GatewayError(
                ErrorCode.BROKER_SESSION_REQUIRED,
                "The brokerage session is open, but IBKR has not loaded its accounts yet; nothing was sent.",
                user_action="Wait a few seconds and retry; IBKR loads the accounts shortly after a login.",
            )
        if len(self._accounts) <= 1 or account_id not in self._accounts:
            return  # nothing to select; an unknown account is refused by the call itself
        if self._selected == account_id and not (verify and self._advisor):
            return
        await self._switch(account_id)

    async def _switch(self, account_id: str) -> None:
        try:
            data = await self._client.post(SWITCH_PATH, {"acctId": account_id})
        except BrokerHttpError as exc:
            self._selected = None
            raise _not_selected(account_id, exc.broker_message) from None
        except GatewayError:
            self._selected = None
            raise
        answer = wire.parse(wire.WireAccountSwitch, data, "account switch")
        named = (answer.acct_id or account_id) == account_id
        already = "already" in (answer.message or "").lower()
        if not named or not (answer.set is True or already):
            self._selected = None
            raise _not_selected(account_id, answer.message or answer.error)
        self._selected = account_id
        self.switches += 1

    async def _reprimed(self, path: str) -> None:
        """The client primed a fresh brokerage session inside a request: select the held account again."""
        held = self._held
        if held is None or not path.startswith("/iserver/") or path == SWITCH_PATH:
            return
        self._generation = None
        async with self._switch_lock:
            await self._ensure(held, verify=True)


async def read_iserver_accounts(client: CpapiClient) -> wire.WireIserverAccounts:
    """`/iserver/accounts` as it answers now (the backend's loader also waits while it names no account)."""
    return wire.parse(wire.WireIserverAccounts, await client.get("/iserver/accounts"), "accounts")


def _not_selected(account_id: str, broker_text: str | None) -> GatewayError:
    details: dict[str, object] = {}
    if broker_text:
        details["broker_message"] = broker_text.strip()[:200]
    return GatewayError(
        ErrorCode.BROKER_ACCOUNT_NOT_SELECTED,
        "The broker did not confirm selecting the account this call is for; nothing was sent for it.",
        user_action=_SWITCH_ACTION,
        details={**details, "account": _masked(account_id)},
    )


def _masked(account_id: str) -> str:
    """The account id with all but its last three characters hidden."""
    return "*" * max(len(account_id) - 3, 0) + account_id[-3:]
