"""The simulated plant's OPC-UA address space: node ids, engineering units, the setpoint guard.

:func:`build_address_space` lays out a plant from its spec, so it works for any
:class:`~connectors.sim.base.SimPlant`: every tag sits at exactly its spec node id, with
``EURange`` and ``EngineeringUnits`` properties; every MV has a writable setpoint at its
``write_node``; ``<plant>.Tripped`` and ``<plant>.TripReason`` say when the plant left its safe
envelope.

A client write to a setpoint is checked against the tag's ``[lo, hi]`` by :class:`SetpointGuard`:
outside (or NaN) it is refused with ``BadOutOfRange`` as that write's own result, never clamped.
asyncua's value setter (``Server.set_attribute_value_setter``) can only refuse by raising, which
turns the whole Write request into a service fault (and leaves earlier items of the request
applied), so the check sits in the server's write service instead and answers per item.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import cast

from asyncua import Node, Server, ua
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.server.address_space import AddressSpace, AttributeService

from connectors.sim.base import SimPlant
from twin.errors import ConnectorError
from twin.spec import NodeRef, PlantSpec, Tag

log = logging.getLogger(__name__)

#: OPC-UA namespace of the UNECE (UN/CEFACT Recommendation 20) unit codes, OPC-UA Part 8 §5.6.3
UNECE_NAMESPACE = "http://www.opcfoundation.org/UA/units/un/cefact"
#: spec unit -> (UNECE common code, description); units not listed get a display name only
UNECE_UNITS: dict[str, tuple[str, str]] = {
    "K": ("KEL", "kelvin"),
    "°C": ("CEL", "degree Celsius"),
    "mol/L": ("C38", "mole per litre"),
    "cm": ("CMT", "centimetre"),
    "m": ("MTR", "metre"),
    "V": ("VLT", "volt"),
    "lb/min": ("K78", "pound (avoirdupois) per minute"),
    "%": ("P1", "percent"),
    "s": ("SEC", "second"),
}


def eu_information(unit: str) -> ua.EUInformation:
    """The EUInformation for a spec unit: UNECE code where known, else the display name alone."""
    code, description = UNECE_UNITS.get(unit, ("", unit))
    unit_id = -1  # Part 8: -1 when no UNECE code applies
    if code:
        unit_id = 0
        for ch in code:  # Part 8 §5.6.3: the code's ASCII bytes, big-endian, in an Int32
            unit_id = (unit_id << 8) | ord(ch)
    return ua.EUInformation(
        NamespaceUri=UNECE_NAMESPACE if code else None,
        UnitId=unit_id,
        DisplayName=ua.LocalizedText(unit, "en"),
        Description=ua.LocalizedText(description, "en"),
    )


def plant_namespace(spec: PlantSpec) -> str:
    """The plant's namespace URI: the first ``nsu=`` of its tags, else ``urn:process-twin:sim:<name>``."""
    for tag in spec.tags:
        if tag.node is not None and tag.node.namespace_uri:
            return tag.node.namespace_uri
    return f"urn:process-twin:sim:{spec.name}"


def trip_nodes(spec: PlantSpec) -> tuple[NodeRef, NodeRef]:
    """Node ids of ``<plant>.Tripped`` (Boolean) and ``<plant>.TripReason`` (String)."""
    uri = plant_namespace(spec)
    tripped = NodeRef(kind="s", identifier=f"{spec.name}.Tripped", namespace_uri=uri)
    return tripped, NodeRef(kind="s", identifier=f"{spec.name}.TripReason", namespace_uri=uri)


@dataclass(frozen=True)
class PlantNodes:
    """Where a served plant's values live in the address space."""

    values: dict[str, ua.NodeId]
    """tag name -> the node of its value"""
    setpoints: dict[str, ua.NodeId]
    """MV name -> the node of its writable setpoint"""
    trip: tuple[ua.NodeId, ua.NodeId]
    """the ``<plant>.Tripped`` and ``<plant>.TripReason`` nodes"""


async def build_address_space(server: Server, plant: SimPlant) -> PlantNodes:
    """Add the plant's folder, tags, setpoints and trip nodes to ``server`` (after ``init``)."""
    spec = plant.spec
    spec.require_nodes("serve")
    default_idx = await server.register_namespace(plant_namespace(spec))
    refs = [t.node for t in spec.tags if t.node] + [t.write_node for t in spec.mvs if t.write_node]
    for ref in refs:
        if ref.namespace_uri:
            await server.register_namespace(ref.namespace_uri)
    namespaces = await server.get_namespace_array()
    folder = await server.nodes.objects.add_object(
        _nid(spec.name, default_idx), ua.QualifiedName(spec.name, default_idx)
    )
    await folder.write_attribute(
        ua.AttributeIds.Description,
        ua.DataValue(ua.Variant(ua.LocalizedText(spec.description))),
    )
    values = plant.measure()
    nodes: dict[str, ua.NodeId] = {}
    setpoints: dict[str, ua.NodeId] = {}
    for tag in spec.tags:
        assert tag.node is not None  # require_nodes above
        nodes[tag.name] = await _add_analog(
            folder, tag, tag.node, tag.name, values[tag.name], namespaces
        )
        if tag.role == "mv" and tag.write_node is not None:
            u = float(plant.u[plant.mv_names.index(tag.name)])
            setpoints[tag.name] = await _add_analog(
                folder, tag, tag.write_node, f"{tag.name}.SP", u, namespaces, writable=True
            )
    tripped, reason = (_node_id(ref, namespaces, spec.name) for ref in trip_nodes(spec))
    await folder.add_variable(tripped, ua.QualifiedName("Tripped", default_idx), False)
    await folder.add_variable(reason, ua.QualifiedName("TripReason", default_idx), "")
    return PlantNodes(nodes, setpoints, (tripped, reason))


