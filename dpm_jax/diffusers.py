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
model_type=setup.model_type), x_T, setup.schedule, steps=20, **setup.options)``.

DPMSolverMultistep, DPMSolverSinglestep and UniPCMultistep configurations are
reproduced exactly (checked against diffusers in ``tests/golden/test_diffusers_golden.py``)
with two documented differences: dpm_jax computes in float64 where diffusers
uses float32 tables, and a flow model gets its exact time ``1000 sigma`` where
diffusers truncates it to an integer. DDIM, Euler and FlowMatchEuler
configurations map to the first-order DPM-Solver++ step (which *is* DDIM, and
Euler in sigma = sigma_t / alpha_t, and flow-matching Euler) on dpm_jax's grid
of the same spacing; their own time grids differ slightly (``notes`` says how).
"""

from __future__ import annotations

import json
import math
import os
import warnings
from typing import Any, NamedTuple

import numpy as np

from dpm_jax import schedules
from dpm_jax._options import SolverOptions
from dpm_jax.schedules import Schedule

__all__ = ["DiffusersSetup", "from_diffusers_config"]

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

#: The constructor arguments (and defaults) of the supported diffusers schedulers
#: (diffusers 0.42). Keys outside these are reported as unknown.
DEFAULTS: dict[str, dict[str, Any]] = {
    "DPMSolverMultistepScheduler": {
        **_BETAS,
        **_THRESH,
        **_SIGMAS,
        **_FLOW,
        "solver_order": 2,
        "prediction_type": "epsilon",
        "algorithm_type": "dpmsolver++",
        "solver_type": "midpoint",
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
    "DPMSolverSinglestepScheduler": {
        **_BETAS,
        **_THRESH,
        **_SIGMAS,
        **_FLOW,
        "solver_order": 2,
        "prediction_type": "epsilon",
        "algorithm_type": "dpmsolver++",
        "solver_type": "midpoint",
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
        "use_flow_sigmas": False,
        "flow_shift": 1.0,
        "use_dynamic_shifting": False,
        "time_shift_type": "exponential",
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


class DiffusersSetup(NamedTuple):
    """What :func:`from_diffusers_config` returns.

    Attributes:
      schedule: the noise schedule.
      model_type: for :func:`dpm_jax.model_wrapper` ("noise", "x_start", "v", "flow").
      options: the :class:`~dpm_jax.SolverOptions` of the scheduler (all but ``steps``);
        a mapping of the options that differ from dpm_jax's defaults, usable as
        ``dpm_jax.sample(..., steps=n, **setup.options)``.
      scheduler: the diffusers class name.
      unknown: keys of the config that the scheduler class does not have (also warned).
      notes: where the result differs from the diffusers scheduler, or a key was
        accepted but has no effect here (also warned).
    """

    schedule: Schedule
    model_type: str
    options: SolverOptions
    scheduler: str
    unknown: tuple
    notes: tuple


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


def _betas(cls, c) -> np.ndarray:
    n = c["num_train_timesteps"]
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise ValueError(f"{cls}: `num_train_timesteps` must be an int >= 2, got {n!r}.")
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
    betas = _betas(cls, c)
    if np.any(betas <= 0) or np.any(betas >= 1):
        raise ValueError(f"{cls}: every beta must lie in (0, 1).")
    abar = np.cumprod(1.0 - betas)
    if _flag(cls, "rescale_betas_zero_snr", c.get("rescale_betas_zero_snr", False)):
        # Exact zero terminal SNR (alpha_T = 0). diffusers instead sets the last
        # alphas_cumprod to 2^-24 (which is then larger than the one before it).
        notes.append(
            "rescale_betas_zero_snr: dpm_jax starts exactly at alpha_T = 0 (lambda = -inf); "
            "diffusers replaces alphas_cumprod[-1] = 0 by 2^-24."
        )
        return schedules.discrete(
            alphas_cumprod=abar, lambda_clip=None, rescale_zero_terminal_snr=True
        )
    return schedules.discrete(alphas_cumprod=abar, lambda_clip=None)


def _spacing(cls, c, notes) -> dict:
    """skip_type (and karras / exponential) of a discrete table."""
    flags = [
        k
        for k in (
            "use_karras_sigmas",
            "use_exponential_sigmas",
            "use_beta_sigmas",
            "use_lu_lambdas",
        )
        if _flag(cls, k, c.get(k, False))
    ]
    if len(flags) > 1:
        raise ValueError(f"{cls}: only one of {', '.join(flags)} may be true.")
    if flags and flags[0] in ("use_beta_sigmas", "use_lu_lambdas"):
        raise ValueError(
            f"{cls}: `{flags[0]}` is not supported by dpm_jax (use_karras_sigmas, "
            "use_exponential_sigmas and timestep_spacing are)."
        )
    for key in ("sigma_min", "sigma_max"):
        if c.get(key) is not None:
            raise ValueError(
                f"{cls}: `{key}` other than null is not supported by dpm_jax; pass "
                "t_start / t_end to dpm_jax.sample instead."
            )
    if flags:
        return {"skip_type": "karras" if flags[0] == "use_karras_sigmas" else "exponential"}
    spacing = _choice(
        cls,
        "timestep_spacing",
        c.get("timestep_spacing", "linspace"),
        ("linspace", "leading", "trailing"),
    )
    offset = c.get("steps_offset", 0)
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise ValueError(f"{cls}: `steps_offset` must be an int >= 0, got {offset!r}.")
    out = {"skip_type": spacing}
    if spacing == "leading":
        out["steps_offset"] = offset
    elif offset:
        notes.append(
            f"steps_offset={offset} has no effect with timestep_spacing={spacing!r} "
            "(as in diffusers)."
        )
    return out


def _thresholding(cls, c, notes) -> dict:
    if not _flag(cls, "thresholding", c.get("thresholding", False)):
        return {}
    notes.append(
        "thresholding: dpm_jax's dynamic thresholding divides by "
        "max(quantile, sample_max_value) (the reference DPM-Solver's rule); diffusers "
        "clamps the quantile to [1, sample_max_value]."
    )
    return {
        "correcting_x0_fn": "dynamic_thresholding",
        "thresholding_max_val": _number(cls, "sample_max_value", c["sample_max_value"]),
        "dynamic_thresholding_ratio": _number(
            cls, "dynamic_thresholding_ratio", c["dynamic_thresholding_ratio"]
        ),
    }


def _dynamic_shift(cls, c, notes):
    if _flag(cls, "use_dynamic_shifting", c.get("use_dynamic_shifting", False)):
        notes.append(
            "use_dynamic_shifting: the shift depends on the image size (mu); build the "
            "schedule yourself with dpm_jax.schedules.flow(shift=exp(mu), time_scale=...)."
        )


def from_diffusers_config(config, scheduler: str | None = None) -> DiffusersSetup:
    """Schedule, model type and sampling options from a diffusers scheduler config.

    Args:
      config: a dict, a path to ``scheduler_config.json``, or a checkpoint folder
        holding it (directly or in ``scheduler/``). Nothing is downloaded.
      scheduler: read the config as this scheduler class instead of its
        ``_class_name``, as ``DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)``
        does in diffusers (e.g. a Stable Diffusion checkpoint ships a PNDMScheduler
        config; its noise schedule carries over, its PNDM-only keys are reported
        in ``unknown``).

    Supported ``_class_name``: DPMSolverMultistepScheduler, DPMSolverSinglestepScheduler,
    UniPCMultistepScheduler, DEISMultistepScheduler, DDIMScheduler, EulerDiscreteScheduler,
    FlowMatchEulerDiscreteScheduler. Discrete tables become
    ``schedules.discrete(..., lambda_clip=None)`` (zero-terminal-SNR rescaling as
    diffusers does it, with its last alphas_cumprod of 2^-24), flow sigmas
    ``schedules.flow(shift, time_scale=num_train_timesteps)``.

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
    unknown = tuple(sorted(k for k in cfg if k not in DEFAULTS[cls] and k not in _META))
    c = {**DEFAULTS[cls], **{k: v for k, v in cfg.items() if k in DEFAULTS[cls]}}
    notes: list[str] = []
    if cls in (
        "DPMSolverMultistepScheduler",
        "DPMSolverSinglestepScheduler",
        "UniPCMultistepScheduler",
    ):
        out = _dpm_family(cls, c, notes)
    elif cls == "DEISMultistepScheduler":
        out = _deis(cls, c, notes)
    elif cls == "FlowMatchEulerDiscreteScheduler":
        out = _flow_match(cls, c, notes)
    else:
        out = _first_order_family(cls, c, notes)
    if unknown:
        warnings.warn(
            f"from_diffusers_config(): {cls} has no option(s) {', '.join(unknown)}; "
            "they were ignored.",
            stacklevel=2,
        )
    for note in notes:
        warnings.warn(f"from_diffusers_config(): {note}", stacklevel=2)
    schedule, model_type, options = out
    return DiffusersSetup(
        schedule, model_type, SolverOptions(**options), cls, unknown, tuple(notes)
    )


