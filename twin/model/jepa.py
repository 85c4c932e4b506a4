"""The JEPA side of training: targets from the encoder, and the terms that keep the
embeddings from collapsing (VICReg, SIGReg), for :mod:`twin.model.train`."""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn
from torch.nn import functional as F


def jepa_targets(
    encoder: nn.Module, past: Tensor, future: Tensor, steps: list[int], window: int
) -> Tensor:
    """The encoder's embedding of the true window ending at sample ``t+1+k`` for each k.

    ``past [K, B, W, n]``, ``future [K, B, H, n]``; returns ``[K, B, len(steps), latent]``.
    """
    seq = torch.cat([past, future], dim=-2)
    wins = torch.stack([seq[..., k + 1 : k + 1 + window, :] for k in steps], dim=-3)
    return encoder(wins.flatten(-2))


def vicreg(z: Tensor) -> Tensor:
    """VICReg variance (std >= 1 per dimension) + covariance (decorrelation) terms; z [K, B, L]."""
    zc = z - z.mean(dim=1, keepdim=True)
    std = torch.sqrt(zc.var(dim=1) + 1e-4)
    var_term = F.relu(1.0 - std).mean()
    n, dim = z.shape[1], z.shape[2]
    cov = zc.transpose(1, 2) @ zc / max(n - 1, 1)
    off = cov - torch.diag_embed(torch.diagonal(cov, dim1=1, dim2=2))
    cov_term = (off**2).sum(dim=(1, 2)).mean() / dim
    return var_term + cov_term


def sigreg(z: Tensor, generator: torch.Generator, n_proj: int = 32, knots: int = 17) -> Tensor:
    """SIGReg (LeJEPA): Epps-Pulley test of random 1-D projections against N(0, 1); z [K, B, L]."""
    dim = z.shape[-1]
    a = torch.randn(dim, n_proj, generator=generator, device="cpu").to(z)
    a = a / a.norm(dim=0, keepdim=True)
    proj = z @ a  # [K, B, M]
    t = torch.linspace(0.0, 4.0, knots, device=z.device, dtype=z.dtype)
    xt = proj.unsqueeze(-1) * t  # [K, B, M, T]
    gauss = torch.exp(-0.5 * t**2)
    err = (torch.cos(xt).mean(1) - gauss) ** 2 + torch.sin(xt).mean(1) ** 2
    stat = torch.trapezoid(err * gauss, t, dim=-1) * z.shape[1]
    return stat.mean()


def ema_copy(module: nn.Module) -> nn.Module:
    """A frozen copy of ``module`` for an EMA target."""
    twin = copy.deepcopy(module)
    for p in twin.parameters():
        p.requires_grad_(False)
    return twin


@torch.no_grad()
def ema_update(target: nn.Module, source: nn.Module, decay: float) -> None:
    """``target <- decay * target + (1 - decay) * source``, parameter by parameter."""
    for pt, ps in zip(target.parameters(), source.parameters(), strict=True):
        pt.lerp_(ps, 1.0 - decay)
