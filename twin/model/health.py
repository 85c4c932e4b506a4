"""Model health: how far the twin's live forecasts miss, relative to its validation error.

:func:`model_health` replays the last few samples: from several recent origins it forecasts
``s`` steps ahead under the MVs and DVs that really happened, compares with what the CVs really
did, and divides the live NRMSE by the validation NRMSE at the same step (``metrics.json``).
About 1 means the plant behaves as the data the twin learned from; well above 1 (say 3) means
the plant has drifted away from the model, and its recommendations deserve less trust (the
write-back guard refuses to write then).

The bands have their own health: :func:`replay` forecasts every recent origin under the MVs that
really followed (DVs held at their last value, as live and in calibration) and pairs each step
with what was measured; :func:`observe` feeds those pairs to the adaptive bands
(:mod:`twin.model.adaptive`), and :func:`band_coverage` is the coverage per tag of the recent
outcomes (logged at INFO).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import polars as pl
import torch

from twin.errors import TwinError
from twin.model.dataset import cv_columns, dv_columns, frame_to_array, frame_ts, mv_columns

if TYPE_CHECKING:
    from twin.model.adaptive import AdaptiveBands
    from twin.model.twin import Twin

log = logging.getLogger(__name__)

#: forecast origins compared (the last ones in the frame)
ORIGINS = 8
#: forecast steps tried, longest first: the longest whose validation NRMSE is known and that fits
STEPS = (10, 5, 1)
#: forecasts per batched rollout in :func:`replay`
BATCH = 1024


def health_rows(twin: Twin) -> int:
    """Frame rows :func:`model_health` uses at most: window + longest step + origins."""
    return twin.window + max(STEPS) + ORIGINS


def model_health(twin: Twin, frame: pl.DataFrame, *, origins: int = ORIGINS) -> float | None:
    """Live forecast NRMSE / validation NRMSE of the worst CV; None if it cannot be told.

    ``frame``: the recent history on the spec's period (last row: now). None when the twin has
    no validation metrics, the frame is too short, or fewer than 3 origins have clean data.
    """
    nrmse = twin.metrics.get("nrmse") if isinstance(twin.metrics, dict) else None
    if not isinstance(nrmse, dict):
        return None
    spec = twin.spec
    frame = frame.sort("ts")
    n = frame.height
    fits = [s for s in STEPS if str(s) in nrmse and n >= twin.window + s + 2 and s <= twin.horizon]
    if not fits:
        return None
    step = fits[0]
    values, ok = frame_to_array(frame, spec)
    cvs, mvs, dvs = cv_columns(spec), mv_columns(spec), dv_columns(spec)
    pasts, plans, dv_plans, actual = [], [], [], []
    for o in range(origins):
        end = n - step - o  # the origin's history is frame[:end], its future frame[end:end+step]
        if end < twin.window:
            break
        future, good = values[end : end + step], ok[end : end + step]
        if not good[:, mvs + dvs].all() or not good[-1, cvs].all():
            continue
        try:
            pasts.append(twin.past_tensor(frame.head(end)))
        except TwinError as exc:  # a gap in this origin's window
            log.debug("health: origin %d skipped: %s", o, exc)
            continue
        plans.append(future[:, mvs])
        dv_plans.append(future[:, dvs])
        actual.append(future[-1, cvs])
    if len(pasts) < 3:
        return None
    with torch.no_grad():  # one batched rollout for every origin
        mean, _ = twin.torch_rollout(
            torch.stack(pasts),
            torch.as_tensor(np.array(plans)),
            torch.as_tensor(np.array(dv_plans)) if dvs else None,
        )
    errors = mean[:, step - 1, cvs].double().numpy() - np.array(actual)
    live = np.sqrt(np.mean(np.square(errors), axis=0)) / twin.normalizer.scale[cvs]
    names = [spec.tags[j].name for j in cvs]
    reference = np.array([float(nrmse[str(step)].get(name, np.nan)) for name in names])
    ratio = live / np.maximum(reference, 1e-9)
    if not np.isfinite(ratio).any():
        return None
    worst = float(np.nanmax(ratio))
    log.debug(
        "health: step %d, %d origins, live NRMSE %s vs validation %s -> %.2f",
        step,
        len(errors),
        np.round(live, 4).tolist(),
        reference.tolist(),
        worst,
    )
    return worst


@dataclass(frozen=True)
class Replay:
    """Forecasts of recent origins, oldest first, and what followed; eng. units."""

    ts: np.ndarray
    """``[N, H]`` int64 µs (UTC) of each forecast step"""
    mean: np.ndarray
    """``[N, H, n_tags]`` forecast under the MVs that followed, DVs held"""
    half: np.ndarray
    """``[N, H, n_tags]`` calibrated half-width of the band"""
    actual: np.ndarray
    """``[N, H, n_tags]`` measured; NaN where bad, not yet measured, or after a bad MV sample"""

    def __len__(self) -> int:
        return len(self.ts)


def replay(twin: Twin, frame: pl.DataFrame, after: int | None = None) -> Replay | None:
    """Forecast every origin of ``frame`` whose window is complete and that has an outcome
    after ``after`` (int64 µs UTC; None: any); None when there is none.

    ``frame``: recent history on the spec's period. An origin's forecast runs H steps; steps
    past the frame's end, or past a bad MV sample, get no outcome (NaN).
    """
    spec, w, h = twin.spec, twin.window, twin.horizon
    frame = frame.sort("ts")
    values, ok = frame_to_array(frame, spec)
    stamps = frame_ts(frame).astype(np.int64)
    n, mvs = len(values), mv_columns(spec)
    if n <= w:
        return None
    period = round(spec.sample_period * 1e6)
    bad = np.concatenate([[0], np.cumsum(~ok.all(axis=1))])
    ends = np.arange(w, n)  # history rows [e - w, e), first outcome row e
    ends = ends[bad[ends] - bad[ends - w] == 0]
    if after is not None:
        ends = ends[stamps[np.minimum(ends + h - 1, n - 1)] > after]
    if len(ends) == 0:
        return None
    rows = ends[:, None] + np.arange(h)[None, :]  # [N, H] frame rows of the outcomes
    clipped = np.minimum(rows, n - 1)
    mv_ok = ok[clipped][..., mvs].all(axis=-1) & (rows < n)
    usable = np.cumprod(mv_ok, axis=1).astype(bool)  # up to the first bad or missing MV
    keep = usable[:, 0]  # an origin without its first MV has nothing to forecast
    if not keep.any():
        return None
    ends, clipped, usable = ends[keep], clipped[keep], usable[keep]
    plan = values[clipped][..., mvs]
    last = plan[np.arange(len(ends)), usable.sum(axis=1) - 1]  # the last usable MVs, held
    plan = np.where(usable[..., None], plan, last[:, None])
    past = values[ends[:, None] + np.arange(-w, 0)[None, :]]
    means, halves = [], []
    with torch.no_grad():
        for lo in range(0, len(ends), BATCH):
            m, hw = twin.torch_rollout(
                torch.as_tensor(twin.normalizer.norm(past[lo : lo + BATCH]), dtype=torch.float32),
                torch.as_tensor(plan[lo : lo + BATCH]),
            )
            means.append(m.double().numpy())
            halves.append(hw.double().numpy())
    mean = np.concatenate(means)
    mean[..., mvs] = plan
    actual = np.where(usable[..., None] & ok[clipped], values[clipped], np.nan)
    ts = stamps[ends - 1][:, None] + period * np.arange(1, h + 1)[None, :]
    return Replay(ts, mean, np.concatenate(halves), actual)


def observe(bands: AdaptiveBands, twin: Twin, frame: pl.DataFrame) -> int:
    """Score the outcomes in ``frame`` that ``bands`` has not seen yet; returns how many."""
    seen = bands.last_ts[bands.last_ts >= 0]
    after = int(seen.min()) if len(seen) == len(bands.last_ts) else None
    r = replay(twin, frame, after)
    if r is None:
        return 0
    return bands.update_arrays(r.ts, r.mean, r.half, r.actual)


def band_coverage(
    twin: Twin, frame: pl.DataFrame, bands: AdaptiveBands | None = None
) -> dict[str, float] | None:
    """Coverage per CV and DV of the recent outcomes in ``frame`` by the calibrated band, or
    with ``bands`` by the adapted one as it stands now; None when nothing could be scored."""
    r = replay(twin, frame)
    if r is None:
        return None
    half = r.half * (bands.scale()[None] if bands is not None else 1.0)
    inside = np.abs(r.actual - r.mean) <= half
    scored = np.isfinite(r.actual)
    out = {}
    for j, t in enumerate(twin.spec.tags):
        if t.role != "mv" and scored[..., j].any():
            out[t.name] = float(inside[..., j][scored[..., j]].mean())
    if out:
        log.info(
            "band coverage of %d recent forecasts: %s",
            len(r),
            ", ".join(f"{k} {v:.0%}" for k, v in out.items()),
        )
    return out or None
