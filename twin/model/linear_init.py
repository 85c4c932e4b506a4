"""Linear first: identify a linear model, start the twin from it, keep whichever validates best.

Before training, an ARX, a subspace (N4SID) and an ARX on increments (velocity form: an
unmeasured offset persists, as in offset-free MPC) are identified on the training split and the
one with the lowest validation NRMSE (open-loop, every step to H) whose state fits the network's
latent (:data:`MAX_LATENT`; a larger one may still be stacked) is written as an affine
state-space predictor in normalised units, inputs ``v_k = (MVs, DVs)`` at sample ``t+1+k``::

    s_0     = L vec(window) + l                    # ARX: the lags it needs; subspace: Kalman
    y_k     = C s_k + D v_k + d                    # forecast of sample t+1+k
    s_{k+1} = A s_k + B v_k + b

and embedded in every ensemble member (:func:`embed`): the latent is ``z = (s, o, 0...)`` with
``o`` the last forecast, so that the twin's readout of ``z_{k+1}`` (it has no feedthrough) is
``y_k``. The linear core gets ``z_{k+1} = M z_k + B_x x_k + b_z`` with ``M = [[A, 0], [C, 0]]``,
the encoder's linear path ``L`` (and ``o_0 = y_t``), the readout picks ``o``; the encoder MLP's
and the predictor MLP's output layers and the bias-update gain start at zero. So at
initialisation every member forecasts exactly what the linear model does; members differ only
in their (random) hidden layers and what training does to them. With ``linear_bootstrap`` each
member instead starts from its own re-estimate of the linear model (same orders) on a
moving-block bootstrap of the training rows (:func:`member_starts`): each member forecasts
exactly its own start, and the members agree where the data pin the model down and disagree off
them, so a kept linear start still has an ensemble spread for the band to scale with. After
training, the linear weights are kept only if they validate better by more than the validation
split's noise (:data:`KEEP_T` standard errors, :func:`paired_t`): the twin is never worse on
validation than the linear model it started from, and a gain within the noise does not buy a
nonlinear model.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
import torch

from twin.errors import DataQualityError
from twin.evaluate.baseline import try_fit
from twin.evaluate.linear import ARX, IntegratedARX, Subspace
from twin.model.dataset import (
    Normalizer,
    Windows,
    clock_columns,
    cv_columns,
    dv_columns,
    frame_to_array,
    mv_columns,
)
from twin.model.direct import DirectJob, DirectPart
from twin.model.linear_members import centred, resampled
from twin.model.network import LatentDynamics, TwinConfig
from twin.model.state_space import StateSpace, convert
from twin.model.train import TrainResult, paired_t, train_model, validation_error, window_errors
from twin.spec import PlantSpec

log = logging.getLogger(__name__)

MAX_LATENT = 128
"""a linear model whose state (plus one slot per CV) needs a larger latent does not start the
network (its latent, trained through, would grow with it); it may still be a stacked part"""
MAX_PART_LATENT = 256
"""a linear model whose state needs a larger latent is not embedded at all. A stacked linear part
is never trained, so its latent costs one small matrix product per step: the ARX on increments of
a plant with many inputs (13 tags: a state of 154) was left out by :data:`MAX_LATENT` where it was
the plant's best forecaster on the test"""
FULL_FIRST = False
"""member 0 starts from the full-data linear fit rather than a resample (linear_bootstrap).
Measured: no more accurate than centring the resamples, and more tags above 95 %"""
CENTRED = True
"""the resampled members' parameters are shifted so that their mean is the full-data fit's.
Measured on 7 development plants (benchmarks/results/bands/linear_bootstrap.md): the plain
resample lost 2 % NRMSE at H (5-12 % on zoo-2 and zoo-4), centred gained 1.5 %"""
KEEP_T = 2.0
"""the trained twin replaces its linear start only if its validation gain is this many standard
errors above zero (paired over blocks of windows, see :func:`paired_t`): a gain within the
noise of a short validation split is not worth a nonlinear model that may extrapolate worse"""


def identify(
    spec: PlantSpec, train: pl.DataFrame, val: pl.DataFrame, cfg: TwinConfig, norm: Normalizer
) -> tuple[StateSpace | None, dict[str, Any]]:
    """The best-validating of ARX, subspace and ARX on increments that can start the network (a
    latent of :data:`MAX_LATENT` at most) as a :class:`StateSpace`, and what was tried."""
    found, tried = _identify(spec, train, val, cfg, norm)
    return (found[0][0] if found else None), tried


