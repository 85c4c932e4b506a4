"""The direct multi-step GRU baseline: a neural forecaster with the twin's inputs and size."""

from __future__ import annotations

import math
import time

import numpy as np
import torch
from torch import Tensor, nn

from twin.errors import DataQualityError
from twin.evaluate.baseline import Baseline
from twin.model.dataset import Normalizer, Windows, make_windows
from twin.model.train import torch_threads


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
