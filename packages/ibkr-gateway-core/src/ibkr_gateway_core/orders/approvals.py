"""Order approvals: approve an unexpired preview once, list and revoke approvals, and check one before a submit."""

from __future__ import annotations

import uuid
from datetime import timedelta

from ..errors import ErrorCode, GatewayError
from ..redaction import scrub_text
from ._services import DeskServices, raise_refusal
from .gates import (
    ApprovalState,
    check_approval,
    check_approval_ttl,
    check_approver,
    check_preview_fresh,
    check_self_approval,
)
from .models import (
    ApprovalRecord,
    OrderPreview,
    PreviewDenial,
    PreviewEntry,
    PreviewKind,
    PreviewStatus,
    TradingMode,
)
from .requests import (
    ApprovalCreateInput,
    ApprovalListInput,
    ApprovalRevokeInput,
    PreviewDenyInput,
    PreviewListInput,
)


class Approvals:
    """The approval step of the order desk."""

    def __init__(self, desk: DeskServices) -> None:
        self._desk = desk

    async def create_approval(self, args: ApprovalCreateInput) -> ApprovalRecord:
        """Approve one unexpired preview for its account, once."""
        desk = self._desk
        ctx = desk.call_context()
        principal = ctx.principal
        raise_refusal(check_approver(approver=desk.config.is_approver(principal), kind=principal.kind))
        found = await desk.run(lambda: desk.store.preview(args.preview_id))
        if found is None:
            raise GatewayError(ErrorCode.PREVIEW_NOT_FOUND, f"No preview {args.preview_id!r}.")
        preview, creator_kind = found
        if preview.account_id != args.account_id:
            raise GatewayError(
                ErrorCode.APPROVAL_ACCOUNT_MISMATCH,
                f"Preview {preview.preview_id} is for another account, not {args.account_id!r}.",
            )
        if args.fingerprint is not None and args.fingerprint not in {preview.fingerprint} & {
            preview.ticket.fingerprint()
        }:
            raise GatewayError(
                ErrorCode.APPROVAL_PREVIEW_MISMATCH,
                f"Preview {preview.preview_id} is not the order that was shown for approval: it changed since.",
            )
        if await desk.run(lambda: desk.store.preview_denial(args.preview_id)) is not None:
            raise GatewayError(ErrorCode.PREVIEW_DENIED, f"Preview {preview.preview_id} was denied.")
        now = desk.clock()
        raise_refusal(check_preview_fresh(preview.preview_id, preview.expires_at, now))
        bounds = desk.config.approvals
        ttl = args.ttl_seconds if args.ttl_seconds is not None else bounds.default_ttl_seconds
        raise_refusal(check_approval_ttl(ttl, bounds.min_ttl_seconds, bounds.max_ttl_seconds))
        raise_refusal(
            check_self_approval(
                approver=principal.identity,
                creator=(creator_kind, preview.created_by_issuer, preview.created_by),
                forbidden=bounds.forbid_self_approval,
            )
        )
        mode = args.mode or await self._account_mode(args.account_id)
        approval = ApprovalRecord(
            approval_id=f"ap-{uuid.uuid4().hex}",
            preview_id=preview.preview_id,
            account_id=preview.account_id,
            fingerprint=preview.fingerprint,
            status="approved",
            mode=mode,
            approved_by=principal.subject,
            approved_by_kind=principal.kind,
            approved_by_issuer=principal.issuer,
            approved_at=now,
            expires_at=now + timedelta(seconds=ttl),
            audit_event_id=ctx.audit_event_id,
        )
        await desk.run(lambda: desk.store.save_approval(approval))
        return approval

    async def _account_mode(self, account_id: str) -> TradingMode:
        """The default mode of an approval: `paper` for an account the broker marks as paper, else `live`."""
        account = await self._desk.account(account_id)
        return "paper" if account is not None and account.account_mode == "paper" else "live"

    async def list_approvals(self, args: ApprovalListInput) -> list[ApprovalRecord]:
        """Approvals, newest first; unused ones past their expiry show as `expired`."""
        desk = self._desk
        now = desk.clock()
        records: list[ApprovalRecord] = await desk.run(lambda: desk.store.approvals(args.account_id, args.limit))
        return [
            r.model_copy(update={"status": "expired"}) if r.status == "approved" and now >= r.expires_at else r
            for r in records
        ]

    async def list_previews(self, args: PreviewListInput) -> list[PreviewEntry]:
        """Previews, newest first, each with its status; `pending_only` keeps those waiting for a person."""
        desk = self._desk
        now = desk.clock()
        rows = await desk.run(lambda: desk.store.previews(args.account_id, 500 if args.pending_only else args.limit))
        entries: list[PreviewEntry] = []
        for preview, kind, approval, denial in rows:
            status: PreviewStatus
            if denial is not None:
                status = "denied"
            elif approval is not None and approval.status in ("consumed", "revoked"):
                status = approval.status
            elif approval is not None and now < approval.expires_at and now < preview.expires_at:
                status = "approved"
            elif now >= preview.expires_at or approval is not None:
                status = "expired"
            else:
                status = "pending"
            if args.pending_only and status != "pending":
                continue
            entries.append(
                PreviewEntry(
                    preview=preview,
                    status=status,
                    created_by_kind=kind,
                    approval_id=approval.approval_id if approval is not None else None,
                    denial=denial,
                )
            )
        return entries[: args.limit]

    async def deny_preview(self, args: PreviewDenyInput) -> PreviewDenial:
        """Deny a preview: it can never be approved, and its unused approvals are revoked."""
        desk = self._desk
        ctx = desk.call_context()
        denial = PreviewDenial(
            preview_id=args.preview_id,
            denied_by=ctx.principal.subject,
            denied_by_kind=ctx.principal.kind,
            denied_at=desk.clock(),
            reason=args.reason,
            audit_event_id=ctx.audit_event_id,
        )
        stored = await desk.run(lambda: desk.store.deny_preview(denial))
        if stored == "missing":
            raise GatewayError(ErrorCode.PREVIEW_NOT_FOUND, f"No preview {args.preview_id!r}.")
        if stored == "consumed":
            raise GatewayError(
                ErrorCode.APPROVAL_CONSUMED,
                f"Preview {args.preview_id} was already approved and submitted; cancel the order instead.",
            )
        return stored

    async def revoke_approval(self, args: ApprovalRevokeInput) -> ApprovalRecord:
        """Revoke an unused approval."""
        desk = self._desk
        revoked: ApprovalRecord | None = await desk.run(
            lambda: desk.store.revoke_approval(args.approval_id, scrub_text(args.reason), desk.clock())
        )
        if revoked is None:
            raise GatewayError(ErrorCode.APPROVAL_NOT_FOUND, f"No approval {args.approval_id!r}.")
        if revoked.status == "consumed":
            raise GatewayError(ErrorCode.APPROVAL_CONSUMED, f"Approval {args.approval_id} was already used.")
        return revoked

    async def approved_preview(
        self, approval_id: str, account_id: str, scope_key: str, *, mode: str, kind: PreviewKind = "order"
    ) -> OrderPreview | None:
        """The preview an approval allows, after every approval and preview gate; None when `scope_key` raced.

        `kind` is what the caller submits: an approval of another kind of preview is refused.
        """
        desk = self._desk
        approval, stored = await desk.run(lambda: desk.store.approval_with_preview(approval_id))
        found = (stored, "") if stored is not None else None
        now = desk.clock()
        state = None
        if approval is not None:
            state = ApprovalState(
                approval_id=approval.approval_id,
                status=approval.status,
                account_id=approval.account_id,
                expires_at=approval.expires_at,
                fingerprint=approval.fingerprint,
                preview_fingerprint=found[0].order_fingerprint() if found is not None else "",
                mode=approval.mode,
            )
        decision = check_approval(state, account_id, now, mode=mode)
        if decision.code == ErrorCode.APPROVAL_CONSUMED and await desk.run(lambda: desk.store.record(scope_key)):
            return None  # a concurrent call with the same key consumed it: settle as a duplicate
        raise_refusal(decision)
        if found is None:
            raise GatewayError(ErrorCode.PREVIEW_NOT_FOUND, "The approval's preview is gone.")
        preview = found[0]
        if preview.kind != kind:
            raise GatewayError(
                ErrorCode.APPROVAL_OPERATION_MISMATCH,
                f"Approval {approval_id} is for a preview of kind {preview.kind!r}, not {kind!r}.",
                details={"preview_kind": preview.kind, "submitted_kind": kind},
            )
        raise_refusal(check_preview_fresh(preview.preview_id, preview.expires_at, now))
        return preview
