"""Differentiable sampling (gradients, remat) and the progress bar from inside the loop."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dpm_jax
from dpm_jax import schedules, sharding
from dpm_jax.testing import problems

SCHED = schedules.discrete(betas=np.linspace(1e-4, 0.02, 1000))
BASE = problems.noise_net(problems.gmm_16d(seed=3, D=4), SCHED)
X = jnp.asarray(np.random.default_rng(0).normal(size=(3, 4)))


def _net(x, t, s, b):
    return BASE(x * s, t) + b


def _loss(params, x_T, method, remat=False):
    # parameters as array keyword arguments: traced leaves, so concrete calls hit the jit cache
    model = dpm_jax.model_wrapper(_net, SCHED, model_kwargs=dict(params))
    out = dpm_jax.sample(
        model,
        x_T,
        SCHED,
        steps=10,
        order=2 if method == "multistep" else 3,
        method=method,
        remat=remat,
    )
    return jnp.sum(out**2)


@pytest.mark.parametrize("method", ["multistep", "singlestep"])
def test_gradients_match_finite_differences(method):
    params = {"s": jnp.float64(1.0), "b": jnp.float64(0.01)}
    g_params, g_x = jax.grad(_loss, argnums=(0, 1))(params, X, method)
    eps = 1e-6
    for name in ("s", "b"):
        up, down = dict(params), dict(params)
        up[name], down[name] = params[name] + eps, params[name] - eps
        fd = (_loss(up, X, method) - _loss(down, X, method)) / (2 * eps)
        assert abs(float(g_params[name]) - float(fd)) <= 1e-5 * abs(float(fd)), (name, g_params, fd)
    e = jnp.zeros_like(X).at[1, 2].set(eps)
    fd_x = (_loss(params, X + e, method) - _loss(params, X - e, method)) / (2 * eps)
    assert abs(float(g_x[1, 2]) - float(fd_x)) <= 1e-5 * abs(float(fd_x))
    g_remat = jax.grad(_loss, argnums=(0, 1))(params, X, method, True)
    np.testing.assert_allclose(g_remat[1], g_x, rtol=1e-12, atol=1e-14)


def test_remat_halves_backward_memory_at_100_steps():
    x = jnp.ones((64, 4))
    model = dpm_jax.model_wrapper(BASE, SCHED)
    temp = {}
    for remat in (False, True):
        f = jax.jit(
            jax.grad(
                lambda x: jnp.sum(dpm_jax.sample(model, x, SCHED, steps=100, remat=remat) ** 2)
            )
        )
        temp[remat] = f.lower(x).compile().memory_analysis().temp_size_in_bytes
    assert temp[True] <= 0.5 * temp[False], temp


def test_progress_ticks_once_per_step(capfd):
    pytest.importorskip("tqdm")
    model = dpm_jax.model_wrapper(BASE, SCHED)
    dpm_jax.sample(model, X, SCHED, steps=7, progress=True).block_until_ready()
    jax.effects_barrier()
    err = capfd.readouterr().err
    assert "7/7" in err, err
    # the program without progress has no callback at all
    hlo = jax.jit(lambda x: dpm_jax.sample(model, x, SCHED, steps=7)).lower(X).as_text()
    assert "callback" not in hlo.lower()
    hlo_on = (
        jax.jit(lambda x: dpm_jax.sample(model, x, SCHED, steps=7, progress=True))
        .lower(X)
        .as_text()
    )
    assert "callback" in hlo_on.lower()


@pytest.mark.skipif(jax.device_count() < 8, reason="needs 8 devices (conftest.py)")
def test_progress_under_shard_map_counts_steps_once(capfd):
    pytest.importorskip("tqdm")
    model = dpm_jax.model_wrapper(BASE, SCHED)
    mesh = sharding.batch_mesh()
    x = sharding.shard_batch(jnp.ones((16, 4)), mesh)
    out = jax.jit(lambda x: sharding.sample_sharded(model, x, SCHED, mesh, steps=9, progress=True))(
        x
    )
    out.block_until_ready()
    jax.effects_barrier()
    err = capfd.readouterr().err
    assert "9/9" in err and "10/9" not in err and "18/" not in err, err
