"""``model_timesteps``: the model called at x_{t_i} with its own time s_i (LD3's decoupled
model times). Unmoved calls are the plain run bit for bit; a moved call changes only that
row's model inputs (t, t_input, alpha, sigma), never the coefficients; the result is the
formula's; bad input is refused by name before tracing."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dpm_jax
from dpm_jax import build_plan, schedules
from dpm_jax._options import SolverOptions
from dpm_jax.plan.build import plan_run

VP = schedules.vp_linear()
FIELDS = ("t", "t_input", "alpha", "sigma", "x_coef", "m_coef", "noise_coef")
MODEL_FIELDS = ("t", "t_input", "alpha", "sigma")


def _net(x, t_in):
    return jnp.tanh(x) * (0.3 + 0.001 * t_in[:, None])


MODEL = dpm_jax.model_wrapper(_net, VP)
X = jnp.asarray(np.random.default_rng(0).normal(size=(3, 5)))

CASES = [
    (VP, dict(method="multistep", order=2, algorithm_type="dpmsolver++")),
    (VP, dict(method="multistep", order=3, algorithm_type="dpmsolver")),
    (VP, dict(method="multistep", order=2, algorithm_type="sde-dpmsolver++")),
    (VP, dict(method="unipc", order=2)),
    (VP, dict(method="unipc", order=3, unipc_variant="bh1")),
    (VP, dict(method="ipndm", order=4)),
    (VP, dict(method="deis", order=3)),
    (VP, dict(method="multistep", skip_type="karras")),
    (VP, dict(method="multistep", denoise_to_zero=True)),
    (VP, dict(method="deis", order=2, skip_type="karras", final_sigmas_type="repeat")),
    (
        schedules.discrete(betas=np.linspace(1e-4, 0.02, 1000)),
        dict(method="multistep", skip_type="leading", steps_offset=1),
    ),
    (schedules.edm(), dict(method="multistep", sigmas=[80.0, 20.0, 4.0, 1.0, 0.3, 0.0])),
]


def _steps(kw):
    return None if "sigmas" in kw else 5


@pytest.mark.parametrize("sched, kw", CASES)
def test_the_nodes_own_times_give_the_plain_plan_bit_for_bit(sched, kw):
    plain = build_plan(sched, steps=_steps(kw), **kw)
    n = plain.nfe - int(plain.denoise_to_zero)
    same = build_plan(sched, steps=_steps(kw), model_timesteps=plain.t[:n], **kw)
    for f in FIELDS:
        np.testing.assert_array_equal(getattr(same, f), getattr(plain, f), err_msg=f)


@pytest.mark.parametrize("sched, kw", CASES)
def test_a_moved_call_changes_only_its_model_inputs(sched, kw):
    plain = build_plan(sched, steps=_steps(kw), **kw)
    n = plain.nfe - int(plain.denoise_to_zero)
    moved = np.array(plain.t[:n])
    i = 2
    moved[i] = 0.5 * (plain.t[i] + plain.t[i + 1]) if plain.t[i + 1] > 0 else 0.9 * plain.t[i]
    got = build_plan(sched, steps=_steps(kw), model_timesteps=moved, **kw)
    for f in ("x_coef", "m_coef", "noise_coef"):
        np.testing.assert_array_equal(getattr(got, f), getattr(plain, f), err_msg=f)
    s = np.float64(moved[i])
    expect = dict(
        t=s,
        t_input=sched.time_input(s),
        alpha=np.exp(sched.marginal_log_alpha(s)),
        sigma=sched.marginal_std(s),
    )
    for f in MODEL_FIELDS:
        row = np.asarray(getattr(got, f))
        assert row[i] == expect[f], (f, row[i], expect[f])
        others = np.arange(len(row)) != i
        np.testing.assert_array_equal(row[others], np.asarray(getattr(plain, f))[others])


def test_sample_is_the_formula_for_one_ddim_step():
    """x_1 = (sigma_1 / sigma_0) x_0 - alpha_1 expm1(-h) x0_hat with the data prediction at
    the moved time s: x0_hat = (x_0 - sigma(s) eps(x_0, s)) / alpha(s) (DPM-Solver++ eq. 3.5)."""
    with jax.enable_x64(True):
        x = jnp.asarray(np.random.default_rng(1).normal(size=(4, 3)))
        t0, t1, s = 0.8, 0.3, 0.62
        got = dpm_jax.sample(
            MODEL,
            x,
            VP,
            timesteps=[t0, t1],
            model_timesteps=[s],
            order=1,
            algorithm_type="dpmsolver++",
        )
        a0, a1, a_s = (np.exp(VP.marginal_log_alpha(np.float64(v))) for v in (t0, t1, s))
        s0, s1, s_s = (VP.marginal_std(np.float64(v)) for v in (t0, t1, s))
        h = (np.log(a1) - np.log(s1)) - (np.log(a0) - np.log(s0))
        eps = _net(x, jnp.full((4,), VP.time_input(np.float64(s))))
        x0_hat = (x - s_s * eps) / a_s
        want = (s1 / s0) * x - a1 * np.expm1(-h) * x0_hat
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-13, atol=1e-14)
        plain = dpm_jax.sample(MODEL, x, VP, timesteps=[t0, t1], order=1)
        assert not np.allclose(np.asarray(got), np.asarray(plain))


def test_sample_and_inverse_unmoved_are_bit_identical():
    plan = build_plan(VP, steps=6)
    a = dpm_jax.sample(MODEL, X, VP, steps=6)
    b = dpm_jax.sample(MODEL, X, VP, steps=6, model_timesteps=plan.t)
    assert bool(jnp.array_equal(a, b))
    up = build_plan(VP, steps=6, t_start=VP.t_eps, t_end=VP.T)
    a = dpm_jax.inverse(MODEL, X, VP, steps=6)
    b = dpm_jax.inverse(MODEL, X, VP, steps=6, model_timesteps=up.t)
    assert bool(jnp.array_equal(a, b))
    moved = np.array(up.t)
    moved[3] += 0.3 * (up.t[4] - up.t[3])
    c = dpm_jax.inverse(MODEL, X, VP, steps=6, model_timesteps=moved)
    assert bool(jnp.all(jnp.isfinite(c))) and not bool(jnp.array_equal(a, c))


def test_the_differentiable_plan_equals_the_float64_plan():
    with jax.enable_x64(True):
        ts = dpm_jax.time_grid(VP, "logSNR", VP.T, VP.t_eps, 5)
        ms = np.array(ts[:5])
        ms[1:] = 0.7 * ts[1:5] + 0.3 * ts[2:6]
        opts = SolverOptions(steps=5, method="unipc", order=2)
        host = plan_run(VP, SolverOptions(timesteps=ts, model_timesteps=ms, method="unipc"), "down")
        times = [ts[0], *[jnp.asarray(t) for t in ts[1:-1]], ts[-1]]
        traced = plan_run(VP, opts, "down", times=times, model_times=[jnp.asarray(m) for m in ms])
        for f in FIELDS:
            np.testing.assert_allclose(
                np.asarray(getattr(traced, f)), getattr(host, f), rtol=1e-12, atol=1e-14
            )


@pytest.mark.parametrize("method", ["singlestep", "singlestep_fixed", "heun", "dpm2", "adaptive"])
def test_methods_that_do_not_call_at_their_nodes_refuse_it(method):
    with pytest.raises(ValueError, match="`model_timesteps` does not apply with method"):
        dpm_jax.sample(MODEL, X, VP, steps=6, method=method, model_timesteps=np.full(6, 0.5))


@pytest.mark.parametrize(
    "value, exc, text",
    [
        (np.full(4, 0.5), ValueError, "one time per step"),
        (np.full((6, 1), 0.5), ValueError, "one time per step"),
        ([1.0, 0.8, np.nan, 0.4, 0.2, 0.1], ValueError, "finite"),
        ([1.0, 0.8, np.inf, 0.4, 0.2, 0.1], ValueError, "finite"),
        ([1.0, 0.8, 0.6, 1.5, 0.2, 0.1], ValueError, "outside the run's span"),
        ([1.0, 0.8, 0.6, 0.4, 0.2, 0.0], ValueError, "outside the run's span"),
        ("abc", TypeError, "1-D array of numbers"),
        ([1.0, 0.8, "x", 0.4, 0.2, 0.1], TypeError, "1-D array of numbers"),
    ],
)
def test_bad_model_timesteps_name_the_argument(value, exc, text):
    with pytest.raises(exc, match="`model_timesteps`") as info:
        dpm_jax.sample(MODEL, X, VP, steps=6, model_timesteps=value)
    assert text in str(info.value)


def test_traced_model_timesteps_are_refused():
    def f(m):
        return dpm_jax.sample(MODEL, X, VP, steps=2, model_timesteps=m)

    with pytest.raises(TypeError, match="`model_timesteps` must be concrete"):
        jax.jit(f)(jnp.asarray([1.0, 0.5]))


def test_a_timesteps_object_is_array_like_and_samples_as_its_times():
    """grids.Timesteps (what optimize_timesteps returns): np.asarray gives its times in
    float64 bit for bit, with len, indexing and iteration; without model times it may be
    passed as ``timesteps=`` (the run of ``grid=``, bit for bit)."""
    ts = dpm_jax.time_grid(VP, "time_quadratic", VP.T, VP.t_eps, 5)
    g = dpm_jax.grids.Timesteps(ts)
    arr = np.asarray(g)
    assert arr.dtype == np.float64 and arr.tobytes() == np.asarray(ts, np.float64).tobytes()
    assert len(g) == 6 and g[2] == ts[2] and np.array_equal(g[1:3], ts[1:3])
    assert [float(t) for t in g] == [float(t) for t in ts]
    a = dpm_jax.sample(MODEL, X, VP, timesteps=g, method="unipc")
    b = dpm_jax.sample(MODEL, X, VP, grid=g, solver=dpm_jax.solvers.UniPC())
    c = dpm_jax.sample(MODEL, X, VP, timesteps=ts, method="unipc")
    assert bool(jnp.array_equal(a, b)) and bool(jnp.array_equal(a, c))


def test_a_timesteps_object_with_model_times_is_refused_as_timesteps():
    """``timesteps=`` would drop the model times: a ValueError says to pass ``grid=``; the
    grid runs with them through ``grid=`` (or its keywords); as ``sigmas=`` (its values
    are times) it is refused."""
    ts = dpm_jax.time_grid(VP, "logSNR", VP.T, VP.t_eps, 4)
    ms = np.array(ts[:4])
    ms[1:] = 0.7 * ts[1:4] + 0.3 * ts[2:5]
    g = dpm_jax.grids.Timesteps(ts, model_timesteps=ms)
    for call in (
        lambda: dpm_jax.sample(MODEL, X, VP, timesteps=g),
        lambda: dpm_jax.sample(MODEL, X, VP, timesteps=g, model_timesteps=ms),
        lambda: dpm_jax.inverse(MODEL, X, VP, timesteps=g),
        lambda: build_plan(VP, timesteps=g),
        lambda: dpm_jax.stepper(VP, timesteps=g),
    ):
        with pytest.raises(ValueError, match="`timesteps` got a fitted grid with model times"):
            call()
    with pytest.raises(ValueError, match="pass it as `grid=`"):
        dpm_jax.sample(MODEL, X, VP, timesteps=g)
    with pytest.raises(ValueError, match="`sigmas` got a grid object"):
        dpm_jax.sample(MODEL, X, VP, sigmas=dpm_jax.grids.Timesteps(ts))
    got = dpm_jax.sample(MODEL, X, VP, grid=g)
    want = dpm_jax.sample(MODEL, X, VP, timesteps=ts, model_timesteps=ms)
    plain = dpm_jax.sample(MODEL, X, VP, timesteps=ts)
    assert bool(jnp.array_equal(got, want)) and not bool(jnp.array_equal(got, plain))
    assert bool(jnp.array_equal(dpm_jax.sample(MODEL, X, VP, **g.keywords()), want))
