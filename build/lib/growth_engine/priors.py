"""The model's explicit, data-independent priors, defined once, as data (numpy-free, JAX-free).

Everything else is derived from :data:`PRIOR_SPECS`: the NumPyro model and the hand-written potential with
its normalising constant (:mod:`growth_engine.model`), and the brms-notation rows the fit reports
(:data:`PRIORS`), which are the rows of the R service's ``growth_priors("gaussian")`` (``R/priors.R``;
a test compares the two).

Kinds: ``normal(location, scale)``; ``half_normal(scale)`` (brms: ``normal(0, scale)`` on a parameter
bounded below by 0); ``lkj(eta)`` on the 2x2 correlation matrix, whose density on rho is proportional to
(1 - rho^2)^(eta - 1), i.e. (rho + 1)/2 ~ Beta(eta, eta).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

FORMULA = "score ~ week + (week | student)"
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


@dataclass(frozen=True)
class Prior:
    """One population parameter's prior: what it is called where, its distribution and the distribution's arguments."""

    param: str  #: name in growth_engine.state.PARAM_NAMES
    site: str  #: NumPyro sample site (unconstrained for the sampler)
    brms_class: str
    brms_coef: str
    brms_group: str
    kind: str  #: "normal" | "half_normal" | "lkj"
    args: tuple[float, ...]  #: normal: (location, scale); half_normal: (scale,); lkj: (eta,)

    def brms(self) -> str:
        """The prior in brms notation, e.g. ``normal(0.5, 0.5)``, ``lkj(2)``."""
        if self.kind == "normal":
            return f"normal({_num(self.args[0])}, {_num(self.args[1])})"
        if self.kind == "half_normal":
            return f"normal(0, {_num(self.args[0])})"
        if self.kind == "lkj":
            return f"lkj({_num(self.args[0])})"
        raise ValueError(f"unknown prior kind {self.kind!r}")

    def report(self) -> dict[str, str]:
        """The row reported in the fit response (and by R's ``growth_priors``)."""
        return {"class": self.brms_class, "coef": self.brms_coef, "group": self.brms_group, "prior": self.brms()}

    def log_const(self) -> float:
        """Normalising constant of the log density on the sampler's unconstrained scale (see model.py)."""
        if self.kind == "normal":
            return -math.log(self.args[1]) - _HALF_LOG_2PI
        if self.kind == "half_normal":
            return math.log(2.0) - math.log(self.args[0]) - _HALF_LOG_2PI
        if self.kind == "lkj":  # Beta(eta, eta): -log B(eta, eta)
            eta = self.args[0]
            return math.lgamma(2.0 * eta) - 2.0 * math.lgamma(eta)
        raise ValueError(f"unknown prior kind {self.kind!r}")


def _num(x: float) -> str:
    """Shortest text of a number as R prints it in a prior (0.5, 0, 0.05, 2)."""
    return f"{x:g}"


#: The contract's gaussian priors (docs/growth-api.md), in the order of growth_engine.state.PARAM_NAMES.
PRIOR_SPECS: tuple[Prior, ...] = (
    Prior("beta0", "Intercept", "Intercept", "", "", "normal", (0.5, 0.5)),
    Prior("beta1", "b_week", "b", "", "", "normal", (0.0, 0.1)),
    Prior("sd0", "sd_Intercept", "sd", "Intercept", "student", "half_normal", (0.3,)),
    Prior("sd1", "sd_week", "sd", "week", "student", "half_normal", (0.05,)),
    Prior("rho", "cor_u", "cor", "", "student", "lkj", (2.0,)),
    Prior("sigma", "sigma", "sigma", "", "", "half_normal", (0.3,)),
)

#: The explicit, data-independent priors of the contract (gaussian column), in brms notation.
PRIORS: list[dict[str, str]] = [p.report() for p in PRIOR_SPECS]

#: additive constant of the log prior density on the unconstrained scale (sum over the parameters)
LOG_PRIOR_CONST: float = sum(p.log_const() for p in PRIOR_SPECS)

#: brms names of the sampled parameters (time centred at c), in PARAM_NAMES order.
BRMS_NAMES = {
    "beta0": "b_Intercept",
    "beta1": "b_week",
    "sd0": "sd_student__Intercept",
    "sd1": "sd_student__week",
    "rho": "cor_student__Intercept__week",
    "sigma": "sigma",
}
