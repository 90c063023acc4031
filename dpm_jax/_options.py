"""The options of a run, defined once: :class:`SolverOptions`.

``dpm_jax.sample`` and ``dpm_jax.inverse`` spell the options out as keyword
arguments (the reference implementation's names, for IDEs and docs); each is
defined here once, with its default, its allowed values and its check, and
validated once per call when the options object is made. A test keeps the two
signatures in step with this type.

>>> from dpm_jax import SolverOptions
>>> opts = SolverOptions(method="unipc", order=3, skip_type="logSNR")
>>> opts
SolverOptions(order=3, method='unipc', skip_type='logSNR')
>>> dict(opts)  # as a mapping: the options that differ from the defaults
{'order': 3, 'method': 'unipc', 'skip_type': 'logSNR'}
>>> opts.algorithm.data, opts.algorithm.stochastic
(True, False)
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Callable, Mapping
from typing import Any, Literal

import jax
import numpy as np

from dpm_jax import _checks
from dpm_jax._algorithm import ALGORITHMS, Algorithm, algorithm

__all__ = ["SolverOptions", "OPTION_NAMES"]

SkipType = Literal[
    "time_uniform",
    "logSNR",
    "time_quadratic",
    "karras",
    "exponential",
    "linspace",
    "leading",
    "trailing",
    "lu",
]
#: a method of the solver registry (``dpm_jax.plan.solvers.registry.methods()``)
Method = str
AlgorithmType = Literal["dpmsolver", "dpmsolver++", "sde-dpmsolver", "sde-dpmsolver++"]
SolverType = Literal["dpmsolver", "taylor"]
Multistep3Variant = Literal["reference", "third_order"]
UniPCVariant = Literal["bh1", "bh2"]
IPNDMVariant = Literal["fixed", "v"]
DEISVariant = Literal["tab", "rhoab"]
FinalSigmasType = Literal["zero", "sigma_min", "repeat", "sigma_max"]
SpacingRule = Literal["dpmsolver", "ddim", "euler"]
ErrorNorm = Literal["batch", "per_sample"]
Corrector = (
    Literal["dynamic_thresholding", "dynamic_thresholding_diffusers", "static_thresholding"]
    | Callable
    | None
)

SOLVER_TYPES = ("dpmsolver", "taylor")
MULTISTEP3_VARIANTS = ("reference", "third_order")
UNIPC_VARIANTS = ("bh1", "bh2")
IPNDM_VARIANTS = ("fixed", "v")
DEIS_VARIANTS = ("tab", "rhoab")
#: Options that only some solvers read (each solver lists its own in ``Solver.options``).
SOLVER_OPTIONS = (
    "solver_type",
    "lower_order_final",
    "multistep3_variant",
    "unipc_variant",
    "unipc_corrector",
    "euler_at_final",
    "ipndm_variant",
    "deis_variant",
)
FINAL_SIGMAS_TYPES = ("zero", "sigma_min", "repeat", "sigma_max")
SPACING_RULES = ("dpmsolver", "ddim", "euler")
ERROR_NORMS = ("batch", "per_sample")
DEFAULT_STEPS = 20


def _is_traced(v) -> bool:
    return isinstance(v, jax.core.Tracer)


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class SolverOptions(Mapping):
    """Every option of :func:`dpm_jax.sample` / :func:`dpm_jax.inverse`, validated once.

    The fields and their meaning are documented in :func:`dpm_jax.sample`.
    ``steps=None`` means 20 (or, with ``timesteps`` / ``sigmas``, the grid's
    length - 1); ``skip_type=None`` means "time_uniform". Immutable; make a
    changed copy with :meth:`replace`. As a mapping it holds the options whose
    values differ from the defaults, so ``dpm_jax.sample(model, x, sched,
    **options)`` runs with exactly these options.

    Derived, parsed once: :attr:`algorithm` (``data``: the solver integrates the
    data prediction x0, else the noise prediction eps; ``stochastic``: the steps
    add noise), :attr:`explicit_grid` ("timesteps", "sigmas" or None).

    Raises:
      ValueError / TypeError: naming the option and its allowed values.
    """

    steps: int | None = None
    order: int = 2
    method: Method = "multistep"
    algorithm_type: AlgorithmType | None = None
    skip_type: SkipType | None = None
    solver_type: SolverType = "dpmsolver"
    lower_order_final: bool = True
    denoise_to_zero: bool = False
    t_start: float | None = None
    t_end: float | None = None
    timesteps: Any = None
    sigmas: Any = None
    model_timesteps: Any = None
    multistep3_variant: Multistep3Variant = "reference"
    unipc_variant: UniPCVariant = "bh2"
    unipc_corrector: bool = True
    ipndm_variant: IPNDMVariant = "fixed"
    deis_variant: DEISVariant = "tab"
    final_sigmas_type: FinalSigmasType | None = None
    euler_at_final: bool = False
    karras_rho: float = 7.0
    steps_offset: int = 0
    spacing_rule: SpacingRule = "dpmsolver"
    begin_index: int = 0
    correcting_x0_fn: Corrector = None
    correcting_xt_fn: Callable | None = None
    thresholding_max_val: Any = 1.0
    dynamic_thresholding_ratio: Any = 0.995
    atol: float = 0.0078
    rtol: float = 0.05
    error_norm: ErrorNorm = "batch"
    max_step_growth: float | None = 2.0
    check_finite: bool = False
    throw: bool = True
    return_intermediate: bool = False
    return_info: bool = False
    unroll: int | Literal["auto"] = "auto"
    remat: bool = False
    progress: bool = False
    #: a solver object defined outside the registry (its own options), else None
    _solver: Any = dataclasses.field(default=None, repr=False)

    def __post_init__(self):
        _validate(self)

    # -- derived -----------------------------------------------------------------
    @property
    def algorithm(self) -> Algorithm:
        """What ``algorithm_type`` means: ``.name``, ``.data`` (x0 vs eps), ``.stochastic``.
        ``algorithm_type=None`` is the solver's default ("dpmsolver++" for the DPM-Solver
        family and UniPC, "dpmsolver" for the solvers that integrate the noise prediction:
        iPNDM, DEIS, Heun, DPM-2)."""
        if self.algorithm_type is not None:
            return algorithm(self.algorithm_type)
        from dpm_jax.plan.solvers import registry

        return algorithm(registry.get(self.method).default_algorithm)

    @property
    def explicit_grid(self) -> str | None:
        """ "timesteps" or "sigmas" if the run has an explicit grid, else None."""
        if self.timesteps is not None:
            return "timesteps"
        return "sigmas" if self.sigmas is not None else None

    @property
    def num_steps(self) -> int:
        """The number of grid intervals: len - 1 of an explicit grid, else ``steps`` (20)."""
        grid = self.timesteps if self.timesteps is not None else self.sigmas
        if grid is not None:
            return int(np.shape(grid)[0]) - 1
        return DEFAULT_STEPS if self.steps is None else self.steps

    def replace(self, **changes) -> SolverOptions:
        """A copy with ``changes`` applied (validated again)."""
        return dataclasses.replace(self, **changes)

    # -- mapping: the options that differ from the defaults ------------------------
    def _set(self) -> list[str]:
        out = []
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, np.ndarray) or _is_traced(v) or not _same(v, f.default):
                out.append(f.name)
        return out

    def __getitem__(self, name: str):
        """The value of any option (its default if not set; unknown names: KeyError)."""
        if name not in OPTION_NAMES:
            raise KeyError(name)
        return getattr(self, name)

    def __contains__(self, name) -> bool:
        """Whether ``name`` is set (differs from its default), as the iteration lists."""
        return name in self._set()

    def __iter__(self):
        return iter(self._set())

    def __len__(self) -> int:
        return len(self._set())

    def __eq__(self, other) -> bool:
        """Equal options; a plain mapping compares as the options it spells out."""
        if isinstance(other, Mapping) and not isinstance(other, SolverOptions):
            try:
                other = SolverOptions(**other)
            except (TypeError, ValueError):
                return False
        if not isinstance(other, SolverOptions):
            return NotImplemented
        return all(_same(getattr(self, n), getattr(other, n)) for n in OPTION_NAMES) and _same(
            self._solver, other._solver
        )

    def __hash__(self) -> int:
        """Hashable (arrays by content, functions by identity): a ``jax.jit`` static
        argument, and a cache key."""
        return hash(tuple(_hash_key(getattr(self, n)) for n in OPTION_NAMES) + (self._solver,))

    def __repr__(self) -> str:
        items = ", ".join(f"{k}={_short(getattr(self, k))}" for k in self._set())
        return f"SolverOptions({items})"


OPTION_NAMES: tuple[str, ...] = tuple(
    f.name for f in dataclasses.fields(SolverOptions) if not f.name.startswith("_")
)
#: The options that the solver and grid objects carry (``solver=`` / ``grid=``).
OBJECT_OPTIONS = (
    "steps",
    "order",
    "method",
    "algorithm_type",
    "skip_type",
    "solver_type",
    "lower_order_final",
    "t_start",
    "t_end",
    "timesteps",
    "sigmas",
    "model_timesteps",
    "multistep3_variant",
    "unipc_variant",
    "unipc_corrector",
    "ipndm_variant",
    "deis_variant",
    "final_sigmas_type",
    "euler_at_final",
    "karras_rho",
    "steps_offset",
    "spacing_rule",
    "begin_index",
    "atol",
    "rtol",
    "error_norm",
    "max_step_growth",
)
#: The options that only the execution reads (not the plan of a fixed grid).
EXECUTION_OPTIONS = (
    "correcting_x0_fn",
    "correcting_xt_fn",
    "thresholding_max_val",
    "dynamic_thresholding_ratio",
    "atol",
    "rtol",
    "error_norm",
    "max_step_growth",
    "check_finite",
    "throw",
    "return_intermediate",
    "return_info",
    "unroll",
    "remat",
    "progress",
)


def plan_key(o: SolverOptions) -> tuple | None:
    """A hashable key of the options a plan depends on (arrays by content), or None if
    one of them is traced."""
    parts = []
    for name in OPTION_NAMES:
        if name in EXECUTION_OPTIONS:
            continue
        v = getattr(o, name)
        if _is_traced(v):
            return None
        if isinstance(v, np.ndarray):
            v = ("array", v.shape, v.tobytes())
        parts.append((name, type(v), v))
    parts.append(("_solver", type(o._solver), o._solver))  # a solver object's own options
    key = tuple(parts)
    try:
        hash(key)
    except TypeError:
        return None
    return key


def _same(a, b) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (
            isinstance(a, np.ndarray)
            and isinstance(b, np.ndarray)
            and a.shape == b.shape
            and bool(np.all(a == b))
        )
    if _is_traced(a) or _is_traced(b):
        return a is b
    if type(a) is bool or type(b) is bool:  # True == 1 must not count as the same option
        return type(a) is type(b) and a == b
    try:
        return bool(a == b)
    except Exception:
        return a is b


def _hash_key(v):
    if isinstance(v, np.ndarray):
        return ("array", v.shape, v.tobytes())
    if _is_traced(v):
        return ("traced", id(v))
    try:
        hash(v)
    except TypeError:
        return ("unhashable", id(v))
    return v


def _short(v) -> str:
    if isinstance(v, np.ndarray):
        return np.array2string(v, precision=6, threshold=6, separator=", ")
    return repr(v)


def _set_field(opts, name, value) -> None:
    object.__setattr__(opts, name, value)


def _validate(o: SolverOptions) -> None:
    """All checks of the options that need no schedule, in one place."""
    from dpm_jax.plan.solvers import registry  # (the registry imports the planner)

    _checks.check_choice("method", o.method, tuple(registry.SOLVERS))
    if o.algorithm_type is not None:
        _checks.check_choice("algorithm_type", o.algorithm_type, tuple(ALGORITHMS))
    if o.skip_type is not None:
        from dpm_jax.plan.grids import SKIP_TYPES

        _checks.check_choice("skip_type", o.skip_type, SKIP_TYPES)
    _checks.check_choice("solver_type", o.solver_type, SOLVER_TYPES)
    for name in (
        "lower_order_final",
        "denoise_to_zero",
        "unipc_corrector",
        "euler_at_final",
        "return_intermediate",
        "return_info",
        "remat",
        "progress",
        "check_finite",
        "throw",
    ):
        _set_field(o, name, _checks.check_bool(name, getattr(o, name)))
    if isinstance(o.order, bool) or not isinstance(o.order, numbers.Integral):
        raise TypeError(
            f"`order` must be an int in 1..3, got {type(o.order).__name__} {o.order!r}."
        )
    solver = registry.get(o.method)
    alg = o.algorithm.name
    if alg not in solver.algorithms:
        takes = [m for m, s in registry.SOLVERS.items() if alg in s.algorithms]
        raise ValueError(
            f"algorithm_type={alg!r} needs method="
            f"{' or '.join(map(repr, takes))} (stochastic solvers are multistep), got "
            f"method={o.method!r}."
            if o.algorithm.stochastic
            else f"algorithm_type={alg!r} is not available with method={o.method!r} (it "
            f"takes {' or '.join(map(repr, solver.algorithms))}); methods that take "
            f"{alg!r}: {', '.join(map(repr, takes))}."
        )
    _check_solver_options(o, solver)
    solver.check_options(o)
    if o.order not in solver.orders:
        allowed = (
            str(solver.orders[0])
            if len(solver.orders) == 1
            else ", ".join(map(str, solver.orders[:-1])) + f" or {solver.orders[-1]}"
        )
        raise ValueError(f"`order` must be {allowed} for method={o.method!r}, got {o.order}.")
    if not solver.adaptive and o.steps is not None:
        _set_field(o, "steps", _checks.check_int("steps", o.steps, 1))
    _check_grid(o)
    _check_model_timesteps(o, solver)
    if solver.steps_at_least_order and o.num_steps < o.order:
        raise ValueError(
            f"`steps` must be >= `order` for method={o.method!r}: got steps="
            f"{o.num_steps}, order={o.order}."
        )
    if o.return_intermediate and not o.return_info:
        raise ValueError(
            "`return_intermediate=True` returns the states in info.intermediates: "
            "pass return_info=True as well (the result is then (x0, info))."
        )
    _checks.check_choice("multistep3_variant", o.multistep3_variant, MULTISTEP3_VARIANTS)
    _checks.check_choice("unipc_variant", o.unipc_variant, UNIPC_VARIANTS)
    _checks.check_choice("ipndm_variant", o.ipndm_variant, IPNDM_VARIANTS)
    _checks.check_choice("deis_variant", o.deis_variant, DEIS_VARIANTS)
    if o.final_sigmas_type is not None:
        _checks.check_choice("final_sigmas_type", o.final_sigmas_type, FINAL_SIGMAS_TYPES)
    _checks.check_positive("karras_rho", o.karras_rho)
    _checks.check_int("steps_offset", o.steps_offset, 0)
    _checks.check_choice("spacing_rule", o.spacing_rule, SPACING_RULES)
    _set_field(o, "begin_index", _checks.check_int("begin_index", o.begin_index, 0))
    _checks.check_corrector(
        o.correcting_x0_fn, o.thresholding_max_val, o.dynamic_thresholding_ratio
    )
    _check_correcting_xt_fn(o, solver)
    _check_adaptive_and_status(o, solver)
    _check_used(o, solver)
    _checks.check_choice("error_norm", o.error_norm, ERROR_NORMS)
    _checks.check_positive("atol", o.atol)
    _checks.check_positive("rtol", o.rtol)
    if o.unroll != "auto":
        _set_field(o, "unroll", _checks.check_int("unroll", o.unroll, 1))
    for name in ("t_start", "t_end"):
        v = getattr(o, name)
        if _is_traced(v):
            raise TypeError(
                f"`{name}` must be a concrete number (it sets the plan on the host), "
                "got a traced value; build the plan outside jit."
            )


def _check_solver_options(o: SolverOptions, solver) -> None:
    """A solver-specific option set (to a non-default value) for a solver that does not read
    it is refused, naming it and the solvers that read it."""
    defaults = {f.name: f.default for f in dataclasses.fields(SolverOptions)}
    for name in SOLVER_OPTIONS:
        if name in solver.options or _same(getattr(o, name), defaults[name]):
            continue
        readers = [m for m, s in _registry().SOLVERS.items() if name in s.options]
        raise ValueError(
            f"`{name}` does not apply with method={o.method!r} (it reads "
            f"{', '.join(solver.options) or 'none of the solver options'}); `{name}` is an "
            f"option of method={' / '.join(map(repr, readers))}."
        )


_DYNAMIC = ("dynamic_thresholding", "dynamic_thresholding_diffusers")


def _check_used(o: SolverOptions, solver) -> None:
    """Every option set (to another value than its default) is read by the run, or refused
    here, naming the option and what reads it. The solver-specific options are checked
    against each solver's list (:func:`_check_solver_options`); these are the rules that
    depend on the grid, the order or another option."""
    defaults = {f.name: f.default for f in dataclasses.fields(SolverOptions)}

    def is_set(name) -> bool:
        return not _same(getattr(o, name), defaults[name])

    def refuse(name, why):
        raise ValueError(f"`{name}` does not apply here: {why}.")

    skip = "time_uniform" if o.skip_type is None else o.skip_type
    from dpm_jax.plan.grids import NODE_SKIPS

    diffusers_grid = o.explicit_grid is None and (
        skip in NODE_SKIPS or o.final_sigmas_type is not None or o.euler_at_final
    )
    if solver.adaptive:
        for name in ("steps", "skip_type"):
            if getattr(o, name) is not None:
                refuse(name, "method='adaptive' chooses its own steps (no grid)")
        for name in ("karras_rho", "steps_offset", "spacing_rule", "begin_index", "unroll"):
            if is_set(name):
                refuse(name, "it shapes a fixed grid's run; method='adaptive' has none")
    else:
        for name in ("atol", "rtol", "error_norm"):
            if is_set(name):
                refuse(name, f"it is an option of method='adaptive', not of {o.method!r}")
    if is_set("karras_rho") and skip != "karras":
        refuse("karras_rho", "it is the rho of skip_type='karras'")
    if is_set("steps_offset") and skip != "leading":
        refuse("steps_offset", "it shifts diffusers' skip_type='leading' timesteps")
    if o.order == 1 and solver.name not in ("heun", "dpm2"):
        for name in ("solver_type", "multistep3_variant", "lower_order_final"):
            if is_set(name) and name in solver.options:
                refuse(name, "it shapes the terms of order 2 and 3; order=1 has none")
    if is_set("multistep3_variant") and o.order != 3:
        refuse("multistep3_variant", "it is the third-order multistep update (order=3)")
    if is_set("lower_order_final") and solver.name == "singlestep" and not diffusers_grid:
        refuse(
            "lower_order_final",
            "method='singlestep' on the reference's grids follows DPM-Solver-fast's "
            "order mix (it reads lower_order_final on diffusers' grids)",
        )
    fn = o.correcting_x0_fn
    if is_set("thresholding_max_val") and fn not in _DYNAMIC + ("static_thresholding",):
        refuse("thresholding_max_val", "it is a parameter of correcting_x0_fn's thresholds")
    if is_set("dynamic_thresholding_ratio") and fn not in _DYNAMIC:
        refuse(
            "dynamic_thresholding_ratio",
            "it is the quantile of correcting_x0_fn='dynamic_thresholding'",
        )
    if fn is not None and not o.algorithm.data and not o.denoise_to_zero:
        raise ValueError(
            f"`correcting_x0_fn` corrects the data prediction, which "
            f"algorithm_type={o.algorithm.name!r} (method={o.method!r}) never forms: it "
            "integrates the noise prediction (the correction would be ignored). Use "
            "algorithm_type='dpmsolver++', or denoise_to_zero=True (the final x0 is "
            "corrected), or correcting_xt_fn on the state."
        )


def _check_adaptive_and_status(o: SolverOptions, solver) -> None:
    """The adaptive solver's step growth cap and the failure options: each used or refused."""
    if o.max_step_growth is not None:
        _checks.check_positive("max_step_growth", o.max_step_growth)
        if not isinstance(o.max_step_growth, jax.core.Tracer) and o.max_step_growth < 1.0:
            raise ValueError(
                f"`max_step_growth` must be >= 1 (or None: no cap), got {o.max_step_growth!r}."
            )
    if not solver.adaptive:
        if not _same(o.max_step_growth, 2.0):
            raise ValueError(
                f"`max_step_growth` does not apply with method={o.method!r}: it caps the step "
                "growth of method='adaptive'."
            )
        if not o.throw and not o.check_finite:
            raise ValueError(
                f"`throw=False` does not apply with method={o.method!r} and "
                "check_finite=False: there is no status to return (pass check_finite=True "
                "to report non-finite model outputs)."
            )
        return
    if o.check_finite:
        raise ValueError(
            "`check_finite` does not apply with method='adaptive': it always reports a "
            "non-finite model output (SampleInfo.status)."
        )
    for name in ("remat", "progress"):
        if getattr(o, name):
            why = (
                "its while_loop cannot be differentiated in reverse mode"
                if name == "remat"
                else "its number of steps is known only when it ends"
            )
            raise ValueError(f"`{name}=True` does not apply with method='adaptive': {why}.")


