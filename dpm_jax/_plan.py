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
from typing import Any, NamedTuple

import jax
import numpy as np

from dpm_jax import _checks
from dpm_jax import _coeffs as C
from dpm_jax.schedules import Schedule

__all__ = ["Plan", "build_plan", "time_grid", "singlestep_orders", "grid_nodes", "Node"]

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
        lam0 = schedule.marginal_lambda(np.float64(t_start))
        lam1 = schedule.marginal_lambda(np.float64(t_end))
        if not (np.isfinite(lam0) and np.isfinite(lam1)):
            raise ValueError(f"skip_type='logSNR' spaces the half log-SNR uniformly and needs it "
                             f"finite at both ends; it is {lam0} at t_start={t_start} and {lam1} at "
                             f"t_end={t_end} (alpha = 0 or sigma = 0 there). Move t_start/t_end "
                             "inside, or use 'time_uniform' / 'karras' with final_sigmas_type='zero'.")
        lam = np.linspace(lam0, lam1, n + 1)
        return schedule.inverse_lambda(lam)
    if skip_type == "time_uniform":
        return np.linspace(t_start, t_end, n + 1)
    if skip_type == "time_quadratic":
        return np.linspace(np.sqrt(t_start), np.sqrt(t_end), n + 1) ** 2
    raise ValueError(f"skip_type must be one of {_checks.SKIP_TYPES}, got {skip_type!r}.")


#: Spacings that come from diffusers (discrete tables: "linspace", "leading",
#: "trailing") or EDM ("karras"), and "exponential" (uniform in log sigma).
NODE_SKIPS = ("karras", "exponential", "linspace", "leading", "trailing")


def _sigma_hat(lam):
    """sigma / alpha = e^{-lambda} (the VE / EDM / diffusers "sigma")."""
    with np.errstate(over="ignore"):
        return np.exp(-np.float64(lam))


def _table_index(schedule: Schedule, lam) -> np.ndarray:
    """diffusers' ``_sigma_to_t``: the fractional table index of half log-SNR lam,
    linear in log sigma between entries, clamped to the table."""
    t_array, log_alphas = schedule.marginal_log_alpha.table
    with np.errstate(divide="ignore"):
        log_sig = 0.5 * np.log(-np.expm1(2.0 * log_alphas)) - log_alphas  # -lambda_n, increasing
    return np.interp(-np.asarray(lam, np.float64), log_sig, np.arange(log_sig.shape[0], dtype=np.float64))


def _discrete_timesteps(skip_type: str, n_train: int, n: int, steps_offset: int) -> np.ndarray:
    """diffusers' integer timesteps (``set_timesteps``) of a discrete model, descending."""
    if skip_type == "linspace":
        ts = np.linspace(0, n_train - 1, n + 1).round()[::-1][:-1]
    elif skip_type == "leading":
        ratio = n_train // (n + 1)
        ts = (np.arange(0, n + 1) * ratio).round()[::-1][:-1] + steps_offset
    else:  # trailing
        ts = np.arange(n_train, 0, -n_train / n).round() - 1
    return ts.astype(np.int64)


