"""The twin's steady state, extrapolated from the horizon: gains and the held-MV steady state.

The steady-state target optimiser (:mod:`twin.control.targets`) needs the linear steady-state
model ``y_ss(u) = y_hold + K (u - u0)`` at the current point;
:func:`twin.control.solve.gauss_newton` gets it once per solve from the first Jacobian of the
forecast, extrapolating the tail of the horizon to the steady state (:func:`steady_state`).
"""

from __future__ import annotations

import numpy as np

from twin.control.problem import Problem

#: longest time constant (in horizons) the tail extrapolation of :func:`read_tail` assumes
TAU_MAX = 4.0
#: a tail whose last block changes by up to this multiple of the one before is still a steady
#: rise (a mode slower than the horizon); one that changes by more is accelerating (a response
#: that turns, or is only starting), and is not extrapolated
RAMP = 1.25


def steady_state(
    p: Problem, x: np.ndarray, y0: np.ndarray, jy: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``(K [n_cv, n_mv], y_hold [n_cv])``: steady-state gains and the steady state with the
    current MVs held, from the forecast ``y0 [H, n_cv]`` of the block plan ``x`` and its
    Jacobian ``jy [H, n_cv, nx]``.

    A horizon shorter than the plant's settling time sees only part of a response, so the
    steady state is extrapolated from the tail of the horizon (:func:`final_values`): the step
    response ``S_k`` (the Jacobian summed over the blocks) gives ``K``. The forecast with the
    current MVs held, ``y0 + J (u0 - x)`` (linearised at ``x``), is extrapolated alike with each
    CV's slowest tail. For a linear model neither depends on ``x``.
    """
    m, n_mv = p.shape
    step = jy.reshape(*jy.shape[:2], m, n_mv).sum(2)  # [H, n_cv, n_mv]
    gain, tau = final_values(step)
    hold = y0 + jy @ (np.tile(p.u0, m) - x)  # [H, n_cv]
    y_hold, _ = final_values(hold, tau.max(1))  # each CV's slowest gain tail
    return np.asarray(gain), np.asarray(y_hold)


def final_values(z: np.ndarray, tau: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(final, tau)``: where each curve of ``z [H, ...]`` ends, extrapolated from its tail.

    The median of three readings of the tail (:func:`read_tail`), from blocks of 1, ``H // 10``
    and ``H // 4`` samples: one-sample changes are fooled by a forecast that wiggles a little
    from sample to sample (a network's: a slow mode read as settled), long blocks are biased by
    the faster modes still seen earlier in the horizon (Wood-Berry), short blocks amplify the
    wiggle of a tail that has nearly settled; the median lets none of them decide alone (a
    horizon under 20 samples has fewer distinct block lengths: the median of two is their mean).
    ``tau``: time constants to use instead of the tails' own (broadcast against ``z[0]``); the
    tails' own (the median of the three) are returned.
    """
    n = len(z)
    if n < 5:
        return z[-1], np.zeros(z.shape[1:])
    reads = [read_tail(z, q, tau) for q in sorted({1, max(1, n // 10), max(1, n // 4)})]
    final = np.median(np.stack([f for f, _ in reads]), axis=0)
    return final, np.median(np.stack([t for _, t in reads]), axis=0)


def read_tail(
    z: np.ndarray, q: int, tau: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``(final, tau)`` of the curves ``z [H, ...]`` read from blocks of ``q`` samples.

    The tail is taken as first-order, ``z_k = z_inf - A r^k``, read from the means of the last
    three blocks, ``B1`` (the last ``q`` samples), ``B0`` and ``B-1`` before it: with
    ``d1 = B1 - B0`` and ``rho = d1 / (B0 - B-1)`` (``= r^q``), ``final = B1 + d1 rho / (1 - rho)``,
    exact for a first-order tail, and ``tau = r / (1 - r)`` samples, at most :data:`TAU_MAX`
    horizons. A response that still rises at a steady rate (``1 <= rho <= RAMP``: a mode slower
    than the horizon) is extrapolated with the longest ``tau``; one that reverses or oscillates
    (``rho <= 0``) or accelerates (``rho > RAMP``) ends where the horizon does.
    """
    n = len(z)
    b1, b0, bm = (z[n - (i + 1) * q : n - i * q].mean(0) for i in range(3))
    d1, d0 = b1 - b0, b0 - bm
    longest = TAU_MAX * n
    rho_max = (longest / (1.0 + longest)) ** q
    with np.errstate(all="ignore"):
        ratio = np.where(d0 != 0.0, d1 / d0, 0.0)
    ratio = np.where(np.isfinite(ratio) & (ratio <= RAMP), ratio, 0.0)  # accelerating: none
    rho = np.clip(ratio, 0.0, rho_max)
    r = rho ** (1.0 / q)
    own = r / (1.0 - r)
    if tau is not None:
        t = np.clip(np.broadcast_to(tau, own.shape), 0.0, longest)
        rho = (t / (1.0 + t)) ** q
    final = np.where(rho > 0.0, b1 + d1 * rho / (1.0 - rho), z[-1])
    return final, own
