"""Per-step stacking: the twin's forecast as a validated combination of its network and the
linear models it was identified with (issue 12).

Linear first (:mod:`twin.model.linear_init`) starts the twin from the best-validating of an
ARX, a subspace model and an ARX on increments, and keeps the trained network only where it
validates better as a whole. On plants it was not shaped on that left the twin a few per cent
behind whichever linear model happened to be better at a given step on the test (another linear
model, or the start at short steps where the trained network was better at long ones).

Here every identified linear model becomes a *part* beside the kept network: a small
:class:`~twin.model.network.LatentDynamics` (one hidden unit, its MLPs at zero) that forecasts
exactly what the linear model does, member by member (each member its own bootstrap start, as
in linear first). A part is never trained, so it may hold a larger state than the network's
start (:data:`~twin.model.linear_init.MAX_PART_LATENT` against ``MAX_LATENT``). Where linear
first kept its start, the trained network it set aside is a part too: its gain on validation
was within the noise as a whole, but it may be the better model at some steps and CVs, and the
weights find out where. The twin's forecast of CV ``c`` at step ``k`` is
``sum_m w[m, k, c] y_m`` with the weights on the simplex (non-negative, summing to one),
fitted by least squares on the validation windows and on a copy of them moved by an
unmeasured offset (:data:`OFFSET`; :func:`fit_weights`, scipy's NNLS) and smoothed over
neighbouring steps. Member ``j`` of the stack is the same combination of the parts' members
``j``, so the ensemble spread, and the band calibrated on it afterwards, is that of the
combination. Parts whose weight stays below :data:`WEIGHT_FLOOR` everywhere are dropped;
with none left the network is returned as it was. Every part is differentiable in the MV plan,
so the controller plans on the combination as it would on one network. With
``TwinConfig.direct`` a direct multi-step GRU (:mod:`twin.model.direct`), trained beside the
network, is one more part, always the last. Persistence is
deliberately not a part: it would say that moving an MV changes nothing, and a controller
planning on a shrunken gain over-moves.

The weights are fitted on the same validation windows that the twin's reported validation
metrics use, so those metrics flatter the stack slightly; the benchmarks score on later data.
Measured (``benchmarks/results/stack-dev``, chosen there; ``generalise-stack`` against
``generalise-nostack``, held-out, reported only): on 26 held-out plants 0.94 / 0.97 / 0.98 /
0.98 of the NRMSE at k = 1 / 5 / 10 / H. Where it loses (up to +12 % at H), the set-aside
network validated better and extrapolated worse under the test's stronger disturbances.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any, cast

import numpy as np
import polars as pl
import torch
from scipy.optimize import nnls
from torch import Tensor, nn

from twin.model.calibration import stretches_of
from twin.model.dataset import (
    Normalizer,
    Windows,
    clock_columns,
    cv_columns,
    dv_columns,
    mv_columns,
)
from twin.model.direct import DirectPart, new_part
from twin.model.linear_init import Fitted, embed, member_starts
from twin.model.network import LatentDynamics, Rollout, TwinConfig
from twin.model.state_space import StateSpace
from twin.model.train import predict, validation_error
from twin.spec import PlantSpec

log = logging.getLogger(__name__)

WEIGHT_FLOOR = 0.02
"""a part (after the first) whose weight stays below this at every step and CV is dropped"""
SMOOTH = 5
"""steps in the moving average of each part's weights (noise of one step's fit)"""
MAX_WINDOWS = 4000
"""validation windows the weights are fitted on (evenly spaced), at most"""
OFFSET = 1.0
"""the weights are fitted on the validation windows as recorded and on a copy with every CV moved
by +-OFFSET (normalised units: training standard deviations; the sign drawn per window and CV)
in past and future alike: an unmeasured disturbance that has moved the plant to a level its
training data never had. A part that forecasts from the measurement (ARX on increments) loses
nothing on the copy, one that pulls back to the training level does; calm validation data
cannot tell them apart, a plant that drifts can (:func:`offset_copy`). 0: the recorded windows
only. Chosen on the development plants (``benchmarks/stack_study.py``)"""
OFFSET_STRETCHES = 2.0
"""the offset copy is a prior: it holds the windows of this many independent stretches of the
horizon at most (evenly spaced, :func:`copy_size`), so it weighs as much as a short validation
split and little beside a long one, whose own evidence then decides"""


class Stacked(nn.Module):
    """Parts (the kept network first, then linear models) combined per step and tag."""

    weights: Tensor
    """``[M, H, n_tags]`` each part's weight per step and tag (a buffer: saved, not trained)"""

    def __init__(self, parts: list[Part | DirectPart], weights: Tensor) -> None:
        super().__init__()
        first = parts[0]
        if weights.shape[:2] != (len(parts), first.horizon):
            raise ValueError(f"weights {tuple(weights.shape)} for {len(parts)} parts")
        self.parts = nn.ModuleList(parts)
        self.register_buffer("weights", weights.to(torch.float32))
        self.mv_cols, self.dv_cols = first.mv_cols, first.dv_cols

    def encode(self, past: Tensor) -> Tensor:
        """The first part's embedding (the latent the other parts' forecasts are blended into)."""
        return cast(LatentDynamics, self.parts[0]).encode(past)

    def rollout(self, past: Tensor, future_inputs: Tensor) -> Rollout:
        """The parts' rollouts combined: ``y`` is the weighted sum, the latents the first's."""
        outs = [cast(LatentDynamics, part).rollout(past, future_inputs) for part in self.parts]
        w = self.weights[:, : future_inputs.shape[-2]]
        y = outs[0].y * w[0]
        for m in range(1, len(outs)):
            y = y + outs[m].y * w[m]
        return dataclasses.replace(outs[0], y=y)


