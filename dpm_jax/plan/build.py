"""``build_plan``: joins a grid and a solver into a :class:`~dpm_jax.plan.table.Plan`.

The grid (:mod:`dpm_jax.plan.grids`) gives the nodes and the order rule; the
solver (:mod:`dpm_jax.plan.solvers`) emits one row per model call. What is
common to every solver is here: the span, the checks at infinite ends, and the
``denoise_to_zero`` row.
"""

from __future__ import annotations

import collections
import threading
from typing import Any

import jax
import numpy as np

from dpm_jax import _checks
from dpm_jax._options import SolverOptions, collect, plan_key
from dpm_jax.plan import grids
from dpm_jax.plan.nodes import is_jax, point
from dpm_jax.plan.nodes import node as make_node
from dpm_jax.plan.rows import Rows
from dpm_jax.plan.solvers import Run, registry
from dpm_jax.plan.table import Plan, plan_from_rows
from dpm_jax.schedules import Schedule

__all__ = ["build_plan", "plan_run", "cached_plan"]

_PLANS: collections.OrderedDict = collections.OrderedDict()
_PLAN_CACHE_SIZE = 256
_LOCK = threading.Lock()


def cached_plan(schedule: Schedule, options: SolverOptions, direction: str | None) -> Plan:
    """:func:`plan_run`, cached by (schedule, the options the plan reads, direction):
    schedules and options compare by content, so an eager call that repeats an earlier
    run's settings does no host planning. The cached plan's arrays are read-only."""
    key = plan_key(options)
    if key is None:
        return plan_run(schedule, options, direction)
    key = (schedule, key, direction)
    with _LOCK:
        plan = _PLANS.get(key)
        if plan is not None:
            _PLANS.move_to_end(key)
            return plan
    plan = plan_run(schedule, options, direction)
    for a in jax.tree_util.tree_leaves(plan):
        if isinstance(a, np.ndarray):
            a.flags.writeable = False
    with _LOCK:
        _PLANS[key] = plan
        while len(_PLANS) > _PLAN_CACHE_SIZE:
            _PLANS.popitem(last=False)
    return plan


