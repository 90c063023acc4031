"""The statistics measured along the model's own ODE (``estimate_ems(..., x_T=...)``), the
relative ridge of the regression of f' on f, and the rounding floor of Var(f).

The oracle is the one of ``test_ems.py``: Gaussian data N(mu, Sigma) (d = 6) with its exact
noise predictor. Its probability-flow ODE keeps the marginals, so the statistics along the
ODE from x_T ~ N(alpha_0 mu, C_0) are the closed-form ones; and the ODE is linear:

    x_lambda = alpha mu + Q diag(sqrt(c(lambda) / c(lambda_0))) Q^T (x_T - alpha_0 mu),
    c(lambda) = alpha^2 eig(Sigma) + sigma^2.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from counting import compiles
from gaussian_oracle import EIG, MU, SCH, SIGMA, D, Q, gauss_eps, oracle

from dpm_jax import schedules
from dpm_jax.v3 import ems as ems_mod
from dpm_jax.v3 import ems_lambdas, estimate_ems, sb_point


def alpha_sigma(lam):
    a2 = 1.0 / (1.0 + np.exp(-2.0 * np.asarray(lam, np.float64)))
    return np.sqrt(a2), np.sqrt(1.0 - a2)


def marginal_noise(k: int, lam0: float, seed: int, dtype=np.float64) -> np.ndarray:
    """k draws of x_lambda0 ~ N(alpha mu, alpha^2 Sigma + sigma^2 I)."""
    a, s = alpha_sigma(lam0)
    cov = a * a * SIGMA + s * s * np.eye(D)
    return np.random.default_rng(seed).multivariate_normal(a * MU, cov, size=k).astype(dtype)


def exact_states(x_T: np.ndarray, lam: np.ndarray) -> np.ndarray:
    a0, s0 = alpha_sigma(lam[0])
    c0 = a0 * a0 * EIG + s0 * s0
    out = []
    for u in lam:
        a, s = alpha_sigma(u)
        scale = np.sqrt((a * a * EIG + s * s) / c0)
        out.append(a * MU + ((x_T - a0 * MU) @ Q) * scale @ Q.T)
    return np.stack(out)


class _NoBar:
    def update(self):
        pass


def states_on_grid(x_T, lam):
    """The states the estimator visits (its internal integrator, fed by the exact model)."""
    seen = []

    def point(X, j):
        seen.append(np.asarray(X))
        t = SCH.inverse_lambda(jnp.asarray(lam[j]))
        return 0.0, gauss_eps(X, jnp.full((X.shape[0],), t))

    ems_mod._along_ode(point, SCH, jnp.asarray(x_T), lam, _NoBar())
    return np.stack(seen)


def test_the_states_follow_the_exact_ode_to_second_order():
    x_T = marginal_noise(64, -2.0, 0)
    errs = {}
    for n in (40, 80):
        lam = ems_lambdas(SCH, n, -2.0, 3.0)
        errs[n] = np.abs(states_on_grid(x_T, lam) - exact_states(x_T, lam)).max()
    ratio = errs[40] / errs[80]
    print(f"\nmax state error: N=40 {errs[40]:.2e}, N=80 {errs[80]:.2e}, ratio {ratio:.2f}")
    assert errs[80] < 1e-3 and 3.0 < ratio < 5.0  # DPM-Solver++(2M): O(h^2)


def test_statistics_along_the_ode_match_the_oracle():
    """As test_ems.py's end-to-end check of the data mode, with the same bounds."""
    ems = estimate_ems(
        gauss_eps,
        SCH,
        x_T=marginal_noise(4096, -2.0, 1),
        key=jax.random.key(5),
        n_points=80,
        probes=4,
        batch_size=4096,
        lambda_min=-2.0,
        lambda_max=3.0,
    )
    orc = [oracle(u) for u in ems.lambdas]
    err_l = np.abs(ems.l - np.stack([o[0] for o in orc])).max()
    err_s = np.abs(ems.s - np.stack([o[2] for o in orc])).max()
    err_b = np.abs(ems.b - np.stack([o[3] for o in orc])).max()
    print(f"\nmax errors along the ODE: l {err_l:.2e}, s {err_s:.2e}, b {err_b:.2e}")
    assert err_l < 1e-2 and err_s < 5e-2 and err_b < 1e-2
    assert ems.meta["states"] == "ode" and ems.meta["K"] == 4096


