"""Agreement with k-diffusion 0.1.1.post1 (``data/kdiffusion_golden.npz`` and
``data/kdiffusion_dpmpp_golden.npz``, made by ``tools/make_kdiffusion_golden.py`` and
``tools/make_kdiffusion_dpmpp_golden.py``; see ``data/KDIFFUSION_GOLDEN_README.md``).

``sample_heun`` (EDM's Heun, s_churn = 0) and ``sample_dpm_2`` are ``method="heun"`` and
``method="dpm2"`` (36 runs: Karras grids of 1-20 steps, rho 7 and 3, two sigma ranges,
and three other grids, one not ending at 0): equal to <= 1e-8 in float64 (asserted), the
model called at the same sigmas, and the built-in ``skip_type="karras",
final_sigmas_type="zero"`` grid equal to k-diffusion's.

k-diffusion's DPM-Solver++ samplers run on its Karras sigmas, passed to dpm_jax as an
explicit grid (``sigmas=``, ending with 0) on ``schedules.edm()`` (alpha = 1), with the
exact GMM denoiser as an x0 network. The SDE samplers get the stored noise as dpm_jax's
z_i. Which dpm_jax options reproduce which sampler (float64, <= 1e-12):

* ``sample_dpmpp_2m``: ``order=2`` (the default solver_type "dpmsolver" is its midpoint form);
* ``sample_dpmpp_2m_sde(solver_type="midpoint" | "heun")``: ``algorithm_type="sde-dpmsolver++",
  order=2, solver_type="dpmsolver" | "taylor"``;
* ``sample_dpmpp_3m_sde``: ``algorithm_type="sde-dpmsolver++", order=3,
  solver_type="taylor"`` (its second step is the Taylor form) and ``lower_order_final=False``
  (k-diffusion keeps order 3 up to the last step into sigma = 0; an explicit grid's rule
  lowers the last steps below 10 steps, diffusers' karras grid below 15).
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from diffusers_gmm import denoise
from paths import DATA

import dpm_jax
from dpm_jax import _executor, schedules

Z = np.load(DATA / "kdiffusion_dpmpp_golden.npz")
K = np.load(DATA / "kdiffusion_golden.npz")
K_IDS = sorted(k.split("/")[1] for k in K.files if k.startswith("config/"))
METHOD = {"sample_heun": "heun", "sample_dpm_2": "dpm2"}
IDS = sorted(k.split("/")[1] for k in Z.files if k.startswith("config/"))
EDM = schedules.edm()
MODEL = dpm_jax.model_wrapper(
    lambda x, sigma: denoise(x, 1.0, sigma[:, None], xp=jnp), EDM, model_type="x_start"
)
OPTIONS = {
    ("sample_dpmpp_2m", None): dict(order=2),
    ("sample_dpmpp_2m_sde", "midpoint"): dict(
        order=2, algorithm_type="sde-dpmsolver++", solver_type="dpmsolver"
    ),
    ("sample_dpmpp_2m_sde", "heun"): dict(
        order=2, algorithm_type="sde-dpmsolver++", solver_type="taylor"
    ),
    ("sample_dpmpp_3m_sde", None): dict(
        order=3, algorithm_type="sde-dpmsolver++", solver_type="taylor", lower_order_final=False
    ),
}


def _run(cid, **opts):
    noise = Z[f"noise/{cid}"] if f"noise/{cid}" in Z.files else None
    orig = _executor._standard_normal
    _executor._execute_jit.clear_cache()  # the injected noise is compiled in as a constant
    if noise is not None:
        z = jnp.asarray(noise)
        _executor._standard_normal = lambda key, i, x: z[i].astype(x.dtype)
    try:
        return np.asarray(
            dpm_jax.sample(
                MODEL,
                jnp.asarray(Z[f"x_T/{cid}"]),
                EDM,
                sigmas=Z[f"sigmas/{cid}"],
                key=jax.random.key(0) if "sde" in opts.get("algorithm_type", "") else None,
                **opts,
            )
        )
    finally:
        _executor._standard_normal = orig
        _executor._execute_jit.clear_cache()


@pytest.mark.parametrize("cid", IDS)
def test_dpmpp_samplers_match_k_diffusion(cid):
    cfg = json.loads(str(Z[f"config/{cid}"]))
    opts = OPTIONS[(cfg["sampler"], cfg.get("solver_type"))]
    out = _run(cid, **opts)
    np.testing.assert_allclose(out, Z[f"out/{cid}"], rtol=0, atol=1e-12)


def test_the_defaults_differ_from_dpmpp_3m_sde_as_documented():
    """With the defaults (solver_type="dpmsolver", lower_order_final=True) third-order
    sde-dpmsolver++ is not dpmpp_3m_sde: the docs quote these differences."""
    diffs = {}
    for cid in IDS:
        cfg = json.loads(str(Z[f"config/{cid}"]))
        if cfg["sampler"] != "sample_dpmpp_3m_sde" or cfg["sigma_min"] != 0.002:
            continue
        out = _run(cid, order=3, algorithm_type="sde-dpmsolver++")
        diffs[cfg["n"]] = float(np.max(np.abs(out - Z[f"out/{cid}"])))
    print(diffs)
    assert set(diffs) == {5, 10, 20} and all(d > 1e-8 for d in diffs.values())


@pytest.mark.parametrize("cid", K_IDS)
def test_heun_and_dpm2_match_k_diffusion(cid):
    cfg = json.loads(str(K[f"config/{cid}"]))
    sigmas = K[f"sigmas/{cid}"]
    method = METHOD[cfg["sampler"]]
    plan = dpm_jax.build_plan(EDM, method=method, sigmas=sigmas)
    np.testing.assert_allclose(plan.sigma / plan.alpha, K[f"call_sigma/{cid}"], rtol=1e-12)
    x, info = dpm_jax.sample(
        MODEL,
        jnp.asarray(K[f"x_T/{cid}"]),
        EDM,
        method=method,
        sigmas=sigmas,
        return_info=True,
        return_intermediate=True,
    )
    assert info.nfe == K[f"call_sigma/{cid}"].size == int(np.sum(K[f"nfe_per_step/{cid}"]))
    np.testing.assert_allclose(np.asarray(x), K[f"out/{cid}"], rtol=0, atol=1e-8)
    np.testing.assert_allclose(
        np.asarray(info.intermediates), K[f"states/{cid}"], rtol=0, atol=1e-8
    )
    if cfg["grid"] == "karras":  # the built-in Karras grid is k-diffusion's
        grid = dpm_jax.build_plan(
            EDM,
            method=method,
            steps=cfg["n"],
            skip_type="karras",
            final_sigmas_type="zero",
            karras_rho=cfg["rho"],
            t_start=cfg["sigma_max"],
            t_end=cfg["sigma_min"],
        )
        np.testing.assert_allclose(grid.sigma / grid.alpha, plan.sigma / plan.alpha, rtol=1e-12)