def _prediction(cls, c) -> str:
    return _PREDICTION[_choice(cls, "prediction_type", c["prediction_type"], tuple(_PREDICTION))]


def _flow_schedule(cls, c, key="flow_shift"):
    n = c["num_train_timesteps"]
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise ValueError(f"{cls}: `num_train_timesteps` must be an int >= 2, got {n!r}.")
    return schedules.flow(shift=_number(cls, key, c[key]), time_scale=float(n)), n


def _dpm_family(cls, c, notes):
    model_type = _prediction(cls, c)
    order = c["solver_order"]
    if isinstance(order, bool) or order not in (1, 2, 3):
        raise ValueError(f"{cls}: `solver_order` must be 1, 2 or 3, got {order!r}.")
    opts: dict[str, Any] = {
        "order": order,
        "lower_order_final": _flag(cls, "lower_order_final", c["lower_order_final"]),
    }
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
            raise ValueError(f"{cls}: `shift_terminal` is not supported.")
    else:
        opts["method"] = "multistep" if cls == "DPMSolverMultistepScheduler" else "singlestep"
        alg = c["algorithm_type"]
        alg = "dpmsolver++" if alg == "deis" else alg  # as diffusers does
        opts["algorithm_type"] = _choice(
            cls,
            "algorithm_type",
            alg,
            ("dpmsolver", "dpmsolver++", "sde-dpmsolver", "sde-dpmsolver++"),
        )
        st = c["solver_type"]
        st = "midpoint" if st in ("logrho", "bh1", "bh2") else st  # as diffusers does
        opts["solver_type"] = {"midpoint": "dpmsolver", "heun": "taylor"}[
            _choice(cls, "solver_type", st, ("midpoint", "heun"))
        ]
        if cls == "DPMSolverMultistepScheduler":
            opts["euler_at_final"] = _flag(cls, "euler_at_final", c["euler_at_final"])
    opts.update(_thresholding(cls, c, notes))
    _dynamic_shift(cls, c, notes)
    if _flag(cls, "use_flow_sigmas", c["use_flow_sigmas"]):
        schedule, n = _flow_schedule(cls, c)
        if final != "zero":
            notes.append(
                "final_sigmas_type='sigma_min' with flow sigmas: dpm_jax ends on the data "
                "(sigma = 0)."
            )
        if cls == "UniPCMultistepScheduler":
            # diffusers: sigmas shift(linspace(1, 1/N, steps + 1)[:-1]), the first moved to 1 - 1e-6
            opts.update(
                skip_type="time_uniform", t_start=1.0, t_end=1.0 / n, final_sigmas_type="zero"
            )
            notes.append(
                "UniPC flow sigmas: diffusers starts at sigma = 1 - 1e-6, dpm_jax at "
                "sigma = 1 (alpha = 0 is exact here)."
            )
        else:
            opts.update(
                skip_type="time_uniform", t_start=1.0 - 1.0 / n, t_end=0.0, final_sigmas_type="zero"
            )
        return schedule, model_type, opts
    schedule = _discrete_schedule(cls, c, notes)
    if cls == "DPMSolverSinglestepScheduler":
        # DPMSolverSinglestep has no timestep_spacing: its grid is always "linspace"
        opts.update(_spacing(cls, {**c, "timestep_spacing": "linspace", "steps_offset": 0}, notes))
    else:
        opts.update(_spacing(cls, c, notes))
    opts["final_sigmas_type"] = final
    return schedule, model_type, opts


