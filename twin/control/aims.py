"""What the controller aims for, from the spec: limits, zones, priorities, costs, frozen MVs.

:class:`Aims` holds the spec's CV and MV aims as arrays (built once per controller) and turns
the twin's steady state at the current point into the dynamic problem's targets
(:meth:`Aims.retarget`): the steady-state target optimiser (:mod:`twin.control.targets`) finds
the MV and CV targets, the CVs with a setpoint then track their target (the setpoint, where the
limits allow it), every CV is held within its zone (operating limits as the targets relaxed
them, else instrument limits) and the last move block is pulled toward the MV targets.
:func:`frozen_mvs` chooses the MVs held at their current value.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, replace

import numpy as np

from twin.control.problem import Problem
from twin.control.steady_target import steady_state
from twin.control.targets import TargetProblem, Targets, steady_targets
from twin.errors import TwinError
from twin.spec import Tag


@dataclass(frozen=True)
class Aims:
    """The spec's aims for the CVs and MVs of one controller (spec order)."""

    cv_names: tuple[str, ...]
    mv_names: tuple[str, ...]
    hard_lo: np.ndarray
    """``[n_cv]`` instrument limits (-inf / inf with the limit terms off)"""
    hard_hi: np.ndarray
    op_lo: np.ndarray
    """``[n_cv]`` operating limits (-inf / inf: none)"""
    op_hi: np.ndarray
    priority: np.ndarray
    cv_cost: np.ndarray
    mv_cost: np.ndarray
    u_rest: np.ndarray
    """``[n_mv]`` ideal resting values (nan: none)"""
    step: float
    """how far the targets may move per cycle, in horizons of rate-limited travel"""

    @classmethod
    def of(cls, cvs: tuple[Tag, ...], mvs: tuple[Tag, ...], *, limits: bool, step: float) -> Aims:
        """From the spec's tags; ``limits=False`` (no limit terms): the CVs have no limits."""
        inf = math.inf

        def arr(values: Iterable[float | None], none: float) -> np.ndarray:
            return np.array([none if v is None else v for v in values], dtype=float)

        n_cv = len(cvs)
        return cls(
            cv_names=tuple(t.name for t in cvs),
            mv_names=tuple(t.name for t in mvs),
            hard_lo=arr((t.lo for t in cvs), -inf) if limits else np.full(n_cv, -inf),
            hard_hi=arr((t.hi for t in cvs), inf) if limits else np.full(n_cv, inf),
            op_lo=arr((t.op_lo for t in cvs), -inf) if limits else np.full(n_cv, -inf),
            op_hi=arr((t.op_hi for t in cvs), inf) if limits else np.full(n_cv, inf),
            priority=np.array([t.priority or 1 for t in cvs], dtype=np.int64),
            cv_cost=arr((t.cost for t in cvs), 0.0),
            mv_cost=arr((t.cost for t in mvs), 0.0),
            u_rest=arr((t.ideal for t in mvs), math.nan),
            step=step,
        )

    def retarget(
        self,
        p: Problem,
        x: np.ndarray,
        y0: np.ndarray,
        jy: np.ndarray,
        sp: np.ndarray,
        track_w: np.ndarray,
    ) -> tuple[Problem, Targets]:
        """``p`` with the steady-state targets set, and the targets, from the forecast ``y0 [H,
        n_cv]`` of the block plan ``x`` and its Jacobian ``jy``; ``sp [n_cv]`` the setpoints
        (nan: none), ``track_w`` their weights."""
        gain, y_hold = steady_state(p, x, y0, jy)
        tp = TargetProblem(
            gain=gain,
            y_hold=y_hold,
            u0=p.u0,
            u_lo=p.lo,
            u_hi=p.hi,
            step=p.rate * p.horizon * self.step,
            hard_lo=self.hard_lo,
            hard_hi=self.hard_hi,
            op_lo=self.op_lo,
            op_hi=self.op_hi,
            priority=self.priority,
            sp=sp,
            sp_weight=track_w,
            scale=p.cv_scale,
            mv_scale=p.mv_span,
            cv_cost=self.cv_cost,
            mv_cost=self.mv_cost,
            u_rest=self.u_rest,
            cv_names=self.cv_names,
            mv_names=self.mv_names,
            sp_ridge=p.move_w,
        )
        tg = steady_targets(tp)
        lo = np.minimum(np.where(np.isfinite(tg.cv_lo), tg.cv_lo, self.hard_lo), tg.y)
        hi = np.maximum(np.where(np.isfinite(tg.cv_hi), tg.cv_hi, self.hard_hi), tg.y)
        tracked = np.where(np.isfinite(sp), tg.y, 0.0)
        return replace(p, u_target=tg.u, sp=tracked, cv_lo=lo, cv_hi=hi), tg


def frozen_mvs(
    model: object, mvs: tuple[Tag, ...], frozen: Iterable[str] | None, release: Iterable[str]
) -> tuple[str, ...]:
    """The MVs held at their current value: ``frozen``, by default the model's MVs that never
    moved in its training data (``model.unmoved_mvs()``), less ``release``; TwinError naming a
    tag that is not an MV."""
    names = [t.name for t in mvs]
    released = set(release)
    known_names(sorted(released), names, "release", "MV")
    if frozen is None:
        unmoved = getattr(model, "unmoved_mvs", None)
        chosen = set(unmoved()) if callable(unmoved) else set()
    else:
        chosen = set(frozen)
        known_names(sorted(chosen), names, "frozen", "MV")
    return tuple(n for n in names if n in chosen and n not in released)


def known_names(given: Iterable[str], names: list[str], what: str, role: str) -> None:
    """Raise naming the tags in ``given`` (a per-tag setting, ``what``) that are not in ``names``."""
    unknown = [k for k in given if k not in names]
    if unknown:
        raise TwinError(f"{what}: {unknown} are not {role}s of this plant ({role}s: {names})")
