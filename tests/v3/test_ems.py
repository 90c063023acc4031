"""Empirical model statistics of DPM-Solver-v3 (``dpm_jax.v3``).

The oracle: Gaussian data N(mu, Sigma) with a full covariance in d = 6 on the VP linear
schedule. Then x_lambda ~ N(alpha mu, C), C = alpha^2 Sigma + sigma^2 I, the exact noise
predictor is eps(x) = sigma C^-1 (x - alpha mu), and (M = C^-1, VP: dlog alpha/dlambda =
sigma^2, dC/dlambda = 2 alpha^2 sigma^2 (Sigma - I), dM = -M dC M):

* l = sigma^2 diag(M), l' = -2 sigma^2 alpha^2 diag(M) + sigma^2 diag(dM);
* f = (sigma / alpha) eps - l x / alpha = P x + q, P = (sigma^2 / alpha) M - diag(l) / alpha,
  q = -sigma^2 M mu;
* along the ODE dx/dlambda = sigma^2 (I - M) x + sigma^2 alpha M mu, so
  f' = (P' + P sigma^2 (I - M)) x + q' + P sigma^2 alpha M mu =: A' x + c';
* s = diag(A' C P^T) / diag(P C P^T), b = A' m + c' - s (P m + q), m = alpha mu.
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from counting import compiles
from gaussian_oracle import EIG, MU, SCH, SIGMA, D, Q, gauss_eps, oracle  # noqa: F401

import dpm_jax
from dpm_jax import schedules
from dpm_jax.v3 import (
    EMS,
    ems_lambdas,
    estimate_ems,
    estimate_l,
    l_point,
    load_ems,
    load_official_ems,
    noised_data,
    save_ems,
    sb_point,
    smooth_l,
)


def gauss_data(k: int, seed: int, dtype=np.float64):
    return np.random.default_rng(seed).multivariate_normal(MU, SIGMA, size=k).astype(dtype)


def rms(e) -> float:
    return float(np.sqrt(np.mean(np.square(e))))


# --------------------------------------------------------------------------- the oracle


def test_oracle_is_the_derivative_along_the_ode():
    """The oracle's l' and f' against central differences of its own l and f."""
    lam, h = 0.4, 1e-5
    l_p, _, _, _ = oracle(lam + h)
    l_m, _, _, _ = oracle(lam - h)
    _, dl, _, _ = oracle(lam)
    np.testing.assert_allclose(dl, (l_p - l_m) / (2 * h), rtol=1e-7)


def test_point_statistics_converge_to_the_oracle_as_one_over_sqrt_k():
    """RMS error over 16 seeds x 3 lambdas x 6 dims at K and 4K: small, ratio near 2."""
    lams, seeds, probes = (-1.0, 0.7, 2.0), 16, 2
    orc = [oracle(u) for u in lams]
    lam_arr = jnp.asarray(lams)
    l_ex, dl_ex = (jnp.asarray(np.stack([o[i] for o in orc])) for i in (0, 1))
    # over seeds (outer) and lambdas (inner); one program per K
    lf = jax.jit(
        jax.vmap(
            lambda d, k: jax.vmap(lambda u: l_point(gauss_eps, SCH, d, u, k, probes=probes))(
                lam_arr
            )
        )
    )
    sf = jax.jit(
        jax.vmap(
            lambda d, k: jax.vmap(lambda u, li, dli: sb_point(gauss_eps, SCH, d, u, li, dli, k))(
                lam_arr, l_ex, dl_ex
            )
        )
    )
    errs = {}
    for k in (1024, 4096):
        data = jnp.asarray(np.stack([gauss_data(k, 1000 * k + i) for i in range(seeds)]))
        keys = jax.random.split(jax.random.key(k), seeds)
        s_hat, b_hat = sf(data, keys)
        errs[k] = {
            "l": rms(np.asarray(lf(data, keys)) - np.stack([o[0] for o in orc])),
            "s": rms(np.asarray(s_hat) - np.stack([o[2] for o in orc])),
            "b": rms(np.asarray(b_hat) - np.stack([o[3] for o in orc])),
        }
    print("\nRMS errors", errs)
    for q in ("l", "s", "b"):
        ratio = errs[1024][q] / errs[4096][q]
        print(f"{q}: K=1024 {errs[1024][q]:.3e}  K=4096 {errs[4096][q]:.3e}  ratio {ratio:.2f}")
        assert 1.6 < ratio < 2.5, (q, ratio)
    assert errs[4096]["l"] < 2e-3 and errs[4096]["s"] < 5e-3 and errs[4096]["b"] < 2e-3


