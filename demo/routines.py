"""Turn a goal and an analysis into a weekly routine (deterministic per user and goal)."""

from __future__ import annotations

import random

from demo.schemas import Exercise, Routine, RoutineRequest

_EXERCISES: dict[str, tuple[str, ...]] = {
    "strength": ("Back squat", "Bench press", "Deadlift", "Overhead press", "Barbell row"),
    "endurance": ("Tempo run", "Rowing intervals", "Cycling", "Burpees", "Jump rope"),
    "mobility": ("Hip opener flow", "Thoracic rotations", "Deep squat hold", "Cossack squat"),
    "weight_loss": ("Kettlebell swing", "Circuit training", "Incline walk", "Mountain climbers"),
}
_SECONDS_PER_SET = 150


def build_routine(user_id: str, request: RoutineRequest, insights: list[str]) -> Routine:
    """A routine that fits `minutes_per_session`; the same inputs give the same routine.

    >>> build_routine("user-0042", RoutineRequest(goal="mobility"), []).goal
    'mobility'
    """
    rng = random.Random(f"{user_id}/{request.goal}/{request.days_per_week}")
    sets = 3 if request.goal == "strength" else 2
    per_session = max(1, request.minutes_per_session * 60 // (_SECONDS_PER_SET * sets))
    choices = _EXERCISES[request.goal]
    exercises = [
        Exercise(name=rng.choice(choices), sets=sets, reps=rng.choice((5, 8, 10, 12)))
        for _ in range(per_session * request.days_per_week)
    ]
    return Routine(
        user_id=user_id,
        goal=request.goal,
        days_per_week=request.days_per_week,
        exercises=exercises,
        based_on=insights[:3],
    )
