r"""Empirical model statistics (EMS) of DPM-Solver-v3 (arXiv 2310.13268, Sec. 3 and App. C.1).

The statistics are per-dimension coefficients ``l, s, b`` of a noise-prediction model
eps_theta on a grid of the half log-SNR ``lambda = log(alpha / sigma)``. In lambda the
diffusion ODE reads (Sec. 3.1)

    dx/dlambda = (dlog alpha/dlambda) x - sigma eps_theta(x, lambda)

(``dlog alpha/dlambda = sigma^2`` on VP schedules, 0 on VE ones). DPM-Solver-v3 moves a
linear part ``l_lambda * x`` (``*``: per dimension) out of the model,

    dx/dlambda = (dlog alpha/dlambda - l) x - N_theta,   N_theta = sigma eps_theta - l x,

and picks l to make N_theta as flat in x as it can on average over the model's own
marginals (Sec. 3.1):

    l* = argmin_l E_{x_lambda} || grad_x N_theta(x_lambda, lambda) ||_F^2,
    l*_i = E_{x_lambda} [ sigma d eps_i / d x_i ]        (the diagonal of sigma grad_x eps).

The expectation is over ``x_lambda = alpha x_0 + sigma z`` with x_0 from data (or a
teacher's samples) and z ~ N(0, I), or over the states of the model's own ODE from noise
(``estimate_ems(..., x_T=...)``: what a guided model needs); the diagonal is Hutchinson's estimate
``diag(J) = E_v[v * (J v)]`` with Rademacher probes v (exact for a diagonal J), ``J v``
from one forward-mode product (``jax.jvp``).

With ``f_theta = N_theta / alpha = (sigma / alpha) eps_theta - l x / alpha`` and its
total derivative along the ODE trajectory (Sec. 3.2)

    f'_theta = d f_theta / dlambda
             = D[(sigma / alpha) eps_theta] + (sigma / alpha) l eps_theta - l' x / alpha,

where ``D`` is the derivative along the trajectory, one ``jax.jvp`` of
``(x, lambda) -> (sigma / alpha) eps_theta(x, lambda)`` in the direction
``(dx/dlambda, 1)`` (the ``dlog alpha/dlambda`` terms of ``d(l x / alpha)`` cancel), and
``l' = dl/dlambda`` from the smoothed l (:func:`smooth_l`), the second pair of statistics
is the per-dimension least-squares line of f' on f (Sec. 3.2):

    (s*, b*) = argmin_{s, b} E_{x_lambda} || f'_theta - s f_theta - b ||^2,
    s = Cov(f', f) / Var(f),   b = E f' - s E f

(with a relative ridge where f barely varies, and ``s = 0``, ``b = E f'`` where Var(f) is
at rounding level: :func:`sb_point`). ``l = 1, s = 0,
b = 0`` is DPM-Solver++ and ``l = 0, s = -1, b = 0`` DPM-Solver (its ``g`` is then the
noise prediction; ``tests/v3/test_v3_solver.py`` checks both to 1e-14).

Estimation (:func:`estimate_ems`): at each grid point the K samples are processed in
batches (``lax.scan``), so memory holds one batch of model evaluations at a time; the
same noises z are used at every lambda (common random numbers: the estimated l is then a
smooth function of lambda, which keeps its finite-difference derivative l' quiet) and
the same x_lambda serve both passes. Pass 1 costs K * probes jvps per point; pass 2 one
evaluation and one jvp per sample. The samples' noise and probes are drawn per sample
index from ``key``, so the result does not depend on ``batch_size`` (beyond rounding).
The statistics are computed in the dtype of ``data`` (float32 data gives float32
statistics; the batch moments are merged with Chan's pairwise update, which stays
accurate in float32); the grid ``lambdas`` is float64.

>>> import jax, jax.numpy as jnp
>>> from dpm_jax import schedules
>>> from dpm_jax.v3 import estimate_ems
>>> model = lambda x, t: 0.5 * x  # a toy noise predictor, eps(x, t) = x / 2
>>> data = jax.random.normal(jax.random.key(0), (16, 3))
>>> ems = estimate_ems(model, schedules.vp_linear(), data, n_points=4, key=jax.random.key(1))
>>> ems.lambdas.shape, ems.l.shape, ems.s.shape, ems.meta["K"]
((5,), (5, 3), (5, 3), 16)
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import zipfile
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from dpm_jax import _boundary, _checks, _progress
from dpm_jax.schedules import Schedule

__all__ = [
    "EMS",
    "ems_lambdas",
    "estimate_ems",
    "estimate_l",
    "estimate_sb",
    "l_point",
    "load_ems",
    "load_official_ems",
    "noised_data",
    "save_ems",
    "sb_point",
    "smooth_l",
]

#: The ``format`` entry of a file written by :func:`save_ems`.
FORMAT = "dpm_jax.ems/1"


# --------------------------------------------------------------------------- the container


@dataclasses.dataclass(frozen=True, eq=False)
class EMS:
    """Empirical model statistics on a lambda grid (a pytree).

    Attributes:
      lambdas: the grid, (N + 1,) float64 NumPy, increasing: index 0 is the noisiest
        point (lambda at the start of sampling), index N the cleanest (as in the
        official files).
      l: (N + 1, *shape), the linear coefficient (the smoothed one, with which f was
        built).
      s: (N + 1, *shape), the slope of f' on f.
      b: (N + 1, *shape), the intercept of f' on f.
      meta: what they were made for: ``schedule`` (name, spec, T, t_eps, N and log alpha
        / log sigma at 9 times, to check a schedule against), ``N``, ``K`` (samples),
        ``probes``, ``smooth``, ``states`` ("data" or "ode", see :func:`estimate_ems`),
        ``guidance_scale`` (None without guidance), ``dtype``,
        ``source`` (``"estimate_ems"`` or ``"official"``) and ``dpm_jax`` (version).

    The leaves are ``l, s, b``; ``lambdas`` and ``meta`` are static (they stay NumPy
    and a dict through ``jax.tree_util`` and ``jit``).
    """

    lambdas: np.ndarray
    l: Any  # noqa: E741  (the paper's name)
    s: Any
    b: Any
    meta: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        lam = np.array(self.lambdas, dtype=np.float64)
        if lam.ndim != 1 or lam.shape[0] < 2:
            raise ValueError(
                f"EMS: `lambdas` must be a 1-D grid of N + 1 >= 2 points, got shape {lam.shape}."
            )
        if not np.all(np.isfinite(lam)) or not np.all(np.diff(lam) > 0):
            raise ValueError("EMS: `lambdas` must be finite and strictly increasing.")
        lam.flags.writeable = False
        object.__setattr__(self, "lambdas", lam)
        shapes = {name: tuple(np.shape(getattr(self, name))) for name in ("l", "s", "b")}
        for name, shape in shapes.items():
            if len(shape) < 1 or shape[0] != lam.shape[0]:
                raise ValueError(
                    f"EMS: `{name}` must have shape (N + 1, *shape) = ({lam.shape[0]}, ...) "
                    f"like `lambdas`, got {shape}."
                )
        if len(set(shapes.values())) != 1:
            raise ValueError(f"EMS: `l`, `s` and `b` must have one shape, got {shapes}.")
        if not isinstance(self.meta, dict):
            raise TypeError(f"EMS: `meta` must be a dict, got {type(self.meta).__name__}.")

    @property
    def N(self) -> int:
        """The number of intervals of the grid (N + 1 points)."""
        return int(self.lambdas.shape[0] - 1)

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape of one sample."""
        return tuple(np.shape(self.l)[1:])

    def __repr__(self) -> str:
        return (
            f"EMS(N={self.N}, shape={self.shape}, lambdas=[{self.lambdas[0]:.4g}, "
            f"{self.lambdas[-1]:.4g}], meta={self.meta!r})"
        )


