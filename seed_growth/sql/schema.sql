-- The database contract of seed-growth. Applied idempotently: running it twice changes nothing.
-- The source relation (`attempt` by default, a VIEW in production) is the platform's and is not created
-- here; demo_schema.sql creates a local table of that shape.

-- weekly_scores: per student and week, the share of correct attempts, for one as-of week (partition).
-- Partitioned by as_of_week, a table per week (weekly_scores_pYYYYMMDD): a week's rows are written into a
-- table of their own, indexed once, and swapped in (scores.py, swap_in_partition), twice as fast as filling
-- the primary key row by row. Rows of a week without its own table (written by other means) go to
-- weekly_scores_default.
-- A weekly_scores of earlier versions (one table) is converted once, its rows moved to a table per week.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_class WHERE oid = to_regclass('weekly_scores') AND relkind = 'r') THEN
        ALTER TABLE weekly_scores RENAME TO weekly_scores_unpartitioned;
        ALTER INDEX weekly_scores_pkey RENAME TO weekly_scores_unpartitioned_pkey;
    END IF;
END $$;
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
) PARTITION BY LIST (as_of_week);
CREATE TABLE IF NOT EXISTS weekly_scores_default PARTITION OF weekly_scores DEFAULT;
DO $$
DECLARE
    week date;
BEGIN
    IF to_regclass('weekly_scores_unpartitioned') IS NOT NULL THEN
        FOR week IN SELECT DISTINCT as_of_week FROM weekly_scores_unpartitioned LOOP
            EXECUTE format('CREATE TABLE %I PARTITION OF weekly_scores FOR VALUES IN (%L)',
                           'weekly_scores_p' || to_char(week, 'YYYYMMDD'), week);
        END LOOP;
        INSERT INTO weekly_scores SELECT * FROM weekly_scores_unpartitioned;
        DROP TABLE weekly_scores_unpartitioned;
    END IF;
END $$;

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

-- Kept weeks (incremental extraction): each UTC week's per-student counts, aggregated from the source once
-- and kept; a partition's weekly_scores rows are assembled from the kept weeks of its window
-- (seed_growth/sql/kept_weeks.py). A source is a relation with its three columns: kept weeks of another
-- relation or other columns (ATTEMPT_*) are never reused.
CREATE TABLE IF NOT EXISTS weekly_attempt_sources (
    source_id       serial  PRIMARY KEY,
    relation        text    NOT NULL,
    user_column     text    NOT NULL,
    correct_column  text    NOT NULL,
    time_column     text    NOT NULL,
    UNIQUE (relation, user_column, correct_column, time_column)
);
-- One row per kept week, empty weeks included; the source_* columns are the week's fingerprint in the
-- source when it was aggregated (every row of the week, NULL user or answer included), compared with the
-- source's present fingerprint before the week is reused.
CREATE TABLE IF NOT EXISTS weekly_attempt_weeks (
    source_id          integer     NOT NULL REFERENCES weekly_attempt_sources (source_id) ON DELETE CASCADE,
    week_start         date        NOT NULL CHECK (extract(isodow FROM week_start) = 1),  -- a Monday (UTC)
    source_rows        bigint      NOT NULL,           -- rows in the week
    source_correct     bigint      NOT NULL,           -- rows with a correct answer
    source_max_time    timestamptz,                    -- latest attempt time; NULL for an empty week
    source_definition  text        NOT NULL,           -- md5 of the relation's kind, view text, column types
    n_students         integer     NOT NULL,           -- rows kept in weekly_attempt_counts
    n_attempts         bigint      NOT NULL,           -- attempts counted (user and answer not NULL)
    aggregated_at      timestamptz NOT NULL,
    PRIMARY KEY (source_id, week_start)
);
-- Per student and kept week: attempts and correct answers (what weekly_scores rows are built from). No
-- foreign key to weekly_attempt_weeks (a per-row check would slow the bulk writes): both are written in
-- one transaction per week.
CREATE TABLE IF NOT EXISTS weekly_attempt_counts (
    source_id   integer NOT NULL,
    week_start  date    NOT NULL,
    user_id     text    NOT NULL,
    n_attempts  integer NOT NULL CHECK (n_attempts > 0),
    n_correct   integer NOT NULL CHECK (n_correct >= 0 AND n_correct <= n_attempts),
    PRIMARY KEY (source_id, week_start, user_id)
);
