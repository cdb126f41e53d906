"""Who is calling: travels with every operation and lands in its audit event."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from .scopes import Scope

PrincipalKind = Literal["local_operator", "local_agent", "remote"]


class Principal(BaseModel):
    """The caller of one operation.

    `local_operator` is a person at the CLI; `local_agent` an MCP client over stdio; `remote` an
    OAuth subject over HTTP. Tokens are never held here, only a keyed hash of the token id.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: PrincipalKind
    subject: str
    issuer: str | None = None
    token_id_hash: str | None = None
    client_id: str | None = None
    scopes: frozenset[Scope]

    def has(self, scope: Scope) -> bool:
        """True when this caller holds `scope`."""
        return scope in self.scopes
