"""Choosing ``optimize_timesteps``' defaults on a validation set: DPM-Solver++(2M) and
UniPC-2 at NFE 5, 6 and 8 on the digits' ideal denoiser, each candidate configuration
called as a user would call it -- no teacher given (the library's default teacher, 200
steps of DPM-Solver++(3M)), the schedule's own span -- on 64 training x_T, and judged on
a VALIDATION set of 512 other x_T (seed 77, as benchmarks/ld3_minibatch.py) as the
median per-sample RMS error against the exact solution (DOP853, float64), divided by the
best built-in spacing's on the same x_T. The held-out x_T of benchmarks/optimize_grids.py
are not used here: the defaults chosen are judged on them there (objective "ld3-plain").

Training draws: 11 (benchmarks/optimize_grids.py's 64 training x_T) and 21
(``numpy.random.default_rng(21)``, as benchmarks/ld3_minibatch.py). Every candidate sets
all its options explicitly, so the figures do not depend on the library's defaults.
Printed per fit: the validation ratio and the fit's wall time on this machine (with the
1-minute load average, as the machine may be shared).

    python benchmarks/ld3_defaults.py                       # every candidate
    python benchmarks/ld3_defaults.py --configs swa3-iqr --draws 11
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))

import jax
import jax.numpy as jnp
import numpy as np
import optimize_grids as B

import dpm_jax
from dpm_jax.testing import problems
from dpm_jax.testing.exact import exact_ode_solution

SOLVERS = ("2M", "UniPC-2")
NFES = (5, 6, 8)
VALIDATION_SEED, VALIDATION = 77, 512

#: ld3 with every option set (the previous defaults, then decoupled fits).
_GRID = dict(decouple=False, loss="log", window="nearest", batch_size=None, restarts=1)
_SWA = dict(decouple=True, window="sides", batch_size=32)
CONFIGS = {
    # the defaults before this study: the grid alone, the whole batch, 300 iterations
    "grid": dict(_GRID, iterations=300),
    # decoupled, the whole batch, the iterate with the lowest loss
    "dec-iqr": dict(_GRID, decouple=True, loss="iqr", window="sides", iterations=300),
    # minibatches of 32, the average of the second half of the iterates, k restarts
    "swa3-iqr": dict(_SWA, loss="iqr", iterations=600, restarts=3),
    "swa3-log": dict(_SWA, loss="log", iterations=600, restarts=3),
    "swa4-iqr-400": dict(_SWA, loss="iqr", iterations=400, restarts=4),
    "swa5-iqr-300": dict(_SWA, loss="iqr", iterations=300, restarts=5),
    "swa2-iqr-900": dict(_SWA, loss="iqr", iterations=900, restarts=2),
}


def training_draw(seed):
    if seed == 11:  # benchmarks/optimize_grids.py's training x_T
        return np.random.default_rng(11).normal(size=(B.TRAIN, 64))
    return np.random.default_rng(seed).normal(size=(B.TRAIN, 64))


def _sample(model, x, sched, fitted, opts):
    """The solver keywords ``opts`` on the fitted grid (its keywords: the times and the
    model times)."""
    return dpm_jax.sample(model, x, sched, **fitted.keywords(), **opts)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    ap.add_argument("--draws", nargs="+", type=int, default=[11, 21])
    ap.add_argument("--solvers", nargs="+", default=list(SOLVERS), choices=list(B.SOLVERS))
    ap.add_argument("--nfe", nargs="+", type=int, default=list(NFES))
    args = ap.parse_args()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, {platform.system()}; "
        f"python {platform.python_version()}, jax {jax.__version__}",
        flush=True,
    )
    print(f"$ python benchmarks/ld3_defaults.py {' '.join(sys.argv[1:])}", flush=True)
    digits = problems.digits()
    sched = dpm_jax.schedules.vp_linear()  # T = 1, t_eps = 1e-3: the benchmark's span

    def exact(x):
        return exact_ode_solution(digits, sched, x, B.T_START, B.T_END, rtol=1e-11, atol=1e-11)

    model = dpm_jax.model_wrapper(problems.noise_net(digits, sched), sched)
    t0 = time.perf_counter()
    x_val = np.random.default_rng(VALIDATION_SEED).normal(size=(VALIDATION, 64))
    e_val = exact(x_val)
    x_val = jnp.asarray(x_val)
    print(f"validation: {VALIDATION} x_T (seed {VALIDATION_SEED}), exact solutions in "
          f"{time.perf_counter() - t0:.0f} s", flush=True)  # fmt: skip
    base = {}
    for name in args.solvers:
        for nfe in args.nfe:
            errs = {
                sp: B.median_rms(
                    dpm_jax.sample(model, x_val, sched, steps=nfe, skip_type=sp, **B.SOLVERS[name]),
                    e_val,
                )
                for sp in B.SPACINGS
            }
            best = min(errs, key=errs.get)
            base[name, nfe] = errs[best]
            print(f"best built-in on validation, {name} NFE {nfe}: {best} {errs[best]:.3e}")
    ratios: dict = {c: {} for c in args.configs}
    walls: dict = {c: [] for c in args.configs}
    for draw in args.draws:
        x_train = jnp.asarray(training_draw(draw))
        for name in args.solvers:
            opts = B.SOLVERS[name]
            for nfe in args.nfe:
                for label in args.configs:
                    t1 = time.perf_counter()
                    fitted = dpm_jax.optimize_timesteps(
                        model, sched, x_train, steps=nfe, **CONFIGS[label], **opts
                    )
                    wall = time.perf_counter() - t1
                    load = os.getloadavg()[0]
                    err = B.median_rms(_sample(model, x_val, sched, fitted, opts), e_val)
                    r = err / base[name, nfe]
                    ratios[label].setdefault((name, nfe), []).append(r)
                    walls[label].append(wall)
                    print(
                        f"draw {draw}, {name} NFE {nfe}, {label}: validation x{r:.3f} "
                        f"({err:.2e}); fit {wall:.0f} s (load {load:.1f})",
                        flush=True,
                    )
    print("\nvalidation ratio to the best built-in spacing, mean over the training draws "
          f"{args.draws}; fit wall time (max):")  # fmt: skip
    cells = [(n, k) for n in args.solvers for k in args.nfe]
    print(
        "| config | " + " | ".join(f"{n} {k}" for n, k in cells) + " | geo. mean | worst | max s |"
    )
    print("|---" * (len(cells) + 4) + "|")
    for label in args.configs:
        means = [float(np.mean(ratios[label][c])) for c in cells]
        every = [r for c in cells for r in ratios[label][c]]
        print(
            f"| {label} | "
            + " | ".join(f"x{m:.3f}" for m in means)
            + f" | x{np.exp(np.mean(np.log(means))):.3f} | x{max(every):.3f}"
            + f" | {max(walls[label]):.0f} |"
        )
    for name in args.solvers:
        cs = [c for c in cells if c[0] == name]
        best = min(
            args.configs,
            key=lambda lb: np.mean([np.log(np.mean(ratios[lb][c])) for c in cs]),
        )
        print(f"lowest geometric mean for {name}: {best}")


if __name__ == "__main__":
    main()