class FullMean(nn.Module):
    """A linear model whose members are its bootstrap re-estimates and whose ensemble mean is
    the full-data fit's forecast (``TwinConfig.linear_mean = "full"``): member ``j`` forecasts
    ``y_full + y_j - mean_i y_i``. The spread, which the band scales with, is the resamples';
    the mean, which the controller plans on, is not shifted by averaging them (their parameters
    are centred on the full fit, their forecasts, nonlinear in the parameters, are not)."""

    def __init__(self, members: LatentDynamics, full: LatentDynamics) -> None:
        super().__init__()
        if full.k != 1:
            raise ValueError(f"the full-data fit is one member, got {full.k}")
        self.members, self.full = members, full
        self.mv_cols, self.dv_cols = members.mv_cols, members.dv_cols
        self.k, self.horizon = members.k, members.horizon

    def encode(self, past: Tensor) -> Tensor:
        """The members' embedding."""
        return self.members.encode(past)

    def rollout(self, past: Tensor, future_inputs: Tensor) -> Rollout:
        """The members' rollout with the full fit's forecast as their mean."""
        out = self.members.rollout(past, future_inputs)
        y = out.y - out.y.mean(0, keepdim=True) + self.full.rollout(past, future_inputs).y
        return dataclasses.replace(out, y=y)


Part = LatentDynamics | FullMean
"""one part of a stack that may come first (a direct part never does)"""


def part_config(cfg: TwinConfig, latent: int, hidden: int = 1) -> TwinConfig:
    """The config of a stacked part: the twin's, with the part's latent and hidden width (a
    linear part has one hidden unit and no readout MLP: its MLPs are held at zero)."""
    return dataclasses.replace(
        cfg,
        hidden=hidden,
        latent=latent,
        readout_hidden=cfg.readout_hidden if hidden > 1 else 0,
        stack_latents=(),
        stack_hidden=(),
        stack_full_mean=(),
    )


def _full_mean(
    members: LatentDynamics, cfg: TwinConfig, full: StateSpace | None, cv: list[int]
) -> FullMean:
    """``members`` wrapped with a one-member network, set to ``full`` if given (else untrained,
    for loading saved weights)."""
    n_tags = int(members.readout.weight.shape[2])
    one = LatentDynamics(
        dataclasses.replace(cfg, ensemble=1), n_tags, members.mv_cols, members.dv_cols
    )
    if full is not None:
        embed(one, full, cv)
    return FullMean(members, one.eval()).eval()


def _part(cfg: TwinConfig, n_tags: int, mv: list[int], dv: list[int], full_mean: bool) -> Part:
    net = LatentDynamics(cfg, n_tags, mv, dv)
    return _full_mean(net, cfg, None, []) if full_mean else net


