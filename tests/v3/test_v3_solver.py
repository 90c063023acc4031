"""The DPM-Solver-v3 sampler (``dpm_jax.v3.sample_v3``).

1. The degenerated oracle: statistics ``l = 1, s = b = 0`` on a fine lambda grid that holds
   the sampling grid's lambdas make v3 without its corrector DPM-Solver++ multistep in
   Taylor form (``solver_type="taylor"``; order 3 with ``multistep3_variant="third_order"``,
   the interpolating polynomial's derivatives) to rounding (measured: max |difference|
   <= 1.8e-14 over the 10 cases, on states of size <= 4.1). With the corrector there is
   no such identity with UniPC: UniPC's one-point corrector uses rho = 1/2 and its UniP-2
   predictor is not the Taylor 2M, while v3's corrector integrates the interpolating
   polynomial exactly and skips one-point corrections.
2. The Gaussian problem N(MU, SIGMA) in d = 6 (full covariance, as in test_ems.py) on
   vp_linear, whose probability-flow ODE is linear: with C_t = alpha_t^2 SIGMA + sigma_t^2 I
   (all diagonal in SIGMA's eigenbasis), x_t = alpha_t MU + C_t^{1/2} C_T^{-1/2} (x_T - alpha_T MU).
   RMS error vs that, 256 held-out noises, logSNR grid from T to t_eps, EMS from
   ``estimate_ems`` (N = 80, K = 512 data samples, 2 probes):

   ======  ==========  ===========  ==========  =======  ==========
   NFE     v3 (est.)   v3 (exact)   DPM++(2M)   UniPC-2  v3 no corr
   ======  ==========  ===========  ==========  =======  ==========
   5       0.0093      0.0093       0.124       0.096    0.018
   6       0.0031      0.0031       0.041       0.022    0.011
   ======  ==========  ===========  ==========  =======  ==========

   (v3: order 2, corrector on, the official defaults otherwise; "exact": the analytic
   statistics of test_ems.py's oracle on the same grid.)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gaussian_oracle import EIG, MU, SCH, SIGMA, D, Q, gauss_eps, oracle

import dpm_jax
from dpm_jax import schedules
from dpm_jax.plan.grids import time_grid
from dpm_jax.v3 import EMS, ems_lambdas, estimate_ems, sample_v3, v3_plan


def oracle_lsb(lam: float):
    """Exact (l, s, b) at lambda (float64)."""
    l_ex, _, s, b = oracle(lam)
    return l_ex, s, b


def exact_flow(x_T, t0: float, t1: float) -> np.ndarray:
    """The probability-flow ODE's solution from t0 to t1 (closed form, float64)."""
    a0, a1 = (float(SCH.marginal_alpha(np.float64(t))) for t in (t0, t1))
    s0, s1 = (float(SCH.marginal_std(np.float64(t))) for t in (t0, t1))
    r = np.sqrt((a1 * a1 * EIG + s1 * s1) / (a0 * a0 * EIG + s0 * s0))
    y = (np.asarray(x_T, np.float64) - a0 * MU) @ Q
    return a1 * MU + (y * r) @ Q.T


def noise(n: int, seed: int, dtype=np.float64):
    return jnp.asarray(np.random.default_rng(seed).normal(size=(n, D)).astype(dtype))


def rms(e) -> float:
    return float(np.sqrt(np.mean(np.square(e))))


def degenerated_ems(skip_type: str, steps: int) -> EMS:
    """l = 1, s = b = 0 on 120 points uniform in lambda plus the grid's own lambdas."""
    t = time_grid(SCH, skip_type, SCH.T, SCH.t_eps, steps)
    lam_g = np.asarray(SCH.marginal_lambda(t), np.float64)
    lam = np.unique(np.concatenate([np.linspace(lam_g[0], lam_g[-1], 120), lam_g]))
    ones = np.ones((lam.shape[0], D))
    return EMS(lam, ones, np.zeros_like(ones), np.zeros_like(ones))


# --------------------------------------------------------------------------- the oracle


