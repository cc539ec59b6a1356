"""The stack's webhook receiver turns Alertmanager notifications into JSON log lines."""

from __future__ import annotations

import asyncio
import io
import json

import httpx

from instrumentation import setup_logging

PAYLOAD = {
    "version": "4",
    "receiver": "oncall-pager",
    "status": "firing",
    "groupKey": '{}:{alertname="HighErrorRate"}',
    "alerts": [
        {
            "status": "firing",
            "labels": {"alertname": "HighErrorRate", "service": "api", "severity": "critical"},
            "annotations": {"summary": "5xx ratio high", "runbook_url": "https://x/#higherrorrate"},
            "startsAt": "2026-11-28T16:00:00Z",
        },
        {"status": "resolved", "labels": {"alertname": "TargetDown", "service": "analysis"}},
    ],
}


def test_each_alert_becomes_one_log_line() -> None:
    from demo.alert_receiver import create_app

    app = create_app()
    stream = io.StringIO()
    setup_logging(service="webhook-receiver", stream=stream)

    async def post() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return await client.post("/alerts", json=PAYLOAD)

    response = asyncio.run(post())
    assert response.json() == {"received": 2}
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    alerts = [line for line in lines if line["logger"] == "demo.alerts"]
    assert [(a["alertname"], a["alert_status"], a["level"]) for a in alerts] == [
        ("HighErrorRate", "firing", "ERROR"),
        ("TargetDown", "resolved", "INFO"),
    ]
    assert alerts[0]["alert_service"] == "api" and alerts[0]["service"] == "webhook-receiver"
    assert alerts[0]["runbook_url"] == "https://x/#higherrorrate"
