"""A real model for the demo: a class-conditional UNet on 8x8 digits and a digit classifier.

This module needs Flax (``pip install "dpm_jax[demo]"``); ``import dpm_jax`` never
imports it. It holds

* :class:`UNet`, a small class-conditional noise-prediction UNet (Flax NNX) for
  the 8x8 images of ``sklearn.datasets.load_digits`` scaled to [-1, 1], called as
  ``net(x, t_input, labels)`` with ``x`` (B, 8, 8, 1), ``t_input`` the DDPM step
  in [0, 999] and ``labels`` in 0..9, or :data:`NULL_LABEL` for the
  unconditional model (classifier-free guidance, Ho & Salimans 2022);
* :class:`Classifier`, a small MLP digit classifier used to score samples;
* :func:`load`, which rebuilds both from the checkpoint bundled with the package
  (``dpm_jax/data/digits.msgpack``, written by ``examples/train_digits.py`` with
  ``flax.serialization``: msgpack, no pickle);
* :func:`guided_model` and :func:`generate`, which sample digits with
  :func:`dpm_jax.sample` and the parameters traced, so that a new checkpoint does
  not recompile.

>>> import jax, jax.numpy as jnp
>>> bundle = load()
>>> labels = jnp.repeat(jnp.arange(10), 3)  # three of each digit
>>> x0 = generate(bundle, labels, jax.random.key(0), steps=10)  # DPM-Solver++(2M), guided
>>> x0.shape
(30, 8, 8, 1)
>>> accuracy(bundle, x0, labels) > 0.9
True
"""

from __future__ import annotations

import functools
import importlib.resources
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx, serialization

import dpm_jax

__all__ = [
    "DEFAULT_GUIDANCE_SCALE",
    "DEFAULT_SKIP_TYPE",
    "IMAGE_SHAPE",
    "NULL_LABEL",
    "NUM_CLASSES",
    "SOLVERS",
    "Bundle",
    "Classifier",
    "UNet",
    "accuracy",
    "betas",
    "checkpoint_path",
    "classify",
    "edit_mask",
    "features",
    "fitted_grid",
    "frechet_distance",
    "generate",
    "guided_model",
    "load",
    "mosaic",
    "real_digits",
    "sample_options",
    "save",
    "schedule",
]

NUM_CLASSES = 10
NULL_LABEL = NUM_CLASSES  # the "no label" token of classifier-free guidance
IMAGE_SHAPE = (8, 8, 1)
NUM_TRAIN_STEPS = 1000

DEFAULT_UNET = dict(
    channels=(16, 32), blocks=1, emb_dim=128, groups=8, data_mean=-0.39, data_std=0.75
)  # load_digits in [-1, 1]: mean -0.389, std 0.752
DEFAULT_CLASSIFIER = dict(hidden=256)

#: samplers of :func:`generate`: name -> dpm_jax.sample options
SOLVERS = {
    "dpmsolver++": dict(method="multistep", order=2, algorithm_type="dpmsolver++"),  # 2M
    "ddim": dict(method="multistep", order=1, algorithm_type="dpmsolver"),
    "dpmsolver": dict(method="multistep", order=2, algorithm_type="dpmsolver"),
    "dpmsolver++3": dict(method="multistep", order=3, algorithm_type="dpmsolver++"),
    "unipc": dict(method="unipc", order=2),
    "unipc3": dict(method="unipc", order=3),
    "ipndm": dict(method="ipndm", order=4),
    "deis": dict(method="deis", order=3),
}
DEFAULT_SKIP_TYPE = "logSNR"
DEFAULT_GUIDANCE_SCALE = 2.0


def betas() -> np.ndarray:
    """The DDPM linear betas the UNet was trained with (1e-4 to 0.02, 1000 steps)."""
    return np.linspace(1e-4, 0.02, NUM_TRAIN_STEPS)


def schedule():
    """The model's noise schedule: ``dpm_jax.schedules.discrete(betas=betas())``."""
    return dpm_jax.schedules.discrete(betas=betas())


# --------------------------------------------------------------------------- models


def timestep_embedding(t, dim: int):
    """Sinusoidal embedding of the DDPM step t (B,) -> (B, dim), float32."""
    half = dim // 2
    freqs = jnp.exp(-math.log(10000.0) * jnp.arange(half, dtype=jnp.float32) / half)
    args = jnp.asarray(t, jnp.float32)[:, None] * freqs[None]
    return jnp.concatenate([jnp.cos(args), jnp.sin(args)], axis=-1)


