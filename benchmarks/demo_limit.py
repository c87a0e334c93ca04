"""The demo backtest against its physical limit: the Bayes-optimal predictive P of the same student-weeks.

    .venv/bin/python -m benchmarks.demo_limit                  # the demo of scripts/run.sh (seed 7)
    .venv/bin/python -m benchmarks.demo_limit --seeds 7 1 2 3 --out bench-results/demo-limit.jsonl

The backtest of ``bash scripts/run.sh`` (4 as-of weeks, 8-week windows, goal 0.8 at 4 weeks) judges, for
each student who practised in the target week, the probability that their observed accuracy then reaches
the goal. Here the same demo cohort is simulated in memory (``seed_growth.demo_data``, the same draws as
the database's), and each student-week is judged by two probabilities:

- **model**: the normal approximation of the attempts model through ``observed_score_p``, as
  ``p_calibration`` computes it (its Bayesian P differs from it by 0.0001 in Brier on the demo);
- **limit**: the Bayes-optimal predictive probability from the true generating model, by numerical
  integration (``growth_engine.bayes_optimal``, ``target_n``): what no method that sees the same 8 weeks
  can beat in expected Brier score.

Both are scored against the same outcomes, with the backtest's reliability table (bins of P, the gap of
each bin's observed rate in binomial standard errors). Where the limit's own bins miss by 2 SE, the
shortfall is the sample's, not the model's.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
from pathlib import Path

import numpy as np
import pandas as pd

from growth_engine.bayes_optimal import bayes_optimal_p
from growth_engine.simulate import Simulation
from seed_growth.demo_data import DemoCohort, demo_population, demo_simulation
from seed_growth.growth.calibration import brier_score, model_week_noise_sd, observed_score_p, reliability_table
from seed_growth.growth.normal_approx import fit_cohort, normal_approximation_p

LOOKBACK, HORIZON, GOAL, AS_OF_WEEKS = 8, 4, 0.8, 4


def attempts(sim: Simulation) -> tuple[np.ndarray, np.ndarray]:
    """(attempts, correct) per student and week: the demo is a binomial simulation."""
    if sim.n is None or sim.correct is None:
        raise ValueError("the demo backtest needs a binomial simulation")
    return sim.n, sim.correct


def window_scores(sim: Simulation, as_of: int) -> pd.DataFrame:
    """weekly_scores of the window that ends with week ``as_of`` (week 0 = the window's first)."""
    first = as_of - LOOKBACK + 1
    weeks = slice(first, as_of + 1)
    i, t = np.nonzero(sim.observed[:, weeks])
    n_all, correct_all = attempts(sim)
    n, correct = n_all[:, weeks][i, t], correct_all[:, weeks][i, t]
    return pd.DataFrame({"student": sim.ids[i], "week": t, "score": correct / n, "n_attempts": n, "n_correct": correct})


def judged(sim: Simulation, as_of: int, students: np.ndarray) -> np.ndarray:
    """Indices of the window's students who practised in the target week."""
    index = np.flatnonzero(np.isin(sim.ids, students))
    return index[sim.observed[index, as_of + HORIZON]]


def subset(sim: Simulation, rows: np.ndarray, first: int, as_of: int) -> Simulation:
    """The students ``rows`` with only the window's weeks seen (what the backtest's methods see)."""
    picked = sim.students(rows)
    seen = np.zeros_like(picked.observed)
    seen[:, first : as_of + 1] = picked.observed[:, first : as_of + 1]
    return dataclasses.replace(picked, observed=seen)


def judge_as_of(sim: Simulation, cohort: DemoCohort, as_of: int) -> pd.DataFrame:
    scores = window_scores(sim, as_of)
    rows = judged(sim, as_of, scores["student"].unique())
    target = as_of + HORIZON
    n_all, correct_all = attempts(sim)
    n, correct = n_all[rows, target], correct_all[rows, target]
    targets = pd.DataFrame({"student": sim.ids[rows], "target_week": LOOKBACK - 1 + HORIZON, "goal": GOAL})
    fit = fit_cohort(scores, "attempts")
    normal = normal_approximation_p(scores, targets, fit)
    noise = model_week_noise_sd(scores, fit.sigma, fit.observation)
    model = observed_score_p(normal["expected_score"], normal["expected_score_sd"], noise, n, GOAL)
    window = subset(sim, rows, as_of - LOOKBACK + 1, as_of)
    limit = bayes_optimal_p(window, demo_population(cohort), as_of, target, GOAL, target_n=n, chunk=64)
    return pd.DataFrame({"as_of": as_of, "model": model, "limit": limit, "reached": (correct / n >= GOAL) * 1.0})


def judge_seed(seed: int) -> pd.DataFrame:
    cohort = DemoCohort(seed=seed, last_week=dt.date(2026, 11, 16))
    sim = demo_simulation(cohort, np.random.default_rng(cohort.seed))
    newest = cohort.weeks - 1 - HORIZON
    return pd.concat([judge_as_of(sim, cohort, a) for a in range(newest - AS_OF_WEEKS + 1, newest + 1)])


def bins(frame: pd.DataFrame, method: str) -> list[dict]:
    """The reliability table's non-empty bins, with each observed rate's gap in binomial SEs."""
    table = reliability_table(frame[method], frame["reached"])
    table = table[table["count"] > 0]
    mean_p, observed = table["mean_P"].to_numpy(float), table["observed_rate"].to_numpy(float)
    se = table["se"].to_numpy(float)
    gap = np.divide(observed - mean_p, se, out=np.zeros_like(se), where=se > 0)
    return [
        {"bin": b, "count": int(c), "mean_p": round(float(m), 3), "observed": round(float(o), 3),
         "gap_se": round(float(g), 2)}
        for b, c, m, o, g in zip(table["bin"], table["count"], mean_p, observed, gap, strict=True)
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[DemoCohort().seed])
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    for seed in args.seeds:
        frame = judge_seed(seed)
        result = {
            "seed": seed,
            "student_weeks": len(frame),
            **{f"brier_{m}": round(brier_score(frame[m], frame["reached"]), 5) for m in ("model", "limit")},
            **{f"bins_{m}": bins(frame, m) for m in ("model", "limit")},
        }
        print(f"seed {seed}: {len(frame)} student-weeks, Brier model {result['brier_model']:.4f}, "
              f"limit {result['brier_limit']:.4f}")  # fmt: skip
        for m in ("model", "limit"):
            print(f"  {m:5}", "  ".join(f"{b['bin']} {b['mean_p']:.3f}/{b['observed']:.3f} ({b['gap_se']:+.1f})"
                                        for b in result[f"bins_{m}"] if b["mean_p"] >= 0.5))  # fmt: skip
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            with args.out.open("a") as f:
                f.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
