"""Plant specs: which tags a plant has, where they live on the OPC-UA server, and their limits.

A spec is a TOML file (see ``data/plants/*.toml`` and the README). Loading it returns frozen
dataclasses; anything wrong raises :class:`~twin.errors.SpecError` naming the file, the tag and
the field, so an engineer can fix the file without reading this code.
"""

from __future__ import annotations

import base64
import math
import re
import tomllib
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from twin.errors import SpecError

Role = Literal["cv", "mv", "dv"]
ROLES: tuple[Role, ...] = ("cv", "mv", "dv")

#: Folder of the built-in plant specs (a source checkout or an editable install).
PLANTS_DIR = Path(__file__).resolve().parents[2] / "data" / "plants"

_TAG_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.\-]{0,63}$")
_RESERVED_NAMES = {"ts", "tag", "value", "quality", "status"}
_NODE_KINDS = {"i", "s", "g", "b"}


@dataclass(frozen=True)
class NodeRef:
    """An OPC-UA node id as written in a spec: ``ns=2;s=Tag`` or ``nsu=urn:plant;s=Tag``.

    ``nsu=`` names the namespace by URI, which survives a server restart that renumbers the
    namespace array; :meth:`resolve` turns it into the ``ns=<index>`` form for one session.
    """

    kind: str  # one of i, s, g, b
    identifier: str
    namespace_index: int | None = None
    namespace_uri: str | None = None

    @classmethod
    def parse(cls, text: str) -> NodeRef:
        """Parse ``[ns=<int>;|nsu=<uri>;]<i|s|g|b>=<id>``; raises ValueError naming the fault."""
        if not isinstance(text, str) or not text.strip():
            raise ValueError("node id must be a non-empty string such as 'ns=2;s=Reactor.T'")
        rest = text.strip()
        index: int | None = None
        uri: str | None = None
        if rest.startswith("nsu="):
            uri, sep, rest = rest[4:].partition(";")
            if not sep or not uri:
                raise ValueError(f"{text!r}: 'nsu=' needs a namespace URI followed by ';'")
        elif rest.startswith("ns="):
            raw, sep, rest = rest[3:].partition(";")
            if not sep or not raw.isdigit():
                raise ValueError(f"{text!r}: 'ns=' needs a namespace index (0, 1, 2, ...) and ';'")
            index = int(raw)
            if index > 65535:
                raise ValueError(f"{text!r}: namespace index {index} is above 65535")
        kind, sep, ident = rest.partition("=")
        if not sep or kind not in _NODE_KINDS:
            raise ValueError(f"{text!r}: identifier must start with i=, s=, g= or b=")
        if not ident:
            raise ValueError(f"{text!r}: empty identifier")
        if kind == "i" and not (ident.isdigit() and int(ident) < 2**32):
            raise ValueError(f"{text!r}: numeric identifier must be an integer in 0..2^32-1")
        if kind == "g":
            try:
                uuid.UUID(ident)
            except ValueError:
                raise ValueError(f"{text!r}: 'g=' identifier is not a GUID") from None
        if kind == "b":
            try:
                base64.b64decode(ident, validate=True)
            except ValueError:
                raise ValueError(f"{text!r}: 'b=' identifier is not base64") from None
        if index is None and uri is None:
            index = 0
        return cls(kind=kind, identifier=ident, namespace_index=index, namespace_uri=uri)

    def resolve(self, namespace_array: list[str] | tuple[str, ...]) -> str:
        """The ``ns=<index>;...`` string for a server whose NamespaceArray is given."""
        if self.namespace_uri is None:
            return str(self)
        try:
            index = list(namespace_array).index(self.namespace_uri)
        except ValueError:
            raise LookupError(
                f"namespace URI {self.namespace_uri!r} is not served by this server "
                f"(its namespaces: {list(namespace_array)})"
            ) from None
        return f"ns={index};{self.kind}={self.identifier}"

    def __str__(self) -> str:
        prefix = f"nsu={self.namespace_uri};" if self.namespace_uri else ""
        if self.namespace_index:
            prefix = f"ns={self.namespace_index};"
        return f"{prefix}{self.kind}={self.identifier}"


@dataclass(frozen=True)
class Tag:
    """One plant signal. Limits and rates are in the tag's engineering unit (rates per sample)."""

    name: str
    node: NodeRef
    unit: str
    role: Role
    lo: float
    hi: float
    description: str = ""
    # MV only: the largest move per sample, and the node the recommended value is written to.
    rate_limit: float | None = None
    write_node: NodeRef | None = None
    # CV only: target value and its weight in the controller's tracking term.
    setpoint: float | None = None
    weight: float | None = None

    @property
    def span(self) -> float:
        """``hi - lo``: the natural scale of the tag, used to normalise errors."""
        return self.hi - self.lo


