-- The database contract of seed-growth. Applied idempotently: running it twice changes nothing.
-- The source relation (`attempt` by default, a VIEW in production) is the platform's and is not created
-- here; demo_schema.sql creates a local table of that shape.

-- weekly_scores: per student and week, the share of correct attempts, for one as-of week (a partition).
-- A view: a partition is either assembled from the kept weeks of its window (weekly_score_weeks, below: one
-- row per week of the window naming the kept version it reads; what extraction writes) or stored as rows
-- (weekly_scores_rows: rows written to weekly_scores directly, and partitions of earlier versions). A
-- weekly run thus writes only the weeks it aggregated, not 12 weeks of rows again, and a partition's rows
-- never change afterwards: a re-aggregated week is a new version, the one a partition read is kept while
-- any partition reads it (seed_growth/sql/kept_weeks.py).
-- A weekly_scores of earlier versions (a table, partitioned or not) becomes weekly_scores_rows, once.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_class WHERE oid = to_regclass('weekly_scores') AND relkind IN ('r', 'p')) THEN
        ALTER TABLE weekly_scores RENAME TO weekly_scores_rows;
        ALTER INDEX weekly_scores_pkey RENAME TO weekly_scores_rows_pkey;
    END IF;
END $$;
CREATE TABLE IF NOT EXISTS weekly_scores_rows (
    as_of_week      date             NOT NULL,             -- the partition (a Monday, UTC)
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
-- One row per kept version of a week, empty weeks included: a week aggregated again (a recent week, a stale
-- one, a rebuild) is a new version, the latest being the one reused; an older one is deleted once no
-- partition reads it. The source_* columns are the week's fingerprint in the source when it was aggregated
-- (every row of the week, NULL user or answer included), compared with the source's present fingerprint
-- before the week is reused.
CREATE SEQUENCE IF NOT EXISTS weekly_attempt_version_seq;
CREATE TABLE IF NOT EXISTS weekly_attempt_weeks (
    source_id          integer     NOT NULL REFERENCES weekly_attempt_sources (source_id) ON DELETE CASCADE,
    week_start         date        NOT NULL CHECK (extract(isodow FROM week_start) = 1),  -- a Monday (UTC)
    version            bigint      NOT NULL DEFAULT nextval('weekly_attempt_version_seq'),
    source_rows        bigint      NOT NULL,           -- rows in the week
    source_correct     bigint      NOT NULL,           -- rows with a correct answer
    source_max_time    timestamptz,                    -- latest attempt time; NULL for an empty week
    source_definition  text        NOT NULL,           -- md5 of the relation's kind, view text, column types
    n_students         integer     NOT NULL,           -- rows kept in weekly_attempt_counts
    n_attempts         bigint      NOT NULL,           -- attempts counted (user and answer not NULL)
    aggregated_at      timestamptz NOT NULL,
    PRIMARY KEY (source_id, week_start, version)
);
-- Per student and kept version of a week: attempts and correct answers (what weekly_scores rows are). No
-- foreign key to weekly_attempt_weeks (a per-row check would slow the bulk writes): both are written in
-- one transaction per version.
CREATE TABLE IF NOT EXISTS weekly_attempt_counts (
    source_id   integer NOT NULL,
    week_start  date    NOT NULL,
    version     bigint  NOT NULL,
    user_id     text    NOT NULL,
    n_attempts  integer NOT NULL CHECK (n_attempts > 0),
    n_correct   integer NOT NULL CHECK (n_correct >= 0 AND n_correct <= n_attempts),
    PRIMARY KEY (source_id, week_start, version, user_id)
);
-- Kept weeks of earlier versions (one per week, no version column) become version 0 of their week, once.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_attribute
                   WHERE attrelid = 'weekly_attempt_counts'::regclass AND attname = 'version') THEN
        ALTER TABLE weekly_attempt_weeks ADD COLUMN version bigint NOT NULL DEFAULT 0;
        ALTER TABLE weekly_attempt_weeks ALTER COLUMN version SET DEFAULT nextval('weekly_attempt_version_seq');
        ALTER TABLE weekly_attempt_weeks DROP CONSTRAINT weekly_attempt_weeks_pkey,
            ADD PRIMARY KEY (source_id, week_start, version);
        ALTER TABLE weekly_attempt_counts ADD COLUMN version bigint NOT NULL DEFAULT 0;
        ALTER TABLE weekly_attempt_counts ALTER COLUMN version DROP DEFAULT;
        ALTER TABLE weekly_attempt_counts DROP CONSTRAINT weekly_attempt_counts_pkey,
            ADD PRIMARY KEY (source_id, week_start, version, user_id);
    END IF;
END $$;

-- The partitions assembled from kept weeks: per as-of week, each week of its window and the kept version
-- it reads. Replaced as a whole, in one transaction, when the partition is extracted again.
CREATE TABLE IF NOT EXISTS weekly_score_weeks (
    as_of_week      date    NOT NULL,
    week            integer NOT NULL CHECK (week >= 0),
    week_start      date    NOT NULL,
    lookback_weeks  integer NOT NULL CHECK (lookback_weeks > 0),
    source_id       integer NOT NULL,
    version         bigint  NOT NULL,
    PRIMARY KEY (as_of_week, week),
    FOREIGN KEY (source_id, week_start, version) REFERENCES weekly_attempt_weeks (source_id, week_start, version)
);
CREATE INDEX IF NOT EXISTS weekly_score_weeks_version_idx ON weekly_score_weeks (source_id, week_start, version);

CREATE OR REPLACE VIEW weekly_scores AS
SELECT r.as_of_week, r.user_id, r.week, r.week_start, r.n_attempts, r.n_correct, r.score, r.lookback_weeks
FROM weekly_scores_rows AS r
UNION ALL
SELECT w.as_of_week, c.user_id, w.week, c.week_start, c.n_attempts, c.n_correct,
       c.n_correct::double precision / c.n_attempts, w.lookback_weeks
FROM weekly_score_weeks AS w
JOIN weekly_attempt_counts AS c
  ON c.source_id = w.source_id AND c.week_start = w.week_start AND c.version = w.version;

-- Writing to weekly_scores directly stores rows (weekly_scores_rows), as a table would; a partition
-- assembled from kept weeks is replaced by extracting it again, not row by row.
CREATE OR REPLACE FUNCTION weekly_scores_write() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    as_of date := CASE WHEN TG_OP = 'DELETE' THEN OLD.as_of_week ELSE NEW.as_of_week END;
BEGIN
    IF EXISTS (SELECT 1 FROM weekly_score_weeks AS w WHERE w.as_of_week = as_of) THEN
        RAISE EXCEPTION 'weekly_scores partition % is assembled from kept weeks: it cannot be written row by row', as_of
            USING HINT = 'extract it again (asset weekly_scores), or delete it as a whole with '
                         'seed_growth.sql.scores.delete_partition';
    END IF;
    IF TG_OP = 'DELETE' THEN
        DELETE FROM weekly_scores_rows
        WHERE as_of_week = OLD.as_of_week AND user_id = OLD.user_id AND week = OLD.week;
        RETURN OLD;
    END IF;
    INSERT INTO weekly_scores_rows VALUES (NEW.*);
    RETURN NEW;
END $$;
CREATE OR REPLACE TRIGGER weekly_scores_write INSTEAD OF INSERT OR DELETE ON weekly_scores
    FOR EACH ROW EXECUTE FUNCTION weekly_scores_write();
