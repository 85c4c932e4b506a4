"""One OPC-UA session of the collector: connect-time subscription, received rows, close.

A :class:`CollectorSession` lives from one successful connect to the loss of that connection
(or the collector's stop). It resolves every spec tag against the server's NamespaceArray,
monitors them in chunks the server accepts, turns each notification's DataValue into a row
(value, status code, source timestamp) and hands the rows on in batches. The reconnect loop
around it is :class:`connectors.opcua.OpcUaCollector`; a session sees it only as a
:class:`SessionOwner`, what it needs of the collector that opened it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Protocol

import polars as pl
from asyncua import Client, ua
from asyncua.common.subscription import (
    DataChangeEvent,
    OverflowPolicy,
    StatusChangeEvent,
    Subscription,
)
from asyncua.observer import Observer

from connectors.opcua_security import Security, describe_error
from connectors.opcua_settings import ROW_SCHEMA, CollectorSettings, NothingToCollect
from twin.errors import ConnectorError
from twin.spec import PlantSpec
from twin.store.liveness import mark_rows
from twin.times import as_utc

log = logging.getLogger(__name__)

__all__ = [
    "ROW_SCHEMA",
    "CollectorSession",
    "CollectorSettings",
    "NothingToCollect",
    "SessionOwner",
]

_TOO_MANY = (ua.uaerrors.BadTooManyOperations, ua.uaerrors.BadTooManyMonitoredItems)
_NO_TIME = datetime(1970, 1, 2, tzinfo=UTC)


class SessionOwner(Protocol):
    """What a session needs of the collector that opened it (an ``OpcUaCollector``)."""

    spec: PlantSpec
    endpoint: str
    settings: CollectorSettings
    security: Security

    @property
    def publishing_interval_s(self) -> float:
        """The publishing interval asked of the server."""
        ...

    @property
    def stopping(self) -> bool:
        """True once the collector was asked to stop."""
        ...

    def wake(self) -> None:
        """Cut the collector's current nap short (this session lost its server)."""
        ...

    async def nap(self, seconds: float) -> None:
        """Sleep ``seconds`` or until woken."""
        ...


class _CountingObserver(Observer):
    """asyncua hook: counts notifications the client produced, to find the ones dropped."""

    def __init__(self) -> None:
        self.produced = 0

    def on_notification(self, subscription_id: int | None, event_count: int) -> None:
        self.produced += event_count


