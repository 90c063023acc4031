"""DPM-Solver-v3 as a solver object: ``dpm_jax.sample(..., solver=DPMSolverV3(ems), grid=...)``.

It runs :func:`dpm_jax.v3.sample_v3` with the object's fields and the grid's steps and span
(the same program: equal bit for bit, eagerly and under ``jax.jit`` with the statistics
closed over); every other option of ``sample`` is refused unless at its default, before
anything is traced; bad fields are refused when the object is made; it compares and
hashes by the statistics' content. The other solvers' plans are untouched
(``tests/plan/test_plan_freeze.py``).
"""

from __future__ import annotations

import dataclasses
import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from counting import compiles
from gaussian_oracle import MU, SCH, SIGMA, D, gauss_eps

import dpm_jax
from dpm_jax import grids, schedules
from dpm_jax.solvers import DPMSolverV3
from dpm_jax.v3 import EMS, ems_lambdas, estimate_ems, sample_v3

MODEL = dpm_jax.model_wrapper(gauss_eps, SCH)


@pytest.fixture(scope="module")
def ems():
    """A tiny estimate: 16 data samples of the Gaussian, 41 points, one probe."""
    data = np.random.default_rng(7).multivariate_normal(MU, SIGMA, size=16)
    return estimate_ems(
        gauss_eps, SCH, data, key=jax.random.key(3), n_points=40, probes=1, batch_size=16
    )


def noise(n: int, seed: int, dtype=np.float64):
    return jnp.asarray(np.random.default_rng(seed).normal(size=(n, D)).astype(dtype))


def never(x, t):  # the refusals come before any trace
    raise AssertionError("the model was called")


def same(a, b) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


# --------------------------------------------------------------------------- same program

GRIDS = [
    (grids.LogSNR(6), dict(skip_type="logSNR", steps=6)),
    (grids.TimeUniform(5), dict(skip_type="time_uniform", steps=5)),
    (grids.TimeQuadratic(6), dict(skip_type="time_quadratic", steps=6)),
    (grids.Karras(6), dict(skip_type="karras", steps=6)),
    (
        grids.LogSNR(5, t_start=0.8, t_end=0.01),
        dict(skip_type="logSNR", steps=5, t_start=0.8, t_end=0.01),
    ),
    (
        grids.Timesteps((1.0, 0.6, 0.3, 0.1, 0.03, 0.001)),
        dict(timesteps=(1.0, 0.6, 0.3, 0.1, 0.03, 0.001), steps=5),
    ),
]
GRID_IDS = ["logSNR", "time_uniform", "time_quadratic", "karras", "logSNR_span", "timesteps"]
OPTIONS = [
    dict(),
    dict(order=3, p_pseudo=True, c_pseudo=False, lower_order_final=False, times="interpolate"),
    dict(order=1, use_corrector=False, half=True, degenerated=True),
]


@pytest.mark.parametrize("options", OPTIONS, ids=["defaults", "order3_pseudo", "order1_degen"])
@pytest.mark.parametrize("grid, keywords", GRIDS, ids=GRID_IDS)
def test_sample_is_sample_v3_bit_for_bit(ems, grid, keywords, options):
    x_T = noise(3, 0)
    solver = DPMSolverV3(ems, **options)
    ours = dpm_jax.sample(MODEL, x_T, SCH, solver=solver, grid=grid)
    ref = sample_v3(MODEL, x_T, SCH, ems, **keywords, **options)
    assert same(ours, ref)


@pytest.mark.parametrize("grid, keywords", GRIDS[:4], ids=GRID_IDS[:4])
def test_under_jit_with_the_statistics_closed_over(ems, grid, keywords):
    x_T = noise(3, 1, np.float32)
    solver = DPMSolverV3(ems, order=3)
    ours = jax.jit(lambda x: dpm_jax.sample(MODEL, x, SCH, solver=solver, grid=grid))(x_T)
    ref = jax.jit(lambda x: sample_v3(MODEL, x, SCH, ems, order=3, **keywords))(x_T)
    assert ours.dtype == jnp.float32 and same(ours, ref)


def test_default_grid_is_logsnr_20(ems):
    x_T = noise(2, 2)
    ours = dpm_jax.sample(MODEL, x_T, SCH, solver=DPMSolverV3(ems))
    assert same(ours, sample_v3(MODEL, x_T, SCH, ems, steps=20))


