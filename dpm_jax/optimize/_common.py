"""What the grid objectives share: checks, the span, the teacher, the student, the grid's
parametrisation."""

from __future__ import annotations

import numbers
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from dpm_jax import _checks
from dpm_jax._executor import run_plan
from dpm_jax._options import SolverOptions
from dpm_jax.plan.build import plan_run
from dpm_jax.plan.solvers import registry
from dpm_jax.schedules import Schedule

OBJECTIVES = ("gits", "dmn", "ld3")


class Problem(NamedTuple):
    """A validated grid optimisation: the model, schedule, training noise, the student's
    options (``steps`` = the grid's intervals), the span and its lambda range."""

    model: Any
    schedule: Schedule
    x_T: Any
    options: SolverOptions
    t_start: float
    t_end: float
    lam_start: float
    lam_end: float


def check(
    objective, model, schedule, x_T, steps, solver_options: dict, t_start, t_end, needs_data: bool
) -> Problem:
    """Validates the arguments before anything is traced; ValueError / TypeError name them."""
    _checks.check_choice("objective", objective, OBJECTIVES)
    _checks.check_schedule(schedule)
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral):
        raise TypeError(f"`steps` must be an int >= 1, got {type(steps).__name__} {steps!r}.")
    if steps < 1:
        raise ValueError(f"`steps` must be >= 1 (the grid's intervals), got {steps}.")
    for name in ("timesteps", "sigmas", "skip_type", "final_sigmas_type"):
        if solver_options.get(name) is not None:
            raise ValueError(f"`{name}` does not apply: optimize_timesteps returns the grid.")
    options = SolverOptions(steps=int(steps), **solver_options)
    solver = registry.get(options.method)
    if solver.adaptive:
        raise ValueError(
            "`method`='adaptive' chooses its own grid; optimise the grid of a "
            f"fixed-grid method ({', '.join(m for m in registry.METHODS if m != 'adaptive')})."
        )
    if options.algorithm.stochastic:
        raise ValueError(
            f"`algorithm_type`={options.algorithm.name!r} is stochastic: the "
            "objectives compare deterministic end points; use 'dpmsolver++' or "
            "'dpmsolver'."
        )
    if needs_data:
        if x_T is None:
            raise ValueError(f"objective={objective!r} needs `x_T`: training noise, (B, ...).")
        _checks.check_state("x_T", x_T)
        if np.shape(x_T)[0] < 1 or int(np.prod(np.shape(x_T))) == 0:
            raise ValueError(f"`x_T` is empty (shape {np.shape(x_T)}); pass some training noise.")
        if not bool(np.all(np.isfinite(np.asarray(x_T)))):
            raise ValueError("`x_T` must be finite (it has NaN or inf entries).")
    t_start, t_end = _checks.check_times(schedule, t_start, t_end, "down")
    lam_start = float(schedule.marginal_lambda(np.float64(t_start)))
    lam_end = float(schedule.marginal_lambda(np.float64(t_end)))
    return Problem(
        model,
        schedule,
        None if x_T is None else jnp.asarray(x_T),
        options,
        t_start,
        t_end,
        lam_start,
        lam_end,
    )


def times_of(prob: Problem, fractions, parametrization: str):
    """The grid of fractions c_0 = 0 < c_1 < ... < c_K = 1 of the span: uniform in lambda
    ("lambda") or in t ("time"); the ends are the host values t_start, t_end."""
    inner_t = _times_at(prob, fractions[1:-1], parametrization)
    return [prob.t_start, *[inner_t[i] for i in range(inner_t.shape[0])], prob.t_end]


def _times_at(prob: Problem, fractions, parametrization: str):
    """The times at fractions of the span (strictly inside it), in lambda or in t."""
    if parametrization == "lambda":
        lam = prob.lam_start + (prob.lam_end - prob.lam_start) * fractions
        return prob.schedule.inverse_lambda(lam)
    return prob.t_start + (prob.t_end - prob.t_start) * fractions


#: where a decoupled model call may move: "nearest": within half the smaller gap to a
#: neighbour, either way; "sides": within half the gap on the side it moves to.
WINDOWS = ("nearest", "sides")


