"""Golden data from the official DPM-Solver-v3 code (github.com/thu-ml/DPM-Solver-v3).

Run (needs torch, not part of dpm_jax's dependencies; the official repository's
``dpm_solver_v3.py`` is read from a checkout or a bare git mirror, never copied here):

    /work/venvgold/bin/python tools/make_v3_golden.py --official /path/to/DPM-Solver-v3

``--official`` is a checkout (or bare git directory) of thu-ml/DPM-Solver-v3, or the
path of its ``dpm_solver_v3.py``. The file is self-contained (its NoiseScheduleVP,
model_wrapper and DPM_Solver_v3 only import torch, numpy, math and os). Writes
tests/data/v3_golden.npz, read by tests/golden/test_v3_golden.py.

The official code runs in float64 on the CPU, with two source changes made in memory
(recorded in the file as ``patches``): ``torch.FloatTensor(`` -> ``torch.tensor(`` (it
packs the step's times into a float32 tensor; with the default dtype float64 this
keeps them float64) and ``Tensor.cuda`` made a no-op (no GPU; the device argument is
"cpu").

The problem: the exact noise predictor of a Gaussian N(MU, SIGMA) in d = 4 (full
covariance; samples of shape (1, 2, 2), as the official code wants (N + 1, C, H, W)
statistics) on the continuous VP linear schedule (beta 0.1 to 20, T = 1, t from 1 to
1 / total_N = 1e-3: dpm_jax's ``schedules.vp_linear()`` and its t_eps), and statistics
made up from smooth formulas on the official grid (N + 1 points uniform in lambda from
lambda(1) to lambda(1e-3), index 0 at t = 1). Two families:

* ``generic``: l = 1 + 0.3 sin(0.8 lambda + 0.9 k), s = 0.2 cos(0.7 lambda + 1.1 k) - 0.1,
  b = 0.05 sin(0.5 lambda - 0.6 k) (k the dimension). The official code integrates
  e^{L+S} and e^{-S} b by the plain trapezoid rule on the statistics' grid; dpm_jax with
  L + S linear between the points (the exponential trapezoid rule): the two differ by
  O(h^2) in the grid step h. Run on N = 2400 (the stored grid) and N = 1200 (every other
  point of it), so the test can check the h^2 scaling.
* ``matched``: the same l, s = -l, b = 0, on N = 1200. Then L + S = 0 and B = C = 0, and
  both codes' integrals are the same sums (to rounding) except the moments of order
  >= 2, int (lambda - lambda_s)^2 / 2 (which the official trapezoid rule gets wrong by
  h^2 (lambda_t - lambda_s) / 12): run for the cases without them
  (``exact_in_matched``).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import pathlib
import subprocess
import tempfile
import types

import numpy as np
import torch

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "data" / "v3_golden.npz"

BETA_0, BETA_1 = 0.1, 20.0
T_START, T_END = 1.0, 1e-3
SHAPE = (1, 2, 2)
D = 4
B = 3
N_FINE = 2400
SEED = 2310_13268

PATCHES = [("torch.FloatTensor(", "torch.tensor(", 2)]

# (name, steps, order, skip_type, use_corrector, p_pseudo, c_pseudo, lower_order_final,
#  half, degenerated)
CASES = [
    ("o1_s5_logsnr", 5, 1, "logSNR", True, False, True, True, False, False),
    ("o1_s6_uniform_nocorr", 6, 1, "time_uniform", False, False, True, True, False, False),
    ("o2_s5_logsnr", 5, 2, "logSNR", True, False, True, True, False, False),
    ("o2_s5_logsnr_ppseudo", 5, 2, "logSNR", True, True, True, True, False, False),
    ("o2_s6_logsnr_nocorr", 6, 2, "logSNR", False, False, True, True, False, False),
    ("o2_s6_uniform_cnopseudo", 6, 2, "time_uniform", True, False, False, True, False, False),
    ("o2_s10_uniform_half", 10, 2, "time_uniform", True, False, True, True, True, False),
    ("o2_s10_quadratic", 10, 2, "time_quadratic", True, False, True, True, False, False),
    ("o2_s6_edm", 6, 2, "edm", True, False, True, True, False, False),
    ("o1_s10_quadratic", 10, 1, "time_quadratic", True, False, True, True, False, False),
    ("o2_s6_edm_nocorr", 6, 2, "edm", False, False, True, True, False, False),
    ("o2_s10_uniform_half_cnopseudo", 10, 2, "time_uniform", True, False, False, True, True, False),
    ("o2_s5_logsnr_nolof_nocorr", 5, 2, "logSNR", False, True, True, False, False, False),
    ("o3_s5_logsnr", 5, 3, "logSNR", True, False, True, True, False, False),
    ("o3_s5_logsnr_ppseudo", 5, 3, "logSNR", True, True, True, True, False, False),
    ("o3_s6_logsnr_nolof", 6, 3, "logSNR", True, False, True, False, False, False),
    ("o3_s6_uniform_nocorr", 6, 3, "time_uniform", False, False, True, True, False, False),
    ("o3_s10_logsnr_cnopseudo", 10, 3, "logSNR", True, False, False, True, False, False),
    ("o3_s10_uniform_half_ppseudo", 10, 3, "time_uniform", True, True, True, False, True, False),
    ("o3_s10_edm", 10, 3, "edm", True, False, True, True, False, False),
    ("o3_s6_logsnr_degenerated", 6, 3, "logSNR", True, False, True, True, False, True),
]
FIELDS = (
    "name",
    "steps",
    "order",
    "skip_type",
    "use_corrector",
    "p_pseudo",
    "c_pseudo",
    "lower_order_final",
    "half",
    "degenerated",
)
# (family, N): every case runs on the first two; on "matched" the cases whose official
# integrals are exact there (``exact_in_matched``)
RUNS = [("generic", N_FINE), ("generic", N_FINE // 2), ("matched", N_FINE // 2)]


def exact_in_matched(c: dict) -> bool:
    """Polynomials of degree <= 1 only (predictor order <= 2, corrector order <= 2): with
    L + S = 0 and b = 0 the official trapezoid sums are then exact, as dpm_jax's are."""
    top = c["order"] + (int(c["c_pseudo"]) if c["use_corrector"] else 0)
    return c["order"] <= 2 and top <= 2 and not c["degenerated"]