def plan_run(
    schedule: Schedule,
    options: SolverOptions,
    direction: str | None = None,
    times=None,
    model_times=None,
) -> Plan:
    """The plan of a run with validated ``options``; ``direction`` "down" (sample),
    "up" (inverse) or None (either, from the span).

    ``times``: the grid as a sequence of times whose interior entries may be jax values
    (the first and last are host numbers), for grid optimisation: the plan's arrays are
    then jax arrays, differentiable in those times, with the same rows and the same
    values as the float64 plan of the same grid (up to the jax dtype). The caller keeps
    the interior strictly between the ends and monotone; ``options.steps`` must be
    len(times) - 1.

    ``model_times``: ``options.model_timesteps`` as a sequence that may hold jax values
    (for grid optimisation; the caller keeps them inside the span)."""
    solver = registry.get(options.method)
    if solver.adaptive:
        raise ValueError(
            f"build_plan(): method={options.method!r} chooses its grid on the fly "
            f"and has no plan; call dpm_jax.sample(..., method={options.method!r})."
        )
    if times is not None:
        if options.explicit_grid is not None or len(times) != options.num_steps + 1:
            raise ValueError("plan_run(times=...): pass the grid once, with steps=len(times) - 1.")
        grid: grids.Spacing | grids.DiffusersGrid | grids.ExplicitGrid
        grid = grids.ExplicitGrid("timesteps", tuple(times))
    else:
        grid = grids.grid_from_options(options)
    t_start, t_end, steps = grid.span(
        schedule, options.t_start, options.t_end, options.steps, direction
    )
    nodes = grid.nodes(schedule, t_start, t_end, steps)
    landings = grid.landings(schedule, t_start, t_end, steps)
    if landings is not None and not solver.lands_off_grid:
        readers = [m for m, s in registry.SOLVERS.items() if s.lands_off_grid]
        raise ValueError(
            f"spacing_rule='ddim' with skip_type={options.skip_type!r} and steps={steps}: "
            "DDIM's steps end at t - N // steps, not on the next timestep, which only "
            f"method={' / '.join(map(repr, readers))} runs (with order=1, as DDIM)."
        )
    alg = options.algorithm
    run = Run(schedule, grid, nodes, t_start, t_end, steps, options, alg, landings, options._solver)
    ends = [nodes[0].p.lam, nodes[-1].p.lam]
    upwards = ends[1] < ends[0]
    if upwards and not all(np.isfinite(ends)):
        raise ValueError(
            f"Inversion (t_start < t_end) needs a finite half log-SNR at both ends: "
            f"it is {ends[0]} at t_start={t_start} and {ends[1]} at t_end={t_end} "
            "(sigma = 0 or alpha = 0 there; the ODE is singular at the data and at pure "
            "noise). Move t_start/t_end inside the schedule."
        )
    if upwards and alg.stochastic:
        raise ValueError(
            f"algorithm_type={alg.name!r} is stochastic and samples "
            "downwards only; invert (t_start < t_end) with the deterministic "
            "'dpmsolver++' or 'dpmsolver'."
        )
    if not alg.data and ends[0] == -np.inf:
        raise ValueError(
            f"algorithm_type={alg.name!r} integrates the noise "
            "prediction, which is undefined at alpha = 0 (pure noise, lambda = -inf) "
            "where this run starts; use 'dpmsolver++' / 'sde-dpmsolver++', or start at "
            "t_start < T."
        )
    if options.denoise_to_zero and ends[1] == np.inf:
        raise ValueError("denoise_to_zero=True: this run already ends on the data (sigma = 0).")
    solver.check(run)
    if options._solver is not None and options._solver.name != options.method:  # pragma: no cover
        raise AssertionError("internal: the solver object is not the method's")
    rows = Rows(schedule, alg.data)
    solver.emit(rows, run)
    t_states = [n.t for n in rows.nodes] + [t_end]  # where the run's points lie
    if model_times is None and options.model_timesteps is not None:
        model_times = _checked_model_times(options.model_timesteps, nodes, t_start, t_end)
    if model_times is not None:
        _move_model_calls(rows, schedule, nodes, model_times)
    if (
        options.denoise_to_zero
    ):  # x0 = D(x, t_end): for noise prediction D = (x - sigma eps) / alpha
        p = point(schedule, t_end)
        alpha = np.exp(p.log_alpha)
        i = len(rows.t)
        if alg.data:
            rows.add(t_end, 0.0, {i: 1.0}, True)
        else:
            rows.add(t_end, 1.0 / alpha, {i: -p.sigma / alpha}, True)
        t_states.append(t_end)
    return plan_from_rows(rows, alg.name, solver.include_start, options.denoise_to_zero, t_states)


def _checked_model_times(values, nodes, t_start: float, t_end: float) -> list:
    """``model_timesteps`` (validated 1-D float64, one per step) inside the span: each
    entry equals its grid node's time or lies strictly between t_start and t_end."""
    lo, hi = min(t_start, t_end), max(t_start, t_end)
    for i, s in enumerate(values):
        if s != nodes[i].t and not lo < s < hi:
            raise ValueError(
                f"`model_timesteps`: entry {i} is {float(s)!r}, outside the run's span "
                f"({lo!r}, {hi!r}); a model time must equal its node's time "
                f"({float(nodes[i].t)!r}) or lie strictly inside the span."
            )
    return [float(s) for s in values]


def _move_model_calls(rows: Rows, schedule: Schedule, nodes, model_times) -> None:
    """Row i < steps calls the model at x_{t_i} with the time s_i = model_times[i]:
    its time input, alpha and sigma are those of s_i (the data prediction is
    (x_{t_i} - sigma(s_i) eps(x_{t_i}, s_i)) / alpha(s_i)); the coefficients, which
    integrate between the grid's nodes, are unchanged (LD3's decoupled model times,
    Tong et al. 2024, arXiv 2405.15506)."""
    for i, s in enumerate(model_times):
        host = not (is_jax(rows.nodes[i].t) or is_jax(nodes[i].t))
        if host and rows.nodes[i].t != nodes[i].t:
            raise AssertionError(
                f"internal: row {i} does not call the model at node {i}"
            )  # pragma: no cover
        if is_jax(s) or s != rows.nodes[i].t:  # (an unmoved call keeps its node bit for bit)
            rows.nodes[i] = make_node(schedule, s)


