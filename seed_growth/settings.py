"""Environment -> typed settings.

Every setting is read from the environment. The platform's older job used other names for some of them,
so each of those is accepted under both names. When both are set and disagree, the first name listed in
``ALIASES`` (the name this project documents) wins and a warning says so: a run never silently picks the
value the operator did not expect.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Mapping
from typing import Any, TypeVar

from growth_engine.observation import DEFAULT_OBSERVATION_MODEL, OBSERVATION_MODELS

FAMILIES = ("gaussian", "binomial")
ENGINES = ("auto", "collapsed", "brms")

# documented name -> older name the platform's CronJob used
ALIASES: dict[str, str] = {
    "LOOKBACK_WEEKS": "BRMS_LOOKBACK_WEEKS",
    "BRMS_ITER": "BRMS_N_SAMPLES",
    "BRMS_CHAINS": "BRMS_N_CHAINS",
}

# the per-run settings (GrowthSettingsResource's fields), in the order they are shown
RECORDED_FIELDS = (
    "lookback_weeks",
    "iter",
    "chains",
    "family",
    "engine",
    "observation_model",
    "use_bayesian",
    "goal_score",
    "goal_horizon_weeks",
    "reaggregate_recent_weeks",
    "rebuild_kept_weeks",
)

# the source relation's variables, in SourceRelation's field order
SOURCE_VARIABLES = ("ATTEMPT_RELATION", "ATTEMPT_USER_COLUMN", "ATTEMPT_CORRECT_COLUMN", "ATTEMPT_TIME_COLUMN")
# every variable GrowthSettings.from_env reads, under both names where there are two
SETTING_VARIABLES = (
    *ALIASES,
    *ALIASES.values(),
    *("BRMS_FAMILY", "BRMS_ENGINE", "BRMS_OBSERVATION_MODEL", "METRICS_USE_BAYESIAN", "GOAL_SCORE"),
    "GOAL_HORIZON_WEEKS",
    *("REAGGREGATE_RECENT_WEEKS", "REBUILD_KEPT_WEEKS"),
    *SOURCE_VARIABLES,
)

_Number = TypeVar("_Number", int, float)
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class SettingsError(ValueError):
    """A setting has a value the project cannot use; the message names the variable."""


@dataclasses.dataclass(frozen=True)
class SourceRelation:
    """Where attempts are read from: a relation (view or table) and its three columns."""

    relation: str = "attempt"
    user_column: str = "user_id"
    correct_column: str = "is_correct"
    time_column: str = "attempted_at"

    def __post_init__(self) -> None:
        values = (self.relation, self.user_column, self.correct_column, self.time_column)
        for variable, value in zip(SOURCE_VARIABLES, values, strict=True):
            check_identifier(variable, value, allow_schema=variable == "ATTEMPT_RELATION")


@dataclasses.dataclass(frozen=True)
class GrowthSettings:
    lookback_weeks: int = 8
    iter: int = 1000
    chains: int = 2
    family: str = "gaussian"
    engine: str = "auto"
    observation_model: str = DEFAULT_OBSERVATION_MODEL
    use_bayesian: bool = True
    goal_score: float = 0.8
    goal_horizon_weeks: int = 4
    # extraction: the window's most recent weeks re-aggregated from the source every run, kept or not (late
    # attempts); REBUILD_KEPT_WEEKS re-aggregates every week of the window
    reaggregate_recent_weeks: int = 2
    rebuild_kept_weeks: bool = False
    source: SourceRelation = dataclasses.field(default_factory=SourceRelation)
    warnings: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_range("LOOKBACK_WEEKS", self.lookback_weeks, 2, 104)
        _check_range("BRMS_ITER", self.iter, 200, 20000)
        _check_range("BRMS_CHAINS", self.chains, 1, 8)
        _check_range("GOAL_HORIZON_WEEKS", self.goal_horizon_weeks, 0, 104)
        _check_range("REAGGREGATE_RECENT_WEEKS", self.reaggregate_recent_weeks, 0, 104)
        if not isinstance(self.rebuild_kept_weeks, bool):
            raise SettingsError(f"REBUILD_KEPT_WEEKS={self.rebuild_kept_weeks!r} is not a boolean; use true or false")
        if self.family not in FAMILIES:
            raise SettingsError(f"BRMS_FAMILY={self.family!r} is not a supported family; use one of {FAMILIES}")
        if self.engine not in ENGINES:
            raise SettingsError(f"BRMS_ENGINE={self.engine!r} is not an engine; use one of {ENGINES}")
        if self.engine == "collapsed" and self.family != "gaussian":
            raise SettingsError(
                f"BRMS_ENGINE=collapsed only fits the gaussian family, but BRMS_FAMILY={self.family!r}; "
                "use BRMS_ENGINE=brms (or auto)"
            )
        if self.observation_model not in OBSERVATION_MODELS:
            raise SettingsError(
                f"BRMS_OBSERVATION_MODEL={self.observation_model!r} is not an observation model; "
                f"use one of {OBSERVATION_MODELS}"
            )
        if not (0.0 < self.goal_score <= 1.0) or math.isnan(self.goal_score):
            raise SettingsError(f"GOAL_SCORE={self.goal_score!r} must be in (0, 1]")

    def as_record(self) -> dict[str, Any]:
        """What a run used, for its logs and metadata (the engine as requested and as it resolves)."""
        record = {name: getattr(self, name) for name in RECORDED_FIELDS}
        record["fit_engine"] = self.fit_engine
        record["fit_observation_model"] = self.fit_observation_model
        record["source"] = dataclasses.asdict(self.source)
        return record

    @property
    def fit_engine(self) -> str:
        """The engine a fit request names: 'auto' means the collapsed sampler where it applies."""
        if self.engine != "auto":
            return self.engine
        return "collapsed" if self.family == "gaussian" else "brms"

    @property
    def fit_observation_model(self) -> str:
        """The gaussian model's observation model a fit uses: the setting, with either engine; the binomial
        family has none to choose (its likelihood counts the attempts itself) and reports 'plain'."""
        return self.observation_model if self.family == "gaussian" else "plain"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> GrowthSettings:
        """Read every setting from ``environ`` (default ``os.environ``); ``overrides`` that are not
        None replace the environment's value (Dagster run config uses this)."""
        env = os.environ if environ is None else environ
        warnings: list[str] = []
        values: dict[str, Any] = {
            "lookback_weeks": _int(_pick(env, "LOOKBACK_WEEKS", warnings), "LOOKBACK_WEEKS", 8),
            "iter": _int(_pick(env, "BRMS_ITER", warnings), "BRMS_ITER", 1000),
            "chains": _int(_pick(env, "BRMS_CHAINS", warnings), "BRMS_CHAINS", 2),
            "family": (env.get("BRMS_FAMILY") or "gaussian").strip().lower(),
            "engine": (env.get("BRMS_ENGINE") or "auto").strip().lower(),
            "observation_model": (env.get("BRMS_OBSERVATION_MODEL") or DEFAULT_OBSERVATION_MODEL).strip().lower(),
            "use_bayesian": _bool(env.get("METRICS_USE_BAYESIAN"), "METRICS_USE_BAYESIAN", True),
            "goal_score": _float(env.get("GOAL_SCORE"), "GOAL_SCORE", 0.8),
            "goal_horizon_weeks": _int(env.get("GOAL_HORIZON_WEEKS"), "GOAL_HORIZON_WEEKS", 4),
            "reaggregate_recent_weeks": _int(env.get("REAGGREGATE_RECENT_WEEKS"), "REAGGREGATE_RECENT_WEEKS", 2),
            "rebuild_kept_weeks": _bool(env.get("REBUILD_KEPT_WEEKS"), "REBUILD_KEPT_WEEKS", False),
            "source": SourceRelation(
                relation=env.get("ATTEMPT_RELATION") or "attempt",
                user_column=env.get("ATTEMPT_USER_COLUMN") or "user_id",
                correct_column=env.get("ATTEMPT_CORRECT_COLUMN") or "is_correct",
                time_column=env.get("ATTEMPT_TIME_COLUMN") or "attempted_at",
            ),
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values, warnings=tuple(warnings))