Identified = list[tuple[StateSpace, ARX | Subspace]]
"""the linear models that could be embedded, each with its fit: the best-validating one that can
start the network (:data:`MAX_LATENT`) first, then the others best first"""


def _identify(
    spec: PlantSpec, train: pl.DataFrame, val: pl.DataFrame, cfg: TwinConfig, norm: Normalizer
) -> tuple[Identified, dict[str, Any]]:
    """:func:`identify`'s candidates, each with the fitted baseline it converted (for
    :func:`member_starts`), in :data:`Identified`'s order."""
    n_tags, ncv = len(spec.tags), len(cv_columns(spec))
    tried: dict[str, Any] = {}
    found: list[tuple[float, StateSpace, ARX | Subspace]] = []
    for model in (ARX(), Subspace(), IntegratedARX()):  # the baselines' order search and all
        reason = try_fit(model, spec, train, val, horizon=cfg.horizon, window=cfg.window)
        if reason is not None:
            tried[model.name] = {"skipped": reason}
            continue
        if not np.allclose(model.norm_.mean, norm.mean) or not np.allclose(
            model.norm_.scale, norm.scale
        ):  # the same data and fallback give the same normaliser; say so if they ever differ
            tried[model.name] = {"skipped": "its normalisation differs from the twin's"}
            continue
        ss = convert(model, cfg.window, n_tags)
        score = float(model.val_nrmse_)
        tried[model.name] = {"model": ss.name, "val_nrmse": round(score, 5), "state": ss.order}
        if ss.order + ncv > MAX_PART_LATENT:
            tried[model.name]["skipped"] = f"its state needs a latent over {MAX_PART_LATENT}"
            continue
        if np.isfinite(score):
            found.append((score, ss, model))
    found.sort(key=lambda f: f[0])
    first = next((i for i, f in enumerate(found) if f[1].order + ncv <= MAX_LATENT), None)
    if first is None:  # nothing can start the network: no linear first, no stack
        for *_, model in found:
            tried[model.name]["skipped"] = f"its state needs a latent over {MAX_LATENT}"
        return [], tried
    for *_, model in found[:first]:  # better on validation, too large to start
        tried[model.name]["start"] = f"not the start: its state needs a latent over {MAX_LATENT}"
    ordered = [found[first], *found[:first], *found[first + 1 :]]  # the start first
    return [(ss, model) for _, ss, model in ordered], tried


def _radius(a: np.ndarray) -> float:
    return float(np.max(np.abs(np.linalg.eigvals(a)))) if len(a) else 0.0


def member_starts(
    spec: PlantSpec,
    train: pl.DataFrame,
    model: ARX | Subspace,
    full: StateSpace,
    cfg: TwinConfig,
    norm: Normalizer,
) -> list[StateSpace]:
    """One linear start per member, each re-estimated on its own moving-block bootstrap of the
    training rows (blocks of one horizon, seeded by ``cfg.seed`` and the member's index; see
    :mod:`twin.model.linear_members`), centred on the full-data fit if :data:`CENTRED`; member 0
    keeps the full-data fit if :data:`FULL_FIRST`. A resample whose model is less stable than the
    full-data one (spectral radius above ``max(1, full's) + 1e-3``) or not finite falls back to
    the full-data fit."""
    values, ok = frame_to_array(train, spec)
    z = norm.norm(np.where(ok, values, np.nan))
    limit = max(1.0, _radius(full.a)) + 1e-3
    first = int(FULL_FIRST)
    boots = resampled(model, z, cfg.horizon, [(cfg.seed, k) for k in range(first, cfg.ensemble)])
    if CENTRED and len(boots) > 1:
        boots = centred(boots, model)
    starts = [full] if first else []
    for boot in boots:
        ss = convert(boot, cfg.window, len(spec.tags))
        finite = all(np.isfinite(x).all() for x in (ss.a, ss.b, ss.c, ss.d, ss.enc, ss.enc_bias))
        starts.append(ss if finite and _radius(ss.a) <= limit else full)
    return starts


