"""Moves the frozen UniPC plans from LAPACK's solve to dpm_jax's fixed elimination.

    python tools/refreeze_unipc_solve.py     # rewrites tests/data/frozen_plans.npz in place

UniPC's coefficients rho solve a small Vandermonde system (n <= 3). The frozen plans
(``tools/freeze_plans.py``) took it from ``np.linalg.solve``, whose last bits depend
on OpenBLAS's CPU kernel: on Haswell / Zen kernels 146 frozen cases differed from the
AVX-512 values in the file. The planner now solves by Gaussian elimination in Python
floats (``dpm_jax._coeffs.solve_small``), the same bits on every CPU. This script
rebuilds each UniPC case, stores its ``m_coef`` (the only field the solve reaches) as
the frozen value and keeps the LAPACK one as ``<i>/m_coef_lapack``, so that
``tests/plan/test_plan_freeze.py`` checks the new values bitwise and their distance to
the old ones. It refuses to run twice (the old values would be lost) and touches no
other case.
"""

from __future__ import annotations

import json
import pathlib
import sys
import warnings

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from plan_cases import SCHEDULES, cases, kwargs_of

import dpm_jax

PATH = ROOT / "tests" / "data" / "frozen_plans.npz"


def main():
    z = np.load(PATH)
    arrays = {k: z[k] for k in z.files}
    if any(k.endswith("/m_coef_lapack") for k in arrays):
        raise SystemExit("already moved: the file holds m_coef_lapack entries")
    records = json.loads(str(arrays["records_json"]))
    changed, worst = 0, 0.0
    for i, (case, rec) in enumerate(zip(cases(), records)):
        if case["method"] != "unipc" or "error" in rec or f"{i}/m_coef" not in arrays:
            continue
        one_node = case["steps"] == 1 and case["skip_type"] in ("karras", "exponential")
        if one_node and case.get("final_sigmas_type") is not None:
            continue  # a deliberate change of the redesign (see the test's _one_karras_node)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            plan = dpm_jax.build_plan(SCHEDULES[case["schedule"]], **kwargs_of(case))
        old, new = arrays[f"{i}/m_coef"], np.asarray(plan.m_coef)
        assert old.shape == new.shape and old.dtype == new.dtype
        arrays[f"{i}/m_coef_lapack"] = old
        arrays[f"{i}/m_coef"] = new
        if not np.array_equal(old, new):
            changed += 1
            worst = max(worst, float(np.max(np.abs(new - old))))
    np.savez_compressed(PATH, **arrays)
    print(f"{changed} UniPC plans changed; largest difference {worst:.3g}")


if __name__ == "__main__":
    main()
