-- A local stand-in for the platform's `attempt` view (demo data, tests, benchmarks).
CREATE TABLE IF NOT EXISTS attempt (
    attempt_id    bigserial   PRIMARY KEY,
    user_id       text        NOT NULL,
    is_correct    boolean     NOT NULL,
    attempted_at  timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS attempt_attempted_at_idx ON attempt (attempted_at);
