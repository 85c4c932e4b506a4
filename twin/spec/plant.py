"""The plant spec as frozen dataclasses: a plant, its tags, their OPC-UA nodes and limits."""

from __future__ import annotations

import base64
import re
import uuid
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

from twin.errors import SpecError

Role = Literal["cv", "mv", "dv"]
ROLES: tuple[Role, ...] = ("cv", "mv", "dv")

TAG_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.\-]{0,63}$")
RESERVED_NAMES = {"ts", "tag", "value", "quality", "status"}
_NODE_KINDS = {"i", "s", "g", "b"}


def make_tag_name(text: str, taken: set[str] | frozenset[str] = frozenset()) -> str:
    """A valid tag name made from ``text`` (a column or display name), unlike any in ``taken``.

    Runs of other characters become ``_`` (``XMEAS(01)`` -> ``XMEAS_01``), a name that does not
    start with a letter gets ``T_`` in front, a reserved one a ``_`` behind; ``_2``, ``_3``, ...
    tell apart names that would be equal.
    """
    name = re.sub(r"[^A-Za-z0-9_.\-]+", "_", text.strip()).strip("_.-")
    if not name or not name[0].isalpha():
        name = f"T_{name}".rstrip("_")
    if name.lower() in RESERVED_NAMES:
        name += "_"
    name = name[:64]
    base, n = name, 1
    while name in taken:
        n += 1
        name = f"{base[: 63 - len(str(n))]}_{n}"
    return name


class MvTiming(StrEnum):
    """Which sample interval the MV value stored at a row's timestamp was held over.

    The project's convention is :data:`MV_TIMING` (``to_row``): the MV value at row ``t`` is the
    value held from row ``t-1`` to row ``t``, the move whose effect the CVs measured at ``t``
    already show (no dead time: at once). A move made at row ``t`` (the controller's next move,
    ``mv_plan[0]``) is stored at row ``t+1``. This is what every part reads and writes:
    ``twin plant record`` and the simulated server (an MV is published with the value it held
    over the step that just ended), the collector (a setpoint change is stamped when it happens,
    after the sample it follows, so it lands on the next row), the frames (each row takes the
    latest sample at or before it), the training windows (``future[k]``'s MVs are
    ``mv_plan[k]``), the forecast, the controller (its current MVs are the last row's) and what-if.

    A spec whose data stamps an MV at the start of the interval it acts over (an export of "the
    MV applied from this row on", a controller's move log) says ``mv_timing = "from_row"``; the
    frames then re-time it (:func:`twin.store.frames.make_frame`).
    """

    TO_ROW = "to_row"
    """the value at ``t`` was held over ``(t-1, t]``: it led to the row (the convention)"""
    FROM_ROW = "from_row"
    """the value at ``t`` is applied from ``t`` on, over ``(t, t+1]``: it belongs to row ``t+1``"""

    @property
    def meaning(self) -> str:
        """What a row's MV value is under this timing, in a few words for a person."""
        if self == MvTiming.TO_ROW:
            return "the value held over the sample interval that ends at that row"
        return "the value applied from that row on"


#: The MV timing of the historian's frames and of every model, forecast and plan: a row's MV
#: value is the one held over the sample interval that ends at that row (see :class:`MvTiming`).
MV_TIMING = MvTiming.TO_ROW


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
    """One plant signal. Limits and rates are in the tag's engineering unit (rates per sample).

    ``node`` (and an MV's ``write_node``) may be None in a spec used only offline (import,
    train, evaluate, what-if); :meth:`PlantSpec.require_nodes` checks them where a plant is
    talked to.
    """

    name: str
    node: NodeRef | None
    unit: str  # "" when not known
    role: Role
    lo: float
    hi: float
    description: str = ""
    column: str | None = None
    """the column of an export this tag is read from, when it is not the tag's name"""
    group: str = ""
    """the unit or area the tag belongs to (the app's overview groups by it; "" for none)"""
    # MV only: the largest move per sample, and the node the recommended value is written to.
    rate_limit: float | None = None
    write_node: NodeRef | None = None
    # CV only: target value and its weight in the controller's tracking term (both optional).
    setpoint: float | None = None
    weight: float | None = None
    # CV and MV: operating limits inside the instrument limits ``lo``/``hi`` (soft for a CV, given
    # up in ``priority`` order; hard for the controller's MV moves) and an economic cost rate
    # per unit of the tag's value (negative: a product's value).
    op_lo: float | None = None
    op_hi: float | None = None
    cost: float | None = None
    # CV only: rank of its operating limits (1: given up last; larger: given up first) and the
    # scale of its errors in the controller's objective (default: see ``error_scale``).
    priority: int | None = None
    scale: float | None = None
    # MV only: the value it should rest at when nothing else asks for a move.
    ideal: float | None = None
    # DV only: a clock (a batch timer, hours run): it counts up by ``clock_step`` every sample
    # and, past ``clock_reset`` when given, starts again from ``lo``. Its future is known, so
    # forecasts count it on (see ``twin.model.dataset.dv_future``) where other DVs are held.
    clock_step: float | None = None
    clock_reset: float | None = None

    @property
    def span(self) -> float:
        """``hi - lo``: the instrument range of the tag (used to normalise model errors)."""
        return self.hi - self.lo

    @property
    def op_low(self) -> float:
        """The operating low limit, else the instrument one."""
        return self.lo if self.op_lo is None else self.op_lo

    @property
    def op_high(self) -> float:
        """The operating high limit, else the instrument one."""
        return self.hi if self.op_hi is None else self.op_hi

    @property
    def error_scale(self) -> float:
        """How far off counts as one unit of error in the controller's objective.

        The tag's ``scale`` when given, else its operating range ``op_hi - op_lo`` when both
        are given, else (a spec without either, as every spec before them) the instrument span:
        a 0-3000 kPa transmitter on a reactor held at 2700 +- 40 kPa then makes a 30 kPa
        error count for 1 %; give ``scale`` or operating limits to say what matters.
        """
        if self.scale is not None:
            return self.scale
        if self.op_lo is not None and self.op_hi is not None:
            return self.op_hi - self.op_lo
        return self.span


