"""Optimised time grids: dpm_jax.optimize_timesteps (ld3, gits, dmn), save / load.

The fitted grids' quality is measured on held-out noise in benchmarks/optimize_grids.py;
these tests check what must hold for any problem: valid grids, the gradient, the dynamic
programme, a known optimum, errors, files.
"""

from __future__ import annotations

import itertools
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dpm_jax
from dpm_jax import schedules
from dpm_jax.optimize import _common, gits, ld3
from dpm_jax.testing import problems

pytest.importorskip("optax")

SCHED = schedules.vp_linear()
GMM = problems.gmm_16d(seed=5, K=3, D=4)
MODEL = dpm_jax.model_wrapper(problems.noise_net(GMM, SCHED), SCHED)
X_T = jnp.asarray(np.random.default_rng(0).normal(size=(16, 4)))


def _valid(fitted, steps, t_start=SCHED.T, t_end=SCHED.t_eps):
    assert isinstance(fitted, dpm_jax.grids.Timesteps)
    ts = np.asarray(fitted)
    assert ts.dtype == np.float64 and ts.shape == (steps + 1,)
    assert np.all(np.isfinite(ts)) and np.all(np.diff(ts) < 0)
    assert ts[0] == t_start and ts[-1] == t_end


@pytest.mark.parametrize(
    "objective, kw",
    [
        ("ld3", dict(iterations=30)),
        ("ld3", dict(iterations=20, method="unipc", slack=0.01)),
        ("ld3", dict(iterations=10, method="ipndm", order=3, loss="mse")),
        ("ld3", dict(iterations=10, method="heun", loss="iqr")),
        ("gits", dict(points=14)),
        ("gits", dict(points=12, method="deis", order=3)),
        ("dmn", dict(iterations=50)),
        ("dmn", dict(iterations=50, order=3, multistep3_variant="third_order")),
    ],
)
def test_every_objective_gives_a_valid_grid_that_samples(objective, kw):
    fitted = dpm_jax.optimize_timesteps(MODEL, SCHED, X_T, steps=5, objective=objective, **kw)
    _valid(fitted, 5)
    # ld3 learns the model times too where the solver calls the model at its nodes
    calls_at_nodes = kw.get("method", "multistep") in ("multistep", "unipc", "ipndm", "deis")
    assert (fitted.model_timesteps is not None) == (objective == "ld3" and calls_at_nodes)
    solver = {k: v for k, v in kw.items() if k in ("method", "order", "algorithm_type")}
    out = dpm_jax.sample(MODEL, X_T, SCHED, **fitted.keywords(), **solver)
    assert np.all(np.isfinite(np.asarray(out)))


@pytest.mark.parametrize("objective", ["ld3", "gits"])
def test_image_shaped_states(objective):
    """States (B, H, W, C), as a UNet's: found by the benchmark (gits assumed (B, D))."""
    net = lambda x, t: 0.1 * x
    model = dpm_jax.model_wrapper(net, SCHED)
    x = jnp.asarray(np.random.default_rng(4).normal(size=(6, 3, 3, 2)))
    kw = dict(points=10) if objective == "gits" else dict(iterations=5)
    ts = dpm_jax.optimize_timesteps(model, SCHED, x, steps=4, objective=objective, **kw)
    _valid(ts, 4)


def test_other_spans_and_the_time_parametrisation():
    ts = dpm_jax.optimize_timesteps(
        MODEL, SCHED, X_T, steps=4, t_start=0.8, t_end=0.01, iterations=10, parametrization="time"
    )
    _valid(ts, 4, 0.8, 0.01)
    flow = schedules.flow()
    net = lambda x, t: 0.5 * x
    fm = dpm_jax.model_wrapper(net, flow, model_type="flow")
    ts = dpm_jax.optimize_timesteps(fm, flow, X_T, steps=4, iterations=5)  # lambda infinite
    _valid(ts, 4, 1.0, 0.0)


