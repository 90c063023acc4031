"""The executor: one ``jax.lax.scan`` over the rows of a plan."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend import core as jex_core

from dpm_jax import _boundary, _checks, _progress, _rows, _status
from dpm_jax._algorithm import algorithm
from dpm_jax._corrections import dynamic_thresholding, make_corrector
from dpm_jax._model import WrappedModel
from dpm_jax._options import SolverOptions
from dpm_jax.plan.table import Plan

__all__ = ["SampleInfo", "execute_plan", "run_plan", "dynamic_thresholding"]


class SampleInfo(NamedTuple):
    """Diagnostics of a run.

    Attributes:
      nfe: model calls made (an int for fixed grids; a traced int32 for the
        adaptive solver, whose NFE is known only after it ran).
      intermediates: with ``return_intermediate=True``, the states (n, *x.shape):
        multistep: the start and the state after every step; singlestep: the
        state after every outer step; plus the denoised state with
        ``denoise_to_zero``. Otherwise None.
      status: int32, 0 where the run finished, else why it stopped (1 the adaptive
        solver's attempt cap, 2 a non-finite model output, 3 a step too small to move
        t; ``dpm_jax._status.MESSAGES``): per sample (B,), or one for the batch with
        the adaptive solver's ``error_norm="batch"``. The adaptive solver always sets
        it; a fixed grid with ``check_finite=True`` (else None). A failure raises
        :class:`dpm_jax.SamplingError` unless ``throw=False``.
    """

    nfe: Any
    intermediates: Any = None
    status: Any = None


def make_model_fn(model, algorithm_type: str, corrector: Callable | None, corr_params) -> Callable:
    """M(x, t, t_input, alpha, sigma): eps for "dpmsolver"; the (corrected) data prediction
    x0 for "dpmsolver++" (a wrapped model converts its own output, so v / x0 / flow
    models are exact at alpha = 0).

    A bare network is what ``model_wrapper(net, schedule)`` makes of it: a noise
    prediction ``net(x, t_input)`` called with the schedule's time input (one time
    convention for bare and wrapped networks), x0 = (x - sigma eps) / alpha.

    A model with a state (APG's momentum, ``model.stateful``) gives
    ``M(x, t, t_input, alpha, sigma, state) -> (m, state)``."""
    data = algorithm(algorithm_type).data
    if isinstance(model, WrappedModel) and model.stateful:  # M(x, ..., state) -> (m, state)

        def stateful(x, t, t_input, alpha, sigma, state):
            m, state = model.predict(x, t, t_input, alpha, sigma, data, state)
            m = m.astype(x.dtype)
            if data and corrector is not None:
                m = corrector(m, t, *corr_params).astype(x.dtype)
            return m, state

        return stateful
    if isinstance(model, WrappedModel):

        def predict(x, t, t_input, alpha, sigma):
            return model.predict(x, t, t_input, alpha, sigma, data).astype(x.dtype)
    else:

        def predict(x, t, t_input, alpha, sigma):
            t_in = jnp.broadcast_to(jnp.asarray(t_input, x.dtype), (x.shape[0],))
            eps = model(x, t_in)
            if not hasattr(eps, "shape") or eps.shape != x.shape:
                raise ValueError(
                    f"the network must return an array of the input's shape {x.shape}, got "
                    f"{getattr(eps, 'shape', type(eps).__name__)}."
                )
            eps = eps.astype(x.dtype)
            if not data:
                return eps
            if jnp.ndim(alpha):  # per-sample times (the adaptive solver)
                alpha = jnp.reshape(alpha, jnp.shape(alpha) + (1,) * (x.ndim - 1))
                sigma = jnp.reshape(sigma, jnp.shape(sigma) + (1,) * (x.ndim - 1))
            return (x - sigma * eps) / alpha

    def fn(x, t, t_input, alpha, sigma):
        m = predict(x, t, t_input, alpha, sigma)
        if not data or corrector is None:
            return m
        return corrector(m, t, *corr_params).astype(x.dtype)

    return fn


def _parts(model, corrector, corr_params, batch: int) -> tuple[Any, Any, Any]:
    """(network, data, batched) of a model and its corrector, for :func:`_boundary.bind`:
    the network (the user's callables, taken apart by ``_boundary.split``) and the data
    (a WrappedModel's conditions, guidance scale, keyword arrays, and the thresholding
    values: every leaf is an argument); ``batched`` marks the per-sample data leaves."""
    if isinstance(model, WrappedModel):
        shell = dataclasses.replace(
            model,
            net=None,  # type: ignore[arg-type]
            classifier_fn=None,
            condition=None,
            unconditional_condition=None,
            guidance_scale=None,
            model_kwargs={},
            classifier_kwargs={},
            params=None,
        )
        network: tuple = (shell, model.net, model.classifier_fn, corrector)
        data: tuple = (model.data_fields(), corr_params)
        batched: tuple = (
            model.batched_fields(batch),
            jax.tree_util.tree_map(lambda _: False, corr_params),
        )
    else:
        network = (None, model, None, corrector)
        data = ((), corr_params)
        batched = ((), jax.tree_util.tree_map(lambda _: False, corr_params))
    return network, data, batched


def _rebuilt(network, data):
    """The model and corrector of :func:`_parts` from their (possibly traced) parts."""
    shell, net, classifier_fn, corrector = network
    fields, corr_params = data
    if shell is None:
        return net, corrector, corr_params
    model = dataclasses.replace(shell, net=net, classifier_fn=classifier_fn, **fields)
    return model, corrector, corr_params


def _model_fn_of_parts(network, data, *inputs, algorithm_type):
    model, corrector, corr_params = _rebuilt(network, data)
    return make_model_fn(model, algorithm_type, corrector, corr_params)(*inputs)


def _final_fn_of_parts(network, data, x, t):
    _, corrector, corr_params = _rebuilt(network, data)
    return corrector(x, t, *corr_params).astype(x.dtype)


@functools.cache
def _model_fn_for(algorithm_type: str):
    return functools.partial(_model_fn_of_parts, algorithm_type=algorithm_type)


def _xt_fn_of_parts(network, data, x, t, step):
    return network[3](x, t, step)


def model_functions(
    model, algorithm_type: str, corrector, corr_params, inputs, final=None, xt_fn=None
):
    """The model function M(x, t, t_input, alpha, sigma) of a run (and the final
    correction f(x0, t) if ``final`` gives its inputs), at the avals of ``inputs``.

    Eager: :class:`~dpm_jax._boundary.Bound` pytrees, whose arrays (the weights, the
    conditions, every array a closure reads) are arguments of the compiled program.
    Under a caller's trace (or when a closure reads a tracer): plain functions, traced
    into the caller's program as JAX does. ``xt_fn``: a ``correcting_xt_fn`` to bind
    the same way (at the state's aval). Returns ``(model_fn, final_fn, xt_fn, bound)``.
    """
    network, data, batched = _parts(model, corrector, corr_params, inputs[0].shape[0])
    if not _boundary.is_traced(data, inputs):
        m = _boundary.bind(_model_fn_for(algorithm_type), network, data, inputs, batched)
        f = x_b = None
        if final is not None:  # the corrector alone
            f = _boundary.bind(
                _final_fn_of_parts, (None, None, None, corrector), ((), corr_params), final
            )
        if xt_fn is not None:
            state = (inputs[0], inputs[1], jax.ShapeDtypeStruct((), jnp.int32))
            x_b = _boundary.bind(_xt_fn_of_parts, (None, None, None, xt_fn), (), state)
        bound = [b.args for b in (m, f, x_b) if b is not None]
        if not _boundary.is_traced(bound):
            return m, f, x_b, True
    model_fn = make_model_fn(model, algorithm_type, corrector, corr_params)
    final_fn = None
    if final is not None:
        final_fn = lambda x, t: corrector(x, t, *corr_params).astype(x.dtype)
    return model_fn, final_fn, xt_fn, False


def sample_keys(key, b: int, offset=0):
    """Per-sample PRNG keys (B,): a batch of keys as given, or ``fold_in(key, offset + n)``
    for sample n of one key, so that sample n's noise depends on its index in the whole
    batch only (not on how the batch is split, sharded or compiled)."""
    typed = jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
    if key.ndim != (0 if typed else 1):
        return key
    idx = jnp.asarray(offset, jnp.uint32) + jnp.arange(b, dtype=jnp.uint32)
    return jax.vmap(lambda n: jax.random.fold_in(key, n))(idx)


def _standard_normal(key, i, x):
    """z_i for row i, per sample b from ``fold_in(key_b, i)`` with the sample's key (a
    batch of keys, or ``key_b = fold_in(key, b)`` of one key: :func:`sample_keys`)."""
    keys = sample_keys(key, x.shape[0])
    draw = lambda k: jax.random.normal(jax.random.fold_in(k, i), x.shape[1:], x.dtype)
    return jax.vmap(draw)(keys)


def _row_body(
    model_fn,
    return_intermediate: bool,
    progress=None,
    key=None,
    *,
    final_fn=None,
    xt_fn=None,
    include_start: bool = False,
    last: int = -1,
    stateful: bool = False,
    check_finite: bool = False,
):
    """One row of the scan (see :mod:`dpm_jax._rows`): M_i = M(x_i, t_i), the correction of
    the start, the linear update (XLA fuses it with the model's last operations and,
    unrolled, across rows), the corrections of the state."""

    def body(carry, row):
        if check_finite:
            carry, finite = carry[:-1], carry[-1]
        if stateful:
            x_i, partial, g = carry
            m, g = model_fn(x_i, row["t"], row["t_input"], row["alpha"], row["sigma"], g)
        else:
            x_i, partial = carry
            m = model_fn(x_i, row["t"], row["t_input"], row["alpha"], row["sigma"])
        if check_finite:  # per sample: every model value so far finite
            finite = finite & jnp.all(jnp.isfinite(m).reshape(m.shape[0], -1), axis=1)
        if progress is not None:
            _progress.tick(*progress)
        x_i = _rows.correct_start(x_i, row, xt_fn, include_start)
        z = None if key is None else _standard_normal(key, row["i"], x_i)
        x_next, partial = _rows.advance(x_i, partial, m, row, z)
        x_next = _rows.finish_row(x_next, row, last, final_fn, xt_fn)
        out = None
        if return_intermediate:  # (and the corrected start, which the intermediates begin with)
            out = (x_next, x_i) if xt_fn is not None and include_start else x_next
        carry = (x_next, partial, g) if stateful else (x_next, partial)
        if check_finite:
            carry = carry + (finite,)
        return carry, out

    return body


def _is_cheap(closed_jaxpr) -> bool:
    """True if the traced row has no matrix product or convolution anywhere."""
    heavy = ("dot_general", "conv_general_dilated")
    stack = [closed_jaxpr.jaxpr]
    while stack:
        jaxpr = stack.pop()
        for eqn in jaxpr.eqns:
            if eqn.primitive.name in heavy:
                return False
            for sub in jex_core.jaxprs_in_params(eqn.params):
                stack.append(sub)
    return True


def _execute(
    model_fn,
    final_fn,
    x,
    plan: Plan,
    key=None,
    xt_fn=None,
    xt_steps=None,
    state=None,
    *,
    check_finite: bool = False,
    return_intermediate: bool,
    unroll="auto",
    remat: bool = False,
    progress: bool = False,
    shard_axis=None,
):
    """One ``lax.scan`` over the plan's rows (see ``_row_body``); the model is traced once.

    ``unroll="auto"`` unrolls two rows per loop iteration when the model is
    cheap (no matrix products or convolutions): the solver's arithmetic is then
    comparable to the model's, and fusing two rows halves the loop's memory
    passes, while compile time, small for such a model, hardly grows. A model
    with matrix products or convolutions dominates the run time and its compile
    time would double, so it gets ``unroll=1``.
    """
    w, r = plan.window, plan.nfe
    rows = _rows.plan_rows(plan, index=final_fn is not None, steps=xt_steps)
    if plan.stochastic:
        offset = 0 if shard_axis is None else jax.lax.axis_index(shard_axis) * x.shape[0]
        key = sample_keys(key, x.shape[0], offset)
    body = _row_body(
        model_fn,
        return_intermediate,
        (r, shard_axis) if progress else None,
        key if plan.stochastic else None,
        final_fn=final_fn,
        xt_fn=xt_fn,
        include_start=plan.include_start,
        last=r - 1,
        stateful=state is not None,
        check_finite=check_finite,
    )
    init: tuple = (x, tuple(jnp.zeros_like(x) for _ in range(w - 1)))
    if state is not None:  # the model's state (APG's momentum) travels with the carry
        init = init + (state,)
    if check_finite:
        init = init + (jnp.ones((x.shape[0],), bool),)
    row0 = jax.tree_util.tree_map(lambda a: a[0], rows)
    closed, out_shape = jax.make_jaxpr(body, return_shape=True)(init, row0)  # the only trace
    if unroll == "auto":
        unroll = 2 if _is_cheap(closed) else 1
    traced_body = jex_core.jaxpr_as_fun(closed)
    out_tree = jax.tree_util.tree_structure(out_shape)

    def replay(carry, row):
        flat = jax.tree_util.tree_leaves((carry, row))
        return jax.tree_util.tree_unflatten(out_tree, traced_body(*flat))

    if remat:  # backward pass recomputes each row: memory independent of the number of rows
        replay = jax.checkpoint(replay)

    carry, ys = jax.lax.scan(replay, init, rows, unroll=unroll)
    x_out = carry[0]
    status = None
    if check_finite:
        status = jnp.where(carry[-1], 0, _status.NON_FINITE).astype(jnp.int32)
    inter = None
    if return_intermediate:
        start = x
        if xt_fn is not None and plan.include_start:
            ys, anchors = ys
            start = anchors[0]  # the start as corrected in the first row
        inter = ys[plan.intermediate_rows]
        if plan.include_start:
            inter = jnp.concatenate([start[None], inter], axis=0)
    return x_out, inter, status


_execute_jit = jax.jit(
    _execute,
    static_argnames=(
        "check_finite",
        "return_intermediate",
        "unroll",
        "remat",
        "progress",
        "shard_axis",
    ),
)


def _check_key(key, plan, x):
    """A stochastic plan needs a PRNG key: one for the batch, or one per sample."""
    if key is None:
        raise ValueError(
            f"algorithm_type={plan.algorithm_type!r} is stochastic: pass a PRNG key, "
            "sample(..., key=jax.random.key(0)) (or one key per sample, shape (B,))."
        )
    key = jnp.asarray(key) if not isinstance(key, jax.Array) else key
    typed = jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
    single, batched = ((), (x.shape[0],)) if typed else ((2,), (x.shape[0], 2))
    if not typed and key.dtype != jnp.uint32 or key.shape not in (single, batched):
        raise ValueError(
            f"`key` must be a PRNG key (jax.random.key) or a batch of {x.shape[0]} keys, "
            f"got dtype {key.dtype} and shape {key.shape}."
        )
    return key


is_traced = _boundary.is_traced


def as_model(model):
    """The model checked: a WrappedModel, or a callable (returned as is)."""
    if isinstance(model, WrappedModel):
        return model
    if not callable(model):
        raise TypeError(
            f"`model` must be a callable model(x, t) -> eps (e.g. from "
            f"dpm_jax.model_wrapper), got {type(model).__name__}."
        )
    return model


def _check_alpha_zero(model, plan: Plan) -> None:
    """Refuses a data-prediction plan with a model call at alpha = 0 (pure noise) where
    the model cannot give x0 there: a noise or score prediction (eps = x_T), EDM's
    preconditioning (sigma / alpha infinite), classifier guidance (sigma^2 / alpha)."""
    alpha = plan.alpha
    if isinstance(alpha, jax.core.Tracer) or not plan.data_prediction:
        return
    if not np.any(np.asarray(alpha) == 0.0):
        return
    kind = model.model_type if isinstance(model, WrappedModel) else "noise"
    if kind in ("noise", "score"):
        raise ValueError(
            f"This plan evaluates the model at alpha = 0 (pure noise), where a "
            f"{kind} prediction determines no x0 (eps = x_T there). Wrap a v-, x0- or "
            "flow-prediction network with dpm_jax.model_wrapper(..., model_type="
            "'v' / 'x_start' / 'flow'), or start at t_start < T."
        )
    if kind in ("edm", "edm_v"):
        raise ValueError(
            "This plan evaluates the model at alpha = 0 (pure noise), where EDM's "
            "preconditioning (model_type='edm') needs the noise level sigma / alpha, "
            "infinite there; start at t_start < T."
        )
    if isinstance(model, WrappedModel) and model.guidance_type == "classifier":
        raise ValueError(
            "This plan evaluates the model at alpha = 0 (pure noise), where classifier "
            "guidance of the data prediction, x0 + s sigma^2 / alpha grad log p, is "
            "undefined; start at t_start < T, or use guidance_type='classifier-free'."
        )


def _check_integer_time(model, plan: Plan) -> None:
    """``integer_time=True`` needs a run whose time inputs are integers."""
    if not (isinstance(model, WrappedModel) and model.integer_time):
        return
    t_in = plan.t_input
    if isinstance(t_in, jax.core.Tracer):
        return
    t_in = np.asarray(t_in, np.float64)
    off = np.abs(t_in - np.round(t_in))
    if np.any(off > 1e-6 * np.maximum(1.0, np.abs(t_in))):
        i = int(np.argmax(off))
        raise ValueError(
            f"model_wrapper(..., integer_time=True): the time input of model call {i} is "
            f"{t_in[i]!r}, not an integer. Put the grid on the table's timesteps: "
            "skip_type='leading' / 'trailing' / 'linspace', or timesteps= on them."
        )


def run_plan(model, x, plan: Plan, options, key=None, shard_axis=None):
    """Runs ``plan`` with validated ``options`` (a :class:`~dpm_jax.SolverOptions`: its
    corrector, ``return_intermediate``, ``unroll``, ``remat`` and ``progress``); x is a
    checked state. Returns ``(x_out, SampleInfo)``."""
    model = as_model(model)
    if isinstance(model, WrappedModel):
        model.check_batch(x)
    corrector, corr_params = make_corrector(
        options.correcting_x0_fn, options.thresholding_max_val, options.dynamic_thresholding_ratio
    )
    _check_alpha_zero(model, plan)
    _check_integer_time(model, plan)
    if options.progress:
        _progress.require_tqdm()
    key = _check_key(key, plan, x) if plan.stochastic else None
    if not isinstance(x, jax.Array):
        x = jnp.asarray(x)
    plan = plan.astype(x.dtype)
    if not options.return_intermediate and options.correcting_xt_fn is None:
        # only the intermediates and the corrections read these: keep them out of the key
        plan = dataclasses.replace(
            plan, intermediate_rows=np.zeros((0,), np.int32), include_start=False
        )
    scalar = jax.ShapeDtypeStruct((), x.dtype)
    final = None
    if corrector is not None and not plan.data_prediction and plan.denoise_to_zero:
        final = (jax.ShapeDtypeStruct(x.shape, x.dtype), scalar)
    state = model.guidance_state(x) if isinstance(model, WrappedModel) else None
    inputs = (x, scalar, scalar, scalar, scalar) + (() if state is None else (state,))
    model_fn, final_fn, xt_fn, bound = model_functions(
        model, plan.algorithm_type, corrector, corr_params, inputs, final, options.correcting_xt_fn
    )
    traced = not (bound and not is_traced(x, plan, key))
    run = _execute if traced else _execute_jit
    x_out, inter, status = run(
        model_fn,
        final_fn,
        x,
        plan,
        key,
        xt_fn,
        None if xt_fn is None else _rows.correction_steps(plan),
        state,
        check_finite=options.check_finite,
        return_intermediate=options.return_intermediate,
        unroll=options.unroll,
        remat=options.remat,
        progress=options.progress,
        shard_axis=shard_axis,
    )
    _status.report(status, options.throw, traced)
    return x_out, SampleInfo(nfe=plan.nfe, intermediates=inter, status=status)


def execute_plan(
    model,
    x,
    plan: Plan,
    *,
    correcting_x0_fn=None,
    correcting_xt_fn=None,
    thresholding_max_val=1.0,
    dynamic_thresholding_ratio=0.995,
    return_intermediate: bool = False,
    unroll="auto",
    remat: bool = False,
    progress: bool = False,
    key=None,
    _shard_axis=None,
):
    """Runs a plan from :func:`dpm_jax.build_plan`: one ``lax.scan``, one model call per row.

    The options mean what they mean in :func:`dpm_jax.sample`. The plan's
    coefficients are cast to ``x.dtype``; the result has x's shape, dtype and
    sharding. Compiled programs are cached: a plan of the same length and
    structure (e.g. another grid of the same length), a different guidance scale
    or thresholding value does not recompile. Returns ``(x_out, SampleInfo)``.

    >>> import jax.numpy as jnp
    >>> import dpm_jax
    >>> sched = dpm_jax.schedules.vp_linear()
    >>> model = dpm_jax.model_wrapper(lambda x, t: 0.1 * x, sched)
    >>> plan = dpm_jax.build_plan(sched, timesteps=[1.0, 0.5, 0.1, 0.001])
    >>> x0, info = execute_plan(model, jnp.ones((2, 3)), plan)
    >>> info.nfe
    3
    """
    if not isinstance(plan, Plan):
        raise TypeError(
            f"`plan` must be a dpm_jax.Plan from build_plan(), got {type(plan).__name__}."
        )
    _checks.check_state("x", x)
    options = SolverOptions(
        correcting_x0_fn=correcting_x0_fn,
        correcting_xt_fn=correcting_xt_fn,
        thresholding_max_val=thresholding_max_val,
        dynamic_thresholding_ratio=dynamic_thresholding_ratio,
        return_intermediate=return_intermediate,
        return_info=True,
        unroll=unroll,
        remat=remat,
        progress=progress,
    )
    return run_plan(model, x, plan, options, key=key, shard_axis=_shard_axis)
