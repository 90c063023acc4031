"""What a solver is: a few attributes and a function that emits the rows of a run.

A solver (one file each in this package, listed once in :mod:`.registry`) says

- ``name``: its ``method=`` value;
- ``orders``: the orders it has, ``algorithms``: the algorithm types it runs and
  ``default_algorithm`` (the options check these, with messages built from the
  registry);
- ``options``: the solver-specific options it reads; setting another one is a
  ValueError naming it;
- ``include_start``: whether ``return_intermediate`` begins with the start state;
- ``steps_at_least_order``: whether a run needs steps >= order;
- ``calls_at_nodes``: whether its first ``steps`` rows call the model at the grid's
  first ``steps`` nodes (multistep methods), so ``model_timesteps`` can move them;
- ``check(run)``: anything else it refuses (a grid it cannot use, an option
  value), raising a ValueError that names the option;
- ``emit(rows, run)``: the rows of the run, one per model call, from the nodes
  of the grid (:class:`Run`), using the coefficient formulas of
  :mod:`dpm_jax._coeffs`.

The planner (:func:`dpm_jax.plan.build.plan_run`) only joins a grid and a
solver; the executor never learns which solver made a plan.
"""

from __future__ import annotations

from typing import Any, ClassVar, NamedTuple

from dpm_jax._algorithm import Algorithm
from dpm_jax.plan.nodes import Node
from dpm_jax.schedules import Schedule

__all__ = ["Run", "Solver"]


class Run(NamedTuple):
    """Everything a solver needs to emit its rows.

    Attributes:
      schedule: the noise schedule.
      grid: the grid object (:mod:`dpm_jax.plan.grids`); ``grid.rule`` is its order rule.
      nodes: the grid's nodes, first to last (steps + 1 of them).
      t_start, t_end: the span (the first and last node's times).
      steps: the number of grid intervals.
      options: the validated :class:`~dpm_jax.SolverOptions`.
      algorithm: what ``options.algorithm_type`` means (data / noise, stochastic).
      solver: the solver object of a solver defined outside the registry (its ``emit``
        reads its own fields), else None.
      landings: None, or the node each step ends on where that is not the next node
        (DDIM's grids, :func:`dpm_jax.plan.grids.grid_landings`; the state is then taken
        as the next node's): only solvers with ``lands_off_grid`` run such grids.
    """

    schedule: Schedule
    grid: Any
    nodes: list[Node]
    t_start: float
    t_end: float
    steps: int
    options: Any
    algorithm: Algorithm
    landings: list[Node] | None = None
    solver: Any = None  # a solver object defined outside the registry (its own options)


class Solver:
    """Base of the solvers: override the attributes and :meth:`emit` (and :meth:`check`)."""

    name: ClassVar[str] = ""
    orders: ClassVar[tuple[int, ...]] = (1, 2, 3)
    algorithms: ClassVar[tuple[str, ...]] = ("dpmsolver", "dpmsolver++")
    default_algorithm: ClassVar[str] = "dpmsolver++"
    #: the solver-specific options it reads (of ``_options.SOLVER_OPTIONS``)
    options: ClassVar[tuple[str, ...]] = ()
    include_start: ClassVar[bool] = False
    steps_at_least_order: ClassVar[bool] = False
    #: row i < steps calls the model at node i (``model_timesteps`` may move those calls)
    calls_at_nodes: ClassVar[bool] = False
    adaptive: ClassVar[bool] = False  # chooses its grid on device (no plan)
    #: it runs grids whose steps end off the next node (``Run.landings``)
    lands_off_grid: ClassVar[bool] = False

    def check_options(self, options) -> None:
        """Refuses option values this solver cannot run (grid-independent)."""

    def check(self, run: Run) -> None:
        """Refuses a grid or option this solver cannot run (before any row is emitted)."""

    def emit(self, rows, run: Run) -> None:
        """Adds the run's rows to ``rows`` (a :class:`~dpm_jax.plan.rows.Rows`)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<solver {self.name!r}>"
