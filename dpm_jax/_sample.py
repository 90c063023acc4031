"""Public entry points: ``sample`` (noise to data) and ``inverse`` (data to noise)."""

from __future__ import annotations

from typing import Any, Callable

import jax.numpy as jnp
import numpy as np

from dpm_jax import _adaptive, _checks
from dpm_jax._executor import SampleInfo, as_model, execute_plan, is_traced, make_corrector
from dpm_jax._plan import build_plan
from dpm_jax._wrapper import WrappedModel
from dpm_jax.schedules import Schedule

__all__ = ["sample", "inverse"]


def _solve(direction, model, x, noise_schedule, *, steps, order, method, algorithm_type, skip_type,
           solver_type, lower_order_final, denoise_to_zero, t_start, t_end, multistep3_variant,
           unipc_variant, unipc_corrector,
           correcting_x0_fn, final_sigmas_type=None, euler_at_final=False, karras_rho=7.0,
           steps_offset=0,
           thresholding_max_val, dynamic_thresholding_ratio, atol, rtol, return_intermediate,
           return_info, unroll, error_norm, remat=False, progress=False, key=None,
           _batch_axis=None):
    _checks.check_schedule(noise_schedule)
    _checks.check_state("x_T" if direction == "down" else "x", x)
    _checks.check_options(steps=steps, order=order, method=method, algorithm_type=algorithm_type,
                          skip_type=skip_type, solver_type=solver_type,
                          lower_order_final=lower_order_final, denoise_to_zero=denoise_to_zero)
    _checks.check_bool("return_intermediate", return_intermediate)
    _checks.check_bool("return_info", return_info)
    t_start, t_end = _checks.check_times(noise_schedule, t_start, t_end, direction)
    if isinstance(model, WrappedModel) and model.schedule[:5] != noise_schedule[:5]:
        raise ValueError("`noise_schedule` differs from the schedule the model was wrapped with "
                         f"({model.schedule.name}, N={model.schedule.total_N} vs "
                         f"{noise_schedule.name}, N={noise_schedule.total_N}).")
    if method == "adaptive":
        lams = [float(noise_schedule.marginal_lambda(np.float64(t))) for t in (t_start, t_end)]
        if not all(np.isfinite(lams)):
            raise ValueError("method='adaptive' needs a finite half log-SNR at t_start and t_end "
                             f"(got {lams[0]} and {lams[1]}: alpha = 0 or sigma = 0 there); move "
                             "t_start/t_end inside the schedule or use a fixed grid.")
        if final_sigmas_type is not None or euler_at_final or skip_type not in (
                "time_uniform", "logSNR", "time_quadratic"):
            raise ValueError("method='adaptive' chooses its own steps: final_sigmas_type, "
                             "euler_at_final and skip_type do not apply.")
        if return_intermediate:
            raise ValueError("`return_intermediate=True` is not supported with method='adaptive' "
                             "(its number of steps is known only on device).")
        _checks.check_choice("error_norm", error_norm, ("batch", "per_sample"))
        _checks.check_positive("atol", atol)
        _checks.check_positive("rtol", rtol)
        model = as_model(model)
        if isinstance(model, WrappedModel):
            model.check_batch(x)
        corrector, corr_params = make_corrector(correcting_x0_fn, thresholding_max_val,
                                                dynamic_thresholding_ratio)
        x = jnp.asarray(x)
        tols = (t_start, t_end, atol, rtol)
        fn = _adaptive.adaptive_sample if is_traced(x, model, corr_params, tols) else \
            _adaptive.adaptive_sample_jit
        x_out, nfe = fn(model, x, noise_schedule, corr_params, tols, algorithm_type=algorithm_type,
                        order=order, solver_type=solver_type, corrector=corrector,
                        denoise_to_zero=bool(denoise_to_zero), error_norm=error_norm,
                        batch_axis=_batch_axis)
        info = SampleInfo(nfe=nfe)
    else:
        plan = build_plan(noise_schedule, steps=steps, order=order, method=method,
                          algorithm_type=algorithm_type, skip_type=skip_type,
                          solver_type=solver_type, lower_order_final=lower_order_final,
                          denoise_to_zero=denoise_to_zero, t_start=t_start, t_end=t_end,
                          multistep3_variant=multistep3_variant, unipc_variant=unipc_variant,
                          unipc_corrector=unipc_corrector, final_sigmas_type=final_sigmas_type,
                          euler_at_final=euler_at_final, karras_rho=karras_rho,
                          steps_offset=steps_offset)
        x_out, info = execute_plan(model, x, plan, correcting_x0_fn=correcting_x0_fn,
                                   thresholding_max_val=thresholding_max_val,
                                   dynamic_thresholding_ratio=dynamic_thresholding_ratio,
                                   return_intermediate=return_intermediate, unroll=unroll,
                                   remat=remat, progress=progress, key=key,
                                   _shard_axis=_batch_axis)
    return (x_out, info) if return_info else x_out


