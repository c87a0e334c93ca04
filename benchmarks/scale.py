"""A cohort of up to a million students through the real service, as the weekly graph sends it (issue 13).

    .venv/bin/python -m benchmarks.scale --students 100000 1000000 --repeats 3

Per size, with a fresh r-brms-plumber (default settings: its own limits, one worker) and the cohort
generated in a process of its own (binomial attempts, each student's own practice rate, 12 weeks: the
engine benchmark's classes), this process plays the Dagster side (``PlumberResource``, Arrow both ways):

- fit: wall time of ``PlumberResource.fit`` against the engine's own ``diagnostics.total_seconds`` of the
  same request (their ratio is the transport's cost), median of ``--repeats``;
- predict_prob for every student (expected P at week 16, goal 0.7): wall time, median;
- nothing lost: the largest difference between the P answered and the P the engine computes in this process
  from the fit's stored state (must be 0; the target is 1e-9);
- memory: peak RSS of the service's process tree, of its R process and of its engine process (sampled every
  0.2 s), and of this process (its own VmHWM: see ``own_peak_rss_mb``);
- the whole graph (``--graph``), ``--repeats`` times and the median: weekly_scores -> brms_posterior ->
  weekly_kpi_P with their checks, materialized in a process of its own (the Dagster process, whose own peak
  RSS is recorded) on a freshly seeded database whose
  source holds raw attempts for the weeks a Monday run reads from it (the new week and the
  REAGGREGATE_RECENT_WEEKS - 1 before it) and whose older weeks are seeded as kept aggregates (as the issue
  allows: a million students' raw attempts for 12 weeks would not fit this machine's disk and time).

One JSON line per measurement in bench-results/results.jsonl (see benchmarks/run.py).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.ipc as ipc

from benchmarks.engine import own_peak_rss_mb
from benchmarks.run import AS_OF, OUT, Service, free_port, log, process_peaks, record, scratch_database

WEEKS = 12
TARGET_WEEK, GOAL = 16.0, 0.7


def generate(students: int, path: Path) -> None:
    """The cohort as an Arrow file (in a subprocess: its memory is not this process's)."""
    code = f"""
import pyarrow as pa, pyarrow.ipc as ipc
from benchmarks.engine import _attempt_rows
rows = _attempt_rows({students}, seed={students})
table = pa.table({{"student": pa.array(rows["student"]).dictionary_encode(), "week": rows["week"],
                  "score": rows["score"], "n_attempts": rows["n"]}})
with pa.OSFile({str(path)!r}, "wb") as sink, ipc.new_stream(sink, table.schema) as writer:
    writer.write_table(table)
"""
    subprocess.run([sys.executable, "-c", code], check=True)


def load(path: Path) -> pd.DataFrame:
    table = ipc.open_stream(pa.memory_map(str(path))).read_all()
    return table.to_pandas().astype({"student": "str"})


def mb(peaks: dict[str, int]) -> dict[str, int]:
    return {f"{k}_peak_rss_mb": round(v / 2**20) for k, v in peaks.items()}


def seed_database(conn, cohort: pd.DataFrame, recent_weeks: int) -> int:
    """The source and the kept weeks as a Monday run finds them: raw attempts for the last ``recent_weeks``
    weeks, the earlier weeks kept (their source rows are not there, and their fingerprints say so).
    Returns the raw attempts loaded."""
    from psycopg import sql

    from seed_growth.settings import SourceRelation
    from seed_growth.sql import kept_weeks as kept_sql
    from seed_growth.sql.bulk import copy_in_table
    from seed_growth.window import ScoreWindow

    window, source = ScoreWindow(AS_OF, WEEKS), SourceRelation()
    key, definition = kept_sql.source_id(conn, source), kept_sql.source_definition(conn, source)
    cohort = cohort.assign(
        n_correct=np.rint(cohort["score"] * cohort["n_attempts"]).astype(np.int64),
        week_start=pd.Timestamp(window.start) + pd.to_timedelta(cohort["week"] * 7, unit="D"),
    )
    kept = cohort[cohort["week"] < WEEKS - recent_weeks]
    columns = {"source_id": np.full(len(kept), key), "week_start": pa.array(kept["week_start"].dt.date),
               "version": np.zeros(len(kept), np.int64), "user_id": pa.array(kept["student"])}  # fmt: skip
    counts = pa.table({**columns, "n_attempts": kept["n_attempts"], "n_correct": kept["n_correct"]})
    with conn.transaction():
        copy_in_table(conn, sql.Identifier("weekly_attempt_counts"), counts)
        for week, group in kept.groupby("week"):
            conn.execute(
                """INSERT INTO weekly_attempt_weeks (source_id, week_start, version, source_rows, source_correct,
                       source_max_time, source_definition, n_students, n_attempts, aggregated_at)
                   VALUES (%s, %s, 0, 0, 0, NULL, %s, %s, %s, now())""",
                (key, window.monday_of(int(week)), definition, len(group), int(group["n_attempts"].sum())),
            )
    loaded, rng = 0, np.random.default_rng(7)
    for _, group in cohort[cohort["week"] >= WEEKS - recent_weeks].groupby("week"):
        n = group["n_attempts"].to_numpy()
        rank = np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)  # attempt number within its student-week
        moments = np.repeat(group["week_start"].to_numpy(), n) + rng.integers(0, 7 * 86400, n.sum()) * np.timedelta64(
            1, "s"
        )
        attempts = pa.table({"user_id": pa.array(np.repeat(group["student"].to_numpy(), n)),
                             "is_correct": rank < np.repeat(group["n_correct"].to_numpy(), n),
                             "attempted_at": pa.array(moments).cast(pa.timestamp("us", tz="UTC"))})  # fmt: skip
        with conn.transaction():
            copy_in_table(conn, sql.Identifier("attempt"), attempts)
        loaded += attempts.num_rows
    conn.execute("VACUUM ANALYZE attempt")
    return loaded


