"""When a posterior may be used: the convergence rules of Vehtari et al. (2021)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any


@dataclasses.dataclass(frozen=True)
class ConvergenceRules:
    max_rhat: float = 1.01
    min_ess_per_chain: float = 100.0  # bulk and tail
    max_divergent: int = 0


def convergence_problems(
    diagnostics: Mapping[str, Any], chains: int, rules: ConvergenceRules = ConvergenceRules()
) -> list[str]:
    """Why the fit's population parameters may not be trusted; empty when they may."""
    problems: list[str] = []
    min_ess = rules.min_ess_per_chain * chains

    def number(key: str) -> float:
        """The diagnostic as a number; NaN when it is missing (which every rule below refuses)."""
        value = diagnostics.get(key)
        return math.nan if value is None else float(value)

    rhat = number("max_rhat")
    if not rhat <= rules.max_rhat:
        problems.append(f"max R-hat {diagnostics.get('max_rhat')} > {rules.max_rhat}")
    for key, label in (("min_ess_bulk", "bulk"), ("min_ess_tail", "tail")):
        if not number(key) >= min_ess:
            ess = diagnostics.get(key)
            problems.append(f"min {label} ESS {ess} < {min_ess:g} ({rules.min_ess_per_chain:g} per chain x {chains})")
    divergent = diagnostics.get("divergent_transitions")
    if not number("divergent_transitions") <= rules.max_divergent:
        problems.append(f"{divergent} divergent transitions")
    return problems
