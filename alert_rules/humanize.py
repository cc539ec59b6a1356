"""Python twins of the Prometheus template functions the annotations use.

They print a value the way Prometheus' `humanize*` functions do, so generated promtool tests
can state the exact annotation text an alert carries.
"""

from __future__ import annotations

import math


def go_general(value: float) -> str:
    """Go's `%.4g`, which Python's `.4g` matches for finite values."""
    return f"{value:.4g}"


def humanize_percentage(ratio: float) -> str:
    return f"{go_general(ratio * 100)}%"


def humanize_duration(seconds: float) -> str:
    if not 1 <= abs(seconds) < 60:
        raise ValueError("only durations between 1 s and 1 min are used in tests")
    return f"{go_general(seconds)}s"


def humanize_1024(value: float) -> str:
    prefixes = ("", "ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi")
    if abs(value) < 1:
        return go_general(value)
    index = min(int(math.log(abs(value), 1024)), len(prefixes) - 1)
    return f"{go_general(value / 1024**index)}{prefixes[index]}"


def fixed_two(value: float) -> str:
    """`printf "%.2f"`."""
    return f"{value:.2f}"
