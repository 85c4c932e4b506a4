"""Forecast accuracy of a twin against baselines on held-out history: metrics and a report.

Protocol. Every forecast origin ``t`` of the test frame whose past window and next H samples are
complete is a test case (at most ``max_origins``, evenly spaced). The twin and each baseline see
the same past window, the MV moves that really followed (the plan) and DVs held at their last
value (a clock DV counted on), and forecast H steps open loop. Scores, per CV tag and horizon step k:

- **NRMSE**: RMSE over origins divided by the standard deviation of the tag over the test frame
  (1.0 = as wrong as the tag's own spread; the mean forecast of a stationary tag scores ~1.0);
- **coverage**: the fraction of truths inside the twin's band (nominal: the twin's coverage),
  per tag at each step, over all steps and its minimum over steps; a tag is flagged when it
  strays more than ``COVERAGE_TOLERANCE`` from nominal (85-95 % for a 90 % band): the operator
  reads one tag's band, and an average over tags can hide a 59 % and a 100 % tag;
- **adaptive coverage**: the same for the band as the live loop adapts it from outcomes
  (:mod:`twin.evaluate.adaptive_replay`), counted from one horizon after the test starts;
- **band width**: the mean width of the band, in engineering units and as a fraction of the std.

Baselines that could not be fitted are listed under ``skipped`` with the reason, and the report
goes on without them. :func:`twin.evaluate.render.write_report` writes ``report.json`` (the same
dict), ``report.md`` and ``forecast.png``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import polars as pl
import torch

from twin.errors import DataQualityError
from twin.evaluate.adaptive_replay import after_one_horizon, replay
from twin.evaluate.baseline import Baseline, Persistence
from twin.evaluate.gru import DirectGRU
from twin.evaluate.linear import ARX, Subspace
from twin.model.dataset import cv_columns, frame_to_array, frame_ts, mv_columns
from twin.model.twin import Twin
from twin.spec import PlantSpec

log = logging.getLogger(__name__)

REPORT_STEPS = (1, 5, 10)
"""horizon steps reported besides H itself"""
N_EXAMPLES = 3
"""forecast origins drawn in the figure (and kept in report.json)"""
COVERAGE_TOLERANCE = 0.05
"""a tag's coverage further than this from nominal is flagged (85-95 % for a 90 % band)"""


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


