"""dpm_jax against diffusers 0.42.1's DEISMultistepScheduler (``data/deis_golden.npz``,
made by ``tools/make_deis_golden.py``; see ``data/DEIS_GOLDEN_README.md``).

diffusers' DEIS ("deis" / "logrho") extrapolates eps by a polynomial in log rho and
integrates it exactly: it is DPM-Solver's noise-prediction multistep family with the exact
Taylor terms (order 2: solver_type "taylor"; order 3: multistep3_variant "third_order"),
which is what ``from_diffusers_config`` returns for it. 31 runs: orders 1-3, linspace /
leading / trailing / karras / exponential / flow grids, eps / v / x0 / flow prediction,
lower_order_final on and off, three beta schedules; float64 agreement <= 1e-6 asserted
(like the other diffusers runs).
"""

import json
import warnings

import diffusers_gmm
import jax.numpy as jnp
import numpy as np
import pytest
from paths import DATA

import dpm_jax

Z = np.load(DATA / "deis_golden.npz")
RUNS = sorted(k.split("/")[1] for k in Z.files if k.startswith("config/"))


def _setup(cid):
    cfg = json.loads(str(Z[f"config/{cid}"]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return dpm_jax.from_diffusers_config(cfg)


def _net(cid):
    """What a pipeline's model sees, (x, timestep): ``diffusers_gmm.pipeline_net``."""
    return diffusers_gmm.pipeline_net(
        bool(Z[f"flow/{cid}"]),
        str(Z[f"prediction_type/{cid}"]),
        Z[f"alphas_cumprod/{cid}"],
        Z[f"timesteps/{cid}"],
    )


def test_all_runs_present():
    assert len(RUNS) == 31


@pytest.mark.parametrize("cid", RUNS)
def test_deis_matches_diffusers(cid):
    setup = _setup(cid)
    steps = int(Z[f"steps/{cid}"])
    assert setup.options.method == "multistep" and setup.options.algorithm.name == "dpmsolver"
    model = dpm_jax.model_wrapper(_net(cid), setup.schedule, model_type=setup.model_type)
    plan = dpm_jax.build_plan(
        setup.schedule,
        steps=steps,
        **{k: v for k, v in setup.options.items() if k not in ("correcting_x0_fn",)},
    )
    assert plan.nfe == steps
    if not bool(Z[f"flow/{cid}"]):  # the model is called at diffusers' timesteps
        np.testing.assert_allclose(plan.t_input, Z[f"timesteps/{cid}"], rtol=0, atol=1e-9)
    out = dpm_jax.sample(
        model, jnp.asarray(Z[f"x_T/{cid}"]), setup.schedule, steps=steps, **setup.options
    )
    err = float(np.max(np.abs(np.asarray(out) - Z[f"out64/{cid}"])))
    assert err <= 1e-6, (cid, err)
