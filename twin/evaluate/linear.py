"""Linear baselines: ARX by least squares and a state-space model by subspace identification.

Both are fitted in normalised units and choose their orders on the validation windows (see
:class:`~twin.evaluate.baseline.Baseline`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import numpy as np

from twin.errors import DataQualityError
from twin.evaluate.baseline import Baseline
from twin.model.dataset import Windows

log = logging.getLogger(__name__)


_ROWS_PER_TERM = 3
"""complete rows a least-squares fit needs per term it estimates (otherwise: fewer orders)"""
_RIDGE = (1e-2, 1e-1, 1.0)
"""ridge strengths, relative to the mean diagonal of the Gram matrix, tried when even the
smallest orders have fewer than ``_ROWS_PER_TERM`` rows per term"""


def _lstsq(a: np.ndarray, b: np.ndarray, ridge: float = 1e-9) -> np.ndarray:
    """Least squares ``a x = b`` by the normal equations with a ridge (tiny by default).

    The regressors are in normalised units (well scaled), and on a busy 2-core machine LAPACK's
    SVD-based ``lstsq`` on tall matrices is tens of times slower than one small solve.
    ``ridge`` is relative to the mean diagonal of ``a.T @ a``.
    """
    gram = a.T @ a
    gram[np.diag_indices_from(gram)] += ridge * max(float(np.trace(gram)), 1e-12) / len(gram)
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
        orders = [(na, nb) for na in self.na for nb in self.nb if self._fits_window(na, nb)]
        if not orders:
            raise DataQualityError(
                f"{self.name}: no order (na in {self.na}, nb in {self.nb}) fits a past window of "
                f"{self.window_} samples"
            )
        self.ridge_ = 0.0
        best: tuple[float, int, int, np.ndarray] | None = None
        fits: list[tuple[int, int]] = []
        for na, nb in orders:
            phi, y = self._design(z, na, nb)  # built per order: large plants, large matrices
            if len(phi) < _ROWS_PER_TERM * phi.shape[1]:
                continue
            fits.append((na, nb))
            raw = _lstsq(phi, y)
            self._use(na, nb, raw)
            score = self._val_score(val)
            log.debug("%s na=%d nb=%d: validation NRMSE %.4f", self.name, na, nb, score)
            if best is None or score < best[0]:
                best = (score, na, nb, raw)
        n_in = len(self.mv_ + self.dv_)
        small = min(orders, key=lambda o: o[0] * len(self.cv_) + o[1] * n_in)
        if best is None:  # not even the smallest order is affordable: regularise it
            best = self._fit_ridge(self._design(z, *small), small, val)
        elif len(fits) < len(orders):
            rows = len(self._design(z, *small)[0])
            self.notes_.append(
                f"skipped {len(orders) - len(fits)} of {len(orders)} (na, nb) orders it cannot "
                f"afford ({rows} complete rows, {_ROWS_PER_TERM} needed per term); it chose "
                f"among na in {sorted({o[0] for o in fits})}, nb in {sorted({o[1] for o in fits})}"
            )
        self.val_nrmse_, na, nb, raw = best
        self._use(na, nb, raw)

    def _fits_window(self, na: int, nb: int) -> bool:
        """Whether the lags of orders ``(na, nb)`` lie inside the past window."""
        return max(na, nb - 1) < self.window_

    def _use(self, na: int, nb: int, raw: np.ndarray) -> None:
        """Set the model from a least-squares solution of :meth:`_design` at ``(na, nb)``:
        ``fit_orders_`` are those, ``orders_`` and ``theta_`` the ARX in levels it is."""
        self.fit_orders_ = self.orders_ = (na, nb)
        self.theta_ = raw

    def _design(self, z: np.ndarray, na: int, nb: int) -> tuple[np.ndarray, np.ndarray]:
        """Complete rows of the regressors ``[rows, n_terms]`` and of the CVs ``[rows, n_cv]``."""
        y, u = z[:, self.cv_], z[:, self.mv_ + self.dv_]
        phi = np.hstack([_lagged(y, range(1, na + 1)), _lagged(u, range(nb)), np.ones((len(z), 1))])
        rows = np.isfinite(phi).all(axis=1) & np.isfinite(y).all(axis=1)
        return phi[rows], y[rows]

    def _fit_ridge(
        self, design: tuple[np.ndarray, np.ndarray], order: tuple[int, int], val: Windows
    ) -> tuple[float, int, int, np.ndarray]:
        """The smallest order with a ridge (strength chosen on validation), if rows >= terms."""
        (rows, terms), (na, nb) = design[0].shape, order
        if rows < terms:
            raise DataQualityError(
                f"{self.name}: {rows} complete rows for {terms} terms even at na={na}, nb={nb} "
                f"({len(self.cv_)} CVs, {len(self.mv_ + self.dv_)} inputs): too few to fit, "
                "even with ridge regularisation"
            )
        best: tuple[float, int, int, np.ndarray] | None = None
        for ridge in _RIDGE:
            raw = _lstsq(*design, ridge=ridge)
            self._use(na, nb, raw)
            score = self._val_score(val)
            if best is None or score < best[0]:
                best, self.ridge_ = (score, na, nb, raw), ridge
        assert best is not None
        self.notes_.append(
            f"ridge regression (strength {self.ridge_:g}) at its smallest orders: {rows} complete "
            f"rows for {terms} terms, fewer than {_ROWS_PER_TERM} per term"
        )
        return best

    def describe(self) -> str:
        ridge = f", ridge={self.ridge_:g}" if self.ridge_ else ""
        return f"{self.name}(na={self.fit_orders_[0]}, nb={self.fit_orders_[1]}{ridge})"

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


class IntegratedARX(ARX):
    """ARX on increments (velocity form): ``dy(t) = sum_a A_a dy(t-a) + sum_b B_b du(t-b)``,
    ``d`` the change from the sample before, no constant.

    The forecast is the last measurement plus the increments the inputs explain, so an
    unmeasured disturbance is carried forward as an offset that persists (the random-walk
    output disturbance behind DMC's bias update and offset-free MPC) instead of being pulled
    back to the level the training data had. On plants with slow unmeasured drifts, where
    persistence beats an ARX in levels at short steps, it forecasts like persistence plus the
    inputs' effect. It is an ARX in levels with orders ``(na + 1, nb + 1)`` and coefficients
    ``Y_l = A_l - A_(l-1)`` (``A_0 = -I``, ``A_(na+1) = 0``), ``U_l = B_l - B_(l-1)``, so it
    forecasts, embeds and resamples as one (:meth:`_use` converts). ``(na, nb)`` below are the
    increments' orders.
    """

    name = "iarx"

    def _fits_window(self, na: int, nb: int) -> bool:
        return max(na + 1, nb) < self.window_

    def _design(self, z: np.ndarray, na: int, nb: int) -> tuple[np.ndarray, np.ndarray]:
        dz = np.vstack([np.full((1, z.shape[1]), np.nan), np.diff(z, axis=0)])
        y, u = dz[:, self.cv_], dz[:, self.mv_ + self.dv_]
        phi = np.hstack([_lagged(y, range(1, na + 1)), _lagged(u, range(nb))])
        rows = np.isfinite(phi).all(axis=1) & np.isfinite(y).all(axis=1)
        return phi[rows], y[rows]

    def _use(self, na: int, nb: int, raw: np.ndarray) -> None:
        ny, nv = len(self.cv_), len(self.mv_ + self.dv_)
        a = [-np.eye(ny), *(raw[j * ny : (j + 1) * ny] for j in range(na)), np.zeros((ny, ny))]
        b = [raw[na * ny + j * nv : na * ny + (j + 1) * nv] for j in range(nb)]
        b = [np.zeros((nv, ny)), *b, np.zeros((nv, ny))]
        levels = [a[j] - a[j - 1] for j in range(1, na + 2)]
        levels += [b[j] - b[j - 1] for j in range(1, nb + 2)]
        self.fit_orders_, self.orders_ = (na, nb), (na + 1, nb + 1)
        self.theta_ = np.vstack([*levels, np.zeros((1, ny))])


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
        self.ridge_ = 0.0
        for i, ridge in self._block_rows(y, u):
            x_all, t_idx = self._states(y, u, i, ridge)
            for n in range(1, min(self.max_order, len(x_all)) + 1):
                try:
                    self.model_ = self._regress(x_all[:n], t_idx, y, u)
                except np.linalg.LinAlgError:
                    continue
                score = self._val_score(val)
                log.debug("subspace i=%d n=%d: validation NRMSE %.4f", i, n, score)
                if math.isfinite(score) and (best is None or score < best[0]):
                    best, self.ridge_ = (score, i, n, self.model_), ridge
        if best is None:
            raise DataQualityError("subspace: no identified model gave a finite validation score")
        self.val_nrmse_, i, n, self.model_ = best
        self.orders_ = (i, n)

    def _block_rows(self, y: np.ndarray, u: np.ndarray) -> list[tuple[int, float]]:
        """``(i, ridge)`` to try: the configured block rows the data afford, else fewer rows,
        else the fewest with a ridge; DataQualityError if even that has too few stretches.

        Block rows ``i`` need ``_ROWS_PER_TERM`` gap-free stretches of ``2 i`` samples per
        regressor of the projection, ``i (n_y + 2 n_u)``: many inputs need much data.
        """
        ny, nu = y.shape[1], u.shape[1]
        bad = ~(np.isfinite(y).all(axis=1) & np.isfinite(u).all(axis=1))
        count = np.concatenate([[0], np.cumsum(bad)])

        def stretches(i: int) -> int:
            if len(bad) < 2 * i:
                return 0
            return int(np.count_nonzero(count[2 * i :] - count[: len(bad) - 2 * i + 1] == 0))

        def terms(i: int) -> int:
            return i * (ny + 2 * nu)

        def shortage(i: int) -> str:
            return (
                f"at block rows {i}, {stretches(i)} gap-free stretches of {2 * i} samples for "
                f"{terms(i)} regressors ({ny} CVs, {nu} inputs)"
            )

        ok = [i for i in self.block_rows if stretches(i) >= _ROWS_PER_TERM * terms(i)]
        if ok:
            if len(ok) < len(self.block_rows):
                left = sorted(set(self.block_rows) - set(ok))
                self.notes_.append(f"block rows {left} skipped: {shortage(left[0])}")
            return [(i, 1e-9) for i in ok]
        fewest = min(self.block_rows)
        for i in range(fewest - 1, 1, -1):
            if stretches(i) >= _ROWS_PER_TERM * terms(i):
                self.notes_.append(f"block rows reduced to {i}: {shortage(fewest)}")
                return [(i, 1e-9)]
        i = min(2, fewest)
        if stretches(i) < terms(i):
            raise DataQualityError(
                f"subspace: {shortage(i)}: too few to identify a model, even regularised"
            )
        self.notes_.append(
            f"ridge regression (strength {_RIDGE[0]:g}): {shortage(i)}, fewer than "
            f"{_ROWS_PER_TERM} per regressor"
        )
        return [(i, _RIDGE[0])]

    def describe(self) -> str:
        ridge = f", ridge={self.ridge_:g}" if self.ridge_ > 1e-9 else ""
        return f"subspace(i={self.orders_[0]}, n={self.orders_[1]}{ridge})"

    @staticmethod
    def _states(
        y: np.ndarray, u: np.ndarray, i: int, ridge: float = 1e-9
    ) -> tuple[np.ndarray, np.ndarray]:
        """States ``[n_max, J]`` (sorted by singular value) at times ``t_idx [J]``."""
        bad = ~(np.isfinite(y).all(axis=1) & np.isfinite(u).all(axis=1))
        count = np.concatenate([[0], np.cumsum(bad)])
        starts = np.flatnonzero(count[2 * i :] - count[: len(bad) - 2 * i + 1] == 0)
        idx = starts[:, None] + np.arange(2 * i)[None, :]
        uh = u[idx].reshape(len(starts), 2, -1)  # [J, past|future, i*nu]
        yh = y[idx].reshape(len(starts), 2, -1)
        wp = np.hstack([uh[:, 0], yh[:, 0], np.ones((len(starts), 1))])
        reg = np.hstack([wp, uh[:, 1]])
        theta = _lstsq(reg, yh[:, 1], ridge)
        obl = wp @ theta[: wp.shape[1]]  # [J, i*ny]: oblique projection Yf /_{Uf} Wp
        obl -= obl.mean(axis=0)
        u_s, s, _ = np.linalg.svd(obl.T @ obl / len(obl))  # eigen-decomposition of O O^T
        keep = s > 1e-10 * s[0]
        x = (obl @ u_s[:, keep] / np.sqrt(np.sqrt(s[keep]))).T  # Gamma^+ O, Gamma = U S^(1/2)
        return x, starts + i

    @staticmethod
    def _regress(
        x: np.ndarray,
        t_idx: np.ndarray,
        y: np.ndarray,
        u: np.ndarray,
        rows: Callable[[int], np.ndarray] | None = None,
    ) -> tuple[np.ndarray, ...]:
        """``(A, B, b, K, C, D, d)`` from the state sequence by least squares.

        ``rows(m)``: which of the ``m`` rows each of the two regressions uses (repeats allowed;
        :mod:`twin.model.linear_members` passes a block bootstrap); default all of them."""
        pick = rows or np.arange
        one = np.ones((len(t_idx), 1))
        reg = np.hstack([x.T, u[t_idx], one])
        used = pick(len(t_idx))
        cdd = _lstsq(reg[used], y[t_idx][used])
        e = y[t_idx] - reg @ cdd
        n, nu = len(x), u.shape[1]
        c, d, dc = cdd[:n].T, cdd[n : n + nu].T, cdd[-1]
        pos = {t: j for j, t in enumerate(t_idx)}
        pairs = np.array([(pos[t], pos[t + 1]) for t in t_idx if t + 1 in pos])
        pairs = pairs[pick(len(pairs))]
        j0, j1 = pairs[:, 0], pairs[:, 1]
        reg1 = np.hstack([x[:, j0].T, u[t_idx[j0]], e[j0], one[j0]])
        abk = _lstsq(reg1, x[:, j1].T)
        a, b, k, bc = abk[:n].T, abk[n : n + nu].T, abk[n + nu : -1].T, abk[-1]
        if np.max(np.abs(np.linalg.eigvals(a - k @ c))) >= 1.0:
            k = np.zeros_like(k)  # the gain would make the predictor unstable: open loop instead
        return a, b, bc, k, c, d, dc

    def _predict_z(self, pz: np.ndarray, fz: np.ndarray) -> np.ndarray:
        a, b, bc, _, c, d, dc = self.model_
        ins = self.mv_ + self.dv_
        x = self.origin_state(pz)
        out = []
        for step in range(fz.shape[1]):
            uk = fz[:, step, ins]
            out.append(x @ c.T + uk @ d.T + dc)
            x = x @ a.T + uk @ b.T + bc
        return np.stack(out, axis=1)

    def origin_state(self, pz: np.ndarray) -> np.ndarray:
        """``[N, n]`` the state at ``t+1`` given normalised windows ``pz [N, W, n_tags]``.

        Affine in ``pz``: the steady Kalman predictor over the window, its initial state fitted
        by least squares.
        """
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
        return x + x0.T @ m.T  # the state at t+1 given the window
