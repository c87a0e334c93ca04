"""Tests of the collapsed MCMC engine (r-brms-plumber/engine, package growth_engine).

The math is checked against brute-force dense linear algebra, the sampler against known truth on
simulated data, the diagnostics against R's `posterior` (when R is available), and the CLI end to end.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import multivariate_normal

ENGINE_DIR = Path(__file__).resolve().parents[1] / "r-brms-plumber" / "engine"
try:
    import growth_engine  # noqa: F401
except ImportError:  # not pip-installed: use the source tree
    sys.path.insert(0, str(ENGINE_DIR))

from growth_engine import collapsed as C  # noqa: E402
from growth_engine import diagnostics as D  # noqa: E402
from growth_engine.request import GrowthInputError  # noqa: E402
from growth_engine.simulate import simulate  # noqa: E402
from growth_engine.state import load_state, save_state  # noqa: E402
from growth_engine.stats import design_groups, student_stats  # noqa: E402

PARAMS = ("beta0", "beta1", "sd0", "sd1", "rho", "sigma")


# ---------------------------------------------------------------------------------------------------
# brute force references

def _sigma(p):
    c01 = p["rho"] * p["sd0"] * p["sd1"]
    return np.array([[p["sd0"] ** 2, c01], [c01, p["sd1"] ** 2]])


def _dense_student(t, y, p):
    """Dense log N(y | X beta, sigma^2 I + X Sigma X'), and the conditional mean/cov of (a, b)."""
    X = np.c_[np.ones_like(t), t]
    S = _sigma(p)
    V = p["sigma"] ** 2 * np.eye(len(t)) + X @ S @ X.T
    ll = multivariate_normal(X @ [p["beta0"], p["beta1"]], V).logpdf(y)
    beta = np.array([p["beta0"], p["beta1"]])
    # conditional via the joint normal of (theta, y): no Sigma^{-1} needed
    K = S @ X.T @ np.linalg.inv(V)
    mean = beta + K @ (y - X @ beta)
    cov = S - K @ X @ S
    return ll, mean, cov


def _random_rows(rng, n_students=40, n_weeks=12):
    rows = []
    for i in range(n_students):
        n = int(rng.integers(1, 9))
        kind = i % 6
        if kind == 0:
            w = rng.choice(n_weeks, size=n, replace=True)        # repeated weeks
        elif kind == 1:
            w = np.full(n, int(rng.integers(0, n_weeks)))        # all rows in one week (stt_c = 0)
        else:
            w = rng.choice(n_weeks, size=min(n, n_weeks), replace=False)
        for x in w:
            rows.append((f"st{i:03d}", int(x), float(rng.uniform(0, 1))))
    rng.shuffle(rows)
    s, w, y = map(np.array, zip(*rows))
    return s, w, y


PARAM_CASES = [
    dict(beta0=0.4, beta1=0.03, sd0=0.2, sd1=0.04, rho=-0.6, sigma=0.1),
    dict(beta0=0.7, beta1=-0.01, sd0=0.05, sd1=0.002, rho=0.3, sigma=0.2),
    dict(beta0=0.5, beta1=0.0, sd0=0.3, sd1=0.1, rho=0.999, sigma=0.02),      # nearly singular Sigma
    dict(beta0=0.1, beta1=0.05, sd0=1e-4, sd1=1e-5, rho=-0.2, sigma=0.15),    # tiny random effects
    dict(beta0=0.5, beta1=0.02, sd0=0.5, sd1=0.2, rho=0.0, sigma=0.01),       # data >> prior
]


# ---------------------------------------------------------------------------------------------------
# sufficient statistics

def test_student_stats_match_a_loop():
    rng = np.random.default_rng(0)
    s, w, y = _random_rows(rng)
    st = student_stats(s, w, y)
    c = w.mean()
    assert st.center == pytest.approx(c)
    for k, sid in enumerate(st.ids):
        m = s == sid
        t = w[m] - c
        yy = y[m]
        assert st.n[k] == m.sum()
        np.testing.assert_allclose([st.st[k], st.stt[k], st.sy[k], st.sty[k], st.syy[k]],
                                   [t.sum(), (t * t).sum(), yy.sum(), (t * yy).sum(), (yy * yy).sum()],
                                   rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose([st.tbar[k], st.ybar[k]], [t.mean(), yy.mean()], rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose([st.stt_c[k], st.sty_c[k], st.syy_c[k]],
                                   [((t - t.mean()) ** 2).sum(), ((t - t.mean()) * (yy - yy.mean())).sum(),
                                    ((yy - yy.mean()) ** 2).sum()], rtol=1e-10, atol=1e-12)
        assert st.n_weeks[k] == len(np.unique(w[m]))
    # explicit centre
    assert student_stats(s, w, y, center=3.0).center == 3.0


def test_student_stats_keep_precision_with_large_offsets():
    """Scores with a large common offset: centred sums stay exact where raw power sums cancel."""
    rng = np.random.default_rng(1)
    w = np.tile(np.arange(10), 50)
    s = np.repeat(np.arange(50), 10)
    y = 1e6 + 1e-3 * rng.standard_normal(w.size)
    st = student_stats(s, w, y)
    ref = np.array([((y[s == i] - y[s == i].mean()) ** 2).sum() for i in range(50)])
    np.testing.assert_allclose(st.syy_c, ref, rtol=1e-6)


# ---------------------------------------------------------------------------------------------------
# collapsed math vs dense linear algebra

@pytest.mark.parametrize("p", PARAM_CASES)
def test_marginal_loglik_and_conditionals_match_dense(p):
    rng = np.random.default_rng(2)
    s, w, y = _random_rows(rng)
    st = student_stats(s, w, y)
    ll = C.marginal_loglik_terms(st, **p)
    mean, cov = C.conditional_effects(st, **p)
    assert mean.shape == (st.n_students, 2) and cov.shape == (st.n_students, 2, 2)
    for k, sid in enumerate(st.ids):
        m = s == sid
        ll_ref, mean_ref, cov_ref = _dense_student(w[m] - st.center, y[m], p)
        assert ll[k] == pytest.approx(ll_ref, rel=1e-9, abs=1e-9)
        scale = max(p["sd0"], p["sd1"], 1e-12)
        np.testing.assert_allclose(mean[k], mean_ref, rtol=1e-7, atol=1e-9 * (1 + abs(p["beta0"])))
        np.testing.assert_allclose(cov[k], cov_ref, rtol=1e-6, atol=1e-9 * scale ** 2)
    assert C.marginal_loglik(st, **p) == pytest.approx(ll.sum(), rel=1e-13)


def test_raw_sum_mapping_is_accepted():
    rng = np.random.default_rng(3)
    s, w, y = _random_rows(rng)
    st = student_stats(s, w, y)
    raw = {k: getattr(st, k) for k in ("n", "st", "stt", "sy", "sty", "syy")}
    p = PARAM_CASES[0]
    assert C.marginal_loglik(raw, **p) == pytest.approx(C.marginal_loglik(st, **p), rel=1e-10)


def test_parameters_broadcast_over_draws():
    rng = np.random.default_rng(4)
    s, w, y = _random_rows(rng)
    st = student_stats(s, w, y)
    pb = {k: np.array([c[k] for c in PARAM_CASES])[:, None] for k in PARAMS}
    ll = C.marginal_loglik(st, **pb)
    ma, mb, vaa, vab, vbb = C.conditional_moments(st, **pb)
    assert ll.shape == (len(PARAM_CASES),) and ma.shape == (len(PARAM_CASES), st.n_students)
    for j, p in enumerate(PARAM_CASES):
        assert ll[j] == pytest.approx(C.marginal_loglik(st, **p), rel=1e-12)
        np.testing.assert_allclose(mb[j], C.conditional_moments(st, **p)[1], rtol=1e-12)


@pytest.mark.parametrize("p", PARAM_CASES[:3])
def test_design_groups_are_exact(p):
    d = simulate(3000, 12, p_missing=0.3, seed=5)
    st = student_stats(d["student"], d["week"], d["score"])
    g = design_groups(st)
    assert g.n_groups < st.n_students
    per = C.marginal_loglik_terms(st, **p)
    np.testing.assert_allclose(C.grouped_marginal_loglik_terms(g, **p), np.bincount(g.group, per),
                               rtol=1e-10, atol=1e-8)
    assert C.grouped_marginal_loglik(g, **p) == pytest.approx(per.sum(), rel=1e-12)
    # conditional mean affine in (ybar, sty_c), shared coefficients
    f = C.conditional_linear(st.arrays(), **p)
    ma, mb, vaa, vab, vbb = C.conditional_moments(st, **p)
    np.testing.assert_allclose(f["f0a"] + f["fya"] * st.ybar + f["fsa"] * st.sty_c, ma, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(f["f0b"] + f["fyb"] * st.ybar + f["fsb"] * st.sty_c, mb, rtol=1e-10, atol=1e-13)
    for a, b in ((f["vaa"], vaa), (f["vab"], vab), (f["vbb"], vbb)):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-18)


def test_collapsed_math_runs_on_jax_numpy():
    jax = pytest.importorskip("jax")
    from growth_engine import sampler  # noqa: F401  (enables float64)
    jnp = jax.numpy
    rng = np.random.default_rng(6)
    s, w, y = _random_rows(rng)
    st = student_stats(s, w, y)
    p = PARAM_CASES[0]
    a = float(C.marginal_loglik({k: jnp.asarray(v) for k, v in st.arrays().items()}, **p, xp=jnp))
    assert a == pytest.approx(C.marginal_loglik(st, **p), rel=1e-12)
    m, cv = C.conditional_effects(st.arrays(), **p, xp=jnp)
    np.testing.assert_allclose(np.asarray(cv), C.conditional_effects(st, **p)[1], rtol=1e-12)


def test_pure_math_imports_without_jax():
    code = ("import sys, growth_engine; from growth_engine import predict, collapsed, stats, state; "
            "assert 'jax' not in sys.modules, 'jax imported'")
    env = dict(os.environ, PYTHONPATH=str(ENGINE_DIR) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


# ---------------------------------------------------------------------------------------------------
# sampler internals

def test_hand_potential_equals_numpyro_model_and_scipy():
    pytest.importorskip("numpyro")
    import jax.numpy as jnp
    from scipy import stats as ss

    from growth_engine import sampler

    d = simulate(200, 8, p_missing=0.2, seed=7)
    st = student_stats(d["student"], d["week"], d["score"])
    data = {k: jnp.asarray(v) for k, v in sampler._pad_groups(design_groups(st)).items()}
    rng = np.random.default_rng(8)
    for _ in range(4):
        v = np.array([0.5, 0.02, -2.5, -4.5, 0.5, -3.0]) + 0.3 * rng.standard_normal(6)
        a = float(sampler.potential(jnp.asarray(v), data))
        b = float(sampler.potential_numpyro(jnp.asarray(v), data))
        assert a == pytest.approx(b, rel=1e-12, abs=1e-8)
        b0, b1, sd0, sd1, rho, sg = v[0], v[1], math.exp(v[2]), math.exp(v[3]), math.tanh(v[4] / 2), math.exp(v[5])
        u = (rho + 1) / 2
        log_post = (ss.norm(0.5, 0.5).logpdf(b0) + ss.norm(0, 0.1).logpdf(b1)
                    + ss.halfnorm(scale=0.3).logpdf(sd0) + v[2] + ss.halfnorm(scale=0.05).logpdf(sd1) + v[3]
                    + ss.beta(2, 2).logpdf(u) + math.log(u * (1 - u))
                    + ss.halfnorm(scale=0.3).logpdf(sg) + v[5]
                    + C.marginal_loglik(st, b0, b1, sd0, sd1, rho, sg))
        assert -a == pytest.approx(log_post, rel=1e-11, abs=1e-7)


def _R_posterior_available():
    if shutil.which("Rscript") is None:
        return False
    r = subprocess.run(["Rscript", "-e", "cat(requireNamespace('posterior', quietly=TRUE))"],
                       capture_output=True, text=True)
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
    cases.append(np.round(rng.exponential(size=(2, 300)), 1))           # ties
    cases.append(-ar[:, :7])                                            # very short chains
    for i, c in enumerate(cases):
        np.savetxt(tmp_path / f"c{i}.csv", c.T, delimiter=",")
    script = ("suppressMessages(library(posterior)); for (f in commandArgs(TRUE)) { x <- as.matrix(read.csv(f, "
              "header=FALSE)); cat(sprintf('%.15g %.15g %.15g\\n', rhat(x), ess_bulk(x), ess_tail(x))) }")
    r = subprocess.run(["Rscript", "-e", script] + [str(tmp_path / f"c{i}.csv") for i in range(len(cases))],
                       capture_output=True, text=True, check=True)
    for c, line in zip(cases, r.stdout.strip().splitlines()):
        ref = [float(x) for x in line.split()]
        got = D.summarise(c)
        np.testing.assert_allclose([got["rhat"], got["ess_bulk"], got["ess_tail"]], ref, rtol=1e-9)


def test_diagnostics_flag_non_mixing_chains():
    rng = np.random.default_rng(10)
    x = rng.normal(size=(2, 500))
    x[1] += 1.0
    assert D.rhat(x) > 1.1
    assert math.isnan(D.rhat(np.ones((2, 100))))


# ---------------------------------------------------------------------------------------------------
# end to end on simulated data with known truth

TRUTH = {"intercept": 0.40, "week": 0.02, "sd_intercept0": 0.06, "sd_week": 0.008, "cor0": 0.2, "sigma": 0.04}


@pytest.fixture(scope="module")
def sim_fit():
    pytest.importorskip("numpyro")
    from growth_engine import sampler

    d = simulate(2000, 10, truth=TRUTH, p_missing=0.2, seed=18)
    assert d["n_clipped"] == 0
    res = sampler.fit_full(d["student"], d["week"], d["score"], iter=1000, chains=2, seed=2024)
    return d, res


def test_fit_response_shape(sim_fit):
    d, res = sim_fit
    r = res.response
    assert set(r) == {"model", "posterior_summary", "students", "diagnostics"}
    m = r["model"]
    assert m["formula"] == "score ~ week + (week | student)" and m["family"] == "gaussian"
    assert (m["iter"], m["chains"], m["warmup"], m["draws"], m["seed"]) == (1000, 2, 500, 1000, 2024)
    assert m["week_center"] == pytest.approx(np.mean(d["week"]))
    assert m["n_rows"] == len(d["week"]) and m["n_students"] == 2000 and m["n_weeks"] == 10
    assert m["engine"] == "collapsed"
    assert {p["class"] for p in m["priors"]} == {"Intercept", "b", "sd", "cor", "sigma"}
    ps = r["posterior_summary"]
    for k in ("Intercept", "week", "sd_Intercept", "sd_week", "cor_Intercept_week", "sigma"):
        assert set(ps[k]) == {"estimate", "error", "q2.5", "q97.5"}
    assert set(ps["centered"]) == {"Intercept", "sd_Intercept", "cor_Intercept_week"}
    dg = r["diagnostics"]
    assert set(dg["parameters"]) == {"b_Intercept", "b_week", "sd_student__Intercept", "sd_student__week",
                                     "cor_student__Intercept__week", "sigma"}
    for k in ("max_rhat", "min_ess_bulk", "min_ess_tail", "divergent_transitions", "max_treedepth_hits",
              "sampling_seconds", "compile_seconds", "total_seconds"):
        assert k in dg
    assert len(r["students"]) == 2000
    assert set(r["students"][0]) == {"student", "intercept_mean", "intercept_sd", "slope_mean", "slope_sd",
                                     "cor", "n_weeks"}


def test_fit_recovers_population_and_converges(sim_fit):
    d, res = sim_fit
    r = res.response
    ps = r["posterior_summary"]
    truth = {"Intercept": TRUTH["intercept"], "week": TRUTH["week"], "sd_Intercept": TRUTH["sd_intercept0"],
             "sd_week": TRUTH["sd_week"], "cor_Intercept_week": TRUTH["cor0"], "sigma": TRUTH["sigma"]}
    for k, v in truth.items():
        assert ps[k]["q2.5"] <= v <= ps[k]["q97.5"], (k, v, ps[k])
    dg = r["diagnostics"]
    assert dg["max_rhat"] <= 1.01
    assert dg["min_ess_bulk"] >= 400 and dg["min_ess_tail"] >= 200
    assert dg["divergent_transitions"] == 0 and dg["max_treedepth_hits"] == 0
    # centred values are the per-draw transforms of the week-scale ones
    c = r["model"]["week_center"]
    assert ps["centered"]["Intercept"]["estimate"] == pytest.approx(
        ps["Intercept"]["estimate"] + c * ps["week"]["estimate"], rel=1e-10)


def test_student_summaries_are_rao_blackwellized(sim_fit):
    d, res = sim_fit
    students = res.response["students"]
    st = res.state.stats
    dr = res.state.draws
    c = st.center
    # vs truth: strong agreement and ~nominal 95% coverage
    im = np.array([s["intercept_mean"] for s in students])
    isd = np.array([s["intercept_sd"] for s in students])
    sm = np.array([s["slope_mean"] for s in students])
    ssd = np.array([s["slope_sd"] for s in students])
    order = np.searchsorted(d["ids"], st.ids)
    ti, ts = d["intercept"][order], d["slope"][order]
    assert np.corrcoef(im, ti)[0, 1] > 0.9
    assert np.corrcoef(sm, ts)[0, 1] > 0.7
    cov_i = np.mean(np.abs(im - ti) <= 1.96 * isd)
    cov_s = np.mean(np.abs(sm - ts) <= 1.96 * ssd)
    assert 0.92 <= cov_i <= 0.98 and 0.92 <= cov_s <= 0.98, (cov_i, cov_s)
    assert [s["n_weeks"] for s in students[:20]] == st.n_weeks[:20].tolist()
    # vs a brute-force law of total covariance over all draws for a few students
    for k in (0, 7, 1999):
        sub = st.subset([k]).arrays()
        ma, mb, vaa, vab, vbb = C.conditional_moments(sub, *(dr[p][:, None] for p in PARAMS))
        A = np.array([[1.0, -c], [0.0, 1.0]])
        means = np.c_[ma[:, 0], mb[:, 0]] @ A.T
        covs = np.einsum("ij,djk,lk->dil", A, np.stack([np.c_[vaa[:, 0], vab[:, 0]],
                                                        np.c_[vab[:, 0], vbb[:, 0]]], axis=1), A)
        tot = covs.mean(axis=0) + np.cov(means.T, ddof=0)
        s = students[k]
        assert s["intercept_mean"] == pytest.approx(means[:, 0].mean(), rel=1e-9)
        assert s["slope_mean"] == pytest.approx(means[:, 1].mean(), rel=1e-9)
        assert s["intercept_sd"] == pytest.approx(math.sqrt(tot[0, 0]), rel=1e-7)
        assert s["slope_sd"] == pytest.approx(math.sqrt(tot[1, 1]), rel=1e-7)
        assert s["cor"] == pytest.approx(tot[0, 1] / math.sqrt(tot[0, 0] * tot[1, 1]), rel=1e-6, abs=1e-9)


def test_predict_prob_seen_and_unseen(sim_fit, tmp_path):
    from growth_engine.predict import predict_prob

    d, res = sim_fit
    path = tmp_path / "state.npz"
    save_state(res.state, path)
    state = load_state(path)
    for k in res.state.draws:
        np.testing.assert_array_equal(state.draws[k], res.state.draws[k])
    np.testing.assert_array_equal(state.stats.ids, res.state.stats.ids)

    sid = str(state.stats.ids[3])
    targets = [{"student": sid, "target_week": 12, "goal": g} for g in (0.3, 0.5, 0.7)]
    targets += [{"student": "never-seen", "target_week": 12, "goal": 0.6}]
    out = predict_prob(state, targets)
    assert [o["seen"] for o in out] == [True, True, True, False]
    ps = [o["p"] for o in out[:3]]
    assert ps[0] >= ps[1] >= ps[2] and all(0 <= p <= 1 for p in ps)
    assert out[0]["student"] == sid and out[0]["target_week"] == 12 and out[0]["goal"] == 0.3

    # Monte Carlo check: draw (a, b) from the per-draw conditional normals
    rng = np.random.default_rng(13)
    dr = state.draws
    x = 12 - state.center
    sub = state.stats.subset([3]).arrays()
    ma, mb, vaa, vab, vbb = (v[:, 0] for v in C.conditional_moments(sub, *(dr[p][:, None] for p in PARAMS)))
    sims = []
    for j in range(len(ma)):
        ab = rng.multivariate_normal([ma[j], mb[j]], [[vaa[j], vab[j]], [vab[j], vbb[j]]], size=400)
        sims.append(ab[:, 0] + ab[:, 1] * x)
    eta = np.concatenate(sims)
    goal_mid = float(np.median(eta))
    p_mid = predict_prob(state, [(sid, 12, goal_mid)])[0]["p"]
    assert p_mid == pytest.approx(np.mean(eta >= goal_mid), abs=0.01)

    # unseen: population predictive, checked by simulation too
    ab = [rng.multivariate_normal([dr["beta0"][j], dr["beta1"][j]], _sigma({k: dr[k][j] for k in PARAMS}), 200)
          for j in range(len(dr["beta0"]))]
    eta_u = np.concatenate([a[:, 0] + a[:, 1] * x for a in ab])
    assert out[3]["p"] == pytest.approx(np.mean(eta_u >= 0.6), abs=0.01)

    # predictive: the observed week score adds N(0, sigma^2) per draw, so it is less certain than eta
    reps = len(eta) // len(dr["sigma"])
    observed = eta + rng.normal(0.0, np.repeat(dr["sigma"], reps))
    goal_hi = float(np.quantile(eta, 0.9))
    p_obs = predict_prob(state, [(sid, 12, goal_hi)], predictive=True)[0]["p"]
    p_eta = predict_prob(state, [(sid, 12, goal_hi)])[0]["p"]
    assert p_obs == pytest.approx(np.mean(observed >= goal_hi), abs=0.01)
    assert p_obs > p_eta  # above-median goal: noise can only help reach it


def test_fit_rejects_bad_input():
    pytest.importorskip("numpyro")
    from growth_engine import sampler

    s, w, y = ["a", "a", "b"], [0, 1, 0], [0.2, 0.3, 0.4]
    with pytest.raises(GrowthInputError, match="score"):
        sampler.fit(s, w, [0.2, 1.3, 0.4])
    with pytest.raises(GrowthInputError, match="integer"):
        sampler.fit(s, [0, 1.5, 0], y)
    with pytest.raises(GrowthInputError, match="2 students"):
        sampler.fit(["a", "a", "a"], w, y)
    with pytest.raises(GrowthInputError, match="iter"):
        sampler.fit(s, w, y, iter=100)
    with pytest.raises(GrowthInputError, match="chains"):
        sampler.fit(s, w, y, chains=9)


# ---------------------------------------------------------------------------------------------------
# CLI (what the R service runs)

def _cli(*args, input=None):
    env = dict(os.environ, PYTHONPATH=str(ENGINE_DIR) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "growth_engine", *args], capture_output=True, text=True,
                          env=env, input=input, timeout=600)


def test_cli_fit_then_predict(tmp_path):
    pytest.importorskip("numpyro")
    d = simulate(150, 8, p_missing=0.2, seed=14)
    req = {"data": {"student": d["student"].tolist(), "week": d["week"].tolist(), "score": d["score"].tolist(),
                    "n": [12] * len(d["week"])},
           "iter": 400, "chains": 2, "seed": 5, "family": "gaussian"}
    (tmp_path / "req.json").write_text(json.dumps(req))
    out = tmp_path / "fit"
    r = _cli("fit", "--request", str(tmp_path / "req.json"), "--out-dir", str(out))
    assert r.returncode == 0, r.stderr
    resp = json.loads((out / "response.json").read_text())
    assert resp["model"]["draws"] == 400 and resp["model"]["seed"] == 5 and len(resp["students"]) == 150
    assert resp["diagnostics"]["max_rhat"] < 1.05
    assert (out / "state.npz").is_file()

    targets = {"targets": [{"student": "s001", "target_week": 10, "goal": 0.5},
                           {"student": "zz", "target_week": 10, "goal": 0.5}]}
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
    rows = [{"student": s, "week": int(w), "score": float(y)}
            for s, w, y in zip(d["student"], d["week"], d["score"])]
    (tmp_path / "req_rows.json").write_text(json.dumps(dict(req, data=rows)))
    r = _cli("fit", "--request", str(tmp_path / "req_rows.json"), "--out-dir", str(tmp_path / "fit2"))
    assert r.returncode == 0, r.stderr
    resp2 = json.loads((tmp_path / "fit2" / "response.json").read_text())
    assert resp2["posterior_summary"] == resp["posterior_summary"]


@pytest.mark.parametrize("data, extra, message", [
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
])
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
    assert json.loads(dumps({"a": float("nan"), "b": [np.float64(1.5), np.inf], "c": np.int64(3)})) == \
        {"a": None, "b": [1.5, None], "c": 3}
    x = 0.1 + 0.2
    assert json.loads(dumps({"x": x}))["x"] == x     # full precision
