"""A LogRecord for the access line, built from a template instead of `Logger.log()`.

An access line is written on every request from the same place, so the work `Logger.log()`
repeats each time — finding the caller's frame, `os.path` calls, thread and process names — is
done once here. The record then goes through `Logger.handle()` like any other: logger and
handler levels, filters and propagation all apply. (A custom `setLogRecordFactory` is not
applied to access lines.)
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any


def _start_time() -> float:
    """The reference point of `relativeCreated` in seconds, as a LogRecord of now shows it
    (not `logging._startTime`, whose unit changed from seconds to nanoseconds in Python 3.13)."""
    probe = logging.LogRecord("", logging.INFO, "", 0, "", None, None)
    return float(probe.created - probe.relativeCreated / 1000)


_START_TIME = _start_time()


def _template(logger: logging.Logger) -> dict[str, Any]:
    probe = logging.LogRecord(
        logger.name, logging.INFO, __file__, 0, "", None, None, func="access_line"
    )
    probe.module = "middleware"
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
        exc_info: tuple[type[BaseException], BaseException, Any] | None = None,
    ) -> None:
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
