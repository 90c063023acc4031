"""Models as JAX users hold them: parameters are inputs of the compiled program.

Each test samples the way a user would, outside ``jax.jit`` unless it says otherwise,
in float32 (the dtype users run): a flax.nnx module updated in place and switched
between train and eval, a flax.linen module with its variables (reassigned, or passed
as ``params=``), an equinox module (eager, ``filter_jit``, ``filter_grad``, eager
again), a closure over a large array (no constant in the program, the program reused
for new weights, nothing kept alive), rebuilt schedules, and a network that embeds
integer timesteps. ``compiles()`` counts XLA compilations; ``_boundary.TRACE_COUNT``
counts traces of the network by the eager path.
"""

from __future__ import annotations

import gc
import re

import equinox as eqx
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from counting import compiles
from flax import nnx

import dpm_jax
from dpm_jax import _boundary, _executor, schedules
from dpm_jax.plan import build as plan_build

SCHED = schedules.discrete(betas=np.linspace(1e-4, 0.02, 1000))
D = 6
X = jnp.asarray(np.random.default_rng(0).normal(size=(4, D)), jnp.float32)
OPTS = dict(steps=6, order=2)


def _traces() -> int:
    return _boundary.TRACE_COUNT[0]


def _close(a, b, tol=2e-5):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=tol, atol=tol)


# --------------------------------------------------------------------------- flax.nnx


class NnxNet(nnx.Module):
    def __init__(self, rngs: nnx.Rngs, rate: float = 0.0):
        self.lin = nnx.Linear(D, D, rngs=rngs)
        self.drop = nnx.Dropout(rate, rngs=rngs)

    def __call__(self, x, t_input):
        h = self.drop(jnp.tanh(self.lin(x)))
        return 0.5 * h * (1.0 + t_input[:, None] / 1000.0)


def _functional(graph, state):
    """The reference: the same module rebuilt from its state under jax.jit."""
    run = jax.jit(
        lambda st, x: dpm_jax.sample(
            dpm_jax.model_wrapper(nnx.merge(graph, st), SCHED), x, SCHED, **OPTS
        )
    )
    return run(state, X)


def test_nnx_module_updated_in_place_is_sampled_with_its_new_weights():
    net = NnxNet(nnx.Rngs(0))
    model = dpm_jax.model_wrapper(net, SCHED)  # wrapped once, as a training loop would
    before = dpm_jax.sample(model, X, SCHED, **OPTS)
    _close(before, _functional(*nnx.split(net)))

    # one optimizer step, in place (the classic: sample every N training steps)
    opt = nnx.Optimizer(net, optax.sgd(0.5), wrt=nnx.Param)
    loss = lambda m: jnp.mean((m(X, jnp.full((4,), 500.0)) - 1.0) ** 2)
    grads = nnx.grad(loss)(net)
    opt.update(net, grads)

    traces = _traces()
    with compiles() as compiled:
        after = dpm_jax.sample(model, X, SCHED, **OPTS)
    assert len(compiled) == 0 and _traces() == traces  # same program, no trace
    assert float(jnp.max(jnp.abs(after - before))) > 1e-3  # the new weights are used ...
    _close(after, _functional(*nnx.split(net)))  # ... and they are exactly the module's


def test_nnx_train_eval_switch_with_dropout():
    net = NnxNet(nnx.Rngs(0, dropout=1), rate=0.5)
    model = dpm_jax.model_wrapper(net, SCHED)
    net.eval()
    a = dpm_jax.sample(model, X, SCHED, **OPTS)
    b = dpm_jax.sample(model, X, SCHED, **OPTS)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))  # deterministic in eval
    _close(a, _functional(*nnx.split(net)))
    net.train()
    train = dpm_jax.sample(model, X, SCHED, **OPTS)
    assert float(jnp.max(jnp.abs(train - a))) > 1e-3  # dropout is on
    net.eval()
    with compiles() as compiled:  # back to eval: the eval program again
        again = dpm_jax.sample(model, X, SCHED, **OPTS)
    np.testing.assert_array_equal(np.asarray(again), np.asarray(a))
    assert len(compiled) == 0
    assert net(X, jnp.zeros((4,))).shape == X.shape  # the module is left usable


# --------------------------------------------------------------------------- flax.linen


class LinenNet(nn.Module):
    @nn.compact
    def __call__(self, x, t_input):
        h = jnp.tanh(nn.Dense(D)(x))
        return 0.5 * h * (1.0 + t_input[:, None] / 1000.0)


