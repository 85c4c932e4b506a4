"""Draft a plant spec from a CSV/Parquet export (``twin spec infer``).

:func:`infer_spec` reads the export as ``twin import`` does (:mod:`connectors.files_read`) and
drafts one tag per numeric column: a valid tag name made from the column name (the column kept
as the tag's ``column`` when they differ), the sample period from the median time spacing,
``lo``/``hi`` from the 0.5 % and 99.5 % quantiles widened by 10 % of their distance on each side,
roles from the ``cv``/``mv``/``dv`` lists (other columns: DV, marked for the engineer), a CV's
setpoint from its median, an MV's rate limit from its moves. Units stay empty unless given, and
there are no OPC-UA nodes: the draft serves import, training, evaluation and what-if as it is.
The draft's TOML says in comments what to confirm and what to fill, and :attr:`Draft.to_fill`
lists it for a person.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from connectors.files_parse import TS, numbers
from connectors.files_read import Export, ExportError, ReadOptions, open_export
from twin.spec import PlantSpec, Tag, make_tag_name, parse_spec, spec_to_toml
from twin.spec.plant import TAG_NAME, Role

log = logging.getLogger(__name__)

QUANTILES = (0.005, 0.995)
"""the quantiles ``lo`` and ``hi`` start from: robust to a few spikes"""
MARGIN = 0.1
"""``lo``/``hi`` lie this fraction of the quantiles' distance beyond them"""
_OK = 0  # numbers()' state of a parsed cell


@dataclass(frozen=True)
class Draft:
    """A spec drafted from an export: the spec, its TOML with comments, what is left to do."""

    spec: PlantSpec
    toml: str
    to_fill: tuple[str, ...]
    """one line per kind of field to fill or confirm, naming the tags"""
    rows: int
    """rows of the export with a usable time"""


def infer_spec(
    path: str | Path,
    options: ReadOptions | None = None,
    *,
    name: str | None = None,
    cv: Iterable[str] = (),
    mv: Iterable[str] = (),
    dv: Iterable[str] = (),
    names: Mapping[str, str] | None = None,
    units: Mapping[str, str] | None = None,
) -> Draft:
    """Draft a spec from the export at ``path``.

    ``cv``/``mv``/``dv`` name columns (or the tags made from them); ``names`` maps a column to
    the tag name to give it (``--map COL=TAG``); ``units`` a column or tag to its unit. Raises
    :class:`ExportError` naming the file for an export that cannot be read, has fewer than two
    distinct times or no numeric column, and for a name in the lists that is no column.
    """
    path = Path(path)
    export = open_export(path, options)
    frame, skipped = _numeric_frame(export)
    ts = frame[TS].drop_nulls().unique().sort()
    if ts.len() < 2:
        raise ExportError(path, "fewer than two distinct times: cannot tell the sample period")
    period = ts.diff().drop_nulls().dt.total_microseconds().median()
    assert isinstance(period, int | float)
    columns = [c for c in frame.columns if c != TS]
    if not columns:
        raise ExportError(path, f"no numeric column besides the time ({'; '.join(skipped)})")
    tag_of = _tag_names(path, columns, names or {})
    roles, listed = _roles(path, tag_of, {"cv": cv, "mv": mv, "dv": dv})
    unit_of = {c: (units or {}).get(c, (units or {}).get(tag_of[c], "")) for c in columns}
    for key in units or {}:
        if key not in tag_of and key not in tag_of.values():
            raise ExportError(path, f"--unit {key}: no column or tag {key!r} (columns: {columns})")
    frame = frame.sort(TS)
    tags, notes = [], {}
    for col in columns:
        values = frame[col]
        tag, note = _draft_tag(col, tag_of[col], roles[col], unit_of[col], values)
        if col not in listed:
            note["role"] = "confirm: not in --cv/--mv/--dv, so a DV by default"
        tags.append(tag)
        notes[tag.name] = note
    plant = name or make_tag_name(path.stem)
    if not TAG_NAME.match(plant):
        raise ExportError(path, f"plant name {plant!r} must be letters, digits, _ . -")
    spec = PlantSpec(plant, round(period / 1e6, 6), tuple(tags), source=str(path))
    to_fill = _to_fill(spec, listed, tag_of, skipped)
    header = _header(path, ts, to_fill)
    text = spec_to_toml(spec, header=header, notes=notes)
    checked = parse_spec(text, source=f"<draft from {path}>")  # the draft must load as it is
    return Draft(spec=checked, toml=text, to_fill=tuple(to_fill), rows=frame.height)


