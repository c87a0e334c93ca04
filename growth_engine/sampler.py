"""Fit the collapsed gaussian growth model: NUTS over its 6 population parameters (JAX + NumPyro, float64).

Design (why it is fast and reliable):

* The student effects are integrated out exactly (:mod:`growth_engine.collapsed`), so NUTS only sees
  (beta0, beta1, sd0, sd1, rho, sigma). Students with the same time design are pooled exactly
  (:class:`growth_engine.stats.DesignGroups`), so a gradient costs O(#designs) (<= 4096 for 12 weeks)
  rather than O(#students).
* Preconditioning (:mod:`.laplace`): the posterior mode and a finite-difference Hessian of the autodiff
  gradient give an affine map v = mode + L eps (constant Jacobian -> the posterior is unchanged) under which
  the posterior is ~N(0, I); NUTS (numpyro's kernel, target accept 0.9, max tree depth 10, diagonal mass
  adaptation) then takes ~0.6-0.7 step sizes and ~6 leapfrog steps. Without it the numbers differ by orders
  of magnitude (posterior sd of beta1 ~1e-4) and Stan-style mass-matrix regularisation pins the step size
  near 0.03.
* Chains start over-dispersed, eps ~ N(0, 2^2) independently per chain.
* Post-warm-up iterations are thinned internally (:func:`.chains.auto_thin`); the returned draw count is the
  contract's chains * (iter - iter // 2).
* The whole chain is one ahead-of-time compiled XLA program (:mod:`.chains`); its compilation overlaps the
  mode search, and a persistent compilation cache (:func:`growth_engine.runtime.configure`) makes later
  fits of similar size skip it.

The model and its priors are in :mod:`.model` / :mod:`.priors`, the student summaries in
:mod:`.summaries`, the response in :mod:`.response`. Importing this module changes no global JAX setting:
fits run in float64 either way (:func:`growth_engine.runtime.float64`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import independence, runtime
from .chains import ChainProgram, auto_thin, default_chain_method, pad_groups
from .laplace import laplace, moment_estimates
from .model import SITES, flat, to_params, to_unconstrained
from .observation import Observation, observation
from .priors import BRMS_NAMES, FORMULA, PRIORS
from .request import check_one_row_per_week, validate_data, validate_observation_model, validate_settings
from .response import build_response
from .state import PARAM_NAMES, FitState, save_state
from .stats import StudentStats, design_groups, student_stats
from .summaries import student_summary_columns, summary_records

__all__ = [
    "BRMS_NAMES", "FORMULA", "PRIORS", "ChainRun", "FitResult", "Plan", "Prepared", "fit", "fit_full", "fit_prepared",
    "prepare",
]  # fmt: skip


@dataclass(frozen=True)
class Plan:
    """Validated settings of one fit."""

    iter: int
    chains: int
    seed: int | None
    seed_used: int
    num_warmup: int
    num_draws: int
    thin: int
    method: str
    init_scale: float

    @property
    def num_run(self) -> int:
        """Iterations run per chain: warm-up + thin x draws."""
        return self.num_warmup + self.thin * self.num_draws


@dataclass(frozen=True)
class ChainRun:
    """What the chains produced: kept draws per chain, per-iteration sampler statistics after warm-up."""

    per_chain: dict[str, np.ndarray]  # PARAM_NAMES -> (chains, draws)
    diverging: np.ndarray  # (chains, post-warm-up iterations)
    num_steps: np.ndarray
    accept_prob: np.ndarray
    step_size: np.ndarray  # (chains,) adapted step size at the end
    laplace_info: dict[str, Any]
    laplace_seconds: float
    compile_seconds: float  # wall-clock seconds attributable to JIT compilation
    chain_compile_seconds: float
    sampling_seconds: float


class FitResult:
    """A finished fit: ``summary`` (the contract's fit body minus run_id/engine/fitted_at and ``students``),
    ``students`` (the per-student summaries as columns, :data:`growth_engine.summaries.STUDENT_COLUMNS`)
    and ``state`` (for predict). ``response`` is the whole body, with ``students`` as records."""

    def __init__(self, summary: dict[str, Any], students: dict[str, np.ndarray], state: FitState) -> None:
        self.summary = summary
        self.students = students
        self.state = state

    @property
    def response(self) -> dict[str, Any]:
        return {**self.summary, "students": summary_records(self.students)}

    def save_state(self, path: Any) -> None:
        save_state(self.state, path)

    def state_writer(self) -> Callable[[Any], None]:
        return lambda path: save_state(self.state, path)


def _plan(
    iter: int,
    chains: int,
    seed: int | None,
    n_padded: int,
    chain_method: str | None,
    thin: int | None,
    init_scale: float,
) -> Plan:
    num_draws = iter - iter // 2
    entropy = int(np.random.SeedSequence().entropy)  # type: ignore[arg-type]
    seed_used = int(seed) if seed is not None else entropy % (2**31 - 1)
    if chain_method == "independence" or (chain_method is None and n_padded > independence.MIN_GROUPS):
        return Plan(iter, chains, seed, seed_used, independence.WARMUP, num_draws, 1, "independence", init_scale)
    thin = int(auto_thin(n_padded) if thin is None else thin)
    if thin < 1:
        raise ValueError("thin must be >= 1")
    method = chain_method or default_chain_method(chains, n_padded)
    return Plan(iter, chains, seed, seed_used, iter // 2, num_draws, thin, method, init_scale)


def _run_chains(plan: Plan, stats: StudentStats, data: dict[str, np.ndarray], overlap_compile: bool) -> ChainRun:
    """Laplace start + preconditioned NUTS (the chains compile while the mode is found), or with very many
    design groups independence Metropolis-Hastings from the Laplace approximation (:mod:`.independence`)."""
    program = None
    if plan.method != "independence":
        program = ChainProgram(data, plan.chains, plan.num_warmup, plan.num_run, plan.method)
        if overlap_compile:
            program.start()
    t_l = time.perf_counter()
    mode, chol, lap_info, lap_compile = laplace(data, flat(to_unconstrained(moment_estimates(stats))))
    laplace_s = time.perf_counter() - t_l - lap_compile
    # over-dispersed starts: the preconditioned posterior is ~N(0, I)
    eps0 = plan.init_scale * np.random.default_rng(plan.seed_used).standard_normal((plan.chains, len(SITES)))
    if program is None:
        t_s = time.perf_counter()
        outs = independence.run_independence(data, mode, chol, eps0, plan.num_run, plan.seed_used)
        compile_wait, sampling_s = 0.0, time.perf_counter() - t_s
    else:
        outs, compile_wait, sampling_s = program.run(plan.seed_used, eps0, mode, chol)
    eps, diverging, num_steps, accept_prob, step_size = outs
    z = np.asarray(mode) + np.asarray(eps) @ np.asarray(chol).T  # (chains, iter, 6)
    kept = slice(plan.num_warmup + plan.thin - 1, plan.num_run, plan.thin)
    after = slice(plan.num_warmup, plan.num_run)  # every post-warm-up iteration
    return ChainRun(
        per_chain=to_params({k: z[..., i][:, kept] for i, k in enumerate(SITES)}),
        diverging=np.asarray(diverging)[:, after],
        num_steps=np.asarray(num_steps)[:, after],
        accept_prob=np.asarray(accept_prob)[:, after],
        step_size=np.asarray(step_size)[:, -1],
        laplace_info=lap_info,
        laplace_seconds=laplace_s,
        compile_seconds=lap_compile + (compile_wait if overlap_compile or program is None else program.compile_seconds),
        chain_compile_seconds=0.0 if program is None else program.compile_seconds,
        sampling_seconds=sampling_s,
    )


@dataclass(frozen=True)
class Prepared:
    """The rows, reduced to what the chains need: the students' statistics under the observation model.
    Once prepared, the rows can go (at 11 million rows they are the better part of a fit's memory)."""

    stats: StudentStats
    observation: dict[str, Any]  # Observation.describe()
    observation_name: str
    observation_seconds: float
    n_rows: int
    n_weeks: int
    started: float  # time.perf_counter() when preparing began (the fit's total_seconds count from it)


def observed_rows(
    student: Sequence[Any] | np.ndarray,
    week: Sequence[Any] | np.ndarray,
    score: Sequence[Any] | np.ndarray,
    *,
    n: Sequence[Any] | np.ndarray | None = None,
    observation_model: str | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, Observation]:
    """The rows validated, and the observation model a fit of them uses (kappa estimated on them): what
    :func:`prepare` starts from, and what the engine server's /observation answers the brms engine."""
    columns = {"student": student, "week": week, "score": score, **({} if n is None else {"n": n})}
    student, week, score, n = validate_data(columns)
    return student, week, score, observation(validate_observation_model(observation_model, n), student, week, score, n)


def prepare(
    student: Sequence[Any] | np.ndarray,
    week: Sequence[Any] | np.ndarray,
    score: Sequence[Any] | np.ndarray,
    *,
    n: Sequence[Any] | np.ndarray | None = None,
    observation_model: str | None = None,
    student_labels: np.ndarray | None = None,
) -> Prepared:
    """Validate the rows and reduce them to per-student statistics (see :func:`fit_full`'s arguments)."""
    started = time.perf_counter()
    student, week, score, obs = observed_rows(student, week, score, n=n, observation_model=observation_model)
    observation_seconds = time.perf_counter() - started
    stats = student_stats(student, week, score, weight=obs.weight)
    if student_labels is not None:
        stats.ids = np.asarray(student_labels)[stats.ids]
    check_one_row_per_week(stats.n_weeks, stats.n_rows)
    n_weeks = int(np.unique(week).shape[0])
    return Prepared(stats, obs.describe(), obs.name, observation_seconds, int(student.shape[0]), n_weeks, started)


def fit_prepared(
    prepared: Prepared,
    iter: int = 1000,
    chains: int = 2,
    seed: int | None = None,
    *,
    chain_method: str | None = None,
    init_scale: float = 2.0,
    overlap_compile: bool = True,
    thin: int | None = None,
) -> FitResult:
    """Fit the model to prepared rows (:func:`prepare`); see :func:`fit_full`."""
    with runtime.float64():
        iter, chains, seed, _ = validate_settings(iter, chains, seed, "gaussian")
        stats = prepared.stats
        groups = design_groups(stats)
        data = pad_groups(groups)
        plan = _plan(iter, chains, seed, len(data["count"]), chain_method, thin, init_scale)
        run = _run_chains(plan, stats, data, overlap_compile)
        draws = {k: run.per_chain[k].reshape(-1) for k in PARAM_NAMES}  # chain-major flattening
        summary = build_response(plan, stats, groups, run, draws, n_rows=prepared.n_rows, n_weeks=prepared.n_weeks)
        students = student_summary_columns(stats, draws, groups=groups)
    summary["model"]["observation"] = prepared.observation
    summary["diagnostics"]["observation_seconds"] = prepared.observation_seconds
    meta = {"week_center": stats.center, "iter": iter, "chains": chains, "seed": seed, "seed_used": plan.seed_used,
            "family": "gaussian", "engine": "collapsed", "observation_model": prepared.observation_name}  # fmt: skip
    state = FitState(draws=draws, chain=np.repeat(np.arange(chains), plan.num_draws), stats=stats, meta=meta)
    summary["diagnostics"]["total_seconds"] = time.perf_counter() - prepared.started
    return FitResult(summary, students, state)


def fit_full(
    student: Sequence[Any] | np.ndarray,
    week: Sequence[Any] | np.ndarray,
    score: Sequence[Any] | np.ndarray,
    iter: int = 1000,
    chains: int = 2,
    seed: int | None = None,
    *,
    n: Sequence[Any] | np.ndarray | None = None,
    observation_model: str | None = None,
    student_labels: np.ndarray | None = None,
    **chain_options: Any,
) -> FitResult:
    """Fit the model; see :func:`fit`. Also returns the state needed by :mod:`growth_engine.predict`.

    ``student_labels``: when given, ``student`` holds integer codes into it (ids coded once, e.g. from an
    Arrow dictionary: a million ids are not carried as strings per row); codes must sort as the labels do,
    so that students come out in the order ``np.unique`` gives the labels themselves. ``chain_options``:
    :func:`fit_prepared`'s (chain_method, init_scale, overlap_compile, thin)."""
    validate_settings(iter, chains, seed, "gaussian")  # bad settings fail before the rows are read
    with runtime.float64():
        prepared = prepare(student, week, score, n=n, observation_model=observation_model,
                           student_labels=student_labels)  # fmt: skip
    return fit_prepared(prepared, iter, chains, seed, **chain_options)


def fit(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """Fit ``score ~ week + (week | student)`` (gaussian) with the collapsed engine; the arguments of
    :func:`fit_full`.

    Returns {"model", "posterior_summary", "students", "diagnostics"} as in docs/growth-api.md.
    ``iter`` counts warm-up (iter // 2) plus draws per chain, as in brms.
    """
    return fit_full(*args, **kwargs).response
