"""The controller's numerics: move blocking, the objective, the Gauss-Newton/QP step, projection.

Everything here is float64 numpy; the model is reached only through a ``rollout`` callable
``plans [B, H, n_mv] -> (mean, half) [B, H, n_tags]`` (offset-corrected mean and band
half-width, engineering units). :mod:`twin.control.controller` documents the objective; :class:`Problem`
computes it.

Decision variables ``x = v.reshape(-1)``: ``v [M, n_mv]`` the MV value held over each block
(moves only at the M block starts). Bounds and rates are linear in ``v``: a box per block
(:attr:`Problem.lo_eff`, :attr:`Problem.hi_eff`) and ``|v_j - v_{j-1}| <= rate`` with
``v_{-1}`` the current MV. Every iterate stays in that convex set, so a line search between
two feasible plans never leaves it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
from scipy.optimize import nnls

Rollout = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
"""``plans [B, H, n_mv] -> (mean, half) [B, H, n_tags]``"""
#: relative finite-difference step (of each MV's span) for the Jacobian
FD_REL = 1e-2
#: step lengths tried along a Gauss-Newton direction (one batched rollout)
ALPHAS = (1.0, 0.5, 0.25)


def block_starts(horizon: int, control_horizon: int) -> np.ndarray:
    """First samples ``[M]`` of the M move blocks over ``horizon`` samples: 0, then spreading out.

    Block j starts near ``H (j / M)^2`` (at least one sample after block j-1): early moves one
    sample apart, later ones far apart, so M moves reach across the whole horizon.
    """
    m = max(1, min(control_horizon, horizon))
    starts = [0]
    for j in range(1, m):
        s = max(starts[-1] + 1, round(horizon * (j / m) ** 2))
        starts.append(min(s, horizon - (m - j)))
    return np.array(starts, dtype=np.int64)


def starts_from_blocks(blocks: tuple[int, ...], horizon: int) -> np.ndarray:
    """Block start samples from block lengths that add up to ``horizon``."""
    if not blocks or any(b < 1 for b in blocks) or sum(blocks) != horizon:
        raise ValueError(f"blocks {blocks} must be positive lengths adding up to {horizon}")
    return np.concatenate([[0], np.cumsum(blocks)[:-1]]).astype(np.int64)


@dataclass(frozen=True)
class Problem:
    """One solve's data: blocking, current MVs and limits, CV targets and weights (float64)."""

    starts: np.ndarray
    """``[M]`` block start samples (``starts[0] == 0``)"""
    horizon: int
    u0: np.ndarray
    """``[n_mv]`` current MV values"""
    lo: np.ndarray
    hi: np.ndarray
    rate: np.ndarray
    mv_span: np.ndarray
    move_w: np.ndarray
    sp: np.ndarray
    """``[n_cv]`` setpoints (0 where a CV has none; its track weight is then 0)"""
    track_w: np.ndarray
    cv_lo: np.ndarray
    cv_hi: np.ndarray
    cv_span: np.ndarray
    limit_w: float
    risk_w: float
    target_w: float = 0.0
    """weight of the steady-state target term on the last block (:func:`steady_target`)"""
    u_target: np.ndarray | None = None
    """``[n_mv]`` the steady-state MV target (None: no target term)"""

    @property
    def shape(self) -> tuple[int, int]:
        """``(M, n_mv)``."""
        return len(self.starts), len(self.u0)

    @property
    def expand(self) -> np.ndarray:
        """``[H, M]`` 0/1: sample k lies in block j."""
        k = np.arange(self.horizon)[:, None]
        return (
            np.searchsorted(self.starts, k, side="right") - 1 == np.arange(len(self.starts))
        ).astype(float)

    @property
    def lo_eff(self) -> np.ndarray:
        """``[M, n_mv]`` lower bound per block; below ``lo`` only while climbing at the rate."""
        steps = np.arange(1, len(self.starts) + 1)[:, None]
        return np.minimum(self.lo, self.u0 + steps * self.rate)

    @property
    def hi_eff(self) -> np.ndarray:
        """``[M, n_mv]`` upper bound per block; above ``hi`` only while falling at the rate."""
        steps = np.arange(1, len(self.starts) + 1)[:, None]
        return np.maximum(self.hi, self.u0 - steps * self.rate)

    def plans(self, x: np.ndarray) -> np.ndarray:
        """Block values ``x [B, M*n_mv]`` to per-sample plans ``[B, H, n_mv]``."""
        v = x.reshape(len(x), *self.shape)
        return np.einsum("hm,bmn->bhn", self.expand, v)

    def moves(self, x: np.ndarray) -> np.ndarray:
        """The moves at the block starts ``[B, M, n_mv]``."""
        v = x.reshape(len(x), *self.shape)
        prev = np.concatenate([np.broadcast_to(self.u0, (len(x), 1, v.shape[2])), v[:, :-1]], 1)
        return v - prev

    def objective(self, x: np.ndarray, y: np.ndarray, h: np.ndarray) -> np.ndarray:
        """``J [B]`` of plans ``x [B, nx]`` with CV forecasts ``y, h [B, H, n_cv]``."""
        n = self.horizon
        e = (y - self.sp) / self.cv_span
        track = (self.track_w * e**2).sum((1, 2)) / n
        move = (self.move_w * (self.moves(x) / self.mv_span) ** 2).sum((1, 2))
        total = track + move
        if self.u_target is not None and self.target_w > 0:
            v_last = x.reshape(len(x), *self.shape)[:, -1]
            total = total + self.target_w * (((v_last - self.u_target) / self.mv_span) ** 2).sum(1)
        if self.limit_w > 0:
            total = total + self.limit_w / n * _over(y, y, self).sum((1, 2))
        if self.risk_w > 0:
            total = total + self.risk_w / n * _over(y + h, y - h, self).sum((1, 2))
        return total

    def feasible(self, v: np.ndarray) -> np.ndarray:
        """``v [M, n_mv]`` made feasible block by block (rate, then the block's box); flat."""
        out = np.empty_like(v)
        prev = self.u0
        lo, hi = self.lo_eff, self.hi_eff
        for j in range(len(v)):
            val = np.where(np.isfinite(v[j]), v[j], prev)
            val = np.clip(val, prev - self.rate, prev + self.rate)
            out[j] = prev = np.clip(val, lo[j], hi[j])
        return out.reshape(-1)


