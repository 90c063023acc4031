"""Low-NFE solvers (iPNDM, DEIS, Heun, DPM-2): convergence orders and closed forms.

The problem is the 16-D Gaussian mixture with its exact noise predictor on
``vp_linear``, against the DOP853 solution of the probability-flow ODE
(``dpm_jax.testing.exact``). The order is the least-squares slope of log RMS error against
log NFE, asserted within TOL of the formal order (the errors are printed with ``pytest -s``).

The warm-up limits the measured order. The multistep solvers start with lower orders
(Euler, then AB2, ...): one first-order step has a local error O(h^2) that is not made
up later, so asymptotically every multistep method is second order *globally* unless
that first step is nearly exact. It is, where the runs start at t = T (lambda = -5): at
that noise level eps hardly changes along a trajectory, and the Euler (= DDIM) step is
exact for constant eps. So the grids uniform in lambda run from t = T = 1 to 0.05,
where the warm-up costs nothing measurable and orders 3 and 4 show.
``test_warm_up_limits_the_order_mid_range`` shows the limit: from t = 0.5 the same
third-order DEIS measures about 2.

Grids:

* iPNDM with its fixed Adams-Bashforth weights: steps uniform in rho (its weights' own
  assumption), from t = 0.5 (rho = 3.4) to 0.05 (rho = 0.17), given as ``sigmas=``; on
  a grid not uniform in rho the fixed weights are formally second order
  (``test_fixed_ipndm_is_second_order_off_its_grid``);
* every other solver: uniform in lambda (``timesteps=``, the logSNR grid's nodes).
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("scipy")

import jax
import jax.numpy as jnp

import dpm_jax
from dpm_jax import _coeffs as C
from dpm_jax import schedules
from dpm_jax.testing import problems
from dpm_jax.testing.exact import exact_ode_solution

TOL = 0.35
T_MID, T0, T1 = 0.5, 1.0, 0.05
SCHED = schedules.vp_linear()


@pytest.fixture(scope="module", autouse=True)
def _x64():
    with jax.enable_x64(True):
        yield


def _problem(t0):
    gmm = problems.gmm_16d()
    x = np.random.default_rng(0).normal(size=(8, 16))
    exact = exact_ode_solution(gmm, SCHED, x, t0, T1, rtol=1e-13, atol=1e-13)
    model = dpm_jax.model_wrapper(problems.noise_net(gmm, SCHED), SCHED)
    return dict(x=jnp.asarray(x), exact=exact, model=model, t0=t0)


@pytest.fixture(scope="module")
def prob(_x64):
    """From t = T: for the grids uniform in lambda."""
    return _problem(T0)


@pytest.fixture(scope="module")
def prob_mid(_x64):
    """From t = 0.5: for the grids uniform in rho."""
    return _problem(T_MID)


def _lam_grid(n, t0=T0):
    lam = np.linspace(*(float(SCHED.marginal_lambda(np.float64(t))) for t in (t0, T1)), n + 1)
    ts = SCHED.inverse_lambda(lam)
    ts[0], ts[-1] = t0, T1
    return {"timesteps": ts}


def _rho_grid(n, t0=T_MID):
    r0, r1 = (float(np.exp(-SCHED.marginal_lambda(np.float64(t)))) for t in (t0, T1))
    return {"sigmas": np.linspace(r0, r1, n + 1)}


def _order(prob, steps_list, grid, **opts):
    errs, nfes = [], []
    for n in steps_list:
        x, info = dpm_jax.sample(
            prob["model"], prob["x"], SCHED, return_info=True, **grid(n, prob["t0"]), **opts
        )
        errs.append(float(np.sqrt(np.mean((np.asarray(x) - prob["exact"]) ** 2))))
        nfes.append(info.nfe)
    slope = -np.polyfit(np.log(nfes), np.log(errs), 1)[0]
    print(
        f"\n{opts}: NFE {nfes}, RMS errors {', '.join(f'{e:.2e}' for e in errs)}, "
        f"measured order {slope:.3f}"
    )
    assert np.all(np.isfinite(errs)) and min(errs) > 1e-12
    return slope


STEPS = {1: (32, 64, 128), 2: (32, 64, 128), 3: (32, 64, 128), 4: (64, 128, 256)}


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_ipndm_fixed_weights_on_a_grid_uniform_in_rho(prob_mid, order):
    """NFE 32-128 (iPNDM-4 measures 3.66). A grid uniform in rho cannot start at t = T
    (rho = 152: the steps near the data would be far too long), and from t = 0.5 the
    first (Euler) step's O(h^2) error takes over beyond ~128 steps: iPNDM-4 falls to a
    slope of 2.3 from 128 to 256 steps, the warm-up's limit."""
    assert (
        abs(_order(prob_mid, (32, 64, 128), _rho_grid, method="ipndm", order=order) - order) <= TOL
    )


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_ipndm_v_on_a_grid_uniform_in_lambda(prob, order):
    measured = _order(prob, STEPS[order], _lam_grid, method="ipndm", order=order, ipndm_variant="v")
    assert abs(measured - order) <= TOL