class ResBlock(nnx.Module):
    """GroupNorm-SiLU-conv twice, the embedding added in between, and a skip."""

    def __init__(self, cin: int, cout: int, emb_dim: int, groups: int, *, rngs: nnx.Rngs):
        self.norm1 = nnx.GroupNorm(cin, num_groups=groups, rngs=rngs)
        self.conv1 = nnx.Conv(cin, cout, (3, 3), rngs=rngs)
        self.emb = nnx.Linear(emb_dim, cout, rngs=rngs)
        self.norm2 = nnx.GroupNorm(cout, num_groups=groups, rngs=rngs)
        self.conv2 = nnx.Conv(
            cout, cout, (3, 3), kernel_init=nnx.initializers.zeros_init(), rngs=rngs
        )
        self.skip = nnx.Conv(cin, cout, (1, 1), rngs=rngs) if cin != cout else None

    def __call__(self, x, emb):
        h = self.conv1(nnx.silu(self.norm1(x)))
        h = h + self.emb(nnx.silu(emb))[:, None, None, :]
        h = self.conv2(nnx.silu(self.norm2(h)))
        return h + (x if self.skip is None else self.skip(x))


class UNet(nnx.Module):
    """A class-conditional noise-prediction UNet for (B, 8, 8, 1) images.

    Two resolutions (8x8 and 4x4) with ``blocks`` residual blocks each on the way
    down and ``blocks + 1`` on the way up (with skip connections), a middle of
    two residual blocks at 4x4, a sinusoidal time embedding and a learned label
    embedding (``NUM_CLASSES + 1`` entries, the last one the null label) added to
    it. Call as ``net(x, t_input, labels)``; it returns the noise prediction

    .. math::
        \\hat\\epsilon = \\frac{\\sigma_t (x_t - \\alpha_t \\mu)}{\\alpha_t^2 s^2 + \\sigma_t^2}
              + \\frac{\\alpha_t s}{\\sqrt{\\alpha_t^2 s^2 + \\sigma_t^2}} F(x_t, t, y)

    with F the convolutional network and mu, s the data's mean and std: the
    first term is the exact noise predictor for Gaussian data of that mean and
    std, and F (zero at initialisation) learns the rest on a unit scale
    (preconditioning in the manner of Karras et al. 2022, EDM, Sec. 5). Without
    it, a small net on 64-pixel images cannot return eps ~ x_t/sigma_t with the
    precision that the data prediction x0 = (x_t - sigma_t eps) / alpha_t needs
    at high noise (1 / alpha_T ~ 160), and some ODE trajectories drift away.
    """

    def __init__(
        self,
        channels=(32, 64),
        blocks: int = 2,
        emb_dim: int = 128,
        groups: int = 8,
        data_mean: float = 0.0,
        data_std: float = 1.0,
        *,
        rngs: nnx.Rngs,
    ):
        self.emb_dim = emb_dim
        self.data_mean, self.data_std = float(data_mean), float(data_std)
        self.time1 = nnx.Linear(emb_dim, emb_dim, rngs=rngs)
        self.time2 = nnx.Linear(emb_dim, emb_dim, rngs=rngs)
        self.label = nnx.Embed(NUM_CLASSES + 1, emb_dim, rngs=rngs)
        c0 = channels[0]
        self.conv_in = nnx.Conv(1, c0, (3, 3), rngs=rngs)
        down: list[nnx.Module] = []
        skips, c = [c0], c0
        for level, ch in enumerate(channels):
            for _ in range(blocks):
                down.append(ResBlock(c, ch, emb_dim, groups, rngs=rngs))
                c = ch
                skips.append(c)
            if level < len(channels) - 1:
                down.append(nnx.Conv(c, c, (3, 3), strides=(2, 2), rngs=rngs))
                skips.append(c)
        self.down = nnx.List(down)
        self.mid = nnx.List([ResBlock(c, c, emb_dim, groups, rngs=rngs) for _ in range(2)])
        up: list[nnx.Module] = []
        for level, ch in reversed(list(enumerate(channels))):
            for _ in range(blocks + 1):
                up.append(ResBlock(c + skips.pop(), ch, emb_dim, groups, rngs=rngs))
                c = ch
            if level > 0:
                up.append(nnx.Conv(c, c, (3, 3), rngs=rngs))  # after a nearest 2x upsampling
        self.up = nnx.List(up)
        self.norm_out = nnx.GroupNorm(c, num_groups=groups, rngs=rngs)
        self.conv_out = nnx.Conv(c, 1, (3, 3), kernel_init=nnx.initializers.zeros_init(), rngs=rngs)

    def preconditioning(self, t_input):
        """(alpha_t, sigma_t, c_skip, c_out) at the DDPM step t_input (B,), as in the schedule:
        log alpha linear between the integer steps."""
        log_alpha_table = jnp.asarray(0.5 * np.log(np.cumprod(1.0 - betas())), jnp.float32)
        t = jnp.asarray(t_input, jnp.float32)
        log_alpha = jnp.interp(t, jnp.arange(NUM_TRAIN_STEPS, dtype=jnp.float32), log_alpha_table)
        alpha = jnp.exp(log_alpha)
        sigma = jnp.sqrt(-jnp.expm1(2.0 * log_alpha))
        var = alpha**2 * self.data_std**2 + sigma**2
        return alpha, sigma, sigma / var, alpha * self.data_std / jnp.sqrt(var)

    def __call__(self, x, t_input, labels):
        x = jnp.asarray(x, jnp.float32)
        alpha, _, c_skip, c_out = (v[:, None, None, None] for v in self.preconditioning(t_input))
        return c_skip * (x - alpha * self.data_mean) + c_out * self.residual(x, t_input, labels)

    def residual(self, x, t_input, labels):
        """F(x_t, t, y), the network's own output (unit scale)."""
        emb = self.time2(nnx.silu(self.time1(timestep_embedding(t_input, self.emb_dim))))
        emb = emb + self.label(jnp.asarray(labels, jnp.int32))
        h = self.conv_in(x)
        hs = [h]
        for layer in self.down:
            h = layer(h, emb) if isinstance(layer, ResBlock) else layer(h)
            hs.append(h)
        for layer in self.mid:
            h = layer(h, emb)
        for layer in self.up:
            if isinstance(layer, ResBlock):
                h = layer(jnp.concatenate([h, hs.pop()], axis=-1), emb)
            else:
                b, hh, ww, c = h.shape
                h = layer(jax.image.resize(h, (b, 2 * hh, 2 * ww, c), "nearest"))
        return self.conv_out(nnx.silu(self.norm_out(h)))


