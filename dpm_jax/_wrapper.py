"""Turns a user's network into the noise predictor the solvers integrate."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from dpm_jax import _checks
from dpm_jax.schedules import Schedule

__all__ = ["WrappedModel", "model_wrapper"]


def _is_array(v) -> bool:
    return isinstance(v, (jax.Array, np.ndarray, np.generic))


def _split_kwargs(name: str, kwargs) -> tuple[dict, tuple]:
    """Array values become traced leaves; the rest is static (and must be hashable)."""
    if kwargs is None:
        return {}, ()
    if not isinstance(kwargs, dict):
        raise TypeError(f"`{name}` must be a dict, got {type(kwargs).__name__}.")
    arrays = {k: v for k, v in kwargs.items() if _is_array(v)}
    static = tuple(sorted((k, v) for k, v in kwargs.items() if not _is_array(v)))
    try:
        hash(static)
    except TypeError:
        raise TypeError(f"`{name}`: non-array values must be hashable (they are compiled in as "
                        "constants); pass arrays for data.") from None
    return arrays, static


def _expand(a, x):
    """Broadcasts a scalar or per-sample (B,) coefficient against x (B, ...)."""
    a = jnp.asarray(a, x.dtype)
    return a.reshape(a.shape + (1,) * (x.ndim - a.ndim)) if a.ndim else a


@dataclasses.dataclass(frozen=True)
class WrappedModel:
    """A network wrapped as a continuous-time noise predictor (a pytree).

    Conditions, guidance scale and array keyword arguments are leaves (traced:
    changing them does not recompile); the network, the schedule and the
    option strings are static. Call it as ``model(x, t)`` with continuous time
    t (scalar or per-sample) to get the noise prediction eps(x, t).
    """

    condition: Any
    unconditional_condition: Any
    guidance_scale: Any
    model_kwargs: dict
    classifier_kwargs: dict
    net: Callable = dataclasses.field(metadata=dict(static=True))
    schedule: Schedule = dataclasses.field(metadata=dict(static=True))
    model_type: str = dataclasses.field(metadata=dict(static=True))
    guidance_type: str = dataclasses.field(metadata=dict(static=True))
    classifier_fn: Callable | None = dataclasses.field(metadata=dict(static=True))
    static_model_kwargs: tuple = dataclasses.field(metadata=dict(static=True))
    static_classifier_kwargs: tuple = dataclasses.field(metadata=dict(static=True))
    cfg_doubled: bool = dataclasses.field(metadata=dict(static=True))
    model_dtype: Any = dataclasses.field(default=None, metadata=dict(static=True))

    def __call__(self, x, t):
        """eps(x, t) with alpha_t, sigma_t taken from the schedule on device."""
        t = jnp.asarray(t, x.dtype)
        log_alpha = self.schedule.marginal_log_alpha(t)
        alpha = jnp.exp(log_alpha)
        sigma = jnp.sqrt(1.0 - jnp.exp(2.0 * log_alpha))
        return self.noise(x, t, self.schedule.time_input(t), alpha, sigma)

    def _net(self, x, t_input, cond=None):
        kwargs = dict(self.static_model_kwargs, **self.model_kwargs)
        t_in = jnp.broadcast_to(jnp.asarray(t_input, x.dtype), (x.shape[0],))
        x_in = x if self.model_dtype is None else x.astype(self.model_dtype)
        out = self.net(x_in, t_in, **kwargs) if cond is None else self.net(x_in, t_in, cond, **kwargs)
        if not hasattr(out, "shape") or out.shape != x.shape:
            raise ValueError(f"model_wrapper: the network must return an array of the input's shape "
                             f"{x.shape}, got {getattr(out, 'shape', type(out).__name__)}.")
        return out.astype(x.dtype)

    def _to_noise(self, out, x, alpha, sigma):
        """eps from the network output: x_start: (x - alpha x0) / sigma;
        v: alpha v + sigma x; score: -sigma score."""
        if self.model_type == "noise":
            return out
        a, s = _expand(alpha, x), _expand(sigma, x)
        if self.model_type == "x_start":
            return (x - a * out) / s
        if self.model_type == "v":
            return a * out + s * x
        return -s * out

    def noise(self, x, t, t_input, alpha, sigma):
        """eps(x, t) given the schedule's values at t (as the executor has them planned)."""
        del t
        if self.guidance_type == "uncond":
            return self._to_noise(self._net(x, t_input), x, alpha, sigma)
        if self.guidance_type == "classifier":
            eps = self._to_noise(self._net(x, t_input), x, alpha, sigma)
            kwargs = dict(self.static_classifier_kwargs, **self.classifier_kwargs)
            t_in = jnp.broadcast_to(jnp.asarray(t_input, x.dtype), (x.shape[0],))

            def log_prob(x_):
                return jnp.sum(self.classifier_fn(x_, t_in, self.condition, **kwargs))

            grad = jax.grad(log_prob)(x)
            return eps - _expand(self.guidance_scale, x) * _expand(sigma, x) * grad
        if not self.cfg_doubled:
            return self._to_noise(self._net(x, t_input, self.condition), x, alpha, sigma)
        x2 = jnp.concatenate([x, x], axis=0)
        c2 = jax.tree_util.tree_map(lambda u, c: jnp.concatenate([u, c], axis=0),
                                    self.unconditional_condition, self.condition)
        t2 = jnp.concatenate([jnp.broadcast_to(jnp.asarray(t_input, x.dtype), (x.shape[0],))] * 2)
        a2 = jnp.concatenate([jnp.broadcast_to(jnp.asarray(alpha, x.dtype), (x.shape[0],))] * 2)
        s2 = jnp.concatenate([jnp.broadcast_to(jnp.asarray(sigma, x.dtype), (x.shape[0],))] * 2)
        eps_u, eps_c = jnp.split(self._to_noise(self._net(x2, t2, c2), x2, a2, s2), 2, axis=0)
        return eps_u + _expand(self.guidance_scale, x) * (eps_c - eps_u)

    def check_batch(self, x) -> None:
        """Trace-time check that conditions match the batch of x."""
        if self.guidance_type == "uncond":
            return
        b = x.shape[0]
        for leaf in jax.tree_util.tree_leaves(self.condition):
            if not hasattr(leaf, "shape") or len(leaf.shape) < 1 or leaf.shape[0] != b:
                raise ValueError(f"`condition` must have leading (batch) dimension {b} like x, "
                                 f"got shape {getattr(leaf, 'shape', None)}.")
        if self.cfg_doubled:
            cs = jax.tree_util.tree_map(lambda c: (tuple(c.shape), jnp.result_type(c)), self.condition)
            us = jax.tree_util.tree_map(lambda c: (tuple(c.shape), jnp.result_type(c)),
                                        self.unconditional_condition)
            if jax.tree_util.tree_structure(self.condition) != jax.tree_util.tree_structure(
                    self.unconditional_condition) or cs != us:
                raise ValueError("`unconditional_condition` must have the same structure, shapes and "
                                 f"dtypes as `condition`: got {us} vs {cs}.")