def test_ld3_gradient_matches_finite_differences():
    with jax.enable_x64(True):
        prob = _common.check(
            "ld3",
            MODEL,
            SCHED,
            X_T,
            5,
            dict(method="multistep", order=2),
            None,
            None,
            needs_data=True,
        )
        target = _common.teacher_end(prob, None)
        f = ld3.loss_fn(prob, "lambda", "rms")
        theta = jnp.asarray(np.random.default_rng(1).normal(scale=0.3, size=5))
        delta = jnp.zeros_like(prob.x_T)
        g = jax.grad(f)(theta, delta, prob.x_T, target)
        eps = 1e-6
        for i in range(5):
            e = jnp.zeros(5).at[i].set(eps)
            fd = f(theta + e, delta, prob.x_T, target) - f(theta - e, delta, prob.x_T, target)
            fd = float(fd) / (2 * eps)
            assert abs(float(g[i]) - fd) <= 1e-6 * max(1.0, abs(fd)), (i, float(g[i]), fd)


def test_iqr_loss_is_the_mean_log_rms_of_the_middle_half():
    """loss="iqr": sort the per-sample log RMS distances, drop the lowest and the highest
    quarter (B // 4 each), average the rest; checked against NumPy on a student run."""
    x_T = X_T[:11]  # B = 11: drop 2 at each end, keep 7
    prob = _common.check(
        "ld3", MODEL, SCHED, x_T, 4, dict(method="unipc"), None, None, needs_data=True
    )
    target = np.asarray(x_T) * 0.5
    theta = jnp.asarray(np.random.default_rng(3).normal(scale=0.3, size=4))
    f = ld3.loss_fn(prob, "lambda", "iqr")
    got = float(f(theta, jnp.zeros_like(x_T), x_T, jnp.asarray(target)))
    times, _ = ld3._times(prob, theta, "lambda")
    out = np.asarray(
        dpm_jax.sample(MODEL, x_T, SCHED, timesteps=_common.host_grid(times), method="unipc")
    )
    logs = np.sort(np.log(np.sqrt(np.mean((out - target) ** 2, axis=1)) + 1e-12))
    assert logs.shape == (11,)
    np.testing.assert_allclose(got, np.mean(logs[2:9]), rtol=1e-10)
    assert abs(got - np.mean(logs)) > 1e-6  # not the plain mean: the test can fail


def test_dynamic_programme_is_the_brute_force_optimum():
    rng = np.random.default_rng(2)
    for m, k, gamma in ((7, 3, 1.15), (8, 4, 1.0), (6, 1, 1.3), (6, 6, 1.15)):
        cost = np.triu(rng.uniform(0.1, 2.0, (m + 1, m + 1)), 1)
        best = min(
            ((0, *mid, m) for mid in itertools.combinations(range(1, m), k - 1)),
            key=lambda p: sum(gamma**i * cost[p[i], p[i + 1]] for i in range(k)),
        )
        assert tuple(gits.dynamic_programming(cost, k, gamma)) == best


def test_gits_finds_the_known_optimum_of_a_linear_ode():
    """Gaussian data N(0, S^2): the ODE is linear, x_t = c(t) x_T / c(T) with
    c = sqrt(alpha^2 S^2 + sigma^2), so the one-step DDIM errors between fine nodes have a
    closed form: DDIM from x_i lands at (r_ij + w_ij alpha_i S^2 / c_i^2) x_i, the truth at
    (c_j / c_i) x_i. The grid GITS picks (teacher trajectories, costs, DP) is the
    brute-force optimum of those exact costs."""
    s2 = 0.3**2
    sched = SCHED

    def net(x, t_in):
        a, s = sched.marginal_alpha(t_in), sched.marginal_std(t_in)
        return s[:, None] * x / (a[:, None] ** 2 * s2 + s[:, None] ** 2)  # exact eps

    model = dpm_jax.model_wrapper(net, sched)
    x = jnp.asarray(np.random.default_rng(3).normal(size=(8, 4)))
    with jax.enable_x64(True):
        prob = _common.check(
            "gits", model, sched, x, 3, dict(method="multistep"), 0.9, 0.02, needs_data=True
        )
        got = gits.fit(prob, points=9, substeps=8)
    fine = dpm_jax.time_grid(sched, "logSNR", 0.9, 0.02, 9)
    a = np.exp(sched.marginal_log_alpha(fine))
    s = sched.marginal_std(fine)
    c = np.sqrt(a * a * s2 + s * s)
    z = np.asarray(x) / c[0]  # x_i = c_i z along the exact trajectory
    lam = np.log(a) - np.log(s)
    cost = np.full((10, 10), np.inf)
    for i in range(9):
        for j in range(i + 1, 10):
            r, w = s[j] / s[i], -a[j] * np.expm1(lam[i] - lam[j])
            gain = r + w * a[i] * s2 / c[i] ** 2
            err = (gain * c[i] - c[j]) * z
            cost[i, j] = np.mean(np.sqrt(np.mean(err**2, axis=1)))
    best = min(
        ((0, *mid, 9) for mid in itertools.combinations(range(1, 9), 2)),
        key=lambda p: sum(1.15**k * cost[p[k], p[k + 1]] for k in range(3)),
    )
    np.testing.assert_allclose(got, fine[list(best)], rtol=1e-12)


