"""Train the bundled digits model: a class-conditional UNet (Flax NNX) and a digit classifier.

Data: ``sklearn.datasets.load_digits`` (1,797 images, 8x8, 17 grey levels),
scaled to [-1, 1] at their native 8x8 resolution. The UNet
(:class:`dpm_jax.demo.digits.UNet`, 0.2 M parameters: 8x8 and 4x4 levels of 16 and
32 channels) learns the noise prediction eps(x_t, t, label) under the DDPM
linear betas (1e-4 to 0.02, 1,000 steps), with the label replaced by the null
label with probability ``--p-uncond`` (classifier-free guidance). Its output is
preconditioned (see the class): the network's own output regresses a
unit-scale target, i.e. the noise MSE is weighted by 1 / c_out(t)^2. AdamW
(batch 64, 4,000 steps, warm-up then cosine decay of the learning rate) and an
exponential moving average of the weights (the EMA weights are saved). The
classifier (:class:`dpm_jax.demo.digits.Classifier`, an MLP) is trained on a fixed
80 % split, with a little input noise, and its accuracy on the other 20 % is
printed and stored.

Everything is seeded (``--seed``): on one machine a rerun gives the same weights
bit for bit. The checkpoint is written with ``flax.serialization`` (msgpack, no
pickle), parameters in float16: 0.58 MB. Usage::

    pip install -e ".[demo]" scikit-learn
    python examples/train_digits.py                       # digits.msgpack, ~6-8 min on 2 cores
    python -m dpm_jax.demo --checkpoint digits.msgpack    # sample from it
    python benchmarks/digits_quality.py --checkpoint digits.msgpack
    cp digits.msgpack dpm_jax/data/digits.msgpack         # replace the bundled one

Why Flax NNX: the Flax documentation encourages new code to use NNX (Linen stays
supported, not deprecated); NNX modules are plain Python objects, and
``nnx.split`` / ``nnx.merge`` give the (static graph, parameter pytree) pair that
``jax.jit`` needs to keep the parameters traced while sampling.

The training step is a jitted function called from a Python loop, not a
``lax.scan`` over steps: on XLA:CPU (jax 0.10) the convolutions' gradients ran
about 15x slower inside a scan than in a jitted step of their own.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from dpm_jax.demo import digits


def load_data():
    """(images (N, 8, 8, 1) float32 in [-1, 1], labels (N,) int32) from scikit-learn."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images.astype(np.float32) / 16.0) * 2.0 - 1.0
    return x[..., None], d.target.astype(np.int32)


