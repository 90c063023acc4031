"""What an ``algorithm_type`` means: the one place where the string is parsed.

DPM-Solver (``"dpmsolver"``) integrates the noise prediction eps, DPM-Solver++
(``"dpmsolver++"``) the data prediction x0 (Lu et al. 2022, arXiv 2211.01095);
the ``"sde-"`` forms are their stochastic versions (SDE-DPM-Solver(++),
arXiv 2211.01095 Sec. 5), which add fresh noise in every step.

>>> algorithm("sde-dpmsolver++")
Algorithm(name='sde-dpmsolver++', data=True, stochastic=True)
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["Algorithm", "ALGORITHMS", "algorithm"]


class Algorithm(NamedTuple):
    """An algorithm type: its name, whether the model value M is the data prediction x0
    (``data``; otherwise the noise prediction eps), and whether the steps add noise."""

    name: str
    data: bool
    stochastic: bool


ALGORITHMS: dict[str, Algorithm] = {
    a.name: a
    for a in (
        Algorithm("dpmsolver", False, False),
        Algorithm("dpmsolver++", True, False),
        Algorithm("sde-dpmsolver", False, True),
        Algorithm("sde-dpmsolver++", True, True),
    )
}


def algorithm(name: str) -> Algorithm:
    """The :class:`Algorithm` of an ``algorithm_type`` (validated by the options)."""
    return ALGORITHMS[name]
