"""DPM-Solver-v3 against the training-free built-in solvers, judged on held-out noise.

    python benchmarks/v3_quality.py            # both problems, ~17 minutes on 2 shared cores
    python benchmarks/v3_quality.py --quick    # fewer EMS settings and samples, ~4 minutes
    python benchmarks/v3_quality.py --problems digits

Problems (as ``benchmarks/quality.py`` and ``benchmarks/optimize_grids.py``): the ideal
denoiser of the 1,797 sklearn digits (``problems.digits()``, 64-D, in [-1, 1]),
``digits``: unconditional; ``digits_guided``: class-conditional (sample b asks for digit
b % 10) with classifier-free guidance at scale 7.5. ``vp_linear`` from t = 1 to 1e-3,
float64. The reference is the exact probability-flow ODE solution
(``exact_ode_solution``: DOP853 per sample, rtol = atol = 1e-11); the figure is the median
over samples of the per-sample RMS error.

Noise: VALIDATION = 128 x_T (NumPy seed 31), on which every choice is made (the grid, the
v3 options, the EMS setting, the best built-in solver), and HELD_OUT = 256 other x_T
(seed 32), on which every figure is reported. The EMS noise is jax's (key 33), the K-point
subsets of the data NumPy seed 34, the teacher's x_T seed 35, the x_T of the statistics
along the ODE seed 36.

1. EMS: ``estimate_ems(model, schedule, x_0, N, probes)`` at the forward-noised points
   ``alpha x_0 + sigma z``, as the paper does, with the digits themselves as x_0 (the
   ideal denoiser's own data: all 1,797, or K of them; for the guided model 174 per
   class, point j of digit j % 10 so that each batch of 100 matches the guided model's
   labels) or a teacher's samples (the model's own: 200 steps of DPM-Solver++(3M), as the
   paper does for guided models); and ``estimate_ems(model, schedule, x_T=...)`` ("ode"):
   at the states of the model's own ODE from K fresh noises (sample j asks for digit
   j % 10 in the guided case). For a few (N, K, probes). The cost: per grid point K *
   probes jvps (l), then K evaluations and K jvps (s, b); ``(N + 1) K`` evaluations and
   ``(N + 1) K (probes + 1)`` jvps of one sample each (a jvp costs about two to three
   evaluations), the teacher's ``200 K`` calls, and the wall time on this machine. "const.
   pixels": the pixels where the estimator set s = 0 at every grid point (f is constant
   there, whatever x: the pixels that are the same in all of the model's data, 3 of 64).
   For each setting, v3's best validated configuration at NFE 5 and 6 (on HELD_OUT); the
   cheapest setting within 5 % of the lowest validation error (geometric mean over NFE 5
   and 6) makes the main table.
2. The main table, NFE 4, 5, 6, 8, 10: v3 (orders 2 and 3; grid in logSNR, time_uniform,
   time_quadratic, karras; ``p_pseudo`` on/off; the corrector off, official
   (``c_pseudo=True``) or ``c_pseudo=False``; each chosen on VALIDATION per NFE and
   order), the same sampler with ``degenerated=True`` (l = 1, s = b = 0: what the
   statistics add), against UniPC-2, UniPC-3 (bh2), DPM-Solver++(2M), DPM-Solver++(3M)
   and DEIS (tAB, order 3), each on its best built-in grid (time_uniform, logSNR,
   time_quadratic, chosen on VALIDATION per solver and NFE). The ratio: v3 (the order
   chosen on VALIDATION) / the best built-in solver (chosen on VALIDATION), both on
   HELD_OUT; beside it the ratio to the lowest built-in figure on HELD_OUT (where some
   samples take another branch of the flow, the median sits on a cliff and a validated
   choice need not carry over, e.g. NFE 4).
3. The goal, "at NFE 5 and 6 at most half the error of the best training-free built-in
   on the same budget", judged on those ratios.

Output: what it prints, also written to ``benchmarks/results/v3_quality.md`` (with
``--quick``: ``v3_quality_quick.md``).
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import os
import platform
import sys
import time

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp
import numpy as np

import dpm_jax
from dpm_jax import schedules
from dpm_jax.testing import problems
from dpm_jax.testing.exact import exact_ode_solution
from dpm_jax.v3 import estimate_ems, sample_v3

NFES = (4, 5, 6, 8, 10)
TRADE_NFES = (5, 6)
T_START, T_END = 1.0, 1e-3
VALIDATION, HELD_OUT = 128, 256
SEED_VAL, SEED_TEST, SEED_EMS, SEED_SUBSET = 31, 32, 33, 34
REF_TOL = 1e-11
BUILTIN_GRIDS = ("time_uniform", "logSNR", "time_quadratic")
V3_GRIDS = ("logSNR", "time_uniform", "time_quadratic", "karras")
GRID_SHORT = {
    "time_uniform": "t-unif",
    "logSNR": "logSNR",
    "time_quadratic": "t-quad",
    "karras": "karras",
}
BUILTINS = {
    "UniPC-2": dict(method="unipc", order=2, algorithm_type="dpmsolver++"),
    "UniPC-3": dict(method="unipc", order=3, algorithm_type="dpmsolver++"),
    "DPM-Solver++(2M)": dict(method="multistep", order=2, algorithm_type="dpmsolver++"),
    "DPM-Solver++(3M)": dict(method="multistep", order=3, algorithm_type="dpmsolver++"),
    "DEIS-3": dict(method="deis", order=3),
}
#: (N, K, probes, x_0 source); K = 1797 is the whole data set; "teacher": K samples of the
#: model itself (TEACHER_STEPS of DPM-Solver++(3M), time_quadratic, from NumPy seed 35)
EMS_SETTINGS = (
    (100, 256, 1, "data"),
    (100, 1797, 1, "data"),
    (200, 1797, 1, "data"),
    (200, 1797, 4, "data"),
    (400, 1797, 1, "data"),
    (200, 1797, 1, "teacher"),
    (100, 1797, 1, "ode"),
    (200, 1797, 1, "ode"),
)
EMS_SETTINGS_QUICK = ((50, 256, 1, "data"), (100, 1797, 1, "data"), (100, 1000, 1, "ode"))
#: guided: K = 1740 is 174 points of each class (the smallest class has 174); the teacher's
#: 1,700 samples ask for digit j % 10 (sample j)
GUIDED_SETTINGS = (
    (100, 1740, 1, "data"),
    (200, 1740, 1, "data"),
    (100, 1700, 1, "teacher"),
    (200, 1700, 1, "teacher"),
    (100, 1700, 1, "ode"),
    (200, 1700, 1, "ode"),
)
GUIDED_SETTINGS_QUICK = ((100, 1740, 1, "data"), (100, 1700, 1, "teacher"), (100, 1000, 1, "ode"))
TEACHER_STEPS = 200
SEED_TEACHER = 35
SEED_ODE = 36
SEED_TRAIN = 30  # the 64 training x_T of the fitted grids
TRAIN = 64
GUIDANCE = 7.5
BATCH = 256  # estimate_ems' batch_size
GUIDED_BATCH = 100  # guided: 10 points of each class per batch
RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def median_rms(x, ref) -> float:
    """The median over samples of each sample's RMS error (a sample that did not stay
    finite counts as an infinite error)."""
    err = np.asarray(x).reshape(len(ref), -1) - np.asarray(ref).reshape(len(ref), -1)
    per = np.sqrt(np.mean(err**2, axis=1))
    return float(np.median(np.where(np.isfinite(per), per, np.inf)))


def load() -> str:
    return f"load {os.getloadavg()[0]:.2f}"


def fmt(v: float) -> str:
    return f"{v:.2e}" if np.isfinite(v) else "nan"


# --- the EMS ------------------------------------------------------------------------------


def ems_points(prob, k: int, guided: bool) -> np.ndarray:
    """The K data points of the statistics. Unconditional: all of them, or a NumPy-seeded
    subset. Guided: the points ordered so that point j has label j % 10 (each class in a
    seeded random order; 174 per class at most, the smallest class), so that a batch of
    GUIDED_BATCH points matches the guided model's labels ``arange(GUIDED_BATCH) % 10``."""
    data = prob.data
    rng = np.random.default_rng(SEED_SUBSET)
    if guided:
        per = [rng.permutation(np.flatnonzero(prob.labels == c)) for c in range(10)]
        m = min(len(q) for q in per)
        order = np.stack([q[:m] for q in per], axis=1).reshape(-1)  # labels 0, 1, ..., 9, 0, ...
        return data[order[:k]]
    if k < data.shape[0]:
        return data[np.sort(rng.choice(data.shape[0], k, replace=False))]
    return data


