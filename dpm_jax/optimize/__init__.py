"""Time grids fitted to a model (or to its schedule): :func:`optimize_timesteps`.

At 5-8 model calls the error is set mostly by where the steps are. Three objectives, one
file each:

- ``"ld3"`` (:mod:`.ld3`): the grid's fractions of the span as free parameters,
  monotone by construction, learned by back-propagating the distance of the student's
  end points to a teacher's through the sampler (Tong et al. 2024); needs optax;
- ``"gits"`` (:mod:`.gits`): dynamic programming over a fine grid, from the one-step
  errors along teacher trajectories (Chen et al. 2024);
- ``"dmn"`` (:mod:`.dmn`): data-free, minimising a schedule-only bound of the
  solver's error (Xue et al. 2024); no model calls.

The result is a :class:`dpm_jax.grids.Timesteps`: ``steps + 1`` float64 times from t_start
to t_end, and, where ld3 learned them (``decouple``, by default for the solvers that call
the model at their nodes), the time passed to the model at each node (LD3's second time
sequence), for ``dpm_jax.sample(..., grid=fitted)`` with the same solver. Judge a grid on
noise it was not fitted to. :func:`save_timesteps` / :func:`load_timesteps` keep it in a
JSON file with what it was made for.
"""

from __future__ import annotations

import json
import os
from typing import Any, NamedTuple

import numpy as np

from dpm_jax import grids
from dpm_jax.optimize import _common
from dpm_jax.schedules import Schedule

__all__ = ["optimize_timesteps", "save_timesteps", "load_timesteps", "TimestepFile"]