def forecast_windows(
    twin: Twin, past: np.ndarray, mv_plan: np.ndarray, batch: int = 1024
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The twin's mean, lower, upper ``[N, H, n_tags]`` (eng. units), DVs as ahead, in batches.

    ``past [N, W, n_tags]`` and ``mv_plan [N, H, n_mv]`` are in engineering units.
    """
    means, halves = [], []
    with torch.no_grad():
        for lo in range(0, len(past), batch):
            p = torch.as_tensor(twin.normalizer.norm(past[lo : lo + batch]), dtype=torch.float32)
            m, hw = twin.torch_rollout(p, torch.as_tensor(mv_plan[lo : lo + batch]))
            means.append(m.double().numpy())
            halves.append(hw.double().numpy())
    mean, half = np.concatenate(means), np.concatenate(halves)
    mean[..., twin.mv_cols] = mv_plan  # exactly the plan, not a float32 round trip
    return mean, mean - half, mean + half


def effective_rank(twin: Twin, frame: pl.DataFrame, max_windows: int = 2000) -> float:
    """Effective rank of the encoder's embeddings of ``frame``'s windows (a collapse check).

    ``exp(entropy)`` of the normalised singular values of the centred embeddings (Roy and
    Vetterli 2007), averaged over ensemble members: 1 = collapsed to a line, ``latent`` = the
    embeddings use every dimension evenly.
    """
    past, _, _ = forecast_cases(frame, twin.spec, twin.window, 1, max_windows)
    with torch.no_grad():
        z = twin.model.encode(torch.as_tensor(twin.normalizer.norm(past), dtype=torch.float32))
    ranks = []
    for member in z.double().numpy():
        s = np.linalg.svd(member - member.mean(axis=0), compute_uv=False)
        p = s / s.sum() if s.sum() > 0 else np.ones(1)
        ranks.append(float(np.exp(-(p * np.log(np.where(p > 0, p, 1.0))).sum())))
    return float(np.mean(ranks))


def parameter_count(twin: Twin) -> int:
    """Trainable numbers in the twin's network, every ensemble member included."""
    return sum(p.numel() for p in twin.model.parameters())


def report_steps(horizon: int) -> list[int]:
    """The horizon steps a report shows: 1, 5, 10 and H (those within H)."""
    return sorted({s for s in REPORT_STEPS if s <= horizon} | {horizon})


def forecast_cases(
    frame: pl.DataFrame, spec: PlantSpec, window: int, horizon: int, max_origins: int = 2000
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``past [N, W, n]``, ``future [N, H, n]`` (eng. units) and origin times ``[N]``.

    Origins are every sample whose window and next ``horizon`` samples are all good, thinned
    evenly to at most ``max_origins``.
    """
    values, ok = frame_to_array(frame, spec)
    ts = frame_ts(frame)
    span = window + horizon
    need = f"window + horizon = {window} + {horizon} = {span} samples"
    if len(values) < span:
        held = f" ({ts[0]} .. {ts[-1]})" if len(ts) else ""
        raise DataQualityError(
            f"the test data of plant {spec.name!r} hold {len(values)} samples{held}, fewer than "
            f"a forecast needs: {need}; give a longer test range"
        )
    bad = np.concatenate([[0], np.cumsum(~ok.all(axis=1))])
    starts = np.flatnonzero(bad[span:] - bad[: len(values) - span + 1] == 0)
    if len(starts) == 0:
        raise DataQualityError(
            f"the test data of plant {spec.name!r} ({len(values)} samples) hold no complete "
            f"stretch of {need}: every one has a gap; nothing to evaluate"
        )
    if len(starts) > max_origins:
        starts = starts[np.linspace(0, len(starts) - 1, max_origins).astype(int)]
    idx = starts[:, None] + np.arange(span)[None, :]
    seq = values[idx]
    return seq[:, :window], seq[:, window:], ts[starts + window - 1]


def nrmse(pred: np.ndarray, truth: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """RMSE over origins per step and tag ``[H, n]``, divided by ``scale [n]``."""
    return np.sqrt(np.mean((pred - truth) ** 2, axis=0)) / scale


def evaluate(
    twin: Twin,
    frame: pl.DataFrame,
    baselines: Sequence[Baseline] = (),
    *,
    max_origins: int = 2000,
    notes: Sequence[str] = (),
    skipped: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Score ``twin`` and fitted ``baselines`` on the test ``frame``; the report as a dict.

    ``notes`` (e.g. how the baselines were fitted) are kept in the report; ``skipped`` maps the
    baselines that could not be fitted to the reason (see :func:`~twin.evaluate.baseline.try_fit`).
    """
    spec, w, h = twin.spec, twin.window, twin.horizon
    need = max([w, *(b.window_ for b in baselines)])
    past, future, origins = forecast_cases(frame, spec, need, h, max_origins)
    cv, mv = cv_columns(spec), mv_columns(spec)
    values, _ = frame_to_array(frame, spec)
    std = np.nanstd(values, axis=0)
    scale = np.where(std > 1e-12, std, np.array([t.span for t in spec.tags]))
    plan = future[..., mv]

    preds: dict[str, np.ndarray] = {}
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    mean, lower, upper = forecast_windows(twin, past[:, -w:], plan)
    seconds["twin"] = time.perf_counter() - t0
    preds["twin"] = mean
    for b in baselines:
        t0 = time.perf_counter()
        preds[b.name] = b.predict(past[:, -b.window_ :], plan)
        seconds[b.name] = time.perf_counter() - t0

    steps = report_steps(h)
    err = {name: nrmse(p[..., cv], future[..., cv], scale[cv]) for name, p in preds.items()}
    inside = (future >= lower) & (future <= upper)
    cover = inside[..., cv].mean(axis=0)  # [H, n_cv]
    centre, half = (upper + lower) / 2, (upper - lower) / 2
    adapted, _ = replay(
        tuple(spec.tag_names), twin.calibration, origins, spec.sample_period, centre, half, future
    )
    late = after_one_horizon(origins, spec.sample_period, h)
    cover_adapted = adapted[late][..., cv].mean(axis=0) if late.any() else cover * np.nan
    width = (upper - lower)[..., cv].mean(axis=0)

    def by_step(a: np.ndarray) -> dict[str, float]:
        return {str(s): round(float(a[s - 1]), 5) for s in steps}

    nominal = twin.calibration.coverage
    tags: dict[str, Any] = {}
    for j, c in enumerate(cv):
        tag = spec.tags[c]
        tags[tag.name] = {
            "unit": tag.unit,
            "std": float(scale[c]),
            "nrmse": {name: by_step(e[:, j]) for name, e in err.items()},
            "coverage": by_step(cover[:, j]),
            **tag_coverage(cover[:, j], nominal),
            "coverage_adaptive": by_step(cover_adapted[:, j]),
            "adaptive": tag_coverage(cover_adapted[:, j], nominal),
            "band_width": by_step(width[:, j]),
            "band_width_std": by_step(width[:, j] / scale[c]),
        }
    examples = _examples(spec, past[:, -w:], future, origins, lower, upper, preds)
    return {
        "plant": spec.name,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "window": w,
        "horizon": h,
        "steps": steps,
        "nominal_coverage": nominal,
        "coverage_range": [
            round(nominal - COVERAGE_TOLERANCE, 4),
            round(nominal + COVERAGE_TOLERANCE, 4),
        ],
        "sample_period_s": spec.sample_period,
        "test": {
            "start": str(frame_ts(frame)[0]) if frame.height else None,
            "end": str(frame_ts(frame)[-1]) if frame.height else None,
            "samples": frame.height,
            "origins": len(past),
        },
        "scale": "NRMSE = RMSE over forecast origins / std of the tag over the test data",
        "models": {
            "twin": {
                "describe": f"twin (K={twin.config.ensemble}, params={parameter_count(twin)})",
                "forecast_seconds": round(seconds["twin"], 3),
                "embedding_effective_rank": round(effective_rank(twin, frame), 3),
                "latent": twin.config.latent,
            },
            **{
                b.name: {
                    "describe": b.describe(),
                    "forecast_seconds": round(seconds[b.name], 3),
                    "notes": list(getattr(b, "notes_", [])),
                }
                for b in baselines
            },
        },
        "skipped": dict(skipped or {}),
        "tags": tags,
        "summary": {
            "nrmse": {name: by_step(e.mean(axis=1)) for name, e in err.items()},
            "nrmse_all_steps": {name: round(float(e.mean()), 5) for name, e in err.items()},
            "coverage": by_step(cover.mean(axis=1)),
            "coverage_all_steps": round(float(cover.mean()), 5),
            "coverage_tags_flagged": [t for t, d in tags.items() if d["coverage_flag"]],
            "coverage_adaptive": by_step(cover_adapted.mean(axis=1)),
            "coverage_adaptive_all_steps": round(float(cover_adapted.mean()), 5),
            "coverage_adaptive_tags_flagged": [
                t for t, d in tags.items() if d["adaptive"]["coverage_flag"]
            ],
            "adaptive_origins": int(late.sum()),
        },
        "notes": list(notes),
        "examples": examples,
    }


def tag_coverage(cover: np.ndarray, nominal: float) -> dict[str, Any]:
    """One tag's band coverage summary from its coverage per step ``cover [H]``.

    ``coverage_all_steps`` (mean over the H steps), ``coverage_min`` (the lowest step and its
    coverage), ``coverage_steps_outside`` (every step k further than ``COVERAGE_TOLERANCE`` from
    ``nominal``) and ``coverage_flag``: ``"low"`` or ``"high"`` when the all-steps coverage is
    outside that range, ``"low at some steps"`` when only some steps fall below it, else None.
    """
    lo, hi = nominal - COVERAGE_TOLERANCE, nominal + COVERAGE_TOLERANCE
    cover = np.round(np.asarray(cover, dtype=np.float64), 5)
    every = round(float(cover.mean()), 5)
    k_min = int(np.argmin(cover))
    outside = [k + 1 for k, v in enumerate(cover) if not lo - 1e-9 <= v <= hi + 1e-9]
    flag = None
    if every < lo - 1e-9:
        flag = "low"
    elif every > hi + 1e-9:
        flag = "high"
    elif cover[k_min] < lo - 1e-9:
        flag = "low at some steps"
    return {
        "coverage_all_steps": every,
        "coverage_min": {"step": k_min + 1, "value": float(cover[k_min])},
        "coverage_steps_outside": outside,
        "coverage_flag": flag,
    }


def _examples(
    spec: PlantSpec,
    past: np.ndarray,
    future: np.ndarray,
    origins: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    preds: dict[str, np.ndarray],
) -> list[dict[str, Any]]:
    """A few forecasts (evenly spaced origins) with their truth, for the figure.

    Per origin: ``past``, ``truth``, ``lower``, ``upper`` and each model's forecast under
    ``forecasts`` (``twin`` and every baseline), each a ``{tag: [values]}`` dict.
    """
    picks = np.linspace(0, len(past) - 1, min(N_EXAMPLES, len(past))).astype(int)

    def per_tag(a: np.ndarray, i: int) -> dict[str, list[float]]:
        return {t.name: a[i, :, j].round(6).tolist() for j, t in enumerate(spec.tags)}

    return [
        {
            "origin": str(origins[i]),
            "past": per_tag(past, i),
            "truth": per_tag(future, i),
            "lower": per_tag(lower, i),
            "upper": per_tag(upper, i),
            "forecasts": {name: per_tag(p, i) for name, p in preds.items()},
        }
        for i in picks
    ]
