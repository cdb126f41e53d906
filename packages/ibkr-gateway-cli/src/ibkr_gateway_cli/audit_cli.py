"""Audit commands that need more than render: checkpoint files, verify progress, a streamed export."""

import json
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from .render import block
from .runner import CliOptions, fail, run_operation, with_gateway

if TYPE_CHECKING:
    from ibkr_gateway_core.audit import Checkpoint
    from ibkr_gateway_core.errors import GatewayError
    from ibkr_gateway_core.gateway import CallResult, Gateway


def read_checkpoint(path: Path, options: CliOptions) -> dict[str, Any]:
    """A checkpoint file as JSON data; an unreadable file is an input error."""
    from ibkr_gateway_core.audit import Checkpoint
    from ibkr_gateway_core.errors import ErrorCode, GatewayError

    try:
        return Checkpoint.load(path).model_dump(mode="json")
    except GatewayError as error:
        fail(error, options)
    except (OSError, ValueError):
        fail(GatewayError(ErrorCode.INPUT_INVALID_ARGUMENT, f"Checkpoint file {path.name!r} cannot be read."), options)


def check_writable(path: Path, options: CliOptions) -> None:
    """Refuse (audited, before the checkpoint is taken) an `--output` file that cannot be written."""
    import os

    from .runner import usage_error

    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir() or not parent.is_dir() or not os.access(parent, os.W_OK):
        config = ["--config", str(options.config)] if options.config is not None else []
        fail(usage_error([*config, "audit", "checkpoint", "--output"], _unwritable(path)), options)


def save_checkpoint(checkpoint: "Checkpoint", path: Path, options: CliOptions) -> None:
    """Write the checkpoint file (mode 0600); a write that fails anyway is an input error, not a traceback."""
    from ibkr_gateway_core.errors import ErrorCode, GatewayError

    try:
        checkpoint.save(path)
    except OSError:
        fail(GatewayError(ErrorCode.INPUT_INVALID_ARGUMENT, _unwritable(path)), options)


def _unwritable(path: Path) -> str:
    return f"The checkpoint file {path.name!r} cannot be written: it is a folder, or its folder is missing or locked."


def verify(options: CliOptions, checkpoint_file: Path | None) -> None:
    """Run `audit_verify` against the checkpoint file, if any, showing progress on stderr on a terminal."""
    from ibkr_gateway_core.gateway import Gateway

    checkpoint = read_checkpoint(checkpoint_file, options) if checkpoint_file else None
    show = sys.stderr.isatty()

    def progress(done: int, total: int) -> None:
        sys.stderr.write(f"\rverified {done:,} of {total:,} events")
        if done >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()

    def setup(gateway: Gateway) -> None:
        if show:
            gateway.verify_progress = progress

    run_operation(options, "audit_verify", {"checkpoint": checkpoint}, lambda r: block(r.value), setup=setup)


_JSONL_PLACE = "@@jsonl@@"


def export(
    options: CliOptions,
    fields: Mapping[str, object],
    switches: frozenset[str],
    explain: "Callable[[GatewayError], GatewayError]",
) -> None:
    """Run `audit_export` and write its JSONL line by line as it is read back, never the whole text at once.

    The bytes are those `run_operation` would print for the whole value: the JSONL alone, or with `--json`
    the indented object holding it (the JSONL escaped line by line, which is how `json.dumps` escapes it).
    """
    from ibkr_gateway_core.audit import AuditExportStream
    from ibkr_gateway_core.call_context import Switch

    given = {key: value for key, value in fields.items() if value is not None}

    async def work(gateway: "Gateway") -> "CallResult[Any]":
        return await gateway.call(
            "audit_export", given, request_id=options.request_id, switches=switches | {Switch.STREAM_OUTPUT}
        )

    stream = cast(AuditExportStream, with_gateway(options, work, explain).value)  # STREAM_OUTPUT asked for it
    out = sys.stdout
    with stream:
        if options.json:
            rest = {
                "sha256": stream.sha256,
                "count": stream.count,
                "first_sequence": stream.first_sequence,
                "last_sequence": stream.last_sequence,
            }
            head, tail = json.dumps({"jsonl": _JSONL_PLACE, **rest}, indent=2).split(json.dumps(_JSONL_PLACE))
            out.write(head + '"')
            for line in stream.lines():
                out.write(json.dumps(line)[1:-1])
            out.write('"' + tail + "\n")
        elif stream.count == 0:
            out.write("\n")  # what printing an empty JSONL gives
        else:
            for line in stream.lines():
                out.write(line)
