"""Flow (rectified flow / flow matching) and EDM models: convergence orders, infinite-lambda
ends, a property test of the plans, and the errors at alpha = 0.

The problem is the 16-D Gaussian mixture :func:`dpm_jax.testing.problems.gmm_16d` (4 components,
stds 0.15-0.6). Its posterior mean x0*(x; alpha, sigma) and noise eps*(x; alpha, sigma) are
known in closed form and finite everywhere, at alpha = 0 (pure noise) and at sigma = 0 (the
data) included, so every kind of network is exact here: a flow velocity u = eps* - x0*, an
EDM denoiser D = x0*, a raw EDM network F obtained from D by inverting EDM's preconditioning
(so ``model_type="edm"`` is tested against the paper's formulas, not against the wrapper's),
and a v prediction for a zero-terminal-SNR table.

Two independent references of the probability-flow ODE:

* :func:`dpm_jax.testing.exact.exact_ode_solution` (DOP853 in lambda on y = x / alpha; finite lambda
  at both ends);
* :func:`_theta_reference` below, DOP853 in the angle ``theta = atan2(sigma, alpha)`` on
  ``z = x / sqrt(alpha^2 + sigma^2)``: every schedule is a VP path ``(cos theta, sin theta)``
  up to that scale, and ``dz/dtheta = -sin(theta) x0* + cos(theta) eps*`` is smooth on the
  closed interval [0, pi/2], so it integrates runs that start at alpha = 0 or end at sigma = 0.

The two agree to ~1e-12 on finite spans (``test_references_agree``).

Execution: every plan is padded to ``RMAX`` rows and window 4 with identity rows
(``x_coef = 1``, no model weights), so each model compiles once for the whole module;
``test_padded_execution_equals_sample`` checks that this gives :func:`dpm_jax.sample`'s result.
Run with ``pytest -s`` to see the measured orders.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

pytest.importorskip("scipy")

import jax
import jax.numpy as jnp
from scipy.integrate import solve_ivp

import dpm_jax
from dpm_jax import schedules
from dpm_jax.testing import problems
from dpm_jax.testing.exact import exact_ode_solution

GMM = problems.gmm_16d()
BATCH, DIM = 8, 16
SIGMA_DATA = 0.5
RMAX = 768  # rows every plan is padded to (the largest NFE used)
TOL = 0.35  # |measured order - expected order| allowed


@pytest.fixture(scope="module", autouse=True)
def _x64():
    with jax.enable_x64(True):
        yield


# ----------------------------------------------------------------------------------------------
# The mixture's exact predictions, finite at alpha = 0 and at sigma = 0.


def _posterior(x, alpha, sigma):
    """(x0*, eps*) of the mixture at x = alpha x0 + sigma eps; alpha, sigma scalars or (B,).

    Per component k: E[x0 | x, k] = mu_k + alpha s_k^2 (x - alpha mu_k) / v_k with
    v_k = alpha^2 s_k^2 + sigma^2, and eps* = sigma sum_k r_k (x - alpha mu_k) / v_k.
    """
    xp = jnp if isinstance(x, jax.Array) else np
    a = xp.reshape(xp.asarray(alpha, x.dtype), (-1, 1))
    s = xp.reshape(xp.asarray(sigma, x.dtype), (-1, 1))
    means, stds = xp.asarray(GMM.means, x.dtype), xp.asarray(GMM.stds, x.dtype)
    v = a**2 * stds**2 + s**2  # (B or 1, K)
    diff = x[:, None, :] - a[..., None] * means  # (B, K, D)
    logits = (
        xp.log(xp.asarray(GMM.weights, x.dtype))
        - 0.5 * x.shape[-1] * xp.log(v)
        - xp.sum(diff**2, axis=-1) / (2 * v)
    )
    r = xp.exp(logits - xp.max(logits, axis=-1, keepdims=True))
    r = r / xp.sum(r, axis=-1, keepdims=True)
    x0 = xp.sum(r[..., None] * (means + (a * stds**2 / v)[..., None] * diff), axis=-2)
    eps = s * xp.sum((r / v)[..., None] * diff, axis=-2)
    return x0, eps


def flow_net(x, t_input):
    """Velocity u = eps* - x0* of ``schedules.flow(shift, time_scale=1)``: t_input = sigma_t."""
    x0, eps = _posterior(x, 1.0 - t_input, t_input)
    return eps - x0


def edm_denoiser(x, t_input):
    """EDM's D(x; sigma) = x0* (alpha = 1, t_input = sigma)."""
    return _posterior(x, 1.0, t_input)[0]


