"""The planner: a fixed-grid run as a table of float64 coefficients, built on the host.

- :mod:`~dpm_jax.plan.table`: the :class:`Plan` pytree the executor runs;
- :mod:`~dpm_jax.plan.nodes`: grid nodes (t, the network's time input, alpha, sigma, lambda);
- :mod:`~dpm_jax.plan.grids`: the grids (reference spacings, diffusers' spacings,
  explicit ``timesteps=`` / ``sigmas=``), each with its order rule;
- :mod:`~dpm_jax.plan.orders`: the order rules;
- :mod:`~dpm_jax.plan.rows`: the row builder;
- :mod:`~dpm_jax.plan.solvers`: one file per solver, and the registry of ``method`` values;
- :mod:`~dpm_jax.plan.build`: :func:`build_plan`, which joins a grid and a solver.
"""

from dpm_jax.plan.build import build_plan, plan_run
from dpm_jax.plan.grids import (
    DiffusersGrid,
    ExplicitGrid,
    Spacing,
    grid_from_options,
    grid_nodes,
    time_grid,
)
from dpm_jax.plan.nodes import DATA_NODE, Node
from dpm_jax.plan.orders import DIFFUSERS, REFERENCE, OrderRule
from dpm_jax.plan.solvers import METHODS, SOLVERS, Run, Solver
from dpm_jax.plan.table import Plan

__all__ = [
    "DATA_NODE",
    "DIFFUSERS",
    "DiffusersGrid",
    "ExplicitGrid",
    "METHODS",
    "Node",
    "OrderRule",
    "Plan",
    "REFERENCE",
    "Run",
    "SOLVERS",
    "Solver",
    "Spacing",
    "build_plan",
    "grid_from_options",
    "grid_nodes",
    "plan_run",
    "time_grid",
]
