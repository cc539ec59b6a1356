"""Validation of corrstack's settings: every bad value fails at startup, naming its variable.

A setting is read once, when `setup_logging()` or `instrument_app()` runs, never inside a
request: a typo stops the service from starting instead of turning requests into 500s.
"""

from __future__ import annotations

import math
import os
import re

# Service and environment names become Prometheus label values, Loki labels and alert labels.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
_URL = re.compile(r"https?://[^\s/?#@]+(?:[/?#]\S*)?")


def env(name: str) -> str | None:
    """The variable's value, or None when it is unset or empty."""
    value = os.environ.get(name)
    return value if value else None


def safe_name(variable: str, value: str) -> str:
    """`value` when it is 1–63 characters of ``[A-Za-z0-9._-]`` starting with a letter or digit."""
    if not _NAME.fullmatch(value):
        raise ValueError(
            f"{variable}={value[:80]!r} is not a valid name: use 1-63 characters of "
            "A-Z a-z 0-9 . _ - starting with a letter or digit"
        )
    return value


def bounded_int(variable: str, raw: str | int, low: int, high: int) -> int:
    """An integer in [low, high]; anything else raises ValueError naming `variable`."""
    try:
        value = raw if isinstance(raw, int) and not isinstance(raw, bool) else int(str(raw))
    except ValueError:
        raise ValueError(f"{variable}={raw!r} is not an integer") from None
    if not low <= value <= high:
        raise ValueError(f"{variable}={raw!r} is out of range [{low}, {high}]")
    return value


def bounded_float(variable: str, raw: str | float, low: float, high: float) -> float:
    """A finite number in [low, high] (no nan, no inf); else ValueError naming `variable`."""
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{variable}={raw!r} is not a number") from None
    if not math.isfinite(value) or not low <= value <= high:
        raise ValueError(f"{variable}={raw!r} is not a finite number in [{low:g}, {high:g}]")
    return value


def http_url(variable: str, value: str) -> str:
    """An http(s) URL without credentials in it."""
    if not _URL.fullmatch(value):
        raise ValueError(
            f"{variable} must be an http:// or https:// URL without user:password, "
            f"not {value[:80]!r}"
        )
    return value
