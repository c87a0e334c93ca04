"""Validation of fit/predict inputs (numpy only). Raises :class:`GrowthInputError` with a message naming
the problem; the CLI turns it into exit code 2 with the message on stderr (the service answers 400)."""

from __future__ import annotations

import math
from numbers import Integral, Real
from typing import Any

import numpy as np

from .observation import DEFAULT_OBSERVATION_MODEL, OBSERVATION_MODELS

ITER_RANGE = (200, 20000)
WEEK_RANGE = (0, 520)  # weeks since the platform's epoch: ten years
ATTEMPTS_MAX = 100_000
CHAINS_RANGE = (1, 8)


class GrowthInputError(ValueError):
    """Bad input (HTTP 400 in the service)."""


def _column(data: Any, name: str, required: bool = True) -> Any:
    if isinstance(data, dict):
        if name not in data or data[name] is None:
            if required:
                raise GrowthInputError(f"data.{name} is missing")
            return None
        col = data[name]
        if isinstance(col, np.ndarray):
            return col
        if not isinstance(col, (list, tuple)):
            raise GrowthInputError(f"data.{name} must be an array")
        return list(col)
    raise GrowthInputError("data must be an object of columns or an array of rows")


def _rows_to_columns(rows):
    cols = {"student": [], "week": [], "score": []}
    has_n = any(isinstance(r, dict) and "n" in r for r in rows)
    if has_n:
        cols["n"] = []
    for i, r in enumerate(rows):
        if not isinstance(r, dict):
            raise GrowthInputError(f"data[{i}] must be an object with student, week, score")
        for k in ("student", "week", "score"):
            if k not in r:
                raise GrowthInputError(f"data[{i}].{k} is missing")
            cols[k].append(r[k])
        if has_n:
            cols["n"].append(r.get("n"))
    return cols


def _is_num(v):
    return isinstance(v, Real) and not isinstance(v, bool)


def _numeric(col, name):
    if isinstance(col, np.ndarray):
        if col.dtype.kind not in "iuf":
            raise GrowthInputError(f"data.{name} must contain numbers")
        arr = col.astype(np.float64, copy=False)  # a float64 column (e.g. read from Arrow) is not copied
    else:
        # fast path for the common case (a JSON array of numbers): numpy infers a numeric dtype; a bool
        # among numbers would be coerced silently, so look for one by type (cheap next to isinstance)
        try:
            arr = np.asarray(col)
        except (TypeError, ValueError):  # ragged or nested: the element check below names the culprit
            arr = np.asarray([], dtype=object)
        if arr.dtype.kind not in "iuf" or arr.ndim != 1 or any(type(v) is bool for v in col):
            bad = next((v for v in col if not _is_num(v)), None)
            raise GrowthInputError(f"data.{name} must contain only numbers (got {bad!r})")
        arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        raise GrowthInputError(f"data.{name} must contain finite numbers")
    return arr


def _students(col):
    if isinstance(col, np.ndarray):
        if col.dtype.kind in "iu":
            return col.astype(np.int64)
        if col.dtype.kind in "US":
            return col.astype(str)
        col = col.tolist()
    if all(type(v) is str for v in col):  # the common case, checked cheaply
        return np.asarray(col, dtype=str)
    if any(v is None or isinstance(v, bool) or not isinstance(v, (str, Integral)) for v in col):
        bad = next(v for v in col if v is None or isinstance(v, bool) or not isinstance(v, (str, Integral)))
        raise GrowthInputError(f"data.student must contain strings or integers (got {bad!r})")
    if all(isinstance(v, Integral) for v in col):
        return np.asarray(col, dtype=np.int64)
    return np.asarray([str(v) for v in col], dtype=str)


def _attempts(n: Any) -> np.ndarray:
    """data.n: attempts behind each row's score, integers >= 1 on every row."""
    if not isinstance(n, np.ndarray) and any(v is None for v in n):
        raise GrowthInputError("data.n must be given on every row when it is given (attempts behind the score)")
    arr = _numeric(n, "n")
    if np.any(arr != np.round(arr)) or np.any(arr < 1) or np.any(arr > ATTEMPTS_MAX):
        raise GrowthInputError(f"data.n must contain integers in 1..{ATTEMPTS_MAX} (attempts behind the score)")
    return arr