def run_graph(students: int, database_url: str, service_url: str) -> None:
    """The weekly graph for one partition (in this process: the Dagster process of the measurement)."""
    import dagster as dg

    from seed_growth.assets import brms_posterior, weekly_kpi_P, weekly_scores
    from seed_growth.checks import brms_posterior_converged, weekly_kpi_P_valid, weekly_scores_valid
    from seed_growth.resources import GrowthSettingsResource, PlumberResource, PostgresResource

    resources = {
        "postgres": PostgresResource(database_url=database_url),
        "plumber": PlumberResource(base_url=service_url, max_attempts=1, read_timeout_s=7200),
        "growth_settings": GrowthSettingsResource(lookback_weeks=WEEKS, engine="collapsed"),
    }
    assets = [weekly_scores, brms_posterior, weekly_kpi_P, weekly_scores_valid, brms_posterior_converged,
              weekly_kpi_P_valid]  # fmt: skip
    start = time.perf_counter()
    result = dg.materialize(assets, partition_key=AS_OF.isoformat(), resources=resources)
    seconds = time.perf_counter() - start
    steps = {
        e.step_key: round(e.event_specific_data.duration_ms / 1000, 1)  # type: ignore[union-attr]
        for e in result.all_events
        if e.event_type_value == "STEP_SUCCESS"
    }
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    peak_mb = own_peak_rss_mb()
    record(stage="scale_graph", students=students, seconds=round(seconds, 1), success=result.success, steps=steps,
           checks=checks, dagster_peak_rss_mb=peak_mb)  # fmt: skip


def graph(students: int, scores: pd.DataFrame, service: Service, admin_url: str, repeats: int) -> None:
    """The whole graph ``repeats`` times, each on a freshly seeded database (the same Monday run), and the
    median."""
    import psycopg

    from seed_growth.settings import GrowthSettings
    from seed_growth.sql import schema as schema_sql

    runs = []
    for _ in range(repeats):
        with scratch_database(admin_url) as url:
            with psycopg.connect(url, autocommit=True) as conn:
                schema_sql.apply_schema(conn, demo_source=True)
                start = time.perf_counter()
                loaded = seed_database(conn, scores, GrowthSettings.reaggregate_recent_weeks)
                log(f"seeded: {loaded} raw attempts, kept weeks, in {time.perf_counter() - start:.0f} s")
            with process_peaks(service.process.pid) as peaks:
                subprocess.run([sys.executable, "-m", "benchmarks.scale", "--graph-of", str(students),
                                "--database-url", url, "--service-url", service.url], check=True)  # fmt: skip
            record(stage="scale_graph_service", students=students, raw_attempts=loaded, **mb(peaks))
        runs.append((last_record("scale_graph"), mb(peaks)))
    steps = {k: statistics.median(r["steps"][k] for r, _ in runs) for k in runs[0][0]["steps"]}
    record(stage="scale_graph_median", students=students, runs=len(runs),
           seconds=statistics.median(r["seconds"] for r, _ in runs), all_seconds=[r["seconds"] for r, _ in runs],
           steps=steps, dagster_peak_rss_mb=max(r["dagster_peak_rss_mb"] for r, _ in runs),
           service_tree_peak_rss_mb=max(p["tree_peak_rss_mb"] for _, p in runs))  # fmt: skip


