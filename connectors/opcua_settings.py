"""The collector's settings and row schema (shared by the session, the reconnect loop and backfill)."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from twin.errors import ConnectorError

ROW_SCHEMA: dict[str, pl.DataType] = {
    "tag": pl.String(),
    "ts": pl.Datetime("us", "UTC"),
    "value": pl.Float64(),
    "status": pl.UInt32(),
}
"""columns of the batches the collector yields (the historian derives ``quality`` from status)"""


class NothingToCollect(ConnectorError):
    """The server answered but cannot give what the spec asks (no tag, or units refused)."""


@dataclass(frozen=True)
class CollectorSettings:
    """How the collector subscribes, batches and reconnects."""

    publishing_interval_s: float | None = None
    """how often the server sends notifications; None: half the spec's sample period, <= 0.5 s"""
    sampling_interval_s: float = 0.0
    """how often the server samples each item; 0 asks for its fastest rate (or on change)"""
    item_queue_size: int = 16
    """server-side queue per monitored item: values that change faster than publishing are kept"""
    client_queue_size: int = 200_000
    """notifications held in the client before the oldest are dropped (and counted)"""
    chunk_size: int = 500
    """monitored items per CreateMonitoredItems call; halved while the server refuses it"""
    batch_s: float = 0.25
    """received samples are handed on as one batch this often"""
    backoff_initial_s: float = 0.5
    """first wait after a failed connection attempt; doubled per failure"""
    backoff_max_s: float = 10.0
    """longest wait between connection attempts (while the server's port stays closed, a probe
    cuts the wait short as soon as it listens again: see ``probe_interval_s``)"""
    probe_interval_s: float = 0.1
    """while nothing listens at the endpoint (a lost or refused connection), a TCP connect this
    often checks whether the server is back, so that a session opens within about this long
    of the server listening again; 0 turns probing off (only the backoff)"""
    alive_every_s: float = 1.0
    """a liveness mark (:mod:`twin.store.liveness`) goes with every batch of rows, and at least
    this often while no notification comes: a still tag stays valid in frames"""
    connect_timeout_s: float | None = 30.0
    """give up (ConnectorError) when no first connection succeeded for this long; None: wait"""
    strict_units: bool = False
    """refuse to collect when a tag's EngineeringUnits / EURange disagree with the spec"""
    request_timeout_s: float = 4.0
    """timeout of each OPC-UA request"""
    watchdog_s: float = 4.0
    """how often the session is probed for a silently dead server; asyncua waits as long for the
    probe's answer, so it must exceed the slowest read a busy server answers (1 s made false
    outages, and lost samples while resubscribing, with 1,000 tags on a loaded 2-core machine).
    A server that went away (its socket closed) is noticed at once, whatever this is"""
