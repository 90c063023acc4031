"""Sampling settings from a Hugging Face diffusers ``scheduler_config.json``.

:func:`from_diffusers_config` reads the scheduler configuration of a diffusers
checkpoint (a local file, a folder holding ``scheduler_config.json``, or a
dict; never the network) and returns the schedule, the model type and the
options of :func:`dpm_jax.sample` that reproduce that scheduler:

>>> import dpm_jax
>>> setup = dpm_jax.from_diffusers_config({
...     "_class_name": "DPMSolverMultistepScheduler", "beta_schedule": "scaled_linear",
...     "beta_start": 0.00085, "beta_end": 0.012, "prediction_type": "v_prediction",
...     "use_karras_sigmas": True})
>>> setup.model_type, setup.options["skip_type"], setup.options["method"]
('v', 'karras', 'multistep')

Then ``dpm_jax.sample(dpm_jax.model_wrapper(net, setup.schedule,
model_type=setup.model_type), x_T, setup.schedule, steps=20, **setup.options)``
(``dpm_jax.inverse`` where ``setup.inverse``).

Every class it reads is reproduced on diffusers' own grid, checked against
diffusers 0.42.1 in ``tests/golden/`` (``test_diffusers_golden.py``,
``test_deis_golden.py``, ``test_diffusers_suite.py``: diffusers' own full-loop
tests), with the differences that remain named in ``notes`` with their size:
dpm_jax computes in float64 where diffusers uses float32 tables; a flow model
gets its exact time ``1000 sigma`` where diffusers truncates it to an integer;
zero-terminal-SNR tables end at alpha = 0 exactly. :data:`DEFAULTS` lists the
classes and keys read; the module's docs page (``docs/migrating.md``) what each
maps to and what is refused.
"""

from __future__ import annotations

import json
import math
import os
import re
import warnings
from typing import Any, NamedTuple

import numpy as np

from dpm_jax import schedules
from dpm_jax._options import SolverOptions
from dpm_jax.schedules import Schedule

__all__ = ["DiffusersSetup", "from_diffusers_config", "DEFAULTS"]

_INF = float("inf")
_BETAS = {
    "num_train_timesteps": 1000,
    "beta_start": 0.0001,
    "beta_end": 0.02,
    "beta_schedule": "linear",
    "trained_betas": None,
}
_THRESH = {"thresholding": False, "dynamic_thresholding_ratio": 0.995, "sample_max_value": 1.0}
_SIGMAS = {"use_karras_sigmas": False, "use_exponential_sigmas": False, "use_beta_sigmas": False}
_FLOW = {
    "use_flow_sigmas": False,
    "flow_shift": 1.0,
    "use_dynamic_shifting": False,
    "time_shift_type": "exponential",
}
_DPM = {
    "solver_order": 2,
    "prediction_type": "epsilon",
    "algorithm_type": "dpmsolver++",
    "solver_type": "midpoint",
}
_EDM = {
    "sigma_min": 0.002,
    "sigma_max": 80.0,
    "sigma_data": 0.5,
    "sigma_schedule": "karras",
    "num_train_timesteps": 1000,
    "prediction_type": "epsilon",
    "rho": 7.0,
}

#: The constructor arguments (and defaults) of the diffusers schedulers read here
#: (diffusers 0.42). Keys outside these are reported as unknown.
DEFAULTS: dict[str, dict[str, Any]] = {
    "DPMSolverMultistepScheduler": {
        **_BETAS,
        **_THRESH,
        **_SIGMAS,
        **_FLOW,
        **_DPM,
        "lower_order_final": True,
        "euler_at_final": False,
        "use_lu_lambdas": False,
        "final_sigmas_type": "zero",
        "lambda_min_clipped": -_INF,
        "variance_type": None,
        "timestep_spacing": "linspace",
        "steps_offset": 0,
        "rescale_betas_zero_snr": False,
    },
    "DPMSolverMultistepInverseScheduler": {
        **_BETAS,
        **_THRESH,
        **_SIGMAS,
        "use_flow_sigmas": False,
        "flow_shift": 1.0,
        **_DPM,
        "lower_order_final": True,
        "euler_at_final": False,
        "lambda_min_clipped": -_INF,
        "variance_type": None,
        "timestep_spacing": "linspace",
        "steps_offset": 0,
    },
    "DPMSolverSinglestepScheduler": {
        **_BETAS,
        **_THRESH,
        **_SIGMAS,
        **_FLOW,
        **_DPM,
        "lower_order_final": False,
        "final_sigmas_type": "zero",
        "lambda_min_clipped": -_INF,
        "variance_type": None,
    },
    "UniPCMultistepScheduler": {
        **_BETAS,
        **_THRESH,
        **_SIGMAS,
        **_FLOW,
        "solver_order": 2,
        "prediction_type": "epsilon",
        "predict_x0": True,
        "solver_type": "bh2",
        "lower_order_final": True,
        "disable_corrector": [],
        "solver_p": None,
        "timestep_spacing": "linspace",
        "steps_offset": 0,
        "final_sigmas_type": "zero",
        "rescale_betas_zero_snr": False,
        "sigma_min": None,
        "sigma_max": None,
        "shift_terminal": None,
    },
    "DEISMultistepScheduler": {
        **_BETAS,
        **_THRESH,
        **_SIGMAS,
        **_FLOW,
        "solver_order": 2,
        "prediction_type": "epsilon",
        "algorithm_type": "deis",
        "solver_type": "logrho",
        "lower_order_final": True,
        "timestep_spacing": "linspace",
        "steps_offset": 0,
    },
    "DDIMScheduler": {
        **_BETAS,
        **_THRESH,
        "clip_sample": True,
        "set_alpha_to_one": True,
        "steps_offset": 0,
        "prediction_type": "epsilon",
        "clip_sample_range": 1.0,
        "timestep_spacing": "leading",
        "rescale_betas_zero_snr": False,
    },
    "EulerDiscreteScheduler": {
        **_BETAS,
        **_SIGMAS,
        "prediction_type": "epsilon",
        "interpolation_type": "linear",
        "sigma_min": None,
        "sigma_max": None,
        "timestep_spacing": "linspace",
        "timestep_type": "discrete",
        "steps_offset": 0,
        "rescale_betas_zero_snr": False,
        "final_sigmas_type": "zero",
    },
    "HeunDiscreteScheduler": {
        **_BETAS,
        "beta_start": 0.00085,
        "beta_end": 0.012,
        **_SIGMAS,
        "prediction_type": "epsilon",
        "clip_sample": False,
        "clip_sample_range": 1.0,
        "timestep_spacing": "linspace",
        "steps_offset": 0,
    },
    "EDMEulerScheduler": {**_EDM, "final_sigmas_type": "zero"},
    "EDMDPMSolverMultistepScheduler": {
        **_EDM,
        "solver_order": 2,
        **_THRESH,
        "algorithm_type": "dpmsolver++",
        "solver_type": "midpoint",
        "lower_order_final": True,
        "euler_at_final": False,
        "final_sigmas_type": "zero",
    },
    "FlowMatchEulerDiscreteScheduler": {
        "num_train_timesteps": 1000,
        "shift": 1.0,
        "use_dynamic_shifting": False,
        "base_shift": 0.5,
        "max_shift": 1.15,
        "base_image_seq_len": 256,
        "max_image_seq_len": 4096,
        "invert_sigmas": False,
        "shift_terminal": None,
        **_SIGMAS,
        "time_shift_type": "exponential",
        "stochastic_sampling": False,
    },
}