def test_estimate_ems_matches_the_oracle():
    """End to end (grid derivative of the estimated l included) on 81 points."""
    ems = estimate_ems(
        gauss_eps,
        SCH,
        gauss_data(4096, 1),
        key=jax.random.key(5),
        n_points=80,
        probes=4,
        batch_size=4096,
        lambda_min=-2.0,
        lambda_max=3.0,
    )
    orc = [oracle(u) for u in ems.lambdas]
    err_l = np.abs(ems.l - np.stack([o[0] for o in orc])).max()
    err_s = np.abs(ems.s - np.stack([o[2] for o in orc])).max()
    err_b = np.abs(ems.b - np.stack([o[3] for o in orc])).max()
    print(f"\nmax errors: l {err_l:.2e}, s {err_s:.2e} (|s| <= 2), b {err_b:.2e}")
    assert err_l < 1e-2 and err_s < 5e-2 and err_b < 1e-2
    assert ems.lambdas[0] == -2.0 and ems.lambdas[-1] == 3.0 and ems.N == 80
    assert ems.meta["K"] == 4096 and ems.meta["probes"] == 4 and ems.meta["N"] == 80
    assert ems.meta["schedule"]["name"] == "vp_linear"
    assert ems.meta["dpm_jax"] == dpm_jax.__version__ and ems.meta["guidance_scale"] is None


# --------------------------------------------------------------------------- exactness


def diag_eps(x, t):
    """A noise predictor with a diagonal Jacobian that depends on x."""
    sig = SCH.marginal_std(t)[:, None]
    w = jnp.linspace(0.5, 2.0, x.shape[1], dtype=x.dtype)
    return sig * jnp.tanh(w * x) + 0.1 * x


# small runs share one configuration (the compiled point functions are kept per model
# and settings), so the file compiles few programs
SMALL = dict(probes=2, batch_size=4)


def test_l_is_exact_for_a_diagonal_jacobian():
    data = gauss_data(10, 3)
    key = jax.random.key(7)
    lam = ems_lambdas(SCH, 3, -1.0, 2.0)
    # batches of 4 out of 10 samples: the last one padded
    got = estimate_l(diag_eps, SCH, data, lam, key=key, **SMALL)
    w = np.linspace(0.5, 2.0, D)
    for i, u in enumerate(lam):
        x = np.asarray(noised_data(SCH, data, u, key))
        t = float(SCH.inverse_lambda(np.float64(u)))
        sig = float(SCH.marginal_std(np.float64(t)))
        jac = sig * w * (1.0 - np.tanh(w * x) ** 2) + 0.1
        np.testing.assert_allclose(got[i], sig * jac.mean(axis=0), rtol=1e-12, atol=1e-15)
    ems = estimate_ems(diag_eps, SCH, data, key=key, n_points=3, lambda_min=-1.0,
                       lambda_max=2.0, **SMALL)  # fmt: skip
    np.testing.assert_array_equal(ems.l, got)  # smooth=0: the raw l


def test_batching_does_not_change_the_statistics():
    data = gauss_data(12, 4)
    kw = dict(key=jax.random.key(2), n_points=2, probes=2, lambda_min=0.0, lambda_max=1.0)
    a = estimate_ems(gauss_eps, SCH, data, batch_size=12, **kw)
    b = estimate_ems(gauss_eps, SCH, data, batch_size=4, **kw)
    for name in ("l", "s", "b"):
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=1e-10, atol=1e-12)