def _numeric_frame(export: Export) -> tuple[pl.DataFrame, list[str]]:
    """``[__ts, column...]`` of every column with numbers (wide, or a long file pivoted), and
    why the other columns were left out."""
    long = "tag" in export.columns and "value" in export.columns
    data = [c for c in export.columns if c != export.ts_column]
    if long:
        data = ["value"]
    parts, good, cells = [], dict.fromkeys(data, 0), dict.fromkeys(data, 0)
    for raw in export.chunks():
        chunk = export.times.add(raw).filter(pl.col("__ts_state") == _OK)
        exprs = []
        for col in data:
            value, state = numbers(col, export.schema[col], export.decimal_comma)
            states = chunk.select(state.alias("s"))["s"]
            good[col] += int((states == _OK).sum())
            cells[col] += int((states != 1).sum())  # 1: missing
            exprs.append(pl.when(state == _OK).then(value).alias(col))
        keep = [pl.col("tag").cast(pl.String).str.strip_chars()] if long else []
        parts.append(chunk.select(TS, *keep, *exprs))
    frame = pl.concat(parts) if parts else pl.DataFrame({TS: []})
    if long:
        frame = frame.filter(pl.col("tag").is_not_null() & (pl.col("tag") != ""))
        frame = frame.pivot(on="tag", index=TS, values="value", aggregate_function="first")
        return frame, []
    skipped = []
    for col in data:
        if good[col] == 0 or good[col] < cells[col] / 2:
            skipped.append(f"column {col!r}: {good[col]} of {cells[col]} values are numbers")
            frame = frame.drop(col)
    return frame, skipped


def _tag_names(path: Path, columns: list[str], given: Mapping[str, str]) -> dict[str, str]:
    for col, tag in given.items():
        if col not in columns:
            raise ExportError(path, f"--map {col}={tag}: no numeric column {col!r} ({columns})")
        if not TAG_NAME.match(tag):
            raise ExportError(
                path, f"--map {col}={tag}: a tag name starts with a letter and has letters, "
                "digits, _ . - (at most 64)",
            )  # fmt: skip
    taken = set(given.values())
    out = {}
    for col in columns:
        out[col] = given.get(col) or make_tag_name(col, taken)
        taken.add(out[col])
    return out


def _roles(
    path: Path, tag_of: dict[str, str], lists: dict[Role, Iterable[str]]
) -> tuple[dict[str, Role], set[str]]:
    """Role of each column from the lists (by column or tag name), DV for the others."""
    by_name = {**{t: c for c, t in tag_of.items()}, **{c: c for c in tag_of}}
    roles: dict[str, Role] = dict.fromkeys(tag_of, "dv")
    listed: dict[str, Role] = {}
    for role, items in lists.items():
        for item in items:
            col = by_name.get(item)
            if col is None:
                raise ExportError(
                    path, f"--{role} {item}: no numeric column or tag {item!r} "
                    f"(columns: {list(tag_of)})",
                )  # fmt: skip
            if col in listed and listed[col] != role:
                raise ExportError(path, f"{item!r} is given as both {listed[col]} and {role}")
            listed[col] = roles[col] = role
    return roles, set(listed)


