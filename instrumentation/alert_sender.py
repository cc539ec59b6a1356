"""Posts alerts to Alertmanager's v2 API from a background thread.

The request path only puts an alert on a bounded queue: a slow, failing or dead Alertmanager
costs a request nothing, and every alert that could not be delivered is counted.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any

import httpx
from prometheus_client import CollectorRegistry

from instrumentation.error_fields import error_fields
from instrumentation.metrics import metrics_for

_log = logging.getLogger("corrstack.alerts")


class AlertSender:
    """A bounded queue drained by one daemon thread with a per-request timeout.

    Outcomes are counted in `error_alerts_total{outcome}` of `registry` (default:
    prometheus_client's global one) — given here, since the thread has no request context.

    >>> AlertSender("http://alertmanager:9093", registry=registry).send([alert])
    True
    """

    def __init__(
        self,
        url: str,
        *,
        registry: CollectorRegistry | None = None,
        timeout: float = 2.0,
        max_queued: int = 100,
    ) -> None:
        self.url = url.rstrip("/") + "/api/v2/alerts"
        self._outcomes = metrics_for(registry).error_alerts_total
        self.timeout = timeout
        self._queue: queue.Queue[list[dict[str, Any]]] = queue.Queue(maxsize=max_queued)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def send(self, alerts: list[dict[str, Any]]) -> bool:
        """Queue `alerts`; False (and counted as dropped) when the queue is full."""
        self._ensure_thread()
        try:
            self._queue.put_nowait(alerts)
        except queue.Full:
            self._outcomes.labels("dropped").inc(len(alerts))
            return False
        return True

    def join(self, timeout: float = 5.0) -> bool:
        """Wait until everything queued has been attempted (for tests and shutdown)."""
        done = threading.Event()

        def wait() -> None:
            self._queue.join()
            done.set()

        threading.Thread(target=wait, daemon=True).start()
        return done.wait(timeout)

    def _ensure_thread(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="corrstack-alert-sender", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        with httpx.Client(timeout=self.timeout) as client:
            while True:
                alerts = self._queue.get()
                try:
                    self._post(client, alerts)
                finally:
                    self._queue.task_done()

    def _post(self, client: httpx.Client, alerts: list[dict[str, Any]]) -> None:
        outcome = "failed"
        try:
            response = client.post(self.url, json=alerts)
            if response.is_success:
                outcome = "sent"
            else:
                _log.warning("Alertmanager refused alerts", extra={"status": response.status_code})
        except Exception as error:  # the sender thread must outlive any one bad send
            _log.warning(
                "Alertmanager unreachable, alerts dropped",
                extra={**error_fields(error), "alerts": len(alerts)},
            )
        self._outcomes.labels(outcome).inc(len(alerts))
