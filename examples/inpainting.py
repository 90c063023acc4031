"""Inpainting: complete real digits whose bottom half is hidden, with ``correcting_xt_fn``.

The known pixels are kept on the path of the forward process: after every step the
state's known pixels are replaced by the known image noised to that step's time,
``mask * add_noise(schedule, known, z, t) + (1 - mask) * x_t`` (the "replacement"
method: Song et al. 2021, arXiv 2011.13456, App. I.2; ``z`` is the noise of x_T),
so the model fills in the rest in agreement with them. The sampler's last state is
at ``t_end`` = 1/N, where sigma = 0.01, so the known pixels are pasted exactly at
the end. The model is unconditional (the null label): whatever the completion
knows of the digit, it read from the known half.

Three completions of the same hidden halves, from the same x_T, are compared:

* *pasted* (the naive baseline): an unconditional sample, its top half replaced by
  the known one at the end;
* *replacement*: the recipe above, DPM-Solver++(2M), ``--steps`` model calls;
* *resampling* (RePaint-style, Lugmayr et al. 2022, arXiv 2201.09865): the loop
  written with ``dpm_jax.stepper`` (first order: DDIM), and after each step the
  state is sent back to the step's start time by the forward process,
  q(x_s | x_t), and the step taken again, ``--jumps`` times in all: ``steps * jumps``
  model calls (``--jumps 1``: not run).

For each, the script prints the classifier's accuracy on the true class of the
completed digits and the RMS distance to the original in the hidden half, and, as
scales, the same figures for the nearest-neighbour completion (the real digit whose
top half is nearest, itself excluded) and for the hidden half left blank. It writes
a picture of one digit per class. Usage::

    python examples/inpainting.py --out docs/inpainting.png
    python examples/inpainting.py --per-class 2 --steps 5 --jumps 2
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

#: 1 on the known pixels (the top half), 0 on the hidden ones
MASK = np.concatenate([np.ones((4, 8, 1)), np.zeros((4, 8, 1))]).astype(np.float32)


def inpaint(model, known, mask, z, *, steps=10, paste=True):
    """Completes ``known`` where ``mask`` is 0, sampling from x_T = ``z`` (``paste``: put
    the known pixels back exactly at the end)."""
    sched = model.schedule

    def keep_known(x_t, t, step):
        return mask * dpm_jax.add_noise(sched, known, z, t) + (1 - mask) * x_t

    x = dpm_jax.sample(
        model, z, sched, steps=steps, skip_type="logSNR", correcting_xt_fn=keep_known
    )
    # the last correction was at t_end = 1/N, where sigma = 0.01: paste the known pixels
    return mask * known + (1 - mask) * x if paste else x


@functools.partial(jax.jit, static_argnames=("graph", "steps", "jumps"))
def inpaint_resampling(params, known, mask, z, key, *, graph, steps=10, jumps=5):
    """RePaint-style: each DDIM step taken ``jumps`` times, sent back by q(x_s | x_t)
    in between; the unconditional UNet (null label) called by hand."""
    sched = digits.schedule()
    net = nnx.merge(graph, params)
    null = jnp.full((known.shape[0],), digits.NULL_LABEL, jnp.int32)
    ts = dpm_jax.time_grid(sched, "logSNR", sched.T, sched.t_eps, steps)
    alpha = jnp.asarray(sched.marginal_alpha(ts), known.dtype)
    sigma = jnp.asarray(sched.marginal_std(ts), known.dtype)

    def keep_known(x_t, t, step):
        return mask * dpm_jax.add_noise(sched, known, z, t) + (1 - mask) * x_t

    st = dpm_jax.stepper(sched, timesteps=ts, order=1, correcting_xt_fn=keep_known)

    def step(state):
        return st.step(state, net(*st.network_input(state), null))

    def one_step(i, state):
        def again(u, state):  # step, then back to the step's start: x_s ~ q(x_s | x_t)
            x_t = step(state).x
            r = alpha[i] / alpha[i + 1]
            back = jnp.sqrt(jnp.maximum(sigma[i] ** 2 - (r * sigma[i + 1]) ** 2, 0.0))
            noise = jax.random.normal(jax.random.fold_in(key, i * jumps + u), z.shape, z.dtype)
            return state._replace(x=r * x_t + back * noise)

        return step(jax.lax.fori_loop(0, jumps - 1, again, state))

    x = jax.lax.fori_loop(0, st.num_steps, one_step, st.init(z)).x
    return mask * known + (1 - mask) * x


def masked_rms(a, b, where) -> float:
    """RMS distance over the pixels where ``where`` is 1."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    w = np.broadcast_to(np.asarray(where, np.float64), a.shape)
    return float(np.sqrt(np.sum(w * (a - b) ** 2) / np.sum(w)))


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-class", type=int, default=20, help="digits per class (20)")
    parser.add_argument("--steps", type=int, default=10, help="steps per run (10)")
    parser.add_argument(
        "--jumps", type=int, default=5, help="resampling: tries per step (5; 1: not run)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="inpainting.png")
    args = parser.parse_args(argv)

    from sklearn.datasets import load_digits

    y_all = load_digits().target
    real = digits.real_digits()
    idx = np.concatenate([np.flatnonzero(y_all == c)[: args.per_class] for c in range(10)])
    known = jnp.asarray(real[idx], jnp.float32)
    label = y_all[idx]
    mask = jnp.asarray(MASK)
    hidden = 1.0 - MASK

    bundle = digits.load()
    uncond = digits.guided_model(
        bundle.unet_graph, bundle.unet_params, jnp.full(idx.shape, digits.NULL_LABEL), 1.0
    )
    z = jax.random.normal(jax.random.key(args.seed), known.shape, jnp.float32)

    results = {}
    sample = dpm_jax.sample(uncond, z, uncond.schedule, steps=args.steps, skip_type="logSNR")
    results["pasted"] = (mask * known + (1 - mask) * sample, args.steps)
    results["replacement"] = (inpaint(uncond, known, mask, z, steps=args.steps), args.steps)
    if args.jumps > 1:
        results["resampling"] = (
            inpaint_resampling(
                bundle.unet_params,
                known,
                mask,
                z,
                jax.random.key(args.seed + 1),
                graph=bundle.unet_graph,
                steps=args.steps,
                jumps=args.jumps,
            ),
            args.steps * args.jumps,
        )
    # the scales: the nearest real top half (itself excluded), and the hidden half blank
    tops = (real * MASK).reshape(len(real), -1)
    nearest = []
    for i in idx:
        d = np.sum((tops - tops[i]) ** 2, axis=1)
        d[i] = np.inf
        nearest.append(real[int(np.argmin(d))])
    results["nearest neighbour"] = (MASK * real[idx] + hidden * np.stack(nearest), 0)
    results["blank"] = (MASK * real[idx] - hidden, 0)

    print(
        f"{len(idx)} real digits ({args.per_class} per class), top half known; unconditional "
        f"model; pixels in [-1, 1]"
    )
    print(f"{'completion':<20} {'NFE':>4} {'accuracy':>8} {'RMS in hidden half':>18}")
    figures = {}
    for name, (x, nfe) in results.items():
        acc = digits.accuracy(bundle, x, label)
        err = masked_rms(x, real[idx], hidden)
        figures[name] = dict(nfe=nfe, accuracy=acc, rms=err)
        print(f"{name:<20} {nfe:4d} {acc:8.2f} {err:18.3f}")
    kept = float(jnp.max(jnp.abs(mask * (results["replacement"][0] - known))))
    print(f"max |completed - known| on the known pixels: {kept}")
    figures["known_error"] = kept
    picture(args, real[idx], results, figures)
    return figures


def picture(args, original, results, figures):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    first = np.arange(10) * args.per_class
    shown = [("original", original), ("input: the top half", MASK * original)]
    for name in ("pasted", "replacement", "resampling", "nearest neighbour"):
        if name not in figures:
            continue
        f = figures[name]
        calls = f", {f['nfe']} NFE" if f["nfe"] else ""
        text = f"{name}{calls}\n{100 * f['accuracy']:.0f}% right, RMS {f['rms']:.2f}"
        shown.append((text, np.asarray(results[name][0])))
    grid = np.concatenate([np.asarray(x)[first] for _, x in shown])
    fig, ax = plt.subplots(figsize=(6.4, 0.62 * len(shown) + 1.0))
    ax.imshow(digits.mosaic(grid, 10), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_yticks(np.arange(len(shown)) * 9 + 3.5, [name for name, _ in shown], fontsize=8)
    ax.set_xticks([])
    ax.tick_params(length=0)
    ax.set_title(
        "Inpainting the bottom half with the unconditional model\n(accuracy on the true "
        f"class, RMS to the original in the hidden half: {len(original)} digits)",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(args.out, dpi=110, bbox_inches="tight")
    plt.close(fig)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
