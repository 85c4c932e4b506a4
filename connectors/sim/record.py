"""Record a simulated plant's history, faster than real time, into the historian.

``twin plant record cstr --hours 24 --out DIR --seed 1`` runs the plant under an excitation
signal on its MVs and writes every tag at every sample in the historian's long format
(tag, ts, value, quality, status), Hive-partitioned by UTC day. Same seed, same start, same files'
contents: the recording is a reproducible training or test set.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
from tqdm import tqdm

from connectors.sim.base import SimPlant
from connectors.sim.excitation import Excitation, ExcitationConfig
from twin.store.historian import Historian

log = logging.getLogger(__name__)

#: Default start of a recording: fixed, so that the same seed gives the same data.
DEFAULT_START = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class RecordSummary:
    """What a recording produced."""

    plant: str
    samples: int
    rows: int
    start: datetime
    end: datetime
    trips: int
    """samples at which the plant reported a trip (e.g. runaway) and the excitation backed off"""
    seconds: float


def record(
    plant: SimPlant,
    hours: float,
    out: str | Path,
    *,
    seed: int = 0,
    start: datetime = DEFAULT_START,
    excitation: ExcitationConfig | None = None,
    chunk: int = 2000,
    progress: bool = True,
) -> RecordSummary:
    """Run ``plant`` for ``hours`` of plant time under excitation; append samples to ``out``.

    ``seed`` drives the excitation (the plant's own noise comes from the seed it was made with).
    ``chunk`` samples are buffered between appends.
    """
    if hours <= 0:
        raise ValueError(f"hours must be > 0, got {hours}")
    if start.tzinfo is None:
        raise ValueError("start must be time-zone aware (UTC)")
    spec = plant.spec
    period = spec.sample_period
    n = round(hours * 3600.0 / period)
    excite = Excitation(spec.mvs, plant.u0, seed=seed, config=excitation)
    historian = Historian(out)
    names = spec.tag_names
    mv_names = [t.name for t in spec.mvs]
    t0 = time.perf_counter()
    rows = trips = 0
    buffer = np.empty((min(chunk, n), len(names)))
    filled, first = 0, 0
    bar = tqdm(
        total=n, desc=f"record {spec.name}", unit="sample", disable=not progress, leave=False
    )
    for k in range(n):
        moves = excite.next(back_off=plant.tripped is not None)
        trips += plant.tripped is not None
        values = plant.step(dict(zip(mv_names, moves, strict=True)))
        buffer[filled] = [values[name] for name in names]
        filled += 1
        if filled == len(buffer) or k == n - 1:
            rows += historian.append(_long_rows(buffer[:filled], names, start, period, first))
            first += filled
            filled = 0
            bar.update(len(buffer) if k < n - 1 else n - bar.n)
    bar.close()
    end = start + timedelta(seconds=period * (n - 1))
    summary = RecordSummary(spec.name, n, rows, start, end, trips, time.perf_counter() - t0)
    log.info(
        "recorded %s: %d samples x %d tags = %d rows, %s .. %s, %d trip samples, %.1f s",
        spec.name,
        n,
        len(names),
        rows,
        start.isoformat(),
        end.isoformat(),
        trips,
        summary.seconds,
    )
    return summary


def _long_rows(
    values: np.ndarray, names: list[str], start: datetime, period: float, first: int
) -> pl.DataFrame:
    """Wide block ``[n, n_tags]`` of samples ``first..first+n`` to historian long rows."""
    n = len(values)
    offsets_us = np.round((first + np.arange(n)) * period * 1e6).astype(np.int64)
    base_us = int(start.timestamp() * 1e6)
    wide = pl.DataFrame({name: values[:, j] for j, name in enumerate(names)}).with_columns(
        pl.Series("ts", base_us + offsets_us).cast(pl.Datetime("us", "UTC"))
    )
    return (
        wide.unpivot(index="ts", variable_name="tag", value_name="value")
        .with_columns(pl.lit(0, dtype=pl.UInt32).alias("status"))
        .select("tag", "ts", "value", "status")
    )
