"""Editing (DiffEdit-style): turn real digits into another digit, and keep what lies outside a mask.

DiffEdit (Couairon et al. 2022, arXiv 2210.11427), the showcase of the reference
implementation's README, in three moves on the bundled UNet:

1. **Mask.** Where the model's noise predictions for the source class a and the
   target class b disagree, averaged over a few noise draws at t = 0.5 and
   normalised per image, is where the edit has to happen: the mask is that map
   above ``--threshold`` (``dpm_jax.demo.digits.edit_mask``).
2. **Encode.** ``dpm_jax.inverse`` integrates the ODE of class a (guidance scale 1,
   the conditional model) from the digit up to t_r (``--t-r``), keeping the states
   at every node (``return_intermediate=True``).
3. **Decode.** ``dpm_jax.sample`` integrates back down from the encoded latent under
   class b (guidance ``--guidance-scale``) on the same nodes, either freely or with
   ``correcting_xt_fn`` putting the encoded trajectory's state of the same node
   outside the mask (the ``step`` argument is the node's index), so the pixels
   outside the mask end exactly as they were.

The script prints, for the free and the masked edit, the classifier's accuracy on
the target class and the RMS distance to the source outside and inside the mask,
over ``--per-class`` real digits of each class, each sent to a random other class,
and the mask's mean area; and, for scale, the SDEdit of the same strength (noise to
t_r and sample under class b: ``examples/img2img.py``). It writes a picture of one
digit per class. Usage::

    python examples/editing.py --out docs/editing.png
    python examples/editing.py --per-class 2 --steps 5
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np

import dpm_jax
from dpm_jax.demo import digits


def edit(encoder, decoder, x, mask=None, *, t_r=0.6, steps=10):
    """Encodes x with ``encoder`` up to t_r and decodes it with ``decoder``; with a mask,
    the encoded trajectory is put back outside it at every node."""
    sched = encoder.schedule
    ts = dpm_jax.time_grid(sched, "logSNR", t_r, sched.t_eps, steps)  # t_r down to t_eps
    x_r, info = dpm_jax.inverse(
        encoder, x, sched, timesteps=ts[::-1], return_intermediate=True, return_info=True
    )
    path = info.intermediates  # (steps + 1, B, ...): x at ts[::-1], path[0] = x
    if mask is None:
        return dpm_jax.sample(decoder, x_r, sched, timesteps=ts)

    def keep_outside(x_t, t, step):  # the state at node `step` of ts = path[steps - step]
        return mask * x_t + (1 - mask) * path[steps - step]

    return dpm_jax.sample(decoder, x_r, sched, timesteps=ts, correcting_xt_fn=keep_outside)


def masked_rms(a, b, where) -> float:
    """RMS distance over the pixels where ``where`` is 1 (per-sample masks allowed)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    w = np.broadcast_to(np.asarray(where, np.float64), a.shape)
    return float(np.sqrt(np.sum(w * (a - b) ** 2) / np.sum(w)))


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-class", type=int, default=10, help="digits per class (10)")
    parser.add_argument("--steps", type=int, default=10, help="steps each way (10)")
    parser.add_argument("--t-r", type=float, default=0.6, help="encoding time (0.6)")
    parser.add_argument("--threshold", type=float, default=0.3, help="mask threshold (0.3)")
    parser.add_argument("--guidance-scale", type=float, default=digits.DEFAULT_GUIDANCE_SCALE)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="editing.png")
    args = parser.parse_args(argv)

    from sklearn.datasets import load_digits

    y_all = load_digits().target
    idx = np.concatenate([np.flatnonzero(y_all == c)[: args.per_class] for c in range(10)])
    rng = np.random.default_rng(args.seed)
    source = jnp.asarray(y_all[idx], jnp.int32)
    target = (source + 1 + jnp.asarray(rng.integers(0, 9, idx.shape[0]), jnp.int32)) % 10
    x = jnp.asarray(digits.real_digits()[idx], jnp.float32)

    bundle = digits.load()
    g, p = bundle.unet_graph, bundle.unet_params
    encoder = digits.guided_model(g, p, source, 1.0)  # the conditional model of class a
    decoder = digits.guided_model(g, p, target, args.guidance_scale)
    mask = digits.edit_mask(
        bundle, x, source, target, jax.random.key(args.seed), threshold=args.threshold
    )
    free = edit(encoder, decoder, x, t_r=args.t_r, steps=args.steps)
    masked = edit(encoder, decoder, x, mask, t_r=args.t_r, steps=args.steps)
    noise = jax.random.normal(jax.random.key(args.seed + 1), x.shape, x.dtype)
    sdedit = dpm_jax.sample(
        decoder,
        dpm_jax.add_noise(decoder.schedule, x, noise, args.t_r),
        decoder.schedule,
        t_start=args.t_r,
        steps=args.steps,
        skip_type="logSNR",
    )

    print(
        f"{len(idx)} real digits ({args.per_class} per class), each to a random other class; "
        f"encoded to t_r = {args.t_r} and decoded, {args.steps} NFE each way; guidance "
        f"{args.guidance_scale}; mask: {100 * float(mask.mean()):.0f}% of the pixels on average"
    )
    print(f"{'edit':<28} {'acc. target':>11} {'RMS outside mask':>16} {'RMS inside':>10}")
    figures = {}
    for name, out in [
        ("inversion, no mask", free),
        ("inversion, with the mask", masked),
        ("SDEdit from t_r (no mask)", sdedit),
    ]:
        f = dict(
            accuracy=digits.accuracy(bundle, out, target),
            outside=masked_rms(out, x, 1 - mask),
            inside=masked_rms(out, x, mask),
        )
        figures[name] = f
        print(f"{name:<28} {f['accuracy']:11.2f} {f['outside']:16.3f} {f['inside']:10.3f}")
    figures["mask_area"] = float(mask.mean())
    picture(args, x, target, mask, free, masked, figures)
    return figures


def picture(args, x, target, mask, free, masked, figures):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    first = np.arange(10) * args.per_class
    fa, fm = figures["inversion, no mask"], figures["inversion, with the mask"]
    shown = [
        ("source", np.asarray(x)),
        ("mask (dark: edited)", 2.0 * np.asarray(mask) - 1.0),
        (f"no mask\n{100 * fa['accuracy']:.0f}% right, outside {fa['outside']:.2f}", free),
        (f"with the mask\n{100 * fm['accuracy']:.0f}% right, outside {fm['outside']:.2f}", masked),
    ]
    grid = np.concatenate([np.asarray(v)[first] for _, v in shown])
    fig, ax = plt.subplots(figsize=(6.4, 0.62 * len(shown) + 1.0))
    ax.imshow(digits.mosaic(grid, 10), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_yticks(np.arange(len(shown)) * 9 + 3.5, [name for name, _ in shown], fontsize=8)
    ax.set_xticks(np.arange(10) * 9 + 3.5, [f"to {int(t)}" for t in np.asarray(target)[first]])
    ax.tick_params(length=0, labelsize=8)
    ax.set_title(
        f"Editing by inversion to t_r = {args.t_r} ({args.steps} NFE each way); accuracy on the "
        f"target\nclass and RMS distance to the source outside the mask: {len(np.asarray(x))} "
        "digits",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(args.out, dpi=110, bbox_inches="tight")
    plt.close(fig)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