def edm_raw_net(x_in, c_noise):
    """A raw EDM network F (Karras et al. 2022, Table 1): called as F(c_in x, c_noise) with
    c_in = 1 / sqrt(sigma^2 + sd^2), c_noise = log(sigma) / 4; D = c_skip x + c_out F with
    c_skip = sd^2 / (sigma^2 + sd^2), c_out = sigma sd / sqrt(sigma^2 + sd^2).
    So F = (D - c_skip x) / c_out."""
    sigma = jnp.exp(4.0 * c_noise)[:, None]
    norm = jnp.sqrt(sigma**2 + SIGMA_DATA**2)
    x = x_in * norm
    d = _posterior(x, 1.0, sigma[:, 0])[0]
    return (d - SIGMA_DATA**2 / norm**2 * x) / (sigma * SIGMA_DATA / norm)


# ----------------------------------------------------------------------------------------------
# References.


def _theta_reference(sched, x, t_start, t_end, tol=1e-12):
    """The probability-flow ODE from t_start to t_end in theta = atan2(sigma, alpha) (see the
    module docstring); valid with alpha = 0 or sigma = 0 at either end."""

    def ends(t):
        a = float(sched.marginal_alpha(np.float64(t)))
        s = float(sched.marginal_std(np.float64(t)))
        return np.arctan2(s, a), np.hypot(a, s)

    (th0, r0), (th1, r1) = ends(t_start), ends(t_end)
    x = np.asarray(x, np.float64)

    def rhs(th, z):
        x0, eps = _posterior(z.reshape(x.shape), np.cos(th), np.sin(th))
        return (-np.sin(th) * x0 + np.cos(th) * eps).ravel()

    sol = solve_ivp(rhs, (th0, th1), (x / r0).ravel(), method="DOP853", rtol=tol, atol=tol)
    assert sol.success, sol.message
    return r1 * sol.y[:, -1].reshape(x.shape)


def _x_start(sched, t_start, seed=0):
    """x at t_start: sigma(t_start) times a fixed standard normal (the prior's scale)."""
    z = np.random.default_rng(seed).normal(size=(BATCH, DIM))
    return z * float(sched.marginal_std(np.float64(t_start)))


# ----------------------------------------------------------------------------------------------
# Schedules and models, built once: a model's compiled program is cached by its identity.

FLOW1, FLOW3 = schedules.flow(), schedules.flow(shift=3.0)
EDM = schedules.edm(sigma_data=SIGMA_DATA)
ZSNR = schedules.discrete(betas=np.linspace(1e-4, 0.02, 1000), rescale_zero_terminal_snr=True)


def v_net(x, t_input):
    """v = alpha eps* - sigma x0* of the zero-terminal-SNR table (t_input = 1000 (t - 1/N))."""
    log_alpha = ZSNR.marginal_log_alpha(t_input / 1000.0 + 1.0 / ZSNR.total_N)
    a, s = jnp.exp(log_alpha), jnp.sqrt(-jnp.expm1(2.0 * log_alpha))
    x0, eps = _posterior(x, a, s)
    return a[:, None] * eps - s[:, None] * x0


MODELS = {
    "flow1": (FLOW1, dpm_jax.model_wrapper(flow_net, FLOW1, model_type="flow")),
    "flow3": (FLOW3, dpm_jax.model_wrapper(flow_net, FLOW3, model_type="flow")),
    "edm_x0": (EDM, dpm_jax.model_wrapper(edm_denoiser, EDM, model_type="x_start")),
    "edm_raw": (EDM, dpm_jax.model_wrapper(edm_raw_net, EDM, model_type="edm")),
    "zsnr_v": (ZSNR, dpm_jax.model_wrapper(v_net, ZSNR, model_type="v")),
}


def _padded(plan, rows=RMAX, window=4):
    """The plan with identity rows appended (x_{i+1} = x_i; the model is still evaluated, at
    the last row's finite point) and m_coef widened to ``window``: one shape for every plan."""
    r = plan.nfe
    assert r <= rows and plan.window <= window

    def ext(a, v):
        return np.concatenate([np.asarray(a, np.float64), np.full((rows - r,), v)])

    m = np.zeros((rows, window))
    m[:r, : plan.window] = plan.m_coef
    return dataclasses.replace(
        plan,
        t=ext(plan.t, plan.t[-1]),
        t_input=ext(plan.t_input, plan.t_input[-1]),
        alpha=ext(plan.alpha, plan.alpha[-1]),
        sigma=ext(plan.sigma, plan.sigma[-1]),
        x_coef=ext(plan.x_coef, 1.0),
        m_coef=m,
        noise_coef=ext(plan.noise_coef, 0.0),
    )


