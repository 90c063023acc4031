"""Adaptive DPM-Solver-12 / -23 (DPM-Solver Sec. 3.3, Alg. 4-5), registered by name.

Its grid is chosen on device, so it has no plan: ``dpm_jax.sample`` runs it as a
``lax.while_loop`` (:mod:`dpm_jax._adaptive`). This entry holds its options rules."""

from __future__ import annotations

from dpm_jax.plan.solvers.base import Solver

__all__ = ["Adaptive"]


class Adaptive(Solver):
    name = "adaptive"
    options = ("solver_type",)
    orders = (2, 3)
    adaptive = True

    def check_options(self, options) -> None:
        if options.explicit_grid is not None:
            raise ValueError(
                f"method='adaptive' chooses its own steps: `{options.explicit_grid}` "
                "does not apply (use a fixed-grid method with an explicit grid)."
            )
        if (
            options.final_sigmas_type is not None
            or options.euler_at_final
            or options.skip_type not in (None, "time_uniform", "logSNR", "time_quadratic")
        ):
            raise ValueError(
                "method='adaptive' chooses its own steps: final_sigmas_type, "
                "euler_at_final and skip_type do not apply."
            )
        if options.return_intermediate:
            raise ValueError(
                "`return_intermediate=True` is not supported with method='adaptive' "
                "(its number of steps is known only on device)."
            )
