"""The fit response of the contract (docs/growth-api.md) minus run_id/engine/fitted_at, assembled from a
finished run: ``model`` (settings, priors, engine details), ``posterior_summary``, ``students`` and
``diagnostics`` (R-hat / ESS as R's ``posterior`` computes them, divergences, tree-depth hits, timings)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import jax
import numpy as np
import numpyro

from . import diagnostics as diag
from . import runtime
from .chains import ADAPT_DELTA, MAX_TREEDEPTH
from .priors import BRMS_NAMES, FORMULA, PRIORS
from .state import PARAM_NAMES
from .stats import DesignGroups, StudentStats
from .summaries import posterior_summary

if TYPE_CHECKING:
    from .sampler import ChainRun, Plan

METHOD = (
    "NUTS on the 6 population parameters; student effects integrated out exactly "
    "(Woodbury / determinant lemma on per-student sufficient statistics); student "
    "summaries Rao-Blackwellized over all draws"
)
INDEPENDENCE_METHOD = (
    "independence Metropolis-Hastings from the Laplace approximation (multivariate t_10 proposals), exact "
    "collapsed posterior in the acceptance ratio; used beyond growth_engine.independence.MIN_GROUPS design groups"
)
PRECONDITIONING = (
    "affine: Laplace approximation at the posterior mode (unconstrained space), "
    "then NUTS with diagonal mass-matrix adaptation"
)


def _agg(f: Callable[[list[float]], float], xs: Iterable[float]) -> float:
    finite = [x for x in xs if np.isfinite(x)]
    return float(f(finite)) if finite else float("nan")


def engine_details(plan: Plan, groups: DesignGroups, run: ChainRun) -> dict[str, Any]:
    """How this engine got there: seed, chain method, preconditioning, compilation, step sizes."""
    return {
        "method": INDEPENDENCE_METHOD if plan.method == "independence" else METHOD,
        "seed_used": plan.seed_used,
        "chain_method": plan.method,
        "preconditioning": PRECONDITIONING,
        "laplace": run.laplace_info,
        "laplace_seconds": run.laplace_seconds,
        "init": f"N(0, {plan.init_scale}^2) in the preconditioned space, independently per chain",
        "n_design_groups": groups.n_groups,
        "chain_compile_seconds": run.chain_compile_seconds,
        "compilation_cache": runtime.cache_dir(),
        "step_size": [float(s) for s in run.step_size],
        "thin": plan.thin,
        "iterations_run_per_chain": plan.num_run,
        "mean_accept_prob": [float(a) for a in np.mean(run.accept_prob, axis=1)],
        "mean_leapfrog_steps": [float(s) for s in np.mean(run.num_steps, axis=1)],
        "diagnostics_scale": "sampled (centred-time) parameters",
        "versions": {"jax": jax.__version__, "numpyro": numpyro.__version__, "numpy": np.__version__},
    }


def model_info(
    plan: Plan, stats: StudentStats, groups: DesignGroups, run: ChainRun, n_rows: int, n_weeks: int
) -> dict[str, Any]:
    return {
        "formula": FORMULA,
        "family": "gaussian",
        "link": "identity",
        "iter": plan.iter,
        "chains": plan.chains,
        "warmup": plan.num_warmup,
        "draws": plan.chains * plan.num_draws,
        "seed": plan.seed,
        "week_center": stats.center,
        "n_rows": n_rows,
        "n_students": stats.n_students,
        "n_weeks": n_weeks,
        "priors": [dict(p) for p in PRIORS],
        "sampler": {"adapt_delta": ADAPT_DELTA, "max_treedepth": MAX_TREEDEPTH},
        "engine": "collapsed",
        "engine_details": engine_details(plan, groups, run),
    }


def diagnostics(run: ChainRun) -> dict[str, Any]:
    """Convergence per parameter (on the sampled, centred-time scale) and over the whole run. Divergences
    and tree-depth hits are counted over every post-warm-up iteration run (conservative when thinning)."""
    params = {BRMS_NAMES[k]: diag.summarise(run.per_chain[k]) for k in PARAM_NAMES}
    return {
        "max_rhat": _agg(max, (v["rhat"] for v in params.values())),
        "min_ess_bulk": _agg(min, (v["ess_bulk"] for v in params.values())),
        "min_ess_tail": _agg(min, (v["ess_tail"] for v in params.values())),
        "divergent_transitions": int(np.sum(run.diverging)),
        "max_treedepth_hits": int(np.sum(run.num_steps >= 2**MAX_TREEDEPTH - 1)),
        "sampling_seconds": run.sampling_seconds,
        "compile_seconds": run.compile_seconds,
        "total_seconds": None,
        "parameters": params,
    }


def build_response(
    plan: Plan,
    stats: StudentStats,
    groups: DesignGroups,
    run: ChainRun,
    draws: Mapping[str, np.ndarray],
    *,
    n_rows: int,
    n_weeks: int,
) -> dict[str, Any]:
    """{"model", "posterior_summary", "diagnostics"}: the fit response but its ``students``, which the caller
    takes as columns (:func:`growth_engine.summaries.student_summary_columns`); ``total_seconds`` is left
    to the caller."""
    model = model_info(plan, stats, groups, run, n_rows, n_weeks)
    summary = posterior_summary(draws, stats.center)
    return {"model": model, "posterior_summary": summary, "diagnostics": diagnostics(run)}
