"""Handlers that never raise into the caller: a record a sink cannot take is counted, not lost
silently, and never turns into a failed request."""

from __future__ import annotations

import contextlib
import errno
import logging
import logging.handlers
import os
import queue
import sys
import time
from typing import TextIO

from instrumentation.accounting import count_drop


def _reason(error: BaseException | None) -> str:
    if isinstance(error, OSError):
        return {
            errno.ENOSPC: "disk_full",
            errno.EPIPE: "closed_pipe",
            errno.EACCES: "permission",
            errno.EROFS: "read_only",
        }.get(error.errno or 0, "os_error")
    if isinstance(error, ValueError):  # write to a closed file
        return "closed"
    return "error" if error is None else type(error).__name__


class _CountingErrors(logging.Handler):
    sink = "handler"

    def handleError(self, record: logging.LogRecord) -> None:
        count_drop(self.sink, _reason(sys.exc_info()[1]))


class StreamSink:
    """stdout/stderr: a closed or broken pipe makes every later write fail, each one counted."""

    name = "stream"

    def __init__(self, stream: TextIO, formatter: logging.Formatter | None = None) -> None:
        self.stream = stream
        self.formatter = formatter

    def write(self, line: str) -> None:
        self.stream.write(line)
        self.stream.flush()

    def close(self) -> None:
        pass  # not ours to close


class FileSink:
    """A log file that follows external rotation (logrotate's rename; copytruncate aside).

    Opened on first write. Whether the path still names the open file is checked at most once
    a second — a stat per line would cost more than the line — so after a rotation at most a
    second of lines still lands in the renamed file, none is lost.
    """

    name = "file"
    recheck_seconds = 1.0

    def __init__(self, path: str, formatter: logging.Formatter | None = None) -> None:
        self.path = os.path.abspath(path)
        self.formatter = formatter
        self._file: TextIO | None = None
        self._identity: tuple[int, int] | None = None
        self._next_check = 0.0

    def write(self, line: str) -> None:
        now = time.monotonic()
        if self._file is None or now >= self._next_check:
            self._next_check = now + self.recheck_seconds
            self._reopen_if_rotated()
        assert self._file is not None
        self._file.write(line)
        self._file.flush()

    def _reopen_if_rotated(self) -> None:
        try:
            stat = os.stat(self.path)
            identity: tuple[int, int] | None = (stat.st_dev, stat.st_ino)
        except FileNotFoundError:
            identity = None
        if self._file is not None and identity is not None and identity == self._identity:
            return
        self.close()
        self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - kept open
        stat = os.fstat(self._file.fileno())
        self._identity = (stat.st_dev, stat.st_ino)

    def close(self) -> None:
        file, self._file = self._file, None
        if file is not None:
            try:
                file.close()
            except (OSError, ValueError) as error:  # the last flush on a full disk
                count_drop(self.name, _reason(error))


Sink = StreamSink | FileSink


class SinkHandler(logging.Handler):
    """One handler for every sink: filters run once and each line is rendered once.

    A sink that fails (disk full, closed pipe, unwritable path) drops the line and counts it;
    the others still get it, and the caller never sees the error.
    """

    def __init__(self, sinks: list[Sink], formatter: logging.Formatter) -> None:
        super().__init__()
        self.sinks = sinks
        self.setFormatter(formatter)

    def emit(self, record: logging.LogRecord) -> None:
        for sink in self.sinks:
            try:
                formatter = sink.formatter or self.formatter
                assert formatter is not None
                sink.write(formatter.format(record) + "\n")
            except Exception as error:
                count_drop(sink.name, _reason(error))

    def handleError(self, record: logging.LogRecord) -> None:
        count_drop("handler", _reason(sys.exc_info()[1]))

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()
        super().close()


class DroppingQueueHandler(_CountingErrors, logging.handlers.QueueHandler):
    """Hands records to a listener thread; never blocks the caller.

    The record is rendered here, in the caller's thread (its context and arguments are those of
    the moment it was logged); only the writing happens in the listener. When the queue is full
    — a sink has stalled — the record is dropped and counted.
    """

    sink = "queue"

    def __init__(self, records: queue.Queue[logging.LogRecord], formatter: logging.Formatter):
        logging.handlers.QueueHandler.__init__(self, records)
        self.setFormatter(formatter)

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        self.format(record)  # JsonFormatter caches the line on the record
        return record

    def enqueue(self, record: logging.LogRecord) -> None:
        try:
            self.queue.put_nowait(record)
        except queue.Full:
            count_drop(self.sink, "queue_full")


class BoundedQueueListener(logging.handlers.QueueListener):
    """A QueueListener whose stop() waits a bounded time: a stalled sink cannot hang exit."""

    def __init__(
        self, records: queue.Queue[logging.LogRecord], *handlers: logging.Handler, timeout: float
    ) -> None:
        super().__init__(records, *handlers, respect_handler_level=True)
        self.timeout = timeout

    def stop(self) -> None:
        thread = self._thread
        if thread is None:
            return
        with contextlib.suppress(queue.Full):
            self.queue.put(self._sentinel, timeout=self.timeout)  # type: ignore[attr-defined]
        thread.join(self.timeout)
        self._thread = None
        for handler in self.handlers:
            handler.close()
