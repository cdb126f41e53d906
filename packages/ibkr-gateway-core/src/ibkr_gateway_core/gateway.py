"""The one door: every CLI command, MCP tool and library call goes through `Gateway.call`.

`call` looks the operation up in the registry, checks the caller's scope, validates the input,
checks the account, runs the operation and appends exactly one audit event, whatever happened:
completed, refused, denied or failed. Surfaces only parse and render.
"""

from __future__ import annotations

import decimal
import functools
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Generic, Literal, Self, TypeVar, cast

import anyio
import anyio.to_thread
from pydantic import BaseModel, ValidationError

from ._operation_methods import ReadMethods, WriteMethods
from ._result_json import canonical_text, to_jsonable
from .audit.events import canonical_json_of_jsonable
from .audit.log import (
    AuditEvent,
    AuditExportStream,
    AuditLog,
    ResultStatus,
    load_audit_key,
    new_event_id,
)
from .backend import Backend, BackendFactory, load_backend_factory
from .call_context import CURRENT_CALL, CallContext, Switch
from .config import GatewayConfig
from .errors import ErrorCode, GatewayError
from .input_limits import safe_jsonable, screen_arguments
from .observability import call_span, observe_call, traced
from .principal import Principal
from .read_desk import ReadDesk
from .redaction import redact, scrub_text, secret_reason
from .registry import Operation, operation
from .scopes import Scope
from .state.database import unavailable_error

if TYPE_CHECKING:
    from opentelemetry.trace import Span

    from .orders.desk import OrderDesk
    from .requests import OperationInput
    from .state.transfer import StateBackup, StateBackupInput, StateImport, StateImportInput

logger = logging.getLogger(__name__)

T = TypeVar("T")

_WRITE_SCOPES: Final = frozenset(
    {
        Scope.ORDERS_PREVIEW,
        Scope.ORDERS_PAPER_SUBMIT,
        Scope.ORDERS_PAPER_CANCEL,
        Scope.ORDERS_PAPER_MODIFY,
        Scope.APPROVALS_CREATE,
        Scope.ORDERS_LIVE_SUBMIT,
        Scope.ORDERS_LIVE_CANCEL,
        Scope.ORDERS_LIVE_MODIFY,
    }
)

_INPUT_CODES: Final = {
    "account_id": ErrorCode.INPUT_MISSING_ACCOUNT,
    "contract_id": ErrorCode.INPUT_INVALID_CONTRACT,
    "duration": ErrorCode.INPUT_INVALID_TIME_RANGE,
    "bar_size": ErrorCode.INPUT_INVALID_TIME_RANGE,
    "approval_id": ErrorCode.PAPER_APPROVAL_REQUIRED,
    "idempotency_key": ErrorCode.IDEMPOTENCY_KEY_REQUIRED,
}
"""Which code a bad value of a field gets; other fields get `INPUT_INVALID_ARGUMENT`."""

_ALWAYS_SYNCED: Final = frozenset({"audit_checkpoint"})
"""Reads whose event is synced even under `audit.read_sync: normal`: a checkpoint signs the chain's head,
so its own synced commit puts every event it covers on disk before the signature is returned."""

Outcome = tuple[Literal["allow", "deny", "refuse"], ResultStatus, str]
"""(decision, result status, event type) of one call."""


def _utc_now() -> datetime:
    return datetime.now(UTC)


_OPERATOR_ONLY_CODES: Final = {"open_kill_switch": ErrorCode.KILL_SWITCH_OPERATOR_ONLY}
"""Operator-only operations whose refusal had a code of its own before `call` checked them all (codes stay)."""


def _operator_only_refusal(op: Operation) -> GatewayError:
    """The refusal of an operator-only operation called by anyone but the operator at the CLI."""
    verb = op.title[:1].lower() + op.title[1:]
    return GatewayError(
        _OPERATOR_ONLY_CODES.get(op.name, ErrorCode.OPERATOR_ONLY), f"Only the operator at the CLI may {verb}."
    )


