"""Markdown tables for BENCHMARKS.md from the measurements of benchmarks/run.py:

python -m benchmarks.report [bench-results/results.jsonl]
"""

from __future__ import annotations

import itertools
import json
import sys
from collections import defaultdict
from pathlib import Path

DEFAULT = Path(__file__).resolve().parents[1] / "bench-results" / "results.jsonl"


def load(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join("" if v is None else str(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def seconds(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:.3f}" if value < 1 else f"{value:.1f}" if value < 100 else f"{value:.0f}"


def report(records: list[dict]) -> str:
    by_stage = defaultdict(list)
    for r in records:
        by_stage[r["stage"]].append(r)
    out = []

    for m in by_stage["machine"][-1:]:
        pg = int(m["postgres"])
        out.append(
            f"Machine: {m['cpus']} CPUs, {m['memory_gb']} GB, Python {m['python']}, "
            f"PostgreSQL {pg // 10000}.{pg % 100}."
        )

    if by_stage["extraction_at_scale"]:
        out.append("\n### Extraction alone at scale\n")
        out.append(
            table(
                ["attempts", "students", "weekly rows", "median s", "runs (s)", "load s"],
                [
                    [
                        f"{r['attempts']:,}",
                        f"{r['students']:,}",
                        f"{r['rows']:,}",
                        seconds(r["seconds"]),
                        r["runs"],
                        r["load_seconds"],
                    ]
                    for r in by_stage["extraction_at_scale"]
                ],
            )
        )

    if by_stage["brms_compile"]:
        out.append("\n### brms: first request of a family (compiles) and the next (cached), 100 students x 12 weeks\n")
        out.append(
            table(
                ["request", "wall s", "compile s", "sampling s", "max R-hat", "service peak RSS MB"],
                [
                    [
                        r["request"],
                        seconds(r["seconds"]),
                        seconds(r["compile_seconds"]),
                        seconds(r["sampling_seconds"]),
                        r["max_rhat"],
                        r["service_peak_rss_mb"],
                    ]
                    for r in by_stage["brms_compile"]
                ],
            )
        )

    sizes = sorted({r["students"] for r in by_stage["extraction"]})
    if sizes:
        out.append("\n### Stages by cohort size (12 weeks; seconds, median of the runs)\n")

        def stage_row(name, stage, engine=None):
            row = [name]
            for n in sizes:
                hits = [
                    r for r in by_stage[stage] if r["students"] == n and (engine is None or r.get("engine") == engine)
                ]
                row.append(
                    seconds(hits[-1]["seconds"]) if hits and "seconds" in hits[-1] else "skipped" if hits else "–"
                )
            return row

        rows = [
            stage_row("extraction (weekly_scores in SQL)", "extraction"),
            stage_row("fit, collapsed engine (wall)", "fit_median", "collapsed"),
            stage_row("fit, brms engine (wall)", "fit_median", "brms"),
            stage_row("P, predict_prob (collapsed fit)", "p_predict_prob", "collapsed"),
            stage_row("P, predict_prob (brms fit)", "p_predict_prob", "brms"),
            stage_row("P, normal approximation", "p_normal_approximation"),
            stage_row("write to weekly_kpi", "kpi_write"),
            stage_row("whole graph, collapsed engine", "graph", "collapsed"),
        ]
        rows.append(
            ["rows in weekly_scores"]
            + [next((f"{r['rows']:,}" for r in by_stage["extraction"] if r["students"] == n), "–") for n in sizes]
        )
        rows.append(
            ["attempts"]
            + [next((f"{r['attempts']:,}" for r in by_stage["extraction"] if r["students"] == n), "–") for n in sizes]
        )
        rows.append(
            ["Python peak RSS MB"]
            + [next((r["mb"] for r in by_stage["python_peak_rss"] if r["students"] == n), "–") for n in sizes]
        )
        out.append(table(["stage"] + [f"{n:,} students" for n in sizes], rows))

    fits = [r for r in by_stage["fit"] if "run" in r]
    if fits:
        out.append("\n### Every fit, with its convergence figures\n")
        out.append(
            table(
                [
                    "engine",
                    "students",
                    "run",
                    "wall s",
                    "sampling s",
                    "compile s",
                    "other s",
                    "max R-hat",
                    "min bulk ESS",
                    "min tail ESS",
                    "divergent",
                    "service peak RSS MB",
                ],
                [
                    [
                        r["engine"],
                        f"{r['students']:,}",
                        r["run"],
                        seconds(r["seconds"]),
                        seconds(r["sampling_seconds"]),
                        seconds(r["compile_seconds"]),
                        seconds(r.get("overhead_seconds")),
                        r["max_rhat"],
                        r["min_ess_bulk"],
                        r["min_ess_tail"],
                        r["divergent"],
                        r["service_peak_rss_mb"],
                    ]
                    for r in fits
                ],
            )
        )
    skipped = [r for r in by_stage["fit"] if "skipped" in r]
    for r in skipped:
        out.append(f"\n{r['engine']} at {r['students']:,} students: skipped ({r['skipped']}).")

    graphs = by_stage["graph"]
    if graphs:
        out.append("\n### The whole graph (materialize of the three assets and their checks)\n")
        out.append(
            table(
                ["students", "median s", "runs (s)", "checks passed", "service peak RSS MB"],
                [
                    [
                        f"{r['students']:,}",
                        seconds(r["seconds"]),
                        r["runs"],
                        all(r["checks"].values()),
                        r["service_peak_rss_mb"],
                    ]
                    for r in graphs
                ],
            )
        )

    growth = []
    for stage, engine, label in [
        ("extraction", None, "extraction"),
        ("fit_median", "collapsed", "collapsed fit"),
        ("fit_median", "brms", "brms fit"),
        ("graph", "collapsed", "whole graph"),
    ]:
        points = [
            (r["students"], r["seconds"])
            for r in by_stage[stage]
            if "seconds" in r and (engine is None or r.get("engine") == engine)
        ]
        for (n0, t0), (n1, t1) in itertools.pairwise(points):
            if t0 > 0:
                growth.append([label, f"{n0:,} -> {n1:,}", f"x{n1 / n0:g}", f"x{t1 / t0:.1f}"])
    if growth:
        out.append("\n### Growth with the number of students\n")
        out.append(table(["stage", "students", "students grew", "time grew"], growth))
    return "\n".join(out) + "\n"


def main() -> None:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT
    sys.stdout.write(report(load(path)))


if __name__ == "__main__":
    main()