@pytest.mark.parametrize("skip_type", ["logSNR", "time_uniform"])
@pytest.mark.parametrize(
    "order, lower_order_final, p_pseudo",
    [(1, True, False), (2, True, False), (2, False, True), (3, True, False), (3, False, False)],
)
def test_degenerated_v3_is_dpm_solver_pp(skip_type, order, lower_order_final, p_pseudo):
    """v3 with l = 1, s = b = 0 and no corrector is DPM-Solver++ multistep (Taylor form)."""
    steps = 7  # < 10: dpm_jax's lower_order_final rule (the reference's) is then v3's
    x_T = noise(8, 11)
    ems = degenerated_ems(skip_type, steps)
    got = sample_v3(
        gauss_eps,
        x_T,
        SCH,
        ems,
        steps=steps,
        order=order,
        skip_type=skip_type,
        use_corrector=False,
        lower_order_final=lower_order_final,
        p_pseudo=p_pseudo,
    )
    kw: dict = {}
    if order > 1:
        kw.update(solver_type="taylor", lower_order_final=lower_order_final)
    if order == 3:
        kw.update(multistep3_variant="third_order")
    want = dpm_jax.sample(
        gauss_eps,
        x_T,
        SCH,
        method="multistep",
        algorithm_type="dpmsolver++",
        order=order,
        steps=steps,
        skip_type=skip_type,
        **kw,
    )
    diff = float(jnp.max(jnp.abs(got - want)))
    print(f"\nmax |v3 - DPM-Solver++| = {diff:.2e} (|x| <= {float(jnp.max(jnp.abs(want))):.2f})")
    assert got.dtype == jnp.float64
    assert diff <= 1e-12


def test_degenerated_option_uses_l1_s0_b0():
    """``degenerated=True`` on any statistics is the hand-made l = 1, s = b = 0 (same grid)."""
    ems = degenerated_ems("logSNR", 6)
    rng = np.random.default_rng(2)
    other = EMS(ems.lambdas, *(rng.normal(size=ems.l.shape) for _ in range(3)))
    x_T = noise(4, 5)
    a = sample_v3(gauss_eps, x_T, SCH, ems, steps=6)
    b = sample_v3(gauss_eps, x_T, SCH, other, steps=6, degenerated=True)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert not np.allclose(np.asarray(sample_v3(gauss_eps, x_T, SCH, other, steps=6)), a)


def test_plan_orders_follow_the_official_schedule():
    """Predictor orders warm up and come down at the end; the corrector's order is the
    previous predictor's (+1 with c_pseudo), none at the first point nor for one point;
    ``half`` keeps it where t > 0.5."""
    ems = degenerated_ems("logSNR", 6)
    p = v3_plan(SCH, ems, steps=6, order=3)
    assert p.p_order == [1, 2, 3, 3, 2, 1] and p.c_order == [0, 2, 3, 4, 4, 3]
    p = v3_plan(SCH, ems, steps=6, order=3, c_pseudo=False, lower_order_final=False)
    assert p.p_order == [1, 2, 3, 3, 3, 3] and p.c_order == [0, 0, 2, 3, 3, 3]
    p = v3_plan(SCH, ems, steps=6, order=2, half=True)
    assert p.c_order == [0 if (i == 0 or p.t[i] <= 0.5) else 3 - (i == 1) for i in range(6)]
    assert p.c_order[-1] == 0 and p.c_order[1] == 2
    assert v3_plan(SCH, ems, steps=6, order=2, use_corrector=False).c_order == [0] * 6


# --------------------------------------------------------------------------- Gaussian


@pytest.fixture(scope="module")
def fitted():
    ems = estimate_ems(
        gauss_eps,
        SCH,
        np.random.default_rng(7).multivariate_normal(MU, SIGMA, size=512),
        key=jax.random.key(3),
        n_points=80,
        probes=2,
        batch_size=512,
    )
    lam = ems.lambdas
    exact = [oracle_lsb(u) for u in lam]
    ems_ex = EMS(lam, *(np.stack([e[i] for e in exact]) for i in range(3)))
    return ems, ems_ex


