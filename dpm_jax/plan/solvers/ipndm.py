"""iPNDM: Adams-Bashforth on the noise prediction in VE coordinates (Zhang & Chen 2022,
arXiv 2204.13902, Sec. 4 "iPNDM"; Liu et al. 2022's PNDM with an improved warm-up).

In y = x / alpha, rho = sigma / alpha (see :mod:`._ve`), step n is

    y_{n+1} = y_n + (rho_{n+1} - rho_n) sum_{j < k} b_j eps_{n-j},     k = min(order, n + 1),

with the fixed Adams-Bashforth weights b (newest first) 1; 3/2, -1/2; 23/12, -16/12,
5/12; 55/24, -59/24, 37/24, -9/24 (:data:`dpm_jax._coeffs.AB_WEIGHTS`): lower orders
for the first steps, no lower-order final step, and an ordinary step into sigma = 0.
The fixed weights are exact for steps uniform in rho (``skip_type="karras",
karras_rho=1``); on other grids the method is formally second order.
``ipndm_variant="v"`` uses the variable-step weights b_j = int l_j(rho) drho / h over
the Lagrange basis on rho_n .. rho_{n-k+1}, exact on any grid (order k). NFE = steps.
Orders 1-4; noise prediction only.
"""

from __future__ import annotations

from dpm_jax import _coeffs as C
from dpm_jax.plan.nodes import distinct_finite, is_zero
from dpm_jax.plan.solvers._ve import rho, ve_row
from dpm_jax.plan.solvers.base import Run, Solver

__all__ = ["IPNDM"]


class IPNDM(Solver):
    name = "ipndm"
    orders = (1, 2, 3, 4)
    algorithms = ("dpmsolver",)
    default_algorithm = "dpmsolver"
    options = ("ipndm_variant",)
    include_start = True
    calls_at_nodes = True

    def emit(self, rows, run: Run) -> None:
        nodes, order = run.nodes, run.options.order
        r = [rho(n) for n in nodes]
        variable = run.options.ipndm_variant == "v"
        for n in range(run.steps):
            k = min(order, n + 1)
            if variable:  # distinct nodes for the Lagrange basis
                while k > 1 and not distinct_finite(r[n - k + 1 : n + 1]):
                    k -= 1
            h = r[n + 1] - r[n]
            if variable and k > 1 and not is_zero(h):
                c = C.lagrange_integrals([r[n - j] for j in range(k)], r[n], r[n + 1])
            else:
                c = [h * b for b in C.AB_WEIGHTS[k]]
            a, lin = ve_row(nodes[n], nodes[n + 1], {n - j: c[j] for j in range(k)})
            rows.add(nodes[n], a, lin, True)
