"""LD3: the grid learned by back-propagating through the sampler (Tong et al. 2024,
"Learning to Discretize Denoising Diffusion ODEs", arXiv 2405.15506, Sec. 3).

The grid is the fractions c = (0, cumsum(softmax(theta))) of the span, in lambda (or t
where lambda is infinite at an end): monotone by construction, with the ends fixed. The
loss is the distance of the student's end points to the teacher's, per sample

    d_b(theta) = || x_student(x_T^b; grid(theta)) - x_teacher(x_T^b) ||_rms,

and over the batch (``loss=``) "log": mean_b log d_b (the default: the typical sample
counts, not the few that change mode), "iqr": that mean over the middle half of the
sorted log d_b only (a smoothed median: the lowest and highest B // 4 dropped), "rms":
mean_b d_b, or "mse": the mean squared distance; minimised with Adam (optax). LD3's
soft teacher forcing (its Sec. 3.2, ``slack > 0``) lets each student start x'_T move
within a ball of radius ``slack * sqrt(dim)`` around x_T while the grid is learned, so
the grid is not spent on samples no grid can fit. With ``batch_size``, each Adam step
sees a random minibatch of the training noise and the fit is the average of the second
half of the iterates (stochastic weight averaging, Izmailov et al. 2018, arXiv
1803.05407, Eq. 2): the minibatch noise and the average keep the fit from the minimum
peculiar to the few training samples; with ``restarts`` = k, k such fits (seeds seed,
..., seed + k - 1) and the one with the lowest loss on the whole training batch.
The planner's coefficients are jax
functions of the grid (``dpm_jax.plan.plan_run(..., times=)``), so ``jax.grad``
differentiates through the plan and the executor.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from dpm_jax import _checks
from dpm_jax.optimize import _common as U
from dpm_jax.plan.grids import SPACINGS, time_grid
from dpm_jax.plan.solvers import registry

__all__ = ["fit", "loss_fn", "settings", "LOSSES", "DEFAULTS"]

#: "rms": the mean over samples of each sample's RMS distance; "log": the mean of its log
#: (the geometric mean: the typical sample counts, not the few that change mode);
#: "iqr": the mean of the log over the middle half of the samples (a smoothed median);
#: "mse": the mean squared distance.
LOSSES = ("rms", "log", "iqr", "mse")


def loss_fn(prob: U.Problem, parametrization: str, loss: str, window: str = "nearest"):
    """params, delta, x_T, target[, rows] -> loss (the function that is minimised; also
    for tests; ``rows``: the indexes of a minibatch's samples in the training noise, whose
    per-sample conditions the model then uses); params: the grid's logits theta, or
    (theta, eta) with the decoupled model times' parameters eta
    (:func:`dpm_jax.optimize._common.model_times_of`, in ``window``)."""

    def f(params, delta, x_T, target, rows=None):
        # rows: the training samples of a minibatch (x_T and target are theirs), so that a
        # model's per-sample conditions are taken at them too
        run_prob = prob
        if rows is not None:
            run_prob = prob._replace(model=U.model_rows(prob.model, prob.x_T.shape[0], rows))
        times, model_times = _times(prob, params, parametrization, window)
        out = U.run(run_prob, U.plan_of(prob, times, model_times), x_T + delta)
        if loss == "mse":
            return jnp.mean((out - target) ** 2)
        rms = U.per_sample_rms(out, target)
        if loss == "log":
            return jnp.mean(jnp.log(rms + 1e-12))
        if loss == "iqr":
            n = rms.shape[0]  # static: the middle half of the sorted logs
            logs = jnp.sort(jnp.log(rms + 1e-12))
            return jnp.mean(logs[n // 4 : n - n // 4])
        return jnp.mean(rms)

    return f


def _times(prob: U.Problem, params, parametrization: str, window: str = "nearest"):
    """(grid, model times or None) of theta or (theta, eta)."""
    theta, eta = params if isinstance(params, tuple) else (params, None)
    c = U.fractions_of(theta)
    times = U.times_of(prob, c, parametrization)
    if eta is None:
        return times, None
    return times, U.model_times_of(prob, c, eta, parametrization, window)


#: What a plain call does, chosen on a validation set (``benchmarks/ld3_defaults.py``,
#: ``benchmarks/results/ld3_defaults.txt``): the loss, where a decoupled model call may
#: move, the minibatch size (used where the training noise has more samples than that),
#: the restarts and the iterations per stage with minibatches, and the iterations with the
#: whole batch. ``decouple`` defaults to True where the solver calls the model at its
#: nodes.
DEFAULTS: dict[str, Any] = dict(
    loss="iqr", window="sides", batch_size=32, restarts=3, iterations=600, full_batch_iterations=300
)


def settings(
    prob: U.Problem,
    *,
    iterations=None,
    loss=None,
    slack: float = 0.0,
    decouple=None,
    window=None,
    batch_size="auto",
    restarts=None,
) -> dict:
    """The options a fit runs with: those given, checked, and :data:`DEFAULTS` for the
    rest. ``decouple`` None: True where the solver calls the model at its nodes;
    ``batch_size`` "auto": ``DEFAULTS["batch_size"]`` if the training noise has more
    samples than that (and no ``slack``), else None (the whole batch); ``restarts`` None:
    ``DEFAULTS["restarts"]`` with minibatches, else 1; ``iterations`` None:
    ``DEFAULTS["iterations"]`` with minibatches, else ``DEFAULTS["full_batch_iterations"]``."""
    loss = DEFAULTS["loss"] if loss is None else loss
    window = DEFAULTS["window"] if window is None else window
    _checks.check_choice("loss", loss, LOSSES)
    _checks.check_choice("window", window, U.WINDOWS)
    n = prob.x_T.shape[0]
    if isinstance(batch_size, str) and batch_size == "auto":
        auto = DEFAULTS["batch_size"]
        batch = auto if n > auto and not slack > 0 else None
    else:
        batch = _batch_size(batch_size, n, slack)
    if restarts is None:
        restarts = DEFAULTS["restarts"] if batch is not None else 1
    _check_restarts(restarts, batch)
    if iterations is None:
        iterations = DEFAULTS["iterations" if batch is not None else "full_batch_iterations"]
    calls_at_nodes = registry.get(prob.options.method).calls_at_nodes
    if decouple is None:
        decouple = calls_at_nodes
    if not isinstance(decouple, bool):
        raise TypeError(f"`decouple` must be a bool (or None), got {type(decouple).__name__}.")
    if decouple and not calls_at_nodes:
        raise ValueError(
            f"`decouple`=True moves the model calls at the grid's nodes, which "
            f"method={prob.options.method!r} does not make; use "
            f"{' / '.join(repr(m) for m, s in registry.SOLVERS.items() if s.calls_at_nodes)}."
        )
    return dict(
        iterations=int(iterations),
        loss=loss,
        decouple=decouple,
        window=window,
        batch_size=batch,
        restarts=int(restarts),
    )


def fit(
    prob: U.Problem,
    *,
    teacher=None,
    iterations: int | None = None,
    learning_rate: float = 0.05,
    loss: str | None = None,
    slack: float = 0.0,
    parametrization: str | None = None,
    init=None,
    decouple: bool | None = None,
    window: str | None = None,
    batch_size: int | str | None = "auto",
    seed: int = 0,
    restarts: int | None = None,
    progress: bool = False,
):
    """The LD3 grid (float64, t_start to t_end) of ``prob``; with ``decouple``, the
    pair (grid, model times): LD3's two time sequences, the grid learned first, then
    both together (``iterations`` each). ``window``: where a decoupled model call may
    move (:data:`dpm_jax.optimize._common.WINDOWS`). ``batch_size``: minibatches of the
    training noise (drawn with ``seed``) and the average of the second half of the
    iterates, in each stage; None: the whole batch and the iterate with the lowest loss.
    ``restarts`` (with ``batch_size``): that many minibatch fits, with seeds ``seed``,
    ``seed + 1``, ...; the one with the lowest loss on the whole training batch. Options
    left at None ("auto" for ``batch_size``) take :func:`settings`' defaults."""
    try:
        import optax
    except ImportError:
        raise ImportError(
            "objective='ld3' needs optax: pip install optax (or dpm_jax's `optimize` extra)."
        ) from None
    param = parametrization or U.default_parametrization(prob)
    if param == "lambda" and U.default_parametrization(prob) != "lambda":
        raise ValueError(
            "`parametrization`='lambda' needs a finite half log-SNR at t_start and "
            "t_end; use parametrization='time'."
        )
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"`seed` must be an int, got {type(seed).__name__} {seed!r}.")
    chosen = settings(
        prob,
        iterations=iterations,
        loss=loss,
        slack=slack,
        decouple=decouple,
        window=window,
        batch_size=batch_size,
        restarts=restarts,
    )
    iterations, loss, decouple = chosen["iterations"], chosen["loss"], chosen["decouple"]
    window, batch, restarts = chosen["window"], chosen["batch_size"], chosen["restarts"]
    target = U.teacher_end(prob, teacher)
    x_T = prob.x_T
    f = loss_fn(prob, param, loss, window)
    radius = slack * np.sqrt(np.prod(x_T.shape[1:]))
    theta0 = _initial_theta(prob, param, init, f, x_T, target)
    fit_args = (x_T, target, iterations, learning_rate, radius, progress)
    eta0 = jnp.zeros((prob.options.num_steps - 1,), theta0.dtype)
    if batch is None:
        theta = _minimise(optax, f, theta0, *fit_args)
        # then the model times with the grid, from eta = 0 (the model calls at the grid's
        # nodes; the start is a candidate, so the pair does no worse on the training noise)
        params = _minimise(optax, f, (theta, eta0), *fit_args) if decouple else theta
    else:
        adam = _minibatch_step(optax, f, learning_rate, x_T, target)  # (compiled once)
        full_loss = jax.jit(lambda p: f(p, jnp.zeros((), x_T.dtype), x_T, target))
        best = np.inf
        for r in range(restarts):
            seed_r = seed + r
            candidate, value = _minimise_averaged(adam, full_loss, theta0, *fit_args, batch, seed_r)
            if decouple:  # (the second stage's minibatches: seed_r + 1)
                candidate, value = _minimise_averaged(
                    adam, full_loss, (candidate, eta0), *fit_args, batch, seed_r + 1
                )
            if value < best:
                best, params = value, candidate
    if not decouple:
        return U.host_grid(U.times_of(prob, U.fractions_of(params), param))
    times, model_times = _times(prob, params, param, window)
    return U.host_grid(times), U.host_grid(model_times)