class Classifier(nnx.Module):
    """An MLP digit classifier on (B, 8, 8, 1) images in [-1, 1]: 64 -> hidden -> hidden -> 10."""

    def __init__(self, hidden: int = 256, *, rngs: nnx.Rngs):
        self.l1 = nnx.Linear(64, hidden, rngs=rngs)
        self.l2 = nnx.Linear(hidden, hidden, rngs=rngs)
        self.l3 = nnx.Linear(hidden, NUM_CLASSES, rngs=rngs)

    def __call__(self, x):
        h = jnp.asarray(x, jnp.float32).reshape(x.shape[0], -1)
        h = nnx.gelu(self.l1(h))
        h = nnx.gelu(self.l2(h))
        return self.l3(h)


# --------------------------------------------------------------------------- checkpoint


class Bundle(NamedTuple):
    """The bundled models, split Flax-NNX style: static graph definitions and
    parameter pytrees (pass the parameters through ``jax.jit`` as arguments)."""

    unet_graph: Any
    unet_params: Any
    classifier_graph: Any
    classifier_params: Any
    meta: dict

    def unet(self, params=None) -> UNet:
        """The UNet module with ``params`` (default: the bundle's)."""
        return nnx.merge(self.unet_graph, self.unet_params if params is None else params)

    def classifier(self, params=None) -> Classifier:
        """The classifier module with ``params`` (default: the bundle's)."""
        return nnx.merge(
            self.classifier_graph, self.classifier_params if params is None else params
        )


def checkpoint_path():
    """The path of the bundled checkpoint (package data)."""
    return importlib.resources.files("dpm_jax") / "data" / "digits.msgpack"


def _abstract(cls, config):
    return nnx.eval_shape(lambda: cls(**config, rngs=nnx.Rngs(0)))


