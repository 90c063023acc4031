"""Corrections of the data prediction: dynamic thresholding or a user's ``correcting_x0_fn``."""

from __future__ import annotations

import jax.numpy as jnp

__all__ = ["dynamic_thresholding", "make_corrector"]


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


def make_corrector(correcting_x0_fn, thresholding_max_val, dynamic_thresholding_ratio):
    """(static fn or None, traced params) for validated corrector options (see
    :class:`~dpm_jax.SolverOptions`): the function is part of the compiled program, its
    parameters are traced, so a new threshold does not recompile."""
    if correcting_x0_fn == "dynamic_thresholding":
        return dynamic_thresholding, (thresholding_max_val, dynamic_thresholding_ratio)
    return correcting_x0_fn, ()
