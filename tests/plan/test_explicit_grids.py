"""Explicit time grids: ``timesteps=`` (times t) and ``sigmas=`` (sigma_t / alpha_t).

Given the nodes of a built-in spacing, a run on the explicit grid equals the
run on that spacing (float64, <= 1e-10, same NFE), for every method family; a
new grid of the same length does not recompile; inversion takes increasing grids.
The bad inputs are in ``tests/api/test_errors.py``.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest
from counting import compiles
from exact_models import start, x0_model

import dpm_jax
from dpm_jax import schedules

SCHEDULES = {
    "discrete": schedules.discrete(betas=np.linspace(1e-4, 0.02, 1000)),
    "vp_linear": schedules.vp_linear(),
    "edm": schedules.edm(),
    "ve": schedules.ve(0.01, 50.0),
    "flow3": schedules.flow(shift=3.0),
}
MODELS = {k: x0_model(s) for k, s in SCHEDULES.items()}
KEY = jax.random.key(7)


def _nodes(sched, steps, **grid):
    kw = {k: grid[k] for k in ("final_sigmas_type", "karras_rho", "steps_offset") if k in grid}
    t0 = grid.get("t_start", sched.T)
    t1 = grid.get("t_end", sched.t_eps)
    return dpm_jax.grid_nodes(sched, grid.get("skip_type", "time_uniform"), t0, t1, steps, **kw)


def _grid(nodes, kind):
    if kind == "timesteps":
        return {"timesteps": np.array([n.t for n in nodes])}
    return {"sigmas": np.array([0.0 if n.p.sigma == 0 else np.exp(-n.p.lam) for n in nodes])}


def _compare(name, steps, opts, grid, kind, explicit_extra=None):
    sched, model = SCHEDULES[name], MODELS[name]
    key = KEY if str(opts.get("algorithm_type", "")).startswith("sde") else None
    x = start(sched, 6, t=grid.get("t_start"))
    ref, info = dpm_jax.sample(
        model, x, sched, steps=steps, return_info=True, key=key, **grid, **opts
    )
    nodes = _nodes(sched, steps, **grid)
    out, info2 = dpm_jax.sample(
        model,
        x,
        sched,
        return_info=True,
        key=key,
        **_grid(nodes, kind),
        **opts,
        **(explicit_extra or {}),
    )
    assert info2.nfe == info.nfe
    np.testing.assert_allclose(np.asarray(out), np.asarray(ref), rtol=0, atol=1e-10)
    return info.nfe


REFERENCE_CASES = (
    [(m, o) for m in ("multistep", "unipc") for o in (1, 2, 3)]
    + [("singlestep_fixed", o) for o in (1, 2, 3)]
    + [("singlestep", 1), ("singlestep", 2)]
)


@pytest.mark.parametrize("kind", ["timesteps", "sigmas"])
@pytest.mark.parametrize("skip_type", ["time_uniform", "logSNR", "time_quadratic"])
@pytest.mark.parametrize("name", ["discrete", "vp_linear", "edm"])
def test_reference_spacings(name, skip_type, kind):
    """multistep / UniPC orders 1-3 on all three spacings; singlestep methods on logSNR,
    whose inner points are uniform in lambda like an explicit grid's."""
    for method, order in REFERENCE_CASES:
        if method.startswith("singlestep") and skip_type != "logSNR":
            continue
        steps = 12 if method != "singlestep_fixed" else 4 * order
        opts = dict(method=method, order=order, skip_type=skip_type)
        sched = SCHEDULES[name]
        if method.startswith("singlestep"):  # explicit entries are the outer boundaries
            k = steps // order
            grid = dict(skip_type=skip_type)
            x = start(sched, 6)
            ref, info = dpm_jax.sample(
                MODELS[name],
                x,
                sched,
                steps=steps,
                return_info=True,
                method=method,
                order=order,
                skip_type=skip_type,
            )
            nodes = _nodes(sched, k, **grid)
            out, info2 = dpm_jax.sample(
                MODELS[name],
                x,
                sched,
                return_info=True,
                method=method,
                order=order,
                **_grid(nodes, kind),
            )
            assert info2.nfe == info.nfe == steps
            np.testing.assert_allclose(np.asarray(out), np.asarray(ref), rtol=0, atol=1e-10)
            continue
        opts.pop("skip_type")
        assert _compare(name, steps, opts, dict(skip_type=skip_type), kind) == steps


@pytest.mark.parametrize(
    "variant", ["multistep3_variant", "solver_type", "unipc_variant", "sde", "denoise"]
)
def test_other_options_carry_over(variant):
    opts = {
        "multistep3_variant": dict(order=3, multistep3_variant="third_order"),
        "solver_type": dict(order=2, solver_type="taylor", method="multistep"),
        "unipc_variant": dict(order=2, method="unipc", unipc_variant="bh1"),
        "sde": dict(order=2, algorithm_type="sde-dpmsolver++"),
        "denoise": dict(order=2, algorithm_type="dpmsolver", denoise_to_zero=True),
    }[variant]
    nfe = _compare("vp_linear", 10, opts, dict(skip_type="logSNR"), "timesteps")
    assert nfe == 10 + (variant == "denoise")