def save(
    path,
    unet: UNet,
    classifier: Classifier,
    unet_config: dict,
    classifier_config: dict,
    meta: dict | None = None,
    dtype=np.float16,
) -> int:
    """Writes both models to ``path`` with ``flax.serialization`` (msgpack), parameters in
    ``dtype`` (float16 halves the file; they are cast back to float32 on load). Returns bytes."""

    def pure(module):
        return jax.tree_util.tree_map(
            lambda a: np.asarray(a, dtype), nnx.to_pure_dict(nnx.state(module, nnx.Param))
        )

    payload = {
        "format": "dpm_jax.digits/1",
        "unet_config": {
            k: (list(v) if isinstance(v, tuple) else v) for k, v in unet_config.items()
        },
        "classifier_config": dict(classifier_config),
        "unet": pure(unet),
        "classifier": pure(classifier),
        "meta": dict(meta or {}),
    }
    data = serialization.msgpack_serialize(payload)
    with open(path, "wb") as f:
        f.write(data)
    return len(data)


def load(path=None) -> Bundle:
    """Loads the bundled checkpoint (or the one at ``path``) into a :class:`Bundle`.

    >>> b = load()
    >>> b.meta["classifier_heldout_accuracy"] > 0.95
    True
    """
    if path is None:
        data = checkpoint_path().read_bytes()
    else:
        with open(path, "rb") as f:
            data = f.read()
    payload = serialization.msgpack_restore(data)
    if payload.get("format") != "dpm_jax.digits/1":
        raise ValueError(f"{path or checkpoint_path()}: not a dpm_jax digits checkpoint.")
    unet_config = {
        k: (tuple(v) if isinstance(v, list) else v) for k, v in payload["unet_config"].items()
    }

    def restore(cls, config, pure):
        graph, state = nnx.split(_abstract(cls, config))
        pure = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float32), pure)
        nnx.replace_by_pure_dict(state, pure)
        return graph, state

    ug, up = restore(UNet, unet_config, payload["unet"])
    cg, cp = restore(Classifier, payload["classifier_config"], payload["classifier"])
    return Bundle(ug, up, cg, cp, dict(payload.get("meta", {})))


# --------------------------------------------------------------------------- sampling


def guided_model(graph, params, labels, guidance_scale=DEFAULT_GUIDANCE_SCALE, sched=None):
    """The UNet wrapped for :func:`dpm_jax.sample` with classifier-free guidance.

    ``eps = eps(x, t, null) + s (eps(x, t, labels) - eps(x, t, null))``, one call on a
    doubled batch. ``params`` and ``guidance_scale`` may be traced.
    """
    sched = schedule() if sched is None else sched
    labels = jnp.asarray(labels, jnp.int32)

    def net(x, t_input, cond):
        return nnx.merge(graph, params)(x, t_input, cond).astype(x.dtype)

    return dpm_jax.model_wrapper(
        net,
        sched,
        model_type="noise",
        guidance_type="classifier-free",
        condition=labels,
        unconditional_condition=jnp.full_like(labels, NULL_LABEL),
        guidance_scale=guidance_scale,
    )


def _generate(params, x_T, labels, guidance_scale, *, graph, options: tuple):
    """dpm_jax.sample of the guided UNet with ``options`` (a tuple of (name, value) pairs)."""
    model = guided_model(graph, params, labels, guidance_scale)
    return dpm_jax.sample(model, x_T, model.schedule, return_info=True, **dict(options))


_generate_jit = jax.jit(_generate, static_argnames=("graph", "options"))


def sample_options(
    method: str = "dpmsolver++",
    *,
    steps: int | None = None,
    skip_type: str = DEFAULT_SKIP_TYPE,
    timesteps=None,
) -> tuple:
    """The (hashable) dpm_jax.sample options of :func:`generate`."""
    if method not in SOLVERS:
        raise ValueError(f"`method` must be one of {sorted(SOLVERS)}, got {method!r}.")
    opts = dict(SOLVERS[method])
    if timesteps is not None:
        grid = tuple(float(t) for t in np.asarray(timesteps, np.float64))
        if steps is not None and steps != len(grid) - 1:
            raise ValueError(f"`steps`={steps} disagrees with `timesteps` of length {len(grid)}.")
        opts["timesteps"] = grid
    else:
        opts.update(steps=10 if steps is None else int(steps), skip_type=skip_type)
    return tuple(sorted(opts.items()))


