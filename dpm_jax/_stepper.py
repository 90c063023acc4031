"""The loop in the user's hands: a functional step API over a plan.

``sample`` runs a plan as one ``lax.scan``; a :class:`Stepper` runs the same rows one at
a time, so a pipeline that must call its network itself (ControlNet residuals,
self-conditioning, a guidance of its own, a network that is not ``net(x, t, cond)``) gets
every fixed-grid solver. In the style of optax and blackjax: pure functions over a
pytree state, no hidden PRNG state::

    st = dpm_jax.stepper(schedule, model_type="noise", steps=20, order=2)
    state = st.init(x_T)
    for _ in range(st.num_steps):
        x_in, t_in = st.network_input(state)      # what model_wrapper would feed the network
        out = net(x_in, t_in)                     # the network's raw output
        state = st.step(state, out)               # convert, correct, update
    x0 = state.x

The same loop runs in ``lax.fori_loop`` / ``lax.scan`` (the row index is part of the
state), under ``jit``, ``vmap`` and ``grad``; it equals ``sample`` with the same options
to rounding. The stochastic solvers take a key at each step: passing the run's key at
every step reproduces ``sample(..., key=key)`` (the row index is folded in).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from dpm_jax import _checks, _rows
from dpm_jax._algorithm import algorithm
from dpm_jax._corrections import make_corrector
from dpm_jax._executor import _check_alpha_zero, _check_integer_time, sample_keys
from dpm_jax._model import WrappedModel, model_wrapper
from dpm_jax._options import SolverOptions, collect
from dpm_jax.plan.build import cached_plan
from dpm_jax.plan.solvers import registry
from dpm_jax.plan.table import Plan
from dpm_jax.schedules import Schedule

__all__ = ["StepState", "StepTime", "Stepper", "stepper"]

#: Options of ``sample`` that belong to its own loop, not to a stepper's.
_LOOP_OPTIONS = ("return_intermediate", "return_info", "unroll", "remat", "progress")


class StepState(NamedTuple):
    """The state of a run between two model calls (a pytree of arrays).

    Attributes:
      x: the current point, where the next model call is made.
      history: the contributions of the model values so far to the next rows (W - 1
        arrays of x's shape; empty for first-order solvers).
      i: int32, the index of the next row (model call); ``num_steps`` when done.
    """

    x: Any
    history: tuple
    i: Any


class StepTime(NamedTuple):
    """Where the next model call is: continuous time t, the network's time input, and
    alpha_t, sigma_t (scalars of the state's dtype)."""

    t: Any
    t_input: Any
    alpha: Any
    sigma: Any


def _noop_net(*args, **kwargs):  # the shell's network: never called
    raise AssertionError("internal: the stepper's shell network was called")  # pragma: no cover


@functools.cache
def _shell(schedule, model_type, sigma_data, integer_time) -> WrappedModel:
    """A WrappedModel without a network: its input, output and conversion rules."""
    return model_wrapper(
        _noop_net, schedule, model_type=model_type, sigma_data=sigma_data, integer_time=integer_time
    )


@dataclasses.dataclass(frozen=True)
class Stepper:
    """A plan run one model call at a time (a pytree: its arrays are leaves).

    Make one with :func:`stepper`. ``init(x)`` starts a run, ``time(state)`` and
    ``network_input(state)`` say where and with what the network is called next,
    ``step(state, output, key=None)`` takes the network's raw output (in the model's
    parameterisation: noise, x0, v, score, flow or a raw EDM network) and returns the
    next state. ``num_steps`` rows in all; the result is ``state.x``.
    """

    rows: dict
    corr_params: tuple
    model: tuple = dataclasses.field(metadata=dict(static=True))
    data: bool = dataclasses.field(metadata=dict(static=True))
    stochastic: bool = dataclasses.field(metadata=dict(static=True))
    include_start: bool = dataclasses.field(metadata=dict(static=True))
    window: int = dataclasses.field(metadata=dict(static=True))
    num_steps: int = dataclasses.field(metadata=dict(static=True))
    corrector: Callable | None = dataclasses.field(metadata=dict(static=True))
    correct_final: bool = dataclasses.field(metadata=dict(static=True))
    xt_fn: Callable | None = dataclasses.field(metadata=dict(static=True))

    @property
    def shell(self) -> WrappedModel:
        """The model's input, output and conversion rules (a WrappedModel, no network)."""
        return _shell(*self.model)

    def init(self, x) -> StepState:
        """The state at the start of the run, from x (B, ...) at the plan's first time."""
        _checks.check_state("x", x)
        x = jnp.asarray(x)
        return StepState(x, tuple(jnp.zeros_like(x) for _ in range(self.window - 1)), jnp.int32(0))

    def _row(self, state: StepState) -> dict:
        dtype = state.x.dtype

        def pick(a):
            v = a[state.i]
            return v.astype(dtype) if jnp.issubdtype(v.dtype, jnp.floating) else v

        return jax.tree_util.tree_map(pick, self.rows)

    def time(self, state: StepState) -> StepTime:
        """t, t_input, alpha and sigma of the next model call."""
        row = self._row(state)
        return StepTime(row["t"], row["t_input"], row["alpha"], row["sigma"])

    def network_input(self, state: StepState):
        """(x_in, t_in): the network's inputs for the next call, as ``model_wrapper``
        makes them (t_in of shape (B,); EDM's preconditioning for ``model_type="edm"``,
        int32 for ``integer_time``)."""
        row = self._row(state)
        return self.shell.network_input(state.x, row["t_input"], row["alpha"], row["sigma"])

    def step(self, state: StepState, output, key=None) -> StepState:
        """The next state from the network's raw output at ``network_input(state)``.

        The output is converted to the solver's noise or data prediction, corrected
        (``correcting_x0_fn``), and the row's update applied (with the state
        corrections of ``correcting_xt_fn``). ``key``: the stochastic solvers' key for
        this step, one key or one per sample (the row index is folded in, so the run's
        key at every step reproduces ``sample``)."""
        x = state.x
        row = self._row(state)
        out = self.shell.network_output(output, x, row["alpha"], row["sigma"])
        m = self.shell.convert(out, x, row["alpha"], row["sigma"], self.data).astype(x.dtype)
        if self.data and self.corrector is not None:
            m = self.corrector(m, row["t"], *self.corr_params).astype(x.dtype)
        x_i = _rows.correct_start(x, row, self.xt_fn, self.include_start)
        z = None
        if self.stochastic:
            if key is None:
                raise ValueError(
                    "This stepper's solver is stochastic: pass a key at every step, "
                    "step(state, output, key=key)."
                )
            keys = sample_keys(key, x.shape[0])
            z = jax.vmap(
                lambda k: jax.random.normal(jax.random.fold_in(k, row["i"]), x.shape[1:], x.dtype)
            )(keys)
        elif key is not None:
            raise ValueError("`key`: this stepper's solver is deterministic; drop the key.")
        x_next, history = _rows.advance(x_i, state.history, m, row, z)
        final_fn = None
        corrector = self.corrector
        if self.correct_final and corrector is not None:
            final_fn = lambda u, t: corrector(u, t, *self.corr_params).astype(u.dtype)
        x_next = _rows.finish_row(x_next, row, self.num_steps - 1, final_fn, self.xt_fn)
        return StepState(x_next, history, state.i + 1)


jax.tree_util.register_dataclass(
    Stepper,
    data_fields=["rows", "corr_params"],
    meta_fields=[
        "model",
        "data",
        "stochastic",
        "include_start",
        "window",
        "num_steps",
        "corrector",
        "correct_final",
        "xt_fn",
    ],
)


def stepper(
    noise_schedule: Schedule,
    *,
    model_type: str = "noise",
    sigma_data: float | None = None,
    integer_time: bool = False,
    inverse: bool = False,
    plan: Plan | None = None,
    solver: Any = None,
    grid: Any = None,
    **options,
) -> Stepper:
    """A :class:`Stepper`: the run that ``sample`` (or ``inverse`` with ``inverse=True``)
    would make with these options, one model call at a time.

    Args:
      noise_schedule: the model's schedule.
      model_type: what the network predicts, as in :func:`dpm_jax.model_wrapper`
        ("noise", "x_start", "v", "score", "flow", "edm", "edm_v"); ``sigma_data`` for the
        EDM types, ``integer_time`` for networks that take int32 timesteps.
      inverse: integrate from data to noise (the options of :func:`dpm_jax.inverse`).
      plan: a plan from :func:`dpm_jax.build_plan` instead of the grid and solver
        options (only the corrections may be given then).
      solver, grid: the solver and grid objects (:mod:`dpm_jax.solvers`,
        :mod:`dpm_jax.grids`) instead of the keywords.
      **options: the options of :func:`dpm_jax.sample` for a fixed grid (``steps``,
        ``order``, ``method``, ``skip_type``, ``timesteps``, ...), and the corrections
        ``correcting_x0_fn`` (with its thresholds) and ``correcting_xt_fn``. The
        options of ``sample``'s own loop (``return_intermediate``, ``return_info``,
        ``unroll``, ``remat``, ``progress``) and the adaptive solver are refused.

    Classifier-free guidance: call the network on the doubled batch yourself and pass
    the combined output (``dpm_jax.guidance`` has the combinations).

    >>> import jax.numpy as jnp
    >>> from dpm_jax import schedules
    >>> sched = schedules.vp_linear()
    >>> st = stepper(sched, steps=5)
    >>> state = st.init(jnp.ones((2, 3)))
    >>> for _ in range(st.num_steps):
    ...     x_in, t_in = st.network_input(state)
    ...     state = st.step(state, 0.1 * x_in)
    >>> state.x.shape, int(state.i)
    ((2, 3), 5)
    """
    _checks.check_schedule(noise_schedule)
    for name in _LOOP_OPTIONS + ("key", "model_timesteps_fn"):
        if name in options:
            raise ValueError(
                f"`{name}` does not apply to a stepper: it is an option of sample's own loop "
                "(with a stepper, you run the loop)."
            )
    shell = _shell(noise_schedule, model_type, sigma_data, integer_time)
    correction_names = (
        "correcting_x0_fn",
        "correcting_xt_fn",
        "thresholding_max_val",
        "dynamic_thresholding_ratio",
    )
    if plan is not None:
        if not isinstance(plan, Plan):
            raise TypeError(
                f"`plan` must be a dpm_jax.Plan from build_plan(), got {type(plan).__name__}."
            )
        extra = sorted(set(options) - set(correction_names))
        if extra or inverse:
            drop = ", ".join(map(repr, extra)) or "inverse"
            raise ValueError(f"`plan` gives the grid and the solver: drop {drop}.")
        opts = SolverOptions(**options)
    else:
        opts = collect(dict(options, solver=solver, grid=grid))
        if registry.get(opts.method).adaptive:
            raise ValueError(
                f"method={opts.method!r} chooses its steps on the fly and has no stepper; use "
                "a fixed-grid method (multistep, singlestep, unipc, ...)."
            )
        plan = cached_plan(noise_schedule, opts, "up" if inverse else "down")
    _check_alpha_zero(shell, plan)
    _check_integer_time(shell, plan)
    corrector, corr_params = make_corrector(
        opts.correcting_x0_fn, opts.thresholding_max_val, opts.dynamic_thresholding_ratio
    )
    data = algorithm(plan.algorithm_type).data
    steps = _rows.correction_steps(plan) if opts.correcting_xt_fn is not None else None
    rows = _rows.plan_rows(plan, index=True, steps=steps)
    return Stepper(
        rows=jax.tree_util.tree_map(jnp.asarray, rows),
        corr_params=tuple(corr_params),
        model=(noise_schedule, model_type, shell.sigma_data, integer_time),
        data=data,
        stochastic=plan.stochastic,
        include_start=plan.include_start,
        window=plan.window,
        num_steps=plan.nfe,
        corrector=corrector,
        correct_final=corrector is not None and not data and plan.denoise_to_zero,
        xt_fn=opts.correcting_xt_fn,
    )
