"""Noise schedules: the maps t -> (alpha_t, sigma_t) of diffusion models.

A schedule is the map t -> (alpha_t, sigma_t) of the forward process
``x_t = alpha_t x_0 + sigma_t eps``, together with the half log-SNR
``lambda_t = log alpha_t - log sigma_t`` and its inverse t(lambda). Variance
preserving (VP) schedules have ``sigma_t^2 = 1 - alpha_t^2`` (``discrete``,
``vp_linear``, ``vp_cosine``); variance exploding ones have alpha_t = 1 (``ve``,
``edm``); rectified-flow / flow-matching models have alpha_t = 1 - sigma_t
(``flow``). lambda may be infinite at an end: +inf where sigma_t = 0 (the data),
-inf where alpha_t = 0 (pure noise: flow models at t = 1, zero-terminal-SNR
tables); the solvers take such steps in closed form (see ``dpm_jax._plan``).

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

__all__ = ["Schedule", "discrete", "vp_linear", "vp_cosine", "ve", "edm", "flow", "LAMBDA_CLIP",
           "rescale_zero_terminal_snr"]

#: Entries of a discrete table whose half log-SNR lies below this value are
#: dropped from its end, as the reference implementation does (they make the
#: last steps numerically unstable).
LAMBDA_CLIP = -5.1


class Schedule(NamedTuple):
    """A noise schedule: constants and pure functions of time.

    Attributes:
      name: ``"discrete"``, ``"vp_linear"``, ``"vp_cosine"``, ``"ve"``, ``"edm"`` or ``"flow"``.
      T: the largest time (the start of sampling).
      t_eps: the default end time of sampling (``1 / total_N`` for discrete tables).
      total_N: the number of training steps of a discrete model (1000 for the
        continuous schedules, as in the reference implementation).
      is_discrete: whether the model was trained on a discrete time grid; such
        a model is called with the time input ``1000 * (t - 1 / total_N)``.
      marginal_log_alpha: t -> log alpha_t.
      inverse_lambda: lambda -> t (defined for lambda = +-inf where the schedule
        reaches sigma = 0 or alpha = 0).
      marginal_log_sigma: t -> log sigma_t; None for VP schedules
        (``sigma_t = sqrt(1 - alpha_t^2)``).
      time_input_fn: t -> the time fed to the network; None for the reference
        convention (``1000 (t - 1/N)`` for discrete tables, t otherwise).
      sigma_data: the data standard deviation of EDM's preconditioning (``edm``).
      t_min: the smallest valid time (None: ``1/N`` for discrete tables, else 0
        excluded).
    """

    name: str
    T: float
    t_eps: float
    total_N: int
    is_discrete: bool
    marginal_log_alpha: Callable[[Any], Any]
    inverse_lambda: Callable[[Any], Any]
    marginal_log_sigma: Callable[[Any], Any] | None = None
    time_input_fn: Callable[[Any], Any] | None = None
    sigma_data: float | None = None
    t_min: float | None = None

    def marginal_alpha(self, t):
        """alpha_t = exp(log alpha_t)."""
        return _xp(t).exp(self.marginal_log_alpha(t))

    def log_sigma(self, t):
        """log sigma_t (-inf where sigma_t = 0)."""
        if self.marginal_log_sigma is not None:
            return self.marginal_log_sigma(t)
        xp = _xp(t)
        with np.errstate(divide="ignore"):
            return 0.5 * xp.log(-xp.expm1(2.0 * self.marginal_log_alpha(t)))

    def marginal_std(self, t):
        """sigma_t (``sqrt(1 - alpha_t^2)`` for VP schedules)."""
        return _xp(t).exp(self.log_sigma(t))

    def marginal_lambda(self, t):
        """lambda_t = log alpha_t - log sigma_t (half log-SNR; +-inf at sigma = 0 / alpha = 0)."""
        with np.errstate(invalid="ignore"):
            return self.marginal_log_alpha(t) - self.log_sigma(t)

    def time_input(self, t):
        """The time fed to the network: ``1000 (t - 1/N)`` (discrete), t (VP), or the
        schedule's own convention (sigma for ``ve``/``edm``, ``time_scale * sigma`` for ``flow``)."""
        if self.time_input_fn is not None:
            return self.time_input_fn(t)
        if self.is_discrete:
            return (t - 1.0 / self.total_N) * 1000.0
        return t

    @property
    def lowest_time(self) -> float:
        """The smallest valid time of the schedule."""
        if self.t_min is not None:
            return self.t_min
        return 1.0 / self.total_N if self.is_discrete else 0.0


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


