"""The plan: a fixed-grid run as a table of float64 coefficients (a pytree of arrays).

A plan has one row per model call. Row i evaluates the model at time ``t[i]`` on
the current point x_i, giving M_i, and computes the next point

    x_{i+1} = x_coef[i] * x_i + sum_{j < W} m_coef[i, j] * M_{i-j}  (+ noise_coef[i] * z_i).

Every DPM-Solver update is linear in its anchor and a few model values, so
warm-up steps, ``lower_order_final``, the singlestep order mix and
``denoise_to_zero`` are all just rows (lower orders have zero coefficients). The
executor runs any plan the same way and never learns which solver made it.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from dpm_jax._algorithm import algorithm

__all__ = ["Plan", "plan_from_rows"]


@dataclasses.dataclass(frozen=True)
class Plan:
    """A fixed-grid sampling run, planned on the host (a pytree of arrays).

    Array fields (leading dimension R = number of model calls = NFE):
      t: (R,) continuous time of each model call.
      t_input: (R,) the time fed to the network (``schedule.time_input(t)``).
      alpha, sigma: (R,) alpha_t and sigma_t at each call.
      x_coef: (R,) weight of the current point x_i in x_{i+1}.
      m_coef: (R, W) weight of the model value M_{i-j} in x_{i+1}.
      intermediate_rows: (n,) int32, rows whose output is a state of the run
        (the end of an outer step, or the denoised result).
      noise_coef: (R,) weight of the fresh standard normal z_i added to x_{i+1}
        (stochastic solvers; zeros otherwise).
      t_states: (R + 1,) the time of each point x_i of the run: x_0 the start, x_{i+1}
        the point row i computes (the next row's node; ``t_end`` for the last), what
        ``correcting_xt_fn`` gets as its t.

    Static fields (part of the tree structure; changing them recompiles):
      algorithm_type: "dpmsolver" / "sde-dpmsolver" (M = eps) or "dpmsolver++" /
        "sde-dpmsolver++" (M = x0).
      stochastic: the rows add noise (the run needs a PRNG key).
      include_start: the intermediates begin with the starting state (multistep).
      denoise_to_zero: the last row returns the data prediction.
    """

    t: Any
    t_input: Any
    alpha: Any
    sigma: Any
    x_coef: Any
    m_coef: Any
    intermediate_rows: Any
    noise_coef: Any = None
    t_states: Any = None
    algorithm_type: str = "dpmsolver++"
    stochastic: bool = False
    include_start: bool = False
    denoise_to_zero: bool = False

    @property
    def nfe(self) -> int:
        """Number of model calls (rows)."""
        return int(np.shape(self.t)[0])

    @property
    def data_prediction(self) -> bool:
        """Whether the model values M are data predictions x0 (else noise predictions eps)."""
        return algorithm(self.algorithm_type).data

    @property
    def window(self) -> int:
        """W: how many model values (the current one included) a row combines."""
        return int(np.shape(self.m_coef)[1])

    def astype(self, dtype) -> Plan:
        """The plan with its float arrays cast to ``dtype`` (NumPy on host, jax otherwise)."""

        def cast(a):
            return a.astype(dtype) if isinstance(a, jax.Array) else np.asarray(a, dtype)

        fields = ("t", "t_input", "alpha", "sigma", "x_coef", "m_coef", "noise_coef", "t_states")
        return dataclasses.replace(self, **{f: cast(getattr(self, f)) for f in fields})


_DATA_FIELDS = [
    "t",
    "t_input",
    "alpha",
    "sigma",
    "x_coef",
    "m_coef",
    "intermediate_rows",
    "noise_coef",
    "t_states",
]
_META_FIELDS = ["algorithm_type", "stochastic", "include_start", "denoise_to_zero"]
jax.tree_util.register_dataclass(Plan, data_fields=_DATA_FIELDS, meta_fields=_META_FIELDS)


def plan_from_rows(
    rows, algorithm_type: str, include_start: bool, denoise_to_zero: bool, t_states
) -> Plan:
    """The :class:`Plan` of the rows collected in a :class:`~dpm_jax.plan.rows.Rows`
    (float64 NumPy arrays; jax arrays if any node or coefficient is a jax value);
    ``t_states`` the times of the run's points (R + 1)."""
    x_coef, m_coef = rows.tables()
    t = [n.t for n in rows.nodes]
    t_input = [n.t_input for n in rows.nodes]
    log_alpha = [n.p.log_alpha for n in rows.nodes]
    sigma = [n.p.sigma for n in rows.nodes]
    if isinstance(x_coef, jax.Array) or any(
        isinstance(v, jax.Array) for v in (*t, *t_input, *log_alpha, *sigma, *rows.noise, *t_states)
    ):

        def vec(values):
            return jnp.stack([jnp.asarray(v) for v in values])

        arrays = dict(
            t=vec(t),
            t_input=vec(t_input),
            alpha=jnp.exp(vec(log_alpha)),
            sigma=vec(sigma),
            x_coef=jnp.asarray(x_coef),
            m_coef=jnp.asarray(m_coef),
            noise_coef=vec(rows.noise),
            t_states=vec(t_states),
        )
    else:
        arrays = dict(
            t=np.asarray(t, np.float64),
            t_input=np.asarray(t_input, np.float64),
            alpha=np.asarray([np.exp(v) for v in log_alpha], np.float64),
            sigma=np.asarray(sigma, np.float64),
            x_coef=x_coef,
            m_coef=m_coef,
            noise_coef=np.asarray(rows.noise, np.float64),
            t_states=np.asarray([float(v) for v in t_states], np.float64),
        )
    return Plan(
        **arrays,
        intermediate_rows=np.nonzero(rows.ends_step)[0].astype(np.int32),
        algorithm_type=algorithm_type,
        stochastic=algorithm(algorithm_type).stochastic,
        include_start=bool(include_start),
        denoise_to_zero=bool(denoise_to_zero),
    )
