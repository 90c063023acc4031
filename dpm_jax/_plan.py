"""Plans: every fixed-grid DPM-Solver run as a table of float64 coefficients.

A plan has one row per model call. Row i evaluates the model at time ``t[i]`` on
the current point x_i, giving M_i, and computes the next point

    x_{i+1} = x_coef[i] * x_i + sum_{j < W} m_coef[i, j] * M_{i-j}.

Every DPM-Solver update is linear in its anchor x_s and a few model values.
A singlestep step's later rows refer to the anchor, not to the current point;
the planner rewrites them in terms of the current point (x_s = (x_i - L_i) / A_i,
where x_i = A_i x_s + L_i is the previous row), so the executor carries only x
and the last W <= 3 model values. Warm-up steps, ``lower_order_final``, the
singlestep order mix and ``denoise_to_zero`` are all just rows (lower orders
have zero coefficients).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import numpy as np

from dpm_jax import _checks
from dpm_jax import _coeffs as C
from dpm_jax.schedules import Schedule

__all__ = ["Plan", "build_plan", "time_grid", "singlestep_orders"]

BUFFER = 4  # model values a row may combine (UniPC-3 with its corrector reaches back three rows)


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
    algorithm_type: str = "dpmsolver++"
    stochastic: bool = False
    include_start: bool = False
    denoise_to_zero: bool = False

    @property
    def nfe(self) -> int:
        """Number of model calls (rows)."""
        return int(np.shape(self.t)[0])

    @property
    def window(self) -> int:
        """W: how many model values (the current one included) a row combines."""
        return int(np.shape(self.m_coef)[1])

    def astype(self, dtype) -> "Plan":
        """The plan with its float arrays cast to ``dtype`` (NumPy on host, jax otherwise)."""
        def cast(a):
            return a.astype(dtype) if isinstance(a, jax.Array) else np.asarray(a, dtype)

        fields = ("t", "t_input", "alpha", "sigma", "x_coef", "m_coef", "noise_coef")
        return dataclasses.replace(self, **{f: cast(getattr(self, f)) for f in fields})


_DATA_FIELDS = ["t", "t_input", "alpha", "sigma", "x_coef", "m_coef", "intermediate_rows",
                "noise_coef"]
_META_FIELDS = ["algorithm_type", "stochastic", "include_start", "denoise_to_zero"]
jax.tree_util.register_dataclass(Plan, data_fields=_DATA_FIELDS, meta_fields=_META_FIELDS)


def time_grid(schedule: Schedule, skip_type: str, t_start: float, t_end: float, n: int) -> np.ndarray:
    """n + 1 times from t_start to t_end (either direction), float64.

    "time_uniform": linspace(t_start, t_end); "logSNR": t(linspace(lambda(t_start),
    lambda(t_end))); "time_quadratic": linspace(sqrt(t_start), sqrt(t_end))^2.
    """
    if skip_type == "logSNR":
        lam = np.linspace(schedule.marginal_lambda(np.float64(t_start)),
                          schedule.marginal_lambda(np.float64(t_end)), n + 1)
        return schedule.inverse_lambda(lam)
    if skip_type == "time_uniform":
        return np.linspace(t_start, t_end, n + 1)
    if skip_type == "time_quadratic":
        return np.linspace(np.sqrt(t_start), np.sqrt(t_end), n + 1) ** 2
    raise ValueError(f"skip_type must be one of {_checks.SKIP_TYPES}, got {skip_type!r}.")


def singlestep_orders(steps: int, order: int) -> list[int]:
    """Orders of the outer steps of DPM-Solver-fast using exactly ``steps`` model calls.

    Order 3: K = steps // 3 + 1 steps, [3]*(K-2) + [2, 1] if steps % 3 == 0,
    [3]*(K-1) + [1] if == 1, [3]*(K-1) + [2] if == 2 (DPM-Solver Sec. 3.4).
    """
    if order == 1:
        return [1] * steps
    if order == 2:
        return [2] * (steps // 2) + [1] * (steps % 2)
    k = steps // 3 + 1
    return {0: [3] * (k - 2) + [2, 1], 1: [3] * (k - 1) + [1], 2: [3] * (k - 1) + [2]}[steps % 3]


def multistep_orders(steps: int, order: int, lower_order_final: bool) -> list[int]:
    """Order of each multistep step: warm-up 1..order-1, then ``order``; with
    ``lower_order_final`` and steps < 10 the last steps drop to min(order, steps + 1 - k)
    (the reference implementation's rule, threshold 10)."""
    orders = []
    for k in range(1, steps + 1):
        if k < order:
            orders.append(k)
        elif lower_order_final and steps < 10:
            orders.append(min(order, steps + 1 - k))
        else:
            orders.append(order)
    return orders


class _Rows:
    """Accumulates rows as (time, {row: weight of its point}, {row: weight of its value})."""

    def __init__(self, schedule: Schedule, data: bool):
        self.schedule, self.data = schedule, data
        self.t, self.x_lin, self.m_lin, self.ends_step, self.noise = [], [], [], [], []

    def add(self, t_eval: float, anchor_coef, lin: dict, ends_step: bool, anchor_row=None,
            noise=0.0):
        """Row i = len(rows): x_{i+1} = anchor_coef * x_{anchor_row} + sum_k lin[k] * M_k
        (+ noise * z_i; only rows whose anchor is their own point may add noise)."""
        i = len(self.t)
        if noise and anchor_row not in (None, i):
            raise AssertionError("internal: noise in a row with a distant anchor")  # pragma: no cover
        self.noise.append(float(noise))
        self.t.append(float(t_eval))
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
        c, d = [], []
        for r in range(r_total):
            ((k, coef_x),) = self.x_lin[r].items()
            lin = dict(self.m_lin[r])
            while k < r:
                if c[k] == 0.0:
                    raise AssertionError(f"internal: row {k} has no weight on its point")  # pragma: no cover
                coef_x = coef_x / c[k]
                for kk, v in d[k].items():
                    lin[kk] = lin.get(kk, 0.0) - coef_x * v
                k += 1
            c.append(coef_x)
            d.append(lin)
        m_coef = np.zeros((r_total, BUFFER))
        for r, lin in enumerate(d):
            for k, v in lin.items():
                if not 0 <= r - k < BUFFER:
                    raise AssertionError(f"internal: row {r} reaches row {k}")  # pragma: no cover
                m_coef[r, r - k] += v
        used = [j for j in range(BUFFER) if np.any(m_coef[:, j])]
        return np.asarray(c, np.float64), m_coef[:, : (max(used) + 1 if used else 1)]


def _point(schedule, t):
    return C.point(schedule, np.float64(t))


def _plan_multistep(rows: _Rows, ts, orders, solver_type, e2_weight, stochastic=False):
    pts = [_point(rows.schedule, t) for t in ts]
    for k, o in enumerate(orders, start=1):
        i = k - 1  # row i evaluates at ts[k-1] and steps to ts[k]
        if stochastic:
            a, lin, noise = C.sde_multistep(rows.data, pts[i - o + 1:i + 1], pts[k], solver_type,
                                            e2_weight)
            rows.add(ts[i], a, {key + i: c for key, c in lin.items()}, True, noise=noise)
            continue
        if o == 1:
            a, lin = C.first_order(rows.data, pts[i], pts[k], m_s=0)
        elif o == 2:
            a, lin = C.multistep_2(rows.data, pts[i - 1], pts[i], pts[k], solver_type)
        else:
            a, lin = C.multistep_3(rows.data, pts[i - 2], pts[i - 1], pts[i], pts[k], e2_weight)
        rows.add(ts[i], a, {key + i: c for key, c in lin.items()}, True)  # key 0 is row i


def _plan_unipc(rows: _Rows, ts, orders, variant: str, use_corrector: bool):
    """UniPC: row i evaluates M_i at the predicted point x~_i, corrects the step that
    ended there (UniC, using M_i: no extra model call), and predicts x~_{i+1} from the
    corrected x_i (UniP). The corrected state is kept as c x~_i + E . M, where
    x_{i-1} = (x~_i - P_{i-1} . M) / a_{i-1} undoes the previous prediction, so every
    row is written in terms of its own point."""
    data, pts = rows.data, [_point(rows.schedule, t) for t in ts]
    prev = None  # (a, P) of the previous row's prediction, absolute keys
    for i in range(len(orders)):
        cx, e_lin = 1.0, {}
        if i >= 1 and use_corrector:
            q = orders[i - 1]
            a_c, c_lin = C.unipc(data, pts[i - q:i], pts[i], variant, corrector=True)
            a_p, p_lin = prev
            cx = a_c / a_p
            e_lin = C._lin((1.0, {k + i - 1: v for k, v in c_lin.items()}), (-cx, p_lin))
        o = orders[i]
        a_p, p_lin = C.unipc(data, pts[i - o + 1:i + 1], pts[i + 1], variant, corrector=False)
        p_abs = {k + i: v for k, v in p_lin.items()}
        rows.add(ts[i], a_p * cx, C._lin((a_p, e_lin), (1.0, p_abs)), True)
        prev = (a_p, p_abs)


def _inner_ratios(schedule, skip_type, s, t, order):
    """r_i = (lambda(inner_i) - lambda(inner_0)) / (lambda(inner_-1) - lambda(inner_0))
    on the skip_type grid with ``order`` intervals from s to t (reference rule)."""
    lam = schedule.marginal_lambda(time_grid(schedule, skip_type, s, t, order))
    h = lam[-1] - lam[0]
    return [(lam[j] - lam[0]) / h for j in range(1, order)]


def _plan_singlestep(rows: _Rows, ts, orders, skip_type, solver_type):
    sch, data = rows.schedule, rows.data
    for k, o in enumerate(orders):
        s, t = float(ts[k]), float(ts[k + 1])
        ps, pt = _point(sch, s), _point(sch, t)
        h = pt.lam - ps.lam
        if o == 1:
            i = len(rows.t)
            a, lin = C.first_order(data, ps, pt, m_s=i)
            rows.add(s, a, lin, True)
            continue
        r = _inner_ratios(sch, skip_type, s, t, o)
        s1 = float(sch.inverse_lambda(ps.lam + r[0] * h))
        p1 = _point(sch, s1)
        i = len(rows.t)  # the step's first row: its point is the anchor x_s
        keys = {"s": i, "1": i + 1, "2": i + 2}
        a, lin = C.first_order(data, ps, p1, h=r[0] * h, m_s="s")
        rows.add(s, a, {keys[k_]: c for k_, c in lin.items()}, False)
        if o == 2:
            a, lin = C.singlestep_2(data, ps, pt, r[0], solver_type)
            rows.add(s1, a, {keys[k_]: c for k_, c in lin.items()}, True, anchor_row=i)
            continue
        s2 = float(sch.inverse_lambda(ps.lam + r[1] * h))
        p2 = _point(sch, s2)
        a, lin = C.singlestep_3_mid(data, ps, p2, r[0], r[1], h)
        rows.add(s1, a, {keys[k_]: c for k_, c in lin.items()}, False, anchor_row=i)
        a, lin = C.singlestep_3(data, ps, pt, r[0], r[1], solver_type)
        rows.add(s2, a, {keys[k_]: c for k_, c in lin.items()}, True, anchor_row=i)


def build_plan(
    schedule: Schedule,
    steps: int = 20,
    order: int = 2,
    method: str = "multistep",
    algorithm_type: str = "dpmsolver++",
    skip_type: str = "time_uniform",
    solver_type: str = "dpmsolver",
    lower_order_final: bool = True,
    denoise_to_zero: bool = False,
    t_start: float | None = None,
    t_end: float | None = None,
    multistep3_variant: str = "reference",
    unipc_variant: str = "bh2",
    unipc_corrector: bool = True,
) -> Plan:
    """Plans a fixed-grid DPM-Solver(++) run on the host, in float64.

    ``t_start``/``t_end`` default to ``schedule.T``/``schedule.t_eps`` (sampling);
    pass ``t_start < t_end`` to integrate upwards (inversion). Options as in
    :func:`dpm_jax.sample`; ``method`` is "singlestep", "multistep" or
    "singlestep_fixed". ``multistep3_variant`` selects the third-order multistep
    update: "reference" (as published, formally second order) or "third_order"
    (its second-difference term doubled, formally third order).

    >>> import numpy as np
    >>> from dpm_jax import schedules
    >>> plan = build_plan(schedules.vp_linear(), steps=10, order=3, method="singlestep")
    >>> plan.nfe
    10
    """
    _checks.check_schedule(schedule)
    t_start, t_end = _checks.check_times(schedule, t_start, t_end, None)
    _checks.check_options(steps=steps, order=order, method=method, algorithm_type=algorithm_type,
                          skip_type=skip_type, solver_type=solver_type,
                          lower_order_final=lower_order_final, denoise_to_zero=denoise_to_zero)
    _checks.check_choice("multistep3_variant", multistep3_variant, _checks.MULTISTEP3_VARIANTS)
    _checks.check_choice("unipc_variant", unipc_variant, ("bh1", "bh2"))
    _checks.check_bool("unipc_corrector", unipc_corrector)
    if method == "adaptive":
        raise ValueError("build_plan(): method='adaptive' chooses its grid on the fly and has no "
                         "plan; call dpm_jax.sample(..., method='adaptive').")
    data = algorithm_type.endswith("++")
    rows = _Rows(schedule, data)
    if method == "unipc":
        ts = time_grid(schedule, skip_type, t_start, t_end, steps)
        _plan_unipc(rows, ts, multistep_orders(steps, order, lower_order_final), unipc_variant,
                    unipc_corrector)
    elif method == "multistep":
        ts = time_grid(schedule, skip_type, t_start, t_end, steps)
        _plan_multistep(rows, ts, multistep_orders(steps, order, lower_order_final), solver_type,
                        2.0 if multistep3_variant == "third_order" else 1.0,
                        stochastic=algorithm_type.startswith("sde-"))
    else:
        if method == "singlestep":
            orders = singlestep_orders(steps, order)
            if skip_type == "logSNR":
                ts = time_grid(schedule, skip_type, t_start, t_end, len(orders))
            else:
                ts = time_grid(schedule, skip_type, t_start, t_end, steps)[np.cumsum([0] + orders)]
        else:  # singlestep_fixed
            orders = [order] * (steps // order)
            ts = time_grid(schedule, skip_type, t_start, t_end, len(orders))
        _plan_singlestep(rows, ts, orders, skip_type, solver_type)
    if denoise_to_zero:  # x0 = D(x, t_end): for noise prediction D = (x - sigma eps) / alpha
        p = _point(schedule, t_end)
        alpha = np.exp(p.log_alpha)
        i = len(rows.t)
        if data:
            rows.add(t_end, 0.0, {i: 1.0}, True)
        else:
            rows.add(t_end, 1.0 / alpha, {i: -p.sigma / alpha}, True)
    t = np.asarray(rows.t, np.float64)
    p = C.point(schedule, t)
    x_coef, m_coef = rows.tables()
    return Plan(
        t=t,
        t_input=np.asarray(schedule.time_input(t), np.float64),
        alpha=np.exp(p.log_alpha),
        sigma=p.sigma,
        x_coef=x_coef,
        m_coef=m_coef,
        intermediate_rows=np.nonzero(rows.ends_step)[0].astype(np.int32),
        noise_coef=np.asarray(rows.noise, np.float64),
        algorithm_type=algorithm_type,
        stochastic=algorithm_type.startswith("sde-"),
        include_start=method in ("multistep", "unipc"),
        denoise_to_zero=bool(denoise_to_zero),
    )