def _run(name, x, steps, **kw):
    sched, model = MODELS[name]
    plan = dpm_jax.build_plan(sched, steps=steps, **kw)
    assert plan.nfe == steps
    out, _ = dpm_jax.execute_plan(model, jnp.asarray(x, jnp.float64), _padded(plan))
    return np.asarray(out)


def _errors(name, x, exact, nfes, **kw):
    return np.array([np.max(np.abs(_run(name, x, n, **kw) - exact)) for n in nfes])


def _order(nfes, errors):
    return float(-np.polyfit(np.log(nfes), np.log(errors), 1)[0])


# ----------------------------------------------------------------------------------------------
# 0. The harness itself.


@pytest.mark.parametrize(
    "sched, t_start, t_end",
    [
        (FLOW1, 0.995, 0.05),
        (FLOW3, 0.9, 0.02),
        (EDM, 80.0, 0.02),
        (schedules.ve(), 1.0, 0.0),
        (schedules.vp_linear(), 1.0, 1e-3),
    ],
    ids=["flow1", "flow3", "edm", "ve", "vp_linear"],
)
def test_references_agree(sched, t_start, t_end):
    """exact_ode_solution (lambda, y = x / alpha, the schedule's own alpha at the ends) and the
    theta reference are independent integrations of the same ODE."""
    x = _x_start(sched, t_start)
    a = exact_ode_solution(GMM, sched, x, t_start, t_end, rtol=1e-12, atol=1e-12)
    b = _theta_reference(sched, x, t_start, t_end)
    assert np.max(np.abs(a - b)) < 1e-9 * max(1.0, np.max(np.abs(b)))


def test_exact_solution_needs_finite_lambda():
    with pytest.raises(ValueError, match="finite"):
        exact_ode_solution(GMM, FLOW1, _x_start(FLOW1, 1.0), 1.0, 0.05)
    with pytest.raises(ValueError, match="finite"):
        exact_ode_solution(GMM, EDM, _x_start(EDM, 80.0), 80.0, 0.0)


@pytest.mark.parametrize(
    "name, kw",
    [
        ("flow3", dict(order=2)),  # t = 1 (alpha = 0) to t = 0 (sigma = 0)
        ("edm_raw", dict(order=3, skip_type="karras", final_sigmas_type="zero")),
    ],
)
def test_padded_execution_equals_sample(name, kw):
    sched, model = MODELS[name]
    x = _x_start(sched, sched.T)
    want = np.asarray(dpm_jax.sample(model, jnp.asarray(x), sched, steps=12, **kw))
    np.testing.assert_allclose(_run(name, x, 12, **kw), want, rtol=1e-12, atol=1e-12)


@jax.jit
def _x0_prediction(model, x, t, t_input, alpha, sigma):
    return model.predict(x, t, t_input, alpha, sigma, data=True)


def test_edm_preconditioning_matches_denoiser():
    """model_type="edm" with a raw F gives D = x0*: on EDM's schedule, and on a flow schedule
    (alpha != 1), where the wrapper applies EDM's preconditioning at sigma / alpha to x / alpha.
    Per-sample (alpha, sigma), one compiled call each."""
    x = _x_start(EDM, 3.0)
    sigmas = np.geomspace(80.0, 0.005, BATCH)
    got = _x0_prediction(MODELS["edm_raw"][1], x, sigmas, sigmas, np.ones(BATCH), sigmas)
    np.testing.assert_allclose(
        got,
        _posterior(x, 1.0, sigmas)[0],
        rtol=1e-12,
        atol=1e-12,
        err_msg="EDM preconditioning on schedules.edm()",
    )
    raw_on_flow = dpm_jax.model_wrapper(edm_raw_net, FLOW3, model_type="edm", sigma_data=SIGMA_DATA)
    ts = np.linspace(0.98, 0.02, BATCH)
    a, s = FLOW3.marginal_alpha(ts), FLOW3.marginal_std(ts)
    got = _x0_prediction(raw_on_flow, x, ts, FLOW3.time_input(ts), a, s)
    np.testing.assert_allclose(
        got,
        _posterior(x, a, s)[0],
        rtol=1e-12,
        atol=1e-12,
        err_msg="EDM preconditioning on schedules.flow(shift=3)",
    )


