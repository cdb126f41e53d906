"""Who is calling: travels with every operation and lands in its audit event."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from pydantic import BaseModel, ConfigDict

from .scopes import Scope

PrincipalKind = Literal["local_operator", "local_agent", "remote"]

PrincipalRole = Literal["approver", "agent"]
"""`approver`: a person who may approve previews; `agent`: everyone else (MCP callers)."""


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

    @property
    def identity(self) -> tuple[str, str | None, str]:
        """Who this is, whatever session or token it uses: (kind, issuer, subject)."""
        return (self.kind, self.issuer, self.subject)


class ApproverRef(BaseModel):
    """A remote subject named as a person who may approve (`auth.approvers`): its issuer and subject."""

    model_config = ConfigDict(defer_build=True, frozen=True, extra="forbid")

    issuer: str
    """The token issuer (`iss`), compared exactly."""
    subject: str
    """The token subject (`sub`), compared exactly."""


def role_of(principal: Principal, approvers: Iterable[ApproverRef]) -> PrincipalRole:
    """`approver` for the operator at the CLI and for remote subjects listed in `approvers`; else `agent`.

    An MCP stdio caller is never an approver, whatever the configuration lists.
    """
    if principal.kind == "local_operator":
        return "approver"
    if principal.kind == "remote" and principal.issuer is not None:
        if any(ref.issuer == principal.issuer and ref.subject == principal.subject for ref in approvers):
            return "approver"
    return "agent"


def is_approver(principal: Principal, approvers: Iterable[ApproverRef]) -> bool:
    """True when `principal` may approve previews (see `role_of`)."""
    return role_of(principal, approvers) == "approver"
