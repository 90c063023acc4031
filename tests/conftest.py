"""Test configuration.

* 8 virtual CPU devices (``chex.set_n_cpu_devices``, before jax starts its
  backend), for the sharding tests; unsharded computations run on device 0 as usual.
* float64 is enabled for the whole suite. Tests that check float32 behaviour
  pass float32 arrays explicitly (the library follows the dtype of the state),
  so x64 being on also guards against silent promotion to float64.
"""

import chex
import jax

chex.set_n_cpu_devices(8)

jax.config.update("jax_enable_x64", True)
