"""``dpm_jax.sample(..., solver=DPMSolverV3(ems), grid=...)``: the route to :func:`sample_v3`.

DPM-Solver-v3 has no plan of the solver registry (its coefficients are per-dimension
arrays of the statistics), so ``sample`` hands a :class:`dpm_jax.solvers.DPMSolverV3` to
:func:`run` before its options are gathered: the grid object becomes ``skip_type``,
``steps``, ``t_start`` and ``t_end``, the solver's fields the other keywords, and every
other option of ``sample`` must be at its default (a ValueError naming it otherwise,
before anything is traced). The other solvers' options, plans and programs are not
touched.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

import numpy as np

from dpm_jax import _checks, grids
from dpm_jax._model import WrappedModel, model_wrapper
from dpm_jax._options import _same
from dpm_jax.v3.solver import sample_v3

__all__ = ["run", "GRIDS"]

#: The grid objects DPM-Solver-v3 takes and the ``skip_type`` of :func:`sample_v3` each is.
GRIDS: dict[type, str] = {
    grids.LogSNR: "logSNR",
    grids.TimeUniform: "time_uniform",
    grids.TimeQuadratic: "time_quadratic",
    grids.Karras: "karras",
}

#: ``sample``'s arguments that the route reads itself (the rest must be at their defaults).
_READ = ("model", "x_T", "noise_schedule", "solver", "grid")

#: Keywords that the DPMSolverV3 object or its grid carry: the clash message of the
#: objects API (``_options.collect``), saying where the option goes.
_CARRIED = {
    "steps": "grid=LogSNR(steps)",
    "order": "DPMSolverV3(ems, order=...)",
    "lower_order_final": "DPMSolverV3(ems, lower_order_final=...)",
    "skip_type": "grid=LogSNR / TimeUniform / TimeQuadratic / Karras",
    "t_start": "grid=LogSNR(steps, t_start=...)",
    "t_end": "grid=LogSNR(steps, t_end=...)",
}

#: Why some of the refused options do not apply (the others: v3 does not read them).
_WHY = {
    "return_info": "it returns the sample only, with NFE = the grid's steps",
    "return_intermediate": "it returns the sample only",
    "key": "it is deterministic (an ODE solver)",
    "timesteps": "pass the times as grid=dpm_jax.grids.Timesteps(...)",
    "sigmas": "its grid is one of the spacing objects",
    "model_timesteps": "it calls the model at the grid's times (or the nearest statistics "
    "point: DPMSolverV3(times=...))",
    "denoise_to_zero": "it ends at the grid's t_end",
    "_batch_axis": "it has no sharded form (dpm_jax.sharding)",
}


@functools.cache
def _defaults() -> dict[str, Any]:
    from dpm_jax._sample import sample

    return {
        name: p.default
        for name, p in inspect.signature(sample).parameters.items()
        if name not in _READ
    }


def _check_options(values: dict) -> None:
    """Every option of ``sample`` that v3 does not read is at its default (``sample``'s own
    signature is the list, so an option added there is refused here too)."""
    for name, default in _defaults().items():
        if _same(values.get(name, default), default):
            continue
        if name in _CARRIED:
            raise ValueError(
                f"`{name}` clashes with the solver=/grid= objects, which carry the solver's and "
                f"the grid's options: set it on the object ({_CARRIED[name]})."
            )
        why = _WHY.get(name, "dpm_jax.v3.sample_v3 does not read it")
        raise ValueError(
            f"`{name}` does not apply with solver=DPMSolverV3: {why}. Leave it at its "
            f"default ({default!r}), or use another solver."
        )


def _grid_options(grid) -> dict[str, Any]:
    """``skip_type``, ``steps``, ``t_start``, ``t_end`` of a grid object (LogSNR(20) for
    None, v3's default spacing)."""
    if grid is None:
        grid = grids.LogSNR(20)
    if isinstance(grid, grids.Timesteps):
        if grid.model_timesteps is not None:
            raise ValueError(
                "`grid`: DPMSolverV3 calls the model at the grid's own times; a Timesteps grid "
                "with `model_timesteps` (a decoupled fit) does not apply. Pass "
                "Timesteps(grid.values) or fit without model times (decouple=False)."
            )
        values = np.asarray(grid)
        return dict(timesteps=values, steps=max(len(values) - 1, 1))
    if not isinstance(grid, grids.Grid):
        raise TypeError(
            f"`grid` must be a dpm_jax.grids object (LogSNR(...), TimeUniform(...), ...), got "
            f"{type(grid).__name__}."
        )
    allowed = ", ".join(cls.__name__ for cls in GRIDS) + ", Timesteps"
    skip_type = GRIDS.get(type(grid))
    if skip_type is None:
        raise ValueError(
            f"`grid` must be one of {allowed} with solver=DPMSolverV3 (the grids of "
            f"dpm_jax.v3.sample_v3), got {type(grid).__name__}."
        )
    if isinstance(grid, grids.Karras):
        if grid.rho != 7.0:
            raise ValueError(
                f"`grid`: DPMSolverV3's Karras grid has `rho` = 7 (EDM's spacing, the official "
                f"'edm' grid), got rho={grid.rho!r}."
            )
        if grid.final is not None:
            raise ValueError(
                f"`grid`: DPMSolverV3's Karras grid ends at t_end; `final` must be None, got "
                f"{grid.final!r}."
            )
    spacing: Any = grid  # one of GRIDS: steps, t_start, t_end
    return dict(
        skip_type=skip_type, steps=spacing.steps, t_start=spacing.t_start, t_end=spacing.t_end
    )


def run(values: dict) -> Any:
    """``sample``'s call (its local variables) with ``solver`` a DPMSolverV3: the sample."""
    solver = values["solver"]
    _check_options(values)
    grid = _grid_options(values.get("grid"))
    schedule = values["noise_schedule"]
    _checks.check_schedule(schedule)
    model = values["model"]
    if not isinstance(model, WrappedModel):
        if not callable(model):
            raise TypeError(
                f"`model` must be a callable model(x, t) -> eps (e.g. from "
                f"dpm_jax.model_wrapper), got {type(model).__name__}."
            )
        # sample's contract for a bare network: model_wrapper(net, schedule) of it (a noise
        # prediction called with the schedule's time input)
        model = model_wrapper(model, schedule)
    return sample_v3(model, values["x_T"], schedule, solver.ems, **grid, **solver.options())