# ----------------------------------------------------------------------------------------------
# 1. Convergence orders on spans with finite lambda at both ends.
#
# Max-abs error against the exact solution at NFE 96, 192, 384, 768; the order is minus the
# least-squares slope of log(error) against log(NFE). Measured (float64, -s prints them):
#
#   case                 ms1   ms2   ms3*  ss2   ss3   uni1  uni2
#   flow1 logSNR         1.00  1.95  3.17  1.93  2.90  1.97  3.06
#   flow3 logSNR         1.00  1.94  3.14  1.93  2.85  1.96  3.05
#   edm_x0 logSNR        1.00  1.96  3.17  1.93  2.86  1.97  3.06
#   edm_x0 karras        1.00  2.02  3.20  1.98  2.89  2.00  3.06
#   edm_raw karras       (identical to edm_x0 karras)
#   flow1 time_uniform   1.00  1.98   -    1.94  2.96  1.97  2.94
#   flow3 time_uniform   1.00  1.94   -    1.94  2.97  1.94  2.85
#
# (ms = DPM-Solver++ multistep, ms3* with multistep3_variant="third_order"; ss = singlestep
# (singlestep_fixed on the reference grids, diffusers' singlestep on karras); uni = UniPC-p
# with its corrector, order p + 1.)
#
# Why the spans start at low SNR (flow t = 0.995, alpha = 0.005; EDM sigma = 80 = sigma_max):
# the multistep solvers warm up with a first-order step, whose O(h^2) local error bounds the
# global order of DPM-Solver++(3M) by 2 as h -> 0. Where sampling starts (alpha small) that
# error is weighted by alpha and stays below the O(h^3) terms over these NFE. Started at higher
# SNR it shows: flow t = 0.95 -> 0.05 (logSNR) measures 3M local orders 3.1, 3.3, 3.3, 2.6, 2.2
# and EDM sigma 10 -> 0.02 (karras) 3.3, 3.1, 2.6, 2.4, 2.2 between NFE 12, 24, ..., 384. For
# the same reason 3M is left out on the time_uniform grids: uniform in t from t = 0.995,
# flow(shift=1)'s first step is long in lambda (0.69 at NFE 192, against 0.043 on the logSNR
# grid), and 3M measures 2.3 there (flow(3): 3.0).

CONV_NFES = (96, 192, 384, 768)
CONV_CASES = {  # name: (model, skip_type, t_start, t_end)
    "flow1-logSNR": ("flow1", "logSNR", 0.995, 0.05),
    "flow3-logSNR": ("flow3", "logSNR", 0.995, 0.05),
    "edm_x0-logSNR": ("edm_x0", "logSNR", 80.0, 0.02),
    "edm_x0-karras": ("edm_x0", "karras", 80.0, 0.02),
    "edm_raw-karras": ("edm_raw", "karras", 80.0, 0.02),
    "flow1-time_uniform": ("flow1", "time_uniform", 0.995, 0.05),
    "flow3-time_uniform": ("flow3", "time_uniform", 0.995, 0.05),
}
SOLVERS = {  # name: (options, expected order)
    "ms1": (dict(method="multistep", order=1), 1),
    "ms2": (dict(method="multistep", order=2), 2),
    "ms3": (dict(method="multistep", order=3, multistep3_variant="third_order"), 3),
    "ss2": (dict(method="singlestep_fixed", order=2), 2),
    "ss3": (dict(method="singlestep_fixed", order=3), 3),
    "uni1": (dict(method="unipc", order=1), 2),
    "uni2": (dict(method="unipc", order=2), 3),
}


@pytest.fixture(scope="module")
def conv_problem(request, _x64):
    name, skip, t0, t1 = CONV_CASES[request.param]
    sched = MODELS[name][0]
    x = _x_start(sched, t0)
    return name, skip, t0, t1, x, exact_ode_solution(GMM, sched, x, t0, t1, rtol=1e-12, atol=1e-12)


def _conv_params():
    for case in CONV_CASES:
        for solver in SOLVERS:
            if solver == "ms3" and case.endswith("time_uniform"):
                continue
            yield pytest.param(case, solver, id=f"{case}-{solver}")


