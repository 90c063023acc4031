"""Golden reference vectors from k-diffusion's sample_heun and sample_dpm_2.

Run (needs torch + k-diffusion 0.1.1.post1, not part of dpm_jax's dependencies):

    /work/venvgold/bin/python tools/make_kdiffusion_golden.py

Writes tests/data/kdiffusion_golden.npz. See tests/data/KDIFFUSION_GOLDEN_README.md.

The denoiser is the exact posterior mean of the Gaussian mixture of
tests/diffusers_gmm.py in the VE/EDM form D(x; sigma) = E[x0 | x0 + sigma eps = x]
(``denoise(x, alpha=1, sigma)``). Everything is float64 and deterministic (s_churn = 0).

k-diffusion's package __init__ imports its training/evaluation modules (kornia, clip,
clean-fid, scikit-image, ...), so only ``k_diffusion/utils.py`` and
``k_diffusion/sampling.py`` are loaded, from the installed package's own files, under an
empty ``k_diffusion`` package. utils.py imports ``torchvision.transforms.functional``
for two image helpers the samplers never call; when torchvision does not import, an
empty stand-in module is put in sys.modules for that import only and removed again.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import importlib.util
import json
import pathlib
import sys
import types

import numpy as np
import torch

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from diffusers_gmm import GMM, denoise

OUT = ROOT / "tests" / "data" / "kdiffusion_golden.npz"
B = 5
D = GMM.means.shape[1]
SEED0 = 40240
KD_VERSION = "0.1.1.post1"


# ----------------------------------------------------------------------------- loading


@contextlib.contextmanager
def _torchvision_standin():
    """An empty ``torchvision.transforms.functional`` while utils.py is imported, if needed."""
    try:
        import torchvision.transforms.functional  # noqa: F401
    except Exception:
        pass
    else:
        yield False
        return
    names = ("torchvision", "torchvision.transforms", "torchvision.transforms.functional")
    saved = {n: sys.modules.get(n) for n in names}
    mods = {n: types.ModuleType(n) for n in names}
    mods["torchvision"].transforms = mods["torchvision.transforms"]
    mods["torchvision.transforms"].functional = mods["torchvision.transforms.functional"]
    sys.modules.update(mods)
    try:
        yield True
    finally:
        for n, m in saved.items():
            if m is None:
                sys.modules.pop(n, None)
            else:
                sys.modules[n] = m


def load_kdiffusion_sampling():
    """k_diffusion.sampling from the installed package, without running its __init__."""
    version = importlib.metadata.version("k-diffusion")
    assert version == KD_VERSION, version
    spec = importlib.util.find_spec(
        "k_diffusion"
    )  # locating a top-level package does not execute it
    pkg_dir = pathlib.Path(spec.origin).parent
    pkg = types.ModuleType("k_diffusion")
    pkg.__path__ = [str(pkg_dir)]
    pkg.__file__ = spec.origin
    sys.modules["k_diffusion"] = pkg
    mods = {}
    with _torchvision_standin() as stood_in:
        for name in ("utils", "sampling"):  # sampling does `from . import utils`
            s = importlib.util.spec_from_file_location(
                f"k_diffusion.{name}", pkg_dir / f"{name}.py"
            )
            mod = importlib.util.module_from_spec(s)
            sys.modules[f"k_diffusion.{name}"] = mod
            s.loader.exec_module(mod)
            setattr(pkg, name, mod)
            mods[name] = mod
    return mods["sampling"], version, stood_in


# ----------------------------------------------------------------------------- configs

# (sampler, grid kind, grid parameters). Karras grids come from get_sigmas_karras(n,
# sigma_min, sigma_max, rho), which appends sigma = 0; "custom" grids are given as is.
KARRAS = [
    (n, smin, smax, rho)
    for smin, smax in ((0.002, 80.0), (0.03, 14.6))
    for n in (1, 2, 3, 5, 10, 20)
    for rho in (7.0,)
] + [(5, 0.002, 80.0, 3.0), (10, 0.002, 80.0, 3.0), (10, 0.03, 14.6, 3.0)]

CUSTOM = {
    # geometric in sigma, then 0
    "geometric_to_zero": np.concatenate([np.geomspace(80.0, 0.002, 8), [0.0]]),
    # geometric, NOT ending at 0: every step (also the last) is a two-evaluation step
    "geometric_no_zero": np.geomspace(14.6, 0.03, 7),
    # uneven, hand-picked steps, then 0
    "uneven_to_zero": np.array([10.0, 6.0, 5.5, 2.0, 0.7, 0.3, 0.05, 0.0]),
}

SAMPLERS = ("sample_heun", "sample_dpm_2")


def configs():
    out = []
    for sampler in SAMPLERS:
        for n, smin, smax, rho in KARRAS:
            out.append(
                dict(sampler=sampler, grid="karras", n=n, sigma_min=smin, sigma_max=smax, rho=rho)
            )
        for name in CUSTOM:
            out.append(dict(sampler=sampler, grid=name))
    return out


# ----------------------------------------------------------------------------- runs


def run(sampling, cfg, seed):
    if cfg["grid"] == "karras":
        sigmas = sampling.get_sigmas_karras(
            cfg["n"], cfg["sigma_min"], cfg["sigma_max"], rho=cfg["rho"]
        )
    else:
        sigmas = torch.from_numpy(CUSTOM[cfg["grid"]].copy())
    assert sigmas.dtype == torch.float64, sigmas.dtype
    x_T = float(sigmas[0]) * np.random.default_rng(seed).standard_normal((B, D))

    call_sigma, call_x, call_denoised = [], [], []

    def model(x, sigma):
        assert x.dtype == torch.float64 and sigma.dtype == torch.float64, (x.dtype, sigma.dtype)
        assert sigma.shape == (x.shape[0],) and bool(torch.all(sigma == sigma[0])), sigma
        den = denoise(x.numpy(), 1.0, sigma.numpy())  # alpha = 1: x = x0 + sigma eps
        call_sigma.append(float(sigma[0]))
        call_x.append(x.numpy().copy())
        call_denoised.append(den.copy())
        return torch.from_numpy(den)

    cb_x, cb_i, cb_denoised = [], [], []

    def callback(d):
        cb_i.append(int(d["i"]))
        cb_x.append(d["x"].numpy().copy())
        cb_denoised.append(d["denoised"].numpy().copy())
        assert float(d["sigma_hat"]) == float(d["sigma"])  # s_churn = 0

    fn = getattr(sampling, cfg["sampler"])
    out = fn(
        model, torch.from_numpy(x_T.copy()), sigmas, callback=callback, disable=True, s_churn=0.0
    )
    assert out.dtype == torch.float64
    n_steps = len(sigmas) - 1
    assert cb_i == list(range(n_steps)), cb_i
    out = out.numpy().copy()
    # callback's x is the state at the START of step i (x at sigmas[i]); the state after
    # step i is the next callback's x, and after the last step the returned sample.
    states = np.stack(cb_x[1:] + [out])
    return dict(
        sigmas=sigmas.numpy().copy(),
        x_T=x_T,
        call_sigma=np.asarray(call_sigma),
        call_x=np.stack(call_x),
        call_denoised=np.stack(call_denoised),
        step_x=np.stack(cb_x),
        step_denoised=np.stack(cb_denoised),
        states=states,
        out=out,
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args()
    torch.set_default_dtype(torch.float64)
    torch.set_num_threads(1)
    sampling, version, stood_in = load_kdiffusion_sampling()

    data = {
        "kdiffusion_version": np.asarray(version),
        "torch_version": np.asarray(torch.__version__),
        "numpy_version": np.asarray(np.__version__),
        "torchvision_standin": np.asarray(stood_in),
        "gmm/means": GMM.means,
        "gmm/stds": GMM.stds,
        "gmm/weights": GMM.weights,
    }
    rows = []
    for k, cfg in enumerate(configs()):
        cid = f"K{k:03d}"
        r = run(sampling, cfg, SEED0 + k)
        assert np.all(np.isfinite(r["out"])), cid
        data[f"config/{cid}"] = np.asarray(json.dumps(cfg))
        data[f"seed/{cid}"] = np.asarray(SEED0 + k)
        for key in (
            "sigmas",
            "x_T",
            "call_sigma",
            "call_x",
            "call_denoised",
            "step_x",
            "step_denoised",
            "states",
        ):
            data[f"{key}/{cid}"] = r[key]
        data[f"out/{cid}"] = r["out"]
        # denoiser calls per step, in order (a Heun/DPM-2 step into sigma = 0 makes one)
        per_step = np.asarray([1 if s == 0 else 2 for s in r["sigmas"][1:]], dtype=np.int64)
        assert per_step.sum() == r["call_sigma"].size, (cid, per_step, r["call_sigma"])
        data[f"nfe_per_step/{cid}"] = per_step
        rows.append((cid, cfg, r["sigmas"].size - 1, int(r["call_sigma"].size)))
        print(
            f"{cid} {json.dumps(cfg)}: {r['sigmas'].size - 1} steps, {r['call_sigma'].size} denoiser calls"
        )
    pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **data)
    print("\n| id | sampler | grid | steps | denoiser calls |")
    print("|---|---|---|---|---|")
    for cid, cfg, n, nfe in rows:
        if cfg["grid"] == "karras":
            g = f"karras n={cfg['n']}, sigma_min={cfg['sigma_min']}, sigma_max={cfg['sigma_max']}, rho={cfg['rho']:g}"
        else:
            g = cfg["grid"]
        print(f"| {cid} | {cfg['sampler']} | {g} | {n} | {nfe} |")
    print(f"wrote {args.out}: {len(rows)} runs (torchvision stand-in used: {stood_in})")


if __name__ == "__main__":
    main()
