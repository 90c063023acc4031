"""Samples per second of dpm_jax.sample against the number of devices.

Each device count runs in a fresh process (the CPU device count is fixed when
jax starts: ``--xla_force_host_platform_device_count``). The batch is split
over a 1-D mesh (``dpm_jax.sharding``); the model is the exact noise
predictor of a 16-D Gaussian mixture with 4 components (float32),
DPM-Solver++(2M) at 20 NFE.

On a CPU the simulated devices share the machine's cores, so this measures
the overhead of sharding, not a speed-up; on a GPU/TPU host it measures scaling.

    python benchmarks/throughput.py [--batch 8192] [--devices 1 2 4 8]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time


def child(n_devices: int, batch: int, repeats: int) -> dict:
    os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={n_devices}"
    import jax
    import jax.numpy as jnp
    import numpy as np

    import dpm_jax
    from dpm_jax import sharding
    from dpm_jax.testing import problems

    sched = dpm_jax.schedules.discrete(betas=np.linspace(1e-4, 0.02, 1000))
    model = dpm_jax.model_wrapper(problems.noise_net(problems.gmm_16d(), sched), sched)
    mesh = sharding.batch_mesh(jax.devices()[:n_devices])
    x = sharding.shard_batch(jax.random.normal(jax.random.key(0), (batch, 16), jnp.float32), mesh)
    fn = jax.jit(lambda x: dpm_jax.sample(model, x, sched, steps=20))
    t0 = time.perf_counter()
    fn(x).block_until_ready()
    compile_s = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(x).block_until_ready()
        times.append(time.perf_counter() - t0)
    med = float(np.median(times))
    return dict(
        devices=n_devices,
        platform=jax.devices()[0].platform,
        batch=batch,
        first_call_s=compile_s,
        median_s=med,
        samples_per_s=batch / med,
    )


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=8192)
    ap.add_argument("--devices", type=int, nargs="+", default=[1, 2, 4, 8])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--child", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.batch, args.repeats)))
        return
    import jax

    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs; jax {jax.__version__}; "
        f"DPM-Solver++(2M), 20 NFE, 16-D GMM noise predictor, float32, batch {args.batch}"
    )
    print("| devices | platform | first call (s) | median (s) | samples/s | vs 1 device |")
    print("|---:|---|---:|---:|---:|---:|")
    base = None
    for n in args.devices:
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--child",
                str(n),
                "--batch",
                str(args.batch),
                "--repeats",
                str(args.repeats),
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        r = json.loads(out.strip().splitlines()[-1])
        base = base or r["samples_per_s"]
        print(
            f"| {n} | {r['platform']} | {r['first_call_s']:.2f} | {r['median_s']:.4f} | "
            f"{r['samples_per_s']:.0f} | {r['samples_per_s'] / base:.2f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
