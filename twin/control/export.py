"""Recommendations out of the process: CSV and JSON exports.

Export schema (``schema_version`` 2): one row per MV, these columns in this order
(:data:`EXPORT_COLUMNS`; version 2 appended the last five, so version 1's columns keep their
places):

=============  =========  ==================================================================
column         type       meaning
=============  =========  ==================================================================
ts             datetime   time of the last sample the recommendation used (UTC; ISO 8601
                          with ``+00:00`` in CSV and JSON)
plant          string     plant name from the spec
tag            string     MV tag name
node           string     OPC-UA node id the MV is read from
write_node     string     OPC-UA node id a recommended value is written to (empty if none)
unit           string     engineering unit of the MV
current        float      MV value at ``ts``
recommended    float      recommended value for the next sample
change         float      ``recommended - current``
lo, hi         float      the MV's hard bounds for the controller (its operating limits,
                          else its instrument limits)
rate_limit     float      the largest move per sample
limits_held    bool       every planned value within ``[lo, hi]`` and every move within
                          ``rate_limit``
success        bool       the solve succeeded (False: the current values are held)
message        string     solver status, or why it failed
target         float      the MV's steady-state target (empty: no target optimiser)
frozen         bool       the MV is held at ``current``: the twin never saw it move
cost_rate      float      predicted cost rate at the targets (empty: no economics)
cost_rate_now  float      the cost rate at the current measurements (empty: no economics)
constraints    string     the active constraints, ``"; "``-joined (``T op_hi 330 K binding;
                          Ca op_lo 0.8 mol/L given up by 0.02 mol/L (priority 2)``; empty
                          when none)
=============  =========  ==================================================================

``success`` to ``message`` and ``cost_rate`` to ``constraints`` describe the whole
recommendation and repeat on every row.

- ``write_export(rec, "moves.csv")``: those rows, a header line, comma-separated, ``true`` /
  ``false`` for booleans, empty cells for missing values.
- ``write_export(rec, "moves.json")``: ``{"schema_version": 2, "columns": [...], "rows":
  [{column: value}, ...], "recommendation": rec.to_dict()}`` (``schema_version`` 2); the last entry holds the planned
  trajectories and the forecast with its band (see :mod:`twin.control.recommendation`).
- ``read_export(path)``: either file back into the typed :data:`EXPORT_SCHEMA` frame. It reads
  version 1 files too (a CSV without the version-2 columns, or ``schema_version`` 1 JSON):
  ``target``, ``cost_rate``, ``cost_rate_now`` and ``constraints`` null, ``frozen`` false.

The append-only log of every recommendation is :mod:`twin.control.recommendation_log`.
"""

from __future__ import annotations

import json
import logging
import math
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from twin.control.recommendation import READABLE_VERSIONS, SCHEMA_VERSION, Recommendation
from twin.errors import TwinError
from twin.times import as_utc

log = logging.getLogger(__name__)

EXPORT_COLUMNS = (
    "ts",
    "plant",
    "tag",
    "node",
    "write_node",
    "unit",
    "current",
    "recommended",
    "change",
    "lo",
    "hi",
    "rate_limit",
    "limits_held",
    "success",
    "message",
    "target",
    "frozen",
    "cost_rate",
    "cost_rate_now",
    "constraints",
)
#: the columns schema version 1 had: :data:`EXPORT_COLUMNS` up to ``message``
V1_COLUMNS = EXPORT_COLUMNS[: EXPORT_COLUMNS.index("message") + 1]
EXPORT_SCHEMA: dict[str, pl.DataType] = {
    "ts": pl.Datetime("us", "UTC"),
    "plant": pl.String(),
    "tag": pl.String(),
    "node": pl.String(),
    "write_node": pl.String(),
    "unit": pl.String(),
    "current": pl.Float64(),
    "recommended": pl.Float64(),
    "change": pl.Float64(),
    "lo": pl.Float64(),
    "hi": pl.Float64(),
    "rate_limit": pl.Float64(),
    "limits_held": pl.Boolean(),
    "success": pl.Boolean(),
    "message": pl.String(),
    "target": pl.Float64(),
    "frozen": pl.Boolean(),
    "cost_rate": pl.Float64(),
    "cost_rate_now": pl.Float64(),
    "constraints": pl.String(),
}
SUFFIXES = (".csv", ".json")


