"""What the load generator sends: users, their archetypes, and the occasional bad request.

Pure planning, no I/O: `plan_request()` draws one request from a seeded `random.Random`, so the
mix can be checked without a server.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Literal

from demo.schemas import GOALS

Kind = Literal[
    "profile",
    "analysis",
    "routine",
    "bad_correlation_id",
    "unknown_path",
    "bad_body",
    "unknown_user",
]
BAD_REQUEST_SHARE = 0.04


@dataclass(frozen=True)
class Archetype:
    """A kind of user: how often they hit each endpoint, and what they ask for."""

    name: str
    share: float
    weights: dict[Kind, float]
    analysis_types: tuple[str, ...]


ARCHETYPES = (
    Archetype("casual", 0.6, {"profile": 6, "routine": 3, "analysis": 1}, ("progress",)),
    Archetype(
        "power",
        0.25,
        {"profile": 2, "routine": 3, "analysis": 5},
        ("progress", "movement", "body_composition"),
    ),
    Archetype("new_user", 0.15, {"profile": 5, "routine": 5}, ("progress",)),
)
_BAD_KINDS: tuple[Kind, ...] = ("bad_correlation_id", "unknown_path", "bad_body", "unknown_user")
_INVALID_IDS = (
    "not a valid id",  # spaces
    "x" * 65,  # too long
    "<script>alert(1)</script>",
    "id\twith\ttabs",
)


@dataclass(frozen=True)
class PlannedRequest:
    kind: Kind
    method: str
    path: str
    json: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)


def user_id(index: int) -> str:
    return f"user-{index:04d}"


def archetype_of(index: int, users: int) -> Archetype:
    """Archetypes by position in the population, so each user keeps one for the whole run."""
    position = (index + 0.5) / users
    cumulative = 0.0
    for archetype in ARCHETYPES:
        cumulative += archetype.share
        if position < cumulative:
            return archetype
    return ARCHETYPES[-1]


def correlation_id(rng: random.Random) -> str:
    return f"lg-{rng.getrandbits(64):016x}"


def plan_request(rng: random.Random, users: int) -> PlannedRequest:
    """One request of a random user; about BAD_REQUEST_SHARE of them are bad on purpose."""
    index = rng.randrange(users)
    uid = user_id(index)
    headers = {"X-Correlation-ID": correlation_id(rng)}
    if rng.random() < BAD_REQUEST_SHARE:
        return _bad_request(rng, uid, headers)
    archetype = archetype_of(index, users)
    kinds = list(archetype.weights)
    kind = rng.choices(kinds, weights=[archetype.weights[k] for k in kinds])[0]
    if kind == "profile":
        return PlannedRequest(kind, "GET", f"/api/user/{uid}/profile", headers=headers)
    if kind == "analysis":
        body = {
            "analysis_type": rng.choice(archetype.analysis_types),
            "history_days": rng.choice((7, 30, 90)),
        }
        return PlannedRequest(kind, "POST", f"/api/user/{uid}/analysis", body, headers)
    body = {
        "goal": rng.choice(GOALS),
        "days_per_week": rng.randint(2, 5),
        "minutes_per_session": rng.choice((30, 45, 60)),
    }
    return PlannedRequest("routine", "POST", f"/api/user/{uid}/routine/generate", body, headers)


def _bad_request(rng: random.Random, uid: str, headers: dict[str, str]) -> PlannedRequest:
    kind = rng.choice(_BAD_KINDS)
    if kind == "bad_correlation_id":
        bad_headers = {"X-Correlation-ID": rng.choice(_INVALID_IDS)}
        return PlannedRequest(kind, "GET", f"/api/user/{uid}/profile", headers=bad_headers)
    if kind == "unknown_path":
        path = rng.choice((f"/api/user/{uid}/workouts", "/api/users", "/admin", "/favicon.ico"))
        return PlannedRequest(kind, "GET", path, headers=headers)
    if kind == "bad_body":
        body = rng.choice(({"days_per_week": 12}, {"goal": "fly"}, {"unexpected": True}))
        return PlannedRequest(kind, "POST", f"/api/user/{uid}/routine/generate", body, headers)
    return PlannedRequest(kind, "GET", "/api/user/guest/profile", headers=headers)
