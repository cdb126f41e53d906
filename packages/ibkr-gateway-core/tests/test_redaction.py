"""Redaction before storage, and the output guard that refuses secret markers."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ibkr_gateway_core.redaction import (
    REDACTED,
    Redaction,
    _any_secret,  # pyright: ignore[reportPrivateUsage]
    find_secret_markers,
    redact,
    secret_reason,
)
from pydantic import JsonValue


def test_sensitive_keys_are_redacted_at_any_depth_with_their_paths() -> None:
    """Authorization, cookie, token, secret, password, session and api keys are replaced wherever they sit."""
    value: JsonValue = {
        "symbol": "AAPL",
        "a": {"b": [1, {"x": 1}, {"Authorization": "Basic dXNlcjpwYXNz", "ok": True}]},
        "Set-Cookie": "x=1",
        "nested": {"API-Key": "k", "client": {"Password": 123, "sessionId": None}},
        "request": {"headers": {"accept": "json"}},
        "accessToken": ["t1", "t2"],
    }
    cleaned, trail = redact(value)
    assert cleaned == {
        "symbol": "AAPL",
        "a": {"b": [1, {"x": 1}, {"Authorization": REDACTED, "ok": True}]},
        "Set-Cookie": REDACTED,
        "nested": {"API-Key": REDACTED, "client": {"Password": REDACTED, "sessionId": REDACTED}},
        "request": {"headers": REDACTED},
        "accessToken": REDACTED,
    }
    assert [(item.field_path, item.reason) for item in trail] == [
        ("metadata.a.b[2].Authorization", "sensitive key"),
        ("metadata.Set-Cookie", "sensitive key"),
        ("metadata.nested.API-Key", "sensitive key"),
        ("metadata.nested.client.Password", "sensitive key"),
        ("metadata.nested.client.sessionId", "sensitive key"),
        ("metadata.request.headers", "sensitive key"),
        ("metadata.accessToken", "sensitive key"),
    ]


@pytest.mark.parametrize(
    ("secret", "reason"),
    [
        pytest.param("Bearer abcdefghijklmnop", "secret-like value", id="bearer"),
        pytest.param("sent Authorization: bearer abc.def-ghi_jkl", "secret-like value", id="bearer-inside"),
        pytest.param(
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
            "secret-like value",
            id="jwt",
        ),
        pytest.param("password=hunter2", "secret-like value", id="password-assignment"),
        pytest.param("/home/alice/.config/ibkr/token.json", "local path", id="linux-home"),
        pytest.param("/root/.ssh/id_ed25519", "local path", id="root-home"),
        pytest.param("/Users/alice/Library/x", "local path", id="macos-home"),
        pytest.param("C:\\Users\\alice\\AppData", "local path", id="windows-home"),
    ],
)
def test_secret_looking_values_are_redacted_whatever_their_key(secret: str, reason: str) -> None:
    """Values are checked too: a bearer token under an innocent key is still a secret."""
    cleaned, trail = redact({"note": ["fine", secret]})
    assert cleaned == {"note": ["fine", REDACTED]}
    assert trail == [Redaction(field_path="metadata.note[1]", reason=reason)]


@pytest.mark.parametrize(
    "harmless",
    [
        "AAPL",
        "https://localhost:5000/v1/api/iserver/accounts",
        "/tmp/report.csv",
        "www.example.com",
        "2026-11-25T12:00:00Z",
        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    ],
)
def test_ordinary_values_are_kept(harmless: str) -> None:
    """Symbols, URLs, hashes and timestamps are the useful part of an audit trail."""
    assert redact({"value": harmless}) == ({"value": harmless}, [])


def test_a_key_whose_name_is_a_secret_marker_is_renamed_so_exports_stay_possible() -> None:
    """`refresh_token` as a key would make every later export refuse (OUTPUT_UNSAFE), so the key goes too."""
    cleaned, trail = redact({"refresh_token": "r1", "client_secret": "s1", "symbol": "AAPL"})
    assert cleaned == {"[REDACTED]": REDACTED, "[REDACTED]2": REDACTED, "symbol": "AAPL"}
    assert [item.field_path for item in trail] == ["metadata.[REDACTED]", "metadata.[REDACTED]2"]
    assert find_secret_markers(json.dumps(cleaned)) == []


def test_redaction_leaves_its_input_untouched_and_is_idempotent() -> None:
    """Redacting an already redacted value adds nothing to the trail."""
    original: JsonValue = {"token": "abc", "list": ["Bearer abcdefghijk"]}
    cleaned, trail = redact(original)
    assert original == {"token": "abc", "list": ["Bearer abcdefghijk"]}
    assert len(trail) == 2
    assert redact(cleaned) == (cleaned, [])


def test_the_root_name_prefixes_the_paths() -> None:
    """Callers redacting something other than metadata name it."""
    assert redact([{"cookie": "c"}], root="arguments")[1] == [
        Redaction(field_path="arguments[0].cookie", reason="sensitive key")
    ]


@pytest.mark.parametrize(
    ("text", "markers"),
    [
        pytest.param("Authorization: Bearer xyz", ["bearer ", "authorization:"], id="header"),
        pytest.param('{"CLIENT_SECRET":"x"}', ["client_secret"], id="case-insensitive"),
        pytest.param("Cookie=abc; Password=def", ["cookie=", "password="], id="assignments"),
        pytest.param('{"p":"C:\\\\Users\\\\bob"}', ["\\users\\"], id="json-escaped-windows-path"),
        pytest.param("see /home/bob/x and refresh_token", ["refresh_token", "/home/"], id="path-and-key"),
        pytest.param('{"symbol":"AAPL","quantity":"10"}', [], id="clean"),
    ],
)
def test_secret_markers_are_found_case_insensitively(text: str, markers: list[str]) -> None:
    """The output guard names the markers it saw (never the text around them)."""
    assert sorted(find_secret_markers(text)) == sorted(markers)


_FRAGMENTS = st.sampled_from(
    [
        "/home/ann",
        "/Users/bob",
        " /root/x",
        "C:\\\\Users\\\\x",
        "Bearer abcdefgh12",
        "eyJabcd.efgh.ij",
        "Basic x",
        "cookie=1",
        "PASSWORD=",
        "a" * 16 + "." + "b" * 16 + "." + "c" * 16,
        "plain",
        '{"conid": 265598}',
        " ",
        ".",
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(_FRAGMENTS, st.text(max_size=20)), max_size=6).map("".join))
def test_the_fast_secret_scan_decides_as_the_full_pattern(text: str) -> None:
    """The substring pre-check never lets through a text the full pattern would catch."""
    full = _any_secret().search(text)
    reason = secret_reason(text)
    assert (reason is None) == (full is None)


def test_each_fragment_of_the_pre_check_is_looked_for_only_where_its_rarest_character_is() -> None:
    """The one-character look-up before each fragment is exact: the character is in the fragment, so a text without
    it cannot hold the fragment; and a secret among many ordinary rows is still found whatever its case."""
    from ibkr_gateway_core.redaction import _CANDIDATES, _SENTINELS  # pyright: ignore[reportPrivateUsage]

    assert [fragment for fragment, _ in _SENTINELS] == list(_CANDIDATES)
    assert all(sentinel in fragment for fragment, sentinel in _SENTINELS)
    rows = ",".join(f'{{"symbol":"SIM{n:03d}","quantity":"{n}","currency":"USD"}}' for n in range(200))
    assert secret_reason(f"[{rows}]") is None
    secrets = ("Authorization: Basic abcdefgh1234", "REFRESH_TOKEN", "/home/alice", "C:\\USERS\\bob")
    secrets += ("eyJhbGciOi.eyJzdWIiOi.c2ln",)
    for secret in secrets:
        assert secret_reason(f'[{rows},{{"note":"{secret}"}}]') is not None, secret