def test_warm_up_limits_the_order_mid_range(prob_mid):
    """From t = 0.5 the first (Euler) step's O(h^2) local error dominates: DEIS-3 and
    iPNDM-v-3 measure about 2 (the first step is not nearly exact there)."""
    for opts in (dict(method="deis", order=3), dict(method="ipndm", order=3, ipndm_variant="v")):
        assert abs(_order(prob_mid, (32, 64, 128), _lam_grid, **opts) - 2) <= TOL


def test_fixed_ipndm_is_second_order_off_its_grid(prob):
    """The fixed AB-4 weights on a grid uniform in lambda: their error in the weights,
    O(h) times a first difference O(h), leaves a second-order method."""
    measured = _order(prob, (64, 128, 256), _lam_grid, method="ipndm", order=4)
    assert abs(measured - 2) <= TOL


@pytest.mark.parametrize("variant", ["tab", "rhoab"])
@pytest.mark.parametrize("order", [1, 2, 3])
def test_deis(prob, order, variant):
    measured = _order(
        prob, STEPS[order], _lam_grid, method="deis", order=order, deis_variant=variant
    )
    assert abs(measured - order) <= TOL


@pytest.mark.parametrize("method", ["heun", "dpm2"])
def test_heun_and_dpm2(prob, method):
    assert abs(_order(prob, (16, 32, 64), _lam_grid, method=method) - 2) <= TOL


# ----------------------------------------------------------------------------- closed forms


def test_ipndm_weights_are_the_adams_bashforth_weights():
    assert C.AB_WEIGHTS[4] == (55 / 24, -59 / 24, 37 / 24, -9 / 24)
    assert C.AB_WEIGHTS[3] == (23 / 12, -16 / 12, 5 / 12)
    assert C.AB_WEIGHTS[2] == (3 / 2, -1 / 2) and C.AB_WEIGHTS[1] == (1.0,)
    for k, b in C.AB_WEIGHTS.items():  # consistent (sum 1), and the variable-step weights
        assert abs(sum(b) - 1.0) < 1e-15  # on uniform nodes are these
        h = -0.3
        nodes = [2.0 - j * h for j in range(k)]
        np.testing.assert_allclose(C.lagrange_integrals(nodes, 2.0, 2.0 + h) / h, b, rtol=1e-13)


def test_variable_step_weights_integrate_polynomials_exactly():
    rng = np.random.default_rng(1)
    for k in (1, 2, 3, 4):
        nodes = np.sort(rng.uniform(0.2, 3.0, k))[::-1]
        a, b = nodes[-1], nodes[-1] - rng.uniform(0.05, 0.5)
        c = C.lagrange_integrals(nodes, a, b)
        for deg in range(k):
            exact = (b ** (deg + 1) - a ** (deg + 1)) / (deg + 1)
            assert abs(np.dot(c, nodes**deg) - exact) < 1e-13 * max(1.0, abs(exact)), (k, deg)


