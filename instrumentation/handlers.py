"""Handlers that never raise into the caller and never wait on a sink.

A record is rendered once, in the caller's thread; each sink then gets the line through its own
bounded buffer, written out by a daemon thread of its own (`BackgroundWriter`). A stalled sink —
a pipe nobody reads, a hung network disk — fills its buffer and drops (counted), while the other
sinks and the caller carry on. A line a sink could not write is counted, not lost silently.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import select
import stat
import sys
import threading
import time
import weakref
from collections.abc import Callable, Collection
from io import FileIO
from logging import ERROR
from typing import Any, TextIO

from instrumentation.accounting import boot_id, count_drop, next_seq
from instrumentation.context import connection_var, current_user_id, fields_var
from instrumentation.error_fields import error_type
from instrumentation.log_filters import CorrelationFilter, rename_own_attrs
from instrumentation.log_format import ACCESS_SITE, JsonFormatter
from instrumentation.log_record import file_names
from instrumentation.sanitize import clean_user_id
from instrumentation.tracing import current_span_ids


def _reason(error: BaseException | None) -> str:
    if isinstance(error, OSError):
        return {
            errno.ENOSPC: "disk_full",
            errno.EPIPE: "closed_pipe",
            errno.EACCES: "permission",
            errno.EROFS: "read_only",
        }.get(error.errno or 0, "os_error")
    if isinstance(error, ValueError) and "closed file" in str(error):  # io's own message
        return "closed"
    return "error" if error is None else error_type(error)


def _write_all(fd: int, data: bytes) -> None:
    written = os.write(fd, data)
    if written < len(data):  # a pipe or a signal may take part of it
        view = memoryview(data)[written:]
        while view:
            view = view[os.write(fd, view) :]


def _write_whole_lines(fd: int, data: bytes) -> None:
    """Write to a pipe in pieces of at most PIPE_BUF bytes, each ending at a line end.

    The kernel keeps a pipe write of up to PIPE_BUF bytes whole; a larger one may be interleaved
    with other writers' (several workers sharing a container's stdout). A line longer than
    PIPE_BUF goes in one write of its own, and only such a line can still be split.
    """
    start, size = 0, len(data)
    while start < size:
        end = start + select.PIPE_BUF
        if end < size:
            cut = data.rfind(b"\n", start, end)
            end = cut + 1 if cut >= start else data.find(b"\n", end) + 1 or size
        else:
            end = size
        _write_all(fd, data[start:end])
        start = end


def descriptor_of(stream: object) -> int | None:
    """The stream's file descriptor, or None for an in-memory stream (StringIO and the like)."""
    try:
        fd = stream.fileno()  # type: ignore[attr-defined]
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is both
        return None
    return fd if isinstance(fd, int) and fd >= 0 else None


class StreamSink:
    """A text stream written in the caller: an in-memory one, or any with LOG_BUFFER_BYTES=0."""

    name = "stream"

    def __init__(self, stream: TextIO, formatter: logging.Formatter | None = None) -> None:
        self.stream = stream
        self.formatter = formatter

    def put(self, line: str, urgent: bool = False) -> None:
        self.write(line + "\n")

    def write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()

    def close(self) -> None:
        pass  # not ours to close


class DescriptorSink(StreamSink):
    """stdout/stderr written straight to their file descriptor by a writer thread.

    Not through the stream object: a thread stuck in `write()` on a stalled pipe would hold the
    stream's internal lock, and at exit the interpreter's own flush of stdout would abort on it.
    Through a duplicate of the descriptor, ours alone: if its owner closes the stream while a
    writer is still stuck, the number cannot be reused by another file that then gets our lines.
    A pipe is written in pieces the kernel keeps whole (`_write_whole_lines`). The bytes are
    UTF-8 whatever the stream's declared encoding: JSON is UTF-8 (RFC 8259) and shippers read it
    so, where an ASCII stdout's Python escapes (`\xe9`) would break the line.
    """

    def __init__(self, stream: TextIO, fd: int, formatter: logging.Formatter | None = None) -> None:
        super().__init__(stream, formatter)
        self.fd = os.dup(fd)
        # A pipe (a container's stdout) may be shared by several workers' writers.
        self._pipe = stat.S_ISFIFO(os.fstat(self.fd).st_mode)

    def write(self, text: str) -> None:
        data = text.encode("utf-8", "backslashreplace")  # a lone surrogate: a JSON escape
        if self._pipe and len(data) > select.PIPE_BUF:
            _write_whole_lines(self.fd, data)
        else:
            _write_all(self.fd, data)

    def close(self) -> None:
        fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)


