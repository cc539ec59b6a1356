"""Failures on the way to a sink degrade to counted drops, never to an exception in the caller,
a lost line or a stalled shutdown: records made by hand, a writer thread that cannot start, a
descriptor closed behind the handler's back."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from instrumentation import flush_logging, setup_logging, shutdown_logging
from instrumentation.accounting import drop_counts
from instrumentation.handlers import BackgroundWriter, FileSink, SinkHandler, StreamSink


def _handler() -> SinkHandler:
    return next(h for h in logging.getLogger().handlers if isinstance(h, SinkHandler))


class _Pass(logging.Filter):
    pass


@pytest.fixture
def pipe_stream() -> Iterator[tuple[int, io.TextIOWrapper]]:
    """A real descriptor for the stream sink (so it gets a writer thread), and its read end."""
    read, write = os.pipe()
    os.set_blocking(read, False)
    stream = os.fdopen(write, "w")
    yield read, stream
    shutdown_logging(1.0)
    stream.close()
    os.close(read)


def _read_all(fd: int) -> bytes:
    chunks: list[bytes] = []
    while True:
        try:
            chunk = os.read(fd, 1 << 16)
        except BlockingIOError:
            return b"".join(chunks)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


@pytest.mark.parametrize("created", ["1767225600.25", float("nan"), float("inf"), None])
@pytest.mark.parametrize("path", ["one-pass", "filter and emit"])
def test_a_hand_made_record_with_an_odd_created_is_written_not_raised(
    created: object, path: str
) -> None:
    # logging.makeLogRecord() from something deserialised (a socket or queue listener) may
    # carry any `created`: the line is written with the time it is handled instead.
    stream = io.StringIO()
    setup_logging(service="api", stream=stream)
    if path == "filter and emit":
        _handler().addFilter(_Pass())  # a second filter: the generic path
    record = logging.makeLogRecord(
        {"name": "thirdparty.listener", "msg": "hello", "levelno": 20, "levelname": "INFO"}
    )
    record.created = created  # type: ignore[assignment]
    logging.getLogger("thirdparty.listener").handle(record)
    [line] = [json.loads(text) for text in stream.getvalue().splitlines()]
    assert (line["message"], line["timestamp"][:2]) == ("hello", "20")


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (RuntimeError("render failed"), "RuntimeError"),
        (ValueError("bad value"), "ValueError"),  # not "closed": that is a closed file's
        (ValueError("I/O operation on closed file."), "closed"),
    ],
)
def test_a_line_that_cannot_be_rendered_is_counted_not_raised_on_the_one_pass_path(
    monkeypatch: pytest.MonkeyPatch, error: Exception, reason: str
) -> None:
    stream = io.StringIO()
    setup_logging(service="api", stream=stream)
    formatter = _handler().formatter
    assert formatter is not None

    def broken(record: logging.LogRecord) -> str:
        raise error

    monkeypatch.setattr(formatter, "correlated_line", broken)
    logger = logging.getLogger("app")  # a record handed over: plain calls write without one
    logger.handle(logger.makeRecord("app", logging.WARNING, __file__, 1, "lost", (), None))
    assert (stream.getvalue(), drop_counts()) == ("", {("stream", reason): 1})


@pytest.mark.parametrize("call", ["plain logger", "get_logger"])
def test_a_line_that_cannot_be_rendered_is_counted_not_raised_without_a_record(
    monkeypatch: pytest.MonkeyPatch, call: str
) -> None:
    from instrumentation import get_logger
    from instrumentation.log_format import JsonFormatter

    stream = io.StringIO()
    setup_logging(service="api", stream=stream)

    def broken(*args: object) -> str:
        raise RuntimeError("render failed")

    monkeypatch.setattr(JsonFormatter, "line", broken)
    if call == "plain logger":
        logging.getLogger("app").warning("lost", extra={"plan": "pro"})
    else:
        get_logger("app").warning("lost", plan="pro")
    assert (stream.getvalue(), drop_counts()) == ("", {("stream", "RuntimeError"): 1})


def test_an_unhashable_logger_name_is_written_not_raised() -> None:
    stream = io.StringIO()
    setup_logging(service="api", stream=stream)
    record = logging.makeLogRecord({"name": ["not", "a", "name"], "msg": "odd", "levelno": 30})
    _handler().handle(record)
    assert [json.loads(text)["message"] for text in stream.getvalue().splitlines()] == ["odd"]


def test_a_writer_thread_that_fails_to_start_is_tried_again_and_nothing_is_lost(
    monkeypatch: pytest.MonkeyPatch, pipe_stream: tuple[int, io.TextIOWrapper]
) -> None:
    read, stream = pipe_stream
    setup_logging(service="api", stream=stream)
    assert isinstance(_handler().sinks[0], BackgroundWriter)
    real_start = threading.Thread.start
    failures = [1]

    def start(thread: threading.Thread) -> None:
        if failures[0] and thread.name.startswith("corrstack-log"):
            failures[0] -= 1
            raise RuntimeError("can't start new thread")
        real_start(thread)

    monkeypatch.setattr(threading.Thread, "start", start)
    log = logging.getLogger("app")
    for i in range(5):
        log.warning("line %d", i)
    assert flush_logging(2.0)
    written = [json.loads(text)["message"] for text in _read_all(read).decode().splitlines()]
    # The first line is dropped, counted; the next one starts the thread and all after it arrive.
    assert (written, drop_counts()) == (
        [f"line {i}" for i in range(1, 5)],
        {("stream", "RuntimeError"): 1},
    )


def test_shutdown_does_not_wait_for_a_writer_whose_descriptor_was_closed(
    pipe_stream: tuple[int, io.TextIOWrapper],
) -> None:
    _, stream = pipe_stream
    setup_logging(service="api", stream=stream)
    writer = _handler().sinks[0]
    assert isinstance(writer, BackgroundWriter)
    logging.getLogger("app").warning("first")
    assert flush_logging(2.0)
    os.close(writer.sink.fd)  # type: ignore[union-attr]  # closed behind the handler's back
    logging.getLogger("app").warning("second")
    started = time.monotonic()
    done = shutdown_logging(2.0)
    assert (done, time.monotonic() - started < 1.0, drop_counts()) == (
        True,
        True,
        {("stream", "os_error"): 1},
    )


def _child_writes(count: int) -> None:
    for i in range(count):
        logging.getLogger("tests.child").warning("child line %d", i)


def test_a_multiprocessing_fork_child_writes_all_its_lines_before_it_exits(
    tmp_path: Path,
) -> None:
    # multiprocessing ends a forked child with os._exit: no atexit runs, and the writer thread
    # (a daemon) would die with the buffer full.
    import multiprocessing

    log_file = tmp_path / "app.log"
    setup_logging(service="api", log_file=str(log_file), stream=io.StringIO())
    child = multiprocessing.get_context("fork").Process(target=_child_writes, args=(200,))
    child.start()
    child.join(30)
    assert shutdown_logging(5.0)
    lines = [json.loads(text)["message"] for text in log_file.read_text().splitlines()]
    assert (child.exitcode, lines) == (0, [f"child line {i}" for i in range(200)])


@pytest.mark.parametrize("encoding", ["ascii", "latin-1", "utf-8"])
def test_json_lines_on_stdout_are_utf8_whatever_its_encoding(encoding: str) -> None:
    # JSON is UTF-8 (RFC 8259) and shippers read it so: a stdout declared ASCII or Latin-1
    # (PYTHONIOENCODING) must not turn "é" into Python's \xe9, which is no JSON escape.
    child = (
        "from instrumentation import get_logger, setup_logging, shutdown_logging\n"
        "setup_logging(service='api')\n"
        "get_logger('app').info('café ok', city='Zürich', mood='\\U0001f600')\n"
        "shutdown_logging()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", child],
        capture_output=True,
        env={**os.environ, "PYTHONIOENCODING": encoding},
        timeout=60,
        check=True,
    )
    [line] = [json.loads(text) for text in done.stdout.decode("utf-8").splitlines()]
    assert (line["message"], line["city"], line["mood"]) == ("café ok", "Zürich", "\U0001f600")


# --- when a writer writes: under load once per interval, an ERROR line sooner ---


def _wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def test_an_error_line_cuts_the_writers_wait_and_takes_what_came_before(tmp_path: Path) -> None:
    path = tmp_path / "app.log"
    writer = BackgroundWriter(FileSink(str(path)), 1 << 20)
    writer.write_interval = 30.0  # the writer waits this long once it has written
    try:
        writer.put("first")  # after a quiet spell: written at once
        assert _wait_for(lambda: path.read_text() == "first\n")
        writer.put("info")
        time.sleep(0.3)
        waited = path.read_text()
        writer.put("error", urgent=True)
        assert _wait_for(lambda: path.read_text() == "first\ninfo\nerror\n")
    finally:
        writer.request_flush(stop=True).done.wait(5)
    assert waited == "first\n"


class _CountedWrites(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


def test_an_error_storm_wakes_the_writer_at_most_once_per_urgent_interval() -> None:
    stream = _CountedWrites()
    writer = BackgroundWriter(StreamSink(stream), 1 << 20)
    writer.write_interval, writer.urgent_interval = 30.0, 0.05
    writer.put("first")
    assert _wait_for(lambda: stream.writes == 1)
    started = time.monotonic()
    puts = 0
    while time.monotonic() - started < 0.5:
        writer.put(f"error {puts}", urgent=True)
        puts += 1
        time.sleep(0.001)
    elapsed = time.monotonic() - started
    assert writer.request_flush(stop=True).done.wait(5)
    lines = stream.getvalue().splitlines()
    assert (len(lines), lines[-1]) == (puts + 1, f"error {puts - 1}")
    assert 3 <= stream.writes <= elapsed / 0.05 + 3, stream.writes


@pytest.mark.parametrize("how", ["logging.getLogger", "get_logger"])
def test_an_error_record_brings_the_lines_before_it_to_the_file(tmp_path: Path, how: str) -> None:
    from instrumentation import get_logger

    path = tmp_path / "app.log"
    setup_logging(service="api", log_file=str(path), stream=io.StringIO())
    [writer] = [s for s in _handler().sinks if isinstance(s, BackgroundWriter)]
    writer.write_interval = 30.0
    log: Any = logging.getLogger("app") if how == "logging.getLogger" else get_logger("app")

    def messages() -> list[str]:
        return [json.loads(line)["message"] for line in path.read_text().splitlines()]

    log.warning("first")  # after a quiet spell: written at once
    assert _wait_for(lambda: messages() == ["first"])
    log.warning("second")
    time.sleep(0.3)
    waited = messages()
    log.error("third")
    assert (waited, _wait_for(lambda: messages() == ["first", "second", "third"])) == (
        ["first"],
        True,
    )
