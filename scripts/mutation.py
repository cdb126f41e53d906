"""Mutation testing of the order path with mutmut: how many one-line changes to the code the tests notice.

mutmut expects its sources under `src/` of the directory it runs in, and imports them by module name, so
for each package this script builds a scratch project (in `.mutation/<package>/`, ignored by git) holding
a copy of the package's `src/`, the tests that exercise the order path, and the pytest and mutmut
settings; runs `mutmut run` there with the workspace's interpreter; and prints the kill rate per module
and in total. Survivors are listed with `--survivors`; each is either killed by a new test or explained in
docs/reliability.md ("Mutation testing").

    uv run python scripts/mutation.py                  # both packages, every order-path module
    uv run python scripts/mutation.py --package core --modules orders/gates.py orders/risk.py
    uv run python scripts/mutation.py --survivors      # also print each survivor's diff

The goal (≥ 90% killed over the order path) is printed with the result; the exit code is 0 when it is met.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
import tokenize
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
GOAL = 0.90


@dataclass(frozen=True)
class Target:
    """One package's order-path modules and the tests that should notice a change to them."""

    package: str
    import_name: str
    modules: tuple[str, ...]
    tests: tuple[str, ...]


CORE_TESTS = (
    "packages/ibkr-gateway-core/tests/test_gates.py",
    "packages/ibkr-gateway-core/tests/test_gateway.py",
    "packages/ibkr-gateway-core/tests/test_library_methods.py",
    "packages/ibkr-gateway-core/tests/test_state.py",
    "packages/ibkr-gateway-core/tests/test_gate_helpers.py",
    "packages/ibkr-gateway-core/tests/test_gate_details.py",
    "packages/ibkr-gateway-cli/tests/test_attack_small.py",
    "tests-integration/test_attack_approvals.py",
    "tests-integration/test_attack_exposure.py",
    "tests-integration/test_attack_live_invariants.py",
    "tests-integration/test_reliability_gates.py",
    "tests-integration/test_preview_decisions.py",
    "tests-integration/test_reliability_broker.py",
    "tests-integration/test_degraded_session_writes.py",
    "tests-integration/test_background_reconcile.py",
    "tests-integration/test_kill_switch_details.py",
    "tests-integration/test_approval_details.py",
    "tests-integration/test_keyed_cancel_details.py",
    "tests-integration/test_live_desk_details.py",
    "tests-integration/test_resend_grace.py",
    "tests-integration/test_lost_answer_details.py",
    "tests-integration/test_preview_details.py",
    "tests-integration/test_bracket_cancel_details.py",
    "tests-integration/test_brackets_and_modify.py",
    "tests-integration/test_keyed_write_details.py",
    *(
        f"packages/ibkr-gateway-core/tests/test_state_backends.py::{test}[sqlite]"
        for test in (
            "test_previews_approvals_and_revocation_round_trip",
            "test_previews_list_with_approvals_and_denials_and_a_denial_is_made_once",
            "test_the_record_lifecycle_and_live_backlog",
            "test_one_approval_is_consumed_once_across_replicas",
            "test_the_kill_switch_closed_by_one_replica_refuses_on_another_at_once",
            "test_risk_usage_counts_every_replica_s_submits",
            "test_a_failed_write_gives_its_approval_back_once_and_never_revives_a_revoked_one",
            "test_a_fill_raises_the_counted_notional_and_never_lowers_it",
            "test_a_claim_holds_its_orders_for_the_lease_and_returns_them_as_tracked",
            "test_stored_records_keep_their_context_notional_and_error",
        )
    ),
)
"""Fast tests that drive the core order path (a few seconds in all): unit tests, attack tests and the
in-process integration tests. The slow suites (subprocess CLIs, the long workflow, the state machine)
stay out; mutmut narrows these further to the tests that reach each mutated function."""