def train_unet(x_all, y_all, *, steps, batch, lr, p_uncond, ema_decay, seed, log, log_every=500):
    """Trains the UNet; returns (EMA module, config, seconds)."""
    config = dict(digits.DEFAULT_UNET)
    model = digits.UNet(**config, rngs=nnx.Rngs(seed))
    graph, params = nnx.split(model, nnx.Param)
    n_params = sum(p.size for p in jax.tree_util.tree_leaves(params))
    log(f"UNet: {n_params:,} parameters, config {config}")
    sched = optax.warmup_cosine_decay_schedule(0.0, lr, min(500, steps // 10), steps, lr * 0.02)
    tx = optax.adamw(sched, weight_decay=1e-4)
    opt_state = tx.init(params)
    ab = jnp.asarray(np.cumprod(1.0 - digits.betas()), jnp.float32)
    x_all, y_all = jnp.asarray(x_all), jnp.asarray(y_all)

    def loss_fn(p, x0, y, t, noise):
        a = jnp.sqrt(ab[t])[:, None, None, None]
        s = jnp.sqrt(1.0 - ab[t])[:, None, None, None]
        net = nnx.merge(graph, p)
        pred = net(a * x0 + s * noise, t, y)  # the noise prediction
        # MSE of the noise prediction weighted by 1 / c_out(t)^2: the network's own output F
        # regresses a unit-scale target at every t (see digits.UNet).
        c_out = net.preconditioning(t)[3][:, None, None, None]
        return jnp.mean(((pred - noise) / c_out) ** 2)

    def one_step(carry, key):
        p, ema, opt = carry
        ki, kt, kn, kd = jax.random.split(key, 4)
        idx = jax.random.randint(ki, (batch,), 0, x_all.shape[0])
        x0, y = x_all[idx], y_all[idx]
        y = jnp.where(jax.random.uniform(kd, (batch,)) < p_uncond, digits.NULL_LABEL, y)
        t = jax.random.randint(kt, (batch,), 0, digits.NUM_TRAIN_STEPS)
        noise = jax.random.normal(kn, x0.shape)
        loss, g = jax.value_and_grad(loss_fn)(p, x0, y, t, noise)
        upd, opt = tx.update(g, opt, p)
        p = optax.apply_updates(p, upd)
        ema = jax.tree_util.tree_map(lambda e, q: ema_decay * e + (1 - ema_decay) * q, ema, p)
        return (p, ema, opt), loss

    # A Python loop over a jitted step, not a lax.scan (see the module docstring).
    train_step = jax.jit(one_step, donate_argnums=0)
    carry = (params, jax.tree_util.tree_map(jnp.copy, params), opt_state)
    keys = jax.random.split(jax.random.key(seed + 1), steps)
    t0 = time.perf_counter()
    losses = []
    for i in range(steps):
        carry, loss = train_step(carry, keys[i])
        losses.append(loss)
        if (i + 1) % log_every == 0 or i + 1 == steps:
            mean_loss = float(jnp.mean(jnp.stack(losses)))
            losses = []
            log(f"  step {i + 1:6d}  loss {mean_loss:.4f}  {time.perf_counter() - t0:6.1f} s")
    seconds = time.perf_counter() - t0
    return nnx.merge(graph, carry[1]), config, seconds


def train_classifier(x_all, y_all, *, steps, seed, log):
    """Trains the MLP classifier on an 80 % split; returns (module, config, held-out accuracy)."""
    config = dict(digits.DEFAULT_CLASSIFIER)
    perm = np.random.default_rng(seed).permutation(x_all.shape[0])
    n_train = int(0.8 * x_all.shape[0])
    tr, te = perm[:n_train], perm[n_train:]
    model = digits.Classifier(**config, rngs=nnx.Rngs(seed + 2))
    graph, params = nnx.split(model, nnx.Param)
    tx = optax.adamw(optax.cosine_decay_schedule(2e-3, steps), weight_decay=1e-3)
    opt_state = tx.init(params)
    xtr, ytr = jnp.asarray(x_all[tr]), jnp.asarray(y_all[tr])

    def loss_fn(p, x, y):
        logits = nnx.merge(graph, p)(x)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    def one_step(carry, key):
        p, opt = carry
        ki, kn = jax.random.split(key)
        idx = jax.random.randint(ki, (128,), 0, xtr.shape[0])
        x = xtr[idx] + 0.1 * jax.random.normal(kn, xtr[idx].shape)  # a little robustness
        g = jax.grad(loss_fn)(p, x, ytr[idx])
        upd, opt = tx.update(g, opt, p)
        return (optax.apply_updates(p, upd), opt), None

    step = jax.jit(one_step, donate_argnums=0)
    carry = (params, opt_state)
    for k in jax.random.split(jax.random.key(seed + 3), steps):
        carry, _ = step(carry, k)
    params = carry[0]
    model = nnx.merge(graph, params)
    pred = np.asarray(jnp.argmax(model(jnp.asarray(x_all[te])), -1))
    acc = float(np.mean(pred == y_all[te]))
    log(f"classifier: held-out accuracy {acc:.4f} on {te.size} real digits")
    return model, config, acc


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--out", default="digits.msgpack", help="checkpoint path (default digits.msgpack)"
    )
    parser.add_argument(
        "--steps", type=int, default=4000, help="UNet training steps (default 4000)"
    )
    parser.add_argument("--batch", type=int, default=64, help="batch size (default 64)")
    parser.add_argument("--lr", type=float, default=2e-3, help="peak learning rate (default 2e-3)")
    parser.add_argument(
        "--p-uncond",
        type=float,
        default=0.1,
        help="probability of dropping the label (default 0.1)",
    )
    parser.add_argument("--ema", type=float, default=0.999, help="EMA decay (default 0.999)")
    parser.add_argument(
        "--classifier-steps",
        type=int,
        default=2000,
        help="classifier training steps (default 2000)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of everything (default 0)")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.classifier_steps < 1:
        parser.error("--steps and --classifier-steps must be positive")

    def log(msg):
        print(msg, flush=True)

    log(f"jax {jax.__version__} on {jax.devices()[0].platform}")
    t_start = time.perf_counter()
    x, y = load_data()
    log(f"data: {x.shape[0]} digits, {x.shape[1:]}, in [{x.min():.0f}, {x.max():.0f}]")
    classifier, c_config, c_acc = train_classifier(
        x, y, steps=args.classifier_steps, seed=args.seed, log=log
    )
    unet, u_config, seconds = train_unet(
        x,
        y,
        steps=args.steps,
        batch=args.batch,
        lr=args.lr,
        p_uncond=args.p_uncond,
        ema_decay=args.ema,
        seed=args.seed,
        log=log,
    )
    meta = dict(
        steps=args.steps,
        batch=args.batch,
        lr=args.lr,
        p_uncond=args.p_uncond,
        ema=args.ema,
        seed=args.seed,
        classifier_steps=args.classifier_steps,
        classifier_heldout_accuracy=c_acc,
        train_seconds=round(seconds, 1),
        jax=jax.__version__,
    )
    size = digits.save(args.out, unet, classifier, u_config, c_config, meta)
    log(f"UNet training: {seconds:.1f} s; total {time.perf_counter() - t_start:.1f} s")
    log(f"wrote {args.out} ({size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
