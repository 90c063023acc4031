"""Test configuration: float64 is enabled for the whole suite.

Tests that check float32 behaviour pass float32 arrays explicitly (the library
follows the dtype of the state), so x64 being on also guards against silent
promotion to float64.
"""

import jax

jax.config.update("jax_enable_x64", True)