def check_identifier(variable: str, value: str, *, allow_schema: bool = False) -> str:
    """Refuse anything but a plain SQL identifier (optionally ``schema.name``): configuration must never
    be a way to inject SQL."""
    parts = value.split(".") if allow_schema else [value]
    if not value or len(parts) > 2 or not all(_IDENTIFIER.match(p) for p in parts):
        shape = "an identifier or schema.identifier" if allow_schema else "an identifier"
        raise SettingsError(
            f"{variable}={value!r} is not a plain SQL identifier; expected {shape} of letters, digits and _"
        )
    return value


def _pick(env: Mapping[str, str], name: str, warnings: list[str]) -> str | None:
    alias = ALIASES[name]
    primary, secondary = env.get(name) or None, env.get(alias) or None
    if primary is not None and secondary is not None and primary.strip() != secondary.strip():
        warnings.append(f"{name}={primary} and {alias}={secondary} disagree; using {name}={primary}")
    return primary if primary is not None else secondary


def _variable_name(name: str) -> str:
    return f"{name} (or {ALIASES[name]})" if name in ALIASES else name


def _int(raw: str | None, name: str, default: int) -> int:
    return _number(raw, _variable_name(name), default, int, "an integer")


def _float(raw: str | None, name: str, default: float) -> float:
    return _number(raw, name, default, float, "a number")


def _number(raw: str | None, label: str, default: _Number, convert: type[_Number], what: str) -> _Number:
    if raw is None or raw.strip() == "":
        return default
    try:
        return convert(raw.strip())
    except ValueError:
        raise SettingsError(f"{label}={raw!r} is not {what}") from None


def _bool(raw: str | None, name: str, default: bool) -> bool:
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise SettingsError(f"{name}={raw!r} is not a boolean; use true or false")


def _check_range(name: str, value: int, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not (low <= value <= high):
        raise SettingsError(f"{_variable_name(name)}={value!r} is out of range; expected an integer in [{low}, {high}]")
