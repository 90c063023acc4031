"""Test problems with exact answers, for tests and benchmarks (not needed to sample).

- :mod:`dpm_jax.testing.problems`: Gaussian mixtures and empirical distributions
  (the digits) whose noise predictor is exact in closed form;
- :mod:`dpm_jax.testing.exact`: a high-accuracy reference solution of their
  probability-flow ODE (SciPy's DOP853; needs scipy, in the ``test`` extra).

The old paths ``dpm_jax.problems`` and ``dpm_jax.exact`` still work.
"""

from dpm_jax.testing import problems

__all__ = ["problems", "exact"]


def __getattr__(name):
    if name == "exact":  # imported on use: it needs scipy only when a solution is asked for
        import importlib

        return importlib.import_module("dpm_jax.testing.exact")
    raise AttributeError(name)
