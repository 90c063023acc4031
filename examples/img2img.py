"""Image-to-image (SDEdit): noise real digits part of the way, then sample them as another digit.

SDEdit (Meng et al. 2022, arXiv 2108.01073): a real image x is noised to the start
time t0 = ``dpm_jax.strength_to_time(schedule, strength)`` with
``dpm_jax.add_noise`` (a draw of q(x_t0 | x) = N(alpha x, sigma^2)), and the
reverse ODE is solved from t0 with a *target* class. Strength 0 keeps the input,
strength 1 forgets it (a plain sample from noise); in between, the output keeps the
input's rough placement and stroke weight while the guidance pulls it to the target.

For each strength the script prints the classifier's accuracy on the target class
and on the source class, and the RMS pixel distance to the source (pixels in
[-1, 1]), over ``--per-class`` real digits of each class, each sent to a random
other class; as a scale for the distance it prints the RMS distance from each
source to a random real digit of its target class. It writes a picture: one source
per class and its outputs at each strength, and the figures against strength.
Usage::

    python examples/img2img.py --out docs/img2img.png
    python examples/img2img.py --per-class 2 --strengths 0.2 0.5 --steps 5
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np

import dpm_jax
from dpm_jax.demo import digits


def img2img(model, x, noise, strength, *, steps=10):
    """SDEdit: ``x`` noised to the time of ``strength``, then sampled with ``model``."""
    sched = model.schedule
    if strength == 0.0:
        return x  # t0 = t_end: nothing to solve
    t0 = dpm_jax.strength_to_time(sched, strength)
    x_t0 = dpm_jax.add_noise(sched, x, noise, t0)
    return dpm_jax.sample(model, x_t0, sched, t_start=t0, steps=steps, skip_type="logSNR")


def rms(a, b) -> float:
    """RMS distance over all pixels."""
    return float(np.sqrt(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)))


def sources(per_class: int, seed: int = 0):
    """The first ``per_class`` real digits of each class, their labels, and a random
    target class for each (never its own), float32 / int32."""
    from sklearn.datasets import load_digits

    y = load_digits().target
    idx = np.concatenate([np.flatnonzero(y == c)[:per_class] for c in range(10)])
    rng = np.random.default_rng(seed)
    target = (y[idx] + 1 + rng.integers(0, 9, idx.shape[0])) % 10
    x = jnp.asarray(digits.real_digits()[idx], jnp.float32)
    return x, jnp.asarray(y[idx], jnp.int32), jnp.asarray(target, jnp.int32)


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-class", type=int, default=10, help="sources per class (10)")
    parser.add_argument(
        "--strengths", type=float, nargs="+", default=[0.0, 0.1, 0.2, 0.3, 0.4, 0.6, 1.0]
    )
    parser.add_argument("--steps", type=int, default=10, help="model calls per run (10)")
    parser.add_argument("--guidance-scale", type=float, default=digits.DEFAULT_GUIDANCE_SCALE)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="img2img.png")
    args = parser.parse_args(argv)

    bundle = digits.load()
    x, label, target = sources(args.per_class, args.seed)
    model = digits.guided_model(bundle.unet_graph, bundle.unet_params, target, args.guidance_scale)
    noise = jax.random.normal(jax.random.key(args.seed), x.shape, x.dtype)

    # the scale of "forgotten": a real digit of the target class, drawn at random
    real = digits.real_digits()
    from sklearn.datasets import load_digits

    y_all = load_digits().target
    rng = np.random.default_rng(args.seed + 1)
    other = np.stack([real[rng.choice(np.flatnonzero(y_all == int(b)))] for b in target])
    scale = rms(x, other)

    print(
        f"{x.shape[0]} real digits ({args.per_class} per class), each to a random other class; "
        f"DPM-Solver++(2M), {args.steps} NFE from t0, guidance {args.guidance_scale}"
    )
    print(
        f"{'strength':>8} {'t0':>6} {'acc. target':>11} {'acc. source':>11} {'RMS to source':>13}"
    )
    rows, outputs = [], []
    for s in args.strengths:
        out = img2img(model, x, noise, s, steps=args.steps)
        row = dict(
            strength=s,
            t0=dpm_jax.strength_to_time(model.schedule, s),
            acc_target=digits.accuracy(bundle, out, target),
            acc_source=digits.accuracy(bundle, out, label),
            rms=rms(out, x),
        )
        rows.append(row)
        outputs.append(np.asarray(out))
        print(
            f"{s:8.2f} {row['t0']:6.3f} {row['acc_target']:11.2f} {row['acc_source']:11.2f} "
            f"{row['rms']:13.3f}"
        )
    print(f"RMS from a source to a random real digit of its target class: {scale:.3f}")
    picture(args, x, target, outputs, rows, scale)
    return rows


def picture(args, x, target, outputs, rows, scale):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    first = np.arange(10) * args.per_class  # one source per class
    shown = [(r, o) for r, o in zip(rows, outputs) if r["strength"] > 0.0]  # 0: the source
    grid = np.concatenate([np.asarray(x)[first]] + [o[first] for _, o in shown])
    fig, (ax, ax2) = plt.subplots(
        1, 2, figsize=(9.5, 0.42 * (len(shown) + 1) + 1.6), width_ratios=[1.1, 1.0]
    )
    ax.imshow(digits.mosaic(grid, 10), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_yticks(
        np.arange(len(shown) + 1) * 9 + 3.5,
        ["source"] + [f"strength {r['strength']:.1f}" for r, _ in shown],
        fontsize=8,
    )
    ax.set_xticks(np.arange(10) * 9 + 3.5, [f"to {int(t)}" for t in np.asarray(target)[first]])
    ax.tick_params(length=0, labelsize=8)
    ax.set_title("one real digit per class, sampled as the class below it", fontsize=9)
    s = [r["strength"] for r in rows]
    ax2.plot(s, [r["acc_target"] for r in rows], "o-", label="accuracy on the target class")
    ax2.plot(s, [r["acc_source"] for r in rows], "s--", label="accuracy on the source class")
    ax2.plot(s, [r["rms"] for r in rows], "^-", label="RMS distance to the source")
    ax2.axhline(scale, color="grey", lw=0.8, ls=":", label="RMS to a real digit of the target")
    ax2.set_xlabel("strength")
    ax2.set_ylim(-0.03, 1.08)
    ax2.legend(fontsize=7, loc="center right")
    ax2.grid(alpha=0.3)
    ax2.set_title(
        f"{len(np.asarray(x))} real digits, {args.steps} NFE per run (DPM-Solver++(2M))",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(args.out, dpi=110, bbox_inches="tight")
    plt.close(fig)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
