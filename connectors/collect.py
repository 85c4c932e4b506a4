"""Collect a plant's tags from an OPC-UA server into a historian until stopped.

    stats = asyncio.run(run_collect(spec, "opc.tcp://127.0.0.1:4840/cstr", Path("hist")))

The library side of ``twin collect`` (and of the collector inside ``twin run``): the
:class:`~connectors.opcua.OpcUaCollector` pumped into a :class:`~twin.store.historian.Historian`,
stopped by SIGINT / SIGTERM or after ``duration_s``; what the server says of each tag's unit and
range is kept in ``<historian>/server_info.json`` (:data:`SERVER_INFO`). :class:`OpcUaFeed` is the same collector
as the control loop's :class:`~twin.loop.ports.SampleFeed` (``twin run``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from dataclasses import dataclass, field
from pathlib import Path

from connectors.opcua import OpcUaCollector
from connectors.opcua_security import Security
from connectors.opcua_session import CollectorSettings
from connectors.source import PumpStats, pump
from twin.errors import TwinError
from twin.spec import PlantSpec
from twin.store.historian import Historian

log = logging.getLogger(__name__)

#: file beside the historian's data with what the server said of each tag at connect: its
#: EngineeringUnits and EURange, and how they disagree with the spec
SERVER_INFO = "server_info.json"


async def run_collect(
    spec: PlantSpec,
    endpoint: str,
    historian_dir: Path,
    *,
    settings: CollectorSettings | None = None,
    security: Security | None = None,
    duration_s: float | None = None,
    flush_every_s: float = 2.0,
    log_every_s: float = 30.0,
) -> PumpStats:
    """Collect until SIGINT / SIGTERM or ``duration_s``; returns the pump's counters."""
    stats = PumpStats()
    collector = OpcUaCollector(
        spec,
        endpoint,
        settings=settings,
        security=security,
        stats=stats,
        server_info=historian_dir / SERVER_INFO,
    )
    created = not historian_dir.exists()
    try:
        historian = Historian(historian_dir)
    except OSError as exc:
        what = "is a file, not a folder" if historian_dir.is_file() else exc.strerror or str(exc)
        raise TwinError(f"cannot open historian {historian_dir}: {what}") from None
    try:
        await _pump(collector, historian, stats, flush_every_s, log_every_s, duration_s)
    except BaseException:
        if created:  # leave no empty folder behind a collector that never got data
            with contextlib.suppress(OSError):
                historian_dir.rmdir()
        raise
    return stats


async def _pump(
    collector: OpcUaCollector,
    historian: Historian,
    stats: PumpStats,
    flush_every_s: float,
    log_every_s: float,
    duration_s: float | None,
) -> None:
    """Pump ``collector`` into ``historian`` until a signal or ``duration_s``; log the totals."""
    spec, endpoint = collector.spec, collector.endpoint
    task = asyncio.create_task(
        pump(
            collector, historian, flush_every_s=flush_every_s, stats=stats, log_every_s=log_every_s
        )
    )
    loop = asyncio.get_running_loop()

    def on_signal(signame: str) -> None:
        if collector.stopping:  # a second signal: stop waiting for the server
            log.warning("%s again: cancelling (the buffer is still flushed)", signame)
            task.cancel()
            return
        log.info("%s: stopping", signame)
        collector.stop()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig.name)
    if duration_s is not None:
        loop.call_later(duration_s, collector.stop)
    log.info(
        "collecting %d tags of %s from %s into %s",
        len(spec.tags),
        spec.name,
        endpoint,
        historian.root,
    )
    try:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    c = collector.counters
    log.info(
        "stopped: received %d, stored %d, dropped %d samples; %d flushes, %d gaps, %d sessions",
        stats.received,
        stats.stored,
        stats.dropped,
        stats.flushes,
        stats.gaps,
        c.connects,
    )


@dataclass(frozen=True)
class OpcUaFeed:
    """The OPC-UA collector as the control loop's sample feed: :func:`run_collect` with these."""

    endpoint: str
    """the OPC-UA server's URL"""
    settings: CollectorSettings | None = None
    """subscription, reconnect and backfill settings (None: the defaults)"""
    security: Security | None = field(default=None, repr=False)
    """how the session authenticates (None: anonymous, no security); it may hold a password"""
    duration_s: float | None = None
    """stop after this many seconds (None: at SIGINT / SIGTERM only)"""
    flush_every_s: float = 2.0
    """seconds between flushes to the historian"""
    log_every_s: float = 30.0
    """seconds between the counters' log lines"""

    async def run(self, spec: PlantSpec, historian_dir: Path) -> PumpStats:
        """Collect ``spec``'s tags into ``historian_dir`` until stopped; the pump's counters."""
        return await run_collect(
            spec,
            self.endpoint,
            historian_dir,
            settings=self.settings,
            security=self.security,
            duration_s=self.duration_s,
            flush_every_s=self.flush_every_s,
            log_every_s=self.log_every_s,
        )