_PREDICTION = {
    "epsilon": "noise",
    "sample": "x_start",
    "v_prediction": "v",
    "flow_prediction": "flow",
}
#: Keys that only record provenance (diffusers writes them; they change nothing).
_META = ("_class_name", "_diffusers_version", "_name_or_path", "_use_default_values")
#: The classes that replace a zero-terminal-SNR table's last alphas_cumprod by 2^-24.
_TINY_LAST_ABAR = (
    "DPMSolverMultistepScheduler",
    "UniPCMultistepScheduler",
    "EulerDiscreteScheduler",
)
_DPM_FAMILY = (
    "DPMSolverMultistepScheduler",
    "DPMSolverSinglestepScheduler",
    "UniPCMultistepScheduler",
)

#: Differences that remain, with their size on diffusers' dummy loop
#: (``tests/golden/test_diffusers_suite.py``; max |dpm_jax - diffusers float64| over
#: the final sample of 768 values, diffusers' ``sample * t / (t + 1)`` model).
NOTE_UNIPC_FLOW = (
    "UniPC flow sigmas: diffusers starts at sigma = 1 - 1e-6 (timestep 999) and corrects "
    "its first step; dpm_jax starts at sigma = 1 exactly (alpha = 0), where UniC would "
    "reach back to pure noise and is skipped. Max difference on diffusers' dummy loop "
    "(10 steps): 9.3e-5 with flow_shift=5, 4.7e-4 with use_dynamic_shifting (mu=0.8)."
)
NOTE_FLOW_TIME = (
    "flow models get their exact time 1000 sigma; diffusers truncates it to an integer "
    "timestep (up to 1 apart): on diffusers' dummy loop, whose model reads the time, "
    "1.5e-6 (DPMSolverMultistep, flow_shift=5) and 3.2e-6 (DEIS, mu=0.8) apart; with the "
    "integer timestep both agree to 1e-13."
)


class DiffusersSetup(NamedTuple):
    """What :func:`from_diffusers_config` returns.

    Attributes:
      schedule: the noise schedule.
      model_type: for :func:`dpm_jax.model_wrapper` ("noise", "x_start", "v", "flow",
        "edm", "edm_v").
      options: the :class:`~dpm_jax.SolverOptions` of the scheduler (all but ``steps``,
        unless the grid is explicit); a mapping of the options that differ from
        dpm_jax's defaults, usable as ``dpm_jax.sample(..., steps=n, **setup.options)``;
        or as objects, ``solver, grid = setup.objects(steps=n)``.
      scheduler: the diffusers class name.
      unknown: keys of the config that the scheduler class does not have (also warned).
      notes: where the result differs from the diffusers scheduler, or a key was
        accepted but has no effect here (also warned).
      inverse: the scheduler integrates from data to noise
        (DPMSolverMultistepInverseScheduler): run it with :func:`dpm_jax.inverse`.
    """

    schedule: Schedule
    model_type: str
    options: SolverOptions
    scheduler: str
    unknown: tuple
    notes: tuple
    inverse: bool = False

    def objects(self, steps: int | None = None):
        """``(solver, grid)``: the scheduler as :mod:`dpm_jax.solvers` / :mod:`dpm_jax.grids`
        objects, for ``steps`` steps (the grid's own length for an explicit grid):
        ``dpm_jax.sample(model, x_T, setup.schedule, solver=solver, grid=grid)``."""
        from dpm_jax._options import to_objects

        opts = self.options if steps is None else self.options.replace(steps=steps)
        return to_objects(opts)


def _load(config) -> dict:
    if isinstance(config, dict):
        return dict(config)
    if isinstance(config, (str, os.PathLike)):
        path = os.fspath(config)
        if os.path.isdir(path):
            for cand in (
                os.path.join(path, "scheduler_config.json"),
                os.path.join(path, "scheduler", "scheduler_config.json"),
            ):
                if os.path.isfile(cand):
                    path = cand
                    break
            else:
                raise ValueError(
                    f"from_diffusers_config(): no scheduler_config.json in {path!r} "
                    "(nor in its scheduler/ folder)."
                )
        if not os.path.isfile(path):
            raise ValueError(
                f"from_diffusers_config(): {path!r} is not a file (dpm_jax reads local "
                "files only; download the checkpoint's scheduler_config.json first)."
            )
        with open(path, encoding="utf-8") as f:
            try:
                data = json.load(f)
            except json.JSONDecodeError as e:
                raise ValueError(
                    f"from_diffusers_config(): {path!r} is not valid JSON: {e}"
                ) from None
        if not isinstance(data, dict):
            raise ValueError(f"from_diffusers_config(): {path!r} must hold a JSON object.")
        return data
    raise TypeError(
        "from_diffusers_config(): `config` must be a dict or a path to "
        f"scheduler_config.json, got {type(config).__name__}."
    )


