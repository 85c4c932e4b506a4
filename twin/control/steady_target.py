"""The controller's steady-state target: the MVs whose predicted steady state is nearest the setpoints.

The last move block pays ``target_weight`` for its distance from this target (see the objective
in :mod:`twin.control.controller`); :func:`twin.control.solve.gauss_newton` sets it once per
solve from the first Jacobian, extrapolating the tail of the horizon to the steady state.
"""

from __future__ import annotations

import numpy as np

from twin.control.problem import Problem
from twin.control.qp import lsi

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
    underdetermined one), by :func:`~twin.control.qp.lsi` when a bound binds. For a linear
    model it does not depend on ``x``.
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
        boxed = lsi(a, b, np.vstack([eye, -eye]), np.concatenate([lo, -hi]))
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
