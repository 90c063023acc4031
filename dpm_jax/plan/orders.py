"""Order rules: which order each step of a run uses.

Two families of rules exist, and each grid carries one (``Grid.rule``):

- the reference implementation's (:data:`REFERENCE`): multistep and UniPC warm
  up with orders 1 .. order - 1, and with ``lower_order_final`` drop the order of
  the last steps when steps < 10; singlestep spreads ``steps`` model calls over
  outer steps of DPM-Solver-fast's mix of orders;
- diffusers' (:data:`DIFFUSERS`): the same warm-up, ``lower_order_final`` below
  15 steps for DPMSolverMultistep and always for UniPC, and
  DPMSolverSinglestep's order list.

Orders are then capped next to an infinite or repeated lambda
(:func:`cap_orders`, :func:`cap_call_orders`), so no step divides by a zero or
infinite lambda difference.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

from dpm_jax.plan.nodes import distinct_finite, is_finite, is_jax

__all__ = [
    "OrderRule",
    "REFERENCE",
    "DIFFUSERS",
    "multistep_orders",
    "singlestep_orders",
    "expand_groups",
    "diffusers_singlestep_orders",
    "cap_orders",
    "cap_call_orders",
]


def multistep_orders(
    steps: int,
    order: int,
    lower_order_final: bool,
    euler_at_final: bool = False,
    threshold: float = 10,
) -> list[int]:
    """Order of each multistep (or UniPC) step k = 1 .. steps: warm-up min(order, k); with
    ``lower_order_final`` and steps < threshold the last steps drop to
    min(order, steps + 1 - k); ``euler_at_final`` makes the last step first order.

    threshold 10 is the reference implementation's rule, 15 DPMSolverMultistep's and
    inf UniPC's in diffusers.

    >>> multistep_orders(5, 3, True)
    [1, 2, 3, 2, 1]
    >>> multistep_orders(12, 2, True, threshold=15)
    [1, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 1]
    """
    orders = []
    for k in range(1, steps + 1):
        o = min(order, k)
        if lower_order_final and steps < threshold:
            o = min(o, steps + 1 - k)
        if euler_at_final and k == steps:
            o = 1
        orders.append(o)
    return orders


def singlestep_orders(steps: int, order: int) -> list[int]:
    """Orders of the outer steps of DPM-Solver-fast using exactly ``steps`` model calls.

    Order 3: K = steps // 3 + 1 steps, [3]*(K-2) + [2, 1] if steps % 3 == 0,
    [3]*(K-1) + [1] if == 1, [3]*(K-1) + [2] if == 2 (DPM-Solver Sec. 3.4).

    >>> singlestep_orders(10, 3)
    [3, 3, 3, 1]
    """
    if order == 1:
        return [1] * steps
    if order == 2:
        return [2] * (steps // 2) + [1] * (steps % 2)
    k = steps // 3 + 1
    return {0: [3] * (k - 2) + [2, 1], 1: [3] * (k - 1) + [1], 2: [3] * (k - 1) + [2]}[steps % 3]


def expand_groups(groups) -> list[int]:
    """Singlestep step orders [3, 2] -> per-call orders [1, 2, 3, 1, 2]."""
    return [j for o in groups for j in range(1, o + 1)]


def diffusers_singlestep_orders(
    steps: int, order: int, lower_order_final: bool, final_zero: bool
) -> list[int]:
    """Per-call orders of diffusers' DPMSolverSinglestepScheduler (``get_order_list``):
    with lower_order_final, order 3: [1,2,3]*(n//3 - 1) + [1,2] + [1] (n % 3 == 0),
    [1,2,3]*(n//3) + [1] (== 1), [1,2,3]*(n//3) + [1,2] (== 2); order 2: [1,2]*(n//2 - 1)
    + [1,1] (even), [1,2]*(n//2) + [1] (odd); without it [1..order]*(n//order). It is
    forced on when n % order != 0 or the grid ends at sigma = 0, where the last call
    is first order."""
    if not lower_order_final and (steps % order or final_zero):
        lower_order_final = True
    if order == 1:
        orders = [1] * steps
    elif not lower_order_final:
        orders = list(range(1, order + 1)) * (steps // order)
    elif order == 3:
        orders = {
            0: [1, 2, 3] * (steps // 3 - 1) + [1, 2, 1],
            1: [1, 2, 3] * (steps // 3) + [1],
            2: [1, 2, 3] * (steps // 3) + [1, 2],
        }[steps % 3]
    else:
        orders = (
            [1, 2] * (steps // 2 - 1) + [1, 1] if steps % 2 == 0 else [1, 2] * (steps // 2) + [1]
        )
    if final_zero:
        orders[-1] = 1
    return orders


def _reference_singlestep_calls(steps, order, lower_order_final, final_zero):
    del lower_order_final, final_zero  # the reference's singlestep rule has neither
    return expand_groups(singlestep_orders(steps, order))


@dataclasses.dataclass(frozen=True)
class OrderRule:
    """The order rules of a grid family.

    Attributes:
      name: "reference" or "diffusers".
      multistep_threshold: ``lower_order_final`` lowers the last multistep steps when
        steps < this.
      unipc_threshold: the same for UniPC.
      singlestep_calls: (steps, order, lower_order_final, final_zero) -> the order of
        each model call of a singlestep run on grid nodes (order k = the k-th call of
        an outer step).
    """

    name: str
    multistep_threshold: float
    unipc_threshold: float
    singlestep_calls: Callable[[int, int, bool, bool], list[int]]
    begin: int = 0

    def multistep(
        self, steps: int, order: int, lower_order_final: bool, euler_at_final: bool = False
    ) -> list[int]:
        """Per-step orders of a multistep run (:func:`multistep_orders`)."""
        return self._restart(
            multistep_orders(
                steps + self.begin,
                order,
                lower_order_final,
                euler_at_final,
                self.multistep_threshold,
            )
        )

    def unipc(
        self, steps: int, order: int, lower_order_final: bool, euler_at_final: bool = False
    ) -> list[int]:
        """Per-step orders of a UniPC run (:func:`multistep_orders`)."""
        return self._restart(
            multistep_orders(
                steps + self.begin,
                order,
                lower_order_final,
                euler_at_final,
                self.unipc_threshold,
            )
        )

    def singlestep(
        self, steps: int, order: int, lower_order_final: bool, final_zero: bool
    ) -> list[int]:
        """Per-call orders of a singlestep run on grid nodes (``singlestep_calls``; after a
        restart the calls of the full grid from ``begin`` on, whose first step
        :func:`cap_call_orders` starts again at first order)."""
        calls = self.singlestep_calls(steps + self.begin, order, lower_order_final, final_zero)
        return calls[self.begin :]

    def restarted(self, begin: int) -> OrderRule:
        """The rule of a run that starts at step ``begin`` of a grid of ``steps + begin``
        steps (image-to-image): the full run's orders from ``begin`` on, the warm-up
        starting again (step j after the restart has order at most j + 1), as a
        diffusers scheduler does whose history is empty at its begin index.

        >>> DIFFUSERS.restarted(5).multistep(5, 2, True)
        [1, 2, 2, 2, 1]
        """
        return dataclasses.replace(self, begin=int(begin))

    def _restart(self, orders: list[int]) -> list[int]:
        return [min(o, j + 1) for j, o in enumerate(orders[self.begin :])]


REFERENCE = OrderRule("reference", 10, 10, _reference_singlestep_calls)
DIFFUSERS = OrderRule("diffusers", 15, math.inf, diffusers_singlestep_orders)


def _equal(a, b) -> bool:
    """a == b for host values (jax values: interior nodes, distinct)."""
    return not (is_jax(a) or is_jax(b)) and bool(a == b)


def cap_orders(orders, nodes):
    """Lowers the order of steps whose history meets an infinite or repeated lambda.

    Step k (from nodes[k-1] to nodes[k]) of order o uses nodes[k-o .. k]: o = 1 if
    the target is the data (lambda = +inf), the start is pure noise (lambda = -inf)
    or the step has zero length; otherwise o is at most the number of nodes since
    the last infinite one, so no ratio of lambda differences is inf/inf or x/0.
    """
    out = []
    lam = [n.p.lam for n in nodes]
    for k, o in enumerate(orders, start=1):
        if not (is_finite(lam[k - 1]) and is_finite(lam[k])) or _equal(lam[k], lam[k - 1]):
            o = 1
        while o > 1 and not all(is_finite(lam[j]) for j in range(k - o, k)):
            o -= 1
        while o > 1 and any(_equal(lam[j], lam[j + 1]) for j in range(k - o, k - 1)):
            o -= 1
        out.append(o)
    return out


def cap_call_orders(call_orders, nodes):
    """Per-call singlestep orders made valid next to infinite or repeated lambdas:
    a step (anchor a to target c+1) of order > 1 needs finite lambdas at nodes
    a .. c+1, distinct at its model nodes a .. c, and a target other than the anchor
    (h != 0); otherwise the call is lowered, and later calls of the same step may not
    reach behind the new anchor. A target equal to the step's last model node (a grid
    whose last sigma repeats: karras with final_sigmas_type "sigma_min") is allowed:
    that step's ratios are finite (r = 1 for its last point), as in diffusers."""
    lam = [n.p.lam for n in nodes]
    out, anchor = [], 0
    for c, o in enumerate(call_orders):
        o = min(o, c - anchor + 1)
        while o > 1:
            a = c - o + 1
            target = lam[c + 1]
            if distinct_finite(lam[a : c + 1]) and is_finite(target) and not _equal(target, lam[a]):
                break
            o -= 1
        if o == 1:
            anchor = c
        out.append(o)
    return out