def _check_restarts(restarts, batch: int | None) -> None:
    """``restarts``: an int >= 1; more than one only with minibatches (a full-batch
    fit is deterministic: its restarts would be one fit repeated)."""
    if isinstance(restarts, bool) or not isinstance(restarts, (int, np.integer)):
        raise TypeError(f"`restarts` must be an int, got {type(restarts).__name__} {restarts!r}.")
    if restarts < 1:
        raise ValueError(f"`restarts` must be >= 1, got {restarts}.")
    if restarts > 1 and batch is None:
        raise ValueError(
            "`restarts` > 1 needs minibatches: a `batch_size` below the training batch "
            f"(by default {DEFAULTS['batch_size']} where x_T has more samples); minibatch "
            "fits differ by their seed, full-batch fits are all the same."
        )


def _batch_size(batch_size, n: int, slack: float) -> int | None:
    """``batch_size`` checked: None, or an int in [1, B]; not with soft teacher forcing."""
    if batch_size is None:
        return None
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
        raise TypeError(
            f"`batch_size` must be 'auto', None or an int, got {type(batch_size).__name__} "
            f"{batch_size!r}."
        )
    if not 1 <= batch_size <= n:
        raise ValueError(
            f"`batch_size` must be in [1, {n}] (the training noise's batch), got {batch_size}."
        )
    if slack > 0:
        raise ValueError("`batch_size` does not apply with `slack` > 0 (soft teacher forcing).")
    return int(batch_size)


