"""Digests of the lowered programs of ``dpm_jax.sample`` for a few methods, to check that a
change left the existing solvers' compiled programs as they were.

Run it against two checkouts and compare the lines::

    PYTHONPATH=/path/to/old python tools/hlo_digest.py > old.txt
    PYTHONPATH=. python tools/hlo_digest.py > new.txt
    diff old.txt new.txt    # no output: the same StableHLO text, method by method

The first line names the dpm_jax that was imported. The digests depend on the jax version:
compare two checkouts with the same environment.
"""

from __future__ import annotations

import hashlib

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp

import dpm_jax
from dpm_jax import schedules

CASES = (
    dict(method="multistep", order=2),
    dict(method="singlestep", order=3),
    dict(method="unipc", order=3),
    dict(method="deis", order=3),
    dict(method="multistep", order=3, algorithm_type="sde-dpmsolver++"),
)


def main() -> None:
    print(dpm_jax.__file__)
    sched = schedules.vp_linear()
    weights = jnp.ones((4,)) * 0.3

    def net(x, t):
        return jnp.tanh(x * weights) * sched.marginal_std(t)[:, None]

    model = dpm_jax.model_wrapper(net, sched)
    x = jnp.ones((2, 4))
    for kw in CASES:
        extra = dict(key=jax.random.key(0)) if "sde" in str(kw.get("algorithm_type")) else {}

        def run(x, kw=kw, extra=extra):
            return dpm_jax.sample(model, x, sched, steps=10, **kw, **extra)

        text = jax.jit(run).lower(x).as_text()
        print(kw, hashlib.sha256(text.encode()).hexdigest()[:16])


if __name__ == "__main__":
    main()
