"""Inversion round trip: encode real digits to noise with ``dpm_jax.inverse`` and decode them back.

The probability-flow ODE is deterministic, so integrating it upwards from a real
image x_0 (at t = 1/N) to t = T gives a latent x_T from which ``dpm_jax.sample``
integrates back down to x_0; the reconstruction error measures the solvers'
discretisation error in both directions (DDIM inversion is the first-order
case). The bundled UNet is used with its label and guidance scale 1 (the
conditional model: no extrapolation, the ODE the model was trained for).

Prints, for DDIM and DPM-Solver++(2M) at several NFE per direction, the RMS
reconstruction error (pixels in [-1, 1]; the digits' 17 grey levels are 0.125
apart), the std of the latents (a Gaussian latent has std ~1), and how many
reconstructions the classifier still reads as their label; writes a PNG with
rows original / latent / reconstructions. Needs scikit-learn for the real
digits. Usage::

    python examples/inversion.py                 # writes inversion.png
    python examples/inversion.py --n 20 --steps 10 25 50 100
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt

import dpm_jax
from dpm_jax.demo import digits


def round_trip(bundle, x0, labels, *, steps, order, algorithm_type, skip_type="logSNR"):
    """(latents, reconstructions) of x0 through the ODE at ``steps`` NFE each way."""

    @jax.jit
    def run(params, x0, labels):
        model = digits.guided_model(bundle.unet_graph, params, labels, guidance_scale=1.0)
        opts = dict(
            steps=steps,
            order=order,
            method="multistep",
            algorithm_type=algorithm_type,
            skip_type=skip_type,
        )
        x_T = dpm_jax.inverse(model, x0, model.schedule, **opts)
        return x_T, dpm_jax.sample(model, x_T, model.schedule, **opts)

    x_T, x_rec = run(bundle.unet_params, x0, labels)
    return np.asarray(x_T), np.asarray(x_rec)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=10, help="digits to invert (default 10: 0..9)")
    parser.add_argument("--steps", type=int, nargs="+", default=[10, 20, 50])
    parser.add_argument("--out", default="inversion.png")
    args = parser.parse_args(argv)

    from sklearn.datasets import load_digits

    d = load_digits()
    # the first occurrence of each digit, cycling through 0..9
    idx = [int(np.flatnonzero(d.target == (i % 10))[i // 10]) for i in range(args.n)]
    x0 = jnp.asarray((d.images[idx] / 16.0 * 2.0 - 1.0)[..., None], jnp.float32)
    labels = jnp.asarray(d.target[idx], jnp.int32)
    bundle = digits.load()

    print(f"{'solver':<18} {'NFE/way':>7} {'RMS error':>10} {'latent std':>11} {'still read':>11}")
    rows = [("original", np.asarray(x0))]
    for name, order, alg in [("DDIM", 1, "dpmsolver"), ("DPM-Solver++(2M)", 2, "dpmsolver++")]:
        for steps in args.steps:
            x_T, x_rec = round_trip(
                bundle, x0, labels, steps=steps, order=order, algorithm_type=alg
            )
            err = float(np.sqrt(np.mean((x_rec - np.asarray(x0)) ** 2)))
            acc = digits.accuracy(bundle, x_rec, labels)
            print(f"{name:<18} {steps:7d} {err:10.4f} {x_T.std():11.3f} {acc:11.2f}")
            if steps == args.steps[0] and name == "DPM-Solver++(2M)":
                rows.insert(
                    1, (f"latent x_T ({name}, {steps} NFE), shown / 3", np.clip(x_T / 3.0, -1, 1))
                )
            if steps in (args.steps[0], args.steps[-1]):
                rows.append((f"{name}, {steps} NFE/way: RMS {err:.3f}", x_rec))

    fig, axes = plt.subplots(len(rows), 1, figsize=(0.55 * args.n + 1.0, 0.75 * len(rows) + 0.4))
    for ax, (title, x) in zip(axes, rows):
        ax.imshow(digits.mosaic(x, len(x)), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(title, fontsize=8)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