def lam_of_t(t):
    la = -0.25 * t**2 * (BETA_1 - BETA_0) - 0.5 * t * BETA_0
    return la - 0.5 * np.log(-np.expm1(2.0 * la))


def problem():
    rng = np.random.default_rng(SEED)
    a = rng.normal(size=(D, D))
    sigma = a @ a.T / D + 0.3 * np.eye(D)
    mu = rng.normal(size=D)
    x_T = rng.normal(size=(B,) + SHAPE)
    return mu, sigma, x_T


def statistics(n):
    """(l, s, b) of the ``generic`` family, (n + 1, *SHAPE), on the official grid."""
    lam = np.linspace(lam_of_t(T_START), lam_of_t(T_END), n + 1)[:, None]
    k = np.arange(D)[None, :]
    l = 1.0 + 0.3 * np.sin(0.8 * lam + 0.9 * k)  # noqa: E741
    s = 0.2 * np.cos(0.7 * lam + 1.1 * k) - 0.1
    b = 0.05 * np.sin(0.5 * lam - 0.6 * k)
    return tuple(v.reshape((n + 1,) + SHAPE) for v in (l, s, b))


def family(name, l, s, b, n):  # noqa: E741
    step = (l.shape[0] - 1) // n
    l, s, b = l[::step], s[::step], b[::step]  # noqa: E741
    if name == "matched":
        s, b = -l, np.zeros_like(l)
    return l, s, b


