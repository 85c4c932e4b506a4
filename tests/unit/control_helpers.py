"""Shared by the controller-side unit tests: the shipped CSTR twin and a steady CSTR history."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl

from connectors.sim.plants import make_plant
from twin.store.frames import make_frame

MODEL = Path(__file__).resolve().parents[2] / "data" / "models" / "cstr"
START = datetime(2026, 3, 1, tzinfo=UTC)


def steady_rows(samples: int = 40, seed: int = 1) -> pl.DataFrame:
    """Historian rows (tag, ts, value) of the CSTR at its nominal point, MVs held."""
    plant = make_plant("cstr", seed=seed)
    spec = plant.spec
    rows = []
    for k in range(samples):
        values = plant.step()
        ts = START + timedelta(seconds=k * spec.sample_period)
        rows += [(name, ts, values[name]) for name in spec.tag_names]
    return pl.DataFrame(
        rows,
        schema={"tag": pl.String, "ts": pl.Datetime("us", "UTC"), "value": pl.Float64},
        orient="row",
    )


def steady_history(samples: int = 40, seed: int = 1) -> pl.DataFrame:
    """:func:`steady_rows` as a frame on the CSTR's sample period (6 s)."""
    spec = make_plant("cstr").spec
    end = START + timedelta(seconds=samples * spec.sample_period)
    return make_frame(steady_rows(samples, seed), spec, START, end)
