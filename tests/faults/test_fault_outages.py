"""One collector through ten server restarts and two network stalls: whole store, honest gaps."""

from __future__ import annotations

import signal
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from fault_helpers import check_holes, check_store, collector_helpers, faulty

from connectors.sim import make_plant
from twin.historian import Historian

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PERIOD = 0.1  # wall seconds per plant sample
FLUSH = 0.3
RESTARTS = 10
#: slack for a loaded 2-core machine: from a fault's end to data flowing again (reconnect,
#: subscribe, first publish), and before its start (the last sample, a missed flush)
AFTER, BEFORE = 6.0, 1.0


def _wait_rows(store: Path, proc: object, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not list(store.glob("day=*/*.parquet")):
        assert proc.poll() is None, "collector exited early"  # type: ignore[attr-defined]
        assert time.monotonic() < deadline, "no data stored in time"
        time.sleep(0.05)


def test_collector_survives_ten_restarts_and_two_stalls(tmp_path: Path) -> None:
    """Restart the server 10 times and freeze it twice: after each fault the store is whole,
    and data is missing, and gaps recorded, only while a fault lasted."""
    plant = make_plant("cstr", seed=3)
    spec = plant.spec
    store, log = tmp_path / "hist", tmp_path / "collect.log"
    with faulty(plant, speed=spec.sample_period / PERIOD) as server:
        cmd = collector_helpers.collect_cmd(
            "cstr", server.endpoint, store, "--flush-every", str(FLUSH), "--max-backoff", "0.3"
        )
        collector = collector_helpers.start(cmd, log)
        try:
            _wait_rows(store, collector)
            began = datetime.now(UTC)
            for _ in range(RESTARTS):
                time.sleep(1.0)
                server.restart(down_s=0.4)
                check_store(store)
            for seconds in (1.5, 6.0):  # shorter and longer than the client's request timeout
                time.sleep(1.5)
                server.stall(seconds)
                check_store(store)
            time.sleep(AFTER)  # data flows again after the last stall
            ended = datetime.now(UTC)
            collector_helpers.kill(collector, signal.SIGTERM)
        finally:
            collector_helpers.kill(collector)
    text = log.read_text()
    assert collector.returncode == 0, text
    faults = server.faults
    lost = text.count("lost the OPC-UA server")
    # every restart is noticed; a stall shorter than the request timeout may pass unnoticed
    assert RESTARTS <= lost <= RESTARTS + 2, text
    assert text.count("flows again") == lost, text
    assert "dropped 0 samples" in text, text

    rows = check_store(store, spec.tag_names, quiet=True)
    holes = check_holes(rows, faults, longest=3 * PERIOD, before=BEFORE, after=AFTER, start=began)
    print(f"{holes.height} holes in {len(spec.tags)} tags, all within the {len(faults)} faults")

    gaps = Historian(store).gaps().group_by("start", "end").agg(n=pl.len()).sort("start")
    assert gaps.height == lost and (gaps["n"] == len(spec.tags)).all()
    for g0, g1 in zip(gaps["start"], gaps["end"], strict=True):
        assert any(f.covers(g0, g1, BEFORE, AFTER) for f in faults), (g0, g1, faults)
    for fault in faults[:RESTARTS]:  # one gap per restart, inside it
        inside = gaps.filter((pl.col("start") <= fault.end) & (pl.col("end") >= fault.start))
        assert inside.height == 1, (fault, gaps)

    # data resumes after every fault: each tag has samples within AFTER seconds of its end
    for fault in faults:
        resumed = rows.filter(
            pl.col("ts").is_between(fault.end, fault.end + timedelta(seconds=AFTER))
        )
        assert resumed["tag"].n_unique() == len(spec.tags), fault
    last = rows.group_by("tag").agg(pl.max("ts"))["ts"]
    assert (last >= ended - timedelta(seconds=FLUSH + 2.0)).all()