def _choice(cls, key, value, allowed):
    if value not in allowed:
        raise ValueError(
            f"{cls}: `{key}` must be one of {', '.join(map(repr, allowed))}; got {value!r}."
        )
    return value


def _number(cls, key, value, positive=True):
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or (positive and value <= 0)
    ):
        raise ValueError(
            f"{cls}: `{key}` must be a {'positive ' if positive else ''}finite number, "
            f"got {value!r}."
        )
    return float(value)


def _flag(cls, key, value):
    if not isinstance(value, bool):
        raise ValueError(f"{cls}: `{key}` must be true or false, got {value!r}.")
    return value


def _train_steps(cls, c) -> int:
    n = c["num_train_timesteps"]
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise ValueError(f"{cls}: `num_train_timesteps` must be an int >= 2, got {n!r}.")
    return n


def _betas(cls, c) -> np.ndarray:
    n = _train_steps(cls, c)
    if c["trained_betas"] is not None:
        b = np.asarray(c["trained_betas"], np.float64)
        if b.ndim != 1 or b.shape[0] < 2:
            raise ValueError(f"{cls}: `trained_betas` must be a list of at least 2 numbers.")
        return b
    kind = _choice(
        cls, "beta_schedule", c["beta_schedule"], ("linear", "scaled_linear", "squaredcos_cap_v2")
    )
    b0, b1 = _number(cls, "beta_start", c["beta_start"]), _number(cls, "beta_end", c["beta_end"])
    if kind == "linear":
        return np.linspace(b0, b1, n)
    if kind == "scaled_linear":
        return np.linspace(b0**0.5, b1**0.5, n) ** 2
    # squaredcos_cap_v2 (Nichol & Dhariwal 2021): beta_i = min(1 - abar((i+1)/n) / abar(i/n), 0.999)
    i = np.arange(n, dtype=np.float64)

    def abar(t):
        return np.cos((t + 0.008) / 1.008 * np.pi / 2) ** 2

    return np.minimum(1.0 - abar((i + 1) / n) / abar(i / n), 0.999)


def _discrete_schedule(cls, c, notes) -> Schedule:
    """The table; the network gets the table index as its time (``time_input="index"``,
    what diffusers passes, = 1000 (t - 1/N) for N = 1000)."""
    betas = _betas(cls, c)
    if np.any(betas <= 0) or np.any(betas >= 1):
        raise ValueError(f"{cls}: every beta must lie in (0, 1).")
    abar = np.cumprod(1.0 - betas)
    if _flag(cls, "rescale_betas_zero_snr", c.get("rescale_betas_zero_snr", False)):
        # Exact zero terminal SNR (alpha_T = 0). DPMSolverMultistep, UniPC and Euler
        # instead set the last alphas_cumprod to 2^-24 (DDIM keeps 0).
        if cls in _TINY_LAST_ABAR:
            notes.append(
                "rescale_betas_zero_snr: dpm_jax starts exactly at alpha_T = 0 (lambda = "
                "-inf); diffusers replaces alphas_cumprod[-1] = 0 by 2^-24 (sigma 4096): "
                "6.3e-5 apart on diffusers' dummy loop (DPMSolverMultistep, trailing, "
                "v_prediction, 10 steps), 1.6e-4 on the Gaussian-mixture golden run (D010)."
            )
        return schedules.discrete(
            alphas_cumprod=abar,
            lambda_clip=None,
            rescale_zero_terminal_snr=True,
            time_input="index",
        )
    return schedules.discrete(alphas_cumprod=abar, lambda_clip=None, time_input="index")


def _sigma_flags(cls, c, keys=("use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas")):
    flags = [k for k in keys if _flag(cls, k, c.get(k, False))]
    if len(flags) > 1:
        raise ValueError(f"{cls}: only one of {', '.join(flags)} may be true.")
    if flags and flags[0] == "use_beta_sigmas":
        raise ValueError(
            f"{cls}: `use_beta_sigmas` is not supported by dpm_jax (use_karras_sigmas, "
            "use_exponential_sigmas and timestep_spacing are)."
        )
    return flags[0] if flags else None


_SIGMA_SKIP = {
    "use_karras_sigmas": "karras",
    "use_exponential_sigmas": "exponential",
    "use_lu_lambdas": "lu",
}


def _offset(cls, c) -> int:
    offset = c.get("steps_offset", 0)
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise ValueError(f"{cls}: `steps_offset` must be an int >= 0, got {offset!r}.")
    return offset


def _spacing(cls, c, notes, rule="dpmsolver", lu=False) -> dict:
    """skip_type (karras / exponential / lu, or timestep_spacing) of a discrete table."""
    keys = ("use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas")
    flag = _sigma_flags(cls, c, (*keys, "use_lu_lambdas") if lu else keys)
    for key in ("sigma_min", "sigma_max"):
        if c.get(key) is not None:
            raise ValueError(
                f"{cls}: `{key}` other than null is not supported by dpm_jax on a beta "
                "table; pass t_start / t_end to dpm_jax.sample instead."
            )
    spacing = _choice(
        cls,
        "timestep_spacing",
        c.get("timestep_spacing", "linspace"),
        ("linspace", "leading", "trailing"),
    )
    offset = _offset(cls, c)
    rule_opt = {} if rule == "dpmsolver" else {"spacing_rule": rule}
    if flag:
        if rule != "dpmsolver" and spacing != "linspace":
            # Euler / Heun convert the sigmas of their timestep grid, whose ends then
            # are not the table's
            raise ValueError(
                f"{cls}: `{flag}` with timestep_spacing={spacing!r} is not supported "
                "(diffusers takes the karras / exponential range from that grid's ends); "
                "use timestep_spacing='linspace'."
            )
        return {"skip_type": _SIGMA_SKIP[flag], **rule_opt}
    out = {"skip_type": spacing, **rule_opt}
    if spacing == "leading":
        out["steps_offset"] = offset
    elif offset:
        notes.append(
            f"steps_offset={offset} has no effect with timestep_spacing={spacing!r} "
            "(as in diffusers)."
        )
    return out