def _check_correcting_xt_fn(o: SolverOptions, solver) -> None:
    """``correcting_xt_fn(xt, t, step)``: a function; not for the adaptive solver (as the
    reference refuses it), nor for UniPC with its corrector (whose corrected state is
    never formed in the loop: the next row builds it from the predicted point)."""
    fn = o.correcting_xt_fn
    if fn is None:
        return
    if not callable(fn):
        raise TypeError(
            f"`correcting_xt_fn` must be a function f(xt, t, step) -> xt or None, got "
            f"{type(fn).__name__}."
        )
    if solver.adaptive:
        raise ValueError(
            f"`correcting_xt_fn` does not apply with method={o.method!r}: the adaptive "
            "solver chooses its steps on the fly (the reference implementation refuses it "
            "too); use a fixed grid."
        )
    if o.method == "unipc" and o.unipc_corrector:
        raise ValueError(
            "`correcting_xt_fn` does not apply with method='unipc' and its corrector: the "
            "corrected state of a step is never formed in the loop (the next step builds it "
            "from the predicted point); pass unipc_corrector=False, or use "
            "method='multistep'."
        )


def _registry():
    from dpm_jax.plan.solvers import registry

    return registry


def _check_grid(o: SolverOptions) -> None:
    """An explicit grid: 1-D, >= 2 finite entries (a last sigma may be 0), strictly
    monotone, concrete; it replaces steps, skip_type, t_start, t_end and the diffusers
    grid options."""
    if o.timesteps is not None and o.sigmas is not None:
        raise ValueError("Pass either `timesteps` or `sigmas`, not both.")
    _check_grid_object(o)
    name = o.explicit_grid
    if name is None:
        return
    v = _host_array(
        name,
        getattr(o, name),
        ": build the grid outside jit, or pass the plan of "
        "dpm_jax.build_plan(..., timesteps=...) to execute_plan",
    )
    if v.ndim != 1 or v.shape[0] < 2:
        raise ValueError(
            f"`{name}` must be a 1-D array with at least 2 entries (the first and "
            f"last node), got shape {v.shape}."
        )
    finite = np.isfinite(v)
    if name == "sigmas":
        finite[-1] |= v[-1] == 0.0
        if np.any(v[:-1] <= 0.0) or v[-1] < 0.0:
            raise ValueError(
                f"`sigmas` (sigma_t / alpha_t) must be > 0, except a last entry 0 "
                f"(the data); got {_short(v)}."
            )
    if not np.all(finite):
        raise ValueError(
            f"`{name}` must be finite{' (a last 0 aside)' if name == 'sigmas' else ''}; "
            f"entry {int(np.argmin(finite))} is {v[np.argmin(finite)]!r}."
        )
    d = np.diff(v)
    if not (np.all(d < 0) or np.all(d > 0)):
        raise ValueError(
            f"`{name}` must be strictly monotone (decreasing to sample, increasing to "
            f"invert), got {_short(v)}."
        )
    if o.steps is not None and o.steps != v.shape[0] - 1:
        raise ValueError(
            f"`steps`={o.steps} disagrees with `{name}` of length {v.shape[0]}: an "
            f"explicit grid of n + 1 nodes has n steps (leave `steps` out)."
        )
    defaults = {f.name: f.default for f in dataclasses.fields(SolverOptions)}
    for other in (
        "skip_type",
        "t_start",
        "t_end",
        "final_sigmas_type",
        "karras_rho",
        "steps_offset",
        "spacing_rule",
        "begin_index",
    ):
        if not _same(getattr(o, other), defaults[other]):
            raise ValueError(
                f"`{other}` does not apply with an explicit grid (`{name}` gives the "
                f"nodes from first to last); drop `{other}`."
            )
    v.flags.writeable = False
    _set_field(o, name, v)


