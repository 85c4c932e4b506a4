"""The stages of the steady-state targets (:mod:`twin.control.targets`) on the scaled problem.

:class:`_Setup` is the target problem in scaled units (built by ``targets._setup``);
:func:`_unlimited` solves stages 3 and 5 within the MV box only, :func:`_relax` stage 2 (the
CV limits given up in rank order), :func:`_setpoints` stage 3 and :func:`_finish` stages 4
and 5, each on the :class:`~twin.control.targets_lp._Space` the stages before it left. Private
to :mod:`twin.control.targets`, which runs them in order (see its module doc).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from twin.control.targets_lp import _Log, _lp, _nearest, _Space

_PROX_STEPS = 3  # most solves of stage 3 (proximal-point steps)


@dataclass(frozen=True)
class _Setup:
    """``tp`` cleaned (nan limits as none, bad scales as 1) and in scaled units: built by
    ``targets._setup``."""

    box_lo: np.ndarray  # [n_mv] the MV box, engineering units
    box_hi: np.ndarray
    free: np.ndarray  # [n_mv] bool: MVs whose box is not a point
    u_fixed: np.ndarray  # [n_mv] u0, or the box's value for MVs not free
    d: np.ndarray  # [n_x] mv_scale of the free MVs
    lo: np.ndarray  # [n_x] box of x = (u - u0) / d
    hi: np.ndarray
    limits: np.ndarray  # [4, n_cv] hard_lo, hard_hi, op_lo, op_hi (inf: none)
    ranks: np.ndarray  # [4, n_cv]
    scale: np.ndarray  # [n_cv]
    lim_a: np.ndarray  # [n_lim, n_x] one row per finite limit: lim_a @ x <= lim_b
    lim_b: np.ndarray
    lim_rank: np.ndarray
    has_sp: np.ndarray  # [n_cv] bool: setpoint and weight > 0
    sp_e: np.ndarray  # [n_sp, n_x] setpoint rows: sp_e @ x ~ sp_f
    sp_f: np.ndarray
    ridge_rows: np.ndarray  # [n_r, n_x] the sp_ridge rows of the setpoint stage (target 0)
    sp_solve: np.ndarray  # [n_x, n_sp] stage 3 without limits: x = sp_solve @ sp_f + null part
    null: np.ndarray  # [n_x, k] orthonormal basis of moves that leave the setpoint CVs alone
    mu: float  # weight of the ridge in stage 3
    rest: np.ndarray  # [n_x] the resting moves
    cost: np.ndarray  # [n_x] gradient of the cost rate in x
    has_cost: bool
    rho: float  # step of the projection that solves an LP (targets._RHO; see _lp)

    @property
    def n_x(self) -> int:
        return len(self.d)


def _unlimited(s: _Setup, box: _Space, log: _Log) -> np.ndarray:
    """Stages 3 and 5 (3 alone when there are costs) within the MV box only."""
    if not len(s.sp_f):
        return np.clip(s.rest, s.lo, s.hi)
    x = s.sp_solve @ s.sp_f + s.null @ (s.null.T @ s.rest)  # the setpoints, then nearest the rest
    if np.all((x >= s.lo) & (x <= s.hi)):
        return x
    z3 = _setpoints(s, box)
    if z3 is None:
        log.notes.append("setpoint least squares failed: targets at the rest")
        return np.clip(s.rest, s.lo, s.hi)
    return z3 if s.has_cost else _finish(s, box, z3, log)


def _setpoints(s: _Setup, space: _Space) -> np.ndarray | None:
    """Stage 3 within ``space``: ``z``, None when the space is empty (or on failure).

    Stage 3 alone leaves free the moves that do not change the setpoint CVs (and the split of
    the violations), but :func:`~twin.control.qp.lsi` needs a strictly convex objective: a
    ridge ``mu ||z - c||`` with its centre ``c`` first at the rest, then at the last answer
    (proximal-point steps: its pull on the setpoint CVs fades, ``(mu / sigma)^2`` per step).
    ``mu`` is 1e-3 of the setpoint rows' largest singular value: a smaller one would be exact
    at once, but NNLS loses its constraints at condition numbers near 1e6. Without setpoints
    this is stage 5 without costs.
    """
    nx, nv, mu = s.n_x, len(space.z0) - space.nx, s.mu
    e = np.block(
        [
            [s.sp_e, np.zeros((len(s.sp_f), nv))],
            [s.ridge_rows, np.zeros((len(s.ridge_rows), nv))],
            [mu * np.eye(nx), np.zeros((nx, nv))],
            [np.zeros((nv, nx)), (mu if len(s.sp_f) else 0.0) * np.eye(nv)],
        ]
    )
    top = np.concatenate([s.sp_f, np.zeros(len(s.ridge_rows))])
    centre = np.concatenate([s.rest, np.zeros(nv)])
    z = None
    for _ in range(_PROX_STEPS if len(s.sp_f) else 1):
        z_new = _nearest(space, e, np.concatenate([top, mu * centre]))
        if z_new is None:
            return z
        done = z is not None and np.abs(z_new - z).max() <= 1e-9 * (1.0 + np.abs(z).max())
        z = centre = z_new
        if done:
            break
    return z


def _relax(s: _Setup, box: _Space, z: np.ndarray, log: _Log) -> tuple[_Space, np.ndarray]:
    """Stage 2: the space with each rank's limits held, or given up as little as possible
    (restricted to the LP's optimal face), in rank order; and a point of it."""
    space, nx = box, s.n_x
    for rank in np.unique(s.lim_rank):
        k = s.lim_rank == rank
        a, b = s.lim_a[k], s.lim_b[k]
        trial = space.hold(a, b)
        if np.all(a @ z[:nx] <= b + 1e-10):
            space = trial
            continue
        near = _nearest(trial, np.eye(len(z)), z)
        if near is not None:  # the rank holds in full
            space, z = trial, near
            continue
        soft = space.relax(a, b)
        c = np.zeros(len(soft.z0))
        c[len(z) :] = 1.0  # the rank's summed violation
        out = _lp(soft, c, s.rho, log)
        if out is None:
            log.notes.append(
                f"limit LP failed at {_rank_name(int(rank))}: ranks from there ignored"
            )
            break
        space, z = out, out.z0
    return space, z


def _finish(s: _Setup, space: _Space, z3: np.ndarray, log: _Log) -> np.ndarray:
    """Stages 4 and 5 from a stage-3 answer ``z3`` of ``space``."""
    nx, nv = s.n_x, len(z3) - s.n_x
    if len(s.sp_f):
        space = space.restrict(np.hstack([s.sp_e, np.zeros((len(s.sp_f), nv))]), z3)
    else:
        space = replace(space, z0=z3)
    if s.has_cost:
        out = _lp(space, np.concatenate([s.cost, np.zeros(nv)]), s.rho, log)
        if out is None:
            log.notes.append("economics LP failed or unbounded: kept the setpoint targets")
        else:
            space = out
    elif not len(s.sp_f):
        return z3  # already nearest the rest
    # the violations take no part: on an LP's optimal face they follow from the moves
    e = np.diag(np.concatenate([np.ones(nx), np.zeros(nv)]))
    z = _nearest(space, e, np.concatenate([s.rest, np.zeros(nv)]))
    if z is None:
        log.notes.append("rest least squares failed: kept the previous stage's targets")
        return space.z0
    return z


def _rank_name(rank: int) -> str:
    return "the instrument limits" if rank == 0 else f"priority {rank}"