def sample(
    model: Callable,
    x_T: Any,
    noise_schedule: Schedule,
    *,
    steps: int = 20,
    order: int = 2,
    method: str = "multistep",
    algorithm_type: str = "dpmsolver++",
    skip_type: str = "time_uniform",
    solver_type: str = "dpmsolver",
    lower_order_final: bool = True,
    denoise_to_zero: bool = False,
    t_start: float | None = None,
    t_end: float | None = None,
    multistep3_variant: str = "reference",
    unipc_variant: str = "bh2",
    unipc_corrector: bool = True,
    final_sigmas_type: str | None = None,
    euler_at_final: bool = False,
    karras_rho: float = 7.0,
    steps_offset: int = 0,
    correcting_x0_fn: str | Callable | None = None,
    thresholding_max_val: float = 1.0,
    dynamic_thresholding_ratio: float = 0.995,
    atol: float = 0.0078,
    rtol: float = 0.05,
    return_intermediate: bool = False,
    return_info: bool = False,
    unroll="auto",
    error_norm: str = "batch",
    remat: bool = False,
    progress: bool = False,
    key=None,
    _batch_axis=None,
):
    """Samples with DPM-Solver / DPM-Solver++ from ``x_T`` at ``t_start`` down to ``t_end``.

    DPM-Solver (Lu et al. 2022, arXiv 2206.00927) integrates the diffusion ODE
    in lambda with the noise prediction; DPM-Solver++ (arXiv 2211.01095) with
    the data prediction. First order is DDIM:
    ``x_t = (sigma_t / sigma_s) x_s - alpha_t expm1(-h) x0(x_s, s)`` (DPM-Solver++ eq. 3.5).

    Args:
      model: a noise predictor ``model(x, t) -> eps``, usually from
        :func:`dpm_jax.model_wrapper`.
      x_T: the starting state (B, ...), floating.
      noise_schedule: the :class:`~dpm_jax.schedules.Schedule` of the model.
      steps: model calls for "singlestep" and "multistep"; singlestep_fixed
        uses ``(steps // order) * order``. Ignored by "adaptive".
      order: 1, 2 or 3 (2 or 3 for "adaptive").
      method: "multistep", "singlestep" (DPM-Solver-fast order mix),
        "singlestep_fixed", "adaptive" (DPM-Solver-12/23) or "unipc" (UniPC,
        Zhao et al. 2023: multistep predictor UniP plus the corrector UniC,
        which reuses the next model call, so NFE = steps).
      algorithm_type: "dpmsolver" (noise prediction) or "dpmsolver++" (data);
        stochastic: "sde-dpmsolver++" (SDE-DPM-Solver++, multistep orders 1-3;
        order 1 is DDPM's ancestral step, 2 and 3 are dpmpp_2m_sde /
        dpmpp_3m_sde) or "sde-dpmsolver" (noise-prediction form, orders 1-2),
        which need ``key``.
      skip_type: the time grid: "time_uniform", "logSNR", "time_quadratic"
        (the reference implementation's), "karras" (sigma^(1/rho) uniform with
        sigma = sigma_t / alpha_t = e^{-lambda}; see ``dpm_jax.grid_nodes``),
        "exponential" (log sigma uniform), or diffusers' spacings of a discrete
        table "linspace", "leading", "trailing" (integer timesteps, with
        ``steps_offset``). The last five follow diffusers' grid and order
        rules (``steps`` model nodes plus a final node, see ``final_sigmas_type``).
      final_sigmas_type: None (the grid ends at ``t_end``), or diffusers'
        final node after ``steps`` model nodes: "zero" (the data, sigma = 0,
        reached by a first-order step; the default of the diffusers spacings)
        or "sigma_min" (``schedule.t_eps``).
      euler_at_final: make the last step first order (diffusers' option).
      karras_rho: rho of ``skip_type="karras"`` (7, Karras et al. 2022).
      steps_offset: added to diffusers' "leading" timesteps.
      solver_type: "dpmsolver" or "taylor", the form of the high-order terms.
      lower_order_final: use lower orders for the last steps when steps < 10
        (multistep; the reference implementation's rule; with diffusers' grids
        its rules: steps < 15 for multistep, always for UniPC).
      denoise_to_zero: return the data prediction at ``t_end`` (one more call).
      t_start, t_end: the time span, default ``schedule.T`` and ``schedule.t_eps``.
      multistep3_variant: the third-order multistep update: "reference" (as
        published and in the reference implementation; its second-difference
        term is half the Taylor one, so it converges with order 2) or
        "third_order" (that term doubled; converges with order 3).
      unipc_variant, unipc_corrector: UniPC's B(h) = h ("bh1") or e^h - 1
        ("bh2", default), and whether to apply the corrector UniC (default).
      correcting_x0_fn: None, "dynamic_thresholding", or ``f(x0, t) -> x0``
        applied to every data prediction (DPM-Solver++) or to the final one.
      thresholding_max_val, dynamic_thresholding_ratio: dynamic thresholding's
        parameters (traced: changing them does not recompile).
      atol, rtol: tolerances of the adaptive solver.
      return_intermediate: also return the intermediate states in ``info``.
      return_info: return ``(x, info)`` with ``info.nfe`` the model calls made.
      unroll: rows per iteration of the compiled loop (an int >= 1), or "auto":
        2 for cheap models (no matrix products or convolutions, where fusing
        two rows halves the loop's memory traffic), 1 otherwise (compile time
        grows with the unrolled body). The result does not depend on it.
      error_norm: adaptive only: "batch" (the reference: one step sequence for
        the whole batch, controlled by the worst sample) or "per_sample" (each
        sample sizes its own steps; ``info.nfe`` then has shape (B,)).
      remat: fixed grids: wrap each row in ``jax.checkpoint``, so that
        ``jax.grad`` through the sampler stores only the loop carry per row and
        recomputes the model in the backward pass.
      key: PRNG key of the stochastic solvers: one key (noise of row i from
        ``fold_in(key, i)``) or one key per sample, shape (B,), which makes each
        sample's noise independent of how the batch is split or sharded.
      progress: fixed grids: show a tqdm bar, ticked from inside the compiled
        loop with ``jax.debug.callback`` (needs tqdm). Off: no callback in the
        program.

    Returns:
      x0 (a jax array of x_T's shape and dtype), or ``(x0, SampleInfo)``.

    Under ``jax.jit`` close over the model (keep its parameters traced); outside
    it, compiled programs are cached by the model's identity and the plan's
    length, so repeated calls with new grids, guidance scales or thresholds do
    not recompile.

    >>> import jax.numpy as jnp
    >>> from dpm_jax import schedules, model_wrapper
    >>> sched = schedules.vp_linear()
    >>> model = model_wrapper(lambda x, t: 0.0 * x, sched)
    >>> x0, info = sample(model, jnp.ones((2, 4)), sched, steps=5, return_info=True)
    >>> info.nfe, x0.shape
    (5, (2, 4))
    """
    return _solve("down", model, x_T, noise_schedule, steps=steps, order=order, method=method,
                  algorithm_type=algorithm_type, skip_type=skip_type, solver_type=solver_type,
                  lower_order_final=lower_order_final, denoise_to_zero=denoise_to_zero,
                  t_start=t_start, t_end=t_end, multistep3_variant=multistep3_variant,
                  unipc_variant=unipc_variant, unipc_corrector=unipc_corrector,
                  final_sigmas_type=final_sigmas_type, euler_at_final=euler_at_final,
                  karras_rho=karras_rho, steps_offset=steps_offset,
                  correcting_x0_fn=correcting_x0_fn,
                  thresholding_max_val=thresholding_max_val,
                  dynamic_thresholding_ratio=dynamic_thresholding_ratio, atol=atol, rtol=rtol,
                  return_intermediate=return_intermediate, return_info=return_info, unroll=unroll,
                  error_norm=error_norm, remat=remat, progress=progress, key=key,
                  _batch_axis=_batch_axis)


