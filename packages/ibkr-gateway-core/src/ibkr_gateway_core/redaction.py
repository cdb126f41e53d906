"""Redaction of secrets before anything is stored or shown.

`redact` replaces the values of sensitive keys (at any depth) and values that look like secrets
with `"[REDACTED]"`, and says where it did so. A key whose own name would trip the output guard
(say `refresh_token`) is renamed too, so a redacted value can always be exported.
`find_secret_markers` is that output guard: text containing a marker is refused with `OUTPUT_UNSAFE`.
"""

from __future__ import annotations

import functools
import re
from typing import Final

from pydantic import BaseModel, ConfigDict, JsonValue

REDACTED: Final = "[REDACTED]"
"""What a redacted value (or renamed key) becomes."""

REASON_SENSITIVE_KEY: Final = "sensitive key"
REASON_SECRET_VALUE: Final = "secret-like value"
REASON_LOCAL_PATH: Final = "local path"

SENSITIVE_KEY_PARTS: Final = (
    "authorization",
    "cookie",
    "token",
    "secret",
    "password",
    "passwd",
    "session",
    "api_key",
    "apikey",
    "credential",
    "private_key",
    "privatekey",
    "header",
)
"""A key is sensitive when its lower-cased name, with `-` read as `_`, contains one of these."""

SECRET_MARKERS: Final = (
    "bearer ",
    "client_secret",
    "cookie=",
    "refresh_token",
    "password=",
    "/home/",
    "\\users\\",
    "authorization:",
)
"""Lower-case fragments that must never reach an output; matched case-insensitively."""

_LOCAL_PATH_PATTERN: Final = r"/home/[^/\s]+|/Users/[^/\s]+|(?:^|[\s\"'=:(])/root(?:/|$)|(?i:[a-z]:\\+users\\+)"
_SECRET_VALUE_PATTERN: Final = "|".join(
    (
        r"(?i:\b(?:bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,})",  # an Authorization header value
        r"\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*",  # a JWT (its header always starts eyJ)
        r"^[A-Za-z0-9_-]{16,}(?:\.[A-Za-z0-9_-]{16,}){2}$",  # any other three-part base64url token
        "(?i:" + "|".join(re.escape(marker) for marker in SECRET_MARKERS) + ")",
    )
)


@functools.cache
def _local_path() -> re.Pattern[str]:
    return re.compile(_LOCAL_PATH_PATTERN)


@functools.cache
def _any_secret() -> re.Pattern[str]:
    """One pass over the text decides: nothing to redact, or what (compiled on first need, not at start-up)."""
    return re.compile(f"{_LOCAL_PATH_PATTERN}|{_SECRET_VALUE_PATTERN}")


class Redaction(BaseModel):
    """One replaced value: where it was and why."""

    model_config = ConfigDict(defer_build=True, frozen=True, extra="forbid")

    field_path: str
    """Location such as `metadata.arguments.headers[2].authorization`."""
    reason: str
    """`sensitive key`, `secret-like value` or `local path`."""


def redact(value: JsonValue, *, root: str = "metadata") -> tuple[JsonValue, list[Redaction]]:
    """A copy of `value` with secrets replaced, and the trail of what was replaced.

    Args:
        value: JSON data (dicts, lists, scalars) to clean; it is not modified.
        root: Name of the top of `value` in the field paths of the trail.
    """
    trail: list[Redaction] = []
    return _redact(value, root, trail), trail


_FRAGMENTS: Final = ("/home/", "/users/", "/root", "users\\", "bearer", "basic", "eyj", *SECRET_MARKERS)
"""Lower-case fragments at least one of which every match of `_ANY_SECRET` contains, except a whole-text token."""
_CANDIDATES: Final = tuple(
    fragment
    for fragment in dict.fromkeys(_FRAGMENTS)
    if not any(other in fragment for other in _FRAGMENTS if other != fragment)
)
"""`_FRAGMENTS` without those that hold a shorter one (`bearer ` holds `bearer`): a text holds one of
these exactly when it holds one of those, with fewer passes over it."""
_WHOLE_TOKEN: Final = re.compile(r"[A-Za-z0-9_-]{16,}(?:\.[A-Za-z0-9_-]{16,}){2}$")
_RARE_FIRST: Final = "\\=zjqxkw/yvbghpfmu:_crstlniaeod"
"""Characters from rarest to commonest in JSON answers (a guess; any order gives the same verdict)."""
_SENTINELS: Final = tuple(
    (fragment, next(char for char in _RARE_FIRST if char in fragment)) for fragment in _CANDIDATES
)
"""Each candidate with its rarest character: a text without that character cannot hold the candidate, and
looking for one character (memchr) costs a small fraction of looking for a word."""


