"""Guidance rescale, a guidance interval and APG, each against a direct transcription of its
paper's formula (NumPy, float64), carried through the sampling loop, traced (no recompile
for a new value), and refused where they do not apply."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from counting import compiles

import dpm_jax
from dpm_jax import guidance, schedules

SCHED = schedules.discrete(betas=np.linspace(1e-4, 0.02, 1000))
B, D = 4, 5
X = jnp.asarray(np.random.default_rng(0).normal(size=(B, D)))
LABELS = jnp.asarray([1.0, 2.0, 1.0, 3.0])
SCALE = 6.0


def net(x, t_input, cond):
    """A conditional noise network (cond 0 = unconditional)."""
    return 0.2 * x + 0.3 * cond[:, None] * jnp.sin(x + t_input[:, None] / 500.0)


def model(**kw):
    return dpm_jax.model_wrapper(
        net,
        SCHED,
        guidance_type="classifier-free",
        condition=LABELS,
        unconditional_condition=jnp.zeros_like(LABELS),
        guidance_scale=SCALE,
        **kw,
    )


def _at(t):
    t = np.float64(t)
    return float(SCHED.marginal_alpha(t)), float(SCHED.marginal_std(t)), float(SCHED.time_input(t))


def _outputs(x, t):
    a, s, ti = _at(t)
    tin = jnp.full((B,), ti)
    return np.asarray(net(x, tin, jnp.zeros_like(LABELS))), np.asarray(net(x, tin, LABELS)), a, s


def test_rescale_is_the_papers_formula():
    """Lin et al. 2024, Sec. 3.4: x_cfg = x_neg + w (x_pos - x_neg); x_rescaled = x_cfg
    std(x_pos) / std(x_cfg); x_final = phi x_rescaled + (1 - phi) x_cfg (per sample), on
    the network's outputs (here noise predictions), then x0 = (x - sigma eps) / alpha."""
    phi, t = 0.7, 0.6
    e_u, e_c, a, s = _outputs(X, t)
    e_cfg = e_u + SCALE * (e_c - e_u)
    std_pos = e_c.std(axis=1, keepdims=True)
    std_cfg = e_cfg.std(axis=1, keepdims=True)
    e_final = phi * e_cfg * std_pos / std_cfg + (1 - phi) * e_cfg
    want = (np.asarray(X) - s * e_final) / a
    got = model(guidance_rescale=phi).predict(X, t, _at(t)[2], a, s, data=True)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-12, atol=1e-12)
    plain = model().predict(X, t, _at(t)[2], a, s, data=True)
    assert not np.allclose(np.asarray(plain), want)  # the rescale changed something


@pytest.mark.parametrize("t", [0.9, 0.5, 0.05])
def test_interval_is_the_papers_rule(t):
    """Kynkaanniemi et al. 2024, Sec. 3: w(sigma) = w on (lo, hi], 1 elsewhere, sigma =
    sigma_t / alpha_t (EDM's noise level)."""
    lo, hi = 0.5, 5.0
    e_u, e_c, a, s = _outputs(X, t)
    w = SCALE if lo < s / a <= hi else 1.0
    want = e_u + w * (e_c - e_u)
    got = model(guidance_interval=(lo, hi)).predict(X, t, _at(t)[2], a, s, data=False)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-12, atol=1e-12)


def _apg_numpy(d_u, d_c, w, eta, r, beta, m_prev):
    """Sadat et al. 2024, Algorithm 1, transcribed: running average, norm threshold,
    projection on the conditional prediction, D_c + (w - 1) (orth + eta par)."""
    delta = d_c - d_u
    m = delta + beta * m_prev
    u = m.copy()
    if r > 0:
        n = np.linalg.norm(u, axis=1, keepdims=True)
        u = u * np.minimum(1.0, r / n)
    par = (u * d_c).sum(1, keepdims=True) / (d_c * d_c).sum(1, keepdims=True) * d_c
    orth = u - par
    return d_c + (w - 1) * (orth + eta * par), m


