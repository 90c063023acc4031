"""Multistep DPM-Solver(++) and its stochastic form (DPM-Solver++ Alg. 2, Sec. 5).

Step k from node k-1 to node k is a row at node k-1 that reuses the model
values of the previous o - 1 rows (o its order):

- o = 1: DDIM, ``x_t = (sigma_t / sigma_s) x_s - alpha_t expm1(-h) x0`` (data) or
  ``x_t = (alpha_t / alpha_s) x_s - sigma_t expm1(h) eps`` (noise);
- o = 2: :func:`dpm_jax._coeffs.multistep_2` (DPM-Solver++(2M), eq. (3.6)-(3.7));
- o = 3: :func:`dpm_jax._coeffs.multistep_3` (its second-difference term weighted 1,
  as published, or 2 with ``multistep3_variant="third_order"``);
- the SDE forms (``"sde-dpmsolver++"`` orders 1-3, ``"sde-dpmsolver"`` 1-2):
  :func:`dpm_jax._coeffs.sde_multistep`, plus fresh noise every row.

Orders follow the grid's rule (warm-up, ``lower_order_final``,
``euler_at_final``), capped next to infinite lambdas. NFE = steps.
"""

from __future__ import annotations

from dpm_jax import _coeffs as C
from dpm_jax.plan.nodes import is_zero
from dpm_jax.plan.orders import cap_orders
from dpm_jax.plan.rows import first_order, sde_first_order_to_data
from dpm_jax.plan.solvers.base import Run, Solver

__all__ = ["Multistep"]


class Multistep(Solver):
    name = "multistep"
    options = ("solver_type", "lower_order_final", "multistep3_variant", "euler_at_final")
    algorithms = ("dpmsolver", "dpmsolver++", "sde-dpmsolver", "sde-dpmsolver++")
    include_start = True
    calls_at_nodes = True
    steps_at_least_order = True
    lands_off_grid = True

    def check(self, run: Run) -> None:
        if run.landings is not None and (run.options.order != 1 or run.algorithm.stochastic):
            raise ValueError(
                "spacing_rule='ddim' on this grid ends each step at t - N // steps, off the "
                "next timestep (DDIMScheduler's rule): it takes `order`=1 and a "
                "deterministic algorithm_type, as DDIM."
            )

    def check_options(self, options) -> None:
        if options.algorithm.name == "sde-dpmsolver" and options.order == 3:
            raise ValueError(
                "`order` must be 1 or 2 for algorithm_type='sde-dpmsolver' "
                "(order 3 exists for 'sde-dpmsolver++')."
            )

    def emit(self, rows, run: Run) -> None:
        o_ = run.options
        orders = run.grid.rule.multistep(
            run.steps, o_.order, o_.lower_order_final, o_.euler_at_final
        )
        orders = cap_orders(orders, run.nodes)
        e2_weight = 2.0 if o_.multistep3_variant == "third_order" else 1.0
        nodes, pts = run.nodes, [n.p for n in run.nodes]
        if run.landings is not None:  # DDIM: step k ends at landings[k - 1], order 1
            for i, land in enumerate(run.landings):
                a, lin = first_order(rows.data, pts[i], land.p)
                rows.add(nodes[i], a, {key + i: c for key, c in lin.items()}, True)
            return
        for k, o in enumerate(orders, start=1):
            i = k - 1  # row i evaluates at nodes[k-1] and steps to nodes[k]
            if run.algorithm.stochastic:
                if o == 1 and is_zero(pts[k].sigma):
                    a, lin, noise = sde_first_order_to_data(rows.data, pts[i], pts[k])
                else:
                    a, lin, noise = C.sde_multistep(
                        rows.data, pts[i - o + 1 : i + 1], pts[k], o_.solver_type, e2_weight
                    )
                rows.add(nodes[i], a, {key + i: c for key, c in lin.items()}, True, noise=noise)
                continue
            if o == 1:
                a, lin = first_order(rows.data, pts[i], pts[k])
            elif o == 2:
                a, lin = C.multistep_2(rows.data, pts[i - 1], pts[i], pts[k], o_.solver_type)
            else:
                a, lin = C.multistep_3(rows.data, pts[i - 2], pts[i - 1], pts[i], pts[k], e2_weight)
            rows.add(nodes[i], a, {key + i: c for key, c in lin.items()}, True)  # key 0 is row i
