"""Solvers: one file each, listed in :mod:`.registry` (see :mod:`.base` for the protocol)."""

from dpm_jax.plan.solvers.base import Run, Solver
from dpm_jax.plan.solvers.registry import METHODS, SOLVERS, get

__all__ = ["METHODS", "Run", "SOLVERS", "Solver", "get"]