def test_a_bare_network_is_what_model_wrapper_makes_of_it():
    """sample's contract: a bare network is called with the schedule's time input (here a
    discrete table: 1000 (t - 1/N)), as ``model_wrapper(net, schedule)`` calls it."""
    sched = schedules.discrete(betas=np.linspace(1e-4, 0.02, 1000))
    lam = ems_lambdas(sched, 30)
    ones = np.ones((31, D))
    stats = EMS(lam, ones, 0.1 * ones, 0.01 * ones)

    def net(x, t_in):
        return 0.5 * x + 1e-3 * t_in[:, None]

    x_T = noise(2, 3)
    ours = dpm_jax.sample(net, x_T, sched, solver=DPMSolverV3(stats), grid=grids.LogSNR(5))
    wrapped = sample_v3(dpm_jax.model_wrapper(net, sched), x_T, sched, stats, steps=5)
    assert same(ours, wrapped)
    assert not np.allclose(ours, sample_v3(net, x_T, sched, stats, steps=5))  # not t itself


def test_repeated_calls_do_not_compile_again(ems):
    x_T = noise(2, 4)
    solver, grid = DPMSolverV3(ems, order=2), grids.LogSNR(6)
    first = dpm_jax.sample(gauss_eps, x_T, SCH, solver=solver, grid=grid)
    with compiles() as c:
        again = dpm_jax.sample(gauss_eps, x_T, SCH, solver=DPMSolverV3(ems), grid=grid)
    assert len(c) == 0 and same(first, again)


# --------------------------------------------------------------------------- refusals

#: A non-default value of every option of ``sample`` (the test below keeps it complete).
NON_DEFAULT = dict(
    steps=6,
    order=3,
    method="unipc",
    algorithm_type="dpmsolver",
    skip_type="logSNR",
    solver_type="taylor",
    lower_order_final=False,
    denoise_to_zero=True,
    t_start=0.9,
    t_end=0.01,
    timesteps=[1.0, 0.5, 0.01],
    sigmas=[10.0, 1.0, 0.0],
    model_timesteps=[1.0, 0.5],
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
    correcting_xt_fn=lambda x, t, step: x,
    thresholding_max_val=2.0,
    dynamic_thresholding_ratio=0.9,
    atol=0.01,
    rtol=0.1,
    error_norm="per_sample",
    max_step_growth=None,
    check_finite=True,
    throw=False,
    return_intermediate=True,
    return_info=True,
    unroll=1,
    remat=True,
    progress=True,
    key=jax.random.key(0),
    _batch_axis="batch",
)
READ = {"model", "x_T", "noise_schedule", "solver", "grid"}


def test_every_option_of_sample_is_listed():
    params = inspect.signature(dpm_jax.sample).parameters
    assert set(NON_DEFAULT) == set(params) - READ
    for name, value in NON_DEFAULT.items():
        assert value is not params[name].default, name


@pytest.mark.parametrize("name", list(NON_DEFAULT))
def test_every_other_option_is_refused_by_name(ems, name):
    kw = {name: NON_DEFAULT[name]}
    with pytest.raises(ValueError, match=f"`{name}`"):
        dpm_jax.sample(never, noise(2, 0), SCH, solver=DPMSolverV3(ems), grid=grids.LogSNR(6), **kw)


def test_options_at_their_defaults_are_accepted(ems):
    params = inspect.signature(dpm_jax.sample).parameters
    defaults = {k: p.default for k, p in params.items() if k not in READ}
    x_T = noise(2, 5)
    out = dpm_jax.sample(MODEL, x_T, SCH, solver=DPMSolverV3(ems), grid=grids.LogSNR(6), **defaults)
    assert same(out, sample_v3(MODEL, x_T, SCH, ems, steps=6))


def test_refused_before_anything_is_traced_under_jit(ems):
    solver = DPMSolverV3(ems)
    with pytest.raises(ValueError, match="`return_info`"):
        jax.jit(lambda x: dpm_jax.sample(never, x, SCH, solver=solver, return_info=True))(
            noise(2, 0)
        )


@pytest.mark.parametrize(
    "grid, exc, words",
    [
        (grids.Exponential(6), ValueError, "`grid` must be one of LogSNR, TimeUniform"),
        (grids.Lu(6), ValueError, "`grid` must be one of"),
        (grids.Trailing(6), ValueError, "`grid` must be one of"),
        (grids.Timesteps((1.0, 0.5, 0.01), model_timesteps=(1.0, 0.4)), ValueError, "model"),
        (grids.Timesteps((0.01, 0.5, 1.0)), ValueError, "t_end|decreasing"),  # upwards
        (grids.Sigmas((10.0, 1.0, 0.0)), ValueError, "`grid` must be one of"),
        (grids.Karras(6, rho=5.0), ValueError, "`rho`"),
        (grids.Karras(6, final="zero"), ValueError, "`final`"),
        ("logSNR", TypeError, "`grid`"),
    ],
)
def test_other_grids_are_refused(ems, grid, exc, words):
    with pytest.raises(exc, match=words):
        dpm_jax.sample(never, noise(2, 0), SCH, solver=DPMSolverV3(ems), grid=grid)


