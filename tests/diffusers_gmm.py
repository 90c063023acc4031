"""The analytic "network" behind ``data/diffusers_golden.npz``.

A Gaussian mixture data distribution (K=3 isotropic components in D=3) whose
posterior mean E[x0 | x_t] is known in closed form. ``net_output`` turns it into
what a trained network would return when it is called, as in a real diffusers
pipeline, with only ``(x, timestep)``.

Used by ``tools/make_diffusers_golden.py`` (numpy, float64) and by the jax tests
(``xp=jax.numpy``). No torch here.
"""

from __future__ import annotations

import numpy as np


class GMM:
    """Fixed mixture parameters (do not change: the golden file depends on them)."""

    means = np.array(
        [
            [0.8, -0.5, 0.3],
            [-0.6, 0.7, 0.4],
            [0.1, 0.3, -0.95],
        ],
        dtype=np.float64,
    )
    stds = np.array([0.2, 0.35, 0.5], dtype=np.float64)
    weights = np.array([0.5, 0.3, 0.2], dtype=np.float64)


def _per_sample(v, xp, ndim_after):
    """Scalar stays scalar; a (B,) array becomes (B, 1, ..., 1) with ``ndim_after`` ones."""
    v = xp.asarray(v)
    if xp.ndim(v) == 0:
        return v
    return xp.reshape(v, (-1,) + (1,) * ndim_after)


def denoise(x, alpha, sigma, xp=np):
    """Exact E[x0 | x_t = x] for x_t = alpha * x0 + sigma * eps, x0 ~ GMM, eps ~ N(0, I).

    x: (B, D). alpha, sigma: scalars or (B,) arrays. Returns (B, D).
    Given component k, x_t ~ N(alpha mu_k, v_k I) with v_k = alpha^2 s_k^2 + sigma^2, and
    E[x0 | x_t, k] = mu_k + alpha s_k^2 / v_k (x_t - alpha mu_k). The component
    responsibilities are normalised with a log-sum-exp.
    """
    x = xp.asarray(x)
    means = xp.asarray(GMM.means, dtype=x.dtype)
    var0 = xp.asarray(GMM.stds, dtype=x.dtype) ** 2
    logw = xp.log(xp.asarray(GMM.weights, dtype=x.dtype))
    dim = means.shape[-1]

    a_k = _per_sample(alpha, xp, 1)  # () or (B, 1)
    s_k = _per_sample(sigma, xp, 1)
    a_kd = _per_sample(alpha, xp, 2)  # () or (B, 1, 1)

    v = a_k**2 * var0 + s_k**2  # (B|1, K)
    diff = x[:, None, :] - a_kd * means[None, :, :]  # (B, K, D)
    logp = logw - 0.5 * dim * xp.log(v) - 0.5 * xp.sum(diff**2, axis=-1) / v  # (B, K)
    logp = logp - xp.max(logp, axis=-1, keepdims=True)
    resp = xp.exp(logp)
    resp = resp / xp.sum(resp, axis=-1, keepdims=True)
    gain = a_k * var0 / v  # (B|1, K)
    cond = means[None, :, :] + gain[..., None] * diff  # (B, K, D)
    return xp.sum(resp[..., None] * cond, axis=1)


def alpha_sigma(timestep, *, alphas_cumprod=None, num_train_timesteps=1000, flow=False, xp=np):
    """(alpha, sigma) a network trained on this schedule associates with ``timestep``.

    Discrete VP: alpha_bar = alphas_cumprod[round(timestep)], alpha = sqrt(alpha_bar),
    sigma = sqrt(1 - alpha_bar). Flow matching: sigma = timestep / num_train_timesteps,
    alpha = 1 - sigma. ``timestep`` may be a scalar or a (B,) array.
    """
    t = xp.asarray(timestep)
    if flow:
        sigma = t / num_train_timesteps
        alpha = 1.0 - sigma
        return alpha, sigma
    if alphas_cumprod is None:
        raise ValueError("alphas_cumprod is required for a discrete VP model (flow=False)")
    acp = xp.asarray(alphas_cumprod)
    idx = xp.round(t).astype(int)
    abar = acp[idx]
    return xp.sqrt(abar), xp.sqrt(1.0 - abar)


def net_output(
    x,
    timestep,
    prediction_type,
    *,
    alphas_cumprod=None,
    num_train_timesteps=1000,
    flow=False,
    xp=np,
):
    """The model output for (x, timestep) in the parameterisation ``prediction_type``.

    "epsilon" -> eps, "sample" -> x0, "v_prediction" -> alpha*eps - sigma*x0,
    "flow_prediction" -> eps - x0, where x0 = E[x0 | x] and eps = (x - alpha x0) / sigma.
    """
    x = xp.asarray(x)
    alpha, sigma = alpha_sigma(
        timestep,
        alphas_cumprod=alphas_cumprod,
        num_train_timesteps=num_train_timesteps,
        flow=flow,
        xp=xp,
    )
    alpha = xp.asarray(alpha, dtype=x.dtype)
    sigma = xp.asarray(sigma, dtype=x.dtype)
    x0 = denoise(x, alpha, sigma, xp=xp)
    a = _per_sample(alpha, xp, 1)
    s = _per_sample(sigma, xp, 1)
    if prediction_type == "sample":
        return x0
    eps = (x - a * x0) / s
    if prediction_type == "epsilon":
        return eps
    if prediction_type == "v_prediction":
        return a * eps - s * x0
    if prediction_type == "flow_prediction":
        return eps - x0
    raise ValueError(f"unknown prediction_type {prediction_type!r}")


def pipeline_net(flow: bool, prediction_type: str, alphas_cumprod, timesteps):
    """A jax ``net(x, t_input)`` of the golden network as dpm_jax calls it: a flow model gets
    the integer timestep diffusers gave it at the same node (diffusers truncates 1000 sigma
    to an int, where dpm_jax passes it exactly; the nearest is less than 1 away)."""
    import jax.numpy as jnp

    table = jnp.asarray(alphas_cumprod)
    given = jnp.asarray(timesteps)

    def net(x, t_input):
        t = (
            given[jnp.argmin(jnp.abs(given[None, :] - t_input[:, None]), axis=1)]
            if flow
            else t_input
        )
        return net_output(x, t, prediction_type, alphas_cumprod=table, flow=flow, xp=jnp)

    return net