def test_apg_is_the_papers_algorithm_with_its_momentum_carried():
    params = guidance.APG(eta=0.2, norm_threshold=1.5, momentum=-0.5)
    m_np = np.zeros((B, D))
    state = None
    wrapped = model(apg=params)
    x = X
    for t in (0.9, 0.7, 0.4):
        e_u, e_c, a, s = _outputs(x, t)
        d_u, d_c = (np.asarray(x) - s * e_u) / a, (np.asarray(x) - s * e_c) / a
        want, m_np = _apg_numpy(d_u, d_c, SCALE, 0.2, 1.5, -0.5, m_np)
        got, state = wrapped.predict(x, t, _at(t)[2], a, s, True, state)
        np.testing.assert_allclose(np.asarray(got), want, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(np.asarray(state), m_np, rtol=1e-12, atol=1e-12)
        x = x * 0.9  # another point for the next call


def test_apg_through_the_loop_equals_a_hand_written_loop():
    """sample with apg carries the momentum row to row: a step-API loop applying the
    NumPy transcription between the network and the solver gives the same samples."""
    params = guidance.APG(eta=0.0, norm_threshold=2.0, momentum=-0.5)
    opts = dict(steps=8, order=2, method="multistep")
    ref = dpm_jax.sample(model(apg=params), X, SCHED, **opts)
    st = dpm_jax.stepper(SCHED, model_type="x_start", **opts)
    state, m_np = st.init(X), np.zeros((B, D))
    for _ in range(st.num_steps):
        when = st.time(state)
        x = state.x
        tin = jnp.full((B,), when.t_input)
        a, s = float(when.alpha), float(when.sigma)
        e_u = np.asarray(net(x, tin, jnp.zeros_like(LABELS)))
        e_c = np.asarray(net(x, tin, LABELS))
        d_u, d_c = (np.asarray(x) - s * e_u) / a, (np.asarray(x) - s * e_c) / a
        d, m_np = _apg_numpy(d_u, d_c, SCALE, 0.0, 2.0, -0.5, m_np)
        state = st.step(state, jnp.asarray(d))
    np.testing.assert_allclose(np.asarray(state.x), np.asarray(ref), rtol=1e-11, atol=1e-11)
    cfg_like = dpm_jax.sample(model(apg=guidance.APG(1.0, 0.0, 0.0)), X, SCHED, **opts)
    np.testing.assert_allclose(  # eta 1, no threshold, no momentum: plain guidance
        np.asarray(cfg_like), np.asarray(dpm_jax.sample(model(), X, SCHED, **opts)), rtol=1e-12
    )


def test_new_values_do_not_recompile_in_float32():
    x = X.astype(jnp.float32)
    labels = LABELS.astype(jnp.float32)

    def run(**kw):
        m = dpm_jax.model_wrapper(
            net,
            SCHED,
            guidance_type="classifier-free",
            condition=labels,
            unconditional_condition=jnp.zeros_like(labels),
            guidance_scale=4.0,
            **kw,
        )
        return dpm_jax.sample(m, x, SCHED, steps=6)

    for first, second in (
        (dict(guidance_rescale=0.5), dict(guidance_rescale=0.9)),
        (dict(guidance_interval=(0.2, 2.0)), dict(guidance_interval=(0.5, 8.0))),
        (dict(apg=guidance.APG(0.0, 1.0, -0.5)), dict(apg=guidance.APG(0.5, 3.0, -0.2))),
    ):
        a = run(**first)
        with compiles() as compiled:
            b = run(**second)
        assert len(compiled) == 0 and a.dtype == jnp.float32
        assert float(jnp.max(jnp.abs(a - b))) > 1e-4


def test_guidance_options_are_used_or_refused():
    with pytest.raises(ValueError, match="unconditional_condition"):  # the scale: ignored
        dpm_jax.model_wrapper(
            net, SCHED, guidance_type="classifier-free", condition=LABELS, guidance_scale=3.0
        )
    one = dpm_jax.model_wrapper(  # scale 1: the conditional network alone, allowed
        net, SCHED, guidance_type="classifier-free", condition=LABELS, guidance_scale=1.0
    )
    assert dpm_jax.sample(one, X, SCHED, steps=3).shape == X.shape
    plain = dict(guidance_type="uncond")
    with pytest.raises(ValueError, match="guidance_rescale"):
        dpm_jax.model_wrapper(net, SCHED, guidance_rescale=0.5, **plain)
    with pytest.raises(ValueError, match="guidance_interval"):  # no unconditional_condition
        dpm_jax.model_wrapper(
            net,
            SCHED,
            guidance_type="classifier-free",
            condition=LABELS,
            guidance_scale=3.0,
            guidance_interval=(0.1, 1.0),
        )
    with pytest.raises(ValueError, match="guidance_rescale"):
        model(guidance_rescale=1.5)
    with pytest.raises(TypeError, match="guidance_rescale"):
        model(guidance_rescale="high")
    with pytest.raises(ValueError, match="guidance_interval"):
        model(guidance_interval=(2.0, 1.0))
    with pytest.raises(TypeError, match="guidance_interval"):
        model(guidance_interval=1.0)
    with pytest.raises(TypeError, match="apg"):
        model(apg=dict(eta=0.0))
    with pytest.raises(ValueError, match="norm_threshold"):
        model(apg=guidance.APG(0.0, -1.0, 0.0))
    with pytest.raises(ValueError, match="one of them"):
        model(apg=guidance.APG(), guidance_rescale=0.5)
    with pytest.raises(ValueError, match="apg"):
        dpm_jax.sample(model(apg=guidance.APG()), X, SCHED, method="adaptive")


def test_traced_guidance_values_under_jit():
    @jax.jit
    def run(phi, lo, eta):
        m = model(guidance_rescale=phi, guidance_interval=(lo, 10.0))
        n = model(apg=guidance.APG(eta, 1.0, -0.5))
        return dpm_jax.sample(m, X, SCHED, steps=5), dpm_jax.sample(n, X, SCHED, steps=5)

    a, b = run(0.5, 0.1, 0.0)
    c, d = run(0.8, 0.2, 0.5)
    assert not np.allclose(a, c) and not np.allclose(b, d)
    np.testing.assert_allclose(
        a,
        dpm_jax.sample(
            model(guidance_rescale=0.5, guidance_interval=(0.1, 10.0)), X, SCHED, steps=5
        ),
        rtol=1e-12,
        atol=1e-12,
    )
