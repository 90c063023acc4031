"""Test configuration.

* 8 virtual CPU devices (``--xla_force_host_platform_device_count=8``), set
  before jax is imported, for the sharding tests; unsharded computations run on
  device 0 as usual.
* float64 is enabled for the whole suite. Tests that check float32 behaviour
  pass float32 arrays explicitly (the library follows the dtype of the state),
  so x64 being on also guards against silent promotion to float64.
"""

import os

_FLAG = "--xla_force_host_platform_device_count=8"
if _FLAG not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _FLAG).strip()

import jax

jax.config.update("jax_enable_x64", True)
