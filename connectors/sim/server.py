"""Serve a simulated plant over OPC-UA (asyncua): one Double variable per spec tag, live.

:class:`PlantServer` builds the address space from the plant's spec, so it works for any
:class:`~connectors.sim.base.SimPlant`: every tag sits at exactly its spec node id, with
``EURange`` and ``EngineeringUnits`` properties; every MV has a writable setpoint at its
``write_node``; ``<plant>.Tripped`` and ``<plant>.TripReason`` say when the plant left its safe
envelope. A loop steps the plant every ``sample_period / speed`` seconds of wall time against a
monotonic clock and publishes each value with a good status and a source timestamp.

A client write to a setpoint is checked against the tag's ``[lo, hi]``: outside (or NaN) it is
refused with ``BadOutOfRange`` as that write's own result, never clamped. asyncua's value setter
(``Server.set_attribute_value_setter``) can only refuse by raising, which turns the whole Write
request into a service fault (and leaves earlier items of the request applied), so the check sits
in the server's write service instead and answers per item.

By default the server is open (security None, anonymous), for the demo on loopback; with a
:class:`~connectors.sim.server_security.ServerSecurity` it offers only the endpoints it names
(e.g. ``Basic256Sha256/SignAndEncrypt``), presents its certificate and requires users.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import signal
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import cast

from asyncua import Node, Server, ua
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.server.address_space import AddressSpace, AttributeService

from connectors.sim.base import SimPlant
from connectors.sim.server_security import ServerSecurity, configure_server
from twin.errors import ConnectorError, SimulationError
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
#: status of every tag once the simulation failed (Part 8: the data source has failed)
FAILED = ua.StatusCodes.BadDeviceFailure


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
        if tag.node.namespace_uri:
            return tag.node.namespace_uri
    return f"urn:process-twin:sim:{spec.name}"


def trip_nodes(spec: PlantSpec) -> tuple[NodeRef, NodeRef]:
    """Node ids of ``<plant>.Tripped`` (Boolean) and ``<plant>.TripReason`` (String)."""
    uri = plant_namespace(spec)
    tripped = NodeRef(kind="s", identifier=f"{spec.name}.Tripped", namespace_uri=uri)
    return tripped, NodeRef(kind="s", identifier=f"{spec.name}.TripReason", namespace_uri=uri)


def endpoint_url(host: str, port: int, plant: str) -> str:
    """``opc.tcp://<host>:<port>/process-twin/<plant>/``."""
    return f"opc.tcp://{host}:{port}/process-twin/{plant}/"