TARGETS = {
    "core": Target(
        "ibkr-gateway-core",
        "ibkr_gateway_core",
        modules=(
            "orders/gates.py",
            "orders/risk.py",
            "orders/approvals.py",
            "orders/previews.py",
            "orders/keyed_writes.py",
            "orders/live_desk.py",
            "orders/paper_desk.py",
            "orders/kill_switch.py",
            "orders/store.py",
        ),
        tests=CORE_TESTS,
    ),
    "cpapi": Target(
        "ibkr-gateway-cpapi",
        "ibkr_gateway_cpapi",
        modules=("writer.py", "_order_body.py", "_order_mapping.py", "client.py"),
        tests=(
            "packages/ibkr-gateway-cpapi/tests/test_writer.py",
            "packages/ibkr-gateway-cpapi/tests/test_client.py",
            "packages/ibkr-gateway-cpapi/tests/test_brackets_writer.py",
            "packages/ibkr-gateway-cpapi/tests/test_mapping.py",
            "packages/ibkr-gateway-cpapi/tests/test_execution_mapping.py",
            "packages/ibkr-gateway-cpapi/tests/test_writer_duplicates.py",
            "packages/ibkr-gateway-cpapi/tests/test_client_from_config.py",
            "packages/ibkr-gateway-cpapi/tests/test_order_body_refusals.py",
            "packages/ibkr-gateway-cpapi/tests/test_writer_refusal_details.py",
            "packages/ibkr-gateway-cpapi/tests/test_pacing.py",
            "packages/ibkr-gateway-cpapi/tests/test_session_not_ready.py",
            "packages/ibkr-gateway-cpapi/tests/test_reply_ids.py::"
            "test_without_a_shared_slot_the_simulator_catches_stale_confirmations",
            *(
                f"packages/ibkr-gateway-cpapi/tests/test_reply_ids.py::{test}[sqlite]"
                for test in (
                    "test_two_processes_on_one_login_never_supersede_each_others_questions",
                    "test_a_process_whose_claim_expired_never_confirms_its_superseded_question",
                    "test_a_slot_held_by_another_process_refuses_before_sending_anything",
                    "test_a_slot_left_by_a_stopped_process_expires",
                    "test_a_process_arriving_mid_confirmation_waits_and_never_supersedes_the_question",
                )
            ),
            *(
                f"packages/ibkr-gateway-cpapi/tests/test_advisor.py::{test}"
                for test in (
                    "test_an_order_for_b_lands_on_b_when_a_was_selected",
                    "test_cancel_and_modify_act_on_the_account_they_name",
                    "test_a_bracket_for_b_lands_on_b_when_a_was_selected",
                    "test_a_nightly_reset_between_selection_and_placement_selects_again",
                    "test_an_unconfirmed_switch_refuses_the_order_and_sends_nothing",
                )
            ),
            "tests-integration/test_pacing_and_caches.py::test_identical_reads_in_flight_share_one_upstream_request",
            "tests-integration/test_pacing_and_caches.py::test_a_429_naming_the_ip_stops_every_endpoint",
            "tests-integration/test_attack_live_invariants.py",
            "tests-integration/test_attack_exposure.py",
            "tests-integration/test_reliability_broker.py",
            "tests-integration/test_degraded_session_writes.py",
        ),
    ),
}

DESELECTED = (
    "tests-integration/test_reliability_gates.py::test_a_locked_state_database_refuses_the_order_and_places_nothing",
    "tests-integration/test_brackets_and_modify.py::test_the_documented_paper_bracket_flow_as_separate_processes",
)
"""Tests that only wait (a busy timeout of ~20 s) or run the installed CLI in subprocesses (which import the
unchanged package), and reach no order-path branch another test misses."""

COPIED = ("packages", "tests-integration", "scripts", "config", "fixtures", "conftest.py")
"""What the scratch project copies from the workspace: tests, their helpers and the files they read."""

IGNORED = shutil.ignore_patterns("__pycache__", ".venv", "*.egg-info", "node_modules", ".pytest_cache", "dist")


def _pyproject(target: Target, modules: tuple[str, ...]) -> str:
    """pytest settings as the workspace's (fail fast, quiet, no cache) and mutmut's."""
    only = ", ".join(f'"src/{target.import_name}/{module}"' for module in modules)
    tests = ", ".join(f'"{test}"' for test in target.tests)
    deselect = ", ".join(f'"--deselect", "{test}"' for test in DESELECTED)
    return f"""\
[tool.pytest.ini_options]
addopts = ["-p", "anyio", "-p", "postgres_fixtures", "--import-mode=importlib", "-x", "-q",
           "-p", "no:cacheprovider", "-p", "no:unraisableexception", "--hypothesis-seed=0", {deselect}]
pythonpath = ["tests-integration"]
xfail_strict = true
filterwarnings = ["error", "default::mcp.MCPDeprecationWarning"]
markers = ["slow: takes more than a few seconds"]

[tool.mutmut]
source_paths = ["src"]
only_mutate = [{only}]
also_copy = [{", ".join(f'"{name}"' for name in COPIED)}]
pytest_add_cli_args_test_selection = [{tests}]
use_git_change_detection = false
"""


