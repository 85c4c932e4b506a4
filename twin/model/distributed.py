"""Data-parallel training under ``torchrun``: the process group and the few collectives it needs.

    torchrun --nproc-per-node 2 -m twin train --spec cstr --historian runs/cstr --out models/cstr
    torchrun --nproc-per-node 2 --no-python twin train ...     # the console script: the same

torchrun starts N processes with ``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR`` and
``MASTER_PORT`` set; :func:`session` joins them into one process group (gloo on CPU, NCCL on
CUDA) and does nothing at all in a single process. Every rank then builds the same frame,
normaliser, splits and linear start (all deterministic), and ``train_model`` splits each
epoch's shuffled training windows between the ranks, averages the gradients (:func:`all_reduce_
grads`) and takes every stopping decision from rank 0's figures (:func:`broadcast_float`), so the
ranks' weights stay identical step for step. Only rank 0 saves and shows progress.

Gradients are all-reduced by hand, not by ``DistributedDataParallel``: the network trains
through ``rollout`` and ``jepa_targets(model.encoder, ...)``, not ``forward``, some parameters
are frozen or unused by a config (the bias gain, the EMA target), and the K members are one set
of stacked weights of about 10^5 numbers, so one flat all-reduce per step is simpler than a DDP
wrapper and costs no more than its bucketed overlap would save.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

log = logging.getLogger(__name__)


def env_world_size() -> int:
    """``WORLD_SIZE`` as torchrun sets it (1 when not started by torchrun)."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        return 1


def env_rank() -> int:
    """``RANK`` as torchrun sets it (0 when not started by torchrun)."""
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0


def active() -> bool:
    """True when a process group of more than one process is initialised."""
    return dist_available() and torch.distributed.is_initialized() and world_size() > 1


def dist_available() -> bool:
    """True when this torch build has ``torch.distributed``."""
    return torch.distributed.is_available()


def world_size() -> int:
    """Processes in the group (1 without one)."""
    if dist_available() and torch.distributed.is_initialized():
        return int(torch.distributed.get_world_size())
    return 1


def rank() -> int:
    """This process's rank in the group (0 without one)."""
    if dist_available() and torch.distributed.is_initialized():
        return int(torch.distributed.get_rank())
    return 0


@contextmanager
def session(device: str = "auto", timeout_s: float = 1800.0) -> Iterator[int]:
    """Join torchrun's process group for the block when ``WORLD_SIZE > 1``; yields the rank.

    A single process (no torchrun, or ``--nproc-per-node 1``) initialises nothing. On CUDA each
    rank takes the GPU ``LOCAL_RANK`` and the backend is NCCL; on CPU it is gloo.
    """
    if env_world_size() <= 1 or (dist_available() and torch.distributed.is_initialized()):
        yield rank()
        return
    if not dist_available():
        raise RuntimeError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    backend = "nccl" if cuda else "gloo"
    torch.distributed.init_process_group(backend, timeout=dt.timedelta(seconds=timeout_s))
    log.info(
        "rank %d of %d joined the process group (%s, %s:%s)",
        rank(),
        world_size(),
        backend,
        os.environ.get("MASTER_ADDR"),
        os.environ.get("MASTER_PORT"),
    )
    try:
        yield rank()
    finally:
        torch.distributed.destroy_process_group()


def broadcast_float(value: float, device: torch.device) -> float:
    """Rank 0's ``value`` on every rank (the value itself without a group)."""
    if not active():
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    torch.distributed.broadcast(t, src=0)
    return float(t.item())


@torch.no_grad()
def broadcast_module(module: nn.Module) -> None:
    """Every rank takes rank 0's parameters and buffers (as DDP does when it wraps a model)."""
    if not active():
        return
    for t in [*module.parameters(), *module.buffers()]:
        torch.distributed.broadcast(t.data, src=0)


@torch.no_grad()
def all_reduce_grads(params: Iterable[nn.Parameter]) -> None:
    """Replace each gradient by its mean over the ranks: one flat all-reduce."""
    if not active():
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    torch.distributed.all_reduce(flat)
    flat /= world_size()
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


def check_same(what: str, value: object) -> None:
    """Raise on every rank if ``value`` (plain data) differs between the ranks."""
    if not active():
        return
    values: list[object] = [None] * world_size()
    torch.distributed.all_gather_object(values, value)
    if any(v != values[0] for v in values):
        raise RuntimeError(
            f"the ranks built different {what}: {values}; every rank must read the same data"
        )
