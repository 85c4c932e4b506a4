"""What a live OPC-UA server says about its variables: browse the address space, read units.

    async with await connect_client(url, Security()) as client:   # or any connected Client
        found = await discover(client, DiscoverOptions(sample_s=2.0))

:func:`discover` walks the address space from a root (default the Objects folder) along its
hierarchical references (Organizes, HasComponent and their subtypes, never properties), bounded
in depth and count, and keeps every numeric scalar variable with its node id (``nsu=`` form),
names, access level, ``EngineeringUnits`` and ``EURange``; variables without a range get a
short sampling of values. :func:`read_engineering_info` is the unit-and-range read alone, also
used by the collector to check a spec against its server. The spec draft written from what is
found is ``twin spec discover``'s job (:mod:`twin.cli.spec_discover`).
"""

from __future__ import annotations

import asyncio
import base64
import fnmatch
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from asyncua import Client, ua

from twin.spec import NodeRef

log = logging.getLogger(__name__)

#: DataType node ids (namespace 0) of the numeric scalar types a tag can be
NUMERIC_TYPES = frozenset(
    {
        ua.ObjectIds.SByte,
        ua.ObjectIds.Byte,
        ua.ObjectIds.Int16,
        ua.ObjectIds.UInt16,
        ua.ObjectIds.Int32,
        ua.ObjectIds.UInt32,
        ua.ObjectIds.Int64,
        ua.ObjectIds.UInt64,
        ua.ObjectIds.Float,
        ua.ObjectIds.Double,
        ua.ObjectIds.Number,
        ua.ObjectIds.Integer,
        ua.ObjectIds.UInteger,
        ua.ObjectIds.Decimal,
    }
)
#: hierarchical references that lead to properties or event sources, not to plant signals
_NOT_FOLLOWED = frozenset(
    {ua.ObjectIds.HasProperty, ua.ObjectIds.HasEventSource, ua.ObjectIds.HasNotifier}
)
_PER_CALL = 200  # nodes per Read / TranslateBrowsePaths call: below most servers' limits


@dataclass(frozen=True)
class EngineeringInfo:
    """A variable's ``EngineeringUnits`` and ``EURange`` properties (None where not published)."""

    unit: str | None = None
    """the EUInformation's display name, e.g. ``°C``"""
    unit_id: int | None = None
    """the EUInformation's UnitId (UNECE code as an Int32; -1 when none)"""
    eu_range: tuple[float, float] | None = None
    """EURange ``(Low, High)``"""

    def to_json(self) -> dict[str, Any]:
        """Plain data for ``server_info.json``."""
        return {
            "unit": self.unit,
            "unit_id": self.unit_id,
            "eu_range": list(self.eu_range) if self.eu_range else None,
        }


@dataclass(frozen=True)
class DiscoverOptions:
    """Where and how far to browse, which variables to keep, how long to sample."""

    root: str | None = None
    """node id to start from (``ns=``/``nsu=`` form); None: the Objects folder"""
    include: tuple[str, ...] = ()
    """glob patterns on a variable's browse path (``Plant/Tank/Level``), display name or node
    id; a variable matching none is left out (empty: keep all)"""
    max_depth: int = 10
    """references followed from the root at most"""
    max_nodes: int = 20_000
    """nodes browsed at most (the walk stops with a warning beyond)"""
    sample_s: float = 2.0
    """seconds of value sampling for variables without EURange (0: one read)"""


@dataclass(frozen=True)
class Variable:
    """A numeric scalar variable found on the server."""

    node: NodeRef
    """its node id, namespace by URI"""
    path: tuple[str, ...]
    """display names from the root's child down to it"""
    description: str
    writable: bool
    """the session may write its value (UserAccessLevel CurrentWrite)"""
    info: EngineeringInfo
    samples: tuple[float, ...] = ()
    """values read while sampling (only for variables without EURange)"""

    @property
    def display_name(self) -> str:
        return self.path[-1]


@dataclass
class Discovered:
    """The result of :func:`discover`: the variables kept and what limited the walk."""

    variables: list[Variable] = field(default_factory=list)
    browsed: int = 0
    """nodes browsed"""
    truncated: bool = False
    """the walk hit ``max_nodes`` or ``max_depth`` before its end"""
    namespaces: list[str] = field(default_factory=list)