def test_gaussian_v3_beats_dpm_solver_pp_and_unipc(fitted):
    """Held-out noise (seed 2024; the data seed 7, the estimator's key 3): v3 at 5 and 6
    NFE against the closed-form ODE solution, next to DPM-Solver++(2M) and UniPC-2 (bh2)
    on the same logSNR grid. Figures in the module docstring."""
    ems, ems_ex = fitted
    x_T = noise(256, 2024)
    ref = exact_flow(x_T, SCH.T, SCH.t_eps)
    rows = {}
    for nfe in (5, 6):
        r = {
            "v3": sample_v3(gauss_eps, x_T, SCH, ems, steps=nfe),
            "v3_exact": sample_v3(gauss_eps, x_T, SCH, ems_ex, steps=nfe),
            "v3_nocorr": sample_v3(gauss_eps, x_T, SCH, ems, steps=nfe, use_corrector=False),
            "2M": dpm_jax.sample(
                gauss_eps, x_T, SCH, method="multistep", order=2, steps=nfe, skip_type="logSNR"
            ),
            "unipc2": dpm_jax.sample(
                gauss_eps, x_T, SCH, method="unipc", order=2, steps=nfe, skip_type="logSNR"
            ),
        }
        rows[nfe] = {k: rms(np.asarray(v) - ref) for k, v in r.items()}
        print(f"\nNFE {nfe}: " + "  ".join(f"{k} {v:.3g}" for k, v in rows[nfe].items()))
    for nfe, e in rows.items():
        assert e["v3"] < 0.5 * min(e["2M"], e["unipc2"]), (nfe, e)
        assert abs(e["v3"] - e["v3_exact"]) < 0.2 * e["v3_exact"], (nfe, e)
        assert e["v3"] < e["v3_nocorr"], (nfe, e)


def test_jit_float32_and_wrapped_model(fitted):
    """Eager = jitted (float64); a float32 x_T gives a float32 result close to float64;
    a dpm_jax.WrappedModel is the same model."""
    ems, _ = fitted
    x_T = noise(16, 99)
    eager = sample_v3(gauss_eps, x_T, SCH, ems, steps=5, order=3)
    jitted = jax.jit(lambda x: sample_v3(gauss_eps, x, SCH, ems, steps=5, order=3))(x_T)
    np.testing.assert_allclose(np.asarray(jitted), np.asarray(eager), rtol=1e-12, atol=1e-12)
    x32 = sample_v3(gauss_eps, x_T.astype(jnp.float32), SCH, ems, steps=5, order=3)
    assert x32.dtype == jnp.float32 and x32.shape == x_T.shape
    # measured 3.4e-4 (DPM-Solver++ 3M: 1.6e-5): v3's high-order weights are larger (up to
    # 30 here, from the e^{S} factors of the statistics) and carry the model's float32
    # rounding at the noisy end, amplified by sigma / alpha ~ 150 there
    np.testing.assert_allclose(np.asarray(x32), np.asarray(eager), rtol=0, atol=2e-3)
    wrapped = dpm_jax.model_wrapper(gauss_eps, SCH)
    np.testing.assert_allclose(
        np.asarray(sample_v3(wrapped, x_T, SCH, ems, steps=5, order=3)),
        np.asarray(eager),
        rtol=1e-13,
        atol=1e-13,
    )


def test_closed_over_weights_are_read_at_each_call():
    """A closure over an array: a new value of the array is used (not a constant)."""
    ems = degenerated_ems("logSNR", 5)
    w = {"scale": jnp.asarray(1.0)}

    def model(x, t):
        return w["scale"] * gauss_eps(x, t)

    x_T = noise(4, 1)
    a = sample_v3(model, x_T, SCH, ems, steps=5)
    w["scale"] = jnp.asarray(0.5)
    b = sample_v3(model, x_T, SCH, ems, steps=5)
    assert not np.allclose(np.asarray(a), np.asarray(b))


# --------------------------------------------------------------------------- refusals


def never(x, t):  # the refusals come before any trace
    raise AssertionError("the model was called")