def build_scratch(target: Target, modules: tuple[str, ...], scratch: Path) -> None:
    """A fresh scratch project: the package's src/, the tests with the layout they expect, pyproject.toml."""
    if scratch.exists():
        shutil.rmtree(scratch)
    scratch.mkdir(parents=True)
    shutil.copytree(ROOT / "packages" / target.package / "src", scratch / "src", ignore=IGNORED)
    for name in COPIED:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, scratch / name, ignore=IGNORED)
        else:
            shutil.copy2(source, scratch / name)
    (scratch / "pyproject.toml").write_text(_pyproject(target, modules), encoding="utf-8")


def run_mutmut(scratch: Path, max_children: int, mutants: list[str] | None = None) -> None:
    """`mutmut run` in the scratch project, with this interpreter (the workspace venv): every mutant, or these."""
    env = {name: value for name, value in os.environ.items() if name != "PYTHONWARNDEFAULTENCODING"}
    env.setdefault("IBKR_AGENT_STATE_DIR", str(scratch / "state"))
    command = [sys.executable, "-m", "mutmut", "run", "--max-children", str(max_children), *(mutants or [])]
    subprocess.run(command, cwd=scratch, env=env, check=False)


@dataclass
class Outcome:
    """One module's mutants by outcome."""

    killed: int = 0
    timeout: int = 0
    equivalent: int = 0
    not_run: int = 0
    survivors: list[str] = field(default_factory=list[str])


def _read_meta(meta: Path) -> dict[str, Any]:
    """A meta file, read again while a running mutmut is rewriting it."""
    for _ in range(20):
        try:
            data: dict[str, Any] = json.loads(meta.read_text(encoding="utf-8"))
            return data
        except json.JSONDecodeError:
            time.sleep(0.1)
    raise SystemExit(f"{meta.name}: unreadable mutmut results")


def results(scratch: Path) -> dict[str, Outcome]:
    """Outcomes per module, read from mutmut's meta files."""
    outcomes: dict[str, Outcome] = {}
    for meta in sorted((scratch / "mutants" / "src").rglob("*.meta")):
        data = _read_meta(meta)
        module = meta.relative_to(scratch / "mutants" / "src").as_posix().removesuffix(".meta")
        outcome = outcomes.setdefault(module.partition("/")[2], Outcome())  # the path under the package
        for name, exit_code in data.get("exit_code_by_key", {}).items():
            if exit_code == SKIPPED:
                outcome.equivalent += 1  # set aside before the run by `equivalence`
            elif exit_code is None:
                outcome.not_run += 1
            elif exit_code in (0, 5, 33):
                outcome.survivors.append(name)  # the tests passed, or no selected test reaches the function
            elif exit_code in (1, 3, 37):
                outcome.killed += 1
            elif exit_code in (36, 24, -24, 152, 255, -9, -11):
                outcome.timeout += 1  # the tests never finished: noticed
            else:
                outcome.not_run += 1
    return outcomes


GENERATE = """
import json, os, sys
from mutmut.__main__ import copy_also_copy_files, copy_src_dir, create_mutants, setup_source_paths
from mutmut.__main__ import get_diff_for_mutant, walk_mutatable_files
from mutmut.mutation.data import SourceFileMutationData
from mutmut.mutation.trampoline import set_mutant_under_test
set_mutant_under_test("mutant_generation")
os.makedirs("mutants", exist_ok=True)
copy_src_dir()
copy_also_copy_files()
setup_source_paths()
create_mutants(int(sys.argv[1]))
diffs = {}
for path in walk_mutatable_files():
    data = SourceFileMutationData(path=path)
    data.load()
    for name in data.exit_code_by_key:
        diffs[name] = get_diff_for_mutant(name, path=path)
with open("diffs.json", "w", encoding="utf-8") as out:
    json.dump(diffs, out)
"""
"""Run in the scratch project: mutmut's own generation of the mutants (as `mutmut run` starts), then the diff
of each into diffs.json, so equivalent ones can be set aside before any test runs."""

