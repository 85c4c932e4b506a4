"""The OPC-UA collector: subscribe to every tag of a spec and stream the samples it receives.

:class:`OpcUaCollector` is a :class:`~connectors.source.SampleSource`: feed it to
:func:`~connectors.source.pump` to land the samples in a historian. Per sample it keeps the
status code and the source timestamp of the monitored item's DataValue (server timestamp, then
arrival time, as fallbacks), never just the bare value.

Reconnection is a loop of its own rather than asyncua's ``auto_reconnect``: each attempt builds a
fresh ``Client``, resolves ``nsu=`` node ids against the server's current NamespaceArray and
subscribes anew. asyncua's supervisor re-creates subscriptions with the node ids of the first
session, which are wrong once a restarted server numbers its namespaces differently, and it does
not tell us when data flowed again; the loop here knows both ends of an outage and yields them
as a :class:`~connectors.source.Gap`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import polars as pl
from asyncua import Client

from connectors.opcua_security import IDENTITY_REFUSED, Security, apply_security, describe_error
from connectors.opcua_session import ROW_SCHEMA, CollectorSession, CollectorSettings
from connectors.source import Gap, PumpStats
from twin.errors import ConnectorError
from twin.spec import PlantSpec

log = logging.getLogger(__name__)

__all__ = ["ROW_SCHEMA", "CollectorCounters", "CollectorSettings", "OpcUaCollector"]


@dataclass
class CollectorCounters:
    """What one collector has done so far (all sessions together)."""

    received: int = 0
    """data-change notifications turned into rows"""
    dropped: int = 0
    """notifications lost because the client queue was full"""
    connects: int = 0
    """sessions opened (the first connect plus every reconnect)"""
    outages: list[float] = field(default_factory=list)
    """seconds from losing the server to data flowing again, per outage"""


class OpcUaCollector:
    """Streams every spec tag from an OPC-UA server; survives server restarts (a SampleSource)."""

    def __init__(
        self,
        spec: PlantSpec,
        endpoint: str,
        *,
        settings: CollectorSettings | None = None,
        security: Security | None = None,
        stats: PumpStats | None = None,
    ) -> None:
        self.spec = spec
        self.endpoint = endpoint
        self.settings = settings or CollectorSettings()
        self.security = security or Security()
        self.counters = CollectorCounters()
        self._stats = stats  # client-side drops are added to stats.dropped as well
        self._tags = tuple(spec.tag_names)
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()
        if self.security.password and not self.security.secure:
            log.warning(
                "the password of user %r may travel unencrypted: security policy is None",
                self.security.user,
            )

    @property
    def publishing_interval_s(self) -> float:
        """The publishing interval asked of the server."""
        if self.settings.publishing_interval_s is not None:
            return self.settings.publishing_interval_s
        return min(0.5, self.spec.sample_period / 2)

    def stop(self) -> None:
        """Ask :meth:`stream` to hand on what it holds, close the session and end."""
        self._stopping.set()
        self._wake.set()

    @property
    def stopping(self) -> bool:
        """True once :meth:`stop` was called."""
        return self._stopping.is_set()

    def wake(self) -> None:
        """Cut the current :meth:`nap` short (the session lost its server, or a stop)."""
        self._wake.set()

    async def nap(self, seconds: float) -> None:
        """Sleep ``seconds`` or until :meth:`wake`."""
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)

    async def stream(self) -> AsyncIterator[pl.DataFrame | Gap]:
        """Row batches (:data:`ROW_SCHEMA`) and one :class:`Gap` per outage, until :meth:`stop`."""
        s = self.settings
        backoff = s.backoff_initial_s
        attempts = 0
        outage_start: datetime | None = None
        while not self._stopping.is_set():
            try:
                session = await self._open()
            except IDENTITY_REFUSED as exc:  # retrying cannot fix who we are
                raise ConnectorError(
                    f"OPC-UA server {self.endpoint} refused {self.security.describe()}: {exc}"
                ) from exc
            except Exception as exc:  # every other failure to connect is worth another try
                attempts += 1
                log.warning(
                    "cannot connect to OPC-UA server %s (attempt %d): %s; retrying in %.1f s",
                    self.endpoint,
                    attempts,
                    describe_error(exc),
                    backoff,
                )
                log.debug("connection attempt failed", exc_info=True)
                await self._sleep(backoff)
                backoff = min(backoff * 2, s.backoff_max_s)
                continue
            backoff, attempts = s.backoff_initial_s, 0
            self.counters.connects += 1
            try:
                async for batch in session.batches():
                    if outage_start is not None:
                        resumed = _resume_time(batch, outage_start)
                        self.counters.outages.append((resumed - outage_start).total_seconds())
                        log.info(
                            "data from %s flows again after %.1f s without it",
                            self.endpoint,
                            self.counters.outages[-1],
                        )
                        yield Gap(
                            self._tags, outage_start, resumed, f"no data: {self.endpoint} lost"
                        )
                        outage_start = None
                    self.counters.received += batch.height
                    yield batch
            finally:
                await session.close()
                self._count_drops(session.dropped)
            if not self._stopping.is_set():
                log.warning(
                    "lost the OPC-UA server %s (%s); last data at %s, reconnecting",
                    self.endpoint,
                    session.lost_reason or "connection closed",
                    session.last_alive.isoformat(timespec="milliseconds"),
                )
                if outage_start is None:
                    outage_start = session.last_alive
        if outage_start is not None:
            now = datetime.now(UTC)
            yield Gap(self._tags, outage_start, now, f"no data: {self.endpoint} lost until stop")

    async def _open(self) -> CollectorSession:
        """A fresh client, connected and subscribed to every tag it could resolve."""
        s = self.settings
        client = Client(self.endpoint, timeout=s.request_timeout_s, watchdog_intervall=s.watchdog_s)
        client.session_timeout = 60_000  # ms: a collector that vanished frees its session soon
        session = CollectorSession(self, client)
        try:
            await apply_security(client, self.security)
            await client.connect()
            session.connected = True
            await session.subscribe()
        except BaseException:
            await session.close()
            raise
        return session

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    def _count_drops(self, n: int) -> None:
        if n <= 0:
            return
        self.counters.dropped += n
        if self._stats is not None:
            self._stats.dropped += n
        log.warning(
            "%d notifications dropped: the client queue of %d was full",
            n,
            self.settings.client_queue_size,
        )


def _resume_time(batch: pl.DataFrame, outage_start: datetime) -> datetime:
    """When data flows again: the oldest fresh timestamp of the first batch after an outage."""
    fresh = batch.filter(pl.col("ts") > outage_start)["ts"]
    first = fresh.min() if fresh.len() else None
    return first.astimezone(UTC) if isinstance(first, datetime) else datetime.now(UTC)
