"""Guidance at a large scale on the bundled digits UNet: CFG, guidance rescale, a guidance
interval and APG.

The class-conditional UNet of :mod:`dpm_jax.demo.digits` samples ``--n-per-class`` digits
of every class with classifier-free guidance at a large scale (``--scale``, default 8;
the demo uses 2), from the same x_T for every variant:

- CFG: plain classifier-free guidance;
- rescale: ``guidance_rescale=0.7`` (Lin et al. 2024; the paper's suggested phi);
- interval: ``guidance_interval=(0.28, 5.42)`` in EDM's sigma (Kynkaenniemi et al. 2024,
  the interval they report for EDM2-S on ImageNet-512; not tuned here);
- APG: ``APG(eta=0, norm_threshold=2.0, momentum=-0.5)`` (Sadat et al. 2024: eta 0 and
  beta -0.5 as suggested; r chosen a priori at about the norm of a typical 8x8 digit's
  update, not tuned on these samples).

The parameters are fixed in advance (none is fitted to the samples reported). For each
variant: DPM-Solver++(2M) at 10 NFE (logSNR) and at 200 NFE (the ODE's solution for that
variant), and the figures: the classifier's accuracy on the requested class, the RMS
distance of the 10-NFE samples to the variant's 200-NFE solution, the Frechet distance of
the 200-NFE samples to the real digits in the classifier's feature space (lower: closer
to the data), and saturation: the mean |x| and the fraction of pixels beyond [-1, 1]
(the data lie in [-1, 1], mean |x| 0.73). Writes a picture (one row of digits 0-9 per
variant, 200 NFE) with ``--out``. Usage::

    python benchmarks/guidance_study.py                       # ~3 minutes on 2 cores
    python benchmarks/guidance_study.py --out benchmarks/results/guidance_study.png
"""

from __future__ import annotations

import argparse
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np

import dpm_jax
from dpm_jax import guidance
from dpm_jax.demo import digits

VARIANTS = {
    "CFG": {},
    "rescale 0.7": dict(guidance_rescale=0.7),
    "interval (0.28, 5.42]": dict(guidance_interval=(0.28, 5.42)),
    "APG (eta 0, r 2, beta -0.5)": dict(
        apg=guidance.APG(eta=0.0, norm_threshold=2.0, momentum=-0.5)
    ),
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scale", type=float, default=8.0)
    ap.add_argument("--n-per-class", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    print(
        f"machine: {platform.machine()}, python {platform.python_version()}, jax {jax.__version__}"
    )
    bundle = digits.load()
    sched = digits.schedule()
    n = args.n_per_class
    labels = jnp.asarray(np.repeat(np.arange(digits.NUM_CLASSES), n), jnp.int32)
    x_t = jax.random.normal(jax.random.key(args.seed), (labels.shape[0],) + digits.IMAGE_SHAPE)
    real = digits.features(bundle, digits.real_digits())
    graph, params = bundle.unet_graph, bundle.unet_params

    def net(x, t_input, cond):
        from flax import nnx

        return nnx.merge(graph, params)(x, t_input, cond).astype(x.dtype)

    print(
        f"\nscale {args.scale}, {labels.shape[0]} samples, DPM-Solver++(2M) logSNR; "
        "acc = classifier accuracy on the requested class"
    )
    print(
        "| variant | acc @10 | acc @200 | RMS @10 to @200 | FD @200 | mean abs x | beyond [-1, 1] | s |"
    )
    print("|---|---|---|---|---|---|---|---|")
    pictures = []
    for name, kw in VARIANTS.items():
        t0 = time.perf_counter()
        model = dpm_jax.model_wrapper(
            net,
            sched,
            guidance_type="classifier-free",
            condition=labels,
            unconditional_condition=jnp.full_like(labels, digits.NULL_LABEL),
            guidance_scale=args.scale,
            **kw,
        )
        fast = np.asarray(dpm_jax.sample(model, x_t, sched, steps=10, skip_type="logSNR"))
        ref = np.asarray(dpm_jax.sample(model, x_t, sched, steps=200, skip_type="logSNR"))
        rms = float(np.sqrt(np.mean((fast - ref) ** 2)))
        fd = digits.frechet_distance(digits.features(bundle, ref), real)
        row = (
            f"| {name} | {digits.accuracy(bundle, fast, labels):.3f} |"
            f" {digits.accuracy(bundle, ref, labels):.3f} | {rms:.4f} | {fd:.2f} |"
            f" {np.mean(np.abs(ref)):.3f} | {np.mean(np.abs(ref) > 1.0):.3f} |"
            f" {time.perf_counter() - t0:.0f} |"
        )
        print(row, flush=True)
        pictures.append((name, ref.reshape(digits.NUM_CLASSES, n, *digits.IMAGE_SHAPE)[:, 0]))
    real_x = digits.real_digits()
    print(
        f"\nreal digits: mean abs x {np.mean(np.abs(real_x)):.3f}, beyond [-1, 1] "
        f"{np.mean(np.abs(real_x) > 1.0):.3f}"
    )
    if args.out:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(len(pictures), 1, figsize=(6, 0.9 * len(pictures) + 0.3))
        for ax, (name, imgs) in zip(axes, pictures):
            ax.imshow(digits.mosaic(np.clip(imgs, -1.5, 1.5), 10), cmap="gray", vmin=0, vmax=1)
            ax.set_title(f"{name} (scale {args.scale:g}, 200 NFE)", fontsize=8)
            ax.axis("off")
        fig.tight_layout()
        fig.savefig(args.out, dpi=120)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
