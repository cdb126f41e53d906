"""Typed views of raw JSON request bodies (the one place the simulator looks inside `object`)."""

from __future__ import annotations

from typing import Final

from pydantic import TypeAdapter, ValidationError

_OBJECT: Final = TypeAdapter(dict[str, object])
_ARRAY: Final = TypeAdapter(list[object])


def as_object(value: object) -> dict[str, object] | None:
    """`value` as a JSON object, or None when it is not one."""
    if not isinstance(value, dict):
        return None
    try:
        return _OBJECT.validate_python(value, strict=True)
    except ValidationError:
        return None


def as_array(value: object) -> list[object] | None:
    """`value` as a JSON array, or None when it is not one."""
    if not isinstance(value, list):
        return None
    return _ARRAY.validate_python(value)
