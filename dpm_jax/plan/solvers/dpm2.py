"""DPM-2: k-diffusion's ``sample_dpm_2``, the second-order DPM-Solver step with its stage
at the log-midpoint (Lu et al. 2022, arXiv 2206.00927, DPM-Solver-2 with r1 = 1/2 in its
noise-prediction form), on any grid.

In y = x / alpha, rho = sigma / alpha (see :mod:`._ve`), with the stage at
lambda_m = (lambda_n + lambda_{n+1}) / 2 (rho_m = sqrt(rho_n rho_{n+1}), k-diffusion's
exp(lerp(log sigma, log sigma_next, 1/2))):

    y_m = y_n + (rho_m - rho_n) eps(x_n, t_n),
    y_{n+1} = y_n + (rho_{n+1} - rho_n) eps(x_m, t_m),

two model calls (the exponential integrator's DPM-Solver-2 step written in y); a step
into sigma = 0 is the Euler step alone. NFE = 2 steps, minus 1 if the grid ends on the
data. Order 2, noise prediction only.
"""

from __future__ import annotations

from dpm_jax.plan.nodes import host, is_zero, node
from dpm_jax.plan.solvers._ve import rho, ve_row
from dpm_jax.plan.solvers.base import Run, Solver

__all__ = ["DPM2"]


class DPM2(Solver):
    name = "dpm2"
    orders = (2,)
    algorithms = ("dpmsolver",)
    default_algorithm = "dpmsolver"

    def emit(self, rows, run: Run) -> None:
        nodes, sch = run.nodes, run.schedule
        for n in range(run.steps):
            s, t = nodes[n], nodes[n + 1]
            i = len(rows.nodes)
            if is_zero(t.p.sigma):  # into the data: Euler
                a, lin = ve_row(s, t, {i: rho(t) - rho(s)})
                rows.add(s, a, lin, True)
                continue
            m = node(sch, host(sch.inverse_lambda(0.5 * (s.p.lam + t.p.lam))))
            a, lin = ve_row(s, m, {i: rho(m) - rho(s)})
            rows.add(s, a, lin, False)
            a, lin = ve_row(s, t, {i + 1: rho(t) - rho(s)})
            rows.add(m, a, lin, True, anchor_row=i)