def _thresholding(cls, c) -> dict:
    """diffusers' dynamic thresholding (its quantile clamped to [1, sample_max_value])."""
    if not _flag(cls, "thresholding", c.get("thresholding", False)):
        return {}
    return {
        "correcting_x0_fn": "dynamic_thresholding_diffusers",
        "thresholding_max_val": _number(cls, "sample_max_value", c["sample_max_value"]),
        "dynamic_thresholding_ratio": _number(
            cls, "dynamic_thresholding_ratio", c["dynamic_thresholding_ratio"]
        ),
    }


def _shift(cls, c, mu, key):
    """The flow shift: ``c[key]``, or with ``use_dynamic_shifting`` the shift of ``mu``
    (diffusers' ``time_shift``: e^mu for time_shift_type "exponential", mu for "linear";
    both are ``shift t / (1 + (shift - 1) t)``)."""
    if not _flag(cls, "use_dynamic_shifting", c.get("use_dynamic_shifting", False)):
        return _number(cls, key, c[key])
    kind = _choice(
        cls, "time_shift_type", c.get("time_shift_type", "exponential"), ("exponential", "linear")
    )
    if mu is None:
        raise ValueError(
            f"{cls}: `use_dynamic_shifting` needs `mu` (the resolution-dependent shift a "
            "pipeline passes to set_timesteps): from_diffusers_config(config, mu=...)."
        )
    mu = _number(cls, "mu", mu, positive=kind == "linear")
    return math.exp(mu) if kind == "exponential" else mu


def from_diffusers_config(
    config,
    scheduler: str | None = None,
    *,
    mu: float | None = None,
    num_inference_steps: int | None = None,
) -> DiffusersSetup:
    """Schedule, model type and sampling options from a diffusers scheduler config.

    Args:
      config: a dict, a path to ``scheduler_config.json``, or a checkpoint folder
        holding it (directly or in ``scheduler/``). Nothing is downloaded.
      scheduler: read the config as this scheduler class instead of its
        ``_class_name``, as ``DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)``
        does in diffusers (e.g. a Stable Diffusion checkpoint ships a PNDMScheduler
        config; its noise schedule carries over, its PNDM-only keys are reported
        in ``unknown``).
      mu: the shift parameter of ``use_dynamic_shifting`` configs (what a Flux / SD3
        pipeline passes to ``set_timesteps(mu=...)``, computed from the image size);
        required with that option.
      num_inference_steps: the number of steps, for FlowMatchEulerDiscreteScheduler:
        its grid (``linspace(1, shift(1/N), n)`` shifted again, optionally stretched to
        ``shift_terminal``) is then reproduced exactly as an explicit grid
        (``options.timesteps``); without it the grid is dpm_jax's time-uniform one
        (``notes`` says how far apart), and ``shift_terminal`` needs it.

    Read (``_class_name``): DPMSolverMultistepScheduler,
    DPMSolverMultistepInverseScheduler (``setup.inverse``: run with
    :func:`dpm_jax.inverse`), DPMSolverSinglestepScheduler, UniPCMultistepScheduler,
    DEISMultistepScheduler, DDIMScheduler, EulerDiscreteScheduler, HeunDiscreteScheduler,
    EDMEulerScheduler, EDMDPMSolverMultistepScheduler, FlowMatchEulerDiscreteScheduler
    (:data:`DEFAULTS` holds their keys). Discrete tables become
    ``schedules.discrete(..., lambda_clip=None, time_input="index")`` (the network gets
    diffusers' table index for any ``num_train_timesteps``), flow sigmas
    ``schedules.flow(shift, time_scale=num_train_timesteps)``, EDM's
    ``schedules.edm(sigma_min, sigma_max, sigma_data)`` with ``model_type="edm"``.

    Returns:
      a :class:`DiffusersSetup`. Keys the class does not have are reported in
      ``unknown`` and with a warning (never silently dropped); values dpm_jax
      cannot honour raise a ValueError naming the key.
    """
    cfg = _load(config)
    cls = cfg.get("_class_name") if scheduler is None else scheduler
    if cls not in DEFAULTS:
        name = "_class_name" if scheduler is None else "scheduler"
        raise ValueError(
            f"from_diffusers_config(): `{name}` must be one of "
            f"{', '.join(map(repr, DEFAULTS))}; got {cls!r}"
            + (
                " (pass scheduler='DPMSolverMultistepScheduler' to read this config as "
                "DPM-Solver's)."
                if scheduler is None
                else "."
            )
        )
    if num_inference_steps is not None and (
        isinstance(num_inference_steps, bool)
        or not isinstance(num_inference_steps, int)
        or num_inference_steps < 1
    ):
        raise ValueError(
            "from_diffusers_config(): `num_inference_steps` must be an int >= 1 or None, "
            f"got {num_inference_steps!r}."
        )
    unknown = tuple(sorted(k for k in cfg if k not in DEFAULTS[cls] and k not in _META))
    c = {**DEFAULTS[cls], **{k: v for k, v in cfg.items() if k in DEFAULTS[cls]}}
    notes: list[str] = []
    if mu is not None and not c.get("use_dynamic_shifting", False):
        raise ValueError(
            f"from_diffusers_config(): `mu` is the shift of use_dynamic_shifting configs; "
            f"this {cls} config does not set use_dynamic_shifting."
        )
    if num_inference_steps is not None and cls != "FlowMatchEulerDiscreteScheduler":
        raise ValueError(
            "from_diffusers_config(): `num_inference_steps` is read for "
            f"FlowMatchEulerDiscreteScheduler only ({cls}'s grid is set by "
            "dpm_jax.sample(..., steps=n))."
        )
    inverse = False
    if cls in _DPM_FAMILY:
        out = _dpm_family(cls, c, notes, mu)
    elif cls == "DPMSolverMultistepInverseScheduler":
        out, inverse = _dpm_inverse(cls, c, notes), True
    elif cls == "DEISMultistepScheduler":
        out = _deis(cls, c, notes, mu)
    elif cls == "FlowMatchEulerDiscreteScheduler":
        out = _flow_match(cls, c, notes, mu, num_inference_steps)
    elif cls in ("EDMEulerScheduler", "EDMDPMSolverMultistepScheduler"):
        out = _edm(cls, c, notes)
    elif cls == "DDIMScheduler":
        out = _ddim(cls, c, notes)
    else:
        out = _k_family(cls, c, notes)
    if unknown:
        warnings.warn(
            f"from_diffusers_config(): {cls} has no option(s) {', '.join(unknown)}; "
            "they were ignored.",
            stacklevel=2,
        )
    schedule, model_type, options = out
    options = _without_inert(cls, options, notes)
    for note in notes:
        warnings.warn(f"from_diffusers_config(): {note}", stacklevel=2)
    return DiffusersSetup(
        schedule, model_type, SolverOptions(**options), cls, unknown, tuple(notes), inverse
    )