jax.tree_util.register_dataclass(
    WrappedModel,
    data_fields=["condition", "unconditional_condition", "guidance_scale", "model_kwargs",
                 "classifier_kwargs"],
    meta_fields=["net", "schedule", "model_type", "guidance_type", "classifier_fn",
                 "static_model_kwargs", "static_classifier_kwargs", "cfg_doubled", "model_dtype"],
)


def model_wrapper(
    model: Callable,
    noise_schedule: Schedule,
    model_type: str = "noise",
    model_kwargs: dict | None = None,
    guidance_type: str = "uncond",
    condition: Any = None,
    unconditional_condition: Any = None,
    guidance_scale: Any = 1.0,
    classifier_fn: Callable | None = None,
    classifier_kwargs: dict | None = None,
    model_dtype: Any = None,
) -> WrappedModel:
    """Wraps a network as a continuous-time noise predictor eps(x, t).

    The network is called as ``model(x, t_input, **model_kwargs)`` (or with a
    condition, ``model(x, t_input, cond, **model_kwargs)``), where ``t_input`` is
    the time broadcast to shape (B,): ``1000 (t - 1/N)`` for discrete-time
    schedules, t itself for continuous ones. Its output is converted to a noise
    prediction (DPM-Solver App. D):

    - "noise": eps;  "x_start": eps = (x - alpha_t x0) / sigma_t;
    - "v": eps = alpha_t v + sigma_t x;  "score": eps = -sigma_t score.

    Guidance:

    - "classifier-free": eps = eps_u + s (eps_c - eps_u), both from one network
      call on a doubled batch (unconditional half first); if
      ``unconditional_condition`` is None or ``guidance_scale`` is the number 1,
      only the conditional network is evaluated.
    - "classifier": eps = eps_u - s sigma_t grad_x log p(condition | x_t) with
      ``classifier_fn(x, t_input, condition, **classifier_kwargs)`` returning
      per-sample log-probabilities (the gradient is taken with ``jax.grad``).

    Mixed precision: with ``model_dtype`` (e.g. ``jnp.bfloat16``) the network
    gets x cast to that dtype (t_input stays in the state's dtype, conditions
    as given) and its output is cast back, so the solver's state and
    coefficients stay float32 while the network runs in low precision.

    >>> import jax.numpy as jnp
    >>> from dpm_jax import schedules
    >>> m = model_wrapper(lambda x, t: 0.1 * x, schedules.vp_linear())
    >>> m(jnp.ones((2, 3)), 0.5).shape
    (2, 3)
    """
    if not callable(model):
        raise TypeError(f"`model` must be callable as model(x, t_input, ...), got {type(model).__name__}.")
    _checks.check_schedule(noise_schedule)
    _checks.check_choice("model_type", model_type, _checks.MODEL_TYPES)
    _checks.check_choice("guidance_type", guidance_type, _checks.GUIDANCE_TYPES)
    arrays, static = _split_kwargs("model_kwargs", model_kwargs)
    c_arrays, c_static = _split_kwargs("classifier_kwargs", classifier_kwargs)
    cfg_doubled = False
    if guidance_type == "classifier":
        if not callable(classifier_fn):
            raise ValueError("guidance_type='classifier' needs `classifier_fn`, a function "
                             "classifier_fn(x, t_input, condition) -> log p(condition | x).")
        if condition is None:
            raise ValueError("guidance_type='classifier' needs a `condition`.")
    elif guidance_type == "classifier-free":
        if condition is None:
            raise ValueError("guidance_type='classifier-free' needs a `condition`.")
        is_one = isinstance(guidance_scale, (int, float)) and float(guidance_scale) == 1.0
        cfg_doubled = unconditional_condition is not None and not is_one
    if guidance_type != "uncond" and not isinstance(guidance_scale, jax.core.Tracer):
        try:
            g = np.asarray(guidance_scale, np.float64)
        except (TypeError, ValueError):
            raise TypeError(f"`guidance_scale` must be a number, got {type(guidance_scale).__name__}.") from None
        if g.ndim != 0 or not np.isfinite(g):
            raise ValueError(f"`guidance_scale` must be a finite scalar, got {guidance_scale!r}.")
    return WrappedModel(
        condition=condition if guidance_type != "uncond" else None,
        unconditional_condition=unconditional_condition if cfg_doubled else None,
        guidance_scale=guidance_scale if guidance_type != "uncond" else None,
        model_kwargs=arrays,
        classifier_kwargs=c_arrays,
        net=model,
        schedule=noise_schedule,
        model_type=model_type,
        guidance_type=guidance_type,
        classifier_fn=classifier_fn if guidance_type == "classifier" else None,
        static_model_kwargs=static,
        static_classifier_kwargs=c_static,
        cfg_doubled=cfg_doubled,
        model_dtype=_check_model_dtype(model_dtype),
    )


def _check_model_dtype(dtype):
    if dtype is None:
        return None
    try:
        dt = jnp.dtype(dtype)
    except TypeError:
        raise TypeError(f"`model_dtype` must be a floating dtype or None, got {dtype!r}.") from None
    if not jnp.issubdtype(dt, jnp.floating):
        raise TypeError(f"`model_dtype` must be a floating dtype or None, got {dt}.")
    return dt