class _Static:
    """The static part of an EMS pytree: hashable and comparable by content."""

    def __init__(self, lambdas: np.ndarray, meta: dict):
        self.lambdas, self.meta = lambdas, meta
        self._key = (lambdas.tobytes(), json.dumps(meta, sort_keys=True, default=repr))

    def __eq__(self, other) -> bool:
        return isinstance(other, _Static) and self._key == other._key

    def __hash__(self) -> int:
        return hash(self._key)


def _ems_flatten(e: EMS):
    return (e.l, e.s, e.b), _Static(e.lambdas, e.meta)


def _ems_unflatten(aux: _Static, children) -> EMS:
    obj = object.__new__(EMS)  # leaves may be tracers or placeholders: no validation
    for name, v in zip(("lambdas", "l", "s", "b", "meta"), (aux.lambdas, *children, aux.meta)):
        object.__setattr__(obj, name, v)
    return obj


jax.tree_util.register_pytree_node(EMS, _ems_flatten, _ems_unflatten)


# --------------------------------------------------------------------------- the grid


def ems_lambdas(
    schedule: Schedule,
    n_points: int,
    lambda_min: float | None = None,
    lambda_max: float | None = None,
) -> np.ndarray:
    """The grid of the statistics: ``linspace(lambda_min, lambda_max, n_points + 1)``, float64.

    Defaults: ``lambda_min = lambda(schedule.T)`` and ``lambda_max = lambda(schedule.t_eps)``,
    the official code's grid for its default sampling span (``t_start = T``, ``t_end =
    1 / total_N``, which is ``t_eps`` on dpm_jax's VP schedules; ``sigma_min`` on ``edm``).
    Both must be finite and inside the schedule's range (a schedule with alpha_T = 0,
    lambda = -inf, needs an explicit ``lambda_min``).

    >>> from dpm_jax import schedules
    >>> g = ems_lambdas(schedules.vp_linear(), 4)
    >>> g.shape, round(float(g[0]), 4), round(float(g[-1]), 4)
    ((5,), -5.025, 4.5577)
    """
    _checks.check_schedule(schedule)
    n = _checks.check_int("n_points", n_points, 1)
    with np.errstate(all="ignore"):
        lam_T = float(schedule.marginal_lambda(np.float64(schedule.T)))
        lam_top = float(schedule.marginal_lambda(np.float64(schedule.lowest_time)))
        lam_eps = float(schedule.marginal_lambda(np.float64(schedule.t_eps)))
    lo = lam_T if lambda_min is None else _number("lambda_min", lambda_min)
    hi = lam_eps if lambda_max is None else _number("lambda_max", lambda_max)
    if not np.isfinite(lo):
        raise ValueError(
            f"`lambda_min`: the schedule {schedule.name!r} has lambda(T) = {lam_T} (alpha_T = 0); "
            "pass a finite `lambda_min`."
        )
    if not np.isfinite(hi):
        raise ValueError(
            f"`lambda_max`: lambda(t_eps) = {lam_eps} on the schedule {schedule.name!r}; "
            "pass a finite `lambda_max`."
        )
    tol = 1e-9 * max(1.0, abs(lam_T), abs(lam_top) if np.isfinite(lam_top) else 1.0)
    if lo < lam_T - tol:
        raise ValueError(
            f"`lambda_min` must be >= lambda(T) = {lam_T!r} (the schedule's noisiest point), "
            f"got {lo!r}."
        )
    if hi > lam_top + tol:
        raise ValueError(
            f"`lambda_max` must be <= {lam_top!r} (lambda at the schedule's lowest time), "
            f"got {hi!r}."
        )
    if not lo < hi:
        raise ValueError(f"need `lambda_min` < `lambda_max`, got {lo!r} and {hi!r}.")
    return np.linspace(lo, hi, n + 1)


# --------------------------------------------------------------------------- traced parts


def _at_lambda(schedule: Schedule, lam):
    """(t, alpha, sigma) at lambda, in lambda's dtype (traceable)."""
    t = schedule.inverse_lambda(lam)
    return t, schedule.marginal_alpha(t), schedule.marginal_std(t)


def _dlog_alpha(schedule: Schedule, lam):
    """d log alpha / d lambda at lambda (sigma^2 on VP schedules, 0 on VE ones)."""
    return jax.jvp(
        lambda u: schedule.marginal_log_alpha(schedule.inverse_lambda(u)),
        (lam,),
        (jnp.ones_like(lam),),
    )[1]


def _eps(model: Callable, x, t):
    out = model(x, jnp.broadcast_to(t, (x.shape[0],)))
    if not hasattr(out, "shape") or tuple(out.shape) != tuple(x.shape):
        raise ValueError(
            f"`model` must return a noise prediction of the input's shape {tuple(x.shape)}, got "
            f"{getattr(out, 'shape', type(out).__name__)}."
        )
    return out.astype(x.dtype)


def _rows(sampler, key, idx, shape, dtype):
    """One draw per sample index (independent of how the samples are batched)."""
    return jax.vmap(lambda i: sampler(jax.random.fold_in(key, i), shape, dtype))(idx)


def _normal(key, shape, dtype):
    # drawn in float32 whatever the data's dtype, so float32 and float64 runs see one noise
    return jax.random.normal(key, shape, jnp.float32).astype(dtype)


def _rademacher(key, shape, dtype):
    return jax.random.rademacher(key, shape, jnp.int32).astype(dtype)


