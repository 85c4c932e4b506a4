"""Linear models as affine state-space predictors in normalised units, the form in which
:mod:`twin.model.linear_init` embeds them in the twin (its module docstring has the equations).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from twin.evaluate.linear import ARX, Subspace


@dataclass(frozen=True)
class StateSpace:
    """An affine state-space predictor in normalised units (:mod:`twin.model.linear_init`'s
    docstring has the equations)."""

    name: str
    """the identified model and its orders, e.g. ``subspace(i=10, n=4)``"""
    a: np.ndarray
    """``[n, n]``"""
    b: np.ndarray
    """``[n, n_v]`` inputs ``v = (MVs, DVs)`` in spec order"""
    bc: np.ndarray
    """``[n]``"""
    c: np.ndarray
    """``[n_cv, n]``"""
    d: np.ndarray
    """``[n_cv, n_v]``"""
    dc: np.ndarray
    """``[n_cv]``"""
    enc: np.ndarray
    """``[n, W * n_tags]`` the initial state from the flattened (time-major) window"""
    enc_bias: np.ndarray
    """``[n]``"""

    @property
    def order(self) -> int:
        """Size of the state ``s``."""
        return len(self.a)

    def forecast(self, past: np.ndarray, future: np.ndarray, mv: list[int], dv: list[int]) -> Any:
        """CV forecasts ``[N, H, n_cv]`` from normalised ``past [N, W, n]``, ``future [N, H, n]``."""
        s = past.reshape(len(past), -1) @ self.enc.T + self.enc_bias
        out = []
        for k in range(future.shape[1]):
            v = future[:, k, mv + dv]
            out.append(s @ self.c.T + v @ self.d.T + self.dc)
            s = s @ self.a.T + v @ self.b.T + self.bc
        return np.stack(out, axis=1)


def from_arx(m: ARX, window: int, n_tags: int) -> StateSpace:
    """ARX as a state space: ``s = (y(T-1..T-na), v(T-1..T-nb+1))`` before predicting ``T``."""
    (na, nb), theta = m.orders_, m.theta_
    cv, ins = m.cv_, m.mv_ + m.dv_
    ny, nv = len(cv), len(ins)
    n = na * ny + (nb - 1) * nv
    c = theta[: na * ny].T
    d = theta[na * ny : na * ny + nv].T
    c = np.hstack([c, theta[na * ny + nv : na * ny + nb * nv].T])
    dc = theta[-1]
    a, b, bc = np.zeros((n, n)), np.zeros((n, nv)), np.zeros(n)
    a[:ny], b[:ny], bc[:ny] = c, d, dc  # the newest y lag is the forecast
    for j in range(1, na):  # older y lags shift down
        a[j * ny : (j + 1) * ny, (j - 1) * ny : j * ny] = np.eye(ny)
    u0 = na * ny
    if nb > 1:
        b[u0 : u0 + nv] = np.eye(nv)  # the newest input lag is this step's input
    for j in range(1, nb - 1):
        a[u0 + j * nv : u0 + (j + 1) * nv, u0 + (j - 1) * nv : u0 + j * nv] = np.eye(nv)

    def origin(pz: np.ndarray) -> np.ndarray:
        ys = [pz[:, window - lag, cv] for lag in range(1, na + 1)]
        us = [pz[:, window - lag, ins] for lag in range(1, nb)]
        return np.hstack([*ys, *us]) if n else np.zeros((len(pz), 0))

    enc, enc_bias = _affine(origin, window, n_tags)
    return StateSpace(m.describe(), a, b, bc, c, d, dc, enc, enc_bias)


def from_subspace(m: Subspace, window: int, n_tags: int) -> StateSpace:
    """The subspace model as it forecasts: its Kalman state at ``t+1`` is affine in the window."""
    a, b, bc, _, c, d, dc = m.model_
    enc, enc_bias = _affine(m.origin_state, window, n_tags)
    return StateSpace(m.describe(), a, b, bc, c, d, dc, enc, enc_bias)


def _affine(origin: Any, window: int, n_tags: int) -> tuple[np.ndarray, np.ndarray]:
    """``(L, l)`` with ``origin(pz) = L vec(pz) + l``, by probing with unit windows."""
    size = window * n_tags
    probes = np.vstack([np.zeros((1, size)), np.eye(size)]).reshape(-1, window, n_tags)
    states = origin(probes)
    return (states[1:] - states[:1]).T, states[0]


def convert(model: ARX | Subspace, window: int, n_tags: int) -> StateSpace:
    """A fitted ARX (and ARX on increments, a subclass) or subspace model as a state space."""
    if isinstance(model, ARX):
        return from_arx(model, window, n_tags)
    return from_subspace(model, window, n_tags)
