r"""The DPM-Solver-v3 sampler (Zheng, Lu, Chen and Zhu, NeurIPS 2023, arXiv 2310.13268).

Notation (as in :mod:`dpm_jax.v3.ems`): ``lambda = log(alpha / sigma)`` increases from the
noisy end; ``*`` and the exponentials act per dimension. With the statistics ``l, s, b``
of an :class:`~dpm_jax.v3.EMS` and (Sec. 3.1-3.2)

    L(lambda) = int_{lambda_T}^lambda l,   S(lambda) = int_{lambda_T}^lambda s,
    B(lambda) = int_{lambda_T}^lambda e^{-S} b,
    f_theta = (sigma eps_theta - l x) / alpha,

the ODE ``dx/dlambda = (dlog alpha/dlambda - l) x - alpha f_theta`` becomes, with
``y = e^{L} x / alpha``, ``dy/dlambda = -e^{L} f_theta``; writing
``f_theta = e^{S} (g_theta + B - B_s)`` (the function the statistics make as flat as
they can: ``g' = e^{-S} (f' - s f - b)``) and normalising ``g`` to equal ``f`` at the
step's start ``s`` (the official code's convention), the exact step from lambda_s to
lambda_t is (Sec. 3.3, eq. 9)

    x_t = (alpha_t / alpha_s) e^{L_s - L_t} x_s
          - alpha_t e^{L_s - L_t} int_s^t e^{(L+S)(lambda) - (L+S)_s} g(lambda) dlambda
          - alpha_t e^{-L_t} int_s^t e^{(L+S)(lambda)} (B(lambda) - B_s) dlambda,

    g(lambda_j) = e^{S_s - S_j} f_j - e^{S_s} (B_j - B_s).

The multistep predictor (Sec. 3.3) replaces ``g`` by its Taylor polynomial at lambda_s,
``sum_{k<=n} g^(k) (lambda - lambda_s)^k / k!``, the derivatives ``g^(k)`` from the
values at the last ``n + 1`` points (the polynomial through them, solved as a
Vandermonde system in ``lambda_j - lambda_s``; with ``p_pseudo`` the *pseudo-order*
estimate, ``k!`` times the k-th divided difference, Sec. 3.4), so

    x_t = (alpha_t / alpha_s) e^{L_s - L_t} x_s - alpha_t e^{L_s - L_t} sum_k E_k g^(k) - (b term),
    E_k = int_{lambda_s}^{lambda_t} e^{(L+S)(lambda) - (L+S)_s} (lambda - lambda_s)^k / k! dlambda.

The corrector (Sec. 3.4, after UniPC) redoes the last step from x_{i-1} with the model's
value at the new point included (points ``i-1, i, i-2, ...``), without another model
call: the model's ``f_i`` (evaluated at the predicted x_i) is kept and only x_i changes.
Its order is the previous predictor's order (plus one with ``c_pseudo``, the official
default, using divided differences); one-point correctors are skipped.

Every coefficient above is a per-dimension array, computed once on the host in float64
NumPy from ``l, s, b`` (``L, S`` by the trapezoidal rule, exact for piecewise-linear
statistics; the exponentials' integrals with ``L + S`` linear between the points of the
statistics' grid, i.e. the exponential trapezoid rule, exact for ``l + s`` constant
such as the degenerated ``l = 1, s = b = 0``; the official code uses the plain trapezoid
rule, which differs by O(h^2) in the grid step h of the statistics). A step then reads

    x_t = c ⊙ x_s + sum_j P_j ⊙ f_j + K

and the whole run is one ``jax.lax.scan`` over the steps with one model call each.

Times between the statistics' points (``times``): with "snap" (the default) each time of
the sampling grid is snapped to the nearest lambda of the EMS grid and the model is called
at that snapped time, as the official code does (``DPM_Solver_v3.__init__``:
``convert_to_indexes`` rounds ``N (lambda - lambda_T) / (lambda_0 - lambda_T)``, then
``convert_to_timesteps``); with the official 1200-point grids the shift is below 0.005 in
lambda. With "interpolate" the sampling grid's lambdas are inserted into the EMS grid, the
statistics taken linear in lambda there, and the model is called at the grid's own times.

``l = 1, s = b = 0`` (``degenerated=True``) is DPM-Solver++ (App. A.2): without the
corrector the sampler then equals dpm_jax's multistep DPM-Solver++ with
``solver_type="taylor"`` (order 3: ``multistep3_variant="third_order"``).
"""

