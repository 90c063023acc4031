"""Singlestep DPM-Solver(++) with every outer step of the same order (the reference's
``method="singlestep_fixed"``): ``steps // order`` outer steps of order ``order`` on a
reference spacing, NFE = (steps // order) * order; on an explicit grid its entries
are the outer boundaries (as for ``"singlestep"``). Formulas: :mod:`.singlestep`."""

from __future__ import annotations

from dpm_jax.plan.nodes import node
from dpm_jax.plan.solvers.base import Run, Solver
from dpm_jax.plan.solvers.singlestep import emit_outer_steps, explicit_orders

__all__ = ["SinglestepFixed"]


class SinglestepFixed(Solver):
    name = "singlestep_fixed"
    options = ("solver_type",)

    def check_options(self, options) -> None:
        if (
            options.explicit_grid is None
            and options.steps is not None
            and options.steps < options.order
        ):
            raise ValueError(
                f"`steps` must be >= `order` for method={self.name!r}: got "
                f"steps={options.steps}, order={options.order}."
            )

    def check(self, run: Run) -> None:
        if run.grid.family == "diffusers":
            o = run.options
            given = [
                f"skip_type={o.skip_type!r}" if o.skip_type is not None else "",
                f"final_sigmas_type={o.final_sigmas_type!r}" if o.final_sigmas_type else "",
                "euler_at_final=True" if o.euler_at_final else "",
            ]
            raise ValueError(
                "method='singlestep_fixed' runs the reference's grids ('time_uniform', "
                "'logSNR', 'time_quadratic' or an explicit grid); "
                f"{', '.join(g for g in given if g)} select diffusers' grids: use "
                "method='singlestep' with them."
            )
        if run.grid.family == "spacing" and not (run.nodes[0].finite and run.nodes[-1].finite):
            raise ValueError(
                f"method={self.name!r} with skip_type={run.grid.name!r} needs a finite "
                "half log-SNR at t_start and t_end (alpha = 0 or sigma = 0 there); use "
                "method='singlestep' with skip_type='time_uniform', or move "
                "t_start/t_end inside the schedule."
            )

    def emit(self, rows, run: Run) -> None:
        if run.grid.family == "explicit":
            emit_outer_steps(rows, run, run.nodes, explicit_orders(run))
            return
        order = run.options.order
        orders = [order] * (run.steps // order)
        ts = run.grid.times(run.schedule, run.t_start, run.t_end, len(orders))
        emit_outer_steps(rows, run, [node(run.schedule, float(t)) for t in ts], orders)
