"""Counts of log records accepted and dropped, so "nothing lost" can be checked.

Every record that reaches a corrstack handler gets a per-process `seq` and the process
`boot_id`; a record a sink could not write is counted here instead of raising into the caller.
A forked worker gets a `boot_id` of its own and starts its `seq` and counts afresh, so the lines
of several workers writing one file are told apart and each worker's "nothing lost" sums hold.
"""

from __future__ import annotations

import itertools
import os
import threading
import uuid
from collections import Counter
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

_boot_id = uuid.uuid4().hex
_seq = itertools.count(1)
_accepted = 0
_accepted_reported = 0
_dropped: Counter[tuple[str, str]] = Counter()
_lock = threading.Lock()


def boot_id() -> str:
    """This process's id in log lines: new in every process, forked workers included."""
    return _boot_id


def next_seq() -> int:
    """The next record sequence number (`next()` on a count is atomic under the GIL)."""
    global _accepted
    _accepted = seq = next(_seq)  # threads may store out of order; `accepted()` evens it out
    return seq


def count_drop(sink: str, reason: str) -> None:
    with _lock:
        _dropped[(sink, reason)] += 1


def dropped(sink: str | None = None) -> int:
    """Records dropped so far, by one sink or in all."""
    with _lock:
        return sum(n for (s, _), n in _dropped.items() if sink is None or s == sink)


def drop_counts() -> dict[tuple[str, str], int]:
    """Records dropped so far by (sink, reason)."""
    with _lock:
        return dict(_dropped)


def reset_drops() -> None:
    """Forget the drop counts (for tests: `instrumentation.testing.reset()` calls this)."""
    with _lock:
        _dropped.clear()


def accepted() -> int:
    """Records that have been given a `seq` so far; never less than a previous answer."""
    global _accepted_reported
    with _lock:
        _accepted_reported = max(_accepted_reported, _accepted)
        return _accepted_reported


def _start_afresh_in_child() -> None:
    global _boot_id, _seq, _accepted, _accepted_reported, _lock
    _boot_id = uuid.uuid4().hex
    _seq = itertools.count(1)
    _accepted = _accepted_reported = 0
    _lock = threading.Lock()  # another thread may have held it at the fork
    _dropped.clear()


os.register_at_fork(after_in_child=_start_afresh_in_child)


class LogAccountingCollector(Collector):
    """Exposes `log_records_total` and `log_records_dropped_total{sink,reason}`."""

    def collect(self) -> Iterator[CounterMetricFamily]:
        total = CounterMetricFamily(
            "log_records", "Log records accepted by corrstack handlers.", labels=[]
        )
        total.add_metric([], float(accepted()))
        yield total
        family = CounterMetricFamily(
            "log_records_dropped",
            "Log records a sink could not write (disk full, closed pipe, full queue...).",
            labels=["sink", "reason"],
        )
        with _lock:
            items = sorted(_dropped.items())
        for (sink, reason), count in items:
            family.add_metric([sink, reason], float(count))
        yield family
