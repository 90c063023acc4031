"""A high-accuracy reference solution of the probability-flow ODE of a Gaussian mixture.

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
to avoid round-tripping through t(lambda).)

scipy is an optional dependency (the ``test`` extra); it is imported inside
:func:`exact_ode_solution`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .problems import GMM, gmm_noise
from .schedules import Schedule

__all__ = ["exact_ode_solution", "alpha_sigma_from_lambda"]


def alpha_sigma_from_lambda(lam: float) -> tuple[float, float]:
    """``(alpha, sigma)`` of a VP process at half log-SNR ``lam``, stably.

    ``log alpha = -0.5 log(1 + e^{-2 lam})`` (computed with ``logaddexp``),
    ``sigma = alpha e^{-lam}``; ``alpha^2 + sigma^2 = 1``.
    """
    log_alpha = -0.5 * np.logaddexp(0.0, -2.0 * lam)
    return float(np.exp(log_alpha)), float(np.exp(log_alpha - lam))


def exact_ode_solution(
    gmm: GMM,
    schedule: Schedule,
    x_T: Any,
    t_start: float,
    t_end: float,
    rtol: float = 1e-12,
    atol: float = 1e-12,
) -> np.ndarray:
    """Integrates the probability-flow ODE of ``gmm`` from ``t_start`` to ``t_end``.

    Solves ``dy/dlambda = -exp(-lambda) eps*(alpha_lambda y, lambda)`` with
    ``y = x / alpha`` from ``lambda(t_start)`` to ``lambda(t_end)`` (see the
    module docstring) for every sample at once, as one ODE system of size B*D
    (the samples are independent; the integrator's error control takes the
    worst of them), with DOP853 and the given tolerances, and returns
    ``x(t_end) = alpha(t_end) y(lambda(t_end))``.

    Works in either direction (``t_end < t_start`` samples, ``t_end > t_start``
    inverts).

    Args:
      gmm: the Gaussian mixture of the data.
      schedule: a :class:`dpm_jax.schedules.Schedule` (only its
        ``marginal_lambda`` is used, at the two ends).
      x_T: the states at ``t_start``, shape (B, D) (or (D,)); NumPy or jax.
      t_start, t_end: the times to integrate between.
      rtol, atol: tolerances of ``solve_ivp`` on y = x / alpha.

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
            "dpm_jax.exact needs scipy: pip install scipy (or the `test` extra)."
        ) from e

    x = np.asarray(x_T, dtype=np.float64)
    shape = x.shape
    x2 = x.reshape(1, -1) if x.ndim == 1 else x.reshape(shape[0], -1)
    if x2.shape[1] != gmm.means.shape[1]:
        raise ValueError(
            f"exact_ode_solution(): x_T has dimension {x2.shape[1]}, the mixture {gmm.means.shape[1]}."
        )
    bshape = x2.shape

    lam_start = float(schedule.marginal_lambda(np.float64(t_start)))
    lam_end = float(schedule.marginal_lambda(np.float64(t_end)))
    alpha_start, _ = alpha_sigma_from_lambda(lam_start)
    alpha_end, _ = alpha_sigma_from_lambda(lam_end)
    if lam_start == lam_end:
        return x.copy()

    def rhs(lam: float, y_flat: np.ndarray) -> np.ndarray:
        alpha, sigma = alpha_sigma_from_lambda(lam)
        xs = alpha * y_flat.reshape(bshape)
        eps = gmm_noise(gmm, xs, alpha, sigma)
        return (-np.exp(-lam) * eps).reshape(-1)

    y0 = (x2 / alpha_start).reshape(-1)
    sol = solve_ivp(
        rhs, (lam_start, lam_end), y0, method="DOP853", rtol=rtol, atol=atol, dense_output=False
    )
    if not sol.success:
        raise RuntimeError(f"exact_ode_solution(): solve_ivp failed: {sol.message}")
    return (alpha_end * sol.y[:, -1]).reshape(shape)


def _self_check() -> None:
    """Checks the solver against closed forms; raises AssertionError on failure.

    1. A single Gaussian N(mu, s^2 I): the flow is affine, and
       ``x_t = alpha_t mu + sqrt(alpha_t^2 s^2 + sigma_t^2) z`` with z fixed
       along a trajectory (z = (x - alpha mu) / sqrt(v) is conserved).
    2. A two-component mixture: integrating down and back up returns the start.
    """
    from .problems import make_gmm
    from .schedules import vp_linear

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


if __name__ == "__main__":  # python -m dpm_jax.exact
    _self_check()
    print("dpm_jax.exact: self-check passed")