def _batches(data, batch_size: int):
    """data (K, *shape) -> (x0, index, weight) of shape (n_batches, B, ...); the last
    batch is padded with zero samples of weight 0."""
    k = data.shape[0]
    bs = min(batch_size, k)
    nb = -(-k // bs)
    pad = nb * bs - k
    x0 = data
    if pad:
        x0 = jnp.concatenate([data, jnp.zeros((pad,) + data.shape[1:], data.dtype)])
    idx = jnp.arange(nb * bs)
    w = (idx < k).astype(data.dtype)
    return x0.reshape((nb, bs) + data.shape[1:]), idx.reshape(nb, bs), w.reshape(nb, bs)


def _bcast(w, x):
    return w.reshape(w.shape + (1,) * (x.ndim - 1))


def noised_data(schedule: Schedule, data, lam, key):
    """The samples ``x_lambda = alpha x_0 + sigma z`` at which the statistics are measured.

    ``z`` of sample k is ``normal(fold_in(fold_in(key, 0), k))`` (drawn in float32, then
    cast to the dtype of ``data``): the same at every lambda, whatever the batching.
    Traceable (``lam`` and ``key`` may be traced).

    >>> import jax, jax.numpy as jnp
    >>> from dpm_jax import schedules
    >>> noised_data(schedules.vp_linear(), jnp.zeros((4, 2)), 0.0, jax.random.key(0)).shape
    (4, 2)
    """
    data = jnp.asarray(data)
    lam = jnp.asarray(lam, data.dtype)
    _, alpha, sigma = _at_lambda(schedule, lam)
    idx = jnp.arange(data.shape[0])
    z = _rows(_normal, jax.random.fold_in(key, 0), idx, data.shape[1:], data.dtype)
    return alpha * data + sigma * z


def l_point(
    model: Callable,
    schedule: Schedule,
    data,
    lam,
    key,
    *,
    probes: int = 1,
    batch_size: int | None = None,
):
    """The linear coefficient at one lambda: ``l = sigma E_{x_lambda, v}[v * (J v)]``.

    J is ``d eps_theta(x, t) / d x`` at ``t = t(lambda)``, v Rademacher probes (``probes``
    per sample, each one ``jax.jvp``), the samples x_lambda those of :func:`noised_data`,
    processed ``batch_size`` at a time. Returns an array of one sample's shape, in the
    dtype of ``data``. Pure and traceable: ``jax.jit`` it with the model closed over.

    >>> import jax, jax.numpy as jnp
    >>> from dpm_jax import schedules
    >>> sch = schedules.vp_linear()
    >>> model = lambda x, t: 3.0 * x  # J = 3 I
    >>> l = l_point(model, sch, jnp.ones((8, 2)), 0.0, jax.random.key(0))
    >>> bool(jnp.allclose(l, 3.0 * sch.marginal_std(sch.inverse_lambda(jnp.asarray(0.0)))))
    True
    """
    data = jnp.asarray(data)
    dtype, shape = data.dtype, data.shape[1:]
    lam = jnp.asarray(lam, dtype)
    _, alpha, sigma = _at_lambda(schedule, lam)
    kz = jax.random.fold_in(key, 0)

    def states(x0, idx):
        return alpha * x0 + sigma * _rows(_normal, kz, idx, shape, dtype)

    return _l_from(model, schedule, data, states, lam, key, probes, batch_size)[0]


def _l_from(model, schedule, data, states, lam, key, probes, batch_size):
    """(l, eps) at lambda: Hutchinson's estimate at the states ``states(rows, index)`` of
    the batches of ``data``, and the model's output there (K, *shape), the primal of the
    first probe's jvp."""
    dtype, shape, k = data.dtype, data.shape[1:], data.shape[0]
    t, _, sigma = _at_lambda(schedule, lam)
    kv = jax.random.fold_in(key, 1)
    bs = k if batch_size is None else batch_size

    def batch(acc, xs):
        x0, idx, w = xs
        x = states(x0, idx)

        def probe(acc_p, p):
            v = _rows(_rademacher, jax.random.fold_in(kv, p), idx, shape, dtype)
            eps, jv = jax.jvp(lambda y: _eps(model, y, t), (x,), (v,))
            return acc_p + jnp.sum(_bcast(w, x) * v * jv, axis=0), eps

        acc, eps = jax.lax.scan(probe, acc, jnp.arange(probes))
        return acc, eps[0]

    acc, eps = jax.lax.scan(batch, jnp.zeros(shape, dtype), _batches(data, bs))
    return sigma * acc / (k * probes), eps.reshape((-1,) + shape)[:k]


def _moments(f, g, w):
    """Weighted count, means and centred (co)moments of one batch."""
    n = jnp.sum(w)
    wb = _bcast(w, f)
    mf, mg = jnp.sum(wb * f, 0) / n, jnp.sum(wb * g, 0) / n
    df, dg = f - mf, g - mg
    return n, mf, mg, jnp.sum(wb * df * df, 0), jnp.sum(wb * df * dg, 0)


def _merge(a, b):
    """Chan et al.'s pairwise update of (count, means, M2 of f, co-moment of f and g)."""
    na, mfa, mga, vfa, cfa = a
    nb, mfb, mgb, vfb, cfb = b
    n = na + nb
    r = nb / n
    dmf, dmg = mfb - mfa, mgb - mga
    return (
        n,
        mfa + dmf * r,
        mga + dmg * r,
        vfa + vfb + dmf * dmf * na * r,
        cfa + cfb + dmf * dmg * na * r,
    )


def sb_point(
    model: Callable,
    schedule: Schedule,
    data,
    lam,
    l,  # noqa: E741
    dl,
    key,
    *,
    batch_size: int | None = None,
    ridge: float = 1e-4,
    time_difference: float | None = None,
):
    """``(s, b)`` at one lambda, given l and ``dl = dl/dlambda`` there.

    ``f = (sigma / alpha) eps - l x / alpha`` and its total derivative along the ODE
    ``f' = D[(sigma / alpha) eps] + (sigma / alpha) l eps - dl x / alpha`` (D: one
    ``jax.jvp`` in (x, lambda) along ``(dx/dlambda, 1)``), at the samples of
    :func:`noised_data`; then per dimension ``s = Cov(f', f) / Var(f)`` and ``b = E f' -
    s E f``, with a relative ridge: ``s = Cov(f', f) / (Var(f) + ridge * mean_d Var(f))``
    (``mean_d``: over the dimensions). The ridge shrinks s towards 0 only where f barely
    varies over the samples (there the slope is a ratio of two tiny numbers: on the
    digits, states along the ODE gave such pixels s ~ 78 and v3 diverged; any ridge from
    1e-6 to 1e-2 fixed it and changed v3's error elsewhere by < 2 %); ``s = 0`` where
    Var(f) is at the rounding level of the terms of f (:data:`VAR_FLOOR`: a pixel
    constant over the data). Costs one evaluation and one jvp per sample. Pure and
    traceable; arrays of one sample's shape, in the dtype of ``data``.

    ``time_difference``: None, the model's derivative in time (inside D) by forward-mode
    autodiff; a number dt > 0, by the model's central difference over ``t -+ dt`` at the
    same x (the window kept inside the schedule's times; 2 more evaluations per sample):
    ``d eps / d lambda = (eps(x, t - dt) - eps(x, t + dt)) / (lambda(t - dt) -
    lambda(t + dt))``. For a network trained on integer time steps (a DDPM UNet with a
    sinusoidal time embedding) whose derivative between the steps oscillates about the
    trend: ``dt = 10 / schedule.total_N``, ten of its steps.

    >>> import jax, jax.numpy as jnp
    >>> from dpm_jax import schedules
    >>> s, b = sb_point(lambda x, t: 0.5 * x, schedules.vp_linear(), jnp.ones((8, 2)), 0.0,
    ...                 jnp.zeros(2), jnp.zeros(2), jax.random.key(0))
    >>> s.shape, b.shape
    ((2,), (2,))
    """
    data = jnp.asarray(data)
    dtype, shape = data.dtype, data.shape[1:]
    lam = jnp.asarray(lam, dtype)
    _, alpha, sigma = _at_lambda(schedule, lam)
    kz = jax.random.fold_in(key, 0)

    def states(x0, idx):
        return alpha * x0 + sigma * _rows(_normal, kz, idx, shape, dtype)

    s, b, _ = _sb_from(
        model, schedule, data, states, lam, l, dl, batch_size, ridge, time_difference
    )
    return s, b


#: s is set to 0 (and b to E f') in the dimensions where Var(f) is at the rounding level of
#: the terms f is made of: Var(f) <= (VAR_FLOOR eps)^2 E[((sigma / alpha) eps_theta)^2 +
#: (l x / alpha)^2], eps the dtype's machine epsilon (a pixel that is constant over the data
#: has a constant f, whatever x; its "slope" would be a ratio of two rounding errors)
VAR_FLOOR = 16.0


def _sb_from(model, schedule, data, states, lam, l, dl, batch_size, ridge, dt=None):  # noqa: E741
    """(s, b, eps) at lambda from the states ``states(rows, index)`` of the batches of
    ``data`` (eps: the model's output there, (K, *shape))."""
    dtype, shape, k = data.dtype, data.shape[1:], data.shape[0]
    l, dl = jnp.asarray(l, dtype), jnp.asarray(dl, dtype)  # noqa: E741
    t, alpha, sigma = _at_lambda(schedule, lam)
    a = _dlog_alpha(schedule, lam)
    bs = k if batch_size is None else batch_size

    def scaled_eps(y, u):
        tu, au, su = _at_lambda(schedule, u)
        return (su / au) * _eps(model, y, tu)

    def batch(carry, xs):
        x0, idx, w = xs
        x = states(x0, idx)
        eps = _eps(model, x, t)
        xdot = a * x - sigma * eps  # dx/dlambda on the model's ODE
        if dt is None:
            _, d_scaled = jax.jvp(scaled_eps, (x, lam), (xdot, jnp.ones_like(lam)))
        else:  # the x part by jvp, the time part by the model's central difference
            _, dx_part = jax.jvp(lambda y: _eps(model, y, t), (x,), (xdot,))
            t_lo = jnp.maximum(t - dt, schedule.lowest_time)
            t_hi = jnp.minimum(t + dt, schedule.T)
            lam_lo = schedule.marginal_lambda(t_lo)
            lam_hi = schedule.marginal_lambda(t_hi)
            d_eps = (_eps(model, x, t_lo) - _eps(model, x, t_hi)) / (lam_lo - lam_hi)
            # d/dlambda [(sigma / alpha) eps] with d(sigma / alpha)/dlambda = -sigma / alpha
            d_scaled = (sigma / alpha) * (dx_part + d_eps - eps)
        f = (sigma / alpha) * eps - l * x / alpha
        fp = d_scaled + (sigma / alpha) * l * eps - dl * x / alpha
        size = ((sigma / alpha) * eps) ** 2 + (l * x / alpha) ** 2
        moments, rs = carry
        rs = rs + jnp.sum(_bcast(w, x) * size, axis=0)
        return (_merge(moments, _moments(f, fp, w)), rs), eps

    zero = jnp.zeros(shape, dtype)
    init = ((jnp.zeros((), dtype), zero, zero, zero, zero), zero)
    ((_, mf, mg, vf, cfg), rs), eps = jax.lax.scan(batch, init, _batches(data, bs))
    floor = (VAR_FLOOR * jnp.finfo(dtype).eps) ** 2 * rs
    pos = vf > floor
    s = jnp.where(
        pos, cfg / jnp.where(pos, vf + jnp.asarray(ridge, dtype) * jnp.mean(vf), 1.0), 0.0
    )
    return s, mg - s * mf, eps.reshape((-1,) + shape)[:k]


# --------------------------------------------------------------------------- smoothing


def smooth_l(lambdas, l, smooth: int = 0) -> tuple[np.ndarray, np.ndarray]:  # noqa: E741
    """The smoothed l and its derivative ``dl/dlambda`` on the grid (float64 NumPy).

    ``smooth = w >= 1``: a Savitzky-Golay filter, the least-squares quadratic in lambda
    through the ``2 w + 1`` grid points around each point (the window shifted inwards at
    the ends), its value and slope at the point. ``smooth = 0``: l as it is, and the
    derivative by second-order finite differences (``np.gradient``, first order on a
    2-point grid).

    >>> import numpy as np
    >>> lam = np.linspace(0.0, 1.0, 11)
    >>> ls, dl = smooth_l(lam, (lam**2)[:, None], smooth=2)  # quadratics are kept exactly
    >>> bool(np.allclose(ls[:, 0], lam**2)), bool(np.allclose(dl[:, 0], 2 * lam))
    (True, True)
    """
    lam = np.asarray(lambdas, np.float64)
    arr = np.asarray(l, np.float64)
    w = _checks.check_int("smooth", smooth, 0)
    n = lam.shape[0]
    if lam.ndim != 1 or n < 2 or arr.shape[:1] != (n,):
        raise ValueError(
            f"smooth_l(): need `lambdas` (N + 1,) with N >= 1 and `l` (N + 1, ...), got "
            f"{lam.shape} and {arr.shape}."
        )
    if w == 0:
        return arr.copy(), np.gradient(arr, lam, axis=0, edge_order=2 if n >= 3 else 1)
    m = 2 * w + 1
    if m > n:
        raise ValueError(
            f"`smooth` = {w} needs a window of {m} grid points, but the grid has {n}; "
            f"use smooth <= {(n - 1) // 2}."
        )
    flat = arr.reshape(n, -1)
    val, der = np.empty_like(flat), np.empty_like(flat)
    for i in range(n):
        lo = min(max(i - w, 0), n - m)
        u = lam[lo : lo + m] - lam[i]
        coef = np.linalg.pinv(np.stack([np.ones(m), u, u * u], axis=1))  # (3, m)
        val[i], der[i] = coef[0] @ flat[lo : lo + m], coef[1] @ flat[lo : lo + m]
    return val.reshape(arr.shape), der.reshape(arr.shape)


# --------------------------------------------------------------------------- drivers


def _number(name: str, v) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
        raise TypeError(f"`{name}` must be a number, got {type(v).__name__} {v!r}.")
    return float(v)


def _check_model(model, schedule: Schedule) -> None:
    from dpm_jax._model import WrappedModel

    if not callable(model):
        raise TypeError(
            f"`model` must be callable as model(x, t) -> noise prediction, got "
            f"{type(model).__name__}."
        )
    if isinstance(model, WrappedModel):
        if not schedule.same_as(model.schedule):
            raise ValueError(
                f"`schedule` ({schedule.name!r}) is not the schedule `model` was wrapped with "
                f"({model.schedule.name!r})."
            )
        if model.stateful:
            raise ValueError(
                "`model` carries a guidance state (APG); the statistics need a memoryless "
                "noise predictor eps(x, t)."
            )


def _check_data(data, name: str = "data"):
    try:
        arr = jnp.asarray(data)
    except TypeError:
        raise TypeError(
            f"`{name}` must be an array of samples (K, *shape), got {type(data).__name__}."
        ) from None
    if not jnp.issubdtype(arr.dtype, jnp.floating):
        raise TypeError(f"`{name}` must have a floating dtype, got {arr.dtype}.")
    if arr.ndim < 2 or arr.shape[0] < 2:
        raise ValueError(
            f"`{name}` must have shape (K, *shape) with K >= 2 samples and a sample shape, got "
            f"{tuple(arr.shape)}."
        )
    if not isinstance(arr, jax.core.Tracer) and not bool(jnp.all(jnp.isfinite(arr))):
        raise ValueError(f"`{name}` must be finite.")
    return arr


def _check_ridge(ridge) -> float:
    r = _number("ridge", ridge)
    if not (np.isfinite(r) and r >= 0.0):
        raise ValueError(f"`ridge` must be a finite number >= 0, got {ridge!r}.")
    return r


def _check_time_difference(dt, schedule: Schedule) -> float | None:
    if dt is None:
        return None
    v = _number("time_difference", dt)
    span = float(schedule.T) - float(schedule.lowest_time)
    if not (np.isfinite(v) and 0.0 < v < span):
        raise ValueError(
            f"`time_difference` must be None or a number in (0, {span:g}) (the schedule's "
            f"times), got {dt!r}."
        )
    return v


def _check_key(key) -> None:
    ok = isinstance(key, jax.Array) and (
        (jnp.issubdtype(key.dtype, jax.dtypes.prng_key) and key.shape == ())
        or (key.dtype == jnp.uint32 and key.shape == (2,))
    )
    if not ok:
        raise TypeError(
            f"`key` must be one jax PRNG key (jax.random.key(seed) or PRNGKey(seed)), got "
            f"{type(key).__name__} {getattr(key, 'dtype', '')}{getattr(key, 'shape', '')}."
        )


def _check_grid(lambdas, schedule: Schedule) -> np.ndarray:
    lam = np.asarray(lambdas, np.float64)
    if lam.ndim != 1 or lam.shape[0] < 2:
        raise ValueError(f"`lambdas` must be a 1-D grid of >= 2 points, got shape {lam.shape}.")
    if not np.all(np.isfinite(lam)) or not np.all(np.diff(lam) > 0):
        raise ValueError("`lambdas` must be finite and strictly increasing.")
    ems_lambdas(schedule, 1, float(lam[0]), float(lam[-1]))  # inside the schedule's range
    return lam


def _call_model(net, _data, x, t):
    return net(x, t)


def _bound(model: Callable, data, batch_size: int) -> _boundary.Bound:
    """The model as the library's model boundary holds it (:mod:`dpm_jax._boundary`):
    its arrays (parameters, a flax.nnx module's state as it is now, arrays a closure
    reads) are arguments of the compiled point functions, never constants, and no cache
    keeps them alive; traced once at the batch's shapes."""
    x = jax.ShapeDtypeStruct((batch_size,) + tuple(data.shape[1:]), data.dtype)
    t = jax.ShapeDtypeStruct((batch_size,), data.dtype)
    return _boundary.bind(_call_model, model, None, (x, t))


@functools.partial(jax.jit, static_argnames=("schedule", "probes", "batch_size"))
def _l_jit(bound, x0, u, key, *, schedule, probes, batch_size):
    return l_point(bound, schedule, x0, u, key, probes=probes, batch_size=batch_size)


@functools.partial(jax.jit, static_argnames=("schedule", "batch_size", "dt"))
def _sb_jit(bound, x0, u, li, dli, key, ridge, *, schedule, batch_size, dt):
    return sb_point(
        bound, schedule, x0, u, li, dli, key, batch_size=batch_size, ridge=ridge, time_difference=dt
    )


def _compiled(
    kind: str, model: Callable, schedule: Schedule, probes: int, batch_size: int, data, dt=None
):
    """The jitted point function (``l_point`` or ``sb_point``) for this model: compiled
    once per model structure, shapes and settings; the model's arrays are its inputs."""
    bound = _bound(model, data, batch_size)
    if kind == "l":
        return functools.partial(
            _l_jit, bound, schedule=schedule, probes=probes, batch_size=batch_size
        )
    return functools.partial(_sb_jit, bound, schedule=schedule, batch_size=batch_size, dt=dt)


class _Bar:
    def __init__(self, progress: bool, total: int, desc: str):
        progress = _checks.check_bool("progress", progress)
        self.bar = None
        if progress:
            _progress.require_tqdm()
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc=desc, unit="lambda")

    def update(self):
        if self.bar is not None:
            self.bar.update(1)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def _run_l(model, schedule, data, lam, key, probes, batch_size, bar) -> np.ndarray:
    point = _compiled("l", model, schedule, probes, batch_size, data)
    out = []
    for u in lam:
        out.append(np.asarray(point(data, jnp.asarray(u, data.dtype), key)))
        bar.update()
    return np.stack(out)


