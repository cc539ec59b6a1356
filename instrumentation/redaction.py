"""Mask secrets before a line is written: by field name, and bearer tokens/JWTs in text."""

from __future__ import annotations

import re
from functools import lru_cache
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


@lru_cache(maxsize=4096)
def is_secret_key(key: str) -> bool:
    """True for field names such as ``Authorization``, ``db_password`` or ``x-api-key``."""
    return _SECRET_KEY.search(key.lower()) is not None


def _mask_match(match: re.Match[str]) -> str:
    prefix = match.group(1) or match.group(2) or ""
    return prefix + MASK


def redact_text(text: str) -> str:
    """Mask bearer tokens, JWTs and ``password=…``-style pairs inside free text."""
    return _SECRET_IN_TEXT.sub(_mask_match, text)


def redact_value(key: str, value: Any, depth: int = 0) -> Any:
    """The value to log under `key`: masked when the key names a secret, nested dicts too."""
    if is_secret_key(key):
        return MASK
    if isinstance(value, dict) and depth < 4:
        return {k: redact_value(str(k), v, depth + 1) for k, v in value.items()}
    if isinstance(value, str) and len(value) > 16:
        return redact_text(value)
    return value