@pytest.mark.parametrize("conv_problem, solver", list(_conv_params()), indirect=["conv_problem"])
def test_convergence_order(conv_problem, solver):
    name, skip, t0, t1, x, exact = conv_problem
    opts, expected = SOLVERS[solver]
    if skip == "karras" and opts["method"] == "singlestep_fixed":
        opts = dict(opts, method="singlestep")  # diffusers' singlestep on diffusers' grid
    if opts["method"] in ("multistep", "unipc") and opts["order"] > 1:
        opts = dict(opts, lower_order_final=False)  # (the option of these solvers)
    errors = _errors(
        name,
        x,
        exact,
        CONV_NFES,
        skip_type=skip,
        t_start=t0,
        t_end=t1,
        **opts,
    )
    measured = _order(CONV_NFES, errors)
    msg = (
        f"{name} {skip} {solver}: order {measured:.2f}, expected {expected} (NFE "
        f"{list(CONV_NFES)}, max errors {', '.join(f'{e:.2e}' for e in errors)})"
    )
    print("\n" + msg)
    assert np.all(np.isfinite(errors)) and np.all(errors > 1e-10), msg
    assert abs(measured - expected) <= TOL, msg


def test_edm_raw_network_equals_denoiser_run():
    """Sampling with the raw F (model_type="edm") and with D (model_type="x_start") agree."""
    x = _x_start(EDM, EDM.T)
    kw = dict(order=2, skip_type="karras", final_sigmas_type="zero")
    np.testing.assert_allclose(
        _run("edm_raw", x, 20, **kw), _run("edm_x0", x, 20, **kw), rtol=1e-10, atol=1e-10
    )


# ----------------------------------------------------------------------------------------------
# 2. Whole-range runs: infinite lambda at an end.
#
# Steps that touch an infinite lambda (out of pure noise, alpha = 0; the step after it, which may
# not use history from beyond it; onto the data, sigma = 0) are exact-in-the-limit first-order
# (DDIM = Euler) steps. On a grid uniform in t each has local error O(1/N^2), so the global
# order is min(p, 2) asymptotically (approached slowly: log factors, and for flow(3) a bumpy
# pre-asymptotic range). Measured (order fitted over NFE 16, 64, 256; EDM 16, 32, 64, 128):
#
#   run                                   ms1   ms2   ms3   ss2   ss3   uni1  uni2
#   flow1 t = 1 -> 0, time_uniform        0.99  1.39  1.61  1.76  1.95  1.68  1.72
#   flow3 t = 1 -> 0, time_uniform        0.97  1.54  1.39  1.56  1.94  1.44  1.88
#   zero-SNR v, t = 1 -> 1/N, time_unif.  0.97  1.51  1.71  1.69  2.05  1.42  1.67
#   EDM 80 -> 0, karras + "zero"          1.00  2.30  3.46  1.88  2.74  1.96  2.87
#
# (singlestep here is DPM-Solver-fast's order mix, ss3 = order 3. At NFE 192 -> 384 -> 768 the
# flow1 local orders are 1.76, 1.80 (ms2) and 1.99, 2.00 (ms3): the limit is 2.)
#
# EDM's final_sigmas_type="zero" step goes from sigma_min = 0.002 (fixed) to 0: its error
# ~1.8e-5 is a floor the runs reach beyond ~256 NFE, so its NFE stop at 128. Karras' rho = 7
# grid makes the other steps full order (the first node is at finite lambda).

WHOLE_RUNS = {  # name: (model, NFE, options)
    "flow1": ("flow1", (16, 64, 256), dict(t_start=1.0, t_end=0.0)),
    "flow3": ("flow3", (16, 64, 256), dict(t_start=1.0, t_end=0.0)),
    "zsnr_v": ("zsnr_v", (16, 64, 256), dict(t_start=1.0)),
    "edm_zero": ("edm_x0", (16, 32, 64, 128), dict(skip_type="karras", final_sigmas_type="zero")),
}
WHOLE_SOLVERS = {
    "ms1": dict(method="multistep", order=1),
    "ms2": dict(method="multistep", order=2),
    "ms3": dict(method="multistep", order=3, multistep3_variant="third_order"),
    "ss2": dict(method="singlestep", order=2),
    "ss3": dict(method="singlestep", order=3),
    "uni1": dict(method="unipc", order=1),
    "uni2": dict(method="unipc", order=2),
}


@pytest.fixture(scope="module")
def whole_problem(request, _x64):
    name, nfes, opts = WHOLE_RUNS[request.param]
    sched = MODELS[name][0]
    t0 = opts.get("t_start", sched.T)
    t1 = 0.0 if opts.get("final_sigmas_type") == "zero" else opts.get("t_end", sched.t_eps)
    # the run starts at alpha = 0 or ends at sigma = 0
    assert not np.all(np.isfinite(sched.marginal_lambda(np.array([t0, t1]))))
    x = _x_start(sched, t0)
    return request.param, name, nfes, opts, x, _theta_reference(sched, x, t0, t1)


