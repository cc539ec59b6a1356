"""`log_performance`: time a block or a function, log it, observe `operation_duration_seconds`."""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Awaitable, Callable
from time import perf_counter
from types import TracebackType
from typing import Any, ParamSpec, TypeVar, cast, overload

import psutil

from instrumentation.context import connection_var
from instrumentation.error_fields import error_fields, error_summary
from instrumentation.faults import report_fault
from instrumentation.logger import get_logger
from instrumentation.runtime import current_runtime

P = ParamSpec("P")
R = TypeVar("R")
_log = get_logger("corrstack.performance")
_process: psutil.Process | None = None
_MB = 1024 * 1024


def _rss() -> int | None:
    """The process RSS in bytes; None (counted as a fault) when psutil cannot tell."""
    global _process
    try:
        if _process is None:
            _process = psutil.Process()
        return int(_process.memory_info().rss)
    except Exception as error:  # psutil.Error, a sandbox without /proc, …: never a 500
        report_fault("performance", "memory_probe_failed", error_summary(error))
        return None


class _Timing:
    """The state of one timed run."""

    __slots__ = ("fields", "memory_before", "operation", "start", "track_memory")

    def __init__(self, operation: str, track_memory: bool, fields: dict[str, Any]) -> None:
        self.operation = operation
        self.track_memory = track_memory
        self.fields = fields
        self.memory_before = _rss() if track_memory else None
        self.start = perf_counter()

    def finish(self, error: BaseException | None) -> None:
        """Log and observe the run; a failure to do so is a counted fault, never the caller's."""
        try:
            self._finish(error)
        except Exception as fault:
            report_fault("performance", "record_failed", error_summary(fault))

    def _finish(self, error: BaseException | None) -> None:
        duration = perf_counter() - self.start
        status = "success" if error is None else "error"
        fields: dict[str, Any] = {
            "operation": self.operation,
            "duration_ms": round(duration * 1000, 3),
            "status": status,
            **self.fields,
        }
        if self.memory_before is not None:
            memory_after = _rss()
            if memory_after is not None:
                fields["memory_delta_mb"] = round((memory_after - self.memory_before) / _MB, 3)
        request_id = connection_var.get().request_id
        exemplar = {"request_id": request_id} if request_id else None
        metrics = current_runtime().metrics
        metrics.histogram_child(metrics.operation_duration_seconds, self.operation, status).observe(
            duration, exemplar
        )
        if error is None:
            _log.info("Operation completed", stacklevel=4, **fields)
        else:
            # The stack is logged once, by whoever handles the error (the middleware at the top).
            fields.update(error_fields(error))
            _log.log(logging.ERROR, "Operation failed", stacklevel=4, **fields)


class log_performance:
    """Time a function (sync or async) or a block; errors are logged, then re-raised.

    >>> @log_performance("generate_routine", track_memory=True)
    ... async def generate(user_id: str) -> Routine: ...
    >>> with log_performance("load_catalog"):
    ...     load()

    Logs `operation`, `duration_ms`, `status` and (with `track_memory`) `memory_delta_mb`
    from the process RSS, and observes `operation_duration_seconds{operation,status}` with a
    `request_id` exemplar in the registry of `current_runtime()` (the app's, in its requests).
    As a decorator it is safe for concurrent calls; as a context manager, write
    `with log_performance(...)` where the block runs, so each run has its own instance.
    """

    def __init__(self, operation: str, track_memory: bool = False, **fields: Any) -> None:
        self.operation = operation
        self.track_memory = track_memory
        self.fields = fields
        self._timings: list[_Timing] = []  # a stack: the same object may be entered re-entrantly

    def _start(self) -> _Timing:
        return _Timing(self.operation, self.track_memory, self.fields)

    def __enter__(self) -> log_performance:
        self._timings.append(self._start())
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._timings.pop().finish(exc)

    async def __aenter__(self) -> log_performance:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)

    @overload
    def __call__(self, func: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]: ...
    @overload
    def __call__(self, func: Callable[P, R]) -> Callable[P, R]: ...

    def __call__(self, func: Callable[P, Any]) -> Callable[P, Any]:
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def timed_async(*args: P.args, **kwargs: P.kwargs) -> Any:
                timing = self._start()  # per call: the decorator is shared by concurrent calls
                try:
                    result = await func(*args, **kwargs)
                except BaseException as error:
                    timing.finish(error)
                    raise
                timing.finish(None)
                return result

            return timed_async

        @functools.wraps(func)
        def timed(*args: P.args, **kwargs: P.kwargs) -> Any:
            timing = self._start()
            try:
                result = func(*args, **kwargs)
            except BaseException as error:
                timing.finish(error)
                raise
            timing.finish(None)
            return result

        return cast(Callable[P, Any], timed)
