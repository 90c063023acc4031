"""Golden reference vectors from diffusers' DEISMultistepScheduler.

Run (needs torch + diffusers, not part of dpm_jax's dependencies):

    /work/venvgold/bin/python tools/make_deis_golden.py

Writes tests/data/deis_golden.npz. See tests/data/DEIS_GOLDEN_README.md.

Same set-up as tools/make_diffusers_golden.py (whose float64 patch is imported from
there): each configuration is run as shipped (out32: float32 schedule tables) and in
float64 (out64: the names ``torch``/``np`` of the scheduler module are swapped for
proxies whose ``float32`` is float64, default dtype float64). The model is the exact
posterior mean of the Gaussian mixture of tests/diffusers_gmm.py, called with the
scheduler's own integer timesteps, as a pipeline would.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import pathlib
import sys
import warnings

import diffusers
import numpy as np
import torch

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tools"))
from diffusers_gmm import GMM, net_output
from make_diffusers_golden import build, float64_everywhere, ignored_keys

OUT = ROOT / "tests" / "data" / "deis_golden.npz"
B = 5
D = GMM.means.shape[1]
SEED0 = 30240

DE = "DEISMultistepScheduler"
SD_BETAS = dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
FLOW = dict(use_flow_sigmas=True, prediction_type="flow_prediction")
LEADING = dict(timestep_spacing="leading", steps_offset=1)
TRAILING = dict(timestep_spacing="trailing")

# (number, kwargs, N). Kwargs are exactly what is passed; everything else is the
# scheduler's default (solver_order=2, epsilon, linspace, linear betas, lower_order_final).
CONFIGS = [
    (1, {}, 10),
    (2, dict(solver_order=1), 10),
    (3, dict(solver_order=3), 10),
    (4, dict(solver_order=3), 20),
    (5, dict(solver_order=3), 14),  # largest N with the lower_order_final drop (N < 15)
    (6, dict(solver_order=3), 15),  # smallest N without it
    (7, dict(solver_order=3), 3),
    (8, dict(solver_order=3, lower_order_final=False), 8),
    (9, dict(solver_order=2, lower_order_final=False), 5),
    (10, dict(**LEADING), 10),
    (11, dict(**LEADING, solver_order=3), 12),
    (12, dict(**TRAILING), 10),
    (13, dict(**TRAILING, solver_order=3), 6),
    (14, dict(use_karras_sigmas=True), 10),
    (15, dict(use_karras_sigmas=True, solver_order=3, **SD_BETAS), 20),
    (16, dict(use_karras_sigmas=True, solver_order=3, lower_order_final=False), 12),
    (17, dict(prediction_type="v_prediction"), 10),
    (
        18,
        dict(prediction_type="v_prediction", use_karras_sigmas=True, solver_order=3, **SD_BETAS),
        15,
    ),
    (19, dict(prediction_type="v_prediction", solver_order=3, **TRAILING), 7),
    (20, dict(prediction_type="sample"), 10),
    (21, dict(prediction_type="sample", solver_order=3, **TRAILING), 12),
    (22, dict(**SD_BETAS), 25),
    (23, dict(solver_order=1, **SD_BETAS), 5),
    (24, dict(solver_order=3, **SD_BETAS, **LEADING), 25),
    (25, dict(solver_order=3), 25),
    (26, {}, 5),
    (27, dict(solver_order=3, beta_schedule="squaredcos_cap_v2"), 10),
    (28, dict(use_exponential_sigmas=True), 12),
    (29, dict(**FLOW, flow_shift=3.0), 10),
    (30, dict(**FLOW, solver_order=3), 12),
    (
        31,
        dict(prediction_type="v_prediction", solver_order=3, lower_order_final=False, **SD_BETAS),
        9,
    ),
]

_UPDATES = (
    ("deis_first_order_update", 1),
    ("multistep_deis_second_order_update", 2),
    ("multistep_deis_third_order_update", 3),
)


def _record_orders(sched):
    """Wrap the instance's three update methods to log which one each step ran."""
    used = []
    for attr, order in _UPDATES:
        fn = getattr(sched, attr)

        def inner(*a, _fn=fn, _order=order, **kw):
            used.append(_order)
            return _fn(*a, **kw)

        setattr(sched, attr, inner)
    return used


