"""Incremental extraction at scale: weekly_scores from kept weeks vs a full rebuild, over 10 M attempts.

    .venv/bin/python -m benchmarks.extraction                       # 100,000 students x 12 weeks, 3 repeats
    .venv/bin/python -m benchmarks.extraction --students 10000 --repeats 1 --out /tmp/x.jsonl

Creates a scratch database (through SEED_GROWTH_TEST_ADMIN_URL, else DATABASE_URL; dropped afterwards) with
the demo ``attempt`` table (seed_growth/sql/demo_schema.sql) and loads about 10 M attempts with a binary
COPY: each student practises at their own rate (gamma, about 0 to 40 attempts a week, mean 8.3), misses a
tenth of the weeks, and has their own accuracy; rows arrive in time order within each week, as a
platform's log does. The as-of week W is the last of the 12 weeks.

Timed (``kept_weeks.extract_weekly_scores``, wall time of the call; median of ``--repeats``):

- ``weekly``: the Monday run of week W after the run of W-1, as the asset runs it (``connections=2``: the
  new weeks aggregated on a second connection while the first detects the stale ones) and
  on one connection, interleaved repeat by repeat: the 12 weeks W-12 .. W-1 are kept (W-12
  empty), week W is new. The span is the whole call: the source's definition and the bookkeeping, the
  detection query over the 10 kept weeks that could be reused, aggregating W (new) and W-1
  (REAGGREGATE_RECENT_WEEKS=2, a new version of it; with ``recent=1`` only W), and pointing the partition
  at its 12 weeks (its ~1 M weekly_scores rows are read from the kept weeks). Before each repeat (not
  timed) the kept week W, W-1's newer versions and the partition are deleted and vacuumed, so every repeat
  is the same Monday run;
- ``reuse_all``: the same partition again with every week kept and REAGGREGATE_RECENT_WEEKS=0: detection
  over all 12 weeks and pointing the partition at them only (the floor of a run);
- ``rebuild``: REBUILD_KEPT_WEEKS: every week of the window re-aggregated (new versions);
- ``from_scratch``: the pre-incremental ``replace_weekly_scores`` (one GROUP BY over the window), for
  reference;
- ``read_partition``: what a reader pays: the fit's read of the partition through the view, against the
  same rows stored as a table;
- ``explain``: EXPLAIN ANALYZE of the detection query, one week's aggregation and the fit's read
  (written next to the JSON lines, ``<out>.explain.txt``);
- ``detect_by_index``: the detection query with the covering index, a plain index on the time column, and
  none (what the platform's view needs underneath).

One JSON line per measurement in ``--out`` (default ``bench-results/extraction.jsonl``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import psutil
import psycopg
import pyarrow as pa
from psycopg import sql

REPO = Path(__file__).resolve().parents[1]
WEEKS = 12
AS_OF = dt.date(2026, 11, 16)  # W
PG_EPOCH = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
WEEK_US = 7 * 86400 * 1_000_000


def log(message: str) -> None:
    print(f"[extraction {time.strftime('%H:%M:%S')}] {message}", flush=True)


class Recorder:
    def __init__(self, out: Path):
        self.out = out
        out.parent.mkdir(parents=True, exist_ok=True)

    def __call__(self, **fields) -> None:
        with open(self.out, "a") as f:
            stamp = {"at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "load_1min": os.getloadavg()[0]}
            f.write(json.dumps({**stamp, **fields}) + "\n")
        log(" ".join(f"{k}={v}" for k, v in fields.items()))


@contextmanager
def scratch_database(admin_url: str):
    name = f"seed_growth_bench_extraction_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield urlunsplit(urlsplit(admin_url)._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


# ------------------------------------------------------------------------------------------ data


def _binary_rows(user_ids: np.ndarray, correct: np.ndarray, micros: np.ndarray) -> bytes:
    """COPY BINARY tuples (user_id text of 10 bytes, is_correct, attempted_at) from numpy arrays."""
    dtype = np.dtype(
        [("n", ">i2"), ("ul", ">i4"), ("u", "S10"), ("cl", ">i4"), ("c", "?"), ("tl", ">i4"), ("t", ">i8")]
    )
    rows = np.empty(len(user_ids), dtype=dtype)
    rows["n"], rows["ul"], rows["cl"], rows["tl"] = 3, 10, 1, 8
    rows["u"] = user_ids
    rows["c"], rows["t"] = correct, micros
    return rows.tobytes()


def load_attempts(conn: psycopg.Connection, students: int, attempts: int, first: dt.date, seed: int = 1) -> int:
    """About ``attempts`` attempts of ``students`` over WEEKS weeks from ``first``, in time order per week."""
    rng = np.random.default_rng(seed)
    rate = rng.gamma(1.2, 1.0, students)
    rate *= attempts / (rate.sum() * WEEKS * 0.9)
    skill = rng.beta(6, 4, students)
    ids = np.array([f"stu-{i:06d}".encode() for i in range(students)], dtype="S10")
    first_us = int((dt.datetime.combine(first, dt.time(0), tzinfo=dt.UTC) - PG_EPOCH).total_seconds()) * 1_000_000
    total = 0
    copy_sql = "COPY attempt (user_id, is_correct, attempted_at) FROM STDIN (FORMAT binary)"
    with conn.cursor() as cur, cur.copy(copy_sql) as copy:
        copy.write(b"PGCOPY\n\xff\r\n\x00" + bytes(8))  # signature, flags, header extension
        for week in range(WEEKS):
            counts = rng.poisson(rate * (rng.random(students) > 0.1))
            users = np.repeat(np.arange(students), counts)
            micros = first_us + week * WEEK_US + rng.integers(0, WEEK_US, len(users))
            order = np.argsort(micros, kind="stable")
            users, micros = users[order], micros[order]
            copy.write(_binary_rows(ids[users], rng.random(len(users)) < skill[users], micros))
            total += len(users)
        copy.write(b"\xff\xff")
    return total


# ------------------------------------------------------------------------------------------ timing


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def median_of(repeats: int, reset: Callable[[], None], run: Callable[[], object]) -> tuple[list[float], list]:
    seconds, values = [], []
    for _ in range(repeats):
        reset()
        s, v = timed(run)
        seconds.append(s)
        values.append(v)
    return seconds, values


def breakdown(extractions: list) -> dict:
    """Median seconds of each part over the repeats, and what the runs did."""
    last = extractions[-1]
    return {
        "detect_s": round(statistics.median(e.detect_seconds for e in extractions), 3),
        "aggregate_s": round(statistics.median(e.aggregate_seconds for e in extractions), 3),
        "assemble_s": round(statistics.median(e.assemble_seconds for e in extractions), 3),
        "weeks_reused": len([w for w in last.weeks if w.action == "reuse"]),
        "weeks_aggregated": len([w for w in last.weeks if w.action == "aggregate"]),
        "rows": last.rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--students", type=int, default=100_000)
    parser.add_argument("--attempts", type=int, default=10_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=REPO / "bench-results" / "extraction.jsonl")
    args = parser.parse_args()
    admin_url = os.environ.get("SEED_GROWTH_TEST_ADMIN_URL") or os.environ["DATABASE_URL"]
    record = Recorder(args.out)
    with scratch_database(admin_url) as url, psycopg.connect(url, autocommit=True) as conn:
        explain_path = args.out.with_suffix(".explain.txt")
        run_benchmark(conn, args.students, args.attempts, args.repeats, record, explain_path)


def run_benchmark(
    conn: psycopg.Connection, students: int, attempts: int, repeats: int, record: Recorder, explain_path: Path
) -> None:
    from seed_growth.settings import SourceRelation
    from seed_growth.sql import kept_weeks as kept_sql
    from seed_growth.sql import schema as schema_sql
    from seed_growth.sql import scores as scores_sql
    from seed_growth.window import ScoreWindow

    source = SourceRelation()
    window = ScoreWindow(AS_OF, WEEKS)  # W-11 .. W
    previous = ScoreWindow(AS_OF - dt.timedelta(weeks=1), WEEKS)  # W-12 .. W-1
    record(
        stage="machine",
        cpus=os.cpu_count(),
        memory_gb=round(psutil.virtual_memory().total / 2**30, 1),
        python=sys.version.split()[0],
        postgres=conn.info.server_version,
        settings={
            name: conn.execute(f"SHOW {name}").fetchone()[0]  # type: ignore[index]
            for name in ("shared_buffers", "work_mem", "max_parallel_workers_per_gather", "jit")
        },
    )

    # load: the table without its index, then the index, then VACUUM ANALYZE (as autovacuum would)
    schema_sql.apply_schema(conn, demo_source=True)
    conn.execute("DROP INDEX attempt_attempted_at_correct_idx")
    load_s, loaded = timed(lambda: load_attempts(conn, students, attempts, window.start))
    index_sql = "CREATE INDEX attempt_attempted_at_correct_idx ON attempt (attempted_at) INCLUDE (is_correct)"
    index_s, _ = timed(lambda: conn.execute(index_sql))
    vacuum_s, _ = timed(lambda: conn.execute("VACUUM ANALYZE attempt"))
    size = conn.execute("SELECT pg_size_pretty(pg_total_relation_size('attempt'))").fetchone()[0]  # type: ignore[index]
    record(
        stage="load",
        students=students,
        attempts=loaded,
        weeks=WEEKS,
        load_s=round(load_s, 1),
        index_s=round(index_s, 1),
        vacuum_analyze_s=round(vacuum_s, 1),
        attempt_size=size,
    )

    def extract(w: ScoreWindow, recent: int, rebuild: bool = False, aggregating=None):
        return kept_sql.extract_weekly_scores(
            conn, source, w, recent_weeks=recent, rebuild=rebuild, aggregating=aggregating
        )

    # the run of W-1 keeps W-12 (empty) .. W-1
    first_s, first = timed(lambda: extract(previous, recent=0))
    record(stage="first_run_previous_week", seconds=round(first_s, 2), **breakdown([first]))
    source_key = kept_sql.source_id(conn, source)

    def forget_new_week() -> None:
        """Back to Monday morning: week W not kept, the partition W not written, W-1 as the run of W-1 left
        it (one version, vacuumed)."""
        drop_partition()
        for table in ("weekly_attempt_counts", "weekly_attempt_weeks"):
            conn.execute(f"DELETE FROM {table} WHERE source_id = %s AND week_start = %s", (source_key, AS_OF))
        newer = """DELETE FROM {} AS t WHERE t.source_id = %(source)s AND t.week_start = %(week)s AND t.version >
                       (SELECT w.version FROM weekly_score_weeks AS w
                        WHERE w.as_of_week = %(week)s AND w.week_start = %(week)s)"""
        for table in ("weekly_attempt_counts", "weekly_attempt_weeks"):  # W-1's versions made by runs of W
            conn.execute(newer.format(table), {"source": source_key, "week": previous.as_of_week})
        for table in ("weekly_attempt_counts", "weekly_attempt_weeks", "weekly_score_weeks"):
            conn.execute(f"VACUUM ANALYZE {table}")

    def drop_partition() -> None:
        with conn.transaction():
            scores_sql.delete_partition(conn, AS_OF)
        conn.execute("VACUUM ANALYZE weekly_scores_rows")

    # as the asset runs it (a second connection aggregates the new weeks), then on one connection;
    # interleaved, so both see the same machine
    with psycopg.connect(conn.info.dsn, password=conn.info.password, autocommit=True) as second:
        for recent in (2, 1):
            measured: dict[int, tuple[list[float], list]] = {1: ([], []), 2: ([], [])}
            for _ in range(repeats):
                for connections in (2, 1):
                    forget_new_week()
                    s, v = timed(
                        lambda r=recent, c=connections: extract(window, r, aggregating=second if c == 2 else None)
                    )
                    measured[connections][0].append(s)
                    measured[connections][1].append(v)
            for connections, (seconds, runs) in measured.items():
                record(
                    stage="weekly",
                    recent_weeks=recent,
                    connections=connections,
                    seconds=round(statistics.median(seconds), 2),
                    runs=[round(s, 2) for s in seconds],
                    **breakdown(runs),
                )

    seconds, runs = median_of(repeats, drop_partition, lambda: extract(window, 0))
    record(
        stage="reuse_all",
        recent_weeks=0,
        seconds=round(statistics.median(seconds), 2),
        runs=[round(s, 2) for s in seconds],
        **breakdown(runs),
    )

    seconds, runs = median_of(repeats, drop_partition, lambda: extract(window, 2, rebuild=True))
    record(
        stage="rebuild",
        seconds=round(statistics.median(seconds), 2),
        runs=[round(s, 2) for s in seconds],
        **breakdown(runs),
    )

    def replace_from_scratch() -> int:
        with conn.transaction():
            return scores_sql.replace_weekly_scores(conn, source, window)

    seconds, rows = median_of(repeats, drop_partition, replace_from_scratch)
    record(
        stage="from_scratch",
        seconds=round(statistics.median(seconds), 2),
        runs=[round(s, 2) for s in seconds],
        rows=rows[-1],
    )

    extract(window, 0)
    read_costs(conn, window, repeats, record)
    explain(conn, source, source_key, window, explain_path, record)
    detection_by_index(conn, source, window, repeats, record)


def detection_by_index(conn, source, window, repeats, record) -> None:
    """The detection query over the 10 kept weeks of a weekly run with the demo's covering index, a plain
    index on the time column (the answer read from the table), and no index (the last, once: a scan of the
    table per week). What the platform's view needs underneath."""
    from seed_growth.sql import kept_weeks as kept_sql

    mondays = [window.monday_of(i) for i in range(window.lookback_weeks - 2)]
    indexes = {
        "attempted_at INCLUDE (is_correct)": "(attempted_at) INCLUDE (is_correct)",
        "attempted_at": "(attempted_at)",
        "none": None,
    }
    for name, columns in indexes.items():
        conn.execute("DROP INDEX IF EXISTS attempt_attempted_at_correct_idx")
        if columns is not None:
            conn.execute(f"CREATE INDEX attempt_attempted_at_correct_idx ON attempt {columns}")
        conn.execute("VACUUM ANALYZE attempt")
        runs = repeats if columns is not None else 1
        seconds, _ = median_of(runs, lambda: None, lambda: kept_sql.source_fingerprints(conn, source, mondays))
        record(
            stage="detect_by_index",
            index=name,
            weeks=len(mondays),
            seconds=round(statistics.median(seconds), 2),
            runs=[round(s, 2) for s in seconds],
        )