def linear_part(
    cfg: TwinConfig,
    starts: list[StateSpace],
    full: StateSpace,
    cv: list[int],
    n_tags: int,
    mv: list[int],
    dv: list[int],
) -> Part:
    """A part that forecasts exactly what linear model ``full`` does, member ``j`` from
    ``starts[j]`` (one start: every member alike); a :class:`FullMean` where there are several
    and ``cfg.linear_mean`` is 'full'."""
    net = LatentDynamics(cfg, n_tags, mv, dv)
    embed(net, starts, cv)
    if len(starts) > 1 and cfg.linear_mean == "full":
        return _full_mean(net, cfg, full, cv)
    return net.eval()


def build_model(cfg: TwinConfig, n_tags: int, mv: list[int], dv: list[int]) -> Part | Stacked:
    """An untrained model of the shape ``cfg`` describes (for loading saved weights)."""
    wrapped = cfg.stack_full_mean or (False,) * (1 + len(cfg.stack_latents))
    net = _part(cfg, n_tags, mv, dv, wrapped[0])
    if not cfg.stack_latents and not cfg.stack_direct:
        return net
    parts: list[Part | DirectPart] = [
        net,
        *(
            _part(part_config(cfg, n, h), n_tags, mv, dv, w)
            for n, h, w in zip(cfg.stack_latents, cfg.stack_hidden, wrapped[1:], strict=True)
        ),
    ]
    if cfg.stack_direct:  # the direct part is the last
        parts.append(new_part(n_tags, mv, dv, cfg.horizon, cfg.stack_direct))
    return Stacked(parts, torch.zeros(len(parts), cfg.horizon, n_tags))


