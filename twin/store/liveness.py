"""Session liveness: when the collector's subscription was alive, stored with the samples.

Report-by-exception servers notify a value only when it changes: while the session that
monitors a tag is alive, no notification means *unchanged*, not *missing*. The collector says
when it was alive with *liveness marks*, rows of the historian's own schema stored in the same
files as the samples (written in the same atomic append, read with the same pushdown):

- ``tag``: :data:`ALIVE` for a session that monitors every tag of the spec it collects, or
  ``__alive__:<tag>`` (:func:`alive_tag`) per monitored tag when a session holds only some.
  A spec tag name starts with a letter, so neither can be a tag.
- ``ts``: a time the session was known alive (its last publish response, data or keep-alive).
- ``value``: seconds the session had then been alive without a break: the mark says "alive over
  ``[ts - value, ts]``". Consecutive marks of one session overlap; their union is the session.

A session counts as alive from the moment its monitored items were created: the server reports
each item's current value then (the first notification, which may repeat an old source
timestamp) and every change after it. :func:`alive_intervals` turns marks into merged intervals
per tag, which :func:`twin.store.frames.make_frame` uses to carry a tag's last value over the
session. A store without marks (written before, or by an import) has no intervals: frames behave
as they always did (carry at most ``max_gap``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import polars as pl

from twin.store.schema import SCHEMA

#: the liveness mark of a session that monitors every tag of its spec
ALIVE = "__alive__"
_PREFIX = ALIVE + ":"
_INTERVALS: dict[str, pl.DataType] = {
    "tag": pl.String(),
    "ts": SCHEMA["ts"],
    "alive_end": SCHEMA["ts"],
}


def alive_tag(tag: str) -> str:
    """The liveness mark's tag name for one monitored ``tag`` (a session holding some tags)."""
    return _PREFIX + tag


def liveness_tags(tags: Sequence[str]) -> list[str]:
    """Every liveness tag that may cover some of ``tags`` (what a frame reads besides them)."""
    return [ALIVE, *(alive_tag(t) for t in tags)]


def is_liveness(tag: pl.Expr) -> pl.Expr:
    """Polars expression: True where ``tag`` names a liveness mark."""
    return tag.str.starts_with(ALIVE)


def mark_rows(
    at: datetime, alive_since: datetime, tags: Sequence[str] | None = None
) -> pl.DataFrame:
    """Liveness marks (``tag, ts, value, status``): alive over ``[alive_since, at]``.

    ``tags`` None: the session monitors every tag of its spec (one row); else one row per tag.
    """
    names = [ALIVE] if tags is None else [alive_tag(t) for t in tags]
    seconds = (at - alive_since).total_seconds()
    return pl.DataFrame(
        {
            "tag": names,
            "ts": [at] * len(names),
            "value": [seconds] * len(names),
            "status": [0] * len(names),
        },
        schema={
            "tag": pl.String(),
            "ts": SCHEMA["ts"],
            "value": pl.Float64(),
            "status": pl.UInt32(),
        },
    )


def alive_intervals(marks: pl.DataFrame, tags: Sequence[str]) -> pl.DataFrame:
    """Merged alive intervals of ``tags`` from liveness ``marks`` (``tag, ts, value`` rows).

    Returns ``tag, ts (= start), alive_end``, sorted by ``ts``, disjoint per tag. Rows of
    ``marks`` that are no liveness marks, or whose value is not a finite duration >= 0, are
    ignored.
    """
    if marks.is_empty():
        return pl.DataFrame(schema=_INTERVALS)
    m = marks.lazy().filter(
        is_liveness(pl.col("tag")), pl.col("value").is_finite(), pl.col("value") >= 0
    )
    spans = m.select(
        pl.col("tag"),
        (pl.col("ts") - pl.duration(microseconds=(pl.col("value") * 1e6).round())).alias("start"),
        pl.col("ts").alias("end"),
    )
    everyone = spans.filter(pl.col("tag") == ALIVE).drop("tag")
    tag_frame = pl.LazyFrame({"tag": list(tags)}, schema={"tag": pl.String()})
    per_tag = pl.concat(
        [
            tag_frame.join(everyone, how="cross"),
            spans.filter(pl.col("tag") != ALIVE)
            .with_columns(pl.col("tag").str.strip_prefix(_PREFIX))
            .filter(pl.col("tag").is_in(list(tags))),
        ]
    ).sort("tag", "start")
    run_end = pl.col("end").cum_max().shift(1).over("tag")
    new_run = run_end.is_null() | (pl.col("start") > run_end)
    return (
        per_tag.with_columns(run=new_run.cum_sum().over("tag"))
        .group_by("tag", "run")
        .agg(ts=pl.col("start").min(), alive_end=pl.col("end").max())
        .select(list(_INTERVALS))
        .collect()
        .cast(pl.Schema(_INTERVALS))
        .sort("ts")
    )
