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

:class:`DPMSolverV3` is the exception: it carries DPM-Solver-v3's statistics and its own
options, has no reference keywords and no plan of the registry; ``dpm_jax.sample`` runs
it with :func:`dpm_jax.v3.sample_v3`.

A new solver is one file: subclass :class:`Solver` with its options as fields, a
``name`` and an ``emit(rows, run)`` that adds the rows of a run (see
:mod:`dpm_jax.plan.solvers.base` and ``tests/plan/test_custom_solver.py``); defining the
class registers it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import numbers
import threading
import weakref
from typing import Any, ClassVar

import numpy as np

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
    "DPMSolverV3",
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


# --------------------------------------------------------------------------- DPM-Solver-v3

_EMS_DIGESTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_EMS_DIGESTS_LOCK = threading.Lock()


def _ems_digest(ems) -> str:
    """sha256 of an EMS's content: its grid, ``l, s, b`` (dtype, shape and bits) and its
    ``meta`` (JSON, keys sorted). Computed once per EMS object (it is frozen)."""
    with _EMS_DIGESTS_LOCK:
        have = _EMS_DIGESTS.get(ems)
    if have is not None:
        return have
    from dpm_jax.v3.solver import _digest

    h = hashlib.sha256(_digest(ems).encode())
    h.update(json.dumps(ems.meta, sort_keys=True, default=repr).encode())
    out = h.hexdigest()
    with _EMS_DIGESTS_LOCK:
        _EMS_DIGESTS[ems] = out
    return out