from __future__ import annotations

import collections
import functools
import hashlib
import math
import threading
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from dpm_jax import _boundary, _checks
from dpm_jax.schedules import Schedule
from dpm_jax.v3 import ems as _ems
from dpm_jax.v3.ems import EMS

__all__ = ["V3_SKIP_TYPES", "sample_v3", "v3_plan", "V3Plan"]

#: The sampling grids :func:`sample_v3` accepts.
V3_SKIP_TYPES = ("logSNR", "time_uniform", "time_quadratic", "karras")
#: Where the model is called when a time falls between the statistics' points.
V3_TIMES = ("snap", "interpolate")

_GL_U, _GL_W = np.polynomial.legendre.leggauss(12)
_GL_U, _GL_W = 0.5 * (_GL_U + 1.0), 0.5 * _GL_W  # on [0, 1]


# --------------------------------------------------------------------------- host math


def _phi0(z: np.ndarray) -> np.ndarray:
    """int_0^1 e^{z v} dv = expm1(z) / z (1 at z = 0)."""
    z = np.asarray(z, np.float64)
    small = np.abs(z) < 1e-8
    zs = np.where(small, 1.0, z)
    return np.where(small, 1.0 + 0.5 * z, np.expm1(zs) / zs)


def _phi1(z: np.ndarray) -> np.ndarray:
    """int_0^1 e^{z v} v dv = (e^z (z - 1) + 1) / z^2 (1/2 at z = 0)."""
    z = np.asarray(z, np.float64)
    small = np.abs(z) < 0.5
    zs = np.where(small, 1.0, z)
    closed = (np.exp(zs) * (zs - 1.0) + 1.0) / (zs * zs)
    series = np.zeros_like(z)
    term = np.ones_like(z)  # z^n / n!
    for n in range(25):
        series = series + term / (n + 2)
        term = term * z / (n + 1)
    return np.where(small, series, closed)


def _cumtrapz(lam: np.ndarray, v: np.ndarray) -> np.ndarray:
    h = np.diff(lam).reshape((-1,) + (1,) * (v.ndim - 1))
    out = np.cumsum(0.5 * h * (v[1:] + v[:-1]), axis=0)
    return np.concatenate([np.zeros_like(v[:1]), out], axis=0)


def _cum_exp_lin(lam: np.ndarray, a: np.ndarray, w: np.ndarray | None) -> np.ndarray:
    """int_{lambda_0}^{lambda_j} e^{a} w, with a and w linear between the grid's points
    (the exponential trapezoid rule), at every point j."""
    h = np.diff(lam).reshape((-1,) + (1,) * (a.ndim - 1))
    z = a[1:] - a[:-1]
    e0 = np.exp(a[:-1])
    if w is None:
        cell = h * e0 * _phi0(z)
    else:
        cell = h * e0 * (w[:-1] * _phi0(z) + (w[1:] - w[:-1]) * _phi1(z))
    return np.concatenate([np.zeros_like(a[:1]), np.cumsum(cell, axis=0)], axis=0)


def _moments(lam: np.ndarray, a: np.ndarray, i_s: int, i_t: int, n: int) -> np.ndarray:
    """E_k = int_{lambda_s}^{lambda_t} e^{a - a_s} (lambda - lambda_s)^k / k!, k = 0..n,
    with a linear between the grid's points (Gauss-Legendre, 12 nodes per cell)."""
    out = np.zeros((n + 1,) + a.shape[1:])
    for j in range(i_s, i_t):
        h = lam[j + 1] - lam[j]
        for u, w in zip(_GL_U, _GL_W):
            ex = np.exp((1.0 - u) * (a[j] - a[i_s]) + u * (a[j + 1] - a[i_s]))
            d = lam[j] + u * h - lam[i_s]
            for k in range(n + 1):
                out[k] += (h * w * d**k / math.factorial(k)) * ex
    return out