def test_linen_closure_over_reassigned_params():
    module = LinenNet()
    holder = {"params": module.init(jax.random.key(0), X, jnp.zeros((4,)))}
    model = dpm_jax.model_wrapper(lambda x, t: module.apply(holder["params"], x, t), SCHED)
    first = dpm_jax.sample(model, X, SCHED, **OPTS)
    holder["params"] = module.init(jax.random.key(1), X, jnp.zeros((4,)))  # a new checkpoint
    with compiles() as compiled:
        second = dpm_jax.sample(model, X, SCHED, **OPTS)
    assert len(compiled) == 0  # the same program, the new weights as arguments
    assert float(jnp.max(jnp.abs(second - first))) > 1e-3
    explicit = dpm_jax.model_wrapper(module.apply, SCHED, params=holder["params"])
    _close(second, dpm_jax.sample(explicit, X, SCHED, **OPTS), tol=1e-6)


def test_linen_params_argument_is_traced_once():
    module = LinenNet()
    p1 = module.init(jax.random.key(0), X, jnp.zeros((4,)))
    p2 = module.init(jax.random.key(1), X, jnp.zeros((4,)))
    y1 = dpm_jax.sample(dpm_jax.model_wrapper(module.apply, SCHED, params=p1), X, SCHED, **OPTS)
    traces = _traces()
    with compiles() as compiled:
        y2 = dpm_jax.sample(dpm_jax.model_wrapper(module.apply, SCHED, params=p2), X, SCHED, **OPTS)
    assert _traces() == traces and len(compiled) == 0
    assert float(jnp.max(jnp.abs(y2 - y1))) > 1e-3
    ref = jax.jit(
        lambda p, x: dpm_jax.sample(
            dpm_jax.model_wrapper(lambda x, t: module.apply(p, x, t), SCHED), x, SCHED, **OPTS
        )
    )(p2, X)
    _close(y2, ref, tol=1e-6)


def test_traced_parameters_under_jit_trace_the_network_once():
    module = LinenNet()
    params = module.init(jax.random.key(0), X, jnp.zeros((4,)))
    calls = []

    def apply(p, x, t):
        calls.append(1)
        return module.apply(p, x, t)

    @jax.jit
    def generate(p, x):
        return dpm_jax.sample(dpm_jax.model_wrapper(lambda x, t: apply(p, x, t), SCHED), x, SCHED)

    traces = _traces()
    generate(params, X)
    generate(jax.tree_util.tree_map(lambda a: a + 1.0, params), X)
    assert len(calls) == 1 and _traces() == traces  # one trace; the boundary stays out of jit


# --------------------------------------------------------------------------- equinox


class EqxNet(eqx.Module):
    lin: eqx.nn.Linear

    def __init__(self, key):
        self.lin = eqx.nn.Linear(D, D, key=key)

    def __call__(self, x, t_input):
        h = jnp.tanh(jax.vmap(self.lin)(x))
        return 0.5 * h * (1.0 + t_input[:, None] / 1000.0)


def test_equinox_eager_filter_jit_filter_grad_then_eager():
    net = EqxNet(jax.random.key(0))
    run = lambda m, x: dpm_jax.sample(dpm_jax.model_wrapper(m, SCHED), x, SCHED, **OPTS)
    eager = run(net, X)
    jitted = eqx.filter_jit(run)(net, X)
    _close(jitted, eager, tol=1e-6)
    grads = eqx.filter_grad(lambda m: jnp.sum(run(m, X) ** 2))(net)
    g = jnp.concatenate([jnp.ravel(v) for v in jax.tree_util.tree_leaves(grads)])
    assert bool(jnp.all(jnp.isfinite(g))) and float(jnp.max(jnp.abs(g))) > 0.0
    traces = _traces()
    again = run(net, X)  # eager after grad and jit: no dead tracers anywhere
    np.testing.assert_array_equal(np.asarray(again), np.asarray(eager))
    assert _traces() == traces
    other = EqxNet(jax.random.key(1))  # a new module of the same structure: no recompile
    with compiles() as compiled:
        run(other, X)
    assert len(compiled) == 0


# --------------------------------------------------------------------------- closures


def _spy_program(monkeypatch):
    """Records the arguments of the eager executor, to lower its program."""
    seen = []
    real = _executor._execute_jit

    class Spy:
        def __call__(self, *args, **kwargs):
            seen.append((args, kwargs))
            return real(*args, **kwargs)

    monkeypatch.setattr(_executor, "_execute_jit", Spy())
    return real, seen


