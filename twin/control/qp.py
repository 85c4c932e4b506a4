"""The linearised subproblem of one Gauss-Newton iteration: a least-squares step within the limits.

:func:`qp_step` minimises the objective of a :class:`~twin.control.problem.Problem` with the CVs
linearised at the current plan, within the block boxes and the rate limits; :func:`lsi` is the
constrained least squares under it (also used by :func:`twin.control.steady_target.steady_target`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import nnls

from twin.control.problem import Problem

#: passes of the active-set loop over the soft-limit hinges
MAX_ACTIVE_SET = 12


@dataclass(frozen=True)
class Step:
    """The linearised subproblem's answer."""

    x: np.ndarray
    predicted: float
    """objective of the linearised model at ``x``"""
    method: str


def qp_step(
    p: Problem, x0: np.ndarray, y0: np.ndarray, h0: np.ndarray, jy: np.ndarray, jh: np.ndarray
) -> Step:
    """Minimise the objective with the CVs linearised at ``x0`` within the bounds and rates.

    ``y0, h0 [H, n_cv]`` the forecast at ``x0``; ``jy, jh [H, n_cv, nx]`` their Jacobians.
    The tracking and move terms are least squares; the limit and risk terms squared hinges
    (convex, once differentiable). Without active constraints or hinges the least-squares
    solution is exact; otherwise a constrained least squares (:func:`lsi`) inside an
    active-set loop over the hinges solves it (SLSQP took 10-20 ms here, this well under 1).
    """
    n, nx = p.horizon, len(x0)
    m, n_mv = p.shape
    # least-squares rows: tracking  sqrt(w/H)/span * (y0 + J dx - sp), moves sqrt(mw)/span * dv
    wt = np.sqrt(p.track_w / n) / p.cv_scale  # [n_cv]
    a_t = (jy * wt[None, :, None]).reshape(-1, nx)
    b_t = ((p.sp - y0) * wt).reshape(-1) + a_t @ x0
    diff = np.eye(m) - np.eye(m, k=-1)
    wm = np.sqrt(p.move_w) / p.mv_span  # [n_mv]
    a_m = np.kron(diff, np.diag(wm))
    b_m = np.concatenate([p.u0 * wm, np.zeros((m - 1) * n_mv)])
    a, b = np.vstack([a_t, a_m]), np.concatenate([b_t, b_m])
    if p.u_target is not None and p.target_w > 0:  # sqrt(tw)/span * (v_M - u_target)
        wg = math.sqrt(p.target_w) / p.mv_span
        a_g = np.zeros((n_mv, nx))
        a_g[:, (m - 1) * n_mv :] = np.diag(wg)
        a, b = np.vstack([a, a_g]), np.concatenate([b, p.u_target * wg])
    # hinge rows  relu(P x - q): upper/lower range of the mean, then of the band
    rows, offs = [], []
    for weight, jac_u, up, jac_l, low in (
        (p.limit_w, jy, y0, jy, y0),
        (p.risk_w, jy + jh, y0 + h0, jy - jh, y0 - h0),
    ):
        if weight <= 0:
            continue
        s = math.sqrt(weight / n) / p.cv_scale
        rows += [
            (jac_u * s[None, :, None]).reshape(-1, nx),
            -(jac_l * s[None, :, None]).reshape(-1, nx),
        ]
        offs += [
            ((p.cv_hi - up) * s).reshape(-1) + rows[-2] @ x0,
            ((low - p.cv_lo) * s).reshape(-1) + rows[-1] @ x0,
        ]
    big_p = np.vstack(rows) if rows else np.zeros((0, nx))
    q = np.concatenate(offs) if offs else np.zeros(0)

    def value(x: np.ndarray) -> float:
        r = a @ x - b
        g = np.maximum(big_p @ x - q, 0.0)
        return float(r @ r + g @ g)

    # constraints  G x >= h: the block boxes, then the rates
    d_full = np.kron(diff, np.eye(n_mv))
    first = np.concatenate([p.u0, np.zeros((m - 1) * n_mv)])
    rate = np.tile(p.rate, m)
    eye = np.eye(nx)
    g_mat = np.vstack([eye, -eye, d_full, -d_full])
    h_vec = np.concatenate(
        [p.lo_eff.reshape(-1), -p.hi_eff.reshape(-1), first - rate, -first - rate]
    )
    x_ls = np.linalg.lstsq(a, b, rcond=None)[0]
    if (
        np.all(np.isfinite(x_ls))
        and np.all(g_mat @ x_ls >= h_vec - 1e-12)
        and not np.any(big_p @ x_ls - q > 0)
    ):
        return Step(x_ls, value(x_ls), "least squares")
    # hinges: solve with the rows active at the last answer as least squares, until the set
    # of active rows repeats (semismooth Newton on the piecewise quadratic); keep the best
    active = big_p @ (x_ls if np.all(np.isfinite(x_ls)) else x0) - q > 0
    best = Step(x0, value(x0), "QP kept the start")
    seen: list[np.ndarray] = []
    for _ in range(MAX_ACTIVE_SET):
        x = lsi(np.vstack([a, big_p[active]]), np.concatenate([b, q[active]]), g_mat, h_vec)
        if x is None:
            break
        x = p.feasible(x.reshape(m, n_mv))
        val = value(x)
        if val < best.predicted:
            best = Step(x, val, "QP")
        seen.append(active)
        active = big_p @ x - q > 0
        if any(np.array_equal(active, old) for old in seen):
            break
    return best


def lsi(e: np.ndarray, f: np.ndarray, g: np.ndarray, h: np.ndarray) -> np.ndarray | None:
    """``min ||e x - f||^2`` subject to ``g x >= h``; None when infeasible.

    Lawson & Hanson (Solving Least Squares Problems, 1974, ch. 23): with ``e = QR`` the
    problem becomes the least-distance problem ``min ||z||, g R^-1 z >= h - g R^-1 Q^T f``,
    whose solution comes from one non-negative least squares (scipy's ``nnls``).
    """
    nx = e.shape[1]
    qm, r = np.linalg.qr(e)
    diag = np.abs(np.diag(r))
    if diag.min() <= 1e-10 * max(diag.max(), 1e-300):  # rank-deficient: a tiny ridge
        e = np.vstack([e, 1e-7 * max(diag.max(), 1.0) * np.eye(nx)])
        f = np.concatenate([f, np.zeros(nx)])
        qm, r = np.linalg.qr(e)
    fbar = qm.T @ f
    r_inv = np.linalg.inv(r)  # 12 x 12: faster than a LAPACK triangular solve call here
    gt = g @ r_inv
    ht = h - gt @ fbar
    if np.all(ht <= 0):
        z = np.zeros(nx)
    else:
        mat = np.vstack([gt.T, ht[None, :]])
        rhs = np.zeros(nx + 1)
        rhs[-1] = 1.0
        u, _ = nnls(mat, rhs, maxiter=50 * mat.shape[1])
        res = mat @ u - rhs
        if abs(res[-1]) < 1e-12:
            return None
        z = -res[:nx] / res[-1]
    return np.asarray(r_inv @ (z + fbar))