@torch.no_grad()
def embed(net: LatentDynamics, ss: StateSpace | list[StateSpace], cv_cols: list[int]) -> None:
    """Set each member of ``net`` to forecast exactly what its state space does (module
    docstring): one ``ss`` for every member alike, or a list of one per member."""
    lat, h = net.pred_z.shape[1], net.hidden
    if net.pred_z.shape[2] != h + lat or net.encoder.skip is None:
        raise ValueError("linear_init needs linear_core=True and encoder_skip=True")
    members = ss if isinstance(ss, list) else [ss]
    if len(members) not in (1, net.pred_z.shape[0]):
        raise ValueError(f"{len(members)} state spaces for {net.pred_z.shape[0]} members")
    parts = [_weights(net, m, cv_cols) for m in members]
    stacked = {key: np.stack([p[key] for p in parts]) for key in parts[0]}

    def put(param: torch.Tensor, value: np.ndarray | float) -> None:
        v = torch.as_tensor(value, dtype=param.dtype)
        if len(members) > 1 and v.numel() == param.numel():  # one slice per member
            v = v.reshape(param.shape)
        param.copy_(v.expand_as(param))

    put(net.pred_z[..., h:], stacked["pred_z"])
    put(net.pred_in.weight[..., h:], stacked["pred_in"])
    put(net.pred_in.bias[..., h:], stacked["pred_bias"])
    put(net.pred_out.weight, 0.0)
    put(net.pred_out.bias, 0.0)
    put(net.encoder.l3.weight, 0.0)
    put(net.encoder.l3.bias, 0.0)
    put(net.encoder.skip.weight, stacked["enc"])
    put(net.encoder.skip.bias, stacked["enc_bias"])
    put(net.readout.weight, stacked["readout"])
    put(net.readout.bias, 0.0)
    if net.readout_mlp is not None:
        put(net.readout_mlp.l3.weight, 0.0)
        put(net.readout_mlp.l3.bias, 0.0)
    if net.bias_gain.requires_grad:  # learnt: 0, the state estimate already uses y_t (held at
        put(net.bias_gain, 0.0)  # 1 it changes nothing at init either: y0 reconstructs the CVs)


def _weights(net: LatentDynamics, ss: StateSpace, cv_cols: list[int]) -> dict[str, np.ndarray]:
    """One member's linear-path weights for :func:`embed`, in the parameters' layout."""
    lat = net.pred_z.shape[1]
    n, ncv, n_mv = ss.order, len(cv_cols), len(net.mv_cols)
    if n + ncv > lat:
        raise ValueError(f"the latent ({lat}) cannot hold a state of {n} and {ncv} CVs")
    m = np.zeros((lat, lat))
    m[:n, :n], m[n : n + ncv, :n] = ss.a, ss.c
    bv = np.zeros((lat, ss.b.shape[1]))
    bv[:n], bv[n : n + ncv] = ss.b, ss.d
    bx = np.zeros((lat, net.pred_in.weight.shape[1]))  # x = (u, u - u_prev, d)
    bx[:, :n_mv] = bv[:, :n_mv]
    bx[:, 2 * n_mv : 2 * n_mv + len(net.dv_cols)] = bv[:, n_mv:]
    bias = np.zeros(lat)
    bias[:n], bias[n : n + ncv] = ss.bc, ss.dc
    enc = np.zeros((net.encoder.skip.weight.shape[1], lat))  # type: ignore[union-attr]
    enc[:, :n] = ss.enc.T
    n_tags = net.readout.weight.shape[2]
    readout = np.zeros((lat, n_tags))
    for i, col in enumerate(cv_cols):
        enc[(net.window - 1) * n_tags + col, n + i] = 1.0  # o_0 = y_t: y0 reconstructs the CVs
        readout[n + i, col] = 1.0
    enc_bias = np.zeros(lat)
    enc_bias[:n] = ss.enc_bias
    return {
        "pred_z": (m - np.eye(lat)).T,
        "pred_in": bx.T,
        "pred_bias": bias,
        "enc": enc,
        "enc_bias": enc_bias,
        "readout": readout,
    }


@dataclass
class Fitted:
    """What :func:`fit_network` made."""

    model: LatentDynamics
    """the chosen network (CPU, eval mode): trained, or its linear start if that validates"""
    result: TrainResult
    cfg: TwinConfig
    """the config it was built with (its latent may have grown to hold the linear state)"""
    record: dict[str, Any] | None
    """linear first's record for ``metrics.json`` (None without linear first)"""
    identified: Identified
    """the identified linear models (for :mod:`twin.model.stack`)"""
    starts: list[StateSpace]
    """the first identified model's start per member ([]: every member started from it)"""
    rejected: LatentDynamics | None = None
    """the trained network when its linear start was kept instead"""
    direct: tuple[DirectPart | None, dict[str, Any]] | None = None
    """with ``cfg.direct``: the direct part trained beside the network, and its record"""