def _minibatch_step(optax, f, learning_rate, x_T, target):
    """(init, step): Adam's state of params, and one jitted Adam step on ``f`` over the
    training samples ``idx``: (params, state, idx) -> (params, state, loss)."""
    opt = optax.adam(learning_rate)
    zero = jnp.zeros((), x_T.dtype)

    @jax.jit
    def step(params, state, idx):
        value, grads = jax.value_and_grad(f)(params, zero, x_T[idx], target[idx], idx)
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state, value

    return opt.init, step


def _minimise_averaged(
    adam, full_loss, params, x_T, target, iterations, learning_rate, radius, progress, batch, seed
):
    """Adam (``adam`` = :func:`_minibatch_step`) over minibatches of ``batch`` training
    samples (a fresh random subset each step, from ``numpy.random.default_rng(seed)``);
    returns the mean of the iterates after steps iterations // 2 + 1, ..., iterations
    (SWA's running average) and its ``full_loss`` (the whole batch's; checked finite)."""
    del radius, target  # (no soft teacher forcing with minibatches)
    init, step = adam
    state = init(params)
    rng = np.random.default_rng(seed)
    n = x_T.shape[0]
    bar = U.progress_bar(progress, iterations, "ld3")
    mean, count = None, 0
    for it in range(iterations):
        idx = jnp.asarray(rng.permutation(n)[:batch])
        params, state, value = step(params, state, idx)
        v = _finite(value, f"became {{}} at iteration {it}", learning_rate)  # (minibatch)
        if it >= iterations // 2:
            count += 1
            mean = (
                params
                if mean is None
                else jax.tree.map(lambda m, p: m + (p - m) / count, mean, params)
            )
        _tick(bar, v)
    if bar is not None:
        bar.close()
    value = _finite(full_loss(mean), "of the averaged fit is {}", learning_rate)
    return mean, value


