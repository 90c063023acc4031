"""Variance-exploding schedules (alpha_t = 1): VE (NCSN++) and EDM."""

from __future__ import annotations

import numpy as np

from dpm_jax.schedules._schedule import Schedule, _as_host, _check_pos, _xp

__all__ = ["edm", "ve"]


def ve(sigma_min: float = 0.01, sigma_max: float = 50.0) -> Schedule:
    """Variance-exploding schedule (Song et al. 2021, NCSN++): alpha_t = 1,
    ``sigma_t = sigma_min (sigma_max / sigma_min)^t`` for t in [0, 1].

    ``lambda_t = -log sigma_t``; t(lambda) in closed form. The network gets sigma_t
    as its time input. Sampling starts from ``x_T = sigma_max * N(0, I)``
    (``schedule.marginal_std(schedule.T)``) and ends at sigma_min (t = 0); pass
    ``final_sigmas_type="zero"`` to :func:`dpm_jax.sample` to end on the data
    (sigma = 0) with a last first-order step.

    >>> import numpy as np
    >>> s = ve(0.01, 50.0)
    >>> round(float(s.marginal_std(np.float64(1.0))), 9), float(s.marginal_alpha(np.float64(0.3)))
    (50.0, 1.0)
    """
    sigma_min, sigma_max = _check_pos("ve", sigma_min=sigma_min, sigma_max=sigma_max)
    if not sigma_max > sigma_min:
        raise ValueError(f"ve(): need sigma_min < sigma_max, got {sigma_min}, {sigma_max}.")
    log_min, log_ratio = float(np.log(sigma_min)), float(np.log(sigma_max / sigma_min))

    def marginal_log_alpha(t):
        return _xp(t).zeros_like(_as_host(t))

    def marginal_log_sigma(t):
        return log_min + _as_host(t) * log_ratio

    def inverse_lambda(lam):
        return (-_as_host(lam) - log_min) / log_ratio

    def time_input(t):
        return _xp(t).exp(marginal_log_sigma(t))

    return Schedule(
        "ve",
        1.0,
        0.0,
        1000,
        False,
        marginal_log_alpha,
        inverse_lambda,
        marginal_log_sigma=marginal_log_sigma,
        time_input_fn=time_input,
        t_min=0.0,
        spec=("ve", sigma_min, sigma_max),
    )


def edm(sigma_min: float = 0.002, sigma_max: float = 80.0, sigma_data: float = 0.5) -> Schedule:
    """EDM schedule (Karras et al. 2022): alpha_t = 1 and sigma_t = t, t in [0, sigma_max].

    Time is the noise level itself (EDM's sigma(t) = t, s(t) = 1, Table 1), so
    ``T = sigma_max``, ``t_eps = sigma_min`` and t = 0 is the data (lambda = +inf).
    ``sigma_data`` is used by ``model_wrapper(..., model_type="edm")``, which
    applies EDM's preconditioning to a raw network F:
    ``D(x; sigma) = c_skip x + c_out F(c_in x; c_noise)`` with
    ``c_skip = sd^2 / (sigma^2 + sd^2)``, ``c_out = sigma sd / sqrt(sigma^2 + sd^2)``,
    ``c_in = 1 / sqrt(sigma^2 + sd^2)``, ``c_noise = log(sigma) / 4``. The network
    gets sigma as its time input otherwise. Sample from ``x_T = sigma_max * N(0, I)``;
    ``skip_type="karras"`` gives EDM's own time steps (rho = 7).

    >>> import numpy as np
    >>> s = edm()
    >>> s.T, s.t_eps, float(s.marginal_lambda(np.float64(0.0)))
    (80.0, 0.002, inf)
    """
    sigma_min, sigma_max, sigma_data = _check_pos(
        "edm", sigma_min=sigma_min, sigma_max=sigma_max, sigma_data=sigma_data
    )
    if not sigma_max > sigma_min:
        raise ValueError(f"edm(): need sigma_min < sigma_max, got {sigma_min}, {sigma_max}.")

    def marginal_log_alpha(t):
        return _xp(t).zeros_like(_as_host(t))

    def marginal_log_sigma(t):
        t = _as_host(t)
        with np.errstate(divide="ignore"):
            return _xp(t).log(t)

    def inverse_lambda(lam):
        return _xp(_as_host(lam)).exp(-_as_host(lam))

    def time_input(t):
        return t

    return Schedule(
        "edm",
        sigma_max,
        sigma_min,
        1000,
        False,
        marginal_log_alpha,
        inverse_lambda,
        marginal_log_sigma=marginal_log_sigma,
        time_input_fn=time_input,
        sigma_data=sigma_data,
        t_min=0.0,
        spec=("edm", sigma_min, sigma_max, sigma_data),
    )
