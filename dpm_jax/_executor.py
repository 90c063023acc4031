"""The executor: one ``jax.lax.scan`` over the rows of a plan."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend import core as jex_core

from dpm_jax import _checks, _progress
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
    """

    nfe: Any
    intermediates: Any = None


def make_model_fn(model, algorithm_type: str, corrector: Callable | None, corr_params) -> Callable:
    """M(x, t, t_input, alpha, sigma): eps for "dpmsolver"; the (corrected) data prediction
    x0 for "dpmsolver++" (a wrapped model converts its own output, so v / x0 / flow
    models are exact at alpha = 0; a plain function's eps gives x0 = (x - sigma eps) / alpha)."""
    data = algorithm(algorithm_type).data
    if isinstance(model, WrappedModel):

        def predict(x, t, t_input, alpha, sigma):
            return model.predict(x, t, t_input, alpha, sigma, data).astype(x.dtype)
    else:

        def predict(x, t, t_input, alpha, sigma):
            eps = model(x, jnp.broadcast_to(t, (x.shape[0],))).astype(x.dtype)
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


def _standard_normal(key, i, x):
    """z_i for row i: from ``fold_in(key, i)`` (one key for the batch), or per sample from
    ``fold_in(key_b, i)`` (a batch of keys), so a sample's noise does not depend on
    how the batch is split, sharded or compiled."""
    typed = jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
    if key.ndim == (0 if typed else 1):
        return jax.random.normal(jax.random.fold_in(key, i), x.shape, x.dtype)
    draw = lambda k: jax.random.normal(jax.random.fold_in(k, i), x.shape[1:], x.dtype)
    return jax.vmap(draw)(key)


def _row_body(model_fn, w: int, return_intermediate: bool, progress=None, key=None):
    """One row of the scan, in transposed form. Row i computes M_i = M(x_i, t_i) and

        x_{i+1} = x_coef[i] x_i + m_coef[i, 0] M_i + P_1,
        P_j    <- m_coef[i + j, j] M_i + P_{j+1}     (j = 1 .. W-1, P_W = 0),

    where P_j holds the contributions of the model values so far to the output j
    rows ahead. Every carried array is rewritten by one elementwise expression:
    no history buffer is shifted or indexed, and XLA fuses the solver's
    arithmetic with the model's last operations (and, unrolled, across rows).
    """

    def body(carry, row):
        x_i, partial = carry
        m = model_fn(x_i, row["t"], row["t_input"], row["alpha"], row["sigma"])
        if progress is not None:
            _progress.tick(*progress)
        x_next = row["xc"] * x_i + row["mc"][0] * m
        if key is not None:
            x_next = x_next + row["nc"] * _standard_normal(key, row["i"], x_i)
        if w > 1:
            x_next = x_next + partial[0]
            partial = tuple(
                row["mc"][j] * m + (partial[j] if j < w - 1 else 0.0) for j in range(1, w)
            )
        return (x_next, partial), (x_next if return_intermediate else None)

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
    model,
    x,
    plan: Plan,
    corr_params,
    *,
    corrector,
    return_intermediate: bool,
    unroll="auto",
    remat: bool = False,
    progress: bool = False,
    shard_axis=None,
    key=None,
):
    """One ``lax.scan`` over the plan's rows (see ``_row_body``); the model is traced once.

    ``unroll="auto"`` unrolls two rows per loop iteration when the model is
    cheap (no matrix products or convolutions): the solver's arithmetic is then
    comparable to the model's, and fusing two rows halves the loop's memory
    passes, while compile time, small for such a model, hardly grows. A model
    with matrix products or convolutions dominates the run time and its compile
    time would double, so it gets ``unroll=1``.
    """
    model_fn = make_model_fn(model, plan.algorithm_type, corrector, corr_params)
    w, r = plan.window, plan.nfe
    m_coef = jnp.asarray(plan.m_coef)
    ahead = [jnp.concatenate([m_coef[j:, j], jnp.zeros((j,), m_coef.dtype)]) for j in range(w)]
    rows = dict(
        t=plan.t,
        t_input=plan.t_input,
        alpha=plan.alpha,
        sigma=plan.sigma,
        xc=plan.x_coef,
        mc=jnp.stack([m_coef[:, 0]] + ahead[1:], axis=1),
    )
    if plan.stochastic:
        rows.update(nc=plan.noise_coef, i=jnp.arange(r, dtype=jnp.uint32))
    body = _row_body(
        model_fn,
        w,
        return_intermediate,
        (r, shard_axis) if progress else None,
        key if plan.stochastic else None,
    )
    init = (x, tuple(jnp.zeros_like(x) for _ in range(w - 1)))
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

    (x_out, _), ys = jax.lax.scan(replay, init, rows, unroll=unroll)
    correct_final = corrector is not None and not plan.data_prediction and plan.denoise_to_zero
    if correct_final:  # with noise prediction the corrector acts only on the final x0
        x_out = corrector(x_out, plan.t[-1], *corr_params).astype(x.dtype)
    inter = None
    if return_intermediate:
        inter = ys[plan.intermediate_rows]
        if correct_final:
            inter = inter.at[-1].set(x_out)
        if plan.include_start:
            inter = jnp.concatenate([x[None], inter], axis=0)
    return x_out, inter


_execute_jit = jax.jit(
    _execute,
    static_argnames=(
        "corrector",
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


def is_traced(*trees) -> bool:
    """Whether any leaf is a tracer (we are inside jit/vmap/grad of the caller)."""
    return any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree_util.tree_leaves(trees))


def as_model(model):
    """A pytree for the model: a WrappedModel as is, a plain function as a static Partial."""
    if isinstance(model, WrappedModel):
        return model
    if not callable(model):
        raise TypeError(
            f"`model` must be a callable model(x, t) -> eps (e.g. from "
            f"dpm_jax.model_wrapper), got {type(model).__name__}."
        )
    return jax.tree_util.Partial(model)


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
    if options.progress:
        _progress.require_tqdm()
    key = _check_key(key, plan, x) if plan.stochastic else None
    if not isinstance(x, jax.Array):
        x = jnp.asarray(x)
    plan = plan.astype(x.dtype)
    if (
        not options.return_intermediate
    ):  # only the intermediates read these: keep them out of the cache key
        plan = dataclasses.replace(
            plan, intermediate_rows=np.zeros((0,), np.int32), include_start=False
        )
    run = _execute if is_traced(x, model, plan, corr_params, key) else _execute_jit
    x_out, inter = run(
        model,
        x,
        plan,
        corr_params,
        corrector=corrector,
        return_intermediate=options.return_intermediate,
        unroll=options.unroll,
        remat=options.remat,
        progress=options.progress,
        shard_axis=shard_axis,
        key=key,
    )
    return x_out, SampleInfo(nfe=plan.nfe, intermediates=inter)


def execute_plan(
    model,
    x,
    plan: Plan,
    *,
    correcting_x0_fn=None,
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
        thresholding_max_val=thresholding_max_val,
        dynamic_thresholding_ratio=dynamic_thresholding_ratio,
        return_intermediate=return_intermediate,
        return_info=True,
        unroll=unroll,
        remat=remat,
        progress=progress,
    )
    return run_plan(model, x, plan, options, key=key, shard_axis=_shard_axis)
