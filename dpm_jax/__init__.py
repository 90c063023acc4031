"""dpm_jax: DPM-Solver and DPM-Solver++ in JAX, one compiled loop.

>>> import dpm_jax
>>> sorted(dpm_jax.__all__)[:3]
['DiffusersSetup', 'Plan', 'SampleInfo']
"""

from dpm_jax import problems, schedules
from dpm_jax._executor import SampleInfo, dynamic_thresholding, execute_plan
from dpm_jax._plan import Plan, build_plan, grid_nodes, time_grid
from dpm_jax._sample import inverse, sample
from dpm_jax._wrapper import WrappedModel, model_wrapper
from dpm_jax import sharding  # noqa: E402  (imports _sample)
from dpm_jax.diffusers import DiffusersSetup, from_diffusers_config

__version__ = "0.1.0"

__all__ = [
    "DiffusersSetup",
    "Plan",
    "SampleInfo",
    "WrappedModel",
    "build_plan",
    "dynamic_thresholding",
    "execute_plan",
    "from_diffusers_config",
    "grid_nodes",
    "inverse",
    "model_wrapper",
    "problems",
    "sample",
    "schedules",
    "sharding",
    "time_grid",
]
