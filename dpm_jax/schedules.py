"""Noise schedules of variance-preserving diffusion models.

A schedule is the map t -> (alpha_t, sigma_t) of the forward process
``x_t = alpha_t x_0 + sigma_t eps`` (``sigma_t^2 = 1 - alpha_t^2``), together with
the half log-SNR ``lambda_t = log alpha_t - log sigma_t`` and its inverse t(lambda).

Every function of a :class:`Schedule` works on NumPy input (float64, used on the
host to build plans) and on jax arrays (used on device, e.g. by the adaptive
solver): the array type of the input selects the implementation.

>>> import numpy as np
>>> from dpm_jax import schedules
>>> s = schedules.vp_linear()
>>> lam = s.marginal_lambda(np.array([0.5]))
>>> bool(np.allclose(s.inverse_lambda(lam), 0.5))
True
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["Schedule", "discrete", "vp_linear", "vp_cosine", "LAMBDA_CLIP"]

#: Entries of a discrete table whose half log-SNR lies below this value are
#: dropped from its end, as the reference implementation does (they make the
#: last steps numerically unstable).
LAMBDA_CLIP = -5.1


class Schedule(NamedTuple):
    """A VP noise schedule: constants and pure functions of time.

    Attributes:
      name: ``"discrete"``, ``"vp_linear"`` or ``"vp_cosine"``.
      T: the largest time (the start of sampling).
      t_eps: the default end time of sampling (``1 / total_N``).
      total_N: the number of training steps of a discrete model (1000 for the
        continuous schedules, as in the reference implementation).
      is_discrete: whether the model was trained on a discrete time grid; such
        a model is called with the time input ``1000 * (t - 1 / total_N)``.
      marginal_log_alpha: t -> log alpha_t.
      inverse_lambda: lambda -> t.
    """

    name: str
    T: float
    t_eps: float
    total_N: int
    is_discrete: bool
    marginal_log_alpha: Callable[[Any], Any]
    inverse_lambda: Callable[[Any], Any]

    def marginal_alpha(self, t):
        """alpha_t = exp(log alpha_t)."""
        return _xp(t).exp(self.marginal_log_alpha(t))

    def marginal_std(self, t):
        """sigma_t = sqrt(1 - alpha_t^2)."""
        xp = _xp(t)
        return xp.sqrt(1.0 - xp.exp(2.0 * self.marginal_log_alpha(t)))

    def marginal_lambda(self, t):
        """lambda_t = log alpha_t - log sigma_t (half log-SNR)."""
        xp = _xp(t)
        log_alpha = self.marginal_log_alpha(t)
        return log_alpha - 0.5 * xp.log(1.0 - xp.exp(2.0 * log_alpha))

    def time_input(self, t):
        """The time fed to the network: ``1000 (t - 1/N)`` (discrete) or t."""
        if self.is_discrete:
            return (t - 1.0 / self.total_N) * 1000.0
        return t


def _xp(t):
    """NumPy for host input, jax.numpy for jax arrays and tracers."""
    return jnp if isinstance(t, jax.Array) else np


def _as_host(t):
    return t if isinstance(t, jax.Array) else np.asarray(t, dtype=np.float64)


def _interp(x, xs, ys):
    """Piecewise-linear interpolation of (xs, ys), xs increasing, extended
    linearly beyond both ends with the outermost segments."""
    xp = _xp(x)
    xs_, ys_ = xp.asarray(xs, dtype=x.dtype), xp.asarray(ys, dtype=x.dtype)
    idx = xp.clip(xp.searchsorted(xs_, x, side="right") - 1, 0, xs_.shape[0] - 2)
    x0, x1, y0, y1 = xs_[idx], xs_[idx + 1], ys_[idx], ys_[idx + 1]
    return y0 + (x - x0) * (y1 - y0) / (x1 - x0)


def _log_alpha_from_lambda(lam):
    """log alpha = -0.5 log(1 + e^{-2 lambda}), stably."""
    return -0.5 * _xp(lam).logaddexp(0.0, -2.0 * lam)


def discrete(betas=None, *, alphas_cumprod=None) -> Schedule:
    """Schedule of a model trained on N discrete steps (DDPM and its kin).

    ``log alpha_n = 0.5 * cumsum(log(1 - beta))_n`` (or ``0.5 log alphas_cumprod``),
    on the grid ``t_n = (n + 1) / N``; log alpha_t is piecewise linear in t between
    the grid points (DPM-Solver, arXiv 2206.00927, App. D). Entries whose half
    log-SNR is below ``LAMBDA_CLIP`` are dropped from the end of the table.

    Args:
      betas: 1-D array of betas in (0, 1), or
      alphas_cumprod: 1-D array of cumulative products of alphas in (0, 1],
        decreasing. Give exactly one of the two.

    >>> import numpy as np
    >>> s = discrete(betas=np.linspace(1e-4, 0.02, 1000))
    >>> s.total_N, s.t_eps
    (1000, 0.001)
    """
    if (betas is None) == (alphas_cumprod is None):
        raise ValueError("discrete(): give exactly one of `betas` or `alphas_cumprod`.")
    if betas is not None:
        b = _check_table("betas", betas)
        if np.any(b <= 0.0) or np.any(b >= 1.0):
            raise ValueError("discrete(): every entry of `betas` must lie in (0, 1).")
        log_alphas = 0.5 * np.cumsum(np.log1p(-b))
    else:
        a = _check_table("alphas_cumprod", alphas_cumprod)
        if np.any(a <= 0.0) or np.any(a > 1.0) or np.any(np.diff(a) >= 0.0):
            raise ValueError(
                "discrete(): `alphas_cumprod` must be strictly decreasing with entries in (0, 1]."
            )
        log_alphas = 0.5 * np.log(a)
    lambdas = log_alphas - 0.5 * np.log(1.0 - np.exp(2.0 * log_alphas))
    n_clip = int(np.sum(lambdas < LAMBDA_CLIP))
    if n_clip:
        log_alphas = log_alphas[:-n_clip]
    n = log_alphas.shape[0]
    if n < 2:
        raise ValueError("discrete(): fewer than 2 table entries remain after log-SNR clipping.")
    t_array = np.linspace(0.0, 1.0, n + 1)[1:]
    log_alphas = log_alphas.copy()
    log_alphas.flags.writeable = False
    t_array.flags.writeable = False
    la_increasing, t_for_la = log_alphas[::-1].copy(), t_array[::-1].copy()

    def marginal_log_alpha(t):
        return _interp(_as_host(t), t_array, log_alphas)

    def inverse_lambda(lam):
        return _interp(_log_alpha_from_lambda(_as_host(lam)), la_increasing, t_for_la)

    marginal_log_alpha.table = (t_array, log_alphas)  # for inspection and tests
    return Schedule("discrete", 1.0, 1.0 / n, n, True, marginal_log_alpha, inverse_lambda)


def _check_table(name, values):
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1 or arr.shape[0] < 2:
        raise ValueError(f"discrete(): `{name}` must be a 1-D array of length >= 2, got shape {arr.shape}.")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"discrete(): `{name}` must be finite.")
    return arr


def vp_linear(beta_0: float = 0.1, beta_1: float = 20.0) -> Schedule:
    """Continuous VP schedule with linear beta(t) = beta_0 + t (beta_1 - beta_0).

    ``log alpha_t = -(beta_1 - beta_0) t^2 / 4 - beta_0 t / 2`` (Song et al. 2021;
    DPM-Solver App. D); t(lambda) in closed form.

    >>> s = vp_linear()
    >>> round(float(s.marginal_alpha(1.0)), 6)
    0.006572
    """
    beta_0, beta_1 = float(beta_0), float(beta_1)
    if not (beta_0 > 0.0 and beta_1 > beta_0 and np.isfinite(beta_1)):
        raise ValueError(
            f"vp_linear(): need 0 < beta_0 < beta_1 < inf, got beta_0={beta_0}, beta_1={beta_1}."
        )
    d = beta_1 - beta_0

    def marginal_log_alpha(t):
        t = _as_host(t)
        return -0.25 * t**2 * d - 0.5 * t * beta_0

    def inverse_lambda(lam):
        lam = _as_host(lam)
        xp = _xp(lam)
        u = 2.0 * d * xp.logaddexp(-2.0 * lam, 0.0)
        return u / (xp.sqrt(beta_0**2 + u) + beta_0) / d

    return Schedule("vp_linear", 1.0, 1e-3, 1000, False, marginal_log_alpha, inverse_lambda)


def vp_cosine(s: float = 0.008, T: float = 0.9946) -> Schedule:
    """Continuous cosine VP schedule (Nichol & Dhariwal 2021).

    ``log alpha_t = log cos((t + s) / (1 + s) * pi / 2) - log cos(s / (1 + s) * pi / 2)``,
    on [0, T] with T = 0.9946 by default (as in the reference implementation,
    where the schedule is still numerically safe).

    >>> s = vp_cosine()
    >>> s.T
    0.9946
    """
    s, T = float(s), float(T)
    if not (s > 0.0):
        raise ValueError(f"vp_cosine(): `s` must be > 0, got {s}.")
    if not (0.0 < T < 1.0):
        raise ValueError(f"vp_cosine(): `T` must lie in (0, 1) (alpha_1 = 0), got {T}.")
    log_alpha_0 = float(np.log(np.cos(s / (1.0 + s) * np.pi / 2.0)))

    def marginal_log_alpha(t):
        t = _as_host(t)
        xp = _xp(t)
        return xp.log(xp.cos((t + s) / (1.0 + s) * np.pi / 2.0)) - log_alpha_0

    def inverse_lambda(lam):
        lam = _as_host(lam)
        xp = _xp(lam)
        log_alpha = _log_alpha_from_lambda(lam)
        return 2.0 * (1.0 + s) / np.pi * xp.arccos(xp.exp(log_alpha + log_alpha_0)) - s

    return Schedule("vp_cosine", T, 1e-3, 1000, False, marginal_log_alpha, inverse_lambda)
