"""Sample digits from the bundled UNet at 5 model calls: DDIM, DPM-Solver++(2M), UniPC and a
solver on a time grid fitted to the model, next to a 100-step reference.

``python -m dpm_jax.demo`` (or the console script ``dpm-jax-demo``) loads the
class-conditional UNet that ships with the package (:mod:`dpm_jax.demo.digits`),
samples ``--per-class`` digits of every class 0-9 with classifier-free guidance from
the same x_T with each sampler, and writes a PNG with one panel per sampler (one row
per digit class):

* DDIM (first-order DPM-Solver), ``--method`` (default DPM-Solver++(2M)) and UniPC-2
  at ``--steps`` NFE (default 5, where they differ);
* the same budget on the grid fitted to this model by ``tools/fit_demo_grid.py``
  (``dpm_jax.optimize_timesteps``; shipped as ``dpm_jax/data/digits_grid.json``,
  shown when ``--steps`` is the grid's);
* the reference: DPM-Solver++(2M) at ``--ref-steps`` (100) NFE.

It prints, per sampler, the model calls made (NFE), compile time, sampling wall
time, the fraction of samples the bundled digit classifier assigns to the
requested class, and the RMS distance to the reference's samples. Needs the
``demo`` extra: ``pip install "dpm_jax[demo]"``.

    python -m dpm_jax.demo                                  # writes dpm_jax_digits.png
    python -m dpm_jax.demo --steps 10 --guidance-scale 3 --seed 1 --out /tmp/digits.png
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
    parser.add_argument("--steps", type=int, default=5, help="NFE of the fast samplers (default 5)")
    parser.add_argument(
        "--method",
        default="dpmsolver++",
        choices=sorted(digits.SOLVERS),
        help="the sampler next to DDIM and UniPC (default dpmsolver++: DPM-Solver++(2M))",
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
        "unipc": "UniPC-2",
        "unipc3": "UniPC-3",
        "ipndm": "iPNDM-4",
        "deis": "DEIS-tAB3",
    }
    runs = [(names["ddim"], dict(method="ddim", steps=args.steps))]
    for m in dict.fromkeys([args.method, "unipc"]):
        if m != "ddim":
            runs.append((names[m], dict(method=m, steps=args.steps)))
    fitted = digits.fitted_grid()
    if fitted is not None and len(fitted.timesteps) - 1 == args.steps:
        method = fitted.meta.get("demo_method", "dpmsolver++")
        grid = dict(timesteps=fitted.timesteps)
        if fitted.model_timesteps is not None:
            grid["model_timesteps"] = fitted.model_timesteps
        runs.append((f"{names[method]}, fitted grid", dict(method=method, **grid)))
    elif fitted is not None:
        print(
            f"(the fitted grid is for {len(fitted.timesteps) - 1} steps: not shown at "
            f"--steps {args.steps})"
        )
    runs.append(("reference: DPM-Solver++(2M)", dict(method="dpmsolver++", steps=args.ref_steps)))
    print(
        f"dpm_jax demo: jax {jax.__version__} on {jax.devices()[0].platform}; "
        f"{labels.shape[0]} digits ({args.per_class} per class), guidance scale "
        f"{args.guidance_scale}, skip_type {args.skip_type}, seed {args.seed}"
    )
    print(
        f"{'sampler':<34} {'NFE':>4} {'compile+run s':>14} {'run s':>7} {'accuracy':>9} "
        f"{'RMS to ref':>10}"
    )
    results = []
    for title, kw in runs:
        x0, nfe, t_first, t_run = _run(
            digits,
            bundle,
            labels,
            key,
            guidance_scale=args.guidance_scale,
            skip_type=args.skip_type,
            **kw,
        )
        results.append((title, x0, nfe, t_first, t_run, digits.accuracy(bundle, x0, labels)))
    ref = results[-1][1]
    panels = []
    for title, x0, nfe, t_first, t_run, acc in results:
        rms = float(np.sqrt(np.mean((np.asarray(x0, np.float64) - ref) ** 2)))
        print(f"{title:<34} {nfe:>4} {t_first:14.2f} {t_run:7.3f} {acc:9.3f} {rms:10.3f}")
        panels.append((f"{title}\nNFE {nfe}, accuracy {100 * acc:.0f}%, RMS to ref. {rms:.3f}", x0))

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
        f"guidance {args.guidance_scale}; built-in grids: {args.skip_type})",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    plt.close(fig)
    print(f"wrote {args.out} (total {time.perf_counter() - t_start:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