def rescale_zero_terminal_snr(alphas_cumprod) -> np.ndarray:
    """Rescales a cumulative-alpha table to zero terminal SNR (Lin et al. 2023, Alg. 1).

    ``sqrt(abar) -> (sqrt(abar) - sqrt(abar_N)) * sqrt(abar_1) / (sqrt(abar_1) - sqrt(abar_N))``:
    the first entry is kept, the last becomes exactly 0 (alpha_T = 0, lambda_T = -inf).

    >>> import numpy as np
    >>> a = rescale_zero_terminal_snr(np.cumprod(1 - np.linspace(1e-4, 0.02, 1000)))
    >>> float(a[-1]), bool(np.isclose(a[0], 1 - 1e-4))
    (0.0, True)
    """
    a = np.sqrt(np.asarray(alphas_cumprod, np.float64))
    a0, a_last = a[0], a[-1]
    return ((a - a_last) * a0 / (a0 - a_last)) ** 2


_rescale_zsnr = rescale_zero_terminal_snr  # discrete()'s argument of the same name shadows it


def discrete(betas=None, *, alphas_cumprod=None, lambda_clip: float | None = LAMBDA_CLIP,
             rescale_zero_terminal_snr: bool = False) -> Schedule:
    """Schedule of a model trained on N discrete steps (DDPM and its kin).

    ``log alpha_n = 0.5 * cumsum(log(1 - beta))_n`` (or ``0.5 log alphas_cumprod``),
    on the grid ``t_n = (n + 1) / N``; log alpha_t is piecewise linear in t between
    the grid points (DPM-Solver, arXiv 2206.00927, App. D). Entries whose half
    log-SNR is below ``lambda_clip`` are dropped from the end of the table (the
    reference implementation's rule; ``lambda_clip=None`` keeps every entry, as
    diffusers does).

    With ``rescale_zero_terminal_snr=True`` the table is first rescaled to zero
    terminal SNR (Lin et al. 2023, :func:`rescale_zero_terminal_snr`): alpha_T = 0,
    lambda_T = -inf, and nothing is clipped. On the last interval, where log alpha
    falls to -inf, alpha (not log alpha) is interpolated linearly, so every time
    t < T has a finite lambda. Such a model must predict x0, v or a flow velocity:
    a noise prediction carries no information about the data at alpha = 0.

    Args:
      betas: 1-D array of betas in (0, 1), or
      alphas_cumprod: 1-D array of cumulative products of alphas in (0, 1],
        decreasing (the last entry may be 0: a zero-terminal-SNR table). Give
        exactly one of the two.
      lambda_clip: the clipping threshold, or None.
      rescale_zero_terminal_snr: rescale the table to zero terminal SNR.

    >>> import numpy as np
    >>> s = discrete(betas=np.linspace(1e-4, 0.02, 1000))
    >>> s.total_N, s.t_eps
    (1000, 0.001)
    >>> z = discrete(betas=np.linspace(1e-4, 0.02, 1000), rescale_zero_terminal_snr=True)
    >>> float(z.marginal_alpha(np.float64(1.0))), float(z.marginal_lambda(np.float64(1.0)))
    (0.0, -inf)
    """
    if (betas is None) == (alphas_cumprod is None):
        raise ValueError("discrete(): give exactly one of `betas` or `alphas_cumprod`.")
    if not isinstance(rescale_zero_terminal_snr, (bool, np.bool_)):
        raise TypeError("discrete(): `rescale_zero_terminal_snr` must be a bool, got "
                        f"{type(rescale_zero_terminal_snr).__name__}.")
    if lambda_clip is not None and not np.isfinite(float(lambda_clip)):
        raise ValueError(f"discrete(): `lambda_clip` must be a finite number or None, got {lambda_clip!r}.")
    if betas is not None:
        b = _check_table("betas", betas)
        if np.any(b <= 0.0) or np.any(b >= 1.0):
            raise ValueError("discrete(): every entry of `betas` must lie in (0, 1).")
        log_alphas = 0.5 * np.cumsum(np.log1p(-b))
    else:
        abar = _check_table("alphas_cumprod", alphas_cumprod)
        if (np.any(abar[:-1] <= 0.0) or abar[-1] < 0.0 or np.any(abar > 1.0)
                or np.any(np.diff(abar) >= 0.0)):
            raise ValueError(
                "discrete(): `alphas_cumprod` must be strictly decreasing with entries in (0, 1] "
                "(the last may be 0)."
            )
    with np.errstate(divide="ignore"):
        if betas is None:
            log_alphas = 0.5 * np.log(abar)
        if rescale_zero_terminal_snr:
            log_alphas = 0.5 * np.log(_rescale_zsnr(np.exp(2.0 * log_alphas)))
            lambda_clip = None
        lambdas = log_alphas - 0.5 * np.log(-np.expm1(2.0 * log_alphas))
    if lambda_clip is not None:
        n_clip = int(np.sum(lambdas < float(lambda_clip)))
        if n_clip:
            log_alphas = log_alphas[:-n_clip]
    n = log_alphas.shape[0]
    if n < 2:
        raise ValueError("discrete(): fewer than 2 table entries remain after log-SNR clipping.")
    t_array = np.linspace(0.0, 1.0, n + 1)[1:]
    log_alphas = log_alphas.copy()
    zero_end = bool(np.isneginf(log_alphas[-1]))
    if zero_end and not np.isfinite(log_alphas[-2]):
        raise ValueError("discrete(): only the last entry of `alphas_cumprod` may be 0.")
    log_alphas.flags.writeable = False
    t_array.flags.writeable = False
    # Finite part of the table for log-linear interpolation; with a zero end the
    # last interval [t_{N-1}, 1] interpolates alpha linearly from alpha_{N-1} to 0.
    la_fin = log_alphas[:-1] if zero_end else log_alphas
    t_fin = t_array[:-1] if zero_end else t_array
    la_increasing, t_for_la = la_fin[::-1].copy(), t_fin[::-1].copy()
    t_knee, la_knee, dt = float(t_fin[-1]), float(la_fin[-1]), 1.0 / n

    def marginal_log_alpha(t):
        t = _as_host(t)
        out = _interp(t, t_fin, la_fin)
        if not zero_end:
            return out
        xp = _xp(t)
        w = xp.clip((t - t_knee) / dt, 0.0, 1.0)
        with np.errstate(divide="ignore"):
            tail = la_knee + xp.log1p(-w)
        return xp.where(t > t_knee, tail, out)

    def inverse_lambda(lam):
        lam = _as_host(lam)
        la = _log_alpha_from_lambda(lam)
        with np.errstate(invalid="ignore"):
            out = _interp(la, la_increasing, t_for_la)
        if not zero_end:
            return out
        xp = _xp(lam)
        tail = t_knee + dt * (-xp.expm1(la - la_knee))
        return xp.where(la < la_knee, tail, out)

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


