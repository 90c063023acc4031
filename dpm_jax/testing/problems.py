"""Test problems with an exact noise predictor: Gaussian mixtures and empirical distributions.

If the data are ``p_0 = sum_k w_k N(mu_k, s_k^2 I)``, then under a VP forward
process ``p_t = sum_k w_k N(alpha_t mu_k, v_k I)`` with ``v_k = alpha_t^2 s_k^2 + sigma_t^2``,
and the exact noise prediction is

.. math::
    \\epsilon^*(x, t) = -\\sigma_t \\nabla \\log p_t(x)
                      = \\sigma_t \\sum_k r_k(x) (x - \\alpha_t \\mu_k) / v_k,

with responsibilities
``r_k = softmax_k(log w_k - D/2 log(2 pi v_k) - |x - alpha_t mu_k|^2 / (2 v_k))``.
So the probability-flow ODE of such data can be solved to any accuracy, which
makes these mixtures the ground truth of the tests and quality benchmarks.

An *empirical* distribution, ``p_0 = (1/N) sum_i delta(x - x_i)`` over a data set
(the limit of zero component stds), is the other kind: its exact noise
prediction is what an ideal denoiser trained on that data set to zero loss
would output,

.. math::
    \\hat x_0(x, t) = \\sum_i w_i(x) x_i, \\qquad
    w = \\mathrm{softmax}_i\\big(-|x - \\alpha_t x_i|^2 / (2 \\sigma_t^2)\\big), \\qquad
    \\epsilon^*(x, t) = (x - \\alpha_t \\hat x_0) / \\sigma_t.

Its ODE sends every ``x_T`` to one of the data points, and the softmax turns
into a hard nearest-point choice as ``sigma_t -> 0``: it is stiff near t = 0 and
its trajectories branch at the boundaries between data points, as image models
do. :func:`digits` builds one from the 1,797 8x8 images of scikit-learn's
``load_digits`` (shipped with scikit-learn, no download).

Problems used by the quality benchmark (``benchmarks/quality.py``) and, in
their fast versions, by the convergence tests:

* :func:`gmm_16d` (mild: component stds 0.15-0.6),
* :func:`gmm_16d_stiff` (the same means, stds 0.01-0.06: stiff near t = 0),
* :func:`digits` (the ideal denoiser of the digits; ``digits(n=64, pool=2)``,
  64 images at 4x4, is the fast version).

>>> import jax.numpy as jnp
>>> g = gmm_2d()
>>> eps = gmm_noise(g, jnp.zeros((3, 2)), 0.5, 0.8660254)
>>> eps.shape
(3, 2)
>>> emp = make_empirical(jnp.eye(2))        # two points, (1, 0) and (0, 1)
>>> exact_noise(emp, jnp.zeros((1, 2)), 0.6, 0.8).round(3).tolist()
[[-0.375, -0.375]]
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
    "gmm_16d_stiff",
    "Empirical",
    "make_empirical",
    "digits",
    "class_log_weights",
    "uncond_log_weights",
    "empirical_denoise",
    "empirical_noise",
    "empirical_log_prob",
    "exact_noise",
    "log_prob",
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
    stds = rng.uniform(float(std_range[0]), float(std_range[1]), size=K)
    weights = rng.dirichlet(np.full(K, 4.0))
    return make_gmm(means, stds, weights)


def gmm_16d_stiff(seed: int = 1234, K: int = 4, D: int = 16, std_range=(0.01, 0.06)) -> GMM:
    """:func:`gmm_16d` with narrow components (stds 0.01-0.06): stiff near t = 0.

    The same means and weights as ``gmm_16d(seed, K, D)``; only the stds differ.
    The noise prediction changes fastest where ``sigma_t`` crosses the
    component stds, i.e. in the last steps of sampling (half log-SNR 3-5), as
    for image data with fine detail.
    """
    return gmm_16d(seed=seed, K=K, D=D, std_range=std_range)


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


class Empirical(NamedTuple):
    """An empirical distribution: equal weights on the N rows of data (N, D), with
    optional integer class labels (N,) for class-conditional sampling."""

    data: np.ndarray
    labels: np.ndarray | None = None


def make_empirical(data, labels=None) -> Empirical:
    """Checks and stores a data set (N, D), N >= 1, as an :class:`Empirical` in float64
    NumPy (and its labels (N,) as int64, if given)."""
    data = np.asarray(data, np.float64)
    if data.ndim != 2 or data.shape[0] < 1 or data.shape[1] < 1:
        raise ValueError(f"make_empirical(): need data of shape (N, D), got {data.shape}.")
    if not np.all(np.isfinite(data)):
        raise ValueError("make_empirical(): data must be finite.")
    data = data.copy()
    data.flags.writeable = False
    if labels is not None:
        labels = np.asarray(labels)
        if labels.shape != data.shape[:1] or not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(
                f"make_empirical(): labels must be integers of shape ({data.shape[0]},), "
                f"got {labels.dtype} {labels.shape}."
            )
        labels = labels.astype(np.int64)
        labels.flags.writeable = False
    return Empirical(data, labels)


def digits(n: int | None = None, pool: int = 1, seed: int = 0) -> Empirical:
    """The 8x8 images of scikit-learn's ``load_digits`` as an empirical distribution.

    Pixels (0-16) are scaled to [-1, 1] (``x / 8 - 1``) and flattened row by row,
    so a sample is a vector of ``(8 // pool)**2`` values; the labels are the
    digits 0-9. The data ship with scikit-learn (no download); scikit-learn is
    imported here only.

    Args:
      n: None for all 1,797 images, or a random subset of n of them (drawn
        without replacement with ``seed``), for fast tests.
      pool: 1 (8x8, D = 64), 2 (4x4 averages of 2x2 blocks, D = 16) or 4
        (2x2, D = 4).
      seed: the seed of the subset.
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            "problems.digits() needs scikit-learn: pip install scikit-learn (or the `test` extra)."
        ) from e
    if pool not in (1, 2, 4):
        raise ValueError(f"digits(): `pool` must be 1, 2 or 4, got {pool!r}.")
    bunch = load_digits()
    images = bunch.images.astype(np.float64) / 8.0 - 1.0  # (1797, 8, 8)
    labels = np.asarray(bunch.target)
    if n is not None:
        if not 1 <= int(n) <= images.shape[0]:
            raise ValueError(f"digits(): `n` must be in [1, {images.shape[0]}], got {n!r}.")
        idx = np.sort(np.random.default_rng(seed).choice(images.shape[0], int(n), replace=False))
        images, labels = images[idx], labels[idx]
    side = 8 // pool
    images = images.reshape(-1, side, pool, side, pool).mean(axis=(2, 4))
    return make_empirical(images.reshape(images.shape[0], -1), labels)