def grid_nodes(schedule: Schedule, skip_type: str, t_start: float, t_end: float, steps: int,
               final_sigmas_type: str | None = None, karras_rho: float = 7.0,
               steps_offset: int = 0) -> list[Node]:
    """The steps + 1 grid nodes of a run, from t_start towards t_end.

    Without ``final_sigmas_type`` the nodes are the :func:`time_grid` (or, for
    "karras" / "exponential", the sigma-spaced points) from t_start to t_end. With
    it, ``steps`` nodes are spaced as diffusers does (the first ``steps`` of that
    grid for the reference spacings; "karras" / "exponential": ``steps`` points
    with both ends included; "linspace" / "leading" / "trailing": diffusers'
    integer timesteps of a discrete table, with ``steps_offset``) and the last
    node is the data (``"zero"``: sigma = 0) or the schedule's t_eps (``"sigma_min"``).

    "karras": sigma^(1/rho) uniform between sigma(t_start) and sigma(t_end), with
    sigma = e^{-lambda} (Karras et al. 2022, eq. 5); "exponential": log sigma
    uniform. On a discrete table the network gets diffusers' integer timestep of
    each sigma (rounded for "karras", truncated for "exponential").
    """
    with_final = final_sigmas_type is not None
    n_pts = steps if with_final else steps + 1
    if skip_type in ("linspace", "leading", "trailing"):
        if not schedule.is_discrete:
            raise ValueError(f"skip_type={skip_type!r} is diffusers' spacing of a discrete table; "
                             f"the {schedule.name!r} schedule is continuous (use 'time_uniform', "
                             "'logSNR', 'karras' or 'exponential').")
        if not with_final:
            raise AssertionError("internal: discrete spacing without a final node")  # pragma: no cover
        n_train = schedule.total_N
        ks = _discrete_timesteps(skip_type, n_train, steps, steps_offset)
        if ks.shape[0] != steps or ks.min() < 0 or ks.max() >= n_train:
            raise ValueError(f"skip_type={skip_type!r} with steps={steps} and steps_offset="
                             f"{steps_offset} gives timesteps {ks.tolist()} outside the table "
                             f"0..{n_train - 1}.")
        nodes = [_node(schedule, (k + 1.0) / n_train, k * 1000.0 / n_train) for k in ks]
    elif skip_type in ("karras", "exponential"):
        lam0 = float(schedule.marginal_lambda(np.float64(t_start)))
        lam1 = float(schedule.marginal_lambda(np.float64(t_end)))
        if not (np.isfinite(lam0) and lam1 > -np.inf) or not np.isfinite(_sigma_hat(lam0)):
            raise ValueError(f"skip_type={skip_type!r} needs a finite noise level sigma/alpha at "
                             f"t_start={t_start} (alpha = 0 there); start slightly below T.")
        s0, s1 = _sigma_hat(lam0), _sigma_hat(lam1)
        if with_final and s1 == 0.0:
            raise ValueError(f"final_sigmas_type={final_sigmas_type!r} appends a final node after the "
                             f"{skip_type!r} grid, which already ends on the data at t_end={t_end} "
                             "(sigma = 0); pass a t_end with sigma > 0, or final_sigmas_type=None.")
        ramp = np.linspace(0.0, 1.0, n_pts)
        if skip_type == "karras":
            sig = (s0 ** (1.0 / karras_rho) + ramp * (s1 ** (1.0 / karras_rho) - s0 ** (1.0 / karras_rho))) ** karras_rho
        else:
            if s1 == 0.0:
                raise ValueError("skip_type='exponential' needs sigma > 0 at t_end; use "
                                 "final_sigmas_type='zero' to end on the data.")
            sig = np.exp(np.log(s0) + ramp * (np.log(s1) - np.log(s0)))
        with np.errstate(divide="ignore"):
            lams = -np.log(sig)
        ts = schedule.inverse_lambda(lams)
        ts[0], ts[-1] = t_start, t_end
        if schedule.is_discrete:
            idx = _table_index(schedule, lams)
            idx = np.round(idx) if skip_type == "karras" else np.floor(idx)
            inputs = idx * 1000.0 / schedule.total_N
        else:
            inputs = [None] * len(ts)
        nodes = [_node(schedule, t, ti) for t, ti in zip(ts, inputs)]
    else:
        ts = time_grid(schedule, skip_type, t_start, t_end, steps)
        nodes = [_node(schedule, t) for t in (ts[:-1] if with_final else ts)]
    if with_final:
        nodes.append(DATA_NODE if final_sigmas_type == "zero" else _node(schedule, schedule.t_eps))
        if nodes[-1].p.lam < nodes[-2].p.lam:
            raise ValueError(f"final_sigmas_type='sigma_min' ends on the schedule's t_eps="
                             f"{schedule.t_eps:g}, noisier than the grid's last node at t_end="
                             f"{t_end:g}; pass t_end >= t_eps or final_sigmas_type='zero'.")
    return nodes


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


