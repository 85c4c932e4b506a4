"""Steady-state targets: the MV and CV values the controller steers toward, found every cycle.

Before the dynamic solve, a DMC-style controller picks the steady state it steers toward, from a
linear steady-state model around the current MVs ``u0``: ``y(u) = y_hold + G (u - u0)``
(``G [n_cv, n_mv]`` the steady-state gains, ``y_hold`` the steady state with the MVs held).
:func:`steady_targets` finds it in stages, each optimal among the answers of the stages before
it (lexicographic):

1. MV limits are hard: ``u`` in ``[u_lo, u_hi]`` and within ``step`` of ``u0`` (an MV outside
   its range moves toward it by at most ``step``).
2. CV limits are soft and given up in rank order: instrument limits (rank 0) first, then the
   operating limits of priority 1, 2, ... For each rank in turn the summed scaled violation of
   its limits, ``sum max(0, y - hi) / scale`` (and alike below ``lo``), is minimised (an LP)
   with every rank before it held at its minimum. So when the limits cannot all hold, the
   least important rank gives way and each more important one holds as well as it can. The
   limits of one rank give way together: their least summed violation is held, how it splits
   among them is left to the stages below.
3. Setpoints: ``sum sp_weight ((y - sp) / scale)^2`` over the CVs with a setpoint, within the
   limits as relaxed (constrained least squares, :func:`~twin.control.qp.lsi`): a setpoint
   beyond a limit is given up to the limit. ``sp_ridge`` adds ``sum sp_ridge ((u - u0) /
   mv_scale)^2`` over the part of the move that changes the setpoint CVs (its projection on
   the row space of their scaled gains): with an ill-conditioned gain it keeps noise in
   ``y_hold`` from passing through the gain's inverse into the targets, and it leaves the moves
   that do not change the setpoint CVs to the stages below.
4. Economics: ``cv_cost @ y + mv_cost @ u`` (an LP), the setpoint CVs held at their stage-3
   values.
5. Rest: ``sum ((u - u_rest) / mv_scale)^2`` (``u0`` where no ``u_rest``: no move without a
   reason), the cost held at its optimum. This makes the answer unique, so the targets do not
   jump between the LP's vertices from one cycle to the next.

Everything works in scaled units: MV moves ``x = (u - u0) / mv_scale`` over the MVs free to
move, CV rows divided by ``scale``, and a violation variable ``v >= 0`` per limit of a rank
given up. What a stage reached is held exactly, not by an inequality with a tolerance: after
an LP the search continues on its optimal face (the rows whose dual is positive hold with
equality), after stage 3 on the moves that keep the setpoint CVs, both as an affine subspace
``z0 + basis @ t`` (:class:`~twin.control.targets_lp._Space`).

This runs every controller cycle, so the work is only what the problem needs. Stages 3 and 5
are first solved without CV limits (a least squares); if every limit holds there and there are
no costs, that is the answer. Otherwise a constrained least squares with every limit either
solves stage 3 or shows (Lawson-Hanson's NNLS reports it) that the limits cannot all hold;
only then are the ranks relaxed, each one by an LP only if it cannot hold in full. Costs add
one LP. An LP is solved first by one projection (:func:`~twin.control.targets_lp._lp`, a
fifth of a millisecond), HiGHS only when the projection's answer is not confirmed optimal
(scipy's call costs 1 ms). The answers are lexicographically optimal to about 1e-6 of the
scales.

This module holds the problem and the answer: :class:`TargetProblem`, :class:`Targets`,
:func:`steady_targets` (the stages in order), the problem in scaled units and the report.
:mod:`twin.control.targets_stages` holds the stages, :mod:`twin.control.targets_lp` the
space they search and its LP and least squares solves.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from twin.control.recommendation import ActiveConstraint
from twin.control.targets_lp import _Log, _Space
from twin.control.targets_stages import _finish, _relax, _setpoints, _Setup, _unlimited

#: a CV (MV) within this many of its scales from a limit sits on it; a CV beyond it gave it up
REPORT_TOL = 1e-5
#: a setpoint more than this many scales from its CV's target is reported as not reached
SP_TOL = 1e-6
_RIDGE = 1e-3  # weight of stage 3's ridge, relative to the setpoint rows (see _setpoints)
_RHO = 100.0  # step of the projection that solves an LP, in sizes of the space (targets_lp._lp)


@dataclass(frozen=True)
class TargetProblem:
    """One cycle's target problem: the linear steady-state model, the limits and the aims.

    Arrays are float64 in engineering units. ``nan`` in a limit, setpoint or ``u_rest`` means
    none; a cost of ``nan`` counts as 0.
    """

    gain: np.ndarray
    """``[n_cv, n_mv]`` steady-state gains ``dy/du``"""
    y_hold: np.ndarray
    """``[n_cv]`` the steady state with the MVs held at ``u0``"""
    u0: np.ndarray
    """``[n_mv]`` current MVs"""
    u_lo: np.ndarray
    """``[n_mv]`` hard MV limits for the targets (a frozen MV has ``u_lo == u_hi == u0``)"""
    u_hi: np.ndarray
    step: np.ndarray
    """``[n_mv]`` most a target may lie from ``u0`` this cycle (``inf``: no bound)"""
    hard_lo: np.ndarray
    """``[n_cv]`` CV instrument limits (rank 0: given up only if nothing else helps)"""
    hard_hi: np.ndarray
    op_lo: np.ndarray
    """``[n_cv]`` CV operating limits, given up by ``priority``"""
    op_hi: np.ndarray
    priority: np.ndarray
    """``[n_cv]`` int >= 1: rank of the operating limits; 1 is given up last, ties together"""
    sp: np.ndarray
    """``[n_cv]`` setpoints"""
    sp_weight: np.ndarray
    """``[n_cv]`` weights of the setpoint errors (>= 0; 0: no setpoint)"""
    scale: np.ndarray
    """``[n_cv]`` > 0: the unit in which violations and setpoint errors are measured"""
    mv_scale: np.ndarray
    """``[n_mv]`` > 0: the unit of the MV moves (conditioning, the rest stage)"""
    cv_cost: np.ndarray
    """``[n_cv]`` cost rate per unit of the CV (negative: a product's value)"""
    mv_cost: np.ndarray
    """``[n_mv]`` cost rate per unit of the MV"""
    u_rest: np.ndarray
    """``[n_mv]`` the MVs' ideal resting values (``nan``: stay at ``u0``)"""
    cv_names: tuple[str, ...]
    mv_names: tuple[str, ...]
    sp_ridge: np.ndarray | None = None
    """``[n_mv]`` >= 0: weight of ``((u - u0) / mv_scale)^2`` in the setpoint stage, on the moves
    that change the setpoint CVs only (keeps noise out of an ill-conditioned gain's inverse)"""

    def __post_init__(self) -> None:
        gain = np.asarray(self.gain)
        if gain.ndim != 2:
            raise ValueError(f"TargetProblem.gain must be [n_cv, n_mv], got shape {gain.shape}")
        n_cv, n_mv = gain.shape
        for f in fields(self):
            if f.name == "gain" or getattr(self, f.name) is None:
                continue
            n = n_mv if f.name.startswith(("u", "mv_", "step", "sp_ridge")) else n_cv
            shape = np.shape(getattr(self, f.name))
            if shape != (n,):
                raise ValueError(f"TargetProblem.{f.name} must have shape ({n},), got {shape}")


@dataclass(frozen=True)
class Targets:
    """The steady-state targets and the limits the dynamic controller keeps."""

    u: np.ndarray
    """``[n_mv]`` MV targets"""
    y: np.ndarray
    """``[n_cv]`` CV targets, ``y_hold + G (u - u0)``"""
    cv_lo: np.ndarray
    """``[n_cv]`` CV low limits after relaxation: the tighter of ``op_lo`` and ``hard_lo``,
    lowered to the target where it lies below (``-inf``: none)"""
    cv_hi: np.ndarray
    constraints: tuple[ActiveConstraint, ...]
    """limits given up, CV limits and MV limits the targets sit on, setpoints not reached"""
    cost_rate: float
    """``cv_cost @ y + mv_cost @ u`` at the targets (nan when there are no costs)"""
    cost_rate_hold: float
    """the same at ``(u0, y_hold)``"""
    message: str
    cv_names: tuple[str, ...] = ()
    mv_names: tuple[str, ...] = ()
    lps: int = 0
    """LPs solved (0 on the fast paths: the limits hold and there are no costs)"""


def steady_targets(tp: TargetProblem) -> Targets:
    """The MV and CV steady-state targets of ``tp`` (stages in the module doc); never raises.

    Non-finite ``gain``, ``y_hold`` or ``u0`` give the current MVs (moved into their box) and
    ``y_hold``. A failed LP or least squares keeps the previous stage's answer; ``message``
    says so.
    """
    s = _setup(tp)
    bad = _non_finite(tp)
    if bad:
        u = np.clip(tp.u0, s.box_lo, s.box_hi)
        return _report(tp, s, u, np.asarray(tp.y_hold, dtype=float), _Log([bad], held=True))
    log = _Log()
    x = np.zeros(0)
    if s.n_x:
        box = _Space.box(s.lo, s.hi)
        z = _unlimited(s, box, log)
        if np.any(s.lim_a @ z - s.lim_b > 1e-10):
            space = box.hold(s.lim_a, s.lim_b)
            z3 = _setpoints(s, space)
            if z3 is None:  # the limits cannot all hold
                space, z = _relax(s, box, z, log)
                z3 = _setpoints(s, space)
                if z3 is None:
                    log.notes.append("setpoint least squares failed: kept the limit answer")
                    z3 = z
            z = _finish(s, space, z3, log)
        elif s.has_cost:
            z = _finish(s, box.hold(s.lim_a, s.lim_b), z, log)
        x = z[: s.n_x]
    u = s.u_fixed.copy()
    u[s.free] += s.d * x
    u = np.clip(u, s.box_lo, s.box_hi)
    y = tp.y_hold + tp.gain @ (u - tp.u0)
    return _report(tp, s, u, y, log)


def _setup(tp: TargetProblem) -> _Setup:
    """``tp`` cleaned (nan limits as none, bad scales as 1) and in scaled units."""
    gain, u0 = np.asarray(tp.gain, dtype=float), np.asarray(tp.u0, dtype=float)
    scale, mv_scale = _positive(tp.scale), _positive(tp.mv_scale)
    step = np.abs(_fill(tp.step, np.inf))
    box_lo = np.clip(_fill(tp.u_lo, -np.inf), u0 - step, u0 + step)
    box_hi = np.maximum(np.clip(_fill(tp.u_hi, np.inf), u0 - step, u0 + step), box_lo)
    free = box_hi - box_lo > 1e-12 * mv_scale
    u_fixed = np.where(free, u0, box_lo)
    d = mv_scale[free]
    y_base = tp.y_hold + gain[:, ~free] @ (u_fixed - u0)[~free]
    a = gain[:, free] * d / scale[:, None]  # [n_cv, n_x]
    yb = y_base / scale
    inf = np.inf
    limits = np.stack(
        [
            _fill(tp.hard_lo, -inf),
            _fill(tp.hard_hi, inf),
            _fill(tp.op_lo, -inf),
            _fill(tp.op_hi, inf),
        ]
    )
    pr = np.maximum(np.asarray(tp.priority).astype(int), 1)
    ranks = np.stack([0 * pr, 0 * pr, pr, pr])
    kind, cv = np.nonzero(np.isfinite(limits))
    sign = np.array([-1.0, 1.0, -1.0, 1.0])[kind]
    lim_a = sign[:, None] * a[cv]
    lim_b = sign * (limits[kind, cv] / scale[cv] - yb[cv])
    w = _fill(tp.sp_weight, 0.0)
    has_sp = np.isfinite(tp.sp) & (w > 0)
    sw = np.sqrt(w[has_sp])
    sp_e = sw[:, None] * a[has_sp]
    sp_f = sw * (tp.sp[has_sp] / scale[has_sp] - yb[has_sp])
    ridge = np.zeros(len(d))
    if tp.sp_ridge is not None:
        ridge = np.sqrt(np.clip(_fill(tp.sp_ridge, 0.0), 0.0, np.inf))[free]
    if len(sp_f) and len(d) and np.all(np.isfinite(sp_e)):
        uu, sv, vt = np.linalg.svd(sp_e)
        k = int(np.sum(sv > 1e-10 * sv[0]))
        row, null = vt[:k].T, vt[k:].T
        mu = _RIDGE * float(sv[0]) if k else 1.0
        ridge_rows = (ridge[:, None] * (row @ row.T))[ridge > 0]  # on the row space only
        if len(ridge_rows):
            stacked = np.vstack([sp_e @ row, ridge_rows @ row])
            sp_solve = row @ np.linalg.pinv(stacked)[:, : len(sp_f)]
        else:
            sp_solve = row @ (uu[:, :k].T / sv[:k, None])
    else:
        ridge_rows, null, mu = np.zeros((0, len(d))), np.eye(len(d)), 1.0
        sp_solve = np.zeros((len(d), len(sp_f)))
    rest = np.where(np.isfinite(tp.u_rest), (tp.u_rest - u0) / mv_scale, 0.0)[free]
    cv_cost = _fill(tp.cv_cost, 0.0)
    mv_cost = _fill(tp.mv_cost, 0.0)
    return _Setup(
        box_lo=box_lo,
        box_hi=box_hi,
        free=free,
        u_fixed=u_fixed,
        d=d,
        lo=(box_lo - u0)[free] / d,
        hi=(box_hi - u0)[free] / d,
        limits=limits,
        ranks=ranks,
        scale=scale,
        lim_a=lim_a,
        lim_b=lim_b,
        lim_rank=ranks[kind, cv],
        has_sp=has_sp,
        sp_e=sp_e,
        sp_f=sp_f,
        ridge_rows=ridge_rows,
        sp_solve=sp_solve,
        null=null,
        mu=mu,
        rest=rest,
        cost=(cv_cost @ gain[:, free] + mv_cost[free]) * d,
        has_cost=bool(np.any(cv_cost != 0) or np.any(mv_cost != 0)),
        rho=_RHO,
    )


def _report(tp: TargetProblem, s: _Setup, u: np.ndarray, y: np.ndarray, log: _Log) -> Targets:
    """Targets at ``(u, y)``: the relaxed limits, the active constraints, costs and message
    (with ``log.held``: the limits as they are, no constraints, the message ``log.notes``)."""
    out: list[ActiveConstraint] = []
    parts = []
    if not log.held:
        out, given_up, missed = _constraints(tp, s, u, y)
        parts = [_gave_up(given_up)] if given_up else ["targets within every limit"]
        if missed:
            miss = ", ".join(f"{c.tag} by {c.by:+.3g}" for c in missed)
            parts.append(f"setpoints not reached: {miss}")
    lo_eff, hi_eff = np.maximum(s.limits[0], s.limits[2]), np.minimum(s.limits[1], s.limits[3])
    cv_lo, cv_hi = lo_eff, hi_eff
    if not log.held:  # the targets within, to rounding
        cv_lo = np.where(lo_eff - y > 1e-9 * s.scale, y, lo_eff)
        cv_hi = np.where(y - hi_eff > 1e-9 * s.scale, y, hi_eff)
    cv_cost, mv_cost = _fill(tp.cv_cost, 0.0), _fill(tp.mv_cost, 0.0)
    has_cost = bool(np.any(cv_cost != 0) or np.any(mv_cost != 0))

    def rate(uu: np.ndarray, yy: np.ndarray) -> float:
        return float(cv_cost @ yy + mv_cost @ uu) if has_cost else float("nan")

    return Targets(
        u=u,
        y=y,
        cv_lo=cv_lo,
        cv_hi=cv_hi,
        constraints=tuple(out),
        cost_rate=rate(u, y),
        cost_rate_hold=rate(np.asarray(tp.u0, dtype=float), np.asarray(tp.y_hold, dtype=float)),
        message="; ".join(parts + log.notes),
        cv_names=tuple(tp.cv_names),
        mv_names=tuple(tp.mv_names),
        lps=log.lps,
    )


def _constraints(
    tp: TargetProblem, s: _Setup, u: np.ndarray, y: np.ndarray
) -> tuple[list[ActiveConstraint], list[ActiveConstraint], list[ActiveConstraint]]:
    """The active constraints at ``(u, y)``; those given up; the setpoints not reached."""
    tol = REPORT_TOL * s.scale
    kinds = ("lo", "hi", "op_lo", "op_hi")
    sign = np.array([-1.0, 1.0, -1.0, 1.0])[:, None]
    beyond = sign * (y[None, :] - s.limits)  # [4, n_cv] > 0: violated
    out, given_up, missed = [], [], []
    near = (np.isfinite(s.limits) & (beyond >= -tol)).T  # [n_cv, 4]
    for i, k in zip(*np.nonzero(near), strict=True):
        cv, lim, by = tp.cv_names[i], float(s.limits[k, i]), float(beyond[k, i])
        pr = int(s.ranks[k, i]) if k >= 2 else None
        if by > tol[i]:
            out.append(ActiveConstraint(cv, kinds[k], lim, "given up", by, pr))
            given_up.append(out[-1])
        else:
            out.append(ActiveConstraint(cv, kinds[k], lim, "binding", 0.0, pr))
    mv_tol = REPORT_TOL * _positive(tp.mv_scale)
    for j, mv in enumerate(tp.mv_names):
        if not tp.u_lo[j] < tp.u_hi[j]:  # frozen (or no range): nothing to report
            continue
        for kind, lim in (("mv_lo", tp.u_lo[j]), ("mv_hi", tp.u_hi[j])):
            if abs(u[j] - lim) <= mv_tol[j]:
                out.append(ActiveConstraint(mv, kind, float(lim), "binding"))
    for i in np.flatnonzero(s.has_sp).tolist():
        off = float(y[i] - tp.sp[i])
        if abs(off) > SP_TOL * s.scale[i]:
            out.append(
                ActiveConstraint(tp.cv_names[i], "setpoint", float(tp.sp[i]), "given up", off)
            )
            missed.append(out[-1])
    return out, given_up, missed


def _gave_up(given_up: list[ActiveConstraint]) -> str:
    """``gave up T hi 350 by 0.1 (instrument limit), P op_lo 2 by 0.3 (priority 3)``: the most
    important first (instrument limits, then priority 1, 2, ...)."""
    order = sorted(given_up, key=lambda c: c.priority or 0)
    items = [
        f"{c.tag} {c.kind} {c.limit:g} by {c.by:.3g}"
        + (f" (priority {c.priority})" if c.priority is not None else " (instrument limit)")
        for c in order[:3]
    ]
    more = f" and {len(order) - 3} more" if len(order) > 3 else ""
    return "gave up " + ", ".join(items) + more


def _non_finite(tp: TargetProblem) -> str:
    """What is not finite among the model's inputs, for the message ('' when all are)."""
    for name, names in (("gain", None), ("y_hold", tp.cv_names), ("u0", tp.mv_names)):
        arr = np.asarray(getattr(tp, name), dtype=float)
        bad = np.argwhere(~np.isfinite(arr))
        if len(bad):
            if names is None:
                where = f"CV {tp.cv_names[bad[0][0]]!r}, MV {tp.mv_names[bad[0][1]]!r}"
            else:
                where = repr(names[bad[0][0]])
            return f"non-finite {name} ({where}): targets held at the current MVs"
    return ""


def _positive(x: np.ndarray) -> np.ndarray:
    """``x`` with entries that are not finite and positive replaced by 1."""
    x = np.asarray(x, dtype=float)
    return np.where(np.isfinite(x) & (x > 0), x, 1.0)


def _fill(x: Any, value: float) -> np.ndarray:
    """``x`` as floats with nan replaced by ``value`` (``np.nan_to_num`` is 5x slower)."""
    x = np.asarray(x, dtype=float)
    return np.where(np.isnan(x), value, x)
