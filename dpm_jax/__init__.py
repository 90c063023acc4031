"""dpm_jax: DPM-Solver and DPM-Solver++ in JAX, one compiled loop.

>>> import dpm_jax
>>> sorted(dpm_jax.__all__)[:3]
['Plan', 'SampleInfo', 'WrappedModel']
"""

from dpm_jax import problems, schedules
from dpm_jax._executor import SampleInfo, dynamic_thresholding, execute_plan
from dpm_jax._plan import Plan, build_plan, time_grid
from dpm_jax._sample import inverse, sample
from dpm_jax._wrapper import WrappedModel, model_wrapper
from dpm_jax import sharding  # noqa: E402  (imports _sample)

__version__ = "0.1.0"

__all__ = [
    "Plan",
    "SampleInfo",
    "WrappedModel",
    "build_plan",
    "dynamic_thresholding",
    "execute_plan",
    "inverse",
    "model_wrapper",
    "problems",
    "sample",
    "schedules",
    "sharding",
    "time_grid",
]