class Node(NamedTuple):
    """A grid point: its time t, the network's time input, and the schedule there."""

    t: float
    t_input: float
    p: C.Point

    @property
    def finite(self) -> bool:
        """Whether lambda is finite here (not the data, sigma = 0, nor pure noise, alpha = 0)."""
        return bool(np.isfinite(self.p.lam))


def _node(schedule: Schedule, t, t_input=None) -> Node:
    t = np.float64(t)
    return Node(float(t), float(schedule.time_input(t) if t_input is None else t_input),
                C.point(schedule, t))


#: The data (sigma = 0, alpha = 1, lambda = +inf): the end of ``final_sigmas_type="zero"``.
#: The network is never evaluated there.
DATA_NODE = Node(0.0, 0.0, C.Point(np.float64(0.0), np.float64(0.0), np.float64(np.inf)))


class _Rows:
    """Accumulates rows as (node, {row: weight of its point}, {row: weight of its value})."""

    def __init__(self, schedule: Schedule, data: bool):
        self.schedule, self.data = schedule, data
        self.nodes, self.x_lin, self.m_lin, self.ends_step, self.noise = [], [], [], [], []

    @property
    def t(self):
        return [n.t for n in self.nodes]

    def add(self, node, anchor_coef, lin: dict, ends_step: bool, anchor_row=None, noise=0.0):
        """Row i = len(rows) evaluates the model at ``node`` (a Node or a time):
        x_{i+1} = anchor_coef * x_{anchor_row} + sum_k lin[k] * M_k
        (+ noise * z_i; only rows whose anchor is their own point may add noise)."""
        if not isinstance(node, Node):
            node = _node(self.schedule, node)
        i = len(self.nodes)
        if noise and anchor_row not in (None, i):
            raise AssertionError("internal: noise in a row with a distant anchor")  # pragma: no cover
        coefs = [float(anchor_coef), float(noise)] + [float(c) for c in lin.values()]
        if not np.all(np.isfinite(coefs)):
            raise AssertionError(f"internal: non-finite coefficient in row {i}: {coefs}")  # pragma: no cover
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


def _first_order(data: bool, ps: C.Point, pt: C.Point):
    """DDIM step, also where lambda is infinite at an end.

    Data prediction: ``x_t = (sigma_t / sigma_s) x_s + alpha_t (1 - e^{-h}) x0`` is
    finite for h = +inf (it is ``sigma_t x_s + alpha_t x0`` from alpha_s = 0 and
    ``alpha_t x0`` to sigma_t = 0). Noise prediction to sigma_t = 0 uses the limit
    ``sigma_t (e^h - 1) -> alpha_t sigma_s / alpha_s``: ``x_t = (alpha_t / alpha_s)(x_s - sigma_s eps)``.
    """
    if data or pt.sigma > 0.0:
        return C.first_order(data, ps, pt, m_s=0)
    ratio = float(np.exp(pt.log_alpha - ps.log_alpha))
    return ratio, {0: -ratio * ps.sigma}


def _sde_first_order_to_data(data: bool, ps: C.Point, pt: C.Point):
    """Stochastic first-order step to sigma_t = 0 (the limits of ``C.sde_multistep``):
    data prediction ``alpha_t x0`` (no noise); noise prediction
    ``(alpha_t / alpha_s)(x_s - 2 sigma_s eps + sigma_s z)``."""
    if data:
        return 0.0, {0: float(np.exp(pt.log_alpha))}, 0.0
    ratio = float(np.exp(pt.log_alpha - ps.log_alpha))
    return ratio, {0: -2.0 * ratio * ps.sigma}, ratio * ps.sigma


