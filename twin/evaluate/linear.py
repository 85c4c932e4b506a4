"""Linear baselines: ARX by least squares and a state-space model by subspace identification.

Both are fitted in normalised units and choose their orders on the validation windows (see
:class:`~twin.evaluate.baseline.Baseline`).
"""

from __future__ import annotations

import logging
import math

import numpy as np

from twin.errors import DataQualityError
from twin.evaluate.baseline import Baseline
from twin.model.dataset import Windows

log = logging.getLogger(__name__)


def _lstsq(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Least squares ``a x = b`` by the normal equations with a tiny ridge.

    The regressors are in normalised units (well scaled), and on a busy 2-core machine LAPACK's
    SVD-based ``lstsq`` on tall matrices is tens of times slower than one small solve.
    """
    gram = a.T @ a
    gram[np.diag_indices_from(gram)] += 1e-9 * max(float(np.trace(gram)), 1e-12) / len(gram)
    return np.linalg.solve(gram, a.T @ b)


def _lagged(z: np.ndarray, lags: range) -> np.ndarray:
    """``[T, n * len(lags)]``: column block j is ``z`` delayed by ``lags[j]`` (NaN-padded)."""
    out = np.full((len(z), z.shape[1] * len(lags)), np.nan)
    for j, lag in enumerate(lags):
        out[lag:, j * z.shape[1] : (j + 1) * z.shape[1]] = z[: len(z) - lag]
    return out


class ARX(Baseline):
    """Linear ARX per CV by least squares, simulated recursively under the plan.

    ``y(t) = sum_{a=1..na} A_a y(t-a) + sum_{b=0..nb-1} B_b u(t-b) + c`` with ``y`` every CV and
    ``u`` the MVs and DVs (``u(t)`` is held over the interval that ends at ``t``, so it acts on
    ``y(t)``). Each CV is a MISO model whose regressors are the lags of all CVs and inputs; dead
    time is covered by ``nb``. ``(na, nb)`` is chosen on validation from ``orders``.
    """

    name = "arx"

    def __init__(
        self,
        na: tuple[int, ...] = (1, 2, 3, 4, 6),
        nb: tuple[int, ...] = (1, 2, 4, 8, 12, 16),
    ) -> None:
        self.na, self.nb = na, nb

    def _fit(self, z: np.ndarray, val: Windows) -> None:
        best: tuple[float, int, int, np.ndarray] | None = None
        for na in self.na:
            for nb in self.nb:
                if max(na, nb - 1) >= self.window_:
                    continue
                self.orders_, self.theta_ = (na, nb), self._fit_orders(z, na, nb)
                score = self._val_score(val)
                log.debug("arx na=%d nb=%d: validation NRMSE %.4f", na, nb, score)
                if best is None or score < best[0]:
                    best = (score, na, nb, self.theta_)
        if best is None:
            raise ValueError(f"arx: no order fits a past window of {self.window_} samples")
        self.val_nrmse_, na, nb, self.theta_ = best
        self.orders_ = (na, nb)

    def _fit_orders(self, z: np.ndarray, na: int, nb: int) -> np.ndarray:
        y, u = z[:, self.cv_], z[:, self.mv_ + self.dv_]
        phi = np.hstack([_lagged(y, range(1, na + 1)), _lagged(u, range(nb)), np.ones((len(z), 1))])
        rows = np.isfinite(phi).all(axis=1) & np.isfinite(y).all(axis=1)
        if rows.sum() < phi.shape[1] * 3:
            raise DataQualityError(f"arx: {rows.sum()} complete rows for {phi.shape[1]} terms")
        theta = _lstsq(phi[rows], y[rows])
        return theta  # [n_terms, n_cv]

    def describe(self) -> str:
        return f"arx(na={self.orders_[0]}, nb={self.orders_[1]})"

    def _predict_z(self, pz: np.ndarray, fz: np.ndarray) -> np.ndarray:
        na, nb = self.orders_
        ins = self.mv_ + self.dv_
        ys = list(pz[:, :, self.cv_].transpose(1, 0, 2))  # per time: [N, n_cv]
        us = list(np.concatenate([pz[:, :, ins], fz[:, :, ins]], axis=1).transpose(1, 0, 2))
        w, out = pz.shape[1], []
        ones = np.ones((len(pz), 1))
        for k in range(fz.shape[1]):
            t = w + k  # index of the sample being predicted
            phi = np.hstack(
                [*(ys[t - a] for a in range(1, na + 1)), *(us[t - b] for b in range(nb)), ones]
            )
            ys.append(phi @ self.theta_)
            out.append(ys[-1])
        return np.stack(out, axis=1)


class Subspace(Baseline):
    """Linear state-space model by subspace identification (N4SID), Kalman-filtered state.

    The oblique projection of future outputs along future inputs onto past data gives, through
    its SVD, a state sequence; least squares then gives ``(A, B, C, D)``, affine offsets and an
    innovation gain ``K``. The state at the forecast origin comes from the steady Kalman
    predictor run over the past window, its initial state fitted by least squares. Block rows
    ``i`` and order ``n`` are chosen on validation. (A compact numpy implementation: the PyPI
    package ``nfoursid`` would add pandas and matplotlib for the same few lines of algebra.)
    """

    name = "subspace"

    def __init__(self, block_rows: tuple[int, ...] = (10, 20), max_order: int = 24) -> None:
        self.block_rows, self.max_order = block_rows, max_order

    def _fit(self, z: np.ndarray, val: Windows) -> None:
        y, u = z[:, self.cv_], z[:, self.mv_ + self.dv_]
        best: tuple[float, int, int, tuple[np.ndarray, ...]] | None = None
        for i in self.block_rows:
            states = self._states(y, u, i)
            if states is None:
                continue
            x_all, t_idx = states
            for n in range(1, min(self.max_order, len(x_all)) + 1):
                try:
                    self.model_ = self._regress(x_all[:n], t_idx, y, u)
                except np.linalg.LinAlgError:
                    continue
                score = self._val_score(val)
                log.debug("subspace i=%d n=%d: validation NRMSE %.4f", i, n, score)
                if math.isfinite(score) and (best is None or score < best[0]):
                    best = (score, i, n, self.model_)
        if best is None:
            raise DataQualityError("subspace: no gap-free stretch long enough to identify a model")
        self.val_nrmse_, i, n, self.model_ = best
        self.orders_ = (i, n)

    def describe(self) -> str:
        return f"subspace(i={self.orders_[0]}, n={self.orders_[1]})"

    @staticmethod
    def _states(y: np.ndarray, u: np.ndarray, i: int) -> tuple[np.ndarray, np.ndarray] | None:
        """States ``[n_max, J]`` (sorted by singular value) at times ``t_idx [J]``."""
        bad = ~(np.isfinite(y).all(axis=1) & np.isfinite(u).all(axis=1))
        count = np.concatenate([[0], np.cumsum(bad)])
        starts = np.flatnonzero(count[2 * i :] - count[: len(bad) - 2 * i + 1] == 0)
        if len(starts) < 3 * i * (y.shape[1] + 2 * u.shape[1]):  # 3 x the regressors
            return None
        idx = starts[:, None] + np.arange(2 * i)[None, :]
        uh = u[idx].reshape(len(starts), 2, -1)  # [J, past|future, i*nu]
        yh = y[idx].reshape(len(starts), 2, -1)
        wp = np.hstack([uh[:, 0], yh[:, 0], np.ones((len(starts), 1))])
        reg = np.hstack([wp, uh[:, 1]])
        theta = _lstsq(reg, yh[:, 1])
        obl = wp @ theta[: wp.shape[1]]  # [J, i*ny]: oblique projection Yf /_{Uf} Wp
        obl -= obl.mean(axis=0)
        u_s, s, _ = np.linalg.svd(obl.T @ obl / len(obl))  # eigen-decomposition of O O^T
        keep = s > 1e-10 * s[0]
        x = (obl @ u_s[:, keep] / np.sqrt(np.sqrt(s[keep]))).T  # Gamma^+ O, Gamma = U S^(1/2)
        return x, starts + i

    @staticmethod
    def _regress(
        x: np.ndarray, t_idx: np.ndarray, y: np.ndarray, u: np.ndarray
    ) -> tuple[np.ndarray, ...]:
        """``(A, B, b, K, C, D, d)`` from the state sequence by least squares."""
        one = np.ones((len(t_idx), 1))
        reg = np.hstack([x.T, u[t_idx], one])
        cdd = _lstsq(reg, y[t_idx])
        e = y[t_idx] - reg @ cdd
        n, nu = len(x), u.shape[1]
        c, d, dc = cdd[:n].T, cdd[n : n + nu].T, cdd[-1]
        pos = {t: j for j, t in enumerate(t_idx)}
        pairs = np.array([(pos[t], pos[t + 1]) for t in t_idx if t + 1 in pos])
        j0, j1 = pairs[:, 0], pairs[:, 1]
        reg1 = np.hstack([x[:, j0].T, u[t_idx[j0]], e[j0], one[j0]])
        abk = _lstsq(reg1, x[:, j1].T)
        a, b, k, bc = abk[:n].T, abk[n : n + nu].T, abk[n + nu : -1].T, abk[-1]
        if np.max(np.abs(np.linalg.eigvals(a - k @ c))) >= 1.0:
            k = np.zeros_like(k)  # the gain would make the predictor unstable: open loop instead
        return a, b, bc, k, c, d, dc

    def _predict_z(self, pz: np.ndarray, fz: np.ndarray) -> np.ndarray:
        a, b, bc, k, c, d, dc = self.model_
        ins = self.mv_ + self.dv_
        yp, up = pz[:, :, self.cv_], pz[:, :, ins]
        n_win, w, n = len(pz), pz.shape[1], len(a)
        # Kalman predictor x+ = Ab x + Bb u + K y + bb from x = 0, and its response to x0
        ab, bb, bbc = a - k @ c, b - k @ d, bc - k @ dc
        x = np.zeros((n_win, n))
        resid, phi, m = [], [], np.eye(n)
        for t in range(w):
            resid.append(yp[:, t] - (x @ c.T + up[:, t] @ d.T + dc))
            phi.append(c @ m)
            x = x @ ab.T + up[:, t] @ bb.T + yp[:, t] @ k.T + bbc
            m = ab @ m
        x0 = np.linalg.pinv(np.vstack(phi)) @ np.hstack(resid).T
        x = x + x0.T @ m.T  # the state at t+1 given the window
        out = []
        for step in range(fz.shape[1]):
            uk = fz[:, step, ins]
            out.append(x @ c.T + uk @ d.T + dc)
            x = x @ a.T + uk @ b.T + bc
        return np.stack(out, axis=1)
