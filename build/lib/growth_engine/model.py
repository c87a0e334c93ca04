"""The collapsed gaussian growth model for the sampler (JAX + NumPyro), derived from :mod:`.priors`.

The sampler works on the unconstrained 6-vector v (order of :data:`SITES`): normal parameters as they are,
half-normal ones (the sds, sigma) on the log scale, and the correlation as x with rho = tanh(x / 2), i.e.
(rho + 1)/2 = sigmoid(x). :func:`model` is the NumPyro model; :func:`potential` is a hand-written
equivalent (same value, checked in the tests) that compiles faster.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.infer.util import potential_energy

from .collapsed import grouped_marginal_loglik
from .priors import LOG_PRIOR_CONST, PRIOR_SPECS, Prior

#: unconstrained site names, in the order of the sampler's vector (and of growth_engine.state.PARAM_NAMES)
SITES: tuple[str, ...] = tuple(p.site for p in PRIOR_SPECS)
_PARAMS: tuple[str, ...] = tuple(p.param for p in PRIOR_SPECS)

#: additive constant making :func:`potential` equal :func:`potential_numpyro` (derived from the priors)
_LOG_PRIOR_CONST = LOG_PRIOR_CONST


def _numpyro_site(p: Prior) -> Any:
    """Sample the prior's site; returns the parameter on its natural scale."""
    if p.kind == "normal":
        return numpyro.sample(p.site, dist.Normal(p.args[0], p.args[1]))
    if p.kind == "half_normal":
        return numpyro.sample(p.site, dist.HalfNormal(p.args[0]))
    if p.kind == "lkj":  # LKJ(eta) on a 2x2 correlation matrix: (rho + 1)/2 ~ Beta(eta, eta)
        return 2.0 * numpyro.sample(p.site, dist.Beta(p.args[0], p.args[0])) - 1.0
    raise ValueError(f"unknown prior kind {p.kind!r}")


def model(data: Mapping[str, Any]) -> None:
    """NumPyro model: the contract's priors + the exact collapsed likelihood as a factor.

    ``data`` is the dict of design-group arrays (:meth:`growth_engine.stats.DesignGroups.arrays`).
    """
    theta = {p.param: _numpyro_site(p) for p in PRIOR_SPECS}
    numpyro.factor("collapsed_loglik", grouped_marginal_loglik(data, *(theta[k] for k in _PARAMS), xp=jnp))


def _sites(v: Any) -> dict[str, Any]:
    return {k: v[..., i] for i, k in enumerate(SITES)}


def potential_numpyro(v: Any, data: Mapping[str, Any]) -> Any:
    """Reference potential: numpyro's -log density of :func:`model` at the unconstrained 6-vector ``v``."""
    return potential_energy(model, (data,), {}, _sites(v))


def _constrain(p: Prior, x: Any, xp: Any = jnp) -> Any:
    if p.kind == "normal":
        return x
    if p.kind == "half_normal":
        return xp.exp(x)
    if p.kind == "lkj":
        return xp.tanh(x / 2.0)
    raise ValueError(f"unknown prior kind {p.kind!r}")


def _unconstrain(p: Prior, value: Any) -> Any:
    if p.kind == "normal":
        return value
    if p.kind == "half_normal":
        return np.log(value)
    if p.kind == "lkj":
        return 2.0 * np.arctanh(value)
    raise ValueError(f"unknown prior kind {p.kind!r}")


def _log_kernel(p: Prior, x: Any) -> Any:
    """Log prior density at the unconstrained value x, with the log-Jacobian, without its constant."""
    if p.kind == "normal":
        return -0.5 * ((x - p.args[0]) / p.args[1]) ** 2
    if p.kind == "half_normal":  # density of sd = exp(x), times d sd / dx = sd
        return -0.5 * (jnp.exp(x) / p.args[0]) ** 2 + x
    if p.kind == "lkj":  # Beta(eta, eta) density of u = sigmoid(x), times du/dx = u (1 - u)
        return p.args[0] * (jax.nn.log_sigmoid(x) + jax.nn.log_sigmoid(-x))
    raise ValueError(f"unknown prior kind {p.kind!r}")


def potential(v: Any, data: Mapping[str, Any]) -> Any:
    """Potential energy = -log posterior density of the unconstrained 6-vector ``v`` (JAX).

    v = (beta0, beta1, log sd0, log sd1, x, log sigma) with rho = tanh(x/2). Hand-written equivalent of
    :func:`potential_numpyro` (same value, checked in the tests) that compiles faster: the priors with
    their log-Jacobians and constant + the exact collapsed likelihood (grouped fast path).
    """
    xs = [v[..., i] for i in range(len(PRIOR_SPECS))]
    log_prior = sum(_log_kernel(p, x) for p, x in zip(PRIOR_SPECS, xs, strict=True)) + _LOG_PRIOR_CONST
    theta = [_constrain(p, x) for p, x in zip(PRIOR_SPECS, xs, strict=True)]
    return -(log_prior + grouped_marginal_loglik(data, *theta, xp=jnp))


def precond_potential(eps: Any, data: Mapping[str, Any], mode: Any, chol: Any) -> Any:
    """Potential of the affinely reparametrized eps, v = mode + chol @ eps (constant Jacobian)."""
    return potential(mode + chol @ eps, data)


def to_params(z: Mapping[str, Any]) -> dict[str, Any]:
    """Unconstrained site dict (arrays) -> dict of PARAM_NAMES (numpy or jax arrays)."""
    xp = jnp if isinstance(z[SITES[0]], jax.Array) else np
    return {p.param: _constrain(p, z[p.site], xp) for p in PRIOR_SPECS}


def to_unconstrained(params: Mapping[str, float]) -> dict[str, Any]:
    """Dict of PARAM_NAMES -> unconstrained site dict."""
    return {p.site: _unconstrain(p, params[p.param]) for p in PRIOR_SPECS}


def flat(d: Mapping[str, Any]) -> np.ndarray:
    """Site dict -> the sampler's vector (order of :data:`SITES`)."""
    return np.array([float(d[k]) for k in SITES])
