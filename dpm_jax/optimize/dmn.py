"""DMN: a data-free grid, minimising a schedule-only bound of the solver's error (Xue et
al. 2024, "Accelerating Diffusion Sampling with Optimized Time Steps", arXiv 2402.17376,
Sec. 3; its "DM-NonUniform" code).

A multistep solver's run is linear in its model values. In the coordinates where its
steps carry the state with weight 1 (u = x / sigma for a data prediction, where
x_{s+1} / sigma_{s+1} = x_s / sigma_s + sum_k J_sk x0_k; u = x / alpha for a noise
prediction, with the weights C_sk of eps_k), an error d_k of the k-th model value moves
the end point by (sum_s J_sk) d_k. With the model error bounded uniformly in its
noise-prediction form, |d_k| <= e_k = sigma_k / alpha_k for x0 (1 for eps), the end
point's error is bounded by

    F(grid) = sum_k e_k |sum_s J_sk(grid)|,

a function of the schedule and the grid alone. It is minimised over the interior nodes
(the fractions of the lambda span, monotone by construction, as for LD3) by Adam, with
the J from the planner's own rows (differentiable in the grid), so the bound is that of
the solver that is run: DPM-Solver++ multistep (any order and variant). For a noise
prediction (DPM-Solver, iPNDM, DEIS: e_k = 1) the bound is sum_k |sum_s C_sk|, which is
rho_end - rho_start for every grid whose aggregated weights are positive: it cannot choose
a grid, and those solvers are refused.
A warm-up or extrapolation with large weights, or a step too long for its neighbours,
raises the bound; no model is called.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from dpm_jax.optimize import _common as U

__all__ = ["bound", "fit", "METHODS"]

#: Solvers whose rows are one step each, carrying the state with weight 1 in u (with the
#: data prediction: for a noise prediction e_k = 1 and, where every aggregated weight is
#: positive, sum_k sum_s C_sk = rho_end - rho_start for any grid: the bound is flat).
METHODS = ("multistep",)


def bound(prob: U.Problem, times):
    """F(grid) for the grid ``times`` (host ends; jax or host interior)."""
    plan = U.plan_of(prob, times)
    # row s: x_{s+1} = x_coef[s] x_s + sum_j m_coef[s, j] M_{s-j}; u_{s+1} = u_s + sum J M
    # with the scale of u at s + 1: sigma (data prediction) or alpha (noise prediction)
    alpha = jnp.asarray(plan.alpha)
    sigma = jnp.asarray(plan.sigma)
    n = alpha.shape[0]
    end = [
        float(np.exp(prob.schedule.marginal_log_alpha(np.float64(prob.t_end)))),
        float(prob.schedule.marginal_std(np.float64(prob.t_end))),
    ]
    if plan.data_prediction:
        scale_next = jnp.concatenate([sigma[1:], jnp.asarray([end[1]], sigma.dtype)])
        err = sigma / alpha
    else:
        scale_next = jnp.concatenate([alpha[1:], jnp.asarray([end[0]], alpha.dtype)])
        err = jnp.ones_like(alpha)
    m = jnp.asarray(plan.m_coef)
    total = jnp.zeros((n,), m.dtype)  # sum_s J_sk per model value k
    for j in range(m.shape[1]):
        w = m[:, j] / scale_next  # row s, value k = s - j
        total = total + jnp.concatenate([w[j:], jnp.zeros((j,), w.dtype)])
    return jnp.sum(err * jnp.abs(total))


def fit(
    prob: U.Problem,
    *,
    iterations: int = 400,
    learning_rate: float = 0.05,
    parametrization: str | None = None,
    progress: bool = False,
) -> np.ndarray:
    """The DMN grid (float64, t_start to t_end) of ``prob``."""
    if prob.options.method not in METHODS or not prob.options.algorithm.data:
        raise ValueError(
            "objective='dmn' bounds the data-prediction multistep solvers (method='multistep', "
            f"algorithm_type='dpmsolver++'); got `method`={prob.options.method!r}, "
            f"`algorithm_type`={prob.options.algorithm.name!r} (for a noise prediction its bound "
            "does not depend on the grid). Use objective='ld3' or 'gits'."
        )
    if prob.options.denoise_to_zero:
        raise ValueError("objective='dmn' does not bound the extra `denoise_to_zero` call.")
    param = parametrization or U.default_parametrization(prob)
    if param != "lambda" or U.default_parametrization(prob) != "lambda":
        raise ValueError(
            "objective='dmn' needs a finite half log-SNR at t_start and t_end "
            "(its bound is written in lambda); move t_start / t_end inside."
        )

    def f(theta):
        return bound(prob, U.times_of(prob, U.fractions_of(theta), param))

    grad = jax.jit(jax.value_and_grad(f))
    theta = jnp.zeros((prob.options.num_steps,))
    m1, m2 = jnp.zeros_like(theta), jnp.zeros_like(theta)
    b1, b2, eps = 0.9, 0.999, 1e-8
    bar = U.progress_bar(progress, iterations, "dmn")
    best, best_theta = np.inf, theta
    for it in range(1, iterations + 1):  # Adam (Kingma & Ba 2015, Alg. 1)
        value, g = grad(theta)
        v = float(value)
        if not np.isfinite(v):
            raise FloatingPointError(
                f"optimize_timesteps(objective='dmn'): the bound became {v} "
                f"at iteration {it}; lower `learning_rate`."
            )
        if v < best:
            best, best_theta = v, theta
        m1 = b1 * m1 + (1 - b1) * g
        m2 = b2 * m2 + (1 - b2) * g * g
        theta = theta - learning_rate * (m1 / (1 - b1**it)) / (jnp.sqrt(m2 / (1 - b2**it)) + eps)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(bound=f"{v:.4e}")
    if bar is not None:
        bar.close()
    if float(f(theta)) < best:
        best_theta = theta
    return U.host_grid(U.times_of(prob, U.fractions_of(best_theta), param))
