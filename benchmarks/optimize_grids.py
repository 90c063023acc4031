"""Optimised time grids against the built-in spacings, judged on held-out noise.

    python benchmarks/optimize_grids.py                 # everything, results in benchmarks/results/
    python benchmarks/optimize_grids.py --problems digits --nfe 5 6 8 --solvers 2M UniPC-2

For each problem a grid is fitted by each objective of ``dpm_jax.optimize_timesteps``
("ld3", "gits", "dmn"; ld3 with every option set, as its defaults were before 0.2.0: the
grid alone, loss="log", the whole batch, 300 iterations; "ld3-dec", that with
decouple=True: the grid and the model times; "ld3-iqr" and "ld3-dec-iqr", the same with
loss="iqr"; "ld3-dec-swa": ld3-dec-iqr with window="sides", batch_size=32 (minibatches
and the average of the second half of the iterates) and 600 iterations per stage;
"ld3-dec-swa3": that with restarts=3; and "ld3-plain": ``optimize_timesteps(model,
schedule, x_T, steps=..., **solver)`` with nothing else -- the library's defaults, its
default teacher (200 steps of DPM-Solver++(3M)) and the schedule's span -- where the
other ld3 objectives are given the exact solution as the teacher)
for each solver and NFE on TRAIN = 64 noise samples, and every grid
-- the fitted ones and the built-in spacings (time_uniform, logSNR, time_quadratic,
karras with rho 7) -- is then judged on HELD_OUT = 256 other noise samples by the median
over samples of the per-sample RMS error against the exact solution (the digits' ideal
denoiser and the stiff mixture: DOP853 in float64; the bundled UNet: its own 200-step
DPM-Solver++(3M) solution, and a Frechet distance between the classifier's penultimate
features of 1,000 samples and of the real digits). Printed: each figure, its ratio to
the best built-in spacing's, and the wall time of each optimisation (this machine).

Problems (vp_linear from t = 1 to 1e-3 for the ideal problems, as benchmarks/quality.py):
``digits`` (the ideal denoiser of the 1,797 sklearn digits), ``digits_guided`` (the same,
class-conditional, classifier-free guidance at scale 7.5), ``gmm_stiff`` (16-D mixture,
stds 0.01-0.06) and ``unet`` (the bundled class-conditional digits UNet with guidance at
its default scale, on its DDPM schedule, in float32; DPM-Solver++(2M) and UniPC-2 only:
its optimisations differentiate a conv net and take minutes each).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp
import numpy as np

import dpm_jax
from dpm_jax import schedules
from dpm_jax.testing import problems
from dpm_jax.testing.exact import exact_ode_solution

TRAIN, HELD_OUT = 64, 256
T_START, T_END = 1.0, 1e-3
SPACINGS = ("time_uniform", "logSNR", "time_quadratic", "karras")
SOLVERS = {
    "2M": dict(method="multistep", order=2, algorithm_type="dpmsolver++"),
    "UniPC-2": dict(method="unipc", order=2),
    "UniPC-3": dict(method="unipc", order=3),
    "iPNDM-4": dict(method="ipndm", order=4),
    "DEIS-tAB3": dict(method="deis", order=3),
}
# ld3: the defaults before 0.2.0, set explicitly; ld3-dec: with decouple=True; -iqr: with
# loss="iqr"; ld3-dec-swa: also window="sides", minibatches of 32 and their averaged
# iterates; ld3-dec-swa3: that with restarts=3 (seeds 0, 1, 2; the lowest training loss);
# ld3-plain: a plain call (the library's defaults and default teacher)
OBJECTIVES = (
    "ld3", "ld3-dec", "gits", "dmn", "ld3-iqr", "ld3-dec-iqr", "ld3-dec-swa", "ld3-dec-swa3",
    "ld3-plain",
)  # fmt: skip
LD3 = dict(decouple=False, loss="log", window="nearest", batch_size=None, restarts=1)
SWA = dict(LD3, decouple=True, loss="iqr", window="sides", batch_size=32, iterations=600)
SWA3 = dict(SWA, restarts=3)
LD3_OPTIONS = {
    "ld3": dict(LD3, iterations=300),
    "ld3-dec": dict(LD3, decouple=True, iterations=300),
    "ld3-iqr": dict(LD3, loss="iqr", iterations=300),
    "ld3-dec-iqr": dict(LD3, decouple=True, loss="iqr", iterations=300),
    "ld3-dec-swa": SWA,
    "ld3-dec-swa3": SWA3,
}
DMN_METHODS = ("multistep",)  # with the data prediction (see dpm_jax.optimize.dmn)
#: the bundled UNet's reference: 200 steps of DPM-Solver++(3M) (third-order multistep), logSNR
UNET_REFERENCE = dict(steps=200, order=3, multistep3_variant="third_order", skip_type="logSNR")


def ideal_problem(key):
    sched = schedules.vp_linear()
    if key == "gmm_stiff":
        prob, guided = problems.gmm_16d_stiff(), {}
        dim = prob.means.shape[1]
    else:
        prob = problems.digits()
        dim = prob.data.shape[1]
        guided = {}
    rng = np.random.default_rng({"digits": 11, "digits_guided": 12, "gmm_stiff": 13}[key])
    x_train = rng.normal(size=(TRAIN, dim))
    x_test = rng.normal(size=(HELD_OUT, dim))

    def model_for(batch):
        if key != "digits_guided":
            return dpm_jax.model_wrapper(problems.noise_net(prob, sched), sched), {}
        labels = np.arange(batch) % 10
        lw = problems.class_log_weights(prob, labels)
        model = dpm_jax.model_wrapper(
            problems.noise_net(prob, sched),
            sched,
            guidance_type="classifier-free",
            condition=jnp.asarray(lw),
            unconditional_condition=jnp.asarray(problems.uncond_log_weights(prob, batch)),
            guidance_scale=7.5,
        )
        return model, dict(log_weights=lw, guidance_scale=7.5)

    m_train, g_train = model_for(TRAIN)
    m_test, g_test = model_for(HELD_OUT)
    exact = exact_ode_solution(
        prob, sched, x_test, T_START, T_END, rtol=1e-11, atol=1e-11, **g_test
    )
    exact_train = exact_ode_solution(
        prob, sched, x_train, T_START, T_END, rtol=1e-11, atol=1e-11, **g_train
    )
    del guided
    return dict(
        sched=sched,
        train=(m_train, jnp.asarray(x_train)),
        test=(m_test, jnp.asarray(x_test)),
        exact=exact,
        exact_train=exact_train,
        t_start=T_START,
        t_end=T_END,
    )


def unet_problem():
    from dpm_jax.demo import digits

    bundle = digits.load()
    sched = digits.schedule()
    rng = np.random.default_rng(14)

    def model_for(batch):
        labels = np.arange(batch) % 10
        return digits.guided_model(bundle.unet_graph, bundle.unet_params, labels, sched=sched)

    shape = digits.IMAGE_SHAPE
    # float32 (the UNet's own precision; 2x faster than float64 under grad)
    x_train = jnp.asarray(rng.normal(size=(TRAIN, *shape)), jnp.float32)
    x_test = jnp.asarray(rng.normal(size=(HELD_OUT, *shape)), jnp.float32)
    m_test = model_for(HELD_OUT)
    exact = np.asarray(dpm_jax.sample(m_test, x_test, sched, **UNET_REFERENCE))
    m_train = model_for(TRAIN)
    exact_train = np.asarray(dpm_jax.sample(m_train, x_train, sched, **UNET_REFERENCE))
    return dict(
        sched=sched,
        train=(m_train, x_train),
        test=(m_test, x_test),
        exact=exact,
        exact_train=exact_train,
        t_start=sched.T,
        t_end=sched.t_eps,
        bundle=bundle,
        model_for=model_for,
    )


def median_rms(x, ref):
    err = np.asarray(x).reshape(len(ref), -1) - np.asarray(ref).reshape(len(ref), -1)
    return float(np.median(np.sqrt(np.mean(err**2, axis=1))))


def frechet(bundle, model_for, sched, grid_opts, n=1000, seed=15):
    """Frechet distance between the classifier's penultimate features of n samples and of
    the real digits (scaled to [-1, 1])."""
    from dpm_jax.demo import digits

    x = jnp.asarray(np.random.default_rng(seed).normal(size=(n, *digits.IMAGE_SHAPE)), jnp.float32)
    return frechet_to_real(bundle, dpm_jax.sample(model_for(n), x, sched, **grid_opts))


def frechet_to_real(bundle, samples) -> float:
    """Frechet distance between the classifier's penultimate features of ``samples``
    (B, 8, 8, 1) and of the 1,797 real digits (scaled to [-1, 1])."""
    from dpm_jax.demo import digits

    real = digits.features(bundle, digits.real_digits())
    return digits.frechet_distance(digits.features(bundle, samples), real)


#: Solvers per problem (the UNet's optimisations are the slow ones: a conv net under grad).
PROBLEM_SOLVERS = {
    "digits": list(SOLVERS),
    "digits_guided": list(SOLVERS),
    "gmm_stiff": list(SOLVERS),
    "unet": ["2M", "UniPC-2"],
}


def run(key, nfes, solver_names, objectives, log):
    t0 = time.perf_counter()
    p = unet_problem() if key == "unet" else ideal_problem(key)
    log(f"\n== {key}: exact solutions in {time.perf_counter() - t0:.1f} s")
    sched = p["sched"]
    m_test, x_test = p["test"]
    m_train, x_train = p["train"]
    span = dict(t_start=p["t_start"], t_end=p["t_end"])
    header = "| solver | NFE | best built-in | " + " | ".join(objectives) + " |"
    log(header)
    log("|---" * (3 + len(objectives)) + "|")
    rows, builtins = [], []
    for nfe in nfes:
        for name in solver_names:
            opts = SOLVERS[name]
            built = {}
            for sp in SPACINGS:
                x = dpm_jax.sample(m_test, x_test, sched, steps=nfe, skip_type=sp, **span, **opts)
                built[sp] = median_rms(x, p["exact"])
            builtins.append((name, nfe, built))
            best_sp = min(built, key=built.get)
            base = built[best_sp]
            line = [f"| {name} | {nfe} | {best_sp} {base:.2e} |"]
            fitted = {}
            for obj in objectives:
                if obj == "dmn" and (
                    opts["method"] not in DMN_METHODS or opts.get("algorithm_type") != "dpmsolver++"
                ):
                    line.append(" n/a |")
                    continue
                t1 = time.perf_counter()
                if obj == "ld3-plain":  # as a user calls it: the defaults, their teacher
                    kw = dict(steps=nfe, **opts)
                else:
                    kw = dict(steps=nfe, objective=obj.split("-")[0], **span, **opts)
                if obj in LD3_OPTIONS:
                    kw.update(LD3_OPTIONS[obj], teacher=jnp.asarray(p["exact_train"]))
                fit = dpm_jax.optimize_timesteps(m_train, sched, x_train, **kw)
                grid = fit.keywords()  # timesteps= and model_timesteps=
                wall = time.perf_counter() - t1
                x = dpm_jax.sample(m_test, x_test, sched, **grid, **opts)
                err = median_rms(x, p["exact"])
                train = median_rms(
                    dpm_jax.sample(m_train, x_train, sched, **grid, **opts), p["exact_train"]
                )
                fitted[obj] = (err, grid)
                line.append(f" {err:.2e} (x{err / base:.2f}; train {train:.2e}; {wall:.0f} s) |")
            rows.append((key, name, nfe, best_sp, base, fitted))
            log("".join(line))
    log(f"\nall built-in spacings ({key}, median per-sample RMS, held-out):\n")
    log("| solver | NFE | " + " | ".join(SPACINGS) + " |")
    log("|---" * (2 + len(SPACINGS)) + "|")
    for name, nfe, built in builtins:
        log(f"| {name} | {nfe} | " + " | ".join(f"{built[sp]:.2e}" for sp in SPACINGS) + " |")
    if key == "unet":
        log(
            f"\nFrechet distance to the real digits (classifier features, 1,000 samples; "
            f"the 200-step reference: "
            f"{frechet(p['bundle'], p['model_for'], sched, UNET_REFERENCE):.3f}):\n"
        )
        log("| solver | NFE | best built-in | " + " | ".join(objectives) + " |")
        log("|---" * (3 + len(objectives)) + "|")
        for _, name, nfe, best_sp, _, fitted in rows:
            opts = SOLVERS[name]
            cells = [
                f"{frechet(p['bundle'], p['model_for'], sched, dict(steps=nfe, skip_type=best_sp, **span, **opts)):.3f}"
            ]
            for obj in objectives:
                cells.append(
                    f"{frechet(p['bundle'], p['model_for'], sched, dict(**fitted[obj][1], **opts)):.3f}"
                    if obj in fitted
                    else "n/a"
                )
            log(f"| {name} | {nfe} | {best_sp} " + " | ".join(cells) + " |")
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--problems", nargs="+", default=["digits", "digits_guided", "gmm_stiff", "unet"]
    )
    ap.add_argument("--nfe", nargs="+", type=int, default=[4, 5, 6, 8, 10])
    ap.add_argument(
        "--solvers",
        nargs="+",
        default=None,
        choices=list(SOLVERS),
        help="default: every solver (the UNet: 2M, UniPC-2, UniPC-3)",
    )
    ap.add_argument(
        "--objectives", nargs="+", default=["ld3", "ld3-dec", "gits", "dmn"], choices=OBJECTIVES
    )
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    args = ap.parse_args()
    args.solvers_given = args.solvers is not None
    lines = []

    def log(s=""):
        print(s, flush=True)
        lines.append(s)

    log(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, {platform.system()}; "
        f"python {platform.python_version()}, jax {jax.__version__}"
    )
    log(
        "median per-sample RMS error on HELD_OUT noise against the exact solution; x: ratio "
        "to the best built-in spacing; train: the same on the training noise; s: wall time "
        "of the optimisation"
    )
    start = time.perf_counter()
    for key in args.problems:
        names = args.solvers if args.solvers_given else PROBLEM_SOLVERS[key]
        run(key, args.nfe, names, args.objectives, log)
        _write(args, lines)  # after every problem: a crash keeps what was measured
    log(f"\ntotal run time: {time.perf_counter() - start:.1f} s")
    _write(args, lines)


def _write(args, lines):
    os.makedirs(args.out, exist_ok=True)
    name = (
        "optimize_grids.md" if len(args.problems) > 1 else f"optimize_grids_{args.problems[0]}.md"
    )
    with open(os.path.join(args.out, name), "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
