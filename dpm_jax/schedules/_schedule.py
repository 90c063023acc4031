"""The :class:`Schedule` type and the helpers every schedule uses."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["Schedule"]


class Schedule(NamedTuple):
    """A noise schedule: constants and pure functions of time.

    Attributes:
      name: ``"discrete"``, ``"vp_linear"``, ``"vp_cosine"``, ``"ve"``, ``"edm"`` or ``"flow"``.
      T: the largest time (the start of sampling).
      t_eps: the default end time of sampling (``1 / total_N`` for discrete tables).
      total_N: the number of training steps of a discrete model (1000 for the
        continuous schedules, as in the reference implementation).
      is_discrete: whether the model was trained on a discrete time grid; such
        a model is called with the time input ``1000 * (t - 1 / total_N)``.
      marginal_log_alpha: t -> log alpha_t.
      inverse_lambda: lambda -> t (defined for lambda = +-inf where the schedule
        reaches sigma = 0 or alpha = 0).
      marginal_log_sigma: t -> log sigma_t; None for VP schedules
        (``sigma_t = sqrt(1 - alpha_t^2)``).
      time_input_fn: t -> the time fed to the network; None for the reference
        convention (``1000 (t - 1/N)`` for discrete tables, t otherwise).
      sigma_data: the data standard deviation of EDM's preconditioning (``edm``).
      t_min: the smallest valid time (None: ``1/N`` for discrete tables, else 0
        excluded).
      spec: what defines the schedule, hashable (the factory's name and arguments;
        a digest of the table for ``discrete``). Two schedules with equal specs are
        equal (``==``) and hash alike, so rebuilding a schedule neither replans nor
        recompiles; a schedule built by hand (``spec=None``) equals only itself.

    >>> from dpm_jax import schedules
    >>> schedules.vp_linear() == schedules.vp_linear(), schedules.vp_linear() == schedules.ve()
    (True, False)
    >>> hash(schedules.edm()) == hash(schedules.edm())
    True
    """

    name: str
    T: float
    t_eps: float
    total_N: int
    is_discrete: bool
    marginal_log_alpha: Callable[[Any], Any]
    inverse_lambda: Callable[[Any], Any]
    marginal_log_sigma: Callable[[Any], Any] | None = None
    time_input_fn: Callable[[Any], Any] | None = None
    sigma_data: float | None = None
    t_min: float | None = None
    spec: Any = None

    def __eq__(self, other) -> bool:
        """Equal by content (``spec``); a schedule without a spec equals only itself."""
        if not isinstance(other, Schedule):
            return NotImplemented
        if self.spec is None or other.spec is None:
            return self is other
        return self.spec == other.spec

    def __ne__(self, other) -> bool:
        eq = self.__eq__(other)
        return eq if eq is NotImplemented else not eq

    def __hash__(self) -> int:
        return hash(self.spec) if self.spec is not None else id(self)

    def marginal_alpha(self, t):
        """alpha_t = exp(log alpha_t)."""
        return _xp(t).exp(self.marginal_log_alpha(t))

    def log_sigma(self, t):
        """log sigma_t (-inf where sigma_t = 0)."""
        if self.marginal_log_sigma is not None:
            return self.marginal_log_sigma(t)
        xp = _xp(t)
        with np.errstate(divide="ignore"):
            return 0.5 * xp.log(-xp.expm1(2.0 * self.marginal_log_alpha(t)))

    def marginal_std(self, t):
        """sigma_t (``sqrt(1 - alpha_t^2)`` for VP schedules)."""
        return _xp(t).exp(self.log_sigma(t))

    def marginal_lambda(self, t):
        """lambda_t = log alpha_t - log sigma_t (half log-SNR; +-inf at sigma = 0 / alpha = 0)."""
        with np.errstate(invalid="ignore"):
            return self.marginal_log_alpha(t) - self.log_sigma(t)

    def time_input(self, t):
        """The time fed to the network: ``1000 (t - 1/N)`` (discrete), t (VP), or the
        schedule's own convention (sigma for ``ve``/``edm``, ``time_scale * sigma`` for
        ``flow``)."""
        if self.time_input_fn is not None:
            return self.time_input_fn(t)
        if self.is_discrete:
            return (t - 1.0 / self.total_N) * 1000.0
        return t

    @property
    def input_scale(self) -> float | None:
        """Discrete tables: the factor ``c`` of the network's time input ``(t - 1/N) c``,
        so that the table entry n gets ``n c / N``: 1000 (the reference's convention) or N
        (``discrete(..., time_input="index")``: the table index). None otherwise."""
        if not self.is_discrete:
            return None
        if self.time_input_fn is None:
            return 1000.0
        return getattr(self.time_input_fn, "scale", None)

    @property
    def lowest_time(self) -> float:
        """The smallest valid time of the schedule."""
        if self.t_min is not None:
            return self.t_min
        return 1.0 / self.total_N if self.is_discrete else 0.0

    @property
    def is_vp(self) -> bool:
        """Variance preserving: sigma_t^2 = 1 - alpha_t^2 by construction (no own log sigma)."""
        return self.marginal_log_sigma is None

    def same_as(self, other: Any) -> bool:
        """Whether ``other`` defines the same diffusion process as this schedule.

        Equal constants (name, T, t_eps, N, discreteness, sigma_data) and equal
        log alpha_t, log sigma_t and network time input at 65 times spread over
        the schedule's range (float64, relative tolerance 1e-12). Two tables of
        the same length but other betas (a linear and a scaled-linear table) differ.

        >>> import numpy as np
        >>> from dpm_jax import schedules
        >>> a = schedules.discrete(betas=np.linspace(1e-4, 0.02, 1000))
        >>> b = schedules.discrete(betas=np.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000) ** 2)
        >>> a.same_as(schedules.discrete(betas=np.linspace(1e-4, 0.02, 1000))), a.same_as(b)
        (True, False)
        """
        if not isinstance(other, Schedule):
            return False
        if other is self:
            return True
        consts = ("name", "T", "t_eps", "total_N", "is_discrete", "sigma_data", "lowest_time")
        if any(getattr(self, c) != getattr(other, c) for c in consts):
            return False
        t = np.linspace(self.lowest_time, self.T, 65)
        with np.errstate(all="ignore"):
            for f in (
                lambda s: s.marginal_log_alpha(t),
                lambda s: s.log_sigma(t),
                lambda s: s.time_input(t),
            ):
                a, b = np.asarray(f(self), np.float64), np.asarray(f(other), np.float64)
                if a.shape != b.shape or not np.allclose(a, b, rtol=1e-12, atol=0.0):
                    return False
        return True


def _xp(t):
    """NumPy for host input, jax.numpy for jax arrays and tracers."""
    return jnp if isinstance(t, jax.Array) else np


def _as_host(t):
    return t if isinstance(t, jax.Array) else np.asarray(t, dtype=np.float64)


def _interp(x, xs, ys):
    """Piecewise-linear interpolation of (xs, ys), xs increasing, extended
    linearly beyond both ends with the outermost segments."""
    xp = _xp(x)
    xs_, ys_ = xp.asarray(xs, dtype=x.dtype), xp.asarray(ys, dtype=x.dtype)
    idx = xp.clip(xp.searchsorted(xs_, x, side="right") - 1, 0, xs_.shape[0] - 2)
    x0, x1, y0, y1 = xs_[idx], xs_[idx + 1], ys_[idx], ys_[idx + 1]
    return y0 + (x - x0) * (y1 - y0) / (x1 - x0)


def _log_alpha_from_lambda(lam):
    """log alpha = -0.5 log(1 + e^{-2 lambda}), stably."""
    return -0.5 * _xp(lam).logaddexp(0.0, -2.0 * lam)


def _check_pos(fn: str, **kw) -> list[float]:
    out = []
    for name, v in kw.items():
        if isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.integer)):
            raise TypeError(f"{fn}(): `{name}` must be a number, got {type(v).__name__}.")
        v = float(v)
        if not (np.isfinite(v) and v > 0.0):
            raise ValueError(f"{fn}(): `{name}` must be finite and > 0, got {v!r}.")
        out.append(v)
    return out