class FileSink:
    """A log file that follows external rotation (logrotate's rename; copytruncate aside).

    Opened when created (a failure is retried on each write, and counted). Whether the path
    still names the open file is checked at most once a second — a stat per line would cost
    more than the line — so after a rotation at most a second of lines still lands in the
    renamed file, none is lost. Unbuffered binary: each write is one `write(2)` with no lock, so
    a forked child can keep using the inherited descriptor.
    """

    name = "file"
    recheck_seconds = 1.0

    def __init__(self, path: str, formatter: logging.Formatter | None = None) -> None:
        self.path = os.path.abspath(path)
        self.formatter = formatter
        self._file: FileIO | None = None
        self._identity: tuple[int, int] | None = None
        self._next_check = time.monotonic() + self.recheck_seconds
        try:
            self._reopen_if_rotated()
        except OSError:
            self._next_check = 0.0  # counted on the first write, which tries again

    def put(self, line: str, urgent: bool = False) -> None:
        self.write(line + "\n")

    def write(self, text: str) -> None:
        now = time.monotonic()
        if self._file is None or now >= self._next_check:
            self._next_check = now + self.recheck_seconds
            self._reopen_if_rotated()
        assert self._file is not None
        _write_all(self._file.fileno(), text.encode("utf-8", "backslashreplace"))

    def _reopen_if_rotated(self) -> None:
        try:
            stat = os.stat(self.path)
            identity: tuple[int, int] | None = (stat.st_dev, stat.st_ino)
        except FileNotFoundError:
            identity = None
        if self._file is not None and identity is not None and identity == self._identity:
            return
        self.close()
        self._file = open(self.path, "ab", buffering=0)  # noqa: SIM115 - kept open
        stat = os.fstat(self._file.fileno())
        self._identity = (stat.st_dev, stat.st_ino)

    def close(self) -> None:
        file, self._file = self._file, None
        if file is not None:
            try:
                file.close()
            except (OSError, ValueError) as error:
                count_drop(self.name, _reason(error))


Sink = StreamSink | FileSink


class _Marker:
    """Put behind the lines in a buffer: set once they are written; `stop` ends the writer."""

    __slots__ = ("done", "stop")

    def __init__(self, stop: bool = False) -> None:
        self.done = threading.Event()
        self.stop = stop


_DONE = _Marker()
_DONE.done.set()
_writers: weakref.WeakSet[BackgroundWriter] = weakref.WeakSet()