def optimize_timesteps(
    model,
    schedule: Schedule,
    x_T,
    *,
    steps: int,
    objective: str = "ld3",
    method: str = "multistep",
    order: int = 2,
    algorithm_type: str | None = None,
    t_start: float | None = None,
    t_end: float | None = None,
    teacher: Any = None,
    progress: bool = False,
    iterations: int | None = None,
    learning_rate: float | None = None,
    **solver_options,
) -> grids.Timesteps:
    """A time grid for ``steps`` steps of a solver, fitted by ``objective``.

    With its defaults (ld3, the model times too, minibatches and restarts: below), on the
    digits' ideal denoiser from 64 training x_T, the grid's error on held-out noise is
    0.04-0.08x the best built-in spacing's for DPM-Solver++(2M) and 0.11-0.26x for UniPC-2
    at NFE 5-8, fitted in 0.6-1.2 minutes on 2 CPU cores (``docs/time-grids.md``).

    Args:
      model: the model, as for :func:`dpm_jax.sample` (not called by ``"dmn"``).
      schedule: its noise schedule.
      x_T: training noise (B, ...) (``"ld3"``, ``"gits"``; may be None for ``"dmn"``).
      steps: the grid's number of intervals (the NFE of multistep solvers).
      objective: "ld3", "gits" or "dmn".
      method: the student solver's ``method``, as for :func:`dpm_jax.sample` (any
        fixed-grid method; ``"dmn"``: DPM-Solver++ multistep).
      order: its order.
      algorithm_type: its algorithm type (None: the solver's default).
      t_start: the start of the span (default the schedule's T).
      t_end: its end (default the schedule's t_eps).
      teacher: ld3: the teacher's end points of ``x_T`` (an array), or a dict of
        :func:`dpm_jax.sample` options for the teacher run (default: DPM-Solver++(3M),
        third-order variant, 200 steps uniform in lambda); gits: such a dict.
      progress: show a tqdm bar with the loss.
      iterations: of the ld3 optimiser, per stage and restart (default 600 with
        minibatches, 300 with the whole batch) / of the dmn optimiser (default 400).
      learning_rate: of the ld3 / dmn optimiser (default 0.05).
      **solver_options: the student's other options, as for :func:`dpm_jax.sample`;
        and objective-specific keywords. For ld3 (defaults chosen on a validation set,
        :data:`dpm_jax.optimize.ld3.DEFAULTS`): ``decouple`` (default: True for the
        solvers that call the model at their nodes, "multistep", "unipc", "ipndm",
        "deis"; False for the others: also learn the model times, see below),
        ``window`` ("sides", default, or "nearest": where a decoupled model call may
        move, see below), ``loss`` ("iqr", default: the mean over the middle half of the
        samples of the log RMS distance; "log": that mean over all samples; "rms";
        "mse"), ``batch_size`` ("auto", default: 32 where ``x_T`` has more than 32
        samples, else None; None: the whole batch and the iterate with the lowest loss;
        an int: Adam on random minibatches of that many samples, the fit being the mean
        of the second half of the iterates, i.e. stochastic weight averaging; drawn with
        ``seed``, default 0), ``restarts`` (default 3 with minibatches, else 1; k > 1:
        k minibatch fits, seeds ``seed`` ... ``seed + k - 1``, and the one with the
        lowest loss on the whole training batch), ``slack`` (soft teacher forcing, with
        the whole batch), ``parametrization`` ("lambda" / "time") and ``init`` (a
        spacing name or a grid; default: the built-in spacing with the lowest training
        loss); ``points``, ``substeps``, ``gamma`` for gits.

    Returns:
      a :class:`dpm_jax.grids.Timesteps`: ``values``, ``steps + 1`` strictly decreasing
      times from t_start to t_end (float64), and ``model_timesteps``: None, or where ld3
      learned them (``decouple``), the ``steps`` times at which the model is called at
      the first ``steps`` nodes. The first stays at t_start; the model call of node i
      moves by tanh(eta_i) times half the gap on the side it moves to
      (``window="sides"``) or half the smaller gap to a neighbour (``"nearest"``), in
      the parametrisation's coordinate (LD3's decoupled times, Tong et al. 2024, Sec.
      3). Sample with ``dpm_jax.sample(..., grid=fitted)`` (and ``solver=`` the solver
      object it was fitted for) or ``dpm_jax.sample(..., **fitted.keywords(),
      **solver_keywords)``. It is array-like over its times (``np.asarray(fitted)``,
      ``len``, indexing); without model times it may be passed as ``timesteps=``.

    Raises:
      ValueError / TypeError: naming the argument (unknown objective, steps < 1, empty
        or non-finite x_T, a solver the objective cannot handle);
      FloatingPointError: if the loss turns NaN or inf (never a corrupt grid).

    >>> import numpy as np, dpm_jax
    >>> sched = dpm_jax.schedules.vp_linear()
    >>> fitted = optimize_timesteps(None, sched, None, steps=5, objective="dmn", iterations=50)
    >>> len(fitted), bool(np.all(np.diff(fitted) < 0)), float(fitted[0]), float(fitted[-1])
    (6, True, 1.0, 0.001)
    """
    from dpm_jax.optimize import dmn, gits, ld3

    known = {
        "ld3": (
            "loss",
            "slack",
            "parametrization",
            "init",
            "decouple",
            "window",
            "batch_size",
            "seed",
            "restarts",
        ),
        "gits": ("points", "substeps", "gamma"),
        "dmn": ("parametrization",),
    }
    if isinstance(objective, str) and objective in known:
        extra = {k: solver_options.pop(k) for k in known[objective] if k in solver_options}
        for other, names in known.items():
            for k in names:
                if other != objective and k in solver_options:
                    raise ValueError(
                        f"`{k}` is an option of objective={other!r}, not {objective!r}."
                    )
    else:
        extra = {}
    prob = _common.check(
        objective,
        model,
        schedule,
        x_T,
        steps,
        dict(method=method, order=order, algorithm_type=algorithm_type, **solver_options),
        t_start,
        t_end,
        needs_data=objective in ("ld3", "gits"),
    )
    if objective in ("ld3", "gits") and model is None:
        raise TypeError(f"objective={objective!r} needs `model`.")
    tuning: dict[str, Any] = {}
    if iterations is not None:
        tuning["iterations"] = _positive_int("iterations", iterations)
    if learning_rate is not None:
        if not (
            isinstance(learning_rate, (int, float))
            and np.isfinite(learning_rate)
            and learning_rate > 0
        ):
            raise ValueError(f"`learning_rate` must be a number > 0, got {learning_rate!r}.")
        tuning["learning_rate"] = float(learning_rate)
    if objective == "gits":
        if tuning:
            raise ValueError("objective='gits' has no `iterations` / `learning_rate`.")
        out = gits.fit(prob, teacher=teacher, progress=progress, **extra)
    elif objective == "dmn":
        if teacher is not None:
            raise ValueError("objective='dmn' is data-free: `teacher` does not apply.")
        out = dmn.fit(prob, progress=progress, **tuning, **extra)
    else:
        out = ld3.fit(prob, teacher=teacher, progress=progress, **tuning, **extra)
    times, model_times = out if isinstance(out, tuple) else (out, None)
    return grids.Timesteps(times, model_timesteps=model_times)


def _positive_int(name, v) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
        raise ValueError(f"`{name}` must be an int >= 1, got {v!r}.")
    return int(v)


class TimestepFile(NamedTuple):
    """What :func:`load_timesteps` returns: the times, what they were made for, and the
    decoupled model times (None if the file has none); :attr:`grid` is both as a
    :class:`dpm_jax.grids.Timesteps`, for ``dpm_jax.sample(..., grid=file.grid)``."""

    timesteps: np.ndarray
    options: dict
    meta: dict
    model_timesteps: np.ndarray | None = None

    @property
    def grid(self) -> grids.Timesteps:
        """The times and the model times as a :class:`dpm_jax.grids.Timesteps` (what
        :func:`optimize_timesteps` returned)."""
        return grids.Timesteps(self.timesteps, model_timesteps=self.model_timesteps)


