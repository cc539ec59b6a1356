"""Mask secrets before a line is written: by field name, and bearer tokens/JWTs in text."""

from __future__ import annotations

import re
from typing import Any

MASK = "[REDACTED]"
# Whole words inside a key, so `access_token` and `X-Api-Key` match but `tokens_used` does not.
_SECRET_KEY = re.compile(
    r"(?:^|[_\-.])(?:authorization|password|passwd|pwd|token|api[_-]?key|secret|cookie"
    r"|credentials?|private[_-]?key)(?:$|[_\-.])"
)
_SECRET_IN_TEXT = re.compile(
    r"(?i)(\bbearer\s+)[A-Za-z0-9\-._~+/]+=*"
    r"|\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*"
    r"|(\b(?:password|passwd|pwd|token|api_key|apikey|secret)\s*[=:]\s*)[^\s&,;\"']+"
)


_MAX_STRING_CHARS = 2048
# Field name -> whether it names a secret. Read directly by the formatter's hot loop, where a
# dict lookup is much cheaper than a call; only `is_secret_key` writes it.
secret_key_cache: dict[str, bool] = {}


def is_secret_key(key: str) -> bool:
    """True for field names such as ``Authorization``, ``db_password`` or ``x-api-key``."""
    secret = secret_key_cache.get(key)
    if secret is None:
        secret = _SECRET_KEY.search(key.lower()) is not None
        if len(secret_key_cache) < 4096:  # field names are few; never let odd ones grow this
            secret_key_cache[key] = secret
    return secret


def _mask_match(match: re.Match[str]) -> str:
    prefix = match.group(1) or match.group(2) or ""
    return prefix + MASK


def redact_text(text: str) -> str:
    """Mask bearer tokens, JWTs and ``password=…``-style pairs inside free text."""
    # Each pattern needs one of these; most lines have none, and the check is far cheaper.
    if "=" in text or ":" in text or "eyJ" in text or "earer" in text or "EARER" in text:
        return _SECRET_IN_TEXT.sub(_mask_match, text)
    return text


def redact_value(key: str, value: Any, depth: int = 0) -> Any:
    """The value to log under `key`: masked when the key names a secret, nested dicts too;
    long strings are bounded."""
    if is_secret_key(key):
        return MASK
    kind = type(value)
    if kind is int or kind is float or kind is bool or value is None:
        return value
    if kind is str:
        if len(value) > _MAX_STRING_CHARS:
            value = value[:_MAX_STRING_CHARS] + "…[truncated]"
        return redact_text(value) if len(value) > 16 else value
    if isinstance(value, dict) and depth < 4:
        return {k: redact_value(str(k), v, depth + 1) for k, v in value.items()}
    return value