#: options a config may set where the run does not read them (as diffusers ignores them)
_MAY_BE_INERT = (
    "solver_type",
    "lower_order_final",
    "multistep3_variant",
    "euler_at_final",
    "karras_rho",
    "steps_offset",
)


def _without_inert(cls, options: dict, notes: list) -> dict:
    """The options without those the run would not read (dpm_jax refuses an option it does
    not use; diffusers ignores these, e.g. ``solver_type`` at ``solver_order=1``), each
    dropped with a note."""
    options = dict(options)
    while True:
        try:
            SolverOptions(**options)
            return options
        except ValueError as err:
            m = re.match(r"`(\w+)` does not apply", str(err))
            if m is None or m.group(1) not in _MAY_BE_INERT or m.group(1) not in options:
                raise
            name = m.group(1)
            notes.append(f"{cls}: {name}={options.pop(name)!r} has no effect here ({err})")


def _prediction(cls, c, allowed=tuple(_PREDICTION)) -> str:
    return _PREDICTION[_choice(cls, "prediction_type", c["prediction_type"], allowed)]


def _flow_schedule(cls, c, shift):
    n = _train_steps(cls, c)
    return schedules.flow(shift=shift, time_scale=float(n)), n


def _solver_order(cls, c) -> int:
    order = c["solver_order"]
    if isinstance(order, bool) or order not in (1, 2, 3):
        raise ValueError(f"{cls}: `solver_order` must be 1, 2 or 3, got {order!r}.")
    return order


def _dpm_checks(cls, c) -> None:
    if c.get("variance_type") is not None:
        raise ValueError(
            f"{cls}: `variance_type`={c['variance_type']!r} (a network that also "
            "predicts its variance) is not supported: give dpm_jax a network that "
            "returns only the first half of the channels."
        )
    if c.get("lambda_min_clipped", -_INF) != -_INF:
        raise ValueError(
            f"{cls}: `lambda_min_clipped`={c['lambda_min_clipped']!r} is not "
            "supported; build schedules.discrete(..., lambda_clip=value) yourself."
        )


def _dpm_algorithm(cls, c) -> dict:
    alg = c["algorithm_type"]
    alg = "dpmsolver++" if alg == "deis" else alg  # as diffusers does
    st = c["solver_type"]
    st = "midpoint" if st in ("logrho", "bh1", "bh2") else st  # as diffusers does
    return {
        "algorithm_type": _choice(
            cls,
            "algorithm_type",
            alg,
            ("dpmsolver", "dpmsolver++", "sde-dpmsolver", "sde-dpmsolver++"),
        ),
        "solver_type": {"midpoint": "dpmsolver", "heun": "taylor"}[
            _choice(cls, "solver_type", st, ("midpoint", "heun"))
        ],
    }


def _flow_with_sigma_grid(cls, c, karras_ok=False):
    """use_flow_sigmas with karras / exponential / beta / lu: refused (diffusers converts the
    beta table's sigmas there), except UniPC's flow + karras (``karras_ok``)."""
    keys = ("use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas", "use_lu_lambdas")
    on = [k for k in keys if _flag(cls, k, c.get(k, False))]
    if karras_ok and on == ["use_karras_sigmas"]:
        return "karras"
    if on:
        raise ValueError(
            f"{cls}: `use_flow_sigmas` with `{on[0]}` is not supported (diffusers takes "
            "that grid from the beta table, not the flow schedule)."
        )
    return None


