"""The controller's optimisation problem: move blocking, the objective, the hard MV limits.

Everything here is float64 numpy. Decision variables ``x = v.reshape(-1)``: ``v [M, n_mv]`` the
MV value held over each block (moves only at the M block starts, :func:`block_starts`). Bounds
and rates are linear in ``v``: a box per block (:attr:`Problem.lo_eff`, :attr:`Problem.hi_eff`)
and ``|v_j - v_{j-1}| <= rate`` with ``v_{-1}`` the current MV. Every iterate of the solver
(:mod:`twin.control.solve`) stays in that convex set, so a line search between two feasible
plans never leaves it. :mod:`twin.control.controller` documents the objective;
:meth:`Problem.objective` computes it. :func:`project` and :func:`limits_held` force and check
the hard limits on the final per-sample plan.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


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
    """``[n_cv]`` what each CV tracks (0 where a CV has none; its track weight is then 0): its
    setpoint, or the steady-state target once the targets are set"""
    track_w: np.ndarray
    cv_lo: np.ndarray
    """``[n_cv]`` the CV zone of the limit terms: operating limits (relaxed as the targets
    gave them up), else the instrument limits"""
    cv_hi: np.ndarray
    cv_scale: np.ndarray
    """``[n_cv]`` error scale of each CV (:attr:`twin.spec.Tag.error_scale`)"""
    limit_w: float
    risk_w: float
    target_w: float = 0.0
    """weight of the steady-state target term on the last block (:mod:`twin.control.targets`)"""
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
        e = (y - self.sp) / self.cv_scale
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
    ) / p.cv_scale**2


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