def validate_data(data: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """Return ``(student, week, score, n)`` arrays from columnar or row data (n: None when absent), or
    raise GrowthInputError."""
    if data is None:
        raise GrowthInputError("data is missing")
    if isinstance(data, list):
        if len(data) == 0:
            raise GrowthInputError("data is empty")
        data = _rows_to_columns(data)
    student = _column(data, "student")
    week = _column(data, "week")
    score = _column(data, "score")
    n = _column(data, "n", required=False)
    lens = {"student": len(student), "week": len(week), "score": len(score)}
    if n is not None:
        lens["n"] = len(n)
    if len(set(lens.values())) != 1:
        raise GrowthInputError(f"data columns differ in length: {lens}")
    if lens["student"] == 0:
        raise GrowthInputError("data is empty")
    student = _students(student)
    week = _numeric(week, "week")
    if np.any(week != np.round(week)):
        raise GrowthInputError("data.week must contain integers")
    if np.any((week < WEEK_RANGE[0]) | (week > WEEK_RANGE[1])):
        raise GrowthInputError(f"data.week must lie in {WEEK_RANGE[0]}..{WEEK_RANGE[1]}")
    score = _numeric(score, "score")
    if np.any((score < 0) | (score > 1)):
        raise GrowthInputError("data.score must lie in [0, 1]")
    attempts = None if n is None else _attempts(n)
    if not np.any(student != student[0]):  # cheaper than counting distinct ids of millions of rows
        raise GrowthInputError("data must contain at least 2 students")
    if not np.any(week != week[0]):
        raise GrowthInputError("data must contain at least 2 distinct weeks")
    return student, week, score, attempts


def check_one_row_per_week(n_weeks: np.ndarray, n_rows: np.ndarray) -> None:
    """A repeated (student, week) row is an error (from the per-student statistics: distinct weeks < rows)."""
    if np.any(n_weeks < n_rows):
        raise GrowthInputError("data has a repeated (student, week) row: one row per student and week")


def validate_observation_model(name: Any, n: np.ndarray | None) -> str:
    """The observation model to fit: ``name`` if given, else 'attempts' when data.n is given and 'plain'
    without it (see growth_engine.observation)."""
    if name is None:
        return DEFAULT_OBSERVATION_MODEL if n is not None else "plain"
    if name not in OBSERVATION_MODELS:
        raise GrowthInputError(f"observation_model must be one of {list(OBSERVATION_MODELS)} (got {name!r})")
    if name == "attempts" and n is None:
        raise GrowthInputError("observation_model 'attempts' needs data.n (the attempts behind each score)")
    return name


def validate_settings(
    iter: Any = 1000, chains: Any = 2, seed: Any = None, family: Any = "gaussian", engine: Any = None
) -> tuple[int, int, int | None, str]:
    if family is None:
        family = "gaussian"
    if family not in ("gaussian", "binomial"):
        raise GrowthInputError(f"unknown family {family!r}")
    if family != "gaussian":
        raise GrowthInputError(f"the collapsed engine supports family 'gaussian' only (got {family!r})")
    if engine is not None and engine != "collapsed":
        raise GrowthInputError(f"this engine is 'collapsed' (got engine {engine!r})")
    for name, v, (lo, hi) in (("iter", iter, ITER_RANGE), ("chains", chains, CHAINS_RANGE)):
        if not isinstance(v, Integral) or isinstance(v, bool):
            if isinstance(v, float) and v.is_integer():
                v = int(v)
            else:
                raise GrowthInputError(f"{name} must be an integer")
        if not lo <= int(v) <= hi:
            raise GrowthInputError(f"{name} must be in {lo}..{hi} (got {v})")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, Integral)):
        if not (isinstance(seed, float) and seed.is_integer()):
            raise GrowthInputError("seed must be an integer or null")
    return int(iter), int(chains), (None if seed is None else int(seed)), family


def validate_targets(targets: Any) -> tuple[list[Any], list[float], list[float]]:
    """Return (students, weeks, goals) lists from [{"student", "target_week", "goal"}, ...]."""
    if not isinstance(targets, list) or len(targets) == 0:
        raise GrowthInputError("targets must be a non-empty array")
    students, weeks, goals = [], [], []
    for i, t in enumerate(targets):
        if not isinstance(t, dict):
            raise GrowthInputError(f"targets[{i}] must be an object")
        for k in ("student", "target_week", "goal"):
            if k not in t or t[k] is None:
                raise GrowthInputError(f"targets[{i}].{k} is missing")
        s, w, g = t["student"], t["target_week"], t["goal"]
        if isinstance(s, bool) or not isinstance(s, (str, Integral)):
            raise GrowthInputError(f"targets[{i}].student must be a string or integer")
        if not _is_num(w) or not math.isfinite(w):
            raise GrowthInputError(f"targets[{i}].target_week must be a number")
        if not WEEK_RANGE[0] <= w <= WEEK_RANGE[1]:
            raise GrowthInputError(f"targets[{i}].target_week must lie in {WEEK_RANGE[0]}..{WEEK_RANGE[1]}")
        if not _is_num(g) or not math.isfinite(g):
            raise GrowthInputError(f"targets[{i}].goal must be a number")
        students.append(s)
        weeks.append(float(w))
        goals.append(float(g))
    return students, weeks, goals