def generate(
    bundle: Bundle,
    labels,
    key,
    *,
    steps: int | None = None,
    method: str = "dpmsolver++",
    guidance_scale=DEFAULT_GUIDANCE_SCALE,
    skip_type: str = DEFAULT_SKIP_TYPE,
    timesteps=None,
    params=None,
    return_info: bool = False,
):
    """Samples one digit per label with classifier-free guidance.

    ``method`` is a key of :data:`SOLVERS`: "dpmsolver++" (DPM-Solver++(2M)), "ddim"
    (first order), "dpmsolver" (DPM-Solver-2M), "dpmsolver++3" (3M), "unipc" (UniPC-2),
    "unipc3", "ipndm" (iPNDM-4), "deis" (DEIS-tAB3). ``steps`` (default 10) on
    ``skip_type``, or an explicit grid ``timesteps`` (e.g. :func:`fitted_grid`'s). The
    program is compiled once per (options, batch); parameters, labels, guidance scale
    and key are traced arguments. Returns (B, 8, 8, 1) in roughly [-1, 1] (and the
    :class:`dpm_jax.SampleInfo` with ``return_info``).
    """
    options = sample_options(method, steps=steps, skip_type=skip_type, timesteps=timesteps)
    labels = jnp.asarray(labels, jnp.int32)
    x_T = jax.random.normal(key, (labels.shape[0],) + IMAGE_SHAPE, jnp.float32)
    x0, info = _generate_jit(
        bundle.unet_params if params is None else params,
        x_T,
        labels,
        jnp.asarray(guidance_scale, jnp.float32),
        graph=bundle.unet_graph,
        options=options,
    )
    return (x0, info) if return_info else x0


def fitted_grid():
    """The time grid fitted to the bundled UNet by ``tools/fit_demo_grid.py`` (package data
    ``data/digits_grid.json``): a :class:`dpm_jax.optimize.TimestepFile` whose ``meta``
    holds what it was fitted for and its held-out figures, or None if it is missing."""
    path = importlib.resources.files("dpm_jax") / "data" / "digits_grid.json"
    if not path.is_file():
        return None
    return dpm_jax.load_timesteps(path, schedule=schedule())


@functools.partial(jax.jit, static_argnames=("graph", "draws"))
def _edit_mask(params, x, source, target, key, t, threshold, *, graph, draws):
    sched = schedule()
    net = nnx.merge(graph, params)
    t_in = jnp.full((2 * x.shape[0],), sched.time_input(t), x.dtype)
    labels = jnp.concatenate([source, target])

    def disagreement(k):  # one call on a doubled batch: eps under the source, then the target
        x_t = dpm_jax.add_noise(sched, x, jax.random.normal(k, x.shape, x.dtype), t)
        eps_a, eps_b = jnp.split(net(jnp.concatenate([x_t, x_t]), t_in, labels), 2)
        return jnp.abs(eps_b - eps_a)

    diff = jnp.mean(jax.lax.map(disagreement, jax.random.split(key, draws)), axis=0)
    diff = diff / jnp.maximum(jnp.max(diff, axis=(1, 2, 3), keepdims=True), 1e-12)
    return (diff > threshold).astype(x.dtype)


def edit_mask(
    bundle: Bundle,
    x,
    source,
    target,
    key,
    *,
    t: float = 0.5,
    draws: int = 8,
    threshold: float = 0.3,
    params=None,
):
    """DiffEdit's mask (Couairon et al. 2022, arXiv 2210.11427, Sec. 3.2): where digits
    ``x`` of class ``source`` must change to become ``target``.

    The UNet's noise predictions under the two labels, ``|eps(x_t, target) -
    eps(x_t, source)|``, at time ``t`` for ``draws`` noisings x_t of x (``key``),
    averaged, divided by each image's maximum and compared with ``threshold``.
    Returns x's shape and dtype: 1 where the edit happens, 0 where the image is kept
    (the recipe of ``docs/editing.md``).
    """
    x = jnp.asarray(x)
    if x.ndim != 4 or x.shape[1:] != IMAGE_SHAPE or not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(f"`x` must be floating images (B, 8, 8, 1), got {x.dtype} {x.shape}.")
    source = jnp.asarray(source, jnp.int32)
    target = jnp.asarray(target, jnp.int32)
    for name, v in (("source", source), ("target", target)):
        if v.shape != x.shape[:1]:
            raise ValueError(
                f"`{name}` must hold one label per image {x.shape[:1]}, got {v.shape}."
            )
    if isinstance(draws, bool) or not isinstance(draws, int) or draws < 1:
        raise ValueError(f"`draws` must be a positive int, got {draws!r}.")
    sched = schedule()
    if not sched.t_eps < float(t) <= sched.T:
        raise ValueError(f"`t` must lie in ({sched.t_eps}, {sched.T}], got {t!r}.")
    if not 0.0 <= float(threshold) < 1.0:
        raise ValueError(f"`threshold` must lie in [0, 1), got {threshold!r}.")
    return _edit_mask(
        bundle.unet_params if params is None else params,
        x,
        source,
        target,
        key,
        jnp.asarray(t, x.dtype),
        jnp.asarray(threshold, x.dtype),
        graph=bundle.unet_graph,
        draws=draws,
    )


