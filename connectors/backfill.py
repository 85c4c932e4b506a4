"""Backfill a historian from a plant's own history over OPC-UA (HistoryRead, raw values).

    report = asyncio.run(Backfill(spec, "opc.tcp://host:4840/", Path("hist"), start, end).run())

:class:`Backfill` reads the raw history of every spec tag over ``[start, end)``
(``ReadRawModifiedDetails``, several nodes per request) into a historian: the live collector's
rows (:data:`~connectors.opcua_session.ROW_SCHEMA`: status code and source timestamp kept).

- **Pages**: a server answers at most ``page_size`` values per node and a continuation point
  when more are left; the next request hands the point back. Some servers (asyncua's own)
  truncate at ``page_size`` without a continuation point: a full page without one is read on
  with a fresh request after its last sample. Points still held when the work is cancelled
  (Ctrl-C) are released with ``ReleaseContinuationPoints=True``.
- **Resumable**: each tag starts after its last stored sample in ``[start, end)``, and per tag
  the samples are stored in time order, so an interrupted run leaves a prefix and a rerun
  fetches only the rest (``resume=False`` reads it all again; duplicates are dropped). A tag
  with live data inside the range resumes after it: end the range where collecting started.
- **Per node**: a node the server keeps no history for (``BadHistoryOperationUnsupported``, no
  values in the range) or cannot read is named and skipped; the others are still backfilled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import polars as pl
from asyncua import Client, ua
from tqdm import tqdm

from connectors.opcua_security import Security, connect_client, describe_error
from connectors.opcua_session import ROW_SCHEMA
from twin.errors import ConnectorError
from twin.spec import PlantSpec
from twin.store.historian import Historian
from twin.times import as_utc

log = logging.getLogger(__name__)

_US = timedelta(microseconds=1)
#: answers meaning the server keeps no history for a node (any other bad status: it failed)
_NO_HISTORY = {
    ua.StatusCodes.BadHistoryOperationUnsupported,
    ua.StatusCodes.BadHistoryOperationInvalid,
    ua.StatusCodes.BadServiceUnsupported,  # no HistoryRead at all
    ua.StatusCodes.BadNoData,
    ua.StatusCodes.BadDataUnavailable,
}


@dataclass(frozen=True)
class BackfillSettings:
    """How the history is read."""

    batch_nodes: int = 10
    """nodes per HistoryRead request (at most the server's MaxNodesPerHistoryReadData)"""
    page_size: int = 10_000
    """values per node per response (NumValuesPerNode); the server may send fewer"""
    flush_rows: int = 200_000
    """received samples held before they are appended to the historian"""
    request_timeout_s: float = 60.0
    """timeout of each OPC-UA request (a full page of many nodes takes a while to encode)"""
    resume: bool = True
    """start each tag after its last stored sample in the range (False: read it all again)"""

    def __post_init__(self) -> None:
        for name in ("batch_nodes", "page_size", "flush_rows"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")


@dataclass
class BackfillReport:
    """What a backfill did, per tag."""

    read: dict[str, int] = field(default_factory=dict)
    """samples received in the range, per tag read without error"""
    stored: int = 0
    """rows new to the historian (duplicates of stored rows are not counted)"""
    resumed: dict[str, datetime] = field(default_factory=dict)
    """tags that started after samples already stored: the last one's time"""
    no_history: dict[str, str] = field(default_factory=dict)
    """tags the server keeps no history for (in the range): why"""
    failed: dict[str, str] = field(default_factory=dict)
    """tags that could not be read: why"""
    cancelled: bool = False
    """True when the work was cancelled (Ctrl-C) before it was done"""
    seconds: float = 0.0
    """wall time"""

    @property
    def samples(self) -> int:
        """Samples received, all tags together."""
        return sum(self.read.values())

    @property
    def any_read(self) -> bool:
        """True when at least one tag's history could be read (or was already stored)."""
        return any(t not in self.no_history for t in self.read)


@dataclass
class _Node:
    """One tag's read: what is still missing after ``after``, and where its pages stand."""

    tag: str
    node_id: ua.NodeId
    after: datetime  # samples at or before this are stored already (or before the range)
    shown: datetime  # how far the progress bar counts this node
    cp: bytes | None = None  # continuation point held on the server
    read: int = 0


class Backfill:
    """One backfill of ``spec``'s tags over ``[start, end)`` from ``endpoint`` into ``historian``."""

    def __init__(
        self,
        spec: PlantSpec,
        endpoint: str,
        historian: Historian | Path,
        start: datetime,
        end: datetime,
        *,
        settings: BackfillSettings | None = None,
        security: Security | None = None,
        progress: bool = False,
    ) -> None:
        if start.tzinfo is None or end.tzinfo is None:
            raise ValueError("start and end must be time-zone aware")
        self.start, self.end = as_utc(start), as_utc(end)
        if self.start >= self.end:
            raise ConnectorError(f"backfill: start {start} is not before end {end}")
        self.spec, self.endpoint, self._historian = spec, endpoint, historian
        self.settings = settings or BackfillSettings()
        self.security = security or Security()
        self.progress = progress
        self.report = BackfillReport()
        self._rows: dict[str, list] = {c: [] for c in ROW_SCHEMA}
        self._bar: tqdm | None = None
        self._held: list[_Node] = []  # nodes whose continuation point the server holds

    @property
    def historian(self) -> Historian:
        """The store written to; a folder is opened on first use (after connecting)."""
        if not isinstance(self._historian, Historian):
            self._historian = Historian(self._historian)
        return self._historian

    async def run(self) -> BackfillReport:
        """Read, store and return the report; on cancel, release and store what arrived."""
        t0 = time.perf_counter()
        s = self.settings
        # a server busy encoding a large page answers the session's watchdog probe late
        client = await connect_client(
            self.endpoint,
            self.security,
            timeout_s=s.request_timeout_s,
            watchdog_s=s.request_timeout_s,
        )
        try:
            nodes = await self._nodes(client)
            batch = min(s.batch_nodes, await _per_request_limit(client))
            self._bar = tqdm(
                total=round(len(nodes) * (self.end - self.start).total_seconds() / 3600, 3),
                desc=f"backfill {self.spec.name}",
                bar_format="{l_bar}{bar}| {n:.1f}/{total:.1f} node-h [{elapsed}<{remaining}]",
                disable=not self.progress,
                leave=False,
            )
            for node in nodes:
                self._advance(node, node.after)
                if node.after >= self.end - _US:  # nothing missing
                    self._finish(node)
            todo = sorted((n for n in nodes if n.after < self.end - _US), key=lambda n: n.after)
            for i in range(0, len(todo), batch):
                await self._read_batch(client, todo[i : i + batch])
        except asyncio.CancelledError:
            self.report.cancelled = True
            await self._release(client)
            raise
        except (ConnectionError, OSError, TimeoutError, ua.UaError) as exc:
            raise ConnectorError(
                f"backfill from {self.endpoint} stopped: {describe_error(exc)}; what arrived "
                "is stored, run it again to resume"
            ) from exc
        finally:
            self._flush()
            if self._bar is not None:
                self._bar.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.disconnect(), 2.0)
            self.report.seconds = time.perf_counter() - t0
        return self.report

    async def _nodes(self, client: Client) -> list[_Node]:
        """Each tag's node on this server, starting where its stored history in range ends."""
        namespaces = await client.get_namespace_array()
        names = self.spec.tag_names
        resume = self.settings.resume
        last = self.historian.last_timestamps(names, self.start, self.end) if resume else {}
        nodes = []
        for tag in self.spec.tags:
            if tag.node is None:
                self._give_up(tag.name, "the spec gives it no OPC-UA node", failed=True)
                continue
            try:
                node_id = ua.NodeId.from_string(tag.node.resolve(namespaces))
            except (LookupError, ValueError) as exc:
                self._give_up(tag.name, f"node {tag.node}: {exc}", failed=True)
                continue
            after = self.start - _US
            if tag.name in last:
                after = self.report.resumed[tag.name] = as_utc(last[tag.name])
            nodes.append(_Node(tag.name, node_id, after, self.start))
        if self.report.resumed:
            log.info(
                "%d of %d tags resume after samples already stored (the latest at %s); "
                "--no-resume reads the whole range again",
                len(self.report.resumed),
                len(names),
                max(self.report.resumed.values()).isoformat(timespec="seconds"),
            )
        return nodes

    async def _read_batch(self, client: Client, batch: list[_Node]) -> None:
        """Read ``batch`` to the end of the range: pages by continuation point, then read on."""
        live, restart = batch, list[_Node]()
        details = self._details(min(n.after for n in live))
        while live or restart:
            if not live:  # only truncated nodes left: a fresh read after their last sample
                live, restart = restart, []
                details = self._details(min(n.after for n in live))
            try:
                results = await client.uaclient.history_read(self._params(details, live))
            except ua.UaStatusCodeError as exc:  # the whole request refused
                self._held = [n for n in self._held if n not in live]
                for node in live:
                    self._give_up(node.tag, describe_error(exc), code=exc.code)
                live = []
                continue
            more = []
            for node, result in zip(live, results, strict=True):
                state = self._take(node, result)
                if state == "more":
                    more.append(node)
                elif state == "restart":
                    restart.append(node)
            self._held = live = more
            if len(self._rows["tag"]) >= self.settings.flush_rows:
                self._flush()

    def _details(self, after: datetime) -> ua.ReadRawModifiedDetails:
        details = ua.ReadRawModifiedDetails()
        details.IsReadModified = False
        details.StartTime = after + _US
        details.EndTime = self.end
        details.NumValuesPerNode = self.settings.page_size
        details.ReturnBounds = False
        return details

    @staticmethod
    def _params(
        details: ua.ReadRawModifiedDetails, nodes: list[_Node], release: bool = False
    ) -> ua.HistoryReadParameters:
        params = ua.HistoryReadParameters()
        params.HistoryReadDetails = details
        params.TimestampsToReturn = ua.TimestampsToReturn.Both
        params.ReleaseContinuationPoints = release
        params.NodesToRead = [
            ua.HistoryReadValueId(NodeId=n.node_id, ContinuationPoint=n.cp) for n in nodes
        ]
        return params

    def _take(self, node: _Node, result: ua.HistoryReadResult) -> str:
        """Keep the samples of one node's answer; "more", "restart" (read on) or "done"."""
        status = result.StatusCode
        if status is not None and status.is_bad():
            self._advance(node, self.end)
            self._give_up(node.tag, status.name, code=status.value)
            return "done"
        values = list(getattr(result.HistoryData, "DataValues", None) or [])
        tags, stamps, vals, codes = (self._rows[c] for c in ROW_SCHEMA)  # ROW_SCHEMA's order
        kept = 0
        for dv in values:
            ts = _timestamp(dv)
            if ts is None or not (node.after < ts < self.end):
                continue
            raw = dv.Value.Value if dv.Value is not None else None
            tags.append(node.tag)
            stamps.append(ts)
            vals.append(float(raw) if isinstance(raw, int | float) else None)
            codes.append(dv.StatusCode.value if dv.StatusCode is not None else 0)
            node.after = ts
            kept += 1
        node.read += kept
        self._advance(node, node.after)
        previous, node.cp = node.cp, result.ContinuationPoint or None
        if node.cp is not None:
            if node.cp == previous and not values:  # the server makes no progress
                log.warning("%s: the server repeats its continuation point; giving up", node.tag)
            else:
                return "more"
        elif len(values) >= self.settings.page_size and kept:
            return "restart"  # a full page without a continuation point: truncated, read on
        self._finish(node)
        return "done"

    def _finish(self, node: _Node) -> None:
        self._advance(node, self.end)
        self.report.read[node.tag] = node.read
        if node.read == 0 and node.tag not in self.report.resumed:
            self._give_up(node.tag, f"no values from {self.start:%F %T} to {self.end:%F %T} UTC")

    def _give_up(self, tag: str, why: str, *, code: int = 0, failed: bool = False) -> None:
        if failed or (code and code not in _NO_HISTORY):
            self.report.failed[tag] = why
            log.warning("%s: cannot read its history: %s; skipped", tag, why)
        else:
            self.report.no_history[tag] = why
            log.warning("%s: the server keeps no history for it (%s)", tag, why)

    def _advance(self, node: _Node, to: datetime) -> None:
        """Move the progress bar on by how far ``node`` got (in node-hours)."""
        to = min(max(to, node.shown), self.end)
        if self._bar is not None and to > node.shown:
            self._bar.update(round((to - node.shown).total_seconds() / 3600, 6))
        node.shown = to

    async def _release(self, client: Client) -> None:
        """Hand back the continuation points the server holds for us (after a cancel)."""
        held, self._held = [n for n in self._held if n.cp], []
        if not held:
            return
        try:
            params = self._params(self._details(self.start), held, release=True)
            await asyncio.wait_for(client.uaclient.history_read(params), 5.0)
            log.info("released %d continuation points", len(held))
        except Exception as exc:  # the session may be gone: then so are its points
            log.debug("releasing continuation points failed: %s", exc)

    def _flush(self) -> None:
        if not self._rows["tag"]:
            return
        rows = pl.DataFrame(self._rows, schema=ROW_SCHEMA)
        self._rows = {c: [] for c in ROW_SCHEMA}
        self.report.stored += self.historian.append(rows)


def _timestamp(dv: ua.DataValue) -> datetime | None:
    """A history sample's time: its source timestamp, else its server timestamp (UTC)."""
    for stamp in (dv.SourceTimestamp, dv.ServerTimestamp):
        if stamp is not None and stamp.year > 1970:  # 1601: the OPC-UA zero time, "none"
            return as_utc(stamp)
    return None


async def _per_request_limit(client: Client) -> int:
    """The server's MaxNodesPerHistoryReadData (optional: no limit when absent or 0)."""
    limit = ua.ObjectIds.Server_ServerCapabilities_OperationLimits_MaxNodesPerHistoryReadData
    with contextlib.suppress(Exception):  # many servers do not publish their limits
        return int(await client.get_node(f"i={limit}").read_value()) or 1 << 30
    return 1 << 30
