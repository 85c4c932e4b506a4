"""Training the latent dynamics model: multi-step rollout loss, JEPA term, early stopping.

One optimiser step draws a separate mini-batch of windows for each ensemble member (so members
differ by data order as well as by initialisation), rolls every member H steps open-loop under
the true MV moves and DVs, and minimises

    w_readout * (CV error at every step + 0.1 * reconstruction at t)
  + w_jepa    * |z_k - target(window ending at t+1+k)|^2      (every ``jepa_every`` steps)
  + w_reg     * anti-collapse(z_0)                             (VICReg or SIGReg)

The learning rate follows a cosine over the training budget (epochs or minutes, whichever ends
first); the weights with the best validation error are kept. Training stops at the budget, at
``max_epochs``, or by the stop rule (``TwinConfig.stop``): 'patience' epochs without a better
validation error, or 'smoothed', ``patience_steps`` optimiser steps without a 0.5 % gain in an
exponentially smoothed validation error. :attr:`TrainResult.reason` says which, with figures.

Under ``torchrun`` (:mod:`twin.model.distributed`) each rank draws its members' batches from its
share of the epoch's shuffled windows (``DistributedSampler``'s split, seeded by the seed and the
epoch), gradients are averaged over the ranks, and the clock, the validation error and so every
decision are rank 0's: the ranks' weights stay identical. The batch is global: each of N ranks
draws ``batch / N`` windows per member and step, so a step averages the gradient of the same
number of windows as in one process and an epoch has as many steps; N processes do each step's
work in parallel instead of taking steps N times as large (which, under a time budget, gave fewer
updates and a worse twin: ``benchmarks/ddp.py``).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from twin.model import distributed
from twin.model.dataset import Windows
from twin.model.jepa import ema_copy, ema_update, jepa_targets, sigreg, vicreg
from twin.model.network import Forecaster, LatentDynamics, TwinConfig

log = logging.getLogger(__name__)

BAR = "{desc} {percentage:3.0f}%|{bar:20}| {elapsed}<{remaining} {postfix}"
"""the training progress bars' format (the network's and the direct part's)"""


@dataclass(frozen=True)
class TrainResult:
    """What training did: epochs run, seconds spent, best validation error and when."""

    epochs: int
    steps: int
    seconds: float
    best_val: float
    """validation NRMSE of the ensemble mean over CVs and all steps (normalised units)"""
    best_epoch: int
    stopped: str
    """why training ended: 'patience', 'smoothed', 'minutes' or 'epochs'"""
    reason: str = ""
    """the same in a sentence, with the figures that decided it"""


def resolve_device(name: str) -> torch.device:
    """'auto' is CUDA when present, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` torch CPU threads (0 = leave as is), then restore."""
    before = torch.get_num_threads()
    if n > 0:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@torch.no_grad()
def predict(
    model: Forecaster,
    past: np.ndarray | Tensor,
    future: np.ndarray | Tensor,
    *,
    hold_dv: bool = True,
    clocks: Sequence[int] = (),
    batch: int = 2048,
) -> tuple[np.ndarray, np.ndarray]:
    """Ensemble mean and std ``[N, H, n_tags]`` (normalised) of windows, DVs held if asked.

    MV columns of the result are the plan (``future``'s MVs); with ``hold_dv`` the DV inputs
    are the last past value, as in a live forecast, and so are the DV columns of the result,
    except the ``clocks`` (:func:`~twin.model.dataset.clock_columns`): a live forecast counts
    them on, which is what the windows' future holds.
    """
    model.eval()
    device = next(model.parameters()).device
    held = [c for c in model.dv_cols if c not in clocks] if hold_dv else []
    means, stds = [], []
    for lo in range(0, len(past), batch):
        p = torch.as_tensor(past[lo : lo + batch], device=device)
        f = torch.as_tensor(future[lo : lo + batch], device=device).clone()
        if held:
            f[..., held] = p[:, -1:, held]
        y = model.rollout(p, f).y
        y[..., model.mv_cols] = f[..., model.mv_cols]
        y[..., model.dv_cols] = f[..., model.dv_cols]
        means.append(y.mean(0).cpu().numpy())
        stds.append(y.std(0, unbiased=False).cpu().numpy())
    return np.concatenate(means), np.concatenate(stds)