SKIPPED = 34
"""mutmut's exit code for a mutant it should not run: the ones `equivalence` explains."""


def generate(scratch: Path, max_children: int) -> dict[str, str]:
    """Generate the mutants; mark the equivalent ones skipped in mutmut's meta files; each mutant's diff."""
    env = {name: value for name, value in os.environ.items() if name != "PYTHONWARNDEFAULTENCODING"}
    subprocess.run([sys.executable, "-c", GENERATE, str(max_children)], cwd=scratch, env=env, check=True)
    diffs: dict[str, str] = json.loads((scratch / "diffs.json").read_text(encoding="utf-8"))
    for meta in (scratch / "mutants" / "src").rglob("*.meta"):
        data = json.loads(meta.read_text(encoding="utf-8"))
        codes: dict[str, int | None] = data["exit_code_by_key"]
        for name, code in codes.items():
            if code is None and equivalence(diffs.get(name, "")) is not None:
                codes[name] = SKIPPED
        meta.write_text(json.dumps(data, indent=4), encoding="utf-8")
    return diffs


def load_diffs(scratch: Path) -> dict[str, str]:
    path = scratch / "diffs.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


_CLOSED = 'state = await self._set(ctx, "closed", args.reason, audit=False)'
_PAPER_CANCEL = 'return await self._writes.cancel(ctx, args, mode="paper", writer_name=PAPER_WRITER, legs=group)'
_CANCEL_REQUEST = (
    'request: dict[str, object] = {"account_id": args.account_id, "broker_order_id": args.broker_order_id}'
)
_RELEASE = "if release_approval and row is not None and row[0] is not None:"
_LIVE_RISK = 'raise_refusal(check_risk(ticket, policy, stage="live", quote=quote))'
_COST = '(required(to_decimal(t.size), "execution size") * required(to_decimal(t.price), "price") for t in trades),'
_NEVER_SENT = 'done.append(leg.model_copy(update={"status": "unknown", "broker_status": None}))  # as stored'
_DETAILS = "details=cast(dict[str, object], details) if isinstance(details, dict) else None,"
_NO_POLICY = 'raise GatewayError(ErrorCode.LIVE_POLICY_UNKNOWN, "The live risk policy is not defined.")'
_ONE_OF = 'raise GatewayError(ErrorCode.INPUT_INVALID_ARGUMENT, "Pass exactly one of symbol and contract_id.")'
_BODY_PRICES = {
    'order["price"] = json_number(_require(ticket.limit_price, "limit_price", "limit"))': ("limit_price", "limit"),
    'order["price"] = json_number(_require(ticket.stop_price, "stop_price", "stop"))': ("stop_price", "stop"),
    'order["price"] = json_number(_require(ticket.limit_price, "limit_price", "stop_limit"))': (
        "limit_price",
        "stop_limit",
    ),
    'order["auxPrice"] = json_number(_require(ticket.stop_price, "stop_price", "stop_limit"))': (
        "stop_price",
        "stop_limit",
    ),
}
_LEGS = '**({"legs": [leg.model_dump(mode="json") for leg in legs]} if legs is not None else {}),'
_POLLED = "order.account_id, order.broker_order_id, order.writer, order.client_order_id, current.status"