def sample_run(kwargs, n, x_T, f64):
    """One sampling loop; returns the schedule, every state and every model output."""
    cls = getattr(diffusers, DE)
    ctx = float64_everywhere(cls) if f64 else contextlib.nullcontext()
    with ctx:
        sched = build(DE, kwargs)
        sched.set_timesteps(n)
        want = torch.float64 if f64 else torch.float32
        assert sched.sigmas.dtype == want, sched.sigmas.dtype
        assert sched.alphas_cumprod.dtype == want, sched.alphas_cumprod.dtype
        acp = sched.alphas_cumprod.numpy().astype(np.float64)
        pred = sched.config.prediction_type
        flow = bool(sched.config.use_flow_sigmas)
        ntrain = sched.config.num_train_timesteps
        used = _record_orders(sched)
        x = torch.from_numpy(x_T.copy())
        states, outs = [], []
        for t in sched.timesteps:
            out = net_output(
                x.numpy(),
                np.asarray(t.item()),  # the scheduler's own (int64) timestep value
                pred,
                alphas_cumprod=acp,
                num_train_timesteps=ntrain,
                flow=flow,
            )
            outs.append(out)
            x = sched.step(torch.from_numpy(out), t, x).prev_sample
            assert x.dtype == torch.float64, x.dtype  # the sample keeps the model-output dtype
            states.append(x.numpy().copy())
        return dict(
            timesteps=sched.timesteps.numpy().astype(np.float64),
            sigmas=sched.sigmas.numpy().astype(np.float64),
            alphas_cumprod=acp,
            states=np.stack(states),
            model_out=np.stack(outs),
            pred=pred,
            flow=flow,
            orders=np.asarray(used, dtype=np.int64),
        )


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args()
    warnings.simplefilter("ignore", FutureWarning)
    diffusers.utils.logging.set_verbosity_error()
    torch.set_num_threads(1)

    data = {
        "diffusers_version": np.asarray(diffusers.__version__),
        "torch_version": np.asarray(torch.__version__),
        "numpy_version": np.asarray(np.__version__),
        "gmm/means": GMM.means,
        "gmm/stds": GMM.stds,
        "gmm/weights": GMM.weights,
    }
    table = []
    refused = []
    k = 0
    for num, kwargs, n in CONFIGS:
        x_T = np.random.default_rng(SEED0 + num).standard_normal((B, D))
        try:
            r64 = sample_run(kwargs, n, x_T, f64=True)
            r32 = sample_run(kwargs, n, x_T, f64=False)
        except Exception as e:
            refused.append((num, kwargs, n, f"{type(e).__name__}: {e}"))
            print(f"#{num} {kwargs} N={n}: REFUSED ({type(e).__name__}: {e})")
            continue
        bad = [
            key
            for key, arr in (
                ("out64", r64["states"]),
                ("out32", r32["states"]),
                ("sigmas", r64["sigmas"]),
            )
            if not np.all(np.isfinite(arr))
        ]
        if bad:
            refused.append((num, kwargs, n, f"non-finite {bad}"))
            print(f"#{num} {kwargs} N={n}: NON-FINITE {bad}")
            continue
        cid = f"E{k:03d}"
        k += 1
        diff = float(np.max(np.abs(r64["states"][-1] - r32["states"][-1])))
        same_t = bool(np.array_equal(r64["timesteps"], r32["timesteps"]))
        assert r64["orders"].shape == (n,), r64["orders"]
        assert np.array_equal(r64["orders"], r32["orders"])
        data.update(
            {
                f"config/{cid}": np.asarray(json.dumps({"_class_name": DE, **kwargs})),
                f"steps/{cid}": np.asarray(n),
                f"timesteps/{cid}": r64["timesteps"],
                f"timesteps32/{cid}": r32["timesteps"],
                f"sigmas/{cid}": r64["sigmas"],
                f"sigmas32/{cid}": r32["sigmas"],
                f"alphas_cumprod/{cid}": r64["alphas_cumprod"],
                f"alphas_cumprod32/{cid}": r32["alphas_cumprod"],
                f"x_T/{cid}": x_T,
                f"out64/{cid}": r64["states"][-1],
                f"out32/{cid}": r32["states"][-1],
                f"states64/{cid}": r64["states"],
                f"model_out64/{cid}": r64["model_out"],
                f"orders/{cid}": r64["orders"],
                f"prediction_type/{cid}": np.asarray(r64["pred"]),
                f"flow/{cid}": np.asarray(r64["flow"]),
                f"number/{cid}": np.asarray(num),
            }
        )
        ign = ignored_keys(DE, kwargs)
        if ign:
            data[f"ignored_keys/{cid}"] = np.asarray(json.dumps(ign))
        last_noop = bool(np.array_equal(r64["states"][-1], r64["states"][-2])) if n > 1 else False
        table.append((cid, num, kwargs, n, diff, same_t, r64["orders"].tolist(), last_noop))
        print(
            f"{cid} (#{num}) {kwargs} N={n}: max|out64-out32| = {diff:.2e}"
            + ("" if same_t else "  [timesteps differ 32/64]")
            + ("  [last step returns its input]" if last_noop else "")
            + (f"  [ignored by diffusers: {ign}]" if ign else "")
            + f"\n      orders {r64['orders'].tolist()}  timesteps {r64['timesteps'].astype(int).tolist()}"
        )

    data["refused_json"] = np.asarray(
        json.dumps(
            [dict(number=a, _class_name=DE, kwargs=b, steps=c, error=d) for a, b, c, d in refused]
        )
    )
    pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **data)
    print("\n| id | # | kwargs (others default) | N | orders used | max abs(out64-out32) |")
    print("|---|---|---|---|---|---|")
    for cid, num, kwargs, n, diff, same_t, orders, last_noop in table:
        kw = ", ".join(f"{k}={v!r}" for k, v in kwargs.items()) or "(defaults)"
        note = ("" if same_t else " (timesteps differ)") + (
            " (last step no-op)" if last_noop else ""
        )
        print(f"| {cid} | {num} | {kw} | {n} | {''.join(map(str, orders))} | {diff:.1e}{note} |")
    print(f"wrote {args.out}: {len(table)} configs, {len(refused)} refused")


if __name__ == "__main__":
    main()
