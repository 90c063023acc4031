"""The old import path of :mod:`dpm_jax.testing.exact` (the exact ODE solutions); kept working.

``import dpm_jax.exact`` gives the module :mod:`dpm_jax.testing.exact` itself.
"""

import importlib
import sys

sys.modules[__name__] = importlib.import_module("dpm_jax.testing.exact")