def teacher_points(model, sched, k: int, batch: int, dim: int) -> np.ndarray:
    """k samples of the model itself (the paper's EMS data for guided models): TEACHER_STEPS
    of DPM-Solver++(3M) on the time_quadratic grid, ``batch`` at a time (the guided
    model's batch: sample j asks for digit j % 10)."""
    x = np.random.default_rng(SEED_TEACHER).normal(size=(k, dim))
    opts = dict(method="multistep", order=3, algorithm_type="dpmsolver++")
    out = [
        run_builtin(
            model, jnp.asarray(x[i : i + batch]), sched, TEACHER_STEPS, "time_quadratic", opts
        )
        for i in range(0, k, batch)
    ]
    return np.concatenate(out)


def make_ems(model, sched, pts, src: str, n: int, probes: int, batch: int):
    """estimate_ems on the points (x_0, or with ``src == "ode"`` the x_T of the ODE);
    returns the EMS, the number of pixels with s = 0 at every grid point and the wall
    time."""
    t0 = time.perf_counter()
    where = dict(x_T=jnp.asarray(pts)) if src == "ode" else dict(data=jnp.asarray(pts))
    ems = estimate_ems(
        model,
        sched,
        key=jax.random.key(SEED_EMS),
        n_points=n,
        probes=probes,
        batch_size=batch,
        **where,
    )
    jax.block_until_ready(ems.b)
    wall = time.perf_counter() - t0
    return ems, int(np.all(np.asarray(ems.s) == 0.0, axis=0).sum()), wall


