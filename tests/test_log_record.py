"""corrstack's LogRecord factory makes exactly the records `logging.LogRecord` makes."""

from __future__ import annotations

import io
import logging
import os
import sys
import threading
from typing import Any

import pytest

from instrumentation import get_logger, setup_logging, shutdown_logging
from instrumentation.log_record import compatible, make_record

_TIMES = ("created", "msecs", "relativeCreated")
# make_record copies the LogRecord of the Pythons it was written for; on another (a `taskName`,
# `_startTime` in nanoseconds) setup_logging() keeps stdlib's factory and these do not apply.
_copies_this_python = pytest.mark.skipif(
    not compatible(), reason="make_record is not installed on this Python"
)


def _same(args: tuple[Any, ...], **kwargs: Any) -> None:
    ours = make_record(*args, **kwargs).__dict__
    theirs = logging.LogRecord(*args, **kwargs).__dict__
    assert list(ours) == list(theirs)
    assert {k: v for k, v in ours.items() if k not in _TIMES} == {
        k: v for k, v in theirs.items() if k not in _TIMES
    }
    assert abs(ours["created"] - theirs["created"]) < 1
    assert ours["msecs"] == int((ours["created"] - int(ours["created"])) * 1000)


@pytest.mark.skipif(sys.version_info[:2] != (3, 11), reason="make_record copies 3.11's")
def test_make_record_copies_the_python_it_was_written_for() -> None:
    assert compatible()


@_copies_this_python
@pytest.mark.parametrize(
    "args",
    [
        ("app", logging.INFO, "/srv/app/orders.py", 12, "placed %s", ("x",), None, "place"),
        ("app", logging.WARNING, "/srv/app/orders.py", 12, "%(a)s", ({"a": 1},), None),
        ("app", 25, "no_extension", 1, "custom level", (), None, None, "stack"),
        ("app", logging.ERROR, None, 0, "no path", (), None),  # LogRecord's "Unknown module"
        ("", logging.DEBUG, "", 0, object(), None, None),
    ],
)
def test_the_same_record_as_logging(args: tuple[Any, ...]) -> None:
    _same(args)
    _same(args)  # the second time from the remembered file names


@pytest.mark.parametrize("flag", ["logThreads", "logProcesses", "logMultiprocessing"])
def test_the_same_record_when_logging_is_told_to_skip_a_field_after_install(
    monkeypatch: pytest.MonkeyPatch, flag: str
) -> None:
    # logging's documented switches (`logging.logThreads = False`...) may be set at any time:
    # the record then leaves that field None, as LogRecord does.
    monkeypatch.setattr(logging, flag, False)
    _same(("app", logging.INFO, __file__, 1, "m", (), None))


@_copies_this_python
def test_the_same_record_in_a_named_thread_and_a_forked_child() -> None:
    args = ("app", logging.INFO, __file__, 1, "m", (), None)
    thread = threading.Thread(target=_same, args=(args,), name="worker-7")
    thread.start()
    thread.join()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its pid, not the parent's
        ok = make_record(*args).process == os.getpid() == logging.LogRecord(*args).process
        os.write(write, b"1" if ok else b"0")
        os._exit(0)
    os.close(write)
    assert os.read(read, 1) == b"1"
    os.waitpid(pid, 0)
    os.close(read)


def test_installed_in_place_of_stdlibs_only_and_taken_back_at_shutdown() -> None:
    setup_logging(service="svc", stream=io.StringIO())
    assert logging.getLogRecordFactory() is (make_record if compatible() else logging.LogRecord)
    shutdown_logging()
    assert logging.getLogRecordFactory() is logging.LogRecord

    def custom(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = logging.LogRecord(*args, **kwargs)
        record.tenant = "acme"
        return record

    logging.setLogRecordFactory(custom)
    try:
        stream = io.StringIO()
        setup_logging(service="svc", stream=stream)
        assert logging.getLogRecordFactory() is custom  # someone else's: kept
        get_logger("tests").info("hello", plan="pro")
        logging.getLogger("tests").info("again")
        assert stream.getvalue().count('"tenant":"acme"') == 2
        shutdown_logging()
        assert logging.getLogRecordFactory() is custom
    finally:
        logging.setLogRecordFactory(logging.LogRecord)
