"""A lake of many plants: one root holding one historian folder per plant, Hive-style.

Layout::

    <root>/plant=<NAME>/day=YYYY-MM-DD/part-*.parquet   the plant's samples, exactly as in any
    <root>/plant=<NAME>/gaps.jsonl, quarantine/, ...      historian folder (:mod:`twin.store.layout`)

Each ``plant=NAME`` folder *is* a historian folder: ``Historian(root / "plant=NAME")`` (or
:meth:`Lake.historian`) reads and writes it unchanged, with one writer per plant partition as
for any historian (e.g. one ``twin collect --lake ROOT --plant NAME`` per plant). A plant name
is checked like a spec's plant name (a letter, then letters, digits, ``_ . -``), so it is
always one path component. A single-plant historian folder moves in with ``twin lake add``
(an atomic rename, :meth:`Lake.add`); nothing else changes in it.

Reading all plants at once: the data files are exactly ``<root>/plant=*/day=*/*.parquet``
(:data:`DATA_GLOB`). That glob, unlike ``**/*.parquet``, skips everything else in a plant
folder: ``gaps.jsonl``, ``quarantine/**/*.corrupt``, writes under way (``*.parquet.tmp``),
compaction journals, ``recommendations/*.jsonl``, ``audit.jsonl`` and any Parquet file someone
leaves beside the day folders. Two things a raw scan must still do itself:

- drop the collector's liveness marks (rows of the same files whose tag starts with
  ``__alive__``, :mod:`twin.store.liveness`): ``~pl.col("tag").str.starts_with("__alive__")``;
- deduplicate on ``(plant, tag, ts)``: files of a day may share rows after a crash in the
  middle of a compaction (:mod:`twin.store.reading` does this for one plant).

:meth:`Lake.scan` does both. With other engines (``plant`` and ``day`` come from the paths)::

    pl.scan_parquet(f"{root}/plant=*/day=*/*.parquet", hive_partitioning=True,
                    hive_schema={"plant": pl.String, "day": pl.Date})
    duckdb: SELECT * FROM read_parquet('<root>/plant=*/day=*/*.parquet', hive_partitioning=true)
            WHERE NOT starts_with(tag, '__alive__')
    spark:  spark.read.option("basePath", root).parquet(f"{root}/plant=*/day=*/*.parquet")
            .where(~F.col("tag").startswith("__alive__"))

A scan that meets a compaction of a live plant may find a file gone: read again (as
:meth:`Historian.read` does).
"""

from __future__ import annotations

import errno
import os
import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl

from twin.errors import TwinError
from twin.store.historian import Historian
from twin.store.layout import days
from twin.store.liveness import is_liveness
from twin.store.schema import KEY

#: the data files of every plant of a lake, relative to its root
DATA_GLOB = "plant=*/day=*/*.parquet"
#: the types of the partition columns (inferred ones could turn a plant name into a number)
HIVE_SCHEMA: dict[str, pl.DataType] = {"plant": pl.String(), "day": pl.Date()}
PLANT_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.\-]{0,63}$")  # as a spec's plant name
PLANT_DIR = re.compile(r"^plant=(.+)$")


def check_plant(name: str) -> str:
    """``name`` if it is a valid plant name, else TwinError saying why."""
    if not PLANT_NAME.match(name):
        raise TwinError(
            f"plant name {name!r} must start with a letter and hold only letters, digits, _ . - "
            "(at most 64 characters)"
        )
    return name


@dataclass(frozen=True)
class PlantInfo:
    """What one plant partition holds (for ``twin lake list``)."""

    plant: str
    first_day: date | None  # None: no day folder yet
    last_day: date | None
    days: int
    files: int  # data files (``*.parquet``)
    bytes: int  # their total size


class Lake:
    """A folder of plant partitions, each a historian folder (see the module doc)."""

    def __init__(self, root: str | Path) -> None:
        """The lake at ``root`` (nothing is created until a plant is written or added)."""
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"Lake({str(self.root)!r})"

    def path(self, plant: str) -> Path:
        """The historian folder of ``plant`` (it may not exist yet)."""
        return self.root / f"plant={check_plant(plant)}"

    def historian(self, plant: str, **kwargs: Any) -> Historian:
        """The historian of ``plant``, its partition created if missing (``kwargs``: Historian's)."""
        return Historian(self.path(plant), **kwargs)

    def plants(self) -> list[str]:
        """The names of the plant partitions, sorted."""
        if not self.root.is_dir():
            return []
        out = []
        for entry in os.scandir(self.root):
            m = PLANT_DIR.match(entry.name)
            if m and PLANT_NAME.match(m.group(1)) and entry.is_dir():
                out.append(m.group(1))
        return sorted(out)

    def info(self, plant: str) -> PlantInfo:
        """The day range, data files and bytes of ``plant``'s partition."""
        folder = self.path(plant)
        found = days(folder) if folder.is_dir() else []
        sizes = [p.stat().st_size for _, d in found for p in d.glob("*.parquet")]
        return PlantInfo(
            plant,
            found[0][0] if found else None,
            found[-1][0] if found else None,
            len(found),
            len(sizes),
            sum(sizes),
        )

    def scan(self) -> pl.LazyFrame:
        """Every plant's samples: ``plant, day`` and the historian's columns, liveness marks
        dropped, each ``(plant, tag, ts)`` once. Unordered."""
        if not any(self.root.glob(DATA_GLOB)):
            raise TwinError(f"lake {self.root} holds no data files ({DATA_GLOB})")
        lf = pl.scan_parquet(
            str(self.root / DATA_GLOB), hive_partitioning=True, hive_schema=HIVE_SCHEMA
        )
        return lf.filter(~is_liveness(pl.col("tag"))).unique(["plant", *KEY], keep="any")

    def add(self, historian_dir: str | Path, plant: str) -> Path:
        """Move the historian folder ``historian_dir`` into the lake as ``plant``; its new path.

        One atomic rename: the folder is either still where it was or wholly in the lake. A lake
        on another filesystem is refused (a copy could be cut short half way); so is a plant the
        lake already holds. Stop the folder's collector first.
        """
        src = Path(historian_dir)
        dest = self.path(plant)
        if not src.is_dir():
            raise TwinError(f"no historian folder {src}")
        if not days(src) and not (src / "gaps.jsonl").exists():
            raise TwinError(f"{src} holds no day=YYYY-MM-DD folders: not a historian folder")
        if dest.exists():
            raise TwinError(f"lake {self.root} already holds plant {plant!r} ({dest})")
        if self.root.resolve().is_relative_to(src.resolve()):
            raise TwinError(f"the lake {self.root} lies inside {src}: choose a root outside it")
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(src, dest)
        except OSError as exc:
            if exc.errno == errno.EXDEV:
                raise TwinError(
                    f"{src} and the lake {self.root} are on different filesystems: nothing was "
                    f"moved. Copy the folder to {dest} yourself (e.g. `cp -a`; stop its "
                    "collector first) or choose a lake root on the same filesystem"
                ) from exc
            raise TwinError(f"cannot move {src} to {dest}: {exc}") from exc
        return dest
