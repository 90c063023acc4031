"""Grid nodes: a time, the network's time input there, and the schedule's values."""

from __future__ import annotations

from typing import NamedTuple

import jax
import numpy as np

from dpm_jax import _coeffs as C
from dpm_jax.schedules import Schedule

__all__ = ["Node", "node", "DATA_NODE", "is_jax", "is_zero", "is_finite", "distinct_finite", "host"]


def is_jax(v) -> bool:
    """Whether v is a jax value (a traced grid, for grid optimisation): the planner then
    builds the same rows from jax scalars, so their values are differentiable in the
    grid, and takes every node it cannot inspect to be an interior one (finite lambda,
    sigma > 0, distinct from its neighbours)."""
    return isinstance(v, jax.Array)


def is_zero(v) -> bool:
    """v == 0 for host values; False for jax values (interior nodes)."""
    return False if is_jax(v) else bool(v == 0.0)


def is_finite(v) -> bool:
    """isfinite(v) for host values; True for jax values (interior nodes)."""
    return True if is_jax(v) else bool(np.isfinite(v))


def host(v):
    """float(v) for a host value, v itself for a jax value."""
    return v if is_jax(v) else float(v)


def distinct_finite(values) -> bool:
    """Whether the host values among ``values`` are finite and pairwise distinct (jax values
    count as finite and distinct)."""
    host = [float(v) for v in values if not is_jax(v)]
    return all(np.isfinite(host)) and len(set(host)) == len(host)


class Node(NamedTuple):
    """A grid point: its time t, the network's time input, and the schedule there."""

    t: float
    t_input: float
    p: C.Point

    @property
    def finite(self) -> bool:
        """Whether lambda is finite here (not the data, sigma = 0, nor pure noise, alpha = 0)."""
        return is_finite(self.p.lam)


def node(schedule: Schedule, t, t_input=None) -> Node:
    """The node at time t (float64 on the host; a jax t gives a node of jax scalars);
    ``t_input`` defaults to ``schedule.time_input(t)``."""
    if is_jax(t):
        return Node(t, schedule.time_input(t) if t_input is None else t_input, C.point(schedule, t))
    t = np.float64(t)
    return Node(
        float(t),
        float(schedule.time_input(t) if t_input is None else t_input),
        C.point(schedule, t),
    )


def point(schedule: Schedule, t) -> C.Point:
    """The schedule's (log alpha, sigma, lambda) at the float64 (or jax) time t."""
    return C.point(schedule, t if is_jax(t) else np.float64(t))


#: The data (sigma = 0, alpha = 1, lambda = +inf): the end of ``final_sigmas_type="zero"``
#: and of an explicit grid whose last sigma is 0. The network is never evaluated there.
DATA_NODE = Node(0.0, 0.0, C.Point(np.float64(0.0), np.float64(0.0), np.float64(np.inf)))
