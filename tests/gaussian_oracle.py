"""A Gaussian N(MU, SIGMA) with a full covariance (d = 6) on vp_linear: its exact noise
predictor and its exact DPM-Solver-v3 statistics, for the tests of ``dpm_jax.v3``."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from dpm_jax import schedules

D = 6
_rng = np.random.default_rng(0)
_A = _rng.normal(size=(D, D))
SIGMA = _A @ _A.T / D + 0.3 * np.eye(D)  # full, well conditioned
MU = _rng.normal(size=D)
SCH = schedules.vp_linear()


EIG, Q = np.linalg.eigh(SIGMA)


def gauss_eps(x, t):
    """The exact noise predictor of N(MU, SIGMA), sigma C^-1 (x - alpha MU), per-sample t
    (C^-1 = Q diag(1 / (alpha^2 EIG + sigma^2)) Q^T)."""
    a, s = SCH.marginal_alpha(t)[:, None], SCH.marginal_std(t)[:, None]
    q = jnp.asarray(Q, x.dtype)
    y = (x - a * jnp.asarray(MU, x.dtype)) @ q
    return s * (y / (a * a * jnp.asarray(EIG, x.dtype) + s * s)) @ q.T


def oracle(lam: float):
    """Exact (l, l', s, b) at lambda (float64 NumPy)."""
    a2 = 1.0 / (1.0 + np.exp(-2.0 * lam))
    s2 = 1.0 - a2
    a = np.sqrt(a2)
    eye = np.eye(D)
    c = a2 * SIGMA + s2 * eye
    m_inv = np.linalg.inv(c)
    dm = -m_inv @ (2.0 * a2 * s2 * (SIGMA - eye)) @ m_inv
    l_ex = s2 * np.diag(m_inv)
    dl = -2.0 * s2 * a2 * np.diag(m_inv) + s2 * np.diag(dm)
    p = (s2 / a) * m_inv - np.diag(l_ex) / a
    q = -s2 * m_inv @ MU
    dp = (s2 / a) * ((-1.0 - a2) * m_inv + dm) - np.diag(dl) / a + np.diag(l_ex) * s2 / a
    dq = 2.0 * s2 * a2 * m_inv @ MU - s2 * dm @ MU
    a_slope = dp + p @ (s2 * (eye - m_inv))
    c_slope = dq + p @ (s2 * a * m_inv @ MU)
    mean = a * MU
    s = np.diag(a_slope @ c @ p.T) / np.diag(p @ c @ p.T)
    b = (a_slope @ mean + c_slope) - s * (p @ mean + q)
    return l_ex, dl, s, b
