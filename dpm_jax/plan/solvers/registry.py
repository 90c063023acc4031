"""The registry of solvers: the one list of valid ``method`` values.

Adding a solver is one file in this package (a :class:`~.base.Solver`) and one
line here.
"""

from __future__ import annotations

from dpm_jax.plan.solvers.adaptive import Adaptive
from dpm_jax.plan.solvers.base import Solver
from dpm_jax.plan.solvers.deis import DEIS
from dpm_jax.plan.solvers.dpm2 import DPM2
from dpm_jax.plan.solvers.heun import Heun
from dpm_jax.plan.solvers.ipndm import IPNDM
from dpm_jax.plan.solvers.multistep import Multistep
from dpm_jax.plan.solvers.singlestep import Singlestep
from dpm_jax.plan.solvers.singlestep_fixed import SinglestepFixed
from dpm_jax.plan.solvers.unipc import UniPC

__all__ = ["SOLVERS", "METHODS", "get", "register_object_solver"]

SOLVERS: dict[str, Solver] = {
    s.name: s
    for s in (
        Singlestep(),
        Multistep(),
        SinglestepFixed(),
        Adaptive(),
        UniPC(),
        IPNDM(),
        DEIS(),
        Heun(),
        DPM2(),
    )
}

#: The valid ``method`` values, in the registry's order.
METHODS: tuple[str, ...] = tuple(SOLVERS)


def get(method: str) -> Solver:
    """The solver registered as ``method`` (validated by the options)."""
    return SOLVERS[method]


def methods() -> tuple[str, ...]:
    """The valid ``method`` values now (the built-ins and the registered object solvers)."""
    return tuple(SOLVERS)


class _ObjectSolver(Solver):
    """The registry entry of a solver object class defined outside the package
    (:class:`dpm_jax.solvers.Solver` with an ``emit``): its class attributes, and rows
    emitted by the object of the run (``run.solver``), which holds its options."""

    def __init__(self, cls):
        self.cls = cls
        for attr in (
            "name",
            "orders",
            "algorithms",
            "default_algorithm",
            "include_start",
            "steps_at_least_order",
            "calls_at_nodes",
        ):
            if hasattr(cls, attr):
                setattr(self, attr, getattr(cls, attr))

    def check(self, run) -> None:
        if not isinstance(run.solver, self.cls):
            raise ValueError(
                f"method={self.name!r} is a solver object with its own options: pass "
                f"solver={self.cls.__name__}(...) (not method={self.name!r})."
            )

    def emit(self, rows, run) -> None:
        run.solver.emit(rows, run)


def register_object_solver(cls) -> None:
    """Registers a solver object class (called when such a class is defined)."""
    name = getattr(cls, "name", "")
    if not isinstance(name, str) or not name:
        raise TypeError(f"{cls.__name__}: a solver needs a `name` (its method).")
    if name in SOLVERS and not isinstance(SOLVERS[name], _ObjectSolver):
        raise ValueError(f"{cls.__name__}: method {name!r} is a built-in solver's name.")
    SOLVERS[name] = _ObjectSolver(cls)
