"""Stochastic solvers: SDE-DPM-Solver(++) with an explicit PRNG key."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dpm_jax
from dpm_jax import schedules
from dpm_jax._executor import _standard_normal
from dpm_jax.testing import problems

SCHED = schedules.discrete(betas=np.linspace(1e-4, 0.02, 1000))
MU, STD = np.array([1.0, -0.5]), 0.5
GAUSS = problems.make_gmm(MU[None], [STD], [1.0])  # data N(MU, STD^2 I): exact marginals
MODEL = dpm_jax.model_wrapper(problems.noise_net(GAUSS, SCHED), SCHED)


def test_sde_dpmsolver_pp_2m_matches_gaussian_moments():
    """20k samples at 50 steps (logSNR grid): mean and covariance within 4 standard errors."""
    n = 20_000
    x_T = jax.random.normal(jax.random.key(1), (n, 2))
    out = np.asarray(
        dpm_jax.sample(
            MODEL,
            x_T,
            SCHED,
            steps=50,
            order=2,
            skip_type="logSNR",
            algorithm_type="sde-dpmsolver++",
            key=jax.random.key(7),
        )
    )
    se_mean = STD / np.sqrt(n)
    se_var = STD**2 * np.sqrt(2.0 / (n - 1))
    se_cov = STD**2 / np.sqrt(n)
    cov = np.cov(out.T)
    z_mean = (out.mean(0) - MU) / se_mean
    z_var = (np.diag(cov) - STD**2) / se_var
    z_cov = cov[0, 1] / se_cov
    assert np.all(np.abs(z_mean) < 4) and np.all(np.abs(z_var) < 4) and abs(z_cov) < 4, (
        z_mean,
        z_var,
        z_cov,
    )


@pytest.mark.parametrize(
    "alg, order",
    [("sde-dpmsolver++", 1), ("sde-dpmsolver++", 3), ("sde-dpmsolver", 1), ("sde-dpmsolver", 2)],
)
def test_other_stochastic_solvers_converge_to_the_data(alg, order):
    """Each stochastic solver's variance error shrinks to sampling noise with more steps."""
    n = 4000
    x_T = jax.random.normal(jax.random.key(2), (n, 2))
    out = np.asarray(
        dpm_jax.sample(
            MODEL,
            x_T,
            SCHED,
            steps=200,
            order=order,
            skip_type="logSNR",
            algorithm_type=alg,
            key=jax.random.key(3),
        )
    )
    assert np.all(np.abs(out.mean(0) - MU) < 5 * STD / np.sqrt(n))
    assert np.all(np.abs(out.var(0) / STD**2 - 1) < 5 * np.sqrt(2.0 / n))


def test_same_key_same_result_different_key_different():
    x_T = jax.random.normal(jax.random.key(0), (6, 2))
    opts = dict(steps=10, order=2, algorithm_type="sde-dpmsolver++")
    a = dpm_jax.sample(MODEL, x_T, SCHED, key=jax.random.key(5), **opts)
    b = dpm_jax.sample(MODEL, x_T, SCHED, key=jax.random.key(5), **opts)
    c = dpm_jax.sample(MODEL, x_T, SCHED, key=jax.random.key(6), **opts)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert not np.allclose(a, c)
    d = dpm_jax.sample(MODEL, x_T, SCHED, key=jax.random.PRNGKey(5), **opts)  # raw keys work too
    assert d.shape == a.shape and np.all(np.isfinite(d))


def test_per_sample_keys_make_noise_independent_of_batch_split():
    x = jnp.zeros((8, 2))
    keys = jax.random.split(jax.random.key(9), 8)
    for i in (0, 3, 17):
        whole = _standard_normal(keys, jnp.uint32(i), x)
        halves = jnp.concatenate(
            [
                _standard_normal(keys[:4], jnp.uint32(i), x[:4]),
                _standard_normal(keys[4:], jnp.uint32(i), x[4:]),
            ]
        )
        np.testing.assert_array_equal(np.asarray(whole), np.asarray(halves))
    x_T = jax.random.normal(jax.random.key(0), (8, 2))
    opts = dict(steps=10, order=2, algorithm_type="sde-dpmsolver++")
    whole = dpm_jax.sample(MODEL, x_T, SCHED, key=keys, **opts)
    split = jnp.concatenate(
        [
            dpm_jax.sample(MODEL, x_T[:4], SCHED, key=keys[:4], **opts),
            dpm_jax.sample(MODEL, x_T[4:], SCHED, key=keys[4:], **opts),
        ]
    )
    np.testing.assert_allclose(np.asarray(split), np.asarray(whole), rtol=1e-13, atol=1e-13)


def test_stochastic_errors():
    x_T = jnp.zeros((4, 2))
    with pytest.raises(ValueError, match="key"):
        dpm_jax.sample(MODEL, x_T, SCHED, algorithm_type="sde-dpmsolver++")
    with pytest.raises(ValueError, match="key"):
        dpm_jax.sample(
            MODEL,
            x_T,
            SCHED,
            algorithm_type="sde-dpmsolver++",
            key=jax.random.split(jax.random.key(0), 3),
        )
    with pytest.raises(ValueError, match="multistep"):
        dpm_jax.sample(
            MODEL,
            x_T,
            SCHED,
            algorithm_type="sde-dpmsolver++",
            method="singlestep",
            key=jax.random.key(0),
        )
    with pytest.raises(ValueError, match="order"):
        dpm_jax.sample(
            MODEL, x_T, SCHED, algorithm_type="sde-dpmsolver", order=3, key=jax.random.key(0)
        )


def test_first_order_sde_dpmsolver_pp_is_ddpm_ancestral_step():
    """SDE-DPM-Solver++-1 equals DDPM's posterior (ancestral, eta = 1) step q(x_t | x_s, x0)."""
    s, t = 0.7, 0.4
    x_s = jax.random.normal(jax.random.key(3), (5, 2))
    key = jax.random.key(11)
    out = dpm_jax.sample(
        MODEL,
        x_s,
        SCHED,
        steps=1,
        order=1,
        algorithm_type="sde-dpmsolver++",
        t_start=s,
        t_end=t,
        key=key,
    )
    a_s, a_t = SCHED.marginal_alpha(s), SCHED.marginal_alpha(t)
    sig_s, sig_t = SCHED.marginal_std(s), SCHED.marginal_std(t)
    eps = MODEL(x_s, s)
    x0 = (x_s - sig_s * eps) / a_s
    a_st = a_s / a_t  # alpha_{s|t}
    var_st = sig_s**2 - a_st**2 * sig_t**2  # sigma^2_{s|t}
    mean = a_t * var_st / sig_s**2 * x0 + a_st * sig_t**2 / sig_s**2 * x_s
    std = np.sqrt(sig_t**2 * var_st / sig_s**2)
    z = _standard_normal(key, jnp.uint32(0), x_s)
    np.testing.assert_allclose(np.asarray(out), np.asarray(mean + std * z), rtol=1e-11, atol=1e-12)
