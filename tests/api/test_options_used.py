"""Every option is used or refused: swept over every (method, option) pair of the keyword API.

For each method of the registry and each option of ``sample`` (at a value other than its
default), the call must either raise a ValueError / TypeError whose message names the
option, or change what the call returns (the samples; or, for the options that do not
change the samples, what they are for: the intermediates, the status, the program).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dpm_jax
from dpm_jax import SolverOptions, schedules
from dpm_jax._options import OPTION_NAMES
from dpm_jax.plan.solvers import registry

SCHED = schedules.discrete(betas=np.linspace(1e-4, 0.02, 1000))
MODEL = dpm_jax.model_wrapper(
    lambda x, t: 0.1 * x + 0.05 * jnp.sin(x * (1 + t[:, None] / 999)), SCHED
)
X = jnp.asarray(np.random.default_rng(0).normal(size=(2, 3)))
DEFAULTS = {f.name: f.default for f in dataclasses.fields(SolverOptions)}
BUILTINS = [m for m in registry.METHODS]


def _xt(x, t, step):
    return x * 0.99


#: a value other than the default, for each option
OTHER = dict(
    steps=9,
    order=None,  # per method, below
    algorithm_type=None,  # per method
    skip_type="logSNR",
    solver_type="taylor",
    lower_order_final=False,
    denoise_to_zero=True,
    t_start=0.9,
    t_end=0.01,
    timesteps=[1.0, 0.7, 0.4, 0.2, 0.1, 0.001],
    sigmas=[80.0, 10.0, 3.0, 1.0, 0.3, 0.05],
    model_timesteps=None,  # per method
    multistep3_variant="third_order",
    unipc_variant="bh1",
    unipc_corrector=False,
    ipndm_variant="v",
    deis_variant="rhoab",
    final_sigmas_type="zero",
    euler_at_final=True,
    karras_rho=5.0,
    steps_offset=1,
    spacing_rule="ddim",
    begin_index=1,
    correcting_x0_fn="dynamic_thresholding",
    correcting_xt_fn=_xt,
    thresholding_max_val=0.5,
    dynamic_thresholding_ratio=0.9,
    atol=1e-8,  # with rtol 1e-7 (CONTEXT): the defaults do not bind on this smooth model
    rtol=1e-5,
    error_norm="per_sample",
    max_step_growth=3.0,
    check_finite=True,
    throw=False,
    return_intermediate=True,
    return_info=True,
    unroll=2,
    remat=True,
    progress=True,
)
assert set(OTHER) == set(OPTION_NAMES) - {"method"}
#: options compared in a context where they can matter (set in both runs)
CONTEXT = {"atol": {"rtol": 1e-7}}


def _base(method):
    solver = registry.get(method)
    order = max(o for o in solver.orders if o <= 3)
    return dict(method=method, order=order, return_info=True) | (
        {} if solver.adaptive else {"steps": 6}
    )


def _other(method, name, base):
    solver = registry.get(method)
    if name == "order":
        alts = [o for o in solver.orders if o != base["order"]]
        return alts[0] if alts else 1  # a solver of one order: refused
    if name == "algorithm_type":
        current = base.get("algorithm_type") or solver.default_algorithm
        alts = [a for a in ("dpmsolver", "dpmsolver++") if a != current]
        return alts[0]
    if name == "model_timesteps":
        steps = base.get("steps", 6)
        return np.linspace(0.95, 0.05, steps)
    return OTHER[name]


def _run(kw):
    try:
        out, info = dpm_jax.sample(MODEL, X, SCHED, **kw)
        jax.block_until_ready(out)
        return out, info, None
    except (ValueError, TypeError) as err:
        return None, None, err


def _differs(name, base_out, base_info, out, info) -> bool:
    if name == "return_intermediate":
        return info.intermediates is not None
    if name in ("check_finite", "throw"):
        return info.status is not None
    if name in ("unroll", "remat", "progress"):
        return True  # accepted by a fixed grid: changes the program, not the samples
    if name == "error_norm":  # per sample: its own steps and NFE
        return np.shape(info.nfe) != np.shape(base_info.nfe)
    return base_out.shape != out.shape or not np.array_equal(np.asarray(base_out), np.asarray(out))


@pytest.mark.parametrize("method", BUILTINS)
def test_every_option_is_used_or_refused(method, capsys):
    base = _base(method)
    base_out, base_info, err = _run(base)
    assert err is None, err
    ignored = []
    for name in OTHER:
        if name == "return_info":
            continue
        kw = dict(base)
        ref_out, ref_info = base_out, base_info
        if name in CONTEXT and registry.get(method).adaptive:
            kw.update(CONTEXT[name])
            ref_out, ref_info, err = _run(kw)
            assert err is None, err
        value = _other(method, name, base)
        kw[name] = value
        if name in ("timesteps", "sigmas"):
            kw.pop("steps", None)
        if name == "return_intermediate":
            kw["return_info"] = True
        if name == "euler_at_final" and "lower_order_final" in registry.get(method).options:
            kw["lower_order_final"] = False  # (else the last step is first order already)
        out, info, err = _run(kw)
        if err is not None:
            assert f"`{name}`" in str(err) or name in str(err), (method, name, str(err))
            continue
        if not _differs(name, ref_out, ref_info, out, info):
            ignored.append(name)
    capsys.readouterr()
    assert not ignored, f"method={method!r} accepts and ignores {ignored}"


def test_key_is_refused_for_a_deterministic_algorithm():
    with pytest.raises(ValueError, match="key"):
        dpm_jax.sample(MODEL, X, SCHED, steps=4, key=jax.random.key(0))