@dataclasses.dataclass(frozen=True, eq=True, repr=False)
class DPMSolverV3:
    r"""DPM-Solver-v3 (Zheng, Lu, Chen and Zhu, NeurIPS 2023, arXiv 2310.13268): the
    multistep predictor-corrector on the empirical model statistics ``ems`` (Sec. 3.3-3.4).

    With ``L, S, B`` the integrals of the statistics ``l, s, b`` from lambda_T and
    ``f = (sigma eps - l x) / alpha``, the predictor expands ``g`` (``f`` with the
    statistics taken out, eq. 9) to order ``n`` at lambda_s:

    .. math::

        x_t = \frac{\alpha_t}{\alpha_s} e^{L_s - L_t} x_s
              - \alpha_t e^{L_s - L_t} \sum_{k \le n} E_k\, g^{(k)}_s - (b\ \text{term}),
        \qquad E_k = \int_{\lambda_s}^{\lambda_t}
              e^{(L+S)_\lambda - (L+S)_s} \frac{(\lambda - \lambda_s)^k}{k!}\, d\lambda,

    every factor a per-dimension array computed on the host in float64 (the derivation is
    in :mod:`dpm_jax.v3.solver`). ``sample(model, x_T, schedule, solver=DPMSolverV3(ems),
    grid=LogSNR(6))`` runs :func:`dpm_jax.v3.sample_v3` with these fields and the grid's
    ``steps``, ``t_start`` and ``t_end`` (NFE = steps): ``grid`` is :class:`~dpm_jax.grids.LogSNR`
    (the default, ``LogSNR(20)``), :class:`~dpm_jax.grids.TimeUniform`,
    :class:`~dpm_jax.grids.TimeQuadratic` or :class:`~dpm_jax.grids.Karras` (rho = 7, the
    official "edm" grid). It is not a plan of the solver registry: ``inverse``,
    ``build_plan`` and ``stepper`` refuse it, and every option of ``sample`` that v3 does
    not read is a ValueError naming it unless it is at its default.

    Fields (as :func:`dpm_jax.v3.sample_v3`'s keywords):
      ems: the statistics, a :class:`dpm_jax.v3.EMS` with concrete arrays.
      order: the predictor's order, 1, 2 or 3 (official: 2 guided, 3 unconditional).
      use_corrector: the corrector (no extra model call).
      lower_order_final: the last steps use ``min(order, steps left)``.
      half: the corrector only where ``t > 0.5``.
      p_pseudo: the predictor's pseudo-order (divided-difference) derivatives.
      c_pseudo: the corrector one order higher, with divided differences.
      degenerated: ``l = 1, s = b = 0`` instead of the statistics (DPM-Solver++).
      times: "snap" (the model at the statistics' point nearest each grid time, as the
        official code) or "interpolate" (at the grid's own times, the statistics linear
        in lambda between their points).

    Equality and hash: by content. Two objects are equal when their options are and their
    statistics have the same sha256 digest (grid, ``l``, ``s``, ``b`` with dtype and
    shape, and ``meta``), computed once when the object is made (and once per EMS object:
    an EMS is frozen; its arrays must not be changed in place afterwards). So an EMS
    loaded again from the same file gives an equal solver, and the object is a
    ``jax.jit`` static argument like the other solvers. The ``repr`` shows the statistics'
    size, span and digest, never their arrays.

    >>> import numpy as np
    >>> from dpm_jax.v3 import EMS
    >>> ones = np.ones((9, 4))
    >>> ems = EMS(np.linspace(-3.0, 5.0, 9), ones, 0 * ones, 0 * ones)
    >>> s = DPMSolverV3(ems, order=3)
    >>> s == DPMSolverV3(EMS(ems.lambdas, ones.copy(), 0 * ones, 0 * ones), order=3)
    True
    >>> repr(s).startswith("DPMSolverV3(ems=EMS(N=8, shape=(4,), lambdas=[-3, 5], sha256=")
    True
    >>> repr(s).endswith("order=3, use_corrector=True, lower_order_final=True, half=False, "
    ...                  "p_pseudo=False, c_pseudo=True, degenerated=False, times='snap')")
    True
    """

    ems: Any = dataclasses.field(compare=False)
    order: int = 2
    use_corrector: bool = True
    lower_order_final: bool = True
    half: bool = False
    p_pseudo: bool = False
    c_pseudo: bool = True
    degenerated: bool = False
    times: str = "snap"
    _ems_digest: str = dataclasses.field(init=False, default="", compare=True)

    _FLAGS: ClassVar[tuple[str, ...]] = (
        "use_corrector",
        "lower_order_final",
        "half",
        "p_pseudo",
        "c_pseudo",
        "degenerated",
    )

    def __post_init__(self):
        from dpm_jax import _boundary, _checks
        from dpm_jax.v3 import EMS

        name = type(self).__name__
        if not isinstance(self.ems, EMS):
            raise TypeError(
                f"{name}: `ems` must be a dpm_jax.v3.EMS (estimate_ems, load_ems, "
                f"load_official_ems), got {type(self.ems).__name__}."
            )
        if _boundary.is_traced((self.ems.l, self.ems.s, self.ems.b)):
            raise TypeError(
                f"{name}: `ems` holds traced arrays; the v3 coefficients are computed on the "
                "host, so the statistics must be concrete (make the solver outside jax.jit, "
                "or close over the EMS)."
            )
        order = self.order
        if isinstance(order, bool) or not isinstance(order, numbers.Integral):
            raise TypeError(
                f"{name}: `order` must be an int in 1..3, got {type(order).__name__} {order!r}."
            )
        if order not in (1, 2, 3):
            raise ValueError(f"{name}: `order` must be 1, 2 or 3, got {order}.")
        object.__setattr__(self, "order", int(order))
        for flag in self._FLAGS:
            try:
                value = _checks.check_bool(flag, getattr(self, flag))
            except TypeError as err:
                raise TypeError(f"{name}: {err}") from None
            object.__setattr__(self, flag, value)
        from dpm_jax.v3.solver import V3_TIMES

        try:
            _checks.check_choice("times", self.times, V3_TIMES)
        except (TypeError, ValueError) as err:
            raise type(err)(f"{name}: {err}") from None
        for part in ("l", "s", "b"):
            if not np.all(np.isfinite(np.asarray(getattr(self.ems, part)))):
                raise ValueError(f"{name}: `ems.{part}` must be finite.")
        object.__setattr__(self, "_ems_digest", _ems_digest(self.ems))

    def options(self) -> dict:
        """The keywords of :func:`dpm_jax.v3.sample_v3` that this object sets (every field
        but ``ems``)."""
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.init and f.name != "ems"
        }

    def __repr__(self) -> str:
        e = self.ems
        lam = e.lambdas
        stats = (
            f"EMS(N={e.N}, shape={e.shape}, lambdas=[{lam[0]:.4g}, {lam[-1]:.4g}], "
            f"sha256={self._ems_digest[:12]})"
        )
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options().items())
        return f"{type(self).__name__}(ems={stats}, {opts})"