async def _add_analog(
    folder: Node,
    tag: Tag,
    ref: NodeRef,
    browse_name: str,
    value: float,
    namespaces: Sequence[str],
    *,
    writable: bool = False,
) -> ua.NodeId:
    node_id = _node_id(ref, namespaces, tag.name)
    var = await folder.add_variable(
        node_id,
        ua.QualifiedName(browse_name, node_id.NamespaceIndex),
        ua.Variant(float(value), ua.VariantType.Double),
        datatype=ua.ObjectIds.Double,
    )
    what = "setpoint of " if writable else ""
    text = f"{what}{tag.description or tag.name} [{tag.unit}]"
    await var.write_attribute(
        ua.AttributeIds.Description, ua.DataValue(ua.Variant(ua.LocalizedText(text)))
    )
    await var.add_property(
        _child_id(node_id, "EURange"),
        ua.QualifiedName("EURange", 0),
        ua.Range(Low=tag.lo, High=tag.hi),
        datatype=ua.ObjectIds.Range,
    )
    await var.add_property(
        _child_id(node_id, "EngineeringUnits"),
        ua.QualifiedName("EngineeringUnits", 0),
        eu_information(tag.unit),
        datatype=ua.ObjectIds.EUInformation,
    )
    if writable:
        await var.set_writable()
    return node_id


_ADMIN = User(role=UserRole.Admin)  # asyncua's default for in-process writes


class SetpointGuard(AttributeService):
    """asyncua's write service with a range check on setpoints, answered per written item."""

    def __init__(self, aspace: AddressSpace, setpoints: dict[ua.NodeId, Tag]) -> None:
        super().__init__(aspace)
        self.setpoints = setpoints

    async def write(self, params: ua.WriteParameters, user: User = _ADMIN) -> list[ua.StatusCode]:
        refusals = [self._refusal(wv) for wv in params.NodesToWrite]
        passed = ua.WriteParameters(
            NodesToWrite=[
                wv for wv, r in zip(params.NodesToWrite, refusals, strict=True) if r is None
            ]
        )
        done = iter(await super().write(passed, user=user) if passed.NodesToWrite else [])
        results = [r if r is not None else next(done) for r in refusals]
        for wv, status in zip(params.NodesToWrite, results, strict=True):
            tag = self.setpoints.get(wv.NodeId)
            if tag is not None and wv.AttributeId == ua.AttributeIds.Value and status.is_good():
                log.info("setpoint %s <- %g %s", tag.name, wv.Value.Value.Value, tag.unit)
        return results

    def _refusal(self, wv: ua.WriteValue) -> ua.StatusCode | None:
        tag = self.setpoints.get(wv.NodeId)
        if tag is None or wv.AttributeId != ua.AttributeIds.Value:
            return None
        dv = wv.Value
        if dv.StatusCode is not None and not dv.StatusCode.is_good():
            log.warning("refused write to %s: a setpoint takes a value, not a status", tag.name)
            return status_code(ua.StatusCodes.BadWriteNotSupported)
        if dv.Value is None or dv.Value.VariantType != ua.VariantType.Double:
            return None  # asyncua answers BadTypeMismatch
        value = dv.Value.Value
        if not (isinstance(value, float) and math.isfinite(value) and tag.lo <= value <= tag.hi):
            log.warning("refused %s = %r: outside [%g, %g]", tag.name, value, tag.lo, tag.hi)
            return status_code(ua.StatusCodes.BadOutOfRange)
        return None


# asyncua annotates its builtins with its own int/str/datetime subclasses; these helpers take the
# plain Python values it accepts at run time.
def status_code(code: int) -> ua.StatusCode:
    """The StatusCode of a numeric code (``ua.StatusCodes.*``)."""
    return ua.StatusCode(ua.UInt32(code))


def data_value(
    variant: ua.Variant | None, ts: datetime, code: int = ua.StatusCodes.Good
) -> ua.DataValue:
    """A DataValue with status ``code``, stamped ``ts`` as both source and server time."""
    stamp = cast(ua.DateTime, ts)
    return ua.DataValue(
        variant, StatusCode=status_code(code), SourceTimestamp=stamp, ServerTimestamp=stamp
    )


def _nid(identifier: str | int, namespace: int) -> ua.NodeId:
    return ua.NodeId(cast(ua.String, identifier), ua.Int16(namespace))


def _node_id(ref: NodeRef, namespaces: Sequence[str], tag: str) -> ua.NodeId:
    try:
        node_id = ua.NodeId.from_string(ref.resolve(list(namespaces)))
    except (LookupError, ValueError) as exc:
        raise ConnectorError(f"tag {tag!r}: cannot serve node {ref}: {exc}") from exc
    if node_id.NamespaceIndex >= len(namespaces):
        raise ConnectorError(
            f"tag {tag!r}: node {ref} names namespace index {node_id.NamespaceIndex}, but the "
            f"server has only {list(namespaces)}; use nsu=<uri> in the spec"
        )
    return node_id


def _child_id(parent: ua.NodeId, name: str) -> ua.NodeId:
    """``<parent>.<name>`` for string ids; else one the server assigns (identifier 0)."""
    if isinstance(parent.Identifier, str):
        return _nid(f"{parent.Identifier}.{name}", parent.NamespaceIndex)
    return _nid(0, parent.NamespaceIndex)
