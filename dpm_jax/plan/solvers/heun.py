"""EDM's Heun sampler (Karras et al. 2022, arXiv 2206.00364, Alg. 1 with S_churn = 0;
k-diffusion's ``sample_heun``), on any grid.

In y = x / alpha, rho = sigma / alpha (see :mod:`._ve`; EDM's own coordinates when
alpha = 1) step n from rho_n to rho_{n+1} is the trapezoidal rule

    y' = y_n + (rho_{n+1} - rho_n) eps(x_n, t_n),
    y_{n+1} = y_n + (rho_{n+1} - rho_n) (eps(x_n, t_n) + eps(x', t_{n+1})) / 2,

two model calls; a step into sigma = 0 (rho = 0) is the Euler step alone (one call).
NFE = 2 steps, minus 1 if the grid ends on the data. Order 2, noise prediction only.
"""

from __future__ import annotations

from dpm_jax.plan.nodes import is_zero
from dpm_jax.plan.solvers._ve import rho, ve_row
from dpm_jax.plan.solvers.base import Run, Solver

__all__ = ["Heun"]


class Heun(Solver):
    name = "heun"
    orders = (2,)
    algorithms = ("dpmsolver",)
    default_algorithm = "dpmsolver"

    def emit(self, rows, run: Run) -> None:
        nodes = run.nodes
        for n in range(run.steps):
            s, t = nodes[n], nodes[n + 1]
            h = rho(t) - rho(s)
            i = len(rows.nodes)
            a, lin = ve_row(s, t, {i: h})
            if is_zero(t.p.sigma):  # into the data: Euler
                rows.add(s, a, lin, True)
                continue
            rows.add(s, a, lin, False)  # the Euler predictor x' at t
            a, lin = ve_row(s, t, {i: 0.5 * h, i + 1: 0.5 * h})
            rows.add(t, a, lin, True, anchor_row=i)
