"""Turns a user's network into the noise predictor the solvers integrate."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from dpm_jax import _checks, guidance
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
        raise TypeError(
            f"`{name}`: non-array values must be hashable (they are compiled in as "
            "constants); pass arrays for data."
        ) from None
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
    sigma_data: float | None = dataclasses.field(default=None, metadata=dict(static=True))
    params: Any = None
    integer_time: bool = dataclasses.field(default=False, metadata=dict(static=True))
    guidance_rescale: Any = None
    guidance_interval: Any = None
    apg: Any = None

    def data_fields(self) -> dict:
        """The fields that are pytree leaves (traced: new values do not recompile)."""
        return {name: getattr(self, name) for name in _DATA_FIELDS}

    def batched_fields(self, batch: int) -> dict:
        """Like :meth:`data_fields`, True at the per-sample leaves: the conditions, and the
        keyword arrays whose leading dimension is the batch size ``batch``."""

        def per_sample(v):
            return bool(np.ndim(v) >= 1 and np.shape(v)[0] == batch)

        out = {
            name: jax.tree_util.tree_map(lambda _: False, getattr(self, name))
            for name in _DATA_FIELDS
        }
        for name in ("condition", "unconditional_condition"):
            out[name] = jax.tree_util.tree_map(lambda _: True, getattr(self, name))
        for name in ("model_kwargs", "classifier_kwargs"):
            out[name] = jax.tree_util.tree_map(per_sample, getattr(self, name))
        return out

    def __call__(self, x, t):
        """eps(x, t) with alpha_t, sigma_t taken from the schedule on device."""
        t = jnp.asarray(t, x.dtype)
        alpha, sigma = self.schedule.marginal_alpha(t), self.schedule.marginal_std(t)
        return self.noise(x, t, self.schedule.time_input(t), alpha, sigma)

    def network_input(self, x, t_input, alpha, sigma):
        """(x_in, t_in): what the network is called with at the planned schedule values.

        ``t_in`` is t_input broadcast to (B,) (int32 with ``integer_time``); for
        ``model_type="edm"`` EDM's preconditioning (Karras et al. 2022, Table 1):
        ``x_in = c_in x / alpha = x / (alpha sqrt(sigma^2 / alpha^2 + sigma_data^2))`` and
        ``t_in = c_noise = log(sigma / alpha) / 4``; cast to ``model_dtype`` if set."""
        t_in = jnp.broadcast_to(jnp.asarray(t_input, x.dtype), (x.shape[0],))
        if self.integer_time:  # the planned inputs are integers (checked on the host)
            t_in = jnp.round(t_in).astype(jnp.int32)
        x_in = x
        if self.model_type in ("edm", "edm_v"):
            x_in = x / self._edm_norm(x, alpha, sigma)
            t_in = jnp.broadcast_to(
                0.25
                * (jnp.log(jnp.asarray(sigma, x.dtype)) - jnp.log(jnp.asarray(alpha, x.dtype))),
                (x.shape[0],),
            )
        return (x_in if self.model_dtype is None else x_in.astype(self.model_dtype)), t_in

    def _edm_norm(self, x, alpha, sigma):
        sd = 0.0 if self.sigma_data is None else self.sigma_data
        a, s = _expand(alpha, x), _expand(sigma, x)
        return jnp.sqrt(s * s + (a * sd) ** 2)  # alpha sqrt(sigma^2 / alpha^2 + sd^2)

    def network_output(self, out, x, alpha, sigma):
        """The network's output checked and cast to x's dtype; for ``model_type="edm"``
        the denoiser ``D = c_skip x / alpha + c_out F`` (in terms of x)."""
        if not hasattr(out, "shape") or out.shape != x.shape:
            raise ValueError(
                f"model_wrapper: the network must return an array of the input's shape "
                f"{x.shape}, got {getattr(out, 'shape', type(out).__name__)}."
            )
        out = out.astype(x.dtype)
        if self.model_type in ("edm", "edm_v"):  # c_out < 0 for "edm_v"
            sd = 0.0 if self.sigma_data is None else self.sigma_data
            a, s = _expand(alpha, x), _expand(sigma, x)
            norm = self._edm_norm(x, alpha, sigma)
            c_out = s * sd if self.model_type == "edm" else -s * sd
            out = (sd * sd * a * x / norm + c_out * out) / norm
        return out

    def _net(self, x, t_input, alpha, sigma, cond=None, kwargs=None):
        kwargs = dict(self.static_model_kwargs, **(self.model_kwargs if kwargs is None else kwargs))
        net = self.net if self.params is None else functools.partial(self.net, self.params)
        x_in, t_in = self.network_input(x, t_input, alpha, sigma)
        out = net(x_in, t_in, **kwargs) if cond is None else net(x_in, t_in, cond, **kwargs)
        return self.network_output(out, x, alpha, sigma)

    def convert(self, out, x, alpha, sigma, data: bool):
        """The network output as a data prediction x0 (``data``) or a noise prediction eps.

        With x = alpha x0 + sigma eps: "noise": x0 = (x - sigma eps) / alpha;
        "x_start" / "edm" (D = x0): eps = (x - alpha x0) / sigma; "v" (v = alpha eps -
        sigma x0): x0 = (alpha x - sigma v) / (alpha^2 + sigma^2), eps = (sigma x + alpha v) /
        (alpha^2 + sigma^2), the denominator being 1 on VP schedules; "score":
        eps = -sigma score; "flow" (u = eps - x0): x0 = (x - sigma u) / (alpha + sigma),
        eps = (x + alpha u) / (alpha + sigma). Each form is finite where the other
        end of the schedule makes its alternative 0 / 0 (v and flow at alpha = 0).
        """
        a, s = _expand(alpha, x), _expand(sigma, x)
        kind = self.model_type
        if kind == "noise":
            return (x - s * out) / a if data else out
        if kind in ("x_start", "edm", "edm_v"):
            return out if data else (x - a * out) / s
        if kind == "v":  # exact on VP schedules (alpha^2 + sigma^2 = 1); else divide by it
            pred = a * x - s * out if data else s * x + a * out
            return pred if self.schedule.is_vp else pred / (a * a + s * s)
        if kind == "flow":
            return (x - s * out) / (a + s) if data else (x + a * out) / (a + s)
        eps = -s * out  # score
        return (x - s * eps) / a if data else eps

    @property
    def stateful(self) -> bool:
        """Whether the model carries a state from one call to the next (APG's momentum)."""
        return self.apg is not None

    def guidance_state(self, x):
        """The state before the first call (APG's running average: zeros of x's shape)."""
        return jnp.zeros_like(x) if self.stateful else None

    def predict(self, x, t, t_input, alpha, sigma, data: bool, state=None):
        """The (guided) data prediction x0 (``data=True``) or noise prediction eps at the
        planned schedule values; guidance is linear in either space:
        classifier-free ``P_u + s (P_c - P_u)``, classifier ``eps - s sigma grad log p``
        (``x0 + s sigma^2 / alpha grad log p``). With a guidance interval, s is 1 outside
        it; ``guidance_rescale`` combines and rescales the network's outputs before the
        conversion; APG combines data predictions and returns ``(prediction, state)``."""
        del t
        if self.guidance_type == "uncond":
            return self.convert(self._net(x, t_input, alpha, sigma), x, alpha, sigma, data)
        if self.guidance_type == "classifier":
            pred = self.convert(self._net(x, t_input, alpha, sigma), x, alpha, sigma, data)
            kwargs = dict(self.static_classifier_kwargs, **self.classifier_kwargs)
            t_in = jnp.broadcast_to(jnp.asarray(t_input, x.dtype), (x.shape[0],))

            classifier_fn = self.classifier_fn
            assert classifier_fn is not None  # checked by model_wrapper

            def log_prob(x_):
                return jnp.sum(classifier_fn(x_, t_in, self.condition, **kwargs))

            grad = jax.grad(log_prob)(x)
            a, s = _expand(alpha, x), _expand(sigma, x)
            step = s * grad if not data else -(s * s / a) * grad
            return pred - _expand(self.guidance_scale, x) * step
        if not self.cfg_doubled:
            return self.convert(
                self._net(x, t_input, alpha, sigma, self.condition), x, alpha, sigma, data
            )
        x2 = jnp.concatenate([x, x], axis=0)
        c2 = jax.tree_util.tree_map(
            lambda u, c: jnp.concatenate([u, c], axis=0),
            self.unconditional_condition,
            self.condition,
        )
        t2 = jnp.concatenate([jnp.broadcast_to(jnp.asarray(t_input, x.dtype), (x.shape[0],))] * 2)
        a2 = jnp.concatenate([jnp.broadcast_to(jnp.asarray(alpha, x.dtype), (x.shape[0],))] * 2)
        s2 = jnp.concatenate([jnp.broadcast_to(jnp.asarray(sigma, x.dtype), (x.shape[0],))] * 2)
        b = x.shape[0]
        k2 = jax.tree_util.tree_map(  # per-sample keyword arrays travel with their samples
            lambda v: jnp.concatenate([v, v]) if np.ndim(v) >= 1 and np.shape(v)[0] == b else v,
            self.model_kwargs,
        )
        raw = self._net(x2, t2, a2, s2, c2, k2)
        scale = self.guidance_scale
        if self.guidance_interval is not None:  # Kynkaanniemi et al. 2024, Sec. 3
            lo, hi = self.guidance_interval
            level = jnp.asarray(sigma, x.dtype) / jnp.asarray(alpha, x.dtype)  # EDM's sigma
            scale = guidance.interval_scale(scale, level, lo, hi)
        if self.guidance_rescale is not None:  # Lin et al. 2024, Sec. 3.4: on the outputs
            o_u, o_c = jnp.split(raw, 2, axis=0)
            guided = guidance.rescale(guidance.cfg(o_u, o_c, scale), o_c, self.guidance_rescale)
            return self.convert(guided, x, alpha, sigma, data)
        if self.apg is not None:  # Sadat et al. 2024, Alg. 1: on the data predictions
            d_u, d_c = jnp.split(self.convert(raw, x2, a2, s2, True), 2, axis=0)
            d, new_state = guidance.apg(d_u, d_c, scale, self.apg, state)
            if not data:  # eps = (x - alpha x0) / sigma
                d = (x - _expand(alpha, x) * d) / _expand(sigma, x)
            return d, new_state
        out = self.convert(raw, x2, a2, s2, data)
        p_u, p_c = jnp.split(out, 2, axis=0)
        return p_u + _expand(scale, x) * (p_c - p_u)

    def noise(self, x, t, t_input, alpha, sigma):
        """eps(x, t) given the schedule's values at t (as the executor has them planned)."""
        return self.predict(x, t, t_input, alpha, sigma, data=False)

    def check_batch(self, x) -> None:
        """Trace-time check that conditions match the batch of x."""
        if self.guidance_type == "uncond":
            return
        b = x.shape[0]
        for leaf in jax.tree_util.tree_leaves(self.condition):
            if not hasattr(leaf, "shape") or len(leaf.shape) < 1 or leaf.shape[0] != b:
                raise ValueError(
                    f"`condition` must have leading (batch) dimension {b} like x, "
                    f"got shape {getattr(leaf, 'shape', None)}."
                )
        if self.cfg_doubled:
            cs = jax.tree_util.tree_map(
                lambda c: (tuple(c.shape), jnp.result_type(c)), self.condition
            )
            us = jax.tree_util.tree_map(
                lambda c: (tuple(c.shape), jnp.result_type(c)), self.unconditional_condition
            )
            same_structure = jax.tree_util.tree_structure(
                self.condition
            ) == jax.tree_util.tree_structure(self.unconditional_condition)  # type: ignore[operator]
            if not same_structure or cs != us:
                raise ValueError(
                    "`unconditional_condition` must have the same structure, shapes and "
                    f"dtypes as `condition`: got {us} vs {cs}."
                )


_DATA_FIELDS = [
    "condition",
    "unconditional_condition",
    "guidance_scale",
    "model_kwargs",
    "classifier_kwargs",
    "params",
    "guidance_rescale",
    "guidance_interval",
    "apg",
]
jax.tree_util.register_dataclass(
    WrappedModel,
    data_fields=_DATA_FIELDS,
    meta_fields=[
        "net",
        "schedule",
        "model_type",
        "guidance_type",
        "classifier_fn",
        "static_model_kwargs",
        "static_classifier_kwargs",
        "cfg_doubled",
        "model_dtype",
        "sigma_data",
        "integer_time",
    ],
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
    sigma_data: float | None = None,
    *,
    params: Any = None,
    integer_time: bool = False,
    guidance_rescale: Any = None,
    guidance_interval: Any = None,
    apg: Any = None,
) -> WrappedModel:
    """Wraps a network as a continuous-time noise predictor eps(x, t).

    The network is called as ``model(x, t_input, **model_kwargs)`` (or with a
    condition, ``model(x, t_input, cond, **model_kwargs)``), where ``t_input`` is
    the time broadcast to shape (B,): ``1000 (t - 1/N)`` for discrete-time
    schedules, t itself for continuous ones. Its output is converted to a noise
    prediction (DPM-Solver App. D):

    - "noise": eps;  "x_start": x0;  "score": grad log p_t = -eps / sigma_t;
    - "v": v = alpha_t eps - sigma_t x0 (Salimans & Ho 2022; x0 = (alpha x - sigma v) /
      (alpha^2 + sigma^2), exactly alpha x - sigma v on VP schedules);
    - "flow": the flow-matching velocity u = eps - x0 (d x_t / d t for
      ``schedules.flow()``, where x_t = (1 - t) x0 + t eps); x0 = (x - sigma u) /
      (alpha + sigma), finite at alpha = 0;
    - "edm": a raw EDM network F (Karras et al. 2022, Table 1): dpm_jax calls it as
      ``F(c_in x, c_noise)`` with ``c_in = 1 / sqrt(sigma^2 + sigma_data^2)``,
      ``c_noise = log(sigma) / 4`` and takes ``D = c_skip x + c_out F`` as x0
      (``c_skip = sigma_data^2 / (sigma^2 + sigma_data^2)``,
      ``c_out = sigma sigma_data / sqrt(sigma^2 + sigma_data^2)``), with sigma =
      sigma_t / alpha_t and x / alpha_t on schedules where alpha != 1.
      ``sigma_data`` defaults to the schedule's (``schedules.edm``) or 0.5. A network
      that already returns D(x; sigma) is ``model_type="x_start"``;
    - "edm_v": the same with ``c_out = -sigma sigma_data / sqrt(sigma^2 + sigma_data^2)``
      (diffusers' EDM schedulers with ``prediction_type="v_prediction"``).

    The solvers ask for the data prediction (DPM-Solver++) or the noise
    prediction (DPM-Solver) and get it from the output directly, so a v-, x0- or
    flow-prediction model is exact at alpha = 0 (zero terminal SNR, flow models at
    t = 1), where a noise prediction cannot give x0.

    Guidance:

    - "classifier-free": eps = eps_u + s (eps_c - eps_u), both from one network
      call on a doubled batch (unconditional half first; arrays of ``model_kwargs``
      whose leading dimension is the batch size are per-sample and doubled with it);
      with ``guidance_scale`` the number 1 only the conditional network is evaluated (and
      ``unconditional_condition`` may be None); another scale without
      ``unconditional_condition`` is refused (it would be ignored).
    - "classifier": eps = eps_u - s sigma_t grad_x log p(condition | x_t) with
      ``classifier_fn(x, t_input, condition, **classifier_kwargs)`` returning
      per-sample log-probabilities (the gradient is taken with ``jax.grad``).

    Parameters: with ``params`` (a pytree of arrays, e.g. a flax.linen module's
    variables) the network is called as ``model(params, x, t_input, ...)``, so
    ``model_wrapper(module.apply, schedule, params=variables)``: the parameters are
    arguments of the compiled program (a new checkpoint of the same shapes reuses it)
    and the network is traced once per structure. Networks held otherwise are handled
    too (see the "Bring your model" guide): a flax ``nnx.Module`` or an equinox module
    passed as ``model`` has its arrays read at each call; a function closing over
    arrays is traced at each eager call, which reads them as they are then.

    Classifier-free guidance options (:mod:`dpm_jax.guidance`; traced values: a new value
    does not recompile; each needs ``unconditional_condition``):

    - ``guidance_rescale=phi`` in [0, 1] (Lin et al. 2024, arXiv 2305.08891, Sec. 3.4,
      for zero-terminal-SNR models): the guided network output ``o_u + s (o_c - o_u)``
      rescaled to the per-sample standard deviation of ``o_c`` and mixed by phi, in the
      network's own parameterisation (as diffusers' ``guidance_rescale``), then converted.
    - ``guidance_interval=(lo, hi)`` (Kynkäänniemi et al. 2024, arXiv 2404.07724): guide
      only where EDM's noise level sigma_t / alpha_t lies in (lo, hi]; scale 1 elsewhere.
    - ``apg=dpm_jax.guidance.APG(eta, norm_threshold, momentum)`` (Sadat et al. 2024, arXiv
      2410.02416): adaptive projected guidance of the data predictions, its momentum
      carried from one model call to the next through the sampling loop (fixed grids;
      not with ``guidance_rescale``).

    Integer time inputs: ``integer_time=True`` passes ``t_input`` as int32 (a network
    that embeds its timestep with ``nn.Embed``). The run's time inputs must then be
    integers, i.e. the grid must lie on the discrete table's timesteps: diffusers'
    spacings ``skip_type="leading"`` / ``"trailing"`` / ``"linspace"``, or explicit
    ``timesteps=`` on them; other grids are refused (ValueError).

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
        raise TypeError(
            f"`model` must be callable as model(x, t_input, ...), got {type(model).__name__}."
        )
    _checks.check_schedule(noise_schedule)
    _checks.check_choice("model_type", model_type, _checks.MODEL_TYPES)
    _checks.check_choice("guidance_type", guidance_type, _checks.GUIDANCE_TYPES)
    integer_time = _checks.check_bool("integer_time", integer_time)
    _check_guidance_options(
        guidance_type, (guidance_rescale, guidance_interval, apg), unconditional_condition
    )
    if integer_time and model_type in ("edm", "edm_v"):
        raise ValueError(
            "`integer_time=True` does not apply with model_type='edm' (its network gets "
            "c_noise = log(sigma) / 4, not a timestep)."
        )
    arrays, static = _split_kwargs("model_kwargs", model_kwargs)
    c_arrays, c_static = _split_kwargs("classifier_kwargs", classifier_kwargs)
    cfg_doubled = False
    if guidance_type == "classifier":
        if not callable(classifier_fn):
            raise ValueError(
                "guidance_type='classifier' needs `classifier_fn`, a function "
                "classifier_fn(x, t_input, condition) -> log p(condition | x)."
            )
        if condition is None:
            raise ValueError("guidance_type='classifier' needs a `condition`.")
    elif guidance_type == "classifier-free":
        if condition is None:
            raise ValueError("guidance_type='classifier-free' needs a `condition`.")
        is_one = isinstance(guidance_scale, (int, float)) and float(guidance_scale) == 1.0
        if unconditional_condition is None and not is_one:
            raise ValueError(
                f"guidance_type='classifier-free' with guidance_scale={guidance_scale!r} needs "
                "an `unconditional_condition` (without it only the conditional network is "
                "evaluated and the scale would be ignored); pass it, or guidance_scale=1."
            )
        cfg_doubled = unconditional_condition is not None and not is_one
    if guidance_type != "uncond" and not isinstance(guidance_scale, jax.core.Tracer):
        try:
            g = np.asarray(guidance_scale, np.float64)
        except (TypeError, ValueError):
            raise TypeError(
                f"`guidance_scale` must be a number, got {type(guidance_scale).__name__}."
            ) from None
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
        sigma_data=_check_sigma_data(model_type, sigma_data, noise_schedule),
        params=params,
        integer_time=integer_time,
        guidance_rescale=guidance_rescale,
        guidance_interval=None if guidance_interval is None else tuple(guidance_interval),
        apg=apg,
    )


def _number(v) -> bool:
    return isinstance(v, jax.core.Tracer) or (
        not isinstance(v, bool) and isinstance(v, (int, float, np.number))
    )


def _check_guidance_options(guidance_type, options, unconditional_condition) -> None:
    """The classifier-free guidance options: each a valid value, each used (they need
    classifier-free guidance on a doubled batch), not rescale and APG together."""
    from dpm_jax.guidance import APG

    rescale, interval, apg_ = options
    names = [
        n
        for n, v in zip(("guidance_rescale", "guidance_interval", "apg"), options)
        if v is not None
    ]
    if not names:
        return
    if guidance_type != "classifier-free" or unconditional_condition is None:
        raise ValueError(
            f"`{names[0]}` is an option of classifier-free guidance: it needs "
            "guidance_type='classifier-free' with an `unconditional_condition`."
        )
    if rescale is not None:
        if not _number(rescale):
            raise TypeError(f"`guidance_rescale` must be a number in [0, 1], got {rescale!r}.")
        if not isinstance(rescale, jax.core.Tracer) and not 0.0 <= float(rescale) <= 1.0:
            raise ValueError(f"`guidance_rescale` must lie in [0, 1], got {rescale!r}.")
    if interval is not None:
        if not isinstance(interval, (tuple, list)) or len(interval) != 2:
            raise TypeError(
                "`guidance_interval` must be a pair (lo, hi) of noise levels sigma_t / alpha_t, "
                f"got {interval!r}."
            )
        lo, hi = interval
        if not (_number(lo) and _number(hi)):
            raise TypeError(f"`guidance_interval` must hold two numbers, got {interval!r}.")
        if not any(isinstance(v, jax.core.Tracer) for v in interval) and not 0.0 <= lo < hi:
            raise ValueError(f"`guidance_interval` must have 0 <= lo < hi, got {interval!r}.")
    if apg_ is not None:
        if not isinstance(apg_, APG):
            raise TypeError(
                f"`apg` must be a dpm_jax.guidance.APG(eta, norm_threshold, momentum), got "
                f"{type(apg_).__name__}."
            )
        if rescale is not None:
            raise ValueError(
                "`apg` and `guidance_rescale` are two ways to tame large guidance scales; "
                "use one of them."
            )
        for name in ("eta", "norm_threshold", "momentum"):
            v = getattr(apg_, name)
            if not _number(v):
                raise TypeError(f"`apg.{name}` must be a number, got {v!r}.")
        if not isinstance(apg_.norm_threshold, jax.core.Tracer) and apg_.norm_threshold < 0:
            raise ValueError(f"`apg.norm_threshold` must be >= 0, got {apg_.norm_threshold!r}.")


def _check_sigma_data(model_type, sigma_data, schedule):
    if sigma_data is None:
        if model_type not in ("edm", "edm_v"):
            return None
        return float(schedule.sigma_data) if schedule.sigma_data is not None else 0.5
    if model_type not in ("edm", "edm_v"):
        raise ValueError(
            f"`sigma_data` is EDM's preconditioning constant; it needs "
            f"model_type='edm', got model_type={model_type!r}."
        )
    if (
        isinstance(sigma_data, bool)
        or not isinstance(sigma_data, (int, float, np.number))
        or not (np.isfinite(sigma_data) and sigma_data > 0)
    ):
        raise ValueError(f"`sigma_data` must be a finite number > 0, got {sigma_data!r}.")
    return float(sigma_data)


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
