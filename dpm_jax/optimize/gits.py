"""GITS: the grid chosen by dynamic programming over a fine grid, from teacher
trajectories (Chen et al. 2024, "On the Trajectory Regularity of ODE-based Diffusion
Sampling", arXiv 2405.11326, Sec. 4).

1. Teacher trajectories: x_T is integrated on a fine grid of M intervals (uniform in
   lambda where it is finite, else in t; the teacher solver takes ``substeps`` steps per
   interval), giving the states x_0 .. x_M at the fine nodes.
2. Cost of a coarse step from fine node i to node j > i: the RMS distance, averaged over
   the samples, of one first-order step (DDIM, the exponential integrator's Euler step)
   from the teacher's x_i to t_j, against the teacher's x_j:
   c_ij = mean_b || DDIM_{i -> j}(x_i^b) - x_j^b ||_rms.
   The student's own solver does not enter: its history would depend on the grid, which
   the DP cannot carry (as in the paper).
3. Dynamic programming: K = steps coarse steps from node 0 to node M minimising
   sum_m gamma^m c_{s_m s_{m+1}} (``gamma`` = 1.15, the paper's coefficient, weighs the
   later, less noisy steps more), in O(K M^2).

The grid is a subset of the fine grid's nodes.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from dpm_jax import _coeffs as C
from dpm_jax.optimize import _common as U
from dpm_jax.plan.grids import time_grid
from dpm_jax.plan.nodes import node

__all__ = ["dynamic_programming", "fit", "step_costs"]


def dynamic_programming(cost, steps: int, gamma: float = 1.15) -> list[int]:
    """The path 0 = s_0 < s_1 < ... < s_K = M (K = ``steps``) minimising
    sum_m gamma^m cost[s_m, s_{m+1}] over an (M + 1, M + 1) cost matrix (upper triangle).

    V_k(i) = min_{j > i} cost[i, j] + gamma V_{k-1}(j), V_0(M) = 0: the best cost of the
    k steps left from node i, the first of them weighted 1.

    >>> c = np.array([[0, 1, 9], [0, 0, 1], [0, 0, 0]], float)
    >>> dynamic_programming(c, 2), dynamic_programming(c, 1)
    ([0, 1, 2], [0, 2])
    """
    cost = np.asarray(cost, np.float64)
    m = cost.shape[0] - 1
    if not 1 <= steps <= m:
        raise ValueError(f"`steps` must be in 1..{m} (the fine grid's intervals), got {steps}.")
    inf = np.inf
    value = np.full((steps + 1, m + 1), inf)
    choice = np.zeros((steps + 1, m + 1), np.int64)
    value[0, m] = 0.0
    for k in range(1, steps + 1):
        for i in range(m):
            js = np.arange(i + 1, m + 1)
            total = cost[i, js] + gamma * value[k - 1, js]
            best = int(np.argmin(total))
            value[k, i], choice[k, i] = total[best], js[best]
    if not np.isfinite(value[steps, 0]):
        raise RuntimeError("internal: no path of the requested length")  # pragma: no cover
    path, i = [0], 0
    for k in range(steps, 0, -1):
        i = int(choice[k, i])
        path.append(i)
    return path


def _fine_grid(prob: U.Problem, points: int, substeps: int):
    skip = "logSNR" if U.default_parametrization(prob) == "lambda" else "time_uniform"
    teacher = time_grid(prob.schedule, skip, prob.t_start, prob.t_end, points * substeps)
    return teacher[::substeps], teacher


def step_costs(prob: U.Problem, states, times) -> np.ndarray:
    """c_ij of one DDIM step from the states at fine node i to node j (float64, (M+1, M+1),
    upper triangle; +inf below)."""
    nodes = [node(prob.schedule, t) for t in times]
    m = len(times) - 1
    model_fn = _data_prediction(prob)
    x0 = [model_fn(states[i], nodes[i]) for i in range(m)]
    cost = np.full((m + 1, m + 1), np.inf)
    for i in range(m):
        ratios, weights = [], []
        for j in range(i + 1, m + 1):
            ratio, lin = _ddim(nodes[i].p, nodes[j].p)
            ratios.append(ratio)
            weights.append(lin)
        shape = (-1,) + (1,) * states[i].ndim  # one coefficient per target node j
        pred = (
            jnp.asarray(ratios, states.dtype).reshape(shape) * states[i][None]
            + jnp.asarray(weights, states.dtype).reshape(shape) * x0[i][None]
        )
        err = pred - states[i + 1 :]
        rms = jnp.sqrt(jnp.mean(err.reshape(err.shape[0], err.shape[1], -1) ** 2, axis=2))
        cost[i, i + 1 :] = np.asarray(jnp.mean(rms, axis=1), np.float64)
    return cost


def _ddim(ps, pt):
    """x_t = ratio x_s + weight x0 (DDIM in its data-prediction form; exact limits at the
    ends: alpha_t x0 onto the data)."""
    ratio, lin = C.first_order(True, ps, pt, m_s=0)
    return float(ratio), float(lin[0])


def _data_prediction(prob: U.Problem):
    from dpm_jax._executor import as_model, make_model_fn

    model = as_model(prob.model)
    fn = jax.jit(make_model_fn(model, "dpmsolver++", None, ()))

    def x0(x, n):
        alpha = np.exp(n.p.log_alpha)
        return fn(x, n.t, n.t_input, alpha, n.p.sigma)

    return x0


def fit(
    prob: U.Problem,
    *,
    teacher=None,
    points: int = 60,
    substeps: int = 4,
    gamma: float = 1.15,
    progress: bool = False,
) -> np.ndarray:
    """The GITS grid (float64, t_start to t_end) of ``prob``."""
    if isinstance(points, bool) or not isinstance(points, int) or points < prob.options.num_steps:
        raise ValueError(
            f"`points` (the fine grid's intervals) must be an int >= steps = "
            f"{prob.options.num_steps}, got {points!r}."
        )
    if teacher is not None and not isinstance(teacher, dict):
        raise ValueError(
            "objective='gits' needs teacher trajectories: `teacher` may be None or "
            "a dict of sample options, not end points."
        )
    fine, teacher_grid = _fine_grid(prob, points, substeps)
    from dpm_jax._sample import sample

    opts = U.teacher_options(prob, teacher)
    for k in ("steps", "skip_type", "t_start", "t_end"):
        opts.pop(k, None)
    _, info = sample(
        prob.model,
        prob.x_T,
        prob.schedule,
        timesteps=teacher_grid,
        return_intermediate=True,
        return_info=True,
        **opts,
    )
    states = info.intermediates[::substeps]  # the start and the state after every fine step
    bar = U.progress_bar(progress, 1, "gits")
    cost = step_costs(prob, states, fine)
    if not np.all(np.isfinite(cost[np.triu_indices(points + 1, 1)])):
        raise FloatingPointError(
            "optimize_timesteps(objective='gits'): non-finite step costs "
            "(the teacher or the model returned NaN / inf)."
        )
    path = dynamic_programming(cost, prob.options.num_steps, gamma)
    if bar is not None:
        bar.update(1)
        bar.close()
    grid = np.asarray(fine, np.float64)[path]
    grid[0], grid[-1] = prob.t_start, prob.t_end
    return U.host_grid(grid)
