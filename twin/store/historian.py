"""The embedded historian: plant samples in long format, as Hive-partitioned Parquet files.

Layout under ``root``, readable as is by any Hive-aware Parquet reader, e.g.
``pl.scan_parquet(f"{root}/**/*.parquet", hive_partitioning=True)`` or DuckDB's
``read_parquet('<root>/**/*.parquet', hive_partitioning=true)`` (the ``day`` column is the key)::

    day=2026-01-01/part-20260101T120000123456Z-<uuid>.parquet   rows of that UTC day, zstd,
                                                                sorted by (tag, ts)
    gaps.jsonl          recorded communication outages, one JSON object a line
    quarantine/         unreadable files moved out of the way (``*.corrupt``), never deleted

Rows follow :data:`SCHEMA`. Guarantees and how they are kept:

- *Atomic appends*: each file is written as ``*.tmp`` in its day folder, fsynced, then renamed
  (``os.replace``). Readers only see ``*.parquet``; a crash leaves at most a ``*.tmp``, which a
  later open removes once it is older than :data:`STALE_S`.
- *Duplicates* (same tag and ts) are stored once: dropped within a batch, and against stored
  rows using the last stored ts per tag kept in memory (the files are only searched for tags
  whose rows reach back in time). Each file records its ts range in its Parquet metadata;
  reads deduplicate the files whose ranges overlap, as the final guarantee (a second writer,
  or a crash mid-compaction).
- *Compaction* merges a day's small files into one. It puts a journal (``compact-*.journal``)
  naming the merged file and its inputs in place before the merged file appears, and removes
  the inputs after; a later open finishes an interrupted compaction by removing the inputs of a
  merged file that exists (else only the journal): after a crash, no reader meets a row twice.
- *Bad input*: NaN and ±inf values are stored as null with quality ``bad`` (and a warning);
  naive timestamps, unknown columns and wrong types raise :class:`DataQualityError`; an
  unreadable file is moved to ``quarantine/`` with a warning and the rest reads fine.

One process writes a store at a time; any number may read it.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
import threading
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from twin.errors import DataQualityError
from twin.store.jsonl import append_line, fsync_path

if TYPE_CHECKING:
    from twin.spec import PlantSpec

log = logging.getLogger(__name__)

QUALITIES = ("good", "uncertain", "bad")
SCHEMA: dict[str, pl.DataType] = {
    "tag": pl.String(),
    "ts": pl.Datetime("us", "UTC"),
    "value": pl.Float64(),
    "quality": pl.Enum(QUALITIES),
    "status": pl.UInt32(),  # the raw OPC-UA StatusCode value
}
#: a status code of each quality class, used when a row gives its quality but not its status
STATUS_OF = {"good": 0x0000_0000, "uncertain": 0x4000_0000, "bad": 0x8000_0000}
#: age after which a leftover ``*.tmp`` file is removed
STALE_S = 600.0
#: rows per Parquet row group: small enough that a one-tag read skips most of a file
ROW_GROUP_ROWS = 65_536
_DAY_DIR = re.compile(r"^day=(\d{4}-\d{2}-\d{2})$")
_KEY = ["tag", "ts"]
_RANGE_KEYS = ("twin.ts_min_us", "twin.ts_max_us")  # Parquet key-value metadata of each file
_US = timedelta(microseconds=1)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MARKS_SCHEMA: dict[str, pl.DataType] = {
    "tag": pl.String(),
    "known_from": SCHEMA["ts"],
    "last": SCHEMA["ts"],
}
Range = tuple[int, int]  # first and last ts of a file, µs since the epoch


def quality_of(status: int) -> str:
    """Quality class of an OPC-UA StatusCode from its severity bits (31-30)."""
    severity = (int(status) >> 30) & 0b11
    return "good" if severity == 0 else "uncertain" if severity == 1 else "bad"


def quality_expr(status: pl.Expr) -> pl.Expr:
    """Polars expression: the quality class (Enum) of a column of OPC-UA status codes."""
    severity = status.cast(pl.UInt32) // (1 << 30)
    return (
        pl.when(severity == 0)
        .then(pl.lit("good"))
        .when(severity == 1)
        .then(pl.lit("uncertain"))
        .otherwise(pl.lit("bad"))
        .cast(SCHEMA["quality"])
    )


def utc(value: datetime | None, name: str) -> datetime | None:
    """``value`` converted to UTC; DataQualityError naming ``name`` if it is naive."""
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise DataQualityError(f"{name} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise DataQualityError(f"{name} must be time-zone aware (UTC), got naive {value}")
    return value.astimezone(UTC)


def sort_unique(rows: pl.DataFrame) -> pl.DataFrame:
    """``rows`` sorted by (tag, ts), keeping the first row of each (tag, ts)."""
    if rows.height < 2:
        return rows
    # sorting small integer codes (an Enum of the sorted tag names) in two stable passes is
    # several times faster than one sort on (string, datetime)
    names = rows.get_column("tag").unique().sort().to_list()
    return (
        rows.with_columns(_key=pl.col("tag").cast(pl.Enum(names)).to_physical())
        .sort("ts", maintain_order=True)
        .sort("_key", maintain_order=True)
        .filter(
            ((pl.col("_key").diff() != 0) | (pl.col("ts").diff() != timedelta(0))).fill_null(True)
        )
        .drop("_key")
    )


class Historian:
    """A folder of Hive-partitioned Parquet files holding plant samples (see the module doc)."""

    def __init__(
        self,
        root: str | Path,
        *,
        small_file_bytes: int = 4 << 20,
        target_file_bytes: int = 16 << 20,
        auto_compact_files: int = 32,
    ) -> None:
        """Open (and create if missing) the store at ``root``.

        An append that leaves ``auto_compact_files`` files under ``small_file_bytes`` in a day
        merges them (0 turns this off); :meth:`compact` merges all files under
        ``target_file_bytes`` into files of about that size (e.g. nightly, for past days).
        """
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.small_file_bytes = small_file_bytes
        self.target_file_bytes = target_file_bytes
        self.auto_compact_files = auto_compact_files
        self._lock = threading.RLock()
        # files whose footer has been checked, with their ts range (None: unknown, i.e. all)
        self._ranges: dict[Path, Range | None] = {}
        # per tag: every stored ts >= known_from is <= last (last null: none stored there)
        self._marks = pl.DataFrame(schema=_MARKS_SCHEMA)
        self._recover()

    def __repr__(self) -> str:
        return f"Historian({str(self.root)!r})"

    # --- writing ------------------------------------------------------------------------------

    def append(self, rows: pl.DataFrame) -> int:
        """Store long-format ``rows``; returns how many were new (duplicates are dropped).

        ``rows`` has columns ``tag, ts, value`` and optionally ``status`` (raw OPC-UA code,
        default Good) and ``quality`` (derived from ``status`` if absent; the worse of the two if
        both are given). See the module doc for what happens to bad input.
        """
        batch = _normalise(rows)
        if batch.is_empty():
            return 0
        with self._lock:
            batch = self._drop_stored(batch)
            days = batch.get_column("ts").dt.date()
            for day in days.unique().sort().to_list():
                part = batch if days.n_unique() == 1 else batch.filter(days == day)
                self._write(day, part)
                self._note_stored(part)
            for day in days.unique().to_list() if self.auto_compact_files else []:
                small = self._small_files(day, self.small_file_bytes)
                if len(small) < self.auto_compact_files:
                    continue
                try:  # the rows are stored: a failed compaction must not fail the append
                    self._compact_day(day, self.small_file_bytes)
                except (OSError, pl.exceptions.PolarsError) as exc:
                    log.error("compaction of %s failed, will try again later: %s", day, exc)
        return batch.height

    def _drop_stored(self, batch: pl.DataFrame) -> pl.DataFrame:
        """``batch`` less rows already stored; only tags that reach back are looked up on disk."""
        span = batch.group_by("tag").agg(first=pl.min("ts"), top=pl.max("ts"))
        span = span.join(self._marks, on="tag", how="left")
        sure = (
            pl.col("known_from").is_not_null()
            & (pl.col("first") >= pl.col("known_from"))
            & (pl.col("last").is_null() | (pl.col("first") > pl.col("last")))
        )
        doubt = span.filter(~sure)
        if doubt.is_empty():
            return batch
        tags = doubt.get_column("tag").to_list()
        unknown = doubt.filter(pl.col("known_from").is_null()).get_column("tag").to_list()
        lo, top = doubt.get_column("first").min(), doubt.get_column("top").max()
        assert isinstance(lo, datetime) and isinstance(top, datetime)
        # for tags seen the first time, read on to the end to learn their last stored ts
        stored = self.scan(tags, lo, None if unknown else top + _US).select(_KEY).collect()
        if unknown:
            last = stored.group_by("tag").agg(last=pl.max("ts"))
            learned = (
                pl.DataFrame({"tag": unknown}, schema={"tag": pl.String()})
                .join(last, on="tag", how="left")
                .select("tag", pl.lit(lo, dtype=SCHEMA["ts"]).alias("known_from"), "last")
            )
            self._marks = pl.concat([self._marks, learned])
        if stored.is_empty():
            return batch
        return batch.join(stored, on=_KEY, how="anti", maintain_order="left")

    def _note_stored(self, part: pl.DataFrame) -> None:
        top = part.group_by("tag").agg(top=pl.max("ts"))
        self._marks = (
            self._marks.join(top, on="tag", how="left")
            .with_columns(last=pl.max_horizontal("last", "top"))
            .drop("top")
        )

    def _write(self, day: date, rows: pl.DataFrame) -> Path:
        """Write ``rows`` (sorted) as a new file of ``day``: temporary file, fsync, rename."""
        return self._publish(*self._write_tmp(day, rows))

    def _write_tmp(self, day: date, rows: pl.DataFrame) -> tuple[Path, Path, Range]:
        """Write ``rows`` to a fsynced temporary file; returns it, its final name and ts range."""
        folder = self.root / f"day={day.isoformat()}"
        folder.mkdir(exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        final = folder / f"part-{stamp}-{uuid.uuid4().hex[:12]}.parquet"
        tmp = final.with_name(final.name + ".tmp")
        ts = rows.get_column("ts").dt.epoch("us")
        span: Range = (int(ts.min()), int(ts.max()))  # type: ignore[arg-type]
        try:
            rows.write_parquet(
                tmp,
                compression="zstd",
                statistics=True,
                row_group_size=ROW_GROUP_ROWS,
                metadata=dict(zip(_RANGE_KEYS, map(str, span), strict=True)),
            )
            fsync_path(tmp)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return tmp, final, span

    def _publish(self, tmp: Path, final: Path, span: Range) -> Path:
        """Rename a file from :meth:`_write_tmp` into place (readers see it from now on)."""
        try:
            os.replace(tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        fsync_path(final.parent)
        self._ranges[final] = span
        return final

    def compact(self, day: date | None = None) -> None:
        """Merge the files of ``day`` (every day if None) into sorted files of ``target_file_bytes``."""
        with self._lock:
            for d in [day] if day is not None else [d for d, _ in self._days()]:
                self._compact_day(d, self.target_file_bytes)

    def _compact_day(self, day: date, below: int) -> None:
        """Merge the files under ``below`` bytes into files of at most ``target_file_bytes``."""
        groups: list[list[Path]] = [[]]
        size = 0
        for path, nbytes in self._small_files(day, below):
            if groups[-1] and size + nbytes > self.target_file_bytes:
                groups.append([])
                size = 0
            groups[-1].append(path)
            size += nbytes
        for group in groups:
            inputs = [p for p in group if self._check(p)]
            if len(inputs) < 2:
                continue
            try:
                merged = sort_unique(pl.concat([_read_file(p) for p in inputs]))
            except (OSError, pl.exceptions.PolarsError) as exc:
                log.warning(
                    "cannot merge %d files of %s (%s); checking each", len(inputs), day, exc
                )
                for p in inputs:
                    self._check(p, deep=True)
                continue
            staged, output, span = self._write_tmp(day, merged)
            # the journal is in place before the merged file appears: a crash at any point
            # leaves either the inputs alone, or the merged file and a journal from which a
            # later open removes the inputs; never rows twice for another Parquet reader
            journal = output.with_name(f"compact-{output.stem}.journal")
            tmp = journal.with_name(journal.name + ".tmp")
            try:
                tmp.write_text(
                    json.dumps({"output": output.name, "inputs": [p.name for p in inputs]})
                )
                fsync_path(tmp)
                os.replace(tmp, journal)
                self._publish(staged, output, span)
            except BaseException:
                for leftover in (staged, tmp) if output.exists() else (staged, tmp, journal):
                    leftover.unlink(missing_ok=True)
                raise
            for p in inputs:
                p.unlink(missing_ok=True)
                self._ranges.pop(p, None)
            journal.unlink()
            log.debug("compacted %d files of %s into %s", len(inputs), day, output.name)

    def _recover(self) -> None:
        """Finish interrupted compactions and remove stale temporary files."""
        now = time.time()
        for _, folder in self._days():
            for journal in folder.glob("compact-*.journal"):
                try:
                    doc = json.loads(journal.read_text(encoding="utf-8"))
                    if (folder / doc["output"]).exists():
                        for name in doc["inputs"]:
                            (folder / name).unlink(missing_ok=True)
                    journal.unlink(missing_ok=True)
                except (OSError, ValueError, KeyError, TypeError) as exc:
                    log.warning("ignoring unreadable compaction journal %s: %s", journal, exc)
            for tmp in folder.glob("*.tmp"):
                try:
                    if now - tmp.stat().st_mtime > STALE_S:
                        tmp.unlink()
                        log.info("removed stale temporary file %s", tmp)
                except OSError:
                    pass  # another process removed or renamed it first

    # --- reading ------------------------------------------------------------------------------

    def scan(
        self,
        tags: Sequence[str] | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> pl.LazyFrame:
        """Lazy rows (columns :data:`SCHEMA`) of ``tags`` over ``[start, end)``, deduplicated.

        Only the day folders and files whose time range meets ``[start, end)`` are opened (each
        file checked once: an unreadable one is quarantined), and the tag and time filters are
        pushed down to the Parquet row groups. Unordered; :meth:`read` sorts.
        """
        start, end = utc(start, "start"), utc(end, "end")
        tags = [tags] if isinstance(tags, str) else tags
        lo = -(2**63) if start is None else (start - _EPOCH) // _US
        hi = 2**63 - 1 if end is None else (end - _EPOCH) // _US - 1
        everything: Range = (-(2**63), 2**63 - 1)
        wanted: list[tuple[Range, Path]] = []
        for path in self._files(start, end):
            if self._check(path):
                first, last = self._ranges[path] or everything
                if last >= lo and first <= hi:
                    wanted.append(((first, last), path))
        groups: list[list[Path]] = []  # files whose ranges overlap, which may share rows
        top = everything[0]
        for (first, last), path in sorted(wanted):
            if groups and first <= top:
                groups[-1].append(path)
            else:
                groups.append([path])
            top = max(top, last)
        if not groups or lo > hi:
            return pl.LazyFrame(schema=SCHEMA)
        singles = [g[0] for g in groups if len(g) == 1]
        parts = [self._scan_files(f, tags, start, end) for f in [singles] if f]
        parts += [self._scan_files(g, tags, start, end).unique(_KEY) for g in groups if len(g) > 1]
        return pl.concat(parts) if len(parts) > 1 else parts[0]

    @staticmethod
    def _scan_files(
        files: list[Path],
        tags: Sequence[str] | None,
        start: datetime | None,
        end: datetime | None,
    ) -> pl.LazyFrame:
        lf = pl.scan_parquet(files, hive_partitioning=False, schema=SCHEMA, cache=False)
        if tags is not None:
            lf = lf.filter(pl.col("tag").is_in(list(tags)))
        if start is not None:
            lf = lf.filter(pl.col("ts") >= start)
        if end is not None:
            lf = lf.filter(pl.col("ts") < end)
        return lf

    def read(
        self,
        tags: Sequence[str] | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> pl.DataFrame:
        """The rows of :meth:`scan`, collected and sorted by tag and ts.

        A failed read is retried: first as is (a concurrent compaction may have removed a file),
        then after reading every file in range on its own, quarantining those that fail.
        """
        for attempt in range(3):
            try:
                return sort_unique(self.scan(tags, start, end).collect())
            except (pl.exceptions.PolarsError, OSError) as exc:
                if attempt == 2:
                    raise DataQualityError(f"cannot read {self.root}: {exc}") from exc
                log.warning("read of %s failed (%s); retrying", self, exc)
                for path in self._files(utc(start, "start"), utc(end, "end")):
                    if not path.exists():
                        self._ranges.pop(path, None)
                    elif attempt == 1:
                        self._check(path, deep=True)
        raise AssertionError("unreachable")

    def frame(
        self, spec: PlantSpec, start: datetime, end: datetime, max_gap: float | None = None
    ) -> pl.DataFrame:
        """Wide frame of ``spec``'s tags on its sample period over ``[start, end)``.

        See :func:`twin.store.frames.make_frame` for the columns and the masking rules.
        """
        from twin.store.frames import default_max_gap, make_frame

        start_utc, end_utc = utc(start, "start"), utc(end, "end")
        assert start_utc is not None and end_utc is not None
        gap_s = default_max_gap(spec) if max_gap is None else max_gap
        lo = start_utc - timedelta(seconds=gap_s) if math.isfinite(gap_s) and gap_s > 0 else None
        rows = self.read(spec.tag_names, lo, end_utc)
        gaps = self.gaps(lo, end_utc)
        return make_frame(rows, spec, start_utc, end_utc, max_gap=gap_s, gaps=gaps)

    def _days(self) -> list[tuple[date, Path]]:
        days = []
        for entry in os.scandir(self.root):
            m = _DAY_DIR.match(entry.name)
            if m and entry.is_dir():
                try:
                    days.append((date.fromisoformat(m.group(1)), Path(entry.path)))
                except ValueError:
                    log.warning("ignoring folder with an impossible date: %s", entry.path)
        return sorted(days)

    def _files(self, start: datetime | None, end: datetime | None) -> list[Path]:
        first = start.date() if start is not None else date.min
        last = (end - _US).date() if end is not None else date.max
        return [
            p for d, folder in self._days() if first <= d <= last for p in folder.glob("*.parquet")
        ]

    def _small_files(self, day: date, below: int) -> list[tuple[Path, int]]:
        folder = self.root / f"day={day.isoformat()}"
        if not folder.is_dir():
            return []
        out = []
        for entry in sorted(os.scandir(folder), key=lambda e: e.name):
            if entry.name.endswith(".parquet") and entry.is_file():
                size = entry.stat().st_size
                if size < below:
                    out.append((Path(entry.path), size))
        return out

    def _check(self, path: Path, deep: bool = False) -> bool:
        """True if ``path`` is a readable historian file (its range noted); else quarantined."""
        if path in self._ranges and not deep:
            return True
        try:
            if deep:
                _read_file(path)
            found = pl.read_parquet_schema(path)
            if dict(found) != SCHEMA:
                raise DataQualityError(f"schema {dict(found)} is not the historian's")
            meta = pl.read_parquet_metadata(path)
        except FileNotFoundError:
            self._ranges.pop(path, None)
            return False  # compacted away meanwhile
        except (pl.exceptions.PolarsError, OSError, ValueError) as exc:
            self._quarantine(path, exc)
            return False
        try:
            self._ranges[path] = (int(meta[_RANGE_KEYS[0]]), int(meta[_RANGE_KEYS[1]]))
        except (KeyError, ValueError):
            self._ranges[path] = None  # not written here: may overlap anything
        return True

    def _quarantine(self, path: Path, why: Exception) -> None:
        self._ranges.pop(path, None)
        dest = self.root / "quarantine" / path.parent.name / (path.name + ".corrupt")
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            if dest.exists():
                dest = dest.with_name(f"{path.name}.{uuid.uuid4().hex[:8]}.corrupt")
            shutil.move(path, dest)
        except OSError as exc:
            log.error("unreadable file %s (%s) could not be quarantined: %s", path, why, exc)
            return
        log.warning("unreadable file %s skipped and moved to %s: %s", path, dest, why)

    # --- communication gaps -------------------------------------------------------------------

    @property
    def gaps_path(self) -> Path:
        """The JSON-lines file of recorded outages."""
        return self.root / "gaps.jsonl"

    def record_gap(self, tags: Sequence[str], start: datetime, end: datetime, reason: str) -> None:
        """Record that ``tags`` had no data over ``[start, end)`` (e.g. the server was down)."""
        start_utc, end_utc = utc(start, "start"), utc(end, "end")
        assert start_utc is not None and end_utc is not None
        if end_utc < start_utc:
            raise DataQualityError(f"gap end {end_utc} is before its start {start_utc}")
        tag_list = [tags] if isinstance(tags, str) else [str(t) for t in tags]
        if end_utc == start_utc or not tag_list:
            log.debug("empty gap (%s, %d tags) not recorded", start_utc, len(tag_list))
            return
        doc = {"tags": tag_list, "start": start_utc.isoformat(), "end": end_utc.isoformat()}
        append_line(self.gaps_path, json.dumps({**doc, "reason": str(reason)}))

    def gaps(self, start: datetime | None = None, end: datetime | None = None) -> pl.DataFrame:
        """Recorded outages overlapping ``[start, end)``: one row per tag (tag, start, end, reason)."""
        start, end = utc(start, "start"), utc(end, "end")
        rows: list[tuple[str, datetime, datetime, str]] = []
        try:
            lines = self.gaps_path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            lines = []
        for number, text in enumerate(lines, 1):
            try:
                doc = json.loads(text)
                g0, g1 = datetime.fromisoformat(doc["start"]), datetime.fromisoformat(doc["end"])
                tags, reason = list(doc["tags"]), str(doc.get("reason", ""))
            except (ValueError, KeyError, TypeError) as exc:
                log.warning("skipping unreadable line %d of %s: %s", number, self.gaps_path, exc)
                continue
            if (end is None or g0 < end) and (start is None or g1 > start):
                rows += [(str(tag), g0, g1, reason) for tag in tags]
        schema = {"tag": pl.String(), "start": SCHEMA["ts"], "end": SCHEMA["ts"]}
        return pl.DataFrame(rows, schema={**schema, "reason": pl.String()}, orient="row")


def _read_file(path: Path) -> pl.DataFrame:
    return pl.read_parquet(path, hive_partitioning=False, schema=SCHEMA)


def _normalise(rows: pl.DataFrame) -> pl.DataFrame:
    """Check ``rows`` against :data:`SCHEMA`, bring them to it, sorted and deduplicated."""
    if isinstance(rows, pl.LazyFrame):
        rows = rows.collect()
    if not isinstance(rows, pl.DataFrame):
        raise DataQualityError(f"append takes a polars DataFrame, got {type(rows).__name__}")
    unknown = [c for c in rows.columns if c not in SCHEMA]
    missing = [c for c in ("tag", "ts", "value") if c not in rows.columns]
    if unknown or missing:
        what = [f"unknown columns {unknown}"] * bool(unknown) + [f"missing {missing}"] * bool(
            missing
        )
        raise DataQualityError(
            f"historian rows: {' and '.join(what)} (columns are {list(SCHEMA)}; "
            "quality and status are optional)"
        )
    dtypes = rows.schema
    ts_type = dtypes["ts"]
    if not isinstance(ts_type, pl.Datetime):
        raise DataQualityError(f"column 'ts' must be a Datetime, got {ts_type}")
    if ts_type.time_zone is None:
        raise DataQualityError(
            "column 'ts' holds naive datetimes: give them a time zone (UTC), e.g. "
            "pl.col('ts').dt.replace_time_zone('UTC')"
        )
    if not (dtypes["value"].is_numeric() or dtypes["value"] in (pl.Boolean, pl.Null)):
        raise DataQualityError(f"column 'value' must be numeric, got {dtypes['value']}")
    if not (dtypes["tag"] in (pl.String, pl.Categorical, pl.Null) or dtypes["tag"] == pl.Enum):
        raise DataQualityError(f"column 'tag' must be a string, got {dtypes['tag']}")
    status = dtypes.get("status")
    if status is not None and not (status.is_integer() or status == pl.Null):
        raise DataQualityError(f"column 'status' must be an integer, got {status}")

    df = rows.with_columns(
        pl.col("tag").cast(pl.String),
        pl.col("ts").dt.convert_time_zone("UTC").dt.cast_time_unit("us"),
        pl.col("value").cast(pl.Float64),
    )
    usable = pl.col("tag").is_not_null() & (pl.col("tag") != "") & pl.col("ts").is_not_null()
    kept = df.filter(usable)
    if kept.height < df.height:
        log.warning("dropping %d rows without a tag name or a timestamp", df.height - kept.height)
        df = kept
    if status is not None:
        wrong = df.filter((pl.col("status") < 0) | (pl.col("status") > 0xFFFF_FFFF))
        if not wrong.is_empty():
            raise DataQualityError(
                f"column 'status' must be a 32-bit OPC-UA status code; {wrong.height} rows are "
                f"outside 0..2^32-1, e.g. {wrong['status'][0]} for tag {wrong['tag'][0]!r}"
            )
    if "quality" in df.columns:
        given = df.get_column("quality").cast(pl.String)
        wrong_q = given.filter(given.is_not_null() & ~given.is_in(QUALITIES)).unique()
        if len(wrong_q):
            raise DataQualityError(
                f"column 'quality' must be one of {QUALITIES}, got {wrong_q.to_list()[:5]}"
            )
        df = df.with_columns(given.cast(SCHEMA["quality"]).alias("quality"))
        from_quality = pl.col("quality").replace_strict(
            STATUS_OF, default=0, return_dtype=pl.UInt32
        )
        if status is None:
            df = df.with_columns(status=from_quality)
        else:  # the worse of the two
            df = df.with_columns(pl.col("status").cast(pl.UInt32).fill_null(from_quality))
            worse = pl.max_horizontal(
                pl.col("quality").to_physical().fill_null(0),
                quality_expr(pl.col("status")).to_physical(),
            )
            df = df.with_columns(
                quality=worse.replace_strict(
                    dict(enumerate(QUALITIES)), return_dtype=SCHEMA["quality"]
                )
            )
    else:
        if status is None:
            df = df.with_columns(status=pl.lit(0, dtype=pl.UInt32))
        df = df.with_columns(
            pl.col("status").cast(pl.UInt32).fill_null(0),
            quality=quality_expr(pl.col("status").fill_null(0)),
        )
    value = df.get_column("value")
    not_finite = value.is_null() | value.is_nan() | value.is_infinite()
    if not_finite.any():
        nan_inf = int((value.is_nan() | value.is_infinite()).sum())
        if nan_inf:
            log.warning("%d NaN or infinite values stored as null with quality 'bad'", nan_inf)
        df = df.with_columns(
            value=pl.when(not_finite).then(None).otherwise(pl.col("value")),
            quality=pl.when(not_finite)
            .then(pl.lit("bad", dtype=SCHEMA["quality"]))
            .otherwise(pl.col("quality")),
        )
    return sort_unique(df.select(list(SCHEMA)))
