"""Order commands through typer's CliRunner: flags become switches, refusals exit 1 with their code."""

import json
from typing import Any

from ibkr_gateway_cli.app import app
from typer.testing import CliRunner

runner = CliRunner()
ACCOUNT = "DU1234567"
PREVIEW = ["orders", "preview", "--account", ACCOUNT, "--symbol", "AAPL", "--side", "buy", "--quantity", "1",
           "--limit-price", "100", "--currency", "USD"]  # fmt: skip


def ok(*args: str) -> Any:
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output + result.stderr
    return json.loads(result.stdout)


def refused(*args: str) -> str:
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 1, result.output + result.stderr
    return str(json.loads(result.stderr)["code"])


def test_preview_needs_enable_preview(state_env: dict[str, str]) -> None:
    """Without the per-call flag the preview is refused (the Rust code, kept)."""
    assert refused(*PREVIEW) == "ORDER_PREVIEW_DISABLED"


def test_preview_approve_submit_then_refuse_a_second_use(state_env: dict[str, str]) -> None:
    """The seed flow through the CLI; the approval is single use."""
    preview = ok(*PREVIEW, "--enable-preview")
    assert preview["ticket"]["order_type"] == "limit" and preview["risk_policy_id"] == "builtin-preview"
    approval = ok("approvals", "create", "--account", ACCOUNT, "--preview-id", preview["preview_id"])
    submit = ["orders", "submit", "--account", ACCOUNT, "--approval-id", approval["approval_id"]]
    assert refused(*submit, "--idempotency-key", "k1") == "PAPER_TRADING_DISABLED"
    placed = ok(*submit, "--idempotency-key", "k1", "--enable-paper")
    assert placed["client_order_id"].startswith("iag-") and len(placed["client_order_id"]) == 28
    assert ok(*submit, "--idempotency-key", "k1", "--enable-paper")["replayed"] is True
    assert refused(*submit, "--idempotency-key", "k2", "--enable-paper") == "APPROVAL_CONSUMED"
    listed = ok("approvals", "list", "--account", ACCOUNT)
    assert [row["status"] for row in listed] == ["consumed"]


def test_order_type_flags_use_the_cli_spelling(state_env: dict[str, str]) -> None:
    """`--order-type stop-limit`, `--stop-price` and `--tif gtc` reach the ticket."""
    preview = ok(*PREVIEW, "--order-type", "stop-limit", "--stop-price", "99", "--tif", "gtc", "--enable-preview")
    assert preview["ticket"]["order_type"] == "stop_limit"
    assert preview["ticket"]["stop_price"] == "99" and preview["ticket"]["time_in_force"] == "gtc"


def test_kill_switch_commands_and_limits(state_env: dict[str, str]) -> None:
    """The switch starts closed, opens and closes with a reason; limits show the live budgets."""
    assert ok("kill-switch", "status")["state"] == "closed"
    assert ok("kill-switch", "open", "--reason", "test")["state"] == "open"
    assert ok("kill-switch", "close", "--reason", "done")["state"] == "closed"
    limits = ok("limits", "status", "--account", ACCOUNT)
    assert limits["policy_id"] == "builtin-simulator-live" and limits["orders_today"] == 0


def test_live_submit_without_enable_live_is_refused(state_env: dict[str, str]) -> None:
    """Each live flag is a gate; the first missing one names itself."""
    preview = ok(*PREVIEW, "--enable-preview")
    approval = ok("approvals", "create", "--account", ACCOUNT, "--preview-id", preview["preview_id"], "--mode", "live")
    assert approval["mode"] == "live"
    args = ["orders", "live-submit", "--account", ACCOUNT, "--approval-id", approval["approval_id"],
            "--idempotency-key", "l1"]  # fmt: skip
    assert refused(*args, "--live-scope") == "LIVE_TRADING_DISABLED"
    assert refused(*args, "--enable-live") == "LIVE_SCOPE_MISSING"
    assert refused(*args, "--enable-live", "--live-scope") == "LIVE_MIGRATION_REQUIRED"
    assert refused(*args, "--enable-live", "--live-scope", "--acknowledge-paper-to-live") == "LIVE_KILL_SWITCH_CLOSED"
    placed = ok(*args, "--enable-live", "--live-scope", "--acknowledge-paper-to-live", "--open-kill-switch")
    assert placed["writer"] == "local-candidate"


