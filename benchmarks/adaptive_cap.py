"""The adaptive solver's step growth cap, side by side with the reference's unbounded rule.

On the problems of ``benchmarks/quality.py`` (exact noise predictors, DOP853 reference
solutions of the probability-flow ODE, ``vp_linear``, t from 1 to 1e-3, float64), the
adaptive DPM-Solver-12/23 in both forms (noise / data prediction) at the tolerances of
``quality.py``, with ``max_step_growth=2`` (the default: a step grows at most 2x over
the last and is at most 1 in lambda) and ``max_step_growth=None`` (the reference's
rule). Prints NFE, RMS error, median per-sample error and the share of samples that
land on another data point (digits), for each. Usage::

    python benchmarks/adaptive_cap.py                      # digits and the mild mixture, ~4 min
    python benchmarks/adaptive_cap.py --problems digits_guided
"""

from __future__ import annotations

import argparse
import os
import platform
import sys

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import quality as Q

import dpm_jax
from dpm_jax import schedules
from dpm_jax.testing import problems
from dpm_jax.testing.exact import exact_ode_solution

jax.config.update("jax_enable_x64", True)


def run(key: str):
    spec = Q.PROBLEMS[key]
    prob = spec.make()
    sched = schedules.vp_linear()
    x_t = np.random.default_rng(spec.seed).normal(size=(spec.batch, Q._dim(prob)))
    guided = {}
    if spec.guidance is not None:
        labels = np.arange(spec.batch) % 10
        guided = dict(log_weights=problems.class_log_weights(prob, labels))
    ref = exact_ode_solution(
        prob, sched, x_t, Q.T_START, Q.T_END, rtol=Q.REF_RTOL, atol=Q.REF_RTOL,
        guidance_scale=spec.guidance, **guided,
    ) if guided else exact_ode_solution(
        prob, sched, x_t, Q.T_START, Q.T_END, rtol=Q.REF_RTOL, atol=Q.REF_RTOL
    )  # fmt: skip
    if guided:
        model = dpm_jax.model_wrapper(
            problems.noise_net(prob, sched),
            sched,
            guidance_type="classifier-free",
            condition=jnp.asarray(guided["log_weights"]),
            unconditional_condition=jnp.asarray(problems.uncond_log_weights(prob, spec.batch)),
            guidance_scale=spec.guidance,
        )
    else:
        model = dpm_jax.model_wrapper(problems.noise_net(prob, sched), sched)
    empirical = isinstance(prob, problems.Empirical)
    data, ref_idx = (prob.data, Q.nearest(prob.data, ref)) if empirical else (None, None)
    print(f"\n## {key}: {spec.title}; batch {spec.batch}\n")
    print("| solver | atol | rtol | NFE capped | RMS capped | median capped | other capped |"
          " NFE reference rule | RMS | median | other |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for order in (2, 3):
        for alg in ("dpmsolver", "dpmsolver++"):
            name = f"DPM-Solver{'++' if alg == 'dpmsolver++' else ''}-{order - 1}{order}"
            for atol, rtol in Q.ADAPTIVE_TOLS:
                cells = []
                for growth in (2.0, None):
                    x0, info = dpm_jax.sample(
                        model, jnp.asarray(x_t), sched, method="adaptive", order=order,
                        algorithm_type=alg, atol=atol, rtol=rtol, t_start=Q.T_START,
                        t_end=Q.T_END, max_step_growth=growth, return_info=True,
                    )  # fmt: skip
                    m = Q.metrics(x0, ref, data, ref_idx)
                    other = f"{100 * m['other']:.1f}%" if "other" in m else "-"
                    cells += [str(int(info.nfe)), f"{m['rms']:.2e}", f"{m['median']:.2e}", other]
                print(f"| {name} | {atol:g} | {rtol:g} | " + " | ".join(cells) + " |", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--problems", nargs="+", default=["digits", "gmm_mild"], choices=list(Q.PROBLEMS)
    )
    args = ap.parse_args()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}, jax {jax.__version__}"
    )
    for key in args.problems:
        run(key)


if __name__ == "__main__":
    main()
