"""The forward process q(x_t | x_0), for image-to-image, inpainting and editing.

``add_noise(schedule, x0, noise, t)`` is ``alpha_t x0 + sigma_t noise`` (DDPM, Ho et al.
2020, Eq. 4; DPM-Solver, Lu et al. 2022, Eq. 2.1), and :func:`strength_to_time` turns an
image-to-image *strength* in [0, 1] into the time where the reverse run starts (SDEdit,
Meng et al. 2022, arXiv 2108.01073: noise the input to t0, then solve from t0).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from dpm_jax import _checks
from dpm_jax.schedules import Schedule

__all__ = ["add_noise", "strength_to_time"]


def add_noise(noise_schedule: Schedule, x0, noise, t) -> Any:
    """A draw of q(x_t | x_0): ``x_t = alpha_t x0 + sigma_t noise``.

    Args:
      noise_schedule: the model's schedule.
      x0: clean data (B, ...).
      noise: standard normal noise of x0's shape (e.g. ``jax.random.normal``).
      t: the time, a scalar or one per sample (B,), in the schedule's units (for
        ``schedules.edm()`` the noise level sigma; ``strength_to_time`` converts an
        image-to-image strength). Traced values are fine (under jit, in a loop).

    Returns:
      x_t, of x0's shape and dtype. At sigma_t = 0 (the data end of ``edm`` / ``flow`` /
      a diffusers grid's final node) it is x0 exactly.

    >>> import jax.numpy as jnp
    >>> from dpm_jax import schedules
    >>> s = schedules.vp_linear()
    >>> x = add_noise(s, jnp.ones((2, 3)), jnp.zeros((2, 3)), 0.5)
    >>> round(float(x[0, 0]), 6) == round(float(s.marginal_alpha(0.5)), 6)
    True
    """
    _checks.check_schedule(noise_schedule)
    x0 = jnp.asarray(x0)
    if not jnp.issubdtype(x0.dtype, jnp.floating) or x0.ndim < 1:
        raise TypeError(f"`x0` must be a floating array (B, ...), got {x0.dtype} {x0.shape}.")
    noise = jnp.asarray(noise, x0.dtype)
    if noise.shape != x0.shape:
        raise ValueError(f"`noise` must have x0's shape {x0.shape}, got {noise.shape}.")
    t = jnp.asarray(t, x0.dtype)
    if t.ndim not in (0, 1) or (t.ndim == 1 and t.shape[0] != x0.shape[0]):
        raise ValueError(
            f"`t` must be a scalar or one time per sample ({x0.shape[0]},), got shape {t.shape}."
        )
    if not isinstance(t, jax.core.Tracer):
        lo, hi = noise_schedule.lowest_time, noise_schedule.T
        tv = np.asarray(t, np.float64)
        if np.any(tv < lo) or np.any(tv > hi) or not np.all(np.isfinite(tv)):
            raise ValueError(f"`t` must lie in [{lo}, {hi}] (the schedule's range), got {t}.")
    alpha = noise_schedule.marginal_alpha(t)
    sigma = noise_schedule.marginal_std(t)
    shape = (-1,) + (1,) * (x0.ndim - 1)
    alpha = jnp.reshape(alpha, shape) if t.ndim else alpha
    sigma = jnp.reshape(sigma, shape) if t.ndim else sigma
    return (alpha * x0 + sigma * noise).astype(x0.dtype)


def strength_to_time(
    noise_schedule: Schedule, strength: float, t_end: float | None = None
) -> float:
    """The start time of an image-to-image run of a given strength (SDEdit).

    ``t0 = t_end + strength (T - t_end)``: strength 1 starts from pure noise at T (the
    input is forgotten), strength 0 at ``t_end`` (the input is returned). On a
    time-uniform grid this is diffusers' img2img ``strength`` (the fraction of the
    steps that is run); for diffusers' own grids use ``begin_index`` instead.

    >>> from dpm_jax import schedules
    >>> strength_to_time(schedules.vp_linear(), 0.5)
    0.5005
    """
    _checks.check_schedule(noise_schedule)
    if isinstance(strength, bool) or not isinstance(strength, (int, float, np.floating)):
        raise TypeError(f"`strength` must be a number in [0, 1], got {type(strength).__name__}.")
    if not 0.0 <= float(strength) <= 1.0:
        raise ValueError(f"`strength` must lie in [0, 1], got {strength!r}.")
    t_end = noise_schedule.t_eps if t_end is None else float(t_end)
    if not noise_schedule.lowest_time <= t_end < noise_schedule.T:
        raise ValueError(
            f"`t_end` must lie in [{noise_schedule.lowest_time}, {noise_schedule.T}), got {t_end}."
        )
    return float(t_end + float(strength) * (noise_schedule.T - t_end))
