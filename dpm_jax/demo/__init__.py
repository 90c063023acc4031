"""Sample digits from the bundled UNet: DDIM vs DPM-Solver++(2M) at 10 NFE vs a 100-step reference.

``python -m dpm_jax.demo`` (or the console script ``dpm-jax-demo``) loads the
class-conditional UNet that ships with the package (:mod:`dpm_jax.demo.digits`),
samples ``--per-class`` digits of every class 0-9 with classifier-free guidance
from the same x_T with three samplers, and writes a PNG with three panels (one
row per digit class):

* DDIM (first-order DPM-Solver) at ``--steps`` NFE,
* ``--method`` (default DPM-Solver++(2M), multistep) at ``--steps`` NFE,
* the reference: DPM-Solver++(2M) at ``--ref-steps`` (100) NFE.

It prints, per sampler, the model calls made (NFE), compile time, sampling wall
time and the fraction of samples the bundled digit classifier assigns to the
requested class. Needs the ``demo`` extra: ``pip install "dpm_jax[demo]"``.

    python -m dpm_jax.demo                                  # writes dpm_jax_digits.png
    python -m dpm_jax.demo --steps 5 --guidance-scale 3 --seed 1 --out /tmp/digits.png
"""

from __future__ import annotations

import argparse
import time

import numpy as np

__all__ = ["main"]


def _run(digits, bundle, labels, key, **kw):
    """Compiles and runs once (compile + first call), then times a second call."""
    import jax

    t0 = time.perf_counter()
    x0, info = digits.generate(bundle, labels, key, return_info=True, **kw)
    jax.block_until_ready(x0)
    t_first = time.perf_counter() - t0
    t0 = time.perf_counter()
    x0, info = digits.generate(bundle, labels, key, return_info=True, **kw)
    x0 = np.asarray(jax.block_until_ready(x0))
    return x0, int(info.nfe), t_first, time.perf_counter() - t0


def main(argv=None) -> int:
    """Entry point of ``python -m dpm_jax.demo`` and the ``dpm-jax-demo`` script."""
    from dpm_jax.demo import digits

    parser = argparse.ArgumentParser(
        prog="python -m dpm_jax.demo", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--steps", type=int, default=10, help="NFE of the fast samplers (default 10)"
    )
    parser.add_argument(
        "--method",
        default="dpmsolver++",
        choices=sorted(digits.SOLVERS),
        help="the fast sampler next to DDIM (default dpmsolver++: DPM-Solver++(2M))",
    )
    parser.add_argument(
        "--guidance-scale",
        type=float,
        default=digits.DEFAULT_GUIDANCE_SCALE,
        help=f"classifier-free guidance scale (default {digits.DEFAULT_GUIDANCE_SCALE})",
    )
    parser.add_argument("--seed", type=int, default=0, help="PRNG seed of x_T (default 0)")
    parser.add_argument(
        "--out", default="dpm_jax_digits.png", help="output PNG (default dpm_jax_digits.png)"
    )
    parser.add_argument("--per-class", type=int, default=8, help="samples per digit (default 8)")
    parser.add_argument(
        "--ref-steps", type=int, default=100, help="NFE of the reference (default 100)"
    )
    parser.add_argument(
        "--skip-type",
        default=digits.DEFAULT_SKIP_TYPE,
        choices=["logSNR", "time_uniform", "time_quadratic"],
        help=f"time grid (default {digits.DEFAULT_SKIP_TYPE})",
    )
    parser.add_argument(
        "--checkpoint",
        default=None,
        help="a checkpoint of examples/train_digits.py (default: the one bundled with the package)",
    )
    args = parser.parse_args(argv)
    if args.steps < 1 or args.per_class < 1 or args.ref_steps < 1:
        parser.error("--steps, --per-class and --ref-steps must be positive")

    import jax
    import jax.numpy as jnp
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t_start = time.perf_counter()
    bundle = digits.load(args.checkpoint)
    labels = jnp.asarray(np.repeat(np.arange(digits.NUM_CLASSES), args.per_class), jnp.int32)
    key = jax.random.key(args.seed)
    names = {
        "ddim": "DDIM",
        "dpmsolver++": "DPM-Solver++(2M)",
        "dpmsolver": "DPM-Solver-2M",
        "dpmsolver++3": "DPM-Solver++(3M)",
    }
    runs = [("ddim", args.steps)]
    if args.method != "ddim":
        runs.append((args.method, args.steps))
    runs.append(("reference", args.ref_steps))
    print(
        f"dpm_jax demo: jax {jax.__version__} on {jax.devices()[0].platform}; "
        f"{labels.shape[0]} digits ({args.per_class} per class), guidance scale "
        f"{args.guidance_scale}, skip_type {args.skip_type}, seed {args.seed}"
    )
    print(f"{'sampler':<34} {'NFE':>4} {'compile+run s':>14} {'run s':>7} {'accuracy':>9}")
    panels = []
    for method, steps in runs:
        title = "reference: DPM-Solver++(2M)" if method == "reference" else names[method]
        x0, nfe, t_first, t_run = _run(
            digits,
            bundle,
            labels,
            key,
            steps=steps,
            method="dpmsolver++" if method == "reference" else method,
            guidance_scale=args.guidance_scale,
            skip_type=args.skip_type,
        )
        acc = digits.accuracy(bundle, x0, labels)
        print(f"{title:<34} {nfe:>4} {t_first:14.2f} {t_run:7.3f} {acc:9.3f}")
        panels.append(
            (f"{title}\nNFE {nfe}, {t_run:.2f} s, classifier accuracy {100 * acc:.0f}%", x0)
        )

    fig, axes = plt.subplots(
        1, len(panels), figsize=(3.2 * len(panels) * max(1.0, args.per_class / 8), 4.6)
    )
    for ax, (title, x0) in zip(np.atleast_1d(axes), panels):
        ax.imshow(
            digits.mosaic(x0, args.per_class),
            cmap="gray",
            vmin=0.0,
            vmax=1.0,
            interpolation="nearest",
        )
        ax.set_title(title, fontsize=9)
        ax.set_yticks(np.arange(digits.NUM_CLASSES) * 9 + 3.5, [str(d) for d in range(10)])
        ax.set_xticks([])
        ax.tick_params(length=0)
    fig.suptitle(
        f"dpm_jax: guided samples of the bundled digits UNet (one row per class, same x_T; "
        f"guidance {args.guidance_scale}, {args.skip_type} grid)",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    plt.close(fig)
    print(f"wrote {args.out} (total {time.perf_counter() - t_start:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
