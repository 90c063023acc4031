"""DPM-Solver-v3 (Zheng, Lu, Chen and Zhu, NeurIPS 2023, arXiv 2310.13268): its
empirical model statistics and its sampler.

DPM-Solver-v3 integrates the diffusion ODE with three per-dimension coefficients
l_lambda, s_lambda, b_lambda measured on the model beforehand, the *empirical model
statistics* (EMS). This package estimates them (:func:`estimate_ems`), stores them
(:func:`save_ems`, :func:`load_ems`), reads the statistics published with the
paper's code (:func:`load_official_ems`) and samples with them: :func:`sample_v3`, or
``dpm_jax.sample(model, x_T, schedule, solver=dpm_jax.solvers.DPMSolverV3(ems),
grid=dpm_jax.grids.LogSNR(steps))``, which runs the same program (there is no
``method="v3"`` keyword: v3's options live on the solver object).

>>> from dpm_jax import v3
>>> [name in v3.__all__ for name in ("EMS", "estimate_ems", "load_official_ems", "sample_v3")]
[True, True, True, True]
"""

from dpm_jax.v3.ems import (
    EMS,
    ems_lambdas,
    estimate_ems,
    estimate_l,
    estimate_sb,
    l_point,
    load_ems,
    load_official_ems,
    noised_data,
    save_ems,
    sb_point,
    smooth_l,
)
from dpm_jax.v3.solver import V3_SKIP_TYPES, V3Plan, sample_v3, v3_plan

__all__ = [
    "EMS",
    "ems_lambdas",
    "estimate_ems",
    "estimate_l",
    "estimate_sb",
    "l_point",
    "load_ems",
    "load_official_ems",
    "noised_data",
    "save_ems",
    "sb_point",
    "smooth_l",
    "sample_v3",
    "v3_plan",
    "V3Plan",
    "V3_SKIP_TYPES",
]