@dataclass(frozen=True, slots=True)
class CallResult(Generic[T]):
    """What one operation returned, with the audit event that recorded it."""

    operation: Operation
    value: T
    audit_event_id: str
    jsonable: Any = None
    """The value as JSON-compatible data, when `Gateway.call` needed it (None: computed on demand)."""

    def to_jsonable(self) -> Any:
        """The value as JSON-compatible data (Decimals as strings)."""
        return self.jsonable if self.jsonable is not None else to_jsonable(self.value)


class Gateway(ReadMethods):
    """The service behind every surface.

    Build it with `Gateway.from_config(config)` and use it as an async context manager; the broker
    backend is opened lazily on the first call that needs it, so `health` never touches the broker.
    """

    def __init__(
        self,
        config: GatewayConfig,
        audit: AuditLog,
        *,
        backend_factory: BackendFactory | None = None,
        principal: Principal | None = None,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self.config = config
        self.audit = audit
        self._backend_factory = backend_factory
        self._backend: Backend | None = None
        self._clock = clock
        self.session_id = str(uuid.uuid4())
        """Correlates every audit event this gateway instance writes."""
        self.default_principal = principal or Principal(
            kind="local_operator", subject="local-operator", scopes=config.auth.scopes()
        )
        """The caller assumed when a call names none."""
        self._reads = ReadDesk(
            config,
            audit,
            backend=lambda: self.backend,
            default_principal=self.default_principal,
            clock=clock,
            kill_switch=self.kill_switch_position,
        )
        self._handlers: dict[str, Callable[[Any], Awaitable[Any]]] = self._reads.handlers()
        self._handlers["import_state"] = self._import_state
        self._handlers["backup_state"] = self._backup_state
        self._desk: OrderDesk | None = None
        self._market_handlers_added = False
        self._order_handlers_added = False
        """The trading-desk and order handlers (and their modules) load on their first operation, not at start-up."""

    @classmethod
    def from_config(cls, config: GatewayConfig, *, principal: Principal | None = None) -> Gateway:
        """A gateway with the audit log and backend the config names.

        Raises:
            GatewayError: `CONFIG_*` when the audit key or backend cannot be set up.
        """
        audit = AuditLog.open(config.state_location(), load_audit_key(config))
        return cls(config, audit, principal=principal)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the backend (if opened) and the audit log."""
        backend, self._backend = self._backend, None
        try:
            if backend is not None:
                await backend.aclose()
        finally:
            desk, self._desk = self._desk, None
            if desk is not None:
                desk.close()
            self.audit.close()

    def _order_desk(self) -> OrderDesk:
        """The order desk, opened on the first order operation (read-only commands never open it)."""
        if self._desk is None:
            from .orders.desk import OrderDesk
            from .orders.store import OrderStore

            self._desk = OrderDesk(
                self.config,
                OrderStore.open(self.audit.location),
                self.audit,
                backend=lambda: self.backend,
                accounts=self._reads.visible_accounts,
                resolve=self._reads.resolve_contract,
                clock=self._clock,
                session_id=self.session_id,
            )
        return self._desk

    def _handler(self, name: str) -> Callable[[Any], Awaitable[Any]]:
        handler = self._handlers.get(name)
        if handler is None and not self._market_handlers_added:
            from .market.desk import MarketDesk

            self._handlers.update(MarketDesk(backend=lambda: self.backend, clock=self._clock).handlers())
            self._market_handlers_added = True
            handler = self._handlers.get(name)
        if handler is None and not self._order_handlers_added:
            from .orders.desk import order_handlers

            self._handlers.update(order_handlers(self._order_desk))
            self._order_handlers_added = True
            handler = self._handlers.get(name)
        if handler is None:
            raise KeyError(name)
        return handler

    async def _import_state(self, args: StateImportInput) -> StateImport:
        from .state.transfer import import_state

        return await anyio.to_thread.run_sync(import_state, self.audit, Path(args.source).expanduser())

    async def _backup_state(self, args: StateBackupInput) -> StateBackup:
        from .state.transfer import backup_state

        return await anyio.to_thread.run_sync(backup_state, self.audit, Path(args.to).expanduser())

    @property
    def verify_progress(self) -> Callable[[int, int], None] | None:
        """Called with (rows checked, rows expected) while `audit_verify` runs; the CLI shows it on a terminal."""
        return self._reads.verify_progress

    @verify_progress.setter
    def verify_progress(self, callback: Callable[[int, int], None] | None) -> None:
        self._reads.verify_progress = callback

    async def kill_switch_position(self) -> str:
        """`open` or `closed`, read from the state database without a broker call or an audit event.

        For planning aids such as the `capabilities` operation; the live gates read it themselves.
        """
        desk = self._order_desk()
        try:
            state = await anyio.to_thread.run_sync(desk.store.kill_switch)
        except GatewayError:
            return "unknown"
        return str(state.state)

    async def unfinished_orders(self) -> int:
        """Writes whose outcome is unknown plus live orders not yet terminal: what a reconciliation pass has to do.

        Read from the state store without a broker call or an audit event (for background reconciliation).
        """
        desk = self._order_desk()
        unsettled = await anyio.to_thread.run_sync(desk.store.unsettled)
        tracked = await anyio.to_thread.run_sync(desk.store.live_orders)
        return len(unsettled) + len(tracked)

    @property
    def backend(self) -> Backend:
        """The broker backend, opened on first use."""
        if self._backend is None:
            factory = self._backend_factory or load_backend_factory(self.config.broker.backend)
            self._backend = factory(self.config)
        return self._backend

    # ------------------------------------------------------------------ the door

    async def call(
        self,
        name: str,
        arguments: Mapping[str, object] | BaseModel | None = None,
        *,
        principal: Principal | None = None,
        request_id: str | None = None,
        tool_names_only: bool = False,
        switches: frozenset[str] = frozenset(),
    ) -> CallResult[Any]:
        """Run one operation by method or tool name, audited whatever happens.

        `tool_names_only` makes a method name an unknown operation: MCP callers address tools only.
        `switches` are the operator's per-call enablements (`call_context.Switch`), set by the CLI from
        its flags; they are never tool arguments.

        Raises:
            GatewayError: with a stable code; its `audit_event_id` names the event that recorded it.
        """
        with call_span() as span:  # OpenTelemetry's, when it is on: the call's broker requests nest under it
            return await self._call(name, arguments, principal, request_id, tool_names_only, switches, span)

    async def _call(
        self,
        name: str,
        arguments: Mapping[str, object] | BaseModel | None,
        principal: Principal | None,
        request_id: str | None,
        tool_names_only: bool,
        switches: frozenset[str],
        span: Span | None,
    ) -> CallResult[Any]:
        caller = principal or self.default_principal
        event_id = new_event_id()
        started = time.perf_counter()
        op: Operation | None = None
        args: OperationInput | None = None
        value: Any = None
        data: Any = None
        text: str | None = None
        failure: GatewayError | None = None
        output_hash: str | None = None
        try:
            hostile = screen_arguments(arguments) if not isinstance(arguments, BaseModel) else None
            if hostile is not None:  # before the lookup too: an unknown name with hostile arguments is the same attack
                raise hostile
            op = self._lookup(name, tool_names_only=tool_names_only)
            if not caller.has(op.scope):
                raise GatewayError(
                    ErrorCode.AUTH_MISSING_SCOPE,
                    f"{op.cli_command!r} needs the scope {op.scope.value!r}, which this caller does not hold.",
                    details={"required_scope": op.scope.value},
                )
            if op.operator_only and caller.kind != "local_operator":  # whatever scopes the caller holds
                raise _operator_only_refusal(op)
            args = self._validate(op, arguments)
            account_id = getattr(args, "account_id", None)
            if isinstance(account_id, str):
                await self._check_account(account_id)
            token = CURRENT_CALL.set(CallContext(caller, switches, event_id, request_id))
            try:
                value = await self._handler(op.name)(args)
            finally:
                CURRENT_CALL.reset(token)
            if isinstance(value, AuditExportStream):  # rendered, checked and hashed as it was spooled
                output_hash = value.output_hash
            else:
                text = canonical_text(value)  # once: the output hash hashes it, the output guard scans it
                if text is None:  # not flat models: through the JSON data, kept for every surface
                    data = to_jsonable(value)
                    text = canonical_json_of_jsonable(data)
                data = _refuse_unsafe_output(op, value, data, text)
        except GatewayError as exc:
            failure = exc
            failure.message = scrub_text(failure.message)
            failure.user_action = scrub_text(failure.user_action)
        except decimal.DecimalException:  # a number too large (or too precise) to compute with: bad input
            failure = GatewayError(ErrorCode.INPUT_INVALID_ARGUMENT, "A number in the request is out of range.")
        except Exception as exc:  # a bug must still be audited and shown without a traceback
            failure = unavailable_error(exc)  # a locked or unreachable state database is not a bug
            if failure is None:
                logger.exception("operation %s failed unexpectedly", name)
                failure = GatewayError(ErrorCode.INTERNAL_ERROR, f"Internal error ({type(exc).__name__}).")
        try:
            with traced("audit_append"):
                await self._record(
                    event_id, name, op, caller, args, arguments, text, failure, started, request_id, output_hash
                )
        except BaseException:
            if isinstance(value, AuditExportStream):
                value.close()  # never shown: its call could not be audited
            raise
        observe_call(
            op.name if op is not None else "unknown",  # never the caller's text: labels are a closed set
            error_code=failure.code.value if failure is not None else None,
            refusal=failure is not None and failure.family in ("refusal", "auth", "input"),
            seconds=time.perf_counter() - started,
            request_id=request_id,
            audit_event_id=event_id,
            span=span,
        )
        if failure is not None:
            failure.audit_event_id = event_id
            raise failure
        assert op is not None
        return CallResult(operation=op, value=value, audit_event_id=event_id, jsonable=data)

    async def record_refusal(
        self,
        name: str,
        error: GatewayError,
        *,
        arguments: Mapping[str, object] | None = None,
        principal: Principal | None = None,
        request_id: str | None = None,
    ) -> GatewayError:
        """Audit a call a surface refused before it could reach `call` (a command line its parser rejected).

        Returns `error` with `audit_event_id` set, so the surface shows the same id the log holds.
        """
        try:
            op: Operation | None = self._lookup(name, tool_names_only=False)
        except GatewayError:
            op = None
        event_id = new_event_id()
        caller = principal or self.default_principal
        await self._record(event_id, name, op, caller, None, arguments, None, error, time.perf_counter(), request_id)
        error.audit_event_id = event_id
        return error

    def _lookup(self, name: str, *, tool_names_only: bool) -> Operation:
        try:
            found = operation(name)
            if tool_names_only and found.tool != name:
                raise KeyError(name)
            return found
        except KeyError:
            raise GatewayError(ErrorCode.INPUT_UNKNOWN_OPERATION, f"Unknown operation {name!r}.") from None

    def _validate(self, op: Operation, arguments: Mapping[str, object] | BaseModel | None) -> OperationInput:
        if isinstance(arguments, op.input_model):
            return arguments
        raw = arguments.model_dump() if isinstance(arguments, BaseModel) else dict(arguments or {})
        try:
            return op.input_model.model_validate(raw)
        except ValidationError as exc:
            raise _input_error(exc) from None

    async def _check_account(self, account_id: str) -> None:
        accounts = await self._reads.visible_accounts()
        if account_id not in {account.account_id for account in accounts}:
            raise GatewayError(
                ErrorCode.INPUT_UNAUTHORIZED_ACCOUNT,
                f"Account {account_id!r} is not visible in this broker session.",
            )

    async def _record(
        self,
        event_id: str,
        name: str,
        op: Operation | None,
        caller: Principal,
        args: OperationInput | None,
        raw_arguments: object,
        output_text: str | None,
        failure: GatewayError | None,
        started: float,
        request_id: str | None,
        output_hash: str | None = None,
    ) -> None:
        """Append the call's one audit event.

        `output_text` is the canonical JSON of its result; a result hashed as it was produced (a streamed
        export) gives `output_hash` instead.
        """
        decision, status, event_type = _outcome(op, failure)
        arguments: dict[str, Any] = args.model_dump(mode="json") if args is not None else _raw_mapping(raw_arguments)
        account_id = arguments.pop("account_id", None)
        metadata, redactions = redact({"arguments": arguments} if arguments else {})
        event = AuditEvent(
            event_id=event_id,
            event_type=event_type,
            timestamp=self._clock(),
            principal_kind=caller.kind,
            principal_subject=caller.subject,
            principal_issuer=caller.issuer,
            principal_token_id_hash=caller.token_id_hash,
            principal_client_id=caller.client_id,
            scopes=list(_scope_names(caller.scopes)),
            operation=op.name if op else None,
            tool_name=op.tool if op else name[:64],
            decision=decision,
            result_status=status,
            error_code=failure.code.value if failure else None,
            account_id_hash=self.audit.account_hash(account_id) if isinstance(account_id, str) else None,
            request_id=request_id,
            session_id=self.session_id,
            input_hash=self.audit.hash_payload(_raw_jsonable(raw_arguments)),
            output_hash=None if failure is not None else output_hash or self._output_hash(output_text),
            duration_ms=round((time.perf_counter() - started) * 1000, 3),
            redactions=redactions,
            metadata=cast(dict[str, Any], metadata),
        )
        await self.audit.append(event, sync=self._needs_sync(op, failure))

    def _needs_sync(self, op: Operation | None, failure: GatewayError | None) -> bool:
        """Whether the call's event must reach the disk before it returns (`audit.read_sync`).

        Only completed reads may skip the sync: writes, refusals, denials and failures are synced, and
        each such commit syncs every unsynced read event before it.
        """
        if self.config.audit.read_sync == "full" or failure is not None or op is None:
            return True
        return not op.read_only or op.name in _ALWAYS_SYNCED

    def _output_hash(self, output_text: str | None) -> str | None:
        return self.audit.hash_canonical(output_text) if output_text is not None else None

    # ------------------------------------------------------------- named methods

    async def _invoke(self, name: str, arguments: Mapping[str, Any]) -> Any:
        """The typed methods (`ReadMethods`) call here: the default principal, no switches."""
        return (await self.call(name, {k: v for k, v in arguments.items() if v is not None})).value

    def as_principal(self, principal: Principal, *, switches: frozenset[str] = frozenset()) -> GatewayView:
        """A view whose methods, writes included, act as `principal` with these per-call switches."""
        return GatewayView(self, principal, switches)

    def as_operator(
        self,
        *,
        enable_preview: bool = False,
        enable_paper: bool = False,
        enable_live: bool = False,
        live_scope: bool = False,
        open_kill_switch: bool = False,
        acknowledge_paper_to_live: bool = False,
        live_broker: str | None = None,
    ) -> GatewayView:
        """A view whose methods act as the local operator (`orders.operator_scopes`), with the CLI's switches.

        The flags are those of the CLI (`--enable-preview`, `--enable-paper`, `--enable-live`, ...):
        `gateway.as_operator(enable_preview=True).preview_order(...)` previews as the operator would.
        """
        flags = {
            Switch.ENABLE_PREVIEW: enable_preview,
            Switch.ENABLE_PAPER: enable_paper,
            Switch.ENABLE_LIVE: enable_live,
            Switch.LIVE_SCOPE: live_scope,
            Switch.OPEN_KILL_SWITCH: open_kill_switch,
            Switch.ACKNOWLEDGE_PAPER_TO_LIVE: acknowledge_paper_to_live,
        }
        switches = {name for name, on in flags.items() if on}
        if live_broker is not None:
            switches.add(Switch.LIVE_BROKER_PREFIX + live_broker)
        operator = Principal(kind="local_operator", subject="local-operator", scopes=self.config.operator_scopes())
        return GatewayView(self, operator, frozenset(switches))

    # ------------------------------------------------------------------ handlers


class GatewayView(WriteMethods):
    """The gateway seen as one principal: every operation as a typed method, writes included.

    Made by `Gateway.as_operator()` or `Gateway.as_principal()`; each call is audited with that
    principal and carries the view's switches.
    """

    def __init__(self, gateway: Gateway, principal: Principal, switches: frozenset[str]) -> None:
        self.gateway = gateway
        self.principal = principal
        self.switches = switches

    async def _invoke(self, name: str, arguments: Mapping[str, Any]) -> Any:
        args = {k: v for k, v in arguments.items() if v is not None}
        return (await self.gateway.call(name, args, principal=self.principal, switches=self.switches)).value


def _refuse_unsafe_output(op: Operation, value: object, data: Any, canonical: str) -> Any:
    """The last guard before any surface: output (as JSON data) that looks like it holds a secret is withheld.

    The guard reads the JSON text of the result's JSON data as `json.dumps` writes it (ASCII, non-ASCII
    escaped). The canonical text already made for the output hash is that same text when it holds only
    printable ASCII (the separators differ, and no pattern can match across one), so it is scanned instead
    of a second serialisation; anything else is serialised again, so the verdict never changes. Returns the
    JSON data when it had to make it (`data` as given otherwise).
    """
    if not op.open_world:
        return data  # local data (audit rows, health) is redacted when it is written
    if canonical.isascii() and "\x7f" not in canonical:
        text = canonical
    else:
        data = to_jsonable(value) if data is None else data
        text = json.dumps(data)
    reason = secret_reason(text)
    if reason is not None:
        raise GatewayError(
            ErrorCode.OUTPUT_UNSAFE, f"The broker's answer to {op.cli_command!r} was withheld: it contains a {reason}."
        )
    return data


@functools.lru_cache(maxsize=64)
def _scope_names(scopes: frozenset[Scope]) -> tuple[str, ...]:
    """A caller's scope names, sorted: worked out once per set of scopes, not once per call."""
    return tuple(sorted(scope.value for scope in scopes))


