"""Fresh IDs: their shape, never an all-zero trace or span id, and different in every process
and thread."""

from __future__ import annotations

import json
import os
import random
import re
import threading
import warnings

import pytest

import instrumentation.ids as ids
from instrumentation.ids import format_traceparent, new_ids, new_request_id, parse_traceparent

HEX80 = re.compile(r"[0-9a-f]{80}")
HEX32 = re.compile(r"[0-9a-f]{32}")


def test_fresh_ids_are_lowercase_hex_of_their_length() -> None:
    drawn = [new_ids() for _ in range(1000)]
    requests = [new_request_id() for _ in range(1000)]
    assert [d for d in drawn if not HEX80.fullmatch(d)] == []
    assert [r for r in requests if not HEX32.fullmatch(r)] == []


def test_fresh_trace_and_span_ids_make_a_valid_traceparent() -> None:
    drawn = [new_ids() for _ in range(1000)]
    invalid = [
        d for d in drawn if parse_traceparent(format_traceparent(d[32:64], d[64:]).encode()) is None
    ]
    assert invalid == []


ZERO_TRACE = int("1" * 32 + "0" * 32 + "2" * 16, 16)
ZERO_SPAN = int("1" * 32 + "3" * 32 + "0" * 16, 16)
GOOD = int("0" * 32 + "4" * 32 + "5" * 16, 16)  # a request id of zeros is a valid ID


@pytest.mark.parametrize("invalid", [ZERO_TRACE, ZERO_SPAN], ids=["zero-trace", "zero-span"])
def test_a_draw_with_an_all_zero_trace_or_span_id_is_drawn_again(
    invalid: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    draws = iter([invalid, GOOD])
    monkeypatch.setattr(ids, "_draw", lambda bits: next(draws))
    assert new_ids() == "0" * 32 + "4" * 32 + "5" * 16


def test_an_apps_random_seed_does_not_repeat_ids() -> None:
    state = random.getstate()
    try:
        random.seed(7)
        first = new_ids()
        random.seed(7)
        assert new_ids() != first
    finally:
        random.setstate(state)


def _fork_and_draw() -> str:
    """The first IDs a forked child draws, read from a pipe."""
    read_end, write_end = os.pipe()
    with warnings.catch_warnings():  # Python 3.12+ warns about fork with threads running
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.write(write_end, json.dumps([new_ids(), new_request_id()]).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    try:
        drawn = os.read(read_end, 1 << 12).decode()
    finally:
        os.close(read_end)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    return drawn


def test_forked_workers_draw_ids_of_their_own() -> None:
    children = [json.loads(_fork_and_draw()) for _ in range(2)]
    parent = [new_ids(), new_request_id()]
    # Without a reseed, each child would draw what the parent draws next.
    drawn = [value for values in (*children, parent) for value in values]
    assert len(set(drawn)) == len(drawn)


def test_threads_drawing_at_once_draw_different_ids() -> None:
    drawn: list[list[str]] = [[] for _ in range(8)]

    def draw(into: list[str]) -> None:
        into.extend(new_ids() for _ in range(2000))

    threads = [threading.Thread(target=draw, args=(into,)) for into in drawn]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = [value for values in drawn for value in values]
    assert len(set(every)) == len(every) == 16000