def nrmse_per_step(mean: np.ndarray, future: np.ndarray) -> np.ndarray:
    """RMSE over windows ``[H, n_tags]`` of normalised forecasts (= NRMSE, scale = train std)."""
    return np.sqrt(((mean - future) ** 2).mean(axis=0))


def train_model(
    model: LatentDynamics,
    train: Windows,
    val: Windows,
    cfg: TwinConfig,
    cv_cols: list[int],
    *,
    clocks: Sequence[int] = (),
    progress: bool = True,
) -> TrainResult:
    """Train ``model`` in place on ``train``, early-stopping on ``val`` (forecast as live, the
    ``clocks`` counted on: see :func:`predict`); returns a summary."""
    if len(train) == 0:
        raise ValueError("no training windows: the training split has no gap-free stretch")
    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(cfg.seed)
    past = torch.as_tensor(train.past, device=device)
    future = torch.as_tensor(train.future, device=device)
    n = len(past)
    world, rank = distributed.world_size(), distributed.rank()
    if world > 1:  # the same windows and settings everywhere, and rank 0's starting weights
        settings = {k: v for k, v in cfg.to_dict().items() if k != "minutes"}  # less identify time
        distributed.check_same("training sets", (n, len(val), settings))
        distributed.broadcast_module(model)
    # rank 0 draws as a single process does; the others from streams of their own
    draw = gen if rank == 0 else torch.Generator().manual_seed(cfg.seed + 100_003 * rank)
    batch = max(1, cfg.batch // world)  # this rank's share of the global batch
    steps_per_epoch = max(1, math.ceil(n / cfg.batch))
    total_steps = cfg.max_epochs * steps_per_epoch
    budget = distributed.broadcast_float(cfg.minutes * 60.0, device)
    jepa_steps = sorted({*range(cfg.jepa_every - 1, cfg.horizon, cfg.jepa_every), cfg.horizon - 1})
    weights = _step_weights(train, cv_cols).to(device) if cfg.balance_steps else None
    target_encoder = ema_copy(model.encoder) if cfg.target == "ema" else None
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)

    # each member draws its batches from its own resample: different data, not only init
    if cfg.bootstrap and model.k > 1:
        pool = torch.randint(n, (model.k, n), generator=gen)
    else:
        pool = torch.arange(n).expand(model.k, n)
    best = (math.inf, 0)
    smooth, best_smooth = math.inf, (math.inf, 0)  # stop='smoothed': (score, step)
    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    t0 = time.perf_counter()

    def elapsed() -> float:  # rank 0's clock, so that every rank ends at the same step
        return distributed.broadcast_float(time.perf_counter() - t0, device)

    step = epoch = 0
    stopped, reason = "epochs", ""
    bar = tqdm(
        total=100,
        desc="train",
        bar_format=BAR,
        disable=not progress or rank != 0,
        leave=False,
    )
    for epoch in range(1, cfg.max_epochs + 1):
        model.train()
        losses: list[list[float]] = []
        shard = _shard(n, world, rank, cfg.seed + epoch) if world > 1 else None
        for _ in range(steps_per_epoch):
            frac = max(step / total_steps, elapsed() / budget)
            if frac >= 1.0 and losses:
                break  # the budget ends mid-epoch on large data
            warm = min(1.0, (step + 1) / 50)
            for group in opt.param_groups:
                group["lr"] = cfg.lr * warm * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * frac)))
            if shard is None:
                pick = torch.randint(n, (model.k, batch), generator=draw)
            else:
                pick = shard[torch.randint(len(shard), (model.k, batch), generator=draw)]
            idx = pool.gather(1, pick).to(device)
            p, f = past[idx], future[idx]
            loss, parts = _loss(
                model, p, f, cfg, cv_cols, jepa_steps, target_encoder, draw, weights
            )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            distributed.all_reduce_grads(model.parameters())
            torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
            _step(opt, model, cfg.linear_lr)
            if target_encoder is not None:
                ema_update(target_encoder, model.encoder, cfg.ema_decay)
            losses.append(parts)
            step += 1
        val_err = (
            validation_error(model, val, cv_cols, clocks) if len(val) else float(np.mean(losses))
        )
        val_err = distributed.broadcast_float(val_err, device)
        seconds = elapsed()
        if not math.isfinite(val_err):
            raise FloatingPointError(f"training diverged at epoch {epoch} (validation {val_err})")
        if val_err < best[0]:
            best = (val_err, epoch)
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        mean_parts = np.mean(losses, axis=0)
        done = max(epoch / cfg.max_epochs, seconds / budget)
        bar.set_description(f"train epoch {epoch}")
        bar.set_postfix_str(
            f"loss {mean_parts[0]:.4f} jepa {mean_parts[1]:.3f} val NRMSE {val_err:.4f} "
            f"(best {best[0]:.4f})"
        )
        bar.update(min(100, round(100 * done)) - bar.n)
        log.debug("epoch %d: loss parts %s, val %.5f", epoch, mean_parts, val_err)
        smooth = (
            val_err
            if smooth == math.inf
            else cfg.smoothing * smooth + (1 - cfg.smoothing) * val_err
        )
        if smooth < 0.995 * best_smooth[0]:
            best_smooth = (smooth, step)
        if cfg.stop == "patience" and epoch - best[1] >= cfg.patience:
            stopped = "patience"
            reason = f"no better validation NRMSE in {cfg.patience} epochs"
            break
        if cfg.stop == "smoothed" and step - best_smooth[1] >= cfg.patience_steps:
            stopped = "smoothed"
            reason = (
                f"the smoothed validation NRMSE ({smooth:.4f}) has not improved by 0.5 % in "
                f"{step - best_smooth[1]} steps (best {best_smooth[0]:.4f} at step {best_smooth[1]})"
            )
            break
        if seconds >= budget:
            stopped = "minutes"
            reason = f"the budget of {cfg.minutes:g} min is spent"
            break
    else:
        reason = f"max_epochs ({cfg.max_epochs}) reached"
    reason = f"{reason}; kept epoch {best[1]} (validation NRMSE {best[0]:.4f})"
    bar.set_postfix_str(f"stopped: {reason}")
    bar.close()
    model.load_state_dict(best_state)
    model.eval()
    seconds = time.perf_counter() - t0
    log.info(
        "trained %d members: %d epochs, %d steps, %.1f s; stopped: %s",
        model.k,
        epoch,
        step,
        seconds,
        reason,
    )
    return TrainResult(epoch, step, seconds, best[0], best[1], stopped, reason)


