"""Twenty SIGKILLed collectors, killed during their flushes and compactions: the store stays whole.

Half of the kills come from outside, aimed at a flush in progress (a ``*.tmp`` file present);
the other half the collector deals itself at exact points of a write (see crashpoint.py): after
writing a temporary file, after renaming it into place, after a compaction's merged file, its
journal, or its first removed input. After every kill a fresh open of the store must read every
file, hold no (tag, ts) twice (in any Parquet reader, not only the historian's) and have lost
no more than the killed collector's unflushed buffer.
"""

from __future__ import annotations

import random
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from fault_helpers import Fault, check_holes, check_store, collector_helpers

from twin.store.historian import Historian

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CRASHPOINT = Path(__file__).with_name("crashpoint.py")
N_TAGS, PERIOD, FLUSH = 20, 0.05, 0.05
KILLS = 20
#: self-inflicted kills, in turn with the aimed ones (POINT:N, see crashpoint.py)
POINTS = [
    "tmp:1",
    "rename:3",
    "merged:1",
    "tmp:5",
    "journal:1",
    "rename:1",
    "unlink:1",
    "tmp:2",
    "rename:8",
    "merged:1",
]
#: what a killed collector may lose: its unflushed buffer (a flush interval and a batch of
#: notifications), with slack for a loaded machine and a compaction in progress
LOSS_S = FLUSH + 0.25 + 3.0


def _seed_small_files(store: Path, count: int = 31) -> None:
    """Top today's folder up to ``count`` small files, so the next flush starts a compaction.

    The historian merges a day's small files once 32 are there; a collector flushing every
    50 ms on a busy machine takes seconds to get there. The seed rows belong to another tag.
    """
    day = store / f"day={datetime.now(UTC).date().isoformat()}"
    have = len(list(day.glob("*.parquet")))
    seeder = Historian(store, auto_compact_files=0)  # it never compacts: no second merger
    midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    for _ in range(count - have):
        ts = midnight + timedelta(microseconds=random.randrange(10**9))
        seeder.append(pl.DataFrame({"tag": ["seed"], "ts": [ts], "value": [0.0]}))


def _flushed_since(store: Path, since: float) -> bool:
    return any(p.stat().st_mtime >= since for p in store.glob("day=*/*.parquet"))


def test_twenty_sigkills_during_flushes_leave_a_whole_store(tmp_path: Path) -> None:
    tags = collector_helpers.tag_names(N_TAGS)
    spec_path = collector_helpers.toy_spec(tmp_path / "toy.toml", tags, PERIOD)
    store, log = tmp_path / "hist", tmp_path / "collect.log"
    rng = random.Random(11)

    # the server in a process of its own: this one is busy checking the store after each kill
    server = collector_helpers.start_toy_server(
        collector_helpers.free_port(), N_TAGS, PERIOD, tmp_path / "server.log"
    )
    try:
        endpoint = f"opc.tcp://127.0.0.1:{server.args[server.args.index('--port') + 1]}/toy/"
        twin_args = collector_helpers.collect_cmd(spec_path, endpoint, store)[3:]
        twin_args += ["--flush-every", str(FLUSH), "--publishing-interval", str(PERIOD)]

        def launch(i: int) -> subprocess.Popen:
            kill_at = ["--kill-at", POINTS[i // 2]] if i % 2 else []
            go = ["--go", str(tmp_path / f"go{i}")]
            cmd = [sys.executable, str(CRASHPOINT), *go, *kill_at, "--", *twin_args]
            return collector_helpers.start(cmd, log)

        faults: list[Fault] = []
        down: datetime | None = None  # since when no collector has stored anything
        aimed_hits = 0
        procs = [launch(0)]
        try:
            for i in range(KILLS):
                if i + 1 < KILLS:
                    procs.append(launch(i + 1))  # imports while this one runs
                proc = procs[i]
                if i % 2 and POINTS[i // 2].split(":")[0] in ("merged", "journal", "unlink"):
                    _seed_small_files(store)
                since = time.time()
                (tmp_path / f"go{i}").touch()
                deadline = time.monotonic() + 60
                while not _flushed_since(store, since):
                    if proc.poll() is not None:
                        assert i % 2, f"collector {i} exited early"
                        break  # killed itself before its first file was in place
                    assert time.monotonic() < deadline, f"collector {i} stored nothing"
                    time.sleep(0.02)
                if down is not None and _flushed_since(store, since):
                    faults.append(Fault("kill", down, datetime.now(UTC)))
                    down = None
                if i % 2:  # it kills itself at its crash point
                    proc.wait(timeout=60)
                    killed = datetime.now(UTC)
                else:
                    time.sleep(rng.uniform(0.2, 0.6))
                    old = set(store.glob("day=*/*.tmp"))
                    aim = time.monotonic() + 2.0
                    while time.monotonic() < aim and not set(store.glob("day=*/*.tmp")) - old:
                        time.sleep(0.001)
                    aimed_hits += bool(set(store.glob("day=*/*.tmp")) - old)
                    killed = datetime.now(UTC)
                    collector_helpers.kill(proc)
                assert proc.returncode == -9, (i, proc.returncode, log.read_text()[-3000:])
                down = down or killed

                rows = check_store(store, tags, quiet=True)
                last = rows.group_by("tag").agg(pl.max("ts"))
                assert last.height == N_TAGS
                lost = down - last["ts"].min()
                assert lost <= timedelta(seconds=LOSS_S), (i, POINTS[i // 2] if i % 2 else "", lost)
        finally:
            for proc in procs:
                collector_helpers.kill(proc)
        if down is not None:
            faults.append(Fault("kill", down, datetime.now(UTC)))
    finally:
        collector_helpers.kill(server)

    text = log.read_text()
    assert text.count("crashpoint: SIGKILL") == KILLS // 2, text[-3000:]
    rows = check_store(store, tags, quiet=True)
    holes = check_holes(rows, faults, before=LOSS_S, after=1.0)
    assert Historian(store).gaps().is_empty()  # the server never went away
    print(
        f"{KILLS} kills ({aimed_hits} of {KILLS // 2} aimed ones during a flush): "
        f"{rows.height} rows, {holes.height // N_TAGS} holes, all at kills"
    )