def ems_calls(n: int, k: int, probes: int) -> tuple[int, int]:
    """(evaluations, jvps) of one sample each that estimate_ems asks of the model."""
    return (n + 1) * k, (n + 1) * k * (probes + 1)


# --- the solvers --------------------------------------------------------------------------


#: the corrector: off, the official default (c_pseudo=True: one order higher, divided
#: differences), or c_pseudo=False (the predictor's order, polynomial derivatives)
CORRECTORS = (
    dict(use_corrector=True, c_pseudo=True),
    dict(use_corrector=True, c_pseudo=False),
    dict(use_corrector=False),
)


def v3_configs(orders=(2, 3)):
    for order, grid, pp, corr in itertools.product(orders, V3_GRIDS, (False, True), CORRECTORS):
        yield dict(order=order, skip_type=grid, p_pseudo=pp, **corr)


def v3_label(c: dict) -> str:
    if not c["use_corrector"]:
        corr = ", no corr."
    else:
        corr = "" if c["c_pseudo"] else ", c_pseudo=F"
    return f"{GRID_SHORT[c['skip_type']]}{corr}" + (", p_pseudo" if c["p_pseudo"] else "")


def run_v3(model, x, sched, ems, nfe: int, c: dict, **kw) -> np.ndarray | None:
    try:
        return np.asarray(sample_v3(model, x, sched, ems, steps=nfe, **c, **kw))
    except ValueError:  # a grid too fine for the statistics (two times on one point)
        return None


