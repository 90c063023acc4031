"""Sample digits from the bundled UNet at 5 model calls: DDIM, DPM-Solver++(2M), UniPC and a
solver on a time grid fitted to the model, next to a 100-step reference; then edit them.

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

Under each fast sampler's panel, its distance to the reference, pixel by pixel:
``|x - x_ref|`` times ``--diff-gain`` (default 4; black where the pixels are 2 / gain
apart or more), so what the RMS figures say is seen. Under the reference, an edit
of its digits: each turned into the next digit (c -> c + 1) by DiffEdit (a mask where
the model's noise predictions for c and c + 1 disagree; ``dpm_jax.inverse`` of the
digit to t = 0.6 under c, then ``dpm_jax.sample`` under c + 1 with the encoded path put
back outside the mask by ``correcting_xt_fn``; ``docs/editing.md``).

It prints, per sampler, the model calls made (NFE), compile time, sampling wall
time, the fraction of samples the bundled digit classifier assigns to the
requested class, and the RMS distance to the reference's samples; then the edit's
figures. Needs the ``demo`` extra: ``pip install "dpm_jax[demo]"``.

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


#: DiffEdit settings of the demo's edit (those of docs/editing.md)
EDIT_T_R, EDIT_STEPS, EDIT_DRAWS = 0.6, 10, 8


def _edit(digits, bundle, x, source, target, key, guidance_scale):
    """The recipe of docs/editing.md: (edited, mask). A mask where the model's noise
    predictions for the source and target labels disagree; x encoded by ``inverse`` under
    the source label up to t_r, decoded by ``sample`` under the target with the encoded
    path put back outside the mask at every node (``correcting_xt_fn``)."""
    import dpm_jax

    g, p = bundle.unet_graph, bundle.unet_params
    sched = digits.schedule()
    mask = digits.edit_mask(bundle, x, source, target, key, draws=EDIT_DRAWS)
    ts = dpm_jax.time_grid(sched, "logSNR", EDIT_T_R, sched.t_eps, EDIT_STEPS)
    encoder = digits.guided_model(g, p, source, 1.0)
    x_r, info = dpm_jax.inverse(
        encoder, x, sched, timesteps=ts[::-1], return_intermediate=True, return_info=True
    )
    path = info.intermediates

    def keep_outside(x_t, t, step):
        return mask * x_t + (1 - mask) * path[EDIT_STEPS - step]

    decoder = digits.guided_model(g, p, target, guidance_scale)
    edited = dpm_jax.sample(decoder, x_r, sched, timesteps=ts, correcting_xt_fn=keep_outside)
    return edited, mask


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
        "--diff-gain",
        type=float,
        default=4.0,
        help="gain of the |x - reference| panels (default 4: black at 0.5 apart or more)",
    )
    parser.add_argument(
        "--checkpoint",
        default=None,
        help="a checkpoint of examples/train_digits.py (default: the one bundled with the package)",
    )
    args = parser.parse_args(argv)
    if args.steps < 1 or args.per_class < 1 or args.ref_steps < 1:
        parser.error("--steps, --per-class and --ref-steps must be positive")
    if not args.diff_gain > 0:
        parser.error("--diff-gain must be positive")

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
        panels.append((title, x0, nfe, acc, rms))

    # the recipe of docs/editing.md on the reference's digits: c -> c + 1 inside a mask
    target = (labels + 1) % digits.NUM_CLASSES
    t0 = time.perf_counter()
    edited, mask = _edit(
        digits,
        bundle,
        jnp.asarray(ref, jnp.float32),
        labels,
        target,
        jax.random.fold_in(key, 1),
        args.guidance_scale,
    )
    edited, mask = np.asarray(jax.block_until_ready(edited)), np.asarray(mask)
    t_edit = time.perf_counter() - t0
    acc_edit = digits.accuracy(bundle, edited, target)
    outside = float(np.max(np.abs((1.0 - mask) * (edited - ref))))
    print(
        f"edit (DiffEdit, docs/editing.md): the reference's digits into the next digit "
        f"(c -> c + 1), {2 * EDIT_STEPS} NFE + {EDIT_DRAWS} for the mask, {t_edit:.2f} s "
        f"with compilation\n  accuracy {acc_edit:.3f} on c + 1; {100 * float(mask.mean()):.0f}% "
        f"of the pixels edited; outside them, max |edit - reference| = {outside}"
    )

    gain = args.diff_gain
    width = max(1.0, args.per_class / 8)
    fig, axes = plt.subplots(2, len(panels), figsize=(3.2 * len(panels) * width, 9.0))
    axes = np.asarray(axes).reshape(2, -1)

    def show(ax, x, title, yticks):
        ax.imshow(
            digits.mosaic(x, args.per_class),
            cmap="gray",
            vmin=0.0,
            vmax=1.0,
            interpolation="nearest",
        )
        ax.set_title(title, fontsize=9)
        ax.set_yticks(np.arange(digits.NUM_CLASSES) * 9 + 3.5, yticks)
        ax.set_xticks([])
        ax.tick_params(length=0)

    classes = [str(d) for d in range(digits.NUM_CLASSES)]
    for j, (title, x0, nfe, acc, rms) in enumerate(panels):
        show(axes[0, j], x0, f"{title}\nNFE {nfe}, accuracy {100 * acc:.0f}%", classes)
        if j < len(panels) - 1:  # ink where the sample is away from the reference
            far = np.clip(gain * np.abs(np.asarray(x0, np.float64) - ref), 0.0, 2.0) - 1.0
            show(axes[1, j], far, f"|sample - reference| x {gain:g}\nRMS {rms:.3f}", classes)
    arrows = [f"{d}>{(d + 1) % 10}" for d in range(digits.NUM_CLASSES)]
    show(
        axes[1, -1],
        edited,
        f"edit of the reference: c -> c + 1 (DiffEdit)\naccuracy {100 * acc_edit:.0f}%, "
        f"{100 * float(mask.mean()):.0f}% of pixels edited",
        arrows,
    )
    fig.suptitle(
        f"dpm_jax: guided samples of the bundled digits UNet (one row per class, same x_T; "
        f"guidance {args.guidance_scale}; built-in grids: {args.skip_type}). Below: each "
        f"sampler's distance to the reference, pixel by pixel, times {gain:g} (white: equal; "
        f"black: {2 / gain:g} apart or more)",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    plt.close(fig)
    print(f"wrote {args.out} (total {time.perf_counter() - t_start:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
