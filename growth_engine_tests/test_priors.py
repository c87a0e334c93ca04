"""The priors are defined once (growth_engine.priors) and are the same numbers in R (r-brms-plumber/R/priors.R),
in the reported brms notation and in the model the sampler uses."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from growth_engine.priors import PRIOR_SPECS, PRIORS

REPO = Path(__file__).resolve().parents[1]
PRIORS_R = REPO / "r-brms-plumber" / "R" / "priors.R"


def _numbers(prior: str) -> tuple[str, list[float]]:
    """'normal(0, 0.05)' -> ('normal', [0.0, 0.05])."""
    m = re.fullmatch(r"(\w+)\(([^()]*)\)", prior)
    assert m, prior
    return m.group(1), [float(x) for x in m.group(2).split(",")]


def _model_numbers(kind: str, args: tuple[float, ...]) -> tuple[str, list[float]]:
    """The model's prior as brms writes it: a half-normal is brms' normal(0, scale) bounded below by 0."""
    if kind == "half_normal":
        return "normal", [0.0, *args]
    return kind, list(args)


def test_reported_priors_are_the_models_numbers():
    assert [p["prior"] for p in PRIORS] == [p.brms() for p in PRIOR_SPECS]
    for row, spec in zip(PRIORS, PRIOR_SPECS, strict=True):
        assert _numbers(row["prior"]) == _model_numbers(spec.kind, spec.args)


@pytest.mark.service
@pytest.mark.skipif(shutil.which("Rscript") is None, reason="Rscript is not installed (R is needed to read R/priors.R)")
def test_R_priors_equal_the_python_priors():
    script = (
        f"source({str(PRIORS_R)!r}); "
        "cat(jsonlite::toJSON(growth_priors('gaussian'), dataframe = 'rows', auto_unbox = TRUE))"
    )
    r = subprocess.run(["Rscript", "-e", script], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert [{k: row[k] for k in ("class", "coef", "group", "prior")} for row in rows] == PRIORS
    for row, spec in zip(rows, PRIOR_SPECS, strict=True):
        assert _numbers(row["prior"]) == _model_numbers(spec.kind, spec.args)
