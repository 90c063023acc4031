"""Sample a Flax NNX module whose parameters are traced: one compilation serves every checkpoint.

The pattern (DESIGN.md, "Public API contract")::

    graph, params = nnx.split(unet, nnx.Param)          # static structure, parameter pytree

    @jax.jit
    def generate(params, x_T, labels, scale):
        net = lambda x, t, y: nnx.merge(graph, params)(x, t, y)
        model = dpm_jax.model_wrapper(net, sched, guidance_type="classifier-free",
                                      condition=labels, unconditional_condition=null,
                                      guidance_scale=scale)
        return dpm_jax.sample(model, x_T, sched, steps=10)

``params`` is an argument of the compiled program, not a constant baked into it,
so sampling with another checkpoint of the same architecture (a later training
step, an EMA, a fine-tune) reuses the program. The script samples with three
parameter sets (the bundled EMA weights, a copy with every weight perturbed by
1 %, and an untrained UNet), counts how often ``generate`` is traced, and times
the first (compiling) and later calls. Closing over the parameters instead
(``jax.jit(lambda x_T: ...)`` with ``params`` a Python constant) would trace and
compile once per checkpoint and embed all weights in the program. Usage::

    python examples/traced_params.py
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

import dpm_jax
from dpm_jax.demo import digits

TRACES = []


def main():
    bundle = digits.load()
    graph = bundle.unet_graph
    sched = digits.schedule()

    @jax.jit
    def generate(params, x_T, labels, scale):
        TRACES.append(1)  # runs only while tracing

        def net(x, t_input, y):
            return nnx.merge(graph, params)(x, t_input, y)

        model = dpm_jax.model_wrapper(
            net,
            sched,
            model_type="noise",
            guidance_type="classifier-free",
            condition=labels,
            unconditional_condition=jnp.full_like(labels, digits.NULL_LABEL),
            guidance_scale=scale,
        )
        return dpm_jax.sample(
            model,
            x_T,
            sched,
            steps=10,
            order=2,
            method="multistep",
            algorithm_type="dpmsolver++",
            skip_type=digits.DEFAULT_SKIP_TYPE,
        )

    labels = jnp.asarray(np.repeat(np.arange(10), 10), jnp.int32)
    x_T = jax.random.normal(jax.random.key(0), (labels.shape[0], 8, 8, 1), jnp.float32)
    leaves, treedef = jax.tree_util.tree_flatten(bundle.unet_params)
    keys = jax.random.split(jax.random.key(1), len(leaves))
    perturbed = jax.tree_util.tree_unflatten(
        treedef, [w * (1 + 0.01 * jax.random.normal(k, w.shape)) for w, k in zip(leaves, keys)]
    )
    _, untrained = nnx.split(digits.UNet(**digits.DEFAULT_UNET, rngs=nnx.Rngs(123)), nnx.Param)
    checkpoints = [
        ("bundled EMA weights", bundle.unet_params),
        ("weights perturbed by 1%", perturbed),
        ("untrained UNet", untrained),
    ]
    print(f"{'checkpoint':<26} {'call s':>7} {'traces so far':>14} {'accuracy':>9}")
    for name, params in checkpoints:
        t0 = time.perf_counter()
        x0 = jax.block_until_ready(generate(params, x_T, labels, jnp.float32(2.0)))
        dt = time.perf_counter() - t0
        print(f"{name:<26} {dt:7.2f} {len(TRACES):14d} {digits.accuracy(bundle, x0, labels):9.3f}")
    assert len(TRACES) == 1, "a new checkpoint should not retrace"
    print(
        "one trace and one compilation for all three checkpoints "
        "(the first call's time includes compiling)"
    )


if __name__ == "__main__":
    main()
