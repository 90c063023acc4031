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
* ``UNIPC_SOLVE``: UniPC's coefficients were solved with ``np.linalg.solve``, whose
  last bits depend on OpenBLAS's CPU kernel (the file held the AVX-512 values; the
  Haswell / Zen kernels differed in 146 cases). The planner now uses a fixed
  elimination in Python floats, the same on every CPU; ``tools/refreeze_unipc_solve.py``
  stored its values (148 cases changed, by at most 1.8e-15) and kept LAPACK's as
  ``<i>/m_coef_lapack``, which the values here must match to 1e-14 relative.

* ``UNUSED``: an option the run does not read (``karras_rho`` on a time-uniform grid,
  ``solver_type`` at order 1, ``multistep3_variant`` for a singlestep solver, ...) was
  accepted and ignored; it is now refused with a ValueError naming it (every option used or
  refused). For each such case the test checks that the named options were set and that
  the case without them rebuilds the frozen plan bitwise: they were ignored indeed.
  Except ``EULER_SIDE_EFFECT``: ``euler_at_final`` is not an option of
  ``method="singlestep"``, but setting it selected diffusers' grid family as a side effect
  (the 4 such frozen cases differ from the cases without it); it is refused now too, and
  the test checks that exactly those 4 cases are refused, naming it.

``test_plans_do_not_depend_on_the_blas_kernel`` rebuilds the plans under three OpenBLAS
kernels (``OPENBLAS_CORETYPE``) in subprocesses: the planner uses no BLAS or LAPACK.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import re
import subprocess
import sys
import warnings

import numpy as np
import pytest
from paths import DATA, ROOT
from plan_cases import FIELDS, META, SCHEDULES, cases, kwargs_of

import dpm_jax

PATH = DATA / "frozen_plans.npz"
TESTS = ROOT / "tests"


@functools.cache
def _frozen():
    z = np.load(PATH)
    return {k: z[k] for k in z.files}, json.loads(str(z["records_json"]))


DEFAULTS = {f.name: f.default for f in dataclasses.fields(dpm_jax.SolverOptions)}


def _build(case):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return dpm_jax.build_plan(SCHEDULES[case["schedule"]], **kwargs_of(case))


def _build_refusing_unused(case, rec):
    """The plan of a case; for a frozen plan now refused for an option the run does not read
    (UNUSED), the plan without the options named, after checking each was set."""
    case, dropped = dict(case), []
    while True:
        try:
            return _build(case), dropped
        except ValueError as err:
            name = re.match(r"`(\w+)` does not apply", str(err))
            if "error" in rec or name is None:
                raise
            name = name.group(1)
            assert name in case and case[name] != DEFAULTS[name], (case, str(err))
            dropped.append(name)
            case.pop(name)


CASES = cases()
CHUNKS = 8


def test_file_matches_cases():
    _, records = _frozen()
    assert len(records) == len(CASES)
    assert sum("error" not in r for r in records) > 1000  # most structured cases build a plan


@pytest.mark.parametrize("chunk", range(CHUNKS))
def test_frozen_plans_bitwise(chunk):
    arrays, records = _frozen()
    checked = unused_cases = 0
    euler_side_effect: list = []
    for i in range(chunk, len(CASES), CHUNKS):
        case, rec = CASES[i], records[i]
        if rec.get("error") == "AssertionError":  # INTERNAL: now a clear ValueError
            assert case["algorithm_type"].startswith("sde-") and case["t_start"] < case["t_end"]
            with pytest.raises(ValueError, match="algorithm_type"):
                _build_refusing_unused(case, {})  # (past the UNUSED options it also has)
            continue
        if "error" in rec:
            with pytest.raises((ValueError, TypeError)) as info:
                _build(case)
            assert type(info.value).__name__ == rec["error"], (i, case, str(info.value))
            continue
        if case["method"] == "singlestep" and case.get("euler_at_final"):  # EULER_SIDE_EFFECT
            _, dropped = _build_refusing_unused(case, rec)
            assert "euler_at_final" in dropped, (i, dropped)
            euler_side_effect.append(i)
            continue
        plan, dropped = _build_refusing_unused(case, rec)
        unused_cases += bool(dropped)
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
        if f"{i}/m_coef_lapack" in arrays:  # UNIPC_SOLVE
            lapack = arrays[f"{i}/m_coef_lapack"]
            np.testing.assert_allclose(plan.m_coef, lapack, rtol=1e-14, atol=1e-15)
        assert {m: getattr(plan, m) for m in META} == rec["meta"], (i, case)
        assert plan.nfe == rec["nfe"]
        checked += 1
    assert checked > 100 and unused_cases < checked
    EULER_SIDE_EFFECT.extend(euler_side_effect)


EULER_SIDE_EFFECT: list = []


def test_euler_side_effect_cases_are_the_four_known():
    if len(EULER_SIDE_EFFECT) == 0:  # (the chunks ran in another process: count here)
        _, records = _frozen()
        found = [
            i
            for i, (c, r) in enumerate(zip(CASES, records))
            if "error" not in r and c["method"] == "singlestep" and c.get("euler_at_final")
            and not _one_karras_node(c)
        ]  # fmt: skip
        assert len(found) == 4, found


def _one_karras_node(case) -> bool:
    return (
        case["steps"] == 1
        and case["skip_type"] in ("karras", "exponential")
        and case.get("final_sigmas_type") is not None
    )


def _digest(coretype: str | None) -> str:
    """A digest of every frozen case's plan, built in a fresh process under ``coretype``."""
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_CORETYPE"}
    if coretype is not None:
        env["OPENBLAS_CORETYPE"] = coretype
    code = (
        f"import hashlib, sys, warnings; sys.path[:0] = {[str(TESTS), str(TESTS.parent)]!r}\n"
        "import numpy as np, dpm_jax\n"
        "from plan_cases import FIELDS, SCHEDULES, cases, kwargs_of\n"
        "h = hashlib.sha256()\n"
        "for case in cases():\n"
        "    try:\n"
        "        with warnings.catch_warnings():\n"
        "            warnings.simplefilter('ignore')\n"
        "            plan = dpm_jax.build_plan(SCHEDULES[case['schedule']], **kwargs_of(case))\n"
        "    except (ValueError, TypeError) as e:\n"
        "        h.update(type(e).__name__.encode()); continue\n"
        "    for f in FIELDS:\n"
        "        h.update(np.ascontiguousarray(getattr(plan, f)).tobytes())\n"
        "print(h.hexdigest())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip().splitlines()[-1]


def test_plans_do_not_depend_on_the_blas_kernel():
    """The same plans under the default kernel and under OPENBLAS_CORETYPE=Haswell and
    Sandybridge. (With np.linalg.solve the three gave three different UniPC plans on an
    AVX-512 machine, whose default kernel is SkylakeX's.)"""
    assert _digest(None) == _digest("Haswell") == _digest("Sandybridge")