def _derivative_matrix(lams: np.ndarray, pseudo: bool) -> np.ndarray:
    """M with g^(k)(lambda_0) ~ sum_j M[k, j] g(lambda_j), k = 0..n, from n + 1 points
    (``lams[0]`` the expansion point): the interpolating polynomial's derivatives
    (Vandermonde), or with ``pseudo`` k! times the k-th divided difference."""
    m = lams.shape[0]
    n = m - 1
    M = np.zeros((m, m))
    M[0, 0] = 1.0
    if n == 0:
        return M
    if pseudo:
        D = [np.eye(m)]
        for i in range(1, m):
            prev = D[-1]
            D.append(
                np.stack([(prev[j] - prev[j + 1]) / (lams[j] - lams[i + j]) for j in range(m - i)])
            )
        for k in range(1, m):
            M[k] = D[k][0] * math.factorial(k)
        return M
    d = lams[1:] - lams[0]
    R = np.stack([d**k for k in range(1, n + 1)], axis=1)  # (n, n): row j, power k
    Rinv = np.linalg.inv(R)  # coefficients c_k = sum_j Rinv[k-1, j] (g_j - g_0)
    for k in range(1, n + 1):
        M[k, 1:] = math.factorial(k) * Rinv[k - 1]
        M[k, 0] = -math.factorial(k) * Rinv[k - 1].sum()
    return M


class _Integrals:
    """L, S, B, I, C of the statistics on their grid (float64, (N + 1, D))."""

    def __init__(self, lam: np.ndarray, l, s, b):  # noqa: E741
        self.lam = lam
        self.l = l
        self.L = _cumtrapz(lam, l)
        self.S = _cumtrapz(lam, s)
        self.a = self.L + self.S
        self.B = _cum_exp_lin(lam, -self.S, b)
        self.I = _cum_exp_lin(lam, self.a, None)
        self.C = _cum_exp_lin(lam, self.a, self.B)
        self._mom: dict = {}

    def moments(self, i_s: int, i_t: int, n: int) -> np.ndarray:
        key = (i_s, i_t)
        have = self._mom.get(key)
        if have is None or have.shape[0] <= n:
            have = self._mom[key] = _moments(self.lam, self.a, i_s, i_t, max(n, 3))
        return have[: n + 1]

    def step(self, idx, alpha, pts: list[int], i_t: int, pseudo: bool):
        """(c, P (len(pts), D), K) of ``x_t = c x_s + sum_j P_j f_{pts[j]} + K``, pts[0] = s."""
        i_s = idx[pts[0]]
        gi = [idx[p] for p in pts]
        n = len(pts) - 1
        M = _derivative_matrix(self.lam[gi], pseudo)
        E = self.moments(i_s, i_t, n)  # (n + 1, D)
        a_t = alpha[i_t]
        decay = np.exp(self.L[i_s] - self.L[i_t])
        c = (a_t / alpha[i_s]) * decay
        W = -a_t * decay * np.einsum("kd,kj->jd", E, M)  # (n + 1, D)
        P = W * np.exp(self.S[i_s] - self.S[gi])
        K = -np.sum(W * np.exp(self.S[i_s]) * (self.B[gi] - self.B[i_s]), axis=0)
        K = K - a_t * np.exp(-self.L[i_t]) * (
            self.C[i_t] - self.C[i_s] - self.B[i_s] * (self.I[i_t] - self.I[i_s])
        )
        return c, P, K


# --------------------------------------------------------------------------- the plan


class V3Plan:
    """The host-side plan of a v3 run (float64 NumPy; ``H`` history slots).

    Attributes (``n`` = steps, ``D`` = the sample's shape):
      t: (n + 1,) the snapped times (the model is called at ``t[:n]``).
      index: (n + 1,) their indexes in the EMS grid.
      keep, cc, Pce, Pcx, Kc: the corrector of row i, ``x_i <- keep x_i + cc x_{i-1} +
        sum_k (Pce[i, k] eps_{i-k} + Pcx[i, k] xp_{i-k}) + Kc`` (keep = 1 and the rest 0
        where it is off), with eps_j the model's output at the predicted state xp_j:
        ``sum_k P[i, k] f_{i-k}`` with ``f_j = (sigma_j eps_j - l_j xp_j) / alpha_j``
        expanded on the host.
      cp, Ppe, Ppx, Kp: the predictor, ``x_{i+1} = cp x_i + sum_k (Ppe[i, k] eps_{i-k} +
        Ppx[i, k] xp_{i-k}) + Kp``.
      p_order, c_order: the orders per row (c_order 0: no corrector).
    """

    t: np.ndarray
    index: np.ndarray
    H: int
    p_order: list
    c_order: list

    def __init__(self, **kw):
        self.__dict__.update(kw)

    def arrays(self, dtype) -> dict:
        names = ("t", "keep", "cc", "Pce", "Pcx", "Kc", "cp", "Ppe", "Ppx", "Kp")
        out = {k: jnp.asarray(getattr(self, k), dtype) for k in names}
        out["t"] = out["t"][:-1]
        return out