def save_timesteps(
    path,
    timesteps,
    *,
    model_timesteps=None,
    schedule: Schedule | None = None,
    objective: str | None = None,
    **options,
) -> None:
    """Writes a grid to a JSON file with what it was made for.

    ``timesteps`` is what :func:`optimize_timesteps` returned (a
    :class:`dpm_jax.grids.Timesteps`, with its model times if it has them) or an array of
    times. The file holds ``timesteps`` (the times, float64 written with 17 significant
    digits), ``options`` (the solver options it was fitted for: pass them as keywords,
    e.g. ``method="multistep", order=2``), and ``meta``: the objective, the number of
    steps, dpm_jax's version and the schedule (name, T, t_eps, N and log alpha at 9
    times, so a file can be checked against the schedule it is used with); and
    ``model_timesteps`` (one per step) if the grid has them or they are given.
    """
    from dpm_jax import __version__

    if isinstance(timesteps, grids.Grid):
        if not isinstance(timesteps, grids.Timesteps):
            raise TypeError(
                f"`timesteps` must be times or a dpm_jax.grids.Timesteps, got "
                f"{type(timesteps).__name__}."
            )
        if timesteps.model_timesteps is not None:
            if model_timesteps is not None:
                raise ValueError(
                    "`model_timesteps`: the grid passed as `timesteps` already has its "
                    "model times; leave `model_timesteps` out."
                )
            model_timesteps = timesteps.model_timesteps
    ts = np.asarray(timesteps, np.float64)
    if ts.ndim != 1 or ts.shape[0] < 2 or not np.all(np.isfinite(ts)):
        raise ValueError(f"`timesteps` must be a finite 1-D grid of >= 2 times, got {ts!r}.")
    ms = None
    if model_timesteps is not None:
        ms = np.asarray(model_timesteps, np.float64)
        if ms.shape != (ts.shape[0] - 1,) or not np.all(np.isfinite(ms)):
            raise ValueError(
                f"`model_timesteps` must be {ts.shape[0] - 1} finite times (one per step), "
                f"got {ms!r}."
            )
    meta: dict[str, Any] = {
        "objective": objective,
        "steps": int(ts.shape[0] - 1),
        "dpm_jax": __version__,
    }
    if schedule is not None:
        probe = np.linspace(schedule.lowest_time, schedule.T, 9)
        with np.errstate(all="ignore"):
            la = np.asarray(schedule.marginal_log_alpha(probe), np.float64)
        meta["schedule"] = {
            "name": schedule.name,
            "T": schedule.T,
            "t_eps": schedule.t_eps,
            "total_N": schedule.total_N,
            "log_alpha_probe": [float(v) for v in la],
        }
    payload = {
        "format": "dpm_jax.timesteps/1",
        "timesteps": [float(t) for t in ts],
        "options": options,
        "meta": meta,
    }
    if ms is not None:
        payload["model_timesteps"] = [float(t) for t in ms]
    with open(os.fspath(path), "w", encoding="utf-8") as f:
        json.dump(payload, f, indent=1)
        f.write("\n")


def load_timesteps(path, schedule: Schedule | None = None) -> TimestepFile:
    """Reads a grid written by :func:`save_timesteps` (any version); with ``schedule``,
    checks that the file was made for that schedule (ValueError otherwise). The grid, with
    its model times, is the result's ``.grid``."""
    with open(os.fspath(path), encoding="utf-8") as f:
        try:
            payload = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"load_timesteps(): {path!r} is not valid JSON: {e}") from None
    if not isinstance(payload, dict) or payload.get("format") != "dpm_jax.timesteps/1":
        raise ValueError(f"load_timesteps(): {path!r} is not a dpm_jax timesteps file.")
    ts = np.asarray(payload["timesteps"], np.float64)
    meta = payload.get("meta", {})
    if schedule is not None and "schedule" in meta:
        s = meta["schedule"]
        probe = np.linspace(schedule.lowest_time, schedule.T, 9)
        with np.errstate(all="ignore"):
            la = np.asarray(schedule.marginal_log_alpha(probe), np.float64)
        same = (
            s.get("name") == schedule.name
            and s.get("T") == schedule.T
            and np.allclose(la, s.get("log_alpha_probe", []), rtol=1e-12, atol=0.0)
        )
        if not same:
            raise ValueError(
                f"load_timesteps(): {path!r} was made for the schedule {s.get('name')!r} "
                f"(T={s.get('T')}); `schedule` differs."
            )
    ms = payload.get("model_timesteps")
    ms = None if ms is None else np.asarray(ms, np.float64)
    return TimestepFile(ts, dict(payload.get("options", {})), meta, ms)
