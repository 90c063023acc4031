"""The test problems of ``dpm_jax.testing.problems``: exact noise predictors, reference solutions.

The quality benchmark and the convergence tests rest on these problems being
exact, so each claim is checked independently: the empirical distribution's
noise prediction against a finite-difference score of its log-density, NumPy
against jax, the empirical distribution as the zero-width limit of a mixture,
and the reference ODE solver against closed forms and against itself.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dpm_jax
from dpm_jax import schedules
from dpm_jax.testing import problems


@pytest.fixture(scope="module", autouse=True)
def _x64():
    with jax.enable_x64(True):
        yield


def _small_empirical(n=12, d=5, seed=0):
    return problems.make_empirical(np.random.default_rng(seed).uniform(-1, 1, size=(n, d)))


ALPHA_SIGMA = [(0.3, np.sqrt(1 - 0.09)), (0.8, 0.6), (0.995, np.sqrt(1 - 0.995**2))]


@pytest.mark.parametrize("alpha, sigma", ALPHA_SIGMA)
def test_empirical_noise_is_minus_sigma_times_score(alpha, sigma):
    """eps* = -sigma grad log p_t, with the gradient by central finite differences (NumPy)."""
    emp = _small_empirical()
    x = np.random.default_rng(1).normal(size=(4, 5)) * 0.7
    h = 1e-5 * sigma
    grad = np.zeros_like(x)
    for k in range(x.shape[1]):
        e = np.zeros_like(x)
        e[:, k] = h
        grad[:, k] = (
            problems.empirical_log_prob(emp, x + e, alpha, sigma)
            - problems.empirical_log_prob(emp, x - e, alpha, sigma)
        ) / (2 * h)
    eps = problems.empirical_noise(emp, x, alpha, sigma)
    np.testing.assert_allclose(eps, -sigma * grad, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("alpha, sigma", ALPHA_SIGMA)
def test_empirical_numpy_and_jax_agree(alpha, sigma):
    emp = _small_empirical()
    x = np.random.default_rng(2).normal(size=(6, 5))
    for fn in (problems.empirical_noise, problems.empirical_denoise, problems.empirical_log_prob):
        np.testing.assert_allclose(
            np.asarray(fn(emp, jnp.asarray(x), alpha, sigma)),
            fn(emp, x, alpha, sigma),
            rtol=1e-12,
            atol=1e-12,
        )
    # jax.grad of the jax log-density gives the same eps.
    g = jax.grad(lambda z: problems.empirical_log_prob(emp, z, alpha, sigma).sum())(jnp.asarray(x))
    np.testing.assert_allclose(
        -sigma * np.asarray(g),
        problems.empirical_noise(emp, x, alpha, sigma),
        rtol=1e-10,
        atol=1e-10,
    )


def test_empirical_is_the_zero_width_mixture():
    """An empirical distribution equals the equal-weight mixture with stds -> 0."""
    emp = _small_empirical()
    n = emp.data.shape[0]
    gmm = problems.make_gmm(emp.data, np.full(n, 1e-7), np.full(n, 1.0 / n))
    x = np.random.default_rng(3).normal(size=(5, 5))
    for alpha, sigma in ALPHA_SIGMA:
        np.testing.assert_allclose(
            problems.empirical_noise(emp, x, alpha, sigma),
            problems.gmm_noise(gmm, x, alpha, sigma),
            rtol=1e-8,
            atol=1e-8,
        )
        np.testing.assert_allclose(
            problems.empirical_log_prob(emp, x, alpha, sigma),
            problems.gmm_log_prob(gmm, x, alpha, sigma),
            rtol=1e-8,
            atol=1e-8,
        )


def test_empirical_per_sample_alpha_sigma_and_image_shapes():
    """alpha, sigma of shape (B,) (as the model wrapper passes them) and x of shape (B, h, w)."""
    emp = _small_empirical(d=4)
    x = np.random.default_rng(4).normal(size=(3, 2, 2))
    alphas = np.array([0.3, 0.8, 0.99])
    sigmas = np.sqrt(1 - alphas**2)
    eps = problems.empirical_noise(emp, jnp.asarray(x), jnp.asarray(alphas), jnp.asarray(sigmas))
    assert eps.shape == (3, 2, 2)
    for b in range(3):
        want = problems.empirical_noise(emp, x[b : b + 1].reshape(1, 4), alphas[b], sigmas[b])
        np.testing.assert_allclose(np.asarray(eps[b]).reshape(1, 4), want, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="values per sample"):
        problems.empirical_noise(emp, np.zeros((2, 5)), 0.5, 0.5)


def test_empirical_denoiser_extremes():
    """Large sigma: the data mean; small sigma: the nearest data point, eps stays finite."""
    emp = _small_empirical()
    x = np.random.default_rng(5).normal(size=(4, 5))
    far = problems.empirical_denoise(emp, x, 1e-4, 1.0)
    np.testing.assert_allclose(far, np.broadcast_to(emp.data.mean(0), far.shape), atol=1e-3)
    alpha, sigma = np.sqrt(1 - 1e-8), 1e-4
    pts = emp.data[[3, 7]] * alpha + sigma * np.random.default_rng(6).normal(size=(2, 5))
    np.testing.assert_allclose(
        problems.empirical_denoise(emp, pts, alpha, sigma), emp.data[[3, 7]], atol=1e-12
    )
    eps = problems.empirical_noise(emp, jnp.asarray(pts, jnp.float32), alpha, sigma)
    assert eps.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(eps)))


def test_dispatch_and_errors():
    emp, gmm = _small_empirical(), problems.gmm_16d(D=5)
    x = np.random.default_rng(7).normal(size=(2, 5))
    np.testing.assert_array_equal(
        problems.exact_noise(emp, x, 0.6, 0.8), problems.empirical_noise(emp, x, 0.6, 0.8)
    )
    np.testing.assert_array_equal(
        problems.exact_noise(gmm, x, 0.6, 0.8), problems.gmm_noise(gmm, x, 0.6, 0.8)
    )
    np.testing.assert_array_equal(
        problems.log_prob(emp, x, 0.6, 0.8), problems.empirical_log_prob(emp, x, 0.6, 0.8)
    )
    for fn in (problems.exact_noise, problems.log_prob):
        with pytest.raises(TypeError, match="GMM or problems.Empirical"):
            fn(emp.data, x, 0.6, 0.8)
    with pytest.raises(TypeError, match="GMM or problems.Empirical"):
        problems.noise_net(emp.data, schedules.vp_linear())
    for bad in (np.zeros(3), np.zeros((0, 2)), np.array([[np.nan]])):
        with pytest.raises(ValueError, match="make_empirical"):
            problems.make_empirical(bad)


def test_class_conditioning_and_guidance():
    """Class log weights restrict the softmax to one class; the guided field of a
    classifier-free wrapped noise_net is eps_u + s (eps_c - eps_u); the reference
    solver integrates that same field (many DPM-Solver++ steps agree with it)."""
    pytest.importorskip("scipy")
    from dpm_jax.testing.exact import exact_ode_solution

    rng = np.random.default_rng(10)
    emp = problems.make_empirical(rng.uniform(-1, 1, size=(12, 4)), np.arange(12) % 3)
    labels = np.array([0, 1, 2, 1])
    lw = problems.class_log_weights(emp, labels)
    assert lw.shape == (4, 12) and np.all(np.isinf(lw[emp.labels[None] != labels[:, None]]))
    np.testing.assert_allclose(np.exp(lw).sum(1), 1.0)
    x = rng.normal(size=(4, 4))
    # Conditioning = the empirical distribution of that class alone.
    for b, c in enumerate(labels):
        sub = problems.make_empirical(emp.data[emp.labels == c])
        np.testing.assert_allclose(
            problems.empirical_noise(emp, x[b : b + 1], 0.7, np.sqrt(0.51), lw[b : b + 1]),
            problems.empirical_noise(sub, x[b : b + 1], 0.7, np.sqrt(0.51)),
            rtol=1e-12,
            atol=1e-12,
        )
        np.testing.assert_allclose(
            problems.empirical_log_prob(emp, x[b : b + 1], 0.7, np.sqrt(0.51), lw[b : b + 1]),
            problems.empirical_log_prob(sub, x[b : b + 1], 0.7, np.sqrt(0.51)),
            rtol=1e-12,
        )
    sched = schedules.vp_linear()
    scale = 4.0
    model = dpm_jax.model_wrapper(
        problems.noise_net(emp, sched),
        sched,
        guidance_type="classifier-free",
        condition=jnp.asarray(lw),
        unconditional_condition=jnp.asarray(problems.uncond_log_weights(emp, 4)),
        guidance_scale=scale,
    )
    a, s_ = 0.8, 0.6
    eps_u = problems.empirical_noise(emp, x, a, s_)
    eps_c = problems.empirical_noise(emp, x, a, s_, lw)
    t = float(sched.inverse_lambda(np.log(a / s_)))
    np.testing.assert_allclose(
        np.asarray(model(jnp.asarray(x), t)), eps_u + scale * (eps_c - eps_u), rtol=1e-9, atol=1e-9
    )
    ref = exact_ode_solution(
        emp, sched, x, 1.0, 1e-3, rtol=1e-11, atol=1e-11, log_weights=lw, guidance_scale=scale
    )
    x0 = dpm_jax.sample(model, jnp.asarray(x), sched, steps=400, skip_type="logSNR", t_end=1e-3)
    np.testing.assert_allclose(np.asarray(x0), ref, atol=1e-4)
    with pytest.raises(ValueError, match="log_weights must have shape"):
        exact_ode_solution(emp, sched, x, 1.0, 1e-3, log_weights=lw[:2])
    with pytest.raises(ValueError, match="no labels"):
        problems.class_log_weights(problems.make_empirical(emp.data), labels)
    with pytest.raises(ValueError, match="no data point"):
        problems.class_log_weights(emp, np.array([7]))
    with pytest.raises(ValueError, match="labels must be integers"):
        problems.make_empirical(emp.data, np.zeros(3, int))


def test_gmm_16d_stiff():
    mild, stiff = problems.gmm_16d(), problems.gmm_16d_stiff()
    np.testing.assert_array_equal(mild.means, stiff.means)
    np.testing.assert_array_equal(mild.weights, stiff.weights)
    assert np.all((stiff.stds >= 0.01) & (stiff.stds <= 0.06))


def test_digits():
    pytest.importorskip("sklearn")
    full = problems.digits()
    assert full.data.shape == (1797, 64) and full.labels.shape == (1797,)
    assert full.data.min() == -1.0 and full.data.max() == 1.0
    assert sorted(set(full.labels.tolist())) == list(range(10))
    small = problems.digits(n=64, pool=2)
    assert small.data.shape == (64, 16)
    assert np.all(np.abs(small.data) <= 1.0)
    np.testing.assert_array_equal(small.data, problems.digits(n=64, pool=2).data)  # same subset
    # pool=2 averages 2x2 blocks of the same images.
    sub = problems.digits(n=64, pool=1).data.reshape(64, 4, 2, 4, 2).mean(axis=(2, 4))
    np.testing.assert_allclose(small.data, sub.reshape(64, 16), atol=1e-15)
    with pytest.raises(ValueError, match="pool"):
        problems.digits(pool=3)
    with pytest.raises(ValueError, match="`n`"):
        problems.digits(n=0)


def test_empirical_samples_with_the_public_api():
    """noise_net(Empirical) wraps like a trained model; many steps land on data points."""
    emp = _small_empirical(n=6, d=3)
    sched = schedules.vp_linear()
    model = dpm_jax.model_wrapper(problems.noise_net(emp, sched), sched)
    x_T = jnp.asarray(np.random.default_rng(8).normal(size=(5, 3)))
    x0 = dpm_jax.sample(model, x_T, sched, steps=200, t_end=1e-4)
    dist = np.min(np.linalg.norm(np.asarray(x0)[:, None] - emp.data[None], axis=-1), axis=1)
    assert np.all(dist < 0.01), dist


def test_exact_solution_empirical():
    """The reference solver on an empirical distribution: per sample and batched agree,
    two tolerances agree, and the end points sit at data points (sigma_end ~ 0.01)."""
    pytest.importorskip("scipy")
    from dpm_jax.testing.exact import exact_ode_solution

    emp = _small_empirical(n=10, d=4)
    sched = schedules.vp_linear()
    x_T = np.random.default_rng(9).normal(size=(4, 4))
    a = exact_ode_solution(emp, sched, x_T, 1.0, 1e-3, rtol=1e-11, atol=1e-11)
    b = exact_ode_solution(emp, sched, x_T, 1.0, 1e-3, rtol=1e-11, atol=1e-11, per_sample=False)
    c = exact_ode_solution(emp, sched, x_T, 1.0, 1e-3, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(a, b, atol=1e-9)
    np.testing.assert_allclose(a, c, atol=1e-7)
    sigma_end = float(sched.marginal_std(np.float64(1e-3)))
    dist = np.min(np.linalg.norm(a[:, None] - emp.data[None], axis=-1), axis=1)
    assert np.all(dist < 5 * sigma_end * np.sqrt(4)), dist
    with pytest.raises(TypeError, match="GMM or problems.Empirical"):
        exact_ode_solution(emp.data, sched, x_T, 1.0, 1e-3)