def test_point_functions_eager_and_under_jit():
    data = jnp.asarray(gauss_data(8, 5))
    key = jax.random.key(3)
    l_ex, dl, _, _ = oracle(0.3)
    eager_l = l_point(gauss_eps, SCH, data, 0.3, key, probes=2, batch_size=8)
    jit_l = jax.jit(lambda d, u, k: l_point(gauss_eps, SCH, d, u, k, probes=2, batch_size=8))(
        data, 0.3, key
    )
    np.testing.assert_allclose(eager_l, jit_l, rtol=1e-12)
    eager_sb = sb_point(gauss_eps, SCH, data, 0.3, l_ex, dl, key, batch_size=8)
    jit_sb = jax.jit(lambda d, u, k: sb_point(gauss_eps, SCH, d, u, l_ex, dl, k, batch_size=8))(
        data, 0.3, key
    )
    for e, j in zip(eager_sb, jit_sb):
        np.testing.assert_allclose(e, j, rtol=1e-12, atol=1e-14)


def test_float32_data_gives_float32_statistics():
    kw = dict(key=jax.random.key(9), n_points=4, lambda_min=-1.0, lambda_max=2.0, **SMALL)
    e64 = estimate_ems(gauss_eps, SCH, gauss_data(12, 6), **kw)
    e32 = estimate_ems(gauss_eps, SCH, gauss_data(12, 6, np.float32), **kw)
    assert e32.l.dtype == e32.s.dtype == e32.b.dtype == np.float32
    assert e64.l.dtype == np.float64 and e32.lambdas.dtype == np.float64
    for name in ("l", "s", "b"):
        np.testing.assert_allclose(getattr(e32, name), getattr(e64, name), rtol=0, atol=1e-4)
    assert e32.meta["dtype"] == "float32"


def test_wrapped_model_and_guidance_scale_in_meta():
    net = lambda x, t_in, cond: 0.5 * x + 0.0 * cond[:1, None]
    wrapped = dpm_jax.model_wrapper(
        net,
        SCH,
        guidance_type="classifier-free",
        condition=jnp.ones((1,)),
        unconditional_condition=jnp.zeros((1,)),
        guidance_scale=2.5,
    )
    ems = estimate_ems(wrapped, SCH, gauss_data(8, 1), key=jax.random.key(0), n_points=1)
    assert ems.meta["guidance_scale"] == 2.5
    np.testing.assert_allclose(ems.s.shape, (2, D))
    with pytest.raises(ValueError, match="`schedule`"):
        estimate_ems(wrapped, schedules.vp_cosine(), gauss_data(8, 1), key=jax.random.key(0))


def test_progress_bar(capsys):
    pytest.importorskip("tqdm")
    data = gauss_data(10, 1)
    estimate_ems(diag_eps, SCH, data, key=jax.random.key(0), n_points=3, progress=True, **SMALL)
    assert "EMS" in capsys.readouterr().err


def test_smooth_l():
    lam = np.linspace(-1.0, 1.0, 21)
    cubic = np.stack([lam**3, np.exp(lam)], axis=1)
    val, der = smooth_l(lam, cubic, smooth=0)
    np.testing.assert_array_equal(val, cubic)
    np.testing.assert_allclose(der[:, 0], 3 * lam**2, atol=2e-2)
    val, der = smooth_l(lam, lam[:, None] ** 2, smooth=3)
    np.testing.assert_allclose(val[:, 0], lam**2, atol=1e-12)
    np.testing.assert_allclose(der[:, 0], 2 * lam, atol=1e-12)
    with pytest.raises(ValueError, match="smooth"):
        smooth_l(lam, cubic, smooth=11)


# --------------------------------------------------------------------------- files


def small_ems() -> EMS:
    return estimate_ems(
        diag_eps, SCH, gauss_data(10, 2), key=jax.random.key(1), n_points=3, **SMALL
    )


