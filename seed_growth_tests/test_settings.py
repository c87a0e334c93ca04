import pytest

from seed_growth.settings import GrowthSettings, SettingsError, SourceRelation, check_identifier


def test_defaults():
    s = GrowthSettings.from_env({})
    assert (s.lookback_weeks, s.iter, s.chains, s.family, s.use_bayesian) == (8, 1000, 2, "gaussian", True)
    assert (s.goal_score, s.goal_horizon_weeks) == (0.8, 4)
    assert s.fit_engine == "collapsed"
    assert s.source == SourceRelation("attempt", "user_id", "is_correct", "attempted_at")


@pytest.mark.parametrize(
    "name, alias, field, value",
    [
        ("LOOKBACK_WEEKS", "BRMS_LOOKBACK_WEEKS", "lookback_weeks", 12),
        ("BRMS_ITER", "BRMS_N_SAMPLES", "iter", 2000),
        ("BRMS_CHAINS", "BRMS_N_CHAINS", "chains", 4),
    ],
)
def test_both_names_are_read(name, alias, field, value):
    assert getattr(GrowthSettings.from_env({name: str(value)}), field) == value
    assert getattr(GrowthSettings.from_env({alias: str(value)}), field) == value
    agreeing = GrowthSettings.from_env({name: str(value), alias: str(value)})
    assert getattr(agreeing, field) == value and agreeing.warnings == ()


def test_documented_name_wins_when_both_disagree():
    s = GrowthSettings.from_env(
        {"LOOKBACK_WEEKS": "6", "BRMS_LOOKBACK_WEEKS": "12", "BRMS_N_CHAINS": "3", "BRMS_CHAINS": "2"}
    )
    assert s.lookback_weeks == 6 and s.chains == 2
    assert any("LOOKBACK_WEEKS=6 and BRMS_LOOKBACK_WEEKS=12 disagree; using LOOKBACK_WEEKS=6" in w for w in s.warnings)
    assert any("BRMS_CHAINS=2" in w for w in s.warnings)


def test_other_settings():
    s = GrowthSettings.from_env(
        {
            "BRMS_FAMILY": "Binomial",
            "METRICS_USE_BAYESIAN": "false",
            "GOAL_SCORE": "0.7",
            "GOAL_HORIZON_WEEKS": "2",
            "BRMS_ENGINE": "auto",
        }
    )
    assert (s.family, s.use_bayesian, s.goal_score, s.goal_horizon_weeks, s.fit_engine) == (
        "binomial",
        False,
        0.7,
        2,
        "brms",
    )


@pytest.mark.parametrize(
    "env, fit_observation_model",
    [
        ({}, "attempts"),
        ({"BRMS_ENGINE": "brms"}, "attempts"),
        ({"BRMS_ENGINE": "brms", "BRMS_OBSERVATION_MODEL": "plain"}, "plain"),
        ({"BRMS_OBSERVATION_MODEL": "Plain"}, "plain"),
        ({"BRMS_FAMILY": "binomial"}, "plain"),
    ],
)
def test_either_engine_fits_the_observation_model_set(env, fit_observation_model):
    assert GrowthSettings.from_env(env).fit_observation_model == fit_observation_model


@pytest.mark.parametrize(
    "env, message",
    [
        ({"LOOKBACK_WEEKS": "-3"}, "LOOKBACK_WEEKS (or BRMS_LOOKBACK_WEEKS)=-3 is out of range"),
        ({"BRMS_LOOKBACK_WEEKS": "0"}, "LOOKBACK_WEEKS (or BRMS_LOOKBACK_WEEKS)=0 is out of range"),
        ({"BRMS_ITER": "abc"}, "BRMS_ITER (or BRMS_N_SAMPLES)='abc' is not an integer"),
        ({"BRMS_N_SAMPLES": "1.5"}, "BRMS_ITER (or BRMS_N_SAMPLES)='1.5' is not an integer"),
        ({"BRMS_N_CHAINS": "0"}, "BRMS_CHAINS (or BRMS_N_CHAINS)=0 is out of range"),
        ({"BRMS_FAMILY": "poisson"}, "BRMS_FAMILY='poisson' is not a supported family"),
        ({"BRMS_ENGINE": "vi"}, "BRMS_ENGINE='vi' is not an engine"),
        (
            {"BRMS_ENGINE": "collapsed", "BRMS_FAMILY": "binomial"},
            "BRMS_ENGINE=collapsed only fits the gaussian family",
        ),
        ({"METRICS_USE_BAYESIAN": "maybe"}, "METRICS_USE_BAYESIAN='maybe' is not a boolean"),
        ({"GOAL_SCORE": "1.5"}, "GOAL_SCORE=1.5 must be in (0, 1]"),
        ({"GOAL_SCORE": "high"}, "GOAL_SCORE='high' is not a number"),
        (
            {"ATTEMPT_RELATION": "attempt; DROP TABLE weekly_kpi"},
            "ATTEMPT_RELATION='attempt; DROP TABLE weekly_kpi' is not a plain SQL identifier",
        ),
        ({"ATTEMPT_TIME_COLUMN": 'ts"--'}, "ATTEMPT_TIME_COLUMN="),
        (
            {"ATTEMPT_USER_COLUMN": "public.user_id"},
            "ATTEMPT_USER_COLUMN='public.user_id' is not a plain SQL identifier",
        ),
    ],
)
def test_invalid_values_name_the_variable(env, message):
    with pytest.raises(SettingsError) as error:
        GrowthSettings.from_env(env)
    assert message in str(error.value)


def test_schema_qualified_relation_is_allowed():
    assert check_identifier("ATTEMPT_RELATION", "platform.attempt", allow_schema=True) == "platform.attempt"
    assert GrowthSettings.from_env({"ATTEMPT_RELATION": "platform.attempt"}).source.relation == "platform.attempt"


def test_overrides_win_over_environment():
    s = GrowthSettings.from_env({"LOOKBACK_WEEKS": "8"}, lookback_weeks=12, family=None)
    assert s.lookback_weeks == 12 and s.family == "gaussian"


def test_as_record_names_what_a_run_used():
    record = GrowthSettings.from_env({"BRMS_LOOKBACK_WEEKS": "12", "BRMS_N_SAMPLES": "2000"}).as_record()
    assert record["lookback_weeks"] == 12 and record["iter"] == 2000 and record["fit_engine"] == "collapsed"
    assert record["source"]["relation"] == "attempt" and "warnings" not in record


@pytest.mark.parametrize("name", ["LOOKBACK_WEEKS", "BRMS_LOOKBACK_WEEKS"])
def test_the_resource_defaults_follow_either_name(name):
    from seed_growth.resources import GrowthSettingsResource

    assert GrowthSettingsResource.from_env({name: "6"}).lookback_weeks == 6
    assert GrowthSettingsResource.from_env({}).lookback_weeks == 8


def test_rounded_metadata():
    from seed_growth.reporting import rounded

    assert rounded(1.0058639964593752) == 1.0059 and rounded(1234.56789) == 1234.5679
