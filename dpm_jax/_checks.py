"""Eager validation helpers: clear errors that name the argument, before anything is traced.

The options of a run are checked by :class:`dpm_jax.SolverOptions` with these helpers."""

from __future__ import annotations

import numbers

import jax
import jax.numpy as jnp
import numpy as np

MODEL_TYPES = ("noise", "x_start", "v", "score", "flow", "edm", "edm_v")
GUIDANCE_TYPES = ("uncond", "classifier", "classifier-free")


def check_choice(name: str, value, allowed) -> None:
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"`{name}` must be one of {', '.join(map(repr, allowed))}; got {value!r}.")


def check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"`{name}` must be an int, got {type(value).__name__} {value!r}.")
    if value < minimum:
        raise ValueError(f"`{name}` must be >= {minimum}, got {value}.")
    return int(value)


def check_bool(name: str, value) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"`{name}` must be a bool, got {type(value).__name__} {value!r}.")
    return bool(value)


def check_positive(name: str, value, upper: float | None = None) -> None:
    """A positive number (concrete values only; traced values pass)."""
    if isinstance(value, jax.core.Tracer):
        return
    try:
        v = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"`{name}` must be a number, got {type(value).__name__}.") from None
    if v.ndim != 0 or not np.isfinite(v) or v <= 0 or (upper is not None and v > upper):
        rng = f"in (0, {upper}]" if upper is not None else "> 0 and finite"
        raise ValueError(f"`{name}` must be a scalar {rng}, got {value!r}.")


def check_schedule(schedule) -> None:
    from dpm_jax.schedules import Schedule

    if not isinstance(schedule, Schedule):
        raise TypeError(
            "`noise_schedule` must be a dpm_jax.schedules.Schedule (from schedules.discrete, "
            f"vp_linear, vp_cosine, ve, edm or flow), got {type(schedule).__name__}."
        )


def check_times(schedule, t_start, t_end, direction: str | None):
    """Resolves defaults and checks the time span; direction "down" (sample),
    "up" (inverse) or None (either). Returns float (t_start, t_end)."""
    t_min = schedule.lowest_time
    if direction == "up":
        t_start = schedule.t_eps if t_start is None else t_start
        t_end = schedule.T if t_end is None else t_end
    else:
        t_start = schedule.T if t_start is None else t_start
        t_end = schedule.t_eps if t_end is None else t_end
    out = []
    for name, v in (("t_start", t_start), ("t_end", t_end)):
        if isinstance(v, jax.core.Tracer):
            raise TypeError(
                f"`{name}` must be a concrete number (it sets the plan on the host), "
                "got a traced value; build the plan outside jit."
            )
        try:
            v = float(v)
        except (TypeError, ValueError):
            raise TypeError(f"`{name}` must be a number, got {type(v).__name__}.") from None
        lo = "[1/N, T]" if schedule.is_discrete else "[0, T]"
        if not np.isfinite(v) or v > schedule.T * (1 + 1e-12) or v < t_min * (1 - 1e-12) or v < 0:
            raise ValueError(
                f"`{name}` must lie in the schedule's time range {lo} = "
                f"[{t_min:g}, {schedule.T:g}], got {v!r}."
            )
        out.append(v)
    t_start, t_end = out
    if direction == "down" and not t_end < t_start:
        raise ValueError(
            f"`t_end` must be < `t_start` for sampling, got t_start={t_start}, t_end={t_end}."
        )
    if direction == "up" and not t_start < t_end:
        raise ValueError(
            f"`t_start` must be < `t_end` for inversion, got t_start={t_start}, t_end={t_end}."
        )
    if t_start == t_end:
        raise ValueError(f"`t_start` and `t_end` must differ, both are {t_start}.")
    return t_start, t_end


def check_state(name: str, x) -> None:
    """The state must be a floating array with a batch axis."""
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        raise TypeError(f"`{name}` must be an array, got {type(x).__name__}.")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"`{name}` must have a floating dtype, got {x.dtype}.")
    if len(x.shape) < 1:
        raise ValueError(f"`{name}` must have a leading batch axis, got shape {tuple(x.shape)}.")
    if jnp.dtype(x.dtype).itemsize < 4:
        raise ValueError(
            f"`{name}` has dtype {x.dtype}: the solver state must be float32 or float64 "
            "(16-bit states lose the small differences between steps). Keep the state "
            "in float32 and run the network in low precision with "
            "model_wrapper(..., model_dtype=jnp.bfloat16)."
        )


def check_corrector(correcting_x0_fn, thresholding_max_val, dynamic_thresholding_ratio) -> None:
    from dpm_jax._corrections import CORRECTORS

    if correcting_x0_fn is None or callable(correcting_x0_fn):
        pass
    elif isinstance(correcting_x0_fn, str):
        check_choice("correcting_x0_fn", correcting_x0_fn, tuple(CORRECTORS))
    else:
        raise TypeError(
            f"`correcting_x0_fn` must be None, one of {', '.join(map(repr, CORRECTORS))} "
            f"or a function f(x0, t) -> x0, got {type(correcting_x0_fn).__name__}."
        )
    if isinstance(correcting_x0_fn, str):
        check_positive("thresholding_max_val", thresholding_max_val)
        if "dynamic_thresholding_ratio" in CORRECTORS[correcting_x0_fn][1]:
            check_positive("dynamic_thresholding_ratio", dynamic_thresholding_ratio, upper=1.0)
        elif not (
            isinstance(dynamic_thresholding_ratio, (int, float))
            and float(dynamic_thresholding_ratio) == 0.995
        ):
            raise ValueError(
                f"`dynamic_thresholding_ratio` does not apply with correcting_x0_fn="
                f"{correcting_x0_fn!r} (it clips x0 to +-thresholding_max_val); drop it."
            )
