"""The VE / EDM / flow / zero-terminal-SNR schedules: host and device agree, t(lambda)
inverts lambda(t), the ends have the documented infinite log-SNR, and the sigma
spacings are the published formulas."""

import jax.numpy as jnp
import numpy as np
import pytest

import dpm_jax
from dpm_jax import schedules

BETAS = np.linspace(1e-4, 0.02, 1000)
FAMILIES = {
    "ve": schedules.ve(0.01, 50.0),
    "edm": schedules.edm(0.002, 80.0, 0.5),
    "flow": schedules.flow(),
    "flow_shift3": schedules.flow(shift=3.0),
    "zsnr": schedules.discrete(betas=BETAS, rescale_zero_terminal_snr=True),
    "vp_linear": schedules.vp_linear(),
}


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_host_and_device_agree_and_inverse_lambda_inverts(name):
    s = FAMILIES[name]
    t = np.linspace(s.lowest_time, s.T, 41)[1:-1]
    for fn in (s.marginal_log_alpha, s.log_sigma, s.marginal_lambda, s.time_input):
        np.testing.assert_allclose(np.asarray(fn(jnp.asarray(t))), fn(t), rtol=1e-12, atol=1e-12)
    lam = s.marginal_lambda(t)
    assert np.all(np.diff(lam) < 0), "lambda must decrease with t"
    np.testing.assert_allclose(s.inverse_lambda(lam), t, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(
        np.asarray(s.inverse_lambda(jnp.asarray(lam))), t, rtol=1e-10, atol=1e-12
    )


def test_alpha_sigma_of_each_family():
    t = np.array([0.25, 0.5, 0.75])
    fl = FAMILIES["flow_shift3"]
    sig = 3 * t / (1 + 2 * t)
    np.testing.assert_allclose(fl.marginal_std(t), sig, rtol=1e-14)
    np.testing.assert_allclose(fl.marginal_alpha(t), 1 - sig, rtol=1e-14)
    np.testing.assert_allclose(fl.time_input(t), sig, rtol=1e-14)
    ve = FAMILIES["ve"]
    np.testing.assert_allclose(ve.marginal_std(t), 0.01 * 5000.0**t, rtol=1e-13)
    np.testing.assert_allclose(ve.marginal_alpha(t), 1.0)
    edm = FAMILIES["edm"]
    np.testing.assert_allclose(edm.marginal_std(t), t, rtol=1e-15)
    assert edm.sigma_data == 0.5


def test_infinite_lambda_at_the_ends():
    fl, z, edm, vp = (FAMILIES[k] for k in ("flow", "zsnr", "edm", "vp_linear"))
    assert (
        fl.marginal_lambda(np.float64(0.0)) == np.inf
        and fl.marginal_lambda(np.float64(1.0)) == -np.inf
    )
    assert (
        fl.inverse_lambda(np.float64(np.inf)) == 0.0
        and fl.inverse_lambda(np.float64(-np.inf)) == 1.0
    )
    assert (
        z.marginal_alpha(np.float64(1.0)) == 0.0 and z.marginal_lambda(np.float64(1.0)) == -np.inf
    )
    assert np.isfinite(z.marginal_lambda(np.float64(1.0 - 1e-4)))
    assert edm.marginal_lambda(np.float64(0.0)) == np.inf
    assert vp.marginal_lambda(np.float64(0.0)) == np.inf
    # the rescaled table keeps its first entry and ends at exactly 0 (Lin et al. 2023)
    abar = schedules.rescale_zero_terminal_snr(np.cumprod(1 - BETAS))
    assert abar[-1] == 0.0 and abs(abar[0] - (1 - BETAS[0])) < 1e-15
    t_arr, log_alphas = z.marginal_log_alpha.table
    np.testing.assert_allclose(np.exp(2 * log_alphas[:-1]), abar[:-1], rtol=1e-12)


def test_karras_grid_is_edm_eq5_and_ends_on_the_data():
    edm, n, rho = FAMILIES["edm"], 12, 7.0
    nodes = dpm_jax.grid_nodes(edm, "karras", 80.0, 0.002, n, "zero")
    i = np.arange(n)
    want = (80.0 ** (1 / rho) + i / (n - 1) * (0.002 ** (1 / rho) - 80.0 ** (1 / rho))) ** rho
    np.testing.assert_allclose([nd.p.sigma for nd in nodes[:-1]], want, rtol=1e-12)
    assert nodes[-1].p.sigma == 0.0 and nodes[-1].p.lam == np.inf
    # without a final node: steps + 1 points from t_start to t_end, both included
    nodes = dpm_jax.grid_nodes(edm, "exponential", 80.0, 0.002, n)
    np.testing.assert_allclose(
        [nd.p.sigma for nd in nodes], np.geomspace(80.0, 0.002, n + 1), rtol=1e-12
    )


def test_zero_terminal_snr_v_model_starts_exactly_at_pure_noise():
    """From alpha_T = 0 the first DDIM step is sigma_t x_T + alpha_t x0(x_T) with
    x0 = -v (alpha = 0, sigma = 1): checked against that closed form."""
    z = FAMILIES["zsnr"]
    v_net = lambda x, t: -0.3 * x
    model = dpm_jax.model_wrapper(v_net, z, model_type="v")
    x_T = jnp.linspace(-1.0, 1.0, 12).reshape(3, 4)
    plan = dpm_jax.build_plan(z, steps=5, order=2, skip_type="trailing")
    assert (
        plan.alpha[0] == 0.0
        and np.all(np.isfinite(plan.m_coef))
        and np.all(np.isfinite(plan.x_coef))
    )
    out, _ = dpm_jax.execute_plan(model, x_T, first_rows(plan, 1))
    nodes = dpm_jax.grid_nodes(z, "trailing", 1.0, z.t_eps, 5, "zero")
    s1, al1 = nodes[1].p.sigma, np.exp(nodes[1].p.log_alpha)
    np.testing.assert_allclose(
        np.asarray(out), s1 * np.asarray(x_T) + al1 * 0.3 * np.asarray(x_T), rtol=1e-12
    )


def first_rows(plan, n):
    """The first n rows of a plan (a plan is a pytree of arrays)."""
    import dataclasses

    return dataclasses.replace(
        plan,
        **{
            f: getattr(plan, f)[:n]
            for f in ("t", "t_input", "alpha", "sigma", "x_coef", "m_coef", "noise_coef")
        },
        intermediate_rows=np.arange(n, dtype=np.int32),
    )
