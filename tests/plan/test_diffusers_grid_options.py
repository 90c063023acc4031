"""The grid options that reproduce diffusers' schedulers: ``spacing_rule``, ``begin_index``,
``skip_type="lu"``, ``final_sigmas_type="sigma_max"``, the table-index time input, and the
named x0 correctors. (Against diffusers itself: tests/golden/test_diffusers_suite.py.)"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

import dpm_jax
from dpm_jax import schedules
from dpm_jax._corrections import dynamic_thresholding_diffusers, static_thresholding
from dpm_jax.plan.grids import grid_landings
from dpm_jax.plan.orders import DIFFUSERS

BETAS = np.linspace(1e-4, 0.02, 1000)
SCHED = schedules.discrete(betas=BETAS, lambda_clip=None)


def _sigma_hat(plan):
    return plan.sigma / plan.alpha


def test_ddim_leading_grid_and_final_alpha():
    """DDIM: multiples of N // steps, the last call at timestep 0, then alpha = 1 ("zero")
    or alphas_cumprod[0] ("sigma_min": a zero-length last step)."""
    kw = dict(steps=10, order=1, skip_type="leading", spacing_rule="ddim")
    plan = dpm_jax.build_plan(SCHED, final_sigmas_type="zero", **kw)
    np.testing.assert_array_equal(plan.t_input, np.arange(900, -1, -100))
    # last row: from timestep 0 to the data, x0 = the data prediction itself
    assert plan.x_coef[-1] == 0.0 and plan.m_coef[-1, 0] == 1.0
    plan = dpm_jax.build_plan(SCHED, final_sigmas_type="sigma_min", **kw)
    assert plan.x_coef[-1] == 1.0 and plan.m_coef[-1, 0] == 0.0  # zero length
    # DPMSolverMultistep's leading grid is another one: multiples of N // (steps + 1)
    ms = dpm_jax.build_plan(SCHED, steps=10, order=1, skip_type="leading")
    np.testing.assert_array_equal(ms.t_input, np.arange(900, 0, -90))


def test_ddim_linspace_lands_off_the_next_timestep():
    """DDIM's linspace (999, 888, ...) steps to t - N // steps (999 -> 899), and its next
    step starts at 888: each row is the DDIM step from its model node to its landing."""
    kw = dict(steps=10, order=1, skip_type="linspace", spacing_rule="ddim")
    plan = dpm_jax.build_plan(SCHED, final_sigmas_type="zero", **kw)
    ks = np.linspace(0, 999, 10).round()[::-1]
    np.testing.assert_array_equal(plan.t_input, ks)
    lands = grid_landings(SCHED, "linspace", 10, "zero", 0, "ddim")
    assert lands is not None and [n.t_input for n in lands[:-1]] == list(ks[:-1] - 100)
    log_a = 0.5 * np.cumsum(np.log1p(-BETAS))
    sig = np.sqrt(-np.expm1(2 * log_a))
    for i, k in enumerate(ks[:-1].astype(int)):  # DDIM (data form): x' = s_p / s_t x + ...
        assert np.isclose(plan.x_coef[i], sig[k - 100] / sig[k], rtol=1e-12)
    # leading is a chain: no landings
    assert grid_landings(SCHED, "leading", 10, "zero", 0, "ddim") is None


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(order=2), "order"),
        (dict(method="unipc"), "spacing_rule"),
        (dict(algorithm_type="sde-dpmsolver++"), "deterministic"),
    ],
)
def test_ddim_landings_need_ddim(kw, match):
    with pytest.raises(ValueError, match=match):
        dpm_jax.build_plan(
            SCHED,
            steps=10,
            skip_type="linspace",
            spacing_rule="ddim",
            final_sigmas_type="zero",
            **{"order": 1, **kw},
        )


def test_euler_linspace_interpolates_sigma_in_the_index():
    """Euler / Heun: fractional timesteps linspace(0, N - 1, steps) with sigma / alpha
    interpolated linearly in the table index (diffusers' np.interp)."""
    plan = dpm_jax.build_plan(SCHED, steps=7, order=1, skip_type="linspace", spacing_rule="euler")
    u = np.linspace(0, 999, 7)[::-1]
    np.testing.assert_allclose(plan.t_input, u, rtol=0, atol=1e-12)
    abar = np.cumprod(1 - BETAS)
    want = np.interp(u, np.arange(1000), np.sqrt((1 - abar) / abar))
    np.testing.assert_allclose(_sigma_hat(plan), want, rtol=1e-12)
    assert np.any(u != np.round(u))  # (fractional indeed)


def test_lu_is_exponential_with_rounded_timesteps():
    lu = dpm_jax.build_plan(SCHED, steps=10, skip_type="lu")
    ex = dpm_jax.build_plan(SCHED, steps=10, skip_type="exponential")
    np.testing.assert_array_equal(lu.x_coef, ex.x_coef)  # same nodes
    assert np.array_equal(lu.t_input, np.round(lu.t_input))
    assert np.any(lu.t_input != ex.t_input)  # rounded, not truncated
    vp = schedules.vp_linear()  # continuous: the same as exponential
    a = dpm_jax.build_plan(vp, steps=6, skip_type="lu", t_end=1e-3)
    b = dpm_jax.build_plan(vp, steps=6, skip_type="exponential", t_end=1e-3)
    np.testing.assert_array_equal(a.t, b.t)


def test_begin_index_restarts_inside_the_grid():
    """begin_index b: the nodes of the steps-grid from b, the full run's orders with the
    warm-up starting again."""
    full = dpm_jax.build_plan(SCHED, steps=10, order=3, skip_type="linspace")
    part = dpm_jax.build_plan(SCHED, steps=10, order=3, skip_type="linspace", begin_index=4)
    assert part.nfe == 6
    np.testing.assert_array_equal(part.t_input, full.t_input[4:])
    assert DIFFUSERS.restarted(4).multistep(6, 3, True) == [1, 2, 3, 3, 2, 1]
    assert DIFFUSERS.multistep(10, 3, True)[4:] == [3, 3, 3, 3, 2, 1]
    # the first row is a first-order step (no history), as a fresh diffusers scheduler
    assert np.count_nonzero(part.m_coef[0]) == 1 and np.count_nonzero(full.m_coef[4]) == 3
    single = dpm_jax.build_plan(
        SCHED, steps=10, method="singlestep", skip_type="karras", begin_index=3
    )
    assert single.nfe == 7


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(skip_type="linspace", begin_index=10), "begin_index"),
        (dict(skip_type="time_uniform", begin_index=2), "begin_index"),
        (dict(steps=None, sigmas=[10.0, 1.0, 0.0], begin_index=1), "begin_index"),
        (dict(skip_type="linspace", begin_index=-1), "begin_index"),
        (dict(skip_type="time_uniform", spacing_rule="ddim"), "spacing_rule"),
        (dict(skip_type="linspace", spacing_rule="pndm"), "spacing_rule"),
        (dict(skip_type="linspace", final_sigmas_type="sigma_max"), "dpm_jax.inverse"),
        (dict(skip_type="time_uniform", final_sigmas_type="sigma_max"), "sigma_max"),
    ],
)
def test_bad_grid_options_name_the_option(kw, match):
    with pytest.raises(ValueError, match=match):
        dpm_jax.build_plan(SCHED, **{"steps": 10, **kw})


