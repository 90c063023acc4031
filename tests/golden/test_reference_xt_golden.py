"""``correcting_xt_fn`` against the reference implementation (``data/reference_xt_golden.npz``).

37 runs of the official DPM-Solver PyTorch code with an inpainting-like correction that
reads t and step (``tools/make_reference_xt_golden.py``): multistep, singlestep and
singlestep_fixed, orders 1-3, DPM-Solver and DPM-Solver++, with and without
``denoise_to_zero``; float64, the analytic Gaussian-mixture model of the reference's
golden set. The final samples and the intermediate states (the reference's list: the
corrected states) must agree to 1e-11.
"""

from __future__ import annotations

import json

import jax.numpy as jnp
import numpy as np
import pytest
from golden import net, npz, schedule
from paths import DATA

import dpm_jax

Z = dict(np.load(DATA / "reference_xt_golden.npz"))
CONFIGS = json.loads(str(Z["configs_json"]))
SCHED = schedule("discrete_linear")
MODEL = dpm_jax.model_wrapper(net("discrete_linear", "noise"), SCHED)
KNOWN, NOISE, MASK = (jnp.asarray(Z[k]) for k in ("known", "z", "mask"))


def correcting_xt_fn(xt, t, step):
    a, s = SCHED.marginal_alpha(t), SCHED.marginal_std(t)
    return MASK * (a * KNOWN + s * NOISE) + (1 - MASK) * xt * (1 - 0.01 * step)


@pytest.mark.parametrize("cid", [c["id"] for c in CONFIGS])
def test_correcting_xt_fn_matches_the_reference(cid):
    cfg = CONFIGS[cid]
    opts = {k: cfg[k] for k in ("method", "order", "algorithm_type", "steps", "skip_type")}
    x, info = dpm_jax.sample(
        MODEL,
        jnp.asarray(npz()["init/xT"]),
        SCHED,
        denoise_to_zero=cfg["denoise_to_zero"],
        correcting_xt_fn=correcting_xt_fn,
        return_intermediate=True,
        return_info=True,
        **opts,
    )
    np.testing.assert_allclose(np.asarray(x), Z[f"out/{cid}"], rtol=0, atol=1e-11)
    np.testing.assert_allclose(
        np.asarray(info.intermediates), Z[f"intermediates/{cid}"], rtol=0, atol=1e-11
    )
    known = np.asarray(MASK) * np.asarray(KNOWN)
    if not cfg["denoise_to_zero"]:  # the known pixels are exactly alpha known + sigma z at the end
        t_end = 1.0 / SCHED.total_N
        a, s = (float(f(np.float64(t_end))) for f in (SCHED.marginal_alpha, SCHED.marginal_std))
        want = a * known + s * np.asarray(MASK) * np.asarray(NOISE)
        np.testing.assert_allclose(np.asarray(x) * np.asarray(MASK), want, rtol=0, atol=1e-12)


def test_refused_where_the_reference_refuses_it():
    x = jnp.asarray(npz()["init/xT"])
    with pytest.raises(ValueError, match="correcting_xt_fn"):
        dpm_jax.sample(MODEL, x, SCHED, method="adaptive", correcting_xt_fn=correcting_xt_fn)
    with pytest.raises(ValueError, match="unipc_corrector"):
        dpm_jax.sample(MODEL, x, SCHED, method="unipc", correcting_xt_fn=correcting_xt_fn)
    with pytest.raises(TypeError, match="correcting_xt_fn"):
        dpm_jax.sample(MODEL, x, SCHED, correcting_xt_fn="inpaint")
    bad = lambda xt, t, step: xt[:, :3]
    with pytest.raises(ValueError, match="correcting_xt_fn"):
        dpm_jax.sample(MODEL, x, SCHED, steps=4, correcting_xt_fn=bad)
