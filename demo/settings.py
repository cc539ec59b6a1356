"""The demo services' settings, read from the environment once per app."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

DEFAULT_ANALYSIS_URL = "http://127.0.0.1:8001"


@dataclass(frozen=True)
class DemoSettings:
    """What the environment can change about the simulated services.

    >>> DemoSettings.from_env({"ERROR_RATE": "0.1"}).error_rate
    0.1
    """

    analysis_url: str = DEFAULT_ANALYSIS_URL
    error_rate: float = 0.02
    slow_rate: float = 0.05
    # The Celery broker (`redis://…`) the api hands its "routine ready" notifications to;
    # None: no worker, the api sends none.
    broker_url: str | None = None

    def __post_init__(self) -> None:
        for name in ("error_rate", "slow_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name.upper()} must be between 0 and 1, not {value}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> DemoSettings:
        """`ANALYSIS_URL`, `ERROR_RATE`, `SLOW_RATE`, `CELERY_BROKER_URL`; unset or empty means
        the default."""
        return cls(
            analysis_url=environ.get("ANALYSIS_URL") or DEFAULT_ANALYSIS_URL,
            error_rate=_rate(environ, "ERROR_RATE", cls.error_rate),
            slow_rate=_rate(environ, "SLOW_RATE", cls.slow_rate),
            broker_url=environ.get("CELERY_BROKER_URL") or None,
        )


def _rate(environ: Mapping[str, str], name: str, default: float) -> float:
    raw = environ.get(name)
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number between 0 and 1, not {raw!r}") from None