def _dpm_family(cls, c, notes, mu):
    model_type = _prediction(cls, c)
    _dpm_checks(cls, c)
    opts: dict[str, Any] = {
        "order": _solver_order(cls, c),
        "lower_order_final": _flag(cls, "lower_order_final", c["lower_order_final"]),
    }
    final = _choice(cls, "final_sigmas_type", c["final_sigmas_type"], ("zero", "sigma_min"))
    if cls == "UniPCMultistepScheduler":
        opts["method"] = "unipc"
        opts["unipc_variant"] = _choice(cls, "solver_type", c["solver_type"], ("bh1", "bh2"))
        opts["algorithm_type"] = (
            "dpmsolver++" if _flag(cls, "predict_x0", c["predict_x0"]) else "dpmsolver"
        )
        if c["disable_corrector"]:
            raise ValueError(
                f"{cls}: `disable_corrector`={c['disable_corrector']!r} is not "
                "supported (dpm_jax corrects every step or none: unipc_corrector)."
            )
        if c["solver_p"] is not None:
            raise ValueError(f"{cls}: `solver_p` is not supported.")
        if c.get("shift_terminal") is not None:
            raise ValueError(
                f"{cls}: `shift_terminal` is not supported (its stretched flow grid is "
                "not one of dpm_jax's spacings)."
            )
    else:
        opts["method"] = "multistep" if cls == "DPMSolverMultistepScheduler" else "singlestep"
        opts.update(_dpm_algorithm(cls, c))
        if cls == "DPMSolverMultistepScheduler":
            opts["euler_at_final"] = _flag(cls, "euler_at_final", c["euler_at_final"])
    opts.update(_thresholding(cls, c))
    if _flag(cls, "use_flow_sigmas", c["use_flow_sigmas"]):
        return _dpm_flow(cls, c, notes, mu, model_type, opts, final)
    if _flag(cls, "use_dynamic_shifting", c.get("use_dynamic_shifting", False)):
        raise ValueError(f"{cls}: `use_dynamic_shifting` applies to flow sigmas only.")
    schedule = _discrete_schedule(cls, c, notes)
    if cls == "DPMSolverSinglestepScheduler":
        # DPMSolverSinglestep has no timestep_spacing: its grid is always "linspace"
        opts.update(_spacing(cls, {**c, "timestep_spacing": "linspace", "steps_offset": 0}, notes))
    else:
        opts.update(_spacing(cls, c, notes, lu=cls == "DPMSolverMultistepScheduler"))
        if (
            cls == "DPMSolverMultistepScheduler"
            and c["beta_schedule"] == "squaredcos_cap_v2"
            and c["trained_betas"] is None
            and opts["skip_type"] in ("karras", "lu")
        ):
            notes.append(
                f"squaredcos_cap_v2 with skip_type={opts['skip_type']!r}: diffusers truncates "
                "these timesteps (elsewhere it rounds them), dpm_jax rounds: the network's "
                "time input is up to 1 apart (the noise levels are equal); 7.0e-6 on "
                "diffusers' dummy loop (karras, 10 steps, where diffusers repeats timesteps)."
            )
    opts["final_sigmas_type"] = final
    return schedule, model_type, opts


def _dpm_flow(cls, c, notes, mu, model_type, opts, final):
    unipc = cls == "UniPCMultistepScheduler"
    sigma_grid = _flow_with_sigma_grid(cls, c, karras_ok=unipc)
    schedule, n = _flow_schedule(cls, c, _shift(cls, c, mu, "flow_shift"))
    notes.append(NOTE_FLOW_TIME)
    if sigma_grid == "karras":
        # UniPC: karras in sigma / alpha between sigma_max and sigma_min (the config's,
        # or the beta table's), each taken to the flow sigma s / (1 + s); no shift
        abar = np.cumprod(1.0 - _betas(cls, c))
        s_hat = np.sqrt((1.0 - abar) / abar)
        lo = s_hat[0] if c.get("sigma_min") is None else _number(cls, "sigma_min", c["sigma_min"])
        hi = s_hat[-1] if c.get("sigma_max") is None else _number(cls, "sigma_max", c["sigma_max"])
        t_of = schedule.inverse_lambda
        opts.update(
            skip_type="karras",
            t_start=float(t_of(np.float64(-np.log(hi)))),
            t_end=float(t_of(np.float64(-np.log(lo)))),
            final_sigmas_type="zero" if final == "zero" else "repeat",
        )
        return schedule, model_type, opts
    for key in ("sigma_min", "sigma_max"):
        if c.get(key) is not None:
            raise ValueError(f"{cls}: `{key}` applies to flow sigmas with use_karras_sigmas only.")
    if unipc:
        # diffusers: sigmas shift(linspace(1, 1/N, steps + 1)[:-1]), the first moved to
        # 1 - 1e-6; "sigma_min" repeats the last one
        opts.update(
            skip_type="time_uniform",
            t_start=1.0,
            t_end=1.0 / n,
            final_sigmas_type="zero" if final == "zero" else "repeat",
        )
        notes.append(NOTE_UNIPC_FLOW)
        return schedule, model_type, opts
    if final != "zero":
        notes.append(
            "final_sigmas_type='sigma_min' with flow sigmas: dpm_jax ends on the data "
            "(sigma = 0); diffusers' last step goes to the beta table's first sigma "
            "(sigma / alpha of alphas_cumprod[0], taken as a flow sigma): 4.0e-3 apart on "
            "diffusers' dummy loop (DPMSolverMultistep, 10 steps)."
        )
    opts.update(
        skip_type="time_uniform", t_start=1.0 - 1.0 / n, t_end=0.0, final_sigmas_type="zero"
    )
    return schedule, model_type, opts


def _dpm_inverse(cls, c, notes):
    """DPMSolverMultistepInverseScheduler: DPMSolverMultistep's updates from the data
    upwards (``dpm_jax.inverse``), on its upward grid (``final_sigmas_type="sigma_max"``:
    timesteps ascending from 0, then the table's noisiest entry; karras / exponential:
    sigmas ascending over the table's range, the last one repeated)."""
    model_type = _prediction(cls, c, ("epsilon", "sample", "v_prediction"))
    _dpm_checks(cls, c)
    opts: dict[str, Any] = {
        "method": "multistep",
        "order": _solver_order(cls, c),
        "lower_order_final": _flag(cls, "lower_order_final", c["lower_order_final"]),
        "euler_at_final": _flag(cls, "euler_at_final", c["euler_at_final"]),
        **_dpm_algorithm(cls, c),
    }
    if opts["algorithm_type"].startswith("sde-"):
        raise ValueError(
            f"{cls}: `algorithm_type`={opts['algorithm_type']!r} is not supported for "
            "inversion (dpm_jax inverts with the deterministic 'dpmsolver++' / 'dpmsolver')."
        )
    if _flag(cls, "use_flow_sigmas", c["use_flow_sigmas"]):
        raise ValueError(
            f"{cls}: `use_flow_sigmas` is not supported (diffusers' inverse scheduler runs "
            "its flow sigmas from noise to data, which is not an inversion)."
        )
    opts.update(_thresholding(cls, c))
    schedule = _discrete_schedule(cls, c, notes)
    opts.update(_spacing(cls, c, notes))
    opts["final_sigmas_type"] = "sigma_max"
    return schedule, model_type, opts


