"""Time grids: where a run evaluates the model.

A grid gives the nodes of a run (times with alpha, sigma, lambda there) and
carries the order rule of its family (:mod:`dpm_jax.plan.orders`):

- :class:`Spacing`: the reference implementation's spacings "time_uniform",
  "logSNR", "time_quadratic" (steps + 1 times from t_start to t_end; the
  reference's order rules). Singlestep solvers also place their inner points
  with the spacing (:meth:`Spacing.times`).
- :class:`DiffusersGrid`: diffusers' and EDM's spacings "karras", "exponential",
  "lu", "linspace", "leading", "trailing", or any spacing with ``final_sigmas_type``
  or ``euler_at_final`` (``steps`` model nodes and a final node; diffusers'
  order rules; singlestep calls sit on grid nodes). ``spacing_rule`` picks whose
  timesteps a discrete table gets (DPMSolver's, DDIM's or Euler's), ``begin_index``
  restarts a run inside the grid (image-to-image), and an upward run
  (``final_sigmas_type="sigma_max"``) is DPMSolverMultistepInverseScheduler's grid.
- :class:`ExplicitGrid`: the user's own nodes, ``timesteps=`` (times t in the
  schedule's units) or ``sigmas=`` (sigma_t / alpha_t, the k-diffusion / EDM
  convention, may end with 0 = the data); the reference's order rules, and
  singlestep inner points uniform in lambda between the given outer boundaries.

:func:`grid_from_options` picks the grid of a run from its options.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import jax.numpy as jnp
import numpy as np

from dpm_jax import _checks
from dpm_jax.plan.nodes import DATA_NODE, Node, is_jax, node
from dpm_jax.plan.orders import DIFFUSERS, REFERENCE, OrderRule
from dpm_jax.schedules import Schedule

__all__ = [
    "SKIP_TYPES",
    "SPACINGS",
    "NODE_SKIPS",
    "Spacing",
    "SPACING_RULES",
    "DiffusersGrid",
    "ExplicitGrid",
    "grid_from_options",
    "grid_nodes",
    "grid_landings",
    "time_grid",
]

#: The reference implementation's spacings.
SPACINGS = ("time_uniform", "logSNR", "time_quadratic")
#: Spacings that come from diffusers (discrete tables: "linspace", "leading",
#: "trailing") or EDM ("karras"), "exponential" (uniform in log sigma) and "lu"
#: (uniform in lambda, Lu et al. 2022: "exponential" whose table timesteps are rounded,
#: diffusers' ``use_lu_lambdas``).
NODE_SKIPS = ("karras", "exponential", "linspace", "leading", "trailing", "lu")
SKIP_TYPES = SPACINGS + NODE_SKIPS
_DISCRETE_SKIPS = ("linspace", "leading", "trailing")
_SIGMA_SKIPS = ("karras", "exponential", "lu")
#: Whose timesteps a discrete table's diffusers spacing gets: DPMSolverMultistep's (also
#: DPMSolverSinglestep, UniPC, DEIS and the inverse scheduler), DDIMScheduler's, or
#: EulerDiscreteScheduler's (also HeunDiscreteScheduler's).
SPACING_RULES = ("dpmsolver", "ddim", "euler")
#: ``sigmas=`` entries outside the schedule's range of sigma / alpha by at most this
#: relative amount are clipped to the range (published grids are rounded); further out
#: they are refused.
SIGMA_RTOL = 1e-3


def time_grid(
    schedule: Schedule, skip_type: str, t_start: float, t_end: float, n: int
) -> np.ndarray:
    """n + 1 times from t_start to t_end (either direction), float64.

    "time_uniform": linspace(t_start, t_end); "logSNR": t(linspace(lambda(t_start),
    lambda(t_end))); "time_quadratic": linspace(sqrt(t_start), sqrt(t_end))^2.
    """
    if skip_type == "logSNR":
        lam0 = schedule.marginal_lambda(np.float64(t_start))
        lam1 = schedule.marginal_lambda(np.float64(t_end))
        if not (np.isfinite(lam0) and np.isfinite(lam1)):
            raise ValueError(
                f"skip_type='logSNR' spaces the half log-SNR uniformly and needs it "
                f"finite at both ends; it is {lam0} at t_start={t_start} and {lam1} at "
                f"t_end={t_end} (alpha = 0 or sigma = 0 there). Move t_start/t_end "
                "inside, or use 'time_uniform' / 'karras' with final_sigmas_type='zero'."
            )
        lam = np.linspace(lam0, lam1, n + 1)
        return schedule.inverse_lambda(lam)
    if skip_type == "time_uniform":
        return np.linspace(t_start, t_end, n + 1)
    if skip_type == "time_quadratic":
        return np.linspace(np.sqrt(t_start), np.sqrt(t_end), n + 1) ** 2
    raise ValueError(f"skip_type must be one of {SKIP_TYPES}, got {skip_type!r}.")


def _sigma_hat(lam):
    """sigma / alpha = e^{-lambda} (the VE / EDM / diffusers "sigma")."""
    with np.errstate(over="ignore"):
        return np.exp(-np.float64(lam))


def _table_index(schedule: Schedule, lam) -> np.ndarray:
    """diffusers' ``_sigma_to_t``: the fractional table index of half log-SNR lam,
    linear in log sigma between entries, clamped to the table."""
    t_array, log_alphas = schedule.marginal_log_alpha.table  # type: ignore[attr-defined]
    with np.errstate(divide="ignore"):
        log_sig = 0.5 * np.log(-np.expm1(2.0 * log_alphas)) - log_alphas  # -lambda_n, increasing
    return np.interp(
        -np.asarray(lam, np.float64), log_sig, np.arange(log_sig.shape[0], dtype=np.float64)
    )


def _discrete_timesteps(
    skip_type: str, n_train: int, n: int, steps_offset: int, rule: str = "dpmsolver"
) -> np.ndarray:
    """diffusers' timesteps (``set_timesteps``) of a discrete model, descending.

    "dpmsolver" (DPMSolverMultistep and kin): ``steps`` of the ``steps + 1`` points
    above timestep 0 (linspace: ``linspace(0, N - 1, n + 1)`` rounded; leading:
    multiples of ``N // (n + 1)``); "ddim" / "euler": the last call on timestep 0
    (linspace: ``linspace(0, N - 1, n)``, rounded for DDIM, fractional for Euler;
    leading: multiples of ``N // n``). trailing: ``round(arange(N, 0, -N / n)) - 1``
    for all three.
    """
    ts: np.ndarray
    if skip_type == "linspace":
        if rule == "dpmsolver":
            ts = np.linspace(0, n_train - 1, n + 1).round()[::-1][:-1]
        else:
            ts = np.linspace(0, n_train - 1, n)[::-1]
            if rule == "ddim":
                ts = ts.round()
    elif skip_type == "leading":
        ratio = n_train // (n + 1) if rule == "dpmsolver" else n_train // n
        ts = (np.arange(0, n + 1 if rule == "dpmsolver" else n) * ratio).round()[::-1]
        ts = (ts[:-1] if rule == "dpmsolver" else ts) + steps_offset
    else:  # trailing
        ts = np.arange(n_train, 0, -n_train / n).round() - 1
    return ts if rule == "euler" else ts.astype(np.int64)


def _inverse_timesteps(skip_type: str, n_train: int, n: int, steps_offset: int) -> np.ndarray:
    """DPMSolverMultistepInverseScheduler's timesteps, ascending (``noisiest = N - 1``):
    linspace ``linspace(0, N - 1, n + 1)`` rounded, leading multiples of ``N // (n + 1)``
    (+ offset), both without their last point; trailing ``round(arange(N, 0, -N / n)) - 1``
    reversed."""
    ts: np.ndarray
    if skip_type == "linspace":
        ts = np.linspace(0, n_train - 1, n + 1).round()[:-1]
    elif skip_type == "leading":
        ts = (np.arange(0, n + 1) * (n_train // (n + 1))).round()[:-1] + steps_offset
    else:
        ts = np.arange(n_train, 0, -n_train / n).round()[::-1] - 1
    return ts.astype(np.int64)


def _table_node(schedule: Schedule, k) -> Node:
    """The node of table entry k (an integer, or a fractional index whose sigma / alpha is
    interpolated linearly in the index, as diffusers' ``np.interp`` does): time
    t_k = (k + 1) / N, the network's time input ``k * input_scale / N``."""
    n_train, scale = schedule.total_N, schedule.input_scale
    if float(k) == int(k):
        return node(schedule, (k + 1.0) / n_train, k * scale / n_train)
    t_array, log_alphas = schedule.marginal_log_alpha.table  # type: ignore[attr-defined]
    with np.errstate(divide="ignore"):
        sig = np.exp(-(log_alphas - 0.5 * np.log(-np.expm1(2.0 * log_alphas))))
    s_k = np.interp(k, np.arange(sig.shape[0], dtype=np.float64), sig)
    t = float(schedule.inverse_lambda(np.float64(-np.log(s_k))))
    return node(schedule, t, k * scale / n_train)


def _discrete_nodes(
    schedule, skip_type, steps, final_sigmas_type, steps_offset, rule, upward
) -> tuple[list[Node], list[Node] | None]:
    """(nodes, landings) of a discrete spacing; landings is the node each step ends on
    where it is not the next model node (DDIM's ``prev_timestep = t - N // steps``),
    else None."""
    n_train = schedule.total_N
    if upward:
        ks = _inverse_timesteps(skip_type, n_train, steps, steps_offset)
    else:
        ks = _discrete_timesteps(skip_type, n_train, steps, steps_offset, rule)
    if ks.shape[0] != steps or ks.min() < 0 or ks.max() >= n_train:
        raise ValueError(
            f"skip_type={skip_type!r} with steps={steps} and steps_offset="
            f"{steps_offset} gives timesteps {ks.tolist()} outside the table "
            f"0..{n_train - 1}."
        )
    nodes = [_table_node(schedule, k) for k in ks]
    if upward:  # the inverse scheduler ends on its noisiest entry
        return nodes + [_table_node(schedule, n_train - 1)], None
    if rule != "ddim":
        return nodes, None
    # DDIM: step k goes from timestep t_k to t_k - N // steps; a negative one is the
    # final alpha (1: "zero", set_alpha_to_one; alphas_cumprod[0]: "sigma_min").
    prev = ks - n_train // steps
    final = DATA_NODE if final_sigmas_type == "zero" else _table_node(schedule, 0)
    lands = [final if p < 0 else _table_node(schedule, p) for p in prev]
    nodes.append(lands[-1])
    if all(p == k for p, k in zip(prev[:-1], ks[1:])):
        return nodes, None
    return nodes, lands


def grid_nodes(
    schedule: Schedule,
    skip_type: str,
    t_start: float,
    t_end: float,
    steps: int,
    final_sigmas_type: str | None = None,
    karras_rho: float = 7.0,
    steps_offset: int = 0,
    spacing_rule: str = "dpmsolver",
) -> list[Node]:
    """The steps + 1 grid nodes of a run, from t_start towards t_end.

    Without ``final_sigmas_type`` the nodes are the :func:`time_grid` (or, for
    "karras" / "exponential", the sigma-spaced points) from t_start to t_end. With
    it, ``steps`` nodes are spaced as diffusers does (the first ``steps`` of that
    grid for the reference spacings; "karras" / "exponential": ``steps`` points
    with both ends included; "linspace" / "leading" / "trailing": diffusers'
    integer timesteps of a discrete table, with ``steps_offset``) and the last
    node is the data (``"zero"``: sigma = 0), the schedule's t_eps (``"sigma_min"``) or
    the last model node again (``"repeat"``: a last step of zero length, which leaves the
    state as it is; diffusers' DEISMultistepScheduler does this on its sigma grids).

    "karras": sigma^(1/rho) uniform between sigma(t_start) and sigma(t_end), with
    sigma = e^{-lambda} (Karras et al. 2022, eq. 5); "exponential" and "lu": log sigma
    uniform. On a discrete table the network gets diffusers' integer timestep of
    each sigma (rounded for "karras" and "lu", truncated for "exponential"; the
    fractional one with ``spacing_rule="euler"``).

    ``spacing_rule`` (discrete tables): whose timesteps "linspace" / "leading" /
    "trailing" give (:func:`_discrete_timesteps`); "ddim" steps from each timestep t to
    ``t - N // steps`` (DDIMScheduler's ``prev_timestep``): see :func:`grid_landings`
    for grids where that is not the next model node. ``final_sigmas_type="sigma_max"``
    marks an upward run (t_start < t_end: DPMSolverMultistepInverseScheduler's grid,
    which ends on the table's noisiest entry; on sigma grids its last node repeats).
    """
    return _grid(
        schedule,
        skip_type,
        t_start,
        t_end,
        steps,
        final_sigmas_type,
        karras_rho,
        steps_offset,
        spacing_rule,
    )[0]


def grid_landings(
    schedule: Schedule,
    skip_type: str,
    steps: int,
    final_sigmas_type: str | None,
    steps_offset: int = 0,
    spacing_rule: str = "dpmsolver",
) -> list[Node] | None:
    """Where each step of a ``spacing_rule="ddim"`` grid ends, if that is not always the
    next model node (None otherwise).

    DDIMScheduler steps from timestep t to ``t - N // steps``; its "leading" timesteps are
    multiples of that, but "linspace" (999, 888, ...: steps to 899, then calls the model at
    888) and "trailing" with N / steps not an integer are not. The state after a step is
    then taken as the next model node's, as DDIM does (its next step starts there).
    """
    if spacing_rule != "ddim" or skip_type not in _DISCRETE_SKIPS:
        return None
    return _discrete_nodes(
        schedule, skip_type, steps, final_sigmas_type, steps_offset, "ddim", False
    )[1]


def _grid(
    schedule,
    skip_type,
    t_start,
    t_end,
    steps,
    final_sigmas_type,
    karras_rho,
    steps_offset,
    spacing_rule,
) -> tuple[list[Node], list[Node] | None]:
    with_final = final_sigmas_type is not None
    upward = final_sigmas_type == "sigma_max"
    n_pts = steps if with_final else steps + 1
    if skip_type in _DISCRETE_SKIPS:
        if not schedule.is_discrete:
            raise ValueError(
                f"skip_type={skip_type!r} is diffusers' spacing of a discrete table; "
                f"the {schedule.name!r} schedule is continuous (use 'time_uniform', "
                "'logSNR', 'karras' or 'exponential')."
            )
        if not with_final:
            raise AssertionError(
                "internal: discrete spacing without a final node"
            )  # pragma: no cover
        nodes, lands = _discrete_nodes(
            schedule, skip_type, steps, final_sigmas_type, steps_offset, spacing_rule, upward
        )
        if spacing_rule == "ddim" or upward:
            return nodes, lands
    elif skip_type in _SIGMA_SKIPS:
        lam0 = float(schedule.marginal_lambda(np.float64(t_start)))
        lam1 = float(schedule.marginal_lambda(np.float64(t_end)))
        if not (np.isfinite(lam0) and lam1 > -np.inf) or not np.isfinite(_sigma_hat(lam0)):
            raise ValueError(
                f"skip_type={skip_type!r} needs a finite noise level sigma/alpha at "
                f"t_start={t_start} (alpha = 0 there); start slightly below T."
            )
        s0, s1 = _sigma_hat(lam0), _sigma_hat(lam1)
        if with_final and s1 == 0.0:
            raise ValueError(
                f"final_sigmas_type={final_sigmas_type!r} appends a final node after the "
                f"{skip_type!r} grid, which already ends on the data at t_end={t_end} "
                "(sigma = 0); pass a t_end with sigma > 0, or final_sigmas_type=None."
            )
        ramp = np.linspace(0.0, 1.0, n_pts)
        if skip_type == "karras":
            sig = (
                s0 ** (1.0 / karras_rho)
                + ramp * (s1 ** (1.0 / karras_rho) - s0 ** (1.0 / karras_rho))
            ) ** karras_rho
        else:
            if s1 == 0.0:
                raise ValueError(
                    "skip_type='exponential' needs sigma > 0 at t_end; use "
                    "final_sigmas_type='zero' to end on the data."
                )
            sig = np.exp(np.log(s0) + ramp * (np.log(s1) - np.log(s0)))
        with np.errstate(divide="ignore"):
            lams = -np.log(sig)
        ts = schedule.inverse_lambda(lams)
        ts[0] = t_start
        if ts.shape[0] > 1:  # (one point: the start, as diffusers and k-diffusion have it)
            ts[-1] = t_end
        if schedule.is_discrete:
            idx = _table_index(schedule, lams)
            if spacing_rule != "euler":
                idx = np.floor(idx) if skip_type == "exponential" else np.round(idx)
            inputs = idx * schedule.input_scale / schedule.total_N
        else:
            inputs = [None] * len(ts)
        nodes = [node(schedule, t, ti) for t, ti in zip(ts, inputs)]
    else:
        ts = time_grid(schedule, skip_type, t_start, t_end, steps)
        nodes = [node(schedule, t) for t in (ts[:-1] if with_final else ts)]
    if with_final:
        if final_sigmas_type == "zero":
            nodes.append(DATA_NODE)
        elif final_sigmas_type in ("repeat", "sigma_max"):  # a zero-length last step
            nodes.append(nodes[-1])  # (diffusers' DEIS and inverse scheduler)
        else:
            nodes.append(node(schedule, schedule.t_eps))
        if nodes[-1].p.lam < nodes[-2].p.lam:
            raise ValueError(
                f"final_sigmas_type='sigma_min' ends on the schedule's t_eps="
                f"{schedule.t_eps:g}, noisier than the grid's last node at t_end="
                f"{t_end:g}; pass t_end >= t_eps or final_sigmas_type='zero'."
            )
    return nodes, None


# ----------------------------------------------------------------------------- grid objects


@dataclasses.dataclass(frozen=True)
class Spacing:
    """A reference spacing ("time_uniform", "logSNR" or "time_quadratic"): steps + 1
    times from t_start to t_end (:func:`time_grid`), the reference's order rules."""

    name: str
    rule: OrderRule = REFERENCE
    family: ClassVar[str] = "spacing"

    def span(self, schedule: Schedule, t_start, t_end, steps, direction):
        """(t_start, t_end, steps) of the run: the options' span, checked."""
        t_start, t_end = _checks.check_times(schedule, t_start, t_end, direction)
        return t_start, t_end, 20 if steps is None else steps

    def times(self, schedule: Schedule, t0: float, t1: float, n: int) -> np.ndarray:
        """n + 1 times from t0 to t1 on this spacing (also a singlestep step's inner points)."""
        return time_grid(schedule, self.name, t0, t1, n)

    def nodes(self, schedule: Schedule, t_start, t_end, steps) -> list[Node]:
        return grid_nodes(schedule, self.name, t_start, t_end, steps)

    def landings(self, schedule: Schedule, t_start, t_end, steps) -> None:
        """Every step ends on the next node."""
        del schedule, t_start, t_end, steps


@dataclasses.dataclass(frozen=True)
class DiffusersGrid:
    """diffusers' grid family (see :func:`grid_nodes`): ``skip_type`` (any spacing),
    ``final_sigmas_type`` None / "zero" / "sigma_min" / "repeat" / "sigma_max" (upward),
    ``karras_rho``, ``steps_offset``, ``spacing_rule``; diffusers' order rules.

    ``begin_index`` b > 0 runs the grid of ``steps`` from its node b (image-to-image, as
    a pipeline's ``timesteps[b:]`` with ``set_begin_index(b)``): steps - b model calls,
    the orders of the full grid's steps b.. with the warm-up starting again at b (no
    model values from before the restart)."""

    skip_type: str
    final_sigmas_type: str | None = None
    karras_rho: float = 7.0
    steps_offset: int = 0
    rule: OrderRule = DIFFUSERS
    spacing_rule: str = "dpmsolver"
    begin_index: int = 0
    family: ClassVar[str] = "diffusers"

    def span(self, schedule: Schedule, t_start, t_end, steps, direction):
        t_start, t_end = _checks.check_times(schedule, t_start, t_end, direction)
        steps = 20 if steps is None else steps
        up = self.final_sigmas_type == "sigma_max"
        if (t_start < t_end) != up:
            raise ValueError(
                "final_sigmas_type, euler_at_final and the diffusers spacings "
                f"(skip_type={self.skip_type!r}) are for sampling (t_start > t_end), "
                "not inversion; DPMSolverMultistepInverseScheduler's upward grid is "
                "final_sigmas_type='sigma_max' with dpm_jax.inverse."
                if not up
                else "final_sigmas_type='sigma_max' (DPMSolverMultistepInverseScheduler's "
                "grid) runs upwards, from the data side to the noise: call "
                "dpm_jax.inverse (t_start < t_end)."
            )
        if up and self.skip_type not in NODE_SKIPS:
            raise ValueError(
                "final_sigmas_type='sigma_max' (an inversion on diffusers' grid) takes "
                f"skip_type {', '.join(map(repr, NODE_SKIPS))}; got {self.skip_type!r}."
            )
        if self.begin_index >= steps:
            raise ValueError(
                f"`begin_index`={self.begin_index} must be smaller than `steps`={steps} "
                "(the run starts at that node of the grid of `steps`)."
            )
        return t_start, t_end, steps - self.begin_index

    def _full(self, schedule, t_start, t_end, steps):
        return _grid(
            schedule,
            self.skip_type,
            t_start,
            t_end,
            steps + self.begin_index,
            self.final_sigmas_type,
            self.karras_rho,
            self.steps_offset,
            self.spacing_rule,
        )

    def nodes(self, schedule: Schedule, t_start, t_end, steps) -> list[Node]:
        """The nodes of the run (``steps`` from :meth:`span`): the grid's from begin_index."""
        return self._full(schedule, t_start, t_end, steps)[0][self.begin_index :]

    def landings(self, schedule: Schedule, t_start, t_end, steps) -> list[Node] | None:
        """Where each step ends, where that is not the next node (:func:`grid_landings`)."""
        lands = self._full(schedule, t_start, t_end, steps)[1]
        return None if lands is None else lands[self.begin_index :]


@dataclasses.dataclass(frozen=True, eq=False)
class ExplicitGrid:
    """The user's own grid: ``kind`` "timesteps" (times t, in the schedule's units) or
    "sigmas" (sigma_t / alpha_t; a last entry 0 is the data; entries within
    :data:`SIGMA_RTOL` outside the schedule's range are clipped to it), ``values`` the
    nodes from first to last (1-D float64, strictly monotone; checked by the options). The
    reference's order rules; a singlestep step's inner points are uniform in lambda
    between its two outer nodes (:meth:`times`)."""

    kind: str
    values: Any
    rule: OrderRule = REFERENCE
    family: ClassVar[str] = "explicit"

    def span(self, schedule: Schedule, t_start, t_end, steps, direction):
        """(first time, last time, len - 1), after checking direction and range."""
        if self.differentiable:  # interior jax values: the caller keeps them inside
            return float(self.values[0]), float(self.values[-1]), len(self.values) - 1
        v = np.asarray(self.values, np.float64)
        down = bool(v[-1] < v[0])  # strictly monotone (checked by the options)
        if direction is not None and down != (direction == "down"):
            want = "decreasing for sampling" if direction == "down" else "increasing for inversion"
            raise ValueError(f"`{self.kind}` must be strictly {want}, got {_show(v)}.")
        if self.kind == "sigmas":
            ts = self._sigma_times(schedule, v)
        else:
            t_min, t_max = schedule.lowest_time, schedule.T
            bad = (v > t_max * (1 + 1e-12)) | (v < t_min * (1 - 1e-12)) | (v < 0)
            if np.any(bad):
                lo = "[1/N, T]" if schedule.is_discrete else "[0, T]"
                raise ValueError(
                    f"`timesteps` must lie in the schedule's time range {lo} = "
                    f"[{t_min:g}, {t_max:g}]; entry {int(np.argmax(bad))} is "
                    f"{v[np.argmax(bad)]!r}."
                )
            ts = v
        return float(ts[0]), float(ts[-1]), v.shape[0] - 1

    def _sigma_times(self, schedule: Schedule, v) -> np.ndarray:
        """Times of sigma / alpha values (the data node for a final 0), range-checked."""
        lo_t, hi_t = schedule.lowest_time, schedule.T
        with np.errstate(divide="ignore"):
            lam = -np.log(v)
            lam_hi = float(schedule.marginal_lambda(np.float64(lo_t)))  # the least noisy
            lam_lo = float(schedule.marginal_lambda(np.float64(hi_t)))  # the noisiest
        s_min, s_max = _sigma_hat(lam_hi), _sigma_hat(lam_lo)
        # published lists are rounded (Align Your Steps' 14.615 for SD's 14.6146): entries
        # within SIGMA_RTOL of the range are clipped to it
        inside = (lam >= lam_lo - SIGMA_RTOL) & (lam <= lam_hi + SIGMA_RTOL)
        inside |= v == 0.0  # a final 0 (checked by the options to be last)
        if not np.all(inside):
            i = int(np.argmin(inside))
            raise ValueError(
                f"`sigmas` must lie in the schedule's range of sigma / alpha, "
                f"[{s_min:g}, {s_max:g}] (a last entry may be 0, the data); entry {i} "
                f"is {v[i]!r}."
            )
        ts = np.asarray(schedule.inverse_lambda(np.clip(lam, lam_lo, lam_hi)), np.float64)
        return np.where(v == 0.0, DATA_NODE.t, ts)

    @property
    def differentiable(self) -> bool:
        """Interior times given as jax values (``dpm_jax.plan.plan_run(..., times=)``)."""
        return not isinstance(self.values, np.ndarray) and any(is_jax(v) for v in self.values)

    def nodes(self, schedule: Schedule, t_start, t_end, steps) -> list[Node]:
        del t_start, t_end, steps
        if self.differentiable:
            return [node(schedule, v) for v in self.values]
        v = np.asarray(self.values, np.float64)
        if self.kind == "timesteps":
            return [node(schedule, t) for t in v]
        ts = self._sigma_times(schedule, v)
        return [DATA_NODE if s == 0.0 else node(schedule, t) for s, t in zip(v, ts)]

    def landings(self, schedule: Schedule, t_start, t_end, steps) -> None:
        """Every step ends on the next node."""
        del schedule, t_start, t_end, steps

    def times(self, schedule: Schedule, t0, t1, n: int):
        """A singlestep step's points: n + 1 times uniform in lambda from t0 to t1."""
        if is_jax(t0) or is_jax(t1):
            lam0, lam1 = schedule.marginal_lambda(t0), schedule.marginal_lambda(t1)
            return schedule.inverse_lambda(lam0 + (lam1 - lam0) * jnp.linspace(0.0, 1.0, n + 1))
        return time_grid(schedule, "logSNR", t0, t1, n)


def _show(v) -> str:
    v = np.asarray(v)
    return np.array2string(v, precision=6, threshold=8)


def grid_from_options(opts) -> Spacing | DiffusersGrid | ExplicitGrid:
    """The grid of a run: explicit (``timesteps`` / ``sigmas``), diffusers' family
    (``skip_type`` in :data:`NODE_SKIPS`, or ``final_sigmas_type`` / ``euler_at_final``
    set: diffusers' options select diffusers' grid and order rules), or a reference
    spacing."""
    if opts.timesteps is not None:
        return ExplicitGrid("timesteps", opts.timesteps)
    if opts.sigmas is not None:
        return ExplicitGrid("sigmas", opts.sigmas)
    skip = "time_uniform" if opts.skip_type is None else opts.skip_type
    final = opts.final_sigmas_type
    if skip in NODE_SKIPS or final is not None or opts.euler_at_final:
        if skip in _DISCRETE_SKIPS and final is None:
            final = "zero"
        rule = DIFFUSERS if not opts.begin_index else DIFFUSERS.restarted(opts.begin_index)
        return DiffusersGrid(
            skip,
            final,
            opts.karras_rho,
            opts.steps_offset,
            rule,
            opts.spacing_rule,
            opts.begin_index,
        )
    if opts.begin_index:
        raise ValueError(
            "`begin_index` restarts a run inside diffusers' grid of `steps` (a "
            "skip_type of diffusers: 'karras', 'exponential', 'lu', 'linspace', 'leading', "
            "'trailing', or a final_sigmas_type); for the reference spacings pass t_start."
        )
    if opts.spacing_rule != "dpmsolver":
        raise ValueError(
            f"`spacing_rule`={opts.spacing_rule!r} applies to diffusers' grids (a diffusers "
            "skip_type or a final_sigmas_type)."
        )
    return Spacing(skip)
