-- The database contract of seed-growth. Applied idempotently: running it twice changes nothing.
-- The source relation (`attempt` by default, a VIEW in production) is the platform's and is not created
-- here; demo_schema.sql creates a local table of that shape.

-- weekly_scores: per student and week, the share of correct attempts, for one as-of week (partition).
CREATE TABLE IF NOT EXISTS weekly_scores (
    as_of_week      date             NOT NULL,             -- partition key (a Monday, UTC)
    user_id         text             NOT NULL,
    week            integer          NOT NULL CHECK (week >= 0),  -- 0 = first week of the window
    week_start      date             NOT NULL,             -- Monday of that week
    n_attempts      integer          NOT NULL CHECK (n_attempts > 0),
    n_correct       integer          NOT NULL CHECK (n_correct >= 0 AND n_correct <= n_attempts),
    score           double precision NOT NULL CHECK (score >= 0 AND score <= 1),
    lookback_weeks  integer          NOT NULL CHECK (lookback_weeks > 0),
    PRIMARY KEY (as_of_week, user_id, week)
);

-- growth_brms_meta: one row per fit of the growth model.
CREATE TABLE IF NOT EXISTS growth_brms_meta (
    run_id             text        PRIMARY KEY,            -- the fitting service's id (predict_prob uses it)
    fitted_at          timestamptz NOT NULL,
    as_of_week         date        NOT NULL,
    window_start       date        NOT NULL,
    lookback_weeks     integer     NOT NULL,
    family             text        NOT NULL,
    engine             text        NOT NULL,
    iter               integer     NOT NULL,
    chains             integer     NOT NULL,
    n_students         integer     NOT NULL,
    n_rows             integer     NOT NULL,
    converged          boolean     NOT NULL,               -- passed the convergence rules (R-hat, ESS, divergences)
    posterior_summary  jsonb       NOT NULL,               -- population effects; ->'week' is the slope
    diagnostics        jsonb       NOT NULL,
    model              jsonb       NOT NULL,               -- formula, family, priors, sampler settings
    dagster_run_id     text
);
CREATE INDEX IF NOT EXISTS growth_brms_meta_as_of_idx ON growth_brms_meta (as_of_week, fitted_at DESC);

-- Per-student posterior summaries of a fit: enough to compute P without the service.
CREATE TABLE IF NOT EXISTS growth_student_posterior (
    run_id          text             NOT NULL REFERENCES growth_brms_meta (run_id) ON DELETE CASCADE,
    user_id         text             NOT NULL,
    intercept_mean  double precision NOT NULL,             -- linear predictor at week 0 of the window
    intercept_sd    double precision NOT NULL,
    slope_mean      double precision NOT NULL,             -- per week
    slope_sd        double precision NOT NULL,
    cor             double precision NOT NULL,
    n_weeks         integer          NOT NULL,
    PRIMARY KEY (run_id, user_id)
);

-- weekly_kpi: the platform's KPI table. kpis holds other KPIs too; this project only merges its keys.
CREATE TABLE IF NOT EXISTS weekly_kpi (
    user_id     text        NOT NULL,
    week_start  date        NOT NULL,
    kpis        jsonb       NOT NULL DEFAULT '{}'::jsonb,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, week_start)
);

-- Optional per-student goals; students without a row get GOAL_SCORE at GOAL_HORIZON_WEEKS.
CREATE TABLE IF NOT EXISTS student_goal (
    user_id      text             PRIMARY KEY,
    goal_score   double precision NOT NULL CHECK (goal_score > 0 AND goal_score <= 1),
    target_date  date             NOT NULL
);

-- The latest backtest of P against observed outcomes (asset p_calibration).
CREATE TABLE IF NOT EXISTS p_calibration (
    as_of_week     text             NOT NULL,             -- a Monday, or 'overall'
    method         text             NOT NULL,             -- P_bayesian or P_normal
    students       integer          NOT NULL,
    brier          double precision NOT NULL,
    log_loss       double precision NOT NULL,
    mean_p         double precision NOT NULL,
    observed_rate  double precision NOT NULL,
    computed_at    timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (as_of_week, method)
);
CREATE TABLE IF NOT EXISTS p_calibration_bins (
    method         text             NOT NULL,
    bin            text             NOT NULL,
    mean_p         double precision,
    observed_rate  double precision,
    count          integer          NOT NULL,
    PRIMARY KEY (method, bin)
);
