"""How far an ld3 fit can go: UniPC-2 at NFE 8 on the digits' ideal denoiser, with 64, 128
and 256 training x_T (a draw apart from the held-out one) and, as a ceiling, fitted on the
benchmark's 256 held-out x_T themselves (in-sample: not a result, only the best the
parametrisation reaches on those samples). Each figure is the held-out median per-sample
RMS as a ratio to the best built-in spacing (as in benchmarks/optimize_grids.py).

Columns: ``optimize_timesteps(objective="ld3")`` with its defaults before 0.2.0 (set
explicitly: ``benchmarks/optimize_grids.py``'s "ld3" and "ld3-dec"), grid only and
decouple=True;
and an experiment that is not in the library: the decoupled fit with L-BFGS (optax.lbfgs,
100 iterations for the grid, then 120 for both) instead of Adam, on ``loss="iqr"`` (the
mean of log per-sample RMS over the middle half of the samples, a smoothed median).

    python benchmarks/ld3_ceiling.py [SOLVER NFE]      # about 15 minutes on 2 CPU cores
"""

from __future__ import annotations

import os
import platform
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))

import jax
import jax.numpy as jnp
import numpy as np
import optax
import optimize_grids as B

import dpm_jax
from dpm_jax.optimize import _common as U
from dpm_jax.optimize import ld3
from dpm_jax.testing import problems
from dpm_jax.testing.exact import exact_ode_solution


def interquartile_lbfgs(model, sched, x, exact, nfe, opts):
    """The experiment: (grid, model times) from L-BFGS on the middle half's mean log RMS."""
    prob = U.check("ld3", model, sched, jnp.asarray(x), nfe, opts, B.T_START, B.T_END, True)
    x_T, target = prob.x_T, jnp.asarray(exact)
    iqr = ld3.loss_fn(prob, "lambda", "iqr")  # the library's loss="iqr"

    def loss(params):
        return iqr(params, jnp.zeros_like(x_T), x_T, target)

    def lbfgs(params, iterations):
        opt = optax.lbfgs()
        state = opt.init(params)
        value_and_grad = jax.value_and_grad(loss)

        @jax.jit
        def step(params, state):
            value, grad = value_and_grad(params)
            updates, state = opt.update(grad, state, params, value=value, grad=grad, value_fn=loss)
            return optax.apply_updates(params, updates), state

        for _ in range(iterations):
            params, state = step(params, state)
        return params

    theta = ld3._initial_theta(prob, "lambda", None, iqr, x_T, target)
    theta = lbfgs(theta, 100)
    params = lbfgs((theta, jnp.zeros((nfe - 1,), theta.dtype)), 120)
    times, model_times = ld3._times(prob, params, "lambda")
    return U.host_grid(times), U.host_grid(model_times)


def main():
    name, nfe = (sys.argv[1], int(sys.argv[2])) if len(sys.argv) > 2 else ("UniPC-2", 8)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, {platform.system()}; "
        f"python {platform.python_version()}, jax {jax.__version__}"
    )
    p = B.ideal_problem("digits")
    sched, (m_test, x_test) = p["sched"], p["test"]
    opts = B.SOLVERS[name]
    base = min(
        B.median_rms(
            dpm_jax.sample(m_test, x_test, sched, steps=nfe, skip_type=sp, **opts), p["exact"]
        )
        for sp in B.SPACINGS
    )
    x_all = np.random.default_rng(31).normal(size=(256, 64))
    e_all = exact_ode_solution(problems.digits(), sched, x_all, 1.0, 1e-3, rtol=1e-11, atol=1e-11)
    sets = [(f"{n} training x_T", x_all[:n], e_all[:n]) for n in (64, 128, 256)]
    sets.append(("in-sample (fitted on the 256 held-out x_T)", np.asarray(x_test), p["exact"]))
    model = m_test  # unconditional: the same model for any batch
    print(f"{name}, NFE {nfe}; best built-in {base:.3e}; ratios on the 256 held-out x_T\n")
    print("| training noise | ld3 grid only | ld3 decoupled | experiment: interquartile, L-BFGS |")
    print("|---|---|---|---|")
    for label, x, exact in sets:
        kw = dict(steps=nfe, objective="ld3", teacher=jnp.asarray(exact), **opts)
        cells = []
        for fit in ("grid", "decoupled", "experiment"):
            t0 = time.perf_counter()
            if fit == "experiment":
                ts, ms = interquartile_lbfgs(model, sched, x, exact, nfe, opts)
                grid = dict(timesteps=ts, model_timesteps=ms)
            else:
                obj = "ld3-dec" if fit == "decoupled" else "ld3"  # the defaults before 0.2.0
                out = dpm_jax.optimize_timesteps(
                    model, sched, jnp.asarray(x), **B.LD3_OPTIONS[obj], **kw
                )
                grid = out.keywords()
            wall = time.perf_counter() - t0
            err = B.median_rms(dpm_jax.sample(m_test, x_test, sched, **grid, **opts), p["exact"])
            cells.append(f"x{err / base:.3f} ({wall:.0f} s)")
        print(f"| {label} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
