"""The twin's network: a JEPA-style latent dynamics model, K ensemble members in one pass.

    z_0     = encode(past window)                  # [K, B, latent]
    z_{k+1} = z_k + A z_k + B x_k + f(z_k, x_k)    # x_k = (u_k, u_k - u_{k-1}, d_k); f an MLP
    y_{k+1} = C z_{k+1} + c + g_k * (y_t - C z_0 - c)  # linear readout + learned bias update
                                                   # (+ an MLP r(z) with readout_hidden)

Everything works in normalised units (see ``twin.model.dataset.Normalizer``). ``u_k`` is the planned
MV at sample ``t+1+k`` and ``d_k`` the known DV there. The last term is a learned per-step,
per-tag gain on the readout's error at the last observed sample, so ``g = 1`` makes the forecast
a residual on the last measurement (DMC's bias update) and ``g = 0`` a pure latent forecast.

Choices measured on the forecast benchmark's data (24 h training, a shifted 6 h test; one seed,
so differences of a few per cent are within noise): the JEPA term (w_jepa 0.1, stop-gradient,
VICReg) gave NRMSE at H 0.169 vs 0.177 without it on the CSTR and 0.314 vs 0.337 on Wood-Berry;
the linear core 0.314 vs 0.342 on Wood-Berry, no change on the CSTR; the encoder's linear skip
and the per-step loss balance brought step 1 to ARX's level. A gain held at 1 was better at
step 1 on Wood-Berry's test (0.080 vs 0.099) but worse on the CSTR's (0.056 vs 0.053): learned
is the default, ``learn_bias_gain=False`` the option.

Linear first (``linear_init``, the default): before training, every member is set to
reproduce an identified linear model (``twin.model.linear_init``): A, B in the linear core, the
model's state estimate in the encoder's linear path, C in the readout, both MLPs' output
layers at zero. ``linear_init=False`` starts from the random initialisation below.

The K members are independent networks with stacked weights (``EnsembleLinear``): one batched
matmul per layer trains and runs all of them, which on a small CPU costs about what one wider
network costs. Their spread is calibrated later (``twin.model.forecast.Calibration``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal, Protocol

import torch
from torch import Tensor, nn
from torch.nn import functional as F

TargetMode = Literal["stopgrad", "ema", "none"]
AntiCollapse = Literal["sigreg", "vicreg", "none"]


@dataclass(frozen=True)
class TwinConfig:
    """How the twin is built, trained and calibrated. Stored beside the weights."""

    window: int = 24
    """past samples the encoder sees (W)"""
    horizon: int = 30
    """samples the predictor rolls forward in training and forecasts (H, the controller's)"""
    time_scales: Literal["given", "auto", "auto_window", "auto_horizon"] = "given"
    """'given': window and horizon as set; 'auto': both from the identified linear model's
    dead and settling times (``twin.model.time_scales``); 'auto_window' / 'auto_horizon': that
    one only (the other given)"""
    latent: int = 32
    """size of the latent state z"""
    hidden: int = 64
    """width of the hidden layers of encoder and predictor"""
    readout_hidden: int = 0
    """width of a residual MLP on the readout, ``y = C z + c + r(z)`` (its output layer starts
    at zero, so linear first still starts from the linear model exactly); 0: a linear readout.
    A static output nonlinearity (a titration curve, a valve's characteristic) is then the
    readout's to learn, not the latent dynamics'. Measured with 32 on the 14 development
    plants, 1-min budget: test NRMSE at H x1.010 at 24 h, x0.999 at 7 days (fedbatch 0.94),
    within run-to-run noise (benchmarks/results/readout-dev-168h)"""
    ensemble: int = 5
    """independent members whose spread, once calibrated, gives the band"""
    w_readout: float = 1.0
    """weight of the readout error (CVs, every rollout step, plus the reconstruction at t)"""
    w_jepa: float = 0.1
    """weight of the latent prediction error against the encoder's embedding of the true window"""
    w_reg: float = 0.01
    """weight of the anti-collapse regulariser on the embeddings"""
    target: TargetMode = "stopgrad"
    """JEPA target embedding: stop-gradient, an EMA copy of the encoder, or neither"""
    anti_collapse: AntiCollapse = "vicreg"
    """regulariser against collapsed embeddings: SIGReg (LeJEPA), VICReg variance/covariance"""
    jepa_every: int = 3
    """JEPA targets at every n-th rollout step (and the last): saves encoder passes"""
    ema_decay: float = 0.99
    """decay of the EMA target encoder (target='ema' only)"""
    bias_update: bool = True
    """add the learned bias-update term (a residual on the last measurement)"""
    learn_bias_gain: bool = True
    """learn the bias-update gain per step and tag; False holds it at 1 (offset-free, DMC)"""
    linear_core: bool = True
    """the predictor adds a linear update ``A z + B u`` to its MLP's (exact for linear plants)"""
    encoder_skip: bool = True
    """give the encoder a linear path beside its MLP"""
    linear_init: bool = True
    """identify a linear model (ARX, subspace or ARX on increments, the best on validation)
    first and start every member from it; keep it if it validates better than the trained twin.
    Needs ``linear_core`` and ``encoder_skip``; the latent grows to hold its state if it must"""
    linear_bootstrap: bool = True
    """with ``linear_init``, each member starts from the linear model re-estimated (same orders)
    on its own moving-block bootstrap of the training rows, centred on the full-data fit, so that
    members agree on the training data and disagree off it (``twin.model.linear_members``); False:
    every member starts alike, and a kept linear start has no spread to widen its band with. On
    the 14 development plants (24 h, seed 1, with the calibration's error-scaled eps): tags with
    90 % bands in 85-95 % on later data 80 -> 84 %, below 75 % 5 -> 1, lowest 27 -> 70 %, band
    1.10x as wide, NRMSE at k = 1 / H +1.4 / -1.1 % (benchmarks/results/bands/linear_bootstrap.md)"""
    linear_mean: Literal["members", "full"] = "members"
    """with ``linear_bootstrap`` and ``stack``: what a linear part's ensemble mean (the forecast the
    controller plans on) is. 'members': the mean of its resampled members; 'full': the full-data
    fit's forecast, the members' deviations from their mean added for the spread
    (``twin.model.stack.FullMean``)"""
    balance_steps: bool = True
    """weight each rollout step and CV by 1 / persistence MSE there, so step 1 counts"""
    minutes: float = 2.5
    """wall-clock training budget (all members together)"""
    max_epochs: int = 300
    """upper bound on passes over the training windows"""
    patience: int = 25
    """stop after this many epochs without a better validation error (stop='patience')"""
    stop: Literal["patience", "smoothed"] = "patience"
    """'patience': as above; 'smoothed': stop when an exponentially smoothed validation error
    has not improved by 0.5 % for ``patience_steps`` optimiser steps (a rule that noise in one
    evaluation does not trigger; the best raw-score weights are kept either way)"""
    patience_steps: int = 1500
    """optimiser steps without a smoothed improvement before stopping (stop='smoothed')"""
    smoothing: float = 0.7
    """weight of the past in the smoothed validation error (stop='smoothed'), in [0, 1)"""
    bootstrap: bool = False
    """each member learns from its own bootstrap resample of the training windows (K > 1).
    Measured: wider spread and better test coverage, but a less accurate mean on small data"""
    batch: int = 128
    """windows per member per step"""
    lr: float = 3e-3
    """peak learning rate (AdamW, cosine decay over the budget)"""
    weight_decay: float = 1e-4
    """AdamW weight decay"""
    linear_lr: float = 1.0
    """the linear path's learning rate (linear core, encoder skip, readout) as a fraction of
    ``lr``: 0 holds the identified linear model fixed and trains only the nonlinear residual"""
    seed: int = 0
    """seeds torch and numpy. The same data, seed and settings give the same weights when the
    epochs pace training (``max_epochs`` binds well inside ``minutes``); the learning rate
    follows whichever of epochs and minutes is further spent, so a run the clock paces or cuts
    depends on the machine's speed and load (the same zoo-101 history and seed, a 1-min budget:
    610 optimiser steps on one occasion, 1181 on another, and closed loops of 1.495 and 1.166:
    benchmarks/results/control-fixed-history)"""
    device: str = "auto"
    """'cpu', 'cuda' or 'auto' (CUDA when present)"""
    threads: int = 1
    """CPU threads for torch while training (0 = torch's default). The matmuls are small: on a
    busy 2-core machine 2 threads measured 7x slower per step than 1"""
    fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)
    """train / validation / calibration split of the frame, contiguous in time"""
    coverage: float = 0.9
    """nominal coverage of the calibrated band"""
    band_score: Literal["scaled", "absolute", "auto"] = "scaled"
    """conformal score: error / ensemble spread, error alone, or chosen on the calibration split"""
    max_gap: int = 3
    """forecast: gaps up to this many samples in the history are carried forward"""
    stack: bool = True
    """with ``linear_init``, forecast each CV at each step as a combination of the kept network
    and the identified linear models, weights fitted on validation (``twin.model.stack``)"""
    direct: bool = False
    """with ``stack``: also train a direct multi-step GRU as one more stacked part
    (``twin.model.direct``): beside the network in a second process where a core is free, else
    after it, the budget split in half"""
    stack_direct: int = 0
    """set by training: the hidden width of the stacked direct part, 0 if none (for loading)"""
    stack_latents: tuple[int, ...] = ()
    """set by training: the latent size of each stacked part after the first (for loading)"""
    stack_hidden: tuple[int, ...] = ()
    """set by training: the hidden width of each stacked part after the first (for loading)"""
    stack_full_mean: tuple[bool, ...] = ()
    """set by training: which parts (the first included) are a :class:`FullMean` (for loading)"""

    def __post_init__(self) -> None:
        names = ("window", "horizon", "latent", "hidden", "ensemble", "batch", "jepa_every")
        for name in (*names, "max_epochs"):
            if getattr(self, name) < 1:
                raise ValueError(f"TwinConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.target not in ("stopgrad", "ema", "none"):
            raise ValueError(f"TwinConfig.target must be stopgrad|ema|none, got {self.target!r}")
        if self.anti_collapse not in ("sigreg", "vicreg", "none"):
            raise ValueError(
                f"TwinConfig.anti_collapse must be sigreg|vicreg|none, got {self.anti_collapse!r}"
            )
        if not 0 < self.coverage < 1:
            raise ValueError(f"TwinConfig.coverage must be in (0, 1), got {self.coverage}")
        if self.time_scales not in ("given", "auto", "auto_window", "auto_horizon"):
            raise ValueError(
                "TwinConfig.time_scales must be given|auto|auto_window|auto_horizon, "
                f"got {self.time_scales!r}"
            )
        if self.linear_mean not in ("members", "full"):
            raise ValueError(
                f"TwinConfig.linear_mean must be members|full, got {self.linear_mean!r}"
            )
        if self.stop not in ("patience", "smoothed"):
            raise ValueError(f"TwinConfig.stop must be patience|smoothed, got {self.stop!r}")
        if not 0 <= self.smoothing < 1:
            raise ValueError(f"TwinConfig.smoothing must be in [0, 1), got {self.smoothing}")
        if not 0 <= self.linear_lr <= 1:
            raise ValueError(f"TwinConfig.linear_lr must be in [0, 1], got {self.linear_lr}")
        if self.minutes <= 0:
            raise ValueError(f"TwinConfig.minutes must be > 0, got {self.minutes}")

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TwinConfig:
        """Inverse of :meth:`to_dict`; unknown keys are ignored (older or newer versions)."""
        known = {f.name for f in fields(cls)}
        kw = {k: v for k, v in d.items() if k in known}
        for name in ("fractions", "stack_latents", "stack_hidden", "stack_full_mean"):
            if name in kw:
                kw[name] = tuple(kw[name])
        return cls(**kw)


class EnsembleLinear(nn.Module):
    """K independent linear layers: ``x [K, ..., in] -> [K, ..., out]``."""

    def __init__(self, k: int, n_in: int, n_out: int, init_scale: float = 1.0) -> None:
        super().__init__()
        bound = init_scale / math.sqrt(n_in)
        self.weight = nn.Parameter(torch.empty(k, n_in, n_out).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(k, 1, n_out).uniform_(-bound, bound))

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == 3:
            return torch.baddbmm(self.bias, x, self.weight)
        shape = x.shape
        flat = x.reshape(shape[0], -1, shape[-1])
        out = torch.baddbmm(self.bias, flat, self.weight)
        return out.reshape(*shape[:-1], out.shape[-1])


class EnsembleMLP(nn.Module):
    """``in -> hidden -> hidden -> out`` with SiLU, plus a linear skip ``in -> out``; K members.

    The skip gives the encoder an ARX-like linear path from the first step of training.
    """

    def __init__(self, k: int, n_in: int, hidden: int, n_out: int, skip: bool = True) -> None:
        super().__init__()
        self.l1 = EnsembleLinear(k, n_in, hidden)
        self.l2 = EnsembleLinear(k, hidden, hidden)
        self.l3 = EnsembleLinear(k, hidden, n_out)
        self.skip = EnsembleLinear(k, n_in, n_out) if skip else None

    def forward(self, x: Tensor) -> Tensor:
        out = self.l3(F.silu(self.l2(F.silu(self.l1(x)))))
        return out if self.skip is None else out + self.skip(x)


@dataclass(frozen=True)
class Rollout:
    """What one rollout returns, normalised units; K members first."""

    y: Tensor
    """``[K, B, H, n_tags]`` readout of every tag at samples t+1..t+H"""
    z: Tensor
    """``[K, B, H, latent]`` the predicted latents"""
    z0: Tensor
    """``[K, B, latent]`` the encoder's embedding of the past window"""
    y0: Tensor
    """``[K, B, n_tags]`` the readout of ``z0`` (reconstruction of sample t)"""


class Forecaster(Protocol):
    """What forecasting asks of a model: a :class:`LatentDynamics`, or a stack of them
    (:class:`twin.model.stack.Stacked`)."""

    mv_cols: list[int]
    dv_cols: list[int]

    def rollout(self, past: Tensor, future_inputs: Tensor) -> Rollout: ...

    def parameters(self, recurse: bool = True) -> Iterator[nn.Parameter]: ...

    def eval(self) -> Any: ...


class LatentDynamics(nn.Module):
    """Encoder, residual predictor and readout for ``n_tags`` tags, K members at once."""

    def __init__(
        self, cfg: TwinConfig, n_tags: int, mv_cols: list[int], dv_cols: list[int]
    ) -> None:
        super().__init__()
        k, h, lat = cfg.ensemble, cfg.hidden, cfg.latent
        self.k, self.window, self.horizon = k, cfg.window, cfg.horizon
        self.mv_cols, self.dv_cols = list(mv_cols), list(dv_cols)
        n_in = 2 * len(mv_cols) + len(dv_cols)
        self.encoder = EnsembleMLP(k, cfg.window * n_tags, h, lat, skip=cfg.encoder_skip)
        # predictor layer 1 split in two: the input part is computed for all steps at once
        # (z's part has no bias of its own: pred_in's serves both). With a linear core, layer 1
        # also yields a linear update A z + B x beside the MLP's hidden units (A starts at 0).
        self.hidden = h
        n_lin = lat if cfg.linear_core else 0
        w_z = EnsembleLinear(k, lat, h).weight.detach()
        self.pred_z = nn.Parameter(torch.cat([w_z, torch.zeros(k, lat, n_lin)], dim=-1))
        self.pred_in = EnsembleLinear(k, max(n_in, 1), h + n_lin)
        with torch.no_grad():
            self.pred_in.weight[..., h:] *= 0.1
            self.pred_in.bias[..., h:] = 0.0
        self.pred_l2 = EnsembleLinear(k, h, h)
        self.pred_out = EnsembleLinear(k, h, lat, init_scale=0.1)
        self.readout = EnsembleLinear(k, lat, n_tags)
        self.readout_mlp: EnsembleMLP | None = None
        if cfg.readout_hidden > 0:
            self.readout_mlp = EnsembleMLP(k, lat, cfg.readout_hidden, n_tags, skip=False)
            with torch.no_grad():
                self.readout_mlp.l3.weight.zero_()
                self.readout_mlp.l3.bias.zero_()
        self.bias_gain = nn.Parameter(
            torch.ones(cfg.horizon, n_tags), requires_grad=cfg.learn_bias_gain
        )
        self.use_bias = cfg.bias_update

    def linear_parts(self) -> list[Tensor]:
        """Views of the linear path's weights: linear core, encoder skip and readout."""
        h = self.hidden
        parts = [self.pred_z[..., h:], self.pred_in.weight[..., h:], self.pred_in.bias[..., h:]]
        if self.encoder.skip is not None:
            parts += [self.encoder.skip.weight, self.encoder.skip.bias]
        return [*parts, self.readout.weight, self.readout.bias]

    def read(self, z: Tensor) -> Tensor:
        """The tags (normalised) the latent ``z [K, ..., latent]`` stands for."""
        y = self.readout(z)
        return y if self.readout_mlp is None else y + self.readout_mlp(z)

    def encode(self, past: Tensor) -> Tensor:
        """``past [K, B, W, n_tags]`` (or ``[B, W, n_tags]``, shared) to ``z [K, B, latent]``."""
        if past.dim() == 3:
            past = past.unsqueeze(0).expand(self.k, -1, -1, -1)
        return self.encoder(past.flatten(-2))

    def rollout(self, past: Tensor, future_inputs: Tensor) -> Rollout:
        """Roll the latent forward under the future inputs.

        ``past``: ``[B, W, n_tags]`` or ``[K, B, W, n_tags]``; ``future_inputs``: the same with
        ``H'`` steps instead of W (only MV and DV columns are read; ``H' <= H``).
        """
        if past.dim() == 3:
            past = past.unsqueeze(0).expand(self.k, -1, -1, -1)
        if future_inputs.dim() == 3:
            future_inputs = future_inputs.unsqueeze(0).expand(self.k, -1, -1, -1)
        steps = future_inputs.shape[-2]
        z = self.encode(past)
        u = future_inputs[..., self.mv_cols]
        u_prev = torch.cat([past[..., -1:, self.mv_cols], u[..., :-1, :]], dim=-2)
        x = torch.cat([u, u - u_prev, future_inputs[..., self.dv_cols]], dim=-1)
        if x.shape[-1] == 0:
            x = torch.zeros_like(future_inputs[..., :1])
        # the input part of layer 1 for all steps at once; unbind keeps the backward O(H)
        pre = self.pred_in(x).flatten(1, -3).unbind(-2)  # H x [K, B, hidden]
        l2, out = self.pred_l2, self.pred_out
        z0 = z = z.flatten(1, -2)
        zs = []
        h = self.hidden
        for step in range(steps):  # written out in baddbmm: the controller calls this a lot
            a = torch.baddbmm(pre[step], z, self.pred_z)
            hid = F.silu(torch.baddbmm(l2.bias, F.silu(a[..., :h]), l2.weight))
            base = z + a[..., h:] if a.shape[-1] > h else z
            z = torch.baddbmm(base, hid, out.weight) + out.bias
            zs.append(z)
        lead = past.shape[:-2]
        zk = torch.stack(zs, dim=-2).reshape(*lead, steps, -1)
        z0 = z0.reshape(*lead, -1)
        y0, y = self.read(z0), self.read(zk)
        if self.use_bias:
            err = past[..., -1, :] - y0  # [K, B, n_tags]
            y = y + self.bias_gain[:steps] * err.unsqueeze(-2)
        return Rollout(y=y, z=zk, z0=z0, y0=y0)