class BackgroundWriter:
    """A sink's own bounded buffer, written out by a daemon thread of its own.

    The caller only appends the line to a list under a lock (and signals the thread only when it
    is idle, the buffer is half full or the line is an ERROR); the thread writes everything
    waiting in one `write()`: under load every `write_interval`, after an ERROR line within
    `urgent_interval`, after a quiet spell at once.
    `limit` bounds what waits, counted in characters of the lines with their newlines (bytes,
    for the ASCII a JSON line mostly is; len() is free where encoding in the caller is not). A
    full buffer drops the line for this sink only, counted as `queue_full`; a failed write
    drops its batch, counted by reason.
    """

    # At most this much joined into one write (one line longer than it alone): a piece of at
    # most 64 KiB, with its encoded copy, stays under glibc's 128 KiB mmap threshold. Freeing
    # a larger one (the lines of one interval under load) raises the threshold to its size for
    # good, and from then on such buffers come from the heap, which keeps growing.
    batch_chars = 1 << 16
    # Under load the writer wakes once per interval and writes all that waits, so callers never
    # signal it: every wake-up must win the GIL from a busy event loop twice (on waking and
    # after its write()), and while it waits each socket call of the serving thread wakes it
    # for nothing. One wake-up per line (or per 2 ms) cost a served request a third more CPU
    # over HTTP, one per 20 ms 7 %; 200 ms, 0.1 %. An ERROR line shortens the wait to
    # `urgent_interval` after the last write, so what led up to an error is out within that
    # (and an error storm wakes the writer no more often than that). A line after a quiet spell
    # is written at once.
    write_interval = 0.2
    urgent_interval = 0.02
    stall_seconds = 0.1  # a write taking longer than this: the sink has stalled

    def __init__(self, sink: Sink, limit: int) -> None:
        self.sink = sink
        self.name = sink.name
        self.formatter = sink.formatter
        self.limit = limit
        self._closed = False
        self._fresh()
        _writers.add(self)

    def _fresh(self) -> None:
        # Also in a forked child: the parent's lines and thread are the parent's, and a lock
        # another thread held at the fork would never be released.
        self._lock = threading.Lock()
        self._lines: list[str | _Marker] = []
        self._pending = 0
        self._thread: threading.Thread | None = None
        self._idle = True  # the writer waits for `_wake`; the next put must set it
        self._urgent = False  # an ERROR line waits: the writer's wait is `urgent_interval`
        self._wake = threading.Event()
        self._writing_since = 0.0

    def put(self, line: str, urgent: bool = False) -> None:
        size = len(line) + 1
        with self._lock:  # the put too: no line may land behind a close's stop marker
            pending = self._pending + size
            if pending <= self.limit and not self._closed:
                if self._idle or (pending > self.limit >> 1 and not self._wake.is_set()):
                    # Idle, or a burst is filling the buffer. Before the line is kept: a writer
                    # that cannot start drops (and counts) this line, and the next one tries again.
                    self._wake_writer()
                elif urgent and not self._urgent:
                    self._urgent = True
                    self._wake.set()
                self._pending = pending
                self._lines.append(line)
                return
        count_drop(self.name, "closed" if self._closed else "queue_full")

    def _wake_writer(self) -> None:
        """With the lock held: signal the writer (and start it, the first time in this
        process)."""
        if self._thread is None:
            thread = threading.Thread(
                target=self._run,
                name=f"corrstack-log-{self.name}",
                daemon=True,  # one blocked in write() forever is abandoned at exit
            )
            # May raise (a thread limit, interpreter shutdown): nothing has changed yet.
            thread.start()
            self._thread = thread
        self._idle = False
        self._wake.set()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            while True:
                with self._lock:
                    self._wake.clear()  # a put from here on that needs the writer sets it again
                    self._urgent = False
                    batch, self._lines = self._lines, []
                    if not batch:  # nothing came during the last interval: wait for a put
                        self._idle = True
                        break
                written = time.monotonic()
                if self._write_batch(batch):
                    return
                # What comes meanwhile joins the next write; a burst that fills half the
                # buffer, a flush or an ERROR line cuts the wait short.
                if self._wake.wait(self.write_interval) and self._urgent:
                    # An ERROR line, not a flush or a full buffer: not before `urgent_interval`.
                    rest = written + self.urgent_interval - time.monotonic()
                    if rest > 0:
                        time.sleep(rest)

    def _write_batch(self, batch: list[str | _Marker]) -> bool:
        """Write the lines of `batch` in order, honouring its markers; True after a stop."""
        lines: list[str] = []
        chars = 0
        for item in batch:
            if type(item) is str:
                size = len(item) + 1
                if chars + size > self.batch_chars and lines:
                    self._write(lines, chars)
                    lines, chars = [], 0
                lines.append(item)
                chars += size
                continue
            assert isinstance(item, _Marker)
            if lines:
                self._write(lines, chars)
                lines, chars = [], 0
            if item.stop:
                with contextlib.suppress(Exception):  # a descriptor gone: nothing to lose
                    self.sink.close()
            item.done.set()
            if item.stop:
                return True
        if lines:
            self._write(lines, chars)
        return False

    def _write(self, batch: list[str], chars: int) -> None:
        batch.append("")  # the last line's newline
        self._writing_since = time.monotonic()
        try:
            self.sink.write("\n".join(batch))
        except Exception as error:
            reason = _reason(error)
            for _ in range(len(batch) - 1):
                count_drop(self.name, reason)
        finally:
            self._writing_since = 0.0
            with self._lock:
                self._pending -= chars

    def stalled(self) -> bool:
        """Stuck in one write for longer than `stall_seconds` (a pipe nobody reads)."""
        since = self._writing_since
        return since > 0.0 and time.monotonic() - since > self.stall_seconds

    def request_flush(self, stop: bool = False) -> _Marker:
        """A marker set once every line put before this call is written (or dropped)."""
        with self._lock:
            if self._closed:
                return _DONE
            self._closed = stop
            if self._thread is None:  # nothing was ever put
                if stop:
                    self.sink.close()
                return _DONE
            marker = _Marker(stop)
            self._lines.append(marker)
            self._wake_writer()  # a flush is written at once, not at the next interval
        return marker