def test_closure_over_large_weights_no_constants_program_reused(monkeypatch):
    real, seen = _spy_program(monkeypatch)
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.normal(size=(4, 1024)), jnp.float32)
    w1 = jnp.asarray(rng.normal(size=(1024, 1024)) / 32, jnp.float32)  # 4 MiB
    w2 = jnp.asarray(rng.normal(size=(1024, 1024)) / 32, jnp.float32)

    def sample_with(w):
        net = lambda x, t: 0.1 * jnp.tanh(x @ w)
        return dpm_jax.sample(dpm_jax.model_wrapper(net, SCHED), x, SCHED, steps=4)

    y1 = sample_with(w1)
    args, kwargs = seen[-1]
    hlo = real.lower(*args, **kwargs).as_text()
    big = [len(m) for m in re.findall(r'dense<"0x([0-9A-Fa-f]+)"', hlo)]
    assert max(big, default=0) < 2048 and len(hlo) < 200_000, (max(big, default=0), len(hlo))
    with compiles() as compiled:
        y2 = sample_with(w2)
    assert len(compiled) == 0
    ref = jax.jit(
        lambda w, x: dpm_jax.sample(
            dpm_jax.model_wrapper(lambda x, t: 0.1 * jnp.tanh(x @ w), SCHED), x, SCHED, steps=4
        )
    )(w2, x)
    _close(y2, ref, tol=1e-5)
    assert float(jnp.max(jnp.abs(y2 - y1))) > 1e-3


def test_no_leak_of_closed_over_arrays():
    x = jnp.ones((2, 256), jnp.float32)

    def live() -> int:
        gc.collect()
        return sum(a.nbytes for a in jax.live_arrays())

    def once(k):
        w = jnp.full((256, 256), 0.001 * (k + 1), jnp.float32)
        net = lambda x, t: x @ w
        return float(jnp.sum(dpm_jax.sample(dpm_jax.model_wrapper(net, SCHED), x, SCHED, steps=3)))

    once(0)  # compile
    base = live()
    for k in range(1, 6):
        once(k)
    assert live() - base < 64 * 1024, live() - base  # 5 x 256 KiB of weights were made


# --------------------------------------------------------------------------- schedules


def test_rebuilt_schedules_do_not_retrace_or_replan(monkeypatch):
    calls = []
    real = plan_build.plan_run
    monkeypatch.setattr(plan_build, "plan_run", lambda *a, **k: calls.append(1) or real(*a, **k))
    net = EqxNet(jax.random.key(0))
    outs = []
    for i in range(3):
        sched = schedules.discrete(betas=np.linspace(1e-4, 0.02, 1000))  # built afresh
        model = dpm_jax.model_wrapper(net, sched)
        if i == 1:
            traces = _traces()
            with compiles() as compiled:
                outs.append(dpm_jax.sample(model, X, sched, steps=7, skip_type="logSNR"))
            assert _traces() == traces and len(compiled) == 0
        else:
            outs.append(dpm_jax.sample(model, X, sched, steps=7, skip_type="logSNR"))
    assert len(calls) == 1  # planned once
    np.testing.assert_array_equal(np.asarray(outs[0]), np.asarray(outs[2]))


# --------------------------------------------------------------------------- time inputs


class EmbedNet(nn.Module):
    """A network that embeds integer timesteps (nn.Embed), as DDPM-style UNets do."""

    @nn.compact
    def __call__(self, x, t_input):
        emb = nn.Embed(1000, D)(t_input)
        return 0.1 * x + 0.01 * emb


def test_integer_timesteps_with_nn_embed():
    module = EmbedNet()
    params = module.init(jax.random.key(0), X, jnp.zeros((4,), jnp.int32))
    seen = []

    def apply(p, x, t):
        seen.append(t.dtype)
        return module.apply(p, x, t)

    model = dpm_jax.model_wrapper(apply, SCHED, params=params, integer_time=True)
    y = dpm_jax.sample(model, X, SCHED, steps=10, skip_type="trailing")
    assert seen[-1] == jnp.int32 and bool(jnp.all(jnp.isfinite(y)))
    # the timesteps themselves: diffusers' trailing grid 999, 899, ..., 99
    plan = dpm_jax.build_plan(SCHED, steps=10, skip_type="trailing")
    np.testing.assert_allclose(plan.t_input, np.arange(999, 0, -100), atol=1e-9)
    with pytest.raises(ValueError, match="integer_time"):
        dpm_jax.sample(model, X, SCHED, steps=10)  # time_uniform: 1000 (t - 1/N) = 899.1 ...
    with pytest.raises(ValueError, match="integer_time"):
        dpm_jax.sample(model, X, SCHED, method="adaptive")
    with pytest.raises(ValueError, match="integer_time"):
        dpm_jax.model_wrapper(apply, schedules.edm(), model_type="edm", integer_time=True)
    with pytest.raises(TypeError, match="integer_time"):
        dpm_jax.model_wrapper(apply, SCHED, integer_time=1)