def read_costs(conn, window, repeats, record) -> None:
    """What a reader pays: the fit's read of the partition (``scores.read_fit_rows``: the rows by COPY, then
    sorted by student and week) from the kept weeks through the view, against the same rows stored as a
    table with its primary key (weekly_scores_rows, as a partition was stored before the view)."""
    from seed_growth.sql import bulk as bulk_sql
    from seed_growth.sql import scores as scores_sql

    stored = window.as_of_week + dt.timedelta(weeks=52)  # a partition key of its own, same rows
    conn.execute(
        """INSERT INTO weekly_scores_rows SELECT %s, user_id, week, week_start, n_attempts, n_correct, score,
               lookback_weeks FROM weekly_scores WHERE as_of_week = %s""",
        (stored, window.as_of_week),
    )
    conn.execute("VACUUM ANALYZE weekly_scores_rows")

    def read_in_key_order() -> pa.Table:  # the read before the view: the stored rows in their key's order
        query = sql.SQL(
            """SELECT user_id, week, score, n_attempts FROM weekly_scores_rows WHERE as_of_week = {}
               ORDER BY user_id, week"""
        ).format(sql.Literal(stored))
        return bulk_sql.copy_out_table(conn, query, scores_sql._FIT_ROW_SCHEMA)

    reads = {
        "kept weeks, through the view, sorted by Arrow (now)": lambda: scores_sql.read_fit_rows(
            conn, window.as_of_week
        ),
        "stored rows, sorted by Arrow": lambda: scores_sql.read_fit_rows(conn, stored),
        "stored rows in their primary key's order (the read before)": read_in_key_order,
    }
    for name, read in reads.items():
        seconds, tables = median_of(repeats, lambda: None, read)
        record(
            stage="read_partition",
            reads=name,
            rows=tables[-1].num_rows,
            seconds=round(statistics.median(seconds), 2),
            runs=[round(s, 2) for s in seconds],
        )
    conn.execute("DELETE FROM weekly_scores_rows WHERE as_of_week = %s", (stored,))


