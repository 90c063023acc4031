"""The old import path of :mod:`dpm_jax.demo.digits` (the bundled digits model); kept working.

``import dpm_jax.digits`` gives the module :mod:`dpm_jax.demo.digits` itself.
"""

import importlib
import sys

sys.modules[__name__] = importlib.import_module("dpm_jax.demo.digits")
