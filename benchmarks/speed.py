"""Speed of dpm_jax.sample against the cost of its model calls alone.

For a model ``net``, the *floor* is the least a fixed-step sampler can cost: a
jitted ``jax.lax.scan`` over the same number of model calls, each step doing a
precomputed first-order update ``x = a[i] * x + b[i] * net(x, t[i])``. The
script prints ``sample / floor`` (jitted, model closed over, parameters traced,
steady state after compilation, median of several interleaved repeats,
``block_until_ready``) for

* (a) a nearly free elementwise model ``eps = 0.1 * x * t / 1000`` on a batch
  (256, 3, 32, 32) float32, where the solver's own arithmetic shows, and
* (b) a small Flax conv net (4 convolutions, 32x32x3 input, batch 32, random
  parameters), where the model dominates,

at 10, 20 and 50 NFE, for DPM-Solver++ multistep order 2 (the default), and
singlestep order 3 and multistep order 3 (the executor's worst cases), together
with the ratio of the fastest runs (less sensitive to a busy machine) and the
number of state-sized copies and fusions in the compiled loop body (read from
the optimised HLO; each one is a full pass over x). It also prints the
trace+compile time of ``sample`` at 12 versus 120 steps.

Targets (2-core CPU): sample / floor <= 1.05 (conv net) and <= 1.5 (elementwise)
at 20 NFE; compile(120) / compile(12) <= 1.3. Usage::

    python benchmarks/speed.py               # full table, about 3-4 minutes on 2 cores
    python benchmarks/speed.py --quick       # 20 NFE only, fewer repeats
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import re
import statistics
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

import dpm_jax
from dpm_jax import schedules

SOLVERS = {
    "++2M (ms2)": dict(method="multistep", order=2, algorithm_type="dpmsolver++"),
    "++ss3": dict(method="singlestep", order=3, algorithm_type="dpmsolver++"),
    "++ms3": dict(method="multistep", order=3, algorithm_type="dpmsolver++"),
}
TARGETS = {"elementwise": 1.5, "conv net": 1.05}
COMPILE_TARGET = 1.3


# --- the two models ----------------------------------------------------------


def _per_sample(t, x):
    """t (scalar or (B,)) shaped to broadcast against x (B, ...)."""
    t = jnp.asarray(t, x.dtype)
    return t.reshape(t.shape + (1,) * (x.ndim - t.ndim))


def elementwise_net(params, x, t_input):
    """A nearly free noise predictor: one multiply per element."""
    del params
    return 0.1 * x * (_per_sample(t_input, x) * 1e-3)


class ConvNet(nn.Module):
    """A small time-conditioned conv net, NHWC (B, 32, 32, 3)."""

    width: int = 32

    @nn.compact
    def __call__(self, x, t_input):
        t = jnp.broadcast_to(jnp.asarray(t_input, x.dtype), x.shape[:1])
        freqs = jnp.exp(
            -jnp.log(1e4) * jnp.arange(self.width // 2, dtype=x.dtype) / (self.width // 2)
        )
        emb = jnp.concatenate([jnp.sin(t[:, None] * freqs), jnp.cos(t[:, None] * freqs)], -1)
        emb = nn.Dense(self.width)(emb)
        h = nn.silu(nn.Conv(self.width, (3, 3))(x) + emb[:, None, None, :])
        h = nn.silu(nn.Conv(self.width, (3, 3))(h))
        h = nn.silu(nn.Conv(self.width, (3, 3))(h))
        return nn.Conv(x.shape[-1], (3, 3))(h)


def make_models():
    """(name, net(params, x, t_input), params, x_T) of both benchmark models."""
    key = jax.random.key(0)
    x_elem = jax.random.normal(key, (256, 3, 32, 32), jnp.float32)
    conv = ConvNet()
    x_conv = jax.random.normal(key, (32, 32, 32, 3), jnp.float32)
    conv_params = conv.init(jax.random.key(1), x_conv, jnp.zeros(()))
    return [
        ("elementwise", elementwise_net, {}, x_elem),
        ("conv net", conv.apply, conv_params, x_conv),
    ]


# --- the two programs ------------------------------------------------------


def floor_fn(net, sched, nfe):
    """jit(params, x) -> x: a scan of nfe model calls with first-order updates."""
    t = np.linspace(sched.T, sched.t_eps, nfe + 1)
    lam = sched.marginal_lambda(t)
    alpha, sigma = sched.marginal_alpha(t), sched.marginal_std(t)
    h = lam[1:] - lam[:-1]
    a = (alpha[1:] / alpha[:-1]).astype(np.float32)  # DDIM: x_t = a x_s - sigma_t expm1(h) eps
    b = (-sigma[1:] * np.expm1(h)).astype(np.float32)
    t_in = sched.time_input(t[:-1]).astype(np.float32)

    def f(params, x):
        def body(x, row):
            a_i, b_i, t_i = row
            return a_i * x + b_i * net(params, x, t_i), None

        return jax.lax.scan(body, x, (a, b, t_in))[0]

    return jax.jit(f)


def sample_fn(net, sched, nfe, options):
    """jit(params, x) -> (x0, info) of dpm_jax.sample with the model closed over."""

    def f(params, x):
        model = dpm_jax.model_wrapper(lambda x, t: net(params, x, t), sched, model_type="noise")
        return dpm_jax.sample(model, x, sched, steps=nfe, return_info=True, **options)

    return jax.jit(f)


# --- measurement -----------------------------------------------------------


def compile_time(fn, *args):
    gc.collect()
    t0 = time.perf_counter()
    compiled = fn.lower(*args).compile()
    return time.perf_counter() - t0, compiled


def loop_body_ops(compiled, x):
    """(state-sized copies, state-sized fusions) in the compiled scan's loop body.

    Read from the optimised HLO (``compiled.as_text()``): the floor has no copy
    and one fusion per step; every extra op is a full pass over memory.
    """
    text = compiled.as_text()
    m = re.search(r"while\(.*?body=(%[\w.\-]+)", text)
    if m is None:
        return None
    start = text.find("\n" + m.group(1) + " ")
    body = text[start : text.find("\n}", start)].splitlines()
    dims = ",".join(map(str, x.shape)) + "]"
    copies = sum(" copy(" in line and dims in line.split(" copy(")[0] for line in body)
    fusions = sum(" fusion(" in line and dims in line.split(" fusion(")[0] for line in body)
    return copies, fusions


def timed(compiled, *args):
    t0 = time.perf_counter()
    jax.block_until_ready(compiled(*args))
    return time.perf_counter() - t0


def bench_speed(models, nfes, repeats):
    """Rows (model, nfe, solver, floor ms, sample ms, ratio, nfe made, loop-body ops)."""
    rows = []
    for name, net, params, x in models:
        sched = schedules.discrete(betas=np.linspace(1e-4, 0.02, 1000))
        for nfe in nfes:
            fns = {"floor": compile_time(floor_fn(net, sched, nfe), params, x)[1]}
            made, ops = {}, {"floor": loop_body_ops(fns["floor"], x)}
            for label, options in SOLVERS.items():
                fns[label] = compile_time(sample_fn(net, sched, nfe, options), params, x)[1]
                out, info = jax.block_until_ready(fns[label](params, x))  # warm-up + NFE
                made[label] = int(info.nfe)
                ops[label] = loop_body_ops(fns[label], x)
                if not bool(jnp.all(jnp.isfinite(out))):
                    print(f"  warning: {name} {label} {nfe} NFE produced non-finite values")
            jax.block_until_ready(fns["floor"](params, x))
            times = {k: [] for k in fns}
            for _ in range(repeats):  # interleaved, so drifts in machine load hit all alike
                gc.collect()
                for k, fn in fns.items():
                    times[k].append(timed(fn, params, x))
            floor, floor_min = statistics.median(times["floor"]), min(times["floor"])
            for label in SOLVERS:
                ms = statistics.median(times[label])
                ratio_min = min(times[label]) / floor_min
                body = f"{ops[label][0]} copies + {ops[label][1]} fusions" if ops[label] else "?"
                rows.append(
                    (
                        name,
                        nfe,
                        label,
                        floor * 1e3,
                        ms * 1e3,
                        ms / floor,
                        ratio_min,
                        made[label],
                        body,
                    )
                )
                print(
                    f"  {name:<12} {nfe:>3} NFE  {label:<11} floor {floor * 1e3:9.2f} ms  "
                    f"sample {ms * 1e3:9.2f} ms  ratio {ms / floor:5.3f} (of minima {ratio_min:5.3f})  "
                    f"NFE made {made[label]}; loop body {body} (floor {ops['floor'][0]} + {ops['floor'][1]})",
                    flush=True,
                )
    return rows


def bench_compile(models, steps_list=(12, 120), repeats=7):
    """(median, min) trace+compile seconds of sample (DPM-Solver++(2M)) per model and steps.

    On the 2-core test machine single compile times are bimodal (about 0.45 s
    or 0.67 s for the same program, whatever the number of steps), hence 7
    interleaved repeats and the minimum printed beside the median.
    """
    out = {}
    for name, net, params, x in models:
        sched = schedules.discrete(betas=np.linspace(1e-4, 0.02, 1000))
        compile_time(
            sample_fn(net, sched, 5, SOLVERS["++2M (ms2)"]), params, x
        )  # warm-up, not counted
        times = {s: [] for s in steps_list}
        for _ in range(repeats):
            for s in steps_list:  # a fresh function every time: trace, lower and compile anew
                times[s].append(
                    compile_time(sample_fn(net, sched, s, SOLVERS["++2M (ms2)"]), params, x)[0]
                )
        out[name] = {s: (statistics.median(v), min(v)) for s, v in times.items()}
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="20 NFE only, 5 repeats")
    parser.add_argument(
        "--repeats", type=int, default=None, help="timed runs per program (default 11)"
    )
    args = parser.parse_args(argv)
    nfes = (20,) if args.quick else (10, 20, 50)
    repeats = args.repeats or (5 if args.quick else 11)

    dev = jax.devices()[0]
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, {platform.system()}"
    )
    print(
        f"jax {jax.__version__}, device {dev.platform}: {dev.device_kind}, python {platform.python_version()}"
    )
    print(f"median of {repeats} interleaved runs, steady state after compile; times in ms")
    print("targets are judged on medians; the ratio of minima is printed beside them")
    models = make_models()
    print("\nsample / floor:")
    rows = bench_speed(models, nfes, repeats)
    print("\ntrace+compile of sample (DPM-Solver++(2M)), 7 fresh functions each, median (min):")
    comp = bench_compile(models)
    for name, c in comp.items():
        print(
            f"  {name:<12} 12 steps {c[12][0]:5.2f} s ({c[12][1]:.2f})   120 steps {c[120][0]:5.2f} s "
            f"({c[120][1]:.2f})   ratio {c[120][0] / c[12][0]:5.2f} ({c[120][1] / c[12][1]:.2f})"
        )

    print("\n## Results\n")
    print(
        "| model | NFE | solver | floor ms | sample ms | sample/floor (medians) | (minima) "
        "| NFE made | loop body, state-sized ops (floor: 0 copies) |"
    )
    print("|---|---:|---|---:|---:|---:|---:|---:|---|")
    for name, nfe, label, floor, ms, ratio, ratio_min, made, body in rows:
        print(
            f"| {name} | {nfe} | {label} | {floor:.2f} | {ms:.2f} | {ratio:.3f} | {ratio_min:.3f} | {made} | {body} |"
        )
    print(
        "\n| model | compile 12 steps (s), median / min | compile 120 steps (s), median / min | ratio of medians | ratio of minima |"
    )
    print("|---|---:|---:|---:|---:|")
    for name, c in comp.items():
        print(
            f"| {name} | {c[12][0]:.2f} / {c[12][1]:.2f} | {c[120][0]:.2f} / {c[120][1]:.2f} "
            f"| {c[120][0] / c[12][0]:.2f} | {c[120][1] / c[12][1]:.2f} |"
        )

    print("\n## Targets\n")
    ok_all = True
    for name, limit in TARGETS.items():
        r = [row for row in rows if row[0] == name and row[1] == 20 and row[2] == "++2M (ms2)"]
        if r:
            ok = r[0][5] <= limit  # judged on the ratio of medians
            ok_all &= ok
            print(
                f"- {name}, DPM-Solver++(2M), 20 NFE: sample/floor {r[0][5]:.3f} <= {limit}: {'PASS' if ok else 'FAIL'}"
            )
    for name, c in comp.items():
        ratio, ratio_min = c[120][0] / c[12][0], c[120][1] / c[12][1]
        ok = ratio <= COMPILE_TARGET
        ok_all &= ok
        print(
            f"- {name}: compile(120)/compile(12) {ratio:.2f} <= {COMPILE_TARGET}: {'PASS' if ok else 'FAIL'}"
            f" (ratio of minima {ratio_min:.2f})"
        )
    print(f"\nall targets met: {ok_all}")


if __name__ == "__main__":
    main()