def _grid(schedule: Schedule, skip_type: str, t0: float, t1: float, steps: int):
    """The sampling grid's ``steps + 1`` times and lambdas (float64)."""
    from dpm_jax.plan.grids import time_grid

    with np.errstate(all="ignore"):
        if skip_type == "karras":  # EDM's rho = 7 spacing of sigma / alpha = e^{-lambda}
            lo = float(schedule.marginal_lambda(np.float64(t0)))
            hi = float(schedule.marginal_lambda(np.float64(t1)))
            ramp = np.linspace(0.0, 1.0, steps + 1)
            smax, smin = np.exp(-lo) ** (1 / 7.0), np.exp(-hi) ** (1 / 7.0)
            lam = -np.log((smax + ramp * (smin - smax)) ** 7.0)
            return np.asarray(schedule.inverse_lambda(lam), np.float64), lam
        t = np.asarray(time_grid(schedule, skip_type, t0, t1, steps), np.float64)
        return t, np.asarray(schedule.marginal_lambda(t), np.float64)


def _explicit_grid(schedule: Schedule, timesteps, steps: int):
    """An explicit grid of ``steps + 1`` times, first to last (decreasing), and its lambdas."""
    if _boundary.is_traced(timesteps):
        raise TypeError(
            "`timesteps` must be concrete (the v3 plan is made on the host), got a traced value."
        )
    try:
        t = np.array(timesteps, np.float64)
    except (TypeError, ValueError):
        raise TypeError(
            f"`timesteps` must be a 1-D array of times, got {type(timesteps).__name__}."
        ) from None
    if t.ndim != 1 or t.shape[0] != steps + 1:
        raise ValueError(
            f"`timesteps` must hold steps + 1 = {steps + 1} times (first to last), got shape "
            f"{t.shape}."
        )
    if getattr(timesteps, "model_timesteps", None) is not None:
        raise ValueError(
            "`timesteps` has model times (a decoupled fit): v3 calls the model at the grid's "
            "own times; pass the times alone (np.asarray(grid))."
        )
    _checks.check_times(schedule, float(t[0]), float(t[-1]), "down")
    if not np.all(np.isfinite(t)) or not np.all(np.diff(t) < 0):
        raise ValueError("`timesteps` must be finite and strictly decreasing (t_start first).")
    with np.errstate(all="ignore"):
        lam = np.asarray(schedule.marginal_lambda(t), np.float64)
    return t, lam


def _orders(
    steps: int, order: int, lower_order_final: bool, use_corrector: bool, c_pseudo, t, half
):
    p_order, c_order = [], []
    prev = 0
    for i in range(steps):
        c = prev + int(c_pseudo)
        on = use_corrector and i >= 1 and (not half or t[i] > 0.5) and c > 1
        c_order.append(c if on else 0)
        p = min(i + 1, order)
        if lower_order_final:
            p = min(p, steps - i)
        p_order.append(p)
        prev = p
    return p_order, c_order


