"""Every run of the reference implementation's golden set, through the public API.

``data/dpm_solver_reference.npz``: 353 runs of the official DPM-Solver code in
float64 on an exact Gaussian-mixture model (``data/GOLDEN_README.md``). Each run
must match to its ``suggested_atol_float64 * max(1, max |ref|)``, make the
stored number of model calls, evaluate the model at the stored times, and
(where stored) return the stored intermediate states.
"""

from __future__ import annotations

import golden
import jax.numpy as jnp
import numpy as np
import pytest

import dpm_jax

CONFIGS = golden.configs()
FIXED = [c for c in CONFIGS if c["method"] != "adaptive"]


def _tol(c, ref):
    return c["suggested_atol_float64"] * max(1.0, float(np.max(np.abs(ref))))


def test_golden_set_is_complete():
    assert len(CONFIGS) == 353
    assert {c["method"] for c in CONFIGS} == {
        "singlestep",
        "multistep",
        "singlestep_fixed",
        "adaptive",
    }


@pytest.mark.parametrize("c", CONFIGS, ids=[c["id"] for c in CONFIGS])
def test_golden_float64(c):
    z = golden.npz()
    ref = z["out/" + c["id"]]
    x, info = golden.run(c)
    assert x.dtype == jnp.float64 and x.shape == ref.shape
    err = float(np.max(np.abs(np.asarray(x) - ref)))
    assert err <= _tol(c, ref), f"{c['label']}: max |out - ref| = {err:.3e} > {_tol(c, ref):.3e}"
    assert int(info.nfe) == c["nfe"], c["label"]
    if c["return_intermediate"]:
        want = z["intermediates/" + c["id"]]
        got = np.asarray(info.intermediates)
        assert got.shape == want.shape, c["label"]
        ierr = float(np.max(np.abs(got - want)))
        assert ierr <= _tol(c, want), f"{c['label']}: intermediates differ by {ierr:.3e}"


@pytest.mark.parametrize("c", FIXED, ids=[c["id"] for c in FIXED])
def test_golden_model_call_times(c):
    """The plan calls the model at exactly the reference's times, in order."""
    opts = {
        k: c[k]
        for k in (
            "steps",
            "order",
            "method",
            "algorithm_type",
            "skip_type",
            "solver_type",
            "lower_order_final",
            "denoise_to_zero",
        )
    }
    t_start, t_end = c["t_start_resolved"], c["t_end_resolved"]
    plan = dpm_jax.build_plan(golden.schedule(c["schedule"]), t_start=t_start, t_end=t_end, **opts)
    want = golden.npz()["eval_t/" + c["id"]]
    assert plan.nfe == want.shape[0]
    np.testing.assert_allclose(plan.t, want, rtol=1e-12, atol=1e-14)


F32 = (
    FIXED[::8] + [c for c in FIXED if c["guidance_type"] != "uncond" or c["correcting_x0_fn"]][::3]
)


@pytest.mark.parametrize("c", F32, ids=[c["id"] for c in F32])
def test_golden_float32(c):
    """float32 state: within 10x the reference's own float32-vs-float64 difference."""
    ref = golden.npz()["out/" + c["id"]]
    x, info = golden.run(c, dtype=jnp.float32)
    assert x.dtype == jnp.float32
    tol = 10 * c["f32_max_abs_diff"] + 1e-5
    err = float(np.max(np.abs(np.asarray(x, np.float64) - ref)))
    assert err <= tol, f"{c['label']}: float32 error {err:.3e} > {tol:.3e}"
    assert int(info.nfe) == c["f32_nfe"]


def test_discrete_tables_match_reference():
    """The clipped log-alpha table (discrete_cosine drops 4 entries) and its grid."""
    z = golden.npz()
    for name in ("discrete_linear", "discrete_cosine"):
        sched = golden.schedule(name)
        t_arr, la = sched.marginal_log_alpha.table
        np.testing.assert_allclose(la, z[f"schedule/{name}/log_alpha_array"].ravel(), rtol=1e-12)
        np.testing.assert_allclose(t_arr, z[f"schedule/{name}/t_array"].ravel(), rtol=1e-14)
    assert golden.schedule("discrete_cosine").total_N == 996
