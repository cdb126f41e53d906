"""Readable text for people: aligned tables and key/value blocks, no colour, no dependencies."""

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from pydantic import BaseModel


def cell(value: object) -> str:
    """One value as table text."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, Decimal):
        return f"{value:f}"
    if isinstance(value, list):
        return ", ".join(cell(item) for item in value) if value else "-"  # type: ignore[misc]
    if hasattr(value, "isoformat"):
        return value.isoformat()  # type: ignore[no-any-return,attr-defined]
    return str(value)


def table(rows: Sequence[BaseModel], columns: Sequence[str], *, empty: str = "(none)") -> str:
    """Rows as an aligned table with a header line."""
    if not rows:
        return empty
    header = [column.upper() for column in columns]
    body = [[cell(getattr(row, column)) for column in columns] for row in rows]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(columns))]
    lines = [
        "  ".join(text.ljust(width) for text, width in zip(line, widths, strict=True)).rstrip()
        for line in [header, *body]
    ]
    return "\n".join(lines)


def block(model: BaseModel, *, skip: Sequence[str] = ()) -> str:
    """A model as `key: value` lines, nested models indented."""
    return "\n".join(_block_lines(model, skip=skip, indent=""))


def _block_lines(model: BaseModel, *, skip: Sequence[str], indent: str) -> list[str]:
    lines: list[str] = []
    for name in type(model).model_fields:
        if name in skip:
            continue
        value: Any = getattr(model, name)
        if isinstance(value, BaseModel):
            lines.append(f"{indent}{name}:")
            lines.extend(_block_lines(value, skip=(), indent=indent + "  "))
        else:
            lines.append(f"{indent}{name}: {cell(value)}")
    return lines
