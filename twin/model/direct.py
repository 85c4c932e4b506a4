"""A direct multi-step forecaster: a GRU over the past window and an MLP that outputs every step
of the horizon from the plan at once. It is the ``gru`` baseline of ``twin evaluate``
(:class:`twin.evaluate.gru.DirectGRU`) and, with ``TwinConfig.direct``, a part of the twin's
stack (:class:`DirectPart`, :mod:`twin.model.stack`).

Why a part of a different structure: on the development plants with 7 days of history the
direct GRU, trained from scratch, forecasts better than the twin at the horizon on the plants
whose nonlinearity the twin's residual network on its linear core did not learn (cstr,
quadtank, fedbatch), while the linear parts are better at short steps; the stack's per-step
weights take each where it validates better. It forecasts the CVs' change from their last
value, so it is differentiable in the MV plan like every part, and it is one member: the
stack's spread is its other parts'.

The network trains on one thread (more cost more than they gave on 2 cores), so on a 2-core
machine one core sat idle during training. :class:`DirectJob` trains the part there, in a
process of its own (``multiprocessing``'s spawn: torch is not fork-safe once used), for the
whole budget; only the weights come back. Its output layer sees the whole plan at once, so
nothing stops a step from depending on a later move; trained on excitation that is independent
of the past, such a dependence is noise, and the stack gives the part little weight at the early
steps where it would matter.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import os
import time
import weakref
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm import tqdm

from twin.model import distributed
from twin.model.dataset import Windows
from twin.model.network import LatentDynamics, Rollout, TwinConfig
from twin.model.train import BAR, predict

log = logging.getLogger(__name__)


class DirectNet(nn.Module):
    """GRU over the past window, then an MLP that outputs all H CV steps from the plan
    (:func:`plan_inputs`: each MV, its move and each DV per step)."""

    def __init__(
        self, n_tags: int, n_mv: int, n_dv: int, n_cv: int, horizon: int, hidden: int
    ) -> None:
        super().__init__()
        n_in = 2 * n_mv + n_dv
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
        self.hidden = hidden

    def forward(self, past: Tensor, inputs: Tensor, last_cv: Tensor) -> Tensor:
        _, h = self.gru(past)
        out = self.head(torch.cat([h[-1], inputs.flatten(1)], dim=1))
        return last_cv.unsqueeze(1) + out.view(-1, *self.shape)


def plan_inputs(past: Tensor, future: Tensor, mv: list[int], dv: list[int]) -> Tensor:
    """``[B, H, 2 n_mv + n_dv]``: the planned MVs, their moves and the DVs (normalised)."""
    u = future[..., mv]
    u_prev = torch.cat([past[:, -1:, mv], u[:, :-1]], dim=1)
    return torch.cat([u, u - u_prev, future[..., dv]], dim=-1)


def sized(n_params: int, make: Callable[[int], DirectNet]) -> DirectNet:
    """The net ``make(hidden)`` whose parameter count is nearest ``n_params`` (hidden 8..256)."""
    sizes = {h: sum(p.numel() for p in make(h).parameters()) for h in range(8, 257, 4)}
    return make(min(sizes, key=lambda h: abs(sizes[h] - n_params)))


def train_direct(
    net: DirectNet,
    past: Tensor,
    future: Tensor,
    cols: tuple[list[int], list[int], list[int]],
    val_score: Callable[[], float],
    *,
    minutes: float,
    max_epochs: int = 200,
    patience: int = 20,
    batch: int = 128,
    lr: float = 3e-3,
    seed: int = 0,
    progress: bool = False,
) -> tuple[float, int, str]:
    """Train ``net`` on normalised windows ``past``/``future`` (``cols``: CV, MV, DV columns):
    AdamW, a cosine learning rate over ``minutes`` or ``max_epochs``, MSE on the CVs at all
    steps; stops ``patience`` epochs after the best ``val_score()`` and keeps those weights.
    Returns ``(best validation score, epochs, why it stopped)``; ``progress``: a bar."""
    cv, mv, dv = cols
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    steps = max(1, math.ceil(len(past) / batch))
    budget, t0 = minutes * 60.0, time.perf_counter()
    best, best_epoch, best_state = math.inf, 0, dict(net.state_dict())
    epoch, stopped = 0, f"max_epochs ({max_epochs}) reached"
    bar = tqdm(total=100, desc="direct part", disable=not progress, leave=False, bar_format=BAR)
    for epoch in range(1, max_epochs + 1):
        net.train()
        loss = torch.zeros(())
        for s in range(steps):
            frac = max((epoch - 1 + s / steps) / max_epochs, (time.perf_counter() - t0) / budget)
            if frac >= 1.0 and s > 0:
                break  # the budget is spent: validate this part-epoch and stop
            for group in opt.param_groups:
                group["lr"] = lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0))))
            idx = torch.randint(len(past), (batch,), generator=gen)
            p, f = past[idx], future[idx]
            pred = net(p, plan_inputs(p, f, mv, dv), p[:, -1, cv])
            loss = ((pred - f[..., cv]) ** 2).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(net.parameters(), 10.0)
            opt.step()
        net.eval()
        score = val_score()
        score = float(loss) if math.isnan(score) else score
        if score < best:
            best, best_epoch = score, epoch
            best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        seconds = time.perf_counter() - t0
        bar.n = min(100, round(100 * max(epoch / max_epochs, seconds / budget)))
        bar.set_postfix_str(f"epoch {epoch}, validation NRMSE {score:.4f} (best {best:.4f})")
        if epoch - best_epoch >= patience:
            stopped = f"no better validation NRMSE in {patience} epochs"
            break
        if seconds >= budget:
            stopped = f"the budget of {minutes:.2g} min is spent"
            break
    bar.close()
    net.load_state_dict(best_state)
    net.eval()
    return best, epoch, f"{stopped}; kept epoch {best_epoch}"


class DirectPart(nn.Module):
    """A :class:`DirectNet` as a stack part: one member, every tag of the rollout (CVs its
    forecast, MVs and DVs the inputs, the rest held); no latent of its own."""

    def __init__(self, net: DirectNet, n_tags: int, mv: list[int], dv: list[int]) -> None:
        super().__init__()
        self.net = net
        self.mv_cols, self.dv_cols = list(mv), list(dv)
        self.cv_cols = [c for c in range(n_tags) if c not in set(mv) | set(dv)]
        self.k, self.horizon = 1, net.shape[0]

    def rollout(self, past: Tensor, future_inputs: Tensor) -> Rollout:
        """``y [1, B, H', n_tags]`` (``[K, B, ...]`` for K-member inputs, each its own)."""
        if past.dim() != future_inputs.dim():  # one side per member, the other shared
            k = (past if past.dim() == 4 else future_inputs).shape[0]
            past, future_inputs = (
                t if t.dim() == 4 else t.unsqueeze(0).expand(k, -1, -1, -1)
                for t in (past, future_inputs)
            )
        lead = past.shape[:-3] or (1,)
        p = past.reshape(-1, *past.shape[-2:])
        f = future_inputs.reshape(-1, *future_inputs.shape[-2:])
        steps = f.shape[1]
        if steps < self.horizon:  # the plan's last move held to the trained horizon
            f = torch.cat([f, f[:, -1:].expand(-1, self.horizon - steps, -1)], dim=1)
        cv = self.net(p, plan_inputs(p, f, self.mv_cols, self.dv_cols), p[:, -1, self.cv_cols])
        y = p[:, -1:].expand(-1, steps, -1).clone()
        y[..., self.mv_cols] = f[:, :steps, self.mv_cols]
        y[..., self.dv_cols] = f[:, :steps, self.dv_cols]
        y[..., self.cv_cols] = cv[:, :steps]
        y = y.reshape(*lead, -1, *y.shape[1:])
        none = y.new_zeros(*y.shape[:-1], 0)
        return Rollout(y=y, z=none, z0=none[..., 0, :], y0=y[..., 0, :])


def new_part(n_tags: int, mv: list[int], dv: list[int], horizon: int, hidden: int) -> DirectPart:
    """An untrained :class:`DirectPart` of hidden width ``hidden`` (the other tags are CVs)."""
    n_cv = n_tags - len(mv) - len(dv)
    return DirectPart(DirectNet(n_tags, len(mv), len(dv), n_cv, horizon, hidden), n_tags, mv, dv)


def fit_part(
    cfg: TwinConfig,
    train: Windows,
    val: Windows,
    cols: tuple[list[int], list[int], list[int]],
    clocks: list[int],
    n_params: int,
    minutes: float,
    progress: bool = False,
) -> tuple[DirectPart, dict[str, Any]]:
    """A :class:`DirectPart` of about ``n_params`` numbers trained for ``minutes`` on the
    training windows, stopped on the validation windows' NRMSE over CVs and steps, with the DVs
    held as in a live forecast (clocks counted on); and a record of its training for
    ``metrics.json``. The global torch generator is left as it was."""
    cv, mv, dv = cols
    n_tags = train.past.shape[-1]
    with torch.random.fork_rng():
        torch.manual_seed(cfg.seed)
        net = sized(
            n_params, lambda h: DirectNet(n_tags, len(mv), len(dv), len(cv), cfg.horizon, h)
        )
    part = DirectPart(net, n_tags, mv, dv)

    def score() -> float:
        mean, _ = predict(part, val.past, val.future, clocks=clocks)
        return float(np.sqrt(np.mean((mean[..., cv] - val.future[..., cv]) ** 2)))

    t0 = time.perf_counter()
    best, epochs, stopped = train_direct(
        net,
        torch.as_tensor(train.past),
        torch.as_tensor(train.future),
        cols,
        score,
        minutes=minutes,
        max_epochs=cfg.max_epochs,
        seed=cfg.seed,
        progress=progress,
    )
    record = {
        "hidden": net.hidden,
        "parameters": sum(p.numel() for p in net.parameters()),
        "epochs": epochs,
        "seconds": round(time.perf_counter() - t0, 1),
        "stopped": stopped,
        "val_nrmse": round(best, 5),
    }
    return part.eval(), record


def beside(cfg: TwinConfig) -> bool:
    """Whether a direct part trains in a second process beside the network: the machine has a
    core to spare (the network trains on one thread, in one process)."""
    return (os.cpu_count() or 1) >= 2 and cfg.threads == 1 and distributed.world_size() == 1


def _job(args: tuple[Any, ...], send: Any) -> None:
    """:func:`fit_part` in the second process; the weights go back as arrays, or the error."""
    torch.set_num_threads(1)
    try:
        part, record = fit_part(*args)
        send.send(("ok", ({k: v.numpy() for k, v in part.state_dict().items()}, record)))
    except BaseException as exc:  # told to the parent, which stacks without the part
        send.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        send.close()


def _stop(proc: Any, recv: Any) -> None:
    """End the second process and release its pipe: one that answered is let exit, one that
    still trains (its twin's training was abandoned) is terminated."""
    proc.join(timeout=2.0)
    if proc.is_alive():
        proc.terminate()
        proc.join()
    recv.close()


class DirectJob:
    """A direct part in training, started before the network (``TwinConfig.direct``).

    On a machine with a core to spare (:func:`beside`) it trains in a second process for the
    whole budget while the network trains in this one, so it costs no wall-clock time; otherwise
    it trains here, after the network, for half the budget (the network gets the other half:
    :attr:`network_share`). Sized like the network (its parameter count at ``cfg``)."""

    def __init__(
        self,
        cfg: TwinConfig,
        train: Windows,
        val: Windows,
        cols: tuple[list[int], list[int], list[int]],
        clocks: list[int],
    ) -> None:
        _, mv, dv = cols
        n_tags = train.past.shape[-1]
        with torch.random.fork_rng():  # the network's initialisation is not moved
            size = sum(p.numel() for p in LatentDynamics(cfg, n_tags, mv, dv).parameters())
        self.parallel = beside(cfg)
        self.network_share = 1.0 if self.parallel else 0.5
        minutes = cfg.minutes if self.parallel else cfg.minutes * (1.0 - self.network_share)
        self.args = (cfg, train, val, cols, clocks, size, minutes)
        self.process: Any = None
        if self.parallel:
            ctx = multiprocessing.get_context("spawn")
            self._recv, send = ctx.Pipe(duplex=False)
            self.process = ctx.Process(target=_job, args=(self.args, send), daemon=True)
            self.process.start()
            send.close()  # the child holds the only sending end: its death is seen at once
            self._end = weakref.finalize(self, _stop, self.process, self._recv)

    def _wait(self, seconds: float) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """The second process's weights and record; raises if it failed, died or overran."""
        if not self._recv.poll(seconds):
            raise TimeoutError(f"no answer within {seconds:.0f} s")
        try:
            status, payload = self._recv.recv()
        except EOFError:  # the process ended without a word: killed, out of memory, crashed
            self.process.join(5.0)
            raise RuntimeError(
                f"the second process ended with exit code {self.process.exitcode}"
            ) from None
        if status != "ok":
            raise RuntimeError(payload)
        return payload

    def result(self, progress: bool = False) -> tuple[DirectPart | None, dict[str, Any]]:
        """The trained part and its record (``None`` and the error if its process failed)."""
        if self.process is None:
            part, record = fit_part(*self.args, progress=progress)
            return part, record | {"process": "after the network"}
        cfg, train, _, (_, mv, dv), _, _, minutes = self.args
        try:
            state, record = self._wait(minutes * 60.0 + 300.0)
        except Exception as exc:  # a failed second process costs the part, not the twin
            log.warning("the direct part's training failed (%s): stacked without it", exc)
            return None, {"error": f"{type(exc).__name__}: {exc}"}
        finally:
            self._end()
        part = new_part(train.past.shape[-1], mv, dv, cfg.horizon, int(record["hidden"]))
        part.load_state_dict({k: torch.as_tensor(v) for k, v in state.items()})
        log.info("direct part: %s", record)
        return part.eval(), record | {"process": "beside the network"}