@dataclass(frozen=True)
class PlantSpec:
    """A plant: its name, its sample period and its tags (CVs, MVs and DVs)."""

    name: str
    sample_period: float  # seconds
    tags: tuple[Tag, ...]
    description: str = ""
    source: str = "<spec>"
    _by_name: dict[str, Tag] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", {t.name: t for t in self.tags})

    def tag(self, name: str) -> Tag:
        """The tag called ``name``; KeyError naming the plant's tags if there is none."""
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(
                f"plant {self.name!r} has no tag {name!r} (tags: {self.tag_names})"
            ) from None

    def by_role(self, role: Role) -> tuple[Tag, ...]:
        return tuple(t for t in self.tags if t.role == role)

    @property
    def tag_names(self) -> list[str]:
        return [t.name for t in self.tags]

    @property
    def cvs(self) -> tuple[Tag, ...]:
        return self.by_role("cv")

    @property
    def mvs(self) -> tuple[Tag, ...]:
        return self.by_role("mv")

    @property
    def dvs(self) -> tuple[Tag, ...]:
        return self.by_role("dv")

    def to_dict(self) -> dict[str, Any]:
        """The spec as plain data, in the TOML layout (for saving beside a model)."""
        tags = []
        for t in self.tags:
            d: dict[str, Any] = {
                "name": t.name,
                "node": str(t.node),
                "unit": t.unit,
                "role": t.role,
                "lo": t.lo,
                "hi": t.hi,
            }
            if t.description:
                d["description"] = t.description
            if t.role == "mv":
                d["rate_limit"] = t.rate_limit
                d["write_node"] = str(t.write_node)
            if t.role == "cv":
                d["setpoint"] = t.setpoint
                d["weight"] = t.weight
            tags.append(d)
        plant = {"name": self.name, "sample_period_s": self.sample_period}
        if self.description:
            plant["description"] = self.description
        return {"plant": plant, "tags": tags}


# --- loading -------------------------------------------------------------------------------

_PLANT_FIELDS = {"name", "sample_period_s", "description"}
_COMMON_FIELDS = {"name", "node", "unit", "role", "lo", "hi", "description"}
_ROLE_FIELDS: dict[str, set[str]] = {
    "cv": {"setpoint", "weight"},
    "mv": {"rate_limit", "write_node"},
    "dv": set(),
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
    if not _TAG_NAME.match(name):
        raise SpecError(
            f"plant name {name!r} must be letters, digits, _ . -", file=source, field="name"
        )
    period = _get_number(plant, "sample_period_s", source, None)
    if not period > 0:
        raise SpecError(f"must be > 0 seconds, got {period}", file=source, field="sample_period_s")

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
    return PlantSpec(
        name=name,
        sample_period=float(period),
        tags=tuple(tags),
        description=str(plant.get("description", "")),
        source=source,
    )


def _parse_tag(raw: object, index: int, source: str) -> Tag:
    label = f"#{index + 1}"
    if not isinstance(raw, dict):
        raise SpecError("each [[tags]] entry must be a table", file=source, tag=label)
    if isinstance(raw.get("name"), str):
        label = raw["name"]
    name = _get(raw, "name", str, source, label)
    if not _TAG_NAME.match(name) or name in _RESERVED_NAMES:
        raise SpecError(
            "tag name must start with a letter, use letters, digits, _ . - (at most 64), "
            f"and not be one of {sorted(_RESERVED_NAMES)}",
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

    node = _get_node(raw, "node", source, name)
    unit = _get(raw, "unit", str, source, name)
    lo = _get_number(raw, "lo", source, name)
    hi = _get_number(raw, "hi", source, name)
    if not lo < hi:
        raise SpecError(f"lo ({lo}) must be below hi ({hi})", file=source, tag=name, field="hi")
    kwargs: dict[str, Any] = {}
    if role == "mv":
        rate = _get_number(
            raw, "rate_limit", source, name, why="an MV needs a rate limit per sample"
        )
        if not rate > 0:
            raise SpecError(f"must be > 0, got {rate}", file=source, tag=name, field="rate_limit")
        kwargs["rate_limit"] = rate
        kwargs["write_node"] = _get_node(raw, "write_node", source, name)
    elif role == "cv":
        sp = _get_number(raw, "setpoint", source, name)
        if not lo <= sp <= hi:
            raise SpecError(
                f"setpoint {sp} is outside [lo, hi] = [{lo}, {hi}]",
                file=source,
                tag=name,
                field="setpoint",
            )
        weight = _get_number(raw, "weight", source, name)
        if weight < 0:
            raise SpecError(f"must be >= 0, got {weight}", file=source, tag=name, field="weight")
        kwargs["setpoint"] = sp
        kwargs["weight"] = weight
    return Tag(
        name=name,
        node=node,
        unit=unit,
        role=role,  # checked against ROLES above
        lo=lo,
        hi=hi,
        description=str(raw.get("description", "")),
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


def _get_number(
    table: dict[str, Any], key: str, source: str, tag: str | None, why: str = ""
) -> float:
    if key not in table:
        raise SpecError("missing" + (f" ({why})" if why else ""), file=source, tag=tag, field=key)
    value = table[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise SpecError(f"must be a finite number, got {value!r}", file=source, tag=tag, field=key)
    return float(value)


def _get_node(table: dict[str, Any], key: str, source: str, tag: str) -> NodeRef:
    text = _get(table, key, str, source, tag)
    try:
        return NodeRef.parse(text)
    except ValueError as exc:
        raise SpecError(f"bad node id: {exc}", file=source, tag=tag, field=key) from None
