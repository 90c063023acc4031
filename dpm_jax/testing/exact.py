"""A high-accuracy reference solution of the probability-flow ODE of a test problem.

The problems are those of :mod:`dpm_jax.testing.problems` with an exact noise
predictor: Gaussian mixtures (:class:`~dpm_jax.testing.problems.GMM`) and empirical
distributions (:class:`~dpm_jax.testing.problems.Empirical`).

This module is the ground truth of the convergence tests. It shares nothing
with the DPM-Solver code paths: it hands the ODE to a general-purpose adaptive
Runge-Kutta integrator (``scipy.integrate.solve_ivp``, ``method="DOP853"``,
order 8) with tight tolerances, in float64 NumPy.

The ODE. The probability-flow ODE of a VP diffusion,
``dx/dt = f(t) x + g(t)^2 / (2 sigma_t) eps*(x, t)`` with ``f = d log alpha / dt``
and ``g^2 = d sigma^2 / dt - 2 f sigma^2``, becomes, in the half log-SNR
``lambda = log alpha - log sigma`` and the scaled state ``y = x / alpha``,

.. math::
    \\frac{dy}{d\\lambda} = -e^{-\\lambda}\\, \\epsilon^*(\\alpha_\\lambda y, \\lambda).

Derivation: ``dy/dt = (dx/dt - f x) / alpha = g^2 / (2 sigma alpha) eps``, and
``d lambda / dt = f - (d sigma^2/dt) / (2 sigma^2) = -g^2 / (2 sigma^2)``, so
``dy/dt = -(sigma / alpha) (d lambda/dt) eps = -e^{-lambda} (d lambda/dt) eps``.

For a VP process, alpha and sigma are functions of lambda alone,

.. math::
    \\log\\alpha_\\lambda = -\\tfrac12 \\log(1 + e^{-2\\lambda}), \\qquad
    \\sigma_\\lambda = \\alpha_\\lambda e^{-\\lambda},

and the exact noise predictor of a mixture depends on t only through
``(alpha_t, sigma_t)``. So in the variable lambda the right-hand side does not
depend on the schedule at all; the schedule only fixes the two ends
``lambda(t_start)`` and ``lambda(t_end)``. (That is exactly the invariance that
makes DPM-Solver's discretisation in lambda natural; this module uses it only
to avoid round-tripping through t(lambda).) The same holds for schedules that are
not VP (``ve``, ``edm``, ``flow``): eps* at (x, alpha, sigma) is eps* at
(x / alpha, 1, e^{-lambda}), a function of y and lambda alone, so only the two
ends use the schedule's own alpha (``x = alpha y``). lambda must be finite there.

For an empirical distribution, ``eps* = (x - alpha x0*) / sigma`` with the
ideal denoiser ``x0*`` (:func:`dpm_jax.testing.problems.empirical_denoise`; written out
again here in y, so the reference does not run the code it checks), and the
ODE is simply

.. math::
    \\frac{dy}{d\\lambda} = \\hat x_0(\\alpha_\\lambda y, \\lambda) - y,

which is integrated in this form (no division by sigma). Its right-hand side
switches between data points ever faster as lambda grows (the softmax
weights' logits scale like ``e^{2 lambda}``), so each sample gets its own
integration by default (``per_sample``): one system for the whole batch would
make every sample take the smallest step any of them needs. Check a reference
by comparing two tolerances (``benchmarks/quality.py`` does).

scipy is an optional dependency (the ``test`` extra); it is imported inside
:func:`exact_ode_solution`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dpm_jax.schedules import Schedule
from dpm_jax.testing.problems import GMM, Empirical, gmm_noise

__all__ = ["exact_ode_solution", "alpha_sigma_from_lambda"]


def alpha_sigma_from_lambda(lam: float) -> tuple[float, float]:
    """``(alpha, sigma)`` of a VP process at half log-SNR ``lam``, stably.

    ``log alpha = -0.5 log(1 + e^{-2 lam})`` (computed with ``logaddexp``),
    ``sigma = alpha e^{-lam}``; ``alpha^2 + sigma^2 = 1``.
    """
    log_alpha = -0.5 * np.logaddexp(0.0, -2.0 * lam)
    return float(np.exp(log_alpha)), float(np.exp(log_alpha - lam))


def exact_ode_solution(
    gmm,
    schedule: Schedule,
    x_T: Any,
    t_start: float,
    t_end: float,
    rtol: float = 1e-12,
    atol: float = 1e-12,
    per_sample: bool | None = None,
    log_weights: Any = None,
    guidance_scale: float = 1.0,
) -> np.ndarray:
    """Integrates the probability-flow ODE of a problem from ``t_start`` to ``t_end``.

    Solves ``dy/dlambda = -exp(-lambda) eps*(alpha_lambda y, lambda)`` with
    ``y = x / alpha`` from ``lambda(t_start)`` to ``lambda(t_end)`` (see the
    module docstring; for an empirical distribution the equivalent
    ``dy/dlambda = x0*(alpha y) - y``) with DOP853 and the given tolerances,
    and returns ``x(t_end) = alpha(t_end) y(lambda(t_end))``.

    Works in either direction (``t_end < t_start`` samples, ``t_end > t_start``
    inverts).

    Conditioning and classifier-free guidance: with per-sample ``log_weights``
    (B, K or N) of the components / data points, the noise prediction is
    ``eps_u + guidance_scale (eps_c - eps_u)`` (``eps_c`` with those weights,
    ``eps_u`` with the problem's own), which is the ODE that
    ``model_wrapper(..., guidance_type="classifier-free")`` samples; scale 1
    is the conditional ODE.

    Args:
      gmm: the data distribution: a :class:`~dpm_jax.testing.problems.GMM` or an
        :class:`~dpm_jax.testing.problems.Empirical`.
      schedule: a :class:`dpm_jax.schedules.Schedule` (only its
        ``marginal_lambda`` and ``marginal_alpha`` are used, at the two ends;
        any schedule, VP or not: x = alpha y with the schedule's own alpha).
        lambda must be finite at both ends.
      x_T: the states at ``t_start``, shape (B, D) (or (D,)); NumPy or jax.
      t_start, t_end: the times to integrate between.
      rtol, atol: tolerances of ``solve_ivp`` on y = x / alpha.
      per_sample: integrate each sample on its own (its own steps), or the
        batch as one system of size B*D (the integrator's error control takes
        the worst sample; fastest for smooth problems). Default: per sample
        for an empirical distribution, one system for a mixture.
      log_weights: None, or per-sample log weights (B, K or N) of the
        conditional distribution (e.g. :func:`dpm_jax.testing.problems.class_log_weights`).
      guidance_scale: the classifier-free guidance scale (with ``log_weights``).

    Returns:
      float64 NumPy array of the shape of ``x_T``: the states at ``t_end``.

    Raises:
      ImportError: if scipy is not installed.
      RuntimeError: if the integrator fails.
    """
    try:
        from scipy.integrate import solve_ivp
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            "dpm_jax.testing.exact needs scipy: pip install scipy (or the `test` extra)."
        ) from e

    if isinstance(gmm, GMM):
        dim, empirical = gmm.means.shape[1], False
    elif isinstance(gmm, Empirical):
        dim, empirical = gmm.data.shape[1], True
    else:
        raise TypeError(
            f"exact_ode_solution(): expected a problems.GMM or problems.Empirical, "
            f"got {type(gmm).__name__}."
        )
    if per_sample is None:
        per_sample = empirical

    x = np.asarray(x_T, dtype=np.float64)
    shape = x.shape
    x2 = x.reshape(1, -1) if x.ndim == 1 else x.reshape(shape[0], -1)
    if x2.shape[1] != dim:
        raise ValueError(
            f"exact_ode_solution(): x_T has dimension {x2.shape[1]}, the problem {dim}."
        )

    lam_start = float(schedule.marginal_lambda(np.float64(t_start)))
    lam_end = float(schedule.marginal_lambda(np.float64(t_end)))
    if not (np.isfinite(lam_start) and np.isfinite(lam_end)):
        raise ValueError(
            f"exact_ode_solution(): the half log-SNR must be finite at t_start "
            f"and t_end (the ODE is in lambda, on y = x / alpha); got {lam_start} "
            f"and {lam_end}."
        )
    # The ODE in (lambda, y = x / alpha) does not depend on the schedule; only the
    # ends do, through the schedule's own alpha (not VP's alpha(lambda): ve, edm, flow).
    alpha_start = float(schedule.marginal_alpha(np.float64(t_start)))
    alpha_end = float(schedule.marginal_alpha(np.float64(t_end)))
    if lam_start == lam_end:
        return x.copy()

    lw = None
    if log_weights is not None:
        n_mix = gmm.means.shape[0] if not empirical else gmm.data.shape[0]
        lw = np.asarray(log_weights, np.float64)
        if lw.shape != (x2.shape[0], n_mix):
            raise ValueError(
                f"exact_ode_solution(): log_weights must have shape "
                f"{(x2.shape[0], n_mix)}, got {lw.shape}."
            )
    scale = float(guidance_scale)

    if empirical:  # x0* written out in y (its own code, not problems.empirical_denoise)
        data = gmm.data
        data_t = np.ascontiguousarray(data.T)
        half_sq = 0.5 * np.sum(data**2, axis=1)

        def x0_star(lam, y, weights):
            # softmax_i(-|x - alpha x_i|^2 / (2 sigma^2))
            #   = softmax_i(e^{2 lam} (y.x_i - |x_i|^2 / 2))
            logits = np.exp(2.0 * lam) * (y @ data_t - half_sq)
            if weights is not None:
                logits = logits + weights
            w = np.exp(logits - np.max(logits, axis=1, keepdims=True))
            return (w @ data) / np.sum(w, axis=1, keepdims=True)

    def rhs(lam: float, y_flat: np.ndarray, weights) -> np.ndarray:
        y = y_flat.reshape(-1, dim)
        if empirical:  # eps is affine in x0*, so guidance acts on x0* alike
            x0 = x0_star(lam, y, None)
            if weights is not None:
                x0 = x0 + scale * (x0_star(lam, y, weights) - x0)
            return (x0 - y).reshape(-1)
        alpha, sigma = alpha_sigma_from_lambda(lam)
        eps = gmm_noise(gmm, alpha * y, alpha, sigma)
        if weights is not None:
            eps = eps + scale * (gmm_noise(gmm, alpha * y, alpha, sigma, log_weights=weights) - eps)
        return (-np.exp(-lam) * eps).reshape(-1)

    def solve(y0: np.ndarray, weights) -> np.ndarray:
        sol = solve_ivp(
            rhs,
            (lam_start, lam_end),
            y0.reshape(-1),
            method="DOP853",
            rtol=rtol,
            atol=atol,
            dense_output=False,
            args=(weights,),
        )
        if not sol.success:
            raise RuntimeError(f"exact_ode_solution(): solve_ivp failed: {sol.message}")
        return sol.y[:, -1].reshape(y0.shape)

    y0 = x2 / alpha_start
    if per_sample:
        y1 = np.stack(
            [solve(row[None], None if lw is None else lw[b : b + 1])[0] for b, row in enumerate(y0)]
        )
    else:
        y1 = solve(y0, lw)
    return (alpha_end * y1).reshape(shape)


def _self_check() -> None:
    """Checks the solver against closed forms; raises AssertionError on failure.

    1. A single Gaussian N(mu, s^2 I): the flow is affine, and
       ``x_t = alpha_t mu + sqrt(alpha_t^2 s^2 + sigma_t^2) z`` with z fixed
       along a trajectory (z = (x - alpha mu) / sqrt(v) is conserved).
    2. A two-component mixture: integrating down and back up returns the start.
    """
    from dpm_jax.schedules import vp_linear
    from dpm_jax.testing.problems import make_empirical, make_gmm

    sched = vp_linear()
    rng = np.random.default_rng(0)
    mu = rng.normal(size=(1, 3))
    s = 0.3
    g1 = make_gmm(mu, [s], [1.0])
    x_T = rng.normal(size=(4, 3))
    t0, t1 = 1.0, 1e-3

    def v(t):
        a = float(sched.marginal_alpha(np.float64(t)))
        return a, np.sqrt(a * a * s * s + (1.0 - a * a))

    a0, sd0 = v(t0)
    a1, sd1 = v(t1)
    want = a1 * mu + sd1 * (x_T - a0 * mu) / sd0
    got = exact_ode_solution(g1, sched, x_T, t0, t1)
    assert np.max(np.abs(got - want)) < 1e-9, np.max(np.abs(got - want))

    g2 = make_gmm(np.stack([mu[0], -mu[0]]), [0.2, 0.5], [0.3, 0.7])
    x0 = exact_ode_solution(g2, sched, x_T, t0, t1)
    back = exact_ode_solution(g2, sched, x0, t1, t0)
    assert np.max(np.abs(back - x_T)) < 1e-8, np.max(np.abs(back - x_T))

    # 3. A one-point empirical distribution {mu} is the single Gaussian with s -> 0:
    #    x_t = alpha_t mu + sigma_t z, z conserved.
    e1 = make_empirical(mu)
    want = sched.marginal_alpha(np.float64(t1)) * mu + sched.marginal_std(np.float64(t1)) * (
        x_T - a0 * mu
    ) / sched.marginal_std(np.float64(t0))
    got = exact_ode_solution(e1, sched, x_T, t0, t1)
    assert np.max(np.abs(got - want)) < 1e-9, np.max(np.abs(got - want))


if __name__ == "__main__":  # python -m dpm_jax.exact
    _self_check()
    print("dpm_jax.exact: self-check passed")
