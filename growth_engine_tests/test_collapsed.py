"""Sufficient statistics and the collapsed math, checked against loops and brute-force dense linear algebra."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from growth_engine import collapsed as C
from growth_engine.simulate import simulate
from growth_engine.stats import design_groups, student_stats
from growth_engine_tests.support import PARAM_CASES, PARAMS, dense_student, random_rows

# ---------------------------------------------------------------------------------------------------
# sufficient statistics


def test_student_stats_match_a_loop():
    rng = np.random.default_rng(0)
    s, w, y = random_rows(rng)
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
                                   rtol=1e-12, atol=1e-12)  # fmt: skip
        np.testing.assert_allclose([st.tbar[k], st.ybar[k]], [t.mean(), yy.mean()], rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose([st.stt_c[k], st.sty_c[k], st.syy_c[k]],
                                   [((t - t.mean()) ** 2).sum(), ((t - t.mean()) * (yy - yy.mean())).sum(),
                                    ((yy - yy.mean()) ** 2).sum()], rtol=1e-10, atol=1e-12)  # fmt: skip
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
    s, w, y = random_rows(rng)
    st = student_stats(s, w, y)
    ll = C.marginal_loglik_terms(st, **p)
    mean, cov = C.conditional_effects(st, **p)
    assert mean.shape == (st.n_students, 2) and cov.shape == (st.n_students, 2, 2)
    for k, sid in enumerate(st.ids):
        m = s == sid
        ll_ref, mean_ref, cov_ref = dense_student(w[m] - st.center, y[m], p)
        assert ll[k] == pytest.approx(ll_ref, rel=1e-9, abs=1e-9)
        scale = max(p["sd0"], p["sd1"], 1e-12)
        np.testing.assert_allclose(mean[k], mean_ref, rtol=1e-7, atol=1e-9 * (1 + abs(p["beta0"])))
        np.testing.assert_allclose(cov[k], cov_ref, rtol=1e-6, atol=1e-9 * scale**2)
    assert C.marginal_loglik(st, **p) == pytest.approx(ll.sum(), rel=1e-13)


@pytest.mark.parametrize("p", PARAM_CASES)
def test_weighted_loglik_and_conditionals_match_dense(p):
    """Precision weights (the attempts observation model): row j's residual variance sigma^2 / w_j."""
    rng = np.random.default_rng(12)
    s, w, y = random_rows(rng)
    weight = rng.integers(1, 40, size=y.shape[0]) / 7.0
    st = student_stats(s, w, y, weight=weight)
    ll = C.marginal_loglik_terms(st, **p)
    mean, cov = C.conditional_effects(st, **p)
    for k, sid in enumerate(st.ids):
        m = s == sid
        ll_ref, mean_ref, cov_ref = dense_student(w[m] - st.center, y[m], p, weight=weight[m])
        assert ll[k] == pytest.approx(ll_ref, rel=1e-9, abs=1e-9)
        np.testing.assert_allclose(mean[k], mean_ref, rtol=1e-7, atol=1e-9 * (1 + abs(p["beta0"])))
        np.testing.assert_allclose(cov[k], cov_ref, rtol=1e-6, atol=1e-9 * max(p["sd0"], p["sd1"], 1e-12) ** 2)
    g = design_groups(st)
    assert C.grouped_marginal_loglik(g, **p) == pytest.approx(ll.sum(), rel=1e-12)


def test_unit_weights_are_the_plain_model():
    rng = np.random.default_rng(13)
    s, w, y = random_rows(rng)
    plain, ones = student_stats(s, w, y), student_stats(s, w, y, weight=np.ones(y.shape[0]))
    for p in PARAM_CASES:
        assert C.marginal_loglik(ones, **p) == pytest.approx(C.marginal_loglik(plain, **p), rel=1e-13)
    with pytest.raises(ValueError, match="weights must be finite and > 0"):
        student_stats(s, w, y, weight=np.zeros(y.shape[0]))


def test_raw_sum_mapping_is_accepted():
    rng = np.random.default_rng(3)
    s, w, y = random_rows(rng)
    st = student_stats(s, w, y)
    raw = {k: getattr(st, k) for k in ("n", "st", "stt", "sy", "sty", "syy")}
    p = PARAM_CASES[0]
    assert C.marginal_loglik(raw, **p) == pytest.approx(C.marginal_loglik(st, **p), rel=1e-10)


def test_parameters_broadcast_over_draws():
    rng = np.random.default_rng(4)
    s, w, y = random_rows(rng)
    st = student_stats(s, w, y)
    pb = {k: np.array([c[k] for c in PARAM_CASES])[:, None] for k in PARAMS}
    ll = C.marginal_loglik(st, **pb)
    ma, mb, _vaa, _vab, _vbb = C.conditional_moments(st, **pb)
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
                               rtol=1e-10, atol=1e-8)  # fmt: skip
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
    from growth_engine import runtime

    jnp = jax.numpy
    rng = np.random.default_rng(6)
    s, w, y = random_rows(rng)
    st = student_stats(s, w, y)
    p = PARAM_CASES[0]
    with runtime.float64():
        a = float(C.marginal_loglik({k: jnp.asarray(v) for k, v in st.arrays().items()}, **p, xp=jnp))
        assert a == pytest.approx(C.marginal_loglik(st, **p), rel=1e-12)
        _m, cv = C.conditional_effects(st.arrays(), **p, xp=jnp)
        np.testing.assert_allclose(np.asarray(cv), C.conditional_effects(st, **p)[1], rtol=1e-12)


@pytest.mark.parametrize("p", PARAM_CASES)
@pytest.mark.parametrize("weighted", [False, True])
def test_loglik_gradient_is_autodiff_exact(p, weighted):
    """The hand-written gradient (numpy, used by the cohort's maximum likelihood) against JAX's autodiff of
    the value, on the optimizer's scale (beta0, beta1, log sd0, log sd1, atanh rho, log sigma)."""
    jax = pytest.importorskip("jax")
    from growth_engine import runtime

    jnp = jax.numpy
    rng = np.random.default_rng(8)
    s, w, y = random_rows(rng)
    st = student_stats(s, w, y, weight=rng.uniform(0.2, 5.0, s.size) if weighted else None)
    x = np.array([p["beta0"], p["beta1"], np.log(p["sd0"]), np.log(p["sd1"]), np.arctanh(p["rho"]), np.log(p["sigma"])])

    def loglik(x, xp):
        sd0, sd1, rho, sigma = xp.exp(x[2]), xp.exp(x[3]), xp.tanh(x[4]), xp.exp(x[5])
        return C.marginal_loglik(st.arrays(), x[0], x[1], sd0, sd1, rho, sigma, xp=xp)

    with runtime.float64():
        expected = np.asarray(jax.grad(lambda x: loglik(x, jnp))(jnp.asarray(x)))
    value, gradient = C.marginal_loglik_gradient(st, **p)
    assert value == pytest.approx(float(loglik(x, np)), rel=1e-12)
    np.testing.assert_allclose(gradient, expected, rtol=1e-7, atol=1e-7 * np.max(np.abs(expected)))


def test_pure_math_imports_without_jax():
    code = ("import sys, growth_engine; from growth_engine import predict, collapsed, stats, state, cohort; "
            "assert 'jax' not in sys.modules, 'jax imported'")  # fmt: skip
    subprocess.run([sys.executable, "-c", code], check=True)
