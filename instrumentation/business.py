"""Business events: one log line with `event_type` each, plus the business metrics.

>>> from instrumentation import business_events
>>> business_events.routine_generated(exercises_count=8)
>>> business_events.api_cost_tracked("analyze", "gpt-4o-mini", 0.0021)
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from datetime import UTC, date, datetime
from typing import Any

from instrumentation.context import current_user_id
from instrumentation.logger import get_logger
from instrumentation.metrics import default_metrics
from instrumentation.sanitize import clean_text

_log = get_logger("corrstack.business")
_LABEL_CHARS = 64
DEFAULT_MAX_TRACKED_USERS = 10_000


def _error_fields(error: BaseException | str) -> dict[str, str]:
    if isinstance(error, BaseException):
        return {"error_type": type(error).__name__, "error_message": clean_text(str(error))}
    return {"error_type": "Error", "error_message": clean_text(error)}


class BusinessEvents:
    """Emits the product's business events; keeps per-user cost totals for the UTC day.

    The totals are bounded to `max_users` (least recently charged users are forgotten first)
    and start from zero when the UTC day changes.
    """

    def __init__(self, max_users: int = DEFAULT_MAX_TRACKED_USERS) -> None:
        self._max_users = max_users
        self._lock = threading.Lock()
        self._day: date | None = None
        self._daily_cost: OrderedDict[str, float] = OrderedDict()

    def _emit(
        self, event_type: str, message: str, level: int = logging.INFO, **fields: Any
    ) -> None:
        default_metrics().business_events_total.labels(event_type).inc()
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
            **_error_fields(error),
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
        """Count the cost and return the user's total for the current UTC day."""
        if cost_usd < 0:
            raise ValueError("cost_usd must not be negative")
        endpoint = clean_text(endpoint, _LABEL_CHARS)
        model = clean_text(model, _LABEL_CHARS)
        default_metrics().api_cost_usd_total.labels(endpoint, model).inc(cost_usd)
        user = user_id if user_id is not None else current_user_id()
        daily_total = self._add_daily_cost(user or "", cost_usd)
        extra: dict[str, Any] = {"user_id": clean_text(user_id, 128)} if user_id else {}
        self._emit(
            "api_cost_tracked",
            "API cost tracked",
            endpoint=endpoint,
            model=model,
            cost_usd=cost_usd,
            daily_cost_usd=round(daily_total, 6),
            **extra,
            **fields,
        )
        return daily_total

    def daily_cost(self, user_id: str) -> float:
        """The user's API cost so far in the current UTC day."""
        with self._lock:
            self._roll_over()
            return self._daily_cost.get(user_id, 0.0)

    def _add_daily_cost(self, user_id: str, cost_usd: float) -> float:
        with self._lock:
            self._roll_over()
            total = self._daily_cost.pop(user_id, 0.0) + cost_usd
            self._daily_cost[user_id] = total  # most recent last
            while len(self._daily_cost) > self._max_users:
                self._daily_cost.popitem(last=False)
            return total

    def _roll_over(self) -> None:
        today = _utc_today()
        if today != self._day:
            self._day = today
            self._daily_cost.clear()


def _utc_today() -> date:
    return datetime.now(UTC).date()


business_events = BusinessEvents()