def _cap_orders(orders, nodes):
    """Lowers the order of steps whose history meets an infinite or repeated lambda.

    Step k (from nodes[k-1] to nodes[k]) of order o uses nodes[k-o .. k]: o = 1 if
    the target is the data (lambda = +inf), the start is pure noise (lambda = -inf)
    or the step has zero length; otherwise o is at most the number of nodes since
    the last infinite one, so no ratio of lambda differences is inf/inf or x/0.
    """
    out = []
    lam = [n.p.lam for n in nodes]
    for k, o in enumerate(orders, start=1):
        if not (np.isfinite(lam[k - 1]) and np.isfinite(lam[k])) or lam[k] == lam[k - 1]:
            o = 1
        while o > 1 and not all(np.isfinite(lam[j]) for j in range(k - o, k)):
            o -= 1
        while o > 1 and any(lam[j] == lam[j + 1] for j in range(k - o, k - 1)):
            o -= 1
        out.append(o)
    return out


def _plan_multistep(rows: _Rows, nodes, orders, solver_type, e2_weight, stochastic=False):
    pts = [n.p for n in nodes]
    for k, o in enumerate(orders, start=1):
        i = k - 1  # row i evaluates at nodes[k-1] and steps to nodes[k]
        if stochastic:
            if o == 1 and pts[k].sigma == 0.0:
                a, lin, noise = _sde_first_order_to_data(rows.data, pts[i], pts[k])
            else:
                a, lin, noise = C.sde_multistep(rows.data, pts[i - o + 1:i + 1], pts[k], solver_type,
                                                e2_weight)
            rows.add(nodes[i], a, {key + i: c for key, c in lin.items()}, True, noise=noise)
            continue
        if o == 1:
            a, lin = _first_order(rows.data, pts[i], pts[k])
        elif o == 2:
            a, lin = C.multistep_2(rows.data, pts[i - 1], pts[i], pts[k], solver_type)
        else:
            a, lin = C.multistep_3(rows.data, pts[i - 2], pts[i - 1], pts[i], pts[k], e2_weight)
        rows.add(nodes[i], a, {key + i: c for key, c in lin.items()}, True)  # key 0 is row i


def _plan_unipc(rows: _Rows, nodes, orders, variant: str, use_corrector: bool):
    """UniPC: row i evaluates M_i at the predicted point x~_i, corrects the step that
    ended there (UniC, using M_i: no extra model call), and predicts x~_{i+1} from the
    corrected x_i (UniP). The corrected state is kept as c x~_i + E . M, where
    x_{i-1} = (x~_i - P_{i-1} . M) / a_{i-1} undoes the previous prediction, so every
    row is written in terms of its own point. A step next to an infinite lambda is
    predicted with first order and not corrected."""
    data, pts = rows.data, [n.p for n in nodes]
    lam = [p.lam for p in pts]
    prev = None  # (a, P) of the previous row's prediction, absolute keys
    for i in range(len(orders)):
        cx, e_lin = 1.0, {}
        if i >= 1 and use_corrector:
            q = orders[i - 1]
            used = lam[i - q:i + 1]
            if all(np.isfinite(used)) and len(set(used)) == len(used):
                a_c, c_lin = C.unipc(data, pts[i - q:i], pts[i], variant, corrector=True)
                a_p, p_lin = prev
                cx = a_c / a_p
                e_lin = C._lin((1.0, {k + i - 1: v for k, v in c_lin.items()}), (-cx, p_lin))
        o = orders[i]
        if o == 1:
            a_p, p_lin = _first_order(data, pts[i], pts[i + 1])
        else:
            a_p, p_lin = C.unipc(data, pts[i - o + 1:i + 1], pts[i + 1], variant, corrector=False)
        p_abs = {k + i: v for k, v in p_lin.items()}
        rows.add(nodes[i], a_p * cx, C._lin((a_p, e_lin), (1.0, p_abs)), True)
        prev = (a_p, p_abs)


