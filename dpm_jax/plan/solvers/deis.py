"""DEIS: the exponential integrator with a polynomial extrapolation of eps (Zhang & Chen
2022, arXiv 2204.13902, Sec. 3, eqs. (13)-(15): "tAB-DEIS" and "rhoAB-DEIS").

In y = x / alpha, rho = sigma / alpha (see :mod:`._ve`) the exact solution is
y_{n+1} = y_n + int_{rho_n}^{rho_{n+1}} eps drho. DEIS replaces eps by the polynomial
through the last k = min(order, n + 1) model values, in t ("tab") or in rho ("rhoab"),
and integrates it exactly:

    y_{n+1} = y_n + sum_j C_j eps_{n-j},   C_j = int_{rho_n}^{rho_{n+1}} l_j(t(rho)) drho

(l_j the Lagrange basis on t_n .. t_{n-k+1}; for "rhoab" on rho_n .. rho_{n-k+1}, the
same weights as ``method="ipndm", ipndm_variant="v"``). The integrals are computed on
the host in float64 by composite Gauss-Legendre quadrature in rho (32 points per piece,
pieces split where a discrete schedule's t(rho) has kinks), not by Riemann sums.
Orders 1-3, noise prediction only, NFE = steps; no lower-order final step.

diffusers' ``DEISMultistepScheduler`` (``solver_type="logrho"``: a polynomial in
log rho = -lambda, integrated exactly) is DPM-Solver's multistep family:
``method="multistep", algorithm_type="dpmsolver", solver_type="taylor",
multistep3_variant="third_order"``, which ``from_diffusers_config`` returns for it.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from dpm_jax import _coeffs as C
from dpm_jax.plan.nodes import distinct_finite, is_jax, is_zero
from dpm_jax.plan.solvers._ve import rho, ve_row
from dpm_jax.plan.solvers.base import Run, Solver

__all__ = ["DEIS"]


def _t_of_rho(schedule):
    def t(r):
        if is_jax(r):
            return schedule.inverse_lambda(-jnp.log(r))
        with np.errstate(divide="ignore"):
            return schedule.inverse_lambda(-np.log(np.asarray(r, np.float64)))

    return t


def _kinks(schedule) -> np.ndarray:
    """rho at the points where t(rho) has kinks (a discrete table's grid), else none."""
    table = getattr(schedule.marginal_log_alpha, "table", None)
    if table is None:
        return np.zeros((0,))
    t_array = table[0]
    with np.errstate(divide="ignore", invalid="ignore"):
        lam = np.asarray(schedule.marginal_lambda(np.asarray(t_array, np.float64)))
        return np.exp(-lam[np.isfinite(lam)])


class DEIS(Solver):
    name = "deis"
    orders = (1, 2, 3)
    algorithms = ("dpmsolver",)
    default_algorithm = "dpmsolver"
    options = ("deis_variant",)
    include_start = True
    calls_at_nodes = True

    def emit(self, rows, run: Run) -> None:
        nodes, order, sch = run.nodes, run.options.order, run.schedule
        r = [rho(n) for n in nodes]
        tab = run.options.deis_variant == "tab"
        basis = [n.t for n in nodes] if tab else r
        var, breaks = (_t_of_rho(sch), _kinks(sch)) if tab else (None, ())
        for n in range(run.steps):
            k = min(order, n + 1)
            while k > 1 and not distinct_finite(basis[n - k + 1 : n + 1]):
                k -= 1
            h = r[n + 1] - r[n]
            if k == 1 or is_zero(h):
                c = [h] + [0.0] * (k - 1)
            else:
                c = C.lagrange_integrals(
                    [basis[n - j] for j in range(k)], r[n], r[n + 1], var=var, breaks=breaks
                )
            a, lin = ve_row(nodes[n], nodes[n + 1], {n - j: c[j] for j in range(k)})
            rows.add(nodes[n], a, lin, True)
