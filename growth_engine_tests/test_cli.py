"""The engine's command line: fit then predict end to end, input errors as exit code 2 with a
clear message, a missing fit as exit code 3, JSON with NaN as null at full precision."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from growth_engine.simulate import simulate


def _cli(*args, input=None):
    return subprocess.run(
        [sys.executable, "-m", "growth_engine", *args], capture_output=True, text=True, input=input, timeout=600
    )


def test_cli_fit_then_predict(tmp_path):
    pytest.importorskip("numpyro")
    d = simulate(150, 8, p_missing=0.2, seed=14)
    req = {
        "data": {
            "student": d["student"].tolist(),
            "week": d["week"].tolist(),
            "score": d["score"].tolist(),
            "n": [12] * len(d["week"]),
        },
        "iter": 400,
        "chains": 2,
        "seed": 5,
        "family": "gaussian",
    }
    (tmp_path / "req.json").write_text(json.dumps(req))
    out = tmp_path / "fit"
    r = _cli("fit", "--request", str(tmp_path / "req.json"), "--out-dir", str(out))
    assert r.returncode == 0, r.stderr
    resp = json.loads((out / "response.json").read_text())
    assert resp["model"]["draws"] == 400 and resp["model"]["seed"] == 5 and len(resp["students"]) == 150
    assert resp["diagnostics"]["max_rhat"] < 1.05
    assert (out / "state.npz").is_file()

    targets = {
        "targets": [
            {"student": "s001", "target_week": 10, "goal": 0.5},
            {"student": "zz", "target_week": 10, "goal": 0.5},
        ]
    }
    (tmp_path / "t.json").write_text(json.dumps(targets))
    r = _cli("predict", "--fit-dir", str(out), "--targets", str(tmp_path / "t.json"))
    assert r.returncode == 0, r.stderr
    pr = json.loads(r.stdout)
    assert pr["method"] == "rao_blackwell"
    assert [(p["student"], p["seen"]) for p in pr["probabilities"]] == [("s001", True), ("zz", False)]
    assert all(0.0 <= p["p"] <= 1.0 for p in pr["probabilities"])
    assert pr["predictive"] is False

    (tmp_path / "tp.json").write_text(json.dumps(dict(targets, predictive=True)))
    r = _cli("predict", "--fit-dir", str(out), "--targets", str(tmp_path / "tp.json"))
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["predictive"] is True
    (tmp_path / "tbad.json").write_text(json.dumps(dict(targets, predictive="yes")))
    r = _cli("predict", "--fit-dir", str(out), "--targets", str(tmp_path / "tbad.json"))
    assert r.returncode == 2 and "predictive" in r.stderr

    # row-format data gives the same fit
    rows = [
        {"student": s, "week": int(w), "score": float(y), "n": 12}
        for s, w, y in zip(d["student"], d["week"], d["score"], strict=True)
    ]
    (tmp_path / "req_rows.json").write_text(json.dumps(dict(req, data=rows)))
    r = _cli("fit", "--request", str(tmp_path / "req_rows.json"), "--out-dir", str(tmp_path / "fit2"))
    assert r.returncode == 0, r.stderr
    resp2 = json.loads((tmp_path / "fit2" / "response.json").read_text())
    assert resp2["posterior_summary"] == resp["posterior_summary"]


@pytest.mark.parametrize(
    "data, extra, message",
    [
        ({"student": [], "week": [], "score": []}, {}, "empty"),
        ({"student": ["a", "b"], "week": [0, 1]}, {}, "score is missing"),
        ({"student": ["a", "b"], "week": [0, 1], "score": [0.1, 1.2]}, {}, "[0, 1]"),
        ({"student": ["a", "b"], "week": [0, 1], "score": [0.1, "x"]}, {}, "numbers"),
        ({"student": ["a", "b"], "week": [0, 0.5], "score": [0.1, 0.2]}, {}, "integers"),
        ({"student": ["a", "a"], "week": [0, 1], "score": [0.1, 0.2]}, {}, "2 students"),
        ({"student": ["a", "b"], "week": [0, 1], "score": [0.1, 0.2]}, {"iter": 50}, "iter"),
        ({"student": ["a", "b"], "week": [0, 1], "score": [0.1, 0.2]}, {"chains": 0}, "chains"),
        ({"student": ["a", "b"], "week": [0, 1], "score": [0.1, 0.2]}, {"family": "binomial"}, "gaussian"),
        ({"student": ["a", "b"], "week": [0, 1], "score": [0.1, 0.2]}, {"family": "poisson"}, "unknown family"),
        ({"student": ["a", "b", "c"], "week": [0, 1], "score": [0.1, 0.2]}, {}, "length"),
    ],
)
def test_cli_bad_input_is_a_clear_error(tmp_path, data, extra, message):
    req = dict({"data": data, "iter": 1000, "chains": 2, "seed": 1, "family": "gaussian"}, **extra)
    (tmp_path / "req.json").write_text(json.dumps(req))
    r = _cli("fit", "--request", str(tmp_path / "req.json"), "--out-dir", str(tmp_path / "out"))
    assert r.returncode == 2
    assert message in r.stderr
    assert not (tmp_path / "out" / "response.json").exists()


def test_cli_predict_errors(tmp_path):
    (tmp_path / "t.json").write_text(json.dumps({"targets": [{"student": "a", "target_week": 3, "goal": 0.5}]}))
    r = _cli("predict", "--fit-dir", str(tmp_path / "nothing"), "--targets", str(tmp_path / "t.json"))
    assert r.returncode == 3 and "no fit state" in r.stderr


def test_json_nan_becomes_null():
    from growth_engine.cli import dumps

    assert json.loads(dumps({"a": float("nan"), "b": [np.float64(1.5), np.inf], "c": np.int64(3)})) == {
        "a": None,
        "b": [1.5, None],
        "c": 3,
    }
    x = 0.1 + 0.2
    assert json.loads(dumps({"x": x}))["x"] == x  # full precision
