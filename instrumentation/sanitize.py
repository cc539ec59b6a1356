"""Make untrusted text safe to put in a log line: no control or bidi characters, bounded length."""

from __future__ import annotations

import re
from typing import Any

MAX_FIELD_CHARS = 2048
MAX_USER_ID_CHARS = 128
REPLACEMENT = "\ufffd"

# C0 and C1 controls, DEL, line/paragraph separators, bidi embeddings/overrides/isolates,
# direction marks and lone surrogates: none of these may reach a terminal or a log viewer raw.
_UNSAFE_CHARS = "\x00-\x1f\x7f-\x9f\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff"
_UNSAFE = re.compile(f"[{_UNSAFE_CHARS}]")
# The same characters as orjson writes them (it escapes only U+0000–U+001F itself).
_UNSAFE_UTF8 = re.compile(rb"\x7f|\xc2[\x80-\x9f]|\xe2\x80[\x8e\x8f\xa8-\xae]|\xe2\x81[\xa6-\xa9]")
_JWT = re.compile(r"^eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*$")


def clean_text(value: str, limit: int = MAX_FIELD_CHARS) -> str:
    """Replace unsafe characters and cut to `limit` characters (marking the cut)."""
    if len(value) > limit:
        value = value[:limit] + "…[truncated]"
    if value.isprintable():  # no Cc, Cf, Cs, Zl or Zp character: nothing to replace
        return value
    return _UNSAFE.sub(REPLACEMENT, value)


def clean_user_id(value: str) -> str:
    """A user id fit for a log line: bounded, no control characters, never a token."""
    if value.startswith("eyJ") and _JWT.match(value):
        return "[REDACTED]"
    return clean_text(value, MAX_USER_ID_CHARS)


def clean_field_value(value: Any) -> Any:
    """Strings are cleaned; everything else is left to the JSON encoder."""
    return clean_text(value) if isinstance(value, str) else value


def escape_unsafe_json(line: bytes) -> bytes:
    """Escape, as `\\uXXXX`, the unsafe characters that a JSON encoder leaves raw.

    They can only occur inside JSON strings, so the escaped line decodes to the same values.
    """
    if (line.isascii() and b"\x7f" not in line) or _UNSAFE_UTF8.search(line) is None:
        return line
    return _UNSAFE_UTF8.sub(lambda m: f"\\u{ord(m.group().decode()):04x}".encode(), line)


def deep_clean(value: Any, depth: int = 0) -> Any:
    """Clean every string inside nested containers (the slow path for un-encodable records)."""
    if isinstance(value, str):
        return _UNSAFE.sub(REPLACEMENT, value)
    if depth > 8:
        return REPLACEMENT
    if isinstance(value, dict):
        return {str(k): deep_clean(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [deep_clean(v, depth + 1) for v in value]
    return value
