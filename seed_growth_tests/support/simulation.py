"""Simulated weekly scores with known growth, as the Dagster side sends them to the service: a thin adapter
over the growth model's one simulator (``growth_engine.simulate_cohort``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from growth_engine import UniformAttempts, simulate_cohort


@dataclass
class Simulated:
    data: dict[str, list]  # columnar, as the Dagster side sends it
    intercepts: np.ndarray  # true a_i (level at week 0)
    slopes: np.ndarray  # true b_i
    beta0: float
    beta1: float


def simulate_growth(
    n_students: int = 40,
    n_weeks: int = 8,
    *,
    beta0: float = 0.45,
    beta1: float = 0.03,
    sd0: float = 0.1,
    sd1: float = 0.01,
    rho: float = 0.2,
    sigma: float = 0.05,
    attempts: tuple[int, int] = (5, 30),
    family: str = "gaussian",
    seed: int = 1,
) -> Simulated:
    """Weekly scores with known growth: student i's expected score at week t is a_i + b_i t (gaussian:
    plus N(0, sigma^2) noise, clipped to [0, 1]) or inv_logit(a_i + b_i t) (binomial: correct answers out
    of n attempts; beta0/sd0/beta1/sd1 are then on the logit scale)."""
    binomial = family != "gaussian"
    sim = simulate_cohort(
        n_students,
        n_weeks,
        level=beta0,
        slope=beta1,
        sd_level=sd0,
        sd_slope=sd1,
        cor=rho,
        family="binomial" if binomial else "gaussian",
        link="logit" if binomial else "identity",
        sigma=sigma,
        attempts=UniformAttempts(*attempts),
        id_prefix="stu-",
        id_width=3,
        seed=seed,
    )
    rows = sim.rows()
    data = {
        "student": rows["student"].tolist(),
        "week": rows["week"].tolist(),
        "score": rows["score"].tolist(),
        "n": rows["n"].tolist(),
    }
    return Simulated(data=data, intercepts=sim.level, slopes=sim.slope, beta0=beta0, beta1=beta1)
