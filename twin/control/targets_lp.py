"""Where the steady-state targets may still go, and the solves on it (:mod:`twin.control.targets`).

:class:`_Space` is an affine subspace ``z0 + basis @ t`` cut by ``a @ z <= b``: what the stages
so far left free. On it, :func:`_nearest` is a constrained least squares
(:func:`~twin.control.qp.lsi`) and :func:`_lp` an LP, solved first by one projection
(:func:`_project`) whose optimality a dual solution confirms (:func:`_optimal_face`), HiGHS
only when it does not; its answer is the LP's optimal face (:func:`_on_face`). :class:`_Log`
counts the LPs. Private to :mod:`twin.control.targets` and its stages.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp, nnls

from twin.control.qp import lsi

_FEAS = 1e-10  # slack on every row beyond what the space's point needs (see _Space.reduced)


@dataclass
class _Log:
    """What one call did: notes for the message, LPs solved."""

    notes: list[str] = field(default_factory=list)
    held: bool = False  # non-finite inputs: the MVs held, nothing solved
    lps: int = 0


@dataclass(frozen=True)
class _Space:
    """Where the targets may still go: ``z = z0 + basis @ t`` with ``a @ z <= b``.

    ``z = (x, v)``: the scaled moves, then one violation ``v >= 0`` per limit of the ranks
    given up. ``basis`` (orthonormal columns) spans what the stages so far left free: an LP's
    optimal face, the moves that keep the setpoint CVs. Solving in ``t`` holds what earlier
    stages reached exactly; holding it by an inequality with a tolerance instead would leave
    slivers of feasible space on which Lawson-Hanson's NNLS answers nonsense.
    """

    a: np.ndarray  # [m, nz]
    b: np.ndarray  # [m]
    z0: np.ndarray  # [nz] a point of the space (or, after hold, of the space before)
    basis: np.ndarray  # [nz, k]
    nx: int

    @classmethod
    def box(cls, lo: np.ndarray, hi: np.ndarray) -> _Space:
        eye = np.eye(len(lo))
        up, down = np.isfinite(hi), np.isfinite(lo)
        a = np.vstack([eye[up], -eye[down]])
        b = np.concatenate([hi[up], -lo[down]])
        return cls(a, b, np.clip(0.0, lo, hi), eye, len(lo))

    def hold(self, a_x: np.ndarray, b: np.ndarray) -> _Space:
        """With the limits ``a_x @ x <= b`` held."""
        a = np.hstack([a_x, np.zeros((len(b), len(self.z0) - self.nx))])
        return replace(self, a=np.vstack([self.a, a]), b=np.concatenate([self.b, b]))

    def relax(self, a_x: np.ndarray, b: np.ndarray) -> _Space:
        """With the limits ``a_x @ x <= b`` relaxed by new violations ``v``."""
        k, nz = len(b), len(self.z0)
        eye = np.eye(k)
        a = np.block(
            [
                [self.a, np.zeros((len(self.b), k))],
                [a_x, np.zeros((k, nz - self.nx)), -eye],
                [np.zeros((k, nz)), -eye],
            ]
        )
        v0 = np.maximum(a_x @ self.z0[: self.nx] - b, 0.0)
        basis = np.block(
            [[self.basis, np.zeros((nz, k))], [np.zeros((k, self.basis.shape[1])), eye]]
        )
        return replace(
            self,
            a=a,
            b=np.concatenate([self.b, b, np.zeros(k)]),
            z0=np.concatenate([self.z0, v0]),
            basis=basis,
        )

    def restrict(self, c: np.ndarray, z: np.ndarray) -> _Space:
        """The points of the space with ``c @ point == c @ z`` (``z`` one of them)."""
        return replace(self, z0=z, basis=self.basis @ _null(c @ self.basis))

    def reduced(self) -> tuple[np.ndarray, np.ndarray]:
        """``at @ t <= bt``: the rows in ``t`` (those constant on the space dropped). A row
        that ``z0`` misses only by rounding is moved to it; every row is relaxed by
        :data:`_FEAS` (a row ``z0`` misses by more, as after :meth:`hold`, stays)."""
        at = self.a @ self.basis
        bt = self.b - self.a @ self.z0
        keep = np.linalg.norm(at, axis=1) > 1e-12 * np.linalg.norm(self.a, axis=1)
        at, bt, b = at[keep], bt[keep], self.b[keep]
        bt = np.where(bt > -1e-7 * (1.0 + np.abs(b)), np.maximum(bt, 0.0), bt)
        return at, bt + _FEAS


def _nearest(space: _Space, e: np.ndarray, f: np.ndarray) -> np.ndarray | None:
    """``min ||e z - f||`` over ``space`` (:func:`~twin.control.qp.lsi`); None if none found."""
    basis, z0 = space.basis, space.z0
    if basis.shape[1] == 0:
        return z0
    at, bt = space.reduced()
    try:
        t = lsi(e @ basis, f - e @ z0, -at, -bt)
    except (ValueError, RuntimeError, np.linalg.LinAlgError):
        return None
    # NNLS can answer nonsense on a space that is (nearly) empty or flat: check
    if t is None or not np.all(at @ t <= bt + 1e-6 * (1.0 + np.abs(bt))):
        return None
    return np.asarray(z0 + basis @ t)


def _lp(space: _Space, c: np.ndarray, rho: float, log: _Log) -> _Space | None:
    """``space`` restricted to where ``c @ z`` is least (its optimal face); None if failed.

    The optimum: first the projection of ``z0 - rho c`` onto the space (one
    :func:`~twin.control.qp.lsi`; ``rho`` (:data:`~twin.control.targets._RHO`) times the space's
    size over ``|c|``). On a polyhedron it lies on the optimal face once ``rho`` is large
    enough, which a dual solution confirms (:func:`_optimal_face`); else HiGHS (``milp``
    without integers: the same solver as ``linprog(method="highs")`` with a third less of
    scipy's overhead, which is most of its millisecond here). The rows with a positive dual
    hold with equality on the face.
    """
    basis = space.basis
    ct = c @ basis
    if basis.shape[1] == 0 or np.abs(ct).max() <= 1e-12 * max(np.abs(c).max(), 1e-300):
        return space  # the cost is the same everywhere on the space
    at, bt = space.reduced()
    log.lps += 1
    reach = (1.0 + np.abs(bt).max(initial=0.0)) / np.linalg.norm(ct)
    t = _project(at, bt, -rho * reach * ct)
    tight = None if t is None else _optimal_face(at, bt, ct, t)
    if t is not None and tight is not None:
        return _on_face(space, at[tight], bt[tight], t)
    try:
        res = milp(
            ct, constraints=LinearConstraint(at, -np.inf, bt), bounds=Bounds(-np.inf, np.inf)
        )
    except (ValueError, RuntimeError):
        return None
    if res.status != 0 or not np.all(np.isfinite(res.x)):
        return None
    tight = _optimal_face(at, bt, ct, res.x)
    if tight is not None:
        return _on_face(space, at[tight], bt[tight], res.x)
    # no clean dual: hold the cost instead, with a tolerance
    z = space.z0 + basis @ res.x
    tol = 1e-7 * (abs(float(c @ z)) + np.abs(c).sum())
    held = replace(space, a=np.vstack([space.a, c]), b=np.append(space.b, c @ z + tol))
    return replace(held, z0=z)


def _optimal_face(
    at: np.ndarray, bt: np.ndarray, ct: np.ndarray, t: np.ndarray
) -> np.ndarray | None:
    """The rows tight on the face of optima of ``min ct @ t`` through ``t`` (a mask over
    ``at``); None unless ``t`` is feasible and a dual solution confirms it optimal."""
    slack = bt - at @ t
    if np.any(slack < -1e-7 * (1.0 + np.abs(bt))):
        return None
    active = np.flatnonzero(slack <= 1e-7 * (1.0 + np.abs(bt)))
    if not len(active):
        return None
    lam, resid = nnls(at[active].T, -ct)
    if resid > 1e-9 * (1.0 + np.linalg.norm(ct)):
        return None
    tight = np.zeros(len(bt), dtype=bool)
    tight[active[lam > 1e-10 * lam.max()]] = True
    return tight


def _on_face(space: _Space, a: np.ndarray, b: np.ndarray, t: np.ndarray) -> _Space:
    """``space`` restricted to the face ``a @ t' == b`` (rows in ``t``) near ``t``: ``t``
    moved onto it first (by the least correction: an LP's answer is accurate to ~1e-9 only)."""
    t = t + np.linalg.lstsq(a, b - a @ t, rcond=None)[0]
    return replace(space, z0=space.z0 + space.basis @ t, basis=space.basis @ _null(a))


def _project(at: np.ndarray, bt: np.ndarray, f: np.ndarray) -> np.ndarray | None:
    """The point of ``at @ t <= bt`` nearest ``f``; None if none found."""
    try:
        t = lsi(np.eye(len(f)), f, -at, -bt)
    except (ValueError, RuntimeError, np.linalg.LinAlgError):
        return None
    return t


def _null(c: np.ndarray) -> np.ndarray:
    """``[k, k - rank]`` orthonormal basis of the null space of ``c [m, k]``."""
    if not len(c) or not c.shape[1]:
        return np.eye(c.shape[1])
    _, sv, vt = np.linalg.svd(c)
    rank = int(np.sum(sv > 1e-10 * max(float(sv[0]), 1e-300)))
    return np.asarray(vt[rank:].T)