def load_official(path: pathlib.Path):
    """The source of dpm_solver_v3.py (from a file, a checkout or a bare git dir) and
    the commit it came from (or None)."""
    commit = None
    if path.is_file():
        src = path.read_text()
    else:
        git_dir = None
        for cand in (path, path / ".git", path / "repo"):
            if (cand / "HEAD").is_file() and (cand / "objects").is_dir():
                git_dir = cand
                break
        if git_dir is None:
            src = (path / "dpm_solver_v3.py").read_text()
            git_dir = path
        else:
            src = subprocess.run(
                ["git", f"--git-dir={git_dir}", "show", "HEAD:dpm_solver_v3.py"],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
        with contextlib.suppress(subprocess.CalledProcessError, FileNotFoundError):
            commit = subprocess.run(
                ["git", f"--git-dir={git_dir}", "rev-parse", "HEAD"]
                if (git_dir / "HEAD").is_file()
                else ["git", "-C", str(git_dir), "rev-parse", "HEAD"],
                check=True,
                capture_output=True,
                text=True,
            ).stdout.strip()
    for old, new, count in PATCHES:
        assert src.count(old) == count, (old, src.count(old))
        src = src.replace(old, new)
    mod = types.ModuleType("official_dpm_solver_v3")
    exec(compile(src, "dpm_solver_v3.py", "exec"), mod.__dict__)
    return mod, commit


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--official", required=True, type=pathlib.Path)
    ap.add_argument("--out", type=pathlib.Path, default=OUT)
    args = ap.parse_args()

    torch.set_default_dtype(torch.float64)
    torch.Tensor.cuda = lambda self, *a, **k: self  # CPU only
    off, commit = load_official(args.official)

    mu, sigma, x_T = problem()
    eig, q = np.linalg.eigh(sigma)
    ns = off.NoiseScheduleVP("linear", continuous_beta_0=BETA_0, continuous_beta_1=BETA_1)
    mu_t, eig_t, q_t = (torch.from_numpy(v) for v in (mu, eig, q))

    def net(x, t, cond=None):
        """The exact eps of N(MU, SIGMA) (the same formula as the test's, in torch)."""
        a = ns.marginal_alpha(t)[:, None]
        s = ns.marginal_std(t)[:, None]
        y = (x.reshape(x.shape[0], D) - a * mu_t) @ q_t
        return (s * (y / (a * a * eig_t + s * s)) @ q_t.T).reshape(x.shape)

    model_fn = off.model_wrapper(net, ns, model_type="noise", guidance_type="uncond")
    l_f, s_f, b_f = statistics(N_FINE)

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for fam, n in RUNS:
            d = pathlib.Path(tmp) / f"{fam}_{n}"
            d.mkdir()
            l, s, b = family(fam, l_f, s_f, b_f, n)  # noqa: E741
            np.savez(d / "l.npz", l=l)
            np.savez(d / "sb.npz", s=s, b=b)
            for case in CASES:
                c = dict(zip(FIELDS, case))
                if fam == "matched" and not exact_in_matched(c):
                    continue
                with contextlib.redirect_stdout(io.StringIO()):
                    solver = off.DPM_Solver_v3(
                        str(d),
                        ns,
                        steps=c["steps"],
                        t_start=T_START,
                        t_end=T_END,
                        skip_type=c["skip_type"],
                        degenerated=c["degenerated"],
                        device="cpu",
                    )
                    x = solver.sample(
                        torch.from_numpy(x_T.copy()),
                        model_fn,
                        order=c["order"],
                        p_pseudo=c["p_pseudo"],
                        use_corrector=c["use_corrector"],
                        c_pseudo=c["c_pseudo"],
                        lower_order_final=c["lower_order_final"],
                        half=c["half"],
                    )
                assert x.dtype == torch.float64
                key = f"{fam}_{n}/{c['name']}"
                out[f"out/{key}"] = x.numpy()
                out[f"index/{key}"] = np.asarray(solver.indexes, np.int64)
                out[f"t/{key}"] = solver.timesteps.numpy()
                print(key, float(np.abs(x.numpy()).max()))

    meta = {
        "official_repo": "https://github.com/thu-ml/DPM-Solver-v3",
        "official_commit": commit,
        "official_file": "dpm_solver_v3.py",
        "patches": [[o, n] for o, n, _ in PATCHES] + [["Tensor.cuda", "no-op (CPU)"]],
        "torch": torch.__version__,
        "numpy": np.__version__,
        "schedule": {"official": "NoiseScheduleVP('linear', 0.1, 20.0)", "dpm_jax": "vp_linear()"},
        "t_start": T_START,
        "t_end": T_END,
        "fields": FIELDS,
        "cases": CASES,
        "runs": RUNS,
        "seed": SEED,
        "shape": SHAPE,
        "statistics": "see tools/make_v3_golden.py: statistics(), family()",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        args.out,
        meta=np.array(json.dumps(meta)),
        mu=mu,
        sigma=sigma,
        x_T=x_T,
        eig=eig,
        q=q,
        l=l_f,
        s=s_f,
        b=b_f,
        **out,
    )
    print("wrote", args.out, args.out.stat().st_size, "bytes; commit", commit)


if __name__ == "__main__":
    main()
