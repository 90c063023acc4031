"""The step API: the loop in the user's hands equals ``sample`` (float64, <= 1e-12).

For every fixed-grid method and algorithm of the registry (SDE forms, UniPC with and
without its corrector, singlestep's inner points, ``denoise_to_zero``) and every model
parameterisation (noise, x0, v, score, flow, EDM), a run of ``dpm_jax.stepper`` driven by
hand — the network called by the test, its raw output handed to ``step`` — gives
``sample``'s result with the same options. The loop runs as a Python loop, in
``lax.fori_loop`` under ``jit``, in ``lax.scan``, under ``vmap`` and ``grad``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from exact_models import DIM, start, x0_net

import dpm_jax
from dpm_jax import schedules
from dpm_jax.plan.solvers import registry

DISC = schedules.discrete(betas=np.linspace(1e-4, 0.02, 1000))
SCHEDS = {"discrete": DISC, "flow": schedules.flow(shift=3.0), "edm": schedules.edm()}
X0 = x0_net(DISC)


def raw_net(model_type, schedule):
    """The exact model as a network of ``model_type`` (via the exact x0)."""
    from exact_models import alpha_sigma

    base = x0_net(schedule)

    def net(x, t_in):
        if model_type in ("edm", "edm_v"):  # x_in = c_in x; return F with D = c_skip x + c_out F
            sd = 0.5
            sig = jnp.exp(4.0 * t_in)[:, None]  # c_noise = log(sigma) / 4, alpha = 1
            xs = x * jnp.sqrt(sig**2 + sd**2)
            d = base(xs, sig[:, 0])
            c_skip, c_out = sd**2 / (sig**2 + sd**2), sig * sd / jnp.sqrt(sig**2 + sd**2)
            f = (d - c_skip * xs) / c_out
            return f if model_type == "edm" else -f
        a, s = alpha_sigma(schedule, t_in)
        a, s = a[:, None], s[:, None]
        x0 = base(x, t_in)
        eps = (x - a * x0) / s
        return {
            "noise": eps,
            "x_start": x0,
            "v": a * eps - s * x0,
            "score": -eps / s,
            "flow": eps - x0,
        }[model_type]

    return net


def hand_loop(st, net, x, key=None):
    state = st.init(x)
    for _ in range(st.num_steps):
        x_in, t_in = st.network_input(state)
        state = st.step(state, net(x_in, t_in), key=key)
    assert int(state.i) == st.num_steps
    return state.x


def _cases():
    out = []
    for method, solver in registry.SOLVERS.items():
        # the built-in ones (a test elsewhere registers a solver object of its own, which
        # is called as solver=..., not method=...)
        if solver.adaptive or method not in registry.METHODS:
            continue
        for alg in solver.algorithms:
            order = max(o for o in solver.orders if o <= 3)
            if alg == "sde-dpmsolver":
                order = 2
            out.append((method, alg, order, "discrete", "noise", {}))
    out += [
        ("multistep", "dpmsolver++", 3, "discrete", "v", dict(denoise_to_zero=True)),
        ("multistep", "dpmsolver", 2, "discrete", "x_start", dict(denoise_to_zero=True)),
        ("singlestep", "dpmsolver++", 2, "discrete", "score", dict(skip_type="logSNR")),
        ("singlestep_fixed", "dpmsolver", 3, "discrete", "v", {}),
        ("unipc", "dpmsolver++", 3, "discrete", "x_start", dict(unipc_corrector=False)),
        ("unipc", "dpmsolver", 2, "discrete", "noise", dict(unipc_variant="bh1")),
        ("multistep", "dpmsolver++", 2, "flow", "flow", {}),
        ("unipc", "dpmsolver++", 3, "flow", "flow", {}),
        ("multistep", "dpmsolver++", 2, "edm", "edm", dict(skip_type="karras")),
        ("heun", "dpmsolver", 2, "edm", "edm_v", dict(skip_type="karras")),
        ("dpm2", "dpmsolver", 2, "edm", "edm", dict(skip_type="karras")),
        (
            "multistep",
            "dpmsolver",
            2,
            "discrete",
            "noise",
            dict(denoise_to_zero=True, correcting_x0_fn="dynamic_thresholding"),
        ),
        (
            "multistep",
            "dpmsolver++",
            3,
            "discrete",
            "noise",
            dict(correcting_x0_fn="dynamic_thresholding"),
        ),
    ]
    return out


CASES = _cases()


@pytest.mark.parametrize(
    "method,alg,order,sched,model_type,extra",
    CASES,
    ids=[f"{c[0]}-{c[1]}-{c[2]}-{c[4]}-{i}" for i, c in enumerate(CASES)],
)
def test_hand_loop_equals_sample(method, alg, order, sched, model_type, extra):
    schedule = SCHEDS[sched]
    opts = dict(method=method, algorithm_type=alg, order=order, steps=8, **extra)
    if schedule.name == "edm" or "skip_type" in extra:
        opts.setdefault("skip_type", "logSNR")
    if method in ("heun", "dpm2") and sched != "edm":
        opts["skip_type"] = "karras"
    net = raw_net(model_type, schedule)
    sd = {"sigma_data": 0.5} if model_type in ("edm", "edm_v") else {}
    model = dpm_jax.model_wrapper(net, schedule, model_type=model_type, **sd)
    t0 = 0.7 * schedule.T if schedule.name != "edm" else 40.0
    x = start(schedule, 5, seed=1, t=t0)
    key = jax.random.key(3) if alg.startswith("sde") else None
    kw = dict(key=key) if key is not None else {}
    ref = dpm_jax.sample(model, x, schedule, t_start=t0, **kw, **opts)
    st = dpm_jax.stepper(schedule, model_type=model_type, t_start=t0, **sd, **opts)
    got = hand_loop(st, net, x, key=key)
    np.testing.assert_allclose(np.asarray(got), np.asarray(ref), rtol=1e-12, atol=1e-12)


def test_fori_loop_scan_jit_vmap_and_grad():
    net = raw_net("noise", DISC)
    x = start(DISC, 4, seed=2, t=0.8)
    opts = dict(steps=7, order=3, method="multistep", t_start=0.8)
    ref = dpm_jax.sample(dpm_jax.model_wrapper(net, DISC), x, DISC, **opts)
    st = dpm_jax.stepper(DISC, **opts)

    @jax.jit
    def run_fori(st, x):
        body = lambda k, s: st.step(s, net(*st.network_input(s)))
        return jax.lax.fori_loop(0, st.num_steps, body, st.init(x)).x

    @jax.jit
    def run_scan(st, x):
        def body(s, _):
            return st.step(s, net(*st.network_input(s))), None

        return jax.lax.scan(body, st.init(x), None, length=st.num_steps)[0].x

    for run in (run_fori, run_scan):
        np.testing.assert_allclose(np.asarray(run(st, x)), np.asarray(ref), rtol=1e-12, atol=1e-12)
    per_sample = jax.vmap(lambda xb: run_fori(st, xb[None])[0])(x)  # one sample per lane
    np.testing.assert_allclose(np.asarray(per_sample), np.asarray(ref), rtol=1e-12, atol=1e-12)
    grad = jax.grad(lambda x: jnp.sum(run_fori(st, x) ** 2))(x)
    ref_grad = jax.grad(
        lambda x: jnp.sum(dpm_jax.sample(dpm_jax.model_wrapper(net, DISC), x, DISC, **opts) ** 2)
    )(x)
    np.testing.assert_allclose(np.asarray(grad), np.asarray(ref_grad), rtol=1e-10, atol=1e-10)


def test_time_and_network_input_follow_the_plan_in_float32():
    plan = dpm_jax.build_plan(DISC, steps=6, skip_type="trailing")
    st = dpm_jax.stepper(DISC, plan=plan)
    state = st.init(jnp.ones((2, DIM), jnp.float32))
    net = raw_net("noise", DISC)
    for i in range(st.num_steps):
        when = st.time(state)
        assert when.t.dtype == jnp.float32 and np.isclose(when.t, plan.t[i])
        np.testing.assert_allclose(when.t_input, plan.t_input[i], rtol=1e-6)
        x_in, t_in = st.network_input(state)
        assert t_in.shape == (2,) and x_in.dtype == jnp.float32
        state = st.step(state, net(x_in, t_in))
    assert state.x.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(state.x)))


def test_stepper_errors():
    with pytest.raises(ValueError, match="adaptive"):
        dpm_jax.stepper(DISC, method="adaptive")
    with pytest.raises(ValueError, match="return_info"):
        dpm_jax.stepper(DISC, return_info=True)
    with pytest.raises(ValueError, match="unroll"):
        dpm_jax.stepper(DISC, unroll=2)
    plan = dpm_jax.build_plan(DISC, steps=4)
    with pytest.raises(ValueError, match="steps"):
        dpm_jax.stepper(DISC, plan=plan, steps=4)
    with pytest.raises(TypeError, match="plan"):
        dpm_jax.stepper(DISC, plan="plan")
    with pytest.raises(ValueError, match="model_type"):
        dpm_jax.stepper(DISC, model_type="eps")
    sde = dpm_jax.stepper(DISC, algorithm_type="sde-dpmsolver++", steps=4)
    state = sde.init(jnp.ones((2, DIM)))
    with pytest.raises(ValueError, match="key"):
        sde.step(state, jnp.zeros((2, DIM)))
    ode = dpm_jax.stepper(DISC, steps=4)
    with pytest.raises(ValueError, match="key"):
        ode.step(ode.init(jnp.ones((2, DIM))), jnp.zeros((2, DIM)), key=jax.random.key(0))
    with pytest.raises(ValueError, match="shape"):
        ode.step(ode.init(jnp.ones((2, DIM))), jnp.zeros((2, DIM + 1)))


def _full_product():
    """Every fixed-grid method x algorithm x model type (its schedule: discrete for noise,
    x0, v and score; flow; EDM with Karras sigmas for the EDM types)."""
    types = [
        ("discrete", "noise"),
        ("discrete", "x_start"),
        ("discrete", "v"),
        ("discrete", "score"),
        ("flow", "flow"),
        ("edm", "edm"),
        ("edm", "edm_v"),
    ]
    for method, solver in registry.SOLVERS.items():
        if solver.adaptive or method not in registry.METHODS:
            continue
        for alg in solver.algorithms:
            order = 2 if alg == "sde-dpmsolver" else max(o for o in solver.orders if o <= 3)
            for sched, model_type in types:
                yield pytest.param(
                    method, alg, order, sched, model_type, id=f"{method}-{alg}-{model_type}"
                )


@pytest.mark.parametrize("method,alg,order,sched,model_type", list(_full_product()))
def test_hand_loop_equals_sample_every_method_algorithm_model_type(
    method, alg, order, sched, model_type
):
    extra = {"skip_type": "karras"} if sched == "edm" or method in ("heun", "dpm2") else {}
    if method == "singlestep_fixed":  # the reference's grids only, with finite end points
        extra = {"skip_type": "logSNR"} if sched == "edm" else {}
        if sched == "flow":
            extra["t_end"] = 1e-3
    test_hand_loop_equals_sample(method, alg, order, sched, model_type, extra)
