"""Golden runs of the reference implementation with a ``correcting_xt_fn``.

    python tools/make_reference_xt_golden.py --reference /path/to/dpm_solver_pytorch.py

Runs the official DPM-Solver PyTorch code (github.com/LuChengTHU/dpm-solver,
``dpm_solver_pytorch.py``; the golden set of ``tests/data/GOLDEN_README.md`` used commit
52bc3fb) in float64 on the analytic Gaussian-mixture model of that set (the exact noise
prediction; parameters, x_T and the betas from ``tests/data/dpm_solver_reference.npz``),
with an inpainting-like correction of the intermediate states that reads t and step:

    xt <- mask * (alpha_t * known + sigma_t * z) + (1 - mask) * xt * (1 - 0.01 * step)

(``known``, ``z`` fixed arrays of x's shape, ``mask`` 1 on the first 6 of 16 dimensions;
alpha_t, sigma_t of the run's schedule). It writes ``tests/data/reference_xt_golden.npz``:
``known``, ``z``, ``mask``, ``configs_json`` (one dict per run), and ``out/<id>`` and
``intermediates/<id>`` (the reference's list, stacked) for every run: methods multistep,
singlestep and singlestep_fixed, orders 1-3, algorithms dpmsolver and dpmsolver++, with
and without ``denoise_to_zero``. Needs torch (CPU) and the reference file; none of the
reference's code is stored. Only the numbers it produced are.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import pathlib

import numpy as np
import torch

ROOT = pathlib.Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
OUT = DATA / "reference_xt_golden.npz"


def load_reference(path: str):
    spec = importlib.util.spec_from_file_location("dpm_solver_pytorch", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def gmm_eps(x, alpha, sigma, means, stds, log_w):
    """The exact noise prediction of the mixture (GOLDEN_README section 2), float64 torch."""
    a, s = alpha[:, None], sigma[:, None]
    d = x.shape[1]
    v = a**2 * stds[None, :] ** 2 + s**2  # (B, K)
    diff = x[:, None, :] - a[:, :, None] * means[None]  # (B, K, D)
    logits = log_w[None] - 0.5 * d * torch.log(2 * torch.pi * v) - (diff**2).sum(-1) / (2 * v)
    r = torch.softmax(logits, dim=1)
    score = -(r[:, :, None] * diff / v[:, :, None]).sum(1)
    return -s * score


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reference", required=True, help="path of dpm_solver_pytorch.py")
    args = ap.parse_args()
    ref = load_reference(args.reference)
    torch.set_default_dtype(torch.float64)
    z = np.load(DATA / "dpm_solver_reference.npz")
    means, stds = torch.tensor(z["gmm/means"]), torch.tensor(z["gmm/stds"])
    log_w = torch.log(torch.tensor(z["gmm/weights"]))
    betas = torch.tensor(z["schedule/discrete_linear/betas"])
    x_t = torch.tensor(z["init/xT"])
    rng = np.random.default_rng(4321)
    known = rng.normal(size=x_t.shape)
    noise = rng.normal(size=x_t.shape)
    mask = np.zeros(x_t.shape)
    mask[:, :6] = 1.0
    known_t, noise_t, mask_t = (torch.tensor(a) for a in (known, noise, mask))

    ns = ref.NoiseScheduleVP("discrete", betas=betas, dtype=torch.float64)

    def model(x, t_input):  # the discrete model's time input 1000 (t - 1/N) -> its alpha, sigma
        t = t_input / 1000.0 + 1.0 / ns.total_N
        la = ns.marginal_log_mean_coeff(t)
        return gmm_eps(x, torch.exp(la), torch.sqrt(-torch.expm1(2.0 * la)), means, stds, log_w)

    model_fn = ref.model_wrapper(model, ns, model_type="noise")

    def correcting_xt_fn(xt, t, step):
        a, s = ns.marginal_alpha(t), ns.marginal_std(t)
        return mask_t * (a * known_t + s * noise_t) + (1 - mask_t) * xt * (1 - 0.01 * step)

    configs, arrays = [], {}
    cases = []
    for method in ("multistep", "singlestep", "singlestep_fixed"):
        for order in (1, 2, 3):
            for alg in ("dpmsolver", "dpmsolver++"):
                for denoise in (False, True):
                    steps = 9 if method == "singlestep_fixed" else 10
                    cases.append(
                        dict(
                            method=method,
                            order=order,
                            algorithm_type=alg,
                            steps=steps,
                            skip_type="time_uniform",
                            denoise_to_zero=denoise,
                        )
                    )
    cases.append(
        dict(
            method="multistep",
            order=2,
            algorithm_type="dpmsolver++",
            steps=6,
            skip_type="logSNR",
            denoise_to_zero=False,
        )
    )
    for i, case in enumerate(cases):
        solver = ref.DPM_Solver(
            model_fn, ns, algorithm_type=case["algorithm_type"], correcting_xt_fn=correcting_xt_fn
        )
        with torch.no_grad():
            out, inter = solver.sample(
                x_t.clone(),
                steps=case["steps"],
                order=case["order"],
                skip_type=case["skip_type"],
                method=case["method"],
                denoise_to_zero=case["denoise_to_zero"],
                lower_order_final=True,
                return_intermediate=True,
            )
        arrays[f"out/{i}"] = out.numpy()
        arrays[f"intermediates/{i}"] = torch.stack(inter).numpy()
        configs.append(dict(id=i, **case))
        print(i, case, float(out.abs().max()))
    np.savez_compressed(
        OUT, known=known, z=noise, mask=mask, configs_json=json.dumps(configs), **arrays
    )
    print(f"wrote {OUT} ({len(cases)} runs)")


if __name__ == "__main__":
    main()
