"""Run-time settings as a resource: read from the environment when a run launches, so a code location
loads even with a bad variable (the run then fails naming it). Fields set in run config win over the
environment; the weekly job sets ``lookback_weeks: 12`` this way."""

from __future__ import annotations

import dagster as dg
from pydantic import Field

from seed_growth.settings import GrowthSettings


class GrowthSettingsResource(dg.ConfigurableResource):
    lookback_weeks: int | None = Field(default=None, description="weeks per window (LOOKBACK_WEEKS / BRMS_LOOKBACK_WEEKS, 8)")
    iter: int | None = Field(default=None, description="iterations per chain incl. warm-up (BRMS_ITER / BRMS_N_SAMPLES, 1000)")
    chains: int | None = Field(default=None, description="MCMC chains (BRMS_CHAINS / BRMS_N_CHAINS, 2)")
    family: str | None = Field(default=None, description="gaussian or binomial (BRMS_FAMILY)")
    engine: str | None = Field(default=None, description="auto, collapsed or brms (BRMS_ENGINE)")
    use_bayesian: bool | None = Field(default=None, description="P from the posterior (METRICS_USE_BAYESIAN)")
    goal_score: float | None = Field(default=None, description="default goal (GOAL_SCORE, 0.8)")
    goal_horizon_weeks: int | None = Field(default=None, description="weeks ahead of the as-of week (GOAL_HORIZON_WEEKS, 4)")

    def resolve(self) -> GrowthSettings:
        return GrowthSettings.from_env(**self.model_dump())
