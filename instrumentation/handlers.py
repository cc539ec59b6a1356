"""Handlers that never raise into the caller: a record a sink cannot take is counted, not lost
silently, and never turns into a failed request."""

from __future__ import annotations

import contextlib
import errno
import logging
import logging.handlers
import queue
import sys
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


class SafeStreamHandler(_CountingErrors, logging.StreamHandler[TextIO]):
    """stdout/stderr handler; a closed or broken pipe drops and counts records."""

    sink = "stream"

    def __init__(self, stream: TextIO | None = None) -> None:
        logging.StreamHandler.__init__(self, stream)


class SafeFileHandler(_CountingErrors, logging.handlers.WatchedFileHandler):
    """Log-file handler that follows external rotation (logrotate, copytruncate aside).

    An unwritable path or a full disk never raises: the file is opened lazily, and every record
    it cannot take is counted as dropped.
    """

    sink = "file"

    def __init__(self, filename: str) -> None:
        logging.handlers.WatchedFileHandler.__init__(self, filename, encoding="utf-8", delay=True)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            if self.stream is None and self._open_failed():
                count_drop(self.sink, "open_failed")
                return
            logging.handlers.WatchedFileHandler.emit(self, record)
        except Exception:
            self.handleError(record)

    def close(self) -> None:
        try:
            logging.handlers.WatchedFileHandler.close(self)
        except (OSError, ValueError) as error:  # the last flush on a full disk
            count_drop(self.sink, _reason(error))

    def _open_failed(self) -> bool:
        try:
            self.stream = self._open()
        except OSError:
            return True
        self._statstream()
        return False


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
