"""Quality: error of the final sample against the exact probability-flow ODE solution, vs NFE.

For four problems whose noise predictor is known exactly (``dpm_jax.testing.problems``),
the script draws a fixed batch ``x_T ~ N(0, I)`` (fixed seed), solves the
probability-flow ODE from t = 1 to t = 1e-3 (``vp_linear`` schedule, beta 0.1-20)

* exactly: SciPy DOP853 in float64 at rtol = atol = 1e-11, each sample integrated
  on its own for the empirical distribution (:func:`dpm_jax.testing.exact.exact_ode_solution`);
  the reference is checked against a second solution at 1e-13 and the largest
  difference is printed and written into the tables;
* with every solver at NFE 4, 5, 6, 8, 10, 15, 20, 30, 50, 100, float64,

and reports the RMS error ``sqrt(mean((x_0 - x_0^exact)^2))`` over the batch and
dimensions (the headline figure), the median over samples of each sample's RMS
error (the typical sample: the RMS error at low NFE is dominated by the few
samples whose trajectory passes near a boundary between modes and takes the
other branch) and, for the digits, the share of samples that end nearest to
another training image than the exact solution's.

Problems (``dpm_jax.testing.problems``; the convergence tests use small versions of the
same factories):

1. ``gmm_mild``: ``gmm_16d()``, a 16-D mixture of 4 Gaussians, stds 0.15-0.6;
2. ``gmm_stiff``: ``gmm_16d_stiff()``, the same means with stds 0.01-0.06,
   stiff near t = 0 (the noise prediction changes fastest in the last steps);
3. ``digits``: ``digits()``, the ideal denoiser of the 1,797 8x8 images of
   scikit-learn's ``load_digits`` (scaled to [-1, 1]) -- the empirical
   distribution, whose exact noise prediction is a softmax-weighted average
   over the data set. The most image-like problem we can solve exactly;
4. ``digits_guided``: the same, class-conditional (sample b asks for digit
   b % 10: the softmax restricted to that class, :func:`problems.class_log_weights`)
   with classifier-free guidance at scale 7.5, ``eps_u + 7.5 (eps_c - eps_u)``
   (``model_wrapper(..., guidance_type="classifier-free")``; the exact solution
   integrates the same guided field), batch 128: the "guided with a large
   scale" case.

Solvers (``dpm_jax.sample``'s defaults otherwise: ``lower_order_final=True``,
``solver_type="dpmsolver"``), each on the "time_uniform" and the "logSNR" grid:

* DDIM (= DPM-Solver-1); DPM-Solver-2S/3S (``method="singlestep"``, the
  DPM-Solver-fast order mix for exactly NFE calls), -2M/-3M
  (``"multistep"``); DPM-Solver++(2S)/(3S)/(2M)/(3M). Order-3 multistep in
  both variants: ``multistep3_variant="reference"`` (the published update,
  the default) and ``"third_order"`` (marked "3rd-ord."). These run through the
  public lower level that ``sample`` is built from, ``build_plan`` +
  ``execute_plan``, with each plan's model-value window padded with zero
  coefficients so that all solvers of one algorithm type and NFE share one
  compiled program (see :func:`_plan`; a self-check compares with ``sample``);
* UniPC-2/3 (``method="unipc"``: bh2, with its corrector UniC), through the hook
  :data:`OPTIONAL_SOLVERS`: a solver there is run when ``dpm_jax.build_plan``
  accepts its options, and skipped with a printed notice otherwise;
* adaptive DPM-Solver-12/23 (``method="adaptive"``) at three tolerance
  pairs: the NFE is the solver's choice, so these are points, not columns;
* black boxes, integrating the same ODE at the same grid's points:

  - Heun, RK4, Tsit5: ``dx/dt = f(t) (x - eps(x, t) / sigma_t)`` in t, with
    ``f = d log alpha / dt`` (the probability-flow ODE of a VP process), from
    grid point to grid point (RK4's middle stages at the middle in t);
    Tsit5 is diffrax's ``Tsit5`` solver stepped from grid point to grid point
    (no step-size control; the same steps as ``diffeqsolve`` with
    ``StepTo(ts=grid)``, written as a loop so that one program serves every NFE);
  - Heun (EDM): Heun's method for ``y = x / alpha`` in ``rho = sigma / alpha``,
    ``dy/drho = eps`` (Karras et al. 2022; k-diffusion's ``sample_heun``;
    its Euler step is DDIM), on the same grids.

  NFE: Heun 2 per step, RK4 4 per step, Tsit5 1 + 6 per step (7 stages,
  first-same-as-last: diffrax evaluates the field once at the start, then 6
  times per step), so each uses the most whole steps that fit the NFE
  budget; a cell shows the NFE actually used in parentheses when it is less,
  and "-" when not even one step fits.

Outputs (``benchmarks/results/``): ``quality_<problem>.md`` (the tables) and
``quality_<problem>.png`` (log error vs NFE), plus ``quality_log.txt`` (what
the script printed). The tables hold only the deterministic numbers (3
significant digits), so a rerun rewrites them unchanged; times go to the log.
diffrax is optional: without it Tsit5 is skipped with a notice. Usage::

    pip install -e ".[examples]"                 # + diffrax, scikit-learn, matplotlib
    python benchmarks/quality.py                 # all four problems, ~9 minutes on 2 cores
    python benchmarks/quality.py --problems digits --batch 4096 --out /tmp/q   # e.g. on a GPU
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import io
import os
import platform
import sys
import time
from collections.abc import Callable
from typing import NamedTuple

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp
import numpy as np

import dpm_jax
from dpm_jax import schedules
from dpm_jax.testing import problems
from dpm_jax.testing.exact import exact_ode_solution

try:  # optional: the Tsit5 baseline
    import diffrax
except ImportError:  # pragma: no cover - depends on the environment
    diffrax = None

NFES = (4, 5, 6, 8, 10, 15, 20, 30, 50, 100)
GRIDS = ("time_uniform", "logSNR")
GRID_NAMES = {"time_uniform": "t-unif.", "logSNR": "logSNR"}
T_START, T_END = 1.0, 1e-3
REF_RTOL, CHECK_RTOL = 1e-11, 1e-13
ADAPTIVE_TOLS = (
    (0.0078, 0.05),
    (1e-3, 1e-2),
    (1e-4, 1e-3),
)  # (atol, rtol); the first is the default
HEAD_TO_HEAD_NFES = (10, 15, 20)
RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


# --- problems ---------------------------------------------------------------------------


class Problem(NamedTuple):
    title: str
    make: Callable[[], object]  # a problems.GMM or problems.Empirical
    batch: int
    seed: int
    guidance: float | None = None  # classifier-free guidance scale (labels b % 10)


PROBLEMS = {
    "gmm_mild": Problem(
        "16-D Gaussian mixture, component stds 0.15-0.6 (mild): `problems.gmm_16d()`",
        problems.gmm_16d,
        256,
        1,
    ),
    "gmm_stiff": Problem(
        "16-D Gaussian mixture, component stds 0.01-0.06 (stiff near t = 0): "
        "`problems.gmm_16d_stiff()`",
        problems.gmm_16d_stiff,
        256,
        2,
    ),
    "digits": Problem(
        "ideal denoiser of the 1,797 sklearn digits (8x8 = 64-D, in [-1, 1]): `problems.digits()`",
        problems.digits,
        256,
        3,
    ),
    "digits_guided": Problem(
        "the digits' ideal denoiser, class-conditional (labels b % 10) with "
        "classifier-free guidance at scale 7.5: `problems.digits()`, "
        "`problems.class_log_weights`",
        problems.digits,
        128,
        4,
        7.5,
    ),
}


def _dim(prob) -> int:
    return prob.means.shape[1] if isinstance(prob, problems.GMM) else prob.data.shape[1]


# --- solvers ----------------------------------------------------------------------------


class Solver(NamedTuple):
    label: str
    opts: dict | None = None  # dpm_jax.sample options (fixed grid)
    blackbox: Callable | None = None  # (model, x, ts) -> x, jitted
    per_step: int = 0  # model calls per step (black boxes; plans: 0 means 1)
    extra: int = 0  # and once at the start


def _dpm(label, order, method, algorithm_type, variant="reference"):
    return Solver(
        label,
        dict(order=order, method=method, algorithm_type=algorithm_type, multistep3_variant=variant),
    )


DPM_SOLVERS = [
    _dpm("DDIM", 1, "multistep", "dpmsolver"),
    _dpm("DPM-Solver-2S", 2, "singlestep", "dpmsolver"),
    _dpm("DPM-Solver-3S", 3, "singlestep", "dpmsolver"),
    _dpm("DPM-Solver-2M", 2, "multistep", "dpmsolver"),
    _dpm("DPM-Solver-3M", 3, "multistep", "dpmsolver"),
    _dpm("DPM-Solver-3M 3rd-ord.", 3, "multistep", "dpmsolver", "third_order"),
    _dpm("DPM-Solver++(2S)", 2, "singlestep", "dpmsolver++"),
    _dpm("DPM-Solver++(3S)", 3, "singlestep", "dpmsolver++"),
    _dpm("DPM-Solver++(2M)", 2, "multistep", "dpmsolver++"),
    _dpm("DPM-Solver++(3M)", 3, "multistep", "dpmsolver++"),
    _dpm("DPM-Solver++(3M) 3rd-ord.", 3, "multistep", "dpmsolver++", "third_order"),
]

#: The hook for solvers dpm_jax may not have yet: (label, dpm_jax.sample options).
#: Each is run if ``dpm_jax.build_plan`` accepts its options, and skipped with a
#: printed notice otherwise (add new plan-based solvers here).
OPTIONAL_SOLVERS = [
    ("UniPC-2 (bh2)", dict(order=2, method="unipc", algorithm_type="dpmsolver++")),
    ("UniPC-3 (bh2)", dict(order=3, method="unipc", algorithm_type="dpmsolver++")),
    ("iPNDM-4", dict(order=4, method="ipndm")),
    ("iPNDM-4 v", dict(order=4, method="ipndm", ipndm_variant="v")),
    ("DEIS-tAB3", dict(order=3, method="deis")),
    ("DEIS-rhoAB3", dict(order=3, method="deis", deis_variant="rhoab")),
    ("Heun (plan)", dict(method="heun")),
    ("DPM-2", dict(method="dpm2")),
]
#: Plan-based solvers with two model calls per step: they get nfe // 2 steps.
TWO_CALLS_PER_STEP = ("heun", "dpm2")


def _available(opts) -> bool:
    try:
        dpm_jax.build_plan(schedules.vp_linear(), steps=10, t_start=T_START, t_end=T_END, **opts)
    except (ValueError, TypeError):
        return False
    return True


# The black boxes. The model is a pytree argument and the number of steps a traced
# argument (a fori_loop over a padded grid), so each black box compiles once per
# problem, whatever the NFE and the grid.

MAX_STEPS = max(NFES) // 2  # Heun at the largest NFE


def _pf_rhs(model, sched):
    """dx/dt = f(t) (x - eps / sigma_t), f = d log alpha / dt (VP probability-flow ODE)."""
    dlog_alpha = jax.grad(sched.marginal_log_alpha)

    def f(t, x):
        sigma = jnp.sqrt(-jnp.expm1(2.0 * sched.marginal_log_alpha(t)))
        return dlog_alpha(t) * (x - model(x, t) / sigma)

    return f


def _fixed_steps(step):
    """run(model, x, ts, n): n steps ts[0] -> ts[1] -> ... -> ts[n] of ``step``."""

    @jax.jit
    def run(model, x, ts, n):
        return jax.lax.fori_loop(0, n, lambda i, x: step(model, x, ts[i], ts[i + 1]), x)

    return run


def _heun_step(model, x, t0, t1):
    f = _pf_rhs(model, model.schedule)
    h = t1 - t0
    k1 = f(t0, x)
    k2 = f(t1, x + h * k1)
    return x + 0.5 * h * (k1 + k2)


def _rk4_step(model, x, t0, t1):
    f = _pf_rhs(model, model.schedule)
    h, tm = t1 - t0, 0.5 * (t0 + t1)
    k1 = f(t0, x)
    k2 = f(tm, x + 0.5 * h * k1)
    k3 = f(tm, x + 0.5 * h * k2)
    k4 = f(t1, x + h * k3)
    return x + h / 6.0 * (k1 + 2.0 * k2 + 2.0 * k3 + k4)


def _edm_heun_step(model, x, t0, t1):
    """Heun for y = x / alpha in rho = sigma / alpha: dy/drho = eps(alpha y, t)."""
    sched = model.schedule
    la0, la1 = sched.marginal_log_alpha(t0), sched.marginal_log_alpha(t1)
    a0, a1 = jnp.exp(la0), jnp.exp(la1)
    rho0 = jnp.sqrt(-jnp.expm1(2.0 * la0)) / a0
    rho1 = jnp.sqrt(-jnp.expm1(2.0 * la1)) / a1
    y, h = x / a0, rho1 - rho0
    d1 = model(x, t0)
    y_pred = y + h * d1
    d2 = model(a1 * y_pred, t1)
    return a1 * (y + 0.5 * h * (d1 + d2))


@jax.jit
def _tsit5(model, x, ts, n):
    """diffrax's Tsit5 stepped by hand from grid point to grid point (diffrax's manual-stepping
    API; the same steps as ``diffeqsolve(..., stepsize_controller=StepTo(ts))``): one field
    evaluation at the start, then 6 per step (first same as last)."""
    f = _pf_rhs(model, model.schedule)
    term = diffrax.ODETerm(lambda t, y, args: f(t, y))
    solver = diffrax.Tsit5()
    state = solver.init(term, ts[0], ts[1], x, None)

    def body(i, carry):
        y, state = carry
        y, _, _, state, _ = solver.step(term, ts[i], ts[i + 1], y, None, state, made_jump=False)
        return y, state

    return jax.lax.fori_loop(0, n, body, (x, state))[0]


BLACK_BOXES = [
    Solver("Heun (dx/dt)", blackbox=_fixed_steps(_heun_step), per_step=2),
    Solver("RK4 (dx/dt)", blackbox=_fixed_steps(_rk4_step), per_step=4),
    Solver("Tsit5 (dx/dt, diffrax)", blackbox=_tsit5, per_step=6, extra=1),
    Solver("Heun (EDM, dy/drho)", blackbox=_fixed_steps(_edm_heun_step), per_step=2),
]


# --- running ----------------------------------------------------------------------------


def _plans(sched, solvers) -> dict:
    """``dpm_jax.build_plan`` (what ``dpm_jax.sample`` runs) for every solver, NFE and grid,
    padded for compilation: {(label, nfe, grid): plan}.

    ``execute_plan`` compiles one program per plan structure: number of rows,
    model-value window W, algorithm type, and the rows of intermediate states.
    Padding W to the largest window of all the plans with zero coefficients (the
    executor then adds exact zeros) and dropping the intermediate-state rows
    (unused without ``return_intermediate``) lets all solvers of one algorithm
    type share one program per NFE: 20 compilations per problem instead of ~90.
    The self-check compares the result with ``dpm_jax.sample``.
    """
    plans = {}
    for solver in solvers:
        for nfe in NFES:
            for grid in GRIDS:
                steps = nfe // max(1, solver.per_step)
                plans[solver.label, nfe, grid] = dpm_jax.build_plan(
                    sched, steps=steps, skip_type=grid, t_start=T_START, t_end=T_END, **solver.opts
                )
    width = max(plan.window for plan in plans.values())
    for key, plan in plans.items():
        m = np.asarray(plan.m_coef)
        plans[key] = dataclasses.replace(
            plan,
            m_coef=np.pad(m, ((0, 0), (0, width - m.shape[1]))),
            intermediate_rows=np.zeros(0, np.int32),
            include_start=False,
        )
    return plans


def metrics(x, ref, data=None, ref_idx=None) -> dict:
    """rms: RMS error over the batch and dimensions (the headline figure); median: the
    median over samples of each sample's RMS error (insensitive to the few samples
    that take another branch of the flow); other: for an empirical distribution, the
    share of samples whose nearest data point differs from the exact solution's."""
    err = np.asarray(x).reshape(len(ref), -1) - ref.reshape(len(ref), -1)
    out = dict(
        rms=float(np.sqrt(np.mean(err**2))),
        median=float(np.median(np.sqrt(np.mean(err**2, axis=1)))),
    )
    if data is not None:
        out["other"] = float(np.mean(nearest(data, np.asarray(x)) != ref_idx))
    return out


