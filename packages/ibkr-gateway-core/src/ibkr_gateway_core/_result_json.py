"""An operation's result as JSON: the data every surface shows, and the canonical text the audit hashes.

The canonical text (`canonical_json_of_jsonable` of `to_jsonable(result)`) is what the output hash covers and
the output guard scans. `canonical_text` writes it straight from the result's models when each of their
fields is one whose JSON pydantic-core writes exactly as `json.dumps` writes its JSON data (text, whole
numbers, booleans, decimals, text literals; no floats, no custom serializers): one pass in pydantic-core
instead of the JSON data and a sorting `json.dumps` over it. Anything else takes the general path.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Mapping
from operator import itemgetter
from typing import Any, Final, cast

from pydantic import BaseModel, TypeAdapter
from pydantic_core import PydanticSerializationError, SchemaSerializer, core_schema

_PLAIN_FIELD_TYPES: Final = frozenset({"str", "int", "bool", "decimal"})
"""Field schemas whose JSON is the same text from pydantic-core as from `json.dumps` of their JSON data."""

_FIELD_KEYS: Final = frozenset({"type", "schema", "metadata"})
"""What a model field's schema may hold for `canonical_text`: no alias, no exclusion, no serializer."""


def to_jsonable(value: object) -> Any:
    """JSON-compatible form of a model, a list of models or plain data."""
    if value is None:
        return None
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    shape: type[object] = type(value)
    if shape is list:  # a list of one model (positions, orders): its own serialiser, no inference per item
        items = cast(list[object], value)
        kind = type(items[0]) if items else object
        if issubclass(kind, BaseModel) and all(type(item) is kind for item in items):
            return _adapter(list[kind]).dump_python(items, mode="json")
    return _adapter(shape).dump_python(value, mode="json")


@functools.cache
def _adapter(kind: type) -> TypeAdapter[Any]:
    return TypeAdapter(kind)


def canonical_text(value: object) -> str | None:
    """`canonical_json_of_jsonable(to_jsonable(value))` for a flat model or a list of one flat model; else None.

    None also when pydantic-core would not write what `json.dumps` writes (or raises): text holding a lone
    surrogate, an integer too long for `str`, a value of another type than its field's.
    """
    items: list[object] = cast(list[object], value) if type(value) is list else [value]
    kind = type(items[0]) if items else object
    writer = _sorted_writer(kind) if issubclass(kind, BaseModel) else None
    if writer is None or set(map(type, items)) != {kind}:
        return None
    serializer, names, values, integers = writer
    rows = [dict(zip(names, values(item.__dict__), strict=True)) for item in items]
    if integers and not _integers_print(rows, integers):
        return None
    try:
        text = serializer.to_json(rows, warnings="error").decode()
    except PydanticSerializationError:
        return None
    return text if items is value else text[1:-1]


_Writer = tuple[
    SchemaSerializer, tuple[str, ...], Callable[[Mapping[str, object]], tuple[object, ...]], tuple[str, ...]
]
"""(serializer of a list of rows, field names sorted, their values from a model's `__dict__`, integer fields)."""


@functools.cache
def _sorted_writer(kind: type[BaseModel]) -> _Writer | None:
    """How `canonical_text` writes models of `kind`: its field serializers over rows with sorted keys; None if unfit."""
    schema = cast(Mapping[str, Any], kind.__pydantic_core_schema__)
    if schema.get("type") != "model" or "serialization" in schema or schema.get("root_model"):
        return None
    config = cast(Mapping[str, Any], schema.get("config", {}))
    fields_schema = cast(Mapping[str, Any], schema["schema"])
    if fields_schema.get("type") != "model-fields" or fields_schema.get("computed_fields"):
        return None
    if config.get("extra_fields_behavior") == "allow" or config.get("serialize_by_alias"):
        return None
    fields = cast(Mapping[str, Mapping[str, Any]], fields_schema["fields"])
    plain: dict[str, Mapping[str, Any]] = {}
    for name, field in fields.items():
        inner = _plain_type(field["schema"])
        if field.get("type") != "model-field" or not set(field) <= _FIELD_KEYS or inner is None:
            return None
        plain[name] = inner
    names = tuple(sorted(fields))
    if len(names) < 2:  # itemgetter of one name gives a value, not a tuple
        return None
    rows = core_schema.typed_dict_schema({name: core_schema.typed_dict_field(fields[name]["schema"]) for name in names})
    integers = tuple(name for name in names if plain[name]["type"] == "int")
    return SchemaSerializer(core_schema.list_schema(rows)), names, itemgetter(*names), integers


def _plain_type(schema: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The field's value schema under its default and nullable wrappers, if `_PLAIN_FIELD_TYPES` or text literals."""
    while schema.get("type") in ("default", "nullable") and "serialization" not in schema:
        schema = cast(Mapping[str, Any], schema["schema"])
    if "serialization" in schema:
        return None
    if schema.get("type") == "literal":
        return schema if all(type(choice) is str for choice in schema["expected"]) else None
    return schema if schema.get("type") in _PLAIN_FIELD_TYPES else None


def _integers_print(rows: list[dict[str, object]], integers: tuple[str, ...]) -> bool:
    """Whether `str` can write every integer of these fields (`json.dumps` raises past Python's digit limit)."""
    limit = sys.get_int_max_str_digits()
    if not limit:
        return True
    bound = _power_of_ten(limit)
    for name in integers:
        numbers = [number for row in rows if isinstance(number := row[name], int)]  # None prints as null
        if numbers and not (-bound < min(numbers) and max(numbers) < bound):
            return False
    return True


@functools.lru_cache(maxsize=4)
def _power_of_ten(digits: int) -> int:
    return 10**digits
