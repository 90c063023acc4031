"""The sampling loop in your hands: classifier-free guidance written out, in ``lax.fori_loop``.

``dpm_jax.sample`` runs the whole solve as one ``lax.scan`` and calls the network
through ``model_wrapper``. A pipeline that calls its network itself (ControlNet
residuals, self-conditioning, a guidance of its own) drives a ``dpm_jax.stepper``
instead: the solver's state is a pytree, ``network_input`` says where to call the
network, ``step`` takes its raw output. Here the bundled digits UNet is called by
hand on a doubled batch (the null label first, then the labels), the two noise
predictions are combined with classifier-free guidance,

    eps = eps(x, t, null) + s (eps(x, t, label) - eps(x, t, null)),

and the loop is a ``lax.fori_loop`` inside ``jax.jit``. The stepper is an argument of
the compiled function (it is a pytree: a new grid of the same length reuses the
program), and so are the parameters, the labels and the guidance scale.

The script checks the loop against ``dpm_jax.sample`` with the guided model of
``dpm_jax.demo.digits.guided_model`` on the same options (same x_T, labels and
scale) and prints the largest absolute difference (float32: the two programs are
compiled separately, so they agree to rounding, not bit for bit). Usage::

    python examples/custom_loop.py
    python examples/custom_loop.py --per-class 2 --steps 10 --order 3 --guidance-scale 4
"""

from __future__ import annotations

import argparse
import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

import dpm_jax
from dpm_jax.demo import digits


@functools.partial(jax.jit, static_argnames="graph")
def guided_loop(st, params, x_T, labels, guidance_scale, *, graph):
    """Samples with the stepper ``st``, calling the UNet on a doubled batch at each step."""
    net = nnx.merge(graph, params)
    null = jnp.full_like(labels, digits.NULL_LABEL)

    def body(_, state):
        x_in, t_in = st.network_input(state)  # the network's inputs (t_in: one per sample)
        eps_u, eps_c = jnp.split(
            net(
                jnp.concatenate([x_in, x_in]),
                jnp.concatenate([t_in, t_in]),
                jnp.concatenate([null, labels]),
            ),
            2,
        )
        return st.step(state, eps_u + guidance_scale * (eps_c - eps_u))

    return jax.lax.fori_loop(0, st.num_steps, body, st.init(x_T)).x


def main(argv=None) -> float:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-class", type=int, default=4, help="digits per class (default 4)")
    parser.add_argument("--steps", type=int, default=10, help="model calls (default 10)")
    parser.add_argument("--order", type=int, default=2, help="multistep order (default 2)")
    parser.add_argument("--guidance-scale", type=float, default=digits.DEFAULT_GUIDANCE_SCALE)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    bundle = digits.load()
    options = dict(
        steps=args.steps,
        order=args.order,
        method="multistep",
        algorithm_type="dpmsolver++",
        skip_type="logSNR",
    )
    labels = jnp.asarray(np.repeat(np.arange(10), args.per_class), jnp.int32)
    x_T = jax.random.normal(jax.random.key(args.seed), (labels.shape[0], 8, 8, 1), jnp.float32)
    scale = args.guidance_scale  # a traced argument of guided_loop either way

    st = dpm_jax.stepper(digits.schedule(), model_type="noise", **options)
    x_loop = guided_loop(st, bundle.unet_params, x_T, labels, scale, graph=bundle.unet_graph)
    # the same run by dpm_jax.sample, with the guided model of the digits module
    model = digits.guided_model(bundle.unet_graph, bundle.unet_params, labels, scale)
    x_ref = dpm_jax.sample(model, x_T, model.schedule, **options)
    diff = float(jnp.max(jnp.abs(x_loop - x_ref)))
    print(
        f"{labels.shape[0]} digits, DPM-Solver++({args.order}M), {st.num_steps} model calls "
        f"on a doubled batch, guidance scale {args.guidance_scale}, {x_loop.dtype}"
    )
    print(
        f"classifier accuracy: loop {digits.accuracy(bundle, x_loop, labels):.3f}, "
        f"sample {digits.accuracy(bundle, x_ref, labels):.3f}"
    )
    print(f"max |fori_loop - dpm_jax.sample| = {diff:.2e}")
    return diff


if __name__ == "__main__":
    main()
