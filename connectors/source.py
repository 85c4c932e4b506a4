"""One interface for every stream of plant samples: a live OPC-UA subscription or a replay.

A :class:`SampleSource` yields batches of long-format rows (``tag, ts, value, status`` and
optionally ``quality``, as in :data:`twin.store.schema.SCHEMA`) and, when the stream breaks,
:class:`Gap` markers. :func:`pump` is the single place that moves a source into the historian:
it buffers rows, flushes them at least every ``flush_every_s`` seconds and on shutdown, records
gaps, and counts what it received, stored and dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import polars as pl

from twin.store.historian import Historian
from twin.store.liveness import is_liveness

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Gap:
    """The source lost its data for these tags over ``[start, end)`` (e.g. server down)."""

    tags: tuple[str, ...]
    start: datetime
    end: datetime
    reason: str


class SampleSource(Protocol):
    """Anything that streams plant samples: ``async for item in source.stream(): ...``."""

    def stream(self) -> AsyncIterator[pl.DataFrame | Gap]:
        """Yield long-format row batches and :class:`Gap` markers until stopped or exhausted."""
        ...


@dataclass
class PumpStats:
    """Counters of one :func:`pump` run (also logged periodically)."""

    received: int = 0
    """samples received from the source (liveness marks not counted)"""
    stored: int = 0
    """rows newly written to the historian (duplicates of stored rows are not counted)"""
    dropped: int = 0
    """rows lost: a failed flush whose rows could not be kept for a retry"""
    flushes: int = 0
    gaps: int = 0


async def pump(
    source: SampleSource,
    historian: Historian,
    *,
    flush_every_s: float = 2.0,
    max_buffer_rows: int = 200_000,
    stats: PumpStats | None = None,
    log_every_s: float = 30.0,
) -> PumpStats:
    """Move everything ``source`` yields into ``historian`` until the source ends or is cancelled.

    Rows are buffered and flushed every ``flush_every_s`` seconds, when the buffer holds
    ``max_buffer_rows`` rows, and once more on the way out (also on cancellation). A flush that
    fails (e.g. disk full) keeps its rows for the next try; only when the buffer would exceed
    ``2 * max_buffer_rows`` are the oldest rows dropped, and counted.

    The historian writes in a worker thread, one flush at a time: a slow disk (a write that
    takes longer than the server's per-item queue lasts) must not stall the event loop that
    receives the samples, or the server would drop them unseen.
    """
    stats = stats or PumpStats()
    buffer: list[pl.DataFrame] = []
    buffered = 0
    last_flush = last_log = time.monotonic()
    flushing = asyncio.Lock()

    async def write_buffer() -> None:
        nonlocal buffer, buffered, last_flush
        async with flushing:
            last_flush = time.monotonic()
            if not buffer:
                return
            batch = pl.concat(buffer, how="diagonal_relaxed")
            buffer, buffered = [], 0  # rows received while the disk works go to a new buffer
            try:
                stats.stored += await asyncio.to_thread(historian.append, batch)
                stats.flushes += 1
            except OSError as exc:
                buffer, buffered = [batch, *buffer], buffered + batch.height
                log.error(
                    "flush of %d rows failed, keeping them for the next try: %s", batch.height, exc
                )
                if buffered > 2 * max_buffer_rows:
                    excess = buffered - max_buffer_rows
                    stats.dropped += excess
                    kept = pl.concat(buffer, how="diagonal_relaxed").slice(excess)
                    buffer, buffered = [kept], kept.height
                    log.error(
                        "buffer over %d rows: dropped the oldest %d", 2 * max_buffer_rows, excess
                    )
            except BaseException:
                buffer, buffered = [batch, *buffer], buffered + batch.height
                raise

    async def flush() -> None:
        # shielded: a flush under way finishes (and keeps its rows) even if its caller is
        # cancelled; the final flush below waits for it through the lock
        await asyncio.shield(write_buffer())

    async def flush_periodically() -> None:
        # flushes while the source is quiet too (e.g. a server outage with rows still buffered)
        while True:
            await asyncio.sleep(max(0.05, flush_every_s - (time.monotonic() - last_flush)))
            if time.monotonic() - last_flush >= flush_every_s:
                await flush()

    flusher = asyncio.create_task(flush_periodically())
    try:
        async for item in source.stream():
            if isinstance(item, Gap):
                stats.gaps += 1
                await flush()
                await asyncio.to_thread(
                    historian.record_gap, list(item.tags), item.start, item.end, item.reason
                )
                log.warning(
                    "gap %s .. %s in %d tags: %s", item.start, item.end, len(item.tags), item.reason
                )
                continue
            stats.received += item.filter(~is_liveness(pl.col("tag"))).height  # samples
            buffer.append(item)
            buffered += item.height
            if buffered >= max_buffer_rows:
                await flush()
            now = time.monotonic()
            if now - last_log >= log_every_s:
                last_log = now
                log.info(
                    "received %d, stored %d, dropped %d samples (%d flushes, %d gaps)",
                    stats.received,
                    stats.stored,
                    stats.dropped,
                    stats.flushes,
                    stats.gaps,
                )
    finally:
        flusher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await flusher
        # on the way out: normal end, cancellation (Ctrl-C) or an error in the source
        await write_buffer()
    return stats