def _deis(cls, c, notes):
    """DEISMultistepScheduler ("deis" / "logrho", the only values it has): the noise
    prediction extrapolated by a polynomial in log rho = -lambda and integrated exactly.
    That is DPM-Solver's noise-prediction multistep family with the exact Taylor terms:
    order 2 is solver_type "taylor", order 3 the "third_order" variant (checked against
    diffusers in tests/golden/test_deis_golden.py). Its grids end at the table's first
    sigma (timestep spacings: final_sigmas_type "sigma_min") or repeat their last sigma
    (karras, exponential, flow: "repeat", a zero-length last step)."""
    model_type = _prediction(cls, c)
    order = c["solver_order"]
    if isinstance(order, bool) or order not in (1, 2, 3):
        raise ValueError(f"{cls}: `solver_order` must be 1, 2 or 3, got {order!r}.")
    alg = c["algorithm_type"]
    alg = "deis" if alg in ("dpmsolver", "dpmsolver++") else alg  # as diffusers does
    _choice(cls, "algorithm_type", alg, ("deis",))
    st = c["solver_type"]
    st = "logrho" if st in ("midpoint", "heun", "bh1", "bh2") else st  # as diffusers does
    _choice(cls, "solver_type", st, ("logrho",))
    opts: dict[str, Any] = {
        "method": "multistep",
        "order": order,
        "algorithm_type": "dpmsolver",
        "solver_type": "taylor",
        "multistep3_variant": "third_order",
        "lower_order_final": _flag(cls, "lower_order_final", c["lower_order_final"]),
    }
    opts.update(_thresholding(cls, c, notes))
    _dynamic_shift(cls, c, notes)
    if _flag(cls, "use_flow_sigmas", c["use_flow_sigmas"]):
        schedule, n = _flow_schedule(cls, c)
        opts.update(
            skip_type="time_uniform", t_start=1.0 - 1.0 / n, t_end=0.0, final_sigmas_type="repeat"
        )
        return schedule, model_type, opts
    schedule = _discrete_schedule(cls, c, notes)
    opts.update(_spacing(cls, c, notes))
    opts["final_sigmas_type"] = (
        "repeat" if opts["skip_type"] in ("karras", "exponential") else "sigma_min"
    )
    return schedule, model_type, opts


