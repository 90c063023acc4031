"""One row of a plan, as arrays: the update both loops run (``sample``'s scan, the step API).

Row i of a :class:`~dpm_jax.plan.table.Plan` evaluates the model at the current point
x_i, giving M_i, and computes

    x_{i+1} = x_coef[i] x_i + m_coef[i, 0] M_i + P_1 (+ noise_coef[i] z_i),
    P_j    <- m_coef[i + j, j] M_i + P_{j+1}     (j = 1 .. W-1, P_W = 0),

where P_j (the *history*) holds the contributions of the model values so far to the
output j rows ahead: every carried array is rewritten by one elementwise expression, no
buffer is shifted or indexed. Corrections sit around this linear update: the
reference's ``correcting_xt_fn`` on the states of the run, and, for a noise-prediction
solver that ends with ``denoise_to_zero``, ``correcting_x0_fn`` on the final x0.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["plan_rows", "correction_steps", "advance", "correct_start", "finish_row"]


def correction_steps(plan) -> np.ndarray:
    """(R,) int32: the reference's ``step`` of the state row i outputs, or -1 where that
    output is an inner point. States are numbered from 0 at x_T for the methods whose
    intermediates include the start (multistep: step = the node's index), from 0 at the
    end of the first step otherwise (singlestep: the outer step's index); the denoised
    x0 of ``denoise_to_zero`` is the last state's step + 1."""
    steps = np.full((plan.nfe,), -1, np.int32)
    ends = np.asarray(plan.intermediate_rows, np.int64)
    steps[ends] = np.arange(ends.shape[0], dtype=np.int32) + (1 if plan.include_start else 0)
    return steps


def plan_rows(plan, *, index: bool = False, steps=None) -> dict:
    """The per-row arrays of a plan (jax arrays, leading axis R): the times of the model
    call (t, t_input, alpha, sigma), the coefficients ``xc``, ``mc`` (row i's weights of
    M_i for this row and the W - 1 rows ahead) and, for stochastic plans, ``nc`` and the
    row index ``i`` (uint32). ``index``: the row index ``k`` (int32); ``steps`` (the
    :func:`correction_steps` of the plan, made on the host): the state times ``ts`` (of
    x_i) and ``to`` (of x_{i+1}) and the steps ``cs``, for ``correcting_xt_fn``."""
    w, r = plan.window, plan.nfe
    m_coef = jnp.asarray(plan.m_coef)
    ahead = [jnp.concatenate([m_coef[j:, j], jnp.zeros((j,), m_coef.dtype)]) for j in range(w)]
    rows = dict(
        t=plan.t,
        t_input=plan.t_input,
        alpha=plan.alpha,
        sigma=plan.sigma,
        xc=plan.x_coef,
        mc=jnp.stack([m_coef[:, 0]] + ahead[1:], axis=1),
    )
    if plan.stochastic:
        rows.update(nc=plan.noise_coef, i=jnp.arange(r, dtype=jnp.uint32))
    if index or steps is not None:
        rows.update(k=jnp.arange(r, dtype=jnp.int32))
    if steps is not None:
        ts = jnp.asarray(plan.t_states)
        rows.update(ts=ts[:-1], to=ts[1:], cs=jnp.asarray(steps, jnp.int32))
    return rows


def advance(x, history: tuple, m, row, z=None):
    """x_{i+1} and the new history from the current point x, the model value m and the
    row's coefficients (``z``: this row's standard normal draw, stochastic plans)."""
    w = len(history) + 1
    x_next = row["xc"] * x + row["mc"][0] * m
    if z is not None:
        x_next = x_next + row["nc"] * z
    if w > 1:
        x_next = x_next + history[0]
        history = tuple(row["mc"][j] * m + (history[j] if j < w - 1 else 0.0) for j in range(1, w))
    return x_next, history


def _checked(fn, x, *args):
    out = fn(x, *args)
    if not hasattr(out, "shape") or out.shape != x.shape:
        raise ValueError(
            f"`correcting_xt_fn` must return an array of the state's shape {x.shape}, got "
            f"{getattr(out, 'shape', type(out).__name__)}."
        )
    return out.astype(x.dtype)


def correct_start(x, row, xt_fn, include_start: bool):
    """The start x_T corrected as step 0 (the reference: after the model's first call,
    before the first update), for the methods whose states include the start."""
    if xt_fn is None or not include_start:
        return x
    return jax.lax.cond(
        row["k"] == 0,
        lambda u: _checked(xt_fn, u, row["ts"], jnp.int32(0)),
        lambda u: u,
        x,
    )


def finish_row(x_next, row, last: int, final_fn=None, xt_fn=None):
    """After the linear update: the final x0's correction (``final_fn``, row ``last``),
    then ``correcting_xt_fn`` on the states of the run."""
    if final_fn is not None:
        x_next = jax.lax.cond(
            row["k"] == last, lambda u, t: final_fn(u, t), lambda u, t: u, x_next, row["t"]
        )
    if xt_fn is not None:
        x_next = jax.lax.cond(
            row["cs"] >= 0,
            lambda u: _checked(xt_fn, u, row["to"], row["cs"]),
            lambda u: u,
            x_next,
        )
    return x_next
