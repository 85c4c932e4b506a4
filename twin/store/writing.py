"""Writing a store's files: atomic appends, journalled compaction, the marks that skip duplicates.

- *Atomic appends*: each file is written as ``*.tmp`` in its day folder, fsynced, then renamed
  (``os.replace``). Readers only see ``*.parquet``; a crash leaves at most a ``*.tmp``, which a
  later open removes once it is older than :data:`~twin.store.recovery.STALE_S`.
- *Duplicates* (same tag and ts) are stored once: dropped within a batch, and against stored
  rows using the last stored ts per tag kept in memory (:class:`StoredMarks`: the files are
  only searched for tags whose rows reach back in time). Each file records its ts range in its
  Parquet metadata; reads deduplicate the files whose ranges overlap, as the final guarantee
  (a second writer, or a crash mid-compaction; see :mod:`twin.store.reading`).
- *Compaction* merges a day's small files into one. It puts a journal (``compact-*.journal``,
  JSON ``{"output": name, "inputs": [names]}``) naming the merged file and its inputs in place
  before the merged file appears, and removes the inputs after; a later open finishes an
  interrupted compaction (:func:`twin.store.recovery.recover`).
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl

from twin.store.jsonl import fsync_path
from twin.store.layout import RANGE_KEYS, US, Range, day_folder, read_file, small_files
from twin.store.recovery import CheckedFiles
from twin.store.schema import KEY, SCHEMA, sort_unique

log = logging.getLogger(__name__)

#: rows per Parquet row group: small enough that a one-tag read skips most of a file
ROW_GROUP_ROWS = 65_536
_MARKS_SCHEMA: dict[str, pl.DataType] = {
    "tag": pl.String(),
    "known_from": SCHEMA["ts"],
    "last": SCHEMA["ts"],
}
#: writes ``rows`` of a day to a temporary file: :func:`write_tmp` over a store's root
WriteTmp = Callable[[date, pl.DataFrame], tuple[Path, Path, Range]]
#: lazy stored rows of some tags over ``[start, end)``: a historian's ``scan``
Scan = Callable[[Sequence[str], datetime, datetime | None], pl.LazyFrame]


def write_tmp(root: Path, day: date, rows: pl.DataFrame) -> tuple[Path, Path, Range]:
    """Write ``rows`` to a fsynced temporary file; returns it, its final name and ts range."""
    folder = day_folder(root, day)
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
            metadata=dict(zip(RANGE_KEYS, map(str, span), strict=True)),
        )
        fsync_path(tmp)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp, final, span


def publish(checked: CheckedFiles, tmp: Path, final: Path, span: Range) -> Path:
    """Rename a file from :func:`write_tmp` into place (readers see it from now on)."""
    try:
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_path(final.parent)
    checked.note(final, span)
    return final


def compact_day(checked: CheckedFiles, day: date, below: int, target: int, write: WriteTmp) -> None:
    """Merge ``day``'s files under ``below`` bytes into files of at most ``target`` bytes.

    ``write`` writes each merged file's temporary file (see :data:`WriteTmp`).
    """
    groups: list[list[Path]] = [[]]
    size = 0
    for path, nbytes in small_files(checked.root, day, below):
        if groups[-1] and size + nbytes > target:
            groups.append([])
            size = 0
        groups[-1].append(path)
        size += nbytes
    for group in groups:
        inputs = [p for p in group if checked.check(p)]
        if len(inputs) < 2:
            continue
        try:
            merged = sort_unique(pl.concat([read_file(p) for p in inputs]))
        except (OSError, pl.exceptions.PolarsError) as exc:
            log.warning("cannot merge %d files of %s (%s); checking each", len(inputs), day, exc)
            for p in inputs:
                checked.check(p, deep=True)
            continue
        staged, output, span = write(day, merged)
        # the journal is in place before the merged file appears: a crash at any point
        # leaves either the inputs alone, or the merged file and a journal from which a
        # later open removes the inputs; never rows twice for another Parquet reader
        journal = output.with_name(f"compact-{output.stem}.journal")
        tmp = journal.with_name(journal.name + ".tmp")
        try:
            tmp.write_text(json.dumps({"output": output.name, "inputs": [p.name for p in inputs]}))
            fsync_path(tmp)
            os.replace(tmp, journal)
            publish(checked, staged, output, span)
        except BaseException:
            for leftover in (staged, tmp) if output.exists() else (staged, tmp, journal):
                leftover.unlink(missing_ok=True)
            raise
        for p in inputs:
            p.unlink(missing_ok=True)
            checked.forget(p)
        journal.unlink()
        log.debug("compacted %d files of %s into %s", len(inputs), day, output.name)


class StoredMarks:
    """What is known stored per tag, so that most appends need not search the files for duplicates.

    Per tag: every stored ts >= ``known_from`` is <= ``last`` (``last`` null: none stored there).
    """

    def __init__(self) -> None:
        self.marks = pl.DataFrame(schema=_MARKS_SCHEMA)

    def drop_stored(self, batch: pl.DataFrame, scan: Scan) -> pl.DataFrame:
        """``batch`` less rows already stored; only tags that reach back are looked up on disk."""
        span = batch.group_by("tag").agg(first=pl.min("ts"), top=pl.max("ts"))
        span = span.join(self.marks, on="tag", how="left")
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
        stored = scan(tags, lo, None if unknown else top + US).select(KEY).collect()
        if unknown:
            last = stored.group_by("tag").agg(last=pl.max("ts"))
            learned = (
                pl.DataFrame({"tag": unknown}, schema={"tag": pl.String()})
                .join(last, on="tag", how="left")
                .select("tag", pl.lit(lo, dtype=SCHEMA["ts"]).alias("known_from"), "last")
            )
            self.marks = pl.concat([self.marks, learned])
        if stored.is_empty():
            return batch
        return batch.join(stored, on=KEY, how="anti", maintain_order="left")

    def note_stored(self, part: pl.DataFrame) -> None:
        """``part`` was just stored: raise its tags' last stored ts."""
        top = part.group_by("tag").agg(top=pl.max("ts"))
        self.marks = (
            self.marks.join(top, on="tag", how="left")
            .with_columns(last=pl.max_horizontal("last", "top"))
            .drop("top")
        )