def _first_order_family(cls, c, notes):
    """DDIM and Euler: the first-order DPM-Solver++ step on dpm_jax's grid."""
    model_type = _prediction(cls, c)
    if model_type == "flow":
        raise ValueError(f"{cls}: `prediction_type`='flow_prediction' is not a {cls} option.")
    schedule = _discrete_schedule(cls, c, notes)
    opts: dict[str, Any] = {"method": "multistep", "order": 1, "algorithm_type": "dpmsolver++"}
    opts.update(_spacing(cls, c, notes))
    if cls == "DDIMScheduler":
        opts.update(_thresholding(cls, c, notes))
        opts["final_sigmas_type"] = (
            "zero" if _flag(cls, "set_alpha_to_one", c["set_alpha_to_one"]) else "sigma_min"
        )
        if _flag(cls, "clip_sample", c["clip_sample"]):
            notes.append(
                "clip_sample: dpm_jax does not clip x0 to +-clip_sample_range (pass "
                "correcting_x0_fn=lambda x0, t: jnp.clip(x0, -r, r) for that)."
            )
        notes.append(
            "DDIMScheduler: the same DDIM step (DPM-Solver++ order 1) on DPMSolverMultistep's "
            "grid for this timestep_spacing; DDIM's own grid puts its last model call at "
            "timestep 0 (leading/linspace) and differs slightly."
        )
    else:
        final = _choice(cls, "final_sigmas_type", c["final_sigmas_type"], ("zero", "sigma_min"))
        opts["final_sigmas_type"] = final
        if c["interpolation_type"] != "linear" or c["timestep_type"] != "discrete":
            notes.append("interpolation_type / timestep_type: dpm_jax uses its own sigma grid.")
        notes.append(
            "EulerDiscreteScheduler: Euler in (x / alpha, sigma / alpha) is the DDIM step "
            "(DPM-Solver++ order 1); the grid is DPMSolverMultistep's for this spacing "
            "(Euler's linspace grid does not round timesteps)."
        )
    return schedule, model_type, opts


def _flow_match(cls, c, notes):
    schedule, n = _flow_schedule(cls, c, key="shift")
    _dynamic_shift(cls, c, notes)
    for key in ("invert_sigmas", "stochastic_sampling"):
        if _flag(cls, key, c[key]):
            raise ValueError(f"{cls}: `{key}`=true is not supported.")
    if c["shift_terminal"] is not None:
        raise ValueError(f"{cls}: `shift_terminal` is not supported.")
    if any(
        _flag(cls, k, c[k])
        for k in ("use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas")
    ):
        raise ValueError(
            f"{cls}: karras / exponential / beta sigmas of a flow model are not "
            "supported; use sample(..., skip_type='karras') with t_start < 1."
        )
    notes.append(
        "FlowMatchEulerDiscreteScheduler: flow Euler is the DDIM step (DPM-Solver++ "
        "order 1); dpm_jax's grid is uniform in t from 1 to 0 (diffusers': from 1 to "
        "1/num_train_timesteps, then 0). Raise `order` for DPM-Solver++ on this model."
    )
    opts = {
        "method": "multistep",
        "order": 1,
        "algorithm_type": "dpmsolver++",
        "skip_type": "time_uniform",
        "t_start": 1.0,
        "t_end": 0.0,
    }
    return schedule, "flow", opts