def search_v3(sets, sched, ems, nfe: int, orders=(2, 3), **kw) -> dict:
    """{order: (val error, held-out error, config)} of the best configuration on
    VALIDATION per order, and all the validation figures under "all" (``kw``: more
    sample_v3 options, e.g. degenerated=True)."""
    (m_val, x_val, r_val), (m_test, x_test, r_test) = sets
    best, table = {}, []
    for c in v3_configs(orders):
        if nfe < c["order"]:
            continue
        y = run_v3(m_val, x_val, sched, ems, nfe, c, **kw)
        if y is None:
            continue
        e = median_rms(y, r_val)
        table.append((c, e))
        if not np.isfinite(e):  # (a grid that gave non-finite samples)
            continue
        o = c["order"]
        if o not in best or e < best[o][0]:
            best[o] = (e, c)
    out = {}
    for o, (e, c) in best.items():
        out[o] = (e, median_rms(run_v3(m_test, x_test, sched, ems, nfe, c, **kw), r_test), c)
    out["all"] = table
    return out


def run_builtin(model, x, sched, nfe: int, grid: str, opts: dict) -> np.ndarray:
    return np.asarray(
        dpm_jax.sample(
            model, x, sched, steps=nfe, skip_type=grid, t_start=T_START, t_end=T_END, **opts
        )
    )


# --- the run ------------------------------------------------------------------------------


def guided_model(prob, sched, batch: int):
    """The class-conditional model with classifier-free guidance (as
    ``benchmarks/optimize_grids.py``'s digits_guided): sample b asks for digit b % 10."""
    labels = np.arange(batch) % 10
    lw = problems.class_log_weights(prob, labels)
    model = dpm_jax.model_wrapper(
        problems.noise_net(prob, sched),
        sched,
        guidance_type="classifier-free",
        condition=jnp.asarray(lw),
        unconditional_condition=jnp.asarray(problems.uncond_log_weights(prob, batch)),
        guidance_scale=GUIDANCE,
    )
    return model, dict(log_weights=lw, guidance_scale=GUIDANCE)