def _deis(cls, c, notes, mu):
    """DEISMultistepScheduler ("deis" / "logrho", the only values it has): the noise
    prediction extrapolated by a polynomial in log rho = -lambda and integrated exactly.
    That is DPM-Solver's noise-prediction multistep family with the exact Taylor terms:
    order 2 is solver_type "taylor", order 3 the "third_order" variant (checked against
    diffusers in tests/golden/test_deis_golden.py). Its grids end at the table's first
    sigma (timestep spacings: final_sigmas_type "sigma_min") or repeat their last sigma
    (karras, exponential, flow: "repeat", a zero-length last step)."""
    model_type = _prediction(cls, c)
    alg = c["algorithm_type"]
    alg = "deis" if alg in ("dpmsolver", "dpmsolver++") else alg  # as diffusers does
    _choice(cls, "algorithm_type", alg, ("deis",))
    st = c["solver_type"]
    st = "logrho" if st in ("midpoint", "heun", "bh1", "bh2") else st  # as diffusers does
    _choice(cls, "solver_type", st, ("logrho",))
    order = _solver_order(cls, c)
    opts: dict[str, Any] = {"method": "multistep", "order": order, "algorithm_type": "dpmsolver"}
    if order > 1:  # (the options of orders 2 and 3)
        opts["solver_type"] = "taylor"
        opts["lower_order_final"] = _flag(cls, "lower_order_final", c["lower_order_final"])
    if order == 3:
        opts["multistep3_variant"] = "third_order"
    opts.update(_thresholding(cls, c))
    if _flag(cls, "use_flow_sigmas", c["use_flow_sigmas"]):
        _flow_with_sigma_grid(cls, c)
        schedule, n = _flow_schedule(cls, c, _shift(cls, c, mu, "flow_shift"))
        notes.append(NOTE_FLOW_TIME)
        opts.update(
            skip_type="time_uniform", t_start=1.0 - 1.0 / n, t_end=0.0, final_sigmas_type="repeat"
        )
        return schedule, model_type, opts
    if _flag(cls, "use_dynamic_shifting", c.get("use_dynamic_shifting", False)):
        raise ValueError(f"{cls}: `use_dynamic_shifting` applies to flow sigmas only.")
    schedule = _discrete_schedule(cls, c, notes)
    opts.update(_spacing(cls, c, notes))
    opts["final_sigmas_type"] = (
        "repeat" if opts["skip_type"] in ("karras", "exponential") else "sigma_min"
    )
    return schedule, model_type, opts


def _ddim(cls, c, notes):
    """DDIMScheduler (eta = 0): the DDIM step, which is DPM-Solver++ order 1, on DDIM's own
    grid (``spacing_rule="ddim"``: its last model call at timestep ``steps_offset`` or 0,
    each step to ``t - N // steps``), ending at alpha = 1 (``set_alpha_to_one``:
    final_sigmas_type "zero") or at alphas_cumprod[0] ("sigma_min")."""
    model_type = _prediction(cls, c, ("epsilon", "sample", "v_prediction"))
    schedule = _discrete_schedule(cls, c, notes)
    opts: dict[str, Any] = {"method": "multistep", "order": 1, "algorithm_type": "dpmsolver++"}
    opts.update(_spacing(cls, c, notes, rule="ddim"))
    opts["final_sigmas_type"] = (
        "zero" if _flag(cls, "set_alpha_to_one", c["set_alpha_to_one"]) else "sigma_min"
    )
    corrected = _thresholding(cls, c)
    if not corrected and _flag(cls, "clip_sample", c["clip_sample"]):
        corrected = {
            "correcting_x0_fn": "static_thresholding",
            "thresholding_max_val": _number(cls, "clip_sample_range", c["clip_sample_range"]),
        }
    if corrected:
        opts.update(corrected)
        what = "thresholding" if c["thresholding"] else "clip_sample"
        notes.append(
            f"{what}: dpm_jax steps with the corrected x0 throughout (DDIM's step with "
            "use_clipped_model_output=True); DDIMScheduler's default step keeps the "
            "uncorrected noise prediction in its direction term. They agree while the "
            "correction does not act (diffusers' dummy loops with clip_sample: 0); with "
            "thresholding (sample_max_value=0.5, ratio 0.87, steps_offset=1, 10 steps) "
            "diffusers' dummy loop ends 0.61 apart."
        )
    return schedule, model_type, opts


def _k_family(cls, c, notes):
    """EulerDiscreteScheduler (the DDIM step, which is Euler in x / alpha and sigma / alpha)
    and HeunDiscreteScheduler (EDM's Heun, ``method="heun"``), on their own grid
    (``spacing_rule="euler"``: fractional linspace timesteps, sigma interpolated linearly
    in the table index, as diffusers' ``np.interp``)."""
    model_type = _prediction(cls, c, ("epsilon", "sample", "v_prediction"))
    schedule = _discrete_schedule(cls, c, notes)
    if cls == "HeunDiscreteScheduler":
        opts: dict[str, Any] = {"method": "heun", "order": 2}
        if _flag(cls, "clip_sample", c["clip_sample"]):
            raise ValueError(
                f"{cls}: `clip_sample`=true is not supported (dpm_jax's Heun integrates the "
                "noise prediction and corrects only a final x0)."
            )
        final = "zero"
    else:
        opts = {"method": "multistep", "order": 1, "algorithm_type": "dpmsolver++"}
        final = _choice(cls, "final_sigmas_type", c["final_sigmas_type"], ("zero", "sigma_min"))
        _choice(cls, "interpolation_type", c["interpolation_type"], ("linear",))
        if c["timestep_type"] != "discrete" and c["prediction_type"] == "v_prediction":
            raise ValueError(
                f"{cls}: `timestep_type`={c['timestep_type']!r} with v_prediction (the "
                "network gets 0.25 log sigma) is not supported."
            )
    opts.update(_spacing(cls, c, notes, rule="euler"))
    opts["final_sigmas_type"] = final
    return schedule, model_type, opts