def _plan_singlestep_nodes(rows: _Rows, nodes, call_orders, solver_type):
    """Singlestep DPM-Solver on a grid of nodes (diffusers' form): call c of order o
    evaluates the model at nodes[c] and steps from the anchor nodes[c-o+1] to
    nodes[c+1] with a singlestep update of order o whose intermediate points are the
    nodes in between; a call of order 1 starts a new step (its point is the anchor)."""
    data, pts = rows.data, [n.p for n in nodes]
    n_calls = len(call_orders)
    for c, o in enumerate(call_orders):
        a = c - o + 1
        ends = c == n_calls - 1 or call_orders[c + 1] == 1
        pa, pt = pts[a], pts[c + 1]
        if o == 1:
            ratio, lin = _first_order(data, pts[c], pt)
            rows.add(nodes[c], ratio, {c: lin[0]}, ends)
            continue
        h = pt.lam - pa.lam
        if o == 2:
            ratio, lin = C.singlestep_2(data, pa, pt, (pts[c].lam - pa.lam) / h, solver_type)
            keys = {"s": a, "1": c}
        else:
            ratio, lin = C.singlestep_3(data, pa, pt, (pts[a + 1].lam - pa.lam) / h,
                                        (pts[c].lam - pa.lam) / h, solver_type)
            keys = {"s": a, "1": a + 1, "2": c}
        rows.add(nodes[c], ratio, {keys[k]: v for k, v in lin.items()}, ends, anchor_row=a)


def _cap_call_orders(call_orders, nodes):
    """Per-call singlestep orders made valid next to infinite or repeated lambdas:
    a step (anchor a to target c+1) of order > 1 needs finite, distinct lambdas at
    nodes a .. c+1; otherwise the call is lowered, and later calls of the same step
    may not reach behind the new anchor."""
    lam = [n.p.lam for n in nodes]
    out, anchor = [], 0
    for c, o in enumerate(call_orders):
        o = min(o, c - anchor + 1)
        while o > 1:
            used = lam[c - o + 1:c + 2]
            if all(np.isfinite(used)) and len(set(used)) == len(used):
                break
            o -= 1
        if o == 1:
            anchor = c
        out.append(o)
    return out


def expand_groups(groups) -> list[int]:
    """Singlestep step orders [3, 2] -> per-call orders [1, 2, 3, 1, 2]."""
    return [j for o in groups for j in range(1, o + 1)]


