"""Where a weekly run spends its time, and how it grows with the number of students.

    bash scripts/benchmark.sh [--sizes 100,1000,10000,100000] [--engines collapsed,brms] [--repeats 3]

Each size runs in a fresh Python process (so its peak RSS is its own) against a database of its own
(created and dropped here) and one real r-brms-plumber service started by this script (so the RSS of the
service and its workers can be sampled). Stages timed separately, medians of ``--repeats`` runs where a
run is short (fits of more than a minute run once):

- extraction: ``weekly_scores`` in SQL (``replace_weekly_scores``) over 12 weeks;
- fit: ``POST /growth/fit`` per engine, with its convergence figures (max R-hat, min bulk/tail ESS) and the
  compile time of the first request of a family (brms: a service with an empty model folder);
- P: ``predict_prob`` (service) and the normal approximation (Python);
- KPI write: ``merge_kpis`` into weekly_kpi;
- graph: ``materialize()`` of weekly_scores -> brms_posterior -> weekly_kpi_P with their checks.

``--extraction-attempts 10000000`` also times the extraction alone over that many attempts (generated in
SQL). Results: one JSON line per measurement in ``bench-results/results.jsonl`` and a summary on stdout.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import psutil
import psycopg

from benchmarks.engine import own_peak_rss_mb

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "bench-results"
WEEKS = 12
AS_OF = dt.date(2026, 11, 16)
LONG_FIT_S = 60.0  # fits longer than this run once
BRMS_MAX_STUDENTS = 10_000  # brms beyond this would take well over 30 minutes a fit


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def record(**fields) -> None:
    OUT.mkdir(exist_ok=True)
    with open(OUT / "results.jsonl", "a") as f:
        f.write(json.dumps({"at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), **fields}) + "\n")
    log(" ".join(f"{k}={v}" for k, v in fields.items()))


def median_time(fn, repeats: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


# ------------------------------------------------------------------------------------------ databases


def with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


@contextmanager
def scratch_database(admin_url: str):
    name = f"seed_growth_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield with_database(admin_url, name)
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# ------------------------------------------------------------------------------------------ service


class Service:
    """r-brms-plumber started here, with an RSS sampler over its process tree."""

    def __init__(self, model_dir: str, port: int, env: dict[str, str] | None = None):
        self.url = f"http://127.0.0.1:{port}"
        env = {
            **os.environ,
            "BRMS_MODEL_DIR": model_dir,
            "BRMS_PLUMBER_PORT": str(port),
            "BRMS_PLUMBER_HOST": "127.0.0.1",
            **(env or {}),
        }
        env.pop("BRMS_WARMUP_FAMILIES", None)
        OUT.mkdir(exist_ok=True)
        self.log = open(OUT / f"plumber-{port}.log", "w")
        self.process = subprocess.Popen(
            ["Rscript", "run.R"], cwd=REPO / "r-brms-plumber", env=env, stdout=self.log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/health", timeout=5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.process.poll() is not None:
                raise RuntimeError(f"r-brms-plumber exited; see {self.log.name}")
            time.sleep(1)
        raise RuntimeError("r-brms-plumber did not answer /health")

    def peak_rss(self):
        return peak_rss(self.process.pid)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


@contextmanager
def process_peaks(root_pid: int):
    """Peak RSS while the block runs: the whole tree, and per kind of process (R, engine, other)."""
    peaks = {"tree": 0, "r": 0, "engine": 0}
    stop = threading.Event()

    def kind(process: psutil.Process) -> str:
        command = " ".join(process.cmdline())
        return "engine" if "growth_engine" in command else "r" if process.pid == root_pid else "other"

    def sample() -> None:
        while not stop.is_set():
            try:
                processes = [psutil.Process(root_pid), *psutil.Process(root_pid).children(recursive=True)]
            except psutil.Error:
                break
            total = 0
            for process in processes:
                try:
                    rss = process.memory_info().rss
                    name = kind(process)
                except psutil.Error:
                    continue
                total += rss
                peaks[name] = max(peaks.get(name, 0), rss)
            peaks["tree"] = max(peaks["tree"], total)
            stop.wait(0.2)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield peaks
    finally:
        stop.set()
        thread.join()


def peak_rss(pid: int):
    """Peak RSS of the process tree while the block runs (``peak["tree"]``), see :func:`process_peaks`."""
    return process_peaks(pid)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------------------------------ one size


def run_size(
    students: int, engines: list[str], repeats: int, admin_url: str, service_url: str, service_pid: int
) -> None:
    """Runs in its own process (see main): every stage for one cohort size."""
    import dagster as dg

    from seed_growth.assets import brms_posterior, weekly_kpi_P, weekly_scores
    from seed_growth.checks import brms_posterior_converged, weekly_kpi_P_valid, weekly_scores_valid
    from seed_growth.growth.goals import goal_targets
    from seed_growth.growth.kpi import kpi_payloads
    from seed_growth.growth.normal_approx import normal_approximation_p
    from seed_growth.resources import GrowthSettingsResource, PlumberResource, PostgresResource
    from seed_growth.settings import SourceRelation
    from seed_growth.sql import demo as demo_sql
    from seed_growth.sql import kpi as kpi_sql
    from seed_growth.sql import schema as schema_sql
    from seed_growth.sql import scores as scores_sql
    from seed_growth.window import ScoreWindow

    def service_peak():
        return peak_rss(service_pid)

    window = ScoreWindow(AS_OF, WEEKS)
    plumber = PlumberResource(base_url=service_url, max_attempts=1, read_timeout_s=7200)
    with scratch_database(admin_url) as url:
        # the demo data are generated in a process of their own, so that this process's peak RSS is the
        # pipeline's, not the generator's
        start = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "seed_growth.demo_data",
                "--students",
                str(students),
                "--weeks",
                str(WEEKS),
                "--last-week",
                AS_OF.isoformat(),
                "--seed",
                str(students),
            ],
            env={**os.environ, "DATABASE_URL": url},
            check=True,
            stdout=subprocess.DEVNULL,
        )
        log(f"demo data for {students} students loaded in {time.perf_counter() - start:.0f} s")
        with psycopg.connect(url, autocommit=True) as conn:
            schema_sql.apply_schema(conn)
            conn.execute("VACUUM ANALYZE attempt")
            attempts = demo_sql.count_rows(conn, "attempt")

            def extract():
                with conn.transaction():
                    scores_sql.replace_weekly_scores(conn, SourceRelation(), window)

            seconds, runs = median_time(extract, repeats)
            scores = scores_sql.read_weekly_scores(conn, AS_OF)
            record(
                stage="extraction",
                students=students,
                attempts=attempts,
                rows=len(scores),
                seconds=round(seconds, 3),
                runs=[round(r, 3) for r in runs],
            )

            targets = goal_targets(scores["student"], window, goal_score=0.8, horizon_weeks=4)
            seconds, runs = median_time(lambda: normal_approximation_p(scores, targets), repeats)
            record(
                stage="p_normal_approximation",
                students=students,
                seconds=round(seconds, 3),
                runs=[round(r, 3) for r in runs],
            )

            for engine in engines:
                if engine == "brms" and students > BRMS_MAX_STUDENTS:
                    record(
                        stage="fit",
                        engine=engine,
                        students=students,
                        skipped=f"over 30 minutes by extrapolation from {BRMS_MAX_STUDENTS:,} students (BENCHMARKS.md)",
                    )
                    continue
                fit_runs, last = [], None
                for i in range(repeats):
                    with service_peak() as peak:
                        start = time.perf_counter()
                        last = plumber.fit(scores, iter=1000, chains=2, family="gaussian", engine=engine, seed=100 + i)
                        wall = time.perf_counter() - start
                    d = last.diagnostics
                    fit_runs.append(wall)
                    record(
                        stage="fit",
                        engine=engine,
                        students=students,
                        run=i,
                        seconds=round(wall, 2),
                        sampling_seconds=round(d.sampling_seconds, 2),
                        compile_seconds=round(d.compile_seconds, 2),
                        # what is not sampling or compiling: JSON out, transfer, parsing, summaries, JSON back
                        overhead_seconds=round(wall - d.sampling_seconds - d.compile_seconds, 2),
                        max_rhat=round(d.max_rhat, 4),
                        min_ess_bulk=round(d.min_ess_bulk, 1),
                        min_ess_tail=round(d.min_ess_tail, 1),
                        divergent=d.divergent_transitions,
                        service_peak_rss_mb=round(peak["tree"] / 2**20),
                    )
                    if wall > LONG_FIT_S:
                        break
                record(
                    stage="fit_median",
                    engine=engine,
                    students=students,
                    seconds=round(statistics.median(fit_runs), 2),
                    runs=len(fit_runs),
                )

                seconds, runs = median_time(lambda fit=last: plumber.predict_prob(fit.run_id, targets), repeats)
                record(
                    stage="p_predict_prob",
                    engine=engine,
                    students=students,
                    seconds=round(seconds, 3),
                    runs=[round(r, 3) for r in runs],
                )

            payloads = kpi_payloads(targets.assign(P=0.5), method="benchmark", run_id=None, as_of_week=AS_OF)

            def write():
                with conn.transaction():
                    kpi_sql.merge_kpis(conn, AS_OF, payloads.per_student, payloads.shared)

            seconds, runs = median_time(write, repeats)
            record(stage="kpi_write", students=students, seconds=round(seconds, 3), runs=[round(r, 3) for r in runs])

        resources = {
            "postgres": PostgresResource(database_url=url),
            "plumber": plumber,
            "growth_settings": GrowthSettingsResource(lookback_weeks=WEEKS, engine="collapsed"),
        }
        graph_runs = []
        with service_peak() as peak:
            for _ in range(repeats if students <= 10000 else 1):
                start = time.perf_counter()
                result = dg.materialize(
                    [
                        weekly_scores,
                        brms_posterior,
                        weekly_kpi_P,
                        weekly_scores_valid,
                        brms_posterior_converged,
                        weekly_kpi_P_valid,
                    ],
                    partition_key=AS_OF.isoformat(),
                    resources=resources,
                )
                graph_runs.append(time.perf_counter() - start)
                assert result.success
        checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
        record(
            stage="graph",
            engine="collapsed",
            students=students,
            seconds=round(statistics.median(graph_runs), 2),
            runs=[round(r, 2) for r in graph_runs],
            checks=checks,
            service_peak_rss_mb=round(peak["tree"] / 2**20),
        )
    record(stage="python_peak_rss", students=students, mb=own_peak_rss_mb())


def brms_compile(admin_url: str) -> None:
    """The first brms request of a family on a service with an empty model folder: compile + sampling."""
    from seed_growth import demo_data
    from seed_growth.resources import PlumberResource
    from seed_growth.settings import SourceRelation
    from seed_growth.sql import schema as schema_sql
    from seed_growth.sql import scores as scores_sql
    from seed_growth.window import ScoreWindow

    with tempfile.TemporaryDirectory() as model_dir:
        service = Service(model_dir, free_port())
        try:
            with scratch_database(admin_url) as url:
                demo_data.load(url, demo_data.DemoCohort(students=100, weeks=WEEKS, last_week=AS_OF, seed=1))
                with psycopg.connect(url, autocommit=True) as conn:
                    schema_sql.apply_schema(conn)
                    scores_sql.replace_weekly_scores(conn, SourceRelation(), ScoreWindow(AS_OF, WEEKS))
                    scores = scores_sql.read_weekly_scores(conn, AS_OF)
            plumber = PlumberResource(base_url=service.url, max_attempts=1, read_timeout_s=3600)
            for label in ("first (compiles)", "second (cached)"):
                with service.peak_rss() as peak:
                    start = time.perf_counter()
                    fit = plumber.fit(scores, iter=1000, chains=2, family="gaussian", engine="brms", seed=1)
                    wall = time.perf_counter() - start
                record(
                    stage="brms_compile",
                    request=label,
                    students=100,
                    seconds=round(wall, 2),
                    compile_seconds=round(fit.diagnostics.compile_seconds, 2),
                    sampling_seconds=round(fit.diagnostics.sampling_seconds, 2),
                    max_rhat=round(fit.diagnostics.max_rhat, 4),
                    service_peak_rss_mb=round(peak["tree"] / 2**20),
                )
        finally:
            service.stop()


def extraction_at_scale(admin_url: str, attempts: int, repeats: int) -> None:
    """weekly_scores over ``attempts`` attempts spread over 12 weeks (generated in SQL: the shape of the
    data matters little to the aggregation, its size does)."""
    from seed_growth.settings import SourceRelation
    from seed_growth.sql import demo as demo_sql
    from seed_growth.sql import schema as schema_sql
    from seed_growth.sql import scores as scores_sql
    from seed_growth.window import ScoreWindow

    window = ScoreWindow(AS_OF, WEEKS)
    students = max(attempts // (WEEKS * 12), 1)
    with scratch_database(admin_url) as url, psycopg.connect(url, autocommit=True) as conn:
        schema_sql.apply_schema(conn, demo_source=True)
        start = time.perf_counter()
        conn.execute(
            """INSERT INTO attempt (user_id, is_correct, attempted_at)
               SELECT 'stu-' || (g %% %(students)s), random() < 0.6,
                      %(start)s::timestamptz + random() * interval '84 days'
               FROM generate_series(1, %(attempts)s) AS g""",
            {"students": students, "start": window.start_utc, "attempts": attempts},
        )
        conn.execute("VACUUM ANALYZE attempt")
        load_s = time.perf_counter() - start

        def extract():
            with conn.transaction():
                scores_sql.replace_weekly_scores(conn, SourceRelation(), window)

        seconds, runs = median_time(extract, repeats)
        rows = demo_sql.count_rows(conn, "weekly_scores")
        record(
            stage="extraction_at_scale",
            attempts=attempts,
            students=students,
            rows=rows,
            seconds=round(seconds, 2),
            runs=[round(r, 2) for r in runs],
            load_seconds=round(load_s, 1),
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100,1000,10000,100000")
    parser.add_argument("--engines", default="collapsed,brms")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--extraction-attempts", type=int, default=10_000_000, help="0 skips it")
    parser.add_argument("--brms-compile", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--one-size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--service-url", help=argparse.SUPPRESS)
    parser.add_argument("--service-pid", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    admin_url = os.environ.get("SEED_GROWTH_TEST_ADMIN_URL") or os.environ["DATABASE_URL"]
    engines = [e for e in args.engines.split(",") if e]

    if args.one_size:
        run_size(args.one_size, engines, args.repeats, admin_url, args.service_url, args.service_pid)
        return

    OUT.mkdir(exist_ok=True)
    record(
        stage="machine",
        cpus=os.cpu_count(),
        memory_gb=round(psutil.virtual_memory().total / 2**30, 1),
        python=sys.version.split()[0],
        postgres=psycopg.connect(admin_url).info.server_version,
    )
    if args.extraction_attempts:
        extraction_at_scale(admin_url, args.extraction_attempts, args.repeats)
    if args.brms_compile and "brms" in engines:
        brms_compile(admin_url)
    service = Service(os.environ["BRMS_MODEL_DIR"], free_port())
    try:
        for size in [int(s) for s in args.sizes.split(",") if s]:
            log(f"size {size}")
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "benchmarks.run",
                    "--one-size",
                    str(size),
                    "--engines",
                    ",".join(engines),
                    "--repeats",
                    str(args.repeats),
                    "--service-url",
                    service.url,
                    "--service-pid",
                    str(service.process.pid),
                ],
                cwd=REPO,
                check=True,
            )
    finally:
        service.stop()


if __name__ == "__main__":
    main()