def test_dmn_is_data_free_and_lowers_its_bound():
    from dpm_jax.optimize import dmn

    with jax.enable_x64(True):
        prob = _common.check(
            "dmn",
            None,
            SCHED,
            None,
            6,
            dict(method="multistep", order=3),
            None,
            None,
            needs_data=False,
        )
        ts = dpm_jax.optimize_timesteps(None, SCHED, None, steps=6, objective="dmn", order=3)
        assert ts.model_timesteps is None
        uniform = dpm_jax.time_grid(SCHED, "logSNR", SCHED.T, SCHED.t_eps, 6)
        assert float(dmn.bound(prob, list(ts))) < float(dmn.bound(prob, list(uniform)))


@pytest.mark.parametrize(
    "kw, exc, text",
    [
        (dict(objective="lq3"), ValueError, "objective"),
        (dict(steps=0), ValueError, "steps"),
        (dict(steps=2.0), TypeError, "steps"),
        (dict(x_T=jnp.zeros((0, 4))), ValueError, "x_T"),
        (dict(x_T=jnp.full((2, 4), jnp.nan)), ValueError, "x_T"),
        (dict(x_T=None), ValueError, "x_T"),
        (dict(objective="dmn", method="unipc"), ValueError, "method"),
        (dict(objective="dmn", method="heun"), ValueError, "method"),
        (dict(objective="dmn", method="ipndm"), ValueError, "method"),
        (dict(objective="dmn", algorithm_type="dpmsolver"), ValueError, "algorithm_type"),
        (dict(method="adaptive"), ValueError, "method"),
        (dict(algorithm_type="sde-dpmsolver++"), ValueError, "algorithm_type"),
        (dict(skip_type="logSNR"), ValueError, "skip_type"),
        (dict(timesteps=[1.0, 0.1]), ValueError, "timesteps"),
        (dict(points=10), ValueError, "points"),  # a gits option for ld3
        (dict(objective="gits", points=2), ValueError, "points"),
        (dict(objective="gits", iterations=3), ValueError, "iterations"),
        (dict(learning_rate=-1.0), ValueError, "learning_rate"),
        (dict(iterations=0), ValueError, "iterations"),
        (dict(teacher=jnp.zeros((3, 4))), ValueError, "teacher"),
        (dict(t_end=2.0), ValueError, "t_end"),
        (dict(order=7), ValueError, "order"),
        (dict(loss="median"), ValueError, "`loss` must be one of"),
    ],
)
def test_bad_input_names_the_argument(kw, exc, text):
    args = dict(model=MODEL, schedule=SCHED, x_T=X_T, steps=4)
    if kw.get("objective") != "gits":
        args["iterations"] = 2
    args.update(kw)
    with pytest.raises(exc) as info:
        dpm_jax.optimize_timesteps(args.pop("model"), args.pop("schedule"), args.pop("x_T"), **args)
    assert text in str(info.value), str(info.value)


def test_a_loss_that_turns_nan_stops_with_a_clear_error():
    with pytest.raises(FloatingPointError, match="loss"):
        dpm_jax.optimize_timesteps(
            MODEL, SCHED, X_T, steps=4, iterations=5, teacher=jnp.full(X_T.shape, jnp.nan)
        )


def test_progress_bar_shows_the_loss(capsys):
    pytest.importorskip("tqdm")
    dpm_jax.optimize_timesteps(MODEL, SCHED, X_T, steps=4, iterations=3, progress=True)
    assert "loss=" in capsys.readouterr().err


