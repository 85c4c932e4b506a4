"""Spec files: load and check a TOML spec (every error names the file, tag and field), write one."""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from twin.errors import SpecError
from twin.spec.fields import clock, cv_fields, get_number, operating
from twin.spec.plant import (
    MV_TIMING,
    RESERVED_NAMES,
    ROLES,
    TAG_NAME,
    MvTiming,
    NodeRef,
    PlantSpec,
    Tag,
)

#: Folder of the built-in plant specs (a source checkout or an editable install).
PLANTS_DIR = Path(__file__).resolve().parents[2] / "data" / "plants"


_PLANT_FIELDS = {"name", "sample_period_s", "description", "mv_timing"}
_COMMON_FIELDS = {"name", "node", "unit", "role", "lo", "hi", "description", "column", "group"}
_ROLE_FIELDS: dict[str, set[str]] = {
    "cv": {"setpoint", "weight", "op_lo", "op_hi", "priority", "scale", "cost"},
    "mv": {"rate_limit", "write_node", "op_lo", "op_hi", "ideal", "cost"},
    "dv": {"clock_step", "clock_reset"},
}


def load_spec(path: str | Path) -> PlantSpec:
    """Load and check a plant spec from a TOML file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(f"cannot read spec file: {exc.strerror or exc}", file=str(path)) from exc
    except UnicodeDecodeError as exc:
        raise SpecError(
            f"not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start}): is it "
            "a TOML spec?",
            file=str(path),
        ) from None
    return parse_spec(text, source=str(path))


def builtin_spec(name: str) -> PlantSpec:
    """The spec of a built-in plant (``data/plants/<name>.toml``)."""
    path = PLANTS_DIR / f"{name}.toml"
    if not path.is_file():
        known = sorted(p.stem for p in PLANTS_DIR.glob("*.toml"))
        raise SpecError(f"no built-in plant {name!r} (built-in: {known})", file=str(path))
    return load_spec(path)


def spec_from_arg(text: str) -> PlantSpec:
    """A spec from a TOML path, or a built-in plant by name (``cstr``): what ``--spec`` takes."""
    path = Path(text)
    if path.suffix == ".toml" or path.exists():
        return load_spec(path)
    return builtin_spec(text)


def parse_spec(text: str, source: str = "<spec>") -> PlantSpec:
    """Parse and check a spec from TOML text; ``source`` names it in error messages."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"not valid TOML: {exc}", file=source) from exc

    plant = doc.get("plant")
    if not isinstance(plant, dict):
        raise SpecError("missing [plant] table", file=source, field="plant")
    _no_unknown(plant, _PLANT_FIELDS, source, None)
    for extra in set(doc) - {"plant", "tags"}:
        raise SpecError("unknown top-level table", file=source, field=extra)

    name = _get(plant, "name", str, source, None)
    if not TAG_NAME.match(name):
        raise SpecError(
            f"plant name {name!r} must be letters, digits, _ . -", file=source, field="name"
        )
    period = get_number(plant, "sample_period_s", source, None)
    if not period > 0:
        raise SpecError(f"must be > 0 seconds, got {period}", file=source, field="sample_period_s")

    mv_timing = _get_mv_timing(plant, source)

    raw_tags = doc.get("tags")
    if not isinstance(raw_tags, list) or not raw_tags:
        raise SpecError(
            "no [[tags]] entries: a plant needs at least one tag", file=source, field="tags"
        )

    tags: list[Tag] = []
    seen: set[str] = set()
    for i, raw in enumerate(raw_tags):
        tag = _parse_tag(raw, i, source)
        if tag.name in seen:
            raise SpecError("duplicate tag name", file=source, tag=tag.name, field="name")
        seen.add(tag.name)
        tags.append(tag)
    _check_nodes_unique(tags, source)
    _check_columns_unique(tags, source)
    return PlantSpec(
        name=name,
        sample_period=float(period),
        tags=tuple(tags),
        description=str(plant.get("description", "")),
        source=source,
        mv_timing=mv_timing,
    )


def _get_mv_timing(plant: dict[str, Any], source: str) -> MvTiming:
    """``[plant] mv_timing``: how the plant's data stamps MV values (default: the convention)."""
    if "mv_timing" not in plant:
        return MV_TIMING
    value = plant["mv_timing"]
    if not isinstance(value, str) or value not in {t.value for t in MvTiming}:
        raise SpecError(
            f'unknown MV timing {value!r}: use "to_row" (the MV value stored at a row is '
            f'{MvTiming.TO_ROW.meaning}; the default) or "from_row" (it is '
            f"{MvTiming.FROM_ROW.meaning})",
            file=source,
            field="mv_timing",
        )
    return MvTiming(value)