def _outcome(op: Operation | None, failure: GatewayError | None) -> Outcome:
    if failure is None:
        assert op is not None
        return "allow", "completed", op.event_type
    if failure.family == "auth":
        return "deny", "denied_scope", "tool_denied_scope"
    if failure.family == "refusal" and failure.code not in (ErrorCode.INTERNAL_ERROR, ErrorCode.AUDIT_WRITE_FAILED):
        return "refuse", "refused", "tool_refused"
    return "allow", "failed", "tool_failed"


def _input_error(exc: ValidationError) -> GatewayError:
    """One clear message per bad field; the code comes from the first bad field."""
    errors = exc.errors()
    first = str(errors[0]["loc"][0]) if errors and errors[0]["loc"] else ""
    code = _INPUT_CODES.get(first, ErrorCode.INPUT_INVALID_ARGUMENT)
    parts: list[str] = []
    for error in errors:
        where = ".".join(str(part) for part in error["loc"]) or "arguments"
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "is not a known argument"
        elif error["type"] == "missing":
            message = "is required"
        parts.append(f"{where} {message}" if error["type"] in ("extra_forbidden", "missing") else f"{where}: {message}")
    return GatewayError(code, "Invalid arguments: " + "; ".join(parts) + ".", details={"fields": [first]})


def _raw_mapping(value: object) -> dict[str, Any]:
    """Raw arguments as a JSON-safe mapping (anything else is kept under `value`)."""
    data = _raw_jsonable(value)
    return cast(dict[str, Any], data) if isinstance(data, dict) else {"value": data}


def _raw_jsonable(value: object) -> Any:
    """Arguments as given, reduced to JSON-safe data for hashing and the audit trail (hostile values described)."""
    if value is None:
        return {}
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return safe_jsonable(value)
