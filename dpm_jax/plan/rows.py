"""The row builder: a run as rows of coefficients, each in terms of its current point.

A row i evaluates the model at a node, giving M_i, and computes the next point
from an anchor (its own point, or for a singlestep step's later calls the
step's start) and model values. :class:`Rows` collects rows in that form and
:meth:`Rows.tables` rewrites every row in terms of its own current point
(x_s = (x_i - L_i) / A_i, where x_i = A_i x_s + L_i is the previous row), which
is what the executor runs: ``x_{i+1} = x_coef[i] x_i + sum_j m_coef[i, j] M_{i-j}``.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from dpm_jax import _coeffs as C
from dpm_jax.plan.nodes import Node, is_jax, is_zero
from dpm_jax.plan.nodes import node as make_node
from dpm_jax.schedules import Schedule

__all__ = ["BUFFER", "Rows", "first_order", "sde_first_order_to_data"]

BUFFER = 4  # model values a row may combine (UniPC-3 with its corrector reaches back three rows)


class Rows:
    """Accumulates rows as (node, {row: weight of its point}, {row: weight of its value})."""

    def __init__(self, schedule: Schedule, data: bool):
        self.schedule, self.data = schedule, data
        self.nodes: list[Node] = []
        self.x_lin: list[dict] = []  # {row: weight of its point}
        self.m_lin: list[dict] = []  # {row: weight of its model value}
        self.ends_step: list[bool] = []
        self.noise: list[float] = []

    @property
    def t(self):
        return [n.t for n in self.nodes]

    def add(self, node, anchor_coef, lin: dict, ends_step: bool, anchor_row=None, noise=0.0):
        """Row i = len(rows) evaluates the model at ``node`` (a Node or a time):
        x_{i+1} = anchor_coef * x_{anchor_row} + sum_k lin[k] * M_k
        (+ noise * z_i; only rows whose anchor is their own point may add noise)."""
        if not isinstance(node, Node):
            node = make_node(self.schedule, node)
        i = len(self.nodes)
        if noise and anchor_row not in (None, i):
            raise AssertionError(
                "internal: noise in a row with a distant anchor"
            )  # pragma: no cover
        values = [anchor_coef, noise, *lin.values()]
        if any(is_jax(v) for v in values):  # a differentiable plan: keep the jax scalars
            self.noise.append(noise)
            self.nodes.append(node)
            self.x_lin.append({i if anchor_row is None else anchor_row: anchor_coef})
            self.m_lin.append({int(k): c for k, c in lin.items()})
            self.ends_step.append(bool(ends_step))
            return i
        coefs = [float(anchor_coef), float(noise)] + [float(c) for c in lin.values()]
        if not np.all(np.isfinite(coefs)):
            raise AssertionError(
                f"internal: non-finite coefficient in row {i}: {coefs}"
            )  # pragma: no cover
        self.noise.append(float(noise))
        self.nodes.append(node)
        self.x_lin.append({i if anchor_row is None else anchor_row: float(anchor_coef)})
        self.m_lin.append({int(k): float(c) for k, c in lin.items()})
        self.ends_step.append(bool(ends_step))
        return i

    def tables(self):
        """(x_coef (R,), m_coef (R, W)) with every row in terms of its current point.

        Row r reads x_{k} = x_{anchor} (k <= r); walking forward with
        x_k = (x_{k+1} - D_k . M) / c_k, where x_{k+1} = c_k x_k + D_k . M is
        row k in its final form, leaves only x_r.
        """
        r_total = len(self.t)
        c: list[float] = []
        d: list[dict] = []
        for r in range(r_total):
            ((k, coef_x),) = self.x_lin[r].items()
            lin = dict(self.m_lin[r])
            while k < r:
                if is_zero(c[k]):
                    raise AssertionError(
                        f"internal: row {k} has no weight on its point"
                    )  # pragma: no cover
                coef_x = coef_x / c[k]
                for kk, v in d[k].items():
                    lin[kk] = lin.get(kk, 0.0) - coef_x * v
                k += 1
            c.append(coef_x)
            d.append(lin)
        for r, lin in enumerate(d):
            for k in lin:
                if not 0 <= r - k < BUFFER:
                    raise AssertionError(f"internal: row {r} reaches row {k}")  # pragma: no cover
        if any(is_jax(v) for v in c) or any(is_jax(v) for lin in d for v in lin.values()):
            return _jax_tables(c, d)
        m_coef = np.zeros((r_total, BUFFER))
        for r, lin in enumerate(d):
            for k, v in lin.items():
                m_coef[r, r - k] += v
        used = [j for j in range(BUFFER) if np.any(m_coef[:, j])]
        return np.asarray(c, np.float64), m_coef[:, : (max(used) + 1 if used else 1)]


def _jax_tables(c, d):
    """The tables of a differentiable plan (jax scalars): the same layout, its window the
    columns any row reaches (values cannot be inspected)."""
    width = max([r - k + 1 for r, lin in enumerate(d) for k in lin] or [1])
    rows = []
    for r, lin in enumerate(d):
        cells = [jnp.zeros(()) for _ in range(width)]
        for k, v in lin.items():
            cells[r - k] = cells[r - k] + v
        rows.append(jnp.stack([jnp.asarray(x) for x in cells]))
    return jnp.stack([jnp.asarray(x) for x in c]), jnp.stack(rows)


def first_order(data: bool, ps: C.Point, pt: C.Point):
    """DDIM step, also where lambda is infinite at an end.

    Data prediction: ``x_t = (sigma_t / sigma_s) x_s + alpha_t (1 - e^{-h}) x0`` is
    finite for h = +inf (it is ``sigma_t x_s + alpha_t x0`` from alpha_s = 0 and
    ``alpha_t x0`` to sigma_t = 0). Noise prediction to sigma_t = 0 uses the limit
    ``sigma_t (e^h - 1) -> alpha_t sigma_s / alpha_s``:
    ``x_t = (alpha_t / alpha_s)(x_s - sigma_s eps)``.
    """
    if data or not is_zero(pt.sigma):
        return C.first_order(data, ps, pt, m_s=0)
    ratio = float(np.exp(pt.log_alpha - ps.log_alpha))
    return ratio, {0: -ratio * ps.sigma}


def sde_first_order_to_data(data: bool, ps: C.Point, pt: C.Point):
    """Stochastic first-order step to sigma_t = 0 (the limits of ``C.sde_multistep``):
    data prediction ``alpha_t x0`` (no noise); noise prediction
    ``(alpha_t / alpha_s)(x_s - 2 sigma_s eps + sigma_s z)``."""
    if data:
        return 0.0, {0: float(np.exp(pt.log_alpha))}, 0.0
    ratio = float(np.exp(pt.log_alpha - ps.log_alpha))
    return ratio, {0: -2.0 * ratio * ps.sigma}, ratio * ps.sigma
