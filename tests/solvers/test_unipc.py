"""UniPC (Zhao et al. 2023): convergence orders with and without the corrector, NFE, tracing."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip("scipy")

from counting import compiles

import dpm_jax
from dpm_jax import schedules
from dpm_jax.testing import problems
from dpm_jax.testing.exact import exact_ode_solution

#: UniPC-p: UniP-p alone has order p; with UniC the order rises by one (the paper's
#: Theorem 3.1). Measured on the 16-D GMM (logSNR grid, vp_linear, float64); UniPC-3
#: reaches its asymptotic regime only beyond ~400 NFE (local slopes 3.6 -> 3.9).
NFES = {1: (96, 192, 384), 2: (96, 192, 384), 3: (384, 768, 1536)}


@pytest.fixture(scope="module")
def problem():
    sched = schedules.vp_linear()
    gmm = problems.gmm_16d()
    x_T = np.random.default_rng(0).normal(size=(8, 16))
    exact = exact_ode_solution(gmm, sched, x_T, sched.T, 1e-3, rtol=1e-13, atol=1e-13)
    model = dpm_jax.model_wrapper(problems.noise_net(gmm, sched), sched)
    return sched, jnp.asarray(x_T), exact, model


@pytest.mark.parametrize("algorithm_type", ["dpmsolver++", "dpmsolver"])
@pytest.mark.parametrize("order, corrector", [(1, True), (2, True), (3, True), (2, False)])
def test_unipc_convergence_order(problem, algorithm_type, order, corrector):
    sched, x_T, exact, model = problem
    errors = []
    for n in NFES[order]:
        out, info = dpm_jax.sample(
            model,
            x_T,
            sched,
            steps=n,
            order=order,
            method="unipc",
            skip_type="logSNR",
            algorithm_type=algorithm_type,
            unipc_corrector=corrector,
            **({"lower_order_final": False} if order > 1 else {}),
            return_info=True,
        )
        assert info.nfe == n
        errors.append(float(np.sqrt(np.mean((np.asarray(out) - exact) ** 2))))
    measured = -np.polyfit(np.log(NFES[order]), np.log(errors), 1)[0]
    expected = order + 1 if corrector else order
    assert abs(measured - expected) <= 0.35, (measured, expected, errors)


def test_unipc_traced_once_and_variants_differ():
    sched = schedules.discrete(betas=np.linspace(1e-4, 0.02, 1000))
    net = problems.noise_net(problems.gmm_16d(seed=3, D=4), sched)
    calls = []

    def counting(x, t):
        calls.append(1)
        return net(x, t)

    model = dpm_jax.model_wrapper(counting, sched)
    x = jnp.asarray(np.random.default_rng(1).normal(size=(4, 4)))
    a = dpm_jax.sample(model, x, sched, steps=6, order=3, method="unipc", unipc_variant="bh1")
    with compiles() as compiled:
        b = dpm_jax.sample(model, x, sched, steps=6, order=3, method="unipc", unipc_variant="bh2")
    assert len(compiled) == 0  # one program: the variants are plans of the same shape
    with compiles() as compiled:
        c = dpm_jax.sample(model, x, sched, steps=6, order=3, method="unipc", unipc_corrector=False)
    assert len(compiled) == 1  # without the corrector rows reach back one value less: new shape
    assert len(calls) == 3  # the network (a closure over arrays) is traced at each eager call
    assert not np.allclose(a, b) and not np.allclose(b, c)
    with pytest.raises(ValueError, match="unipc_variant"):
        dpm_jax.sample(model, x, sched, method="unipc", unipc_variant="bh3")