def inverse(
    model: Callable,
    x: Any,
    noise_schedule: Schedule,
    *,
    steps: int = 20,
    order: int = 2,
    method: str = "multistep",
    algorithm_type: str = "dpmsolver++",
    skip_type: str = "time_uniform",
    solver_type: str = "dpmsolver",
    lower_order_final: bool = True,
    denoise_to_zero: bool = False,
    t_start: float | None = None,
    t_end: float | None = None,
    multistep3_variant: str = "reference",
    unipc_variant: str = "bh2",
    unipc_corrector: bool = True,
    correcting_x0_fn: str | Callable | None = None,
    thresholding_max_val: float = 1.0,
    dynamic_thresholding_ratio: float = 0.995,
    atol: float = 0.0078,
    rtol: float = 0.05,
    return_intermediate: bool = False,
    return_info: bool = False,
    unroll="auto",
    error_norm: str = "batch",
    remat: bool = False,
    progress: bool = False,
    key=None,
    _batch_axis=None,
):
    """Integrates the diffusion ODE upwards, data to noise (DDIM / DPM-Solver inversion).

    The same solvers and options as :func:`sample`, from ``t_start`` (default
    ``schedule.t_eps``) up to ``t_end`` (default ``schedule.T``); the steps have
    h = lambda_t - lambda_s < 0.

    >>> import jax.numpy as jnp
    >>> from dpm_jax import schedules, model_wrapper
    >>> sched = schedules.vp_linear()
    >>> model = model_wrapper(lambda x, t: 0.0 * x, sched)
    >>> inverse(model, jnp.ones((2, 4)), sched, steps=4).shape
    (2, 4)
    """
    return _solve("up", model, x, noise_schedule, steps=steps, order=order, method=method,
                  algorithm_type=algorithm_type, skip_type=skip_type, solver_type=solver_type,
                  lower_order_final=lower_order_final, denoise_to_zero=denoise_to_zero,
                  t_start=t_start, t_end=t_end, multistep3_variant=multistep3_variant,
                  unipc_variant=unipc_variant, unipc_corrector=unipc_corrector,
                  correcting_x0_fn=correcting_x0_fn,
                  thresholding_max_val=thresholding_max_val,
                  dynamic_thresholding_ratio=dynamic_thresholding_ratio, atol=atol, rtol=rtol,
                  return_intermediate=return_intermediate, return_info=return_info, unroll=unroll,
                  error_norm=error_norm, remat=remat, progress=progress, key=key,
                  _batch_axis=_batch_axis)
