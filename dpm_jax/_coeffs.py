"""Coefficients of the DPM-Solver(++) updates as linear combinations.

Every update maps the anchor state x_s and model values M_j to

    x_t = ratio * x_s - scale_t * (phi_1 M_s + correction),      (*)

a linear combination whose scalars depend only on the schedule at the times
involved. With ``h = lambda_t - lambda_s`` and ``hh = h`` for DPM-Solver (M = eps,
noise prediction; ``ratio = alpha_t / alpha_s``, ``scale = sigma``) and ``hh = -h``
for DPM-Solver++ (M = x0, data prediction; ``ratio = sigma_t / sigma_s``,
``scale = alpha``), the phi functions are

    phi_1 = expm1(hh),  phi_2 = phi_1 / hh - 1,  phi_3 = phi_2 / hh - 1/2.

(DPM-Solver eqs. (3.7)-(3.8) and Alg. 1-3 of arXiv 2206.00927; DPM-Solver++
eqs. (3.4)-(3.5) and Alg. 1-2 of arXiv 2211.01095; with these signs the two
families share one form.) The functions here return ``(ratio, {key: coef})``,
the coefficient of x_s and of each model value (keys name the values), and work
on NumPy float64 (the host plan) and on jax scalars (the adaptive solver).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

Lin = dict  # {key: coefficient}: a linear combination of model values


class Point(NamedTuple):
    """Schedule quantities at one time: log alpha, sigma, lambda."""

    log_alpha: Any
    sigma: Any
    lam: Any


def point(schedule, t) -> Point:
    """Evaluates the schedule at t (NumPy float64 or jax)."""
    xp = jnp if isinstance(t, jax.Array) else np
    log_alpha = schedule.marginal_log_alpha(t)
    log_sigma = schedule.log_sigma(t)
    with np.errstate(invalid="ignore"):
        return Point(log_alpha, xp.exp(log_sigma), log_alpha - log_sigma)


def _xp(*values):
    """jax.numpy if any value is a jax array (a traced grid), else NumPy."""
    return jnp if any(isinstance(v, jax.Array) for v in values) else np


def _phis(hh):
    xp = _xp(hh)
    with np.errstate(divide="ignore", invalid="ignore"):  # hh = 0 or inf: callers use phi_1 only
        phi_1 = xp.expm1(hh)
        phi_2 = phi_1 / hh - 1.0
        phi_3 = phi_2 / hh - 0.5
    return phi_1, phi_2, phi_3


def _ratio_scale(data: bool, s: Point, t: Point):
    xp = _xp(t.log_alpha, s.log_alpha, t.sigma, s.sigma)
    if data:
        return t.sigma / s.sigma, xp.exp(t.log_alpha)
    return xp.exp(t.log_alpha - s.log_alpha), t.sigma


def _lin(*terms) -> Lin:
    """Sum of (coef, Lin) terms."""
    out: Lin = {}
    for c, comb in terms:
        for k, v in comb.items():
            out[k] = out.get(k, 0.0) + c * v
    return out


def _update(data: bool, s: Point, t: Point, h, m_s_key, correction: Lin):
    """(*) above: returns (ratio, Lin) for x_t = ratio x_s - scale_t (phi_1 M_s + correction)."""
    ratio, scale = _ratio_scale(data, s, t)
    phi_1 = _phis(-h if data else h)[0]
    return ratio, _lin((-scale * phi_1, {m_s_key: 1.0}), (-scale, correction))


def first_order(data: bool, s: Point, t: Point, h=None, m_s="s"):
    """DDIM / DPM-Solver-1: x_t = ratio x_s - scale_t phi_1 M_s.

    ``h`` defaults to lambda_t - lambda_s; an intermediate point of a singlestep
    update passes r1 h (the point itself being t(lambda_s + r1 h)).
    """
    return _update(data, s, t, t.lam - s.lam if h is None else h, m_s, {})


def singlestep_2(data: bool, s: Point, t: Point, r1, solver_type: str, keys=("s", "1")):
    """Second-order singlestep update from M_s and M_1 = M(u_1, s_1), lambda_1 = lambda_s + r1 h.

    correction = c (M_1 - M_s) with c = phi_1 / (2 r1) ("dpmsolver", DPM-Solver-2)
    or c = phi_2 / r1 ("taylor").
    """
    h = t.lam - s.lam
    phi_1, phi_2, _ = _phis(-h if data else h)
    c = 0.5 * phi_1 / r1 if solver_type == "dpmsolver" else phi_2 / r1
    ks, k1 = keys
    return _update(data, s, t, h, ks, {k1: c, ks: -c})


def singlestep_3_mid(data: bool, s: Point, s2: Point, r1, r2, h, keys=("s", "1")):
    """The second intermediate point of DPM-Solver-3 (any solver_type), s2 = t(lambda_s + r2 h):

    u_2 = ratio(s, s2) x_s - scale_s2 (phi_1(r2 hh) M_s + (r2 / r1) phi_2(r2 hh) (M_1 - M_s)).
    """
    h2 = r2 * h
    phi_2 = _phis(-h2 if data else h2)[1]
    c = r2 / r1 * phi_2
    ks, k1 = keys
    return _update(data, s, s2, h2, ks, {k1: c, ks: -c})


def singlestep_3(data: bool, s: Point, t: Point, r1, r2, solver_type: str, keys=("s", "1", "2")):
    """Third-order singlestep update from M_s, M_1, M_2.

    "dpmsolver": correction = phi_2 (M_2 - M_s) / r2.
    "taylor": with d_i = (M_i - M_s) / r_i, E1 = (r2 d1 - r1 d2) / (r2 - r1),
    E2 = 2 (d2 - d1) / (r2 - r1): correction = phi_2 E1 + phi_3 E2.
    """
    h = t.lam - s.lam
    _, phi_2, phi_3 = _phis(-h if data else h)
    ks, k1, k2 = keys
    if solver_type == "dpmsolver":
        corr = {k2: phi_2 / r2, ks: -phi_2 / r2}
    else:
        d1 = {k1: 1.0 / r1, ks: -1.0 / r1}
        d2 = {k2: 1.0 / r2, ks: -1.0 / r2}
        e1 = _lin((r2 / (r2 - r1), d1), (-r1 / (r2 - r1), d2))
        e2 = _lin((2.0 / (r2 - r1), d2), (-2.0 / (r2 - r1), d1))
        corr = _lin((phi_2, e1), (phi_3, e2))
    return _update(data, s, t, h, ks, corr)


def multistep_2(data: bool, p1: Point, p0: Point, t: Point, solver_type: str):
    """Second-order multistep update from M_-1 (key -1) at p1 and M_0 (key 0) at p0.

    r0 = (lambda_0 - lambda_-1) / h, D = (M_0 - M_-1) / r0;
    correction = phi_1 D / 2 ("dpmsolver") or phi_2 D ("taylor").
    """
    h = t.lam - p0.lam
    phi_1, phi_2, _ = _phis(-h if data else h)
    r0 = (p0.lam - p1.lam) / h
    c = (0.5 * phi_1 if solver_type == "dpmsolver" else phi_2) / r0
    return _update(data, p0, t, h, 0, {0: c, -1: -c})


def multistep_3(data: bool, p2: Point, p1: Point, p0: Point, t: Point, e2_weight: float = 1.0):
    """Third-order multistep update from M_-2, M_-1, M_0 (keys -2, -1, 0).

    d0 = (M_0 - M_-1) / r0, d1 = (M_-1 - M_-2) / r1, E1 = d0 + r0 / (r0 + r1) (d0 - d1),
    E2 = (d0 - d1) / (r0 + r1); correction = phi_2 E1 + w phi_3 E2.

    E1 ~ h M' and E2 ~ h^2 M''/2, while the exact integral of the second-order
    Taylor term is phi_3 h^2 M''. The published update (DPM-Solver++ App. B, the
    reference implementation) has w = 1, which leaves an O(h^3) local error: it
    is formally a second-order method with a partial third-order correction.
    w = 2 gives the third-order update.
    """
    h = t.lam - p0.lam
    _, phi_2, phi_3 = _phis(-h if data else h)
    r0 = (p0.lam - p1.lam) / h
    r1 = (p1.lam - p2.lam) / h
    d0 = {0: 1.0 / r0, -1: -1.0 / r0}
    d1 = {-1: 1.0 / r1, -2: -1.0 / r1}
    e1 = _lin((1.0 + r0 / (r0 + r1), d0), (-r0 / (r0 + r1), d1))
    e2 = _lin((e2_weight / (r0 + r1), d0), (-e2_weight / (r0 + r1), d1))
    return _update(data, p0, t, h, 0, _lin((phi_2, e1), (phi_3, e2)))


def sde_multistep(data: bool, pts: list, t: Point, solver_type: str, e2_weight: float = 1.0):
    """Stochastic multistep update (SDE-DPM-Solver(++), DPM-Solver++ paper Sec. 5 / App. B).

    ``pts`` are the last k = 1..3 points, oldest first (keys -(k-1) .. 0). With
    h = lambda_t - lambda_0 and a fresh standard normal z:

    data prediction ("sde-dpmsolver++"), phi = 1 - e^{-2h}:
      x_t = (sigma_t / sigma_0) e^{-h} x_0 + alpha_t phi M_0 + alpha_t C + sigma_t sqrt(phi) z,
      C = phi D / 2 (order 2, "dpmsolver" = midpoint) or (1 - phi / (2h)) D ("taylor" = Heun),
      C = phi_2 E1 - w phi_3 E2 (order 3, with phi_2 = 1 - phi/(2h), phi_3 = phi_2/(2h) - 1/2:
      k-diffusion's dpmpp_3m_sde step with eta = 1 for w = 1; whole runs agree when its
      second step is "taylor" and no step is lowered, see tests/golden/test_kdiffusion_golden.py);
    noise prediction ("sde-dpmsolver"), phi = e^h - 1:
      x_t = (alpha_t / alpha_0) x_0 - 2 sigma_t phi M_0 - sigma_t C + sigma_t sqrt(e^{2h} - 1) z,
      C = phi D ("dpmsolver") or 2 (phi / h - 1) D ("taylor").
    D = (M_0 - M_-1) / r0 and E1, E2 as in :func:`multistep_3`. Returns (ratio, Lin, noise weight).
    """
    p0 = pts[-1]
    h = t.lam - p0.lam
    xp = _xp(h)
    k = len(pts)
    d = e1 = e2 = {}
    if k >= 2:
        r0 = (p0.lam - pts[-2].lam) / h
        d = {0: 1.0 / r0, -1: -1.0 / r0}
    if k == 3:
        r1 = (pts[-2].lam - pts[-3].lam) / h
        d1 = {-1: 1.0 / r1, -2: -1.0 / r1}
        e1 = _lin((1.0 + r0 / (r0 + r1), d), (-r0 / (r0 + r1), d1))
        e2 = _lin((e2_weight / (r0 + r1), d), (-e2_weight / (r0 + r1), d1))
    if data:
        phi = -xp.expm1(-2.0 * h)
        alpha_t = xp.exp(t.log_alpha)
        ratio = t.sigma / p0.sigma * xp.exp(-h)
        if k == 1:
            corr = {}
        elif k == 2:
            corr = _lin((0.5 * phi if solver_type == "dpmsolver" else 1.0 - phi / (2.0 * h), d))
        else:
            phi_2 = 1.0 - phi / (2.0 * h)
            corr = _lin((phi_2, e1), (-(phi_2 / (2.0 * h) - 0.5), e2))
        lin = _lin((alpha_t * phi, {0: 1.0}), (alpha_t, corr))
        return ratio, lin, t.sigma * xp.sqrt(phi)
    if k == 3:
        raise ValueError("algorithm_type='sde-dpmsolver' supports order 1 or 2.")  # checked earlier
    phi = xp.expm1(h)
    ratio = xp.exp(t.log_alpha - p0.log_alpha)
    corr = {} if k == 1 else _lin((phi if solver_type == "dpmsolver" else 2.0 * (phi / h - 1.0), d))
    lin = _lin((-2.0 * t.sigma * phi, {0: 1.0}), (-t.sigma, corr))
    return ratio, lin, t.sigma * xp.sqrt(xp.expm1(2.0 * h))


def _power(r: float, i: int) -> float:
    """r^i by repeated multiplication (no libm pow)."""
    out = 1.0
    for _ in range(i):
        out *= r
    return out


def solve_small(a: list, b: list) -> list:
    """x with ``a x = b`` for a small dense system (UniPC's n <= 3), by Gaussian elimination
    with partial pivoting in Python floats: IEEE arithmetic in a fixed order, so a plan
    has the same bits on every machine (LAPACK's last bits depend on the CPU's kernel).

    >>> solve_small([[1.0, 1.0], [0.5, 2.0]], [2.0, 2.5])
    [1.0, 1.0]
    """
    n = len(b)
    m = [[float(v) for v in row] + [float(rhs)] for row, rhs in zip(a, b)]
    for c in range(n):
        p = max(range(c, n), key=lambda r: abs(m[r][c]))
        if m[p][c] == 0.0:
            raise ValueError("solve_small(): the matrix is singular.")
        m[c], m[p] = m[p], m[c]
        for r in range(c + 1, n):
            f = m[r][c] / m[c][c]
            m[r] = [m[r][k] - f * m[c][k] for k in range(n + 1)]
    x = [0.0] * n
    for r in range(n - 1, -1, -1):
        acc = m[r][n]
        for k in range(r + 1, n):
            acc -= m[r][k] * x[k]
        x[r] = acc / m[r][r]
    return x


def unipc(data: bool, pts: list, t: Point, variant: str, corrector: bool):
    """UniPC's predictor UniP-p or corrector UniC-p (Zhao et al. 2023, arXiv 2302.04867, Alg. 1-2).

    ``pts`` are the p last points, oldest first (keys -(p-1) .. 0; key 0 is the
    step's start s0); the corrector also uses the model value at t (key 1).
    With h = lambda_t - lambda_0, hh = -h (data) or h (noise), r_k =
    (lambda_k - lambda_0) / h, D_k = (M_k - M_0) / r_k, and B(h) = hh ("bh1") or
    expm1(hh) ("bh2"):

        x_t = ratio x_0 - scale_t (phi_1 M_0 + B(h) sum_k rho_k D_k),

    where rho solves R rho = b with R[i, k] = r_k^i and b_i = i! phi_{i+1}(hh) / B(h)
    (phi_{i+1} the exponential-integrator phi functions in this module's
    normalisation); the predictor uses the p - 1 history points (rho = 1/2 for
    p = 2), the corrector adds r = 1 for M_t (rho = 1/2 for p = 1).
    """
    p0 = pts[-1]
    h = t.lam - p0.lam
    hh = -h if data else h
    p = len(pts)
    rks = [(q.lam - p0.lam) / h for q in pts[:-1]][::-1]  # newest history first
    keys = list(range(-1, -p, -1))  # key of each r_k, same order
    if corrector:
        rks, keys = rks + [1.0], keys + [1]
    xp = _xp(hh)
    phi_1 = xp.expm1(hh)
    b_h = hh if variant == "bh1" else xp.expm1(hh)
    n = len(rks)
    b, phi_k, fact = [], phi_1 / hh - 1.0, 1.0
    for i in range(1, n + 1):
        b.append(phi_k * fact / b_h)
        fact *= i + 1
        phi_k = phi_k / hh - 1.0 / fact
    if n == 0:
        rhos = []
    elif (not corrector and p == 2) or (corrector and p == 1):
        rhos = [0.5]
    else:
        if xp is np:  # no LAPACK: the same bits on every CPU
            rhos = solve_small([[_power(float(rk), i) for rk in rks] for i in range(n)], b)
        else:  # a differentiable plan
            r_jax = jnp.stack([jnp.stack([jnp.asarray(rk) ** i for rk in rks]) for i in range(n)])
            sol = jnp.linalg.solve(r_jax, jnp.stack([jnp.asarray(v) for v in b]))
            rhos = [sol[j] for j in range(n)]
    corr: Lin = {}
    for rho, rk, key in zip(rhos, rks, keys):
        corr = _lin((1.0, corr), (b_h * rho / rk, {key: 1.0, 0: -1.0}))
    return _update(data, p0, t, h, 0, corr)


# ----------------------------------------------------------------------------- Adams-type
# weights of the VE-form ODE dy/drho = eps (y = x / alpha, rho = sigma / alpha), used by
# iPNDM and DEIS: a step from rho_n to rho_{n+1} is y_{n+1} = y_n + sum_j C_j eps_{n-j}.

#: iPNDM's fixed Adams-Bashforth weights b_j (newest first), C_j = (rho_{n+1} - rho_n) b_j
#: (Zhang & Chen 2022, arXiv 2204.13902, Sec. 4 / App. on iPNDM; the classical AB1-AB4).
AB_WEIGHTS = {
    1: (1.0,),
    2: (3.0 / 2.0, -1.0 / 2.0),
    3: (23.0 / 12.0, -16.0 / 12.0, 5.0 / 12.0),
    4: (55.0 / 24.0, -59.0 / 24.0, 37.0 / 24.0, -9.0 / 24.0),
}


def _gauss_legendre(n: int):
    """Nodes u in (0, 1) and weights (summing to 1) of n-point Gauss-Legendre quadrature."""
    x, w = np.polynomial.legendre.leggauss(n)
    return 0.5 * (x + 1.0), 0.5 * w


def lagrange_integrals(nodes, a: float, b: float, var=None, breaks=(), points: int = 32):
    """C_j = int_a^b l_j(var(u)) du for the Lagrange basis l_j on ``nodes`` (in the variable
    var), in float64.

    With ``var=None`` the basis is in u itself: the integrand is a polynomial of degree
    len(nodes) - 1 and ceil(len / 2) + 1 Gauss-Legendre points integrate it exactly (the
    variable-step Adams-Bashforth weights). Otherwise ``var`` maps u to the variable of the
    basis (DEIS-tAB: t(rho)); the integral is composite Gauss-Legendre with ``points``
    points on each piece between ``breaks`` (where var has kinks), never a Riemann sum.
    sum_j C_j = b - a.
    """
    n_pts = len(nodes) // 2 + 1 if var is None else points
    u01, w01 = _gauss_legendre(n_pts)
    if any(isinstance(v, jax.Array) for v in (*nodes, a, b)):  # a differentiable plan
        return _lagrange_integrals_jax(nodes, a, b, var, u01, w01)
    xs = np.asarray(nodes, np.float64)
    k = xs.shape[0]
    cuts = sorted({float(a), float(b), *(float(c) for c in breaks if min(a, b) < c < max(a, b))})
    if a > b:
        cuts = cuts[::-1]
    out = np.zeros(k)
    for lo, hi in zip(cuts[:-1], cuts[1:], strict=True):
        u = lo + (hi - lo) * u01
        v = u if var is None else np.asarray(var(u), np.float64)
        for j in range(k):  # elementwise products and a pairwise sum: no BLAS
            lj = np.ones_like(v)
            for m in range(k):
                if m != j:
                    lj = lj * ((v - xs[m]) / (xs[j] - xs[m]))
            out[j] += (hi - lo) * np.sum(w01 * lj)
    return out


def _lagrange_integrals_jax(nodes, a, b, var, u01, w01) -> list:
    """:func:`lagrange_integrals` on jax values, one piece (kinks cannot be located between
    traced bounds)."""
    xs = jnp.stack([jnp.asarray(v) for v in nodes])
    u = a + (b - a) * u01
    v = u if var is None else var(u)
    out = []
    for j in range(xs.shape[0]):
        others = jnp.concatenate([xs[:j], xs[j + 1 :]])
        lj = jnp.prod((v[:, None] - others[None, :]) / (xs[j] - others[None, :]), axis=1)
        out.append((b - a) * jnp.dot(w01, lj))
    return out
