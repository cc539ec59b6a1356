"""Make untrusted text safe to put in a log line: no control or bidi characters, bounded length."""

from __future__ import annotations

import re
from typing import Any

from instrumentation.redaction import MASK, redact_text

MAX_FIELD_CHARS = 2048
MAX_USER_ID_CHARS = 128
REPLACEMENT = "\ufffd"

# Every character of Unicode's categories Cc (controls, C0 and C1, DEL), Cf (format: bidi
# embeddings, overrides, isolates and marks — U+061C included —, zero-width characters, soft
# hyphen, tags), Zl and Zp (line and paragraph separators) and Cs (lone surrogates). None may
# reach a terminal or a log viewer raw. tests/test_sanitize.py checks this list against the
# running Python's unicodedata.
UNSAFE_RANGES = (
    (0x0000, 0x001F),
    (0x007F, 0x009F),
    (0x00AD, 0x00AD),
    (0x0600, 0x0605),
    (0x061C, 0x061C),
    (0x06DD, 0x06DD),
    (0x070F, 0x070F),
    (0x0890, 0x0891),
    (0x08E2, 0x08E2),
    (0x180E, 0x180E),
    (0x200B, 0x200F),
    (0x2028, 0x202E),
    (0x2060, 0x2064),
    (0x2066, 0x206F),
    (0xD800, 0xDFFF),
    (0xFEFF, 0xFEFF),
    (0xFFF9, 0xFFFB),
    (0x110BD, 0x110BD),
    (0x110CD, 0x110CD),
    (0x13430, 0x1343F),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0001, 0xE0001),
    (0xE0020, 0xE007F),
)


def _char_class(ranges: tuple[tuple[int, int], ...]) -> re.Pattern[str]:
    return re.compile("[" + "".join(f"\\U{low:08x}-\\U{high:08x}" for low, high in ranges) + "]")


_UNSAFE = _char_class(UNSAFE_RANGES)
# In an encoded line the JSON encoder has escaped the C0 controls already; not the others.
_UNSAFE_IN_JSON = _char_class(UNSAFE_RANGES[1:])
# User ids `clean_user_id` leaves as they are, remembered: at most 4096 of at most 64 characters.
_PLAIN_USER_ID_CHARS = 64
_PLAIN_USER_IDS = 4096
_plain_user_ids: dict[str, bool] = {}
_JWT = re.compile(r"^eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*$")


def clean_text(value: str, limit: int = MAX_FIELD_CHARS) -> str:
    """Replace unsafe characters and cut to `limit` characters (marking the cut)."""
    if len(value) > limit:
        value = value[:limit] + "…[truncated]"
    if value.isprintable():  # no Cc, Cf, Cs, Zl or Zp character: nothing to replace
        return value
    return _UNSAFE.sub(REPLACEMENT, value)


def clean_user_id(value: str) -> str:
    """A user id fit for a log line: bounded, no control characters, never a token.

    Secrets are masked before the cut, so a token longer than the bound is not left half-shown.
    """
    if value in _plain_user_ids:  # seen before, and left as it was: the common case
        return value
    if value.startswith("eyJ") and _JWT.match(value):
        return MASK
    cleaned = clean_text(redact_text(value[:MAX_FIELD_CHARS]), MAX_USER_ID_CHARS)
    if cleaned == value and len(value) <= _PLAIN_USER_ID_CHARS:
        if len(_plain_user_ids) >= _PLAIN_USER_IDS:
            _plain_user_ids.clear()  # a flood of ids costs recomputation, never memory
        _plain_user_ids[value] = True
    return cleaned


def clean_field_value(value: Any) -> Any:
    """Strings are cleaned; everything else is left to the JSON encoder."""
    return clean_text(value) if isinstance(value, str) else value


def _json_escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    code -= 0x10000  # outside the BMP: JSON writes a surrogate pair
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


def escape_unsafe_json(line: str) -> str:
    """Escape, as `\\uXXXX`, the unsafe characters that a JSON encoder leaves raw.

    They can only occur inside JSON strings, so the escaped line decodes to the same values.
    """
    if line.isascii() and "\x7f" not in line:
        return line
    return _UNSAFE_IN_JSON.sub(_json_escape, line)


def deep_clean(value: Any, depth: int = 0) -> Any:
    """Clean every string, keys too, inside nested containers (the slow path for records the
    encoder refused, such as ones holding lone surrogates)."""
    if isinstance(value, str):
        return _UNSAFE.sub(REPLACEMENT, value)
    if depth > 8:
        return REPLACEMENT
    if isinstance(value, dict):
        return {
            _UNSAFE.sub(REPLACEMENT, str(k)): deep_clean(v, depth + 1) for k, v in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [deep_clean(v, depth + 1) for v in value]
    return value