def _build_plan(schedule, lam_ems, l, s, b, shape, idx, t_at, opts) -> V3Plan:  # noqa: E741
    """``t_at``: {EMS index: time} for the grid's times that lie on an EMS point exactly
    (kept as they are); the other points' times are ``inverse_lambda`` of their lambda."""
    steps, order, use_corrector, lower_order_final, half, p_pseudo, c_pseudo = opts
    with np.errstate(all="ignore"):
        t_all = np.asarray(schedule.inverse_lambda(lam_ems), np.float64).copy()
        for j, tj in t_at.items():
            t_all[j] = tj
        alpha = np.asarray(schedule.marginal_alpha(t_all), np.float64)
        sigma = np.asarray(schedule.marginal_std(t_all), np.float64)
    ints = _Integrals(lam_ems, l, s, b)
    t = t_all[idx]
    p_order, c_order = _orders(steps, order, lower_order_final, use_corrector, c_pseudo, t, half)
    H = order + 1
    D = l.shape[1:]
    z = np.zeros((steps,) + D)
    zH = np.zeros((steps, H) + D)
    keep = np.ones(steps)
    cc, Pc, Kc, cp, Pp, Kp = z.copy(), zH.copy(), z.copy(), z.copy(), zH.copy(), z.copy()
    for i in range(steps):
        if c_order[i]:
            pts = [i - 1, i] + [i - k for k in range(2, c_order[i])]
            c, P, K = ints.step(idx, alpha, pts, idx[i], c_pseudo)
            keep[i] = 0.0
            cc[i], Kc[i] = c, K
            for j, p in enumerate(pts):
                Pc[i, i - p] += P[j]
        pts = [i - k for k in range(p_order[i])]
        c, P, K = ints.step(idx, alpha, pts, idx[i + 1], p_pseudo)
        cp[i], Kp[i] = c, K
        for j, p in enumerate(pts):
            Pp[i, i - p] += P[j]
    # f_p = (sigma_p eps_p - l_p x_p) / alpha_p folded into the weights in float64: the
    # run combines the model's outputs and the states directly (1 / alpha is large at
    # the noisy end: forming f in float32 would round it there)
    a_eps = np.zeros((steps, H) + D)
    a_x = np.zeros((steps, H) + D)
    for i in range(steps):
        for k in range(min(H, i + 1)):
            j = idx[i - k]
            a_eps[i, k] = sigma[j] / alpha[j]
            a_x[i, k] = -l[j] / alpha[j]
    rs = (steps,) + tuple(shape)
    rsH = (steps, H) + tuple(shape)
    return V3Plan(
        t=t,
        index=np.asarray(idx),
        keep=keep,
        cc=cc.reshape(rs),
        Pce=(Pc * a_eps).reshape(rsH),
        Pcx=(Pc * a_x).reshape(rsH),
        Kc=Kc.reshape(rs),
        cp=cp.reshape(rs),
        Ppe=(Pp * a_eps).reshape(rsH),
        Ppx=(Pp * a_x).reshape(rsH),
        Kp=Kp.reshape(rs),
        p_order=p_order,
        c_order=c_order,
        H=H,
    )


_PLANS: collections.OrderedDict = collections.OrderedDict()
_PLANS_LOCK = threading.Lock()


def _digest(ems: EMS) -> str:
    h = hashlib.sha256(ems.lambdas.tobytes())
    for name in ("l", "s", "b"):
        v = np.ascontiguousarray(np.asarray(getattr(ems, name)))
        h.update(str(v.dtype).encode() + str(v.shape).encode() + v.tobytes())
    return h.hexdigest()


def _merge_grid(lam_ems: np.ndarray, lam_grid: np.ndarray):
    """The statistics' grid with the sampling grid's lambdas inserted (those within 1e-12
    of a point taken as that point), and the sampling points' indexes in it."""
    near = np.abs(lam_grid[:, None] - lam_ems[None, :]).min(axis=1) <= 1e-12
    lam = np.union1d(lam_ems, lam_grid[~near])
    idx = np.abs(lam_grid[:, None] - lam[None, :]).argmin(axis=1)
    return lam, idx


def _interp(lam_ems: np.ndarray, v: np.ndarray, lam: np.ndarray) -> np.ndarray:
    """v (N + 1, D) on lam_ems, linearly interpolated to lam (held constant outside)."""
    j = np.clip(np.searchsorted(lam_ems, lam) - 1, 0, lam_ems.shape[0] - 2)
    w = np.clip((lam - lam_ems[j]) / (lam_ems[j + 1] - lam_ems[j]), 0.0, 1.0)[:, None]
    out = (1.0 - w) * v[j] + w * v[j + 1]
    on = np.isin(lam, lam_ems)
    out[on] = v[np.searchsorted(lam_ems, lam[on])]  # the statistics' own points: exactly
    return out


