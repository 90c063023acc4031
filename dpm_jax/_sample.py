"""Public entry points: ``sample`` (noise to data) and ``inverse`` (data to noise).

Both spell out every option of :class:`~dpm_jax.SolverOptions` (for IDEs and
docs), gather them into that type, which validates them once, and hand it on:
a fixed grid is planned on the host (:func:`dpm_jax.plan.plan_run`) and run by
the executor; the adaptive solver runs as a ``while_loop`` (:mod:`dpm_jax._adaptive`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dpm_jax import _adaptive, _checks
from dpm_jax._executor import run_plan
from dpm_jax._model import WrappedModel
from dpm_jax._options import SolverOptions, collect
from dpm_jax.plan.build import cached_plan
from dpm_jax.plan.solvers import registry
from dpm_jax.schedules import Schedule
from dpm_jax.solvers import DPMSolverV3

__all__ = ["sample", "inverse"]


def _solve(direction: str, model, x, schedule, options: SolverOptions, key=None, batch_axis=None):
    """Runs validated ``options`` from x, "down" (sample) or "up" (inverse)."""
    _checks.check_schedule(schedule)
    _checks.check_state("x_T" if direction == "down" else "x", x)
    if isinstance(model, WrappedModel) and not model.schedule.same_as(schedule):
        raise ValueError(
            "`noise_schedule` differs from the schedule the model was wrapped with "
            f"({model.schedule.name}, N={model.schedule.total_N} vs {schedule.name}, "
            f"N={schedule.total_N}: their alpha_t or sigma_t differ); pass the same "
            "schedule to model_wrapper and to the sampler."
        )
    if key is not None and not options.algorithm.stochastic:
        raise ValueError(
            f"`key` does not apply: algorithm_type={options.algorithm.name!r} is deterministic "
            "(the stochastic ones are 'sde-dpmsolver++' and 'sde-dpmsolver')."
        )
    if registry.get(options.method).adaptive:
        x_out, info = _adaptive.run(model, x, schedule, options, direction, batch_axis)
    else:
        plan = cached_plan(schedule, options, direction)
        x_out, info = run_plan(model, x, plan, options, key=key, shard_axis=batch_axis)
    return (x_out, info) if options.return_info else x_out


def sample(
    model: Callable,
    x_T: Any,
    noise_schedule: Schedule,
    *,
    solver: Any = None,
    grid: Any = None,
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
    timesteps: Any = None,
    sigmas: Any = None,
    model_timesteps: Any = None,
    multistep3_variant: str = "reference",
    unipc_variant: str = "bh2",
    unipc_corrector: bool = True,
    ipndm_variant: str = "fixed",
    deis_variant: str = "tab",
    final_sigmas_type: str | None = None,
    euler_at_final: bool = False,
    karras_rho: float = 7.0,
    steps_offset: int = 0,
    spacing_rule: str = "dpmsolver",
    begin_index: int = 0,
    correcting_x0_fn: str | Callable | None = None,
    correcting_xt_fn: Callable | None = None,
    thresholding_max_val: Any = 1.0,
    dynamic_thresholding_ratio: Any = 0.995,
    atol: float = 0.0078,
    rtol: float = 0.05,
    error_norm: str = "batch",
    max_step_growth: float | None = 2.0,
    check_finite: bool = False,
    throw: bool = True,
    return_intermediate: bool = False,
    return_info: bool = False,
    unroll: int | str = "auto",
    remat: bool = False,
    progress: bool = False,
    key: Any = None,
    _batch_axis: Any = None,
):
    """Samples with DPM-Solver / DPM-Solver++ / UniPC from ``x_T`` at ``t_start`` down to ``t_end``.

    DPM-Solver (Lu et al. 2022, arXiv 2206.00927) integrates the diffusion ODE
    in lambda with the noise prediction; DPM-Solver++ (arXiv 2211.01095) with
    the data prediction. First order is DDIM:
    ``x_t = (sigma_t / sigma_s) x_s - alpha_t expm1(-h) x0(x_s, s)`` (DPM-Solver++ eq. 3.5).

    Args:
      model: the model from :func:`dpm_jax.model_wrapper`, or a bare network
        ``net(x, t_input) -> eps``, which is treated as ``model_wrapper(net,
        noise_schedule)`` treats it (a noise prediction given the schedule's time
        input: one time convention for bare and wrapped networks).
      x_T: the starting state (B, ...), floating.
      noise_schedule: the :class:`~dpm_jax.schedules.Schedule` of the model.
      solver, grid: the solver and the time grid as objects (:mod:`dpm_jax.solvers`,
        :mod:`dpm_jax.grids`: ``solver=UniPC(order=3), grid=LogSNR(10)``), each with
        exactly the options it reads, instead of the reference's keywords below (the
        solver's and grid's keywords, from ``steps`` to ``max_step_growth``, are then an
        error; the execution options stay keywords). Default ``Multistep()`` and
        ``TimeUniform(20)``. ``solver=DPMSolverV3(ems, ...)`` (DPM-Solver-v3, Zheng et
        al. 2023) runs :func:`dpm_jax.v3.sample_v3` instead of a plan: ``grid`` is
        ``LogSNR`` (default ``LogSNR(20)``), ``TimeUniform``, ``TimeQuadratic`` or
        ``Karras`` (rho = 7), giving ``skip_type``, ``steps``, ``t_start`` and ``t_end``,
        and every other option below must be at its default (a ValueError names it).
      steps: the number of steps (20 by default): model calls for "multistep",
        "unipc" and "singlestep"; "singlestep_fixed" uses ``(steps // order) *
        order``. Ignored by "adaptive". With ``timesteps`` / ``sigmas`` it is
        len - 1 and may be left out.
      order: 1, 2 or 3 (2 or 3 for "adaptive", 1-4 for "ipndm", 2 for "heun"
        and "dpm2").
      method: "multistep", "singlestep" (DPM-Solver-fast order mix),
        "singlestep_fixed", "adaptive" (DPM-Solver-12/23), "unipc" (UniPC,
        Zhao et al. 2023: multistep predictor UniP plus the corrector UniC,
        which reuses the next model call, so NFE = steps), "ipndm" (iPNDM,
        orders 1-4, NFE = steps), "deis" (DEIS-tAB / rhoAB, orders 1-3, NFE =
        steps), "heun" (EDM's Heun, 2 calls per step) or "dpm2" (k-diffusion's
        DPM-2, 2 calls per step; both make 1 call for a last step into sigma =
        0). The valid values are those of the solver registry,
        ``dpm_jax.plan.METHODS``.
      algorithm_type: "dpmsolver" (noise prediction) or "dpmsolver++" (data);
        None (default): "dpmsolver++", or "dpmsolver" for the methods that
        integrate the noise prediction ("ipndm", "deis", "heun", "dpm2");
        stochastic: "sde-dpmsolver++" (SDE-DPM-Solver++, multistep orders 1-3;
        order 1 is DDPM's ancestral step; see the README for which options
        reproduce k-diffusion's and diffusers' SDE samplers exactly) or
        "sde-dpmsolver" (noise-prediction form, orders 1-2), which need ``key``.
      skip_type: the time grid (default "time_uniform"): "time_uniform",
        "logSNR", "time_quadratic" (the reference implementation's), "karras"
        (sigma^(1/rho) uniform with sigma = sigma_t / alpha_t = e^{-lambda}; see
        ``dpm_jax.grid_nodes``), "exponential" (log sigma uniform), "lu" (the
        same, uniform in lambda, with rounded table timesteps: diffusers'
        ``use_lu_lambdas``), or diffusers' spacings of a discrete table "linspace",
        "leading", "trailing" (integer timesteps, with ``steps_offset``). The last
        six follow diffusers' grid and order rules (``steps`` model nodes plus a
        final node, see ``final_sigmas_type``).
      t_start, t_end: the time span, default ``schedule.T`` and ``schedule.t_eps``.
      timesteps: an explicit grid instead of ``skip_type`` / ``t_start`` /
        ``t_end``: the solver's nodes from first to last as times t in the
        schedule's own units, strictly decreasing (increasing for ``inverse``).
        For multistep and UniPC NFE = len - 1 (+1 with ``denoise_to_zero``);
        for singlestep methods the entries are the outer step boundaries, each
        step of order ``order`` (first order where it touches alpha = 0 or
        sigma = 0), its inner points uniform in lambda. A new grid of the same
        length does not recompile. Explicit grids use the reference's order
        rules.
      sigmas: the same as ``timesteps`` in the k-diffusion / EDM convention
        sigma_t / alpha_t (strictly decreasing; a last entry 0 is the data,
        reached by a first-order step).
      model_timesteps: the time passed to the model at each model call, one per
        step: row i evaluates the model at the point x_{t_i} of grid node t_i with
        the time s_i, and takes its data prediction as (x_{t_i} - sigma(s_i)
        eps(x_{t_i}, s_i)) / alpha(s_i); the solver's coefficients still step
        between the grid's nodes. This is LD3's decoupled model time (Tong et al.
        2024, arXiv 2405.15506, Sec. 3): a fitted s_i corrects the error the model
        and the discretisation make at that node. For the methods that call the
        model at their grid's nodes ("multistep", "unipc", "ipndm", "deis");
        ``model_timesteps`` equal to the first ``steps`` node times gives the
        plain run bit for bit. Each entry equals its node's time or lies strictly
        inside the span. ``optimize_timesteps(..., decouple=True)`` fits them.
      final_sigmas_type: None (the grid ends at ``t_end``), or diffusers'
        final node after ``steps`` model nodes: "zero" (the data, sigma = 0,
        reached by a first-order step; the default of the diffusers spacings),
        "sigma_min" (``schedule.t_eps``) or "repeat" (the last model node again: a
        zero-length last step, as diffusers' DEIS scheduler has); for
        :func:`inverse`, "sigma_max": diffusers' upward grid of
        DPMSolverMultistepInverseScheduler (ending on the table's noisiest entry).
      euler_at_final: make the last step first order (diffusers' option).
      karras_rho: rho of ``skip_type="karras"`` (7, Karras et al. 2022).
      steps_offset: added to diffusers' "leading" timesteps.
      spacing_rule: whose timesteps diffusers' spacings of a discrete table give:
        "dpmsolver" (DPMSolverMultistep / Singlestep, UniPC, DEIS: ``steps`` calls
        above timestep 0), "ddim" (DDIMScheduler: the last call at timestep 0,
        "leading" multiples of N // steps, each step ending at t - N // steps) or
        "euler" (Euler / Heun: as DDIM, fractional "linspace" timesteps whose sigma
        is interpolated linearly in the index, fractional karras timesteps).
      begin_index: start at node ``begin_index`` of diffusers' grid of ``steps``
        (image-to-image: ``steps - begin_index`` model calls from that node, with
        the full grid's orders and a new warm-up); x_T is then the state there,
        ``alpha x0 + sigma noise`` with the plan's first alpha and sigma.
      solver_type: "dpmsolver" or "taylor", the form of the high-order terms.
      lower_order_final: use lower orders for the last steps when steps < 10
        (multistep; the reference implementation's rule; with diffusers' grids
        its rules: steps < 15 for multistep, always for UniPC).
      denoise_to_zero: return the data prediction at ``t_end`` (one more call).
      multistep3_variant: the third-order multistep update: "reference" (as
        published and in the reference implementation; its second-difference
        term is half the Taylor one, so it converges with order 2) or
        "third_order" (that term doubled; converges with order 3).
      unipc_variant: UniPC's B(h) = h ("bh1") or e^h - 1 ("bh2", default).
      unipc_corrector: whether UniPC applies its corrector UniC (default True).
      ipndm_variant: "fixed" (iPNDM's Adams-Bashforth weights, exact for steps
        uniform in sigma / alpha) or "v" (weights exact on any grid).
      deis_variant: DEIS's extrapolation of eps: a polynomial in t ("tab",
        default) or in rho = sigma / alpha ("rhoab").
      correcting_x0_fn: None, "dynamic_thresholding" (the reference's: x0
        clipped to +-q and divided by q = max(quantile, thresholding_max_val)),
        "dynamic_thresholding_diffusers" (diffusers': q = the quantile clamped to
        [1, thresholding_max_val]), "static_thresholding" (x0 clipped to
        +-thresholding_max_val: diffusers' ``clip_sample``), or ``f(x0, t) -> x0``
        applied to every data prediction (DPM-Solver++) or to the final one.
      correcting_xt_fn: ``f(xt, t, step) -> xt`` applied to the state after every step
        (the reference implementation's hook, with its semantics: multistep methods
        correct x_T once the model was called there (step 0) and each node's state
        before the model is called on it (step = the node's index); singlestep methods
        the state at the end of each outer step (step = the outer step's index, from
        0); with ``denoise_to_zero`` the final x0 too (step = the last + 1); the
        intermediate states returned are the corrected ones). t is a scalar of the
        state's dtype, step an int32 scalar; traced once. Not for "adaptive", nor for
        "unipc" with its corrector (ValueError). Inpainting: return xt with the known
        pixels replaced by their noised values at t (see the editing guide).
      thresholding_max_val, dynamic_thresholding_ratio: the thresholds' parameters
        (traced: changing them does not recompile).
      atol, rtol: tolerances of the adaptive solver, relative to the state's
        marginal scale sqrt(alpha_t^2 + sigma_t^2) (1 on VP schedules).
      error_norm: adaptive only: "batch" (the reference: one step sequence for
        the whole batch, controlled by the worst sample) or "per_sample" (each
        sample sizes its own steps; ``info.nfe`` then has shape (B,)).
      max_step_growth: adaptive only: the largest factor by which a step may grow over
        the last (2; None: no cap, the reference implementation's rule, whose steps
        could grow until the error estimate failed: see :mod:`dpm_jax._adaptive`).
      check_finite: fixed grids: report a non-finite model output in
        ``info.status`` (per sample; one more reduction per row; the adaptive solver
        always reports it).
      throw: a run that did not finish (``info.status`` != 0: the adaptive solver's
        attempt cap, a non-finite model output, a step too small) raises
        :class:`dpm_jax.SamplingError` (True, the default; inside ``jax.jit`` from the
        compiled program), or returns its status (False).
      return_intermediate: also return the intermediate states in ``info``
        (needs ``return_info=True``).
      return_info: return ``(x, info)`` with ``info.nfe`` the model calls made.
      unroll: rows per iteration of the compiled loop (an int >= 1), or "auto":
        2 for cheap models (no matrix products or convolutions, where fusing
        two rows halves the loop's memory traffic), 1 otherwise (compile time
        grows with the unrolled body). The result does not depend on it.
      remat: fixed grids: wrap each row in ``jax.checkpoint``, so that
        ``jax.grad`` through the sampler stores only the loop carry per row and
        recomputes the model in the backward pass.
      progress: fixed grids: show a tqdm bar, ticked from inside the compiled
        loop with ``jax.debug.callback`` (needs tqdm). Off: no callback in the
        program.
      key: PRNG key of the stochastic solvers: one key per sample, shape (B,), or
        one key, which stands for the per-sample keys ``fold_in(key, n)`` of samples
        n = 0 .. B-1; sample n's noise at model call i is drawn from
        ``fold_in(key_n, i)``, so it does not depend on how the batch is split,
        sharded or compiled.

    Returns:
      x0 (a jax array of x_T's shape and dtype), or ``(x0, SampleInfo)`` with
      ``return_info=True`` (not with ``DPMSolverV3``, which returns x0 only).

    Raises:
      ValueError, TypeError: before anything is traced, naming the option and
        its allowed values (the options are checked by
        :class:`~dpm_jax.SolverOptions`, the grid against the schedule).

    Under ``jax.jit`` close over the model (keep its parameters traced). Outside
    it, the network's arrays (weights, conditions, guidance scale, thresholds, and
    every array a closure reads) are arguments of the compiled program, which is
    cached by its structure: new weights of the same shapes, a new grid of the same
    length, a new guidance scale or threshold do not recompile, and the current
    values are always used (see the "Bring your model" guide). Host plans are
    cached by (schedule, options) too.

    >>> import jax.numpy as jnp
    >>> from dpm_jax import schedules, model_wrapper
    >>> sched = schedules.vp_linear()
    >>> model = model_wrapper(lambda x, t: 0.0 * x, sched)
    >>> x0, info = sample(model, jnp.ones((2, 4)), sched, steps=5, return_info=True)
    >>> info.nfe, x0.shape
    (5, (2, 4))
    >>> sample(model, jnp.ones((2, 4)), sched, timesteps=[1.0, 0.6, 0.3, 0.1, 1e-3],
    ...        return_info=True)[1].nfe
    4
    """
    if isinstance(solver, DPMSolverV3):  # its own sampler, not a plan of the registry
        from dpm_jax.v3 import _object

        return _object.run(locals())
    return _solve("down", model, x_T, noise_schedule, collect(locals()), key, _batch_axis)


def inverse(
    model: Callable,
    x: Any,
    noise_schedule: Schedule,
    *,
    solver: Any = None,
    grid: Any = None,
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
    timesteps: Any = None,
    sigmas: Any = None,
    model_timesteps: Any = None,
    multistep3_variant: str = "reference",
    unipc_variant: str = "bh2",
    unipc_corrector: bool = True,
    ipndm_variant: str = "fixed",
    deis_variant: str = "tab",
    final_sigmas_type: str | None = None,
    euler_at_final: bool = False,
    karras_rho: float = 7.0,
    steps_offset: int = 0,
    spacing_rule: str = "dpmsolver",
    begin_index: int = 0,
    correcting_x0_fn: str | Callable | None = None,
    correcting_xt_fn: Callable | None = None,
    thresholding_max_val: Any = 1.0,
    dynamic_thresholding_ratio: Any = 0.995,
    atol: float = 0.0078,
    rtol: float = 0.05,
    error_norm: str = "batch",
    max_step_growth: float | None = 2.0,
    check_finite: bool = False,
    throw: bool = True,
    return_intermediate: bool = False,
    return_info: bool = False,
    unroll: int | str = "auto",
    remat: bool = False,
    progress: bool = False,
    key: Any = None,
    _batch_axis: Any = None,
):
    """Integrates the diffusion ODE upwards, data to noise (DDIM / DPM-Solver inversion).

    The same solvers and options as :func:`sample`, from ``t_start`` (default
    ``schedule.t_eps``) up to ``t_end`` (default ``schedule.T``); the steps have
    h = lambda_t - lambda_s < 0. An explicit grid (``timesteps`` / ``sigmas``)
    is strictly increasing (``model_timesteps`` as in :func:`sample`). Diffusers'
    grid options and the stochastic
    algorithms are for sampling only (ValueError).

    >>> import jax.numpy as jnp
    >>> from dpm_jax import schedules, model_wrapper
    >>> sched = schedules.vp_linear()
    >>> model = model_wrapper(lambda x, t: 0.0 * x, sched)
    >>> inverse(model, jnp.ones((2, 4)), sched, steps=4).shape
    (2, 4)
    """
    return _solve("up", model, x, noise_schedule, collect(locals()), key, _batch_axis)
