"""Golden reference vectors from Hugging Face diffusers' PyTorch schedulers.

Run (needs torch + diffusers, not part of dpm_jax's dependencies):

    /work/venvgold/bin/python tools/make_diffusers_golden.py

Writes tests/data/diffusers_golden.npz. See tests/data/DIFFUSERS_GOLDEN_README.md.

Each sampling configuration is run twice:
  * out32: diffusers as shipped (float32 schedule tables; DPMSolverMultistep also
    casts ``sample`` to float32 inside ``step``);
  * out64: the same code with float64 everywhere. During that run the names ``torch``
    and ``np`` inside the scheduler's module are swapped for proxies whose
    ``float32`` attribute is the float64 dtype (all else delegated), and torch's
    default dtype is float64. The script asserts the tables and samples are float64.

The model is the exact posterior mean of a Gaussian mixture (tests/diffusers_gmm.py),
called with the scheduler's own timestep values, as a pipeline would.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import inspect
import json
import pathlib
import sys
import warnings

import diffusers
import numpy as np
import torch

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from diffusers_gmm import GMM, net_output

OUT = ROOT / "tests" / "data" / "diffusers_golden.npz"
B = 5
D = GMM.means.shape[1]
SEED0 = 20240

MS = "DPMSolverMultistepScheduler"
SS = "DPMSolverSinglestepScheduler"
UP = "UniPCMultistepScheduler"

SD_BETAS = dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
FLOW = dict(use_flow_sigmas=True, prediction_type="flow_prediction")

# (brief number, class, kwargs, N). Kwargs are exactly what is passed; everything
# else is the scheduler's default.
SAMPLE_CONFIGS = [
    (1, MS, {}, 10),
    (2, MS, dict(solver_order=3), 12),
    (3, MS, dict(solver_order=1), 10),
    (4, MS, dict(solver_type="heun"), 10),
    (5, MS, dict(algorithm_type="dpmsolver", final_sigmas_type="sigma_min"), 10),
    (6, MS, dict(algorithm_type="dpmsolver", solver_order=3, final_sigmas_type="sigma_min"), 20),
    (7, MS, dict(**SD_BETAS, use_karras_sigmas=True, prediction_type="v_prediction"), 15),
    (8, MS, dict(use_exponential_sigmas=True), 12),
    (9, MS, dict(timestep_spacing="leading", steps_offset=1), 10),
    (10, MS, dict(timestep_spacing="trailing"), 10),
    (
        11,
        MS,
        dict(
            rescale_betas_zero_snr=True, timestep_spacing="trailing", prediction_type="v_prediction"
        ),
        10,
    ),
    (12, MS, dict(euler_at_final=True, final_sigmas_type="sigma_min"), 20),
    (13, MS, dict(lower_order_final=False, final_sigmas_type="sigma_min", solver_order=3), 8),
    (14, MS, dict(prediction_type="sample"), 10),
    (15, MS, dict(use_karras_sigmas=True, final_sigmas_type="sigma_min"), 10),
    (16, MS, dict(**FLOW, flow_shift=3.0), 10),
    (17, MS, dict(**FLOW, solver_order=3), 12),
    (18, MS, dict(algorithm_type="sde-dpmsolver++"), 20),
    (19, MS, dict(algorithm_type="sde-dpmsolver++", solver_order=3), 20),
    (20, MS, dict(algorithm_type="sde-dpmsolver", final_sigmas_type="sigma_min"), 20),
    (21, MS, dict(algorithm_type="sde-dpmsolver++", solver_type="heun"), 16),
    (22, MS, {}, 25),
    (23, MS, dict(solver_order=3, use_karras_sigmas=True, **SD_BETAS), 20),
    (24, SS, {}, 10),
    (25, SS, dict(solver_order=3), 12),
    (26, SS, dict(solver_order=3, solver_type="heun"), 12),
    (27, SS, dict(solver_order=2, use_karras_sigmas=True), 10),
    (28, SS, dict(algorithm_type="dpmsolver", solver_order=3, final_sigmas_type="sigma_min"), 12),
    (
        29,
        SS,
        dict(
            solver_order=3,
            timestep_spacing="trailing",
            rescale_betas_zero_snr=True,
            prediction_type="v_prediction",
        ),
        11,
    ),
    # 29 without the two options DPMSolverSinglestepScheduler does not have (from_config
    # ignores them silently, so 29 and 29b must give identical results; same seed).
    ("29b", SS, dict(solver_order=3, prediction_type="v_prediction"), 11),
    (30, SS, dict(solver_order=2, lower_order_final=True), 9),
    (31, UP, {}, 10),
    (32, UP, dict(solver_type="bh1", solver_order=3), 10),
    # 32 gives NaN in diffusers (bh1 + final sigma 0); the same with final_sigmas_type="sigma_min".
    ("32b", UP, dict(solver_type="bh1", solver_order=3, final_sigmas_type="sigma_min"), 10),
    (33, UP, dict(solver_order=3, use_karras_sigmas=True), 12),
    (34, UP, dict(predict_x0=False, final_sigmas_type="sigma_min"), 10),
    (35, UP, dict(**FLOW, flow_shift=3.0), 10),
    (36, UP, dict(lower_order_final=False, solver_order=3, final_sigmas_type="sigma_min"), 8),
    (37, UP, dict(timestep_spacing="leading", steps_offset=1, solver_order=3), 10),
    (
        38,
        UP,
        dict(solver_type="bh1", predict_x0=False, solver_order=2, final_sigmas_type="sigma_min"),
        15,
    ),
]

GRID_CONFIGS = [
    ("DDIMScheduler", {}, 10),
    ("DDIMScheduler", dict(timestep_spacing="trailing"), 10),
    ("DDIMScheduler", dict(**SD_BETAS, steps_offset=1), 20),
    ("EulerDiscreteScheduler", {}, 10),
    ("EulerDiscreteScheduler", dict(use_karras_sigmas=True), 10),
    ("EulerDiscreteScheduler", dict(timestep_spacing="trailing"), 10),
    ("EulerDiscreteScheduler", dict(**SD_BETAS, use_karras_sigmas=True), 20),
    ("EulerDiscreteScheduler", dict(use_exponential_sigmas=True), 12),
    ("FlowMatchEulerDiscreteScheduler", {}, 10),
    ("FlowMatchEulerDiscreteScheduler", dict(shift=3.0), 10),
]


# ----------------------------------------------------------------------------- float64 patch


class _Float64Proxy:
    """Stands in for ``torch`` or ``numpy`` inside a scheduler module: ``float32`` is float64."""

    def __init__(self, module, float64):
        self.__dict__["_module"] = module
        self.__dict__["float32"] = float64

    def __getattr__(self, name):
        return getattr(self.__dict__["_module"], name)


@contextlib.contextmanager
def float64_everywhere(cls):
    mod = importlib.import_module(cls.__module__)
    assert mod.torch is torch and mod.np is np, "scheduler module does not use the names torch/np"
    old_default = torch.get_default_dtype()
    mod.torch = _Float64Proxy(torch, torch.float64)
    mod.np = _Float64Proxy(np, np.float64)
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        mod.torch = torch
        mod.np = np
        torch.set_default_dtype(old_default)


# ----------------------------------------------------------------------------- runs


def ignored_keys(class_name, kwargs):
    """Keys the scheduler's __init__ does not take: from_config accepts and ignores them."""
    params = inspect.signature(getattr(diffusers, class_name).__init__).parameters
    return sorted(k for k in kwargs if k not in params)