def _check_ems(ems, schedule: Schedule, shape: tuple | None) -> None:
    if not isinstance(ems, EMS):
        raise TypeError(f"`ems` must be a dpm_jax.v3.EMS, got {type(ems).__name__}.")
    if _boundary.is_traced((ems.l, ems.s, ems.b)):
        raise TypeError(
            "`ems` holds traced arrays: the v3 coefficients are computed on the host, so the "
            "statistics must be concrete (close over the EMS instead of passing it through jit)."
        )
    if shape is not None and ems.shape != shape:
        raise ValueError(
            f"`ems` was made for samples of shape {ems.shape}, but x_T's samples have shape "
            f"{shape}."
        )
    saved = ems.meta.get("schedule") if isinstance(ems.meta, dict) else None
    if saved is not None and not _ems._same_schedule(saved, schedule):
        raise ValueError(
            f"`ems` was made for the schedule {saved.get('name')!r} (spec {saved.get('spec')}); "
            f"`schedule` ({schedule.name!r}) differs."
        )
    for name in ("l", "s", "b"):
        if not np.all(np.isfinite(np.asarray(getattr(ems, name)))):
            raise ValueError(f"`ems.{name}` must be finite.")


def v3_plan(
    schedule: Schedule,
    ems: EMS,
    *,
    steps: int,
    order: int = 2,
    t_start: float | None = None,
    t_end: float | None = None,
    skip_type: str | None = None,
    timesteps: Any = None,
    use_corrector: bool = True,
    lower_order_final: bool = True,
    half: bool = False,
    p_pseudo: bool = False,
    c_pseudo: bool = True,
    degenerated: bool = False,
    times: str = "snap",
    shape: tuple | None = None,
) -> V3Plan:
    """The host-side plan of :func:`sample_v3` (arguments as there; ``shape``: the
    sample's shape to check the statistics against). Cached by the schedule, the
    statistics' content and the options (8 plans)."""
    _checks.check_schedule(schedule)
    _check_ems(ems, schedule, shape)
    steps = _checks.check_int("steps", steps, 1)
    if isinstance(order, bool) or not isinstance(order, int) or order not in (1, 2, 3):
        raise ValueError(f"`order` must be one of 1, 2, 3; got {order!r}.")
    if steps < order:
        raise ValueError(f"`steps` must be >= `order` ({order}), got steps={steps}.")
    if timesteps is None:
        skip_type = "logSNR" if skip_type is None else skip_type
        _checks.check_choice("skip_type", skip_type, V3_SKIP_TYPES)
    else:
        for name, v in (("skip_type", skip_type), ("t_start", t_start), ("t_end", t_end)):
            if v is not None:
                raise ValueError(
                    f"`{name}` and `timesteps` are two ways to give the grid: pass one of them "
                    f"(`timesteps` alone sets the times from first to last), got {name}={v!r}."
                )
    _checks.check_choice("times", times, V3_TIMES)
    flags = {}
    for name, v in (
        ("use_corrector", use_corrector),
        ("lower_order_final", lower_order_final),
        ("half", half),
        ("p_pseudo", p_pseudo),
        ("c_pseudo", c_pseudo),
        ("degenerated", degenerated),
    ):
        flags[name] = _checks.check_bool(name, v)
    if timesteps is None:
        t0, t1 = _checks.check_times(schedule, t_start, t_end, "down")
        t_grid, lam_grid = _grid(schedule, skip_type or "logSNR", t0, t1, steps)
    else:
        t_grid, lam_grid = _explicit_grid(schedule, timesteps, steps)
        t0, t1 = float(t_grid[0]), float(t_grid[-1])
    if not np.all(np.isfinite(lam_grid)):
        raise ValueError(
            f"the half log-SNR is not finite on the grid from t_start={t0} to t_end={t1} "
            "(alpha = 0 or sigma = 0 there); move t_start / t_end inside."
        )
    lam_ems = ems.lambdas
    half_cell = 0.5 * np.diff(lam_ems)
    lo, hi = lam_ems[0] - half_cell[0], lam_ems[-1] + half_cell[-1]
    if lam_grid.min() < lo - 1e-9 or lam_grid.max() > hi + 1e-9:
        raise ValueError(
            f"the sampling grid spans lambda in [{lam_grid.min():.6g}, {lam_grid.max():.6g}] "
            f"(t from {t0:g} to {t1:g}); `ems` covers [{lam_ems[0]:.6g}, {lam_ems[-1]:.6g}]. "
            "Sample inside the statistics' span (t_start / t_end) or estimate them on a wider "
            "grid (estimate_ems(..., lambda_min=, lambda_max=))."
        )
    if times == "interpolate":
        lam_ems, idx = _merge_grid(lam_ems, lam_grid)
    else:
        idx = np.abs(lam_grid[:, None] - lam_ems[None, :]).argmin(axis=1)
    if not np.all(np.diff(idx) > 0):
        raise ValueError(
            f"`steps` = {steps} is too many for the statistics' grid (N = {ems.N}): two times "
            "snap to the same EMS point. Use fewer steps or statistics on a finer grid."
        )
    opts = (
        steps,
        order,
        flags["use_corrector"],
        flags["lower_order_final"],
        flags["half"],
        flags["p_pseudo"],
        flags["c_pseudo"],
    )
    exact = lam_ems[idx] == lam_grid
    t_at = {int(j): float(tj) for j, tj, e in zip(idx, t_grid, exact) if e}
    key = (
        schedule,
        _digest(ems),
        times,
        flags["degenerated"],
        tuple(int(i) for i in idx),
        tuple(sorted(t_at.items())),
        opts,
    )
    with _PLANS_LOCK:
        plan = _PLANS.get(key)
        if plan is not None:
            _PLANS.move_to_end(key)
            return plan
    flat = (ems.lambdas.shape[0], -1)
    if flags["degenerated"]:
        l = np.ones((lam_ems.shape[0], int(np.prod(ems.shape))))  # noqa: E741
        s = np.zeros_like(l)
        b = np.zeros_like(l)
    else:
        l, s, b = (np.asarray(getattr(ems, k), np.float64).reshape(flat) for k in "lsb")  # noqa: E741
        if times == "interpolate":
            l, s, b = (_interp(ems.lambdas, v, lam_ems) for v in (l, s, b))  # noqa: E741
    plan = _build_plan(schedule, lam_ems, l, s, b, ems.shape, idx, t_at, opts)
    with _PLANS_LOCK:
        _PLANS[key] = plan
        while len(_PLANS) > 8:
            _PLANS.popitem(last=False)
    return plan


