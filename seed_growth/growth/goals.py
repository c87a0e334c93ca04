"""Each student's goal: a score to reach by a target week."""

from __future__ import annotations

import pandas as pd

from seed_growth.window import ScoreWindow


def goal_targets(
    students: pd.Series | list[str],
    window: ScoreWindow,
    *,
    goal_score: float,
    horizon_weeks: int,
    student_goals: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """One row per student: ``goal`` and ``target_week`` (on the window's week index, where the as-of
    week is ``lookback_weeks - 1``). The default is ``goal_score`` at ``horizon_weeks`` after the as-of
    week; a row of ``student_goals`` (student, goal_score, target_date) overrides it for that student."""
    frame = pd.DataFrame({"student": pd.Series(students, dtype=str).drop_duplicates().to_numpy()})
    frame["goal"] = float(goal_score)
    frame["target_week"] = window.as_of_index + int(horizon_weeks)
    frame["goal_source"] = "default"
    if student_goals is not None and len(student_goals):
        goals = student_goals.assign(student=student_goals["student"].astype(str)).set_index("student")
        mine = frame["student"].isin(goals.index)
        chosen = goals.loc[frame.loc[mine, "student"]]
        frame.loc[mine, "goal"] = chosen["goal_score"].astype(float).to_numpy()
        frame.loc[mine, "target_week"] = [window.week_index(d) for d in chosen["target_date"]]
        frame.loc[mine, "goal_source"] = "student_goal"
    # vectorised (a million students): the Monday of each target week
    start = pd.Timestamp(window.start)
    frame["target_week_start"] = (start + pd.to_timedelta(frame["target_week"].astype("int64") * 7, unit="D")).dt.date
    return frame