def fit_weights(means: list[np.ndarray], future: np.ndarray, cols: list[int]) -> np.ndarray:
    """Simplex weights ``[M, H, n_tags]`` minimising the squared error of ``sum_m w_m means_m``
    per step and column of ``cols`` (other columns: all weight on the first part).

    NNLS with a heavily weighted row ``sum w = 1`` appended (the usual way to put an equality
    into NNLS), then normalised exactly; then a centred moving average over :data:`SMOOTH`
    steps, which keeps them on the simplex.
    """
    m, (n, h, n_tags) = len(means), future.shape
    w = np.zeros((m, h, n_tags))
    w[0] = 1.0
    big = 1e3 * np.sqrt(n)
    for c in cols:
        for k in range(h):
            x = np.stack([p[:, k, c] for p in means], axis=1)
            a = np.vstack([x, np.full((1, m), big)])
            b = np.append(future[:, k, c], big)
            sol = nnls(a, b)[0]
            w[:, k, c] = sol / sol.sum() if sol.sum() > 0 else np.eye(m)[0]
    # the mean over the steps within SMOOTH // 2 of each step (fewer at the ends)
    steps = np.arange(h)
    lo, hi = np.maximum(steps - SMOOTH // 2, 0), np.minimum(steps + SMOOTH // 2 + 1, h)
    total = np.concatenate([np.zeros((m, 1, n_tags)), np.cumsum(w, axis=1)], axis=1)
    return (total[:, hi] - total[:, lo]) / (hi - lo)[None, :, None]


def offset_copy(
    past: np.ndarray,
    future: np.ndarray,
    cv: list[int],
    offset: float,
    seed: int,
    size: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``(past, future)`` with every CV moved by ``+-offset`` (one sign per window and CV) in
    both: the windows as an unmeasured output disturbance would have left them (:data:`OFFSET`);
    ``size``: that many of them, evenly spaced (:func:`copy_size`; None: every one)."""
    if size is not None:
        take = np.linspace(0, len(past) - 1, size).astype(int)
        past, future = past[take], future[take]
    rng = np.random.default_rng([seed, 7])
    delta = offset * rng.choice([-1.0, 1.0], size=(len(past), 1, len(cv)))
    past, future = past.copy(), future.copy()
    past[..., cv] += delta
    future[..., cv] += delta
    return past, future


def copy_size(windows: int, horizon: int, stretches: float = OFFSET_STRETCHES) -> int:
    """Windows in the offset copy of ``windows`` validation windows (:data:`OFFSET_STRETCHES`)."""
    return max(1, min(windows, round(windows * stretches / stretches_of(windows, horizon))))


def combine(
    fitted: Fitted, spec: PlantSpec, train: pl.DataFrame, val: Windows, norm: Normalizer
) -> tuple[Part | Stacked, TwinConfig, dict[str, Any]]:
    """The chosen network stacked with the identified linear models (module docstring), and
    with the trained network where linear first kept its start instead (that start is the first
    identified model itself, so it is not stacked twice); with ``cfg.direct``, also the direct
    GRU trained beside the network (:mod:`twin.model.direct`). Returns the model, its config
    (``stack_latents``, ``stack_hidden``, ``stack_direct`` set) and a record."""
    cfg, net = fitted.cfg, fitted.model
    kept = fitted.record["kept"] if fitted.record else "trained"
    cv, mv, dv = cv_columns(spec), mv_columns(spec), dv_columns(spec)
    clocks = clock_columns(spec)
    n_tags = len(spec.tags)
    names = ["network" if kept == "trained" else f"{fitted.identified[0][0].name} (start)"]
    first: Part = net
    if kept == "linear" and len(fitted.starts) > 1 and cfg.linear_mean == "full":
        first = _full_mean(net, cfg, fitted.identified[0][0], cv)
    parts: list[Part | DirectPart] = [first]
    if fitted.rejected is not None:
        parts.append(fitted.rejected.eval())
        names.append("network (not kept)")
    for i, (ss, model) in enumerate(fitted.identified):
        if i == 0 and kept == "linear":
            continue
        if i == 0:  # the network's linear start, as linear first made it
            starts = fitted.starts or [ss]
        elif cfg.linear_bootstrap and cfg.ensemble > 1:
            starts = member_starts(spec, train, model, ss, cfg, norm)
        else:
            starts = [ss]
        part_cfg = part_config(cfg, ss.order + len(cv))
        parts.append(linear_part(part_cfg, starts, ss, cv, n_tags, mv, dv))
        names.append(ss.name)
    record: dict[str, Any] = {"parts": names}
    if fitted.direct is not None:
        part, record["direct"] = fitted.direct
        if part is not None:
            parts.append(part)
            names.append("direct GRU")
    cfg = dataclasses.replace(cfg, stack_full_mean=(isinstance(first, FullMean),))
    if len(parts) == 1:
        return first, cfg, {**record, "used": [names[0]]}
    take = np.linspace(0, len(val) - 1, min(len(val), MAX_WINDOWS)).astype(int)
    past, future = val.past[take], val.future[take]
    means = [predict(p, past, future, clocks=clocks)[0] for p in parts]
    if OFFSET:
        size = copy_size(len(past), cfg.horizon)
        moved = offset_copy(past, future, cv, OFFSET, cfg.seed, size)
        means = [
            np.concatenate([m, predict(p, *moved, clocks=clocks)[0]])
            for m, p in zip(means, parts, strict=True)
        ]
        future = np.concatenate([future, moved[1]])
    weights = fit_weights(means, future, cv)
    used = [0, *(j for j in range(1, len(parts)) if weights[j][:, cv].max() >= WEIGHT_FLOOR)]
    if len(used) < len(parts):
        parts, names = [parts[j] for j in used], [names[j] for j in used]
        means = [means[j] for j in used]
        weights = fit_weights(means, future, cv)
    record["used"] = names
    if len(parts) == 1:
        return first, cfg, record
    stacked = Stacked(parts, torch.as_tensor(weights)).eval()
    for p in stacked.parameters():
        p.requires_grad_(False)
    direct = [p for p in parts if isinstance(p, DirectPart)]
    nets = [
        p.members if isinstance(p, FullMean) else p
        for p in parts[1:]
        if not isinstance(p, DirectPart)
    ]
    latents = tuple(int(p.pred_z.shape[1]) for p in nets)
    hidden = tuple(int(p.hidden) for p in nets)
    wrapped = tuple(isinstance(p, FullMean) for p in parts if not isinstance(p, DirectPart))
    steps = sorted({s for s in (1, 5, 10, cfg.horizon) if s <= cfg.horizon})
    record["weight"] = {
        str(s): dict(zip(names, weights[:, s - 1, cv].mean(axis=1).round(3).tolist(), strict=True))
        for s in steps
    }
    record["val_nrmse_network"] = (fitted.record or {}).get(f"val_nrmse_{kept}")
    record["val_nrmse_stacked"] = round(validation_error(stacked, val, cv, clocks), 5)
    log.info(
        "stacked %s: validation NRMSE %.4f (the %s alone %.4f)",
        " + ".join(names),
        record["val_nrmse_stacked"],
        names[0],
        record["val_nrmse_network"],
    )
    cfg = dataclasses.replace(
        cfg,
        stack_latents=latents,
        stack_hidden=hidden,
        stack_full_mean=wrapped,
        stack_direct=direct[0].net.hidden if direct else 0,
    )
    return stacked, cfg, record
