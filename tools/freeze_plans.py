"""Freezes what the planner computes, before the planner is redesigned.

    python tools/freeze_plans.py        # writes tests/data/frozen_plans.npz

Builds every case of ``tests/plan_cases.py`` with ``dpm_jax.build_plan`` and
stores each plan's arrays and static fields, or the name of the exception it
raised. ``tests/test_plan_freeze.py`` rebuilds the cases and compares bitwise.
Run once, on the commit before the redesign (recorded in the file as
``source_commit``); rerunning it later would freeze the new code against itself.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
import warnings

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from plan_cases import FIELDS, META, SCHEDULES, cases, kwargs_of

import dpm_jax

OUT = ROOT / "tests" / "data" / "frozen_plans.npz"


def main():
    arrays, records = {}, []
    n_ok = 0
    for i, case in enumerate(cases()):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                plan = dpm_jax.build_plan(SCHEDULES[case["schedule"]], **kwargs_of(case))
        except (ValueError, TypeError, AssertionError) as e:
            records.append({"error": type(e).__name__, "message": str(e)})
            continue
        n_ok += 1
        for f in FIELDS:
            arrays[f"{i}/{f}"] = np.asarray(getattr(plan, f))
        records.append({"meta": {m: getattr(plan, m) for m in META}, "nfe": plan.nfe})
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    np.savez_compressed(OUT, records_json=json.dumps(records), source_commit=commit, **arrays)
    print(
        f"{len(records)} cases: {n_ok} plans, {len(records) - n_ok} refused; wrote {OUT} "
        f"({OUT.stat().st_size / 1e6:.2f} MB) from {commit}"
    )


if __name__ == "__main__":
    main()
