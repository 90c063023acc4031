"""The old import path of :mod:`dpm_jax.testing.problems` (the test problems); kept working.

``import dpm_jax.problems`` gives the module :mod:`dpm_jax.testing.problems` itself.
"""

import importlib
import sys

sys.modules[__name__] = importlib.import_module("dpm_jax.testing.problems")
