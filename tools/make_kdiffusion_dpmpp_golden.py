"""Golden reference vectors from k-diffusion's DPM-Solver++ samplers.

Run (needs torch + k-diffusion 0.1.1.post1, not part of dpm_jax's dependencies):

    /work/venvgold/bin/python tools/make_kdiffusion_dpmpp_golden.py

Writes tests/data/kdiffusion_dpmpp_golden.npz (see tests/data/KDIFFUSION_GOLDEN_README.md):
runs of ``sample_dpmpp_2m``, ``sample_dpmpp_2m_sde`` (solver_type "midpoint" and
"heun") and ``sample_dpmpp_3m_sde`` (eta = 1) on Karras grids, with the exact GMM
denoiser of tests/diffusers_gmm.py in VE form (alpha = 1), float64. The SDE samplers
get a noise sampler that returns pre-drawn standard normals in call order (stored as
``noise/ID``), so dpm_jax can be run with the same noise. k-diffusion's modules are
loaded as ``tools/make_kdiffusion_golden.py`` does.
"""

from __future__ import annotations

import importlib.util
import json
import pathlib
import sys

import numpy as np
import torch

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from diffusers_gmm import GMM, denoise

_spec = importlib.util.spec_from_file_location(
    "make_kdiffusion_golden", ROOT / "tools" / "make_kdiffusion_golden.py"
)
_kd = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_kd)

OUT = ROOT / "tests" / "data" / "kdiffusion_dpmpp_golden.npz"
B, D = 5, GMM.means.shape[1]
SEED0 = 50240
SAMPLERS = [
    ("sample_dpmpp_2m", {}),
    ("sample_dpmpp_2m_sde", {"solver_type": "midpoint"}),
    ("sample_dpmpp_2m_sde", {"solver_type": "heun"}),
    ("sample_dpmpp_3m_sde", {}),
]
GRIDS = [(n, 0.002, 80.0) for n in (5, 10, 20)] + [(12, 0.03, 14.6)]


class _Noise:
    """Returns z[0], z[1], ... in call order (k-diffusion calls it once per noisy step)."""

    def __init__(self, z):
        self.z, self.i = z, 0

    def __call__(self, sigma, sigma_next):
        out = torch.from_numpy(self.z[self.i].copy())
        self.i += 1
        return out


def main():
    torch.set_default_dtype(torch.float64)
    torch.set_num_threads(1)
    sampling, version, stood_in = _kd.load_kdiffusion_sampling()
    data = {
        "kdiffusion_version": np.asarray(version),
        "torch_version": np.asarray(torch.__version__),
    }
    k = 0
    for name, kw in SAMPLERS:
        for n, smin, smax in GRIDS:
            cid = f"P{k:03d}"
            rng = np.random.default_rng(SEED0 + k)
            sigmas = sampling.get_sigmas_karras(n, smin, smax, rho=7.0)
            x_T = smax * rng.standard_normal((B, D))
            z = rng.standard_normal((n, B, D))
            calls = []

            def model(x, sigma):
                calls.append(float(sigma[0]))
                return torch.from_numpy(denoise(x.numpy(), 1.0, sigma.numpy()))

            extra = dict(kw)
            noise = None
            if name.endswith("_sde"):
                noise = _Noise(z)
                extra.update(eta=1.0, noise_sampler=noise)
            out = getattr(sampling, name)(
                model, torch.from_numpy(x_T.copy()), sigmas, disable=True, **extra
            ).numpy()
            assert np.all(np.isfinite(out)) and len(calls) == n
            cfg = dict(sampler=name, n=n, sigma_min=smin, sigma_max=smax, rho=7.0, **kw)
            data[f"config/{cid}"] = np.asarray(json.dumps(cfg))
            data[f"sigmas/{cid}"] = sigmas.numpy().copy()
            data[f"x_T/{cid}"] = x_T
            data[f"out/{cid}"] = out
            if noise is not None:
                assert noise.i == n - 1  # no noise on the last step, into sigma = 0
                data[f"noise/{cid}"] = z
            print(cid, json.dumps(cfg), f"{len(calls)} calls")
            k += 1
    np.savez_compressed(OUT, **data)
    print(f"wrote {OUT}: {k} runs")


if __name__ == "__main__":
    main()