def fit_network(
    spec: PlantSpec,
    parts: tuple[pl.DataFrame, ...],
    norm: Normalizer,
    train: Windows,
    val: Windows,
    cfg: TwinConfig,
    device: torch.device,
    *,
    progress: bool = True,
) -> Fitted:
    """Build (linear first, if ``cfg.linear_init``), train and choose the network."""
    mv, dv, cv = mv_columns(spec), dv_columns(spec), cv_columns(spec)
    clocks = clock_columns(spec)
    t0 = time.perf_counter()
    job = None
    if cfg.direct and cfg.stack and cfg.linear_init:  # started first: it may train beside
        job = DirectJob(cfg, train, val, (cv, mv, dv), clocks)
    ss: StateSpace | None = None
    identified: Identified = []
    starts: list[StateSpace] = []
    record: dict[str, Any] | None = None
    if cfg.linear_init and not (cfg.linear_core and cfg.encoder_skip):
        log.warning("linear_init needs linear_core and encoder_skip: starting from scratch")
    elif cfg.linear_init:
        try:
            identified, tried = _identify(spec, parts[0], parts[1], cfg, norm)
        except DataQualityError as exc:  # e.g. the normaliser refuses: train from scratch
            tried = {"error": str(exc)}
        ss, fitted = identified[0] if identified else (None, None)
        record = {"candidates": tried, "model": ss.name if ss else None}
        if ss is not None and fitted is not None and cfg.linear_bootstrap and cfg.ensemble > 1:
            t1 = time.perf_counter()
            starts = member_starts(spec, parts[0], fitted, ss, cfg, norm)
            record["bootstrap_seconds"] = round(time.perf_counter() - t1, 2)
            record["bootstrap_fallbacks"] = sum(s is ss for s in starts[int(FULL_FIRST) :])
        if ss is not None and ss.order + len(cv) > cfg.latent:
            cfg = dataclasses.replace(cfg, latent=ss.order + len(cv))
            log.info("latent grown to %d to hold %s", cfg.latent, ss.name)
    model = LatentDynamics(cfg, len(spec.tags), mv, dv)
    initial, linear, budget, rejected = None, float("nan"), cfg, None
    if ss is not None and record is not None:
        embed(model, starts or ss, cv)
        initial = {k: v.detach().clone() for k, v in model.state_dict().items()}
        linear = validation_error(model, val, cv, clocks)
        record["val_nrmse_linear"] = round(linear, 5)
        spent = time.perf_counter() - t0  # identification is part of the training budget
        own = cfg.minutes * (job.network_share if job else 1.0)
        budget = dataclasses.replace(cfg, minutes=max(own - spent / 60, own / 4))
        record["identify_seconds"] = round(spent, 1)
    result = train_model(model.to(device), train, val, budget, cv, clocks=clocks, progress=progress)
    model = model.cpu()
    result_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    if initial is not None and record is not None:
        trained = validation_error(model, val, cv, clocks)
        record["val_nrmse_trained"] = round(trained, 5)
        after = window_errors(model, val.past, val.future, cv, clocks)
        model.load_state_dict(initial)
        before = window_errors(model, val.past, val.future, cv, clocks)
        t = paired_t(before, after, cfg.horizon)
        record["gain_t"] = round(t, 2)
        record["kept"] = "trained" if t > KEEP_T else "linear"
        if record["kept"] == "trained":
            model.load_state_dict(result_state)
        else:
            rejected = copy.deepcopy(model)
            rejected.load_state_dict(result_state)
        log.info(
            "linear first: %s validates %.4f, the trained twin %.4f (paired t %.1f, needs > %g): "
            "kept the %s",
            record["model"],
            linear,
            trained,
            t,
            KEEP_T,
            record["kept"],
        )
    elif record is not None:
        log.warning("linear first: no linear model identified (%s)", record["candidates"])
    direct = job.result(progress) if job else None
    return Fitted(model.eval(), result, cfg, record, identified, starts, rejected, direct)
