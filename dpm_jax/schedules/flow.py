"""Rectified-flow / flow-matching schedules (alpha_t = 1 - sigma_t)."""

from __future__ import annotations

import numpy as np

from dpm_jax.schedules._schedule import Schedule, _as_host, _check_pos, _xp

__all__ = ["flow"]


def flow(shift: float = 1.0, time_scale: float = 1.0) -> Schedule:
    """Rectified-flow / flow-matching schedule: ``x_t = (1 - sigma_t) x0 + sigma_t eps``.

    ``sigma_t = shift t / (1 + (shift - 1) t)`` for t in [0, 1] (the time shift of
    SD3 / Flux-style models; shift = 1 is plain rectified flow, sigma_t = t), and
    alpha_t = 1 - sigma_t. lambda runs from +inf (t = 0, the data) to -inf
    (t = 1, pure noise); ``t(lambda)``: ``sigma = 1 / (1 + e^lambda)``,
    ``t = sigma / (shift - (shift - 1) sigma)``. Sampling goes from T = 1 to
    t_eps = 0: the first step leaves alpha = 0 and the last reaches sigma = 0, both
    as exact first-order (Euler = DDIM) steps. Use ``model_type="flow"`` for a
    velocity network u = eps - x0. The network's time input is ``time_scale * sigma_t``
    (``time_scale=1000`` is the diffusers / SD3 convention).

    >>> import numpy as np
    >>> s = flow(shift=3.0)
    >>> float(s.marginal_std(np.float64(0.5))), float(s.marginal_alpha(np.float64(1.0)))
    (0.75, 0.0)
    """
    shift, time_scale = _check_pos("flow", shift=shift, time_scale=time_scale)

    def sigma_of(t):  # exact at both ends: 0 at t = 0, 1 at t = 1
        return shift * t / (shift * t + (1.0 - t))

    def marginal_log_alpha(t):
        t = _as_host(t)
        xp = _xp(t)
        with np.errstate(divide="ignore"):
            return xp.log((1.0 - t) / (shift * t + (1.0 - t)))  # alpha = 1 - sigma, 0 at t = 1

    def marginal_log_sigma(t):
        t = _as_host(t)
        xp = _xp(t)
        with np.errstate(divide="ignore"):
            return xp.log(sigma_of(t))

    def inverse_lambda(lam):
        lam = _as_host(lam)
        xp = _xp(lam)
        sig = 0.5 * (1.0 - xp.tanh(0.5 * lam))  # 1 / (1 + e^lam), stable at +-inf
        return sig / (shift - (shift - 1.0) * sig)

    def time_input(t):
        return time_scale * sigma_of(_as_host(t))

    return Schedule(
        "flow",
        1.0,
        0.0,
        1000,
        False,
        marginal_log_alpha,
        inverse_lambda,
        marginal_log_sigma=marginal_log_sigma,
        time_input_fn=time_input,
        t_min=0.0,
        spec=("flow", shift, time_scale),
    )
