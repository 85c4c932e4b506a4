"""Serve a simulated plant over OPC-UA (asyncua): one Double variable per spec tag, live.

:class:`PlantServer` builds the address space from the plant's spec
(:mod:`connectors.sim.address_space`: every tag at exactly its spec node id, a writable setpoint
per MV, checked against the tag's ``[lo, hi]`` per written item, ``<plant>.Tripped`` and
``<plant>.TripReason``), so it works for any :class:`~connectors.sim.base.SimPlant`. A loop
steps the plant every ``sample_period / speed`` seconds of wall time against a monotonic clock
and publishes each value with a good status and a source timestamp.

With ``historize=True`` the server also keeps each tag's recent history in asyncua's own history
storage (in memory by default, or any ``HistoryStorageInterface`` such as ``HistorySQLite``) and
answers HistoryRead (raw values with status and source timestamp), as a plant historian would:
``twin backfill`` reads it.

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
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

from asyncua import Server, ua
from asyncua.server.history import HistoryDict, HistoryStorageInterface

from connectors.sim.address_space import PlantNodes, SetpointGuard, build_address_space, data_value
from connectors.sim.base import SimPlant
from connectors.sim.server_security import ServerSecurity, configure_server
from twin.errors import ConnectorError, SimulationError

log = logging.getLogger(__name__)

#: status of every tag once the simulation failed (Part 8: the data source has failed)
FAILED = ua.StatusCodes.BadDeviceFailure


def endpoint_url(host: str, port: int, plant: str) -> str:
    """``opc.tcp://<host>:<port>/process-twin/<plant>/``."""
    return f"opc.tcp://{host}:{port}/process-twin/{plant}/"