def _finite(value, what: str, learning_rate: float) -> float:
    """float(value), or FloatingPointError if it is NaN or inf (``what`` formats it)."""
    v = float(value)
    if not np.isfinite(v):
        raise FloatingPointError(
            f"optimize_timesteps(objective='ld3'): the loss {what.format(v)}; "
            f"lower `learning_rate` (now {learning_rate})."
        )
    return v


def _tick(bar, v: float) -> None:
    if bar is not None:
        bar.update(1)
        bar.set_postfix(loss=f"{v:.3e}")


def _minimise(optax, f, params, x_T, target, iterations, learning_rate, radius, progress):
    """Adam on ``f(params, delta, x_T, target)`` from ``params``; the iterate with the
    lowest loss (the start included). ``radius`` > 0: soft teacher forcing, each start
    x_T + delta kept in its ball."""
    delta = jnp.zeros_like(x_T)
    opt = optax.adam(learning_rate)
    state = opt.init((params, delta))

    @jax.jit
    def step(params, delta, state):
        value, grads = jax.value_and_grad(f, argnums=(0, 1))(params, delta, x_T, target)
        if radius <= 0:
            grads = (grads[0], jnp.zeros_like(delta))
        updates, state = opt.update(grads, state, (params, delta))
        params, delta = optax.apply_updates((params, delta), updates)
        if radius > 0:  # project each sample's start back onto its ball
            norm = jnp.sqrt(jnp.sum(delta.reshape(delta.shape[0], -1) ** 2, axis=1))
            scale = jnp.minimum(1.0, radius / jnp.maximum(norm, 1e-30))
            delta = delta * scale.reshape((-1,) + (1,) * (delta.ndim - 1))
        return params, delta, state, value

    bar = U.progress_bar(progress, iterations, "ld3")
    best, best_params = np.inf, params
    for it in range(iterations):
        current = params
        params, delta, state, value = step(params, delta, state)
        v = _finite(value, f"became {{}} at iteration {it}", learning_rate)  # at `current`
        if v < best:
            best, best_params = v, current
        _tick(bar, v)
    if bar is not None:
        bar.close()
    final = float(f(params, delta, x_T, target))
    if np.isfinite(final) and final <= best:
        best_params = params
    return best_params


def _theta_of(prob: U.Problem, times, param: str):
    """The logits whose fractions give ``times`` (interior strictly inside the span)."""
    t = np.asarray(times, np.float64)
    if param == "lambda":
        lam = np.asarray(prob.schedule.marginal_lambda(t), np.float64)
        c = (lam - prob.lam_start) / (prob.lam_end - prob.lam_start)
    else:
        c = (t - prob.t_start) / (prob.t_end - prob.t_start)
    w = np.diff(c)
    if not np.all(w > 0):
        raise ValueError("`init`: the initial grid must be strictly decreasing in time.")
    return jnp.asarray(np.log(w / w.sum()))


def _initial_theta(prob: U.Problem, param: str, init, f, x_T, target):
    """The starting logits: from ``init`` (a spacing name or a grid of steps + 1 times), or,
    by default, the built-in spacing (time_uniform, logSNR, time_quadratic) with the lowest
    training loss."""
    k = prob.options.num_steps
    if init is not None and not isinstance(init, str):
        grid = np.asarray(init, np.float64)
        if grid.shape != (k + 1,):
            raise ValueError(
                f"`init` must be a spacing name or {k + 1} times, got shape {grid.shape}."
            )
        return _theta_of(prob, grid, param).astype(x_T.dtype)
    if init is not None:
        _checks.check_choice("init", init, SPACINGS)
    names = SPACINGS if init is None else (init,)
    best, best_theta = np.inf, None
    for name in names:
        try:
            grid = time_grid(prob.schedule, name, prob.t_start, prob.t_end, k)
            theta = _theta_of(prob, grid, param)
        except ValueError:  # (logSNR with an infinite end)
            continue
        value = float(f(theta, jnp.zeros_like(x_T), x_T, target))
        if np.isfinite(value) and value < best:
            best, best_theta = value, theta
    if best_theta is None:
        return jnp.zeros((k,), x_T.dtype)
    return best_theta.astype(x_T.dtype)
