"""Model health: how far the twin's live forecasts miss, relative to its validation error.

:func:`model_health` replays the last few samples: from several recent origins it forecasts
``s`` steps ahead under the MVs and DVs that really happened, compares with what the CVs really
did, and divides the live NRMSE by the validation NRMSE at the same step (``metrics.json``).
About 1 means the plant behaves as the data the twin learned from; well above 1 (say 3) means
the plant has drifted away from the model, and its recommendations deserve less trust (the
write-back guard refuses to write then).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np
import polars as pl
import torch

from twin.errors import TwinError
from twin.model.dataset import cv_columns, dv_columns, frame_to_array, mv_columns

if TYPE_CHECKING:
    from twin.model.twin import Twin

log = logging.getLogger(__name__)

#: forecast origins compared (the last ones in the frame)
ORIGINS = 8
#: forecast steps tried, longest first: the longest whose validation NRMSE is known and that fits
STEPS = (10, 5, 1)


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