def _check_grid_object(o: SolverOptions) -> None:
    """A :class:`dpm_jax.grids.Timesteps` (what ``optimize_timesteps`` returns) passed as
    ``timesteps=`` stands for its times only where it has no model times (the keyword
    would drop them); as ``sigmas=`` it is refused (its values are times)."""
    from dpm_jax import grids

    if isinstance(o.sigmas, grids.Grid):
        raise ValueError(
            f"`sigmas` got a grid object ({type(o.sigmas).__name__}); pass it as "
            "`grid=` (dpm_jax.sample(..., grid=fitted))."
        )
    if isinstance(o.timesteps, grids.Grid) and not (
        isinstance(o.timesteps, grids.Timesteps) and o.timesteps.model_timesteps is None
    ):
        what = (
            "a fitted grid with model times (`model_timesteps`), which `timesteps=` would drop"
            if isinstance(o.timesteps, grids.Timesteps)
            else f"a grid object ({type(o.timesteps).__name__})"
        )
        raise ValueError(
            f"`timesteps` got {what}; pass it as `grid=`: dpm_jax.sample(..., grid=fitted)."
        )


def _host_array(name: str, value, hint: str = "") -> np.ndarray:
    """``value`` as float64 NumPy; TypeError naming ``name`` if it is traced (it sets the
    plan on the host) or not numbers."""
    if _is_traced(value):
        raise TypeError(
            f"`{name}` must be concrete (a NumPy array or list; it sets the plan on "
            f"the host), got a traced value{hint}."
        )
    try:
        return np.array(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(
            f"`{name}` must be a 1-D array of numbers, got {type(value).__name__}."
        ) from None


def _check_model_timesteps(o: SolverOptions, solver) -> None:
    """``model_timesteps``: concrete, finite, 1-D, one time per grid node that calls the
    model (``num_steps`` of them), for a solver whose model calls are at its grid nodes."""
    value = o.model_timesteps
    if value is None:
        return
    if not solver.calls_at_nodes:
        readers = [m for m, s in _registry().SOLVERS.items() if s.calls_at_nodes]
        raise ValueError(
            f"`model_timesteps` does not apply with method={o.method!r}: it moves the model "
            "calls made at the grid's nodes, which only "
            f"method={' / '.join(map(repr, readers))} make."
        )
    v = _host_array("model_timesteps", value)
    if v.ndim != 1 or v.shape[0] != o.num_steps:
        raise ValueError(
            f"`model_timesteps` must hold one time per step ({o.num_steps}: the times at "
            f"which the model is called at the first {o.num_steps} grid nodes), got shape "
            f"{v.shape}."
        )
    if not np.all(np.isfinite(v)):
        raise ValueError(
            f"`model_timesteps` must be finite; entry {int(np.argmin(np.isfinite(v)))} is "
            f"{float(v[np.argmin(np.isfinite(v))])!r}."
        )
    v.flags.writeable = False
    _set_field(o, "model_timesteps", v)


def collect(values: dict) -> SolverOptions:
    """The options among a call's local variables (of ``sample``, ``inverse``, ``build_plan``,
    ``stepper``): the keywords, or the ``solver`` and ``grid`` objects (with the execution
    keywords); a keyword that an object already carries is an error naming the clash."""
    kw = {k: values[k] for k in OPTION_NAMES if k in values}
    solver, grid = values.get("solver"), values.get("grid")
    if solver is None and grid is None:
        return SolverOptions(**kw)
    from dpm_jax import grids, solvers

    if isinstance(solver, solvers.DPMSolverV3):
        raise ValueError(
            "`solver`: DPMSolverV3 runs through dpm_jax.sample only (with "
            "dpm_jax.v3.sample_v3: its coefficients are per-dimension arrays of the "
            "statistics, not a plan of the registry); inverse, build_plan and stepper take "
            "the other solvers (the v3 host plan is dpm_jax.v3.v3_plan)."
        )
    if solver is not None and not isinstance(solver, solvers.Solver):
        raise TypeError(
            f"`solver` must be a dpm_jax.solvers object (Multistep(...), UniPC(...), ...), got "
            f"{type(solver).__name__}."
        )
    if grid is not None and not isinstance(grid, grids.Grid):
        raise TypeError(
            f"`grid` must be a dpm_jax.grids object (TimeUniform(...), Karras(...), "
            f"Timesteps([...]), ...), got {type(grid).__name__}."
        )
    defaults = {f.name: f.default for f in dataclasses.fields(SolverOptions)}
    for name in OBJECT_OPTIONS:
        if name in kw and not _same(kw[name], defaults[name]):
            raise ValueError(
                f"`{name}` clashes with the solver=/grid= objects, which carry the solver's "
                f"and the grid's options: set it on the object (or use the keywords alone)."
            )
    solver = solvers.Multistep() if solver is None else solver
    if grid is not None and registry_of(solver).adaptive:
        raise ValueError(
            f"`grid` does not apply with solver={solver!r}: the adaptive solver chooses its "
            "own steps (give t_start / t_end to the Adaptive object)."
        )
    merged = {k: v for k, v in kw.items() if k not in OBJECT_OPTIONS}
    merged.update(solver.keywords())
    if grid is not None:
        merged.update(grid.keywords())
    custom = solver if getattr(type(solver), "emit", None) is not None else None
    return SolverOptions(**merged, _solver=custom)


def registry_of(solver):
    """The registry entry of a solver object."""
    return _registry().get(solver.name)


def to_objects(o: SolverOptions):
    """``(solver, grid)``: the :mod:`dpm_jax.solvers` and :mod:`dpm_jax.grids` objects that
    stand for the solver and grid keywords of ``o`` (``grid`` None for the adaptive solver;
    ``o.steps`` None is the default 20 steps). The execution options are not in them."""
    from dpm_jax import grids, solvers

    if o._solver is not None:
        solver: Any = o._solver
    else:
        cls = {
            c.name: c
            for c in (
                solvers.Multistep,
                solvers.Singlestep,
                solvers.SinglestepFixed,
                solvers.UniPC,
                solvers.Adaptive,
                solvers.IPNDM,
                solvers.DEIS,
                solvers.Heun,
                solvers.DPM2,
            )
        }[o.method]
        values = {field: getattr(o, kw) for field, kw in cls._keywords.items()}
        if "algorithm_type" in values and values["algorithm_type"] is None:
            values["algorithm_type"] = o.algorithm.name
        solver = cls(**values)
    if _registry().get(o.method).adaptive:
        return solver, None
    if o.explicit_grid is not None:
        gcls = grids.Timesteps if o.explicit_grid == "timesteps" else grids.Sigmas
        values_ = getattr(o, o.explicit_grid)
        return solver, gcls(tuple(values_), model_timesteps=o.model_timesteps)
    skip = "time_uniform" if o.skip_type is None else o.skip_type
    spacing_cls = {
        g.skip_type: g
        for g in (
            grids.TimeUniform,
            grids.LogSNR,
            grids.TimeQuadratic,
            grids.Karras,
            grids.Exponential,
            grids.Lu,
            grids.Linspace,
            grids.Leading,
            grids.Trailing,
        )
    }[skip]
    gvalues = {field: getattr(o, kw) for field, kw in spacing_cls._keywords.items()}
    gvalues["steps"] = o.num_steps
    if o.model_timesteps is not None:
        raise ValueError(
            "`model_timesteps` on a spacing grid has no grid object: use "
            "grids.Timesteps(times, model_timesteps=...)"
        )
    return solver, spacing_cls(**gvalues)