def _edm(cls, c, notes):
    """EDMEulerScheduler (Euler = DPM-Solver++ order 1) and EDMDPMSolverMultistepScheduler
    (DPM-Solver++ multistep) on ``schedules.edm``, with EDM's preconditioning
    (``model_type="edm"``; "edm_v" for v_prediction, whose c_out is negative); the
    karras (``rho``) or exponential sigmas from sigma_max to sigma_min, then 0 ("zero")
    or sigma_min again ("sigma_min": a zero-length last step)."""
    model_type = {"epsilon": "edm", "v_prediction": "edm_v"}[
        _choice(cls, "prediction_type", c["prediction_type"], ("epsilon", "v_prediction"))
    ]
    lo, hi = _number(cls, "sigma_min", c["sigma_min"]), _number(cls, "sigma_max", c["sigma_max"])
    if not hi > lo:
        raise ValueError(f"{cls}: `sigma_max` must exceed `sigma_min`, got {hi} <= {lo}.")
    schedule = schedules.edm(lo, hi, _number(cls, "sigma_data", c["sigma_data"]))
    spacing = _choice(cls, "sigma_schedule", c["sigma_schedule"], ("karras", "exponential"))
    final = _choice(cls, "final_sigmas_type", c["final_sigmas_type"], ("zero", "sigma_min"))
    opts: dict[str, Any] = {
        "skip_type": spacing,
        "final_sigmas_type": "zero" if final == "zero" else "repeat",
    }
    rho = _number(cls, "rho", c["rho"])
    if spacing == "karras":
        opts["karras_rho"] = rho
    if cls == "EDMEulerScheduler":
        opts.update(method="multistep", order=1, algorithm_type="dpmsolver++")
        return schedule, model_type, opts
    opts.update(
        method="multistep",
        order=_solver_order(cls, c),
        lower_order_final=_flag(cls, "lower_order_final", c["lower_order_final"]),
        euler_at_final=_flag(cls, "euler_at_final", c["euler_at_final"]),
        **_dpm_algorithm(cls, c),
    )
    if opts["algorithm_type"] not in ("dpmsolver++", "sde-dpmsolver++"):
        raise ValueError(
            f"{cls}: `algorithm_type` must be 'dpmsolver++' or 'sde-dpmsolver++', got "
            f"{opts['algorithm_type']!r}."
        )
    opts.update(_thresholding(cls, c))
    return schedule, model_type, opts


def _flow_match(cls, c, notes, mu, steps):
    """FlowMatchEulerDiscreteScheduler: flow Euler, which is the DDIM step (DPM-Solver++
    order 1). Its grid: ``v = linspace(1, sigma_min, steps)`` with sigma_min the init
    table's last sigma (shift(1/N), or 1/N with dynamic shifting), shifted
    (``shift``, or mu's), optionally stretched so that it ends at ``shift_terminal``,
    then 0; the network gets 1000 sigma (as diffusers: a float)."""
    shift = _shift(cls, c, mu, "shift")
    schedule, n = _flow_schedule(cls, c, shift)
    for key in ("invert_sigmas", "stochastic_sampling"):
        if _flag(cls, key, c[key]):
            raise ValueError(f"{cls}: `{key}`=true is not supported.")
    if any(
        _flag(cls, k, c[k])
        for k in ("use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas")
    ):
        raise ValueError(
            f"{cls}: karras / exponential / beta sigmas of a flow model are not "
            "supported; use sample(..., skip_type='karras') with t_start < 1."
        )
    terminal = c["shift_terminal"]
    if terminal is not None:
        terminal = _number(cls, "shift_terminal", terminal)
        if not terminal < 1.0:
            raise ValueError(f"{cls}: `shift_terminal` must lie in (0, 1), got {terminal}.")
    opts: dict[str, Any] = {"method": "multistep", "order": 1, "algorithm_type": "dpmsolver++"}
    if steps is None:
        if terminal is not None:
            raise ValueError(
                f"{cls}: `shift_terminal` stretches the grid of a given number of steps: "
                "pass from_diffusers_config(config, num_inference_steps=n)."
            )
        notes.append(
            "FlowMatchEulerDiscreteScheduler: flow Euler is the DDIM step (DPM-Solver++ "
            "order 1); without num_inference_steps dpm_jax's grid is uniform in t from 1 to "
            "0 (diffusers': linspace(1, shift(1/N), n) shifted again, then 0): 2.1e-3 "
            "(shift=1) and 2.5e-3 (shift=3) apart on diffusers' dummy loop (10 steps); pass "
            "num_inference_steps=n for diffusers' grid exactly. Raise `order` for "
            "DPM-Solver++ on this model."
        )
        opts.update(skip_type="time_uniform", t_start=1.0, t_end=0.0)
        return schedule, "flow", opts
    dynamic = c["use_dynamic_shifting"]
    s_min = 1.0 / n if dynamic else shift / (n + shift - 1.0)  # shift(1/N)
    v = np.linspace(float(n), s_min * n, steps) / n  # diffusers' timesteps / N
    sigma = shift * v / (1.0 + (shift - 1.0) * v)
    if terminal is not None:  # diffusers' stretch_shift_to_terminal
        sigma = 1.0 - (1.0 - sigma) / ((1.0 - sigma[-1]) / (1.0 - terminal))
    t = sigma / (shift - (shift - 1.0) * sigma)  # the schedule's time of each sigma
    opts["timesteps"] = np.append(t, 0.0)
    return schedule, "flow", opts