def stop_on_signals(stop: asyncio.Event) -> None:
    """Set ``stop`` on SIGINT and SIGTERM instead of raising, so shutdown runs its normal path."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # Windows, non-main thread
            loop.add_signal_handler(sig, stop.set)


class PlantServer:
    """A simulated plant served over OPC-UA; ``async with PlantServer(plant) as s:`` runs it.

    ``port=0`` binds any free port; :attr:`endpoint` has the real one once started. ``speed``
    runs the plant that many times faster than real time. ``security`` (default: open) sets the
    endpoints' security policies, the server certificate and the users it requires.

    ``historize`` keeps the last ``history_count`` values of every tag for HistoryRead, in
    ``history`` (default: asyncua's in-memory ``HistoryDict``, about 320 bytes per value).
    """

    def __init__(
        self,
        plant: SimPlant,
        *,
        host: str = "127.0.0.1",
        port: int = 4840,
        speed: float = 1.0,
        security: ServerSecurity | None = None,
        historize: bool = False,
        history_count: int = 20_000,
        history: HistoryStorageInterface | None = None,
    ) -> None:
        if not (math.isfinite(speed) and speed > 0):
            raise ValueError(f"speed must be a positive number, got {speed}")
        if history_count < 1:
            raise ValueError(f"history_count must be at least 1, got {history_count}")
        self.plant = plant
        self.spec = plant.spec
        self.host = host
        self.port = port
        self.speed = speed
        self.security = security or ServerSecurity()
        self.server = Server()
        self.historize = historize or history is not None
        self.history_count = history_count
        #: where the tags' history is kept (when historizing); it may be filled directly
        self.history: HistoryStorageInterface | None = None
        if self.historize:
            self.history = history or HistoryDict()
            self.server.iserver.history_manager.set_storage(self.history)  # before init
        self.steps = 0  # plant steps done
        self.late_ticks = 0  # ticks skipped because a step overran its slot
        self.failure: str | None = None  # set when the simulation failed and stepping stopped
        self._nodes: PlantNodes | None = None  # set by start
        self._tripped: str | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"sim-{plant.name}")
        self._task: asyncio.Task[None] | None = None

    @property
    def period(self) -> float:
        """Wall-clock seconds between plant steps."""
        return self.spec.sample_period / self.speed

    @property
    def nodes(self) -> PlantNodes:
        """Where the plant's values live in the address space (once started)."""
        if self._nodes is None:
            raise RuntimeError(f"the {self.spec.name} server is not started")
        return self._nodes

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
        self._nodes = await build_address_space(self.server, self.plant)
        guard = SetpointGuard(
            self.server.iserver.aspace,
            {node: self.spec.tag(mv) for mv, node in self._nodes.setpoints.items()},
        )
        self.server.iserver.attribute_service = guard
        try:
            await self.server.start()
        except OSError as exc:
            raise ConnectorError(f"cannot serve {name} on {self.host}:{self.port}: {exc}") from exc
        assert self.server.bserver is not None
        self.port = self.server.bserver.port  # the bound one when port 0 was asked for
        if self.historize:
            for node in self._nodes.values.values():
                await self.server.historize_node_data_change(
                    self.server.get_node(node),
                    period=None,  # type: ignore[arg-type]  # None: no age limit, only count
                    count=self.history_count,
                )
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
        for mv, node in self.nodes.setpoints.items():
            variant = self.server.read_attribute_value(node).Value
            value = variant.Value if variant is not None else None
            i = self.plant.mv_names.index(mv)
            if value is not None and value != self.plant.u[i]:
                self.plant.set_mv(mv, value)

    async def _publish(self, values: dict[str, float], first: bool = False) -> None:
        ts = datetime.now(UTC)
        for name, node in self.nodes.values.items():
            value = values[name]
            if math.isfinite(value):
                dv = data_value(ua.Variant(value, ua.VariantType.Double), ts)
            else:  # never publish NaN: a bad status says the reading is unusable
                dv = data_value(None, ts, ua.StatusCodes.BadSensorFailure)
            await self.server.write_attribute_value(node, dv)
        if first or self.plant.tripped != self._tripped:
            await self._set_trip(self.plant.tripped, ts)

    async def _set_trip(self, reason: str | None, ts: datetime) -> None:
        if self._tripped and not reason:
            log.info("%s: back inside its safe envelope", self.spec.name)
        self._tripped = reason
        tripped, text = self.nodes.trip
        for node, variant in (
            (tripped, ua.Variant(reason is not None, ua.VariantType.Boolean)),
            (text, ua.Variant(reason or "", ua.VariantType.String)),
        ):
            await self.server.write_attribute_value(node, data_value(variant, ts))

    async def _fail(self, reason: str) -> None:
        """Stop stepping for good: every tag goes bad, Tripped says why; the server stays up."""
        self.failure = reason
        log.error(
            "%s: simulation stopped: %s (still serving, all tags bad)", self.spec.name, reason
        )
        ts = datetime.now(UTC)
        for node in self.nodes.values.values():
            await self.server.write_attribute_value(node, data_value(None, ts, FAILED))
        await self._set_trip(reason, ts)


async def serve_until_stopped(
    plant: SimPlant,
    *,
    host: str = "127.0.0.1",
    port: int = 4840,
    speed: float = 1.0,
    stop: asyncio.Event | None = None,
    security: ServerSecurity | None = None,
    historize: bool = False,
    history_count: int = 20_000,
) -> PlantServer:
    """Serve ``plant`` until ``stop`` is set (by default: until SIGINT or SIGTERM); return the server.

    ``historize`` keeps the last ``history_count`` values per tag for HistoryRead.
    """
    if stop is None:
        stop = asyncio.Event()
        stop_on_signals(stop)
    t0 = time.perf_counter()
    server = PlantServer(
        plant,
        host=host,
        port=port,
        speed=speed,
        security=security,
        historize=historize,
        history_count=history_count,
    )
    async with server:
        log.info(
            "serving %s at %s (ready in %.1f s; %s; %s; Ctrl-C stops)",
            plant.name,
            server.endpoint,
            time.perf_counter() - t0,
            server.security.describe(),
            f"history of the last {history_count} values per tag" if historize else "no history",
        )
        await stop.wait()
        log.info(
            "%s: stopping after %d steps (%d skipped for lack of time)",
            plant.name,
            server.steps,
            server.late_ticks,
        )
    return server