@pytest.mark.parametrize(
    "change, exc, words",
    [
        (dict(x_T=noise(2, 0)[:, :5]), ValueError, "shape"),
        (dict(schedule=schedules.vp_cosine()), ValueError, "schedule"),
        (dict(steps=2, order=3), ValueError, "`steps`"),
        (dict(skip_type="karass"), ValueError, "`skip_type`"),
        (dict(order=4), ValueError, "`order` must be one of 1, 2, 3"),
        (dict(order=0), ValueError, "`order`"),
        (dict(order=True), ValueError, "`order`"),
        (dict(use_corrector=1), TypeError, "`use_corrector`"),
        (dict(half="yes"), TypeError, "`half`"),
        (dict(steps=0), ValueError, "`steps`"),
        (dict(steps=200), ValueError, "too many"),
        (dict(t_end=0.5), None, None),  # inside the statistics' span: fine
        (dict(ems="stats"), TypeError, "`ems`"),
        (dict(x_T=noise(2, 0).astype(jnp.int32)), TypeError, "x_T"),
    ],
)
def test_bad_input_is_refused(fitted, change, exc, words):
    ems, _ = fitted
    kw = dict(x_T=noise(2, 0), schedule=SCH, ems=ems, steps=5, order=2)
    kw.update(change)
    args = (kw.pop("x_T"), kw.pop("schedule"), kw.pop("ems"))
    if exc is None:
        assert sample_v3(gauss_eps, *args, **kw).shape == (2, D)
        return
    with pytest.raises(exc, match=words.replace("(", r"\(")):
        sample_v3(never, *args, **kw)


def test_grid_outside_the_statistics_is_refused():
    lam = ems_lambdas(SCH, 20, -2.0, 3.0)
    ones = np.ones((21, D))
    ems = EMS(lam, ones, 0 * ones, 0 * ones)
    with pytest.raises(ValueError, match="covers"):
        sample_v3(never, noise(2, 0), SCH, ems, steps=5)
    t0, t1 = (float(SCH.inverse_lambda(np.float64(u))) for u in (-2.0, 3.0))
    out = sample_v3(gauss_eps, noise(2, 0), SCH, ems, steps=5, t_start=t0, t_end=t1)
    assert out.shape == (2, D)


# --------------------------------------------------------------------------- interpolation


@pytest.mark.parametrize("skip_type", ["time_uniform", "time_quadratic"])
@pytest.mark.parametrize("order", [2, 3])
def test_interpolated_degenerated_v3_is_dpm_solver_pp_on_the_unsnapped_grid(skip_type, order):
    """``times="interpolate"`` calls the model at the grid's own times: with l = 1,
    s = b = 0 on a coarse grid that holds none of them (linear interpolation of constants
    is exact) it is DPM-Solver++ multistep on that grid; ``"snap"`` is not."""
    steps = 7
    lam = ems_lambdas(SCH, 40)
    ones = np.ones((41, D))
    ems = EMS(lam, ones, 0 * ones, 0 * ones)
    x_T = noise(8, 12)
    kw = dict(steps=steps, order=order, skip_type=skip_type, use_corrector=False)
    got = sample_v3(gauss_eps, x_T, SCH, ems, times="interpolate", **kw)
    snapped = sample_v3(gauss_eps, x_T, SCH, ems, **kw)
    extra = dict(multistep3_variant="third_order") if order == 3 else {}
    want = dpm_jax.sample(gauss_eps, x_T, SCH, method="multistep", algorithm_type="dpmsolver++",
                          order=order, steps=steps, skip_type=skip_type, solver_type="taylor",
                          **extra)  # fmt: skip
    assert float(jnp.max(jnp.abs(got - want))) <= 1e-12
    assert float(jnp.max(jnp.abs(snapped - want))) > 1e-4
    plan = v3_plan(SCH, ems, times="interpolate", **kw)
    t = np.asarray(time_grid(SCH, skip_type, SCH.T, SCH.t_eps, steps))
    np.testing.assert_allclose(plan.t, t, rtol=1e-12)


