"""Frame shards on disk: one Parquet file per plant and time chunk, and the manifest that lists them.

Layout written by :func:`twin.scale.spark_frames.build_frames`::

    <out>/manifest.json                          what was built (see :func:`write_manifest`)
    <out>/plant=<NAME>/part-<chunk start>.parquet   the frame of one chunk, exactly the columns
                                                 and types of :func:`twin.store.frames.make_frame`

A shard is written to ``*.tmp`` and renamed, so a retried task replaces it whole and a reader
never meets half a file. :func:`read_shards` joins a plant's shards back into one frame.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl

from twin.errors import TwinError
from twin.spec import PlantSpec
from twin.store.schema import utc

MANIFEST = "manifest.json"
FORMAT = "twin-frames/1"


def shard_name(plant: str, chunk_start: datetime) -> str:
    """A shard's path relative to the output folder (names sort in time order)."""
    stamp = chunk_start.strftime("%Y%m%dT%H%M%S")
    if chunk_start.microsecond:
        stamp += f".{chunk_start.microsecond:06d}"
    return f"plant={plant}/part-{stamp}Z.parquet"


def write_shard(out: str | Path, name: str, frame: pl.DataFrame) -> Path:
    """Write ``frame`` to ``out/name`` atomically (a ``*.tmp`` file renamed over it)."""
    path = Path(out) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{uuid.uuid4().hex}.tmp")
    frame.write_parquet(tmp, compression="zstd")
    os.replace(tmp, path)
    return path


def spec_digest(spec: PlantSpec) -> str:
    """SHA-256 of the spec's content (its TOML layout as canonical JSON)."""
    text = json.dumps(spec.to_dict(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def write_manifest(out: str | Path, doc: dict[str, Any]) -> Path:
    """Write ``out/manifest.json`` atomically. ``doc``::

    {"format": "twin-frames/1", "lake": ROOT, "start": iso, "end": iso, "chunk_days": n,
     "plants": {NAME: {"spec": {...}, "spec_sha256": hex, "spec_source": path,
                       "sample_period_s": s, "max_gap_s": s or null (no limit),
                       "shards": [{"path": rel, "start": iso, "end": iso, "rows": n}, ...]}}}
    """
    path = Path(out) / MANIFEST
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{MANIFEST}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(json.dumps({"format": FORMAT, **doc}, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def read_manifest(out: str | Path) -> dict[str, Any]:
    """The manifest of a shard folder; TwinError naming the folder if there is none."""
    path = Path(out) / MANIFEST
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TwinError(f"{out} holds no {MANIFEST}: not a folder of frame shards") from None
    except ValueError as exc:
        raise TwinError(f"{path} is not valid JSON: {exc}") from None
    if doc.get("format") != FORMAT:
        raise TwinError(f"{path}: format {doc.get('format')!r}, expected {FORMAT!r}")
    return dict(doc)


def read_shards(
    out: str | Path, plant: str, start: datetime | None = None, end: datetime | None = None
) -> pl.DataFrame:
    """``plant``'s frame over ``[start, end)`` (None: as built) from the shards in ``out``.

    The shards that meet the range, in time order, concatenated and cut to it: the frame
    :func:`twin.store.frames.make_frame` gives for the range (on the built grid).
    """
    doc = read_manifest(out)
    entry = doc["plants"].get(plant)
    if entry is None:
        raise TwinError(
            f"{out} holds no frames of plant {plant!r} (it has {sorted(doc['plants'])})"
        )
    lo, hi = utc(start, "start"), utc(end, "end")
    shards = sorted(entry["shards"], key=lambda s: s["start"])
    if not shards:
        raise TwinError(f"{out} lists no shards of plant {plant!r}")
    wanted = [
        s
        for s in shards
        if (lo is None or datetime.fromisoformat(s["end"]) > lo)
        and (hi is None or datetime.fromisoformat(s["start"]) < hi)
    ]
    parts = [pl.read_parquet(Path(out) / s["path"]) for s in wanted or shards[:1]]
    frame = pl.concat(parts) if wanted else parts[0].head(0)
    if lo is not None:
        frame = frame.filter(pl.col("ts") >= lo)
    if hi is not None:
        frame = frame.filter(pl.col("ts") < hi)
    return frame