def recommendation_rows(rec: Recommendation) -> pl.DataFrame:
    """One row per MV with exactly :data:`EXPORT_COLUMNS` (see the module doc for the schema).

    A non-finite ``target`` or cost rate is null (an empty cell), as it reads back.
    """
    constraints = "; ".join(rec.constraint_lines())
    rows = [
        {
            "ts": as_utc(rec.ts),
            "plant": rec.plant,
            "tag": m.tag,
            "node": m.node,
            "write_node": m.write_node,
            "unit": m.unit,
            "current": m.current,
            "recommended": m.recommended,
            "change": m.change,
            "lo": m.lo,
            "hi": m.hi,
            "rate_limit": m.rate_limit,
            "limits_held": m.limits_held,
            "success": rec.success,
            "message": rec.message,
            "target": _finite(m.target),
            "frozen": m.frozen,
            "cost_rate": _finite(rec.cost_rate),
            "cost_rate_now": _finite(rec.cost_rate_now),
            "constraints": constraints,
        }
        for m in rec.moves
    ]
    return pl.DataFrame(rows, schema=EXPORT_SCHEMA, orient="row" if not rows else None)


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _json_rows(frame: pl.DataFrame) -> list[dict[str, Any]]:
    out = []
    for row in frame.iter_rows(named=True):
        row["ts"] = row["ts"].isoformat()
        for key, value in row.items():
            if isinstance(value, float) and not math.isfinite(value):  # strict JSON: null
                row[key] = None
        out.append(row)
    return out


def write_export(rec: Recommendation, path: str | Path) -> Path:
    """Write ``rec`` as ``.csv`` (the rows) or ``.json`` (rows and the full recommendation).

    Written to a temporary file then renamed, so a reader never sees half a file. Any other
    suffix raises :class:`TwinError`.
    """
    out = Path(path)
    suffix = out.suffix.lower()
    if suffix not in SUFFIXES:
        raise TwinError(f"cannot export to {out}: use a {' or '.join(SUFFIXES)} file name")
    frame = recommendation_rows(rec)
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        if suffix == ".csv":
            frame.with_columns(pl.col("ts").dt.strftime("%Y-%m-%dT%H:%M:%S%.6f+00:00")).write_csv(
                tmp
            )
        else:
            doc = {
                "schema_version": SCHEMA_VERSION,
                "columns": list(EXPORT_COLUMNS),
                "rows": _json_rows(frame),
                "recommendation": rec.to_dict(),
            }
            tmp.write_text(json.dumps(doc, indent=2, allow_nan=False) + "\n", encoding="utf-8")
        os.replace(tmp, out)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise TwinError(f"cannot write {out}: {exc}") from exc
    log.info("exported %d moves to %s", frame.height, out)
    return out


def read_export(path: str | Path) -> pl.DataFrame:
    """Read an export written by :func:`write_export` back into the :data:`EXPORT_COLUMNS` frame."""
    src = Path(path)
    suffix = src.suffix.lower()
    if suffix not in SUFFIXES:
        raise TwinError(f"cannot read {src}: not a {' or '.join(SUFFIXES)} export")
    try:
        if suffix == ".csv":
            raw = pl.read_csv(src, infer_schema=False)  # every column a string
            if tuple(raw.columns) not in (EXPORT_COLUMNS, V1_COLUMNS):
                raise TwinError(
                    f"{src}: the columns {raw.columns} are not those of an export "
                    f"(version 2: {list(EXPORT_COLUMNS)}, version 1: its first {len(V1_COLUMNS)})"
                )
            rows = raw.to_dicts()
        else:
            doc = json.loads(src.read_text(encoding="utf-8"))
            if doc.get("schema_version") not in READABLE_VERSIONS:
                raise TwinError(f"{src}: schema_version {doc.get('schema_version')} unsupported")
            rows = doc["rows"]
    except (OSError, ValueError, KeyError, pl.exceptions.PolarsError) as exc:
        raise TwinError(f"cannot read export {src}: {exc}") from exc
    return _typed(rows, str(src))


def _typed(rows: list[dict[str, Any]], source: str) -> pl.DataFrame:
    def parse(row: dict[str, Any], name: str) -> Any:
        value = row.get(name)
        if name == "frozen" and value is None:
            return False  # version 1: nothing was frozen
        if name == "constraints" and name in row:
            return value or ""  # version 2: an empty cell is "no active constraint"
        if value is None or value == "":
            return None
        kind = EXPORT_SCHEMA[name]
        if kind == pl.Boolean():
            return value if isinstance(value, bool) else str(value).lower() == "true"
        if kind == pl.Float64():
            return float(value)
        if name == "ts":
            return datetime.fromisoformat(value).astimezone(UTC)
        return str(value)

    try:
        data = [{k: parse(r, k) for k in EXPORT_COLUMNS} for r in rows]
    except (TypeError, ValueError) as exc:
        raise TwinError(f"{source}: bad value in export: {exc}") from exc
    return pl.DataFrame(data, schema=EXPORT_SCHEMA, orient="row" if not data else None)
