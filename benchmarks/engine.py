"""Benchmark of the collapsed engine: fit time, diagnostics and peak memory vs number of students.

    .venv/bin/python -m benchmarks.engine                 # 1k / 10k / 100k x 12 weeks
    .venv/bin/python -m benchmarks.engine --sizes 1000 --repeats 1
    .venv/bin/python -m benchmarks.engine --irregular     # + worst case, see below
    .venv/bin/python -m benchmarks.engine --observation attempts --sizes 100000 1000000

Every fit runs in a fresh Python process (so peak RSS is per fit and the JAX import is counted in
"process s"); each worker sets JAX up as the engine's command line does (growth_engine.runtime.configure).
The first run of each size uses an empty compilation cache ("cold": includes XLA
compilation); the other runs reuse it ("warm"), as the service does after its first fit of that size.
Data: weeks 0..11, each row missing with probability 0.1, iter 1000 x 2 chains (defaults of the contract).
--irregular adds 100k students each observed on 12 random weeks out of 0..51, so nearly every student has
its own time design and the per-gradient cost is O(students) instead of O(design groups).
--observation plain|attempts fits binomial classes instead (accuracy on a line, each student's own practice
rate, about 1 to 40 attempts a week, wobble 0.06) with that observation model (growth_engine.observation).
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

REPO = Path(__file__).resolve().parents[1]


def own_peak_rss_mb() -> int:
    """This process's own peak RSS (VmHWM). Not ``getrusage``'s ru_maxrss: Linux keeps that across
    execve, so a process started by a large one (a benchmark's subprocess) reports its parent's size."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024)
    raise RuntimeError("no VmHWM in /proc/self/status")


def _attempt_rows(n_students: int, seed: int) -> dict:
    from growth_engine.simulate import PoissonAttempts, simulate_cohort

    sim = simulate_cohort(n_students, 12, level=0.6, slope=0.015, sd_level=0.12, sd_slope=0.012, cor=0.2,
                          family="binomial", wobble_sd=0.06, accuracy_bounds=(0.02, 0.98),
                          attempts=PoissonAttempts(mean=12, shape=1.0), p_missing=0.1, seed=seed)  # fmt: skip
    return sim.rows()


def worker(n_students: int, seed: int, irregular: bool, observation: str | None = None) -> dict:
    t0 = time.perf_counter()
    from growth_engine import runtime

    runtime.configure()  # as the command line does: host devices, x64, compilation cache
    from growth_engine import sampler
    from growth_engine.simulate import simulate, simulate_cohort

    t_import = time.perf_counter() - t0
    attempts = None
    if observation is not None:
        rows = _attempt_rows(n_students, seed)
        student, week, score, attempts = rows["student"], rows["week"], rows["score"], rows["n"]
    elif irregular:  # 12 random weeks of 52 each: nearly every student has a time design of their own
        sim = simulate_cohort(n_students, 52, level=0.4, slope=0.005, sd_level=0.06, sd_slope=0.002, sigma=0.04,
                              weeks_per_student=12, seed=seed)  # fmt: skip
        rows = sim.rows()
        student, week, score = rows["student"], rows["week"], rows["score"]
    else:
        d = simulate(n_students, 12, p_missing=0.1, seed=seed)  # clipped to [0, 1] (timing only)
        student, week, score = d["student"], d["week"], d["score"]
    t1 = time.perf_counter()
    res = sampler.fit_full(
        student, week, score, iter=1000, chains=2, seed=seed, n=attempts, observation_model=observation
    )
    fit_s = time.perf_counter() - t1
    dg = res.response["diagnostics"]
    ed = res.response["model"]["engine_details"]
    return {
        "n_students": n_students,
        "n_rows": len(week),
        "fit_s": fit_s,
        "process_s": time.perf_counter() - t0,
        "import_s": t_import,
        "compile_s": dg["compile_seconds"],
        "observation_s": dg.get("observation_seconds"),  # the observation model (kappa's estimate)
        "kappa": (res.response["model"].get("observation") or {}).get("kappa"),
        "sampling_s": dg["sampling_seconds"],
        "max_rhat": dg["max_rhat"],
        "min_ess_bulk": dg["min_ess_bulk"],
        "min_ess_tail": dg["min_ess_tail"],
        "divergent": dg["divergent_transitions"],
        "treedepth_hits": dg["max_treedepth_hits"],
        "design_groups": ed["n_design_groups"],
        "chain_method": ed["chain_method"],
        "thin": ed["thin"],
        "peak_rss_mb": own_peak_rss_mb(),
    }


def run_one(n: int, seed: int, cache_dir: str, irregular: bool = False, observation: str | None = None) -> dict:
    env = dict(os.environ, GROWTH_ENGINE_JAX_CACHE=cache_dir)
    cmd = [sys.executable, "-m", "benchmarks.engine", "--worker", str(n), "--seed", str(seed)]
    if irregular:
        cmd.append("--irregular")
    if observation:
        cmd += ["--observation", observation]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO)
    if r.returncode != 0:
        raise RuntimeError(r.stderr[-2000:])
    return json.loads(r.stdout.strip().splitlines()[-1])


