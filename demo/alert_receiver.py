"""`webhook-receiver`: the stack's Alertmanager webhook target.

Writes every notification it receives as JSON log lines, so alerts land in Loki beside the
requests that caused them. Replace it with your paging or ticketing tool's webhook.
`uvicorn demo.alert_receiver:app --port 9095`.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, Field

from instrumentation import get_logger, instrument_app, setup_logging

log = get_logger("demo.alerts")


class Alert(BaseModel):
    status: str = "firing"
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: str = ""
    fingerprint: str = ""


class Notification(BaseModel):
    """Alertmanager's webhook payload (version 4)."""

    receiver: str = ""
    status: str = ""
    groupKey: str = ""
    alerts: list[Alert] = Field(default_factory=list, max_length=1000)


def create_app() -> FastAPI:
    setup_logging(service="webhook-receiver")
    app = FastAPI(title="corrstack alert receiver")
    instrument_app(app)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/alerts")
    async def alerts(notification: Notification) -> dict[str, Any]:
        for alert in notification.alerts:
            level = log.error if alert.status == "firing" else log.info
            level(
                "Alert %s: %s",
                alert.status,
                alert.labels.get("alertname", "unknown"),
                alertname=alert.labels.get("alertname", ""),
                alert_status=alert.status,
                severity=alert.labels.get("severity", ""),
                alert_service=alert.labels.get("service", ""),
                receiver=notification.receiver,
                summary=alert.annotations.get("summary", ""),
                runbook_url=alert.annotations.get("runbook_url", ""),
                alert_request_id=alert.annotations.get("request_id", ""),
            )
        return {"received": len(notification.alerts)}

    return app


app = create_app()