def test_live_cancel_through_local_candidate_withdraws_only_its_own_candidates(state_env: dict[str, str]) -> None:
    """A local candidate is withdrawn as `LocalCandidate`; an order it never submitted is unknown, not cancelled."""
    live = ["--enable-live", "--live-scope", "--acknowledge-paper-to-live", "--open-kill-switch"]
    cancel = ["orders", "live-cancel", "--account", ACCOUNT, *live, "--live-broker", "local-candidate"]
    never = [*cancel, "--broker-order-id", "999999", "--idempotency-key", "c0"]
    result = runner.invoke(app, [*never, "--json"])
    assert result.exit_code == 2, result.output + result.stderr
    assert json.loads(result.stderr)["code"] == "INPUT_UNKNOWN_ORDER"
    forged = [*cancel, "--broker-order-id", "local-candidate-iag-000000000000000000000000", "--idempotency-key", "c1"]
    assert json.loads(runner.invoke(app, [*forged, "--json"]).stderr)["code"] == "INPUT_UNKNOWN_ORDER"
    preview = ok(*PREVIEW, "--enable-preview")
    approval = ok("approvals", "create", "--account", ACCOUNT, "--preview-id", preview["preview_id"], "--mode", "live")
    placed = ok("orders", "live-submit", "--account", ACCOUNT, "--approval-id", approval["approval_id"],
                "--idempotency-key", "l1", *live)  # fmt: skip
    assert placed["broker_status"] == "LocalCandidate"
    withdrawn = ok(*cancel, "--broker-order-id", placed["broker_order_id"], "--idempotency-key", "c2")
    assert (withdrawn["status"], withdrawn["broker_status"], withdrawn["writer"]) == (
        "cancelled",
        "LocalCandidate",
        "local-candidate",
    )


def test_an_order_currency_the_contract_does_not_trade_in_is_a_validation_refusal(state_env: dict[str, str]) -> None:
    """AAPL trades in USD: `--currency EUR` is a wrong order field (ORDER_VALIDATION_FAILED), not unknown."""
    eur = [*PREVIEW[:-1], "EUR", "--enable-preview"]
    result = runner.invoke(app, [*eur, "--json"])
    assert result.exit_code == 1, result.output + result.stderr
    error = json.loads(result.stderr)
    assert error["code"] == "ORDER_VALIDATION_FAILED" and "USD" in error["message"] and "EUR" in error["message"]
    unknown = runner.invoke(app, [*PREVIEW[:5], "ZZZZ", *PREVIEW[6:-1], "EUR", "--enable-preview", "--json"])
    assert json.loads(unknown.stderr)["code"] == "INPUT_UNKNOWN_CONTRACT"


def test_an_approval_is_for_one_mode_only(state_env: dict[str, str]) -> None:
    """A paper account's approval defaults to paper and cannot be spent on a live submit (nor live on paper)."""
    preview = ok(*PREVIEW, "--enable-preview")
    paper = ok("approvals", "create", "--account", ACCOUNT, "--preview-id", preview["preview_id"])
    assert paper["mode"] == "paper"
    live_flags = ["--enable-live", "--live-scope", "--acknowledge-paper-to-live", "--open-kill-switch"]
    live_args = ["orders", "live-submit", "--account", ACCOUNT, "--approval-id", paper["approval_id"],
                 "--idempotency-key", "m1", *live_flags]  # fmt: skip
    assert refused(*live_args) == "APPROVAL_MODE_MISMATCH"
    live = ok("approvals", "create", "--account", ACCOUNT, "--preview-id", preview["preview_id"], "--mode", "live")
    paper_args = ["orders", "submit", "--account", ACCOUNT, "--approval-id", live["approval_id"],
                  "--idempotency-key", "m2", "--enable-paper"]  # fmt: skip
    assert refused(*paper_args) == "APPROVAL_MODE_MISMATCH"
    assert ok(*paper_args[:5], paper["approval_id"], "--idempotency-key", "m3", "--enable-paper")["mode"] == "paper"