def last_record(stage: str) -> dict:
    """The latest measurement of ``stage`` (written by a process of its own)."""
    lines = (OUT / "results.jsonl").read_text().splitlines()
    return next(r for r in map(json.loads, reversed(lines)) if r.get("stage") == stage)


def run_size(students: int, repeats: int, with_graph: bool = False) -> None:
    from growth_engine.predict import predict_columns
    from growth_engine.state import load_state
    from seed_growth.resources import PlumberResource

    with tempfile.TemporaryDirectory() as work:
        data_path = Path(work) / "cohort.arrow"
        start = time.perf_counter()
        generate(students, data_path)
        log(f"{students} students generated in {time.perf_counter() - start:.0f} s")
        scores = load(data_path)
        service = Service(str(Path(work) / "models"), free_port())
        try:
            plumber = PlumberResource(base_url=service.url, max_attempts=1, read_timeout_s=7200)
            fits = []
            for i in range(repeats):
                with process_peaks(service.process.pid) as peaks:
                    start = time.perf_counter()
                    fit = plumber.fit(scores, iter=1000, chains=2, family="gaussian", engine="collapsed", seed=i + 1)
                    wall = time.perf_counter() - start
                engine_s = float(fit.diagnostics.total_seconds or 0.0)
                fits.append((wall, engine_s, fit))
                record(stage="scale_fit", students=students, rows=len(scores), run=i, seconds=round(wall, 2),
                       engine_seconds=round(engine_s, 2), ratio=round(wall / engine_s, 3),
                       max_rhat=round(fit.diagnostics.max_rhat, 4), **mb(peaks))  # fmt: skip
            walls, engines = [w for w, _, _ in fits], [e for _, e, _ in fits]
            record(stage="scale_fit_median", students=students, seconds=round(statistics.median(walls), 2),
                   engine_seconds=round(statistics.median(engines), 2),
                   ratio=round(statistics.median(w / e for w, e, _ in fits), 3), runs=len(fits))  # fmt: skip

            fit = fits[-1][2]
            students_ids = scores["student"].drop_duplicates().reset_index(drop=True)
            targets = pd.DataFrame({"student": students_ids, "target_week": TARGET_WEEK, "goal": GOAL})
            walls = []
            for i in range(repeats):
                with process_peaks(service.process.pid) as peaks:
                    start = time.perf_counter()
                    answer = plumber.predict_prob(fit.run_id, targets)
                    walls.append(time.perf_counter() - start)
                record(stage="scale_predict", students=students, run=i, seconds=round(walls[-1], 2), **mb(peaks))
            record(stage="scale_predict_median", students=students, seconds=round(statistics.median(walls), 2))

            state = load_state(Path(work) / "models" / "fits" / fit.run_id / "engine" / "state.npz")
            expected, _ = predict_columns(state, pa.array(targets["student"]), targets["target_week"].to_numpy(),
                                          targets["goal"].to_numpy())  # fmt: skip
            answered = answer.probabilities_frame()["p"].to_numpy()
            record(
                stage="scale_p_identical",
                students=students,
                max_abs_difference=float(np.max(np.abs(answered - expected))),
            )
            if with_graph:
                admin_url = os.environ.get("SEED_GROWTH_TEST_ADMIN_URL") or os.environ["DATABASE_URL"]
                graph(students, scores, service, admin_url, repeats)
        finally:
            service.stop()
    record(stage="scale_client_peak_rss", students=students,
           mb=own_peak_rss_mb())  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--students", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--graph", action="store_true", help="also the whole graph (see above)")
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)  # one size, in a process of its own
    parser.add_argument("--graph-of", type=int, help=argparse.SUPPRESS)  # the graph, in a process of its own
    parser.add_argument("--database-url", help=argparse.SUPPRESS)
    parser.add_argument("--service-url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.graph_of:
        run_graph(args.graph_of, args.database_url, args.service_url)
    elif args.size:
        run_size(args.size, args.repeats, args.graph)
    else:
        for students in args.students:
            command = ["--size", str(students), "--repeats", str(args.repeats), *(["--graph"] if args.graph else [])]
            subprocess.run([sys.executable, "-m", "benchmarks.scale", *command], check=True)


if __name__ == "__main__":
    main()