def _run_sb(model, schedule, data, lam, l, dl, key, batch_size, bar, ridge, dt):  # noqa: E741
    point = _compiled("sb", model, schedule, 1, batch_size, data, dt)
    r = jnp.asarray(ridge, data.dtype)
    s, b = [], []
    for i, u in enumerate(lam):
        si, bi = point(
            data,
            jnp.asarray(u, data.dtype),
            jnp.asarray(l[i], data.dtype),
            jnp.asarray(dl[i], data.dtype),
            key,
            r,
        )
        s.append(np.asarray(si))
        b.append(np.asarray(bi))
        bar.update()
    return np.stack(s), np.stack(b)


def _common(model, schedule, data, key, batch_size, name: str = "data"):
    _checks.check_schedule(schedule)
    _check_model(model, schedule)
    arr = _check_data(data, name)
    _check_key(key)
    bs = 64 if batch_size is None else _checks.check_int("batch_size", batch_size, 1)
    return arr, min(bs, arr.shape[0])


# --------------------------------------------------------------------------- along the ODE


def _given(x, _idx):
    return x


@functools.partial(jax.jit, static_argnames=("schedule", "probes", "batch_size"))
def _l_ode_jit(bound, X, u, key, *, schedule, probes, batch_size):
    return _l_from(bound, schedule, X, _given, u, key, probes, batch_size)


