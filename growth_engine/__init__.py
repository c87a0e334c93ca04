"""growth_engine: the "collapsed" engine of the growth model ``score ~ week + (week | student)`` (gaussian).

Time is centred at c = mean(week); the priors are the contract's explicit ones (docs/growth-api.md). The
student effects (a_i, b_i) are integrated out analytically (Woodbury + matrix determinant lemma on
per-student sufficient statistics), NUTS (NumPyro, float64) samples only the 6 population parameters, and
student summaries / goal probabilities are Rao-Blackwellized over the posterior draws. The R service
(r-brms-plumber, engine "collapsed") keeps one engine process running (``serve``, :mod:`.server`: JSON or
Arrow bodies in, by file); seed_growth uses its maximum-likelihood cohort fit for the normal approximation of P.

Command line (``growth-engine`` is the same)::

    python -m growth_engine serve --socket PATH                      # the service's engine process
    python -m growth_engine fit --request REQ.json --out-dir DIR      # -> DIR/response.json, DIR/state.npz
    python -m growth_engine predict --fit-dir DIR --targets T.json    # -> JSON on stdout

Exit codes: 0 ok, 2 bad input (answer 400, message on stderr), 3 no fit in DIR (404), 1 failure (500).

Python API (everything here needs only numpy and scipy; ``fit``/``fit_full`` import JAX + NumPyro, the
``sampler`` extra, on first use)::

    stats = student_stats(student, week, score, center=None)
    marginal_loglik(stats, beta0, beta1, sd0, sd1, rho, sigma, xp=np)          # sum over students
    ma, mb, vaa, vab, vbb = conditional_moments(stats, beta0, beta1, sd0, sd1, rho, sigma)  # at centred time
    cohort = fit_cohort_ml(student, week, score)     # maximum likelihood -> CohortFit
    mean, sd = cohort.expected_score(students, week)  # each student's shrunk line at a week
    fit(student, week, score, iter=1000, chains=2, seed=None) -> dict   # the contract's fit body
    res = fit_full(...); save_state(res.state, "state.npz")
    predict_prob(load_state("state.npz"), [{"student": "s1", "target_week": 11, "goal": 0.8}])
    simulate_cohort(...) / simulate(...)             # the growth model's one simulator

``beta0``/``a_i`` are levels at the centre c, ``beta1``/``b_i`` slopes per week. Parameters broadcast
against the students (e.g. shape (D, 1) -> per-draw results); ``xp=jax.numpy`` works too.

Importing the package changes no global state. A process that fits calls
:func:`growth_engine.runtime.configure` first (the CLI and the benchmark do): XLA host devices for
parallel chains, 64-bit floats and the persistent compilation cache (``GROWTH_ENGINE_JAX_CACHE``: its
directory, default ``~/.cache/growth_engine/jax-<version>``; ``off`` disables it). Without it fits still
run in float64, on one device, without the cache.

Benchmark: ``python -m benchmarks.engine [--irregular]``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .cohort import CohortFit, fit_cohort_ml
from .collapsed import (
    conditional_effects,
    conditional_linear,
    conditional_moments,
    grouped_marginal_loglik,
    marginal_loglik,
    marginal_loglik_terms,
)
from .predict import predict_prob
from .priors import PRIORS
from .request import GrowthInputError
from .simulate import PoissonAttempts, Simulation, UniformAttempts, simulate, simulate_cohort
from .state import FitState, load_state, save_state
from .stats import DesignGroups, StudentStats, design_groups, student_stats

if TYPE_CHECKING:
    from .sampler import FitResult, fit, fit_full

__version__ = "0.2.0"

__all__ = [
    "PRIORS",
    "CohortFit",
    "DesignGroups",
    "FitResult",
    "FitState",
    "GrowthInputError",
    "PoissonAttempts",
    "Simulation",
    "StudentStats",
    "UniformAttempts",
    "conditional_effects",
    "conditional_linear",
    "conditional_moments",
    "design_groups",
    "fit",
    "fit_cohort_ml",
    "fit_full",
    "grouped_marginal_loglik",
    "load_state",
    "marginal_loglik",
    "marginal_loglik_terms",
    "predict_prob",
    "save_state",
    "simulate",
    "simulate_cohort",
    "student_stats",
]

_SAMPLER = ("fit", "fit_full", "FitResult")


def __getattr__(name: str) -> Any:
    """``fit``, ``fit_full`` and ``FitResult`` import the sampler (JAX, NumPyro) on first use."""
    if name in _SAMPLER:
        from . import sampler

        return getattr(sampler, name)
    raise AttributeError(f"module 'growth_engine' has no attribute {name!r}")
