"""The golden vectors of the reference implementation and the analytic model they used.

``data/dpm_solver_reference.npz`` holds 353 runs of the official DPM-Solver code
(see ``data/GOLDEN_README.md``). The model is the exact noise predictor of a
Gaussian mixture, class-conditional for guided runs.
"""

from __future__ import annotations

import functools
import json

import jax.numpy as jnp
import numpy as np
from paths import DATA

import dpm_jax
from dpm_jax.testing import problems

PATH = DATA / "dpm_solver_reference.npz"


@functools.cache
def npz():
    return dict(np.load(PATH))


@functools.cache
def configs():
    return json.loads(str(npz()["configs_json"]))


@functools.cache
def gmm():
    z = npz()
    return problems.make_gmm(z["gmm/means"], z["gmm/stds"], z["gmm/weights"])


@functools.cache
def schedule(name: str):
    z = npz()
    if name.startswith("discrete"):
        return dpm_jax.schedules.discrete(betas=z[f"schedule/{name}/betas"])
    assert name == "linear"
    return dpm_jax.schedules.vp_linear(0.1, 20.0)


def _alpha_sigma(sched, t_input, dtype):
    t_input = jnp.asarray(t_input, dtype)
    t = t_input / 1000.0 + 1.0 / sched.total_N if sched.is_discrete else t_input
    log_alpha = sched.marginal_log_alpha(t)
    return jnp.exp(log_alpha), jnp.sqrt(-jnp.expm1(2.0 * log_alpha))


def _log_weights(cond, dtype):
    z = npz()
    table = np.concatenate([z["gmm/class_weights"], z["gmm/weights"][None]], 0)  # label C = uncond
    return jnp.log(jnp.asarray(table, dtype))[cond]


@functools.cache
def net(schedule_name: str, model_type: str):
    """net(x, t_input, cond=None) returning the exact eps / x0 / v / score."""
    sched = schedule(schedule_name)
    g = gmm()

    def f(x, t_input, cond=None):
        alpha, sigma = _alpha_sigma(sched, t_input, x.dtype)
        lw = None if cond is None else _log_weights(cond, x.dtype)
        eps = problems.gmm_noise(g, x, alpha, sigma, log_weights=lw)
        a, s = alpha[:, None], sigma[:, None]
        if model_type == "noise":
            return eps
        x0 = (x - s * eps) / a
        if model_type == "x_start":
            return x0
        if model_type == "v":
            return a * eps - s * x0
        return -eps / s

    return f


@functools.cache
def classifier(schedule_name: str):
    """log p_t(c | x) = log p_t(x | c) - log p_t(x) (+ const), per sample."""
    sched = schedule(schedule_name)
    g = gmm()

    def f(x, t_input, cond):
        alpha, sigma = _alpha_sigma(sched, t_input, x.dtype)
        cond_lp = problems.gmm_log_prob(g, x, alpha, sigma, log_weights=_log_weights(cond, x.dtype))
        return cond_lp - problems.gmm_log_prob(g, x, alpha, sigma)

    return f


def wrapped_model(c: dict, dtype=jnp.float64):
    """The model of run c, wrapped through the public API."""
    z = npz()
    sched = schedule(c["schedule"])
    kw = dict(model_type=c["model_type"], guidance_type=c["guidance_type"])
    if c["guidance_type"] != "uncond":
        labels = jnp.asarray(z["init/labels"])
        kw.update(condition=labels, guidance_scale=c["guidance_scale"])
        if c["guidance_type"] == "classifier-free":
            kw.update(unconditional_condition=jnp.full_like(labels, 3))
        else:
            kw.update(classifier_fn=classifier(c["schedule"]))
    return dpm_jax.model_wrapper(net(c["schedule"], c["model_type"]), sched, **kw)


SOLVER_OPTIONS = (
    "steps",
    "order",
    "method",
    "algorithm_type",
    "skip_type",
    "solver_type",
    "lower_order_final",
    "denoise_to_zero",
    "t_start",
    "t_end",
    "correcting_x0_fn",
    "thresholding_max_val",
    "dynamic_thresholding_ratio",
    "atol",
    "rtol",
    "return_intermediate",
)


def run(c: dict, dtype=jnp.float64):
    """Runs configuration c through dpm_jax.sample / dpm_jax.inverse; returns (x, info)."""
    z = npz()
    x = jnp.asarray(z["init/" + c["x_init"]], dtype)
    fn = dpm_jax.inverse if c["api"] == "inverse" else dpm_jax.sample
    opts = {k: c[k] for k in SOLVER_OPTIONS}
    if c["method"] == "adaptive":  # the reference's step rule: no growth cap
        opts["max_step_growth"] = None
    # Options the reference accepts and ignores, which dpm_jax refuses (every option is
    # used or refused): dropping them runs what the reference ran.
    noise = c["algorithm_type"] == "dpmsolver"
    if noise and not c["denoise_to_zero"]:  # its noise prediction is never corrected
        for k in ("correcting_x0_fn", "thresholding_max_val", "dynamic_thresholding_ratio"):
            opts.pop(k)
    if opts.get("correcting_x0_fn") is None:
        opts.pop("thresholding_max_val", None)
        opts.pop("dynamic_thresholding_ratio", None)
    if c["order"] == 1 or c["method"] in ("singlestep_fixed", "adaptive"):
        opts.pop("lower_order_final")  # (no lower orders to switch to, or not read)
    if c["order"] == 1:
        opts.pop("solver_type")  # (it shapes the terms of order 2 and 3)
    if c["method"] == "adaptive":
        opts.pop("steps")
        opts.pop("skip_type")
    else:
        opts.pop("atol")
        opts.pop("rtol")
    return fn(wrapped_model(c, dtype), x, schedule(c["schedule"]), return_info=True, **opts)
