"""Request and response bodies of the demo services; bad input is a 422, never a 500."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import Path
from pydantic import BaseModel, ConfigDict, Field

from demo.simulation import AnalysisType

# The same alphabet as correlation IDs: a user id is safe in a log line and a URL as it is.
UserId = Annotated[str, Path(pattern=r"^[A-Za-z0-9._:-]{1,64}$")]
Goal = Literal["strength", "endurance", "mobility", "weight_loss"]
Level = Literal["beginner", "intermediate", "advanced"]
GOALS: tuple[Goal, ...] = ("strength", "endurance", "mobility", "weight_loss")
LEVELS: tuple[Level, ...] = ("beginner", "intermediate", "advanced")


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AnalyzeRequest(_Body):
    analysis_type: AnalysisType = "progress"
    history_days: int = Field(default=30, ge=1, le=365)


class AnalyzeResult(BaseModel):
    user_id: str
    analysis_type: AnalysisType
    model: str
    insights: list[str]
    cost_usd: float
    duration_ms: float


class RoutineRequest(_Body):
    goal: Goal = "strength"
    days_per_week: int = Field(default=3, ge=1, le=7)
    minutes_per_session: int = Field(default=45, ge=10, le=180)


class Exercise(BaseModel):
    name: str
    sets: int
    reps: int


class Routine(BaseModel):
    user_id: str
    goal: Goal
    days_per_week: int
    exercises: list[Exercise]
    based_on: list[str]


class Profile(BaseModel):
    user_id: str
    level: Level
    goal: Goal
    workouts_completed: int
