"""Order rules (dpm_jax.plan.orders): one multistep rule with a threshold, the singlestep rules."""

from __future__ import annotations

import math

import pytest

from dpm_jax.plan import orders as O


def reference_multistep_orders(steps, order, lower_order_final):
    """The reference implementation's rule, written out as it reads there: warm-up k < order
    uses order k; with lower_order_final and steps < 10 the order is min(order, steps + 1 - k)."""
    out = []
    for k in range(1, steps + 1):
        if k < order:
            out.append(k)
        elif lower_order_final and steps < 10:
            out.append(min(order, steps + 1 - k))
        else:
            out.append(order)
    return out


@pytest.mark.parametrize("order", [1, 2, 3])
def test_one_multistep_rule_is_the_reference_rule_at_threshold_10(order):
    for steps in range(order, 40):  # every valid input (multistep needs steps >= order)
        for lof in (False, True):
            assert O.multistep_orders(steps, order, lof) == reference_multistep_orders(
                steps, order, lof
            ), (steps, order, lof)
            assert O.REFERENCE.multistep(steps, order, lof) == O.REFERENCE.unipc(steps, order, lof)


def test_diffusers_thresholds():
    assert O.DIFFUSERS.multistep(14, 3, True) == [1, 2] + [3] * 10 + [2, 1]
    assert O.DIFFUSERS.multistep(15, 3, True) == [1, 2] + [3] * 13
    assert O.DIFFUSERS.unipc(40, 2, True)[-2:] == [2, 1]  # UniPC: always (threshold inf)
    assert O.DIFFUSERS.unipc_threshold == math.inf
    assert O.DIFFUSERS.multistep(20, 2, False, euler_at_final=True)[-1] == 1


def test_singlestep_rules():
    assert O.singlestep_orders(6, 3) == [3, 2, 1]
    assert O.singlestep_orders(7, 3) == [3, 3, 1]
    assert O.singlestep_orders(8, 3) == [3, 3, 2]
    assert O.singlestep_orders(5, 2) == [2, 2, 1]
    for steps in range(1, 30):
        for order in (1, 2, 3):
            assert sum(O.singlestep_orders(steps, order)) == steps
    assert O.REFERENCE.singlestep_calls(5, 2, True, True) == [1, 2, 1, 2, 1]
    # diffusers' get_order_list
    assert O.diffusers_singlestep_orders(9, 3, True, False) == [1, 2, 3, 1, 2, 3, 1, 2, 1]
    assert O.diffusers_singlestep_orders(9, 3, False, False) == [1, 2, 3] * 3
    assert O.diffusers_singlestep_orders(9, 3, False, True) == [1, 2, 3, 1, 2, 3, 1, 2, 1]
    assert O.diffusers_singlestep_orders(6, 2, True, False) == [1, 2, 1, 2, 1, 1]


class _N:
    def __init__(self, lam):
        self.p = type("P", (), {"lam": lam})()


def test_caps_at_infinite_lambda():
    inf = float("inf")
    nodes = [_N(-inf), _N(0.0), _N(1.0), _N(2.0), _N(inf)]
    assert O.cap_orders([3, 3, 3, 3], nodes) == [1, 1, 2, 1]
    assert O.cap_call_orders([1, 2, 3, 1], nodes) == [1, 1, 2, 1]
