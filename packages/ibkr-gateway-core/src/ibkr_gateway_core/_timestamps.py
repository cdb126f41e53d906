"""Timestamps as the audit log stores them: UTC, ISO-8601 with microseconds and a `Z`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator


def require_utc(value: datetime) -> datetime:
    """The same instant in UTC; a naive datetime is refused because its zone would be a guess."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("timestamp must carry a time zone")
    return value.astimezone(UTC)


def format_timestamp(value: datetime) -> str:
    """`2026-11-25T12:00:00.000000Z`: fixed width, so text order is time order."""
    return require_utc(value).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


UtcDatetime = Annotated[datetime, AfterValidator(require_utc)]
"""A timezone-aware datetime, normalised to UTC."""