def test_save_and_load(tmp_path):
    ts = dpm_jax.time_grid(SCHED, "logSNR", 1.0, 1e-3, 6)
    path = tmp_path / "grid.json"
    dpm_jax.save_timesteps(path, ts, schedule=SCHED, objective="ld3", method="unipc", order=2)
    got = dpm_jax.load_timesteps(path, schedule=SCHED)
    np.testing.assert_array_equal(got.timesteps, ts)  # float64, bit for bit
    assert got.options == {"method": "unipc", "order": 2}
    assert got.meta["objective"] == "ld3" and got.meta["steps"] == 6
    x = dpm_jax.sample(MODEL, X_T, SCHED, timesteps=got.timesteps, **got.options)
    assert np.all(np.isfinite(np.asarray(x)))
    with pytest.raises(ValueError, match="schedule"):
        dpm_jax.load_timesteps(path, schedule=schedules.vp_cosine())
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ValueError, match="timesteps file"):
        dpm_jax.load_timesteps(tmp_path / "bad.json")


@pytest.mark.parametrize("kw", [dict(method="unipc", parametrization="time")])
def test_decoupled_model_times_are_valid_and_lower_the_training_loss(kw):
    """ld3, decouple=True: the grid, then the model times from the grid's nodes (eta = 0)
    with it; the pair's training loss is at most the grid-only fit's (the start of the
    second stage is that fit)."""
    steps, fit = 5, dict(iterations=6, loss="log", window="nearest", **kw)
    grid = dpm_jax.optimize_timesteps(MODEL, SCHED, X_T, steps=steps, decouple=False, **fit)
    assert grid.model_timesteps is None
    fitted = dpm_jax.optimize_timesteps(MODEL, SCHED, X_T, steps=steps, decouple=True, **fit)
    _valid(fitted, steps)
    ts, ms = np.asarray(fitted), np.asarray(fitted.model_timesteps)
    assert ms.dtype == np.float64 and ms.shape == (steps,)
    assert ms[0] == ts[0] and np.all(np.diff(ms) < 0)
    # each moved call stays within half the smaller gap to a neighbour, in lambda (or t)
    u = SCHED.marginal_lambda if kw.get("parametrization") != "time" else (lambda t: t)
    un, um = np.asarray(u(ts)), np.asarray(u(ms))
    half = 0.5 * np.minimum(np.abs(np.diff(un))[:-1], np.abs(np.diff(un))[1:])
    assert np.all(np.abs(um[1:] - un[1:-1]) <= half * (1 + 1e-9))
    solver = {k: v for k, v in kw.items() if k in ("method", "order")}
    target = _common.teacher_end(
        _common.check("ld3", MODEL, SCHED, X_T, steps, dict(solver), None, None, True), None
    )

    def loss(**grid_kw):
        out = dpm_jax.sample(MODEL, X_T, SCHED, **grid_kw, **solver)
        return float(jnp.mean(jnp.log(_common.per_sample_rms(out, target) + 1e-12)))

    assert loss(**fitted.keywords()) <= loss(timesteps=grid) + 1e-6


def test_ld3_gradient_in_the_model_times_matches_finite_differences():
    with jax.enable_x64(True):
        prob = _common.check(
            "ld3", MODEL, SCHED, X_T, 5, dict(method="unipc"), None, None, needs_data=True
        )
        target = _common.teacher_end(prob, None)
        f = ld3.loss_fn(prob, "lambda", "rms")
        theta = jnp.asarray(np.random.default_rng(1).normal(scale=0.3, size=5))
        eta = jnp.asarray(np.random.default_rng(2).normal(scale=0.5, size=4))
        delta = jnp.zeros_like(prob.x_T)
        g = jax.grad(f)((theta, eta), delta, prob.x_T, target)
        eps = 1e-6
        for which, n in ((0, 5), (1, 4)):
            for i in range(n):
                e = jnp.zeros(n).at[i].set(eps)
                plus = (theta + e, eta) if which == 0 else (theta, eta + e)
                minus = (theta - e, eta) if which == 0 else (theta, eta - e)
                fd = float(f(plus, delta, prob.x_T, target) - f(minus, delta, prob.x_T, target))
                fd /= 2 * eps
                got = float(g[which][i])
                assert abs(got - fd) <= 1e-6 * max(1.0, abs(fd)), (which, i, got, fd)