@pytest.mark.parametrize("kind", ["timesteps", "sigmas"])
@pytest.mark.parametrize("method", ["multistep", "unipc"])
def test_diffusers_spacings_where_the_order_rules_agree(method, kind):
    """karras / exponential grids: with order 2 the reference's and diffusers' order rules
    give the same orders (first order into sigma = 0), except that diffusers' UniPC always
    lowers the last step (explicit grids follow the reference: from 10 steps on it keeps
    order 2), so that case compares with lower_order_final=False."""
    for name, skip, final, t_end in (
        ("edm", "karras", "zero", None),
        ("ve", "exponential", "zero", None),
        ("vp_linear", "karras", "sigma_min", 0.01),
    ):
        if kind == "timesteps" and final == "zero" and name == "ve":
            continue  # the data (sigma = 0) is not a time of the VE schedule
        for steps in (6, 16):
            grid = dict(skip_type=skip, final_sigmas_type=final)
            if t_end is not None:  # (at t_end = t_eps its last step has zero length)
                grid["t_end"] = t_end
            opts = dict(method=method, order=2)
            if method == "unipc" and final == "sigma_min" and steps >= 10:
                opts["lower_order_final"] = False
            _compare(name, steps, opts, grid, kind)


def test_discrete_spacing_as_sigmas():
    """diffusers' trailing grid of a discrete table, ending on the data, as sigmas."""
    grid = dict(skip_type="trailing", final_sigmas_type="zero")
    assert _compare("discrete", 10, dict(order=2), grid, "sigmas") == 10


def test_flow_from_pure_noise():
    """A flow grid from t = 1 (alpha = 0) to t = 0 (sigma = 0) as timesteps: both ends exact."""
    for method in ("multistep", "unipc", "singlestep"):
        opts = dict(method=method, order=2)
        if method == "singlestep":
            sched = SCHEDULES["flow3"]
            ts = np.linspace(1.0, 0.0, 7)
            out, info = dpm_jax.sample(
                MODELS["flow3"], start(sched, 4), sched, timesteps=ts, return_info=True, **opts
            )
            assert info.nfe == 2 * 6 - 2  # the steps at alpha = 0 and sigma = 0 are first order
            assert np.all(np.isfinite(np.asarray(out)))
            continue
        assert _compare("flow3", 8, opts, {}, "timesteps") == 8


def test_new_grid_of_the_same_length_does_not_recompile():
    calls = []
    sched = SCHEDULES["vp_linear"]
    base = MODELS["vp_linear"].net

    def net(x, t_input):
        calls.append(1)
        return base(x, t_input)

    model = dpm_jax.model_wrapper(net, sched, model_type="x_start")
    x = start(sched, 4)
    a = dpm_jax.sample(model, x, sched, timesteps=np.linspace(1.0, 1e-3, 8))
    with compiles() as compiled:
        b = dpm_jax.sample(model, x, sched, timesteps=np.geomspace(1.0, 1e-3, 8))
        c = dpm_jax.sample(model, x, sched, sigmas=np.geomspace(100.0, 0.01, 8))
    # the network closes over arrays (the mixture's means): traced at each eager call, which
    # reads them as they are then, and compiled once
    assert len(calls) == 3 and len(compiled) == 0
    assert not np.allclose(a, b) and not np.allclose(b, c)


def test_jit_over_the_model_with_an_explicit_grid():
    sched = SCHEDULES["edm"]
    sig = np.array([80.0, 20.0, 5.0, 1.0, 0.3, 0.05, 0.0])

    @jax.jit
    def run(x):
        return dpm_jax.sample(MODELS["edm"], x, sched, sigmas=sig, order=2)

    x = start(sched, 4)
    np.testing.assert_allclose(
        run(x), dpm_jax.sample(MODELS["edm"], x, sched, sigmas=sig, order=2), rtol=1e-12, atol=1e-12
    )


@pytest.mark.parametrize("kind", ["timesteps", "sigmas"])
def test_inverse_with_an_increasing_grid(kind):
    sched, model = SCHEDULES["vp_linear"], MODELS["vp_linear"]
    x0 = start(sched, 5, t=1e-3)
    nodes = _nodes(sched, 10, skip_type="logSNR", t_start=1e-3, t_end=1.0)
    ref = dpm_jax.inverse(model, x0, sched, steps=10, skip_type="logSNR")
    out = dpm_jax.inverse(model, x0, sched, **_grid(nodes, kind))
    np.testing.assert_allclose(np.asarray(out), np.asarray(ref), rtol=0, atol=1e-10)


def test_build_plan_takes_either_direction():
    sched = SCHEDULES["vp_linear"]
    down = dpm_jax.build_plan(sched, timesteps=[1.0, 0.5, 0.1])
    up = dpm_jax.build_plan(sched, timesteps=[0.1, 0.5, 1.0])
    assert down.nfe == up.nfe == 2
    np.testing.assert_array_equal(down.t, [1.0, 0.5])
    np.testing.assert_array_equal(up.t, [0.1, 0.5])


def test_published_align_your_steps_sigmas_on_stable_diffusion():
    """diffusers' AysSchedules["StableDiffusionSigmas"] (10 steps, ending at 0) on the SD 1.x
    table: its first entry 14.615 is the table's sigma_max 14.6146 rounded up (clipped)."""
    betas = np.linspace(0.00085**0.5, 0.012**0.5, 1000) ** 2
    sched = schedules.discrete(betas=betas, lambda_clip=None)
    ays = [14.615, 6.475, 3.861, 2.697, 1.886, 1.396, 0.963, 0.652, 0.399, 0.152, 0.0]
    plan = dpm_jax.build_plan(sched, sigmas=ays, order=2)
    assert plan.nfe == 10
    np.testing.assert_allclose(plan.sigma / plan.alpha, ays[:-1], rtol=3e-4)
    assert plan.t[0] == sched.T
    out = dpm_jax.sample(x0_model(sched), start(sched, 3), sched, sigmas=ays)
    assert np.all(np.isfinite(np.asarray(out)))
