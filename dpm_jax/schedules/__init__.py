"""Noise schedules: the maps t -> (alpha_t, sigma_t) of diffusion models.

A schedule is the map t -> (alpha_t, sigma_t) of the forward process
``x_t = alpha_t x_0 + sigma_t eps``, together with the half log-SNR
``lambda_t = log alpha_t - log sigma_t`` and its inverse t(lambda). Variance
preserving (VP) schedules have ``sigma_t^2 = 1 - alpha_t^2`` (``discrete``,
``vp_linear``, ``vp_cosine``); variance exploding ones have alpha_t = 1 (``ve``,
``edm``); rectified-flow / flow-matching models have alpha_t = 1 - sigma_t
(``flow``). lambda may be infinite at an end: +inf where sigma_t = 0 (the data),
-inf where alpha_t = 0 (pure noise: flow models at t = 1, zero-terminal-SNR
tables); the solvers take such steps in closed form (see :mod:`dpm_jax.plan`).

Every function of a :class:`Schedule` works on NumPy input (float64, used on the
host to build plans) and on jax arrays (used on device, e.g. by the adaptive
solver): the array type of the input selects the implementation.

>>> import numpy as np
>>> from dpm_jax import schedules
>>> s = schedules.vp_linear()
>>> lam = s.marginal_lambda(np.array([0.5]))
>>> bool(np.allclose(s.inverse_lambda(lam), 0.5))
True
"""

from dpm_jax.schedules._schedule import Schedule
from dpm_jax.schedules.flow import flow
from dpm_jax.schedules.ve import edm, ve
from dpm_jax.schedules.vp import (
    LAMBDA_CLIP,
    discrete,
    rescale_zero_terminal_snr,
    vp_cosine,
    vp_linear,
)

__all__ = [
    "Schedule",
    "discrete",
    "vp_linear",
    "vp_cosine",
    "ve",
    "edm",
    "flow",
    "LAMBDA_CLIP",
    "rescale_zero_terminal_snr",
]
