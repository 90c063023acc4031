"""Extending is one file: a solver with its own option, defined here alone (no edit to the
package), runs through ``sample`` like the built-ins."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax.numpy as jnp
import numpy as np
import pytest

import dpm_jax
from dpm_jax import grids, schedules, solvers
from dpm_jax.plan.rows import first_order
from dpm_jax.plan.solvers import registry

SCHED = schedules.discrete(betas=np.linspace(1e-4, 0.02, 1000))
MODEL = dpm_jax.model_wrapper(lambda x, t: 0.1 * x + 0.05 * jnp.sin(x), SCHED)
X = jnp.asarray(np.random.default_rng(0).normal(size=(3, 4)))


@dataclasses.dataclass(frozen=True)
class DampedDDIM(solvers.Solver):
    """A toy: DDIM (first-order DPM-Solver++) with its data prediction scaled by
    ``damping`` (1: DDIM itself)."""

    damping: float = 1.0
    name: ClassVar[str] = "toy_damped_ddim"
    orders: ClassVar[tuple] = (1,)
    algorithms: ClassVar[tuple] = ("dpmsolver++",)

    def keywords(self) -> dict:
        return {"method": self.name, "order": 1}

    def emit(self, rows, run) -> None:
        for i in range(run.steps):
            a, lin = first_order(True, run.nodes[i].p, run.nodes[i + 1].p)
            rows.add(run.nodes[i], a, {i: lin[0] * self.damping}, True)


def test_a_solver_defined_in_a_test_file_runs_through_sample():
    assert "toy_damped_ddim" in registry.methods()  # the list of methods is the registry's
    grid = grids.TimeUniform(8)
    ddim = dpm_jax.sample(MODEL, X, SCHED, method="multistep", order=1, steps=8)
    same = dpm_jax.sample(MODEL, X, SCHED, solver=DampedDDIM(1.0), grid=grid)
    np.testing.assert_array_equal(np.asarray(same), np.asarray(ddim))
    damped = dpm_jax.sample(MODEL, X, SCHED, solver=DampedDDIM(0.9), grid=grid)
    assert not np.allclose(damped, ddim)  # its own option is used
    plan = dpm_jax.build_plan(SCHED, solver=DampedDDIM(0.9), grid=grid)
    assert plan.nfe == 8
    st = dpm_jax.stepper(SCHED, solver=DampedDDIM(0.9), grid=grid)  # and by the step API
    state = st.init(X)
    for _ in range(st.num_steps):
        state = st.step(state, MODEL.net(*st.network_input(state)))
    np.testing.assert_allclose(np.asarray(state.x), np.asarray(damped), rtol=1e-12, atol=1e-12)
    assert hash(DampedDDIM(0.9)) == hash(DampedDDIM(0.9)) and DampedDDIM(0.9) != DampedDDIM(1.0)


def test_its_rules_are_checked_like_the_builtins():
    with pytest.raises(ValueError, match="solver=DampedDDIM"):
        dpm_jax.sample(MODEL, X, SCHED, method="toy_damped_ddim", order=1)
    with pytest.raises(ValueError, match="algorithm_type"):
        dpm_jax.sample(
            MODEL, X, SCHED, solver=DampedDDIM(), grid=grids.TimeUniform(4), denoise_to_zero=True,
            algorithm_type="dpmsolver",
        )  # fmt: skip