def test_sides_window_moves_each_call_up_to_half_the_gap_it_moves_into():
    """window="sides": m_i = c_i + tanh(eta_i) * (right gap if eta_i > 0 else left gap) / 2,
    against NumPy in the time parametrisation (so the fractions are times); "nearest"
    would stop the call next to the long last step at half the short gap."""
    prob = _common.check("ld3", MODEL, SCHED, X_T, 4, {}, 1.0, 0.0, True)
    c = jnp.asarray([0.0, 0.1, 0.3, 0.4, 1.0])
    eta = jnp.asarray([1.5, -0.7, 3.0])
    got = np.asarray([float(t) for t in _common.model_times_of(prob, c, eta, "time", "sides")])
    cn, a = np.asarray(c), np.tanh(np.asarray(eta))
    gap = np.where(a > 0, cn[2:] - cn[1:-1], cn[1:-1] - cn[:-2])
    want = np.concatenate([[1.0], 1.0 - (cn[1:-1] + 0.5 * a * gap)])
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-15)
    near = [float(t) for t in _common.model_times_of(prob, c, eta, "time", "nearest")]
    assert 1.0 - near[3] < 0.4 + 0.05 + 1e-12 < 1.0 - got[3]  # the last call: 0.05 vs 0.3


def test_minibatch_minimiser_averages_the_second_half_of_seeded_minibatch_steps():
    """batch_size: Adam on a fresh minibatch per step, the indices a permutation from
    numpy.random.default_rng(seed) cut to the batch; the fit is the mean of the iterates
    after steps iterations // 2 + 1, ..., iterations. Checked on a least-squares loss
    against optax step by step (the solver is not needed for the bookkeeping)."""
    import optax

    rng = np.random.default_rng(4)
    x, y = jnp.asarray(rng.normal(size=(16, 3))), jnp.asarray(rng.normal(size=(16,)))

    def f(w, delta, xb, yb, rows=None):  # rows: the minibatch indexes (unused here)
        return jnp.mean((xb @ w - yb) ** 2) + 0.0 * jnp.sum(delta)

    w0 = jnp.zeros((3,))
    step, full = ld3._minibatch_step(optax, f, 0.1, x, y), lambda w: f(w, 0.0, x, y)
    got, _ = ld3._minimise_averaged(step, full, w0, x, y, 7, 0.1, 0.0, False, 5, 3)
    opt, w, idx_rng, iterates = optax.adam(0.1), w0, np.random.default_rng(3), []
    state = opt.init(w)
    for _ in range(7):
        idx = idx_rng.permutation(16)[:5]
        updates, state = opt.update(jax.grad(f)(w, 0.0, x[idx], y[idx]), state, w)
        w = optax.apply_updates(w, updates)
        iterates.append(np.asarray(w))
    np.testing.assert_allclose(np.asarray(got), np.mean(iterates[3:], axis=0), rtol=1e-12)
    other, _ = ld3._minimise_averaged(step, full, w0, x, y, 7, 0.1, 0.0, False, 5, 4)
    assert not np.allclose(np.asarray(got), np.asarray(other))  # the seed matters


def test_minibatch_decoupled_fit_is_valid_and_samples():
    fitted = dpm_jax.optimize_timesteps(
        MODEL, SCHED, X_T, steps=4, method="unipc", decouple=True, window="sides",
        loss="iqr", batch_size=8, iterations=4,
    )  # fmt: skip
    _valid(fitted, 4)
    ts, ms = np.asarray(fitted), np.asarray(fitted.model_timesteps)
    assert ms.dtype == np.float64 and ms[0] == ts[0] and np.all(np.diff(ms) < 0)
    out = dpm_jax.sample(MODEL, X_T, SCHED, grid=fitted, solver=dpm_jax.solvers.UniPC())
    assert np.all(np.isfinite(np.asarray(out)))


def test_restarts_return_the_seeded_fit_with_the_lowest_training_loss():
    """restarts=3: the fits of seeds 6, 7, 8 (each as restarts=1 gives it), and of those
    the one whose loss (here "log": the mean log RMS distance to the teacher) on the whole
    training batch is lowest (here seed 7's: neither the first nor the last)."""
    teacher = dpm_jax.sample(MODEL, X_T, SCHED, steps=40, order=3, skip_type="logSNR")
    kw = dict(steps=4, teacher=teacher, batch_size=4, iterations=4, learning_rate=0.3)
    kw.update(decouple=False, loss="log")
    got = dpm_jax.optimize_timesteps(MODEL, SCHED, X_T, seed=6, restarts=3, **kw)
    fits = [
        dpm_jax.optimize_timesteps(MODEL, SCHED, X_T, seed=s, restarts=1, **kw) for s in (6, 7, 8)
    ]
    assert len(set(fits)) == 3  # the seeds give three different grids

    def loss(ts):
        out = dpm_jax.sample(MODEL, X_T, SCHED, timesteps=ts)
        return float(np.mean(np.log(np.sqrt(np.mean((np.asarray(out - teacher)) ** 2, 1)))))

    losses = [loss(f) for f in fits]
    assert int(np.argmin(losses)) == 1
    assert got == fits[1]


