"""Model health: about 1 while the plant behaves as the twin learned, far above once it does not."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from control_helpers import MODEL, steady_history

from twin.model.health import band_coverage, health_rows, model_health
from twin.model.twin import Twin


@pytest.fixture(scope="module")
def twin() -> Twin:
    return Twin.load(MODEL)


def test_health_is_near_one_on_the_plant_it_learned(twin: Twin) -> None:
    score = model_health(twin, steady_history(health_rows(twin)))
    assert score is not None and 0.1 < score < 3.0, score


def test_health_flags_a_plant_that_drifted_from_the_model(twin: Twin) -> None:
    frame = steady_history(health_rows(twin))
    drift = np.clip(np.arange(frame.height) - (frame.height - 20), 0, None) * 0.4  # K per sample
    drifted = frame.with_columns(pl.col("T") + pl.Series(drift))  # the last 20 samples run away
    score = model_health(twin, drifted)
    assert score is not None and score > 3.0, score


def test_band_coverage_per_tag_drops_only_for_the_tag_that_drifted(twin: Twin) -> None:
    frame = steady_history(health_rows(twin))
    steady = band_coverage(twin, frame)
    assert steady is not None and set(steady) == {"T", "Ca", "Tf"}, steady  # no band on an MV
    assert all(v > 0.7 for v in steady.values()), steady
    drift = np.clip(np.arange(frame.height) - (frame.height - 20), 0, None) * 0.4
    drifted = band_coverage(twin, frame.with_columns(pl.col("T") + pl.Series(drift)))
    assert drifted is not None and drifted["T"] < 0.3 and drifted["Ca"] > 0.7, drifted
    assert band_coverage(twin, steady_history(twin.window)) is None  # no outcome to score


def test_health_is_unknown_without_enough_history_or_metrics(twin: Twin) -> None:
    assert model_health(twin, steady_history(twin.window + 1)) is None
    bare = Twin.load(MODEL)
    bare.metrics = {}
    assert model_health(bare, steady_history(health_rows(twin))) is None
