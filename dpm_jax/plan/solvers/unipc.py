"""UniPC: the unified predictor-corrector (Zhao et al. 2023, arXiv 2302.04867, Alg. 1-2).

Row i evaluates M_i at the predicted point x~_i, corrects the step that ended
there (UniC-p, using M_i: no extra model call), and predicts x~_{i+1} from the
corrected x_i (UniP-p, :func:`dpm_jax._coeffs.unipc`; B(h) = h for "bh1",
expm1(h) for "bh2"). The corrected state is kept as c x~_i + E . M, where
x_{i-1} = (x~_i - P_{i-1} . M) / a_{i-1} undoes the previous prediction, so every
row is written in terms of its own point. A step next to an infinite lambda is
predicted with first order and not corrected. Orders follow the grid's UniPC
rule; NFE = steps.
"""

from __future__ import annotations

from dpm_jax import _coeffs as C
from dpm_jax.plan.nodes import distinct_finite
from dpm_jax.plan.orders import cap_orders
from dpm_jax.plan.rows import first_order
from dpm_jax.plan.solvers.base import Run, Solver

__all__ = ["UniPC"]


class UniPC(Solver):
    name = "unipc"
    options = ("lower_order_final", "unipc_variant", "unipc_corrector", "euler_at_final")
    include_start = True
    calls_at_nodes = True
    steps_at_least_order = True

    def emit(self, rows, run: Run) -> None:
        o_ = run.options
        orders = run.grid.rule.unipc(run.steps, o_.order, o_.lower_order_final, o_.euler_at_final)
        orders = cap_orders(orders, run.nodes)
        variant, use_corrector = o_.unipc_variant, o_.unipc_corrector
        nodes = run.nodes
        data, pts = rows.data, [n.p for n in nodes]
        lam = [p.lam for p in pts]
        prev: tuple = (1.0, {})  # (a, P) of the previous row's prediction, absolute keys
        for i in range(len(orders)):
            cx, e_lin = 1.0, {}
            if i >= 1 and use_corrector:
                q = orders[i - 1]
                used = lam[i - q : i + 1]
                if distinct_finite(used):
                    a_c, c_lin = C.unipc(data, pts[i - q : i], pts[i], variant, corrector=True)
                    a_p, p_lin = prev
                    cx = a_c / a_p
                    e_lin = C._lin((1.0, {k + i - 1: v for k, v in c_lin.items()}), (-cx, p_lin))
            o = orders[i]
            if o == 1:
                a_p, p_lin = first_order(data, pts[i], pts[i + 1])
            else:
                a_p, p_lin = C.unipc(
                    data, pts[i - o + 1 : i + 1], pts[i + 1], variant, corrector=False
                )
            p_abs = {k + i: v for k, v in p_lin.items()}
            rows.add(nodes[i], a_p * cx, C._lin((a_p, e_lin), (1.0, p_abs)), True)
            prev = (a_p, p_abs)
