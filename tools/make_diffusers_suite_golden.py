"""Golden data from diffusers' own scheduler test suite (its full-loop tests).

Run (needs torch + diffusers 0.42.1, not part of dpm_jax's dependencies):

    /work/venvgold/bin/python tools/make_diffusers_suite_golden.py

Writes tests/data/diffusers_suite_golden.npz (see the "Test-suite loops" section of
tests/data/DIFFUSERS_GOLDEN_README.md).

diffusers' scheduler tests (``tests/schedulers/test_scheduler_*.py``) run each
scheduler on a dummy model ``model(sample, t) = sample * t / (t + 1)`` from a
deterministic sample (``arange(768) / 768`` reshaped to (3, 8, 8, 4), permuted to
(4, 3, 8, 8)) and assert the mean (and sum) of |result| against numbers the authors
wrote. Every such full-loop test of the scheduler classes ``from_diffusers_config``
reads is re-run here exactly as the test file runs it, twice:

* ``test32``: diffusers as shipped (float32), the test's own loop: its mean and sum
  are what the test's asserts see;
* ``test64``: the same code in float64 (the module-level ``torch`` / ``np`` proxy of
  ``make_diffusers_golden.float64_everywhere``) and a float64 dummy sample.

Euler's and Heun's test loops are not sampling runs (they feed the *scaled* model
input back as the state: ``sample = scale_model_input(sample, t)`` then
``step(..., sample)``); for them the sampling loop a pipeline runs (the model gets
the scaled input, ``step`` the unscaled state) is run as well (``samp32`` / ``samp64``),
and that is what dpm_jax is compared with.

Flow-matching Euler, use_dynamic_shifting / shift_terminal and the flow options of
DPMSolverMultistep / UniPC have no full-loop test in diffusers' suite; the same dummy
loop is run for them here (``extra`` cases, no expected numbers).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import pathlib
import sys
import warnings

import diffusers
import numpy as np
import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from make_diffusers_golden import _Float64Proxy

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "data" / "diffusers_suite_golden.npz"

INF = float("inf")

# The base configs of the test files (``get_scheduler_config``), diffusers commit
# 58eb52c0803ea9af3abec60841c2a093bdf1f951 (tests/schedulers/).
MS_BASE = {
    "num_train_timesteps": 1000,
    "beta_start": 0.0001,
    "beta_end": 0.02,
    "beta_schedule": "linear",
    "solver_order": 2,
    "prediction_type": "epsilon",
    "thresholding": False,
    "sample_max_value": 1.0,
    "algorithm_type": "dpmsolver++",
    "solver_type": "midpoint",
    "lower_order_final": False,
    "euler_at_final": False,
    "lambda_min_clipped": -INF,
    "variance_type": None,
    "final_sigmas_type": "sigma_min",
}
INV_BASE = {k: v for k, v in MS_BASE.items() if k not in ("euler_at_final", "final_sigmas_type")}
SS_BASE = {k: v for k, v in MS_BASE.items() if k not in ("lower_order_final", "euler_at_final")}
UP_BASE = {
    "num_train_timesteps": 1000,
    "beta_start": 0.0001,
    "beta_end": 0.02,
    "beta_schedule": "linear",
    "solver_order": 2,
    "solver_type": "bh2",
    "final_sigmas_type": "sigma_min",
}
DEIS_BASE = {
    "num_train_timesteps": 1000,
    "beta_start": 0.0001,
    "beta_end": 0.02,
    "beta_schedule": "linear",
    "solver_order": 2,
}
DDIM_BASE = {
    "num_train_timesteps": 1000,
    "beta_start": 0.0001,
    "beta_end": 0.02,
    "beta_schedule": "linear",
    "clip_sample": True,
}
EDMDPM_BASE = {
    "sigma_min": 0.002,
    "sigma_max": 80.0,
    "sigma_data": 0.5,
    "num_train_timesteps": 1000,
    "solver_order": 2,
    "prediction_type": "epsilon",
    "thresholding": False,
    "sample_max_value": 1.0,
    "algorithm_type": "dpmsolver++",
    "solver_type": "midpoint",
    "lower_order_final": False,
    "euler_at_final": False,
    "final_sigmas_type": "sigma_min",
}
EDMEULER_BASE = {"num_train_timesteps": 256, "sigma_min": 0.002, "sigma_max": 80.0}
K_BASE = {  # Euler and Heun tests
    "num_train_timesteps": 1100,
    "beta_start": 0.0001,
    "beta_end": 0.02,
    "beta_schedule": "linear",
}
THRES = {"thresholding": True, "dynamic_thresholding_ratio": 0.87, "sample_max_value": 0.5}

MS = "DPMSolverMultistepScheduler"
INV = "DPMSolverMultistepInverseScheduler"
SS = "DPMSolverSinglestepScheduler"
UP = "UniPCMultistepScheduler"
DEIS = "DEISMultistepScheduler"
DDIM = "DDIMScheduler"
EDMDPM = "EDMDPMSolverMultistepScheduler"
EDMEULER = "EDMEulerScheduler"
HEUN = "HeunDiscreteScheduler"
EULER = "EulerDiscreteScheduler"
FME = "FlowMatchEulerDiscreteScheduler"

# (file, test, class, config, loop, steps, extra). loop: "plain" (step(model(x, t), t, x)),
# "noise" (img2img: add_noise at timesteps[t_start * order], then the tail), "uneven"
# (timesteps[3:] of 50), "feedback" (Euler / Heun: the scaled input is the next state),
# "scaled" (EDM Euler: model on scale_model_input(x), step on x). extra: t_start, shape,
# switch (the chain of from_config classes before the loop), kwargs of set_timesteps.
SUITE = [
    ("dpm_multi", "test_full_loop_no_noise", MS, MS_BASE, "plain", 10, {}),
    ("dpm_multi", "test_full_loop_with_noise", MS, MS_BASE, "noise", 10, {"t_start": 5}),
    ("dpm_multi", "test_full_loop_no_noise_thres", MS, {**MS_BASE, **THRES}, "plain", 10, {}),
    (
        "dpm_multi",
        "test_full_loop_with_v_prediction",
        MS,
        {**MS_BASE, "prediction_type": "v_prediction"},
        "plain",
        10,
        {},
    ),
    (
        "dpm_multi",
        "test_full_loop_with_karras_and_v_prediction",
        MS,
        {**MS_BASE, "prediction_type": "v_prediction", "use_karras_sigmas": True},
        "plain",
        10,
        {},
    ),
    (
        "dpm_multi",
        "test_full_loop_with_lu_and_v_prediction",
        MS,
        {**MS_BASE, "prediction_type": "v_prediction", "use_lu_lambdas": True},
        "plain",
        10,
        {},
    ),
    ("dpm_multi", "test_switch", MS, MS_BASE, "plain", 10, {"switch": [SS, UP, DEIS, MS]}),
    ("dpm_multi_inverse", "test_full_loop_no_noise", INV, INV_BASE, "plain", 10, {}),
    (
        "dpm_multi_inverse",
        "test_full_loop_no_noise_thres",
        INV,
        {**INV_BASE, **THRES},
        "plain",
        10,
        {},
    ),
    (
        "dpm_multi_inverse",
        "test_full_loop_with_v_prediction",
        INV,
        {**INV_BASE, "prediction_type": "v_prediction"},
        "plain",
        10,
        {},
    ),
    (
        "dpm_multi_inverse",
        "test_full_loop_with_karras_and_v_prediction",
        INV,
        {**INV_BASE, "prediction_type": "v_prediction", "use_karras_sigmas": True},
        "plain",
        10,
        {},
    ),
    ("dpm_multi_inverse", "test_switch", INV, INV_BASE, "plain", 10, {"switch": [MS, INV]}),
    ("dpm_single", "test_full_uneven_loop", SS, SS_BASE, "uneven", 50, {}),
    ("dpm_single", "test_switch", SS, SS_BASE, "plain", 10, {"switch": [DEIS, MS, UP, SS]}),
    ("dpm_single", "test_full_loop_no_noise", SS, SS_BASE, "plain", 10, {}),
    (
        "dpm_single",
        "test_full_loop_with_karras",
        SS,
        {**SS_BASE, "use_karras_sigmas": True},
        "plain",
        10,
        {},
    ),
    (
        "dpm_single",
        "test_full_loop_with_v_prediction",
        SS,
        {**SS_BASE, "prediction_type": "v_prediction"},
        "plain",
        10,
        {},
    ),
    (
        "dpm_single",
        "test_full_loop_with_karras_and_v_prediction",
        SS,
        {**SS_BASE, "prediction_type": "v_prediction", "use_karras_sigmas": True},
        "plain",
        10,
        {},
    ),
    ("dpm_single", "test_full_loop_with_noise", SS, SS_BASE, "noise", 10, {"t_start": 5}),
    ("unipc", "test_full_loop_no_noise", UP, UP_BASE, "plain", 10, {}),
    (
        "unipc",
        "test_full_loop_with_karras",
        UP,
        {**UP_BASE, "use_karras_sigmas": True},
        "plain",
        10,
        {},
    ),
    (
        "unipc",
        "test_full_loop_with_v_prediction",
        UP,
        {**UP_BASE, "prediction_type": "v_prediction"},
        "plain",
        10,
        {},
    ),
    (
        "unipc",
        "test_full_loop_with_karras_and_v_prediction",
        UP,
        {**UP_BASE, "prediction_type": "v_prediction", "use_karras_sigmas": True},
        "plain",
        10,
        {},
    ),
    ("unipc", "test_full_loop_with_noise", UP, UP_BASE, "noise", 10, {"t_start": 8}),
    ("unipc_1d", "test_full_loop_no_noise", UP, UP_BASE, "plain", 10, {"shape": "1d"}),
    (
        "unipc_1d",
        "test_full_loop_with_karras",
        UP,
        {**UP_BASE, "use_karras_sigmas": True},
        "plain",
        10,
        {"shape": "1d"},
    ),
    (
        "unipc_1d",
        "test_full_loop_with_v_prediction",
        UP,
        {**UP_BASE, "prediction_type": "v_prediction"},
        "plain",
        10,
        {"shape": "1d"},
    ),
    (
        "unipc_1d",
        "test_full_loop_with_karras_and_v_prediction",
        UP,
        {**UP_BASE, "prediction_type": "v_prediction", "use_karras_sigmas": True},
        "plain",
        10,
        {"shape": "1d"},
    ),
    (
        "unipc_1d",
        "test_full_loop_with_noise",
        UP,
        UP_BASE,
        "noise",
        10,
        {"t_start": 8, "shape": "1d"},
    ),
    ("deis", "test_full_loop_no_noise", DEIS, DEIS_BASE, "plain", 10, {}),
    (
        "deis",
        "test_full_loop_with_v_prediction",
        DEIS,
        {**DEIS_BASE, "prediction_type": "v_prediction"},
        "plain",
        10,
        {},
    ),
    ("deis", "test_full_loop_with_noise", DEIS, DEIS_BASE, "noise", 10, {"t_start": 8}),
    ("ddim", "test_full_loop_no_noise", DDIM, DDIM_BASE, "plain", 10, {}),
    (
        "ddim",
        "test_full_loop_with_v_prediction",
        DDIM,
        {**DDIM_BASE, "prediction_type": "v_prediction"},
        "plain",
        10,
        {},
    ),
    (
        "ddim",
        "test_full_loop_with_set_alpha_to_one",
        DDIM,
        {**DDIM_BASE, "set_alpha_to_one": True, "beta_start": 0.01},
        "plain",
        10,
        {},
    ),
    (
        "ddim",
        "test_full_loop_with_no_set_alpha_to_one",
        DDIM,
        {**DDIM_BASE, "set_alpha_to_one": False, "beta_start": 0.01},
        "plain",
        10,
        {},
    ),
    ("ddim", "test_full_loop_with_noise", DDIM, DDIM_BASE, "noise", 10, {"t_start": 8}),
    ("edm_dpmsolver_multistep", "test_full_loop_no_noise", EDMDPM, EDMDPM_BASE, "plain", 10, {}),
    (
        "edm_dpmsolver_multistep",
        "test_full_loop_with_noise",
        EDMDPM,
        EDMDPM_BASE,
        "noise",
        10,
        {"t_start": 5},
    ),
    (
        "edm_dpmsolver_multistep",
        "test_full_loop_no_noise_thres",
        EDMDPM,
        {**EDMDPM_BASE, **THRES},
        "plain",
        10,
        {},
    ),
    (
        "edm_dpmsolver_multistep",
        "test_full_loop_with_v_prediction",
        EDMDPM,
        {**EDMDPM_BASE, "prediction_type": "v_prediction"},
        "plain",
        10,
        {},
    ),
    ("edm_euler", "test_full_loop_no_noise", EDMEULER, EDMEULER_BASE, "scaled", 10, {}),
    ("heun", "test_full_loop_no_noise", HEUN, K_BASE, "feedback", 10, {}),
    (
        "heun",
        "test_full_loop_with_v_prediction",
        HEUN,
        {**K_BASE, "prediction_type": "v_prediction"},
        "feedback",
        10,
        {},
    ),
    (
        "heun",
        "test_full_loop_device_karras_sigmas",
        HEUN,
        {**K_BASE, "use_karras_sigmas": True},
        "feedback",
        10,
        {},
    ),
    ("heun", "test_full_loop_with_noise", HEUN, K_BASE, "feedback_noise", 10, {"t_start": 8}),
    ("euler", "test_full_loop_no_noise", EULER, K_BASE, "feedback", 10, {}),
    (
        "euler",
        "test_full_loop_with_v_prediction",
        EULER,
        {**K_BASE, "prediction_type": "v_prediction"},
        "feedback",
        10,
        {},
    ),
    (
        "euler",
        "test_full_loop_device_karras_sigmas",
        EULER,
        {**K_BASE, "use_karras_sigmas": True},
        "feedback",
        10,
        {},
    ),
    ("euler", "test_full_loop_with_noise", EULER, K_BASE, "feedback_noise", 10, {"t_start": 8}),
]

FLOW_MS = {"use_flow_sigmas": True, "prediction_type": "flow_prediction"}
# Options without a full-loop test in diffusers' suite: the same dummy loop, run here.
EXTRA = [
    ("extra", "flow_match_euler_default", FME, {}, "plain", 10, {}),
    ("extra", "flow_match_euler_shift3", FME, {"shift": 3.0}, "plain", 10, {}),
    (
        "extra",
        "flow_match_euler_dynamic_mu",
        FME,
        {"use_dynamic_shifting": True},
        "plain",
        10,
        {"set_timesteps": {"mu": 0.8}},
    ),
    (
        "extra",
        "flow_match_euler_dynamic_linear",
        FME,
        {"use_dynamic_shifting": True, "time_shift_type": "linear"},
        "plain",
        10,
        {"set_timesteps": {"mu": 1.7}},
    ),
    (
        "extra",
        "flow_match_euler_shift_terminal",
        FME,
        {"shift": 3.0, "shift_terminal": 0.1},
        "plain",
        10,
        {},
    ),
    ("extra", "dpm_multi_flow_shift5", MS, {**FLOW_MS, "flow_shift": 5.0}, "plain", 10, {}),
    (
        "extra",
        "dpm_multi_flow_dynamic_mu",
        MS,
        {**FLOW_MS, "use_dynamic_shifting": True},
        "plain",
        10,
        {"set_timesteps": {"mu": 0.8}},
    ),
    ("extra", "unipc_flow_shift5", UP, {**FLOW_MS, "flow_shift": 5.0}, "plain", 10, {}),
    (
        "extra",
        "unipc_flow_dynamic_mu",
        UP,
        {**FLOW_MS, "use_dynamic_shifting": True},
        "plain",
        10,
        {"set_timesteps": {"mu": 0.8}},
    ),
    ("extra", "ddim_linspace", DDIM, {"timestep_spacing": "linspace"}, "plain", 10, {}),
    (
        "extra",
        "ddim_trailing_7",
        DDIM,
        {"timestep_spacing": "trailing", "clip_sample": False},
        "plain",
        7,
        {},
    ),
    (
        "extra",
        "ddim_leading_offset_thres",
        DDIM,
        {"steps_offset": 1, "set_alpha_to_one": False, **THRES},
        "plain",
        10,
        {},
    ),
    (
        "extra",
        "dpm_single_karras_order3",
        SS,
        {**SS_BASE, "use_karras_sigmas": True, "solver_order": 3},
        "plain",
        12,
        {},
    ),
    (
        "extra",
        "dpm_multi_leading_n1100",
        MS,
        {**MS_BASE, "num_train_timesteps": 1100, "timestep_spacing": "leading"},
        "plain",
        10,
        {},
    ),
    (
        "extra",
        "euler_trailing",
        EULER,
        {**K_BASE, "timestep_spacing": "trailing"},
        "scaled",
        10,
        {},
    ),
    (
        "extra",
        "euler_leading_offset",
        EULER,
        {**K_BASE, "timestep_spacing": "leading", "steps_offset": 1},
        "scaled",
        10,
        {},
    ),
    (
        "extra",
        "edm_euler_exponential",
        EDMEULER,
        {**EDMEULER_BASE, "sigma_schedule": "exponential"},
        "scaled",
        10,
        {},
    ),
    ("extra", "heun_leading", HEUN, {**K_BASE, "timestep_spacing": "leading"}, "scaled", 10, {}),
    ("extra", "uniPC_noise_begin3", UP, UP_BASE, "noise", 10, {"t_start": 3}),
    ("extra", "dpm_multi_noise_begin7", MS, MS_BASE, "noise", 10, {"t_start": 7}),
    (
        "extra",
        "dpm_single_noise_order3",
        SS,
        {**SS_BASE, "solver_order": 3},
        "noise",
        12,
        {"t_start": 4},
    ),
    (
        "extra",
        "dpm_multi_zero_snr_trailing_v",
        MS,
        {
            "rescale_betas_zero_snr": True,
            "timestep_spacing": "trailing",
            "prediction_type": "v_prediction",
        },
        "plain",
        10,
        {},
    ),
    (
        "extra",
        "dpm_multi_flow_sigma_min",
        MS,
        {**FLOW_MS, "final_sigmas_type": "sigma_min"},
        "plain",
        10,
        {},
    ),
    ("extra", "inverse_trailing", INV, {"timestep_spacing": "trailing"}, "plain", 10, {}),
    (
        "extra",
        "inverse_leading_offset_order3",
        INV,
        {"timestep_spacing": "leading", "steps_offset": 1, "solver_order": 3},
        "plain",
        12,
        {},
    ),
    ("extra", "inverse_exponential", INV, {"use_exponential_sigmas": True}, "plain", 10, {}),
    (
        "extra",
        "euler_exponential",
        EULER,
        {**K_BASE, "use_exponential_sigmas": True},
        "scaled",
        10,
        {},
    ),
    (
        "extra",
        "euler_sigma_min",
        EULER,
        {**K_BASE, "final_sigmas_type": "sigma_min"},
        "scaled",
        10,
        {},
    ),
    (
        "extra",
        "edm_dpm_order3_zero",
        EDMDPM,
        {"solver_order": 3, "lower_order_final": True},
        "plain",
        12,
        {},
    ),
    (
        "extra",
        "deis_flow_dynamic_mu",
        DEIS,
        {**FLOW_MS, "use_dynamic_shifting": True},
        "plain",
        10,
        {"set_timesteps": {"mu": 0.8}},
    ),
    (
        "extra",
        "unipc_flow_karras",
        UP,
        {**FLOW_MS, "use_karras_sigmas": True, "sigma_min": 0.01, "sigma_max": 200.0},
        "plain",
        10,
        {},
    ),
    (
        "extra",
        "ddim_zero_snr_trailing_v",
        DDIM,
        {
            "rescale_betas_zero_snr": True,
            "timestep_spacing": "trailing",
            "prediction_type": "v_prediction",
            "clip_sample": False,
        },
        "plain",
        10,
        {},
    ),
]


@contextlib.contextmanager
def float64_everywhere(cls):
    """``make_diffusers_golden.float64_everywhere`` for modules that may not import numpy:
    the scheduler module's ``torch`` (and ``np``) see ``float32`` as float64, and torch's
    default dtype is float64, for the duration."""
    import importlib

    mod = importlib.import_module(cls.__module__)
    assert mod.torch is torch and getattr(mod, "np", np) is np, cls
    has_np = hasattr(mod, "np")
    old_default = torch.get_default_dtype()
    mod.torch = _Float64Proxy(torch, torch.float64)
    if has_np:
        mod.np = _Float64Proxy(np, np.float64)
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        mod.torch = torch
        if has_np:
            mod.np = np
        torch.set_default_dtype(old_default)


def dummy_sample_deter(shape, dtype):
    """``SchedulerCommonTest.dummy_sample_deter`` (and the 1-D variant of the UniPC test)."""
    dims = (4, 3, 8) if shape == "1d" else (4, 3, 8, 8)
    n = int(np.prod(dims))
    s = torch.arange(n, dtype=dtype).reshape(dims[1:] + dims[:1]) / n
    return s.permute(len(dims) - 1, *range(len(dims) - 1))


def dummy_noise_deter(shape, dtype):
    dims = (4, 3, 8) if shape == "1d" else (4, 3, 8, 8)
    n = int(np.prod(dims))
    s = torch.arange(n, dtype=dtype).flip(-1).reshape(dims[1:] + dims[:1]) / n
    return s.permute(len(dims) - 1, *range(len(dims) - 1))


def model(sample, t):
    """``SchedulerCommonTest.dummy_model``."""
    if isinstance(t, torch.Tensor):
        t = t.reshape(-1, *(1,) * (sample.ndim - 1)).to(sample.device, dtype=sample.dtype)
    return sample * t / (t + 1)


def build(cls_name, config, switch):
    sched = getattr(diffusers, cls_name)(**config)
    for name in switch:
        sched = getattr(diffusers, name).from_config(sched.config)
    return sched


def _plain_config(sched):
    """The scheduler's config as a JSON-able dict (what a scheduler_config.json holds)."""
    out = {"_class_name": type(sched).__name__}
    for k, v in dict(sched.config).items():
        if k.startswith("_"):
            continue
        if isinstance(v, tuple):
            v = list(v)
        out[k] = v
    return out


