"""`get_logger()`: a stdlib logger whose methods take keyword fields."""

from __future__ import annotations

import logging
import sys
from typing import Any

from instrumentation.handlers import direct_handler, stdlib_own
from instrumentation.log_format import UNSETTABLE_ATTRS
from instrumentation.log_record import make_record

_PASSTHROUGH = ("exc_info", "stack_info", "stacklevel", "extra")
# Fields that need `Logger._log` (passed through) or renaming (LogRecord attributes).
_SLOW_KEYS = frozenset(_PASSTHROUGH) | UNSETTABLE_ATTRS
_MAKE_RECORD = logging.Logger.makeRecord
# The methods of a stdlib call this path stands for: a logger class's own (one adding fields
# in `_log`, say) or a patch takes `Logger._log`.
_LOG = stdlib_own(logging.Logger._log, "Logger._log")
_FIND_CALLER = stdlib_own(logging.Logger.findCaller, "Logger.findCaller")
_PLAIN_FACTORIES = (logging.LogRecord, make_record)  # they set the attributes of LogRecord only
# Fields the CorrelationFilter validates: a line with one of them takes the record path.
_IDS = frozenset({"request_id", "trace_id", "span_id", "user_id"})


def _extra(fields: dict[str, Any]) -> dict[str, Any]:
    # A field named like a LogRecord attribute ("name", "module"...) would make logging raise.
    return {(f"field_{k}" if k in UNSETTABLE_ATTRS else k): v for k, v in fields.items()}


class CorrelatedLogger:
    """Wraps a `logging.Logger`; keyword arguments become top-level JSON fields.

    >>> log = get_logger(__name__)
    >>> log.info("Routine generated", exercises_count=8)
    """

    __slots__ = ("logger",)

    def __init__(self, logger: logging.Logger) -> None:
        self.logger = logger

    def _log(
        self, level: int, msg: object, args: tuple[object, ...], fields: dict[str, Any]
    ) -> None:
        logger = self.logger
        if not logger.isEnabledFor(level):
            return
        kind = type(logger)
        if (
            _SLOW_KEYS.isdisjoint(fields)
            and logging._srcfile
            and kind._log is _LOG
            and kind.findCaller is _FIND_CALLER
        ):
            # The common call: plain keyword fields. The caller's frame is known (two up from
            # here), so the record is made directly instead of through `Logger._log`, whose
            # `findCaller` would walk and test each frame to skip ours: ~3 µs less a line.
            # `makeRecord` and `handle` are the logger's own: its class, filters, handlers and
            # propagation apply as for any record.
            frame = sys._getframe(2)
            code = frame.f_code
            factory = logging.getLogRecordFactory()
            if kind.makeRecord is _MAKE_RECORD and factory in _PLAIN_FACTORIES:
                if _IDS.isdisjoint(fields):
                    handler = direct_handler(logger, level)
                    if handler is not None:  # corrstack's is the only handler it would reach
                        handler.handle_fields(
                            level, logger.name, msg, args, code.co_filename, frame.f_lineno,
                            code.co_name, fields,
                        )  # fmt: skip
                        return
                # What `makeRecord` does, without testing each field against attributes these
                # factories never set (`_SLOW_KEYS` has them all).
                record = factory(
                    logger.name, level, code.co_filename, frame.f_lineno, msg, args, None,
                    code.co_name, None,
                )  # fmt: skip
                if fields:
                    record.__dict__.update(fields)
            else:
                record = logger.makeRecord(
                    logger.name, level, code.co_filename, frame.f_lineno, msg, args, None,
                    code.co_name, fields or None, None,
                )  # fmt: skip
            logger.handle(record)
            return
        kwargs: dict[str, Any] = {k: fields.pop(k) for k in _PASSTHROUGH if k in fields}
        extra = kwargs.pop("extra", None) or {}
        if fields:
            extra = {**extra, **_extra(fields)}
        kwargs["stacklevel"] = kwargs.get("stacklevel", 1) + 2
        self.logger._log(level, msg, args, extra=extra or None, **kwargs)

    def debug(self, msg: object, /, *args: object, **fields: Any) -> None:
        self._log(logging.DEBUG, msg, args, fields)

    def info(self, msg: object, /, *args: object, **fields: Any) -> None:
        self._log(logging.INFO, msg, args, fields)

    def warning(self, msg: object, /, *args: object, **fields: Any) -> None:
        self._log(logging.WARNING, msg, args, fields)

    def error(self, msg: object, /, *args: object, **fields: Any) -> None:
        self._log(logging.ERROR, msg, args, fields)

    def exception(self, msg: object, /, *args: object, **fields: Any) -> None:
        fields.setdefault("exc_info", True)
        self._log(logging.ERROR, msg, args, fields)

    def critical(self, msg: object, /, *args: object, **fields: Any) -> None:
        self._log(logging.CRITICAL, msg, args, fields)

    def log(self, level: int, msg: object, /, *args: object, **fields: Any) -> None:
        self._log(level, msg, args, fields)

    def isEnabledFor(self, level: int) -> bool:
        return self.logger.isEnabledFor(level)


def get_logger(name: str | None = None) -> CorrelatedLogger:
    """A logger for `name` whose lines carry the correlation context and keyword fields."""
    return CorrelatedLogger(logging.getLogger(name))
