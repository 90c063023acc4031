"""Test configuration.

* 8 virtual CPU devices (``chex.set_n_cpu_devices``, before jax starts its
  backend), for the sharding tests; unsharded computations run on device 0 as usual.
* float64 is enabled for the whole suite. Tests that check float32 behaviour
  pass float32 arrays explicitly (the library follows the dtype of the state),
  so x64 being on also guards against silent promotion to float64.
* Under ``-n``, each file's tests go to one worker (``pytest_configure`` below).
"""

import chex
import jax

chex.set_n_cpu_devices(8)

jax.config.update("jax_enable_x64", True)


def pytest_configure(config):
    """Under ``-n`` (pytest-xdist), send each file's tests to one worker (``--dist
    loadfile``) unless another mode was asked for: tests of a file share compiled programs
    (same shapes, same models), which spread over the workers would each compile again
    (the suite takes a quarter less time on 2 cores)."""
    if getattr(config.option, "numprocesses", None) and config.option.dist == "load":
        if "--dist" not in " ".join(config.invocation_params.args):
            config.option.dist = "loadfile"
