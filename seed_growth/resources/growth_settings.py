"""Run-time settings as a resource, shown and editable in the launchpad with the values a run will use.

Three layers, the later winning: the documented defaults, the environment (both names of every variable,
``seed_growth.settings``), and run config. ``GrowthSettingsResource.from_env()`` (what the code location
uses) fills every field from the environment when the location loads, so the launchpad's scaffold shows
the effective value of each setting as its default (a schedule's run config, e.g. ``lookback_weeks: 12``,
still wins). If the environment holds a bad value the fields stay unset and the location still loads;
every run then reads the environment itself and fails naming the variable. What a run used is logged and
recorded in weekly_scores' and brms_posterior's materialization metadata (``settings``).
"""

from __future__ import annotations

from collections.abc import Mapping

import dagster as dg
from pydantic import Field

from seed_growth.settings import GrowthSettings, SettingsError


class GrowthSettingsResource(dg.ConfigurableResource):
    """Per-run settings of the growth graph: the scores' window (LOOKBACK_WEEKS), the fit (BRMS_ITER,
    BRMS_CHAINS, BRMS_FAMILY, BRMS_ENGINE, BRMS_OBSERVATION_MODEL), P (METRICS_USE_BAYESIAN, GOAL_SCORE,
    GOAL_HORIZON_WEEKS) and the kept weeks (REAGGREGATE_RECENT_WEEKS, REBUILD_KEPT_WEEKS).
    Defaults are the environment's values when the code location loaded; run config overrides them."""

    lookback_weeks: int | None = Field(
        default=None,
        description="weeks per window, 2-104 (LOOKBACK_WEEKS / BRMS_LOOKBACK_WEEKS; default 8, the schedule sets 12)",
    )
    iter: int | None = Field(
        default=None, description="iterations per chain incl. warm-up (BRMS_ITER / BRMS_N_SAMPLES; default 1000)"
    )
    chains: int | None = Field(default=None, description="MCMC chains, 1-8 (BRMS_CHAINS / BRMS_N_CHAINS; default 2)")
    family: str | None = Field(default=None, description="gaussian or binomial (BRMS_FAMILY; default gaussian)")
    engine: str | None = Field(default=None, description="auto, collapsed or brms (BRMS_ENGINE; default auto)")
    observation_model: str | None = Field(
        default=None,
        description=(
            "gaussian model's observation model: attempts (a week weighs by its attempts) or plain "
            "(BRMS_OBSERVATION_MODEL; default attempts)"
        ),
    )
    use_bayesian: bool | None = Field(
        default=None, description="P from the posterior (METRICS_USE_BAYESIAN; default true)"
    )
    goal_score: float | None = Field(default=None, description="default goal, in (0, 1] (GOAL_SCORE; default 0.8)")
    goal_horizon_weeks: int | None = Field(
        default=None, description="target week: weeks after the as-of week (GOAL_HORIZON_WEEKS; default 4)"
    )
    reaggregate_recent_weeks: int | None = Field(
        default=None,
        description=(
            "the window's most recent weeks re-aggregated from the source every run, for late attempts "
            "(REAGGREGATE_RECENT_WEEKS; default 2)"
        ),
    )
    rebuild_kept_weeks: bool | None = Field(
        default=None,
        description="re-aggregate every kept week of the window from the source (REBUILD_KEPT_WEEKS; default false)",
    )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> GrowthSettingsResource:
        """Every field from the environment (unset if the environment holds a bad value: the run reports it)."""
        try:
            settings = GrowthSettings.from_env(environ)
        except SettingsError:
            return cls()
        return cls(**{name: getattr(settings, name) for name in cls.model_fields})

    def resolve(self) -> GrowthSettings:
        """The run's settings: run config (these fields) over the environment over the defaults."""
        return GrowthSettings.from_env(**self.model_dump())