def model_times_of(prob: Problem, fractions, eta, parametrization: str, window: str = "nearest"):
    """LD3's decoupled model times of a grid of fractions c (K + 1) and K - 1 free
    parameters eta: the model call of node i (1 <= i < K) is at the fraction

        "nearest": m_i = c_i + tanh(eta_i) * min(c_i - c_{i-1}, c_{i+1} - c_i) / 2,
        "sides":   m_i = c_i + tanh(eta_i) * (c_{i+1} - c_i if eta_i > 0 else c_i - c_{i-1}) / 2,

    inside a window that reaches at most half way to a neighbour (so the model times stay
    strictly monotone and inside the span); node 0's call stays at t_start. eta = 0 is
    the grid. "sides" lets a call next to a long step move further into it."""
    c = fractions
    left, right = c[1:-1] - c[:-2], c[2:] - c[1:-1]
    a = jnp.tanh(eta)
    if window == "sides":
        shift = 0.5 * jnp.where(a > 0, a * right, a * left)
    else:
        shift = a * (0.5 * jnp.minimum(left, right))
    inner_t = _times_at(prob, c[1:-1] + shift, parametrization)
    return [prob.t_start, *[inner_t[i] for i in range(inner_t.shape[0])]]


def fractions_of(theta):
    """Monotone by construction: c = (0, cumsum(softmax(theta))), c_K = 1."""
    w = jax.nn.softmax(theta)
    c = jnp.cumsum(w)
    return jnp.concatenate([jnp.zeros((1,), c.dtype), c[:-1], jnp.ones((1,), c.dtype)])


def default_parametrization(prob: Problem) -> str:
    """lambda where it is finite at both ends, else t."""
    return "lambda" if np.isfinite(prob.lam_start) and np.isfinite(prob.lam_end) else "time"


def model_rows(model, n: int, idx):
    """The model for the training samples ``idx`` of ``n`` (a minibatch): a
    :class:`dpm_jax.WrappedModel`'s per-sample leaves (its conditions, and the keyword
    arrays whose leading dimension is ``n``) taken at ``idx``; any other model as it is."""
    import dataclasses

    from dpm_jax._model import WrappedModel

    if not isinstance(model, WrappedModel):
        return model
    fields = model.data_fields()
    mask = model.batched_fields(n)
    if not any(jax.tree_util.tree_leaves(mask)):
        return model
    taken = jax.tree_util.tree_map(lambda v, m: v[idx] if m else v, fields, mask)
    return dataclasses.replace(model, **taken)


def plan_of(prob: Problem, times, model_times=None):
    """The student's differentiable plan on ``times`` (host ends, jax interior), with
    its model calls at ``model_times`` (one per step) if given."""
    return plan_run(prob.schedule, prob.options, "down", times=times, model_times=model_times)


def run(prob: Problem, plan, x):
    """The student's end points from x on ``plan`` (inside a trace)."""
    out, _ = run_plan(prob.model, x, plan, prob.options)
    return out


def host_grid(times) -> np.ndarray:
    """The grid (or the model times) as float64 NumPy, checked finite and strictly
    decreasing."""
    out = np.asarray([float(t) for t in times], np.float64)
    if not (np.all(np.isfinite(out)) and np.all(np.diff(out) < 0)):
        raise RuntimeError(f"internal: the optimised grid is not strictly decreasing: {out}")
    return out


def teacher_end(prob: Problem, teacher) -> Any:
    """The teacher's end points of x_T: an array given as ``teacher``, or a run with the
    options dict ``teacher`` (default: third-order DPM-Solver++ multistep, 200 steps,
    uniform in lambda where it is finite, else in t)."""
    if teacher is not None and not isinstance(teacher, dict):
        arr = jnp.asarray(teacher)
        if arr.shape != prob.x_T.shape:
            raise ValueError(
                f"`teacher` end points must have x_T's shape {prob.x_T.shape}, got {arr.shape}."
            )
        return arr
    from dpm_jax._sample import sample

    return sample(prob.model, prob.x_T, prob.schedule, **teacher_options(prob, teacher))


def teacher_options(prob: Problem, teacher: dict | None) -> dict:
    lam_finite = default_parametrization(prob) == "lambda"
    opts = dict(
        steps=200,
        order=3,
        method="multistep",
        algorithm_type="dpmsolver++",
        multistep3_variant="third_order",
        skip_type="logSNR" if lam_finite else "time_uniform",
        t_start=prob.t_start,
        t_end=prob.t_end,
    )
    opts.update(teacher or {})
    return opts


def per_sample_rms(a, b):
    """RMS over each sample's dimensions, (B,)."""
    d = (a - b).reshape(a.shape[0], -1)
    return jnp.sqrt(jnp.mean(d * d, axis=1))


def progress_bar(progress: bool, total: int, desc: str):
    if not progress:
        return None
    from dpm_jax import _progress

    _progress.require_tqdm()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="it")