HEADER = (
    f"{'students':>9} {'rows':>9} {'groups':>6} {'run':>5} {'fit s':>7} {'process s':>9} {'compile s':>9} "
    f"{'sampling s':>10} {'max R-hat':>9} {'min bulk':>8} {'min tail':>8} {'div':>4} {'peak RSS MB':>11}"
)
MEDIAN_KEYS = (
    "fit_s",
    "process_s",
    "compile_s",
    "sampling_s",
    "max_rhat",
    "min_ess_bulk",
    "min_ess_tail",
    "peak_rss_mb",
)


def show(r: dict, label: str) -> None:
    print(
        f"{r['n_students']:>9} {r['n_rows']:>9} {r['design_groups']:>6} {label:>5} {r['fit_s']:>7.2f} "
        f"{r['process_s']:>9.2f} {r['compile_s']:>9.2f} {r['sampling_s']:>10.2f} {r['max_rhat']:>9.4f} "
        f"{r['min_ess_bulk']:>8.0f} {r['min_ess_tail']:>8.0f} {r['divergent']:>4} {r['peak_rss_mb']:>11.0f}",
        flush=True,
    )


def run_size(n: int, repeats: int, observation: str | None = None) -> list[dict]:
    """``repeats`` fits of ``n`` students sharing one compilation cache (the first cold), and their median."""
    runs = []
    with tempfile.TemporaryDirectory() as cache:
        for i in range(repeats):
            r = run_one(n, seed=i + 1, cache_dir=cache, observation=observation)
            r["cache"] = "cold" if i == 0 else "warm"
            runs.append(r)
            show(r, r["cache"])
    if len(runs) > 1:
        med = {k: statistics.median(x[k] for x in runs) for k in MEDIAN_KEYS}
        med.update(n_students=n, n_rows=runs[0]["n_rows"], design_groups=runs[0]["design_groups"],
                   divergent=max(x["divergent"] for x in runs))  # fmt: skip
        show(med, "med")
    return runs


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="*", default=[1000, 10000, 100000])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--irregular", action="store_true")
    ap.add_argument("--observation", choices=["plain", "attempts"], help="binomial classes, this observation model")
    ap.add_argument("--json", help="also write all results here")
    ap.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--seed", type=int, default=1, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.seed, args.irregular, args.observation)))
        return

    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at start")
    print(HEADER)
    results = []
    for n in args.sizes:
        results += run_size(n, args.repeats, args.observation)
    if args.irregular:
        with tempfile.TemporaryDirectory() as cache:
            r = run_one(100000, seed=1, cache_dir=cache, irregular=True)
            r["cache"] = "cold"
            r["irregular"] = True
            show(r, "irreg")
            results.append(r)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1)


if __name__ == "__main__":
    main()