def test_inverse_build_plan_and_stepper_refuse_it(ems):
    solver = DPMSolverV3(ems)
    with pytest.raises(ValueError, match="DPMSolverV3 runs through dpm_jax.sample only"):
        dpm_jax.inverse(never, noise(2, 0), SCH, solver=solver)
    with pytest.raises(ValueError, match="DPMSolverV3"):
        dpm_jax.build_plan(SCH, solver=solver, grid=grids.LogSNR(6))
    with pytest.raises(ValueError, match="DPMSolverV3"):
        dpm_jax.stepper(SCH, solver=solver, grid=grids.LogSNR(6))


# --------------------------------------------------------------------------- the object


@pytest.mark.parametrize(
    "change, exc, words",
    [
        (dict(ems="stats"), TypeError, "`ems` must be a dpm_jax.v3.EMS"),
        (dict(order=4), ValueError, "`order` must be 1, 2 or 3"),
        (dict(order=0), ValueError, "`order`"),
        (dict(order=True), TypeError, "`order` must be an int"),
        (dict(order=2.0), TypeError, "`order` must be an int"),
        (dict(use_corrector=1), TypeError, "`use_corrector` must be a bool"),
        (dict(lower_order_final="yes"), TypeError, "`lower_order_final`"),
        (dict(half=None), TypeError, "`half`"),
        (dict(p_pseudo=0), TypeError, "`p_pseudo`"),
        (dict(c_pseudo="True"), TypeError, "`c_pseudo`"),
        (dict(degenerated=1.0), TypeError, "`degenerated`"),
        (dict(times="nearest"), ValueError, "`times` must be one of 'snap', 'interpolate'"),
    ],
)
def test_bad_fields_are_refused_when_made(ems, change, exc, words):
    kw = dict(ems=ems)
    kw.update(change)
    with pytest.raises(exc, match=f"DPMSolverV3: {words}"):
        DPMSolverV3(**kw)


def test_non_finite_or_traced_statistics_are_refused(ems):
    bad = np.asarray(ems.s).copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="`ems.s` must be finite"):
        DPMSolverV3(EMS(ems.lambdas, ems.l, bad, ems.b))
    with pytest.raises(TypeError, match="traced"):
        jax.jit(lambda lin: DPMSolverV3(EMS(ems.lambdas, lin, ems.s, ems.b)).order)(ems.l)


def test_equality_and_hash_by_content(ems):
    a = DPMSolverV3(ems, order=3)
    copy = EMS(ems.lambdas, np.array(ems.l), np.array(ems.s), np.array(ems.b), dict(ems.meta))
    b = DPMSolverV3(copy, order=3)
    assert a == b and hash(a) == hash(b) and a is not b
    assert a != DPMSolverV3(ems, order=2)
    assert a != DPMSolverV3(ems, order=3, use_corrector=False)
    other = EMS(ems.lambdas, np.array(ems.l) * 1.001, ems.s, ems.b, dict(ems.meta))
    assert a != DPMSolverV3(other, order=3)
    assert a != DPMSolverV3(EMS(ems.lambdas, ems.l, ems.s, ems.b, {"note": 1}), order=3)
    assert len({a, b, DPMSolverV3(ems)}) == 2
    assert dataclasses.replace(a, order=2) == DPMSolverV3(ems)
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.order = 2  # type: ignore[misc]


def test_a_jit_static_argument_compiles_once_for_equal_objects(ems):
    def run(x, solver):
        return dpm_jax.sample(MODEL, x, SCH, solver=solver, grid=grids.LogSNR(6))

    f = jax.jit(run, static_argnames="solver")
    x_T = noise(2, 6)
    first = f(x_T, DPMSolverV3(ems, order=3))
    copy = EMS(ems.lambdas, np.array(ems.l), np.array(ems.s), np.array(ems.b), dict(ems.meta))
    with compiles() as c:
        again = f(x_T, DPMSolverV3(copy, order=3))
    assert len(c) == 0 and same(first, again)


def test_repr_summarises_the_statistics(ems):
    r = repr(DPMSolverV3(ems, order=3, half=True))
    assert r.startswith(f"DPMSolverV3(ems=EMS(N=40, shape=({D},), lambdas=[")
    assert "sha256=" in r and "array" not in r and "meta" not in r and len(r) < 300
    assert r.endswith(
        "order=3, use_corrector=True, lower_order_final=True, half=True, p_pseudo=False, "
        "c_pseudo=True, degenerated=False, times='snap')"
    )


def test_options_are_sample_v3_keywords(ems):
    params = inspect.signature(sample_v3).parameters
    opts = DPMSolverV3(ems).options()
    for name, value in opts.items():
        assert params[name].kind is inspect.Parameter.KEYWORD_ONLY
        assert value == params[name].default, name  # the same defaults
    assert "DPMSolverV3" in dpm_jax.solvers.__all__
