"""Variance-preserving schedules: discrete tables (DDPM and its kin), linear and cosine VP."""

from __future__ import annotations

import hashlib

import numpy as np

from dpm_jax.schedules._schedule import Schedule, _as_host, _interp, _log_alpha_from_lambda, _xp

__all__ = ["LAMBDA_CLIP", "discrete", "rescale_zero_terminal_snr", "vp_cosine", "vp_linear"]

#: Entries of a discrete table whose half log-SNR lies below this value are
#: dropped from its end, as the reference implementation does (they make the
#: last steps numerically unstable).
LAMBDA_CLIP = -5.1


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


def discrete(
    betas=None,
    *,
    alphas_cumprod=None,
    lambda_clip: float | None = LAMBDA_CLIP,
    rescale_zero_terminal_snr: bool = False,
    time_input: str = "reference",
) -> Schedule:
    """Schedule of a model trained on N discrete steps (DDPM and its kin).

    ``log alpha_n = 0.5 * cumsum(log(1 - beta))_n`` (or ``0.5 log alphas_cumprod``),
    on the grid ``t_n = (n + 1) / N``; log alpha_t is piecewise linear in t between
    the grid points (DPM-Solver, arXiv 2206.00927, App. D). Entries whose half
    log-SNR is below ``lambda_clip`` are dropped from the end of the table (the
    reference implementation's rule; ``lambda_clip=None`` keeps every entry, as
    diffusers does).

    The network's time input is ``(t - 1/N) * 1000`` (``time_input="reference"``, the
    reference implementation's convention) or ``(t - 1/N) * N`` (``"index"``: the table
    index n at t_n, what a diffusers pipeline passes for a table of any length N). The
    two agree for N = 1000 (and are then the same schedule).

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
      time_input: "reference" or "index" (see above).

    >>> import numpy as np
    >>> s = discrete(betas=np.linspace(1e-4, 0.02, 1000))
    >>> s.total_N, s.t_eps
    (1000, 0.001)
    >>> z = discrete(betas=np.linspace(1e-4, 0.02, 1000), rescale_zero_terminal_snr=True)
    >>> float(z.marginal_alpha(np.float64(1.0))), float(z.marginal_lambda(np.float64(1.0)))
    (0.0, -inf)
    >>> k = discrete(betas=np.linspace(1e-4, 0.02, 1100), lambda_clip=None, time_input="index")
    >>> float(k.time_input(np.float64(1.0)))  # the last table entry, n = 1099
    1099.0
    """
    if time_input not in ("reference", "index"):
        raise ValueError(
            f"discrete(): `time_input` must be 'reference' or 'index', got {time_input!r}."
        )
    if (betas is None) == (alphas_cumprod is None):
        raise ValueError("discrete(): give exactly one of `betas` or `alphas_cumprod`.")
    if not isinstance(rescale_zero_terminal_snr, (bool, np.bool_)):
        raise TypeError(
            "discrete(): `rescale_zero_terminal_snr` must be a bool, got "
            f"{type(rescale_zero_terminal_snr).__name__}."
        )
    if lambda_clip is not None and not np.isfinite(float(lambda_clip)):
        raise ValueError(
            f"discrete(): `lambda_clip` must be a finite number or None, got {lambda_clip!r}."
        )
    if betas is not None:
        b = _check_table("betas", betas)
        if np.any(b <= 0.0) or np.any(b >= 1.0):
            raise ValueError("discrete(): every entry of `betas` must lie in (0, 1).")
        log_alphas = 0.5 * np.cumsum(np.log1p(-b))
    else:
        abar = _check_table("alphas_cumprod", alphas_cumprod)
        if (
            np.any(abar[:-1] <= 0.0)
            or abar[-1] < 0.0
            or np.any(abar > 1.0)
            or np.any(np.diff(abar) >= 0.0)
        ):
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

    marginal_log_alpha.table = (t_array, log_alphas)  # type: ignore[attr-defined]  # for tests
    digest = hashlib.sha256(t_array.tobytes() + log_alphas.tobytes()).hexdigest()
    index = time_input == "index" and n != 1000  # (for N = 1000 the two are one convention)

    def index_input(t):
        return (_as_host(t) - 1.0 / n) * n

    index_input.scale = float(n)  # type: ignore[attr-defined]  # (see Schedule.input_scale)
    return Schedule(
        "discrete",
        1.0,
        1.0 / n,
        n,
        True,
        marginal_log_alpha,
        inverse_lambda,
        time_input_fn=index_input if index else None,
        spec=("discrete", n, digest, "index") if index else ("discrete", n, digest),
    )


def _check_table(name, values):
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1 or arr.shape[0] < 2:
        raise ValueError(
            f"discrete(): `{name}` must be a 1-D array of length >= 2, got shape {arr.shape}."
        )
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

    return Schedule(
        "vp_linear",
        1.0,
        1e-3,
        1000,
        False,
        marginal_log_alpha,
        inverse_lambda,
        spec=("vp_linear", beta_0, beta_1),
    )


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

    return Schedule(
        "vp_cosine",
        T,
        1e-3,
        1000,
        False,
        marginal_log_alpha,
        inverse_lambda,
        spec=("vp_cosine", s, T),
    )
