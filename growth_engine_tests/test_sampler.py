"""The sampler against known truth on simulated data: the hand-written potential equals the NumPyro model
(and scipy's densities), the fit recovers the truth and converges, the student summaries are exactly
Rao-Blackwellized, and goal probabilities match Monte Carlo."""

from __future__ import annotations

import math

import numpy as np
import pytest

from growth_engine import collapsed as C
from growth_engine import runtime
from growth_engine.request import GrowthInputError
from growth_engine.simulate import simulate
from growth_engine.state import load_state, save_state
from growth_engine.stats import design_groups, student_stats
from growth_engine_tests.support import PARAMS, sigma_matrix


def test_hand_potential_equals_numpyro_model_and_scipy():
    pytest.importorskip("numpyro")
    with runtime.float64():
        _check_potentials()


def _check_potentials():
    import jax.numpy as jnp
    from scipy import stats as ss

    from growth_engine import chains, model

    d = simulate(200, 8, p_missing=0.2, seed=7)
    st = student_stats(d["student"], d["week"], d["score"])
    data = {k: jnp.asarray(v) for k, v in chains.pad_groups(design_groups(st)).items()}
    rng = np.random.default_rng(8)
    for _ in range(4):
        v = np.array([0.5, 0.02, -2.5, -4.5, 0.5, -3.0]) + 0.3 * rng.standard_normal(6)
        a = float(model.potential(jnp.asarray(v), data))
        b = float(model.potential_numpyro(jnp.asarray(v), data))
        assert a == pytest.approx(b, rel=1e-12, abs=1e-8)
        b0, b1, sd0, sd1, rho, sg = v[0], v[1], math.exp(v[2]), math.exp(v[3]), math.tanh(v[4] / 2), math.exp(v[5])
        u = (rho + 1) / 2
        log_post = (
            ss.norm(0.5, 0.5).logpdf(b0)
            + ss.norm(0, 0.1).logpdf(b1)
            + ss.halfnorm(scale=0.3).logpdf(sd0)
            + v[2]
            + ss.halfnorm(scale=0.05).logpdf(sd1)
            + v[3]
            + ss.beta(2, 2).logpdf(u)
            + math.log(u * (1 - u))
            + ss.halfnorm(scale=0.3).logpdf(sg)
            + v[5]
            + C.marginal_loglik(st, b0, b1, sd0, sd1, rho, sg)
        )
        assert -a == pytest.approx(log_post, rel=1e-11, abs=1e-7)


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
    assert set(dg["parameters"]) == {
        "b_Intercept",
        "b_week",
        "sd_student__Intercept",
        "sd_student__week",
        "cor_student__Intercept__week",
        "sigma",
    }
    for k in (
        "max_rhat",
        "min_ess_bulk",
        "min_ess_tail",
        "divergent_transitions",
        "max_treedepth_hits",
        "sampling_seconds",
        "compile_seconds",
        "total_seconds",
    ):
        assert k in dg
    assert len(r["students"]) == 2000
    assert set(r["students"][0]) == {
        "student",
        "intercept_mean",
        "intercept_sd",
        "slope_mean",
        "slope_sd",
        "cor",
        "n_weeks",
    }


def test_fit_recovers_population_and_converges(sim_fit):
    _d, res = sim_fit
    r = res.response
    ps = r["posterior_summary"]
    truth = {
        "Intercept": TRUTH["intercept"],
        "week": TRUTH["week"],
        "sd_Intercept": TRUTH["sd_intercept0"],
        "sd_week": TRUTH["sd_week"],
        "cor_Intercept_week": TRUTH["cor0"],
        "sigma": TRUTH["sigma"],
    }
    for k, v in truth.items():
        assert ps[k]["q2.5"] <= v <= ps[k]["q97.5"], (k, v, ps[k])
    dg = r["diagnostics"]
    assert dg["max_rhat"] <= 1.01
    assert dg["min_ess_bulk"] >= 400 and dg["min_ess_tail"] >= 200
    assert dg["divergent_transitions"] == 0 and dg["max_treedepth_hits"] == 0
    # centred values are the per-draw transforms of the week-scale ones
    c = r["model"]["week_center"]
    assert ps["centered"]["Intercept"]["estimate"] == pytest.approx(
        ps["Intercept"]["estimate"] + c * ps["week"]["estimate"], rel=1e-10
    )


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
        covs = np.einsum(
            "ij,djk,lk->dil", A, np.stack([np.c_[vaa[:, 0], vab[:, 0]], np.c_[vab[:, 0], vbb[:, 0]]], axis=1), A
        )
        tot = covs.mean(axis=0) + np.cov(means.T, ddof=0)
        s = students[k]
        assert s["intercept_mean"] == pytest.approx(means[:, 0].mean(), rel=1e-9)
        assert s["slope_mean"] == pytest.approx(means[:, 1].mean(), rel=1e-9)
        assert s["intercept_sd"] == pytest.approx(math.sqrt(tot[0, 0]), rel=1e-7)
        assert s["slope_sd"] == pytest.approx(math.sqrt(tot[1, 1]), rel=1e-7)
        assert s["cor"] == pytest.approx(tot[0, 1] / math.sqrt(tot[0, 0] * tot[1, 1]), rel=1e-6, abs=1e-9)


def test_predict_prob_seen_and_unseen(sim_fit, tmp_path):
    from growth_engine.predict import predict_prob

    _d, res = sim_fit
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
    ab = [
        rng.multivariate_normal([dr["beta0"][j], dr["beta1"][j]], sigma_matrix({k: dr[k][j] for k in PARAMS}), 200)
        for j in range(len(dr["beta0"]))
    ]
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