def _draft_tag(
    column: str, name: str, role: Role, unit: str, values: pl.Series
) -> tuple[Tag, dict[str, str]]:
    finite = values.filter(values.is_finite())
    q_lo, q_hi = (float(finite.quantile(q, "linear") or 0.0) for q in QUANTILES)
    width = q_hi - q_lo
    pad = MARGIN * width if width > 0 else max(abs(q_hi) * MARGIN, 1.0)
    lo, hi = _round_out(q_lo - pad, q_hi + pad)
    note = {
        "": f"column {column!r}: {finite.len()} values, 0.5 %..99.5 % quantiles {q_lo:g}..{q_hi:g}"
        + (" (constant in the export)" if width == 0 else ""),
        "lo": f"confirm: the quantiles with a {MARGIN:.0%} margin",
        "hi": "confirm",
    }
    if not unit:
        note["unit"] = "fill: the engineering unit"
    extra: dict[str, float] = {}
    if role == "cv":
        median = float(finite.quantile(0.5, "linear") or 0.0)
        extra = {"setpoint": min(max(_nice(median, hi - lo), lo), hi), "weight": 1.0}
        note["setpoint"] = "confirm: the export's median"
        note["weight"] = "confirm: weight in the controller's tracking term"
    elif role == "mv":
        moves = values.diff().abs()
        moves = moves.filter(moves.is_finite() & (moves > 0))
        rate = float(moves.quantile(QUANTILES[1], "linear") or 0.0) if moves.len() else 0.0
        extra = {"rate_limit": _round_out(0.0, rate or 0.1 * (hi - lo))[1]}
        note["rate_limit"] = (
            "confirm: the export's largest move per sample (99.5 % quantile)"
            if rate
            else "fill: the MV never moves in the export (a tenth of the range put here)"
        )
    tag = Tag(
        name=name,
        node=None,
        unit=unit,
        role=role,
        lo=lo,
        hi=hi,
        column=None if column == name else column,
        setpoint=extra.get("setpoint"),
        weight=extra.get("weight"),
        rate_limit=extra.get("rate_limit"),
    )
    return tag, note


def _nice(value: float, span: float) -> float:
    """``value`` rounded to about a thousandth of ``span``."""
    step = 10.0 ** (math.floor(math.log10(span)) - 3) if span > 0 else 1.0
    digits = max(0, -math.floor(math.log10(step)))
    return round(round(value / step) * step, digits)


def _round_out(lo: float, hi: float) -> tuple[float, float]:
    """``lo`` down and ``hi`` up to three significant digits of ``hi - lo``."""
    step = 10.0 ** (math.floor(math.log10(hi - lo)) - 2) if hi > lo else 1.0
    digits = max(0, -math.floor(math.log10(step)))
    return round(math.floor(lo / step) * step, digits), round(math.ceil(hi / step) * step, digits)


def _to_fill(
    spec: PlantSpec, listed: set[str], tag_of: dict[str, str], skipped: list[str]
) -> list[str]:
    defaulted = [tag_of[c] for c in tag_of if c not in listed]
    out = []
    if defaulted:
        out.append(f"role (confirm): not in --cv/--mv/--dv, so DVs: {', '.join(defaulted)}")
    no_unit = [t.name for t in spec.tags if not t.unit]
    if no_unit:
        out.append(f"unit (fill): {', '.join(no_unit)}")
    out.append("lo, hi (confirm): from the export's 0.5 %..99.5 % quantiles, 10 % margin")
    if spec.cvs:
        out.append(f"setpoint, weight (confirm): {', '.join(t.name for t in spec.cvs)}")
    if spec.mvs:
        out.append(f"rate_limit (confirm): {', '.join(t.name for t in spec.mvs)}")
    if not spec.cvs or not spec.mvs:
        out.append("no CV or no MV: a controller needs both (give --cv and --mv)")
    out.append(
        "node, and write_node for MVs (fill, only to collect from or write to the plant): "
        "none set; 'twin spec discover' drafts them from the server"
    )
    out.extend(f"left out: {why}" for why in skipped)
    return out


def _header(path: Path, ts: pl.Series, to_fill: list[str]) -> str:
    first, last = (ts.dt.strftime("%Y-%m-%d %H:%M:%S UTC")[i] for i in (0, -1))
    return "\n".join(
        [
            f"Draft plant spec from {path.name} ({ts.len()} times, {first} .. {last}),",
            "written by 'twin spec infer'. Confirm or fill what the comments say:",
            *(f"  - {line}" for line in to_fill),
            "It has no OPC-UA node ids: it serves import, train, evaluate and what-if as it is.",
            "MV values are read as the value held over the interval that ends at a row; an",
            'export of "the MV applied from this row on" needs mv_timing = "from_row" in [plant].',
            "",
        ]
    )
