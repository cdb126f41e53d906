"""The fuzzers' own generators and oracle: what the long runs found in them stays fixed."""

import json

from ibkr_gateway_core.registry import OPERATIONS
from ibkr_gateway_mcp.inbound import screen_message
from ibkr_gateway_mcp.schemas import input_schema

from .fuzz_cases import MALFORMED_SAMPLES, is_quiet_notification, malformed_line, tool_case
from .test_inbound import DROPPED_NOTIFICATIONS, QUIET_NOTIFICATIONS

SCHEMAS = {operation.tool: input_schema(operation.input_model) for operation in OPERATIONS.values()}


def test_a_malformed_line_is_never_a_well_formed_request() -> None:
    """The stdio long run's finding: a "broken envelope" that broke nothing was a plain ping, rightly unaudited."""
    for seed in range(3000):
        line = malformed_line(seed)
        assert line.strip() and b"\n" not in line
        if line in MALFORMED_SAMPLES or screen_message(line) is not None:
            continue
        message = json.loads(line)
        assert not ("id" in message and "method" in message), (seed, line)


def test_a_case_is_rebuilt_from_its_seed_alone() -> None:
    """A failure names its seed; the same seed gives the same case, and a few hundred seeds reach every tool."""
    assert [tool_case(seed, SCHEMAS) for seed in range(50)] == [tool_case(seed, SCHEMAS) for seed in range(50)]
    assert [malformed_line(seed) for seed in range(50)] == [malformed_line(seed) for seed in range(50)]
    assert {tool_case(seed, SCHEMAS)[0] for seed in range(2000)} == set(SCHEMAS)
    kinds = [tool_case(seed, SCHEMAS)[2] for seed in range(400)]
    assert {"schema", "hostile", "any"} == set(kinds)


def test_only_the_well_formed_housekeeping_notifications_are_quiet() -> None:
    for line in QUIET_NOTIFICATIONS:
        assert is_quiet_notification(line), line
    for line, _reason in DROPPED_NOTIFICATIONS:
        assert not is_quiet_notification(line), line
    assert not is_quiet_notification(b'{"jsonrpc":"2.0","method":"notifications/progress","params":{"progress":NaN}}')
    assert not is_quiet_notification(b'{"jsonrpc":"2.0","id":1,"method":"ping"}')
