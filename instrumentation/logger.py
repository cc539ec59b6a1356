"""`get_logger()`: a stdlib logger whose methods take keyword fields."""

from __future__ import annotations

import logging
import os
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


# Extra fields a plain logger's call may pass on the direct path: not a LogRecord attribute or
# corrstack's bookkeeping (which `makeRecord` refuses or the filter renames), not an id (which
# the filter validates).
_RECORD_KEYS = UNSETTABLE_ATTRS | _IDS
_LOGGING_FILE = logging.Logger.info.__code__.co_filename
# File name -> whether `findCaller` reports a frame of it, for the `_srcfile` they were judged
# by; at most 1024 names (a flood of generated code costs recomputation only).
_reported_files: dict[str, bool] = {}
_judged_by: object = None


def _reported(filename: str, srcfile: object) -> bool:
    """Whether `findCaller` reports a frame of `filename`: not logging's own, not importlib's
    bootstrap (`logging._is_internal_frame`), kept."""
    global _judged_by
    if _judged_by is not srcfile:
        _reported_files.clear()
        _judged_by = srcfile
    known = _reported_files.get(filename)
    if known is None:
        normalized = os.path.normcase(filename)
        known = normalized != srcfile and not (
            "importlib" in normalized and "_bootstrap" in normalized
        )
        if len(_reported_files) >= 1024:
            _reported_files.clear()
        _reported_files[filename] = known
    return known


def direct_log(
    self: logging.Logger,
    level: int,
    msg: object,
    args: Any,
    exc_info: Any = None,
    extra: Any = None,
    stack_info: bool = False,
    stacklevel: int = 1,
) -> None:
    """`Logger._log`, writing a common call's line without a LogRecord where corrstack's
    handler is the only one it would reach; any other call is stdlib's `_log`'s."""
    srcfile = logging._srcfile
    if not (exc_info or stack_info) and stacklevel == 1 and srcfile:
        kind = type(self)
        if (
            kind.findCaller is _FIND_CALLER
            and kind.makeRecord is _MAKE_RECORD
            and (extra is None or (type(extra) is dict and _RECORD_KEYS.isdisjoint(extra)))
            and logging.getLogRecordFactory() in _PLAIN_FACTORIES
        ):
            frame: Any = sys._getframe(1)
            while frame is not None and frame.f_code.co_filename == _LOGGING_FILE:
                frame = frame.f_back
            if frame is not None and _reported(frame.f_code.co_filename, srcfile):
                handler = direct_handler(self, level)
                if handler is not None:
                    code = frame.f_code
                    handler.handle_fields(
                        level, self.name, msg, args, code.co_filename, frame.f_lineno,
                        code.co_name, extra or {},
                    )  # fmt: skip
                    return
    # One frame more than stdlib's own call: this one, which `findCaller` counts as the caller's.
    _LOG(self, level, msg, args, exc_info, extra, stack_info, stacklevel + 1)  # type: ignore[operator]


def install() -> None:
    """Make `direct_log` the `_log` of `logging.Logger`, in place of stdlib's own only."""
    if logging.Logger._log is _LOG and hasattr(logging, "_is_internal_frame"):
        logging.Logger._log = direct_log  # type: ignore[method-assign]


def uninstall() -> None:
    if logging.Logger._log is direct_log:
        logging.Logger._log = _LOG  # type: ignore[method-assign,assignment]


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
            and (kind._log is _LOG or kind._log is direct_log)
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
