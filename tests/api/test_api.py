"""Behaviour of the public API: tracing, caching, transformations, outputs."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from counting import compiles

import dpm_jax
from dpm_jax import schedules
from dpm_jax.testing import problems

SCHED = schedules.discrete(betas=np.linspace(1e-4, 0.02, 1000))
GMM = problems.gmm_16d(seed=3, D=4)
X_T = jnp.asarray(np.random.default_rng(0).normal(size=(5, 4)), jnp.float32)  # as users run
# The same run compiled differently (jit vs eager, vmap, unrolled) in float32 differs by a
# few ulps (measured: <= 4.8e-7 absolute on O(1) samples); 30 ulps of slack.
F32 = dict(rtol=4e-6, atol=4e-6)


def _net():
    """The exact model (a closure over the mixture's arrays, so each eager call traces it
    once, reading the arrays as they are then; programs are counted with ``compiles``)."""
    base = problems.noise_net(GMM, SCHED)

    def net(x, t_input, cond=None, **kw):
        out = base(x, t_input)
        return out if cond is None else out * (1.0 + 0.01 * cond[:, None])

    return net


def test_all_names_resolve():
    for name in dpm_jax.__all__:
        assert getattr(dpm_jax, name) is not None, name
    for name in schedules.__all__:
        assert getattr(schedules, name) is not None, name


@pytest.mark.parametrize("method", ["singlestep", "singlestep_fixed", "multistep"])
def test_model_traced_once_and_not_retraced(method):
    net = _net()
    labels = jnp.arange(5) % 2
    opts = dict(steps=9, order=3, method=method, skip_type="logSNR")

    def wrap(scale):
        return dpm_jax.model_wrapper(
            net,
            SCHED,
            guidance_type="classifier-free",
            condition=labels,
            unconditional_condition=jnp.zeros_like(labels),
            guidance_scale=scale,
        )

    x1, info = dpm_jax.sample(wrap(1.5), X_T, SCHED, return_info=True, **opts)
    with compiles() as compiled:  # different t_end and guidance scale: the same program
        x2 = dpm_jax.sample(wrap(4.0), X_T, SCHED, t_end=0.01, **opts)
    assert len(compiled) == 0
    thresholded = dict(t_end=0.01, correcting_x0_fn="dynamic_thresholding", **opts)
    x3 = dpm_jax.sample(wrap(4.0), X_T, SCHED, thresholding_max_val=2.0, **thresholded)
    with compiles() as compiled:  # thresholding is another program, reused for a new value
        x4 = dpm_jax.sample(wrap(4.0), X_T, SCHED, thresholding_max_val=3.0, **thresholded)
    assert len(compiled) == 0
    assert not np.allclose(x1, x2) and not np.allclose(x2, x3) and not np.allclose(x3, x4)
    assert info.nfe == 9


def test_plan_is_pytree_and_execute_does_not_recompile():
    model = dpm_jax.model_wrapper(_net(), SCHED)
    p1 = dpm_jax.build_plan(SCHED, steps=6, order=2, skip_type="logSNR")
    p2 = dpm_jax.build_plan(SCHED, steps=6, order=2, skip_type="time_quadratic", t_end=0.005)
    assert jax.tree_util.tree_structure(p1) == jax.tree_util.tree_structure(p2)
    assert len(jax.tree_util.tree_leaves(p1)) == 9
    y1, _ = dpm_jax.execute_plan(model, X_T, p1)
    with compiles() as compiled:
        y2, _ = dpm_jax.execute_plan(model, X_T, p2)  # another grid: the same program
    assert len(compiled) == 0 and not np.allclose(y1, y2)
    chex.assert_trees_all_equal(
        y1, dpm_jax.sample(model, X_T, SCHED, steps=6, order=2, skip_type="logSNR")
    )


class TestWithAndWithoutJit(chex.TestCase):
    """sample under jax.jit (the model closed over) equals the eager call (chex.variants)."""

    @chex.variants(with_jit=True, without_jit=True)
    def test_sample(self):
        model = dpm_jax.model_wrapper(problems.noise_net(GMM, SCHED), SCHED)
        for opts in (
            dict(steps=6, order=2),
            dict(steps=7, order=3, method="singlestep"),
            dict(steps=6, method="unipc"),
            dict(steps=6, method="ipndm", order=4),
            dict(timesteps=[1.0, 0.5, 0.2, 0.05, 0.001]),
        ):
            ref = dpm_jax.sample(model, X_T, SCHED, **opts)
            got = self.variant(lambda x, opts=opts: dpm_jax.sample(model, x, SCHED, **opts))(X_T)
            chex.assert_trees_all_close(got, ref, **F32)


def test_jit_with_traced_parameters_matches_eager():
    def net(params, x, t):
        return problems.noise_net(GMM, SCHED)(x * params["s"], t)

    @jax.jit
    def generate(params, x_T):
        model = dpm_jax.model_wrapper(lambda x, t: net(params, x, t), SCHED)
        return dpm_jax.sample(model, x_T, SCHED, steps=7, order=3, method="singlestep")

    params = {"s": jnp.float32(1.0)}
    eager = dpm_jax.sample(
        dpm_jax.model_wrapper(lambda x, t: net(params, x, t), SCHED),
        X_T,
        SCHED,
        steps=7,
        order=3,
        method="singlestep",
    )
    np.testing.assert_allclose(generate(params, X_T), eager, **F32)
    # new parameter values: same compiled program, different result
    other = generate({"s": jnp.float32(0.9)}, X_T)
    assert generate._cache_size() == 1 and not np.allclose(other, eager)


def test_vmap_and_disable_jit_match():
    model = dpm_jax.model_wrapper(problems.noise_net(GMM, SCHED), SCHED)
    opts = dict(steps=6, order=2, method="multistep", algorithm_type="dpmsolver++")
    ref = dpm_jax.sample(model, X_T, SCHED, **opts)
    stacked = jnp.stack([X_T, 2 * X_T])
    out = jax.vmap(lambda x: dpm_jax.sample(model, x, SCHED, **opts))(stacked)
    np.testing.assert_allclose(out[0], ref, **F32)
    np.testing.assert_allclose(out[1], dpm_jax.sample(model, 2 * X_T, SCHED, **opts), **F32)
    with jax.disable_jit():
        eager = dpm_jax.sample(model, X_T, SCHED, **opts)
    np.testing.assert_allclose(eager, ref, **F32)


def test_bare_network_sees_the_wrapped_time_input_in_float32():
    """One time convention: a bare network is called as model_wrapper(net, schedule) calls
    it, net(x, t_input) with t_input = 1000 (t - 1/N) on a discrete table, shape (B,)."""
    net = problems.noise_net(GMM, SCHED)
    seen = []

    def bare(x, t_input):
        seen.append((t_input.shape, t_input.dtype))
        return net(x, t_input)

    x32 = X_T.astype(jnp.float32)
    for kw in (dict(steps=8), dict(method="adaptive")):
        a = dpm_jax.sample(bare, x32, SCHED, **kw)
        b = dpm_jax.sample(dpm_jax.model_wrapper(net, SCHED), x32, SCHED, **kw)
        assert a.dtype == jnp.float32 == b.dtype
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert set(seen) == {((X_T.shape[0],), np.dtype("float32"))}
    got = []

    def probe(x, t_input):  # records the time inputs it is called with
        jax.debug.callback(lambda t: got.append(np.asarray(t)), t_input)
        return 0.0 * x

    plan = dpm_jax.build_plan(SCHED, steps=4)
    for model in (probe, dpm_jax.model_wrapper(probe, SCHED)):
        got.clear()
        jax.block_until_ready(dpm_jax.execute_plan(model, jnp.zeros((2, 1)), plan)[0])
        jax.effects_barrier()
        # unordered callbacks may arrive in any order: compare the sorted time inputs
        seen_t = np.sort(np.stack(got)[:, 0])[::-1]
        assert np.all(np.stack(got) == np.stack(got)[:, :1])
        np.testing.assert_allclose(seen_t, 1000.0 * (plan.t - 1 / 1000), rtol=1e-12)
        assert np.isclose(seen_t[0], 999.0)


def test_intermediates_shapes_and_last_state():
    model = dpm_jax.model_wrapper(problems.noise_net(GMM, SCHED), SCHED)
    x, info = dpm_jax.sample(
        model,
        X_T,
        SCHED,
        steps=7,
        order=3,
        method="multistep",
        return_intermediate=True,
        return_info=True,
    )
    assert info.intermediates.shape == (8,) + X_T.shape
    np.testing.assert_array_equal(info.intermediates[0], X_T)
    np.testing.assert_array_equal(info.intermediates[-1], x)
    x, info = dpm_jax.sample(
        model,
        X_T,
        SCHED,
        steps=7,
        order=3,
        method="singlestep",
        denoise_to_zero=True,
        return_intermediate=True,
        return_info=True,
    )
    assert info.nfe == 8 and info.intermediates.shape == (4,) + X_T.shape  # orders [3, 3, 1] + x0
    np.testing.assert_array_equal(info.intermediates[-1], x)


def test_inverse_then_sample_round_trip():
    """Encoding data to noise and decoding it back recovers the data (ODE is invertible)."""
    model = dpm_jax.model_wrapper(problems.noise_net(GMM, SCHED), SCHED)
    x0 = jnp.asarray(problems.gmm_sample(GMM, 5, seed=1))
    opts = dict(steps=200, order=2, method="multistep", skip_type="logSNR")
    x_T = dpm_jax.inverse(model, x0, SCHED, **opts)
    back = dpm_jax.sample(model, x_T, SCHED, **opts)
    assert float(jnp.max(jnp.abs(back - x0))) < 2e-3


@pytest.mark.parametrize("order", [2, 3])
def test_adaptive_nfe_is_a_value_and_inverse_direction(order):
    model = dpm_jax.model_wrapper(problems.noise_net(GMM, SCHED), SCHED)
    x, info = dpm_jax.sample(model, X_T, SCHED, method="adaptive", order=order, return_info=True)
    assert isinstance(info.nfe, jax.Array) and int(info.nfe) % order == 0 and int(info.nfe) > 0
    ref = dpm_jax.sample(
        model, X_T, SCHED, steps=300, order=3, method="multistep", skip_type="logSNR"
    )
    assert float(jnp.max(jnp.abs(x - ref))) < 0.05
    # upwards: an adaptive inversion ends at T and agrees with a fine fixed-grid inversion
    up = dpm_jax.inverse(model, ref, SCHED, method="adaptive", order=order, rtol=0.01, atol=1e-3)
    up_ref = dpm_jax.inverse(model, ref, SCHED, steps=300, order=3, skip_type="logSNR")
    assert float(jnp.max(jnp.abs(up - up_ref))) < 0.05


def test_dynamic_thresholding_matches_numpy():
    rng = np.random.default_rng(0)
    x0 = rng.normal(size=(3, 2, 5)) * 2.0
    got = dpm_jax.dynamic_thresholding(jnp.asarray(x0), 0.5, max_val=1.0, ratio=0.9)
    q = np.maximum(np.quantile(np.abs(x0).reshape(3, -1), 0.9, axis=1), 1.0)[:, None, None]
    np.testing.assert_allclose(got, np.clip(x0, -q, q) / q, rtol=1e-12)


def test_schedules_host_and_device_agree():
    t = np.linspace(0.002, 0.99, 17)
    for s in (SCHED, schedules.vp_linear(), schedules.vp_cosine()):
        for fn in ("marginal_log_alpha", "marginal_alpha", "marginal_std", "marginal_lambda"):
            np.testing.assert_allclose(
                getattr(s, fn)(jnp.asarray(t)), getattr(s, fn)(t), rtol=1e-12
            )
        lam = s.marginal_lambda(t)
        np.testing.assert_allclose(s.inverse_lambda(lam), t, rtol=1e-9)
        np.testing.assert_allclose(s.inverse_lambda(jnp.asarray(lam)), t, rtol=1e-9)
        assert np.all(np.diff(lam) < 0)


def test_alphas_cumprod_equals_betas():
    betas = np.linspace(1e-4, 0.02, 1000)
    a = schedules.discrete(alphas_cumprod=np.cumprod(1 - betas))
    t = np.linspace(0.001, 1.0, 11)
    np.testing.assert_allclose(a.marginal_lambda(t), SCHED.marginal_lambda(t), rtol=1e-10)


def test_unroll_choices_agree_and_auto_detects_heavy_models():
    from dpm_jax._executor import _is_cheap

    model = dpm_jax.model_wrapper(problems.noise_net(GMM, SCHED), SCHED)
    outs = [
        dpm_jax.sample(model, X_T, SCHED, steps=7, order=3, method="singlestep", unroll=u)
        for u in ("auto", 1, 2, 3)
    ]
    for o in outs[1:]:
        np.testing.assert_allclose(o, outs[0], **F32)
    cheap = jax.make_jaxpr(lambda x: jnp.tanh(x) * 2.0)(X_T)
    matmul = jax.make_jaxpr(lambda x: jnp.tanh(x @ jnp.ones((4, 4))))(X_T)
    nested = jax.make_jaxpr(lambda x: jax.jit(lambda y: y @ jnp.ones((4, 4)))(x) + 1.0)(X_T)
    assert _is_cheap(cheap) and not _is_cheap(matmul) and not _is_cheap(nested)
    with pytest.raises(ValueError, match="unroll"):
        dpm_jax.sample(model, X_T, SCHED, steps=5, unroll=0)


def test_singlestep_and_multistep_plans_of_one_shape_share_a_program():
    model = dpm_jax.model_wrapper(_net(), SCHED)
    a = dpm_jax.sample(model, X_T, SCHED, steps=6, order=2, method="multistep")
    with compiles() as compiled:
        b = dpm_jax.sample(model, X_T, SCHED, steps=6, order=2, method="singlestep")
    assert len(compiled) == 0 and not np.allclose(a, b)
