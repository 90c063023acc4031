"""The option grid behind ``data/frozen_plans.npz`` (the plan-freeze test).

``tools/freeze_plans.py`` built every case below with the planner as it was
before the planner was split into grids and solver objects, and stored each
plan (or the type of the error it raised). ``tests/test_plan_freeze.py`` builds
the same cases with today's planner and compares bitwise. Do not change the
cases: the stored file depends on them.
"""

from __future__ import annotations

import itertools

import numpy as np

from dpm_jax import schedules


def _schedules():
    lin = np.linspace(1e-4, 0.02, 1000)
    sd = np.linspace(0.00085**0.5, 0.012**0.5, 1000) ** 2
    return {
        "discrete_linear": schedules.discrete(betas=lin),
        "discrete_scaled": schedules.discrete(betas=sd, lambda_clip=None),
        "discrete_zsnr": schedules.discrete(betas=sd, rescale_zero_terminal_snr=True),
        "vp_linear": schedules.vp_linear(),
        "vp_cosine": schedules.vp_cosine(),
        "ve": schedules.ve(0.01, 50.0),
        "edm": schedules.edm(),
        "flow": schedules.flow(),
        "flow3": schedules.flow(shift=3.0),
    }


SCHEDULES = _schedules()

METHODS = ("singlestep", "multistep", "singlestep_fixed", "unipc")
ALGORITHMS = ("dpmsolver", "dpmsolver++", "sde-dpmsolver", "sde-dpmsolver++")
SKIPS = (
    "time_uniform",
    "logSNR",
    "time_quadratic",
    "karras",
    "exponential",
    "linspace",
    "leading",
    "trailing",
)


def _times(name, rng):
    """A few time spans per schedule: default, a shortened one, inversion."""
    s = SCHEDULES[name]
    lo = s.lowest_time
    choice = rng.integers(0, 5)
    if choice <= 1:
        return None, None
    if choice == 2:
        return float(s.T * 0.9), float(max(lo, s.t_eps) + 0.01 * s.T)
    if choice == 3:
        return None, 0.0 if lo == 0.0 else float(lo)
    return float(max(lo, s.t_eps) + 0.01 * s.T), float(s.T * 0.95)  # upwards (inversion)


def cases() -> list[dict]:
    """Every case: {"schedule": name, **build_plan keyword arguments}."""
    out = []
    # structured: every method x order x algorithm x skip on two schedules, 2 step counts
    for sched, method, order, alg, skip, steps in itertools.product(
        ("discrete_linear", "vp_linear"), METHODS, (1, 2, 3), ALGORITHMS, SKIPS, (5, 12)
    ):
        out.append(
            dict(
                schedule=sched,
                method=method,
                order=order,
                algorithm_type=alg,
                skip_type=skip,
                steps=steps,
            )
        )
    # random: every option
    rng = np.random.default_rng(20261201)
    names = list(SCHEDULES)
    for _ in range(2500):
        name = names[rng.integers(len(names))]
        t_start, t_end = _times(name, rng)
        case = dict(
            schedule=name,
            steps=int(rng.choice([1, 2, 3, 4, 5, 6, 7, 9, 10, 14, 15, 16, 21])),
            order=int(rng.integers(1, 4)),
            method=METHODS[rng.integers(len(METHODS))],
            algorithm_type=ALGORITHMS[rng.integers(len(ALGORITHMS))]
            if rng.random() < 0.7
            else ALGORITHMS[1],
            skip_type=SKIPS[rng.integers(len(SKIPS))],
            solver_type=("dpmsolver", "taylor")[rng.integers(2)],
            lower_order_final=bool(rng.random() < 0.7),
            denoise_to_zero=bool(rng.random() < 0.2),
            multistep3_variant=("reference", "third_order")[rng.integers(2)],
            unipc_variant=("bh1", "bh2")[rng.integers(2)],
            unipc_corrector=bool(rng.random() < 0.8),
            final_sigmas_type=(None, None, "zero", "sigma_min")[rng.integers(4)],
            euler_at_final=bool(rng.random() < 0.15),
            karras_rho=float((7.0, 7.0, 3.0)[rng.integers(3)]),
            steps_offset=int((0, 0, 1)[rng.integers(3)]),
        )
        if t_start is not None:
            case["t_start"] = t_start
        if t_end is not None:
            case["t_end"] = t_end
        out.append(case)
    return out


FIELDS = ("t", "t_input", "alpha", "sigma", "x_coef", "m_coef", "noise_coef", "intermediate_rows")
META = ("algorithm_type", "stochastic", "include_start", "denoise_to_zero")


def kwargs_of(case: dict) -> dict:
    """build_plan's keyword arguments of a case."""
    return {k: v for k, v in case.items() if k != "schedule"}
