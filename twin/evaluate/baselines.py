"""Forecasting baselines the twin is measured against: persistence, ARX, subspace ID, a GRU.

Every baseline has the twin's inputs and answers the twin's question::

    b = ARX().fit(spec, train_frame, val_frame, horizon=30, window=24)
    y = b.predict(past, mv_plan)   # past [N, W, n_tags], mv_plan [N, H, n_mv] -> [N, H, n_tags]

Arrays at the API are in engineering units, tags in spec order; ``past`` holds samples
``t-W+1 .. t`` (only the last ``window`` are used) and ``mv_plan[:, k]`` is the MV value at sample
``t+1+k`` (see :mod:`twin.model.dataset`). Like the twin's live forecast, future DVs are unknown and
held at their last value; the result's MV columns are the plan and its DV columns the held DVs,
so only the CV columns are forecasts. Internally each baseline works in units normalised with
statistics of its training frame; orders and early stopping are chosen on the validation frame
by the mean NRMSE over CVs and all H steps of open-loop forecasts.
"""

from __future__ import annotations

import logging
import math
import time
from abc import ABC, abstractmethod
from typing import ClassVar, Self

import numpy as np
import polars as pl
import torch
from torch import Tensor, nn

from twin.errors import DataQualityError
from twin.model.dataset import (
    Normalizer,
    Windows,
    cv_columns,
    dv_columns,
    frame_to_array,
    make_windows,
    mv_columns,
    spans,
)
from twin.model.train import torch_threads
from twin.spec import PlantSpec

log = logging.getLogger(__name__)

_VAL_WINDOWS = 600  # validation windows used to choose orders (evenly spaced)


class Baseline(ABC):
    """A multi-step open-loop forecaster with the twin's inputs (past window + MV plan)."""

    name: ClassVar[str]
    needs_validation: ClassVar[bool] = True
    """whether fitting chooses orders or stops early on validation windows"""

    def fit(
        self, spec: PlantSpec, train: pl.DataFrame, val: pl.DataFrame, *, horizon: int, window: int
    ) -> Self:
        """Fit on ``train`` (wide frame), choose orders / stop early on ``val``; returns self."""
        self.spec_, self.horizon_, self.window_ = spec, horizon, window
        self.cv_, self.mv_, self.dv_ = cv_columns(spec), mv_columns(spec), dv_columns(spec)
        values, ok = frame_to_array(train, spec)
        if not ok.all(axis=1).any():
            raise DataQualityError(f"{self.name}: the training frame has no complete sample")
        self.norm_ = Normalizer.fit(values, fallback=0.1 * spans(spec))
        z = self.norm_.norm(np.where(ok, values, np.nan))
        vv, vok = frame_to_array(val, spec)
        wins = make_windows(vv, vok, spec, window, horizon, self.norm_)
        if len(wins) > _VAL_WINDOWS:
            take = np.linspace(0, len(wins) - 1, _VAL_WINDOWS).astype(int)
            wins = Windows(wins.past[take], wins.future[take], wins.ts[take])
        if self.needs_validation and len(wins) == 0:
            raise DataQualityError(
                f"{self.name}: the validation frame ({val.height} samples) has no complete "
                f"stretch of window + horizon = {window + horizon} samples"
            )
        t0 = time.perf_counter()
        self._fit(z, wins)
        self.fit_seconds_ = time.perf_counter() - t0
        log.info("%s fitted in %.1f s", self.describe(), self.fit_seconds_)
        return self

    def predict(self, past: np.ndarray, mv_plan: np.ndarray) -> np.ndarray:
        """Forecast ``[N, H, n_tags]`` (engineering units) from ``past`` and ``mv_plan``."""
        past = np.asarray(past, dtype=np.float64)[:, -self.window_ :]
        mv_plan = np.asarray(mv_plan, dtype=np.float64)
        n_tags = len(self.spec_.tags)
        if past.ndim != 3 or past.shape[1:] != (self.window_, n_tags):
            raise ValueError(f"past must be [N, >={self.window_}, {n_tags}], got {past.shape}")
        if (
            mv_plan.ndim != 3
            or mv_plan.shape[0] != past.shape[0]
            or mv_plan.shape[2] != len(self.mv_)
        ):
            raise ValueError(f"mv_plan must be [N, H, {len(self.mv_)}], got {mv_plan.shape}")
        if not np.isfinite(past).all():
            raise DataQualityError(f"{self.name}: the past window has missing samples")
        pz = self.norm_.norm(past)
        fz = self._future_inputs(pz, mv_plan)
        out = fz.copy()  # MV columns = plan, DVs held
        out[..., self.cv_] = self._predict_z(pz, fz)
        return self.norm_.denorm(out)

    def describe(self) -> str:
        """Name and chosen orders, for reports."""
        return self.name

    def _future_inputs(self, pz: np.ndarray, mv_plan: np.ndarray) -> np.ndarray:
        """``[N, H, n_tags]`` normalised: MV columns = plan, DVs held, CVs = last value."""
        h = mv_plan.shape[1]
        fz = np.repeat(pz[:, -1:, :], h, axis=1)
        fz[..., self.mv_] = self.norm_.subset(self.mv_).norm(mv_plan)
        return fz

    def _val_score(self, wins: Windows) -> float:
        """Mean NRMSE (normalised units) over CVs and steps of open-loop forecasts on ``wins``."""
        if len(wins) == 0:
            return math.nan
        fz = wins.future.astype(np.float64).copy()
        fz[..., self.dv_] = wins.past[:, -1:, self.dv_]
        pred = self._predict_z(wins.past.astype(np.float64), fz)
        err = pred - wins.future[..., self.cv_]
        return float(np.sqrt(np.mean(err**2)))

    @abstractmethod
    def _fit(self, z: np.ndarray, val: Windows) -> None:
        """Fit on the normalised training array ``z [T, n_tags]`` (NaN = missing)."""

    @abstractmethod
    def _predict_z(self, pz: np.ndarray, fz: np.ndarray) -> np.ndarray:
        """CV forecasts ``[N, H, n_cv]`` from normalised ``pz [N, W, n]`` and inputs ``fz``."""


