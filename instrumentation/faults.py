"""Faults of corrstack's own, at run time: counted, logged once, never raised into the caller.

A NaN cost, an exception whose ``__str__`` raises or a failing memory probe must not turn a
request into a 500; they are counted in `instrumentation_faults_total{component,reason}` and the
first of each kind is logged as a warning, so a bug in a caller shows up without a storm of lines.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections import Counter
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

_log = logging.getLogger("corrstack.faults")
_counts: Counter[tuple[str, str]] = Counter()
_lock = threading.Lock()


def report_fault(component: str, reason: str, detail: str = "") -> None:
    """Count one fault of `component`; the first of each (component, reason) is logged."""
    with _lock:
        _counts[(component, reason)] += 1
        first = _counts[(component, reason)] == 1
    if first:
        with contextlib.suppress(Exception):  # reporting a fault must not become one
            _log.warning(
                "corrstack fault (logged once, then counted in instrumentation_faults_total)",
                extra={"component": component, "reason": reason, "detail": detail[:256]},
            )


def fault_count(component: str | None = None, reason: str | None = None) -> int:
    """Faults counted so far, for one component and/or reason or in all."""
    with _lock:
        return sum(
            n
            for (c, r), n in _counts.items()
            if (component is None or c == component) and (reason is None or r == reason)
        )


def fault_counts() -> dict[tuple[str, str], int]:
    """Faults counted so far by (component, reason)."""
    with _lock:
        return dict(_counts)


def reset_faults() -> None:
    """Forget every count (for tests: the next fault of each kind is logged again)."""
    with _lock:
        _counts.clear()


def _start_afresh_in_child() -> None:
    global _lock
    _lock = threading.Lock()  # another thread may have held it at the fork
    _counts.clear()  # the parent's; a forked worker counts its own


os.register_at_fork(after_in_child=_start_afresh_in_child)


class FaultCollector(Collector):
    """Exposes `instrumentation_faults_total{component,reason}`."""

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(
            "instrumentation_faults",
            "corrstack's own run-time faults (bad arguments, failing probes), by component.",
            labels=["component", "reason"],
        )
        with _lock:
            items = sorted(_counts.items())
        for (component, reason), count in items:
            family.add_metric([component, reason], float(count))
        yield family
