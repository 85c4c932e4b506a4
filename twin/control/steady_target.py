"""The twin's steady state, extrapolated from the horizon: gains and the held-MV steady state.

The steady-state target optimiser (:mod:`twin.control.targets`) needs the linear steady-state
model ``y_ss(u) = y_hold + K (u - u0)`` at the current point;
:func:`twin.control.solve.gauss_newton` gets it once per solve from the first Jacobian of the
forecast, extrapolating the tail of the horizon to the steady state (:func:`steady_state`).
"""

from __future__ import annotations

import numpy as np

from twin.control.problem import Problem

#: longest time constant (in horizons) the tail extrapolation of :func:`steady_state` assumes
TAU_MAX = 4.0


def steady_state(
    p: Problem, x: np.ndarray, y0: np.ndarray, jy: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``(K [n_cv, n_mv], y_hold [n_cv])``: steady-state gains and the steady state with the
    current MVs held, from the forecast ``y0 [H, n_cv]`` of the block plan ``x`` and its
    Jacobian ``jy [H, n_cv, nx]``.

    A horizon shorter than the plant's settling time sees only part of a response, so the
    steady state is extrapolated from the tail of the horizon. Each entry of the step response
    ``S_k`` (the Jacobian summed over the blocks) decays as a first-order tail
    ``r = (dS_H / dS_{H-3})^(1/3)``, ``tau = r / (1 - r)`` (at most :data:`TAU_MAX` horizons;
    0 for a tail that is not decaying monotonically), so ``K = S_H + tau dS_H``. The forecast
    with the current MVs held, ``y0 + J (u0 - x)`` (linearised at ``x``), is extrapolated alike
    with each CV's slowest ``tau``. For a linear model neither depends on ``x``.
    """
    m, n_mv = p.shape
    step = jy.reshape(*jy.shape[:2], m, n_mv).sum(2)  # [H, n_cv, n_mv]
    tau = _tau(step)
    gain = step[-1] + tau * (step[-1] - step[-2]) if len(step) >= 2 else step[-1]
    hold = y0 + jy @ (np.tile(p.u0, m) - x)  # [H, n_cv]
    tau_c = tau.max(1) if len(hold) >= 2 else np.zeros(hold.shape[1])
    y_hold = hold[-1] + tau_c * (hold[-1] - hold[-2] if len(hold) >= 2 else 0.0)
    return np.asarray(gain), np.asarray(y_hold)


def _tau(z: np.ndarray) -> np.ndarray:
    """Time constants (samples) of the tails of ``z [H, ...]`` (see :func:`steady_state`)."""
    if len(z) < 5:
        return np.zeros(z.shape[1:])
    d_end, d_back = z[-1] - z[-2], z[-4] - z[-5]
    with np.errstate(all="ignore"):
        ratio = d_end / d_back
        r = np.where((ratio > 0) & (ratio < 1), ratio, 0.0) ** (1.0 / 3.0)
        tau = np.minimum(r / (1.0 - r), TAU_MAX * len(z))
    return np.where(np.isfinite(tau), tau, 0.0)