def build_plan(
    schedule: Schedule,
    steps: int | None = None,
    order: int = 2,
    method: str = "multistep",
    algorithm_type: str | None = None,
    skip_type: str | None = None,
    solver_type: str = "dpmsolver",
    lower_order_final: bool = True,
    denoise_to_zero: bool = False,
    t_start: float | None = None,
    t_end: float | None = None,
    multistep3_variant: str = "reference",
    unipc_variant: str = "bh2",
    unipc_corrector: bool = True,
    *,
    timesteps=None,
    sigmas=None,
    model_timesteps=None,
    ipndm_variant: str = "fixed",
    deis_variant: str = "tab",
    final_sigmas_type: str | None = None,
    euler_at_final: bool = False,
    karras_rho: float = 7.0,
    steps_offset: int = 0,
    spacing_rule: str = "dpmsolver",
    begin_index: int = 0,
    options: SolverOptions | None = None,
    solver: Any = None,
    grid: Any = None,
) -> Plan:
    """Plans a fixed-grid DPM-Solver(++) / UniPC run on the host, in float64.

    ``t_start``/``t_end`` default to ``schedule.T``/``schedule.t_eps`` (sampling);
    pass ``t_start < t_end`` to integrate upwards (inversion). Options as in
    :func:`dpm_jax.sample` (or pass a :class:`~dpm_jax.SolverOptions` as ``options``
    instead of keywords); ``method`` is any fixed-grid method of the registry
    (:data:`dpm_jax.plan.solvers.METHODS` but "adaptive").

    Three families of grids (:mod:`dpm_jax.plan.grids`), each with its order rules:

    - the reference implementation's (``skip_type`` "time_uniform", "logSNR",
      "time_quadratic" and no ``final_sigmas_type``): steps + 1 times from
      t_start to t_end, and the reference's order rules (``lower_order_final``
      below 10 steps; DPM-Solver-fast's singlestep orders);
    - diffusers' (``skip_type`` "karras", "exponential", "linspace", "leading",
      "trailing", or any ``final_sigmas_type``, or ``euler_at_final``): ``steps``
      model nodes and a final node (see :func:`grid_nodes`; "zero" is the
      default final node of the discrete spacings), and diffusers' order rules
      (multistep: ``lower_order_final`` below 15 steps; UniPC: always; singlestep:
      diffusers' order list, its intermediate points are grid nodes);
    - explicit (``timesteps=`` times t, or ``sigmas=`` sigma_t / alpha_t that may
      end with 0): the nodes from first to last, the reference's order rules. For
      multistep and UniPC NFE = len - 1; for singlestep methods the entries are
      the outer step boundaries, every step has order ``order`` (1 where it
      touches an infinite lambda) with its inner points uniform in lambda.

    ``solver`` / ``grid``: the objects of :mod:`dpm_jax.solvers` / :mod:`dpm_jax.grids`
    instead of the keywords (as in :func:`dpm_jax.sample`).

    ``model_timesteps`` moves the model calls of a grid's nodes (as in
    :func:`dpm_jax.sample`): ``plan.t``, ``t_input``, ``alpha`` and ``sigma`` of the
    first ``steps`` rows, not the coefficients.

    Infinite half log-SNR at an end (alpha = 0 at the start: flow models at t = 1,
    zero-terminal-SNR tables; sigma = 0 at the end: the data) is exact: a step
    touching it is a first-order step in closed form (``sigma_t x + alpha_t x0``
    from pure noise, ``alpha_t x0`` to the data), and the steps after it use no
    history from beyond it. Noise-prediction algorithms cannot start at alpha = 0.

    >>> import numpy as np
    >>> from dpm_jax import schedules
    >>> plan = build_plan(schedules.vp_linear(), steps=10, order=3, method="singlestep")
    >>> plan.nfe
    10
    >>> build_plan(schedules.edm(), sigmas=[80.0, 10.0, 1.0, 0.1, 0.0]).nfe
    4
    """
    _checks.check_schedule(schedule)
    if options is None:
        options = collect(locals())
    elif not isinstance(options, SolverOptions):
        raise TypeError(f"`options` must be a dpm_jax.SolverOptions, got {type(options).__name__}.")
    return plan_run(schedule, options, None)