def _shard(n: int, world: int, rank: int, seed: int) -> Tensor:
    """This rank's share of a shuffle of ``range(n)`` (``DistributedSampler``'s split).

    Every rank shuffles with the same seed, pads to a multiple of ``world`` by repeating the
    start, and takes every ``world``-th index from its rank on: the shares are disjoint (but for
    the padding) and together cover every window.
    """
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    size = math.ceil(n / world) * world
    order = order.repeat(math.ceil(size / n))[:size]
    return order[rank::world]


def _step(opt: torch.optim.Optimizer, model: LatentDynamics, linear_lr: float) -> None:
    """One optimiser step; the linear path moves ``linear_lr`` times as far as the rest.

    Adam's step does not scale with the gradient, so the fraction is applied to the step
    itself: the linear weights are put back ``1 - linear_lr`` of the way to where they were.
    """
    if linear_lr >= 1.0:
        opt.step()
        return
    with torch.no_grad():
        before = [p.clone() for p in model.linear_parts()]
    opt.step()
    with torch.no_grad():
        for p, old in zip(model.linear_parts(), before, strict=True):
            p.lerp_(old, 1.0 - linear_lr)


def validation_error(
    model: Forecaster, val: Windows, cv_cols: list[int], clocks: Sequence[int] = ()
) -> float:
    """NRMSE of the ensemble mean over CVs and every step, on at most 2,000 windows."""
    take = np.linspace(0, len(val) - 1, min(len(val), 2000)).astype(int)
    errors = window_errors(model, val.past[take], val.future[take], cv_cols, clocks)
    return float(np.sqrt(errors.mean()))


