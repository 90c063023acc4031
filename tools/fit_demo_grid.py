"""Fits the demo's time grid to the bundled digits UNet and writes dpm_jax/data/digits_grid.json.

    python tools/fit_demo_grid.py                      # about a minute on 2 CPU cores

``dpm_jax.optimize_timesteps(objective="ld3")`` for ``--method`` (a key of
``dpm_jax.demo.digits.SOLVERS``) at ``--steps`` model calls, with classifier-free
guidance at the demo's scale, on TRAIN noise samples (labels b % 10) against their
200-step DPM-Solver++(3M) solution, with the options the shipped file was made with
(``FIT``: ld3's defaults before 0.2.0, the grid alone; the demo passes ``timesteps=``).
The grid is then judged on HELD_OUT other noise samples against theirs: the median
per-sample RMS distance and the classifier's accuracy, for the fitted grid and for every
built-in spacing. Those held-out figures are stored in the file's ``meta`` (and quoted
in the README).
"""

from __future__ import annotations

import argparse
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np

import dpm_jax
from dpm_jax.demo import digits

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "dpm_jax" / "data" / "digits_grid.json"
TRAIN, HELD_OUT = 64, 512
SPACINGS = ("time_uniform", "logSNR", "time_quadratic", "karras")
REFERENCE = dict(steps=200, order=3, multistep3_variant="third_order", skip_type="logSNR")
#: ld3's options for the shipped grid (its defaults when the file was made)
FIT = dict(decouple=False, loss="log", window="nearest", batch_size=None, restarts=1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--method", default="unipc", choices=sorted(digits.SOLVERS))
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args()
    bundle = digits.load()
    sched = digits.schedule()
    opts = dict(digits.SOLVERS[args.method])
    scale = digits.DEFAULT_GUIDANCE_SCALE

    def batch(n, seed):
        labels = np.arange(n) % digits.NUM_CLASSES
        model = digits.guided_model(bundle.unet_graph, bundle.unet_params, labels, scale, sched)
        x = jax.random.normal(jax.random.key(seed), (n, *digits.IMAGE_SHAPE), jnp.float32)
        ref = dpm_jax.sample(model, x, sched, **REFERENCE)
        return model, x, ref, labels

    m_train, x_train, ref_train, _ = batch(TRAIN, 1)
    m_test, x_test, ref_test, labels_test = batch(HELD_OUT, 2)

    def judge(**grid):
        x = dpm_jax.sample(m_test, x_test, sched, **grid, **opts)
        err = np.asarray(x - ref_test).reshape(HELD_OUT, -1)
        return (
            float(np.median(np.sqrt(np.mean(err**2, axis=1)))),
            digits.accuracy(bundle, x, labels_test),
        )

    t0 = time.perf_counter()
    ts = dpm_jax.optimize_timesteps(
        m_train, sched, x_train, steps=args.steps, objective="ld3", teacher=ref_train, **FIT, **opts
    )
    wall = time.perf_counter() - t0
    fitted = judge(timesteps=ts)
    builtin = {sp: judge(steps=args.steps, skip_type=sp) for sp in SPACINGS}
    ref_acc = digits.accuracy(bundle, ref_test, labels_test)
    print(
        f"{args.method}, {args.steps} NFE, ld3 on {TRAIN} x_T in {wall:.1f} s; held-out "
        f"({HELD_OUT} x_T) median RMS to the 200-step solution / classifier accuracy:"
    )
    print(
        f"  fitted grid       {fitted[0]:.4f} / {fitted[1]:.3f}   {np.asarray(ts).round(4).tolist()}"
    )
    for sp, (e, a) in builtin.items():
        print(f"  {sp:<17} {e:.4f} / {a:.3f}")
    print(f"  200-step reference accuracy {ref_acc:.3f}")
    meta_extra = {
        "demo_method": args.method,
        "fitted_for": f"dpm_jax.demo.digits UNet, guidance scale {scale}, labels b % 10",
        "training": f"{TRAIN} x_T (jax.random.key(1)), ld3 against the 200-step "
        "DPM-Solver++(3M) solution",
        "held_out": {
            "x_T": f"{HELD_OUT} x_T (jax.random.key(2))",
            "median_rms_to_reference": {
                "fitted": fitted[0],
                **{k: v[0] for k, v in builtin.items()},
            },
            "accuracy": {
                "fitted": fitted[1],
                **{k: v[1] for k, v in builtin.items()},
                "reference_200_steps": ref_acc,
            },
        },
        "fit_seconds": round(wall, 1),
    }
    dpm_jax.save_timesteps(args.out, ts, schedule=sched, objective="ld3", **opts)
    # the held-out figures go into the file's meta
    import json

    payload = json.loads(pathlib.Path(args.out).read_text())
    payload["meta"].update(meta_extra)
    pathlib.Path(args.out).write_text(json.dumps(payload, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
