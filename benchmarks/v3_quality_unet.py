"""DPM-Solver-v3 on the bundled digits UNet against the built-in solvers, on held-out noise.

    python benchmarks/v3_quality_unet.py            # both cases, 24 minutes at load 4 (2 cores)
    python benchmarks/v3_quality_unet.py --quick    # N = 50, K = 240; NFE 5, 6; 240 held out

The model: the class-conditional noise-prediction UNet bundled with the package
(``dpm_jax.demo.digits``: 8x8 digits in [-1, 1], DDPM linear betas, ``digits.schedule()``
from t = 1 to 1e-3), in float32, in two cases:

- ``uncond``: the unconditional model, i.e. the null label ``digits.NULL_LABEL`` (the UNet
  was trained with the label dropped 10 % of the time), one network call per step;
- ``guided``: classifier-free guidance at the demo's scale
  (``digits.DEFAULT_GUIDANCE_SCALE`` = 2), sample b of every batch asking for digit b % 10.

Every run is in batches of BATCH = 120 (a multiple of 10, so sample j of any set has label
j % 10 and the programs are compiled for one shape). There is no exact solution: the
reference is the model's own ODE solution by 200 steps of DPM-Solver++(3M) (third-order
multistep on the logSNR grid, ``optimize_grids.UNET_REFERENCE``) from the same x_T. The
figures: the median over samples of the per-sample RMS distance to that reference, and
the Frechet distance between the bundled classifier's penultimate features of the samples
and of the 1,797 real digits (``optimize_grids.frechet_to_real``; the reference's own
figure is the floor the solvers approach, and a few-step solver can fall below it: the
Frechet distance measures closeness to the data, not to the ODE solution).

Noise: VALIDATION = 120 x_T (NumPy seed 41), on which every choice is made (the EMS
setting, v3's order, grid and options, the built-in solvers' grids, the best built-in
solver); HELD_OUT = 960 other x_T (seed 42), on which every figure is reported (RMS and
Frechet distance on the same 960 samples; ``optimize_grids.py`` used 1,000 for its
Frechet distance).

1. EMS: the statistics from the model's own samples, as the paper does for models
   without a data set at hand: a teacher of 200 steps of DPM-Solver++(3M) (the reference
   sampler above) from fresh noise (NumPy seed 43; for ``guided`` the guided model, so that
   teacher sample j is a digit j % 10), its first K samples as x_0 of
   ``estimate_ems(model, schedule, x_0, key=jax.random.key(44), n_points=N, probes=1,
   batch_size=120)`` for a few (N, K). estimate_ems batches sample j at position j % 120,
   so the guided model's label there is j % 10, the label the teacher's sample was made
   for. Two time derivatives in the statistics' f' (``d/dt``): "jvp", estimate_ems on the
   model as it is (``jax.jvp`` through the network's time input), and "slope", the model's
   central difference over SLOPE_STEPS = 10 DDPM steps on each side
   (``estimate_ems(..., time_difference=10 / 1000)``: the UNet was trained on integer steps
   and its exact time derivative oscillates about the trend, which spoils s and b; 2 more
   evaluations beside every jvp). "ode-slope": the same along the model's own ODE
   (``estimate_ems(model, schedule, x_T=noise)``, K fresh noises of NumPy seed 45, sample
   j asking for digit j % 10 in the guided case) instead of at the teacher's noised
   samples. The cost: ``(N + 1) K``
   evaluations and ``(N + 1) K (probes + 1)`` jvps of one sample each (guided: each on the
   doubled batch of classifier-free guidance), the wall time on this machine and the
   1-minute load average (other jobs share the cores). For each setting, v3's best
   validated configuration at NFE 5 and 6 (HELD_OUT figures); the cheapest setting within
   5 % of the lowest validation error (geometric mean over NFE 5 and 6) makes the main
   table, and the same rule among the "jvp" settings gives its column "v3, d/dt jvp"
   (NFE 5 and 6 only, for the time budget).
2. The main table, NFE 4, 5, 6, 8, 10: ``sample_v3`` (orders 2 and 3; grid logSNR,
   time_uniform, time_quadratic or karras; ``p_pseudo`` on/off; the corrector off, official
   (``c_pseudo=True``) or ``c_pseudo=False``; chosen on VALIDATION per NFE and order), the
   same sampler with ``degenerated=True`` (l = 1, s = b = 0: what the statistics add; its
   order and options chosen on VALIDATION too),
   against UniPC-2, UniPC-3, DPM-Solver++(2M), DPM-Solver++(3M) and DEIS-3
   (``v3_quality.BUILTINS``), each on its best built-in grid (time_uniform, logSNR,
   time_quadratic, chosen on VALIDATION per solver and NFE). Ratios: v3 (the order chosen
   on VALIDATION) over the best built-in solver (chosen on VALIDATION), both on HELD_OUT;
   beside it the ratio to the lowest built-in figure on HELD_OUT.
3. The goal, "at NFE 5 and 6 at most half the error of the best training-free built-in on
   the same budget", judged on the RMS ratios.

Fitted grids (``dpm_jax.optimize_timesteps``) are left out: on this UNet ld3 takes 4-10
minutes per solver and NFE (``results/optimize_grids_unet.md``), more than this budget.

Output: what it prints, also written to ``benchmarks/results/v3_quality_unet.md`` (with
``--quick``: ``v3_quality_unet_quick.md``).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optimize_grids as OG  # (benchmarks/ is on sys.path when a script of it runs)
import v3_quality as V3Q  # (also turns on jax_enable_x64; the UNet stays float32)

import dpm_jax
from dpm_jax.demo import digits
from dpm_jax.v3 import estimate_ems

NFES, NFES_QUICK = V3Q.NFES, (5, 6)
TRADE_NFES = V3Q.TRADE_NFES
BATCH = 120
VALIDATION, HELD_OUT = 120, 960
VALIDATION_QUICK, HELD_OUT_QUICK = 120, 240
SEED_VAL, SEED_TEST, SEED_TEACHER, SEED_EMS, SEED_ODE = 41, 42, 43, 44, 45
PROBES = 1
#: the time derivative of the statistics' f': "jvp" (``estimate_ems`` on the model as it
#: is) or "slope" (``time_difference``: the model's central difference over SLOPE_STEPS
#: DDPM steps each side); "ode-slope": that along the model's ODE (``x_T=``)
SLOPE_STEPS = 10.0
#: (N, K, time derivative) per case; the teacher makes max(K) samples, a setting takes the
#: first K
EMS_SETTINGS = {
    "uncond": (
        (100, 240, "jvp"),
        (100, 240, "slope"),
        (200, 240, "slope"),
        (200, 240, "ode-slope"),
    ),
    "guided": (
        (100, 240, "jvp"),
        (100, 240, "slope"),
        (200, 240, "slope"),
        (200, 240, "ode-slope"),
    ),
}
EMS_SETTINGS_QUICK = ((50, 240, "jvp"), (50, 240, "slope"), (50, 240, "ode-slope"))
GUIDANCE = digits.DEFAULT_GUIDANCE_SCALE
REF_NAME = "200 steps of DPM-Solver++(3M) (third-order multistep, logSNR)"
RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
fmt, load, median_rms = V3Q.fmt, V3Q.load, V3Q.median_rms


def unet_model(bundle, sched, guided: bool):
    """The UNet for a batch of BATCH: guided (sample b asks for digit b % 10, scale
    GUIDANCE) or unconditional (the null label, one network call)."""
    if guided:
        labels, scale = np.arange(BATCH) % 10, GUIDANCE
    else:
        labels, scale = np.full(BATCH, digits.NULL_LABEL), 1.0
    graph, params = bundle.unet_graph, bundle.unet_params
    return digits.guided_model(graph, params, labels, guidance_scale=scale, sched=sched)


def chunked(fn, x) -> np.ndarray | None:
    """fn on x, BATCH samples at a time (None if fn refuses a chunk)."""
    out = []
    for i in range(0, x.shape[0], BATCH):
        y = fn(x[i : i + BATCH])
        if y is None:
            return None
        out.append(np.asarray(y))
    return np.concatenate(out)


def noise(seed: int, n: int) -> jnp.ndarray:
    return jnp.asarray(
        np.random.default_rng(seed).normal(size=(n, *digits.IMAGE_SHAPE)), jnp.float32
    )


class Case:
    """One case (uncond or guided): the model, the noise sets, the references, and the
    held-out figures of every run made (cached by a label)."""

    def __init__(self, bundle, guided: bool, n_val: int, n_test: int):
        self.bundle, self.sched = bundle, digits.schedule()
        self.model = unet_model(bundle, self.sched, guided)
        self.x_val, self.x_test = noise(SEED_VAL, n_val), noise(SEED_TEST, n_test)
        self.r_val, self.r_test = self.reference(self.x_val), self.reference(self.x_test)
        self.floor = OG.frechet_to_real(bundle, self.r_test)
        self._held: dict = {}

    def reference(self, x) -> np.ndarray:
        return chunked(lambda c: dpm_jax.sample(self.model, c, self.sched, **OG.UNET_REFERENCE), x)

    def v3(self, x, ems, nfe: int, c: dict, **kw):
        return chunked(lambda xc: V3Q.run_v3(self.model, xc, self.sched, ems, nfe, c, **kw), x)

    def builtin(self, x, nfe: int, grid: str, opts: dict):
        return chunked(lambda xc: V3Q.run_builtin(self.model, xc, self.sched, nfe, grid, opts), x)

    def held_out(self, label, run) -> tuple[float, float]:
        """(median RMS, Frechet distance) on HELD_OUT of ``run(x_test)``, once per label."""
        if label not in self._held:
            y = run(self.x_test)
            if y is None:
                self._held[label] = (np.inf, np.nan)
            else:
                ok = np.all(np.isfinite(y.reshape(len(y), -1)), axis=1)
                fd = OG.frechet_to_real(self.bundle, y) if ok.all() else np.nan
                self._held[label] = (median_rms(y, self.r_test), fd)
        return self._held[label]

    def search_v3(self, ems, nfe: int, **kw) -> dict:
        """{order: (VALIDATION error, config)} of the best configuration per order, and
        "all": every (config, VALIDATION error)."""
        best, table = {}, []
        for c in V3Q.v3_configs():
            if nfe < c["order"]:
                continue
            y = self.v3(self.x_val, ems, nfe, c, **kw)
            if y is None:
                continue
            e = median_rms(y, self.r_val)
            table.append((c, e))
            o = c["order"]
            if np.isfinite(e) and (o not in best or e < best[o][0]):
                best[o] = (e, c)
        return {**best, "all": table}


def best_order(r: dict) -> int:
    return min((o for o in (2, 3) if o in r), key=lambda o: r[o][0])


def ems_summary(ems) -> str:
    s, b, l = (np.asarray(a, np.float64) for a in (ems.s, ems.b, ems.l))  # noqa: E741
    bad = int(sum(np.sum(~np.isfinite(a)) for a in (s, b, l)))
    return (
        f"l in [{np.nanmin(l):.3g}, {np.nanmax(l):.3g}], max |s| {np.nanmax(np.abs(s)):.3g}, "
        f"max |b| {np.nanmax(np.abs(b)):.3g}, non-finite entries {bad}"
    )


def run_case(key: str, bundle, n_val: int, n_test: int, nfes, settings, log) -> dict:
    guided = key == "guided"
    start = time.perf_counter()
    what = (
        f"classifier-free guidance at scale {GUIDANCE} (sample b asks for digit b % 10)"
        if guided
        else f"unconditional (the null label {digits.NULL_LABEL})"
    )
    log(f"\n# {key}: the bundled digits UNet, {what}\n")
    case = Case(bundle, guided, n_val, n_test)
    sched, model = case.sched, case.model
    log(
        f"float32, discrete DDPM schedule, t = {sched.T} -> {sched.t_eps}; reference: "
        f"{REF_NAME} from the same x_T; RMS: median per-sample RMS to it; FD: Frechet "
        f"distance to the real digits (classifier features); choices on VALIDATION "
        f"({n_val} x_T, seed {SEED_VAL}), figures on HELD_OUT ({n_test} x_T, seed "
        f"{SEED_TEST}); references in {time.perf_counter() - start:.1f} s ({load()})"
    )
    log(f"FD of the reference on HELD_OUT (the floor): {case.floor:.3f}")

    # ---- 1. the teacher and the EMS settings
    k_max = max(k for _, k, _ in settings)
    t0 = time.perf_counter()
    teacher = case.reference(noise(SEED_TEACHER, k_max))
    t_teacher = time.perf_counter() - t0
    calls = "evaluations of the guided pair" if guided else "evaluations"
    log(f"\n## EMS from the model's own samples: cost and v3 at NFE {TRADE_NFES}")
    log(
        f"\nteacher: {k_max} samples, {REF_NAME}, x_T NumPy seed {SEED_TEACHER}"
        + (", sample j asks for digit j % 10" if guided else "")
        + f"; {k_max * 200:,} {calls}, {t_teacher:.1f} s ({load()}); FD of the teacher "
        f"{OG.frechet_to_real(bundle, teacher):.3f}"
    )
    log(
        f"\nestimate_ems(model, schedule, teacher[:K], n_points=N, probes={PROBES}, "
        f"batch_size={BATCH}, key=jax.random.key({SEED_EMS})); calls of one sample each: "
        f"(N + 1) K {calls} and (N + 1) K (probes + 1) jvps (with the slope, 2 more "
        "evaluations beside every jvp); d/dt: the time derivative in f', jvp (the model as "
        f"it is) or slope (time_difference={SLOPE_STEPS:g} / 1000: over {SLOPE_STEPS:g} DDPM "
        f"steps each side); ode-slope: that with x_T=K noises of seed {SEED_ODE} instead of "
        "teacher[:K] (the states of the model's own ODE); v3: the best "
        "VALIDATION configuration of the order chosen on VALIDATION, HELD_OUT RMS / FD\n"
    )
    head = "| N | K | d/dt | evaluations | jvps | wall s | load |"
    head += "".join(f" v3 @ NFE {n}: RMS | FD | config |" for n in TRADE_NFES)
    log(head + " statistics |")
    log("|---:|---:|---|---:|---:|---:|---:|" + "---:|---:|---|" * len(TRADE_NFES) + "---|")
    per_setting = {}
    for n, k, deriv in settings:
        where = dict(data=jnp.asarray(teacher[:k]))
        if deriv == "ode-slope":
            where = dict(x_T=noise(SEED_ODE, k))
        dt = None if deriv == "jvp" else SLOPE_STEPS / sched.total_N
        t0 = time.perf_counter()
        ems = estimate_ems(
            model,
            sched,
            key=jax.random.key(SEED_EMS),
            n_points=n,
            probes=PROBES,
            batch_size=BATCH,
            time_difference=dt,
            **where,
        )
        jax.block_until_ready(ems.b)
        wall = time.perf_counter() - t0
        ld = load()[5:]
        ev, jv = V3Q.ems_calls(n, k, PROBES)
        row = f"| {n} | {k} | {deriv} | {ev:,} | {jv:,} | {wall:.1f} | {ld} |"
        res = {nfe: case.search_v3(ems, nfe) for nfe in TRADE_NFES}
        score = []
        for nfe in TRADE_NFES:
            r = res[nfe]
            o = best_order(r)
            score.append(np.log(r[o][0]))
            rms, fd = case.held_out(
                ("v3", n, k, deriv, nfe, o), lambda x: case.v3(x, ems, nfe, r[o][1])
            )
            row += f" {fmt(rms)} | {fd:.2f} | order {o}, {V3Q.v3_label(r[o][1])} |"
        log(row + f" {ems_summary(ems)} |")
        cost = ev + jv + (0 if deriv == "jvp" else 2 * jv)
        per_setting[n, k, deriv] = dict(ems=ems, res=res, score=float(np.mean(score)), cost=cost)

    def cheapest_near_best(keys):
        best = min(per_setting[q]["score"] for q in keys)
        near = [q for q in keys if per_setting[q]["score"] <= best + np.log(1.05)]
        return min(near, key=lambda q: per_setting[q]["cost"])

    default = cheapest_near_best(list(per_setting))
    as_is = cheapest_near_best([q for q in per_setting if q[2] == "jvp"])
    ems, ems_as_is = per_setting[default]["ems"], per_setting[as_is]["ems"]
    log(
        "\nthe setting for the table: the cheapest (model calls) within 5 % of the lowest "
        f"VALIDATION error (geometric mean over NFE {TRADE_NFES}): N, K, d/dt = {default}; "
        f"of the jvp ones (estimate_ems on the model as it is): {as_is} "
        f"({time.perf_counter() - start:.0f} s so far, {load()})"
    )

    # ---- 2. built-in solvers on their best grid (chosen on VALIDATION)
    builtin = {}  # (name, nfe) -> (val, grid, {grid: val})
    for name, opts in V3Q.BUILTINS.items():
        for nfe in nfes:
            val = {
                g: median_rms(case.builtin(case.x_val, nfe, g, opts), case.r_val)
                for g in V3Q.BUILTIN_GRIDS
            }
            g = min(val, key=lambda g: val[g] if np.isfinite(val[g]) else np.inf)
            builtin[name, nfe] = (val[g], g, val)
            case.held_out((name, nfe), lambda x: case.builtin(x, nfe, g, opts))
    log(f"\n(built-in solvers done at {time.perf_counter() - start:.0f} s, {load()})")

    # ---- 3. v3 on the default EMS at every NFE, and its degenerated twin
    def searched(q, nfe):
        r = per_setting[q]["res"]
        return r[nfe] if nfe in r else case.search_v3(per_setting[q]["ems"], nfe)

    v3 = {nfe: searched(default, nfe) for nfe in nfes}
    v3_as_is = per_setting[as_is]["res"]  # (NFE 5 and 6 only: the budget)
    degen = {nfe: case.search_v3(ems, nfe, degenerated=True) for nfe in nfes}
    log(f"(v3 searches done at {time.perf_counter() - start:.0f} s, {load()})")

    log("\n## VALIDATION median RMS per grid (each solver's best options on that grid)\n")
    log("| solver | NFE | " + " | ".join(V3Q.V3_GRIDS) + " |")
    log("|---|---:|" + "---:|" * len(V3Q.V3_GRIDS))
    for label, res in (("v3", v3), ("v3, d/dt jvp", v3_as_is), ("v3 l=1,s=b=0", degen)):
        for nfe in (n for n in nfes if n in res):
            cells = []
            for grid in V3Q.V3_GRIDS:
                cand = [(e, c) for c, e in res[nfe]["all"] if c["skip_type"] == grid]
                cand = [ec for ec in cand if np.isfinite(ec[0])]
                if not cand:
                    cells.append("-")
                    continue
                e, c = min(cand, key=lambda ec: ec[0])
                opts = V3Q.v3_label(c)[len(V3Q.GRID_SHORT[grid]) :]
                cells.append(f"{fmt(e)} (o{c['order']}{opts})")
            log(f"| {label} | {nfe} | " + " | ".join(cells) + " |")
    for name in V3Q.BUILTINS:
        for nfe in nfes:
            val = builtin[name, nfe][2]
            cells = [fmt(val[g]) if g in val else "-" for g in V3Q.V3_GRIDS]
            log(f"| {name} | {nfe} | " + " | ".join(cells) + " |")

    # ---- the table
    cols = ["v3-2", "v3-3", "v3, d/dt jvp", "v3 l=1,s=b=0", *V3Q.BUILTINS]
    figures = {}  # nfe -> {col: (rms, fd, note)}
    for nfe in nfes:
        row = {}
        for o in (2, 3):
            r = v3[nfe]
            if o in r:
                c = r[o][1]
                rms, fd = case.held_out(
                    ("v3", *default, nfe, o), lambda x, c=c: case.v3(x, ems, nfe, c)
                )
                row[f"v3-{o}"] = (rms, fd, V3Q.v3_label(c))
        if nfe in v3_as_is:
            r = v3_as_is[nfe]
            oa = best_order(r)
            ca = r[oa][1]
            rms, fd = case.held_out(
                ("v3", *as_is, nfe, oa), lambda x: case.v3(x, ems_as_is, nfe, ca)
            )
            row["v3, d/dt jvp"] = (rms, fd, f"o{oa}, {V3Q.v3_label(ca)}")
        d = degen[nfe]
        od = best_order(d)
        cd = d[od][1]
        rms, fd = case.held_out(
            ("degen", nfe, od), lambda x: case.v3(x, ems, nfe, cd, degenerated=True)
        )
        row["v3 l=1,s=b=0"] = (rms, fd, f"o{od}, {V3Q.v3_label(cd)}")
        for name in V3Q.BUILTINS:
            rms, fd = case.held_out((name, nfe), None)
            row[name] = (rms, fd, V3Q.GRID_SHORT[builtin[name, nfe][1]])
        figures[nfe] = row

    log(f"\n## The table: HELD_OUT median per-sample RMS to the reference (EMS {default})\n")
    log(
        f"v3-2, v3-3: order 2 / 3 with the EMS {default} (grid and options chosen on "
        f"VALIDATION); v3, d/dt jvp: with the EMS {as_is} (estimate_ems on the model as it "
        "is; order chosen on VALIDATION); v3 l=1,s=b=0: "
        "the same sampler with degenerated=True (order too chosen on VALIDATION); built-in "
        "solvers on their VALIDATION grid. Ratio: v3 (order chosen on VALIDATION) / the best "
        "built-in on VALIDATION, both on HELD_OUT\n"
    )
    log(
        "| NFE | "
        + " | ".join(cols)
        + " | best built-in (VALIDATION) | v3 / it | lowest built-in on HELD_OUT | v3 / it |"
    )
    log("|---:|" + "---:|" * len(cols) + "---|---:|---|---:|")
    ratios, summary = {}, {}
    for nfe in nfes:
        row = figures[nfe]
        cells = [f"{fmt(row[c][0])} ({row[c][2]})" if c in row else "-" for c in cols]
        o = best_order(v3[nfe])
        v3_rms, v3_fd = row[f"v3-{o}"][:2]
        bname = min(V3Q.BUILTINS, key=lambda s: builtin[s, nfe][0])
        lname = min(V3Q.BUILTINS, key=lambda s: row[s][0])
        ratios[nfe] = v3_rms / row[bname][0]
        summary[nfe] = dict(
            order=o,
            v3=(v3_rms, v3_fd),
            degen=row["v3 l=1,s=b=0"][:2],
            as_is=row.get("v3, d/dt jvp", (np.nan, np.nan))[:2],
            best=(bname, *row[bname][:2]),
            lowest=(lname, *row[lname][:2]),
        )
        log(
            f"| {nfe} | "
            + " | ".join(cells)
            + f" | {bname} {fmt(row[bname][0])} | {ratios[nfe]:.2f} (v3-{o}) | {lname} "
            f"{fmt(row[lname][0])} | {v3_rms / row[lname][0]:.2f} |"
        )

    log(f"\n## Frechet distance to the real digits on HELD_OUT (the reference: {case.floor:.3f})\n")
    log("| NFE | " + " | ".join(cols) + " | v3 - best built-in (VALIDATION) |")
    log("|---:|" + "---:|" * len(cols) + "---:|")
    for nfe in nfes:
        row = figures[nfe]
        s = summary[nfe]
        cells = [f"{row[c][1]:.2f}" if c in row else "-" for c in cols]
        log(f"| {nfe} | " + " | ".join(cells) + f" | {s['v3'][1] - s['best'][2]:+.2f} |")

    log(f"\n## The goal ({key}): at NFE 5 and 6, v3 at most half the best built-in's RMS")
    goal = [n for n in TRADE_NFES if n in ratios]
    for n in goal:
        s = summary[n]
        verdict = "met" if ratios[n] <= 0.5 else "not met"
        log(
            f"- NFE {n}: v3-{s['order']} {fmt(s['v3'][0])} / {s['best'][0]} {fmt(s['best'][1])} = "
            f"{ratios[n]:.2f} (goal <= 0.5): {verdict}"
            + (f"; v3 would need {ratios[n] / 0.5:.1f}x less error" if ratios[n] > 0.5 else "")
            + f"; against the lowest built-in ({s['lowest'][0]}): {s['v3'][0] / s['lowest'][1]:.2f}"
            + f"; v3 with d/dt jvp: {s['as_is'][0] / s['best'][1]:.2f}"
        )
    log(f"goal met ({key}): {all(ratios[n] <= 0.5 for n in goal)}")
    log(f"\n({key}: {time.perf_counter() - start:.0f} s, {load()})")
    return summary


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--quick",
        action="store_true",
        help="EMS N = 50, K = 240 (jvp, slope), NFE 5 and 6, 120 + 240 noises",
    )
    ap.add_argument(
        "--cases", nargs="+", default=["uncond", "guided"], choices=["uncond", "guided"]
    )
    ap.add_argument("--out", default=RESULTS)
    args = ap.parse_args()
    n_val, n_test = (VALIDATION_QUICK, HELD_OUT_QUICK) if args.quick else (VALIDATION, HELD_OUT)
    nfes = NFES_QUICK if args.quick else NFES
    lines: list[str] = []

    def log(s=""):
        print(s, flush=True)
        lines.append(s)

    def write():
        os.makedirs(args.out, exist_ok=True)
        name = "v3_quality_unet_quick.md" if args.quick else "v3_quality_unet.md"
        with open(os.path.join(args.out, name), "w") as f:
            f.write("\n".join(lines) + "\n")

    start = time.perf_counter()
    cmd = "python benchmarks/v3_quality_unet.py" + (" --quick" if args.quick else "")
    if args.cases != ["uncond", "guided"]:
        cmd += " --cases " + " ".join(args.cases)
    log(f"$ {cmd}")
    log(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, {platform.system()}; "
        f"python {platform.python_version()}, jax {jax.__version__} "
        f"({jax.default_backend()}); dpm_jax {dpm_jax.__version__}; "
        f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC; {load()} at the start; "
        "other jobs share the cores (1-minute load average printed beside the times)"
    )
    bundle = digits.load()
    for key in args.cases:
        settings = EMS_SETTINGS_QUICK if args.quick else EMS_SETTINGS[key]
        run_case(key, bundle, n_val, n_test, nfes, settings, log)
        write()  # after every case: a crash keeps what was measured
    log(f"\ntotal run time: {time.perf_counter() - start:.0f} s ({load()})")
    write()


if __name__ == "__main__":
    sys.exit(main())