def _check_pos(fn: str, **kw) -> list[float]:
    out = []
    for name, v in kw.items():
        if isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.integer)):
            raise TypeError(f"{fn}(): `{name}` must be a number, got {type(v).__name__}.")
        v = float(v)
        if not (np.isfinite(v) and v > 0.0):
            raise ValueError(f"{fn}(): `{name}` must be finite and > 0, got {v!r}.")
        out.append(v)
    return out


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

    return Schedule("ve", 1.0, 0.0, 1000, False, marginal_log_alpha, inverse_lambda,
                    marginal_log_sigma=marginal_log_sigma, time_input_fn=time_input,
                    t_min=0.0)


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
    sigma_min, sigma_max, sigma_data = _check_pos("edm", sigma_min=sigma_min, sigma_max=sigma_max,
                                                  sigma_data=sigma_data)
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

    return Schedule("edm", sigma_max, sigma_min, 1000, False, marginal_log_alpha, inverse_lambda,
                    marginal_log_sigma=marginal_log_sigma, time_input_fn=time_input,
                    sigma_data=sigma_data, t_min=0.0)


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

    return Schedule("flow", 1.0, 0.0, 1000, False, marginal_log_alpha, inverse_lambda,
                    marginal_log_sigma=marginal_log_sigma, time_input_fn=time_input,
                    t_min=0.0)
