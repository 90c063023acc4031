"""dpm_jax: DPM-Solver, DPM-Solver++ and UniPC in JAX, one compiled loop.

The public face: :func:`sample` and :func:`inverse` (with :class:`SolverOptions`,
the options defined once), :func:`model_wrapper`, the :mod:`schedules`, the step
API (:func:`stepper`: the loop in the user's hands), the
lower level :func:`build_plan` / :func:`execute_plan` (a :class:`Plan` is a
table of coefficients; the planner's grids and solvers live in :mod:`dpm_jax.plan`),
:mod:`sharding` and :func:`from_diffusers_config`. Test problems with exact
solutions are in :mod:`dpm_jax.testing`, the bundled digits model in :mod:`dpm_jax.demo`.

>>> import dpm_jax
>>> sorted(dpm_jax.__all__)[:3]
['DiffusersSetup', 'Plan', 'SampleInfo']
"""

from dpm_jax import grids, guidance, plan, problems, schedules, sharding, solvers
from dpm_jax._corrections import dynamic_thresholding
from dpm_jax._executor import SampleInfo, execute_plan
from dpm_jax._model import WrappedModel, model_wrapper
from dpm_jax._noising import add_noise, strength_to_time
from dpm_jax._options import SolverOptions
from dpm_jax._sample import inverse, sample
from dpm_jax._status import SamplingError
from dpm_jax._stepper import Stepper, StepState, StepTime, stepper
from dpm_jax.diffusers import DiffusersSetup, from_diffusers_config
from dpm_jax.optimize import load_timesteps, optimize_timesteps, save_timesteps
from dpm_jax.plan import Plan, build_plan, grid_nodes, time_grid

__version__ = "0.2.0.dev0"

__all__ = [
    "DiffusersSetup",
    "Plan",
    "SampleInfo",
    "SamplingError",
    "SolverOptions",
    "StepState",
    "StepTime",
    "Stepper",
    "WrappedModel",
    "add_noise",
    "build_plan",
    "dynamic_thresholding",
    "execute_plan",
    "from_diffusers_config",
    "grid_nodes",
    "grids",
    "guidance",
    "inverse",
    "load_timesteps",
    "model_wrapper",
    "optimize_timesteps",
    "plan",
    "problems",
    "sample",
    "save_timesteps",
    "schedules",
    "sharding",
    "solvers",
    "stepper",
    "strength_to_time",
    "time_grid",
]