@functools.partial(jax.jit, static_argnames="graph")
def _predict(params, x, *, graph):
    x = jnp.clip(jnp.asarray(x, jnp.float32), -1.0, 1.0)
    return jnp.argmax(nnx.merge(graph, params)(x), axis=-1)


def classify(bundle: Bundle, x) -> np.ndarray:
    """The classifier's predicted digit for each image of x (B, 8, 8, 1) (clipped to [-1, 1])."""
    return np.asarray(_predict(bundle.classifier_params, x, graph=bundle.classifier_graph))


@functools.partial(jax.jit, static_argnames=("graph",))
def _features(params, x, *, graph):
    clf = nnx.merge(graph, params)
    h = jnp.clip(jnp.asarray(x, jnp.float32), -1.0, 1.0).reshape(x.shape[0], -1)
    return nnx.gelu(clf.l2(nnx.gelu(clf.l1(h))))


def features(bundle: Bundle, x) -> np.ndarray:
    """The classifier's penultimate-layer features of images x (B, 8, 8, 1), (B, hidden):
    the feature space of :func:`frechet_distance` (the digits' analogue of FID's)."""
    return np.asarray(
        _features(bundle.classifier_params, x, graph=bundle.classifier_graph), np.float64
    )


def real_digits() -> np.ndarray:
    """The 1,797 sklearn digits as (1797, 8, 8, 1) images in [-1, 1] (needs scikit-learn)."""
    from sklearn.datasets import load_digits

    return (load_digits().images.astype(np.float64) / 8.0 - 1.0)[..., None]


def frechet_distance(a, b) -> float:
    """The Frechet distance between Gaussians fitted to feature sets a and b (n, d):
    ``|mu_a - mu_b|^2 + tr(C_a + C_b - 2 (C_a^1/2 C_b C_a^1/2)^1/2)`` (Heusel et al. 2017)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    mu = a.mean(0) - b.mean(0)
    ca, cb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    w, v = np.linalg.eigh(ca)
    root_a = (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T
    cross = np.linalg.eigvalsh(root_a @ cb @ root_a)
    return float(
        mu @ mu + np.trace(ca) + np.trace(cb) - 2.0 * np.sum(np.sqrt(np.clip(cross, 0, None)))
    )


def accuracy(bundle: Bundle, x, labels) -> float:
    """The fraction of images x that the classifier assigns to ``labels``."""
    return float(np.mean(classify(bundle, x) == np.asarray(labels)))


def mosaic(x, per_row: int) -> np.ndarray:
    """Images x (n, 8, 8, 1) in [-1, 1] as one greyscale image in [0, 1], ``per_row`` per row,
    ink dark on white paper, 1-pixel white gaps (for ``imshow(..., cmap="gray")``).

    >>> mosaic(-np.ones((20, 8, 8, 1)), 10).shape
    (17, 89)
    """
    x = np.asarray(x, np.float64)[..., 0]
    n, h, w = x.shape
    rows = -(-n // per_row)
    x = np.concatenate([x, -np.ones((rows * per_row - n, h, w))])
    ink = np.clip((1.0 - x) / 2.0, 0.0, 1.0).reshape(rows, per_row, h, w)
    ink = np.pad(ink, ((0, 0), (0, 0), (0, 1), (0, 1)), constant_values=1.0)
    return ink.transpose(0, 2, 1, 3).reshape(rows * (h + 1), per_row * (w + 1))[:-1, :-1]
