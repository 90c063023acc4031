"""Test problems with an exact noise predictor: Gaussian mixtures.

If the data are ``p_0 = sum_k w_k N(mu_k, s_k^2 I)``, then under a VP forward
process ``p_t = sum_k w_k N(alpha_t mu_k, v_k I)`` with ``v_k = alpha_t^2 s_k^2 + sigma_t^2``,
and the exact noise prediction is

.. math::
    \\epsilon^*(x, t) = -\\sigma_t \\nabla \\log p_t(x)
                      = \\sigma_t \\sum_k r_k(x) (x - \\alpha_t \\mu_k) / v_k,

with responsibilities ``r_k = softmax_k(log w_k - D/2 log(2 pi v_k) - |x - alpha_t mu_k|^2 / (2 v_k))``.
So the probability-flow ODE of such data can be solved to any accuracy, which
makes these mixtures the ground truth of the tests and quality benchmarks.

>>> import jax.numpy as jnp
>>> g = gmm_2d()
>>> eps = gmm_noise(g, jnp.zeros((3, 2)), 0.5, 0.8660254)
>>> eps.shape
(3, 2)
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "GMM",
    "make_gmm",
    "gmm_2d",
    "gmm_16d",
    "gmm_noise",
    "gmm_log_prob",
    "gmm_sample",
    "noise_net",
]


class GMM(NamedTuple):
    """An isotropic Gaussian mixture: means (K, D), stds (K,), weights (K,)."""

    means: np.ndarray
    stds: np.ndarray
    weights: np.ndarray


def make_gmm(means, stds, weights) -> GMM:
    """Checks and stores a mixture in float64 NumPy."""
    means = np.asarray(means, np.float64)
    stds = np.asarray(stds, np.float64)
    weights = np.asarray(weights, np.float64)
    if means.ndim != 2 or stds.shape != means.shape[:1] or weights.shape != means.shape[:1]:
        raise ValueError("make_gmm(): need means (K, D), stds (K,), weights (K,).")
    if np.any(stds <= 0) or np.any(weights <= 0) or not np.isclose(weights.sum(), 1.0):
        raise ValueError("make_gmm(): stds and weights must be positive, weights summing to 1.")
    return GMM(means, stds, weights)


def gmm_2d() -> GMM:
    """A 2-D mixture of 8 narrow Gaussians on a ring plus one at the centre."""
    angles = np.arange(8) * np.pi / 4
    means = np.concatenate([np.stack([np.cos(angles), np.sin(angles)], 1) * 2.0, [[0.0, 0.0]]])
    stds = np.full(9, 0.12)
    weights = np.full(9, 1.0 / 9)
    return make_gmm(means, stds, weights)


def gmm_16d(seed: int = 1234, K: int = 4, D: int = 16, std_range=(0.15, 0.6)) -> GMM:
    """A random D-dimensional mixture (means N(0, 1), stds uniform in std_range)."""
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(K, D))
    stds = rng.uniform(*std_range, size=K)
    weights = rng.dirichlet(np.full(K, 4.0))
    return make_gmm(means, stds, weights)


def _logits(gmm: GMM, x, alpha, sigma, log_weights=None):
    """Component logits (B, K), differences x - alpha mu_k (B, K, D) and variances v_k."""
    xp = jnp if isinstance(x, jax.Array) else np
    dtype = x.dtype
    means = xp.asarray(gmm.means, dtype)
    stds = xp.asarray(gmm.stds, dtype)
    logw = xp.log(xp.asarray(gmm.weights, dtype)) if log_weights is None else log_weights
    alpha, sigma = xp.asarray(alpha, dtype), xp.asarray(sigma, dtype)
    if alpha.ndim:  # per sample (B,)
        alpha, sigma = alpha[:, None], sigma[:, None]
    v = alpha**2 * stds**2 + sigma**2  # (K,) or (B, K)
    diff = x[:, None, :] - alpha[..., None] * means  # (B, K, D)
    sq = xp.sum(diff**2, axis=-1)  # (B, K)
    d = x.shape[-1]
    logits = logw - 0.5 * d * xp.log(2 * np.pi * v) - sq / (2 * v)
    return logits, diff, v


def gmm_noise(gmm: GMM, x, alpha, sigma, log_weights=None):
    """Exact noise prediction eps*(x) of the mixture at (alpha, sigma).

    Args:
      gmm: the mixture.
      x: (B, D) jax or NumPy array.
      alpha, sigma: scalars, or arrays of shape (B,).
      log_weights: optional per-sample log component weights (B, K) (class
        conditioning).
    """
    xp = jnp if isinstance(x, jax.Array) else np
    logits, diff, v = _logits(gmm, x, alpha, sigma, log_weights)
    logits = logits - xp.max(logits, axis=-1, keepdims=True)
    r = xp.exp(logits)
    r = r / xp.sum(r, axis=-1, keepdims=True)
    sig = xp.asarray(sigma, x.dtype)
    sig = sig[:, None] if sig.ndim else sig
    return sig * xp.sum((r / v)[..., None] * diff, axis=-2)


def gmm_log_prob(gmm: GMM, x, alpha, sigma, log_weights=None):
    """log p_t(x) of the noised mixture, per sample (B,)."""
    logits, _, _ = _logits(gmm, x, alpha, sigma, log_weights)
    if isinstance(x, jax.Array):
        return jax.nn.logsumexp(logits, axis=-1)
    m = np.max(logits, axis=-1, keepdims=True)
    return (m + np.log(np.sum(np.exp(logits - m), axis=-1, keepdims=True)))[..., 0]


def gmm_sample(gmm: GMM, n: int, seed: int = 0) -> np.ndarray:
    """n exact samples of the mixture (NumPy, float64)."""
    rng = np.random.default_rng(seed)
    comp = rng.choice(len(gmm.weights), size=n, p=gmm.weights)
    return gmm.means[comp] + gmm.stds[comp, None] * rng.normal(size=(n, gmm.means.shape[1]))


def noise_net(gmm: GMM, schedule):
    """A "network" net(x, t_input) returning the exact noise prediction.

    It inverts the schedule's time-input convention, so it can be wrapped with
    ``dpm_jax.model_wrapper(noise_net(gmm, sched), sched)`` like a trained model.
    """

    def net(x, t_input):
        t_input = jnp.asarray(t_input, x.dtype)
        t = t_input / 1000.0 + 1.0 / schedule.total_N if schedule.is_discrete else t_input
        log_alpha = schedule.marginal_log_alpha(t)
        alpha = jnp.exp(log_alpha)
        sigma = jnp.sqrt(-jnp.expm1(2.0 * log_alpha))
        return gmm_noise(gmm, x, alpha, sigma)

    return net