def _parse_tag(raw: object, index: int, source: str) -> Tag:
    label = f"#{index + 1}"
    if not isinstance(raw, dict):
        raise SpecError("each [[tags]] entry must be a table", file=source, tag=label)
    if isinstance(raw.get("name"), str):
        label = raw["name"]
    name = _get(raw, "name", str, source, label)
    if not TAG_NAME.match(name) or name in RESERVED_NAMES:
        raise SpecError(
            "tag name must start with a letter, use letters, digits, _ . - (at most 64), "
            f"and not be one of {sorted(RESERVED_NAMES)}",
            file=source,
            tag=name,
            field="name",
        )
    role = _get(raw, "role", str, source, name)
    if role not in ROLES:
        raise SpecError(
            f"unknown role {role!r}: use one of cv, mv, dv", file=source, tag=name, field="role"
        )
    _no_unknown(raw, _COMMON_FIELDS | _ROLE_FIELDS[role], source, name, role=role)

    # node ids are optional: an offline spec has none (PlantSpec.require_nodes checks them)
    node = _get_node(raw, "node", source, name) if "node" in raw else None
    unit = raw.get("unit", "")
    if not isinstance(unit, str):
        raise SpecError(f"must be a string, got {unit!r}", file=source, tag=name, field="unit")
    column = _get(raw, "column", str, source, name) if "column" in raw else None
    group = _get(raw, "group", str, source, name).strip() if "group" in raw else ""
    lo = get_number(raw, "lo", source, name)
    hi = get_number(raw, "hi", source, name)
    if not lo < hi:
        raise SpecError(f"lo ({lo}) must be below hi ({hi})", file=source, tag=name, field="hi")
    kwargs: dict[str, Any] = {}
    if role in ("cv", "mv"):
        kwargs.update(operating(raw, lo, hi, source, name))
    if role == "mv":
        rate = get_number(
            raw, "rate_limit", source, name, why="an MV needs a rate limit per sample"
        )
        if not rate > 0:
            raise SpecError(f"must be > 0, got {rate}", file=source, tag=name, field="rate_limit")
        kwargs["rate_limit"] = rate
        if "write_node" in raw:
            kwargs["write_node"] = _get_node(raw, "write_node", source, name)
        if "ideal" in raw:
            ideal = get_number(raw, "ideal", source, name)
            low, high = kwargs.get("op_lo", lo), kwargs.get("op_hi", hi)
            if not low <= ideal <= high:
                raise SpecError(
                    f"ideal resting value {ideal} is outside the MV's limits [{low}, {high}]",
                    file=source,
                    tag=name,
                    field="ideal",
                )
            kwargs["ideal"] = ideal
    elif role == "cv":
        kwargs.update(cv_fields(raw, lo, hi, kwargs, source, name))
    else:
        kwargs.update(clock(raw, lo, source, name))
    return Tag(
        name=name,
        node=node,
        unit=unit.strip(),
        role=role,  # checked against ROLES above
        lo=lo,
        hi=hi,
        description=str(raw.get("description", "")),
        column=column,
        group=group,
        **kwargs,
    )


def _check_nodes_unique(tags: list[Tag], source: str) -> None:
    seen: dict[str, str] = {}
    for t in tags:
        for fld, node in (("node", t.node), ("write_node", t.write_node)):
            if node is None:
                continue
            key = str(node)
            if key in seen and not (fld == "write_node" and seen[key] == t.name):
                raise SpecError(
                    f"node {key} is already used by tag {seen[key]!r}",
                    file=source,
                    tag=t.name,
                    field=fld,
                )
            seen.setdefault(key, t.name)


def _check_columns_unique(tags: list[Tag], source: str) -> None:
    """No two tags read the same export column (a tag's ``column``, or else its name)."""
    seen: dict[str, str] = {}
    for t in tags:
        key = t.column if t.column is not None else t.name
        if key in seen:
            raise SpecError(
                f"export column {key!r} is already read by tag {seen[key]!r}",
                file=source,
                tag=t.name,
                field="column" if t.column is not None else "name",
            )
        seen[key] = t.name


def _no_unknown(
    table: dict[str, Any], allowed: set[str], source: str, tag: str | None, role: str | None = None
) -> None:
    for key in table:
        if key not in allowed:
            hint = f" for role {role!r}" if role else ""
            raise SpecError(
                f"unknown field{hint} (allowed: {', '.join(sorted(allowed))})",
                file=source,
                tag=tag,
                field=key,
            )


def _get(table: dict[str, Any], key: str, typ: type, source: str, tag: str | None) -> Any:
    if key not in table:
        raise SpecError("missing", file=source, tag=tag, field=key)
    value = table[key]
    if not isinstance(value, typ) or (isinstance(value, str) and not value.strip()):
        raise SpecError(
            f"must be a non-empty {typ.__name__}, got {value!r}", file=source, tag=tag, field=key
        )
    return value


def _get_node(table: dict[str, Any], key: str, source: str, tag: str) -> NodeRef:
    text = _get(table, key, str, source, tag)
    try:
        return NodeRef.parse(text)
    except ValueError as exc:
        raise SpecError(f"bad node id: {exc}", file=source, tag=tag, field=key) from None


def spec_to_toml(
    spec: PlantSpec, header: str = "", notes: Mapping[str, Mapping[str, str]] | None = None
) -> str:
    """The spec as TOML text in the ``data/plants`` layout (strings JSON-escaped, TOML-valid).

    For a draft: ``header`` becomes comment lines at the top, and ``notes[tag][field]`` a
    comment after that field of that tag (``notes[tag][""]``: a comment above the tag).
    """

    def value(v: Any) -> str:
        if isinstance(v, str):
            return json.dumps(v)
        return str(v) if isinstance(v, int) and not isinstance(v, bool) else repr(float(v))

    def comment(text: str) -> list[str]:
        return [f"# {line}".rstrip() for line in text.splitlines()]

    notes = notes or {}
    doc = spec.to_dict()
    lines = comment(header) + ["[plant]"] + [f"{k} = {value(v)}" for k, v in doc["plant"].items()]
    for tag in doc["tags"]:
        note = notes.get(tag["name"], {})
        lines += ["", *comment(note.get("", "")), "[[tags]]"]
        for k, v in tag.items():
            if v is not None:
                text = note.get(k)
                lines.append(f"{k} = {value(v)}" + (f"  # {text}" if text else ""))
    return "\n".join(lines) + "\n"
