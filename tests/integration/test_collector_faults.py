"""The collector under faults: a plant server that dies and comes back, a collector SIGKILLed."""

from __future__ import annotations

import dataclasses
import random
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import collector_helpers as helpers
import duckdb
import polars as pl
import pytest

from twin.spec import builtin_spec
from twin.store.frames import read_frame
from twin.store.historian import Historian

# each test restarts real processes several times: about a minute on 2 busy cores
pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _wait_for_rows(store: Path, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    """Block until the collector ``proc`` has flushed a file into ``store`` since it started."""
    since = time.time()
    deadline = time.monotonic() + timeout
    while not any(p.stat().st_mtime >= since for p in store.glob("day=*/*.parquet")):
        assert proc.poll() is None, "collector exited early"
        assert time.monotonic() < deadline, "no data stored in time"
        time.sleep(0.05)


def _raw_rows(store: Path) -> pl.DataFrame:
    """Every stored row as the files hold them (no deduplication), read by polars and DuckDB."""
    files = sorted(str(p) for p in store.glob("day=*/*.parquet"))
    rows = pl.scan_parquet(files, hive_partitioning=True).collect()
    (count,) = duckdb.sql(
        f"select count(*) from read_parquet({files!r}, hive_partitioning=true)"
    ).fetchall()[0]
    assert count == rows.height
    return rows


def test_collector_rides_out_three_plant_server_restarts(tmp_path: Path) -> None:
    """SIGKILL the plant server 3 times: one collector recovers, gaps only where it was down."""
    speed = 30.0
    spec = builtin_spec("cstr")
    fast = dataclasses.replace(spec, sample_period=spec.sample_period / speed)  # the wall grid
    port = helpers.free_port()
    serve = [sys.executable, "-m", "twin.cli", "plant", "serve", "cstr"]
    serve += ["--port", str(port), "--speed", str(speed)]
    store, log = tmp_path / "hist", tmp_path / "collect.log"
    server = helpers.start(serve, tmp_path / "server.log")
    helpers.wait_port(port)
    collector = helpers.start(
        helpers.collect_cmd(
            "cstr",
            f"opc.tcp://127.0.0.1:{port}/process-twin/cstr/",
            store,
            "--flush-every",
            "0.5",
            "--max-backoff",
            "0.5",
        ),
        log,
    )
    outages: list[tuple[datetime, datetime]] = []
    try:
        _wait_for_rows(store, collector)
        began = datetime.now(UTC)
        for _ in range(3):
            time.sleep(2.5)
            helpers.kill(server)
            down = datetime.now(UTC)
            time.sleep(0.5)
            server = helpers.start(serve, tmp_path / "server.log")
            helpers.wait_port(port)
            outages.append((down, datetime.now(UTC)))
        time.sleep(2.5)
        ended = datetime.now(UTC)
        helpers.kill(collector, signal.SIGTERM)
    finally:
        helpers.kill(collector)
        helpers.kill(server)
    text = log.read_text()
    assert collector.returncode == 0, text
    assert text.count("lost the OPC-UA server") == 3, text
    assert text.count("flows again") == 3, text

    raw = _raw_rows(store)
    assert raw.group_by("tag", "ts").len()["len"].max() == 1, "duplicate (tag, ts) rows stored"

    historian = Historian(store)
    # one gap per outage and tag: from the last sample before to the first after (a tag's
    # first sample may be stamped a little before the session was back, never much before)
    gaps = historian.gaps().group_by("start").agg(pl.len(), pl.col("end").max()).sort("start")
    assert gaps.height == 3 and (gaps["len"] == len(spec.tags)).all()
    slack = timedelta(seconds=1.5)  # a loaded 2-core machine delays the last sample before
    for (down, up), g0, g1 in zip(outages, gaps["start"], gaps["end"], strict=True):
        assert down - slack <= g0 <= down + slack, (down, g0)
        # the gap ends when the session is back, never at an old timestamp a restarted server
        # stamped before it listened (a still tag's first notification repeats it)
        assert up - timedelta(seconds=0.25) <= g1 <= up + 2 * slack, (up, g1)
        print(f"server ready -> session back: {(g1 - up).total_seconds():.2f} s")

    frame = read_frame(historian, fast, began, ended)
    margin = timedelta(seconds=4 * fast.sample_period)  # a few sample periods of slack
    near = pl.lit(False)
    for (down, _), g1 in zip(outages, gaps["end"], strict=True):
        near = near | pl.col("ts").is_between(down - margin, g1 + margin)
    states = [f"{t}__state" for t in spec.tag_names]
    away = frame.filter(~near)
    assert away.height >= 3.0 / fast.sample_period  # at least 3 of the ~10 s up

    assert all((away[s] == "good").all() for s in states), "data missing away from outages"
    for down, up in outages:  # the server was surely down here: a gap, all of it
        inside = frame.filter(pl.col("ts").is_between(down + margin, up - margin))
        assert inside.height and all((inside[s] == "gap").all() for s in states)


def test_sigkilled_collector_never_breaks_the_store_and_loses_at_most_a_flush(
    tmp_path: Path,
) -> None:
    """SIGKILL the collector 5 times (also mid-flush): every read works, little is lost."""
    n_tags, period, flush = 20, 0.1, 0.3
    tags = helpers.tag_names(n_tags)
    spec_path = helpers.toy_spec(tmp_path / "toy.toml", tags, period)
    port = helpers.free_port()
    server = helpers.start_toy_server(port, n_tags, period, tmp_path / "server.log")
    store = tmp_path / "hist"
    cmd = helpers.collect_cmd(
        spec_path,
        f"opc.tcp://127.0.0.1:{port}/toy/",
        store,
        "--flush-every",
        str(flush),
        "--publishing-interval",
        "0.05",
    )
    rng = random.Random(7)
    mid_flush = 0
    try:
        for i in range(5):
            collector = helpers.start(cmd, tmp_path / "collect.log")
            _wait_for_rows(store, collector)
            started = datetime.now(UTC)
            time.sleep(rng.uniform(0.5, 1.5))
            if i % 2:  # aim at a flush in progress: kill as soon as a new temporary file shows
                old = set(store.glob("day=*/*.tmp"))  # left by earlier kills
                deadline = time.monotonic() + 2.0
                while time.monotonic() < deadline and not set(store.glob("day=*/*.tmp")) - old:
                    pass
                mid_flush += bool(set(store.glob("day=*/*.tmp")) - old)
            killed = datetime.now(UTC)
            helpers.kill(collector)

            rows = Historian(store).read(tags)  # a fresh open, as a later process would
            raw = _raw_rows(store)
            assert raw.height >= rows.height
            # lost: at most the unflushed buffer (a batch and a flush interval; slack for load)
            last = rows.group_by("tag").agg(pl.max("ts"))
            assert last.height == n_tags
            assert (last["ts"] >= killed - timedelta(seconds=0.25 + flush + 1.0)).all(), (i, last)
            run = rows.filter(pl.col("ts") >= started).sort("ts")
            holes = run.group_by("tag").agg(pl.col("ts").diff().max())["ts"].drop_nulls()
            assert (holes <= timedelta(seconds=2.5 * period)).all(), (i, holes.max())
    finally:
        helpers.kill(server)
    print(f"{mid_flush} of 2 aimed kills hit a flush in progress")
    # and the store still takes appends after all that
    final = Historian(store)
    assert (
        final.append(pl.DataFrame({"tag": ["x000"], "ts": [datetime.now(UTC)], "value": [1.0]}))
        == 1
    )