def build(class_name, kwargs):
    # As a pipeline loads scheduler_config.json: unknown keys are silently ignored.
    return getattr(diffusers, class_name).from_config({"_class_name": class_name, **kwargs})


def is_sde(class_name, kwargs):
    return kwargs.get("algorithm_type", "").startswith("sde-")


def _record_orders(sched):
    """Wrap the instance's update methods to log the order each step actually used.

    Multistep DPM-Solver: which of the 1st/2nd/3rd order updates ran. Singlestep: the
    ``order`` handed to singlestep_dpm_solver_update. UniPC: ``this_order`` after the
    step (the predictor's order; the corrector at the next step uses the same value).
    """
    used = []
    name = type(sched).__name__

    def wrap(attr, order=None):
        fn = getattr(sched, attr)

        def inner(*a, **kw):
            used.append(kw["order"] if order is None else order)
            return fn(*a, **kw)

        setattr(sched, attr, inner)

    if name == MS:
        wrap("dpm_solver_first_order_update", 1)
        wrap("multistep_dpm_solver_second_order_update", 2)
        wrap("multistep_dpm_solver_third_order_update", 3)
    elif name == SS:
        wrap("singlestep_dpm_solver_update")
    return used


def sample_run(class_name, kwargs, n, x_T, noise, f64):
    """One sampling loop; returns the schedule and every state."""
    cls = getattr(diffusers, class_name)
    ctx = float64_everywhere(cls) if f64 else contextlib.nullcontext()
    with ctx:
        sched = build(class_name, kwargs)
        sched.set_timesteps(n)
        acp = sched.alphas_cumprod
        if f64:
            assert sched.sigmas.dtype == torch.float64, sched.sigmas.dtype
            assert acp.dtype == torch.float64, acp.dtype
        else:
            assert sched.sigmas.dtype == torch.float32, sched.sigmas.dtype
            assert acp.dtype == torch.float32, acp.dtype
        acp = acp.numpy().astype(np.float64)
        pred = sched.config.prediction_type
        flow = bool(sched.config.get("use_flow_sigmas", False))
        ntrain = sched.config.num_train_timesteps
        order_list = list(getattr(sched, "order_list", []))  # singlestep only
        used = _record_orders(sched)
        x = torch.from_numpy(x_T.copy())
        states = []
        for i, t in enumerate(sched.timesteps):
            out = net_output(
                x.numpy(),
                np.asarray(
                    t.item()
                ),  # the scheduler's own timestep value (int64 for these three schedulers)
                pred,
                alphas_cumprod=acp,
                num_train_timesteps=ntrain,
                flow=flow,
            )
            extra = {}
            if noise is not None:
                extra["variance_noise"] = torch.from_numpy(noise[i])
            x = sched.step(torch.from_numpy(out), t, x, **extra).prev_sample
            if class_name == UP:
                used.append(sched.this_order)
            if f64:
                assert x.dtype == torch.float64, x.dtype
            x = x.to(torch.float64)
            states.append(x.numpy().copy())
        return dict(
            timesteps=sched.timesteps.numpy().astype(np.float64),
            sigmas=sched.sigmas.numpy().astype(np.float64),
            alphas_cumprod=acp,
            states=np.stack(states),
            pred=pred,
            flow=flow,
            order_list=np.asarray(order_list, dtype=np.int64),
            orders=np.asarray(used, dtype=np.int64),
        )


