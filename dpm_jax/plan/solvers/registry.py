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

__all__ = ["SOLVERS", "METHODS", "get"]

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
