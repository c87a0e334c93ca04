"""Exact collapsed MCMC engine for the gaussian growth model score ~ week + (week | student).

Importing the package (stats, collapsed math, prediction, state I/O) needs only numpy and scipy;
``fit`` / ``fit_full`` live in :mod:`growth_engine.sampler`, which imports JAX + NumPyro on first use.
"""

from .collapsed import (conditional_effects, conditional_linear, conditional_moments,  # noqa: F401
                        grouped_marginal_loglik, marginal_loglik, marginal_loglik_terms)
from .predict import predict_prob  # noqa: F401
from .request import GrowthInputError  # noqa: F401
from .state import FitState, load_state, save_state  # noqa: F401
from .stats import DesignGroups, StudentStats, design_groups, student_stats  # noqa: F401

__version__ = "0.1.0"


def __getattr__(name):
    if name in ("fit", "fit_full"):
        from . import sampler
        return getattr(sampler, name)
    raise AttributeError(name)
