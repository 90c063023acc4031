"""An exact "network" on every kind of schedule, for API-level tests.

``x0_model(schedule)`` wraps the exact posterior mean of the 3-component Gaussian
mixture of ``diffusers_gmm.py`` as a data-prediction network (``model_type="x_start"``).
The network sees only ``(x, t_input)`` and recovers (alpha_t, sigma_t) from the
schedule's time-input convention, as a trained model would:

- discrete tables: t = t_input / 1000 + 1 / N; VP / EDM: t = t_input;
- VE: t_input = sigma_t (alpha = 1); flow: t_input = time_scale * sigma_t, alpha = 1 - sigma.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from diffusers_gmm import GMM, denoise

import dpm_jax

DIM = GMM.means.shape[1]


def alpha_sigma(schedule, t_input):
    """(alpha_t, sigma_t) of the time input ``t_input`` (jax)."""
    if schedule.name == "ve":
        return jnp.ones_like(t_input), t_input
    if schedule.name == "flow":
        sigma = t_input / float(schedule.time_input(np.float64(1.0)))
        return 1.0 - sigma, sigma
    t = t_input / 1000.0 + 1.0 / schedule.total_N if schedule.is_discrete else t_input
    return schedule.marginal_alpha(t), schedule.marginal_std(t)


def x0_net(schedule):
    def net(x, t_input, cond=None):
        alpha, sigma = alpha_sigma(schedule, jnp.asarray(t_input, x.dtype))
        out = denoise(x, alpha, sigma, xp=jnp)
        return out if cond is None else out + 0.01 * cond[:, None].astype(x.dtype)

    return net


def x0_model(schedule, **kw):
    """``model_wrapper(x0_net(schedule), schedule, model_type="x_start", **kw)``."""
    return dpm_jax.model_wrapper(x0_net(schedule), schedule, model_type="x_start", **kw)


def start(schedule, n, seed=0, t=None):
    """x_t = alpha_t x0 + sigma_t eps at t (default T) with x0 = 0.3: a starting state."""
    t = schedule.T if t is None else t
    z = np.random.default_rng(seed).normal(size=(n, DIM))
    a, s = (float(f(np.float64(t))) for f in (schedule.marginal_alpha, schedule.marginal_std))
    return jnp.asarray(a * 0.3 + s * z)