@functools.partial(jax.jit, static_argnames=("schedule", "batch_size", "dt"))
def _sb_ode_jit(bound, X, u, li, dli, ridge, *, schedule, batch_size, dt):
    return _sb_from(bound, schedule, X, _given, u, li, dli, batch_size, ridge, dt)


def _ode_coefficients(schedule: Schedule, lam: np.ndarray) -> np.ndarray:
    """(N, 6) float64: the DPM-Solver++(2M) step from grid point j to j + 1 (Lu et al.
    2022b, Alg. 2; first order at j = 0), as ``alpha_j, sigma_j, sigma_{j+1} / sigma_j,
    1 + 1 / (2 r), -1 / (2 r), alpha_{j+1} expm1(-h_j)`` with ``h_j = lambda_{j+1} -
    lambda_j`` and ``r = h_{j-1} / h_j``."""
    with np.errstate(all="ignore"):
        t = np.asarray(schedule.inverse_lambda(lam), np.float64)
        alpha = np.asarray(schedule.marginal_alpha(t), np.float64)
        sigma = np.asarray(schedule.marginal_std(t), np.float64)
    h = np.diff(lam)
    co = np.zeros((h.shape[0], 6))
    co[:, 0], co[:, 1], co[:, 2] = alpha[:-1], sigma[:-1], sigma[1:] / sigma[:-1]
    co[:, 5] = alpha[1:] * np.expm1(-h)
    co[0, 3] = 1.0
    r = h[:-1] / h[1:]
    co[1:, 3], co[1:, 4] = 1.0 + 0.5 / r, -0.5 / r
    return co


