"""Classifier-free guidance scale sweep on the bundled digits UNet (DPM-Solver++(2M), 10 NFE).

For each guidance scale s the guided noise prediction is
``eps = eps(x, t, null) + s (eps(x, t, label) - eps(x, t, null))`` (s = 0: the
unconditional model, s = 1: the conditional one). The scale is a traced
argument of the compiled sampler, so the sweep compiles once. For each s the
script prints the classifier accuracy (fraction of samples classified as the
requested digit) and a diversity figure (mean pixel distance between two
samples of the same class; it falls as guidance sharpens the classes), and
writes a PNG with one panel per scale. Usage::

    python examples/guidance_sweep.py                       # writes guidance_sweep.png
    python examples/guidance_sweep.py --scales 0 1 2 4 8 --steps 20
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from dpm_jax.demo import digits


def diversity(x, per_class):
    """Mean RMS pixel distance between different samples of the same class."""
    x = np.asarray(x).reshape(digits.NUM_CLASSES, per_class, -1)
    d = np.sqrt(np.mean((x[:, :, None] - x[:, None, :]) ** 2, axis=-1))
    return float(d.sum() / (digits.NUM_CLASSES * per_class * (per_class - 1)))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scales", type=float, nargs="+", default=[0.0, 1.0, 2.0, 4.0, 8.0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--per-class", type=int, default=20, help="samples per digit (default 20)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="guidance_sweep.png")
    args = parser.parse_args(argv)

    bundle = digits.load()
    labels = jnp.asarray(np.repeat(np.arange(10), args.per_class), jnp.int32)
    key = jax.random.key(args.seed)
    print(f"{'scale':>6} {'accuracy':>9} {'diversity':>10} {'seconds':>8}")
    panels = []
    for s in args.scales:
        t0 = time.perf_counter()
        x0 = np.asarray(digits.generate(bundle, labels, key, steps=args.steps, guidance_scale=s))
        dt = time.perf_counter() - t0
        acc = digits.accuracy(bundle, x0, labels)
        print(f"{s:6.2f} {acc:9.3f} {diversity(x0, args.per_class):10.3f} {dt:8.2f}")
        panels.append((s, acc, x0))
    # One compiled program served every scale (the scale is a traced argument):
    print(f"compiled programs: {digits._generate_jit._cache_size()}")

    show = min(args.per_class, 6)
    fig, axes = plt.subplots(1, len(panels), figsize=(2.2 * len(panels), 4.2))
    for ax, (s, acc, x0) in zip(np.atleast_1d(axes), panels):
        x = x0.reshape(10, args.per_class, *x0.shape[1:])[:, :show].reshape(-1, *x0.shape[1:])
        ax.imshow(digits.mosaic(x, show), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(f"scale {s:g}\naccuracy {100 * acc:.0f}%", fontsize=9)
        ax.set_yticks(np.arange(10) * 9 + 3.5, [str(d) for d in range(10)])
        ax.set_xticks([])
        ax.tick_params(length=0)
    fig.suptitle(f"classifier-free guidance sweep, DPM-Solver++(2M), {args.steps} NFE", fontsize=9)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