def secret_reason(text: str) -> str | None:
    """Why `text` must not be stored or shown as is, or None when it looks harmless.

    A plain substring pass over the lower-cased text rules out the common case (a broker answer
    with nothing secret-like in it) in microseconds; only a text holding a candidate fragment, or
    one that is a single token, goes through the full pattern.
    """
    lowered = text.lower()
    for fragment, sentinel in _SENTINELS:  # a loop, not `any(...)`: most texts are short, and a generator costs more
        if sentinel in lowered and fragment in lowered:
            break
    else:
        if not _WHOLE_TOKEN.match(text):
            return None
    if not _any_secret().search(text):
        return None
    return REASON_LOCAL_PATH if _local_path().search(text) else REASON_SECRET_VALUE


@functools.cache
def _scrub() -> re.Pattern[str]:
    """Secret-looking spans of free text, each with the value that follows its marker (compiled on first need)."""
    return re.compile(
        "|".join(
            (
                r"(?i:\b(?:bearer|basic)\s+[^\s\"',;]+)",  # an Authorization value
                r"(?i:\bauthorization\s*:\s*(?:\w+\s+)?[^\s\"',;]+)",
                r"(?i:\b[\w-]*(?:cookie|password|passwd|token|secret|api[_-]?key|session)[\w-]*\s*[=:]\s*[^\s\"',;&]+)",
                r"\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*",  # a JWT
                r"/home/[^\s\"',;]*|/Users/[^\s\"',;]*|(?<![\w.])/root(?:/[^\s\"',;]*)?|(?i:[a-z]:\\+users\\+[^\s\"',;]*)",
            )
        )
    )


def scrub_text(text: str) -> str:
    """`text` with every secret-looking span (header value, `cookie=...`, token, local path) replaced."""
    text = _scrub().sub(REDACTED, text)
    secret = _any_secret()
    return secret.sub(REDACTED, text) if secret.search(text) else text


def is_sensitive_key(key: str) -> bool:
    """True when values under `key` are secrets by name (authorization, cookie, token, ...)."""
    name = key.lower().replace("-", "_")
    return any(part in name for part in SENSITIVE_KEY_PARTS)


def find_secret_markers(text: str) -> list[str]:
    r"""The secret markers that occur in `text` (case-insensitive), never the text around them.

    JSON escapes a backslash as two, so `C:\\Users\\` in JSON text is found as well.
    """
    lowered = text.lower()
    unescaped = lowered.replace("\\\\", "\\")
    return [marker for marker in SECRET_MARKERS if marker in lowered or marker in unescaped]


def _redact(value: JsonValue, path: str, trail: list[Redaction]) -> JsonValue:
    if isinstance(value, dict):
        cleaned: dict[str, JsonValue] = {}
        for key, item in value.items():
            safe_key = _safe_key(key, cleaned)
            child = f"{path}.{safe_key}" if path else safe_key
            if safe_key != key or is_sensitive_key(key):
                cleaned[safe_key] = REDACTED
                if item == REDACTED and safe_key == key:
                    continue  # redacted before; the earlier trail already says so
                trail.append(Redaction(field_path=child, reason=REASON_SENSITIVE_KEY))
            else:
                cleaned[safe_key] = _redact(item, child, trail)
        return cleaned
    if isinstance(value, list):
        return [_redact(item, f"{path}[{index}]", trail) for index, item in enumerate(value)]
    if isinstance(value, str) and value != REDACTED:
        reason = secret_reason(value)
        if reason is not None:
            trail.append(Redaction(field_path=path, reason=reason))
            return REDACTED
    return value


def _safe_key(key: str, taken: dict[str, JsonValue]) -> str:
    """The key itself, or a neutral `[REDACTED]`, `[REDACTED]2`, ... when its name would trip the output guard."""
    if secret_reason(key) is None:
        return key
    candidate, number = REDACTED, 1
    while candidate in taken:
        number += 1
        candidate = f"{REDACTED}{number}"
    return candidate
