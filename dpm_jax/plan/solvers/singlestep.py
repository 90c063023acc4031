"""Singlestep DPM-Solver(++) (DPM-Solver Alg. 1-2 / "DPM-Solver-fast", DPM-Solver++ Alg. 1).

A step of order o from s to t makes o model calls: at s, and at the inner
points s_1 (and s_2) with lambda_j = lambda_s + r_j h, h = lambda_t - lambda_s.
The inner points become rows whose anchor is the step's start; the row builder
rewrites them in terms of their own point. The updates are
:func:`dpm_jax._coeffs.singlestep_2`, :func:`~dpm_jax._coeffs.singlestep_3_mid`
and :func:`~dpm_jax._coeffs.singlestep_3`.

Three forms, by grid:

- a reference spacing with finite ends (the reference implementation's form):
  ``steps`` model calls spread over outer steps of DPM-Solver-fast's orders
  (:func:`~dpm_jax.plan.orders.singlestep_orders`), outer boundaries and inner
  points on the spacing;
- an explicit grid: its entries are the outer step boundaries, every step has
  order ``order`` (first order where it touches an infinite lambda), the inner
  points are uniform in lambda, NFE = the sum of the orders;
- diffusers' grids, and reference spacings reaching an infinite lambda: every
  call sits on a grid node (diffusers' form); call c of order o steps from the
  anchor node c - o + 1 to node c + 1, the nodes in between being its inner points.
"""

from __future__ import annotations

import numpy as np

from dpm_jax import _coeffs as C
from dpm_jax.plan.nodes import host, node
from dpm_jax.plan.orders import cap_call_orders, singlestep_orders
from dpm_jax.plan.rows import first_order
from dpm_jax.plan.solvers.base import Run, Solver

__all__ = ["Singlestep", "emit_outer_steps", "explicit_orders"]


class Singlestep(Solver):
    name = "singlestep"
    options = ("solver_type", "lower_order_final")  # the second on diffusers grids

    def emit(self, rows, run: Run) -> None:
        o_, grid, sch = run.options, run.grid, run.schedule
        infinite = not (run.nodes[0].finite and run.nodes[-1].finite)
        if grid.family == "explicit":
            emit_outer_steps(rows, run, run.nodes, explicit_orders(run))
        elif grid.family == "spacing" and not infinite:
            orders = singlestep_orders(run.steps, o_.order)
            if grid.name == "logSNR":
                ts = grid.times(sch, run.t_start, run.t_end, len(orders))
            else:
                ts = grid.times(sch, run.t_start, run.t_end, run.steps)[np.cumsum([0] + orders)]
            emit_outer_steps(rows, run, [node(sch, float(t)) for t in ts], orders)
        else:
            final_zero = getattr(grid, "final_sigmas_type", None) == "zero"
            calls = grid.rule.singlestep(run.steps, o_.order, o_.lower_order_final, final_zero)
            emit_node_calls(rows, run.nodes, cap_call_orders(calls, run.nodes), o_.solver_type)


def explicit_orders(run: Run) -> list[int]:
    """Order ``order`` for every outer step of an explicit grid, 1 where it touches an
    infinite lambda (pure noise or the data)."""
    n = run.nodes
    return [run.options.order if n[k].finite and n[k + 1].finite else 1 for k in range(len(n) - 1)]


def _inner_ratios(times, schedule, s, t, order):
    """r_i = (lambda(inner_i) - lambda(inner_0)) / (lambda(inner_-1) - lambda(inner_0))
    for the ``order`` + 1 points ``times(schedule, s, t, order)`` (reference rule)."""
    lam = schedule.marginal_lambda(times(schedule, s, t, order))
    h = lam[-1] - lam[0]
    return [(lam[j] - lam[0]) / h for j in range(1, order)]


def emit_outer_steps(rows, run: Run, outer, orders) -> None:
    """Rows of singlestep steps between the ``outer`` nodes, step k of order orders[k],
    inner points placed by ``run.grid.times``."""
    sch, data, solver_type = run.schedule, rows.data, run.options.solver_type
    for k, o in enumerate(orders):
        ns, nt = outer[k], outer[k + 1]
        ps, pt = ns.p, nt.p
        if o == 1:
            a, lin = first_order(data, ps, pt)
            rows.add(ns, a, {len(rows.nodes): lin[0]}, True)
            continue
        h = pt.lam - ps.lam
        r = _inner_ratios(run.grid.times, sch, ns.t, nt.t, o)
        s1 = host(sch.inverse_lambda(ps.lam + r[0] * h))
        n1 = node(sch, s1)
        i = len(rows.nodes)  # the step's first row: its point is the anchor x_s
        keys = {"s": i, "1": i + 1, "2": i + 2}
        a, lin = C.first_order(data, ps, n1.p, h=r[0] * h, m_s="s")
        rows.add(ns, a, {keys[k_]: c for k_, c in lin.items()}, False)
        if o == 2:
            a, lin = C.singlestep_2(data, ps, pt, r[0], solver_type)
            rows.add(n1, a, {keys[k_]: c for k_, c in lin.items()}, True, anchor_row=i)
            continue
        n2 = node(sch, host(sch.inverse_lambda(ps.lam + r[1] * h)))
        a, lin = C.singlestep_3_mid(data, ps, n2.p, r[0], r[1], h)
        rows.add(n1, a, {keys[k_]: c for k_, c in lin.items()}, False, anchor_row=i)
        a, lin = C.singlestep_3(data, ps, pt, r[0], r[1], solver_type)
        rows.add(n2, a, {keys[k_]: c for k_, c in lin.items()}, True, anchor_row=i)


def emit_node_calls(rows, nodes, call_orders, solver_type) -> None:
    """Singlestep on a grid of nodes (diffusers' form): call c of order o evaluates the
    model at nodes[c] and steps from the anchor nodes[c-o+1] to nodes[c+1] with a
    singlestep update of order o whose intermediate points are the nodes in between; a
    call of order 1 starts a new step (its point is the anchor)."""
    data, pts = rows.data, [n.p for n in nodes]
    n_calls = len(call_orders)
    for c, o in enumerate(call_orders):
        a = c - o + 1
        ends = c == n_calls - 1 or call_orders[c + 1] == 1
        pa, pt = pts[a], pts[c + 1]
        if o == 1:
            ratio, lin = first_order(data, pts[c], pt)
            rows.add(nodes[c], ratio, {c: lin[0]}, ends)
            continue
        h = pt.lam - pa.lam
        if o == 2:
            ratio, lin = C.singlestep_2(data, pa, pt, (pts[c].lam - pa.lam) / h, solver_type)
            keys = {"s": a, "1": c}
        else:
            ratio, lin = C.singlestep_3(
                data, pa, pt, (pts[a + 1].lam - pa.lam) / h, (pts[c].lam - pa.lam) / h, solver_type
            )
            keys = {"s": a, "1": a + 1, "2": c}
        rows.add(nodes[c], ratio, {keys[k]: v for k, v in lin.items()}, ends, anchor_row=a)