def run(case, f64):
    """One loop as the test file runs it; returns a dict of float64 arrays."""
    _, _, cls_name, config, loop, n, extra = case
    dtype = torch.float64 if f64 else torch.float32
    classes = [cls_name, *extra.get("switch", [])]
    ctx = contextlib.ExitStack()
    if f64:
        for name in dict.fromkeys(classes):
            ctx.enter_context(float64_everywhere(getattr(diffusers, name)))
    with ctx:
        sched = build(cls_name, config, extra.get("switch", []))
        sched.set_timesteps(n, **extra.get("set_timesteps", {}))
        timesteps = sched.timesteps
        shape = extra.get("shape")
        sample = dummy_sample_deter(shape, dtype)
        begin, scale = 0, 1.0
        if loop in ("feedback", "feedback_noise", "scaled") or cls_name == EDMEULER:
            scale = float(sched.init_noise_sigma)
            sample = sample * sched.init_noise_sigma
        if loop in ("noise", "feedback_noise"):
            begin = extra["t_start"]  # (the grid step; Heun's timesteps hold each twice)
            timesteps = timesteps[begin * sched.order :]
            sample = sched.add_noise(sample, dummy_noise_deter(shape, dtype), timesteps[:1])
        elif loop == "uneven":
            begin = 3
            timesteps = timesteps[3:]
        x_start = sample.clone()
        step_kw = {"generator": torch.manual_seed(0)} if cls_name in (MS, EULER) else {}
        for t in timesteps:
            if loop in ("feedback", "feedback_noise"):
                sample = sched.scale_model_input(sample, t)
                out = model(sample, t)
            elif loop == "scaled":
                out = model(sched.scale_model_input(sample, t), t)
            else:
                out = model(sample, t)
            if cls_name == DDIM:
                sample = sched.step(out, t, sample, 0.0).prev_sample
            else:
                sample = sched.step(out, t, sample, **step_kw).prev_sample
        if f64:
            assert sample.dtype == torch.float64, sample.dtype
        res = {
            "config": _plain_config(sched),
            "timesteps": sched.timesteps.to(torch.float64).numpy(),
            "sigmas": np.asarray(sched.sigmas, dtype=np.float64)
            if hasattr(sched, "sigmas")
            else np.zeros(0),
            "x_start": x_start.to(torch.float64).numpy(),
            "out": sample.to(torch.float64).numpy(),
            "begin": begin,
            "scale": scale,
        }
    if loop == "feedback":  # the sampling loop a pipeline runs
        res["samp"] = run((case[0], case[1], cls_name, config, "scaled", n, dict(extra)), f64)
    elif loop == "feedback_noise":
        res["samp"] = run_scaled_noise(case, f64)
    return res