@pytest.mark.parametrize("whole_problem", list(WHOLE_RUNS), indirect=True)
@pytest.mark.parametrize("solver", list(WHOLE_SOLVERS))
def test_whole_range_converges(whole_problem, solver):
    label, name, nfes, opts, x, exact = whole_problem
    errors = _errors(name, x, exact, nfes, **opts, **WHOLE_SOLVERS[solver])
    measured = _order(nfes, errors)
    msg = (
        f"whole range {label} {solver}: order {measured:.2f} (NFE {list(nfes)}, max errors "
        f"{', '.join(f'{e:.2e}' for e in errors)})"
    )
    print("\n" + msg)
    assert np.all(np.isfinite(errors)), msg
    assert np.all(np.diff(errors) < 0), msg
    assert measured > 0.8, msg


@pytest.mark.parametrize(
    "name, kw",
    [
        ("flow3", dict(order=3, method="singlestep")),
        ("flow1", dict(order=2, algorithm_type="sde-dpmsolver++")),
        ("zsnr_v", dict(order=2, method="unipc")),
        ("edm_raw", dict(order=3, skip_type="karras", final_sigmas_type="zero")),
    ],
    ids=["flow3-singlestep3", "flow1-sde2", "zsnr_v-unipc2", "edm_raw-multistep3-zero"],
)
def test_ends_finite_in_float32(name, kw):
    """sample() in float32 from alpha = 0 / to sigma = 0 is finite and close to float64."""
    sched, model = MODELS[name]
    x = _x_start(sched, sched.T)
    key = jax.random.key(0) if kw.get("algorithm_type", "").startswith("sde") else None
    out = dpm_jax.sample(model, jnp.asarray(x, jnp.float32), sched, steps=10, key=key, **kw)
    assert out.dtype == jnp.float32 and np.all(np.isfinite(np.asarray(out)))
    if key is None:
        np.testing.assert_allclose(np.asarray(out), _run(name, x, 10, **kw), rtol=0, atol=1e-3)


# ----------------------------------------------------------------------------------------------
# 3. Property test: every plan over random schedules and options is finite, or refused with
# a message naming an argument. Host only (no compilation).

ARG_NAMES = (
    "steps",
    "order",
    "method",
    "algorithm_type",
    "skip_type",
    "final_sigmas_type",
    "t_start",
    "t_end",
    "euler_at_final",
)
CONTINUOUS_SKIPS = ("time_uniform", "logSNR", "time_quadratic", "karras", "exponential")
DISCRETE_SKIPS = CONTINUOUS_SKIPS + ("linspace", "leading", "trailing")


def _random_schedule(rng, kind):
    """(schedule, t_start, t_end) of the given kind with random parameters (None: defaults)."""
    if kind == "flow":
        sched = schedules.flow(shift=float(rng.uniform(0.3, 5.0)))
    elif kind == "edm":
        sched = schedules.edm(
            sigma_min=float(10 ** rng.uniform(-3.5, -1.0)),
            sigma_max=float(10 ** rng.uniform(0.5, 2.5)),
            sigma_data=float(rng.uniform(0.2, 1.0)),
        )
    elif kind == "ve":
        sched = schedules.ve(
            sigma_min=float(10 ** rng.uniform(-3.0, -1.0)),
            sigma_max=float(10 ** rng.uniform(0.5, 2.0)),
        )
    elif kind in ("discrete", "discrete_zsnr"):
        n = int(rng.choice([50, 200, 1000]))
        betas = np.linspace(rng.uniform(1e-5, 1e-3), rng.uniform(5e-3, 3e-2) * 1000 / n, n)
        sched = schedules.discrete(
            betas=np.minimum(betas, 0.999), rescale_zero_terminal_snr=kind == "discrete_zsnr"
        )
    else:  # vp_linear to t = 0 (sigma = 0)
        sched = schedules.vp_linear(
            beta_0=float(rng.uniform(0.05, 0.2)), beta_1=float(rng.uniform(10.0, 25.0))
        )
        return sched, None, 0.0
    t_start = None
    if rng.random() < 0.25:  # an interior start
        t_start = float(sched.T * rng.uniform(0.5, 1.0))
    t_end = float(sched.lowest_time) if rng.random() < 0.3 else None
    return sched, t_start, t_end


