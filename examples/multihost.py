"""Multi-host sampling: N processes sample one global batch together.

Each process owns some devices; the global batch is split over all of them
with a 1-D mesh, every process feeds its own part of x_T
(``jax.make_array_from_process_local_data``), and the same jitted
``dpm_jax.sample`` runs as one SPMD program. Fixed-grid sampling needs no
communication, so the processes only meet to start and to compile.

Run on one machine (loopback, 4 CPU devices per process):

    python examples/multihost.py --launch 2

or start each process yourself (e.g. one per TPU host) with
``--process-id I --num-processes N --coordinator HOST:PORT``.
Each process checks its shards against a one-process run of the same batch
and prints ``process I: N local shards match`` (exit code 0) or fails.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys


def worker(process_id: int, num_processes: int, coordinator: str, local_devices: int) -> int:
    os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={local_devices}"
    import jax

    jax.config.update("jax_enable_x64", True)
    jax.distributed.initialize(
        coordinator_address=coordinator, num_processes=num_processes, process_id=process_id
    )
    import jax.numpy as jnp
    import numpy as np
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    import dpm_jax
    from dpm_jax import sharding
    from dpm_jax.testing import problems

    sched = dpm_jax.schedules.discrete(betas=np.linspace(1e-4, 0.02, 1000))
    model = dpm_jax.model_wrapper(problems.noise_net(problems.gmm_16d(seed=3, D=4), sched), sched)
    n_global = 4 * jax.device_count()
    x_all = np.random.default_rng(0).normal(size=(n_global, 4))  # every process knows the batch
    mesh = sharding.batch_mesh()  # all devices of all processes
    spec = NamedSharding(mesh, P("batch"))
    per_process = n_global // num_processes
    local = x_all[process_id * per_process : (process_id + 1) * per_process]
    x_T = jax.make_array_from_process_local_data(spec, local, (n_global, 4))
    out = jax.jit(
        lambda x: dpm_jax.sample(model, x, sched, steps=10, order=3, method="singlestep")
    )(x_T)
    with jax.default_device(jax.local_devices()[0]):  # the one-process reference
        ref = np.asarray(
            dpm_jax.sample(model, jnp.asarray(x_all), sched, steps=10, order=3, method="singlestep")
        )
    shards = out.addressable_shards
    for shard in shards:
        np.testing.assert_array_equal(np.asarray(shard.data), ref[shard.index])
    print(
        f"process {process_id}: {len(shards)} local shards match (global batch {n_global} "
        f"on {jax.device_count()} devices)",
        flush=True,
    )
    jax.distributed.shutdown()
    return 0


def launch(num_processes: int, local_devices: int, timeout: float = 240.0) -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [
        sys.executable,
        __file__,
        "--num-processes",
        str(num_processes),
        "--coordinator",
        f"127.0.0.1:{port}",
        "--local-devices",
        str(local_devices),
    ]
    procs = [subprocess.Popen(cmd + ["--process-id", str(i)]) for i in range(num_processes)]
    try:
        codes = [p.wait(timeout=timeout) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    return max(abs(c) for c in codes)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--launch", type=int, default=0, help="start this many local processes")
    ap.add_argument("--process-id", type=int, default=0)
    ap.add_argument("--num-processes", type=int, default=1)
    ap.add_argument("--coordinator", default="127.0.0.1:12355")
    ap.add_argument("--local-devices", type=int, default=4)
    args = ap.parse_args(argv)
    if args.launch:
        return launch(args.launch, args.local_devices)
    return worker(args.process_id, args.num_processes, args.coordinator, args.local_devices)


if __name__ == "__main__":
    sys.exit(main())
