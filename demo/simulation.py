"""The analysis service's simulated model call: latency, failures, tokens and cost.

Latency is lognormal (median ~80 ms) with a `slow_rate` tail of 0.8–2.5 s, so the latency
panels, SlowResponses and the exemplars have something realistic to show; `error_rate` of the
calls fail, as a timeout (an unhandled 500) or an overloaded model (a handled 503).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

AnalysisType = Literal["progress", "movement", "body_composition"]
FailureKind = Literal["timeout", "overloaded"]

_MEDIAN_LATENCY_S = 0.08
_LATENCY_SIGMA = 0.5
_SLOW_LATENCY_S = (0.8, 2.5)
# Bounded so one request can never hold a worker (or a test) for long.
_MAX_LATENCY_S = 3.0


@dataclass(frozen=True)
class Model:
    name: str
    usd_per_1k_tokens: float
    token_range: tuple[int, int]


# Deeper analyses use the bigger (dearer) model: the cost panel gets two series to compare.
MODELS: dict[str, Model] = {
    "progress": Model("coach-lite-1", 0.0006, (400, 1600)),
    "movement": Model("coach-pro-2", 0.0100, (800, 3000)),
    "body_composition": Model("coach-pro-2", 0.0100, (1200, 4000)),
}


class ModelTimeoutError(TimeoutError):
    """The simulated model did not answer in time."""


class ModelOverloadedError(RuntimeError):
    """The simulated model refused the call; the caller may retry later."""


@dataclass(frozen=True)
class ModelCall:
    """One planned model call: how long it takes, what it costs, how it ends."""

    analysis_type: AnalysisType
    model: str
    latency_s: float
    tokens: int
    cost_usd: float
    insights_count: int
    failure: FailureKind | None

    def error(self) -> Exception | None:
        if self.failure == "timeout":
            return ModelTimeoutError(f"{self.model} timed out after {self.latency_s:.2f} s")
        if self.failure == "overloaded":
            return ModelOverloadedError(f"{self.model} is overloaded")
        return None


def plan_model_call(
    rng: random.Random, analysis_type: AnalysisType, *, error_rate: float, slow_rate: float
) -> ModelCall:
    """Draw one call's latency, size and outcome.

    >>> plan_model_call(random.Random(1), "progress", error_rate=0.0, slow_rate=0.0).failure
    """
    model = MODELS[analysis_type]
    if rng.random() < slow_rate:
        latency = rng.uniform(*_SLOW_LATENCY_S)
    else:
        latency = rng.lognormvariate(0.0, _LATENCY_SIGMA) * _MEDIAN_LATENCY_S
    failure: FailureKind | None = None
    if rng.random() < error_rate:
        failure = "timeout" if rng.random() < 0.5 else "overloaded"
    tokens = rng.randint(*model.token_range)
    return ModelCall(
        analysis_type=analysis_type,
        model=model.name,
        latency_s=min(latency, _MAX_LATENCY_S),
        tokens=tokens,
        cost_usd=round(tokens / 1000 * model.usd_per_1k_tokens, 6),
        insights_count=rng.randint(2, 7),
        failure=failure,
    )
