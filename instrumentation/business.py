"""Business events: one log line with `event_type` each, plus the business metrics.

>>> from instrumentation import business_events
>>> business_events.routine_generated(exercises_count=8)
>>> business_events.api_cost_tracked("analyze", "gpt-4o-mini", 0.0021)
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

from instrumentation.context import current_user_id
from instrumentation.error_fields import error_fields, safe_str
from instrumentation.faults import report_fault
from instrumentation.logger import get_logger
from instrumentation.runtime import current_runtime
from instrumentation.sanitize import clean_user_id

_log = get_logger("corrstack.business")
_LABEL_CHARS = 64
DEFAULT_MAX_TRACKED_USERS = 10_000
# A user id up to this long keys the cost table as it is; a longer one by a 16-byte digest of
# all of it. An entry then costs at most ~0.8 KB whatever the client sent, and distinct ids
# never share a total (a digest is bytes, so it cannot equal a short id either).
_MAX_KEY_CHARS = 128


def _utc_today() -> date:
    return datetime.now(UTC).date()


class BusinessEvents:
    """Emits the product's business events; keeps per-user cost totals for the UTC day.

    The counters are those of `current_runtime()`: in a request of an instrumented app, that
    app's registry; elsewhere the process's.

    The totals are bounded to `max_users` (least recently charged users are forgotten first)
    and start from zero when the day `today()` gives changes (default: the UTC date). A bad
    cost (NaN, infinite, negative, not a number) is never raised into the caller: it is counted in
    `instrumentation_faults_total{component="business_events",reason="invalid_cost"}`, leaves
    the counter and the totals alone, and the event is logged without `cost_usd`.
    """

    def __init__(
        self,
        max_users: int = DEFAULT_MAX_TRACKED_USERS,
        *,
        today: Callable[[], date] = _utc_today,
    ) -> None:
        self._max_users = max_users
        self._today = today
        self._lock = threading.Lock()
        self._day: date | None = None
        self._daily_cost: OrderedDict[str | bytes, float] = OrderedDict()

    def _emit(
        self, event_type: str, message: str, level: int = logging.INFO, **fields: Any
    ) -> None:
        current_runtime().metrics.business_events_total.labels(event_type).inc()
        # stacklevel: the line and function of whoever called the public method
        _log.log(level, message, event_type=event_type, stacklevel=3, **fields)

    def analysis_started(self, analysis_type: str, **fields: Any) -> None:
        self._emit("analysis_started", "Analysis started", analysis_type=analysis_type, **fields)

    def analysis_completed(
        self,
        analysis_type: str,
        duration_ms: float,
        insights_count: int,
        cost_usd: float,
        **fields: Any,
    ) -> None:
        self._emit(
            "analysis_completed",
            "Analysis completed",
            analysis_type=analysis_type,
            duration_ms=round(duration_ms, 3),
            insights_count=insights_count,
            cost_usd=cost_usd,
            **fields,
        )

    def analysis_failed(
        self, analysis_type: str, error: BaseException | str, **fields: Any
    ) -> None:
        self._emit(
            "analysis_failed",
            "Analysis failed",
            logging.ERROR,
            analysis_type=analysis_type,
            **error_fields(error),
            **fields,
        )

    def routine_generated(self, exercises_count: int, **fields: Any) -> None:
        self._emit(
            "routine_generated", "Routine generated", exercises_count=exercises_count, **fields
        )

    def api_cost_tracked(
        self,
        endpoint: str,
        model: str,
        cost_usd: float,
        user_id: str | None = None,
        **fields: Any,
    ) -> float:
        """Count the cost and return the user's total for the current UTC day.

        >>> business_events.api_cost_tracked("analyze", "gpt-4o-mini", 0.0021, user_id="u-42")
        0.0021
        """
        endpoint = safe_str(endpoint, _LABEL_CHARS)
        model = safe_str(model, _LABEL_CHARS)
        cost = _valid_cost(cost_usd)
        user = _user_text(user_id if user_id is not None else current_user_id())
        key = _user_key(user)
        if cost is None:
            report_fault(
                "business_events",
                "invalid_cost",
                f"cost_usd={safe_str(cost_usd, 64)} ({type(cost_usd).__name__})",
            )
            daily_total = self._daily_total(key)
            cost_field: dict[str, Any] = {}
        else:
            current_runtime().metrics.api_cost_usd_total.labels(endpoint, model).inc(cost)
            daily_total = self._add_daily_cost(key, cost)
            cost_field = {"cost_usd": cost}
        extra: dict[str, Any] = (
            {"user_id": clean_user_id(user)} if user_id is not None and user else {}
        )
        self._emit(
            "api_cost_tracked",
            "API cost tracked",
            endpoint=endpoint,
            model=model,
            **cost_field,
            daily_cost_usd=round(daily_total, 6),
            **extra,
            **fields,
        )
        return daily_total

    def daily_cost(self, user_id: str) -> float:
        """The user's API cost so far in the current UTC day."""
        return self._daily_total(_user_key(_user_text(user_id)))

    def forget_costs(self) -> None:
        """Forget every user's total (`instrumentation.testing.reset()` calls this)."""
        with self._lock:
            self._day = None
            self._daily_cost.clear()

    def _daily_total(self, key: str | bytes) -> float:
        with self._lock:
            self._roll_over()
            return self._daily_cost.get(key, 0.0)

    def _add_daily_cost(self, key: str | bytes, cost_usd: float) -> float:
        with self._lock:
            self._roll_over()
            total = self._daily_cost.pop(key, 0.0) + cost_usd
            self._daily_cost[key] = total  # most recent last
            while len(self._daily_cost) > self._max_users:
                self._daily_cost.popitem(last=False)
            return total

    def _roll_over(self) -> None:
        today = self._today()
        if today != self._day:
            self._day = today
            self._daily_cost.clear()


def _valid_cost(cost: object) -> float | None:
    """`cost` as a finite, non-negative float; None for anything else (`"0.5"` and `True`
    included: a caller passing those has a bug worth seeing)."""
    if isinstance(cost, str | bytes | bool) or not hasattr(cost, "__float__"):
        return None
    try:
        value = float(cost)
    except (TypeError, ValueError, OverflowError):
        return None
    return value if math.isfinite(value) and value >= 0 else None


def _user_text(user_id: object) -> str:
    """A str id as it is (even a long one: the key is built from all of it)."""
    if user_id is None or type(user_id) is str:
        return user_id or ""
    return safe_str(user_id, 4096)  # an int id, or anything else a caller passed


def _user_key(user_id: str) -> str | bytes:
    """The cost table's key for `user_id`: bounded in size, distinct for distinct ids."""
    if len(user_id) <= _MAX_KEY_CHARS:
        return user_id
    return hashlib.blake2b(user_id.encode("utf-8", "surrogatepass"), digest_size=16).digest()


business_events = BusinessEvents()
