"""The solver registry: the one list of methods, and a solver is one class plus one line."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

import dpm_jax
from dpm_jax import schedules
from dpm_jax.plan import rows as R
from dpm_jax.plan.solvers import Solver, registry

SCHED = schedules.vp_linear()
MODEL = dpm_jax.model_wrapper(lambda x, t: 0.1 * x + 0.01 * t[:, None], SCHED)
X = jnp.asarray(np.random.default_rng(0).normal(size=(3, 4)))


def test_registry_is_the_list_of_methods():
    assert set(registry.METHODS) <= set(registry.methods())  # (+ solver objects of tests)
    assert set(registry.METHODS) == {
        "singlestep",
        "multistep",
        "singlestep_fixed",
        "adaptive",
        "unipc",
        "ipndm",
        "deis",
        "heun",
        "dpm2",
    }
    with pytest.raises(ValueError) as info:
        dpm_jax.sample(MODEL, X, SCHED, method="nope")
    for m in registry.METHODS:
        assert repr(m) in str(info.value)


class ToyEuler(Solver):
    """DDIM on the grid's nodes: the whole of a first-order solver."""

    name = "toy_euler"
    orders = (1,)
    include_start = True

    def emit(self, rows, run):
        for k in range(run.steps):
            a, lin = R.first_order(rows.data, run.nodes[k].p, run.nodes[k + 1].p)
            rows.add(run.nodes[k], a, {k: lin[0]}, True)


def test_a_new_solver_is_one_class_and_one_registry_line(monkeypatch):
    monkeypatch.setitem(registry.SOLVERS, "toy_euler", ToyEuler())
    for grid in (dict(steps=7, skip_type="logSNR"), dict(sigmas=[150.0, 10.0, 1.0, 0.1, 0.01])):
        toy = dpm_jax.sample(MODEL, X, SCHED, method="toy_euler", order=1, **grid)
        ddim = dpm_jax.sample(MODEL, X, SCHED, method="multistep", order=1, **grid)
        np.testing.assert_array_equal(np.asarray(toy), np.asarray(ddim))
    with pytest.raises(ValueError, match="order"):
        dpm_jax.sample(MODEL, X, SCHED, method="toy_euler", order=2)


def test_adaptive_is_registered_but_has_no_plan():
    assert registry.get("adaptive").adaptive
    with pytest.raises(ValueError, match="adaptive"):
        dpm_jax.build_plan(SCHED, method="adaptive")
