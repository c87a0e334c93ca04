"""Chains for cohorts with very many design groups: independence Metropolis-Hastings from the Laplace
approximation, with the exact collapsed posterior in the acceptance ratio.

Under the attempts observation model nearly every student has a design of their own, so a gradient of the
exact posterior costs O(students) (a million students: ~0.1-0.2 s here) and NUTS's ~10,000 gradients
would take half an hour. But with that many students the posterior of the six population parameters is
all but normal (Bernstein-von Mises), so the Laplace approximation that already preconditions NUTS
(:mod:`.laplace`) is an excellent proposal on its own: every chain proposes eps ~ multivariate t_10 in the
preconditioned space, independently of where it is, and accepts with the exact Metropolis-Hastings ratio.
The chains are exact MCMC for the same posterior as NUTS's. A proposal's density needs one evaluation of
the exact posterior and no gradient, and since the proposals do not depend on the chain, all of them are
evaluated in one batched pass. When the posterior is not close to normal the acceptance rate drops and the
chains stick, which R-hat and ESS report (the fit is then marked not converged, never silently wrong).

The chains start over-dispersed like NUTS's; ``WARMUP`` iterations are discarded (there is nothing to
adapt).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .model import SITES, precond_potential

#: degrees of freedom of the multivariate t proposal (heavier tails than the posterior: a safe proposal)
PROPOSAL_DF = 10.0
#: iterations discarded per chain (the proposal does not adapt; this only forgets the over-dispersed start)
WARMUP = 50
#: above this many design groups the chains are run this way rather than with NUTS
MIN_GROUPS = 50_000
#: points evaluated at once per device: each holds the potential's intermediates for every design group
#: (a million groups: ~0.25 GB a point), so memory, not speed, sets it (BENCHMARKS.md)
POTENTIAL_BATCH = 1


def _log_proposal(eps: np.ndarray) -> np.ndarray:
    """log density of the multivariate t_df proposal at eps, up to a constant."""
    k = eps.shape[-1]
    return -0.5 * (PROPOSAL_DF + k) * np.log1p(np.sum(eps * eps, axis=-1) / PROPOSAL_DF)


def _proposals(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    k = len(SITES)
    z = rng.standard_normal((*shape, k))
    scale = np.sqrt(PROPOSAL_DF / rng.chisquare(PROPOSAL_DF, size=shape))
    return z * scale[..., None]


def _potentials(eps: np.ndarray, data: Mapping[str, Any], mode: np.ndarray, chol: np.ndarray) -> np.ndarray:
    """Exact potential at every row of eps (M, 6): batched, split over the XLA host devices (one per core)."""

    def evaluate(points, data, mode, chol):
        return jax.lax.map(lambda e: precond_potential(e, data, mode, chol), points, batch_size=POTENTIAL_BATCH)

    devices = jax.local_devices()
    per_device = -(-eps.shape[0] // len(devices))
    padded = np.concatenate([eps, np.zeros((per_device * len(devices) - eps.shape[0], eps.shape[1]))])
    points = jnp.asarray(padded.reshape(len(devices), per_device, eps.shape[1]))
    jd = {k: jnp.asarray(v) for k, v in data.items()}
    fn = jax.pmap(evaluate, in_axes=(0, None, None, None), devices=devices)
    return np.asarray(fn(points, jd, jnp.asarray(mode), jnp.asarray(chol))).reshape(-1)[: eps.shape[0]]


def run_independence(
    data: Mapping[str, Any], mode: np.ndarray, chol: np.ndarray, eps0: np.ndarray, num_total: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The chains (one per row of eps0): (eps (chains, num_total, 6), diverging, num_steps, accept_prob,
    step_size) in the shapes of the NUTS program's outputs (no divergences, one step, step size nan)."""
    chains = eps0.shape[0]
    rng = np.random.default_rng(seed)
    proposals = _proposals(rng, (chains, num_total))
    points = np.concatenate([eps0, proposals.reshape(-1, len(SITES))])
    log_target = -_potentials(points, data, mode, chol)
    log_weight = log_target - _log_proposal(points)  # the importance weight of each point
    start_weight, weight = log_weight[:chains], log_weight[chains:].reshape(chains, num_total)
    log_u = np.log(rng.random((chains, num_total)))
    eps = np.empty((chains, num_total, len(SITES)))
    accept_prob = np.empty((chains, num_total))
    for c in range(chains):
        current, current_weight = eps0[c], start_weight[c]
        for t in range(num_total):
            ratio = weight[c, t] - current_weight
            accept_prob[c, t] = np.exp(min(0.0, ratio)) if np.isfinite(ratio) else 0.0
            if log_u[c, t] < ratio:
                current, current_weight = proposals[c, t], weight[c, t]
            eps[c, t] = current
    shape = (chains, num_total)
    return eps, np.zeros(shape, dtype=bool), np.ones(shape, dtype=np.int64), accept_prob, np.full(shape, np.nan)