@jax.jit
def _advance(X, eps, prev, co):
    """``(x_{j+1}, x0_j)``: one step of :func:`_ode_coefficients`'s row ``co`` from the
    states ``X`` at point j with the model's output ``eps`` there (``prev``: the data
    prediction at point j - 1)."""
    x0 = (X - co[1] * eps) / co[0]
    return co[2] * X - co[5] * (co[3] * x0 + co[4] * prev), x0


def _along_ode(point, schedule, x_T, lam, bar):
    """Runs ``point(X, j) -> (stats, eps)`` at every grid point j, with X the states of
    the model's ODE from x_T at lambda_0, advanced by :func:`_advance` with those eps
    (no extra model call); returns the stats of every point."""
    co = jnp.asarray(_ode_coefficients(schedule, lam), x_T.dtype)
    X, prev = x_T, jnp.zeros_like(x_T)
    out = []
    for j in range(lam.shape[0]):
        stats, eps = point(X, j)
        out.append(jax.tree_util.tree_map(np.asarray, stats))
        if j + 1 < lam.shape[0]:
            X, prev = _advance(X, eps, prev, co[j])
        bar.update()
    return out


def _run_l_ode(model, schedule, x_T, lam, key, probes, batch_size, bar) -> np.ndarray:
    fn = functools.partial(
        _l_ode_jit,
        _bound(model, x_T, batch_size),
        schedule=schedule,
        probes=probes,
        batch_size=batch_size,
    )
    dtype = x_T.dtype

    def point(X, j):
        return fn(X, jnp.asarray(lam[j], dtype), key)

    return np.stack(_along_ode(point, schedule, x_T, lam, bar))


def _run_sb_ode(model, schedule, x_T, lam, l, dl, batch_size, bar, ridge, dt):  # noqa: E741
    fn = functools.partial(
        _sb_ode_jit,
        _bound(model, x_T, batch_size),
        schedule=schedule,
        batch_size=batch_size,
        dt=dt,
    )
    dtype = x_T.dtype

    def point(X, j):
        s, b, eps = fn(
            X,
            jnp.asarray(lam[j], dtype),
            jnp.asarray(l[j], dtype),
            jnp.asarray(dl[j], dtype),
            jnp.asarray(ridge, dtype),
        )
        return (s, b), eps

    sb = _along_ode(point, schedule, x_T, lam, bar)
    return np.stack([v[0] for v in sb]), np.stack([v[1] for v in sb])


def estimate_l(
    model: Callable,
    schedule: Schedule,
    data,
    lambdas,
    *,
    key,
    probes: int = 1,
    batch_size: int | None = None,
    progress: bool = False,
) -> np.ndarray:
    """The raw (unsmoothed) l at each point of ``lambdas`` (:func:`l_point` per point).

    Returns (N + 1, *shape) NumPy in the dtype of ``data``. Arguments as in
    :func:`estimate_ems`.
    """
    arr, bs = _common(model, schedule, data, key, batch_size)
    lam = _check_grid(lambdas, schedule)
    p = _checks.check_int("probes", probes, 1)
    bar = _Bar(progress, lam.shape[0], "EMS l")
    try:
        return _run_l(model, schedule, arr, lam, key, p, bs, bar)
    finally:
        bar.close()