def test_batching_and_dtype_along_the_ode():
    x_T = marginal_noise(12, -1.0, 4)
    kw = dict(key=jax.random.key(2), n_points=3, probes=2, lambda_min=-1.0, lambda_max=1.0)
    a = estimate_ems(gauss_eps, SCH, x_T=x_T, batch_size=12, **kw)
    b = estimate_ems(gauss_eps, SCH, x_T=x_T, batch_size=4, **kw)  # padded last batch
    c = estimate_ems(gauss_eps, SCH, x_T=x_T.astype(np.float32), batch_size=4, **kw)
    for name in ("l", "s", "b"):
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=1e-10, atol=1e-12)
        assert getattr(c, name).dtype == np.float32
        np.testing.assert_allclose(getattr(c, name), getattr(a, name), rtol=0, atol=2e-4)


def test_new_closure_weights_reuse_the_program_along_the_ode():
    sched = schedules.vp_linear()
    x_T = jax.random.normal(jax.random.key(0), (8, 3))
    kw = dict(n_points=2, key=jax.random.key(1), lambda_min=-1.0, lambda_max=1.0)
    lam = np.asarray([-1.0, 0.0, 1.0])
    sigma = np.asarray(sched.marginal_std(sched.inverse_lambda(jnp.asarray(lam))))
    for w in (3.0, 4.0):
        weights = jnp.full((3,), w)
        with compiles() as c:
            got = estimate_ems(lambda x, t: weights * x, sched, x_T=x_T, **kw)
        np.testing.assert_allclose(got.l, w * sigma[:, None] * np.ones((3, 3)), rtol=1e-6)
        if w > 3.0:
            assert len(c) == 0


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(), ValueError, "not neither"),
        (dict(data=np.ones((4, 6)), x_T=np.ones((4, 6))), ValueError, "not both"),
        (dict(x_T=np.ones((1, 6))), ValueError, "`x_T` must have shape"),
        (dict(x_T=np.ones((4, 6), np.int32)), TypeError, "`x_T` must have a floating"),
        (dict(x_T=np.full((4, 6), np.inf)), ValueError, "`x_T` must be finite"),
        (dict(data=np.ones((4, 6)), ridge=-1.0), ValueError, "`ridge` must be a finite"),
        (dict(data=np.ones((4, 6)), ridge="a"), TypeError, "`ridge` must be a number"),
    ],
)
def test_bad_input_is_refused_with_a_clear_message(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        estimate_ems(gauss_eps, SCH, key=jax.random.key(0), n_points=2, **kwargs)


# --------------------------------------------------------------------------- the ridge


def test_the_ridge_is_the_formula():
    """s(r) = Cov / (Var + r mean Var) per dimension: for two ridges r1, r2,
    (1 / s(r1) - 1 / s(0)) / (1 / s(r2) - 1 / s(0)) = r1 / r2 in every dimension."""
    data = jnp.asarray(np.random.default_rng(3).multivariate_normal(MU, SIGMA, size=256))
    l_ex, dl, _, _ = oracle(0.5)
    point = jax.jit(
        lambda r: sb_point(gauss_eps, SCH, data, 0.5, l_ex, dl, jax.random.key(1), ridge=r)[0]
    )
    s = {r: np.asarray(point(r)) for r in (0.0, 0.1, 0.4)}  # one program, the ridge traced
    ratio = (1 / s[0.1] - 1 / s[0.0]) / (1 / s[0.4] - 1 / s[0.0])
    np.testing.assert_allclose(ratio, 0.25, rtol=1e-8)
    assert np.all(np.abs(s[0.1]) < np.abs(s[0.0]))


def const_pixel_eps(x, t):
    """The exact noise predictor of N(0, diag(1, 1, 0)) plus a full-covariance coupling of
    the first two dimensions: the third is constant over the data."""
    a, s = SCH.marginal_alpha(t)[:, None], SCH.marginal_std(t)[:, None]
    var = jnp.asarray([1.0, 0.5, 0.0], x.dtype)
    mix = jnp.asarray([[1.0, 0.3, 0.0], [0.3, 1.0, 0.0], [0.0, 0.0, 1.0]], x.dtype)
    return s * ((x @ mix) / (a * a * var + s * s)) @ mix.T


def test_a_constant_pixel_gets_s_zero_and_the_others_are_kept():
    data = np.random.default_rng(0).normal(size=(64, 3)) * np.asarray([1.0, 0.7, 0.0])
    kw = dict(key=jax.random.key(0), n_points=4, lambda_min=-1.0, lambda_max=2.0, batch_size=16)
    got = estimate_ems(const_pixel_eps, SCH, data, **kw)
    raw = estimate_ems(const_pixel_eps, SCH, data, ridge=0.0, **kw)
    assert np.all(got.s[:, 2] == 0.0) and np.all(raw.s[:, 2] == 0.0)  # the rounding floor
    np.testing.assert_allclose(got.s[:, :2], raw.s[:, :2], rtol=1e-3)  # the ridge: tiny here


# --------------------------------------------------------------------------- time_difference


def wiggly_eps(x, t):
    """The Gaussian's noise predictor plus a tiny fast oscillation in t (period 1e-3): its
    values move by 1e-3 |x| at most, its autodiff time derivative by up to 6.3 |x|."""
    return gauss_eps(x, t) + 1e-3 * jnp.sin(2 * jnp.pi * 1000.0 * t)[:, None] * x


def test_the_time_difference_ignores_what_the_autodiff_derivative_sees_between_steps():
    data = jnp.asarray(np.random.default_rng(5).multivariate_normal(MU, SIGMA, size=512))
    l_ex, dl, s_ex, _ = oracle(0.3)
    key = jax.random.key(2)

    def s_of(model, dt):
        return np.asarray(sb_point(model, SCH, data, 0.3, l_ex, dl, key, time_difference=dt)[0])

    smooth = s_of(gauss_eps, None)
    np.testing.assert_allclose(s_of(gauss_eps, 1e-4), smooth, rtol=1e-5, atol=1e-6)
    by_jvp, by_difference = s_of(wiggly_eps, None), s_of(wiggly_eps, 1e-3)  # one period
    err_jvp = np.abs(by_jvp - smooth).max()
    err_diff = np.abs(by_difference - smooth).max()
    print(f"\nmax |s - s(smooth model)|: autodiff {err_jvp:.2e}, difference {err_diff:.2e}")
    assert err_jvp > 0.1 and err_diff < 0.01 and err_jvp > 20 * err_diff  # measured 0.39, 2.2e-3


def test_the_time_difference_along_the_ode_and_its_checks():
    x_T = marginal_noise(8, -1.0, 9)
    kw = dict(key=jax.random.key(0), n_points=2, lambda_min=-1.0, lambda_max=1.0)
    a = estimate_ems(gauss_eps, SCH, x_T=x_T, **kw)
    b = estimate_ems(gauss_eps, SCH, x_T=x_T, time_difference=1e-4, **kw)
    np.testing.assert_allclose(b.s, a.s, rtol=1e-4, atol=1e-5)
    assert b.meta["time_difference"] == 1e-4 and a.meta["time_difference"] is None
    for bad, exc in ((0.0, ValueError), (-1e-3, ValueError), (2.0, ValueError), ("a", TypeError)):
        with pytest.raises(exc, match="`time_difference`"):
            estimate_ems(gauss_eps, SCH, x_T=x_T, time_difference=bad, **kw)