EQUIVALENT: dict[tuple[str, str], str] = {
    **{
        (_CLOSED, _CLOSED.replace('"closed"', other)): '`_set` stores `open` for "open" and `closed` for anything else'
        for other in ("None", '"XXclosedXX"', '"CLOSED"')
    },
    **{
        (line, line.replace("audit=False", "audit=None")): "`audit` is only tested for truth: None is False"
        for line in (_CLOSED, 'return await self._set(ctx, "open", args.reason, audit=False)')
    },
    **{
        (_CANCEL_REQUEST, _CANCEL_REQUEST.replace(f'"{key}"', renamed)): "a field's name in the hashed cancel request: "
        "the hash is only ever compared with hashes the same code made"
        for key in ("account_id", "broker_order_id")
        for renamed in (f'"XX{key}XX"', f'"{key.upper()}"')
    },
    **{
        ('request["group"] = True', after): "the group marker's name or value: any of them keeps a bracket cancel's "
        "request hash apart from a plain cancel's"
        for after in (
            'request["group"] = None',
            'request["group"] = False',
            'request["XXgroupXX"] = True',
            'request["GROUP"] = True',
        )
    },
    (
        "ack = await desk.writer(order.writer).cancel(order.account_id, order.broker_order_id)",
        "ack = await desk.writer(None).cancel(order.account_id, order.broker_order_id)",
    ): "only Client Portal orders are tracked for reconciliation, and the desk's default writer is that one",
    ("if legs is not None:", "if legs is None:"): "the group marker on plain cancels instead of bracket cancels still "
    "keeps the two kinds of request hash apart",
    **{
        (_PAPER_CANCEL, _PAPER_CANCEL.replace('mode="paper"', mode)): "a paper cancel's flow name: only `live_cancel` "
        "and the `_cancel` suffix are ever tested, and its keys stay apart from live cancels' either way"
        for mode in ("mode=None", 'mode="XXpaperXX"', 'mode="PAPER"')
    },
    (
        "rows = await desk.run(lambda: desk.store.previews(args.account_id, 500 if args.pending_only else args.limit))",
        "rows = await desk.run(lambda: desk.store.previews(args.account_id, 500 if (args.pending_only) or True else "
        "args.limit))",
    ): "reading 500 previews instead of `limit` without `pending_only`: the list is cut to `limit` after filtering",
    (
        "_approval((row[3], row[4])) if row[3] is not None else None,",
        "_approval((row[3], row[4])) if row[4] is not None else None,",
    ): "the newest approval's payload and status come from the same row: both are there or neither",
    **{
        (line, line.replace('"status"', key)): "an approval's status in its stored payload: the status column decides, "
        "and `_approval` always takes the status from it"
        for line in (
            'released = _approval(row).model_copy(update={"status": "approved", "consumed_at": None})',
            'update = {"status": "revoked", "revoked_at": denial.denied_at, "revoke_reason": "preview denied"}',
        )
        for key in ('"XXstatusXX"', '"STATUS"')
    },
    **{
        (_LIVE_RISK, _LIVE_RISK.replace('stage="live"', stage)): "`check_risk` tells only `preview` apart from any "
        "other stage: every other stage takes the live codes"
        for stage in ("stage=None", 'stage="XXliveXX"', 'stage="LIVE"')
    },
    (
        "return local.replace(hour=0, minute=0, second=0, microsecond=0).astimezone(UTC)",
        "return local.replace(hour=0, minute=0, second=0, microsecond=0).astimezone(None)",
    ): "the same instant in the machine's zone: comparisons use the instant and the store writes it in UTC",
    (
        "configured = config.safety.live_trading_enabled and live.enabled",
        "configured = config.safety.live_trading_enabled or live.enabled",
    ): "the configuration refuses the two switches disagreeing (`CONFIG_LIVE_TRADING_FORBIDDEN`)",
    **{
        (_NEVER_SENT, _NEVER_SENT.replace(update, after)): "a leg without a broker id is stored `unknown` without a "
        "broker status (an exit the broker never acknowledged, or a bracket settled by its parent): the update "
        "changes nothing"
        for update, after in (
            ('update={"status": "unknown", "broker_status": None}', "update=None"),
            ('"status"', '"XXstatusXX"'),
            ('"status"', '"STATUS"'),
            ('"broker_status"', '"XXbroker_statusXX"'),
            ('"broker_status"', '"BROKER_STATUS"'),
        )
    },
    **{
        ('kind = record.context.get("kind", "order")', after): "a record without a kind is neither a modification "
        "nor a bracket: `None` and `order` take the same path"
        for after in ('kind = record.context.get("kind", None)', 'kind = record.context.get("kind", )')
    },
    **{
        (_DETAILS, after): "`cast` does nothing at run time, and stored details are a dict or missing (None either way)"
        for after in (
            "details=cast(None, details) if isinstance(details, dict) else None,",
            "details=cast(dict[str, object], details) if (isinstance(details, dict)) or True else None,",
        )
    },
    **{
        (_NO_POLICY, after): "unreachable: `check_live_switches` refuses an undefined policy first (this check is "
        "for the type checker)"
        for after in (
            'raise GatewayError(None, "The live risk policy is not defined.")',
            "raise GatewayError(ErrorCode.LIVE_POLICY_UNKNOWN, None)",
            'raise GatewayError("The live risk policy is not defined.")',
            "raise GatewayError(ErrorCode.LIVE_POLICY_UNKNOWN, )",
        )
    },
    **{
        (_ONE_OF, after): "unreachable: the request model already refuses neither or both of symbol and contract_id "
        "(this check narrows the type)"
        for after in (
            'raise GatewayError(None, "Pass exactly one of symbol and contract_id.")',
            "raise GatewayError(ErrorCode.INPUT_INVALID_ARGUMENT, None)",
            'raise GatewayError("Pass exactly one of symbol and contract_id.")',
            "raise GatewayError(ErrorCode.INPUT_INVALID_ARGUMENT, )",
        )
    },
    **{
        (line, line.replace(f'"{label}"', after)): "`validate_ticket` required this price a few lines above: the "
        "labels `_require` would name it by are never shown"
        for line, labels in _BODY_PRICES.items()
        for label in labels
        for after in ("None", f'"XX{label}XX"', f'"{label.upper()}"')
    },
    ("p = policy.policy_id", "p = None"): "the policy id only names the policy in refusal messages",
    **{
        (_LEGS, _LEGS.replace('mode="json"', mode)): "a leg holds only strings and None: its Python and JSON dumps "
        "are the same"
        for mode in ("mode=None", 'mode="XXjsonXX"', 'mode="JSON"')
    },
    **{
        ('return str(row[0]) if row is not None else "closed"', after): "a kill switch never set is closed: "
        "anything but `open` refuses"
        for after in (
            'return str(row[0]) if row is not None else "XXclosedXX"',
            'return str(row[0]) if row is not None else "CLOSED"',
        )
    },
    (
        "(LiveOrder(record.account_id, order_id, record.writer, None, leg_status), True)",
        "(LiveOrder(record.account_id, order_id, record.writer, None, None), True)",
    ): "a finished order leaves the backlog: its last status is not stored",
    ('if record.flow == "live_cancel" and finished:', 'if record.flow == "live_cancel" or finished:'): "a paper "
    "order is never in the live backlog, so taking a finished paper cancel off it changes nothing",
    (
        "await desk.run(lambda: desk.store.update_live_orders(finished, desk.clock()))",
        "await desk.run(lambda: desk.store.update_live_orders(finished, None))",
    ): "every order passed is finished and deleted: no time is stored",
    **{
        (_POLLED, _POLLED.replace(field, "None")): "a polled order's writer and cOID: `finish_claims` stores only its "
        "status and poll time"
        for field in ("order.writer", "order.client_order_id")
    },
    (
        'filled = sum((required(to_decimal(t.size), "execution size") for t in trades), Decimal(0))',
        'filled = sum((required(to_decimal(t.size), "execution size") for t in trades), )',
    ): "an order known from its fills has at least one: the sum of its Decimal sizes is a Decimal from 0 or Decimal(0)",
    ("Decimal(0),\n)", ")"): "an order known from its fills has at least one: the sum of its Decimal costs is a "
    "Decimal from 0 or Decimal(0)",
    **{
        (_COST, _COST.replace('"execution size"', label)): "the size was already required for every fill a line "
        "above, so this label is never shown"
        for label in ("None", '"XXexecution sizeXX"', '"EXECUTION SIZE"')
    },
    ("if value > counted:", "if value >= counted:"): "a fill worth exactly the counted notional stores the same value",
    (
        "release = functools.partial(desk.store.finish_claims, desk.owner, [], [], desk.clock())",
        "release = functools.partial(desk.store.finish_claims, desk.owner, [], [], None)",
    ): "releasing only skipped claims reads no time: `now` stamps updated and unpolled orders, here none",
    **{
        (_RELEASE, after): "the only caller passes `release_approval=True`, and the record it fails always exists"
        for after in (
            "if release_approval and row is not None or row[0] is not None:",
            "if release_approval or row is not None and row[0] is not None:",
        )
    },
}
"""Single mutants that cannot change behaviour, by the lines they change (before, after: stripped, joined by
newlines), with the reason (also in docs/reliability.md)."""


