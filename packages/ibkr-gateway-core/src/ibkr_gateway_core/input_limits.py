"""Hostile argument values, refused with a coded error before anything parses or stores them.

Every surface hands `Gateway.call` arguments that came from outside: JSON from an MCP client, values
from a command line, a library caller's mapping. Some values are valid JSON (or valid Python) but
break what comes after: a non-finite number (`1e999` parses as infinity, `NaN` is accepted by
lenient parsers), an integer of thousands of digits (Python refuses to print one), a string holding
a lone surrogate (it cannot be encoded as UTF-8, so it cannot be stored), arguments nested hundreds
deep (recursive code runs out of stack). `screen_arguments` finds the first such value in one
iterative pass and names it with an `INPUT_*` code; `safe_jsonable` reduces any value to JSON data
that can always be hashed and stored, so the refusal itself is audited.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Final, cast

from pydantic import BaseModel

from .errors import ErrorCode, GatewayError

MAX_DEPTH: Final = 32
"""Arguments nest at most this deep (objects and arrays); every tool's own schema needs far fewer."""

MAX_INTEGER_DIGITS: Final = 64
"""An integer argument has at most this many decimal digits."""

_INTEGER_LIMIT: Final = 10**MAX_INTEGER_DIGITS


def _too_large(value: int) -> bool:
    """More than `MAX_INTEGER_DIGITS` digits, decided without printing the number (bits first, cheap)."""
    return value.bit_length() > 200 and abs(value) >= _INTEGER_LIMIT


MAX_NODES: Final = 100_000
"""At most this many values (objects, arrays, strings, numbers) in one call's arguments."""

_PLACEHOLDER_DEEP: Final = "[nested deeper than 32]"


def _has_surrogate(text: str) -> bool:
    if text.isascii():
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _refusal(code: ErrorCode, message: str, path: str) -> GatewayError:
    return GatewayError(code, message, details={"fields": [path] if path else []})


def screen_value(value: object, path: str) -> GatewayError | None:
    """The refusal for one scalar value at `path`, or None when it is safe."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        if _too_large(value):
            return _refusal(
                ErrorCode.INPUT_NUMBER_TOO_LARGE,
                f"Argument {path or 'value'} is an integer of more than {MAX_INTEGER_DIGITS} digits.",
                path,
            )
        return None
    if isinstance(value, float):
        if not math.isfinite(value):
            return _refusal(
                ErrorCode.INPUT_NON_FINITE_NUMBER, f"Argument {path or 'value'} is not a finite number.", path
            )
        return None
    if isinstance(value, Decimal):
        if not value.is_finite():
            return _refusal(
                ErrorCode.INPUT_NON_FINITE_NUMBER, f"Argument {path or 'value'} is not a finite number.", path
            )
        if value.adjusted() >= MAX_INTEGER_DIGITS or len(value.as_tuple().digits) > 2 * MAX_INTEGER_DIGITS:
            return _refusal(ErrorCode.INPUT_NUMBER_TOO_LARGE, f"Argument {path or 'value'} has too many digits.", path)
        return None
    if isinstance(value, str) and _has_surrogate(value):
        return _refusal(
            ErrorCode.INPUT_INVALID_UNICODE,
            f"Argument {path or 'value'} holds text that is not valid Unicode (a lone surrogate).",
            path,
        )
    return None


def screen_arguments(arguments: object) -> GatewayError | None:
    """The refusal for the first hostile value in `arguments` (keys included), or None.

    One iterative pass: never recursive, so no nesting depth can exhaust the stack.
    """
    stack: list[tuple[object, str, int]] = [(arguments, "", 0)]
    nodes = 0
    while stack:
        value, path, depth = stack.pop()
        nodes += 1
        if nodes > MAX_NODES:
            return _refusal(ErrorCode.INPUT_TOO_DEEP, f"The arguments hold more than {MAX_NODES} values.", "")
        if isinstance(value, Mapping | list | tuple):
            if depth >= MAX_DEPTH:
                return _refusal(
                    ErrorCode.INPUT_TOO_DEEP,
                    f"Argument {path or 'value'} nests deeper than {MAX_DEPTH} levels.",
                    path.split(".", 1)[0],
                )
            if isinstance(value, Mapping):
                for key, item in cast(Mapping[object, object], value).items():
                    if isinstance(key, str) and _has_surrogate(key):
                        return screen_value(key, path or "arguments")
                    name = str(key)
                    stack.append((item, f"{path}.{name}" if path else name, depth + 1))
            else:
                for index, item in enumerate(cast(list[object], value)):
                    stack.append((item, f"{path}[{index}]", depth + 1))
            continue
        refusal = screen_value(value, path)
        if refusal is not None:
            return refusal
    return None


def safe_jsonable(value: object, *, depth: int = 0) -> Any:
    """`value` as JSON data that can always be encoded: hostile values become short descriptions.

    Non-finite numbers become `"NaN"`/`"Infinity"` text, huge integers `"[integer of N bits]"`, lone
    surrogates U+FFFD, and anything nested deeper than `MAX_DEPTH` a placeholder.
    """
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if not _too_large(value) else f"[integer of {value.bit_length()} bits]"
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, str):
        return value if not _has_surrogate(value) else value.encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, Mapping | list | tuple):
        if depth >= MAX_DEPTH:
            return _PLACEHOLDER_DEEP
        if isinstance(value, Mapping):
            mapping = cast(Mapping[object, object], value)
            return {safe_jsonable(str(key)): safe_jsonable(item, depth=depth + 1) for key, item in mapping.items()}
        return [safe_jsonable(item, depth=depth + 1) for item in cast(list[object], value)]
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, BaseModel):
        return safe_jsonable(value.model_dump(mode="json"), depth=depth)
    return safe_jsonable(str(value))