def window_errors(
    model: Forecaster,
    past: np.ndarray,
    future: np.ndarray,
    cv_cols: list[int],
    clocks: Sequence[int] = (),
) -> np.ndarray:
    """Mean squared error ``[N]`` of the ensemble mean over CVs and steps, per window."""
    mean, _ = predict(model, past, future, clocks=clocks)
    return np.asarray(((mean - future)[..., cv_cols] ** 2).mean(axis=(1, 2)), dtype=float)


def _step_weights(train: Windows, cv_cols: list[int]) -> Tensor:
    """``[H, n_cv]`` weights ``1 / persistence MSE``, mean 1: every step and CV counts alike."""
    err = (train.future[..., cv_cols] - train.past[:, -1:, cv_cols]) ** 2
    mse = err.mean(axis=0) + 1e-4
    w = 1.0 / mse
    return torch.as_tensor(w / w.mean(), dtype=torch.float32)


def _loss(
    model: LatentDynamics,
    past: Tensor,
    future: Tensor,
    cfg: TwinConfig,
    cv_cols: list[int],
    jepa_steps: list[int],
    target_encoder: torch.nn.Module | None,
    gen: torch.Generator,
    weights: Tensor | None = None,
) -> tuple[Tensor, list[float]]:
    roll = model.rollout(past, future)
    sq = (roll.y[..., cv_cols] - future[..., cv_cols]) ** 2
    readout = (sq * weights).mean() if weights is not None else sq.mean()
    readout = readout + 0.1 * ((roll.y0 - past[..., -1, :]) ** 2).mean()
    loss = cfg.w_readout * readout
    jepa = torch.zeros((), device=past.device)
    if cfg.w_jepa > 0:
        if cfg.target == "none":
            target = jepa_targets(model.encoder, past, future, jepa_steps, cfg.window)
        else:
            with torch.no_grad():
                enc = target_encoder if target_encoder is not None else model.encoder
                target = jepa_targets(enc, past, future, jepa_steps, cfg.window)
        jepa = ((roll.z[..., jepa_steps, :] - target) ** 2).mean()
        loss = loss + cfg.w_jepa * jepa
    reg = torch.zeros((), device=past.device)
    if cfg.w_reg > 0 and cfg.anti_collapse != "none":
        reg = vicreg(roll.z0) if cfg.anti_collapse == "vicreg" else sigreg(roll.z0, gen)
        loss = loss + cfg.w_reg * reg
    return loss, [float(readout.detach()), float(jepa.detach()), float(reg.detach())]


def paired_t(before: np.ndarray, after: np.ndarray, block: int) -> float:
    """How many standard errors ``after``'s errors lie below ``before``'s (0 if undecidable).

    The windows overlap (a window and the next ``block`` share samples), so the differences
    are averaged in consecutive blocks of ``block`` windows and the t statistic is taken over
    the block means: positive when ``after`` is better.
    """
    d = np.asarray(before, dtype=float) - np.asarray(after, dtype=float)
    n = len(d) // max(block, 1)
    if n < 3:
        return 0.0
    blocks = d[: n * block].reshape(n, -1).mean(axis=1)
    sd = float(blocks.std(ddof=1))
    if sd == 0.0:
        return math.copysign(math.inf, float(blocks.mean())) if blocks.mean() else 0.0
    return float(blocks.mean() / (sd / math.sqrt(n)))
