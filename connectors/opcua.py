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
import json
import logging
import math
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
from asyncua import Client, ua

from connectors.discover import EngineeringInfo, read_engineering_info
from connectors.opcua_probe import not_listening, wait_listening
from connectors.opcua_security import (
    IDENTITY_REFUSED,
    Security,
    apply_security,
    check_endpoint,
    describe_error,
)
from connectors.opcua_session import (
    ROW_SCHEMA,
    CollectorSession,
    CollectorSettings,
    NothingToCollect,
)
from connectors.source import Gap, PumpStats
from twin.errors import ConnectorError
from twin.spec import PlantSpec, Tag
from twin.store.jsonl import replace_text
from twin.store.liveness import is_liveness

log = logging.getLogger(__name__)

#: how a server ends a session or its connection when it stops (or restarts)
_SESSION_ENDED = (
    ConnectionError,
    OSError,
    TimeoutError,
    ua.uaerrors.BadSessionClosed,
    ua.uaerrors.BadSessionIdInvalid,
    ua.uaerrors.BadSessionNotActivated,
    ua.uaerrors.BadServerHalted,
    ua.uaerrors.BadShutdown,
    ua.uaerrors.BadSecureChannelClosed,
    ua.uaerrors.BadConnectionClosed,
)


class _SessionEnded(logging.Filter):
    """asyncua logs a traceback at ERROR ("Publish iteration crashed") when a stopping server
    ends the session; the collector reports that loss itself, so the record becomes a DEBUG
    line (shown only when asyncua's DEBUG log is on)."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, _SESSION_ENDED):
            return True
        record.msg, record.args = "%s (%s)", (record.getMessage(), describe_error(exc))
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        record.exc_info, record.exc_text = None, None
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)


logging.getLogger("asyncua.client.ua_session.UaSession").addFilter(_SessionEnded())

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
        server_info: Path | None = None,
    ) -> None:
        self.spec = spec
        self.endpoint = check_endpoint(endpoint)
        self.server_info = server_info  # where what the server says of each tag is kept (JSON)
        self.unit_warnings: dict[str, list[str]] = {}  # tag -> how the server disagrees
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
        began = time.monotonic()
        while not self._stopping.is_set():
            err: Exception | None = None
            try:
                session = await self._open()
            except IDENTITY_REFUSED as exc:  # retrying cannot fix who we are
                raise ConnectorError(
                    f"OPC-UA server {self.endpoint} refused {self.security.describe()}: {exc}"
                ) from exc
            except NothingToCollect as exc:
                if not self.counters.connects:  # the spec or the server is wrong: say so now
                    raise
                err = exc
            except Exception as exc:  # every other failure to connect is worth another try
                err = exc
            if err is not None:
                attempts += 1
                left = math.inf
                if s.connect_timeout_s is not None and not self.counters.connects:
                    left = s.connect_timeout_s - (time.monotonic() - began)
                    if left <= 0:
                        raise ConnectorError(
                            f"no OPC-UA server answered at {self.endpoint} within "
                            f"{s.connect_timeout_s:g} s ({describe_error(err)}): start it or "
                            "check the endpoint; --wait keeps trying"
                        ) from err
                probe = not_listening(err) and s.probe_interval_s > 0
                log.warning(
                    "cannot connect to OPC-UA server %s (attempt %d): %s; retrying in %.1f s%s",
                    self.endpoint,
                    attempts,
                    describe_error(err),
                    min(backoff, left),
                    ", or as soon as it listens" if probe else "",
                )
                log.debug("connection attempt failed", exc_info=err)
                # nothing listening: probe the port (cheap) and try again once it listens;
                # a server that answered and failed gets the backoff
                interval = s.probe_interval_s if probe else 0.0
                await wait_listening(self.endpoint, min(backoff, left), interval, self._stopping)
                backoff = min(backoff * 2, s.backoff_max_s)
                continue
            backoff, attempts = s.backoff_initial_s, 0
            self.counters.connects += 1
            try:
                async for batch in session.batches():
                    if outage_start is not None:
                        # the session came back when its items were monitored: a still tag's
                        # first notification repeats its old source timestamp, never the end
                        resumed = max(outage_start, session.alive_since or datetime.now(UTC))
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
                    self.counters.received += batch.filter(~is_liveness(pl.col("tag"))).height
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
                    outage_start = _outage_start(session)
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
            if not self.counters.connects:
                await self._check_units(client)
            await session.subscribe()
        except BaseException:
            await session.close()
            raise
        return session

    async def _check_units(self, client: Client) -> None:
        """Compare each tag's EngineeringUnits and EURange with the spec; keep what was said.

        Warns per tag that disagrees; with ``settings.strict_units`` refuses to collect
        (:class:`NothingToCollect`, not retried). A server that publishes neither is no fault.
        """
        namespaces = await client.get_namespace_array()
        tags: list[Tag] = []
        nodes: list[ua.NodeId] = []
        for tag in self.spec.tags:
            if tag.node is None:
                continue
            with contextlib.suppress(LookupError, ValueError):  # the subscription names it
                nodes.append(ua.NodeId.from_string(tag.node.resolve(namespaces)))
                tags.append(tag)
        try:
            infos = await read_engineering_info(client, nodes)
        except Exception as exc:  # optional: a server may refuse the browse-path service
            log.warning(
                "cannot read units and ranges from %s: %s", self.endpoint, describe_error(exc)
            )
            return
        said: dict[str, object] = {}
        self.unit_warnings = {}
        for tag, info in zip(tags, infos, strict=True):
            problems = unit_disagreements(tag, info)
            said[tag.name] = {"node": str(tag.node), **info.to_json(), "disagrees": problems}
            if problems:
                self.unit_warnings[tag.name] = problems
                log.warning("tag %r: %s", tag.name, "; ".join(problems))
        if self.server_info is not None:
            doc = {
                "endpoint": self.endpoint,
                "read_at": datetime.now(UTC).isoformat(timespec="milliseconds"),
                "tags": said,
            }
            replace_text(self.server_info, json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
        if self.unit_warnings and self.settings.strict_units:
            raise NothingToCollect(
                f"units or ranges on {self.endpoint} disagree with the spec for tags "
                f"{sorted(self.unit_warnings)} (--strict): fix the spec or the server"
            )

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


def _outage_start(session: CollectorSession) -> datetime:
    """When a lost session's data stopped: its last sample, or its last sign of life.

    The server answers at least every keep-alive period: a last sample within one period of
    the last publish response dates the hole (the server may have stopped sampling before it
    stopped answering); an older one belongs to a still tag, whose value the session kept
    confirming until its last publish response.
    """
    alive = session.last_alive
    newest = session.newest
    if newest is None or newest < alive - timedelta(seconds=session.keepalive_s):
        return alive
    return min(alive, newest)


#: spellings of one unit: each maps to the first (compared after lower-casing, no spaces)
_SAME_UNIT = (
    ("°c", "degc", "deg.c", "celsius", "degreecelsius", "℃"),
    ("k", "kelvin"),
    ("%", "percent", "pct"),
    ("°f", "degf", "fahrenheit", "℉"),
)


def _unit_key(text: str) -> str:
    key = "".join(text.split()).lower()
    for group in _SAME_UNIT:
        if key in group:
            return group[0]
    return key


def unit_disagreements(tag: Tag, info: EngineeringInfo) -> list[str]:
    """How the server's EngineeringUnits / EURange of ``tag`` disagree with the spec ([] if not).

    Units differ when their text does (ignoring case, spaces and spellings such as degC/°C).
    Ranges differ when they do not overlap, or when one span is over ten times the other (the
    EURange is the instrument's range, often wider than the spec's limits, but not by a unit).
    """
    out = []
    if info.unit is not None and tag.unit and _unit_key(info.unit) != _unit_key(tag.unit):
        out.append(f"the server's unit is {info.unit!r}, the spec's {tag.unit!r}")
    if info.eu_range is not None:
        low, high = info.eu_range
        span = high - low
        if high < tag.lo or low > tag.hi:
            out.append(
                f"the server's EURange [{low:g}, {high:g}] does not meet the spec's "
                f"[{tag.lo:g}, {tag.hi:g}]"
            )
        elif span > 0 and not 0.1 <= tag.span / span <= 10:
            out.append(
                f"the server's EURange [{low:g}, {high:g}] and the spec's [{tag.lo:g}, {tag.hi:g}] "
                "differ in span by over ten times"
            )
    return out