def test_interpolation_is_linear_between_the_statistics_points():
    """On random statistics: v3 interpolating from a grid equals v3 snapping on that grid
    refined with the linearly interpolated values at the sampling grid's lambdas."""
    steps = 6
    lam = ems_lambdas(SCH, 30)
    rng = np.random.default_rng(4)
    l, s, b = (1.0 + 0.1 * rng.normal(size=(31, D)), 0.2 * rng.normal(size=(31, D)),  # noqa: E741
               0.05 * rng.normal(size=(31, D)))  # fmt: skip
    ems = EMS(lam, l, s, b)
    t = time_grid(SCH, "time_uniform", SCH.T, SCH.t_eps, steps)
    lam_g = np.asarray(SCH.marginal_lambda(t), np.float64)
    fine = np.union1d(lam, lam_g)
    refined = EMS(fine, *(np.stack([np.interp(fine, lam, v[:, d]) for d in range(D)], 1)
                          for v in (l, s, b)))  # fmt: skip
    x_T = noise(4, 6)
    kw = dict(steps=steps, order=2, skip_type="time_uniform")
    got = sample_v3(gauss_eps, x_T, SCH, ems, times="interpolate", **kw)
    want = sample_v3(gauss_eps, x_T, SCH, refined, **kw)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="`times`"):
        sample_v3(never, x_T, SCH, ems, times="nearest", **kw)


# --------------------------------------------------------------------------- explicit grids


def test_explicit_timesteps_are_the_spacing_they_were_made_from(fitted):
    ems, _ = fitted
    x_T = noise(4, 21)
    t = np.asarray(time_grid(SCH, "time_quadratic", SCH.T, SCH.t_eps, 6))
    for times in ("snap", "interpolate"):
        a = sample_v3(gauss_eps, x_T, SCH, ems, steps=6, skip_type="time_quadratic", times=times)
        b = sample_v3(gauss_eps, x_T, SCH, ems, steps=6, timesteps=t, times=times)
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    moved = np.concatenate([t[:1], t[1:-1] ** 1.3, t[-1:]])  # the same ends, inner times moved
    other = sample_v3(gauss_eps, x_T, SCH, ems, steps=6, timesteps=moved, times="interpolate")
    assert not np.allclose(np.asarray(other), np.asarray(b))


@pytest.mark.parametrize(
    "change, words",
    [
        (dict(skip_type="logSNR"), "`skip_type` and `timesteps`"),
        (dict(t_start=1.0), "`t_start` and `timesteps`"),
        (dict(steps=5), "steps + 1 = 6 times"),
        (dict(timesteps=[1.0, 0.5, 0.6, 0.1, 0.05, 0.01, 0.001]), "strictly decreasing"),
        (dict(timesteps=[[1.0, 0.001]]), "steps + 1"),
    ],
)
def test_explicit_timesteps_bad_input(fitted, change, words):
    ems, _ = fitted
    kw = dict(steps=6, timesteps=list(np.linspace(1.0, 1e-3, 7)))
    kw.update(change)
    with pytest.raises(ValueError, match=words.replace("(", r"\(").replace("+", r"\+")):
        sample_v3(never, noise(2, 0), SCH, ems, **kw)


@pytest.mark.parametrize("order", [1, 2, 3])
def test_l0_s_minus1_b0_is_dpm_solver(order):
    """l = 0, s = -1, b = 0 makes g proportional to the noise prediction (f = e^{-lambda}
    eps, e^{S} = e^{-(lambda - lambda_T)}): v3 without its corrector is then multistep
    DPM-Solver (noise prediction) in Taylor form. (l = s = b = 0 is not: its g is
    e^{-lambda} eps, whose Taylor expansion is another method.)"""
    steps = 7
    base = degenerated_ems("logSNR", steps)
    zeros = np.zeros_like(base.l)
    ems = EMS(base.lambdas, zeros, zeros - 1.0, zeros)
    x_T = noise(8, 13)
    got = sample_v3(gauss_eps, x_T, SCH, ems, steps=steps, order=order, use_corrector=False)
    extra: dict = dict(solver_type="taylor") if order > 1 else {}
    if order == 3:
        extra.update(multistep3_variant="third_order")
    want = dpm_jax.sample(gauss_eps, x_T, SCH, method="multistep", algorithm_type="dpmsolver",
                          order=order, steps=steps, skip_type="logSNR", **extra)  # fmt: skip
    diff = float(jnp.max(jnp.abs(got - want)))
    print(f"\norder {order}: max |v3 - DPM-Solver| = {diff:.2e}")
    assert diff <= 1e-12
