"""Memory of jax.grad through dpm_jax.sample, with and without remat.

Prints the compiled gradient program's temporary memory
(``jax.jit(...).lower(...).compile().memory_analysis()``) for 10, 50 and 100
steps of DPM-Solver++(2M), with ``remat=False`` and ``remat=True``.

    python benchmarks/memory.py
"""

from __future__ import annotations

import platform

import jax
import jax.numpy as jnp
import numpy as np

import dpm_jax
from dpm_jax import schedules
from dpm_jax.testing import problems


def main() -> None:
    sched = schedules.discrete(betas=np.linspace(1e-4, 0.02, 1000))
    model = dpm_jax.model_wrapper(problems.noise_net(problems.gmm_16d(), sched), sched)
    x = jnp.ones((256, 16), jnp.float32)
    print(
        f"jax {jax.__version__}, {jax.devices()[0].platform}, {platform.machine()}; "
        "grad of sum(x0^2) w.r.t. x_T, 16-D GMM noise predictor, batch 256, float32"
    )
    print("| steps | temp bytes, remat=False | temp bytes, remat=True | ratio |")
    print("|---:|---:|---:|---:|")
    for steps in (10, 50, 100):
        temp = {}
        for remat in (False, True):
            f = jax.jit(
                jax.grad(
                    lambda x, remat=remat, steps=steps: jnp.sum(
                        dpm_jax.sample(model, x, sched, steps=steps, remat=remat) ** 2
                    )
                )
            )
            temp[remat] = f.lower(x).compile().memory_analysis().temp_size_in_bytes
        print(f"| {steps} | {temp[False]:,} | {temp[True]:,} | {temp[True] / temp[False]:.3f} |")


if __name__ == "__main__":
    main()
