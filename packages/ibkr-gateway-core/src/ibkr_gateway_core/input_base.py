"""The base of every operation input, and the input of operations without arguments (both also in `requests`).

Kept apart from `requests` (which re-exports both) so that a command without arguments (`health`,
`accounts list`) validates its input without defining every other input model at start-up.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

__all__ = ["NoInput", "OperationInput"]


class OperationInput(BaseModel):
    """Base of every operation input: closed and immutable."""

    # defer_build: a schema is built on first use, so importing the registry stays cheap (CLI start-up)
    model_config = ConfigDict(defer_build=True, frozen=True, extra="forbid", str_strip_whitespace=True)


class NoInput(OperationInput):
    """An operation without arguments."""