def _explained(mutant: str, diffs: dict[str, str]) -> str | None:
    diff = diffs.get(mutant, "")
    removed, added = _changed_lines(diff)
    key = ("\n".join(line.strip() for line in removed), "\n".join(line.strip() for line in added))
    reason = EQUIVALENT.get(key)
    return reason if reason is not None else equivalence(diff)


def _changed_lines(diff: str) -> tuple[list[str], list[str]]:
    lines = diff.splitlines()[2:]
    removed = [line[1:] for line in lines if line.startswith("-")]
    added = [line[1:] for line in lines if line.startswith("+")]
    return removed, added


def _tokens(line: str) -> list[tuple[int, str]] | None:
    try:
        return [
            (token.type, token.string)
            for token in tokenize.generate_tokens(io.StringIO(line.strip()).readline)
            if token.type not in (tokenize.NEWLINE, tokenize.NL, tokenize.ENDMARKER, tokenize.COMMENT)
        ]
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return None


SQL = re.compile(r"\b(SELECT|INSERT|UPDATE|DELETE|CREATE|WHERE|FROM|VALUES|ORDER BY)\b")
COMPARED = re.compile(r"==|!=| in |startswith|endswith|\bre\.|match|search")


QUOTED = re.compile(r"'[^']*'")


def _sql_case_only(before: str, after: str) -> bool:
    """SQL changed only in case, its quoted literals untouched: SQLite reads keywords and names in any case."""
    return (
        before != after
        and bool(SQL.search(before))
        and before.lower() == after.lower()
        and QUOTED.findall(before) == QUOTED.findall(after)
    )