def _renew_writers_in_child() -> None:
    for writer in list(_writers):
        writer._fresh()  # its thread starts again on the child's first line


os.register_at_fork(after_in_child=_renew_writers_in_child)


def _format(formatter: logging.Formatter, record: logging.LogRecord) -> str:
    return formatter.format(record)


def direct_handler(logger: logging.Logger, level: int) -> SinkHandler | None:
    """The SinkHandler a record of `level` from `logger` would reach, when it is the only
    handler it would reach and `takes_access_line(level)`: `handle_access` and `handle_fields`
    then write exactly what `logger.handle` would. None otherwise — another handler, a logger's
    filter or dispatch of its own, no handler."""
    kind = type(logger)
    if (
        logger.filters
        or logger.disabled
        or kind.handle is not _HANDLE
        or kind.callHandlers is not _CALL_HANDLERS
        or kind.filter is not _FILTER
    ):
        return None  # a filter, or dispatch of a logger class's own or patched in
    found: logging.Handler | None = None
    current: logging.Logger | None = logger
    while current is not None:
        handlers = current.handlers
        if handlers:
            if found is not None or len(handlers) > 1:
                return None
            found = handlers[0]
        current = current.parent if current.propagate else None
    if found is None:
        return None
    if isinstance(found, SinkHandler) and found.own_dispatch and found.takes_access_line(level):
        return found
    return None


def stdlib_own(function: object, qualname: str) -> object:
    """`function` when it is the logging module's own `qualname`, else a value no method is:
    a method patched in before this import (an error tracker's) disables the direct path."""
    own = getattr(function, "__module__", None) == "logging"
    return function if own and getattr(function, "__qualname__", None) == qualname else object()


# How `Logger.handle` dispatches a record; a logger class or a patch that changes any of them
# (Sentry's logging integration replaces `callHandlers`) sees every record on the record path.
_HANDLE = stdlib_own(logging.Logger.handle, "Logger.handle")
_CALL_HANDLERS = stdlib_own(logging.Logger.callHandlers, "Logger.callHandlers")
_FILTER = stdlib_own(logging.Logger.filter, "Filterer.filter")


