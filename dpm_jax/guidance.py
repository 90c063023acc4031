"""Guidance combinations of a conditional and an unconditional prediction.

Pure functions, used by :func:`dpm_jax.model_wrapper`'s classifier-free guidance and
available to a loop written with the step API (:func:`dpm_jax.stepper`):

- :func:`cfg`: classifier-free guidance, ``u + w (c - u)`` (Ho & Salimans 2022, Eq. 6).
- :func:`rescale`: guidance rescale (Lin et al. 2024, arXiv 2305.08891, Sec. 3.4):
  the guided prediction rescaled to the standard deviation of the conditional one,
  mixed with the plain guided prediction by ``phi``.
- :func:`interval_scale`: a guidance interval (Kynkäänniemi et al. 2024, arXiv
  2404.07724, Sec. 3): the scale w inside a noise-level interval (lo, hi], 1 outside.
- :func:`apg`: adaptive projected guidance (Sadat et al. 2024, arXiv 2410.02416,
  Sec. 3.1-3.2 and Algorithm 1): the update split into its parts parallel and
  orthogonal to the conditional prediction, the parallel part weighted by ``eta``,
  after a reverse momentum and a norm threshold; its momentum is a state carried from
  one model call to the next.

Every function works per sample: statistics and norms are taken over all axes but the
first (the batch).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax.numpy as jnp

__all__ = ["APG", "apg", "cfg", "interval_scale", "rescale"]


def _per_sample(v, x):
    """A scalar or (B,) value shaped to broadcast against x (B, ...)."""
    v = jnp.asarray(v, x.dtype)
    return v.reshape(v.shape + (1,) * (x.ndim - v.ndim)) if v.ndim else v


def _axes(x) -> tuple:
    return tuple(range(1, x.ndim))


def cfg(uncond, cond, scale):
    """Classifier-free guidance: ``uncond + scale (cond - uncond)`` (scale per sample or
    scalar).

    >>> import jax.numpy as jnp
    >>> cfg(jnp.zeros((1, 2)), jnp.ones((1, 2)), 3.0).tolist()
    [[3.0, 3.0]]
    """
    return uncond + _per_sample(scale, cond) * (cond - uncond)


def rescale(guided, cond, phi):
    """Guidance rescale (Lin et al. 2024, Sec. 3.4): with sigma_c = std(cond) and
    sigma_g = std(guided) per sample,
    ``phi * guided * sigma_c / sigma_g + (1 - phi) * guided``.

    ``phi = 0`` returns ``guided``; ``phi = 1`` the fully rescaled prediction.

    >>> import jax.numpy as jnp
    >>> g, c = jnp.array([[2.0, -2.0]]), jnp.array([[1.0, -1.0]])
    >>> rescale(g, c, 1.0).tolist(), rescale(g, c, 0.0).tolist()
    ([[1.0, -1.0]], [[2.0, -2.0]])
    """
    std_c = jnp.std(cond, axis=_axes(cond), keepdims=True)
    std_g = jnp.std(guided, axis=_axes(guided), keepdims=True)
    phi = _per_sample(phi, guided)
    return phi * (guided * (std_c / std_g)) + (1.0 - phi) * guided


def interval_scale(scale, sigma, lo, hi):
    """The guidance scale of a guidance interval (Kynkäänniemi et al. 2024, Sec. 3):
    ``scale`` where the noise level ``lo < sigma <= hi``, else 1 (the conditional
    prediction alone). ``sigma`` is EDM's noise level sigma_t / alpha_t (per sample or
    scalar).

    >>> float(interval_scale(4.0, 10.0, 0.3, 5.0)), float(interval_scale(4.0, 1.0, 0.3, 5.0))
    (1.0, 4.0)
    """
    inside = (sigma > lo) & (sigma <= hi)
    return jnp.where(inside, scale, jnp.ones_like(jnp.asarray(scale)))


class APG(NamedTuple):
    """The parameters of adaptive projected guidance (traced: new values do not
    recompile). ``eta``: weight of the update's part parallel to the conditional
    prediction (0 drops it, 1 is plain guidance); ``norm_threshold``: the largest norm
    r of the update per sample (0: no threshold); ``momentum``: beta of the running
    average ``m <- delta + beta m`` (negative: the paper's reverse momentum; 0: none).
    Defaults: the paper's suggestions for EDM-type models (eta 0, beta -0.5; the norm
    threshold depends on the data's scale, here off)."""

    eta: Any = 0.0
    norm_threshold: Any = 0.0
    momentum: Any = -0.5


def apg(uncond, cond, scale, params: APG, state=None):
    """Adaptive projected guidance of data predictions D (Sadat et al. 2024, Alg. 1).

    With delta = cond - uncond: the running average ``m = delta + momentum * state``
    (``state`` the previous m, zeros at the first call); ``m`` scaled to norm at most
    ``norm_threshold`` per sample; split into ``m_par = (<m, c> / <c, c>) c`` and
    ``m_orth = m - m_par``; the guided prediction is
    ``cond + (scale - 1) (m_orth + eta m_par)``. Returns ``(guided, m)``: the new state is
    the running average before the threshold.

    With eta = 1, no threshold and no momentum it is classifier-free guidance.

    >>> import jax.numpy as jnp
    >>> u, c = jnp.array([[0.0, 1.0]]), jnp.array([[1.0, 1.0]])
    >>> g, m = apg(u, c, 3.0, APG(eta=1.0, momentum=0.0))
    >>> g.tolist(), cfg(u, c, 3.0).tolist()
    ([[3.0, 1.0]], [[3.0, 1.0]])
    """
    delta = cond - uncond
    m = delta if state is None else delta + _per_sample(params.momentum, delta) * state
    update = m
    r = jnp.asarray(params.norm_threshold, m.dtype)
    norm = jnp.sqrt(jnp.sum(m * m, axis=_axes(m), keepdims=True))
    factor = jnp.where(r > 0, jnp.minimum(1.0, r / jnp.where(norm > 0, norm, 1.0)), 1.0)
    update = update * factor
    cc = jnp.sum(cond * cond, axis=_axes(cond), keepdims=True)
    along = jnp.sum(update * cond, axis=_axes(cond), keepdims=True) / jnp.where(cc > 0, cc, 1.0)
    parallel = along * cond
    orthogonal = update - parallel
    eta = _per_sample(params.eta, cond)
    guided = cond + (_per_sample(scale, cond) - 1.0) * (orthogonal + eta * parallel)
    return guided, m
