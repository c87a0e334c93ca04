-- A local stand-in for the platform's `attempt` view (demo data, tests, benchmarks).
CREATE TABLE IF NOT EXISTS attempt (
    attempt_id    bigserial   PRIMARY KEY,
    user_id       text        NOT NULL,
    is_correct    boolean     NOT NULL,
    attempted_at  timestamptz NOT NULL
);
-- The time column with the answer included: weeks are read by time range, and the kept weeks' change
-- detection (per week: rows, correct answers, latest time) is an index-only scan of this index, without
-- touching the table. It replaces the plain index on attempted_at of earlier versions.
CREATE INDEX IF NOT EXISTS attempt_attempted_at_correct_idx ON attempt (attempted_at) INCLUDE (is_correct);
DROP INDEX IF EXISTS attempt_attempted_at_idx;