def estimate_sb(
    model: Callable,
    schedule: Schedule,
    data,
    lambdas,
    l,  # noqa: E741
    dl,
    *,
    key,
    batch_size: int | None = None,
    progress: bool = False,
    ridge: float = 1e-4,
    time_difference: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``(s, b)`` at each point of ``lambdas`` (:func:`sb_point` per point), given l and
    ``dl/dlambda`` there ((N + 1, *shape) each, e.g. from :func:`smooth_l`).

    Returns two (N + 1, *shape) NumPy arrays in the dtype of ``data``; ``ridge`` and
    ``time_difference`` as in :func:`sb_point`.
    """
    r = _check_ridge(ridge)
    dt = _check_time_difference(time_difference, schedule)
    arr, bs = _common(model, schedule, data, key, batch_size)
    lam = _check_grid(lambdas, schedule)
    want = (lam.shape[0],) + tuple(arr.shape[1:])
    for name, v in (("l", l), ("dl", dl)):
        if tuple(np.shape(v)) != want:
            raise ValueError(
                f"`{name}` must have shape (N + 1, *shape) = {want}, got {np.shape(v)}."
            )
    bar = _Bar(progress, lam.shape[0], "EMS s, b")
    try:
        return _run_sb(
            model, schedule, arr, lam, np.asarray(l), np.asarray(dl), key, bs, bar, r, dt
        )
    finally:
        bar.close()


def estimate_ems(
    model: Callable,
    schedule: Schedule,
    data=None,
    *,
    x_T=None,
    key,
    n_points: int = 1200,
    probes: int = 1,
    batch_size: int | None = None,
    lambda_min: float | None = None,
    lambda_max: float | None = None,
    smooth: int = 0,
    ridge: float = 1e-4,
    time_difference: float | None = None,
    progress: bool = False,
) -> EMS:
    """Estimates the empirical model statistics l, s, b of a noise predictor.

    On the grid :func:`ems_lambdas` (``n_points + 1`` points uniform in lambda from
    ``lambda_min``, default lambda(T), to ``lambda_max``, default lambda(t_eps)): pass 1,
    l by Hutchinson (:func:`l_point`); then l smoothed and differentiated in lambda
    (:func:`smooth_l`); pass 2, s and b by per-dimension least squares of f' on f
    (:func:`sb_point`). The formulas are in the module's docstring.

    Where the statistics are measured: with ``data``, at ``x_lambda = alpha x_0 + sigma
    z`` (the forward process from data, the paper's choice); with ``x_T``, at the states
    of the model's own ODE started from the noise ``x_T`` at the grid's first point,
    integrated across the grid with DPM-Solver++(2M) from the model outputs the
    estimator evaluates anyway (no extra model call; both passes follow the same
    trajectories). For an unconditional model the two agree in distribution when the
    model is exact (its probability-flow ODE keeps the marginals). A guided model's
    ODE does not: classifier-free guidance at scale 7.5 on the digits' ideal denoiser
    (``benchmarks/v3_quality.py``) took v3 from 15-90 times the error of UniPC with
    statistics at noised data (even the teacher's own samples) to below UniPC's with
    statistics along the ODE. Measure a guided model along its ODE.

    Cost per grid point: ``K * probes`` jvps (pass 1), then K evaluations and K jvps
    (pass 2), with K = ``len(data)``; a jvp costs about two to three evaluations.

    Args:
      model: the noise predictor ``model(x, t) -> eps`` with x (B, *shape) and continuous
        t (B,), e.g. a :class:`dpm_jax.WrappedModel` (whose schedule must be ``schedule``;
        with guidance its scale is recorded). It must be differentiable in x and t
        (``jax.jvp``): a network called with integer times is not.
      schedule: the model's noise schedule.
      data: (K, *shape) samples x_0 (K >= 2) of the data, or of a teacher; the statistics
        come in their dtype. Give ``data`` or ``x_T``, not both.
      x_T: (K, *shape) starting noise of the model's ODE at the grid's first point
        ``t(lambda_min)`` (e.g. standard normal for a VP model at t = T: what you would
        pass to a sampler), K >= 2; the statistics come in its dtype.
      key: a jax PRNG key (noises and probes).
      n_points: N >= 1, the number of intervals of the grid (the official files'
        ``statistics_steps``: 1200 for CIFAR-10 there, 250 for Stable Diffusion).
      probes: Rademacher probes per sample for l (>= 1).
      batch_size: samples per model call (default 64, at most K).
      lambda_min, lambda_max: the ends of the grid.
      smooth: half-width of the Savitzky-Golay window for l (:func:`smooth_l`; 0, the
        default: none). The noises are common to all grid points, so the estimated l is
        already a smooth function of lambda and its central differences are accurate to
        O(h^2) in the grid step h; a quadratic window adds a larger O(h^2) bias (on a
        Gaussian test problem, N = 80 over 5 units of lambda, s was 2.5 times further
        from the exact values with ``smooth=2``). Smooth when l is noisy along the grid.
      ridge: the relative ridge of the regression of f' on f (:func:`sb_point`): s is
        shrunk towards 0 in the dimensions where f varies less than ``ridge`` times its
        average variance. >= 0.
      time_difference: None (default): the model's time derivative in f' by forward-mode
        autodiff; dt > 0: by its central difference over ``t -+ dt`` (:func:`sb_point`).
        For a network trained on integer time steps, e.g. ``10 / schedule.total_N``: on
        the bundled digits UNet (a DDPM UNet, 1000 steps) the autodiff derivative
        oscillates about the trend (1.3-2.2 times the 10-step difference), |s| reached 18
        and v3 was 3-4 times worse than the built-in solvers at NFE 5 and 6; with the
        10-step difference it is ahead of all of them (``benchmarks/v3_quality_unet.py``).
      progress: show a tqdm bar over the grid's points (needs tqdm).

    Returns:
      An :class:`EMS`.

    Raises:
      TypeError, ValueError: a bad argument (named in the message), before any tracing.
    """
    if (data is None) == (x_T is None):
        raise ValueError(
            "estimate_ems(): give `data` (samples x_0, noised by the forward process) or "
            "`x_T` (noise at the grid's first point: the statistics along the model's ODE), "
            f"not {'both' if data is not None else 'neither'}."
        )
    along = x_T is not None
    arr, bs = _common(
        model, schedule, x_T if along else data, key, batch_size, "x_T" if along else "data"
    )
    p = _checks.check_int("probes", probes, 1)
    w = _checks.check_int("smooth", smooth, 0)
    r = _check_ridge(ridge)
    dt = _check_time_difference(time_difference, schedule)
    lam = ems_lambdas(schedule, n_points, lambda_min, lambda_max)
    if 2 * w + 1 > lam.shape[0]:
        raise ValueError(
            f"`smooth` = {w} needs {2 * w + 1} grid points; n_points = {lam.shape[0] - 1} gives "
            f"{lam.shape[0]} (use smooth <= {(lam.shape[0] - 1) // 2})."
        )
    bar = _Bar(progress, 2 * lam.shape[0], "EMS")
    try:
        if along:
            l_raw = _run_l_ode(model, schedule, arr, lam, key, p, bs, bar)
        else:
            l_raw = _run_l(model, schedule, arr, lam, key, p, bs, bar)
        l_s, dl = smooth_l(lam, l_raw, w)
        l_s, dl = l_s.astype(arr.dtype), dl.astype(arr.dtype)
        if along:
            s, b = _run_sb_ode(model, schedule, arr, lam, l_s, dl, bs, bar, r, dt)
        else:
            s, b = _run_sb(model, schedule, arr, lam, l_s, dl, key, bs, bar, r, dt)
    finally:
        bar.close()
    meta = _meta(schedule, "estimate_ems", N=lam.shape[0] - 1, K=int(arr.shape[0]))
    meta.update(
        probes=p,
        smooth=w,
        ridge=r,
        time_difference=dt,
        states="ode" if along else "data",
        batch_size=bs,
        guidance_scale=_guidance_scale(model),
        dtype=str(arr.dtype),
    )
    return EMS(lam, l_s, s, b, meta)


def _guidance_scale(model) -> float | None:
    from dpm_jax._model import WrappedModel

    if not isinstance(model, WrappedModel) or model.guidance_type == "uncond":
        return None
    try:
        return float(np.asarray(model.guidance_scale))
    except (TypeError, ValueError, jax.errors.TracerArrayConversionError):
        return None


# --------------------------------------------------------------------------- files


def _jsonable(v):
    if isinstance(v, (tuple, list)):
        return [_jsonable(u) for u in v]
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    if isinstance(v, (np.integer, np.floating)):
        return v.item()
    return repr(v)


def _schedule_meta(schedule: Schedule) -> dict:
    probe = np.linspace(schedule.lowest_time, schedule.T, 9)
    with np.errstate(all="ignore"):
        la = np.asarray(schedule.marginal_log_alpha(probe), np.float64)
        ls = np.asarray(schedule.log_sigma(probe), np.float64)
    return {
        "name": schedule.name,
        "spec": _jsonable(schedule.spec),
        "T": float(schedule.T),
        "t_eps": float(schedule.t_eps),
        "total_N": int(schedule.total_N),
        "log_alpha_probe": [float(v) for v in la],
        "log_sigma_probe": [float(v) for v in ls],
    }


def _meta(schedule: Schedule, source: str, **kw) -> dict:
    from dpm_jax import __version__

    return {"source": source, "schedule": _schedule_meta(schedule), **kw, "dpm_jax": __version__}


def _same_schedule(saved: dict, schedule: Schedule) -> bool:
    now = _schedule_meta(schedule)
    if saved.get("name") != now["name"] or saved.get("T") != now["T"]:
        return False
    for k in ("log_alpha_probe", "log_sigma_probe"):
        got = np.asarray(saved.get(k, []), np.float64)
        if got.shape != np.shape(now[k]) or not np.allclose(got, now[k], rtol=1e-12, atol=0.0):
            return False
    return True


def save_ems(path, ems: EMS) -> None:
    """Writes ``ems`` to one ``.npz`` file (exactly at ``path``; no pickles).

    The file holds ``format`` (``"dpm_jax.ems/1"``), ``lambdas``, ``l``, ``s``, ``b``
    (as they are: dtype and bits kept) and ``meta`` (JSON text).
    """
    if not isinstance(ems, EMS):
        raise TypeError(f"`ems` must be a dpm_jax.v3.EMS, got {type(ems).__name__}.")
    try:
        meta = json.dumps(ems.meta, sort_keys=True)
    except (TypeError, ValueError) as e:
        raise TypeError(f"save_ems(): `ems.meta` must be JSON-serialisable: {e}") from None
    l, s, b = (np.asarray(getattr(ems, name)) for name in ("l", "s", "b"))  # noqa: E741
    with open(os.fspath(path), "wb") as f:
        np.savez(
            f, format=np.array(FORMAT), lambdas=ems.lambdas, meta=np.array(meta), l=l, s=s, b=b
        )


def load_ems(path, schedule: Schedule | None = None) -> EMS:
    """Reads a file written by :func:`save_ems`; with ``schedule``, checks that the
    statistics were made for it (same name, T, and log alpha and log sigma at 9 times;
    ValueError otherwise)."""

    def bad(why: str = "") -> ValueError:
        return ValueError(f"load_ems(): {path!r} is not a dpm_jax EMS file{why}.")

    try:
        z = np.load(os.fspath(path), allow_pickle=False)
    except (ValueError, zipfile.BadZipFile) as e:
        raise bad(f" ({e})") from None
    if not isinstance(z, np.lib.npyio.NpzFile):
        raise bad()
    with z:
        if "format" not in z.files or str(z["format"]) != FORMAT:
            raise bad()
        try:
            lambdas, l, s, b = (z[k] for k in ("lambdas", "l", "s", "b"))  # noqa: E741
            meta = json.loads(str(z["meta"]))
        except (KeyError, ValueError) as e:  # (a JSONDecodeError is a ValueError)
            raise bad(f" ({e})") from None
    if schedule is not None:
        _checks.check_schedule(schedule)
        saved = meta.get("schedule")
        if saved is not None and not _same_schedule(saved, schedule):
            raise ValueError(
                f"load_ems(): {path!r} was made for the schedule {saved.get('name')!r} "
                f"(spec {saved.get('spec')}); `schedule` ({schedule.name!r}) differs."
            )
    return EMS(lambdas, l, s, b, meta)


def load_official_ems(
    l_path,
    sb_path=None,
    *,
    schedule: Schedule,
    t_start: float | None = None,
    t_end: float | None = None,
) -> EMS:
    """Reads the statistics of the official code (github.com/thu-ml/DPM-Solver-v3).

    Its format: ``l.npz`` with the array ``l`` and ``sb.npz`` with ``s`` and ``b``, each
    (N + 1, *shape) for one sample's shape (e.g. (N + 1, 3, 32, 32)). Pass the two
    files, or the directory holding them as ``l_path`` alone.

    The grid is not in the files: the official ``DPM_Solver_v3.__init__`` puts
    ``statistics_steps = N = l.shape[0] - 1`` and the statistics at the N + 1 points
    uniform in lambda from ``lambda(t_start)`` to ``lambda(t_end)`` (its
    ``get_time_steps("logSNR", t_T, t_0, N)``), index 0 at ``t_start``; ``t_start``
    defaults to the schedule's T and ``t_end`` to ``1 / total_N``. Here ``t_end``
    defaults to ``schedule.t_eps``, which is ``1 / total_N`` on dpm_jax's VP schedules
    (``discrete`` tables, ``vp_linear``, ``vp_cosine``) and ``sigma_min`` on ``edm``,
    the span the official EDM example passes (its directory names read
    ``{t_end}_{t_start}_{N}_{K}``, e.g. ``0.002_80.0_1200_1024``). Pass the span the
    statistics were made for when it differs. The official code computes the grid in
    float32 (through t and back); this one is float64 (differences of ~1e-6 in lambda).
    A discrete table that dpm_jax clips (``lambda_clip``) has another ``t_eps``: use
    ``discrete(..., lambda_clip=None)`` or pass ``t_end=1 / len(betas)``.
    """
    _checks.check_schedule(schedule)
    if sb_path is None:
        if not os.path.isdir(os.fspath(l_path)):
            raise ValueError(
                "load_official_ems(): give `l_path` and `sb_path` (l.npz and sb.npz), or the "
                f"directory that holds them as `l_path`; {l_path!r} is not a directory."
            )
        d = os.fspath(l_path)
        l_path, sb_path = os.path.join(d, "l.npz"), os.path.join(d, "sb.npz")
    try:
        with np.load(os.fspath(l_path), allow_pickle=False) as z:
            l = z["l"]  # noqa: E741
        with np.load(os.fspath(sb_path), allow_pickle=False) as z:
            s, b = z["s"], z["b"]
    except KeyError as e:
        raise ValueError(
            f"load_official_ems(): missing array {e} (l.npz holds `l`, sb.npz `s` and `b`)."
        ) from None
    if l.ndim < 1 or l.shape[0] < 2 or s.shape != l.shape or b.shape != l.shape:
        raise ValueError(
            "load_official_ems(): `l`, `s` and `b` must share one shape (N + 1, *shape) with "
            f"N >= 1, got {l.shape}, {s.shape} and {b.shape}."
        )
    n = l.shape[0] - 1
    t0 = float(schedule.T) if t_start is None else _number("t_start", t_start)
    t1 = float(schedule.t_eps) if t_end is None else _number("t_end", t_end)
    if not (schedule.lowest_time <= t1 < t0 <= schedule.T):
        raise ValueError(
            f"need {schedule.lowest_time} <= `t_end` < `t_start` <= T = {schedule.T}, got "
            f"t_end={t1!r}, t_start={t0!r}."
        )
    with np.errstate(all="ignore"):
        lo = float(schedule.marginal_lambda(np.float64(t0)))
        hi = float(schedule.marginal_lambda(np.float64(t1)))
    lam = ems_lambdas(schedule, n, lo, hi)
    meta = _meta(schedule, "official", N=n, K=None, probes=None, smooth=None)
    meta.update(t_start=t0, t_end=t1, guidance_scale=None, dtype=str(l.dtype))
    return EMS(lam, l, s, b, meta)