class Persistence(Baseline):
    """Every CV stays at its last measured value."""

    name = "persistence"
    needs_validation = False

    def _fit(self, z: np.ndarray, val: Windows) -> None:
        pass

    def _predict_z(self, pz: np.ndarray, fz: np.ndarray) -> np.ndarray:
        return np.repeat(pz[:, -1:, self.cv_], fz.shape[1], axis=1)


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


class _GRUNet(nn.Module):
    """GRU over the past window, then an MLP that outputs all H CV steps from the plan."""

    def __init__(self, n_tags: int, n_in: int, n_cv: int, horizon: int, hidden: int) -> None:
        super().__init__()
        self.gru = nn.GRU(n_tags, hidden, batch_first=True)
        wide = 2 * hidden
        self.head = nn.Sequential(
            nn.Linear(hidden + horizon * n_in, wide),
            nn.SiLU(),
            nn.Linear(wide, wide),
            nn.SiLU(),
            nn.Linear(wide, horizon * n_cv),
        )
        self.shape = (horizon, n_cv)

    def forward(self, past: Tensor, inputs: Tensor, last_cv: Tensor) -> Tensor:
        _, h = self.gru(past)
        out = self.head(torch.cat([h[-1], inputs.flatten(1)], dim=1))
        return last_cv.unsqueeze(1) + out.view(-1, *self.shape)