def test_save_load_round_trip_bit_for_bit(tmp_path):
    rng = np.random.default_rng(3)
    f32 = EMS(
        np.linspace(-2.0, 3.0, 5),
        *(rng.normal(size=(5, 2, 3)).astype(np.float32) for _ in range(3)),
        meta={"schedule": small_ems().meta["schedule"], "note": [1, "x", None]},
    )
    for ems in (small_ems(), f32):
        path = tmp_path / f"ems_{ems.l.dtype}"  # no suffix: written exactly there
        save_ems(path, ems)
        back = load_ems(path, schedule=schedules.vp_linear())
        for name in ("lambdas", "l", "s", "b"):
            a, b = np.asarray(getattr(ems, name)), np.asarray(getattr(back, name))
            assert a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
        assert back.meta == json.loads(json.dumps(ems.meta))
    with pytest.raises(ValueError, match="made for the schedule 'vp_linear'"):
        load_ems(path, schedule=schedules.vp_cosine())
    with pytest.raises(ValueError, match="made for the schedule"):
        load_ems(path, schedule=schedules.vp_linear(beta_1=19.0))
    np.savez(tmp_path / "other.npz", l=np.zeros((2, 3)))
    with pytest.raises(ValueError, match="not a dpm_jax EMS file"):
        load_ems(tmp_path / "other.npz")
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(ValueError, match="not a dpm_jax EMS file"):
        load_ems(tmp_path / "text.npz")
    with pytest.raises(TypeError, match="`ems`"):
        save_ems(tmp_path / "x.npz", {"l": 1})


def test_load_official_layout(tmp_path):
    n, shape = 12, (2, 3, 3)
    rng = np.random.default_rng(0)
    l_, s, b = (rng.normal(size=(n + 1,) + shape).astype(np.float32) for _ in range(3))
    np.savez(tmp_path / "l.npz", l=l_)
    np.savez(tmp_path / "sb.npz", s=s, b=b)
    ems = load_official_ems(tmp_path / "l.npz", tmp_path / "sb.npz", schedule=SCH)
    want = np.linspace(SCH.marginal_lambda(np.float64(1.0)), SCH.marginal_lambda(1e-3), n + 1)
    np.testing.assert_allclose(ems.lambdas, want, rtol=1e-14)
    np.testing.assert_array_equal(ems.l, l_)
    np.testing.assert_array_equal(ems.b, b)
    assert ems.meta["source"] == "official" and ems.N == n and ems.shape == shape
    # the directory alone; EDM's span (official example: t_start=80, t_end=0.002)
    edm = load_official_ems(tmp_path, schedule=schedules.edm())
    np.testing.assert_allclose(edm.lambdas[[0, -1]], [-np.log(80.0), -np.log(0.002)])
    part = load_official_ems(tmp_path, schedule=SCH, t_start=0.5, t_end=0.01)
    assert part.lambdas[0] == pytest.approx(float(SCH.marginal_lambda(np.float64(0.5))))
    # official files round-trip through our own format
    save_ems(tmp_path / "mine.npz", ems)
    np.testing.assert_array_equal(load_ems(tmp_path / "mine.npz", SCH).s, s)
    np.savez(tmp_path / "bad_sb.npz", s=s[:-1], b=b[:-1])
    with pytest.raises(ValueError, match="one shape"):
        load_official_ems(tmp_path / "l.npz", tmp_path / "bad_sb.npz", schedule=SCH)
    np.savez(tmp_path / "no_b.npz", s=s)
    with pytest.raises(ValueError, match="missing array"):
        load_official_ems(tmp_path / "l.npz", tmp_path / "no_b.npz", schedule=SCH)
    with pytest.raises(ValueError, match="t_end"):
        load_official_ems(tmp_path, schedule=SCH, t_start=0.1, t_end=0.5)
    with pytest.raises(ValueError, match="directory"):
        load_official_ems(tmp_path / "l.npz", schedule=SCH)


# --------------------------------------------------------------------------- the pytree