def _over(upper: np.ndarray, lower: np.ndarray, p: Problem) -> np.ndarray:
    """Squared violations of the CV range in span units ``[B, H, n_cv]``."""
    return (
        np.maximum(upper - p.cv_hi, 0.0) ** 2 + np.maximum(p.cv_lo - lower, 0.0) ** 2
    ) / p.cv_span**2


def fd_plans(p: Problem, x0: np.ndarray) -> np.ndarray:
    """The ``1 + nx`` block plans of a forward-difference Jacobian at ``x0 [nx]`` ``[1+nx, nx]``."""
    step = np.tile(FD_REL * p.mv_span, len(p.starts))
    return np.vstack([x0, x0 + np.diag(step)])


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
    solution is exact; otherwise a constrained least squares (:func:`_lsi`) inside an
    active-set loop over the hinges solves it (SLSQP took 10-20 ms here, this well under 1).
    """
    n, nx = p.horizon, len(x0)
    m, n_mv = p.shape
    # least-squares rows: tracking  sqrt(w/H)/span * (y0 + J dx - sp), moves sqrt(mw)/span * dv
    wt = np.sqrt(p.track_w / n) / p.cv_span  # [n_cv]
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
        s = math.sqrt(weight / n) / p.cv_span
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
        x = _lsi(np.vstack([a, big_p[active]]), np.concatenate([b, q[active]]), g_mat, h_vec)
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


#: passes of the active-set loop over the soft-limit hinges
MAX_ACTIVE_SET = 12


def _lsi(e: np.ndarray, f: np.ndarray, g: np.ndarray, h: np.ndarray) -> np.ndarray | None:
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


def project(plan: np.ndarray, p: Problem) -> np.ndarray:
    """Per-sample plan ``[H, n_mv]`` forced within rate and bounds from the current MV.

    ``u_k = clip(u_{k-1} + clip(du_k, -rate, rate), lo_k, hi_k)`` with ``[lo_k, hi_k] = [lo, hi]``
    widened only as far as a move at the rate limit from outside the range needs; non-finite
    values hold the previous one.
    """
    full = np.vstack([p.u0[None], plan])
    if (
        np.isfinite(plan).all()
        and np.all((plan >= p.lo) & (plan <= p.hi))
        and np.all(np.abs(np.diff(full, axis=0)) <= p.rate)
    ):
        return plan.astype(float, copy=True)  # already within every limit
    out = np.empty_like(plan, dtype=float)
    prev = p.u0.astype(float)
    for k in range(len(plan)):
        want = np.where(np.isfinite(plan[k]), plan[k], prev)
        u = prev + np.clip(want - prev, -p.rate, p.rate)
        lo_k = np.minimum(p.lo, prev + p.rate)
        hi_k = np.maximum(p.hi, prev - p.rate)
        out[k] = prev = np.clip(u, lo_k, hi_k)
    return out


def limits_held(plan: np.ndarray, p: Problem, tol: float = 1e-9) -> np.ndarray:
    """``[n_mv]`` True where every plan value is in ``[lo, hi]`` and every move within the rate."""
    full = np.vstack([p.u0[None], plan])
    inside = (plan >= p.lo - tol).all(0) & (plan <= p.hi + tol).all(0)
    slow = (np.abs(np.diff(full, axis=0)) <= p.rate + tol).all(0)
    return np.asarray(inside & slow & np.isfinite(plan).all(0))


class SolveError(Exception):
    """The solve cannot go on (non-finite forecast or objective); the message says why."""


@dataclass(frozen=True)
class Solution:
    """The chosen block plan, its forecast (every tag) and how the solve went."""

    x: np.ndarray
    mean: np.ndarray
    """``[H, n_tags]`` forecast of the plan (offset-corrected CVs)"""
    half: np.ndarray
    objective: float
    iterations: int
    message: str


FullRollout = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
"""``plans [B, H, n_mv] -> (mean, half) [B, H, n_tags]``"""


def gauss_newton(
    p: Problem,
    x0: np.ndarray,
    rollout: Rollout,
    cv: list[int],
    *,
    first: tuple[np.ndarray, np.ndarray] | None = None,
    max_iter: int = 3,
) -> Solution:
    """Gauss-Newton from the feasible ``x0``: linearise, solve the QP, line search; repeat.

    ``rollout(plans [B, H, n_mv]) -> (mean, half) [B, H, n_tags]`` (offset-corrected);
    ``first`` its answer for :func:`fd_plans` at ``x0`` when the caller already has it.
    One iteration costs two batched rollouts (Jacobian, then the step lengths of
    :data:`ALPHAS`). It stops when an iteration gains little or the linear model predicted
    the full step well (so that a linear model converges in one iteration). With
    ``p.target_w > 0`` the steady-state target (:func:`steady_target`) is set from the first
    Jacobian and held for the rest of the solve. Raises
    :class:`SolveError` on a non-finite forecast or objective at a point it must use.
    """
    x = x0
    mean, half = first if first is not None else rollout(p.plans(fd_plans(p, x)))
    fd = FD_REL * np.tile(p.mv_span, len(p.starts))
    cur_mean, cur_half = mean[0], half[0]
    value = _finite_objective(p, x, cur_mean, cur_half, cv)
    notes: list[str] = []
    it = 0
    while it < max_iter:
        it += 1
        y, h = mean[:, :, cv], half[:, :, cv]
        if not (np.isfinite(y).all() and np.isfinite(h).all()):
            raise SolveError("non-finite forecast for the Jacobian's plans")
        jy = np.moveaxis((y[1:] - y[0]) / fd[:, None, None], 0, -1)
        jh = np.moveaxis((h[1:] - h[0]) / fd[:, None, None], 0, -1)
        if not (np.isfinite(jy).all() and np.isfinite(jh).all()):
            raise SolveError("non-finite Jacobian of the forecast")
        if it == 1 and p.target_w > 0:
            p = replace(p, u_target=steady_target(p, x, y[0], jy))
            value = _finite_objective(p, x, cur_mean, cur_half, cv)
        step = qp_step(p, x, y[0], h[0], jy, jh)
        predicted = value - step.predicted
        notes.append(step.method)
        if not predicted > 1e-12 * (1.0 + value):
            break
        cands = np.stack([x + a * (step.x - x) for a in ALPHAS])
        c_mean, c_half = rollout(p.plans(cands))
        with np.errstate(all="ignore"):
            vals = p.objective(cands, c_mean[:, :, cv], c_half[:, :, cv])
        vals = np.where(np.isfinite(vals) & np.isfinite(c_mean).all((1, 2)), vals, np.inf)
        ok = [i for i, a in enumerate(ALPHAS) if vals[i] <= value - 1e-4 * a * predicted]
        i = ok[0] if ok else int(np.argmin(vals))
        if not vals[i] < value:
            notes[-1] += ", no step lowered the objective"
            break
        gained, ratio = value - vals[i], (value - vals[0]) / predicted
        x, value, cur_mean, cur_half = cands[i], float(vals[i]), c_mean[i], c_half[i]
        if (i == 0 and abs(ratio - 1.0) < 0.1) or gained < 1e-6 * (1.0 + value) or it >= max_iter:
            break
        mean, half = rollout(p.plans(fd_plans(p, x)))
    msg = f"{it} Gauss-Newton iteration(s) ({'; '.join(notes)})"
    return Solution(x, cur_mean, cur_half, value, it, msg)


#: longest time constant (in horizons) the tail extrapolation of :func:`steady_target` assumes
TAU_MAX = 4.0


def steady_target(p: Problem, x: np.ndarray, y0: np.ndarray, jy: np.ndarray) -> np.ndarray:
    """``[n_mv]`` MVs within bounds whose predicted steady state is nearest the setpoints.

    A horizon shorter than the plant's settling time lets the tracking term favour moves that
    help only within the horizon (on a plant whose interaction changes sign, the wrong way for
    the steady state): the closed loop then settles slowly, or pins an MV at a bound and keeps
    an offset. The steady state is estimated from the tail of the horizon. Each entry of the
    step response ``S_k`` (the Jacobian summed over the blocks) decays as a first-order tail
    ``r = (dS_H / dS_{H-3})^(1/3)``, ``tau = r / (1 - r)`` (at most :data:`TAU_MAX` horizons;
    0 for a tail that is not decaying monotonically), so ``K_ss = S_H + tau dS_H``. The
    forecast with the current MVs held, ``y_hold = y0 + J (u0 - x)`` (linearised at ``x``),
    is extrapolated alike with each CV's slowest ``tau``; then ``y_ss(u) = y_hold_ss + K_ss
    (u - u0)`` and ``u_ss`` minimises the weighted tracking error of ``y_ss`` within
    ``[lo, hi]`` plus the move term ``mw ((u - u0) / span)^2`` (which keeps measurement
    noise, amplified by an ill-conditioned ``K_ss``, out of the target and settles an
    underdetermined one), by :func:`_lsi` when a bound binds. For a linear model it does not depend on ``x``.
    """
    m, n_mv = p.shape
    step = jy.reshape(*jy.shape[:2], m, n_mv).sum(2)  # [H, n_cv, n_mv]
    tau = _tau(step)
    k_ss = step[-1] + tau * (step[-1] - step[-2])
    hold = y0 + jy @ (np.tile(p.u0, m) - x)  # [H, n_cv]
    tau_c = tau.max(1) if len(hold) >= 2 else np.zeros(hold.shape[1])
    y_ss = hold[-1] + tau_c * (hold[-1] - hold[-2] if len(hold) >= 2 else 0.0)
    w = np.sqrt(p.track_w) / p.cv_span  # [n_cv]
    scale = p.mv_span
    a = k_ss * w[:, None] * scale[None, :]  # MV moves in span units
    b = (p.sp - y_ss) * w
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        return np.clip(p.u0, p.lo, p.hi)
    ridge = np.maximum(np.sqrt(p.move_w), 1e-3 * max(float(np.abs(a).max(initial=0.0)), 1e-12))
    a = np.vstack([a, np.diag(ridge)])
    b = np.concatenate([b, np.zeros(n_mv)])
    lo = np.minimum((p.lo - p.u0) / scale, 0.0)  # u0 may be outside while moving back
    hi = np.maximum((p.hi - p.u0) / scale, 0.0)
    du = np.linalg.lstsq(a, b, rcond=None)[0]
    if not np.all((du >= lo) & (du <= hi)):
        eye = np.eye(n_mv)
        boxed = _lsi(a, b, np.vstack([eye, -eye]), np.concatenate([lo, -hi]))
        du = np.clip(du if boxed is None else boxed, lo, hi)
    return np.asarray(np.clip(p.u0 + du * scale, p.lo, p.hi))


def _tau(z: np.ndarray) -> np.ndarray:
    """Time constants (samples) of the tails of ``z [H, ...]`` (see :func:`steady_target`)."""
    if len(z) < 5:
        return np.zeros(z.shape[1:])
    d_end, d_back = z[-1] - z[-2], z[-4] - z[-5]
    with np.errstate(all="ignore"):
        ratio = d_end / d_back
        r = np.where((ratio > 0) & (ratio < 1), ratio, 0.0) ** (1.0 / 3.0)
        tau = np.minimum(r / (1.0 - r), TAU_MAX * len(z))
    return np.where(np.isfinite(tau), tau, 0.0)


def _finite_objective(
    p: Problem, x: np.ndarray, mean: np.ndarray, half: np.ndarray, cv: list[int]
) -> float:
    if not (np.isfinite(mean[:, cv]).all() and np.isfinite(half[:, cv]).all()):
        raise SolveError("non-finite forecast")
    with np.errstate(all="ignore"):
        value = float(p.objective(x[None], mean[None][:, :, cv], half[None][:, :, cv])[0])
    if not math.isfinite(value):
        raise SolveError("non-finite objective")
    return value