class CollectorSession:
    """One connection: its client, its subscriptions and the rows received on them."""

    def __init__(self, owner: SessionOwner, client: Client) -> None:
        self.owner = owner
        self.client = client
        self.observer = _CountingObserver()
        client.uaclient.observer = self.observer
        client.connection_lost_callback = self._on_lost
        self.connected = False
        self.subs: list[Subscription] = []
        self.tag_of: dict[int, str] = {}  # client handle -> tag name
        self.consumed = 0
        self._dropped: int | None = None
        self.lost = False
        self.lost_reason = ""
        self.started = time.monotonic()
        self.alive_since: datetime | None = None  # when every item was monitored (wall clock)
        self.newest: datetime | None = None  # the newest sample time received (source clock)
        self._marked = -math.inf  # monotonic time of the last liveness mark
        self._tags: list[str] = []
        self._ts: list[datetime] = []
        self._values: list[float | None] = []
        self._status: list[int] = []

    @property
    def dropped(self) -> int:
        """Notifications the client produced that never reached this session (queue overflow)."""
        if self._dropped is not None:  # counted when the queues were drained
            return self._dropped
        return max(0, self.observer.produced - self.consumed)

    @property
    def last_alive(self) -> datetime:
        """Wall-clock time of the last publish response (data or keep-alive) from the server."""
        seen = [s.last_publish_at for s in self.subs if s.last_publish_at is not None]
        last = max(seen, default=self.started)
        return datetime.now(UTC) - timedelta(seconds=time.monotonic() - last)

    @property
    def keepalive_s(self) -> float:
        """Longest the server may stay silent on a live session (a keep-alive at the latest)."""
        interval = self.owner.publishing_interval_s
        return interval * max(1, math.ceil(1.0 / interval))

    async def _on_lost(self, exc: Exception) -> None:
        self._mark_lost(describe_error(exc))

    def _mark_lost(self, reason: str) -> None:
        if not self.lost:
            self.lost, self.lost_reason = True, reason
        self.owner.wake()

    async def subscribe(self) -> None:
        """Resolve every tag's node id on this server and monitor them all, in chunks."""
        owner, s = self.owner, self.owner.settings
        namespaces = await self.client.get_namespace_array()
        items: list[tuple[int, ua.NodeId]] = []
        for i, tag in enumerate(owner.spec.tags, start=1):
            try:
                if tag.node is None:
                    raise LookupError("the spec gives it no node")
                items.append((i, ua.NodeId.from_string(tag.node.resolve(namespaces))))
            except LookupError as exc:  # skipped and named, like a node the server does not have
                log.warning("cannot monitor tag %r on %s: %s", tag.name, owner.endpoint, exc)
                continue
            self.tag_of[i] = tag.name
        chunk = min(s.chunk_size, await self._per_call_limit())
        while items:
            sub = await self._new_subscription()
            items, chunk = await self._monitor(sub, items, chunk)
        n = len(self.tag_of)
        self.alive_since = datetime.now(UTC)  # from now on the server reports every change
        if not n:
            raise NothingToCollect(
                f"{owner.endpoint} serves none of the {len(owner.spec.tags)} tags of plant "
                f"{owner.spec.name!r} (see the warnings above): check the spec's node ids"
            )
        log.info(
            "connected to %s (%s): %d of %d tags in %d subscription(s), publishing every %.2f s",
            owner.endpoint,
            owner.security.describe(),
            n,
            len(owner.spec.tags),
            len(self.subs),
            owner.publishing_interval_s,
        )

    async def _per_call_limit(self) -> int:
        limits = ua.ObjectIds.Server_ServerCapabilities_OperationLimits_MaxMonitoredItemsPerCall
        node = self.client.get_node(f"i={limits}")
        try:
            limit = int(await node.read_value())
        except Exception:  # optional node: many servers do not publish their limits
            return 1 << 30
        return limit if limit > 0 else 1 << 30

    async def _new_subscription(self) -> Subscription:
        owner = self.owner
        interval_ms = owner.publishing_interval_s * 1000
        params = ua.CreateSubscriptionParameters(
            RequestedPublishingInterval=interval_ms,
            # a keep-alive about every second: the last one dates the start of an outage
            RequestedMaxKeepAliveCount=max(1, math.ceil(1000 / interval_ms)),
            RequestedLifetimeCount=max(30, math.ceil(60_000 / interval_ms)),
            MaxNotificationsPerPublish=0,
            PublishingEnabled=True,
        )
        sub = await self.client.create_subscription(
            params,
            queue_maxsize=owner.settings.client_queue_size,
            overflow=OverflowPolicy.DROP_OLDEST,
        )
        self.subs.append(sub)
        return sub

    async def _monitor(
        self, sub: Subscription, items: list[tuple[int, ua.NodeId]], chunk: int
    ) -> tuple[list[tuple[int, ua.NodeId]], int]:
        """Monitor ``items`` on ``sub``; returns the items it could not hold and the chunk size.

        A call the server refuses as too large is retried with half the items; items refused
        because the subscription is full are returned, for another subscription.
        """
        held = 0
        while items:
            part = items[:chunk]
            try:
                results = await sub.create_monitored_items(self._request(h, n) for h, n in part)
            except _TOO_MANY as exc:
                if chunk > 1:
                    chunk //= 2
                    log.info(
                        "server refused %d items in one call (%s); trying %d", len(part), exc, chunk
                    )
                    continue
                if held:  # even one more is too many: this subscription is full
                    break
                raise ConnectorError(
                    f"{self.owner.endpoint} accepts no monitored item on a subscription: {exc}"
                ) from exc
            full = []
            for (handle, node), result in zip(part, results, strict=True):
                if not isinstance(result, ua.StatusCode):
                    held += 1
                elif result.value == ua.StatusCodes.BadTooManyMonitoredItems:
                    full.append((handle, node))
                else:
                    log.warning(
                        "cannot monitor tag %r (%s) on %s: %s",
                        self.tag_of.pop(handle),
                        node.to_string(),
                        self.owner.endpoint,
                        result.name,
                    )
            items = items[len(part) :]
            if full:
                if not held:
                    raise ConnectorError(
                        f"{self.owner.endpoint} accepts no monitored item on a new subscription"
                    )
                items = [*full, *items]
                break
        if items:
            log.info("subscription full at %d items; opening another for %d more", held, len(items))
        return items, chunk

    def _request(self, handle: int, node: ua.NodeId) -> ua.MonitoredItemCreateRequest:
        s = self.owner.settings
        params = ua.MonitoringParameters(
            ClientHandle=handle,
            SamplingInterval=s.sampling_interval_s * 1000,
            QueueSize=s.item_queue_size,
            DiscardOldest=True,
            # report a new source timestamp too, not only a new value: a tag that holds still
            # (an MV at its setpoint) keeps reaching the historian instead of looking stale
            Filter=ua.DataChangeFilter(Trigger=ua.DataChangeTrigger.StatusValueTimestamp),
        )
        return ua.MonitoredItemCreateRequest(
            ItemToMonitor=ua.ReadValueId(NodeId=node, AttributeId=ua.AttributeIds.Value),
            MonitoringMode=ua.MonitoringMode.Reporting,
            RequestedParameters=params,
        )

    async def batches(self) -> AsyncIterator[pl.DataFrame]:
        """Batches of received rows until the connection is lost or the collector stops.

        Each batch ends with the session's liveness mark; while no notification comes a batch
        of the mark alone goes out every ``alive_every_s``. Until the first data arrives the
        session looks for it more often than every ``batch_s`` (a reconnect shows sooner).
        """
        owner, s = self.owner, self.owner.settings
        consumers = [asyncio.create_task(self._consume(sub)) for sub in self.subs]
        try:
            while not (self.lost or owner.stopping):
                await owner.nap(s.batch_s if self.consumed else min(s.batch_s, 0.02))
                if any(c.done() for c in consumers):
                    self._mark_lost("subscription closed")
                if self._tags or time.monotonic() - self._marked >= s.alive_every_s:
                    batch = self._take()
                    if not batch.is_empty():  # empty before the server's first answer
                        yield batch
        finally:
            for c in consumers:
                c.cancel()
            await asyncio.gather(*consumers, return_exceptions=True)
        for sub in self.subs:  # what arrived before the loss is still good data
            with contextlib.suppress(StopAsyncIteration):
                while (event := await sub.next_event(timeout=0.001)) is not None:
                    self._add(event)
        # the queues are empty now: what was produced and not consumed was dropped (later
        # notifications, until the session closes, are not drops)
        self._dropped = max(0, self.observer.produced - self.consumed)
        if self._tags:
            yield self._take()

    async def _consume(self, sub: Subscription) -> None:
        async for event in sub:
            self._add(event)

    def _add(self, event: object) -> None:
        self.consumed += 1
        if isinstance(event, DataChangeEvent):
            item = event.data.monitored_item
            tag = self.tag_of.get(item.ClientHandle)
            if tag is None:
                return
            dv = item.Value
            raw = dv.Value.Value if dv.Value is not None else None
            value = float(raw) if isinstance(raw, int | float) else None
            self._tags.append(tag)
            self._ts.append(_timestamp(dv))
            self._values.append(value)
            self._status.append(dv.StatusCode.value if dv.StatusCode is not None else 0)
        elif isinstance(event, StatusChangeEvent):
            status = event.notification.Status
            if status is not None and not status.is_good():
                self._mark_lost(f"subscription status {status.name}")

    def _take(self) -> pl.DataFrame:
        """The rows received since the last take, and the session's liveness mark after them."""
        frame = pl.DataFrame(
            {"tag": self._tags, "ts": self._ts, "value": self._values, "status": self._status},
            schema=ROW_SCHEMA,
        )
        self._tags, self._ts, self._values, self._status = [], [], [], []
        if not frame.is_empty():
            top = frame.get_column("ts").max()
            if isinstance(top, datetime) and (self.newest is None or top > self.newest):
                self.newest = top
        mark = self._mark(frame)
        return frame if mark is None else pl.concat([frame, mark])

    def _mark(self, frame: pl.DataFrame) -> pl.DataFrame | None:
        """The liveness mark: alive from ``alive_since`` to the last publish response.

        A sample stamped later by the server's clock (ahead of ours) arrived on this live
        session too: the mark reaches it (by at most a minute: a device clock may be wrong).
        """
        since = self.alive_since
        if since is None:
            return None
        at = self.last_alive
        top = frame.get_column("ts").max() if not frame.is_empty() else None
        if isinstance(top, datetime) and at < top:
            at = min(top, at + timedelta(minutes=1))
        if at <= since:
            return None
        self._marked = time.monotonic()
        monitored = set(self.tag_of.values())
        tags = None if monitored >= set(self.owner.spec.tag_names) else sorted(monitored)
        return mark_rows(at, since, tags).cast(pl.Schema(ROW_SCHEMA))

    async def close(self) -> None:
        """End the session: a polite CloseSession when the server is there, else drop the socket."""
        client = self.client
        if self.connected and not self.lost:
            try:
                await asyncio.wait_for(
                    client.close_session(), self.owner.settings.request_timeout_s
                )
            except Exception as exc:  # the server may be gone by now: nothing left to close
                log.debug("CloseSession on %s failed: %s", self.owner.endpoint, describe_error(exc))
        else:
            # skip the requests a dead server cannot answer; stop asyncua's tasks and the socket
            client.uaclient.request_disconnect()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.close_session(), 0.5)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.close_secure_channel(), 0.5)
        client.disconnect_socket()


def _timestamp(dv: ua.DataValue) -> datetime:
    """The sample's time: source timestamp, else server timestamp, else now (all UTC)."""
    for stamp in (dv.SourceTimestamp, dv.ServerTimestamp):
        if stamp is not None:
            ts = as_utc(stamp)
            if ts > _NO_TIME:  # some servers send the OPC-UA zero time (1601) for "none"
                return ts
    return datetime.now(UTC)
