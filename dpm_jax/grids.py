"""Time grids as objects that carry their own options.

Each grid is a frozen dataclass with exactly the options it reads (validated when made,
hashable, compared by value, a readable ``repr``) and stands for the reference keywords
it translates to (:meth:`Grid.keywords`)::

    dpm_jax.sample(model, x_T, schedule, solver=UniPC(order=3), grid=Karras(10, rho=7.0))

The families:

- the reference implementation's spacings of [t_end, t_start]: :class:`TimeUniform`,
  :class:`LogSNR` (uniform in lambda), :class:`TimeQuadratic`;
- diffusers' spacings of sigma = sigma_t / alpha_t: :class:`Karras` (sigma^(1/rho)
  uniform), :class:`Exponential` (log sigma uniform), :class:`Lu` (lambda uniform, as
  ``use_lu_lambdas``), and of a discrete table's integer timesteps: :class:`Linspace`,
  :class:`Leading` (``offset`` = diffusers' ``steps_offset``), :class:`Trailing`; each with
  ``final`` (diffusers' ``final_sigmas_type``: None, "zero", "sigma_min", "repeat",
  "sigma_max"), ``begin`` (a restart inside the grid, image-to-image) and ``rule`` (the
  timesteps of diffusers' "dpmsolver", "ddim" or "euler" schedulers);
- explicit: :class:`Timesteps` (times t) and :class:`Sigmas` (sigma / alpha, a last 0 is the
  data), with optional ``model_timesteps`` (LD3's decoupled model times).

``steps`` counts the grid's intervals (the model calls of a multistep solver).
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import numpy as np

__all__ = [
    "Grid",
    "TimeUniform",
    "LogSNR",
    "TimeQuadratic",
    "Karras",
    "Exponential",
    "Lu",
    "Linspace",
    "Leading",
    "Trailing",
    "Timesteps",
    "Sigmas",
]


@dataclasses.dataclass(frozen=True)
class Grid:
    """Base of the grid objects: ``keywords()`` are the reference keywords it stands for."""

    _keywords: ClassVar[dict] = {}
    skip_type: ClassVar[str | None] = None

    def keywords(self) -> dict:
        out: dict[str, Any] = {} if self.skip_type is None else {"skip_type": self.skip_type}
        for field, keyword in self._keywords.items():
            value = getattr(self, field)
            out[keyword] = np.asarray(value, np.float64) if isinstance(value, tuple) else value
        return out

    def __post_init__(self):
        for name in ("values", "model_timesteps"):  # hashable, by value
            if hasattr(self, name) and getattr(self, name) is not None:
                object.__setattr__(self, name, _tuple(name, getattr(self, name)))
        from dpm_jax._options import SolverOptions

        try:
            SolverOptions(**self.keywords())
        except (ValueError, TypeError) as err:
            msg = str(err)
            for field, keyword in self._keywords.items():
                if field != keyword:
                    msg = msg.replace(f"`{keyword}`", f"`{field}`")
            raise type(err)(f"{type(self).__name__}: {msg}") from None


def _tuple(name, values) -> tuple:
    try:
        arr = np.asarray(values, np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"`{name}` must be a 1-D sequence of numbers.") from None
    if arr.ndim != 1:
        raise ValueError(f"`{name}` must be 1-D, got shape {arr.shape}.")
    return tuple(float(v) for v in arr)


_SPAN = dict(steps="steps", t_start="t_start", t_end="t_end")
_DIFFUSERS = dict(final="final_sigmas_type", begin="begin_index", rule="spacing_rule")


@dataclasses.dataclass(frozen=True)
class TimeUniform(Grid):
    """``steps`` intervals uniform in t from ``t_start`` (default T) to ``t_end``."""

    steps: int = 20
    t_start: float | None = None
    t_end: float | None = None
    skip_type: ClassVar[str] = "time_uniform"
    _keywords: ClassVar[dict] = _SPAN


@dataclasses.dataclass(frozen=True)
class LogSNR(Grid):
    """``steps`` intervals uniform in the half log-SNR lambda."""

    steps: int = 20
    t_start: float | None = None
    t_end: float | None = None
    skip_type: ClassVar[str] = "logSNR"
    _keywords: ClassVar[dict] = _SPAN


@dataclasses.dataclass(frozen=True)
class TimeQuadratic(Grid):
    """``steps`` intervals uniform in sqrt(t) (the reference's "time_quadratic")."""

    steps: int = 20
    t_start: float | None = None
    t_end: float | None = None
    skip_type: ClassVar[str] = "time_quadratic"
    _keywords: ClassVar[dict] = _SPAN


@dataclasses.dataclass(frozen=True)
class Karras(Grid):
    """``steps`` model nodes with sigma^(1/rho) uniform (Karras et al. 2022, Eq. 5), and
    diffusers' final node ``final``."""

    steps: int = 20
    rho: float = 7.0
    final: str | None = None
    t_start: float | None = None
    t_end: float | None = None
    skip_type: ClassVar[str] = "karras"
    _keywords: ClassVar[dict] = dict(_SPAN, rho="karras_rho", final="final_sigmas_type")


@dataclasses.dataclass(frozen=True)
class Exponential(Grid):
    """``steps`` model nodes with log sigma uniform, and diffusers' final node ``final``."""

    steps: int = 20
    final: str | None = None
    t_start: float | None = None
    t_end: float | None = None
    skip_type: ClassVar[str] = "exponential"
    _keywords: ClassVar[dict] = dict(_SPAN, final="final_sigmas_type")


@dataclasses.dataclass(frozen=True)
class Lu(Grid):
    """``steps`` model nodes uniform in lambda (diffusers' ``use_lu_lambdas``, Lu et al.'s
    spacing), and diffusers' final node ``final``."""

    steps: int = 20
    final: str | None = None
    t_start: float | None = None
    t_end: float | None = None
    skip_type: ClassVar[str] = "lu"
    _keywords: ClassVar[dict] = dict(_SPAN, final="final_sigmas_type")


@dataclasses.dataclass(frozen=True)
class Linspace(Grid):
    """diffusers' "linspace" timesteps of a discrete table (``steps`` model calls)."""

    steps: int = 20
    final: str | None = "zero"
    begin: int = 0
    rule: str = "dpmsolver"
    skip_type: ClassVar[str] = "linspace"
    _keywords: ClassVar[dict] = dict(steps="steps", **_DIFFUSERS)


@dataclasses.dataclass(frozen=True)
class Leading(Grid):
    """diffusers' "leading" timesteps of a discrete table, shifted by ``offset``
    (``steps_offset``)."""

    steps: int = 20
    offset: int = 0
    final: str | None = "zero"
    begin: int = 0
    rule: str = "dpmsolver"
    skip_type: ClassVar[str] = "leading"
    _keywords: ClassVar[dict] = dict(steps="steps", offset="steps_offset", **_DIFFUSERS)


@dataclasses.dataclass(frozen=True)
class Trailing(Grid):
    """diffusers' "trailing" timesteps of a discrete table (from the last one down)."""

    steps: int = 20
    final: str | None = "zero"
    begin: int = 0
    rule: str = "dpmsolver"
    skip_type: ClassVar[str] = "trailing"
    _keywords: ClassVar[dict] = dict(steps="steps", **_DIFFUSERS)


@dataclasses.dataclass(frozen=True)
class Timesteps(Grid):
    """An explicit grid of times t, first to last (decreasing to sample, increasing to
    invert), and optionally the model's own time at each node (``model_timesteps``).

    Array-like over its times (float64): ``np.asarray(grid)``, ``len(grid)``, ``grid[i]``
    and iteration give them, so it may also be passed as ``timesteps=grid`` -- unless it
    has model times, which that keyword would drop (a ValueError says to pass
    ``grid=grid``).

    >>> import numpy as np
    >>> g = Timesteps((1.0, 0.5, 0.001), model_timesteps=(1.0, 0.45))
    >>> len(g), float(g[1]), np.asarray(g).dtype
    (3, 0.5, dtype('float64'))
    """

    values: Any = ()
    model_timesteps: Any = None
    _keywords: ClassVar[dict] = dict(values="timesteps", model_timesteps="model_timesteps")

    # Array-like over the times (what :func:`dpm_jax.optimize_timesteps` returns is one of
    # these): ``np.asarray(grid)``, ``len(grid)``, ``grid[i]``, iteration; and
    # ``timesteps=grid`` where it has no model times (with them: ``grid=grid``).
    def __array__(self, dtype=None, copy=None):
        out = np.array(self.values, np.float64)
        return out if dtype is None else out.astype(dtype)

    def __len__(self) -> int:
        return len(self.values)

    def __getitem__(self, index):
        return np.asarray(self)[index]

    def __iter__(self):
        return iter(np.asarray(self))


@dataclasses.dataclass(frozen=True)
class Sigmas(Grid):
    """An explicit grid of sigma = sigma_t / alpha_t (k-diffusion's convention; a last 0
    is the data), and optionally ``model_timesteps``."""

    values: Any = ()
    model_timesteps: Any = None
    _keywords: ClassVar[dict] = dict(values="sigmas", model_timesteps="model_timesteps")