def nearest(data: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Index of the nearest data point of each sample."""
    d2 = np.sum(x**2, 1)[:, None] - 2.0 * x @ data.T + np.sum(data**2, 1)[None, :]
    return np.argmin(d2, axis=1)


def run_problem(key: str, batch: int | None, log, solvers_dpm, black_boxes, self_check=False):
    spec = PROBLEMS[key]
    prob = spec.make()
    sched = schedules.vp_linear()
    batch = batch or spec.batch
    x_T = np.random.default_rng(spec.seed).normal(size=(batch, _dim(prob)))
    log(f"\n== {key}: {spec.title}; batch {batch}, x_T seed {spec.seed}")

    guided = {}
    if spec.guidance is not None:
        labels = np.arange(batch) % 10
        guided = dict(
            log_weights=problems.class_log_weights(prob, labels), guidance_scale=spec.guidance
        )
    t0 = time.perf_counter()
    ref = exact_ode_solution(
        prob, sched, x_T, T_START, T_END, rtol=REF_RTOL, atol=REF_RTOL, **guided
    )
    t_ref = time.perf_counter() - t0
    check = exact_ode_solution(
        prob, sched, x_T, T_START, T_END, rtol=CHECK_RTOL, atol=CHECK_RTOL, **guided
    )
    t_check = time.perf_counter() - t0 - t_ref
    ref_err = float(np.max(np.abs(ref - check)))
    log(
        f"reference: DOP853 rtol=atol={REF_RTOL:g} in {t_ref:.1f} s; max |difference| to "
        f"rtol={CHECK_RTOL:g} ({t_check:.1f} s): {ref_err:.1e}; RMS |x_0| {np.sqrt(np.mean(ref**2)):.3f}"
    )

    if guided:
        model = dpm_jax.model_wrapper(
            problems.noise_net(prob, sched),
            sched,
            model_type="noise",
            guidance_type="classifier-free",
            condition=jnp.asarray(guided["log_weights"]),
            unconditional_condition=jnp.asarray(problems.uncond_log_weights(prob, batch)),
            guidance_scale=spec.guidance,
        )
    else:
        model = dpm_jax.model_wrapper(problems.noise_net(prob, sched), sched, model_type="noise")
    x_dev = jnp.asarray(x_T, jnp.float64)
    empirical = isinstance(prob, problems.Empirical)
    data, ref_idx = (prob.data, nearest(prob.data, ref)) if empirical else (None, None)
    results, used = {}, {}

    def record(label, grid, nfe, x, n_used):
        results[label, grid, nfe] = metrics(x, ref, data, ref_idx)
        used[label, grid, nfe] = n_used

    t0 = time.perf_counter()
    plans = _plans(sched, solvers_dpm)
    if self_check:  # the padded plans give what dpm_jax.sample gives
        diff = 0.0
        for solver in solvers_dpm:
            x1 = dpm_jax.sample(
                model,
                x_dev,
                sched,
                steps=10 // max(1, solver.per_step),
                skip_type="logSNR",
                t_start=T_START,
                t_end=T_END,
                unroll=1,
                **solver.opts,
            )
            x2, _ = dpm_jax.execute_plan(model, x_dev, plans[solver.label, 10, "logSNR"], unroll=1)
            diff = max(diff, float(jnp.max(jnp.abs(x1 - x2))))
        log(
            f"self-check: padded plans vs dpm_jax.sample, NFE 10, logSNR, all solvers: "
            f"max |difference| {diff:.1e} ({time.perf_counter() - t0:.1f} s)"
        )
        t0 = time.perf_counter()
    for nfe in NFES:
        for solver in solvers_dpm:
            for grid in GRIDS:
                plan = plans[solver.label, nfe, grid]
                x0, info = dpm_jax.execute_plan(model, x_dev, plan, unroll=1)
                if info.nfe != nfe - nfe % max(1, solver.per_step):
                    raise RuntimeError(f"{solver.label}: {info.nfe} model calls for NFE {nfe}")
                record(solver.label, grid, nfe, x0, info.nfe)
    t_dpm = time.perf_counter() - t0

    t0 = time.perf_counter()
    for solver in black_boxes:
        for nfe in NFES:
            steps = (nfe - solver.extra) // solver.per_step
            if steps < 1:
                continue
            for grid in GRIDS:
                ts = np.full(MAX_STEPS + 1, T_END)
                ts[: steps + 1] = dpm_jax.time_grid(sched, grid, T_START, T_END, steps)
                x0 = solver.blackbox(model, x_dev, jnp.asarray(ts), steps)
                record(solver.label, grid, nfe, x0, solver.extra + steps * solver.per_step)
    t_bb = time.perf_counter() - t0

    t0 = time.perf_counter()
    adaptive = []
    for order in (2, 3):
        for alg in ("dpmsolver", "dpmsolver++"):
            for atol, rtol in ADAPTIVE_TOLS:
                x0, info = dpm_jax.sample(
                    model,
                    x_dev,
                    sched,
                    method="adaptive",
                    order=order,
                    algorithm_type=alg,
                    atol=atol,
                    rtol=rtol,
                    t_start=T_START,
                    t_end=T_END,
                    return_info=True,
                )
                name = f"DPM-Solver{'++' if alg == 'dpmsolver++' else ''}-{order - 1}{order}"
                adaptive.append(
                    dict(
                        label=name,
                        atol=atol,
                        rtol=rtol,
                        nfe=int(info.nfe),
                        **metrics(x0, ref, data, ref_idx),
                    )
                )
    t_ad = time.perf_counter() - t0
    log(
        f"solvers: DPM-Solver fixed grids {t_dpm:.1f} s, black boxes {t_bb:.1f} s, "
        f"adaptive {t_ad:.1f} s (compile included)"
    )
    return dict(
        key=key,
        spec=spec,
        batch=batch,
        results=results,
        used=used,
        adaptive=adaptive,
        ref_err=ref_err,
        ref_rms=float(np.sqrt(np.mean(ref**2))),
        empirical=empirical,
        labels=[s.label for s in solvers_dpm] + [s.label for s in black_boxes],
    )


# --- reporting --------------------------------------------------------------------------

METRIC_TITLES = {
    "rms": "RMS error by NFE",
    "median": "Median over samples of the per-sample RMS error, by NFE",
    "other": "Samples that end nearest to another training image than the exact solution's",
}
METRIC_NOTES = {
    "rms": "The headline figure: sqrt(mean((x_0 - x_0^exact)^2)) over the batch and dimensions.",
    "median": "Each sample's RMS error over its dimensions, then the median over the batch: the "
    "typical sample's error, insensitive to the few samples whose trajectory passes "
    "near a boundary between modes and takes the other branch (those dominate the RMS "
    "error at low NFE).",
    "other": "The share of the batch whose nearest training image differs from that of the exact "
    "ODE solution: the sampler took another branch of the flow and made another image "
    "(not a worse one).",
}


def _fmt(metric: str, v: float) -> str:
    return f"{v:.1%}" if metric == "other" else f"{v:.2e}"


def _best_grid(res, label, nfe, metric="rms"):
    cands = [
        (res["results"][label, g, nfe][metric], g)
        for g in GRIDS
        if (label, g, nfe) in res["results"]
    ]
    return min(cands) if cands else None


def _table(res, metric, w):
    results, used = res["results"], res["used"]
    w(
        f"\n## {METRIC_TITLES[metric]}\n\n{METRIC_NOTES[metric]} Bold: the smallest in the column. "
        "Black boxes: the NFE actually used in parentheses when whole steps do not fill the "
        'budget; "-": not one step fits.\n\n'
    )
    w("| solver | grid | " + " | ".join(str(n) for n in NFES) + " |\n")
    w("|---|---|" + "---:|" * len(NFES) + "\n")
    best = {n: min(v[metric] for (_, _, m), v in results.items() if m == n) for n in NFES}
    for label in res["labels"]:
        for grid in GRIDS:
            cells = []
            for nfe in NFES:
                if (label, grid, nfe) not in results:
                    cells.append("-")
                    continue
                v = results[label, grid, nfe][metric]
                c = _fmt(metric, v)
                if used[label, grid, nfe] != nfe:
                    c += f" ({used[label, grid, nfe]})"
                cells.append(f"**{c}**" if v == best[nfe] else c)
            w(f"| {label} | {GRID_NAMES[grid]} | " + " | ".join(cells) + " |\n")


def markdown(res) -> str:
    spec, used = res["spec"], res["used"]
    metric_names = ["rms", "median"] + (["other"] if res["empirical"] else [])
    out = io.StringIO()
    w = out.write
    w(f"# Quality: {res['key']}\n\n")
    w(
        f"{spec.title}. Batch {res['batch']} (x_T seed {spec.seed}), `vp_linear` schedule, "
        f"t = {T_START:g} -> {T_END:g}, float64. Errors of x_0 against the exact ODE "
        f"solution from the same x_T (DOP853, rtol = atol = {REF_RTOL:g}; its largest "
        f"difference to a {CHECK_RTOL:g} solution: {res['ref_err']:.1e}; RMS of the exact x_0: "
        f"{res['ref_rms']:.3f}). Written by `benchmarks/quality.py`; see its docstring for "
        "the solvers, and `quality_log.txt` for the machine and the run time.\n"
    )

    w("\n## Head to head: DPM-Solver++(2M) and (3M) against DDIM and the black boxes\n\n")
    w(
        'Each solver on its better grid for that figure and NFE (named); "x": its figure divided '
        "by DPM-Solver++(2M)'s (> 1: DPM-Solver++(2M) is better, < 1: the other solver is).\n"
    )
    rows = [
        "DPM-Solver++(2M)",
        "DPM-Solver++(3M)",
        "DPM-Solver++(3M) 3rd-ord.",
        "UniPC-2 (bh2)",
        "UniPC-3 (bh2)",
        "DDIM",
        "Heun (dx/dt)",
        "RK4 (dx/dt)",
        "Tsit5 (dx/dt, diffrax)",
        "Heun (EDM, dy/drho)",
    ]
    for metric in metric_names:
        w(
            f"\n{ {'rms': 'RMS error', 'median': 'Median per-sample error', 'other': 'Other image'}[metric] }:"
            "\n\n| solver | " + " | ".join(f"NFE {n}" for n in HEAD_TO_HEAD_NFES) + " |\n"
        )
        w("|---|" + "---|" * len(HEAD_TO_HEAD_NFES) + "\n")
        for label in rows:
            if label not in res["labels"]:
                continue
            cells = []
            for nfe in HEAD_TO_HEAD_NFES:
                b = _best_grid(res, label, nfe, metric)
                b2m = _best_grid(res, "DPM-Solver++(2M)", nfe, metric)
                if b is None:
                    cells.append("-")
                    continue
                n_used = used[label, b[1], nfe]
                c = f"{_fmt(metric, b[0])} ({GRID_NAMES[b[1]]}{'' if n_used == nfe else f', {n_used} NFE'})"
                if metric != "other":
                    c += f" x{b[0] / b2m[0]:.3g}"
                cells.append(c)
            w(f"| {label} | " + " | ".join(cells) + " |\n")

    for metric in metric_names:
        _table(res, metric, w)

    w("\n## Adaptive DPM-Solver-12/23 (the solver picks the NFE)\n\n")
    w(
        "| solver | atol | rtol | NFE | RMS error | median error |"
        + (" other image |" if res["empirical"] else "")
        + "\n"
    )
    w("|---|---:|---:|---:|---:|---:|" + ("---:|" if res["empirical"] else "") + "\n")
    for row in res["adaptive"]:
        w(
            f"| {row['label']} | {row['atol']:g} | {row['rtol']:g} | {row['nfe']} | "
            f"{_fmt('rms', row['rms'])} | {_fmt('median', row['median'])} |"
            + (f" {_fmt('other', row['other'])} |" if res["empirical"] else "")
            + "\n"
        )
    return out.getvalue()


def plot(res, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    styles = {
        "DDIM": ("k", "-", "o"),
        "DPM-Solver-2S": ("tab:blue", "--", "s"),
        "DPM-Solver-3S": ("tab:green", "--", "s"),
        "DPM-Solver-2M": ("tab:blue", ":", "^"),
        "DPM-Solver-3M": ("tab:green", ":", "^"),
        "DPM-Solver-3M 3rd-ord.": ("tab:olive", ":", "^"),
        "DPM-Solver++(2S)": ("tab:orange", "--", "s"),
        "DPM-Solver++(3S)": ("tab:red", "--", "s"),
        "DPM-Solver++(2M)": ("tab:orange", "-", "^"),
        "DPM-Solver++(3M)": ("tab:red", "-", "^"),
        "DPM-Solver++(3M) 3rd-ord.": ("tab:purple", "-", "^"),
        "UniPC-2 (bh2)": ("darkcyan", "-", "v"),
        "UniPC-3 (bh2)": ("m", "-", "v"),
        "Heun (dx/dt)": ("0.45", "-.", "x"),
        "RK4 (dx/dt)": ("0.45", "-.", "+"),
        "Tsit5 (dx/dt, diffrax)": ("0.45", "-.", "d"),
        "Heun (EDM, dy/drho)": ("tab:brown", "-.", "x"),
    }
    ylabels = {"rms": "RMS error", "median": "median per-sample error"}
    fig, axes = plt.subplots(2, 2, figsize=(12, 7.6), sharex=True, sharey="row")
    for i, metric in enumerate(("rms", "median")):
        for ax, grid in zip(axes[i], GRIDS):
            for label in res["labels"]:
                pts = [
                    (res["used"][label, grid, n], res["results"][label, grid, n][metric])
                    for n in NFES
                    if (label, grid, n) in res["results"]
                ]
                if not pts:
                    continue
                c, ls, m = styles.get(label, ("0.2", "-", "."))
                ax.plot(*zip(*pts), color=c, ls=ls, marker=m, ms=3.5, lw=1.1, label=label)
            for row in res["adaptive"]:
                c = "tab:cyan" if "++" in row["label"] else "tab:pink"
                ax.plot(
                    row["nfe"],
                    row[metric],
                    "*" if row["label"].endswith("23") else "p",
                    color=c,
                    ms=7,
                    mec="k",
                    mew=0.4,
                )
            ax.set_xscale("log")
            ax.set_yscale("log")
            lo = min(v[metric] for v in res["results"].values())
            lo = min([lo] + [row[metric] for row in res["adaptive"]])
            ax.set_ylim(lo / 2, 10.0)
            ax.set_xticks(list(NFES) + [200, 400])
            ax.set_xticklabels([str(n) for n in NFES] + ["200", "400"], fontsize=8)
            ax.minorticks_off()
            ax.grid(True, which="major", alpha=0.3)
            if i == 0:
                ax.set_title(f"{GRID_NAMES[grid]} grid (adaptive solvers: no grid, in both)")
            else:
                ax.set_xlabel("NFE (model calls)")
        axes[i][0].set_ylabel(f"{ylabels[metric]} vs exact ODE solution")
    for kind, c in (("", "tab:pink"), ("++", "tab:cyan")):
        for order, mk in (("12", "p"), ("23", "*")):
            axes[0][1].plot(
                [],
                [],
                mk,
                color=c,
                mec="k",
                mew=0.4,
                ms=7,
                label=f"adaptive DPM-Solver{kind}-{order}",
            )
    axes[0][1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.suptitle(
        f"{res['key']}: {res['spec'].title.split(':')[0]} (errors above 10 are off the chart)",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=72)
    plt.close(fig)


def _versions() -> str:
    names = ["jax", "jaxlib", "numpy", "scipy", "diffrax", "scikit-learn", "matplotlib"]
    out = []
    for n in names:
        try:
            out.append(f"{n} {importlib.metadata.version(n)}")
        except importlib.metadata.PackageNotFoundError:
            out.append(f"{n} (not installed)")
    return ", ".join(out)


def _cpu() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--problems", nargs="+", default=list(PROBLEMS), choices=list(PROBLEMS))
    parser.add_argument("--batch", type=int, default=None, help="override every problem's batch")
    parser.add_argument("--out", default=RESULTS, help="output folder (default benchmarks/results)")
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    lines = []

    def log(msg):
        print(msg, flush=True)
        lines.append(msg)

    start = time.perf_counter()
    log(f"machine: {platform.machine()}, {os.cpu_count()} CPUs ({_cpu()}), {platform.system()}")
    log(f"python {platform.python_version()}; {_versions()}")
    log(f"jax backend: {jax.default_backend()}, devices: {jax.devices()}")
    black_boxes = list(BLACK_BOXES)
    if diffrax is None:
        log(
            "NOTICE: diffrax is not installed: the Tsit5 baseline is skipped (pip install diffrax)."
        )
        black_boxes = [b for b in black_boxes if b.blackbox is not _tsit5]
    solvers = list(DPM_SOLVERS)
    for label, opts in OPTIONAL_SOLVERS:
        if _available(opts):
            per_step = 2 if opts.get("method") in TWO_CALLS_PER_STEP else 0
            solvers.append(Solver(label, opts, per_step=per_step))
        else:
            log(f"NOTICE: {label} is not in this dpm_jax (build_plan refuses {opts}): skipped.")

    for key in args.problems:
        t0 = time.perf_counter()
        res = run_problem(
            key, args.batch, log, solvers, black_boxes, self_check=key == args.problems[0]
        )
        md = markdown(res)
        with open(os.path.join(args.out, f"quality_{key}.md"), "w") as f:
            f.write(md)
        plot(res, os.path.join(args.out, f"quality_{key}.png"))
        log(md)
        log(f"{key}: {time.perf_counter() - t0:.1f} s")
    log(f"\ntotal run time: {time.perf_counter() - start:.1f} s")
    with open(os.path.join(args.out, "quality_log.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