def grid_run(class_name, kwargs, n, f64):
    cls = getattr(diffusers, class_name)
    ctx = float64_everywhere(cls) if f64 else contextlib.nullcontext()
    with ctx:
        sched = build(class_name, kwargs)
        sched.set_timesteps(n)
        res = dict(timesteps=sched.timesteps.numpy().astype(np.float64))
        sig = getattr(sched, "sigmas", None)
        if isinstance(sig, torch.Tensor):
            if f64:
                assert sig.dtype == torch.float64, sig.dtype
            res["sigmas"] = sig.numpy().astype(np.float64)
        acp = getattr(sched, "alphas_cumprod", None)
        if isinstance(acp, torch.Tensor):
            if f64:
                assert acp.dtype == torch.float64, acp.dtype
            res["alphas_cumprod"] = acp.numpy().astype(np.float64)
        return res


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
    results = {}
    refused = []
    k = 0
    for num, class_name, kwargs, n in SAMPLE_CONFIGS:
        seed = SEED0 + int(str(num).rstrip("b"))  # "29b" shares 29's seed
        rng = np.random.default_rng(seed)
        x_T = rng.standard_normal((B, D))
        noise = rng.standard_normal((n, B, D)) if is_sde(class_name, kwargs) else None
        try:
            r64 = sample_run(class_name, kwargs, n, x_T, noise, f64=True)
            r32 = sample_run(class_name, kwargs, n, x_T, noise, f64=False)
        except Exception as e:
            refused.append((num, class_name, kwargs, n, f"{type(e).__name__}: {e}"))
            print(f"#{num} {class_name} {kwargs} N={n}: REFUSED ({type(e).__name__}: {e})")
            continue
        bad = [
            key
            for key, arr in (
                ("out64", r64["states"]),
                ("out32", r32["states"]),
                ("sigmas", r64["sigmas"][:-1]),
            )
            if not np.all(np.isfinite(arr))
        ]
        if bad:
            refused.append((num, class_name, kwargs, n, f"non-finite {bad}"))
            print(f"#{num} {class_name} {kwargs} N={n}: NON-FINITE {bad}")
            continue
        cid = f"D{k:03d}"
        k += 1
        diff = float(np.max(np.abs(r64["states"][-1] - r32["states"][-1])))
        same_t = bool(np.array_equal(r64["timesteps"], r32["timesteps"]))
        data.update(
            {
                f"config/{cid}": np.asarray(json.dumps({"_class_name": class_name, **kwargs})),
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
                f"prediction_type/{cid}": np.asarray(r64["pred"]),
                f"flow/{cid}": np.asarray(r64["flow"]),
                f"brief_number/{cid}": np.asarray(str(num)),
            }
        )
        if noise is not None:
            data[f"noise/{cid}"] = noise
        ign = ignored_keys(class_name, kwargs)
        if ign:
            data[f"ignored_keys/{cid}"] = np.asarray(json.dumps(ign))
        assert r64["orders"].shape == (n,), r64["orders"]
        assert np.array_equal(r64["orders"], r32["orders"])
        data[f"orders/{cid}"] = r64["orders"]
        if r64["order_list"].size:
            data[f"order_list/{cid}"] = r64["order_list"]
        table.append((cid, num, class_name, kwargs, n, diff, same_t, r64["orders"].tolist()))
        results[str(num)] = r64["states"]
        print(
            f"{cid} (#{num}) {class_name} {kwargs} N={n}: max|out64-out32| = {diff:.2e}"
            + ("" if same_t else "  [timesteps differ 32/64]")
            + (f"  [ignored by diffusers: {ign}]" if ign else "")
            + f"\n      orders {r64['orders'].tolist()}  timesteps {r64['timesteps'].astype(int).tolist()}"
        )

    # The options DPMSolverSinglestepScheduler lacks are ignored, bit for bit.
    assert np.array_equal(results["29"], results["29b"])

    for g, (class_name, kwargs, n) in enumerate(GRID_CONFIGS):
        gid = f"G{g:03d}"
        r64 = grid_run(class_name, kwargs, n, f64=True)
        r32 = grid_run(class_name, kwargs, n, f64=False)
        data[f"config/{gid}"] = np.asarray(json.dumps({"_class_name": class_name, **kwargs}))
        data[f"steps/{gid}"] = np.asarray(n)
        data[f"grid_only/{gid}"] = np.asarray(True)
        for key in ("timesteps", "sigmas", "alphas_cumprod"):
            if key in r64:
                assert np.all(np.isfinite(r64[key])), (gid, key)
                data[f"{key}/{gid}"] = r64[key]
                data[f"{key}32/{gid}"] = r32[key]
        print(
            f"{gid} {class_name} {kwargs} N={n}: timesteps {np.round(r64['timesteps'], 3).tolist()}"
        )

    data["refused_json"] = np.asarray(
        json.dumps(
            [
                dict(brief_number=str(a), _class_name=b, kwargs=c, steps=d, error=e)
                for a, b, c, d, e in refused
            ]
        )
    )
    pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **data)
    print(
        "\n| id | brief # | class | kwargs (others default) | N | orders used | max abs(out64-out32) |"
    )
    print("|---|---|---|---|---|---|---|")
    short = {MS: "MS", SS: "SS", UP: "UP"}
    for cid, num, class_name, kwargs, n, diff, same_t, orders in table:
        kw = ", ".join(f"{k}={v!r}" for k, v in kwargs.items()) or "(defaults)"
        note = "" if same_t else " (timesteps differ)"
        print(
            f"| {cid} | {num} | {short[class_name]} | {kw} | {n} | {''.join(map(str, orders))} | {diff:.1e}{note} |"
        )
    for g, (class_name, kwargs, n) in enumerate(GRID_CONFIGS):
        kw = ", ".join(f"{k}={v!r}" for k, v in kwargs.items()) or "(defaults)"
        print(f"| G{g:03d} | - | {class_name} | {kw} | {n} | grid only | - |")
    print(
        f"wrote {args.out}: {len(table)} sampling configs, {len(GRID_CONFIGS)} grid configs, {len(refused)} refused"
    )


if __name__ == "__main__":
    main()