def _random_options(rng, sched):
    method = str(rng.choice(["multistep", "singlestep", "unipc", "sde"]))
    skips = DISCRETE_SKIPS if sched.is_discrete else CONTINUOUS_SKIPS
    opts = dict(
        steps=int(rng.integers(1, 31)),
        order=int(rng.integers(1, 4)),
        skip_type=str(rng.choice(skips)),
        final_sigmas_type=[None, "zero", "sigma_min"][int(rng.integers(0, 3))],
        method=method,
        algorithm_type="dpmsolver++",
    )
    if method == "sde":
        opts.update(method="multistep", algorithm_type="sde-dpmsolver++")
    elif rng.random() < 0.2:
        opts.update(algorithm_type="dpmsolver")
    if opts["method"] != "singlestep" and rng.random() < 0.2:
        opts.update(multistep3_variant="third_order")
    if rng.random() < 0.15:
        opts.update(euler_at_final=True)
    return opts


def _assert_grid_monotone(sched, t_start, t_end, opts, where=""):
    """The grid of a diffusers-style run (its nodes and final node) never steps back up in noise."""
    final, skip = opts.get("final_sigmas_type"), opts["skip_type"]
    if final is None and skip in ("linspace", "leading", "trailing"):
        final = "zero"
    if final is None and skip not in ("karras", "exponential"):
        return
    nodes = dpm_jax.grid_nodes(
        sched,
        skip,
        sched.T if t_start is None else t_start,
        sched.t_eps if t_end is None else t_end,
        opts["steps"],
        final,
    )
    lam = np.array([n.p.lam for n in nodes])
    assert np.all(np.diff(lam) >= 0), f"{where}: grid half log-SNR {lam}"


@pytest.mark.parametrize("seed", range(8))
def test_plans_finite_property(seed):
    rng = np.random.default_rng(1000 + seed)
    built = refused = 0
    for kind in ("flow", "edm", "ve", "discrete", "discrete_zsnr", "vp_linear"):
        for _ in range(3):
            sched, t_start, t_end = _random_schedule(rng, kind)
            for _ in range(6):
                opts = _random_options(rng, sched)
                where = f"{kind} {sched.T=} {t_start=} {t_end=} {opts}"
                try:
                    plan = dpm_jax.build_plan(sched, t_start=t_start, t_end=t_end, **opts)
                except (ValueError, TypeError) as e:
                    assert any(name in str(e) for name in ARG_NAMES), f"{where}: {e}"
                    refused += 1
                    continue
                built += 1
                assert plan.nfe == opts["steps"], where
                for field in ("t", "t_input", "alpha", "sigma", "x_coef", "m_coef", "noise_coef"):
                    arr = np.asarray(getattr(plan, field))
                    assert arr.dtype == np.float64, f"{where}: {field} {arr.dtype}"
                    assert np.all(np.isfinite(arr)), f"{where}: {field} {arr}"
                # the network is never called at the data (sigma = 0: EDM's c_noise = log sigma)
                assert np.all(plan.sigma > 0) and np.all(plan.alpha >= 0), where
                if np.any(plan.alpha == 0):
                    assert opts["algorithm_type"].endswith("++"), where
                if not plan.stochastic:
                    assert not np.any(plan.noise_coef), where
                _assert_grid_monotone(sched, t_start, t_end, opts, where)
    assert built >= 40 and refused >= 1, (built, refused)


def test_flow_ends_exact_for_any_shift():
    """alpha = 0 exactly at t = 1 and sigma = 0 at t = 0, for every shift. (sigma_t = shift t /
    (1 + (shift - 1) t) rounds to 1 + ulp at t = 1 for some shifts, e.g. 0.43148041372226237,
    where log(1 - sigma) is NaN; to 1 - ulp for others, e.g. 0.3, where alpha_T = 2e-16 and
    lambda_T = -36 is finite, so the closed-form first step and the alpha = 0 checks are
    skipped.)"""
    shifts = np.concatenate(
        [[0.43148041372226237, 0.3], np.random.default_rng(7).uniform(0.3, 5.0, 200)]
    )
    one, zero = np.float64(1.0), np.float64(0.0)
    for shift in shifts:
        s = schedules.flow(shift=float(shift))
        assert float(s.marginal_alpha(one)) == 0.0 and s.marginal_lambda(one) == -np.inf, shift
        assert abs(float(s.marginal_std(one)) - 1.0) < 1e-15, shift
        assert float(s.marginal_std(zero)) == 0.0 and s.marginal_lambda(zero) == np.inf, shift
    plan = dpm_jax.build_plan(schedules.flow(shift=0.43148041372226237), steps=12, order=1)
    assert plan.alpha[0] == 0.0
    assert np.all(np.isfinite(plan.x_coef)) and np.all(np.isfinite(plan.m_coef))


