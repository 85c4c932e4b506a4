"""The controller's solver: Gauss-Newton iterations on the block values of a :class:`Problem`.

The model is reached only through a ``rollout`` callable ``plans [B, H, n_mv] -> (mean, half)
[B, H, n_tags]`` (offset-corrected mean and band half-width, engineering units). Each iteration
takes a forward-difference Jacobian (one batched rollout of :func:`fd_plans`), solves the
linearised problem within the limits (:func:`twin.control.qp.qp_step`) and line-searches the
step (a second batched rollout). The problem itself (blocking, objective, limits) is
:mod:`twin.control.problem`; the steady-state targets set from the first Jacobian come from
the caller's ``retarget`` (:mod:`twin.control.targets`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from twin.control.problem import Problem
from twin.control.qp import qp_step

Rollout = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
"""``plans [B, H, n_mv] -> (mean, half) [B, H, n_tags]``"""
Retarget = Callable[[Problem, np.ndarray, np.ndarray, np.ndarray], Problem]
"""``(p, x, y0 [H, n_cv], jy [H, n_cv, nx]) -> p`` with the steady-state targets set"""
#: relative finite-difference step (of each MV's span) for the Jacobian
FD_REL = 1e-2
#: step lengths tried along a Gauss-Newton direction (one batched rollout)
ALPHAS = (1.0, 0.5, 0.25)


def fd_plans(p: Problem, x0: np.ndarray) -> np.ndarray:
    """The ``1 + nx`` block plans of a forward-difference Jacobian at ``x0 [nx]`` ``[1+nx, nx]``."""
    step = np.tile(FD_REL * p.mv_span, len(p.starts))
    return np.vstack([x0, x0 + np.diag(step)])


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


def gauss_newton(
    p: Problem,
    x0: np.ndarray,
    rollout: Rollout,
    cv: list[int],
    *,
    first: tuple[np.ndarray, np.ndarray] | None = None,
    max_iter: int = 3,
    retarget: Retarget | None = None,
) -> Solution:
    """Gauss-Newton from the feasible ``x0``: linearise, solve the QP, line search; repeat.

    ``rollout(plans [B, H, n_mv]) -> (mean, half) [B, H, n_tags]`` (offset-corrected);
    ``first`` its answer for :func:`fd_plans` at ``x0`` when the caller already has it.
    One iteration costs two batched rollouts (Jacobian, then the step lengths of
    :data:`ALPHAS`). It stops when an iteration gains little or the linear model predicted
    the full step well (so that a linear model converges in one iteration). ``retarget`` (the
    controller's steady-state target optimiser) sets the targets from the first Jacobian; they
    hold for the rest of the solve. Raises
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
        if it == 1 and retarget is not None:
            p = retarget(p, x, y[0], jy)
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
