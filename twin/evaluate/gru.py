"""The direct multi-step GRU baseline: a neural forecaster with the twin's inputs and size."""

from __future__ import annotations

import numpy as np
import torch

from twin.errors import DataQualityError
from twin.evaluate.baseline import Baseline
from twin.model.dataset import Normalizer, Windows, make_windows
from twin.model.direct import DirectNet, plan_inputs, sized, train_direct
from twin.model.train import torch_threads


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

    def _make_net(self, hidden: int) -> DirectNet:
        n_mv, n_dv = len(self.mv_), len(self.dv_)
        return DirectNet(len(self.spec_.tags), n_mv, n_dv, len(self.cv_), self.horizon_, hidden)

    def _fit(self, z: np.ndarray, val: Windows) -> None:
        with torch_threads(self.threads):
            self._train(z, val)

    def _train(self, z: np.ndarray, val: Windows) -> None:
        torch.manual_seed(self.seed)
        self.net_ = net = sized(self.n_params, self._make_net)
        self.params_ = sum(p.numel() for p in net.parameters())
        identity = Normalizer(np.zeros(z.shape[1]), np.ones(z.shape[1]))  # z is normalised
        wins = make_windows(z, np.isfinite(z), self.spec_, self.window_, self.horizon_, identity)
        if len(wins) == 0:
            raise DataQualityError("gru: no gap-free training window")
        self.val_nrmse_, self.epochs_, _ = train_direct(
            net,
            torch.as_tensor(wins.past),
            torch.as_tensor(wins.future),
            (self.cv_, self.mv_, self.dv_),
            lambda: self._val_score(val),
            minutes=self.minutes,
            max_epochs=self.max_epochs,
            patience=self.patience,
            batch=self.batch,
            lr=self.lr,
            seed=self.seed,
        )

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
                    plan_inputs(p[i : i + 4096], f[i : i + 4096], self.mv_, self.dv_),
                    p[i : i + 4096, -1, self.cv_],
                )
                for i in range(0, len(p), 4096)
            ]
        return torch.cat(out).numpy().astype(np.float64)[:, :h]
