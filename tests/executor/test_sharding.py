"""Data-parallel sampling over 8 (virtual CPU) devices: same numbers, no communication."""

from __future__ import annotations

import re

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from counting import compiles

import dpm_jax
from dpm_jax import schedules, sharding
from dpm_jax.testing import problems

SCHED = schedules.discrete(betas=np.linspace(1e-4, 0.02, 1000))
GMM = problems.gmm_16d(seed=3, D=4)
NET = problems.noise_net(GMM, SCHED)
X = jnp.asarray(np.random.default_rng(0).normal(size=(16, 4)))
LABELS = jnp.arange(16) % 3
COLLECTIVES = ("all-gather", "all-reduce", "collective-permute", "all-to-all", "reduce-scatter")

pytestmark = pytest.mark.skipif(jax.device_count() < 8, reason="needs 8 devices (see conftest.py)")


def cond_net(x, t_input, cond):
    return NET(x, t_input) * (1.0 + 0.05 * cond[:, None])


def guided(scale=3.0):
    return dpm_jax.model_wrapper(
        cond_net,
        SCHED,
        guidance_type="classifier-free",
        condition=LABELS,
        unconditional_condition=jnp.zeros_like(LABELS),
        guidance_scale=scale,
    )


PLAIN = dpm_jax.model_wrapper(NET, SCHED)
CASES = {
    "multistep": (PLAIN, dict(steps=10, order=2, method="multistep")),
    "singlestep": (PLAIN, dict(steps=10, order=3, method="singlestep")),
    "adaptive-batch": (PLAIN, dict(order=2, method="adaptive")),
    "adaptive-per-sample": (PLAIN, dict(order=3, method="adaptive", error_norm="per_sample")),
    "guided": (guided(), dict(steps=8, order=2, method="multistep")),
}


@pytest.fixture(scope="module")
def mesh():
    return sharding.batch_mesh()


def _collectives(hlo: str):
    return sorted({c for c in COLLECTIVES if re.search(rf"\b{c}(-start)?\(", hlo)})


@pytest.mark.parametrize("case", list(CASES))
def test_jit_with_sharded_input_matches_one_device(mesh, case):
    model, opts = CASES[case]
    ref, info = dpm_jax.sample(model, X, SCHED, return_info=True, **opts)
    xs = sharding.shard_batch(X, mesh)
    if case == "guided":  # conditions placed like the batch
        model = guided()
        model = dpm_jax.model_wrapper(
            cond_net,
            SCHED,
            guidance_type="classifier-free",
            condition=sharding.shard_batch(LABELS, mesh),
            unconditional_condition=sharding.shard_batch(jnp.zeros_like(LABELS), mesh),
            guidance_scale=3.0,
        )
    fn = jax.jit(lambda m, x: dpm_jax.sample(m, x, SCHED, return_info=True, **opts))
    out, info_s = fn(model, xs)
    if case == "guided":
        # The doubled guidance batch [x, x] is concatenated across shards, so XLA
        # partitions and fuses the guidance combination differently: 1-ulp
        # differences (8.9e-16 measured). sample_sharded doubles locally and is bitwise.
        chex.assert_trees_all_close((out, info_s.nfe), (ref, info.nfe), rtol=0, atol=1e-12)
    else:
        chex.assert_trees_all_equal((out, info_s.nfe), (ref, info.nfe))  # bitwise on CPU
    assert len(out.sharding.device_set) == 8 and out.sharding.is_equivalent_to(xs.sharding, 2)
    hlo = fn.lower(model, xs).compile().as_text()
    if case in ("multistep", "singlestep"):
        assert _collectives(hlo) == [], "fixed-grid sampling must not communicate"
    if case == "adaptive-batch":  # the batch-coupled error norm: one reduction per attempt
        assert "all-reduce" in _collectives(hlo)


@pytest.mark.parametrize("case", list(CASES))
def test_shard_map_matches_one_device(mesh, case):
    model, opts = CASES[case]
    ref, info = dpm_jax.sample(model, X, SCHED, return_info=True, **opts)
    fn = jax.jit(lambda m, x: sharding.sample_sharded(m, x, SCHED, mesh, return_info=True, **opts))
    xs = sharding.shard_batch(X, mesh)
    out, info_s = fn(model, xs)
    np.testing.assert_array_equal(np.asarray(out), np.asarray(ref))
    if case == "adaptive-batch":
        assert np.all(np.asarray(info_s.nfe) == int(info.nfe))  # one value per device, all equal
    else:
        np.testing.assert_array_equal(np.asarray(info_s.nfe), np.asarray(info.nfe))
    assert len(out.sharding.device_set) == 8
    found = _collectives(fn.lower(model, xs).compile().as_text())
    if case == "adaptive-batch":
        assert found == ["all-reduce"], found  # the pmax of the error, nothing else
    else:
        assert found == [], f"{case}: shard_map sampling must not communicate, found {found}"


def test_pmap_still_works():
    if not hasattr(jax, "pmap"):
        pytest.skip("this jax has no pmap")
    out = jax.pmap(lambda x: dpm_jax.sample(PLAIN, x, SCHED, steps=6))(X.reshape(8, 2, 4))
    ref = dpm_jax.sample(PLAIN, X, SCHED, steps=6)
    np.testing.assert_allclose(np.asarray(out).reshape(16, 4), ref, rtol=1e-12, atol=1e-12)


def test_shard_batch_rejects_indivisible_batch(mesh):
    with pytest.raises(ValueError, match="multiple"):
        sharding.shard_batch(jnp.zeros((6, 4)), mesh)
    with pytest.raises(ValueError, match="axis_name"):
        sharding.shard_batch(jnp.zeros((8, 4)), mesh, axis_name="data")