_WIRE_PARSE = re.compile(r'^(\w+ = )?wire\.parse\((wire\.\w+, \w+), (None|"[^"]*")\)$')


def _wire_label(line: str) -> tuple[str | None, str] | None:
    """A `wire.parse(model, data, "label")` line without its label, or None for any other line."""
    match = _WIRE_PARSE.match(line.strip())
    return (match.group(1), match.group(2)) if match else None


def equivalence(diff: str) -> str | None:
    """Why a mutant cannot change what the order path does, or None when it can.

    Three classes, all described in docs/reliability.md: human text (a string literal with a space in it,
    i.e. a message, a log line or a stored reason, changed in case or wrapped in XX, on a line that neither
    compares it nor holds SQL; and the label `wire.parse` names an answer by in its error message), log
    calls (a `logger.` line changed) and SQL changed only in the case of its keywords and names: none
    reaches a decision, a stored field an agent reads, or the broker. Single mutants are explained in
    EQUIVALENT.
    """
    removed, added = _changed_lines(diff)
    if removed and all(line.strip().startswith("logger.") for line in removed):
        return "log line"
    if not removed or len(removed) != len(added):
        return None
    if len(removed) == 1 and removed[0].strip().startswith("user_action=") and added[0].strip() == "user_action=None,":
        return "message text"  # the catalogue's action for the code stands in for the custom one
    if all(_sql_case_only(before, after) for before, after in zip(removed, added, strict=True)):
        return "SQL case"
    if len(removed) == 1 and _wire_label(removed[0]) is not None and _wire_label(removed[0]) == _wire_label(added[0]):
        return "message text"  # `wire.parse`'s last argument only names the answer in its error message
    for before, after in zip(removed, added, strict=True):
        old, new = _tokens(before), _tokens(after)
        if old is None or new is None or len(old) != len(new) or SQL.search(before) or COMPARED.search(before):
            return None
        for (old_type, old_text), (new_type, new_text) in zip(old, new, strict=True):
            if old_text == new_text:
                continue
            if old_type != tokenize.STRING or new_type != tokenize.STRING or " " not in old_text:
                return None
    return "message text"


def refresh_tests(target: Target, modules: tuple[str, ...], scratch: Path) -> bool:
    """Copy the workspace's tests into a kept scratch project again (mutmut copies them on into mutants/),
    the package's modules that are not mutated, and the mutated modules that changed since.

    Returns whether a mutated module changed: mutmut then makes that module's mutants again, and the
    functions that changed lose their results (the others keep theirs).
    """
    source = ROOT / "packages" / target.package / "src"
    mutated = {Path(target.import_name) / module for module in modules}
    changed = False
    for path in source.rglob("*.py"):
        relative = path.relative_to(source)
        if relative not in mutated:
            for copy in (scratch / "src" / relative, scratch / "mutants" / "src" / relative):
                copy.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, copy)
        elif path.read_bytes() != (scratch / "src" / relative).read_bytes():
            shutil.copy(path, scratch / "src" / relative)  # a new mtime: mutmut sees it changed
            changed = True
    for name in COPIED:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, scratch / name, ignore=IGNORED, dirs_exist_ok=True)
        else:
            shutil.copy2(source, scratch / name)
    (scratch / "pyproject.toml").write_text(_pyproject(target, modules), encoding="utf-8")
    return changed


