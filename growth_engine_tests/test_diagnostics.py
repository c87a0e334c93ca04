"""R-hat and ESS: the same numbers as R's posterior (when R has it), and non-mixing chains flagged."""

from __future__ import annotations

import math
import shutil
import subprocess

import numpy as np
import pytest

from growth_engine import diagnostics as D


def _R_posterior_available():
    if shutil.which("Rscript") is None:
        return False
    r = subprocess.run(["Rscript", "-e", "cat(requireNamespace('posterior', quietly=TRUE))"],
                       capture_output=True, text=True)  # fmt: skip
    return r.stdout.strip().endswith("TRUE")


@pytest.mark.skipif(not _R_posterior_available(), reason="R package posterior not available")
def test_diagnostics_match_R_posterior(tmp_path):
    rng = np.random.default_rng(9)
    cases = []
    ar = np.zeros((2, 501))
    e = rng.normal(size=(2, 501))
    for i in range(1, 501):
        ar[:, i] = 0.9 * ar[:, i - 1] + e[:, i]
    cases.append(ar)
    cases.append(rng.normal(size=(4, 250)) + np.array([[0], [0], [0], [0.3]]))
    cases.append(np.round(rng.exponential(size=(2, 300)), 1))  # ties
    cases.append(-ar[:, :7])  # very short chains
    for i, c in enumerate(cases):
        np.savetxt(tmp_path / f"c{i}.csv", c.T, delimiter=",")
    script = ("suppressMessages(library(posterior)); for (f in commandArgs(TRUE)) { x <- as.matrix(read.csv(f, "
              "header=FALSE)); cat(sprintf('%.15g %.15g %.15g\\n', rhat(x), ess_bulk(x), ess_tail(x))) }")  # fmt: skip
    r = subprocess.run(["Rscript", "-e", script] + [str(tmp_path / f"c{i}.csv") for i in range(len(cases))],
                       capture_output=True, text=True, check=True)  # fmt: skip
    for c, line in zip(cases, r.stdout.strip().splitlines(), strict=True):
        ref = [float(x) for x in line.split()]
        got = D.summarise(c)
        np.testing.assert_allclose([got["rhat"], got["ess_bulk"], got["ess_tail"]], ref, rtol=1e-9)


def test_diagnostics_flag_non_mixing_chains():
    rng = np.random.default_rng(10)
    x = rng.normal(size=(2, 500))
    x[1] += 1.0
    assert D.rhat(x) > 1.1
    assert math.isnan(D.rhat(np.ones((2, 100))))
