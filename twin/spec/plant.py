"""The plant spec as frozen dataclasses: a plant, its tags, their OPC-UA nodes and limits."""

from __future__ import annotations

import base64
import re
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

Role = Literal["cv", "mv", "dv"]
ROLES: tuple[Role, ...] = ("cv", "mv", "dv")

TAG_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.\-]{0,63}$")
RESERVED_NAMES = {"ts", "tag", "value", "quality", "status"}
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


def spec_difference(saved: PlantSpec, given: PlantSpec) -> str:
    """What differs between two specs in what the model depends on ('' when nothing does)."""
    if saved.tag_names != given.tag_names:
        return f"tags {saved.tag_names} (trained) vs {given.tag_names} (given)"
    for a, b in zip(saved.tags, given.tags, strict=True):
        for fld in ("role", "unit"):
            if getattr(a, fld) != getattr(b, fld):
                return (
                    f"tag {a.name!r} has {fld} {getattr(a, fld)!r} in the trained spec "
                    f"but {getattr(b, fld)!r} in the given one"
                )
    if abs(saved.sample_period - given.sample_period) > 1e-9:
        return f"sample period {saved.sample_period:g} s (trained) vs {given.sample_period:g} s (given)"
    return ""