@pytest.mark.parametrize(
    "kw, exc, text",
    [
        (dict(window="wide", decouple=True, method="unipc"), ValueError, "`window` must be"),
        (dict(batch_size=4, restarts=0), ValueError, "`restarts` must be >= 1"),
        (dict(batch_size=4, restarts=2.0), TypeError, "`restarts` must be an int"),
        (dict(restarts=2), ValueError, "needs minibatches"),  # 16 x_T: no minibatches
        (dict(batch_size=None, restarts=2), ValueError, "needs minibatches"),
        (dict(batch_size="some"), TypeError, "`batch_size` must be 'auto', None or an int"),
        (dict(restarts=2, objective="gits"), ValueError, "restarts"),
        (dict(batch_size=0), ValueError, "batch_size"),
        (dict(batch_size=17), ValueError, "batch_size"),
        (dict(batch_size=4.0), TypeError, "batch_size"),
        (dict(batch_size=4, slack=0.1), ValueError, "slack"),
        (dict(batch_size=4, seed="a"), TypeError, "seed"),
        (dict(batch_size=4, objective="gits"), ValueError, "batch_size"),
    ],
)
def test_bad_window_batch_size_seed_name_the_argument(kw, exc, text):
    args = dict(steps=4)
    if kw.get("objective") is None:
        args["iterations"] = 2
    with pytest.raises(exc) as info:
        dpm_jax.optimize_timesteps(MODEL, SCHED, X_T, **args, **kw)
    assert text in str(info.value), str(info.value)


@pytest.mark.parametrize(
    "kw, exc, text",
    [
        (dict(decouple=True, method="heun"), ValueError, "decouple"),
        (dict(decouple=True, method="singlestep"), ValueError, "decouple"),
        (dict(decouple="yes"), TypeError, "decouple"),
        (dict(decouple=True, objective="gits"), ValueError, "decouple"),
        (dict(decouple=True, objective="dmn"), ValueError, "decouple"),
    ],
)
def test_bad_decouple_names_the_argument(kw, exc, text):
    args = dict(steps=4)
    if kw.get("objective") in (None, "ld3"):
        args["iterations"] = 2
    with pytest.raises(exc) as info:
        dpm_jax.optimize_timesteps(MODEL, SCHED, X_T, **args, **kw)
    assert text in str(info.value), str(info.value)


def test_save_and_load_model_timesteps(tmp_path):
    ts = dpm_jax.time_grid(SCHED, "logSNR", 1.0, 1e-3, 4)
    ms = np.array(ts[:4])
    ms[1:] = 0.6 * ts[1:4] + 0.4 * ts[2:5]
    path = tmp_path / "grid.json"
    dpm_jax.save_timesteps(path, ts, model_timesteps=ms, schedule=SCHED, method="unipc")
    got = dpm_jax.load_timesteps(path, schedule=SCHED)
    np.testing.assert_array_equal(got.timesteps, ts)
    np.testing.assert_array_equal(got.model_timesteps, ms)  # bit for bit
    x = dpm_jax.sample(
        MODEL, X_T, SCHED, timesteps=got.timesteps, model_timesteps=got.model_timesteps
    )
    assert np.all(np.isfinite(np.asarray(x)))
    assert got.grid == dpm_jax.grids.Timesteps(ts, model_timesteps=ms)
    dpm_jax.save_timesteps(path, ts)
    assert dpm_jax.load_timesteps(path).model_timesteps is None
    with pytest.raises(ValueError, match="`model_timesteps`"):
        dpm_jax.save_timesteps(path, ts, model_timesteps=ms[:3])