def run_scaled_noise(case, f64):
    """The sampling loop of an img2img test of Euler / Heun: add_noise at the begin
    timestep, then model(scale_model_input(x)), step(x)."""
    _, _, cls_name, config, _, n, extra = case
    dtype = torch.float64 if f64 else torch.float32
    ctx = float64_everywhere(getattr(diffusers, cls_name)) if f64 else contextlib.nullcontext()
    with ctx:
        sched = build(cls_name, config, [])
        sched.set_timesteps(n)
        scale = float(sched.init_noise_sigma)
        sample = dummy_sample_deter(None, dtype) * sched.init_noise_sigma
        begin = extra["t_start"]
        timesteps = sched.timesteps[begin * sched.order :]
        sample = sched.add_noise(sample, dummy_noise_deter(None, dtype), timesteps[:1])
        x_start = sample.clone()
        step_kw = {"generator": torch.manual_seed(0)} if cls_name == EULER else {}
        for t in timesteps:
            out = model(sched.scale_model_input(sample, t), t)
            sample = sched.step(out, t, sample, **step_kw).prev_sample
        return {
            "config": _plain_config(sched),
            "timesteps": sched.timesteps.to(torch.float64).numpy(),
            "sigmas": np.asarray(sched.sigmas, dtype=np.float64),
            "x_start": x_start.to(torch.float64).numpy(),
            "out": sample.to(torch.float64).numpy(),
            "begin": begin,
            "scale": scale,
        }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    diffusers.utils.logging.set_verbosity_error()
    torch.set_num_threads(1)
    data = {
        "diffusers_version": np.asarray(diffusers.__version__),
        "torch_version": np.asarray(torch.__version__),
        "numpy_version": np.asarray(np.__version__),
    }
    rows = []
    for k, case in enumerate(SUITE + EXTRA):
        cid = f"S{k:03d}"
        r64, r32 = run(case, True), run(case, False)
        assert r64["config"] == r32["config"] or case[2] in (EDMEULER,), cid
        data[f"file/{cid}"] = np.asarray(case[0])
        data[f"test/{cid}"] = np.asarray(case[1])
        data[f"loop/{cid}"] = np.asarray(case[4])
        data[f"config/{cid}"] = np.asarray(json.dumps(r64["config"]))
        data[f"steps/{cid}"] = np.asarray(case[5])
        data[f"set_timesteps/{cid}"] = np.asarray(json.dumps(case[6].get("set_timesteps", {})))
        data[f"shape/{cid}"] = np.asarray(case[6].get("shape") or "2d")
        # the test's own loop: the mean and sum of |result| its asserts see (float32, as
        # shipped) and the same in float64
        for tag, r in (("test32", r32), ("test64", r64)):
            data[f"{tag}_mean/{cid}"] = np.asarray(np.mean(np.abs(r["out"])))
            data[f"{tag}_sum/{cid}"] = np.asarray(np.sum(np.abs(r["out"])))
        # the sampling loop (the test's own, or for Euler / Heun the pipeline's)
        s64, s32 = (r64["samp"], r32["samp"]) if "samp" in r64 else (r64, r32)
        data[f"begin/{cid}"] = np.asarray(s64["begin"])
        data[f"init_scale/{cid}"] = np.asarray(s64["scale"])
        data[f"timesteps/{cid}"] = s64["timesteps"]
        data[f"sigmas/{cid}"] = s64["sigmas"]
        if case[4] in ("noise", "feedback_noise"):
            data[f"x_start/{cid}"] = s64["x_start"]
        data[f"out64/{cid}"] = s64["out"]
        data[f"out32_mean/{cid}"] = np.asarray(np.mean(np.abs(s32["out"])))
        data[f"out32_max_dev/{cid}"] = np.asarray(np.max(np.abs(s32["out"] - s64["out"])))
        line = (
            f"{cid} {case[0]}::{case[1]}: mean32 {np.mean(np.abs(r32['out'])):.6f} "
            f"sum32 {np.sum(np.abs(r32['out'])):.4f} mean64 {np.mean(np.abs(r64['out'])):.6f} "
            f"|64-32| {np.max(np.abs(r64['out'] - r32['out'])):.1e}"
        )
        if "samp" in r64:
            line += (
                f"\n      sampling loop: mean32 {np.mean(np.abs(s32['out'])):.6f} "
                f"mean64 {np.mean(np.abs(s64['out'])):.6f} sum64 {np.sum(np.abs(s64['out'])):.4f}"
            )
        assert np.all(np.isfinite(r64["out"])), cid
        print(line)
        rows.append(cid)
    pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **data)
    print(f"wrote {args.out}: {len(rows)} loops")


if __name__ == "__main__":
    main()