def node_ref(node_id: ua.NodeId, namespaces: Sequence[str]) -> NodeRef:
    """The spec form of ``node_id``: namespace by URI (``nsu=``) outside namespace 0."""
    kinds = {
        ua.NodeIdType.String: "s",
        ua.NodeIdType.Guid: "g",
        ua.NodeIdType.ByteString: "b",
    }
    kind = kinds.get(node_id.NodeIdType, "i")
    ident = node_id.Identifier
    text = base64.b64encode(ident).decode() if isinstance(ident, bytes) else str(ident)
    idx = node_id.NamespaceIndex
    if idx == 0:
        return NodeRef(kind=kind, identifier=text, namespace_index=0)
    return NodeRef(kind=kind, identifier=text, namespace_uri=namespaces[idx])


async def read_engineering_info(
    client: Client, nodes: Sequence[ua.NodeId]
) -> list[EngineeringInfo]:
    """``EngineeringUnits`` and ``EURange`` of each node (batched; missing ones stay None)."""
    names = ("EngineeringUnits", "EURange")
    paths = [
        ua.BrowsePath(
            StartingNode=node,
            RelativePath=ua.RelativePath(
                Elements=[
                    ua.RelativePathElement(
                        ReferenceTypeId=_ns0(ua.ObjectIds.HasProperty),
                        IsInverse=cast(ua.Boolean, False),
                        IncludeSubtypes=cast(ua.Boolean, True),
                        TargetName=ua.QualifiedName(name, 0),
                    )
                ]
            ),
        )
        for node in nodes
        for name in names
    ]
    targets: list[ua.NodeId | None] = []
    for i in range(0, len(paths), _PER_CALL):
        results = await client.uaclient.translate_browsepaths_to_nodeids(paths[i : i + _PER_CALL])
        for r in results:
            good = r.StatusCode.is_good() and r.Targets
            targets.append(r.Targets[0].TargetId if good else None)
    found = [t for t in targets if t is not None]
    values = iter(await _read(client, found, ua.AttributeIds.Value))
    read = [next(values) if t is not None else None for t in targets]
    out = []
    for eu, rng in zip(read[0::2], read[1::2], strict=True):
        unit = unit_id = eu_range = None
        if isinstance(eu, ua.EUInformation):
            unit = eu.DisplayName.Text if eu.DisplayName is not None else None
            unit_id = int(eu.UnitId) if eu.UnitId is not None else None
        if isinstance(rng, ua.Range) and math.isfinite(rng.Low) and math.isfinite(rng.High):
            eu_range = (float(rng.Low), float(rng.High))
        out.append(EngineeringInfo(unit or None, unit_id, eu_range))
    return out


def _ns0(identifier: int) -> ua.NodeId:
    """A namespace-0 node id (asyncua's stubs want its own Int32 where it takes an int)."""
    return ua.NodeId(cast(ua.Int32, identifier))


async def _read(client: Client, nodes: Sequence[ua.NodeId], attr: ua.AttributeIds) -> list[Any]:
    """One attribute of many nodes, in calls of :data:`_PER_CALL`; None where the read failed."""
    out: list[Any] = []
    for i in range(0, len(nodes), _PER_CALL):
        for dv in await client.uaclient.read_attributes(list(nodes[i : i + _PER_CALL]), attr):
            good = dv.StatusCode is None or dv.StatusCode.is_good()
            out.append(dv.Value.Value if good and dv.Value is not None else None)
    return out


