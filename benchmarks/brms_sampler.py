"""brms's sampler settings by measured effective sample size per second (issue 12).

    .venv/bin/python -m benchmarks.brms_sampler            # 100, 300, 1000 students: the service's metric, diag
    .venv/bin/python -m benchmarks.brms_sampler --sizes 100 --metrics diag --out /tmp/x.jsonl
    .venv/bin/python -m benchmarks.brms_sampler --sizes 300 --iter 1000 1500 --families gaussian

Each cohort is simulated with known truth (growth_engine.simulate_cohort): binomial attempts on an accuracy
that grows on a line (logit line for family binomial), each student with their own practice rate (about 1
to 40 attempts a week), a tenth of the weeks missed, LOOKBACK_WEEKS = 8 weeks. Each is fitted with
``engine=brms`` at the platform's settings (iter 1000, chains 2; ``--iter`` and ``--chains`` for others) through a real
r-brms-plumber service, once per metric: ``auto`` (the service's own choice: dense where the warm-up can
estimate it, R/fit_brms.R ``dense_metric_fits``), ``dense`` (BRMS_DENSE_METRIC_MAX_STUDENTS above every
size: dense wherever that rule allows) and ``diag`` (0). A service per metric, started here with its
compiled models cached in the usual model folder. Recorded per fit: sampling
seconds, max R-hat and min bulk/tail ESS of the population parameters, divergences, tree-depth hits, and
min bulk ESS per second of sampling. One JSON line per fit in ``--out``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import time
from pathlib import Path

import httpx

from benchmarks.run import Service, free_port
from growth_engine import PoissonAttempts, simulate_cohort

REPO = Path(__file__).resolve().parents[1]
WEEKS = 8
METRIC_ENV = {
    "auto": {},
    "dense": {"BRMS_DENSE_METRIC_MAX_STUDENTS": "1000000"},
    "diag": {"BRMS_DENSE_METRIC_MAX_STUDENTS": "0"},
}
TRUTH = {  # population truth per family: level, slope, their sds (logit scale for binomial)
    "gaussian": {"level": 0.55, "slope": 0.02, "sd_level": 0.12, "sd_slope": 0.015, "link": "identity"},
    "binomial": {"level": 0.2, "slope": 0.1, "sd_level": 0.6, "sd_slope": 0.08, "link": "logit"},
}


def log(message: str) -> None:
    print(f"[brms-sampler {time.strftime('%H:%M:%S')}] {message}", flush=True)


def cohort(family: str, students: int, seed: int) -> dict[str, list]:
    """The columnar body's ``data`` (student, week, score, n) of one simulated cohort."""
    truth = TRUTH[family]
    sim = simulate_cohort(
        students,
        WEEKS,
        level=truth["level"],
        slope=truth["slope"],
        sd_level=truth["sd_level"],
        sd_slope=truth["sd_slope"],
        cor=0.2,
        family="binomial",
        link=truth["link"],
        wobble_sd=0.05 if family == "gaussian" else 0.2,
        accuracy_bounds=(0.02, 0.98) if family == "gaussian" else None,
        attempts=PoissonAttempts(mean=10.0, shape=2.0),
        p_missing=0.1,
        seed=seed,
    )
    rows = sim.rows()
    return {
        "student": rows["student"].tolist(),
        "week": rows["week"].tolist(),
        "score": rows["score"].tolist(),
        "n": rows["n"].tolist(),
    }


def fit(url: str, family: str, data: dict[str, list], seed: int, iter: int, chains: int) -> dict:
    body = {"data": data, "family": family, "engine": "brms", "iter": iter, "chains": chains, "seed": seed}
    started = time.perf_counter()
    response = httpx.post(f"{url}/growth/fit", json=body, timeout=3 * 3600)
    wall = time.perf_counter() - started
    response.raise_for_status()
    return {**response.json(), "wall_s": wall}


def summary(result: dict) -> dict:
    d, model = result["diagnostics"], result["model"]
    sampling = d["sampling_seconds"]
    return {
        "metric": model["sampler"]["metric"],
        "observation": (model.get("observation") or {}).get("name"),
        "sampling_s": round(sampling, 1),
        "wall_s": round(result["wall_s"], 1),
        "max_rhat": round(d["max_rhat"], 4),
        "min_ess_bulk": round(d["min_ess_bulk"]),
        "min_ess_tail": round(d["min_ess_tail"]),
        "ess_bulk_per_s": round(d["min_ess_bulk"] / sampling, 2),
        "divergent": d["divergent_transitions"],
        "treedepth_hits": d["max_treedepth_hits"],
        "converged": d["max_rhat"] <= 1.01 and d["min_ess_bulk"] >= 100 * model["chains"],
        "slowest": min(d["parameters"].items(), key=lambda kv: kv[1]["ess_bulk"] or 0)[0],
        "warnings": d.get("warnings", [])[:3],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 300, 1000])
    parser.add_argument("--families", nargs="+", default=["gaussian", "binomial"])
    parser.add_argument("--metrics", nargs="+", choices=sorted(METRIC_ENV), default=["auto", "diag"])
    parser.add_argument("--iter", type=int, nargs="+", default=[1000], help="iter per fit (half warm-up)")
    parser.add_argument("--chains", type=int, default=2)
    parser.add_argument("--dense-max-students", type=int, default=300, help="dense fits above this are skipped")
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--out", type=Path, default=REPO / "bench-results" / "brms-sampler.jsonl")
    args = parser.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    model_dir = os.environ.get("BRMS_MODEL_DIR") or str(Path.home() / ".cache" / "seed-growth" / "r-brms-plumber")
    for metric in args.metrics:
        service = Service(model_dir, free_port(), env=METRIC_ENV[metric])
        try:
            for students in args.sizes:
                if metric == "dense" and students > args.dense_max_students:
                    log(f"dense metric at {students} students skipped (--dense-max-students)")
                    continue
                for family, iter in ((f, i) for f in args.families for i in args.iter):
                    data = cohort(family, students, args.seed)
                    result = summary(fit(service.url, family, data, args.seed, iter, args.chains))
                    line = {"at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "family": family,
                            "students": students, "weeks": WEEKS, "iter": iter, "chains": args.chains, **result,
                            "load_1min": os.getloadavg()[0]}  # fmt: skip
                    with open(args.out, "a") as out:
                        out.write(json.dumps(line) + "\n")
                    log(json.dumps(line))
        finally:
            service.stop()


if __name__ == "__main__":
    main()