def class_log_weights(emp: Empirical, labels) -> np.ndarray:
    """Per-sample log weights (B, N) of the data points for class-conditional sampling:
    ``-log n_c`` on the n_c points of sample b's class c = labels[b], -inf elsewhere.

    Pass them as ``log_weights`` (or, through :func:`noise_net`, as the condition of
    a classifier-free guided model, with ``log(1/N)`` everywhere as the unconditional
    one; see :func:`uncond_log_weights`).
    """
    if emp.labels is None:
        raise ValueError("class_log_weights(): this Empirical has no labels.")
    labels = np.asarray(labels)
    member = emp.labels[None, :] == labels[:, None]  # (B, N)
    counts = member.sum(axis=1, keepdims=True)
    if np.any(counts == 0):
        raise ValueError(
            f"class_log_weights(): no data point has label(s) "
            f"{sorted(set(labels[counts[:, 0] == 0].tolist()))}."
        )
    return np.where(member, -np.log(np.maximum(counts, 1)), -np.inf)


def uncond_log_weights(emp: Empirical, batch: int) -> np.ndarray:
    """The unconditional log weights (batch, N): ``log(1/N)`` for every data point."""
    n = emp.data.shape[0]
    return np.full((batch, n), -np.log(n))


def _empirical_logits(emp: Empirical, x, alpha, sigma, log_weights=None):
    """Logits (B, N) of the data points given x, up to a per-sample constant: the
    softmax weights of E[x_0 | x_t = x] are ``softmax(logits)``.

    ``-|x - a x_i|^2 / (2 s^2) = (a x.x_i - a^2 |x_i|^2 / 2) / s^2 - |x|^2 / (2 s^2)``;
    the last term is the same for every i and is left out (it is restored by
    :func:`empirical_log_prob`). A matrix product, no (B, N, D) intermediate.
    Per-sample log weights (B, N) of the points, if given, are added.
    """
    xp = jnp if isinstance(x, jax.Array) else np
    dtype = x.dtype
    data = xp.asarray(emp.data, dtype)
    half_sq = 0.5 * xp.sum(data**2, axis=-1)  # (N,)
    alpha, sigma = xp.asarray(alpha, dtype), xp.asarray(sigma, dtype)
    if alpha.ndim:  # per sample (B,)
        alpha, sigma = alpha[:, None], sigma[:, None]
    logits = (alpha * (x @ data.T) - alpha**2 * half_sq) / sigma**2
    if log_weights is not None:
        logits = logits + xp.asarray(log_weights, dtype)
    return logits


def _flat(x, d: int):
    if x.ndim < 2 or int(np.prod(x.shape[1:])) != d:
        raise ValueError(f"expected x of shape (B, ...) with {d} values per sample, got {x.shape}.")
    return x.reshape(x.shape[0], d)


