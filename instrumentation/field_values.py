"""Any value a caller logs, made JSON-native, bounded and redacted before it is encoded.

Handlers log what they have: dicts, lists of dicts, dataclasses, pydantic models, bytes,
exceptions, objects with a huge ``__str__``. Each becomes plain JSON data here, walked to a
depth limit, with every key checked against the secret-key policy and every string bounded and
checked for secrets in text. What was cut is marked, never written raw:

- a string past `MAX_FIELD_CHARS` ends in ``…[truncated]``;
- a container past `MAX_ITEMS` entries ends in ``"…[+N more]"``;
- a container nested deeper than `MAX_DEPTH` becomes ``"[depth limit]"``;
- once a field has used `FIELD_BUDGET_CHARS` of text, the rest is ``"[truncated]"``.

The limits are documented in docs/reference.md; the whole line has its own maximum
(`log_format.MAX_LINE_BYTES`).
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
from collections.abc import Iterable, Mapping
from itertools import islice
from typing import Any

from instrumentation.error_fields import error_fields, safe_str
from instrumentation.redaction import MASK, is_secret_key, redact_text
from instrumentation.sanitize import MAX_FIELD_CHARS, clean_text

MAX_KEY_CHARS = 128
MAX_ITEMS = 100
MAX_DEPTH = 6
FIELD_BUDGET_CHARS = 16 * 1024
DEPTH_MARK = "[depth limit]"
CUT_MARK = "[truncated]"
TRUNCATED = "…[truncated]"
# orjson encodes integers of up to 64 bits; a larger one is written as its (bounded) digits.
INT_MIN, INT_MAX = -(2**63), 2**64 - 1
_SEQUENCES = (list, tuple, set, frozenset)


def field_text(value: str, limit: int = MAX_FIELD_CHARS) -> str:
    """A string field: bounded to `limit` characters (the cut marked), secrets in it masked."""
    if len(value) > limit:
        value = value[:limit] + TRUNCATED
    return redact_text(value)


def field_key(key: object) -> str:
    """A key fit for a line: a string of at most `MAX_KEY_CHARS` characters."""
    text = key if type(key) is str else safe_str(key, MAX_KEY_CHARS)
    if len(text) > MAX_KEY_CHARS or not text.isprintable():
        text = clean_text(text, MAX_KEY_CHARS)  # no lone surrogate or control in a key
    return text


def key_is_secret(key: str) -> bool:
    """The secret-key policy for a key of any length (a long key is judged by its two ends)."""
    if len(key) > 2 * MAX_KEY_CHARS:
        key = key[:MAX_KEY_CHARS] + " " + key[-MAX_KEY_CHARS:]
    return is_secret_key(key)


def field_value(key: str, value: Any) -> Any:
    """The value to write under `key`: masked when the key names a secret, else made safe."""
    if key_is_secret(key):
        return MASK
    kind = type(value)
    if kind is str:
        return field_text(value)
    if kind is bool or kind is float or value is None:
        return value
    if kind is int:
        return value if INT_MIN <= value <= INT_MAX else _big_int(value)
    return _Walk().value(value, 0)


def _big_int(value: int) -> str:
    digits = len(str(abs(value))) if value.bit_length() < 4000 else None
    if digits is not None and digits <= 64:
        return str(value)
    return f"[integer of {value.bit_length()} bits]"


class _Walk:
    """One field's walk; `budget` is the text it may still write."""

    __slots__ = ("budget",)

    def __init__(self) -> None:
        self.budget = FIELD_BUDGET_CHARS

    def text(self, value: str) -> str:
        if self.budget <= 0:
            return CUT_MARK
        value = field_text(value, min(MAX_FIELD_CHARS, self.budget))
        self.budget -= len(value)
        return value

    def value(self, value: Any, depth: int) -> Any:
        kind = type(value)
        if kind is str:
            return self.text(value)
        if kind is bool or kind is float or value is None:
            return value
        if kind is int:
            return value if INT_MIN <= value <= INT_MAX else _big_int(value)
        if depth >= MAX_DEPTH:
            return DEPTH_MARK
        if isinstance(value, Mapping):
            return self.mapping(value.items(), len(value), depth)
        if isinstance(value, _SEQUENCES):
            return self.sequence(value, len(value), depth)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            names = [f.name for f in dataclasses.fields(value)]
            return self.mapping(((n, getattr(value, n, None)) for n in names), len(names), depth)
        model_dump = getattr(value, "model_dump", None)  # pydantic v2 models
        if callable(model_dump) and not isinstance(value, type):
            try:
                dumped = model_dump()
            except Exception:
                dumped = None
            if isinstance(dumped, Mapping):
                return self.mapping(dumped.items(), len(dumped), depth)
        if isinstance(value, bytes | bytearray | memoryview):
            raw = bytes(value[: MAX_FIELD_CHARS + 1])
            return self.text(raw.decode("utf-8", "backslashreplace"))
        if isinstance(value, enum.Enum):
            return self.value(value.value, depth + 1)
        if isinstance(value, datetime.date | datetime.time):
            return value.isoformat()
        if isinstance(value, BaseException):
            return error_fields(value)
        # Anything else as its text: bounded, and secrets in it (a repr's `password='…'`) masked.
        return self.text(safe_str(value, MAX_FIELD_CHARS + 1))

    def mapping(self, items: Iterable[tuple[Any, Any]], size: int, depth: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, item in islice(items, MAX_ITEMS):
            text = key if type(key) is str else safe_str(key, MAX_KEY_CHARS)
            name = field_key(text)
            if self.budget <= 0:
                out[name] = CUT_MARK
                break
            out[name] = MASK if key_is_secret(text) else self.value(item, depth + 1)
        if size > MAX_ITEMS:
            out["…"] = f"[+{size - MAX_ITEMS} more]"
        return out

    def sequence(self, items: Iterable[Any], size: int, depth: int) -> list[Any]:
        out: list[Any] = []
        for item in islice(items, MAX_ITEMS):
            if self.budget <= 0:
                out.append(CUT_MARK)
                break
            out.append(self.value(item, depth + 1))
        if size > MAX_ITEMS:
            out.append(f"…[+{size - MAX_ITEMS} more]")
        return out
