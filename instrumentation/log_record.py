"""A LogRecord factory that makes the records `logging.LogRecord` makes, for less.

`LogRecord.__init__` repeats work whose answer rarely changes: `os.path` calls on the caller's
file name, `os.getpid()`, a `Mapping` isinstance test of the arguments. `make_record` keeps
those answers (file names in a bounded dict, the pid until a fork) and fills the same
attributes in the same order with the same values; the record is a plain `logging.LogRecord`.
While one of logging's switches `logThreads`, `logProcesses`, `logMultiprocessing` is off, it
makes the record with LogRecord itself.
`setup_logging()` installs it only in place of stdlib's own factory and only on a Python whose
LogRecord has exactly the attributes it fills (`compatible()`); a factory someone else installed
is left alone, and `shutdown_logging()` puts stdlib's back. tests/test_log_record.py holds the
two to the same records.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Mapping
from typing import Any

# The attributes LogRecord.__init__ sets, in its order, on the Pythons `make_record` copies.
_ATTRIBUTES = (
    "name", "msg", "args", "levelname", "levelno", "pathname", "filename", "module",
    "exc_info", "exc_text", "stack_info", "lineno", "funcName", "created", "msecs",
    "relativeCreated", "thread", "threadName", "processName", "process",
)  # fmt: skip
_MAX_PATHS = 1024
_paths: dict[Any, tuple[Any, str]] = {}  # pathname -> (filename, module)
_pid = os.getpid()


_LogRecord = logging.LogRecord
_new = logging.LogRecord.__new__
_level_name = logging.getLevelName
_get_ident = threading.get_ident
_current_thread = threading.current_thread


def _renew_pid() -> None:
    global _pid
    _pid = os.getpid()


os.register_at_fork(after_in_child=_renew_pid)


def compatible() -> bool:
    """Whether `make_record` makes what LogRecord makes on this Python."""
    probe = logging.LogRecord("probe", logging.INFO, __file__, 1, "m", (), None)
    start_time = getattr(logging, "_startTime", None)
    return tuple(probe.__dict__) == _ATTRIBUTES and isinstance(start_time, float)  # s before 3.13


def file_names(pathname: Any) -> tuple[Any, str]:
    """(filename, module) of a record made at `pathname`, as LogRecord computes them."""
    names = _paths.get(pathname)
    if names is None:
        try:
            filename = os.path.basename(pathname)
            names = (filename, os.path.splitext(filename)[0])
        except (TypeError, ValueError, AttributeError):
            names = (pathname, "Unknown module")
        try:
            if len(_paths) >= _MAX_PATHS:
                _paths.clear()  # code has few files; anything else costs recomputation only
            _paths[pathname] = names
        except TypeError:  # an unhashable pathname: not kept
            pass
    return names


def make_record(
    name: str,
    level: int,
    pathname: str,
    lineno: int,
    msg: object,
    args: Any,
    exc_info: Any,
    func: str | None = None,
    sinfo: str | None = None,
    **kwargs: Any,
) -> logging.LogRecord:
    """`logging.LogRecord(...)`, the same record (a LogRecord factory's signature)."""
    if not (logging.logThreads and logging.logProcesses and logging.logMultiprocessing):
        # A field logging was told to leave out, at any time: LogRecord's own work.
        return _LogRecord(name, level, pathname, lineno, msg, args, exc_info, func, sinfo, **kwargs)
    created = time.time()
    if args and len(args) == 1 and isinstance(args[0], Mapping) and args[0]:
        args = args[0]
    filename, module = file_names(pathname)
    multiprocessing = sys.modules.get("multiprocessing")
    process_name = "MainProcess"
    if multiprocessing is not None:
        try:  # noqa: SIM105 - contextlib.suppress() takes 0.4 µs more a record
            process_name = multiprocessing.current_process().name
        except Exception:  # as LogRecord: it may not have finished loading
            pass
    record = _new(_LogRecord)
    record.__dict__ = {
        "name": name,
        "msg": msg,
        "args": args,
        "levelname": _level_name(level),
        "levelno": level,
        "pathname": pathname,
        "filename": filename,
        "module": module,
        "exc_info": exc_info,
        "exc_text": None,
        "stack_info": sinfo,
        "lineno": lineno,
        "funcName": func,
        "created": created,
        "msecs": int((created - int(created)) * 1000) + 0.0,
        "relativeCreated": (created - logging._startTime) * 1000,  # type: ignore[attr-defined]
        "thread": _get_ident(),
        "threadName": _current_thread().name,
        "processName": process_name,
        "process": _pid,
    }
    return record


def install() -> None:
    """Make `make_record` the factory, in place of stdlib's own only, where `compatible()`."""
    if logging.getLogRecordFactory() is logging.LogRecord and compatible():
        logging.setLogRecordFactory(make_record)


def uninstall() -> None:
    """Put stdlib's factory back, if `make_record` is the one installed."""
    if logging.getLogRecordFactory() is make_record:
        logging.setLogRecordFactory(logging.LogRecord)
