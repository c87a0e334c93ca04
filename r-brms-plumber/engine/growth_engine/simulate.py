"""Simulated data from the gaussian growth model with known truth (tests and benchmarks)."""

from __future__ import annotations

import numpy as np

DEFAULT_TRUTH = {"intercept": 0.40, "week": 0.02, "sd_intercept0": 0.06, "sd_week": 0.008,
                 "cor0": 0.2, "sigma": 0.04}


def simulate(n_students=1000, n_weeks=12, truth=None, p_missing=0.0, seed=0, clip=True):
    """Rows (student, week, score) for weeks 0..n_weeks-1 plus the true effects.

    ``truth`` is on the caller's week scale (level at week 0): intercept, week, sd_intercept0, sd_week,
    cor0 (correlation of the week-0 level and slope), sigma. Each row is dropped independently with
    probability ``p_missing`` (every student keeps at least one row). Scores are clipped to [0, 1] when
    ``clip`` (the count is returned; keep the truth such that it is ~0 when recovery is tested).
    """
    t = dict(DEFAULT_TRUTH if truth is None else truth)
    rng = np.random.default_rng(seed)
    S = np.array([[t["sd_intercept0"] ** 2, t["cor0"] * t["sd_intercept0"] * t["sd_week"]],
                  [t["cor0"] * t["sd_intercept0"] * t["sd_week"], t["sd_week"] ** 2]])
    ab = rng.multivariate_normal([t["intercept"], t["week"]], S, size=n_students)
    weeks = np.tile(np.arange(n_weeks), n_students)
    sidx = np.repeat(np.arange(n_students), n_weeks)
    keep = rng.random(weeks.shape[0]) >= p_missing
    keep[np.arange(n_students) * n_weeks + rng.integers(0, n_weeks, n_students)] = True
    weeks, sidx = weeks[keep], sidx[keep]
    y = ab[sidx, 0] + ab[sidx, 1] * weeks + t["sigma"] * rng.standard_normal(weeks.shape[0])
    n_clipped = int(np.sum((y < 0) | (y > 1)))
    if clip:
        y = np.clip(y, 0.0, 1.0)
    width = len(str(n_students - 1))
    ids = np.array([f"s{i:0{width}d}" for i in range(n_students)])
    return {"student": ids[sidx], "week": weeks.astype(np.int64), "score": y,
            "intercept": ab[:, 0], "slope": ab[:, 1], "ids": ids, "truth": t, "n_clipped": n_clipped}