@pytest.mark.parametrize("skip_type, t_end", [("time_quadratic", 0.0), ("karras", 0.01)])
@pytest.mark.parametrize("algorithm_type", ["dpmsolver++", "sde-dpmsolver++"])
def test_sigma_min_final_node_below_t_end(skip_type, t_end, algorithm_type):
    """final_sigmas_type="sigma_min" appends the schedule's t_eps (here sigma = 0.1) after a grid
    that already ends below it (t_end): refuse, or never step back up in sigma (where the SDE's
    noise coefficient would be sqrt of a negative number)."""
    sched = schedules.edm(sigma_min=0.1, sigma_max=3.0)
    opts = dict(
        steps=26,
        order=1,
        skip_type=skip_type,
        final_sigmas_type="sigma_min",
        algorithm_type=algorithm_type,
    )
    try:
        plan = dpm_jax.build_plan(sched, t_end=t_end, **opts)
    except ValueError as e:
        assert any(name in str(e) for name in ARG_NAMES), e
        return
    assert np.all(np.isfinite(plan.x_coef)) and np.all(np.isfinite(plan.noise_coef))
    _assert_grid_monotone(sched, None, t_end, opts)


# ----------------------------------------------------------------------------------------------
# 4. Errors at alpha = 0 and infinite lambda.


def noise_net(x, t_input):
    return 0.1 * x


def test_noise_prediction_at_alpha_zero_is_refused():
    x = jnp.zeros((2, DIM))
    for sched in (FLOW1, ZSNR):
        noise_model = dpm_jax.model_wrapper(noise_net, sched)  # model_type="noise"
        with pytest.raises(ValueError, match="alpha = 0") as e:
            dpm_jax.sample(noise_model, x, sched, steps=5)
        assert "model_type" in str(e.value)
        score_model = dpm_jax.model_wrapper(noise_net, sched, model_type="score")
        with pytest.raises(ValueError, match="alpha = 0"):
            dpm_jax.sample(score_model, x, sched, steps=5, method="unipc")
    with pytest.raises(ValueError, match="alpha = 0"):  # a plain function is a noise prediction
        dpm_jax.sample(lambda x, t: 0.1 * x, x, FLOW1, steps=5)
    with pytest.raises(ValueError, match="alpha = 0"):
        dpm_jax.execute_plan(
            dpm_jax.model_wrapper(noise_net, FLOW1), x, dpm_jax.build_plan(FLOW1, steps=4)
        )


def test_noise_algorithm_from_alpha_zero_is_refused():
    for sched in (FLOW1, FLOW3, ZSNR):
        for method in ("multistep", "singlestep", "unipc"):
            with pytest.raises(ValueError, match="algorithm_type") as e:
                dpm_jax.build_plan(sched, steps=6, method=method, algorithm_type="dpmsolver")
            assert "alpha = 0" in str(e.value)
        with pytest.raises(ValueError, match="algorithm_type"):
            dpm_jax.sample(
                MODELS["flow1"][1], jnp.zeros((2, DIM)), FLOW1, steps=5, algorithm_type="dpmsolver"
            )
    with pytest.raises(ValueError, match="algorithm_type"):
        dpm_jax.build_plan(FLOW1, steps=6, algorithm_type="sde-dpmsolver")


@pytest.mark.parametrize(
    "sched, t_start, t_end",
    [
        (FLOW1, None, 0.05),  # starts at alpha = 0
        (FLOW3, 0.9, None),  # ends at sigma = 0
        (EDM, None, 0.0),  # ends at sigma = 0
        (ZSNR, None, None),  # starts at alpha = 0
        (schedules.vp_linear(), None, 0.0),
    ],
    ids=["flow-start", "flow-end", "edm-end", "zsnr-start", "vp-end"],
)
@pytest.mark.parametrize("method", ["multistep", "singlestep", "unipc"])
def test_logsnr_with_infinite_end_is_refused(sched, t_start, t_end, method):
    with pytest.raises(ValueError, match="skip_type"):
        dpm_jax.build_plan(
            sched, steps=6, method=method, skip_type="logSNR", t_start=t_start, t_end=t_end
        )