def run_problem(key: str, n_val: int, n_test: int, settings, log) -> None:
    guided = key == "digits_guided"
    what = (
        f"class-conditional (sample b: digit b % 10), classifier-free guidance at scale {GUIDANCE}"
        if guided
        else "unconditional"
    )
    start = time.perf_counter()
    log(f"\n# {key}: the digits' ideal denoiser, {what}\n")
    log(
        f"vp_linear, t = {T_START} -> {T_END}, float64; error: median per-sample RMS against "
        f"DOP853 (rtol = atol = {REF_TOL:g}); choices on VALIDATION ({n_val} x_T, seed "
        f"{SEED_VAL}), figures on HELD_OUT ({n_test} x_T, seed {SEED_TEST})"
    )
    prob = problems.digits()
    sched = schedules.vp_linear()
    dim = prob.data.shape[1]
    x_val = np.random.default_rng(SEED_VAL).normal(size=(n_val, dim))
    x_test = np.random.default_rng(SEED_TEST).normal(size=(n_test, dim))
    if guided:
        (m_val, g_val), (m_test, g_test) = (guided_model(prob, sched, b) for b in (n_val, n_test))
        m_ems = guided_model(prob, sched, GUIDED_BATCH)[0]
    else:
        m_val = m_test = m_ems = dpm_jax.model_wrapper(problems.noise_net(prob, sched), sched)
        g_val = g_test = {}
    t0 = time.perf_counter()
    span = (T_START, T_END)
    r_val = exact_ode_solution(prob, sched, x_val, *span, rtol=REF_TOL, atol=REF_TOL, **g_val)
    r_test = exact_ode_solution(prob, sched, x_test, *span, rtol=REF_TOL, atol=REF_TOL, **g_test)
    log(f"exact solutions: {time.perf_counter() - t0:.1f} s ({load()})")
    sets = ((m_val, jnp.asarray(x_val), r_val), (m_test, jnp.asarray(x_test), r_test))

    # ---- 1. EMS settings: cost and v3 error at NFE 5 and 6
    log("\n## EMS from the data set: cost and v3's error at NFE 5 and 6")
    log(
        "\ncalls: one-sample model evaluations + jvps that estimate_ems makes, "
        "(N + 1) K and (N + 1) K (probes + 1); v3: the best validated configuration (order, "
        "grid, p_pseudo, corrector), HELD_OUT median RMS\n"
    )
    head = "| N | K | probes | x_0 | const. pixels | evaluations | jvps | wall s | load |"
    head += "".join(f" v3 @ NFE {n} | config |" for n in TRADE_NFES)
    log(head)
    log("|" + "---:|" * 3 + "---|" + "---:|" * 5 + "---:|---|" * len(TRADE_NFES))
    per_setting = {}
    teachers = {}
    for n, k, p, src in settings:
        batch = GUIDED_BATCH if guided else min(BATCH, k)
        if src == "teacher":
            if k not in teachers:
                t0 = time.perf_counter()
                teachers[k] = teacher_points(m_ems, sched, k, batch, dim)
                teachers[k] = (teachers[k], time.perf_counter() - t0)
                log(
                    f"(teacher: {k} samples, {TEACHER_STEPS} steps of DPM-Solver++(3M), "
                    f"{k * TEACHER_STEPS:,} model calls, {teachers[k][1]:.1f} s, {load()})"
                )
            pts = teachers[k][0]
        elif src == "ode":
            pts = np.random.default_rng(SEED_ODE).normal(size=(k, dim))
        else:
            pts = ems_points(prob, k, guided)
        ems, n_const, wall = make_ems(m_ems, sched, pts, src, n, p, batch)
        ld = load()
        ev, jv = ems_calls(n, k, p)
        row = f"| {n} | {k} | {p} | {src} | {n_const} | {ev:,} | {jv:,} | {wall:.1f} | {ld[5:]} |"
        res = {nfe: search_v3(sets, sched, ems, nfe) for nfe in TRADE_NFES}
        score = []
        for nfe in TRADE_NFES:
            r = res[nfe]
            o = min((o for o in (2, 3) if o in r), key=lambda o: r[o][0])
            score.append(np.log(r[o][0]))
            row += f" {fmt(r[o][1])} | order {o}, {v3_label(r[o][2])} |"
        per_setting[n, k, p, src] = dict(
            ems=ems,
            score=float(np.mean(score)),
            res=res,
            cost=ev + jv + (k * TEACHER_STEPS if src == "teacher" else 0),
        )
        log(row)
    best = min(v["score"] for v in per_setting.values())
    near = [s for s, v in per_setting.items() if v["score"] <= best + np.log(1.05)]
    default = min(near, key=lambda s: per_setting[s]["cost"])
    log(
        "\ndefault for the table: the cheapest setting within 5 % of the lowest VALIDATION "
        f"error (geometric mean over NFE 5, 6): N, K, probes, x_0 = {default}"
    )
    ems = per_setting[default]["ems"]

    # ---- 2. built-in solvers on their best grid
    log("\n## Built-in solvers: HELD_OUT median RMS per grid (the VALIDATION choice in bold)\n")
    log("| solver | NFE | " + " | ".join(BUILTIN_GRIDS) + " |")
    log("|---|---:|" + "---:|" * len(BUILTIN_GRIDS))
    builtin = {}  # (solver, nfe) -> (val, test, grid)
    for name, opts in BUILTINS.items():
        for nfe in NFES:
            figs = {}
            for grid in BUILTIN_GRIDS:
                ev = median_rms(run_builtin(m_val, sets[0][1], sched, nfe, grid, opts), r_val)
                et = median_rms(run_builtin(m_test, sets[1][1], sched, nfe, grid, opts), r_test)
                figs[grid] = (ev, et)
            g = min(figs, key=lambda g: figs[g][0] if np.isfinite(figs[g][0]) else np.inf)
            builtin[name, nfe] = (figs[g][0], figs[g][1], g)
            cells = [f"**{fmt(figs[q][1])}**" if q == g else fmt(figs[q][1]) for q in BUILTIN_GRIDS]
            log(f"| {name} | {nfe} | " + " | ".join(cells) + " |")
    log(f"\n(built-in solvers done at {time.perf_counter() - start:.0f} s, {load()})")

    # ---- 3. v3 on the default EMS at every NFE, and the table
    v3 = {nfe: search_v3(sets, sched, ems, nfe) for nfe in NFES}
    # the same sampler with l = 1, s = b = 0 (DPM-Solver++ plus v3's corrector): what the
    # statistics themselves add
    degen = {nfe: search_v3(sets, sched, ems, nfe, degenerated=True) for nfe in NFES}
    log(f"\n## v3 (EMS N, K, probes = {default}): HELD_OUT median RMS per grid, best on VALIDATION")
    log(
        "(of order 2/3, p_pseudo on/off, the corrector off / official (c_pseudo=True) / "
        "c_pseudo=False)\n"
    )
    log("| NFE | " + " | ".join(V3_GRIDS) + " |")
    log("|---:|" + "---:|" * len(V3_GRIDS))
    for nfe in NFES:
        cells = []
        for grid in V3_GRIDS:
            cand = [(e, c) for c, e in v3[nfe]["all"] if c["skip_type"] == grid and np.isfinite(e)]
            if not cand:
                cells.append("-")
                continue
            e, c = min(cand, key=lambda ec: ec[0])
            y = run_v3(m_test, sets[1][1], sched, ems, nfe, c)
            cells.append(
                f"{fmt(median_rms(y, r_test))} (o{c['order']}{v3_label(c)[len(GRID_SHORT[grid]) :]})"
            )
        log(f"| {nfe} | " + " | ".join(cells) + " |")

    log("\n## The table: HELD_OUT median per-sample RMS error (grid chosen on VALIDATION)\n")
    log(
        "v3-2, v3-3: the EMS above, order 2 / 3; v3 l=1,s=b=0: the same sampler with "
        "degenerated=True (either order); (grid, options chosen on VALIDATION)\n"
    )
    cols = ["v3-2", "v3-3", "v3 l=1,s=b=0", *BUILTINS]
    log(
        "| NFE | "
        + " | ".join(cols)
        + " | best built-in (VALIDATION figure) | v3 / best built-in | lowest built-in on "
        "HELD_OUT | v3 / that |"
    )
    log("|---:|" + "---:|" * len(cols) + "---|---:|---|---:|")
    ratios, ratios_low = {}, {}
    for nfe in NFES:
        r = v3[nfe]
        cells = []
        for o in (2, 3):
            cells.append(f"{fmt(r[o][1])} ({v3_label(r[o][2])})" if o in r else "-")
        d = degen[nfe]
        od = min((o for o in (2, 3) if o in d), key=lambda o: d[o][0])
        cells.append(f"{fmt(d[od][1])} (o{od}, {v3_label(d[od][2])})")
        for name in BUILTINS:
            ev, et, g = builtin[name, nfe]
            cells.append(f"{fmt(et)} ({GRID_SHORT[g]})")
        bname = min(BUILTINS, key=lambda s: np.nan_to_num(builtin[s, nfe][0], nan=np.inf))
        b_test = builtin[bname, nfe][1]
        o = min((o for o in (2, 3) if o in r), key=lambda o: r[o][0])
        ratios[nfe] = r[o][1] / b_test
        lname = min(BUILTINS, key=lambda s: builtin[s, nfe][1])
        l_test = builtin[lname, nfe][1]
        ratios_low[nfe] = r[o][1] / l_test
        log(
            f"| {nfe} | "
            + " | ".join(cells)
            + f" | {bname} {fmt(b_test)} ({fmt(builtin[bname, nfe][0])}) | {ratios[nfe]:.2f} "
            f"(v3-{o}) | {lname} {fmt(l_test)} | {ratios_low[nfe]:.2f} |"
        )

    # ---- 4. times between the statistics' points: snap (official) or interpolate
    log(
        "\n## Times between the statistics' points: snap (as the official code) or interpolate"
        f"\n\nv3 on the EMS {default} with its VALIDATION choice per NFE (the better order), "
        "the model called at the nearest statistics point (snap) or at the grid's own time with "
        "l, s, b linear in lambda between the points (interpolate); median RMS\n"
    )
    log(
        "| NFE | config | snap, VALIDATION | interpolate, VALIDATION | snap, HELD_OUT | interpolate, HELD_OUT | interpolate / snap (HELD_OUT) |"
    )
    log("|---:|---|---:|---:|---:|---:|---:|")
    for nfe in NFES:
        r = v3[nfe]
        o = min((o for o in (2, 3) if o in r), key=lambda o: r[o][0])
        c = r[o][2]
        ys = [run_v3(m, x, sched, ems, nfe, c, times="interpolate") for m, x, _ in sets]
        ev_i, et_i = (
            median_rms(y, ref) if y is not None else np.nan for y, ref in zip(ys, (r_val, r_test))
        )
        log(
            f"| {nfe} | o{o}, {v3_label(c)} | {fmt(r[o][0])} | {fmt(ev_i)} | {fmt(r[o][1])} | "
            f"{fmt(et_i)} | {et_i / r[o][1]:.2f} |"
        )

    # ---- 5. a fitted grid: optimize_timesteps for UniPC-2 (without model times), used by v3
    log(
        "\n## A fitted grid\n\n"
        f"optimize_timesteps(model, schedule, x_train, steps=NFE, method='unipc', order=2) on "
        f"{TRAIN} training x_T (seed {SEED_TRAIN}; its default teacher, 200 steps of "
        "DPM-Solver++(3M)): with decouple=False (the grid only, where the model is called: "
        "what v3 can use) and with the default decouple=True (model times of its own: UniPC "
        "only). v3 on the decouple=False grid with the options chosen on VALIDATION "
        "(order, corrector, p_pseudo; times='interpolate': the fitted times are not on the "
        "statistics' grid). HELD_OUT median RMS; the ratio to the best built-in of the table "
        "above.\n"
    )
    log(
        "| NFE | UniPC-2, fitted grid | UniPC-2, fitted grid + model times | v3, the UniPC-2 fitted grid | v3 config | v3 / best built-in spacing | v3 / UniPC-2 fitted + model times | fit s (each) |"
    )
    log("|---:|---:|---:|---:|---|---:|---:|---:|")
    x_train = jnp.asarray(np.random.default_rng(SEED_TRAIN).normal(size=(TRAIN, dim)))
    m_train = guided_model(prob, sched, TRAIN)[0] if guided else m_val
    unipc = BUILTINS["UniPC-2"]
    for nfe in TRADE_NFES:
        fits, walls = {}, []
        for dec in (False, True):
            t0 = time.perf_counter()
            fits[dec] = dpm_jax.optimize_timesteps(
                m_train, sched, x_train, steps=nfe, method="unipc", order=2,
                algorithm_type="dpmsolver++", decouple=dec, t_start=T_START, t_end=T_END,
            )  # fmt: skip
            walls.append(time.perf_counter() - t0)
        e_u = {
            dec: median_rms(
                np.asarray(
                    dpm_jax.sample(m_test, sets[1][1], sched, **fits[dec].keywords(), **unipc)
                ),
                r_test,
            )
            for dec in (False, True)
        }
        grid_t = np.asarray(fits[False])
        best = None
        for c in v3_configs():
            if c["skip_type"] != "logSNR" or nfe < c["order"]:
                continue  # (one entry per option set; the grid is the fitted one)
            c = {k: v for k, v in c.items() if k != "skip_type"}
            c.update(timesteps=grid_t, times="interpolate")
            y = run_v3(m_val, sets[0][1], sched, ems, nfe, c)
            e = median_rms(y, r_val) if y is not None else np.inf
            if best is None or e < best[0]:
                best = (e, c)
        c = best[1]
        e_v3 = median_rms(run_v3(m_test, sets[1][1], sched, ems, nfe, c), r_test)
        bname = min(BUILTINS, key=lambda s: np.nan_to_num(builtin[s, nfe][0], nan=np.inf))
        label = f"o{c['order']}" + v3_label(dict(c, skip_type="logSNR"))[len("logSNR") :]
        log(
            f"| {nfe} | {fmt(e_u[False])} | {fmt(e_u[True])} | {fmt(e_v3)} | {label} | "
            f"{e_v3 / builtin[bname, nfe][1]:.2f} | {e_v3 / e_u[True]:.2f} | "
            f"{walls[0]:.0f}, {walls[1]:.0f} |"
        )

    log("\n## The goal: at NFE 5 and 6, v3 at most half the best built-in's error")
    ok = all(ratios[n] <= 0.5 for n in TRADE_NFES)
    for n in TRADE_NFES:
        verdict = "met" if ratios[n] <= 0.5 else "not met"
        log(
            f"- NFE {n}: v3 / best built-in = {ratios[n]:.2f} (goal <= 0.5): {verdict}; "
            f"v3 would need to be {ratios[n] / 0.5:.1f}x lower"
            if ratios[n] > 0.5
            else f"- NFE {n}: v3 / best built-in = {ratios[n]:.2f} (goal <= 0.5): {verdict}"
        )
        log(f"  (against the lowest built-in figure on HELD_OUT: {ratios_low[n]:.2f})")
    log(f"goal met: {ok}")
    log(f"\n({key}: {time.perf_counter() - start:.0f} s, {load()})")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer EMS settings, 64 + 128 noises")
    ap.add_argument(
        "--problems",
        nargs="+",
        default=["digits", "digits_guided"],
        choices=["digits", "digits_guided"],
    )
    ap.add_argument("--out", default=RESULTS)
    args = ap.parse_args()
    n_val, n_test = (64, 128) if args.quick else (VALIDATION, HELD_OUT)
    lines: list[str] = []

    def log(s=""):
        print(s, flush=True)
        lines.append(s)

    def write():
        os.makedirs(args.out, exist_ok=True)
        name = "v3_quality_quick.md" if args.quick else "v3_quality.md"
        with open(os.path.join(args.out, name), "w") as f:
            f.write("\n".join(lines) + "\n")

    start = time.perf_counter()
    cmd = "python benchmarks/v3_quality.py" + (" --quick" if args.quick else "")
    if args.problems != ["digits", "digits_guided"]:
        cmd += " --problems " + " ".join(args.problems)
    log(f"$ {cmd}")
    log(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, {platform.system()}; "
        f"python {platform.python_version()}, jax {jax.__version__} "
        f"({jax.default_backend()}); dpm_jax {dpm_jax.__version__}; "
        f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC; "
        "other jobs share the cores (1-minute load average printed beside the times)"
    )
    for key in args.problems:
        if key == "digits":
            settings = EMS_SETTINGS_QUICK if args.quick else EMS_SETTINGS
        else:
            settings = GUIDED_SETTINGS_QUICK if args.quick else GUIDED_SETTINGS
        run_problem(key, n_val, n_test, settings, log)
        write()  # after every problem: a crash keeps what was measured
    log(f"\ntotal run time: {time.perf_counter() - start:.0f} s ({load()})")
    write()


if __name__ == "__main__":
    sys.exit(main())