def test_save_and_load_a_fitted_grid_object(tmp_path):
    """save_timesteps takes what optimize_timesteps returns (a grids.Timesteps, its model
    times with it); load_timesteps gives it back as ``.grid``, equal to the one saved, bit
    for bit; a file written before grids were objects (the same format) loads the same."""
    ts = dpm_jax.time_grid(SCHED, "logSNR", 1.0, 1e-3, 4)
    ms = np.array(ts[:4])
    ms[1:] = 0.6 * ts[1:4] + 0.4 * ts[2:5]
    fitted = dpm_jax.grids.Timesteps(ts, model_timesteps=ms)
    path = tmp_path / "grid.json"
    dpm_jax.save_timesteps(path, fitted, schedule=SCHED, objective="ld3", method="unipc")
    got = dpm_jax.load_timesteps(path, schedule=SCHED)
    assert got.grid == fitted and got.options == {"method": "unipc"}
    np.testing.assert_array_equal(got.model_timesteps, ms)
    with pytest.raises(ValueError, match="already has its model times"):
        dpm_jax.save_timesteps(path, fitted, model_timesteps=ms)
    with pytest.raises(TypeError, match="`timesteps` must be times or"):
        dpm_jax.save_timesteps(path, dpm_jax.grids.LogSNR(4))
    dpm_jax.save_timesteps(path, dpm_jax.grids.Timesteps(ts))
    assert dpm_jax.load_timesteps(path).grid == dpm_jax.grids.Timesteps(ts)
    old = {  # written by dpm_jax 0.2.0.dev before this change
        "format": "dpm_jax.timesteps/1",
        "timesteps": [1.0, 0.5, 0.125, 0.001],
        "options": {"method": "unipc", "order": 2},
        "meta": {"objective": "ld3", "steps": 3, "dpm_jax": "0.2.0.dev0"},
        "model_timesteps": [1.0, 0.45, 0.1],
    }
    (tmp_path / "old.json").write_text(json.dumps(old))
    got = dpm_jax.load_timesteps(tmp_path / "old.json")
    assert got.grid == dpm_jax.grids.Timesteps((1.0, 0.5, 0.125, 0.001), (1.0, 0.45, 0.1))
    x = dpm_jax.sample(MODEL, X_T, SCHED, **got.grid.keywords(), **got.options)
    assert np.all(np.isfinite(np.asarray(x)))


def test_minibatches_take_the_per_sample_conditions_of_their_samples():
    """A guided model with one condition per training sample (40 > 32: the default
    minibatches): each minibatch's model uses its own samples' conditions (before, the
    fit failed with a shape error deep inside the run)."""
    n = 40
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 3, size=n)
    cond = np.where(np.arange(3)[None, :] == labels[:, None], 0.0, -np.inf)  # (n, K)
    guided = dpm_jax.model_wrapper(
        problems.noise_net(GMM, SCHED),
        SCHED,
        guidance_type="classifier-free",
        condition=jnp.asarray(cond),
        unconditional_condition=jnp.asarray(np.log(np.full((n, 3), 1 / 3))),
        guidance_scale=2.0,
    )
    x_T = jnp.asarray(rng.normal(size=(n, 4)))
    idx = jnp.asarray([5, 0, 17, 39])
    sub = _common.model_rows(guided, n, idx)
    np.testing.assert_array_equal(np.asarray(sub.condition), cond[np.asarray(idx)])
    t = jnp.full((4,), 0.5)
    alone = dpm_jax.model_wrapper(
        problems.noise_net(GMM, SCHED),
        SCHED,
        guidance_type="classifier-free",
        condition=jnp.asarray(cond[np.asarray(idx)]),
        unconditional_condition=jnp.asarray(np.log(np.full((4, 3), 1 / 3))),
        guidance_scale=2.0,
    )
    np.testing.assert_array_equal(np.asarray(sub(x_T[idx], t)), np.asarray(alone(x_T[idx], t)))
    assert _common.model_rows(MODEL, n, idx) is MODEL  # no per-sample leaves: as it is


def test_a_guided_model_with_per_sample_conditions_fits_with_the_default_minibatches():
    n = 40
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 3, size=n)
    guided = dpm_jax.model_wrapper(
        problems.noise_net(GMM, SCHED),
        SCHED,
        guidance_type="classifier-free",
        condition=jnp.asarray(np.where(np.arange(3)[None, :] == labels[:, None], 0.0, -np.inf)),
        unconditional_condition=jnp.asarray(np.log(np.full((n, 3), 1 / 3))),
        guidance_scale=2.0,
    )
    x_T = jnp.asarray(rng.normal(size=(n, 4)))
    fitted = dpm_jax.optimize_timesteps(guided, SCHED, x_T, steps=4, iterations=3, restarts=1)
    _valid(fitted, 4)