def stop_on_signals(stop: asyncio.Event) -> None:
    """Set ``stop`` on SIGINT and SIGTERM instead of raising, so shutdown runs its normal path."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # Windows, non-main thread
            loop.add_signal_handler(sig, stop.set)


_ADMIN = User(role=UserRole.Admin)  # asyncua's default for in-process writes


class _SetpointGuard(AttributeService):
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
            return _status(ua.StatusCodes.BadWriteNotSupported)
        if dv.Value is None or dv.Value.VariantType != ua.VariantType.Double:
            return None  # asyncua answers BadTypeMismatch
        value = dv.Value.Value
        if not (isinstance(value, float) and math.isfinite(value) and tag.lo <= value <= tag.hi):
            log.warning("refused %s = %r: outside [%g, %g]", tag.name, value, tag.lo, tag.hi)
            return _status(ua.StatusCodes.BadOutOfRange)
        return None


class PlantServer:
    """A simulated plant served over OPC-UA; ``async with PlantServer(plant) as s:`` runs it.

    ``port=0`` binds any free port; :attr:`endpoint` has the real one once started. ``speed``
    runs the plant that many times faster than real time. ``security`` (default: open) sets the
    endpoints' security policies, the server certificate and the users it requires.
    """

    def __init__(
        self,
        plant: SimPlant,
        *,
        host: str = "127.0.0.1",
        port: int = 4840,
        speed: float = 1.0,
        security: ServerSecurity | None = None,
    ) -> None:
        if not (math.isfinite(speed) and speed > 0):
            raise ValueError(f"speed must be a positive number, got {speed}")
        self.plant = plant
        self.spec = plant.spec
        self.host = host
        self.port = port
        self.speed = speed
        self.security = security or ServerSecurity()
        self.server = Server()
        self.steps = 0  # plant steps done
        self.late_ticks = 0  # ticks skipped because a step overran its slot
        self.failure: str | None = None  # set when the simulation failed and stepping stopped
        self._nodes: dict[str, ua.NodeId] = {}  # tag name -> value node
        self._setpoints: dict[str, ua.NodeId] = {}  # MV name -> setpoint node
        self._trip_ids: tuple[ua.NodeId, ua.NodeId] | None = None
        self._tripped: str | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"sim-{plant.name}")
        self._task: asyncio.Task[None] | None = None

    @property
    def period(self) -> float:
        """Wall-clock seconds between plant steps."""
        return self.spec.sample_period / self.speed

    @property
    def endpoint(self) -> str:
        """The URL clients connect to (with the bound port once started)."""
        return endpoint_url(self.host, self.port, self.spec.name)

    async def start(self) -> PlantServer:
        """Build the address space, listen, publish the first values and start stepping."""
        t0 = time.perf_counter()
        name = self.spec.name
        self.server.set_endpoint(endpoint_url(self.host, self.port, name))
        self.server.set_server_name(f"process-twin simulated plant {name}")
        self.server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        self.server.set_identity_tokens([ua.AnonymousIdentityToken])
        await self.server.init()
        uri = f"urn:process-twin:sim:{name}:server"
        if not self.security.is_default:
            uri = await configure_server(self.server, self.security) or uri
        await self.server.set_application_uri(uri)
        await self._build_address_space()
        guard = _SetpointGuard(
            self.server.iserver.aspace,
            {node: self.spec.tag(mv) for mv, node in self._setpoints.items()},
        )
        self.server.iserver.attribute_service = guard
        try:
            await self.server.start()
        except OSError as exc:
            raise ConnectorError(f"cannot serve {name} on {self.host}:{self.port}: {exc}") from exc
        assert self.server.bserver is not None
        self.port = self.server.bserver.port  # the bound one when port 0 was asked for
        await self._publish(self.plant.measure(), first=True)
        self._task = asyncio.create_task(self._run(), name=f"simulate-{name}")
        log.debug("%s: server up in %.2f s", name, time.perf_counter() - t0)
        return self

    async def stop(self) -> None:
        """Stop stepping and close the server (idempotent)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self.server.bserver is not None:
            # asyncua's stop waits out the 1 s sleep of its clock task; end that task now instead
            clock = self.server.iserver.time_task
            if clock is not None:
                clock.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await clock
                self.server.iserver.time_task = None
            await self.server.stop()
            self.server.bserver = None
        self._executor.shutdown(wait=True)

    async def __aenter__(self) -> PlantServer:
        try:
            return await self.start()
        except BaseException:
            await self.stop()
            raise

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- address space --------------------------------------------------------------------

    async def _build_address_space(self) -> None:
        spec = self.spec
        default_idx = await self.server.register_namespace(plant_namespace(spec))
        refs = [t.node for t in spec.tags] + [t.write_node for t in spec.mvs if t.write_node]
        for ref in refs:
            if ref.namespace_uri:
                await self.server.register_namespace(ref.namespace_uri)
        namespaces = await self.server.get_namespace_array()
        folder = await self.server.nodes.objects.add_object(
            _nid(spec.name, default_idx), ua.QualifiedName(spec.name, default_idx)
        )
        await folder.write_attribute(
            ua.AttributeIds.Description,
            ua.DataValue(ua.Variant(ua.LocalizedText(spec.description))),
        )
        values = self.plant.measure()
        for tag in spec.tags:
            node = await self._add_analog(
                folder, tag, tag.node, tag.name, values[tag.name], namespaces
            )
            self._nodes[tag.name] = node
            if tag.role == "mv" and tag.write_node is not None:
                u = float(self.plant.u[self.plant.mv_names.index(tag.name)])
                sp = await self._add_analog(
                    folder, tag, tag.write_node, f"{tag.name}.SP", u, namespaces, writable=True
                )
                self._setpoints[tag.name] = sp
        tripped, reason = (_node_id(ref, namespaces, spec.name) for ref in trip_nodes(spec))
        await folder.add_variable(tripped, ua.QualifiedName("Tripped", default_idx), False)
        await folder.add_variable(reason, ua.QualifiedName("TripReason", default_idx), "")
        self._trip_ids = (tripped, reason)

    async def _add_analog(
        self,
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

    # --- simulation loop ------------------------------------------------------------------

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        period = self.period
        log.info(
            "%s: stepping every %.3g s (sample period %g s at speed x%g)",
            self.spec.name,
            period,
            self.spec.sample_period,
            self.speed,
        )
        t0 = time.monotonic()
        tick = 0
        warned = False
        while True:
            tick += 1
            lag = time.monotonic() - (t0 + tick * period)
            if lag < 0:
                await asyncio.sleep(-lag)
            elif lag > period:  # overran: skip the lost slots rather than burst to catch up
                skipped = int(lag // period)
                self.late_ticks += skipped
                tick += skipped
                if not warned and self.late_ticks > max(10, tick // 20):  # once, not per blip
                    warned = True
                    log.warning(
                        "%s: %d of %d steps of %.3g s skipped: speed x%g is not sustained here",
                        self.spec.name,
                        self.late_ticks,
                        tick,
                        period,
                        self.speed,
                    )
            self._apply_setpoints()
            try:
                values = await loop.run_in_executor(self._executor, self.plant.step)
            except SimulationError as exc:
                await self._fail(str(exc))
                return
            except Exception as exc:  # a bug in a plant must not take the server down
                log.exception("%s: plant step raised", self.spec.name)
                await self._fail(f"{type(exc).__name__}: {exc}")
                return
            self.steps += 1
            await self._publish(values)

    def _apply_setpoints(self) -> None:
        for mv, node in self._setpoints.items():
            variant = self.server.read_attribute_value(node).Value
            value = variant.Value if variant is not None else None
            i = self.plant.mv_names.index(mv)
            if value is not None and value != self.plant.u[i]:
                self.plant.set_mv(mv, value)

    async def _publish(self, values: dict[str, float], first: bool = False) -> None:
        ts = datetime.now(UTC)
        for name, node in self._nodes.items():
            value = values[name]
            if math.isfinite(value):
                dv = _dv(ua.Variant(value, ua.VariantType.Double), ts)
            else:  # never publish NaN: a bad status says the reading is unusable
                dv = _dv(None, ts, ua.StatusCodes.BadSensorFailure)
            await self.server.write_attribute_value(node, dv)
        if first or self.plant.tripped != self._tripped:
            await self._set_trip(self.plant.tripped, ts)

    async def _set_trip(self, reason: str | None, ts: datetime) -> None:
        if self._tripped and not reason:
            log.info("%s: back inside its safe envelope", self.spec.name)
        self._tripped = reason
        assert self._trip_ids is not None
        tripped, text = self._trip_ids
        for node, variant in (
            (tripped, ua.Variant(reason is not None, ua.VariantType.Boolean)),
            (text, ua.Variant(reason or "", ua.VariantType.String)),
        ):
            await self.server.write_attribute_value(node, _dv(variant, ts))

    async def _fail(self, reason: str) -> None:
        """Stop stepping for good: every tag goes bad, Tripped says why; the server stays up."""
        self.failure = reason
        log.error(
            "%s: simulation stopped: %s (still serving, all tags bad)", self.spec.name, reason
        )
        ts = datetime.now(UTC)
        for node in self._nodes.values():
            await self.server.write_attribute_value(node, _dv(None, ts, FAILED))
        await self._set_trip(reason, ts)


async def serve_until_stopped(
    plant: SimPlant,
    *,
    host: str = "127.0.0.1",
    port: int = 4840,
    speed: float = 1.0,
    stop: asyncio.Event | None = None,
    security: ServerSecurity | None = None,
) -> PlantServer:
    """Serve ``plant`` until ``stop`` is set (by default: until SIGINT or SIGTERM); return the server."""
    if stop is None:
        stop = asyncio.Event()
        stop_on_signals(stop)
    t0 = time.perf_counter()
    async with PlantServer(plant, host=host, port=port, speed=speed, security=security) as server:
        log.info(
            "serving %s at %s (ready in %.1f s; %s; Ctrl-C stops)",
            plant.name,
            server.endpoint,
            time.perf_counter() - t0,
            server.security.describe(),
        )
        await stop.wait()
        log.info(
            "%s: stopping after %d steps (%d skipped for lack of time)",
            plant.name,
            server.steps,
            server.late_ticks,
        )
    return server


# asyncua annotates its builtins with its own int/str/datetime subclasses; these helpers take the
# plain Python values it accepts at run time.
def _status(code: int) -> ua.StatusCode:
    return ua.StatusCode(ua.UInt32(code))


def _dv(variant: ua.Variant | None, ts: datetime, code: int = ua.StatusCodes.Good) -> ua.DataValue:
    stamp = cast(ua.DateTime, ts)
    return ua.DataValue(
        variant, StatusCode=_status(code), SourceTimestamp=stamp, ServerTimestamp=stamp
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