def empirical_denoise(emp: Empirical, x, alpha, sigma, log_weights=None):
    """``E[x_0 | x_t = x]`` for the empirical distribution: a softmax-weighted average
    of the data points (log-sum-exp stabilised). x: (B, ...) with D values per
    sample (jax or NumPy); alpha, sigma: scalars or (B,); log_weights: optional
    per-sample log weights (B, N) of the data points (class conditioning, see
    :func:`class_log_weights`), default equal weights."""
    xp = jnp if isinstance(x, jax.Array) else np
    d = emp.data.shape[1]
    logits = _empirical_logits(emp, _flat(x, d), alpha, sigma, log_weights)
    logits = logits - xp.max(logits, axis=-1, keepdims=True)
    w = xp.exp(logits)
    w = w / xp.sum(w, axis=-1, keepdims=True)
    return (w @ xp.asarray(emp.data, x.dtype)).reshape(x.shape)


def _per_sample(v, x):
    xp = jnp if isinstance(x, jax.Array) else np
    v = xp.asarray(v, x.dtype)
    return v.reshape(v.shape + (1,) * (x.ndim - v.ndim)) if v.ndim else v


def empirical_noise(emp: Empirical, x, alpha, sigma, log_weights=None):
    """Exact noise prediction ``eps* = (x - alpha E[x_0 | x]) / sigma`` of the empirical
    distribution: the output of the ideal denoiser of the data set."""
    x0 = empirical_denoise(emp, x, alpha, sigma, log_weights)
    return (x - _per_sample(alpha, x) * x0) / _per_sample(sigma, x)


def empirical_log_prob(emp: Empirical, x, alpha, sigma, log_weights=None):
    """log p_t(x) of the noised empirical distribution ``sum_i w_i N(alpha x_i, sigma^2 I)``
    (w_i = 1/N, or ``exp(log_weights)``, normalised per sample), per sample (B,)."""
    xp = jnp if isinstance(x, jax.Array) else np
    n, d = emp.data.shape
    x2 = _flat(x, d)
    logits = _empirical_logits(emp, x2, alpha, sigma, log_weights)
    if isinstance(x, jax.Array):
        lse = jax.nn.logsumexp(logits, axis=-1)
    else:
        m = np.max(logits, axis=-1, keepdims=True)
        lse = (m + np.log(np.sum(np.exp(logits - m), axis=-1, keepdims=True)))[..., 0]
    sigma = xp.asarray(sigma, x.dtype)
    return (
        lse
        - xp.sum(x2**2, axis=-1) / (2 * sigma**2)
        - (np.log(n) if log_weights is None else 0.0)
        - 0.5 * d * xp.log(2 * np.pi * sigma**2)
    )


def exact_noise(problem, x, alpha, sigma, log_weights=None):
    """Exact noise prediction of a :class:`GMM` or an :class:`Empirical` problem
    (``log_weights``: optional per-sample log weights of its components / points)."""
    if isinstance(problem, GMM):
        return gmm_noise(problem, x, alpha, sigma, log_weights)
    if isinstance(problem, Empirical):
        return empirical_noise(problem, x, alpha, sigma, log_weights)
    raise TypeError(f"expected a problems.GMM or problems.Empirical, got {type(problem).__name__}.")


def log_prob(problem, x, alpha, sigma, log_weights=None):
    """log p_t(x) of a :class:`GMM` or an :class:`Empirical` problem, per sample (B,)."""
    if isinstance(problem, GMM):
        return gmm_log_prob(problem, x, alpha, sigma, log_weights)
    if isinstance(problem, Empirical):
        return empirical_log_prob(problem, x, alpha, sigma, log_weights)
    raise TypeError(f"expected a problems.GMM or problems.Empirical, got {type(problem).__name__}.")


def noise_net(gmm, schedule):
    """A "network" net(x, t_input[, cond]) returning the exact noise prediction.

    It inverts the schedule's time-input convention, so it can be wrapped with
    ``dpm_jax.model_wrapper(noise_net(gmm, sched), sched)`` like a trained model.
    ``gmm`` is a :class:`GMM` or an :class:`Empirical` problem. The optional
    condition ``cond`` is per-sample log weights of its components / data points
    (B, K or N), e.g. :func:`class_log_weights`, so that the net also serves as a
    conditional model for classifier-free guidance (``guidance_type="classifier-free"``
    with ``unconditional_condition`` the unconditional weights).
    """
    if not isinstance(gmm, (GMM, Empirical)):
        raise TypeError(
            f"noise_net(): expected a problems.GMM or problems.Empirical, got {type(gmm).__name__}."
        )

    def net(x, t_input, cond=None):
        t_input = jnp.asarray(t_input, x.dtype)
        scale = schedule.input_scale or 1000.0  # (the table index for time_input="index")
        t = t_input / scale + 1.0 / schedule.total_N if schedule.is_discrete else t_input
        log_alpha = schedule.marginal_log_alpha(t)
        alpha = jnp.exp(log_alpha)
        sigma = jnp.sqrt(-jnp.expm1(2.0 * log_alpha))
        return exact_noise(gmm, x, alpha, sigma, log_weights=cond)

    return net
