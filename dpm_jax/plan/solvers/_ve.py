"""Shared by the solvers of the VE-form ODE dy/drho = eps (iPNDM, DEIS, Heun, DPM-2).

With y = x / alpha and rho = sigma / alpha = e^{-lambda}, the probability-flow ODE is
dy/drho = eps(x, t) (Karras et al. 2022, eq. 4 with s(t) = alpha; the DEIS paper's
"rho"), exactly linear in the noise prediction. A step

    y_{n+1} = y_n + sum_j C_j eps_j   is the row   x_{n+1} = (alpha_{n+1} / alpha_n) x_n
                                                             + alpha_{n+1} sum_j C_j eps_j.

rho is 0 at the data (sigma = 0), where alpha = 1; a start at alpha = 0 (rho = inf) has
no noise prediction and is refused by the planner.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from dpm_jax.plan.nodes import Node, is_jax

__all__ = ["rho", "ve_row"]


def _exp(v):
    return jnp.exp(v) if is_jax(v) else float(np.exp(np.float64(v)))


def rho(node: Node):
    """sigma / alpha = e^{-lambda} at a node (0 at the data)."""
    return _exp(-node.p.lam)


def ve_row(start: Node, target: Node, weights: dict) -> tuple:
    """(coefficient of x at ``start``, {row: coefficient of its eps}) of
    y_target = y_start + sum_row weights[row] eps_row."""
    ratio = _exp(target.p.log_alpha - start.p.log_alpha)
    alpha_t = _exp(target.p.log_alpha)
    return ratio, {k: alpha_t * c for k, c in weights.items()}