def test_inverse_on_the_inverse_schedulers_grid():
    """final_sigmas_type="sigma_max": timesteps ascending from 0, then the noisiest entry."""
    x = jnp.ones((2, 3))
    model = dpm_jax.model_wrapper(lambda x, t: 0.1 * x, SCHED)
    _, info = dpm_jax.inverse(
        model,
        x,
        SCHED,
        steps=10,
        skip_type="linspace",
        final_sigmas_type="sigma_max",
        return_info=True,
    )
    assert info.nfe == 10
    opts = dpm_jax.SolverOptions(steps=10, skip_type="linspace", final_sigmas_type="sigma_max")
    from dpm_jax.plan.build import plan_run

    plan = plan_run(SCHED, opts, "up")
    np.testing.assert_array_equal(plan.t_input, np.linspace(0, 999, 11).round()[:-1])
    with pytest.raises(ValueError, match="sigma_max"):
        dpm_jax.inverse(model, x, SCHED, steps=10, skip_type="linspace")


def test_table_index_time_input():
    """time_input="index": the network gets the table index for any N (diffusers' timestep);
    for N = 1000 it is the reference's convention, the same schedule."""
    b = np.linspace(1e-4, 0.02, 1100)
    ref = schedules.discrete(betas=b, lambda_clip=None)
    idx = schedules.discrete(betas=b, lambda_clip=None, time_input="index")
    assert ref != idx and idx.input_scale == 1100.0 and ref.input_scale == 1000.0
    plan = dpm_jax.build_plan(idx, steps=10, skip_type="linspace")
    assert plan.t_input[0] == 1099.0
    t_ref = dpm_jax.build_plan(ref, steps=10, skip_type="linspace").t_input[0]
    assert np.isclose(t_ref, 1099.0 * 1000 / 1100, rtol=1e-15)  # the 999.09
    one = schedules.discrete(betas=BETAS, time_input="index")
    assert one == schedules.discrete(betas=BETAS) and one.time_input_fn is None
    with pytest.raises(ValueError, match="time_input"):
        schedules.discrete(betas=BETAS, time_input="indices")


def test_named_correctors():
    x0 = jnp.array([[0.2, -3.0, 0.5, 1.5], [0.1, 0.2, -0.3, 0.05]])
    # diffusers: s = min(max(quantile, 1), max_val), x0 = clip(x0, -s, s) / s
    for max_val in (0.5, 2.0):
        q = np.quantile(np.abs(np.asarray(x0)), 0.9, axis=1)
        s = np.minimum(np.maximum(q, 1.0), max_val)[:, None]
        want = np.clip(np.asarray(x0), -s, s) / s
        got = dynamic_thresholding_diffusers(x0, 0.0, max_val, 0.9)
        np.testing.assert_allclose(got, want, rtol=1e-12)
    ref = dpm_jax.dynamic_thresholding(x0, 0.0, 0.5, 0.9)  # divides by max(q, 0.5)
    assert not np.allclose(ref, dynamic_thresholding_diffusers(x0, 0.0, 0.5, 0.9))
    np.testing.assert_array_equal(static_thresholding(x0, 0.0, 1.0), np.clip(x0, -1.0, 1.0))
    for bad, match in (
        (dict(correcting_x0_fn="clip"), "correcting_x0_fn"),
        (
            dict(correcting_x0_fn="static_thresholding", dynamic_thresholding_ratio=0.9),
            "dynamic_thresholding_ratio",
        ),
        (dict(correcting_x0_fn="static_thresholding", thresholding_max_val=-1.0), "max_val"),
    ):
        with pytest.raises(ValueError, match=match):
            dpm_jax.SolverOptions(**bad)