def test_ems_is_a_pytree_with_static_grid_and_meta():
    ems = small_ems()
    doubled = jax.tree_util.tree_map(lambda v: 2 * v, ems)
    assert isinstance(doubled, EMS) and doubled.lambdas is ems.lambdas
    np.testing.assert_allclose(doubled.s, 2 * ems.s)
    out = jax.jit(lambda e: e.l + e.b)(ems)
    np.testing.assert_allclose(out, ems.l + ems.b, rtol=1e-6)
    assert len(jax.tree_util.tree_leaves(ems)) == 3
    with pytest.raises(ValueError, match="`s` must have shape"):
        EMS(ems.lambdas, ems.l, ems.s[:-1], ems.b)
    with pytest.raises(ValueError, match="strictly increasing"):
        EMS(ems.lambdas[::-1], ems.l, ems.s, ems.b)
    with pytest.raises(TypeError, match="meta"):
        EMS(ems.lambdas, ems.l, ems.s, ems.b, meta=[1])
    assert "N=3" in repr(ems)


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(n_points=0), ValueError, "`n_points` must be >= 1"),
        (dict(n_points=2.5), TypeError, "`n_points` must be an int"),
        (dict(probes=0), ValueError, "`probes` must be >= 1"),
        (dict(batch_size=0), ValueError, "`batch_size` must be >= 1"),
        (dict(smooth=-1), ValueError, "`smooth` must be >= 0"),
        (dict(n_points=2, smooth=2), ValueError, "`smooth` = 2 needs 5 grid points"),
        (dict(lambda_min=1.0, lambda_max=0.0), ValueError, "`lambda_min` < `lambda_max`"),
        (dict(lambda_min=-9.0), ValueError, "`lambda_min` must be >= lambda"),
        (dict(lambda_min="a"), TypeError, "`lambda_min` must be a number"),
        (dict(key=0), TypeError, "`key` must be one jax PRNG key"),
        (dict(progress=1), TypeError, "`progress` must be a bool"),
        (dict(data=np.ones(5)), ValueError, "`data` must have shape"),
        (dict(data=np.ones((1, 3))), ValueError, "K >= 2"),
        (dict(data=np.ones((4, 3), np.int32)), TypeError, "floating dtype"),
        (dict(data=np.full((4, 3), np.nan)), ValueError, "`data` must be finite"),
        (dict(model=3), TypeError, "`model` must be callable"),
        (dict(model=lambda x, t: x[:, :1]), ValueError, "input's shape"),
        (dict(schedule="vp"), TypeError, "Schedule"),
    ],
)
def test_bad_input_is_refused_with_a_clear_message(kwargs, exc, match):
    args = dict(model=diag_eps, schedule=SCH, data=gauss_data(4, 0), key=jax.random.key(0))
    args.update(n_points=2)
    args.update(kwargs)
    model, schedule, data = args.pop("model"), args.pop("schedule"), args.pop("data")
    with pytest.raises(exc, match=match):
        estimate_ems(model, schedule, data, **args)


def test_a_schedule_with_alpha_zero_at_t_needs_lambda_min():
    with pytest.raises(ValueError, match="pass a finite `lambda_min`"):
        ems_lambdas(schedules.flow(), 4)
    g = ems_lambdas(schedules.flow(), 4, lambda_min=-3.0, lambda_max=3.0)
    assert g[0] == -3.0 and np.all(np.diff(g) > 0)


def test_models_as_users_hold_them_nnx_updated_in_place_and_closures():
    """The model boundary of ``sample`` holds here too: a flax.nnx module updated in place
    is read as it is now (not as it was compiled), closed-over weights are arguments (a
    new array of the same shape reuses the compiled program and is used)."""
    from flax import nnx

    sched = schedules.vp_linear()
    data = jax.random.normal(jax.random.key(0), (8, 3))
    kw = dict(n_points=2, key=jax.random.key(1), lambda_min=-1.0, lambda_max=1.0)

    class Scale(nnx.Module):
        def __init__(self):
            self.w = nnx.Param(jnp.full((3,), 2.0))

        def __call__(self, x, t):
            return self.w[...] * x

    lam = jnp.asarray([-1.0, 0.0, 1.0])
    sigma = np.asarray(sched.marginal_std(sched.inverse_lambda(lam)))
    net = Scale()
    first = estimate_ems(net, sched, data, **kw)
    np.testing.assert_allclose(first.l, 2.0 * sigma[:, None] * np.ones((3, 3)), rtol=1e-12)
    net.w[...] = jnp.full((3,), 5.0)  # an optimizer step, in place
    second = estimate_ems(net, sched, data, **kw)
    np.testing.assert_allclose(second.l, 5.0 * sigma[:, None] * np.ones((3, 3)), rtol=1e-12)
    for w in (3.0, 4.0, 6.0):  # a closure over a new array of the same shape
        weights = jnp.full((3,), w)
        with compiles() as c:
            got = estimate_ems(lambda x, t: weights * x, sched, data, **kw)
        np.testing.assert_allclose(got.l, w * sigma[:, None] * np.ones((3, 3)), rtol=1e-12)
        if w > 3.0:  # the weights are an argument: no new program
            assert len(c) == 0
