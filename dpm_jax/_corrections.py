"""Corrections of the data prediction: dynamic thresholding or a user's ``correcting_x0_fn``."""

from __future__ import annotations

import jax.numpy as jnp

__all__ = [
    "CORRECTORS",
    "dynamic_thresholding",
    "dynamic_thresholding_diffusers",
    "static_thresholding",
    "make_corrector",
]


def dynamic_thresholding(x0, t, max_val=1.0, ratio=0.995):
    """Dynamic thresholding (Saharia et al. 2022, Imagen Sec. 2.3) of a data prediction.

    Per sample b: ``q = max(quantile(|x0_b|, ratio), max_val)``, ``x0_b = clip(x0_b, -q, q) / q``
    (always divided by q, as in the reference implementation).

    >>> import jax.numpy as jnp
    >>> out = dynamic_thresholding(jnp.array([[0.5, -3.0]]), 0.0, ratio=1.0)
    >>> [round(float(v), 4) for v in out[0]]
    [0.1667, -1.0]
    """
    del t
    flat = jnp.abs(x0).reshape(x0.shape[0], -1)
    q = jnp.quantile(flat, jnp.asarray(ratio, x0.dtype), axis=1)
    q = jnp.maximum(q, jnp.asarray(max_val, x0.dtype)).reshape((-1,) + (1,) * (x0.ndim - 1))
    return jnp.clip(x0, -q, q) / q


def dynamic_thresholding_diffusers(x0, t, max_val=1.0, ratio=0.995):
    """Dynamic thresholding as diffusers' schedulers do it (``_threshold_sample``).

    Per sample b: ``s = min(max(quantile(|x0_b|, ratio), 1), max_val)``,
    ``x0_b = clip(x0_b, -s, s) / s``: the quantile clamped to [1, ``sample_max_value``]
    (torch's ``clamp(q, min=1, max=max_val)``, which gives max_val when max_val < 1).
    It differs from :func:`dynamic_thresholding` (the reference's
    ``max(quantile, max_val)``) once the quantile leaves [1, max_val].

    >>> import jax.numpy as jnp
    >>> out = dynamic_thresholding_diffusers(jnp.array([[0.5, -3.0]]), 0.0, 2.0, 1.0)
    >>> [round(float(v), 4) for v in out[0]]
    [0.25, -1.0]
    """
    del t
    flat = jnp.abs(x0).reshape(x0.shape[0], -1)
    q = jnp.quantile(flat, jnp.asarray(ratio, x0.dtype), axis=1)
    s = jnp.minimum(jnp.maximum(q, 1.0), jnp.asarray(max_val, x0.dtype))
    s = s.reshape((-1,) + (1,) * (x0.ndim - 1))
    return jnp.clip(x0, -s, s) / s


def static_thresholding(x0, t, max_val=1.0):
    """Static thresholding (Imagen, Saharia et al. 2022, Sec. 2.3): ``clip(x0, -max_val,
    max_val)`` (diffusers' ``clip_sample`` with ``clip_sample_range`` = max_val).

    >>> import jax.numpy as jnp
    >>> [float(v) for v in static_thresholding(jnp.array([[0.5, -3.0]]), 0.0)[0]]
    [0.5, -1.0]
    """
    del t
    m = jnp.asarray(max_val, x0.dtype)
    return jnp.clip(x0, -m, m)


#: The named correctors of ``correcting_x0_fn`` and the options each reads.
CORRECTORS = {
    "dynamic_thresholding": (
        dynamic_thresholding,
        ("thresholding_max_val", "dynamic_thresholding_ratio"),
    ),
    "dynamic_thresholding_diffusers": (
        dynamic_thresholding_diffusers,
        ("thresholding_max_val", "dynamic_thresholding_ratio"),
    ),
    "static_thresholding": (static_thresholding, ("thresholding_max_val",)),
}


def make_corrector(correcting_x0_fn, thresholding_max_val, dynamic_thresholding_ratio):
    """(static fn or None, traced params) for validated corrector options (see
    :class:`~dpm_jax.SolverOptions`): the function is part of the compiled program, its
    parameters are traced, so a new threshold does not recompile."""
    if isinstance(correcting_x0_fn, str):
        fn, names = CORRECTORS[correcting_x0_fn]
        values = {
            "thresholding_max_val": thresholding_max_val,
            "dynamic_thresholding_ratio": dynamic_thresholding_ratio,
        }
        return fn, tuple(values[n] for n in names)
    return correcting_x0_fn, ()