def explain(conn, source, source_key, window, path: Path, record) -> None:
    """EXPLAIN (ANALYZE, BUFFERS) of the three parts, rolled back; the plans go to ``path``."""
    from seed_growth.sql import kept_weeks as kept_sql

    mondays = [window.monday_of(i) for i in range(window.lookback_weeks - 2)]
    detection = kept_sql.fingerprint_query(source, mondays)
    start = dt.datetime.combine(window.as_of_week, dt.time(0), tzinfo=dt.UTC)
    aggregation = sql.SQL(  # the SELECT of kept_weeks.aggregate_week
        """SELECT a.user_id::text, count(*), count(*) FILTER (WHERE a.is_correct), count(a.is_correct),
                  max(a.attempted_at)
           FROM attempt AS a
           WHERE a.attempted_at >= %(start_ts)s AND a.attempted_at < %(end_ts)s GROUP BY a.user_id::text"""
    )
    plans = {
        "detection (10 kept weeks)": (detection, {}),
        "aggregation of one week": (aggregation, {"start_ts": start, "end_ts": start + dt.timedelta(weeks=1)}),
        "reading the partition (read_fit_rows)": (
            sql.SQL("SELECT user_id, week, score, n_attempts FROM weekly_scores WHERE as_of_week = %(as_of)s"),
            {"as_of": window.as_of_week},
        ),
    }
    with open(path, "w") as out:
        for name, (statement, params) in plans.items():
            with conn.transaction(force_rollback=True):
                conn.execute("SELECT set_config('work_mem', %s, true)", (kept_sql.WORK_MEM,))
                lines = [r[0] for r in conn.execute(sql.SQL("EXPLAIN (ANALYZE, BUFFERS) ") + statement, params)]
            out.write(f"-- {name}\n" + "\n".join(lines) + "\n\n")
            total = next((line for line in lines if line.startswith("Execution Time")), "")
            record(stage="explain", part=name, execution=total, top=lines[0][:160])
    log(f"plans in {path}")


if __name__ == "__main__":
    main()