def test_bfloat16_model_float32_state():
    """The network in bfloat16, the solver in float32: close to all-float32, state stays float32."""
    x32 = X.astype(jnp.float32)
    ref = dpm_jax.sample(PLAIN, x32, SCHED, steps=10)
    calls = []

    def net16(x, t):  # a network whose activations and output are bfloat16
        calls.append(x.dtype)
        return NET(x.astype(jnp.float32), t).astype(x.dtype)

    low = dpm_jax.model_wrapper(net16, SCHED, model_dtype=jnp.bfloat16)
    out, info = dpm_jax.sample(
        low, x32, SCHED, steps=10, return_info=True, return_intermediate=True
    )
    assert calls == [jnp.bfloat16] and out.dtype == jnp.float32
    assert info.intermediates.dtype == jnp.float32
    rms = float(jnp.sqrt(jnp.mean((out - ref) ** 2)))
    worst = float(jnp.max(jnp.abs(out - ref)))
    # bfloat16 has an 8-bit mantissa (relative rounding 2^-9 ~ 2e-3) and the data are O(1);
    # documented tolerance (README): RMS <= 2e-2, max <= 0.2 (measured on 256 samples:
    # RMS 7.4e-3, max 8.1e-2).
    assert 0.0 < rms <= 2e-2 and worst <= 0.2, (rms, worst)


# ----------------------------------------------------------------------- stochastic, conditioned

SDE = dict(steps=8, order=2, algorithm_type="sde-dpmsolver++")


def _cond_kw_net(x, t_input, cond, scale):
    """A conditioned network with a per-sample keyword array ``scale`` (B, D)."""
    return NET(x, t_input) * (1.0 + 0.05 * cond[:, None]) * scale


def _cond_kw_model(labels, scale):
    return dpm_jax.model_wrapper(
        _cond_kw_net,
        SCHED,
        guidance_type="classifier-free",
        condition=labels,
        unconditional_condition=jnp.zeros_like(labels),
        guidance_scale=2.0,
        model_kwargs={"scale": scale},
    )


def test_sde_with_one_key_gives_every_sample_its_own_noise(mesh):
    same = jnp.zeros((16, 4)) + X[:1]  # 16 identical starts
    key = jax.random.key(3)
    out = sharding.sample_sharded(PLAIN, same, SCHED, mesh, key=key, **SDE)
    assert len(np.unique(np.asarray(out).round(12), axis=0)) == 16
    ref = dpm_jax.sample(PLAIN, same, SCHED, key=key, **SDE)  # one device, the same key
    np.testing.assert_allclose(np.asarray(out), np.asarray(ref), rtol=1e-12, atol=1e-12)
    four = sharding.batch_mesh(jax.devices()[:4])  # the noise does not depend on the devices
    out4 = sharding.sample_sharded(PLAIN, same, SCHED, four, key=key, **SDE)
    np.testing.assert_allclose(np.asarray(out4), np.asarray(out), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("method", ["multistep-sde", "sde-dpmsolver", "unipc", "adaptive"])
def test_per_sample_keys_conditions_and_kwargs_are_sharded(mesh, method):
    opts = {
        "multistep-sde": SDE,
        "sde-dpmsolver": dict(steps=8, order=2, algorithm_type="sde-dpmsolver"),
        "unipc": dict(steps=8, method="unipc"),
        "adaptive": dict(method="adaptive", order=2),
    }[method]
    scale = jnp.asarray(np.random.default_rng(5).uniform(0.9, 1.1, size=(16, 4)))
    model = _cond_kw_model(LABELS, scale)
    keys = jax.random.split(jax.random.key(7), 16)
    kw = dict(key=keys) if "sde" in str(opts.get("algorithm_type")) else {}
    ref = dpm_jax.sample(model, X, SCHED, **kw, **opts)
    out = sharding.sample_sharded(model, X, SCHED, mesh, **kw, **opts)
    np.testing.assert_allclose(np.asarray(out), np.asarray(ref), rtol=1e-12, atol=1e-12)
    assert len(out.sharding.device_set) == 8


def test_make_mesh_mesh_is_accepted():
    mesh = jax.make_mesh((8,), ("batch",))
    keys = jax.random.split(jax.random.key(2), 16)
    out = sharding.sample_sharded(PLAIN, X, SCHED, mesh, key=keys, **SDE)
    ref = dpm_jax.sample(PLAIN, X, SCHED, key=keys, **SDE)
    np.testing.assert_allclose(np.asarray(out), np.asarray(ref), rtol=1e-12, atol=1e-12)
    jitted = jax.jit(lambda x, k: sharding.sample_sharded(PLAIN, x, SCHED, mesh, key=k, **SDE))
    np.testing.assert_allclose(np.asarray(jitted(X, keys)), np.asarray(ref), rtol=1e-12, atol=1e-12)


def test_eager_sharded_sampling_takes_weights_as_arguments():
    w1 = jnp.asarray(np.random.default_rng(2).normal(size=(4, 4)) / 4)
    mesh = sharding.batch_mesh()

    def run(w):
        model = dpm_jax.model_wrapper(lambda x, t: NET(x, t) + 0.01 * x @ w, SCHED)
        return sharding.sample_sharded(model, X, SCHED, mesh, steps=6)

    a = run(w1)
    w2 = 2.0 * w1
    with compiles() as compiled:
        b = run(w2)  # a new closure, new weights: the same program, the new weights
    assert len(compiled) == 0 and not np.allclose(a, b)