def _exit_codes(scratch: Path) -> dict[str, int | None]:
    codes: dict[str, int | None] = {}
    for meta in (scratch / "mutants" / "src").rglob("*.meta"):
        codes.update(_read_meta(meta).get("exit_code_by_key", {}))
    return codes


def _keep_earlier_results(scratch: Path, before: dict[str, int | None]) -> None:
    """mutmut forgets every result when the test list changes; tests were only added, so a mutant killed
    before stays killed: its earlier result is put back where mutmut left none."""
    for meta in (scratch / "mutants" / "src").rglob("*.meta"):
        data = _read_meta(meta)
        codes: dict[str, int | None] = data.get("exit_code_by_key", {})
        for name, code in codes.items():
            if code is None and before.get(name) is not None:
                codes[name] = before[name]
        meta.write_text(json.dumps(data, indent=4), encoding="utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--package", choices=sorted(TARGETS), action="append", help="default: every package")
    parser.add_argument("--modules", nargs="+", help="only these modules (paths such as orders/gates.py)")
    parser.add_argument("--max-children", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--survivors", action="store_true", help="print the diff of every surviving mutant")
    parser.add_argument("--report-only", action="store_true", help="read the last run's results, run nothing")
    parser.add_argument(
        "--rerun-survivors",
        action="store_true",
        help="keep the last run's mutants and results; copy the tests and changed modules again and rerun the "
        "survivors and the mutants of changed functions",
    )
    args = parser.parse_args()

    total_killed = total = total_equivalent = 0
    shown: list[str] = []
    for name in args.package or sorted(TARGETS):
        target = TARGETS[name]
        modules = tuple(args.modules) if args.modules else target.modules
        scratch = ROOT / ".mutation" / name
        if args.rerun_survivors and (scratch / "mutants").is_dir():
            if refresh_tests(target, modules, scratch):
                (scratch / "mutants" / "mutmut-stats.json").unlink(missing_ok=True)  # new functions need their tests
                generate(scratch, args.max_children)
            before = _exit_codes(scratch)
            diffs = load_diffs(scratch)
            again = [
                mutant
                for outcome in results(scratch).values()
                for mutant in outcome.survivors
                if _explained(mutant, diffs) is None
            ]
            again += [mutant for mutant, code in before.items() if code is None]
            if again:
                run_mutmut(scratch, args.max_children, again)
            _keep_earlier_results(scratch, before)
        elif not args.report_only:
            build_scratch(target, modules, scratch)
            generate(scratch, args.max_children)
            run_mutmut(scratch, args.max_children)
        diffs = load_diffs(scratch)
        print(f"\n{target.package}: mutants killed per module (equivalent ones left out, see docs/reliability.md)")
        for module, outcome in results(scratch).items():
            real = [mutant for mutant in outcome.survivors if _explained(mutant, diffs) is None]
            killed = outcome.killed + outcome.timeout
            counted = killed + len(real)
            left_out = outcome.equivalent + len(outcome.survivors) - len(real)
            total_killed, total, total_equivalent = total_killed + killed, total + counted, total_equivalent + left_out
            rate = killed / counted if counted else 1.0
            print(
                f"  {module:<24} {killed:>4} / {counted:<4} {rate:6.1%}"
                f"   equivalent: {left_out:<4} not run: {outcome.not_run}"
            )
            shown += [f"## {mutant}\n{diffs.get(mutant, '')}\n" for mutant in real]
    if args.survivors:
        print("\nSurvivors:\n" + "\n".join(shown))
    rate = total_killed / total if total else 0.0
    print(
        f"\norder path: {total_killed} of {total} mutants killed = {rate:.1%} (goal {GOAL:.0%});"
        f" {total_equivalent} equivalent left out"
    )
    return 0 if rate >= GOAL else 1


if __name__ == "__main__":
    raise SystemExit(main())
