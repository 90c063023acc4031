"""Grid nodes: a time, the network's time input there, and the schedule's values."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from dpm_jax import _coeffs as C
from dpm_jax.schedules import Schedule

__all__ = ["Node", "node", "DATA_NODE"]


class Node(NamedTuple):
    """A grid point: its time t, the network's time input, and the schedule there."""

    t: float
    t_input: float
    p: C.Point

    @property
    def finite(self) -> bool:
        """Whether lambda is finite here (not the data, sigma = 0, nor pure noise, alpha = 0)."""
        return bool(np.isfinite(self.p.lam))


def node(schedule: Schedule, t, t_input=None) -> Node:
    """The node at time t (float64); ``t_input`` defaults to ``schedule.time_input(t)``."""
    t = np.float64(t)
    return Node(
        float(t),
        float(schedule.time_input(t) if t_input is None else t_input),
        C.point(schedule, t),
    )


def point(schedule: Schedule, t) -> C.Point:
    """The schedule's (log alpha, sigma, lambda) at the float64 time t."""
    return C.point(schedule, np.float64(t))


#: The data (sigma = 0, alpha = 1, lambda = +inf): the end of ``final_sigmas_type="zero"``
#: and of an explicit grid whose last sigma is 0. The network is never evaluated there.
DATA_NODE = Node(0.0, 0.0, C.Point(np.float64(0.0), np.float64(0.0), np.float64(np.inf)))
