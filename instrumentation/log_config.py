"""corrstack's logging as `logging.config.dictConfig` pieces.

For `uvicorn --log-config`, gunicorn's `logconfig_dict` and a service's own LOGGING_CONFIG.
A config that puts `CorrelatedHandler` (formatted by `json_formatter`) on the root logger writes
the lines `setup_logging()` writes: it is the same handler — the same sinks, bounded buffers and
writer threads, the CorrelationFilter — and counts as corrstack's own, so `instrument_app()`
does not configure logging a second time, and `flush_logging()`, `shutdown_logging()` and
`logging.shutdown()` write out and close it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TextIO

from instrumentation.handlers import BackgroundWriter, FileSink, Sink, SinkHandler
from instrumentation.log_filters import CorrelationFilter
from instrumentation.log_format import JsonFormatter

# setup_logging()'s own pieces, so both ways build one and the same handler.
from instrumentation.logging_setup import (
    DEFAULT_BUFFER_BYTES,
    LAST_WORDS,
    MAX_BUFFER_BYTES,
    parse_level,
    stream_sink,
)
from instrumentation.runtime import Runtime, process_runtime, set_process_runtime
from instrumentation.settings import bounded_int, env, safe_name

if TYPE_CHECKING:
    from logging import _FilterType

# What an entry of LOG_LEVELS may name: a dotted logger name, as libraries spell theirs.
_LOGGER_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,199}")
# Loggers whose level a server sets itself, before or after the app is imported: uvicorn gives
# uvicorn.error INFO or its --log-level (uvicorn.asgi its --log-level too), gunicorn gives
# gunicorn.error its --log-level. A LOG_LEVELS entry for a parent decides them as well, unless
# the spec names them, so `uvicorn=WARNING` quiets uvicorn.error's startup lines.
_SERVER_SET_LEVELS = ("uvicorn.error", "uvicorn.asgi", "gunicorn.error")
_SERVERS = ("uvicorn", "gunicorn")
_LEVEL_NAMES = {
    logging.DEBUG: "DEBUG",
    logging.INFO: "INFO",
    logging.WARNING: "WARNING",
    logging.ERROR: "ERROR",
    logging.CRITICAL: "CRITICAL",
}


def json_formatter(service: str | None = None, environment: str | None = None) -> JsonFormatter:
    """corrstack's JSON formatter; `service`/`environment` default to SERVICE_NAME/ENVIRONMENT.

    A bad name raises ValueError naming its variable, so dictConfig fails at startup.

    >>> "formatters": {"json": {"()": "instrumentation.log_config.json_formatter",
    ...                         "service": "api"}}
    """
    return JsonFormatter(
        safe_name("SERVICE_NAME", service or env("SERVICE_NAME") or "unknown"),
        safe_name("ENVIRONMENT", environment or env("ENVIRONMENT") or "development"),
    )


def _buffer_limit(raw: int | str | None) -> int:
    raw = raw if raw is not None else env("LOG_BUFFER_BYTES")
    if raw is None:
        return DEFAULT_BUFFER_BYTES
    return bounded_int("LOG_BUFFER_BYTES", raw, 0, MAX_BUFFER_BYTES)


class CorrelatedHandler(SinkHandler):
    """The handler `setup_logging()` puts on the root logger, built from keyword arguments.

    `stream` (default stdout) and the log `file` (default `LOG_FILE`; none when empty) each get
    the rendered line through a bounded buffer of `buffer_bytes` (default `LOG_BUFFER_BYTES`,
    8 MiB; 0 writes in the caller) and a writer thread of their own. The CorrelationFilter is
    attached here; listing it in the config's `filters` as well adds no second one. Without a
    `formatter` the lines are `json_formatter()`'s. The file is for the shipper: it gets JSON
    even when the stream gets another formatter's lines.

    Put one on the root logger, and only one: two corrstack handlers would write each line twice.

    >>> "handlers": {"corrstack": {"class": "instrumentation.log_config.CorrelatedHandler",
    ...                            "stream": "ext://sys.stdout", "formatter": "json"}}
    """

    def __init__(
        self,
        stream: TextIO | None = None,
        file: str | None = None,
        buffer_bytes: int | str | None = None,
        log_levels: Mapping[str, str | int] | None = None,
    ) -> None:
        limit = _buffer_limit(buffer_bytes)
        path = file if file is not None else env("LOG_FILE")
        self._json = json_formatter()
        self._file_sink: Sink | BackgroundWriter | None = None
        sinks = [stream_sink(stream or sys.stdout, limit)]
        if path:
            # As setup_logging(): a directory that cannot be created is not fatal, the file
            # sink then counts each line it cannot write as dropped.
            with contextlib.suppress(OSError):
                os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            file_sink = FileSink(path)
            self._file_sink = BackgroundWriter(file_sink, limit) if limit else file_sink
            sinks.append(self._file_sink)
        super().__init__(sinks, self._json, last_words=LAST_WORDS)
        self.addFilter(CorrelationFilter())
        if log_levels is not None:  # `logging_config()` writes the levels it applied here
            self.log_levels = _checked_levels(log_levels)

    def setFormatter(self, fmt: logging.Formatter | None) -> None:
        """dictConfig calls this after `__init__` with the config's `formatter`.

        As `setup_logging()` does, it makes the formatter's service and environment those of
        the process's runtime (`instrumentation.runtime`), which its alerts carry.
        """
        fmt = fmt or self._json
        super().setFormatter(fmt)
        identity = fmt if isinstance(fmt, JsonFormatter) else self._json
        if self._file_sink is not None:
            self._file_sink.formatter = None if identity is fmt else identity
        process = process_runtime()
        if (process.service, process.environment) != (identity.service, identity.environment):
            set_process_runtime(
                Runtime.create(identity.service, identity.environment, process.registry)
            )

    def addFilter(self, filter: _FilterType) -> None:
        if isinstance(filter, CorrelationFilter) and any(
            isinstance(existing, CorrelationFilter) for existing in self.filters
        ):
            return  # one is enough: a second would only find the record filtered already
        super().addFilter(filter)


def _checked_levels(levels: Mapping[str, str | int]) -> dict[str, int]:
    return {name: _checked_level(name, raw, f"{name}={raw}") for name, raw in levels.items()}


def _checked_level(name: str, raw: str | int, entry: str) -> int:
    if not _LOGGER_NAME.fullmatch(name):
        raise ValueError(
            f"LOG_LEVELS entry {entry[:80]!r} does not name a logger: write logger=LEVEL, "
            "e.g. LOG_LEVELS=uvicorn=WARNING,httpx=ERROR"
        )
    try:
        return parse_level(raw)
    except ValueError:
        raise ValueError(
            f"LOG_LEVELS entry {entry[:80]!r}: {str(raw)[:40]!r} is not a level: use DEBUG, "
            "INFO, WARNING, ERROR, CRITICAL or a number 0-50"
        ) from None


def log_levels(spec: str) -> dict[str, int]:
    """Per-logger levels from `logger=LEVEL,...`; any bad entry raises ValueError.

    `root` names the root logger; an empty spec names none.

    >>> log_levels("uvicorn=WARNING, httpx=ERROR")
    {'uvicorn': 30, 'httpx': 40}
    """
    levels: dict[str, int] = {}
    if not spec.strip():
        return levels
    for entry in spec.split(","):
        name, equals, raw = (part.strip() for part in entry.partition("="))
        if not equals:
            raise ValueError(
                f"LOG_LEVELS entry {entry.strip()[:80]!r} is not logger=LEVEL, "
                "e.g. LOG_LEVELS=uvicorn=WARNING,httpx=ERROR"
            )
        if name in levels:
            raise ValueError(f"LOG_LEVELS names {name[:80]!r} twice")
        levels[name] = _checked_level(name, raw, entry.strip())
    return levels


def apply_log_levels(spec: str | None = None) -> dict[str, int]:
    """Set the levels of `spec` (default: the LOG_LEVELS variable) and return them.

    Every entry is checked before any level changes: a bad one changes nothing.

    >>> apply_log_levels("uvicorn.error=WARNING")   # after dictConfig, or at app startup
    """
    levels = log_levels(spec if spec is not None else env("LOG_LEVELS") or "")
    _set_levels(levels)
    return levels


def apply_server_log_levels(levels: Mapping[str, int] | None = None) -> None:
    """Apply the per-logger levels for the servers' loggers again (`uvicorn`, `gunicorn` and
    theirs): a server's own logging config, run after corrstack's, resets their levels.
    `levels` are those the configuration applied; None reads LOG_LEVELS."""
    if levels is None:
        levels = log_levels(env("LOG_LEVELS") or "")
    _set_levels(
        {name: level for name, level in levels.items() if any(_within(name, s) for s in _SERVERS)}
    )


def _set_levels(levels: Mapping[str, int]) -> None:
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)
    for name in _followers(levels):
        logging.getLogger(name).setLevel(logging.NOTSET)


def _within(name: str, parent: str) -> bool:
    return name == parent or name.startswith(parent + ".")


def _followers(levels: Mapping[str, int]) -> list[str]:
    """The loggers a server sets a level on that `levels` does not name but names a parent of:
    left with no level of their own, they follow that parent."""
    return [
        child
        for child in _SERVER_SET_LEVELS
        if child not in levels and any(_within(child, name) for name in levels)
    ]


def _level_value(level: int) -> str | int:
    return _LEVEL_NAMES.get(level, level)


def logging_config(
    service: str | None = None,
    *,
    environment: str | None = None,
    level: str | int | None = None,
    log_file: str | None = None,
    buffer_bytes: int | str | None = None,
    levels: Mapping[str, str | int] | None = None,
) -> dict[str, Any]:
    """The dictConfig corrstack recommends, in the LOGGING_CONFIG shape, to start from.

    Arguments win over the environment (`SERVICE_NAME`, `ENVIRONMENT`, `LOG_LEVEL` for the
    root, `LOG_BUFFER_BYTES`, and `LOG_LEVELS` when `levels` is None); each is checked now and
    written into the dict. `log_file=None` leaves the file to `LOG_FILE` when the handler is
    built. The servers' loggers are set as `instrument_app()` leaves them: their error loggers
    propagate to the root handler, their text access logs have no handler and do not propagate
    (CorrelationMiddleware writes the access line).

    >>> config = logging_config(service="api", levels={"httpx": "WARNING"})
    >>> logging.config.dictConfig(config)
    """
    formatter = json_formatter(service, environment)
    root_level = parse_level(level if level is not None else env("LOG_LEVEL") or "INFO")
    per_logger = log_levels(env("LOG_LEVELS") or "") if levels is None else _checked_levels(levels)
    loggers: dict[str, dict[str, Any]] = {
        "uvicorn": {"level": "INFO", "handlers": [], "propagate": True},
        # No level of its own: `LOG_LEVELS=uvicorn=WARNING` quiets it too.
        "uvicorn.error": {"handlers": [], "propagate": True},
        "uvicorn.access": {"handlers": [], "propagate": False},
        # gunicorn has set gunicorn.error's level from its --log-level already: left as it is,
        # unless LOG_LEVELS names `gunicorn` and not it (below).
        "gunicorn.error": {"handlers": [], "propagate": True},
        "gunicorn.access": {"handlers": [], "propagate": False},
    }
    for name, value in per_logger.items():
        if name == "root":
            root_level = value
        else:
            loggers.setdefault(name, {})["level"] = _level_value(value)
    for name in _followers(per_logger):
        loggers.setdefault(name, {})["level"] = "NOTSET"  # gunicorn's --log-level is set before
    return {
        "version": 1,
        # corrstack's own loggers (the access line's among them) exist before this runs.
        "disable_existing_loggers": False,
        "formatters": {
            "json": {
                "()": "instrumentation.log_config.json_formatter",
                "service": formatter.service,
                "environment": formatter.environment,
            }
        },
        "filters": {"correlation": {"()": "instrumentation.log_filters.CorrelationFilter"}},
        "handlers": {
            "corrstack": {
                "class": "instrumentation.log_config.CorrelatedHandler",
                "formatter": "json",
                "filters": ["correlation"],
                "stream": "ext://sys.stdout",
                "file": log_file,
                "buffer_bytes": _buffer_limit(buffer_bytes),
                # Applied again when the app starts, after a server's own logging config.
                "log_levels": {name: _level_value(value) for name, value in per_logger.items()},
            }
        },
        "loggers": loggers,
        "root": {"level": _level_value(root_level), "handlers": ["corrstack"]},
    }
