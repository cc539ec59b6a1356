"""The access line, written without the generic record path when nothing needs it.

An access line is written on every request from the same place. When its logger's only handler
is corrstack's, with JSON lines and no filter but the CorrelationFilter (as `setup_logging()`
leaves it), and the request raised nothing, the line's values go straight to that handler
(`SinkHandler.handle_access`): the same ids, `seq`, bound fields, formatter code and sinks as a
record's, without making a LogRecord and passing it down the logger tree. Otherwise — another
handler anywhere on the way, a logger filter, the console format, an exception — a LogRecord is
made from a template, without the work `Logger.log()` repeats each time (the caller's frame,
`os.path` calls, thread and process names), and goes through `Logger.handle()` like any other:
logger and handler levels, filters and propagation all apply. (A custom `setLogRecordFactory`
is not applied to access lines.)"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from typing import Any

from instrumentation.error_fields import error_fields
from instrumentation.handlers import direct_handler
from instrumentation.log_filters import mark_logged, was_logged
from instrumentation.log_format import ACCESS_SITE


def _start_time() -> float:
    """The reference point of `relativeCreated` in seconds, as a LogRecord of now shows it
    (not `logging._startTime`, whose unit changed from seconds to nanoseconds in Python 3.13)."""
    probe = logging.LogRecord("", logging.INFO, "", 0, "", None, None)
    return float(probe.created - probe.relativeCreated / 1000)


_START_TIME = _start_time()


def _template(logger: logging.Logger) -> dict[str, Any]:
    module, function, line = ACCESS_SITE
    probe = logging.LogRecord(
        logger.name, logging.INFO, __file__, line, "", None, None, func=function
    )
    probe.module = module
    return dict(probe.__dict__)


class AccessRecords:
    """Makes access-line records for `logger`, each as complete as `Logger.makeRecord`'s."""

    def __init__(self, logger: logging.Logger) -> None:
        self.logger = logger
        self._template = _template(logger)

    def emit(
        self,
        level: int,
        message: str,
        fields: dict[str, Any],
        scope: Mapping[str, Any],
        late_span: tuple[str, str] | None = None,
        error: BaseException | None = None,
    ) -> None:
        """One access line: `fields`, plus the connection's `user_id` path parameter, the
        span seen once the app ran (`late_span`) and, for `error`, its fields when its stack is
        in a line already, else the stack; `error` is then marked as logged."""
        user_id = scope.get("path_params", {}).get("user_id")
        if error is None:
            handler = direct_handler(self.logger, level)
            if handler is not None:
                handler.handle_access(level, self.logger.name, message, fields, user_id, late_span)
                return
        if user_id is not None:
            fields["user_id"] = str(user_id)  # validated by the CorrelationFilter
        if late_span is not None:
            fields["trace_id"], fields["span_id"] = late_span
        exc_info = None
        if error is not None:
            if was_logged(error):  # e.g. error_tracker.track(error) already wrote the stack
                fields.update(error_fields(error))
            else:
                exc_info = (type(error), error, error.__traceback__)
        self._write(level, message, fields, exc_info)
        if error is not None:  # not when the line failed: the server's report is then the stack
            mark_logged(error)

    def _write(
        self,
        level: int,
        message: str,
        fields: dict[str, Any],
        exc_info: tuple[type[BaseException], BaseException, Any] | None,
    ) -> None:
        """The record path: a LogRecord from the template, through `Logger.handle`."""
        record = logging.LogRecord.__new__(logging.LogRecord)
        attrs = record.__dict__
        attrs.update(self._template)  # the standard attributes first, in their usual order
        now = time.time()
        attrs["created"] = now
        attrs["msecs"] = (now - int(now)) * 1000
        attrs["relativeCreated"] = (now - _START_TIME) * 1000
        attrs["levelno"] = level
        attrs["levelname"] = logging.getLevelName(level)
        attrs["msg"] = message
        attrs["exc_info"] = exc_info
        attrs["thread"] = threading.get_ident()
        attrs.update(fields)
        self.logger.handle(record)