class DirectGRU(Baseline):
    """Direct multi-step GRU forecaster: the twin's inputs, a similar parameter count.

    Trained like the twin (AdamW, cosine learning rate over a wall-clock budget, the weights
    with the best validation error kept) on every training window, MSE on the CVs at all steps.
    ``n_params`` sets the hidden width to match a parameter count (e.g. the twin's).
    ``threads``: torch CPU threads while training (0 = as is). One is the default: for a net
    this small a second thread gains little, and on a busy machine it can cost a factor of 7.
    """

    name = "gru"

    def __init__(
        self,
        n_params: int = 60_000,
        minutes: float = 2.0,
        max_epochs: int = 200,
        patience: int = 20,
        batch: int = 128,
        lr: float = 3e-3,
        seed: int = 0,
        threads: int = 1,
    ) -> None:
        self.n_params, self.minutes, self.max_epochs = n_params, minutes, max_epochs
        self.patience, self.batch, self.lr, self.seed = patience, batch, lr, seed
        self.threads = threads

    def _inputs(self, pz: Tensor, fz: Tensor) -> Tensor:
        u = fz[..., self.mv_]
        u_prev = torch.cat([pz[:, -1:, self.mv_], u[:, :-1]], dim=1)
        return torch.cat([u, u - u_prev, fz[..., self.dv_]], dim=-1)

    def _make_net(self, hidden: int) -> _GRUNet:
        n_in = 2 * len(self.mv_) + len(self.dv_)
        return _GRUNet(len(self.spec_.tags), n_in, len(self.cv_), self.horizon_, hidden)

    def _fit(self, z: np.ndarray, val: Windows) -> None:
        with torch_threads(self.threads):
            self._train(z, val)

    def _train(self, z: np.ndarray, val: Windows) -> None:
        torch.manual_seed(self.seed)
        sizes = {
            h: sum(p.numel() for p in self._make_net(h).parameters()) for h in range(8, 257, 4)
        }
        hidden = min(sizes, key=lambda h: abs(sizes[h] - self.n_params))
        self.net_ = net = self._make_net(hidden)
        self.params_ = sizes[hidden]
        identity = Normalizer(np.zeros(z.shape[1]), np.ones(z.shape[1]))  # z is normalised
        wins = make_windows(z, np.isfinite(z), self.spec_, self.window_, self.horizon_, identity)
        if len(wins) == 0:
            raise DataQualityError("gru: no gap-free training window")
        past, fut = torch.as_tensor(wins.past), torch.as_tensor(wins.future)
        gen = torch.Generator().manual_seed(self.seed)
        opt = torch.optim.AdamW(net.parameters(), lr=self.lr, weight_decay=1e-4)
        steps = max(1, math.ceil(len(past) / self.batch))
        budget, t0 = self.minutes * 60.0, time.perf_counter()
        best, best_epoch, best_state = math.inf, 0, dict(net.state_dict())
        for epoch in range(1, self.max_epochs + 1):
            net.train()
            for s in range(steps):
                frac = max(
                    (epoch - 1 + s / steps) / self.max_epochs, (time.perf_counter() - t0) / budget
                )
                if frac >= 1.0 and s > 0:
                    break  # the budget is spent: validate this part-epoch and stop
                for group in opt.param_groups:
                    group["lr"] = self.lr * (
                        0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0)))
                    )
                idx = torch.randint(len(past), (self.batch,), generator=gen)
                p, f = past[idx], fut[idx]
                pred = net(p, self._inputs(p, f), p[:, -1, self.cv_])
                loss = ((pred - f[..., self.cv_]) ** 2).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(net.parameters(), 10.0)
                opt.step()
            score = self._val_score(val) if len(val) else float(loss)
            if score < best:
                best, best_epoch = score, epoch
                best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
            if epoch - best_epoch >= self.patience or time.perf_counter() - t0 >= budget:
                break
        net.load_state_dict(best_state)
        self.val_nrmse_, self.epochs_ = best, epoch

    def describe(self) -> str:
        return f"gru(params={self.params_})"

    @torch.no_grad()
    def _predict_z(self, pz: np.ndarray, fz: np.ndarray) -> np.ndarray:
        h = fz.shape[1]
        if h > self.horizon_:
            raise ValueError(f"gru: trained for {self.horizon_} steps, asked for {h}")
        self.net_.eval()
        p = torch.as_tensor(pz, dtype=torch.float32)
        f = torch.as_tensor(fz, dtype=torch.float32)
        if h < self.horizon_:  # pad the plan by holding its last move
            f = torch.cat([f, f[:, -1:].expand(-1, self.horizon_ - h, -1)], dim=1)
        with torch_threads(self.threads):
            out = [
                self.net_(
                    p[i : i + 4096],
                    self._inputs(p[i : i + 4096], f[i : i + 4096]),
                    p[i : i + 4096, -1, self.cv_],
                )
                for i in range(0, len(p), 4096)
            ]
        return torch.cat(out).numpy().astype(np.float64)[:, :h]


def default_baselines(
    n_params: int = 60_000, minutes: float = 2.0, seed: int = 0
) -> list[Baseline]:
    """Persistence, ARX, subspace ID and a direct GRU of about ``n_params`` parameters."""
    return [
        Persistence(),
        ARX(),
        Subspace(),
        DirectGRU(n_params=n_params, minutes=minutes, seed=seed),
    ]
