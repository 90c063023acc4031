"""Sample over several devices: the batch sharded over a 1-D mesh, one jitted ``dpm_jax.sample``.

The batch of x_T and labels is placed with ``jax.device_put`` under a
``NamedSharding`` that splits its first axis over a 1-D mesh of all devices
(axis "batch"); the parameters are replicated. ``dpm_jax.sample`` runs under
``jax.jit``: XLA partitions the whole sampling loop (every model call and every
solver update works per sample), so each device integrates its own slice of the
batch and no data moves between devices until the result is gathered. The
script checks that the output is sharded like the input and equal to a
single-device run.

On a CPU, simulate 8 devices (the script sets this flag itself when no
``XLA_FLAGS`` are set; it must be set before JAX starts)::

    XLA_FLAGS=--xla_force_host_platform_device_count=8 python examples/multi_device.py
    python examples/multi_device.py --per-device 16

On a TPU or multi-GPU machine the same script uses the real devices.
``dpm_jax.sharding`` packages the same recipe (``batch_mesh``, ``shard_batch``,
``replicate``) and a ``shard_map`` variant (``sample_sharded``); this script
spells it out with ``jax.sharding`` alone. The mesh is built with
``jax.sharding.Mesh`` (automatic axes): ``jax.make_mesh`` gives explicit axes by
default in recent JAX, under which the UNet's label-embedding gather needs an
explicit output sharding.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from dpm_jax.demo import digits


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--per-device", type=int, default=10, help="samples per device (default 10)"
    )
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args(argv)

    devices = jax.devices()
    n_dev = len(devices)
    mesh = jax.sharding.Mesh(jax.devices(), ("batch",))
    batch_sharding = NamedSharding(mesh, P("batch"))
    replicated = NamedSharding(mesh, P())
    print(f"{n_dev} devices ({devices[0].platform}); mesh {dict(mesh.shape)}")

    bundle = digits.load()
    n = n_dev * args.per_device
    labels = np.arange(n) % 10
    x_T = jax.random.normal(jax.random.key(0), (n, 8, 8, 1), jnp.float32)

    x_T_sh = jax.device_put(x_T, batch_sharding)
    labels_sh = jax.device_put(jnp.asarray(labels, jnp.int32), batch_sharding)
    params_rep = jax.device_put(bundle.unet_params, replicated)

    def run(params, x_T, labels):
        # digits._generate: model_wrapper + dpm_jax.sample, the model closed over, params traced
        return digits._generate(
            params,
            x_T,
            labels,
            jnp.float32(2.0),
            graph=bundle.unet_graph,
            options=digits.sample_options("dpmsolver++", steps=args.steps),
        )[0]

    sharded = jax.jit(run, out_shardings=batch_sharding)
    t0 = time.perf_counter()
    x0 = jax.block_until_ready(sharded(params_rep, x_T_sh, labels_sh))
    t_first = time.perf_counter() - t0
    t0 = time.perf_counter()
    x0 = jax.block_until_ready(sharded(params_rep, x_T_sh, labels_sh))
    t_run = time.perf_counter() - t0
    print(
        f"sharded over {n_dev}: {n} samples, {args.steps} NFE; first call {t_first:.2f} s "
        f"(with compile), then {t_run:.3f} s"
    )
    print(f"output sharding: {x0.sharding}")
    print(
        "per-device shards:",
        [tuple(s.data.shape) for s in x0.addressable_shards][:4],
        "..." if n_dev > 4 else "",
    )
    assert x0.sharding.is_equivalent_to(batch_sharding, x0.ndim)

    single = jax.jit(run)
    x1 = jax.block_until_ready(
        single(bundle.unet_params, jax.device_put(x_T, devices[0]), jnp.asarray(labels, jnp.int32))
    )
    diff = float(np.max(np.abs(np.asarray(x0) - np.asarray(x1))))
    print(f"max |sharded - single-device| = {diff:.2e}")
    print(
        f"classifier accuracy of the sharded samples: "
        f"{digits.accuracy(bundle, np.asarray(x0), labels):.3f}"
    )
    assert diff < 1e-3


if __name__ == "__main__":
    main()
