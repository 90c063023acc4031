"""Host time of an eager ``dpm_jax.sample`` call, and weights closed over by the network.

Two measurements, each run for one or two source trees side by side (``--before DIR``: a
checkout of an older commit; each tree runs in its own subprocess, interleaved, on the same
machine, so their ratio is the figure of merit):

1. **Host time per eager call with a cached program.** A nearly free model
   (``eps = 0.1 x``, x of shape (4, 16) float32, discrete DDPM schedule) is sampled eagerly
   (no ``jax.jit`` around the call) with every method at 20 and 100 steps (the adaptive
   solver at its default tolerances); after two warm-up calls (compilation), the median
   wall time of 15 calls, each ended by ``block_until_ready``, with the same schedule and
   wrapper objects reused ("eager"), and with a fresh ``schedules.discrete(...)`` and
   ``model_wrapper`` built for every call ("rebuilt", as a training loop that samples
   every N steps would). The same run under a user's ``jax.jit`` (dispatch and the
   compiled program only) is printed beside them, so ``eager - jit`` is the host time
   spent planning, tracing and looking up the program. The last rows use a
   network that reads a (16, 16) array from its closure (traced again at every eager
   call, which is how it sees new weights).
2. **64 MiB of weights closed over.** ``net(x, t) = tanh(x @ W)`` with W (4096, 4096)
   float32 captured by a closure; the wall time of the first eager call (trace + compile
   + run), the second call with a *new* W of the same shape (a new checkpoint: is the
   program reused, and is the new W used?), the live device memory after 5 calls with 5
   new closures and ``del``, (W itself: 64 MiB).

Usage::

    python benchmarks/host_overhead.py                              # this tree
    git worktree add /tmp/before <commit>
    python benchmarks/host_overhead.py --before /tmp/before         # side by side
    python benchmarks/host_overhead.py --quick                      # two methods only
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

METHODS = {
    "multistep 2M": dict(method="multistep", order=2),
    "multistep 3M": dict(method="multistep", order=3),
    "singlestep 3": dict(method="singlestep", order=3),
    "singlestep_fixed 2": dict(method="singlestep_fixed", order=2),
    "unipc 2": dict(method="unipc", order=2),
    "ipndm 4": dict(method="ipndm", order=4),
    "deis 3": dict(method="deis", order=3),
    "heun": dict(method="heun", order=2),
    "dpm2": dict(method="dpm2", order=2),
    "sde-dpmsolver++ 2M": dict(method="multistep", order=2, algorithm_type="sde-dpmsolver++"),
    "karras 2M": dict(method="multistep", order=2, skip_type="karras"),
}


def _worker(what: str) -> dict:
    """Runs in a subprocess whose sys.path starts with the tree under test."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    import dpm_jax
    from dpm_jax import schedules

    betas = np.linspace(1e-4, 0.02, 1000)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(4, 16)), jnp.float32)
    out: dict = {"jax": jax.__version__}

    def net(x, t):
        return 0.1 * x

    w = jnp.asarray(0.1 * np.eye(16), jnp.float32)

    def net_w(x, t):  # reads an array from its closure: traced again at each eager call
        return x @ w

    if what in ("host", "host-quick"):
        rows = {}
        cases = [(n, o, s, net) for n, o in METHODS.items() for s in (20, 100)]
        if what == "host-quick":
            cases = cases[:2]
        cases.append(("adaptive 3", dict(method="adaptive", order=3), None, net))
        cases += [("2M, closure over an array", dict(order=2), s, net_w) for s in (20, 100)]
        for name, opts, steps, fn_net in cases:
            kw = dict(opts, **({} if steps is None else {"steps": steps}))
            if "sde" in kw.get("algorithm_type", ""):
                kw["key"] = jax.random.key(0)

            def rebuilt():
                sched = schedules.discrete(betas=betas)
                model = dpm_jax.model_wrapper(fn_net, sched)
                return dpm_jax.sample(model, x, sched, **kw)

            sched0 = schedules.discrete(betas=betas)
            model0 = dpm_jax.model_wrapper(fn_net, sched0)
            jitted = jax.jit(lambda x: dpm_jax.sample(model0, x, sched0, **kw))
            fns = (
                (lambda: dpm_jax.sample(model0, x, sched0, **kw), "eager"),
                (rebuilt, "rebuilt"),
                (lambda: jitted(x), "jit"),
            )
            times = {label: [] for _, label in fns}
            for fn, _label in fns:
                for _ in range(2):
                    jax.block_until_ready(fn())
            for _ in range(15 if what == "host" else 5):
                for fn, label in fns:
                    t0 = time.perf_counter()
                    jax.block_until_ready(fn())
                    times[label].append(time.perf_counter() - t0)
            rows[f"{name} @ {steps or 'auto'}"] = {
                k: statistics.median(v) * 1e3 for k, v in times.items()
            }
        out["host"] = rows
    elif what == "hlo":
        out["hlo"] = _hlo_digests()
    else:
        rng = np.random.default_rng(1)
        xb = jnp.asarray(rng.normal(size=(8, 4096)), jnp.float32)
        sched = schedules.vp_linear()

        def closure(W):
            return lambda x, t: jnp.tanh(x @ W) * 0.1

        def run(W):
            model = dpm_jax.model_wrapper(closure(W), sched)
            return dpm_jax.sample(model, xb, sched, steps=5)

        W1 = jnp.asarray(rng.normal(size=(4096, 4096)) / 64, jnp.float32)
        W2 = W1 * 0.5
        t0 = time.perf_counter()
        y1 = jax.block_until_ready(run(W1))
        out["first_call_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        y2 = jax.block_until_ready(run(W2))
        out["new_weights_call_s"] = time.perf_counter() - t0
        out["new_weights_used"] = bool(np.any(np.asarray(y1) != np.asarray(y2)))
        del y1, y2, W2
        import gc

        gc.collect()
        base = sum(a.nbytes for a in jax.live_arrays()) / 2**20
        for k in range(5):
            Wk = W1 + k
            jax.block_until_ready(run(Wk))
            del Wk
        gc.collect()
        out["live_mib_before"] = base
        out["live_mib_after_5_new_closures"] = sum(a.nbytes for a in jax.live_arrays()) / 2**20
    return out


def _hlo_digests() -> dict:
    """sha256 of the lowered program of ``jax.jit(lambda params, x: sample(...))`` (the
    traced-parameters pattern, a small linen conv net) for a few solvers."""
    import hashlib

    import flax.linen as nn
    import jax
    import jax.numpy as jnp
    import numpy as np

    import dpm_jax
    from dpm_jax import schedules

    sched = schedules.discrete(betas=np.linspace(1e-4, 0.02, 1000))

    class Net(nn.Module):
        @nn.compact
        def __call__(self, x, t):
            h = jax.nn.silu(nn.Conv(8, (3, 3))(x))
            return nn.Conv(3, (3, 3))(h) * (t[:, None, None, None] / 1000)

    net = Net()
    x = jnp.ones((2, 8, 8, 3))
    params = net.init(jax.random.key(0), x, jnp.ones(2))
    cases = {
        "2M": dict(steps=20),
        "ss3": dict(steps=20, order=3, method="singlestep"),
        "unipc3": dict(steps=10, method="unipc", order=3),
        "deis3": dict(steps=10, method="deis", order=3),
        "sde-2M": dict(steps=10, algorithm_type="sde-dpmsolver++"),
        "adaptive": dict(method="adaptive", order=2),
    }
    out = {}
    for name, opts in cases.items():

        def f(p, x, key, opts=opts, name=name):
            m = dpm_jax.model_wrapper(lambda x, t: net.apply(p, x, t), sched)
            kw = dict(key=key) if "sde" in name else {}
            return dpm_jax.sample(m, x, sched, **kw, **opts)

        txt = jax.jit(f).lower(params, x, jax.random.key(0)).as_text()
        out[name] = hashlib.sha256(txt.encode()).hexdigest()[:12]
    return out


def _run(tree: str, what: str) -> dict:
    env = dict(os.environ, PYTHONPATH=tree, JAX_PLATFORMS="cpu")
    code = (
        f"import sys, json; sys.path.insert(0, {HERE!r}); sys.path.insert(0, {tree!r}); "
        f"import host_overhead as h; print('@@' + json.dumps(h._worker({what!r})))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd="/"
    )
    if proc.returncode:
        raise RuntimeError(f"{tree}: {proc.stderr[-3000:]}")
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("@@")][-1]
    return json.loads(line[2:])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--before", help="a checkout of the older code, run side by side")
    ap.add_argument("--quick", action="store_true", help="two methods, 5 repeats")
    args = ap.parse_args()
    trees = {"after": ROOT} if not args.before else {"before": args.before, "after": ROOT}
    print(
        f"machine: {platform.machine()} {platform.processor() or ''}, {os.cpu_count()} cores, "
        f"python {platform.python_version()}"
    )
    res = {label: {} for label in trees}
    for what in ("host-quick" if args.quick else "host", "weights", "hlo"):
        for label, tree in trees.items():
            res[label].update(_run(tree, what))
    print("jax", res["after"]["jax"])
    print(
        "\n1. wall time per call, ms (median): eager = the same schedule and wrapper reused; "
        "rebuilt = both built afresh for every call; jit = the same run under the user's "
        "jax.jit. host = eager - jit (planning, tracing, dispatch)"
    )
    head = "| method @ steps |" + "".join(f" {k} eager | {k} rebuilt | {k} jit |" for k in trees)
    if len(trees) == 2:
        head += " host before | host after | before / after (eager) | before / after (rebuilt) |"
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for case in res["after"]["host"]:
        row = f"| {case} |"
        for label in trees:
            r = res[label]["host"][case]
            row += f" {r['eager']:.2f} | {r['rebuilt']:.2f} | {r['jit']:.2f} |"
        if len(trees) == 2:
            b, a = res["before"]["host"][case], res["after"]["host"][case]
            row += (
                f" {b['eager'] - b['jit']:.2f} | {a['eager'] - a['jit']:.2f} |"
                f" x{b['eager'] / a['eager']:.1f} | x{b['rebuilt'] / a['rebuilt']:.1f} |"
            )
        print(row)
    print("\n2. a network closing over 64 MiB of weights (W: 4096 x 4096 float32)")
    keys = [
        "first_call_s",
        "new_weights_call_s",
        "new_weights_used",
        "live_mib_before",
        "live_mib_after_5_new_closures",
    ]
    print("| |" + "".join(f" {k} |" for k in trees))
    print("|---|" + "---|" * len(trees))
    for k in keys:
        vals = [res[label][k] for label in trees]
        fmt = [f"{v:.3f}" if isinstance(v, float) else str(v) for v in vals]
        print(f"| {k} |" + "".join(f" {v} |" for v in fmt))
    print("\n3. lowered HLO of jax.jit(lambda params, x: sample(...)) (sha256, first 12)")
    print("| solver |" + "".join(f" {k} |" for k in trees) + (" same |" if len(trees) == 2 else ""))
    print("|---|" + "---|" * (len(trees) + (len(trees) == 2)))
    for name in res["after"]["hlo"]:
        vals = [res[label]["hlo"][name] for label in trees]
        same = f" {'yes' if len(set(vals)) == 1 else 'NO'} |" if len(trees) == 2 else ""
        print(f"| {name} |" + "".join(f" {v} |" for v in vals) + same)


if __name__ == "__main__":
    main()