#: the optional fields of each role, in the order a spec file lists them
_OPTIONAL_FIELDS: dict[str, tuple[str, ...]] = {
    "cv": ("setpoint", "weight", "op_lo", "op_hi", "priority", "scale", "cost"),
    "mv": ("op_lo", "op_hi", "ideal", "cost"),
    "dv": ("clock_step", "clock_reset"),
}


@dataclass(frozen=True)
class PlantSpec:
    """A plant: its name, its sample period and its tags (CVs, MVs and DVs)."""

    name: str
    sample_period: float  # seconds
    tags: tuple[Tag, ...]
    description: str = ""
    source: str = "<spec>"
    mv_timing: MvTiming = MV_TIMING
    """how this plant's data stamps MV values (see :class:`MvTiming`); frames re-time the other"""
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

    def require_nodes(self, purpose: str) -> None:
        """Raise :class:`SpecError` naming every tag without an OPC-UA ``node`` and, when
        ``purpose == "write"``, every MV without a ``write_node``: what talking to a plant needs.

        ``purpose`` says what for (``"collect"``, ``"run"``, ``"write"``) in the message.
        """
        problems = []
        no_node = [t.name for t in self.tags if t.node is None]
        if no_node:
            problems.append(
                f"tags {no_node} have no 'node' (the OPC-UA node id they are read from)"
            )
        if purpose == "write":
            no_write = [t.name for t in self.mvs if t.write_node is None]
            if no_write:
                problems.append(
                    f"MVs {no_write} have no 'write_node' (the node id a move is written to)"
                )
        if problems:
            raise SpecError(
                f"cannot {purpose} with this spec: {'; '.join(problems)}. A spec drafted from "
                "an export is for offline use (import, train, evaluate, what-if): add the node "
                'ids, e.g. node = "ns=2;s=Unit.Tag", or draft the spec from the server with '
                "'twin spec discover'",
                file=self.source,
                field="write_node" if not no_node else "node",
            )

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
            d: dict[str, Any] = {"name": t.name}
            if t.column is not None:
                d["column"] = t.column
            if t.node is not None:
                d["node"] = str(t.node)
            d.update(unit=t.unit, role=t.role, lo=t.lo, hi=t.hi)
            if t.description:
                d["description"] = t.description
            if t.group:
                d["group"] = t.group
            if t.role == "mv":
                d["rate_limit"] = t.rate_limit
                if t.write_node is not None:
                    d["write_node"] = str(t.write_node)
            for fld in _OPTIONAL_FIELDS[t.role]:
                if getattr(t, fld) is not None:
                    d[fld] = getattr(t, fld)
            tags.append(d)
        plant: dict[str, Any] = {"name": self.name, "sample_period_s": self.sample_period}
        if self.description:
            plant["description"] = self.description
        if self.mv_timing != MV_TIMING:  # a spec in the convention is written as before
            plant["mv_timing"] = self.mv_timing.value
        return {"plant": plant, "tags": tags}


def spec_difference(saved: PlantSpec, given: PlantSpec) -> str:
    """What differs between two specs in what the model depends on ('' when nothing does).

    That includes the MV timing: the frames a twin reads are built with the spec it is given,
    so a twin trained with one timing would read its inputs one row off under the other.
    """
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
    if saved.mv_timing != given.mv_timing:
        return (
            f"MV timing {saved.mv_timing.value!r} (trained) vs {given.mv_timing.value!r} (given): "
            "its frames would pair each MV value with CVs one row apart from those it learnt on"
        )
    return ""