async def discover(client: Client, options: DiscoverOptions | None = None) -> Discovered:
    """Every numeric scalar variable under ``options.root`` (see the module doc)."""
    opts = options or DiscoverOptions()
    found = Discovered(namespaces=list(await client.get_namespace_array()))
    root = _ns0(ua.ObjectIds.ObjectsFolder)
    if opts.root:
        root = ua.NodeId.from_string(NodeRef.parse(opts.root).resolve(found.namespaces))
    candidates = await _walk(client, root, opts, found)
    if not candidates:
        return found
    ids = [nid for nid, _ in candidates]
    types = await _read(client, ids, ua.AttributeIds.DataType)
    ranks = await _read(client, ids, ua.AttributeIds.ValueRank)
    access = await _read(client, ids, ua.AttributeIds.UserAccessLevel)
    descriptions = await _read(client, ids, ua.AttributeIds.Description)
    keep = [
        i
        for i, (dtype, rank) in enumerate(zip(types, ranks, strict=True))
        if isinstance(dtype, ua.NodeId)
        and dtype.NamespaceIndex == 0
        and dtype.Identifier in NUMERIC_TYPES
        and rank == -1
    ]
    infos = await read_engineering_info(client, [ids[i] for i in keep])
    samples = await _sample(
        client, [ids[i] for i, info in zip(keep, infos, strict=True) if info.eu_range is None], opts
    )
    for i, info in zip(keep, infos, strict=True):
        text = descriptions[i].Text if isinstance(descriptions[i], ua.LocalizedText) else None
        found.variables.append(
            Variable(
                node=node_ref(ids[i], found.namespaces),
                path=candidates[i][1],
                description=text or "",
                writable=bool((access[i] or 0) & ua.AccessLevel.CurrentWrite.mask),
                info=info,
                samples=tuple(samples.get(ids[i], ())),
            )
        )
    return found


async def _walk(
    client: Client, root: ua.NodeId, opts: DiscoverOptions, found: Discovered
) -> list[tuple[ua.NodeId, tuple[str, ...]]]:
    """Breadth-first walk: the variables under ``root`` that ``opts.include`` keeps, with paths."""
    server_object = _ns0(ua.ObjectIds.Server)
    seen = {root}
    level: list[tuple[ua.NodeId, tuple[str, ...]]] = [(root, ())]
    out: list[tuple[ua.NodeId, tuple[str, ...]]] = []
    mask = cast(ua.NodeClass, ua.NodeClass.Object | ua.NodeClass.Variable)
    for depth in range(opts.max_depth + 1):
        if not level:
            return out
        if depth == opts.max_depth or found.browsed + len(level) > opts.max_nodes:
            found.truncated = True
            log.warning(
                "stopped browsing at depth %d after %d nodes: narrow it with --root",
                depth,
                found.browsed,
            )
            return out
        following: list[tuple[ua.NodeId, tuple[str, ...]]] = []
        for node_id, path in level:
            found.browsed += 1
            refs = await client.get_node(node_id).get_references(
                refs=ua.ObjectIds.HierarchicalReferences,
                direction=ua.BrowseDirection.Forward,
                nodeclassmask=mask,
            )
            for ref in refs:
                child = ref.NodeId
                if (
                    ref.ReferenceTypeId.Identifier in _NOT_FOLLOWED
                    and ref.ReferenceTypeId.NamespaceIndex == 0
                ):
                    continue
                if child in seen or child == server_object:
                    continue
                seen.add(child)
                name = ref.DisplayName.Text or ref.BrowseName.Name or str(child.Identifier)
                child_path = (*path, name)
                following.append((child, child_path))
                if (
                    ref.NodeClass == ua.NodeClass.Variable
                    and child.NamespaceIndex != 0
                    and _included(child, child_path, found.namespaces, opts.include)
                ):
                    out.append((child, child_path))
        level = following
    return out


def _included(
    node_id: ua.NodeId, path: tuple[str, ...], namespaces: Sequence[str], include: Sequence[str]
) -> bool:
    if not include:
        return True
    names = ["/".join(path), path[-1], str(node_ref(node_id, namespaces))]
    return any(fnmatch.fnmatchcase(n, pattern) for pattern in include for n in names)


async def _sample(
    client: Client, nodes: Sequence[ua.NodeId], opts: DiscoverOptions
) -> dict[ua.NodeId, list[float]]:
    """Finite values of ``nodes`` read about ten times over ``opts.sample_s`` seconds."""
    out: dict[ua.NodeId, list[float]] = {n: [] for n in nodes}
    if not nodes:
        return out
    reads = 1 if opts.sample_s <= 0 else 10
    end = time.monotonic() + opts.sample_s
    for k in range(reads):
        for node, value in zip(
            nodes, await _read(client, nodes, ua.AttributeIds.Value), strict=True
        ):
            if (
                isinstance(value, int | float)
                and not isinstance(value, bool)
                and math.isfinite(value)
            ):
                out[node].append(float(value))
        if k < reads - 1:
            await asyncio.sleep(max(0.0, (end - time.monotonic()) / (reads - 1 - k)))
    return out
