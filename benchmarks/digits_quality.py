"""Sample quality on a real model: classifier accuracy of guided digits against NFE.

The bundled class-conditional UNet (:mod:`dpm_jax.demo.digits`, trained by
``examples/train_digits.py``) samples ``--n-per-class`` digits of every class
with classifier-free guidance (``--guidance-scales``), from the same x_T for every
solver; the bundled MLP classifier (trained on the same data, its held-out
accuracy on real digits printed first) labels them. Accuracy = the fraction
classified as the requested digit.

Solvers: DDIM (first order) and DPM-Solver++(2M) (multistep, data prediction)
at 5, 10 and 20 NFE, and a 100-step DPM-Solver++(2M) reference (the ODE
solution, as far as the classifier can tell), on each ``--skip-types`` time grid. Also
printed: the RMS distance of each solver's samples to the reference's (same
x_T), in pixel units of [-1, 1]. Usage::

    python benchmarks/digits_quality.py                      # ~1 min on 2 cores
    python benchmarks/digits_quality.py --guidance-scales 1 2 --markdown   # the table in README.md
    python benchmarks/digits_quality.py --skip-types logSNR time_uniform time_quadratic
    python benchmarks/digits_quality.py --checkpoint digits.msgpack
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from dpm_jax.demo import digits

NFES = (5, 10, 20)
REF_STEPS = 100


def evaluate(
    bundle,
    *,
    n_per_class=50,
    guidance_scale=2.0,
    skip_type="logSNR",
    seed=0,
    nfes=NFES,
    ref_steps=REF_STEPS,
    solvers=("ddim", "dpmsolver++"),
    log=print,
):
    """Rows (solver, nfe, accuracy, rms to reference, seconds) for one time grid."""
    labels = jnp.asarray(np.repeat(np.arange(digits.NUM_CLASSES), n_per_class), jnp.int32)
    key = jax.random.key(seed)
    runs = [("reference", ref_steps, "dpmsolver++")]
    runs += [(name, n, name) for name in solvers for n in nfes]
    rows, x_ref = [], None
    for name, steps, method in runs:
        t0 = time.perf_counter()
        x0, info = digits.generate(
            bundle,
            labels,
            key,
            steps=steps,
            method=method,
            guidance_scale=guidance_scale,
            skip_type=skip_type,
            return_info=True,
        )
        x0 = np.asarray(jax.block_until_ready(x0))
        seconds = time.perf_counter() - t0
        if x_ref is None:
            x_ref = x0
        acc = digits.accuracy(bundle, x0, labels)
        rms = float(np.sqrt(np.mean((x0 - x_ref) ** 2)))
        rows.append((name, int(info.nfe), acc, rms, seconds))
        log(
            f"  {skip_type:<14} {name:<12} NFE {int(info.nfe):4d}  accuracy {acc:.3f}  "
            f"rms to reference {rms:.4f}  ({seconds:.1f} s incl. compile)"
        )
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default=None, help="checkpoint (default: the bundled one)")
    parser.add_argument(
        "--n-per-class", type=int, default=50, help="samples per digit (default 50)"
    )
    parser.add_argument(
        "--guidance-scales",
        type=float,
        nargs="+",
        default=[2.0],
        help="classifier-free guidance scales (default 2.0)",
    )
    parser.add_argument(
        "--skip-types",
        nargs="+",
        default=["logSNR"],
        choices=["logSNR", "time_uniform", "time_quadratic"],
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--markdown", action="store_true", help="also print markdown tables")
    args = parser.parse_args(argv)

    bundle = digits.load(args.checkpoint)
    real = bundle.meta.get("classifier_heldout_accuracy")
    print(
        f"jax {jax.__version__} on {jax.devices()[0].platform}; {args.n_per_class} samples per "
        f"class, guidance scales {args.guidance_scales}, seed {args.seed}"
    )
    if real is not None:
        print(f"classifier accuracy on held-out real digits: {real:.3f}")
    table = {}
    for skip in args.skip_types:
        for scale in args.guidance_scales:
            print(f"guidance scale {scale}:")
            for name, nfe, acc, rms, _ in evaluate(
                bundle,
                n_per_class=args.n_per_class,
                guidance_scale=scale,
                skip_type=skip,
                seed=args.seed,
            ):
                table.setdefault((skip, name, nfe), {})[scale] = (acc, rms)
    if args.markdown:
        labels = {
            "reference": "DPM-Solver++(2M), reference",
            "ddim": "DDIM",
            "dpmsolver++": "DPM-Solver++(2M)",
        }
        head = " | ".join(
            f"accuracy, s = {g:g} | RMS to ref., s = {g:g}" for g in args.guidance_scales
        )
        print()
        print(f"| time grid | solver | NFE | {head} |")
        print("|---|---|---:|" + "---:|---:|" * len(args.guidance_scales))
        for (skip, name, nfe), by_scale in table.items():
            cells = " | ".join(
                f"{100 * by_scale[g][0]:.1f} % | {by_scale[g][1]:.3f}" for g in args.guidance_scales
            )
            print(f"| {skip} | {labels[name]} | {nfe} | {cells} |")


if __name__ == "__main__":
    main()