# --------------------------------------------------------------------------- the run


def _call_model(net, _data, x, t):
    return net(x, t)


@functools.partial(jax.jit, static_argnames=("H",))
def _run(bound, co: dict, x_T, *, H: int):
    dtype = x_T.dtype
    batch = x_T.shape[0]

    def row(carry, c):
        x, x_prev, E, X = carry
        eps = bound(x, jnp.full((batch,), c["t"], dtype)).astype(dtype)
        E = jnp.concatenate([eps[None], E[:-1]], axis=0)  # E[k]: the output at point i - k
        X = jnp.concatenate([x[None], X[:-1]], axis=0)  # X[k]: the state it was given
        corr = sum(c["Pce"][k] * E[k] + c["Pcx"][k] * X[k] for k in range(H))
        x = c["keep"] * x + c["cc"] * x_prev + corr + c["Kc"]
        pred = sum(c["Ppe"][k] * E[k] + c["Ppx"][k] * X[k] for k in range(H))
        x_next = c["cp"] * x + pred + c["Kp"]
        return (x_next, x, E, X), None

    zero = jnp.zeros((H,) + x_T.shape, dtype)
    (x, _, _, _), _ = jax.lax.scan(row, (x_T, x_T, zero, zero), co)
    return x


def sample_v3(
    model: Callable,
    x_T: Any,
    schedule: Schedule,
    ems: EMS,
    *,
    steps: int,
    order: int = 2,
    t_start: float | None = None,
    t_end: float | None = None,
    skip_type: str | None = None,
    timesteps: Any = None,
    use_corrector: bool = True,
    lower_order_final: bool = True,
    half: bool = False,
    p_pseudo: bool = False,
    c_pseudo: bool = True,
    degenerated: bool = False,
    times: str = "snap",
):
    r"""Samples with DPM-Solver-v3 from ``x_T`` at ``t_start`` down to ``t_end``.

    The multistep predictor-corrector of the paper (Sec. 3.3-3.4; the formulas are in
    :mod:`dpm_jax.v3.solver`): ``steps`` model calls (NFE = steps), each followed by
    the corrector of the point just evaluated (no extra call) and the predictor to the
    next point. The coefficients come from the statistics ``ems`` and are computed once
    on the host in float64; the run is one ``jax.lax.scan``. Works eagerly and under
    ``jax.jit`` (the statistics must then be concrete: close over them).

    Args:
      model: the noise predictor ``model(x, t) -> eps`` with continuous t of shape (B,)
        (as for :func:`dpm_jax.v3.estimate_ems`), e.g. a :class:`dpm_jax.WrappedModel` of
        ``schedule``. Its arrays (parameters, an nnx module's state now, closed-over
        weights) are arguments of the compiled run, never constants.
      x_T: the starting noise (B, *shape), float32 or float64; shape must be the
        statistics' sample shape.
      schedule: the model's schedule (the one the statistics were made for).
      ems: the empirical model statistics (:class:`dpm_jax.v3.EMS`).
      steps: the number of steps (= model calls), >= ``order``.
      order: 1, 2 or 3, the predictor's order (official default: 2 for guided, 3 for
        unconditional sampling).
      t_start, t_end: the span, default ``schedule.T`` and ``schedule.t_eps``; its lambdas
        must lie in the statistics' grid (within half a cell).
      skip_type: the grid, ``steps + 1`` times (None: "logSNR"): "logSNR" (uniform lambda),
        "time_uniform", "time_quadratic" or "karras" (EDM's rho = 7 spacing of
        ``e^{-lambda}``, the official "edm"). Each time is then snapped to the nearest
        lambda of the statistics' grid, where the model is called (``times``).
      timesteps: an explicit grid instead (``skip_type``, ``t_start`` and ``t_end`` then
        unset): ``steps + 1`` decreasing times, first to last, e.g. a
        :func:`dpm_jax.optimize_timesteps` fit without model times.
      use_corrector: apply the corrector (official default True; the official README
        advises turning it off for many steps; its EDM script uses it up to 6 steps).
      lower_order_final: the last steps use order ``min(order, steps left)`` (always,
        as in the official sampler).
      half: the corrector only at the points with ``t > 0.5`` (the official rule, in the
        schedule's own time units; meaningful on VP schedules, t in (0, 1]).
      p_pseudo: the predictor's pseudo-order derivatives (divided differences; official
        default False, used there at 5 steps).
      c_pseudo: the corrector of order ``predictor order + 1`` with divided differences
        (official default True); False: the predictor's order, polynomial derivatives.
      degenerated: use ``l = 1, s = b = 0`` on the statistics' grid (DPM-Solver++),
        as the official ``degenerated`` option.
      times: where the model is called when a time of the grid falls between two points
        of the statistics' grid: "snap" (default, as the official code: at the nearest
        point) or "interpolate" (at the grid's own time, with l, s, b linear in lambda
        between the statistics' points). Measured in ``benchmarks/v3_quality.py``.

    Returns:
      The sample at ``t_end``, in the dtype and shape of ``x_T``.

    Raises:
      TypeError, ValueError: a bad argument (named), before anything is traced.
    """
    _checks.check_schedule(schedule)
    _checks.check_state("x_T", x_T)
    _ems._check_model(model, schedule)
    shape = tuple(x_T.shape[1:])
    plan = v3_plan(
        schedule,
        ems,
        steps=steps,
        order=order,
        t_start=t_start,
        t_end=t_end,
        skip_type=skip_type,
        timesteps=timesteps,
        use_corrector=use_corrector,
        lower_order_final=lower_order_final,
        half=half,
        p_pseudo=p_pseudo,
        c_pseudo=c_pseudo,
        degenerated=degenerated,
        times=times,
        shape=shape,
    )
    x_T = jnp.asarray(x_T)
    dtype = x_T.dtype
    xs = jax.ShapeDtypeStruct(tuple(x_T.shape), dtype)
    ts = jax.ShapeDtypeStruct((x_T.shape[0],), dtype)
    bound = _boundary.bind(_call_model, model, None, (xs, ts))
    return _run(bound, plan.arrays(dtype), x_T, H=plan.H)
