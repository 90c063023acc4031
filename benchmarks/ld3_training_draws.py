"""How much an ld3 fit depends on its training noise: UniPC-2 at NFE 8 on the digits' ideal
denoiser, fitted (grid only, and decouple=True) on three other draws of 64 training x_T,
each judged on the benchmark's 256 held-out x_T (benchmarks/optimize_grids.py's), as a
ratio to the best built-in spacing.

    python benchmarks/ld3_training_draws.py [SOLVER NFE]      # about 3 minutes on 2 CPU cores
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

import jax.numpy as jnp
import numpy as np
import optimize_grids as B

import dpm_jax
from dpm_jax.testing import problems
from dpm_jax.testing.exact import exact_ode_solution


def main():
    name, nfe = (sys.argv[1], int(sys.argv[2])) if len(sys.argv) > 2 else ("UniPC-2", 8)
    p = B.ideal_problem("digits")
    sched, (m_test, x_test), (m_train, _) = p["sched"], p["test"], p["train"]
    opts = B.SOLVERS[name]
    base = min(
        B.median_rms(
            dpm_jax.sample(m_test, x_test, sched, steps=nfe, skip_type=sp, **opts), p["exact"]
        )
        for sp in B.SPACINGS
    )
    ratios = {"grid only": [], "decoupled": []}
    for seed in (21, 22, 23):
        x = np.random.default_rng(seed).normal(size=(B.TRAIN, 64))
        exact = exact_ode_solution(problems.digits(), sched, x, 1.0, 1e-3, rtol=1e-11, atol=1e-11)
        kw = dict(steps=nfe, objective="ld3", teacher=jnp.asarray(exact), **opts)
        for label, obj in (("grid only", "ld3"), ("decoupled", "ld3-dec")):
            fitted = dpm_jax.optimize_timesteps(
                m_train, sched, jnp.asarray(x), **B.LD3_OPTIONS[obj], **kw
            )
            x0 = dpm_jax.sample(m_test, x_test, sched, **fitted.keywords(), **opts)
            err = B.median_rms(x0, p["exact"])
            ratios[label].append(err / base)
            print(f"{name} NFE {nfe}, training draw {seed}, {label}: x{err / base:.3f}", flush=True)
    for label, r in ratios.items():
        print(f"{label}: mean x{np.mean(r):.3f}, worst x{np.max(r):.3f}")


if __name__ == "__main__":
    main()
