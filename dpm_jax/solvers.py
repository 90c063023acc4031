"""Solvers as objects that carry their own options.

In the spirit of diffrax (the solver is an argument) and optax (small factories): each
solver is a frozen dataclass holding exactly the options it reads, validated when it is
made, hashable and compared by value (so it can be a ``jax.jit`` static argument), with
a readable ``repr``::

    dpm_jax.sample(model, x_T, schedule, solver=Multistep(order=3), grid=LogSNR(10))

An option that does not apply to a solver cannot be written: ``UniPC`` has no
``solver_type``, ``Heun`` has no ``order``. The reference implementation's keywords
(``method=``, ``order=``, ...) stay; each object stands for the keywords it translates
to (:meth:`Solver.keywords`), so both ways run the same plan, bit for bit.

A new solver is one file: subclass :class:`Solver` with its options as fields, a
``name`` and an ``emit(rows, run)`` that adds the rows of a run (see
:mod:`dpm_jax.plan.solvers.base` and ``tests/plan/test_custom_solver.py``); defining the
class registers it.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

__all__ = [
    "Solver",
    "Multistep",
    "Singlestep",
    "SinglestepFixed",
    "UniPC",
    "Adaptive",
    "IPNDM",
    "DEIS",
    "Heun",
    "DPM2",
    "DPMSolverPP",
    "DPMSolver",
    "DDIM",
]


@dataclasses.dataclass(frozen=True)
class Solver:
    """Base of the solver objects.

    A built-in solver names its registry entry (``name``) and maps its fields to the
    reference keywords (``_keywords``: field -> keyword). A solver defined outside the
    package also gives ``emit`` (and may override the class attributes of
    :class:`dpm_jax.plan.solvers.base.Solver`: ``orders``, ``algorithms``,
    ``default_algorithm``, ``include_start``, ``steps_at_least_order``); its own fields
    are read by its ``emit`` from ``run.solver``.
    """

    name: ClassVar[str] = ""
    _keywords: ClassVar[dict] = {}

    def keywords(self) -> dict:
        """The reference keywords this solver stands for (``method``, ``order``, ...)."""
        out: dict[str, Any] = {"method": self.name}
        for field, keyword in self._keywords.items():
            out[keyword] = getattr(self, field)
        return out

    def __post_init__(self):
        from dpm_jax._options import SolverOptions

        try:
            SolverOptions(**self.keywords(), _solver=self)
        except (ValueError, TypeError) as err:  # name the object's fields, not the keywords
            msg = str(err)
            for field, keyword in self._keywords.items():
                if field != keyword:
                    msg = msg.replace(f"`{keyword}`", f"`{field}`")
            raise type(err)(f"{type(self).__name__}: {msg}") from None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "emit" in cls.__dict__:  # a solver defined outside the registry: register it
            from dpm_jax.plan.solvers import registry

            registry.register_object_solver(cls)


def _fields(**mapping):
    return mapping


@dataclasses.dataclass(frozen=True)
class Multistep(Solver):
    """Multistep DPM-Solver / DPM-Solver++ (Lu et al. 2022, arXiv 2211.01095, Alg. 2) and
    their SDE forms: ``algorithm_type`` "dpmsolver++" (data prediction, 2M / 3M),
    "dpmsolver" (noise prediction), "sde-dpmsolver++" / "sde-dpmsolver" (stochastic; need
    a key). ``solver_type`` "dpmsolver" or "taylor"; ``variant`` the third-order update
    ("reference", as published, or "third_order"); ``lower_order_final`` /
    ``euler_at_final``: lower orders at the last steps."""

    order: int = 2
    algorithm_type: str = "dpmsolver++"
    solver_type: str = "dpmsolver"
    lower_order_final: bool = True
    variant: str = "reference"
    euler_at_final: bool = False
    name: ClassVar[str] = "multistep"
    _keywords: ClassVar[dict] = _fields(
        order="order",
        algorithm_type="algorithm_type",
        solver_type="solver_type",
        lower_order_final="lower_order_final",
        variant="multistep3_variant",
        euler_at_final="euler_at_final",
    )


def DPMSolverPP(order: int = 2, **kw) -> Multistep:
    """DPM-Solver++(order M): ``Multistep(order, algorithm_type="dpmsolver++", ...)``."""
    return Multistep(order=order, algorithm_type="dpmsolver++", **kw)


def DPMSolver(order: int = 2, **kw) -> Multistep:
    """Multistep DPM-Solver (noise prediction): ``Multistep(order, "dpmsolver", ...)``."""
    return Multistep(order=order, algorithm_type="dpmsolver", **kw)


def DDIM() -> Multistep:
    """DDIM (Song et al. 2021) = first-order DPM-Solver: ``Multistep(order=1)``."""
    return Multistep(order=1, algorithm_type="dpmsolver")


@dataclasses.dataclass(frozen=True)
class Singlestep(Solver):
    """Singlestep DPM-Solver with DPM-Solver-fast's order mix (Lu et al. 2022, arXiv
    2206.00927, Sec. 3.4): ``order`` 1-3 the highest order, ``algorithm_type``
    "dpmsolver" / "dpmsolver++", ``solver_type`` "dpmsolver" / "taylor"."""

    order: int = 3
    algorithm_type: str = "dpmsolver++"
    solver_type: str = "dpmsolver"
    name: ClassVar[str] = "singlestep"
    _keywords: ClassVar[dict] = _fields(
        order="order", algorithm_type="algorithm_type", solver_type="solver_type"
    )


@dataclasses.dataclass(frozen=True)
class SinglestepFixed(Solver):
    """Singlestep DPM-Solver, every step of ``order`` (NFE = (steps // order) * order)."""

    order: int = 2
    algorithm_type: str = "dpmsolver++"
    solver_type: str = "dpmsolver"
    name: ClassVar[str] = "singlestep_fixed"
    _keywords: ClassVar[dict] = _fields(
        order="order", algorithm_type="algorithm_type", solver_type="solver_type"
    )


@dataclasses.dataclass(frozen=True)
class UniPC(Solver):
    """UniPC (Zhao et al. 2023, arXiv 2302.04867): the multistep predictor UniP with the
    corrector UniC (``corrector``, no extra model call); ``variant`` B(h) = h ("bh1") or
    e^h - 1 ("bh2")."""

    order: int = 2
    algorithm_type: str = "dpmsolver++"
    variant: str = "bh2"
    corrector: bool = True
    lower_order_final: bool = True
    euler_at_final: bool = False
    name: ClassVar[str] = "unipc"
    _keywords: ClassVar[dict] = _fields(
        order="order",
        algorithm_type="algorithm_type",
        variant="unipc_variant",
        corrector="unipc_corrector",
        lower_order_final="lower_order_final",
        euler_at_final="euler_at_final",
    )


@dataclasses.dataclass(frozen=True)
class Adaptive(Solver):
    """Adaptive DPM-Solver-12 / -23 (Lu et al. 2022, Sec. 3.3, Alg. 4-5): it chooses its
    own steps (no grid) from ``t_start`` (default T) to ``t_end``; tolerances ``atol``,
    ``rtol``; ``error_norm`` "batch" (the reference) or "per_sample";
    ``max_step_growth`` (None: the reference's unbounded rule)."""

    order: int = 3
    algorithm_type: str = "dpmsolver++"
    solver_type: str = "dpmsolver"
    atol: float = 0.0078
    rtol: float = 0.05
    error_norm: str = "batch"
    max_step_growth: float | None = 2.0
    t_start: float | None = None
    t_end: float | None = None
    name: ClassVar[str] = "adaptive"
    _keywords: ClassVar[dict] = _fields(
        order="order",
        algorithm_type="algorithm_type",
        solver_type="solver_type",
        atol="atol",
        rtol="rtol",
        error_norm="error_norm",
        max_step_growth="max_step_growth",
        t_start="t_start",
        t_end="t_end",
    )


@dataclasses.dataclass(frozen=True)
class IPNDM(Solver):
    """iPNDM (Zhang & Chen 2022, arXiv 2204.13902): Adams-Bashforth on the noise
    prediction, ``order`` 1-4, ``variant`` "fixed" (the classical weights) or "v" (exact on
    any grid)."""

    order: int = 4
    variant: str = "fixed"
    name: ClassVar[str] = "ipndm"
    _keywords: ClassVar[dict] = _fields(order="order", variant="ipndm_variant")


@dataclasses.dataclass(frozen=True)
class DEIS(Solver):
    """DEIS (Zhang & Chen 2022, arXiv 2204.13902): ``variant`` "tab" (polynomial in t) or
    "rhoab" (in rho = sigma / alpha), ``order`` 1-3."""

    order: int = 3
    variant: str = "tab"
    name: ClassVar[str] = "deis"
    _keywords: ClassVar[dict] = _fields(order="order", variant="deis_variant")


@dataclasses.dataclass(frozen=True)
class Heun(Solver):
    """EDM's Heun (Karras et al. 2022, Alg. 1): second order, two model calls per step."""

    name: ClassVar[str] = "heun"

    def keywords(self) -> dict:
        return {"method": self.name, "order": 2}


@dataclasses.dataclass(frozen=True)
class DPM2(Solver):
    """k-diffusion's DPM-2 (its ``sample_dpm_2``): second order, two calls per step."""

    name: ClassVar[str] = "dpm2"

    def keywords(self) -> dict:
        return {"method": self.name, "order": 2}
