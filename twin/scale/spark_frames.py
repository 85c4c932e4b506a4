"""Frames at scale: a Spark job that builds many plants' frames from a lake, in time chunks.

:func:`build_frames` reads the lake's Parquet files (``<root>/plant=NAME/day=*/*.parquet``,
pruned on plant and day), cuts each plant's range ``[start, end)`` into chunks of whole sample
periods, builds each chunk's frame with the project's own :func:`~twin.store.frames.make_frame`
in a Python worker (``groupBy(plant, chunk).applyInArrow``) and writes it as one Parquet shard
(:mod:`twin.scale.shards`). Runs on any Spark master (``local[2]``, ``spark://...``, ``yarn``);
the lake root and the output folder must be paths that the driver and every executor see.

Exactness. The shards of a plant, joined, equal ``read_frame(Historian(root/plant=NAME), spec,
start, end, max_gap)`` in every value, mask and state. ``read_frame`` gives ``make_frame`` a row
set W: the rows of the spec's tags and their liveness marks in ``[lo, end)`` (``lo = start -
max_gap``; everything before ``end`` when max_gap is infinite) and, if a valid mark is among
them, for each tag without a row in ``[lo, start]`` its last row before ``lo``; the plant's
outages overlapping ``[lo, end)``. ``make_frame`` decides each grid point ``t`` from: (1) the
tag's latest sample whose (MV-retimed, +1 µs) time is ``<= t``; (2) ``live(t)``: some valid mark
of the tag (or of all tags) has ``session start <= t`` and ``stamp >= t - max_gap`` (with no
limit: ``session start <= t``), which is what the join on merged intervals computes; (3) the
outages, of which only those starting at or before ``t`` count. Chunk ``[a, b)`` gets from W,
found with Spark aggregations and windows, never one row per grid point:

- its own rows (``a <= ts < b``) and, per tag and per mark tag, the last row before ``a``:
  retiming moves every sample of a tag alike and never past ``a``, so (1) is the same row;
- the marks stamped in ``[a - max_gap, a)``: every mark that can make ``live(t)`` true for a
  ``t >= a`` and is stamped before ``b`` (with no limit, the last mark before ``a`` suffices);
- per mark tag, of the marks stamped in ``[b, end)``, the one whose session started first, moved
  to ``b - 1 µs`` with its start kept (``make_frame`` drops marks after its end): for ``t < b``
  that mark is as live as all of them together;
- every outage of the plant, as ``read_frame`` has them.

``make_frame`` runs over ``[a - period, b)`` and the first row is dropped: its own lookback
(samples from ``max_gap`` before its start when no mark is live) then cannot drop a carry-in
that could count at ``t >= a``, as a sample older than ``a - period - max_gap`` is neither
fresh at ``t >= a`` nor live unless a mark this chunk holds says so. Duplicate ``(tag, ts)``
rows (as after a crash mid-compaction) are dropped inside ``make_frame``; the carry-in picks
any one of them. pyspark is optional (``pip install '.[scale]'``) and imported here only.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl

from twin.errors import TwinError
from twin.scale.chunks import US, PlantJob, chunk_frame, micros
from twin.scale.shards import FORMAT, shard_name, spec_digest, write_manifest, write_shard
from twin.spec import PlantSpec
from twin.store.outages import GAPS_FILE, read_gaps

log = logging.getLogger(__name__)

#: settings for a local[N] master: small, and nothing listens beyond 127.0.0.1
LOCAL_CONF = {
    "spark.ui.enabled": "false",
    "spark.driver.host": "127.0.0.1",
    "spark.driver.bindAddress": "127.0.0.1",
    "spark.sql.shuffle.partitions": "4",
}
#: windows of the reach back for a live tag's last sample: the same row as read_frame's
#: LOOKBACK finds (the last before lo), in at most two Spark jobs instead of four
REACH_BACK = (timedelta(days=1), None)
SUMMARY = "plant string, k int, path string, rows long"
ROW_COLUMNS = ["plant", "k", "tag", "ts", "value", "quality", "future"]


def require_pyspark() -> None:
    """Raise TwinError saying how to install pyspark if it is missing."""
    try:
        import pyspark  # noqa: F401
    except ImportError:
        raise TwinError(
            "building frames with Spark needs pyspark: pip install '.[scale]' "
            "(and Java 17 or newer on the PATH)"
        ) from None


def spark_session(master: str = "local[2]", conf: Mapping[str, str] | None = None) -> Any:
    """A SparkSession on ``master`` (UTC, partition types as strings; ``conf`` added last)."""
    require_pyspark()
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # workers use this interpreter
    settings = {
        "spark.sql.session.timeZone": "UTC",
        "spark.ui.showConsoleProgress": "false",
        # a plant named "NaN" or a day must not be guessed into a number or a date
        "spark.sql.sources.partitionColumnTypeInference.enabled": "false",
    }
    if master.startswith("local"):
        settings.update(LOCAL_CONF)
    settings.update(conf or {})
    builder = SparkSession.builder.master(master).appName("twin-frames")
    for key, value in settings.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")  # its warnings about glob paths are noise here
    return spark


def plan_jobs(
    root: str | Path,
    specs: Mapping[str, PlantSpec],
    start: datetime,
    end: datetime,
    *,
    max_gap: float | None = None,
    chunk_days: float = 1.0,
) -> list[PlantJob]:
    """One :class:`PlantJob` per plant of ``specs``, its outages read from its ``gaps.jsonl``."""
    jobs = []
    for plant, spec in specs.items():
        job = PlantJob.plan(plant, spec, start, end, max_gap=max_gap, chunk_days=chunk_days)
        gaps = read_gaps(Path(root) / f"plant={plant}" / GAPS_FILE, job.lo, job.end)
        jobs.append(replace(job, gaps=gaps))  # the outages read_frame would pass
    return jobs


def build_frames(spark: Any, root: str | Path, jobs: Sequence[PlantJob], out: str | Path) -> dict:
    """Build the frames of ``jobs`` from the lake at ``root`` into shards under ``out``.

    Returns the manifest written to ``out/manifest.json`` (:func:`twin.scale.shards.write_manifest`).
    """
    from pyspark.sql import functions as F

    root, out = Path(root).resolve(), Path(out).resolve()
    by_plant = {j.plant: j for j in jobs}
    params = spark.createDataFrame(
        [(j.plant, micros(j.start), micros(j.end), micros(j.lo) if j.lo else None,
          j.chunk // US, j.chunks, j.max_gap_us) for j in jobs],
        "plant string, t0 long, t1 long, lo long, chunk long, n int, mg long",
    )  # fmt: skip
    heartbeat = spark.createDataFrame([(j.plant, k) for j in jobs for k in range(j.chunks)],
                                      "plant string, k int")  # fmt: skip
    parts = [heartbeat.select("plant", "k", *[F.lit(None).alias(c) for c in ROW_COLUMNS[2:]])]
    rows = _rows(spark, root, jobs, params)
    if rows is not None:
        lookback = _lookback(spark, root, jobs, rows)
        if lookback is not None:
            rows = rows.unionByName(lookback.join(F.broadcast(params), "plant"))
        rows = rows.withColumn(
            "k",
            F.when(F.col("ts") < F.col("t0"), F.lit(-1)).otherwise(
                F.expr("(ts - t0) div chunk").cast("int")
            ),
        )
        parts += _chunk_rows(rows)
    frames = parts[0].select(*ROW_COLUMNS)
    for part in parts[1:]:
        frames = frames.unionByName(part.select(*ROW_COLUMNS), allowMissingColumns=False)
    frames = frames.withColumn("value", F.col("value").cast("double")).withColumn(
        "future", F.coalesce(F.col("future").cast("boolean"), F.lit(False))
    )
    log.info("building %d shards of %d plants", sum(j.chunks for j in jobs), len(jobs))
    built = frames.groupBy("plant", "k").applyInArrow(_shard_writer(by_plant, str(out)), SUMMARY)
    done = sorted(built.collect(), key=lambda r: (r["plant"], r["k"]))
    return write_manifest_of(out, root, jobs, done)


def write_manifest_of(out: Path, root: Path, jobs: Sequence[PlantJob], done: list[Any]) -> dict:
    """The manifest of the built shards, written to ``out``."""
    first = jobs[0]
    plants: dict[str, Any] = {}
    for job in jobs:
        shards = []
        for r in (r for r in done if r["plant"] == job.plant):
            a, b = job.bounds(r["k"])
            shards.append(
                {"path": r["path"], "start": a.isoformat(), "end": b.isoformat(), "rows": r["rows"]}
            )
        plants[job.plant] = {
            "spec": job.spec.to_dict(),
            "spec_sha256": spec_digest(job.spec),
            "spec_source": job.spec.source,
            "sample_period_s": job.spec.sample_period,
            "max_gap_s": job.max_gap if job.max_gap_us is not None else None,
            "shards": shards,
        }
    doc = {
        "lake": str(root),
        "start": first.start.isoformat(),
        "end": first.end.isoformat(),
        "chunk_days": {j.plant: j.chunk.total_seconds() / 86_400 for j in jobs},
        "plants": plants,
    }
    write_manifest(out, doc)
    return {"format": FORMAT, **doc}


def _rows(spark: Any, root: Path, jobs: Sequence[PlantJob], params: Any) -> Any:
    """The lake rows W of every job (see the module doc) but the lookback, with the params."""
    from pyspark.sql import functions as F

    present = [j for j in jobs if any((root / f"plant={j.plant}").glob("day=*/*.parquet"))]
    if not present:
        return None
    paths = [str(root / f"plant={j.plant}" / "day=*" / "*.parquet") for j in present]
    prune = None
    for j in present:  # on partition columns: Spark opens only these plants' days
        cond = (F.col("plant") == j.plant) & (F.col("day") <= (j.end - US).date().isoformat())
        if j.lo is not None:
            cond = cond & (F.col("day") >= j.lo.date().isoformat())
        prune = cond if prune is None else prune | cond
    raw = spark.read.option("basePath", str(root)).parquet(*paths).where(prune)
    tags = spark.createDataFrame([(j.plant, t, m) for j in jobs for t, m in j.tags()],
                                 "plant string, tag string, mark boolean")  # fmt: skip
    value = F.col("value")
    valid = value.isNotNull() & ~F.isnan(value) & (value >= 0) & (value < float("inf"))
    return (
        raw.select(
            "plant",
            "tag",
            F.unix_micros("ts").alias("ts"),
            value.cast("double").alias("value"),
            F.col("quality").cast("string").alias("quality"),
        )
        .join(F.broadcast(tags), ["plant", "tag"])
        .join(F.broadcast(params), "plant")
        .where((F.col("ts") < F.col("t1")) & (F.col("lo").isNull() | (F.col("ts") >= F.col("lo"))))
        .where(~F.col("mark") | valid)  # alive_intervals ignores any other mark
    )


def _lookback(spark: Any, root: Path, jobs: Sequence[PlantJob], rows: Any) -> Any:
    """read_frame's reach back: per plant with a valid mark in range, the last row before
    ``lo`` of each tag without a row in ``[lo, start]`` (window by window, as it does)."""
    from pyspark.sql import functions as F

    facts = rows.where(F.col("mark") | (F.col("ts") <= F.col("t0")))
    facts = facts.groupBy("plant", "tag", "mark").count().collect()
    alive = {r["plant"] for r in facts if r["mark"]}
    found: list[tuple] = []
    for job in jobs:
        if job.plant not in alive or job.lo is None:
            continue
        seen = {r["tag"] for r in facts if r["plant"] == job.plant and not r["mark"]}
        need = [t for t in job.spec.tag_names if t not in seen]
        top = job.lo
        for back in REACH_BACK if need else ():
            bottom = None if back is None else job.lo - back
            got = _last_rows(spark, root, job.plant, need, bottom, top)
            found += got
            need = [t for t in need if t not in {g[1] for g in got}]
            if not need or bottom is None:
                break
            top = bottom
    if not found:
        return None
    schema = "plant string, tag string, ts long, value double, quality string"
    return spark.createDataFrame(found, schema).withColumn("mark", F.lit(False))


def _last_rows(
    spark: Any, root: Path, plant: str, tags: list[str], bottom: datetime | None, top: datetime
) -> list[tuple]:
    """The last row of each of ``tags`` in ``[bottom, top)`` (plant, tag, ts, value, quality)."""
    from pyspark.sql import functions as F

    days = F.col("day") <= top.date().isoformat()
    if bottom is not None:
        days = days & (F.col("day") >= bottom.date().isoformat())
    path = str(root / f"plant={plant}" / "day=*" / "*.parquet")
    raw = spark.read.option("basePath", str(root)).parquet(path).where(days)
    ts = F.unix_micros("ts")
    keep = F.col("tag").isin(tags) & (ts < micros(top))
    if bottom is not None:
        keep = keep & (ts >= micros(bottom))
    last = F.max_by(
        F.struct(ts.alias("ts"), "value", F.col("quality").cast("string").alias("quality")), ts
    )
    got = raw.where(keep).groupBy("tag").agg(last.alias("r")).collect()
    return [(plant, r["tag"], r["r"]["ts"], r["r"]["value"], r["r"]["quality"]) for r in got]


def _chunk_rows(rows: Any) -> list[Any]:
    """Per (plant, chunk): its rows, the carry-ins and moved marks (see the module doc)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    k, ts, plant_tag = F.col("k"), F.col("ts"), ["plant", "tag"]
    payload = [F.col("tag"), ts, F.col("value"), F.col("quality")]
    own = rows.where(k >= 0).select("plant", "k", *payload, F.lit(False).alias("future"))

    def spread(df: Any, first: Any, last: Any, struct: str) -> Any:
        """``df``'s row sent to every chunk in ``[first, last]``."""
        fields = [F.col(f"{struct}.{c}").alias(c) for c in ("ts", "value", "quality", "future")]
        flat = df.select("plant", "tag", *fields, first.alias("a"), last.alias("b"))
        flat = flat.where(F.col("a") <= F.col("b"))
        return flat.withColumn("k", F.explode(F.sequence("a", "b"))).select(*ROW_COLUMNS)

    # the last row before each chunk, per tag and mark tag: sent on until the tag's next rows
    record = F.struct(ts.alias("ts"), "value", "quality", F.lit(False).alias("future"))
    last = rows.groupBy("plant", "tag", "k", "n").agg(F.max_by(record, ts).alias("r"))
    after = F.lead("k").over(Window.partitionBy(*plant_tag).orderBy("k"))
    carry = spread(last.withColumn("upto", F.coalesce(after, F.col("n") - 1)),
                   k + 1, F.col("upto"), "r")  # fmt: skip

    # marks stamped before a chunk that are live in it (stamp >= a - max_gap)
    marks = rows.where(F.col("mark"))
    reach = F.least(F.col("n") - 1, F.expr("(ts + mg - t0) div chunk").cast("int"))
    ahead = spread(
        marks.where(F.col("mg").isNotNull()).withColumn("r", record).withColumn("upto", reach),
        k + 1,
        F.col("upto"),
        "r",
    )

    # per mark tag, the mark stamped in a later chunk whose session began first
    began = ts - F.bround(F.col("value") * 1e6, 0).cast("long")
    first = F.struct(began.alias("began"), ts.alias("ts"), "value", F.lit(None).cast("string")
                     .alias("quality"), F.lit(True).alias("future"))  # fmt: skip
    per = marks.groupBy("plant", "tag", "k").agg(F.min(first).alias("m"))
    later = Window.partitionBy(*plant_tag).orderBy(F.desc("k"))
    later = later.rowsBetween(Window.unboundedPreceding, Window.currentRow)
    before = F.lag("k").over(Window.partitionBy(*plant_tag).orderBy("k"))
    per = per.withColumn("r", F.min("m").over(later)).withColumn("prev", before)
    future = spread(per, F.greatest(F.coalesce(F.col("prev"), F.lit(0)), F.lit(0)), k - 1, "r")
    return [own, carry, ahead, future]


def _shard_writer(jobs: Mapping[str, PlantJob], out: str) -> Any:
    """The function each (plant, chunk) group runs in a Python worker: build, write, report."""

    def build(key: tuple, table: Any) -> Any:
        import pyarrow as pa

        plant, k = (getattr(v, "as_py", lambda v=v: v)() for v in key)
        job = jobs[plant]
        got = pl.from_arrow(table)
        assert isinstance(got, pl.DataFrame)
        rows = got.filter(pl.col("tag").is_not_null()).select(
            pl.col("tag").cast(pl.String),
            pl.col("ts").cast(pl.Datetime("us")).dt.replace_time_zone("UTC"),
            pl.col("value").cast(pl.Float64),
            pl.col("quality").cast(pl.String),
            pl.col("future").cast(pl.Boolean),
        )
        frame = chunk_frame(job, int(k), rows)
        name = shard_name(plant, job.bounds(int(k))[0])
        write_shard(out, name, frame)
        summary = {"plant": [plant], "k": [int(k)], "path": [name], "rows": [frame.height]}
        types = [("plant", pa.string()), ("k", pa.int32()), ("path", pa.string())]
        return pa.table(summary, schema=pa.schema([*types, ("rows", pa.int64())]))

    return build