def test_deis_tab_weights_are_exact_integrals():
    """tAB's weights against adaptive quadrature of int l_j(t(rho)) drho (scipy.quad)."""
    from scipy.integrate import quad

    t_nodes = [0.6, 0.7, 0.8]
    t_of_rho = lambda r: float(SCHED.inverse_lambda(-np.log(r)))
    r = lambda t: float(np.exp(-SCHED.marginal_lambda(np.float64(t))))
    a, b = r(0.6), r(0.45)
    c = C.lagrange_integrals(t_nodes, a, b, var=lambda u: SCHED.inverse_lambda(-np.log(u)))
    for j in range(3):
        others = [t for i, t in enumerate(t_nodes) if i != j]

        def lj(u, j=j, others=others):
            t = t_of_rho(u)
            return np.prod([(t - o) / (t_nodes[j] - o) for o in others])

        want = quad(lj, a, b, epsabs=1e-14, epsrel=1e-12)[0]
        assert abs(c[j] - want) < 1e-12 * max(1.0, abs(want)), (j, c[j], want)
    assert abs(sum(c) - (b - a)) < 1e-14


def test_first_orders_are_ddim_and_nfe_rules():
    """iPNDM-1 and DEIS-1 are DDIM (DPM-Solver-1); Heun / DPM-2 make 2 calls per step, 1
    for a step into sigma = 0."""
    model = dpm_jax.model_wrapper(lambda x, t: 0.1 * x + 0.01 * t[:, None], SCHED)
    x = jnp.asarray(np.random.default_rng(2).normal(size=(3, 4)))
    ddim = dpm_jax.sample(
        model, x, SCHED, steps=9, order=1, skip_type="logSNR", algorithm_type="dpmsolver"
    )
    for method in ("ipndm", "deis"):
        out = dpm_jax.sample(model, x, SCHED, steps=9, order=1, skip_type="logSNR", method=method)
        np.testing.assert_allclose(np.asarray(out), np.asarray(ddim), rtol=1e-12, atol=1e-12)
    edm = schedules.edm()
    m = dpm_jax.model_wrapper(lambda x, t: 0.1 * x, edm)
    for method in ("heun", "dpm2"):
        assert dpm_jax.build_plan(edm, method=method, sigmas=[80.0, 5.0, 0.5, 0.0]).nfe == 5
        assert dpm_jax.build_plan(edm, method=method, sigmas=[80.0, 5.0, 0.5]).nfe == 4
        assert (
            dpm_jax.build_plan(
                edm, method=method, steps=6, skip_type="karras", final_sigmas_type="zero"
            ).nfe
            == 11
        )
        assert dpm_jax.sample(m, 80.0 * x, edm, method=method, steps=4).shape == x.shape


def test_dpm2_is_dpm_solver_2_with_the_midpoint_stage():
    """DPM-2 equals DPM-Solver-2 (singlestep, r1 = 1/2, noise prediction) on the same outer
    grid (explicit grids put a singlestep stage at the lambda midpoint)."""
    model = dpm_jax.model_wrapper(lambda x, t: 0.1 * x + 0.01 * t[:, None], SCHED)
    x = jnp.asarray(np.random.default_rng(3).normal(size=(3, 4)))
    grid = _lam_grid(6)
    a = dpm_jax.sample(model, x, SCHED, method="dpm2", **grid)
    b = dpm_jax.sample(
        model, x, SCHED, method="singlestep_fixed", order=2, algorithm_type="dpmsolver", **grid
    )
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("method", ["ipndm", "deis", "heun", "dpm2"])
def test_jit_vmap_grad(method):
    model = dpm_jax.model_wrapper(lambda x, t: 0.1 * x + 0.01 * t[:, None], SCHED)
    x = jnp.asarray(np.random.default_rng(4).normal(size=(3, 4)))
    opts = dict(method=method, steps=6, skip_type="logSNR")
    eager = dpm_jax.sample(model, x, SCHED, **opts)
    jitted = jax.jit(lambda x_: dpm_jax.sample(model, x_, SCHED, **opts))(x)
    np.testing.assert_allclose(np.asarray(jitted), np.asarray(eager), rtol=1e-12, atol=1e-12)
    vm = jax.vmap(lambda x_: dpm_jax.sample(model, x_, SCHED, **opts))(jnp.stack([x, 2 * x]))
    np.testing.assert_allclose(np.asarray(vm[0]), np.asarray(eager), rtol=1e-12, atol=1e-12)
    g = jax.grad(lambda x_: jnp.sum(dpm_jax.sample(model, x_, SCHED, remat=True, **opts)))(x)
    assert g.shape == x.shape and np.all(np.isfinite(np.asarray(g)))
