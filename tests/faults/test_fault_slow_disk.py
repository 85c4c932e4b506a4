"""A slow disk under a collector that flushes far more often than the disk can write.

Each historian file write takes ``DISK_S`` (a slow fsync, as on a busy disk, an SD card or a
network share) while the collector is asked to flush every 20 ms: its flush budget is a small
fraction of what one write costs. Nothing the server sent may be lost, nor a false outage
recorded, and the store must stay whole.
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import polars as pl
import pytest
from fault_helpers import check_holes, check_store, collector_helpers

from connectors.opcua import CollectorSettings, OpcUaCollector
from connectors.source import PumpStats, pump
from twin.spec import load_spec
from twin.store.historian import Historian

pytestmark = pytest.mark.integration

N_TAGS, PERIOD = 20, 0.05
DISK_S = 1.5  # seconds per file written
RUN_S = 8.0


class SlowDisk(Historian):
    """A historian on a disk that takes ``DISK_S`` to write and sync each file."""

    writes = 0

    def _write_tmp(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        time.sleep(DISK_S)
        type(self).writes += 1
        return super()._write_tmp(*args, **kwargs)


def test_slow_disk_and_a_tiny_flush_budget_lose_nothing(tmp_path: Path) -> None:
    tags = collector_helpers.tag_names(N_TAGS)
    spec = load_spec(collector_helpers.toy_spec(tmp_path / "toy.toml", tags, PERIOD))
    store = tmp_path / "hist"
    port = collector_helpers.free_port()
    server = collector_helpers.start_toy_server(port, N_TAGS, PERIOD, tmp_path / "server.log")
    try:
        endpoint = f"opc.tcp://127.0.0.1:{port}/toy/"
        collector = OpcUaCollector(
            spec, endpoint, settings=CollectorSettings(publishing_interval_s=PERIOD)
        )
        stats = PumpStats()

        async def main() -> None:
            asyncio.get_running_loop().call_later(RUN_S, collector.stop)
            await pump(collector, SlowDisk(store), flush_every_s=0.02, stats=stats)

        runner = threading.Thread(target=asyncio.run, args=(main(),))
        runner.start()
        runner.join(RUN_S + 60)
        assert not runner.is_alive(), "the collector did not stop"
    finally:
        collector_helpers.kill(server)

    rows = check_store(store, tags, quiet=True)
    assert SlowDisk.writes >= RUN_S / DISK_S / 2  # the disk was the bottleneck throughout
    assert stats.dropped == 0 and collector.counters.dropped == 0, (stats, collector.counters)
    assert stats.stored == rows.height == stats.received, (stats, rows.height)
    assert collector.counters.connects == 1, "a slow disk made the collector lose its server"
    assert Historian(store).gaps().is_empty()
    check_holes(rows, [], before=0, after=0)  # every update the server sent is stored
    per_tag = rows.group_by("tag").len()["len"]
    assert per_tag.min() >= 0.5 * RUN_S / PERIOD, f"server starved? {per_tag.describe()}"
    assert rows["tag"].n_unique() == N_TAGS and rows.filter(pl.col("value").is_null()).is_empty()