def diffusers_singlestep_orders(steps: int, order: int, lower_order_final: bool,
                                final_zero: bool) -> list[int]:
    """Per-call orders of diffusers' DPMSolverSinglestepScheduler (``get_order_list``):
    with lower_order_final, order 3: [1,2,3]*(n//3 - 1) + [1,2] + [1] (n % 3 == 0),
    [1,2,3]*(n//3) + [1] (== 1), [1,2,3]*(n//3) + [1,2] (== 2); order 2: [1,2]*(n//2 - 1)
    + [1,1] (even), [1,2]*(n//2) + [1] (odd); without it [1..order]*(n//order). It is
    forced on when n % order != 0 or the grid ends at sigma = 0, where the last call
    is first order."""
    if not lower_order_final and (steps % order or final_zero):
        lower_order_final = True
    if order == 1:
        orders = [1] * steps
    elif not lower_order_final:
        orders = list(range(1, order + 1)) * (steps // order)
    elif order == 3:
        orders = {0: [1, 2, 3] * (steps // 3 - 1) + [1, 2, 1], 1: [1, 2, 3] * (steps // 3) + [1],
                  2: [1, 2, 3] * (steps // 3) + [1, 2]}[steps % 3]
    else:
        orders = [1, 2] * (steps // 2 - 1) + [1, 1] if steps % 2 == 0 else [1, 2] * (steps // 2) + [1]
    if final_zero:
        orders[-1] = 1
    return orders


def diffusers_multistep_orders(steps: int, order: int, lower_order_final, euler_at_final: bool,
                               threshold: float = 15) -> list[int]:
    """Per-step orders of diffusers' DPMSolverMultistep / UniPC rules: warm-up
    min(order, k); with ``lower_order_final`` and steps < threshold the last steps
    drop to min(order, steps + 1 - k) (threshold 15 for DPMSolverMultistep, inf for
    UniPC); ``euler_at_final`` makes the last step first order."""
    orders = []
    for k in range(1, steps + 1):
        o = min(order, k)
        if lower_order_final and steps < threshold:
            o = min(o, steps + 1 - k)
        if euler_at_final and k == steps:
            o = 1
        orders.append(o)
    return orders


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
    *,
    final_sigmas_type: str | None = None,
    euler_at_final: bool = False,
    karras_rho: float = 7.0,
    steps_offset: int = 0,
) -> Plan:
    """Plans a fixed-grid DPM-Solver(++) run on the host, in float64.

    ``t_start``/``t_end`` default to ``schedule.T``/``schedule.t_eps`` (sampling);
    pass ``t_start < t_end`` to integrate upwards (inversion). Options as in
    :func:`dpm_jax.sample`; ``method`` is "singlestep", "multistep",
    "singlestep_fixed" or "unipc". ``multistep3_variant`` selects the third-order
    multistep update: "reference" (as published, formally second order) or
    "third_order" (its second-difference term doubled, formally third order).

    Two families of grids:

    - the reference implementation's (``skip_type`` "time_uniform", "logSNR",
      "time_quadratic" and no ``final_sigmas_type``): steps + 1 times from
      t_start to t_end, and the reference's order rules (``lower_order_final``
      below 10 steps; DPM-Solver-fast's singlestep orders);
    - diffusers' (``skip_type`` "karras", "exponential", "linspace", "leading",
      "trailing", or any ``final_sigmas_type``, or ``euler_at_final``): ``steps``
      model nodes and a final node (see :func:`grid_nodes`; "zero" is the
      default final node of these spacings), and diffusers' order rules
      (multistep: ``lower_order_final`` below 15 steps; UniPC: always; singlestep:
      diffusers' order list, its intermediate points are grid nodes).

    Infinite half log-SNR at an end (alpha = 0 at the start: flow models at t = 1,
    zero-terminal-SNR tables; sigma = 0 at the end: the data) is exact: a step
    touching it is a first-order step in closed form (``sigma_t x + alpha_t x0``
    from pure noise, ``alpha_t x0`` to the data), and the steps after it use no
    history from beyond it. Noise-prediction algorithms cannot start at alpha = 0.

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
    _checks.check_bool("euler_at_final", euler_at_final)
    if final_sigmas_type is not None:
        _checks.check_choice("final_sigmas_type", final_sigmas_type, ("zero", "sigma_min"))
    _checks.check_positive("karras_rho", karras_rho)
    _checks.check_int("steps_offset", steps_offset, 0)
    if method == "adaptive":
        raise ValueError("build_plan(): method='adaptive' chooses its grid on the fly and has no "
                         "plan; call dpm_jax.sample(..., method='adaptive').")
    data = algorithm_type.endswith("++")
    node_mode = skip_type in NODE_SKIPS or final_sigmas_type is not None or euler_at_final
    if skip_type in ("linspace", "leading", "trailing") and final_sigmas_type is None:
        final_sigmas_type = "zero"
    if node_mode and t_start < t_end:
        raise ValueError("final_sigmas_type, euler_at_final and the diffusers spacings "
                         f"(skip_type={skip_type!r}) are for sampling (t_start > t_end), not inversion.")
    if node_mode and method == "singlestep_fixed":
        raise ValueError("method='singlestep_fixed' uses the reference grid; with diffusers' "
                         "spacings or final_sigmas_type use method='singlestep'.")
    # every method but singlestep_fixed runs on (or, for the reference's logSNR singlestep,
    # starts and ends with) these nodes; time_grid refuses logSNR with an infinite end
    nodes = None if method == "singlestep_fixed" else grid_nodes(
        schedule, skip_type, t_start, t_end, steps, final_sigmas_type, karras_rho, steps_offset)
    ends = ([schedule.marginal_lambda(np.float64(t)) for t in (t_start, t_end)] if nodes is None
            else [nodes[0].p.lam, nodes[-1].p.lam])
    if t_start < t_end and not all(np.isfinite(ends)):
        raise ValueError(f"Inversion (t_start < t_end) needs a finite half log-SNR at both ends: "
                         f"it is {ends[0]} at t_start={t_start} and {ends[1]} at t_end={t_end} "
                         "(sigma = 0 or alpha = 0 there; the ODE is singular at the data and at pure "
                         "noise). Move t_start/t_end inside the schedule.")
    if not data and ends[0] == -np.inf:
        raise ValueError(f"algorithm_type={algorithm_type!r} integrates the noise prediction, which "
                         "is undefined at alpha = 0 (pure noise, lambda = -inf) where this run starts; "
                         "use 'dpmsolver++' / 'sde-dpmsolver++', or start at t_start < T.")
    if denoise_to_zero and ends[1] == np.inf:
        raise ValueError("denoise_to_zero=True: this run already ends on the data (sigma = 0).")
    rows = _Rows(schedule, data)
    infinite = not all(np.isfinite(ends))
    if method == "unipc":
        if node_mode:
            orders = diffusers_multistep_orders(steps, order, lower_order_final, euler_at_final,
                                                threshold=np.inf)
        else:
            orders = multistep_orders(steps, order, lower_order_final)
        _plan_unipc(rows, nodes, _cap_orders(orders, nodes), unipc_variant, unipc_corrector)
    elif method == "multistep":
        if node_mode:
            orders = diffusers_multistep_orders(steps, order, lower_order_final, euler_at_final)
        else:
            orders = multistep_orders(steps, order, lower_order_final)
        _plan_multistep(rows, nodes, _cap_orders(orders, nodes), solver_type,
                        2.0 if multistep3_variant == "third_order" else 1.0,
                        stochastic=algorithm_type.startswith("sde-"))
    elif method == "singlestep" and (node_mode or infinite):
        if node_mode:
            calls = diffusers_singlestep_orders(steps, order, lower_order_final,
                                                final_sigmas_type == "zero")
        else:
            calls = expand_groups(singlestep_orders(steps, order))
        _plan_singlestep_nodes(rows, nodes, _cap_call_orders(calls, nodes), solver_type)
    else:
        if infinite:
            raise ValueError(f"method={method!r} with skip_type={skip_type!r} needs a finite half "
                             "log-SNR at t_start and t_end (alpha = 0 or sigma = 0 there); use "
                             "method='singlestep' with skip_type='time_uniform', or move "
                             "t_start/t_end inside the schedule.")
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
    x_coef, m_coef = rows.tables()
    return Plan(
        t=np.asarray([n.t for n in rows.nodes], np.float64),
        t_input=np.asarray([n.t_input for n in rows.nodes], np.float64),
        alpha=np.asarray([np.exp(n.p.log_alpha) for n in rows.nodes], np.float64),
        sigma=np.asarray([n.p.sigma for n in rows.nodes], np.float64),
        x_coef=x_coef,
        m_coef=m_coef,
        intermediate_rows=np.nonzero(rows.ends_step)[0].astype(np.int32),
        noise_coef=np.asarray(rows.noise, np.float64),
        algorithm_type=algorithm_type,
        stochastic=algorithm_type.startswith("sde-"),
        include_start=method in ("multistep", "unipc"),
        denoise_to_zero=bool(denoise_to_zero),
    )