class SinkHandler(logging.Handler):
    """One handler for every sink: filters run once and each line is rendered once.

    Rendering happens here, in the caller's thread, so a line carries the context and arguments
    of the moment it was logged. A sink that fails (disk full, closed pipe, unwritable path,
    full buffer) drops the line and counts it; the others still get it, and the caller never
    sees the error.

    >>> SinkHandler([BackgroundWriter(FileSink("app.log"), 8 << 20)], JsonFormatter("api"))
    """

    close_timeout = 5.0
    last_words_timeout = 0.1
    # The per-logger levels the configuration applied (LOG_LEVELS or `logging_config(levels=)`),
    # applied again to the servers' loggers when the app starts; None: LOG_LEVELS then.
    log_levels: dict[str, int] | None = None

    def __init__(
        self,
        sinks: list[Sink | BackgroundWriter],
        formatter: logging.Formatter,
        *,
        last_words: Collection[tuple[str, str]] = (),
    ) -> None:
        super().__init__()
        self.sinks = sinks
        # (logger, message start) of a process's last line: uvicorn logs "Finished server
        # process" and then re-raises SIGTERM with the default action, so no atexit runs. That
        # one record waits up to `last_words_timeout` for the writers (not for one that has
        # stalled), so what the buffers hold then is written, not lost. Only that record: any
        # other waiting would let a flood of, say, invalid requests stall the event loop.
        self._last_words = {name: prefix for name, prefix in last_words}
        # Writers have their own lock; only a sink written in the caller needs the handler's.
        self._caller_writes = any(not isinstance(s, BackgroundWriter) for s in sinks)
        # Handles and emits as SinkHandler does: a line may skip `handle`'s or `emit`'s steps
        # (a subclass that overrides either sees every record).
        own_emit = type(self).emit is SinkHandler.emit
        self.own_dispatch = own_emit and type(self).handle is SinkHandler.handle
        # Every sink writes the handler's own line: one rendering, without a record's `emit`.
        self._one_line = own_emit and all(s.formatter is None for s in sinks)
        self.setFormatter(formatter)

    def handle(self, record: logging.LogRecord) -> bool:
        filters = self.filters
        if len(filters) == 1 and type(filters[0]) is CorrelationFilter:  # as setup_logging's
            formatter = self.formatter
            if self._one_line and type(formatter) is JsonFormatter:
                try:
                    line = formatter.correlated_line(record)
                except Exception as error:  # as `_deliver` does: counted, never raised
                    for sink in self.sinks:
                        count_drop(sink.name, _reason(error))
                    return True
                if line is not None:  # the filter's work and the line, in one pass
                    urgent = record.levelno >= ERROR  # as safe as stdlib's own test of it
                    if self._caller_writes:
                        with self.lock:  # type: ignore[union-attr]  # made by Handler.__init__
                            self._put(line, urgent)
                    else:
                        self._put(line, urgent)
                    name = record.name  # inline `_check_last_words`: a call costs a record 2 %
                    if type(name) is str and name in self._last_words:
                        self._check_last_words(record)
                    return True
            if not filters[0].filter_attrs(record.__dict__):
                return False
        elif not self.filter(record):
            return False
        if self._caller_writes:
            with self.lock:  # type: ignore[union-attr]  # created by Handler.__init__
                self.emit(record)
        else:
            self.emit(record)
        return True

    def emit(self, record: logging.LogRecord) -> None:
        self._deliver(_format, (record,), record.levelno >= ERROR)
        self._check_last_words(record)

    def _check_last_words(self, record: logging.LogRecord) -> None:
        name = record.name
        if type(name) is str and name in self._last_words and isinstance(record.msg, str):
            self._after_last_words(name, record.msg)

    def _after_last_words(self, logger: str, msg: str) -> None:
        if msg.startswith(self._last_words[logger]):
            self.drain(self.last_words_timeout, skip_stalled=True)

    def _put(self, line: str, urgent: bool) -> None:
        """Give every sink `line` (all of them share the handler's formatter); `urgent`: an
        ERROR line, written out sooner."""
        for sink in self.sinks:
            try:
                sink.put(line, urgent)
            except Exception as error:
                count_drop(sink.name, _reason(error))

    def takes_access_line(self, level: int) -> bool:
        """Whether `handle_access` or `handle_fields` may stand for `handle` here: a record of
        `level` passes the handler's level, its one filter is a CorrelationFilter and every line
        is JSON."""
        filters = self.filters
        if level < self.level or len(filters) != 1 or type(filters[0]) is not CorrelationFilter:
            return False
        if type(self.formatter) is not JsonFormatter:
            return False
        for sink in self.sinks:
            if sink.formatter is not None and type(sink.formatter) is not JsonFormatter:
                return False
        return True

    def handle_access(
        self,
        level: int,
        logger: str,
        message: str,
        fields: dict[str, Any],
        user_id: object = None,
        late_span: tuple[str, str] | None = None,
    ) -> None:
        """`handle` for an access line (`takes_access_line(level)` said yes), without a LogRecord:
        the ids, `seq` and bound fields the CorrelationFilter would give it — `user_id` (the
        path parameter) and `late_span` standing for the values a record would carry —,
        rendered by `JsonFormatter.line`."""
        rename_own_attrs(fields)  # as the filter does for a record
        # The connection's ids are those of the span current when it was bound (the context
        # here is that one), else `late_span`: a span's ids, valid as the filter would find.
        connection = connection_var.get()
        trace_id, span_id = late_span or (connection.trace_id, connection.span_id)
        module, function, line = ACCESS_SITE
        parts = (
            time.time(), logging.getLevelName(level), logger, message, (),
            module, function, line, connection.request_id, trace_id, span_id,
            current_user_id() if user_id is None else clean_user_id(str(user_id)),
            next_seq(), boot_id(), fields_var.get(), fields,
        )  # fmt: skip
        self._deliver_line(parts, level >= ERROR)

    def handle_fields(
        self,
        level: int,
        logger: str,
        msg: object,
        args: tuple[object, ...],
        pathname: str,
        lineno: int,
        function: str,
        fields: dict[str, Any],
    ) -> None:
        """`handle` for a `get_logger` line (`takes_access_line(level)` said yes) whose fields
        name no id: the line of the record `Logger.makeRecord` would make, without one."""
        connection = connection_var.get()
        trace_id, span_id = current_span_ids() or (connection.trace_id, connection.span_id)
        parts = (
            time.time(), logging.getLevelName(level), logger, msg, args,
            file_names(pathname)[1], function, lineno, connection.request_id, trace_id,
            span_id, current_user_id(), next_seq(), boot_id(), fields_var.get(), fields,
        )  # fmt: skip
        self._deliver_line(parts, level >= ERROR)
        if logger in self._last_words and isinstance(msg, str):
            self._after_last_words(logger, msg)

    def _deliver_line(self, parts: tuple[Any, ...], urgent: bool) -> None:
        # `takes_access_line` saw JsonFormatters only: their own method, without a dispatch.
        if self._caller_writes:
            with self.lock:  # type: ignore[union-attr]  # created by Handler.__init__
                self._deliver(JsonFormatter.line, parts, urgent)
        else:
            self._deliver(JsonFormatter.line, parts, urgent)

    def _deliver(self, render: Callable[..., str], args: tuple[Any, ...], urgent: bool) -> None:
        """Give each sink its line: `render(formatter, *args)`, once for the sinks that share
        the handler's formatter; `urgent`: an ERROR line, written out sooner."""
        shared: str | None = None
        for sink in self.sinks:
            try:
                if sink.formatter is not None:
                    line = render(sink.formatter, *args)
                else:
                    if shared is None:
                        assert self.formatter is not None
                        shared = render(self.formatter, *args)
                    line = shared
                sink.put(line, urgent)
            except Exception as error:
                count_drop(sink.name, _reason(error))

    def handleError(self, record: logging.LogRecord) -> None:
        count_drop("handler", _reason(sys.exc_info()[1]))

    def drain(self, timeout: float, *, stop: bool = False, skip_stalled: bool = False) -> bool:
        """Wait up to `timeout` seconds in all for every buffered line to be written."""
        deadline = time.monotonic() + timeout
        markers = [
            s.request_flush(stop)
            for s in self.sinks
            if isinstance(s, BackgroundWriter) and not (skip_stalled and s.stalled())
        ]
        waited = [m.done.wait(max(0.0, deadline - time.monotonic())) for m in markers]
        return all(waited)

    def flush(self) -> None:
        self.drain(self.close_timeout)

    def close(self) -> None:
        """Write out what is buffered, waiting `close_timeout` at most; a writer still stuck
        after that (a pipe nobody reads) is abandoned with its sink left open."""
        self.drain(self.close_timeout, stop=True)
        for sink in self.sinks:
            if not isinstance(sink, BackgroundWriter):
                sink.close()
        super().close()
