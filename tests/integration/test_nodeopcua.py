"""The product against node-opcua, an OPC-UA server not built on asyncua (issue 13, item 8).

One heated-tank server (``nodeopcua/server.js``) on a free 127.0.0.1 port for the module,
started and stopped by its PID; ``npm ci`` installs node-opcua 2.182.x from its lock file the
first time. Without Node.js and npm the tests fail, saying so. The server's measured tags change
every 0.1 s, its MV (HeaterPower) changes only when written, so node-opcua notifies it once
per subscription (report-by-exception), and JacketTemperature is a failed sensor.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import nodeopcua_helpers as node
import polars as pl
import pytest
from collector_helpers import REPO, free_port

from connectors.collect import SERVER_INFO, run_collect
from connectors.opcua_session import CollectorSettings
from connectors.opcua_write import OpcUaMoveWriter
from twin.control.recommendation import MoveRec, Recommendation
from twin.loop.audit import AuditLog
from twin.loop.guard import Decision, WriteGuard
from twin.loop.writeback import write_moves
from twin.spec import PlantSpec, load_spec
from twin.store.historian import Historian

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TAGS = (*node.MEASURED, node.BAD_TAG, node.MV)
PERIOD = 0.5  # the sample period given to the draft (the server steps every 0.1 s)
COLLECT_S = 20.0
MAX_GAP = 5.0  # shorter than the collection: a still value must not age out of the frame
#: node-opcua stamps the tags of one step within a fraction of a millisecond of each other: one
#: gap record for all tags may start or end at any of them
ONE_STEP = timedelta(milliseconds=1)


@pytest.fixture(scope="module")
def tank(tmp_path_factory: pytest.TempPathFactory) -> Iterator[node.HeatedTank]:
    """The heated tank served by node-opcua for the whole module (restarted by one test)."""
    executable = node.install()
    where = tmp_path_factory.mktemp("nodeopcua")
    with node.HeatedTank(executable, free_port(), where / "pki", where / "server.log") as server:
        yield server


@pytest.fixture(scope="module")
def draft(tank: node.HeatedTank, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """``twin spec discover`` over the whole Objects folder: (its stdout, the draft)."""
    out = tmp_path_factory.mktemp("draft") / "tank.toml"
    cmd = [sys.executable, "-m", "twin.cli", "spec", "discover", "--endpoint", tank.url]
    run = subprocess.run(
        [*cmd, "--out", str(out), "--sample", "0", "--period", str(PERIOD)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stderr
    return run.stdout, out


@dataclasses.dataclass(frozen=True)
class Collected:
    spec: PlantSpec
    hist: Path
    start: datetime
    end: datetime

    def rows(self, tag: str) -> pl.DataFrame:
        return Historian(self.hist).read([tag]).sort("ts")


@pytest.fixture(scope="module")
def collected(
    tank: node.HeatedTank, draft: tuple[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Collected:
    """The collector on the drafted spec for :data:`COLLECT_S` seconds, nothing written."""
    spec = load_spec(draft[1])
    hist = tmp_path_factory.mktemp("collect") / "hist"
    start = datetime.now(UTC)
    asyncio.run(run_collect(spec, tank.url, hist, duration_s=COLLECT_S, flush_every_s=1.0))
    return Collected(spec, hist, start, datetime.now(UTC))


def test_discover_drafts_every_tag_with_its_unit_range_and_the_mv(draft: tuple[str, Path]) -> None:
    """Units and ranges come from node-opcua's AnalogItemType properties; the writable heater
    power is the one MV candidate, with itself as write node; no CV is chosen."""
    stdout, path = draft
    spec = load_spec(path)
    assert spec.name == "HeatedTank" and set(spec.tag_names) == set(TAGS)
    assert spec.sample_period == PERIOD
    want = {
        "Temperature": ("°C", 0, 150),
        "Level": ("m", 0, 5),
        "InletFlow": ("m³/h", 0, 20),
        "InletTemperature": ("°C", 0, 100),
        "JacketTemperature": ("°C", 0, 200),
        "HeaterPower": ("kW", 0, 100),
    }
    for name, (unit, lo, hi) in want.items():
        tag = spec.tag(name)
        assert (tag.unit, tag.lo, tag.hi) == (unit, lo, hi), name
        assert tag.node is not None and tag.node.namespace_uri == node.NAMESPACE
        assert str(tag.node).endswith(f"s=HeatedTank.{name}")
    assert [t.name for t in spec.mvs] == [node.MV] and not spec.cvs
    mv = spec.tag(node.MV)
    assert mv.write_node == mv.node and mv.rate_limit == 10.0
    text = path.read_text(encoding="utf-8")
    assert text.count("# from EURange") == 2 * len(TAGS)
    assert text.count("# from EngineeringUnits") == len(TAGS)
    assert "# FILL IN" not in text
    assert "no CV chosen" in stdout and "MV candidates ['HeaterPower']" in stdout


def test_collect_stores_every_tag_and_the_failed_sensor_as_bad(collected: Collected) -> None:
    """Every tag is in the historian; the measured ones good, changing and within their EURange;
    the failed sensor with node-opcua's BadSensorFailure; the server's units agree with the spec."""
    rows = Historian(collected.hist).read(list(TAGS))
    assert set(rows["tag"]) == set(TAGS)
    for name in node.MEASURED:
        got = collected.rows(name)
        tag = collected.spec.tag(name)
        assert got.height >= COLLECT_S * 5, (name, got.height)  # steps every 0.1 s
        assert set(got["quality"]) == {"good"} and set(got["status"]) == {0}
        assert got["value"].n_unique() > got.height // 2, name  # it changes
        assert got["value"].min() >= tag.lo and got["value"].max() <= tag.hi
    bad = collected.rows(node.BAD_TAG)
    assert bad.height >= 1
    assert set(bad["quality"]) == {"bad"} and set(bad["status"]) == {node.BAD_SENSOR_FAILURE}
    info = json.loads((collected.hist / SERVER_INFO).read_text(encoding="utf-8"))
    assert set(info["tags"]) == set(TAGS)
    for name, said in info["tags"].items():
        tag = collected.spec.tag(name)
        assert said["unit"] == tag.unit and said["eu_range"] == [tag.lo, tag.hi]
        assert not said["disagrees"], (name, said)


def test_a_still_mv_is_stored_with_the_time_it_last_changed(
    tank: node.HeatedTank, collected: Collected
) -> None:
    """What the collector keeps of an MV node-opcua never notifies again: its value, good, with
    the source timestamp node-opcua gave it when it was set (before the server listened), not
    the time of subscribing."""
    got = collected.rows(node.MV)
    assert got.height >= 1
    assert set(got["value"]) == {node.MV_START} and set(got["quality"]) == {"good"}
    assert tank.ready_at is not None
    assert got["ts"][0] <= tank.ready_at < collected.start


def test_a_still_mv_stays_valid_in_the_frame_while_the_session_lives(
    collected: Collected,
) -> None:
    """Over the whole collection, with a max_gap much shorter than it, the still MV is good in
    every row of the frame (its session never broke), as are the measured tags; the failed
    sensor is bad in every row."""
    start = collected.start + timedelta(seconds=2)  # after the subscription's first notifications
    end = collected.end - timedelta(seconds=1)
    assert (end - start).total_seconds() > 3 * MAX_GAP
    frame = Historian(collected.hist).frame(collected.spec, start, end, max_gap=MAX_GAP)
    assert frame.height >= (end - start).total_seconds() / PERIOD - 1
    for name in node.MEASURED:
        assert set(frame[f"{name}__state"]) == {"good"}, name
    assert set(frame[f"{node.BAD_TAG}__state"]) == {"bad"}
    mv = frame.select("ts", node.MV, f"{node.MV}__ok", f"{node.MV}__state")
    assert set(mv[f"{node.MV}__state"]) == {"good"}, mv
    assert mv[f"{node.MV}__ok"].all() and set(mv[node.MV]) == {node.MV_START}


def _recommend(spec: PlantSpec, current: float, value: float) -> Recommendation:
    """A recommendation that moves the MV from ``current`` to ``value`` (as a controller would)."""
    mv = spec.tag(node.MV)
    move = MoveRec(
        tag=mv.name,
        node=str(mv.node),
        write_node=str(mv.write_node),
        unit=mv.unit,
        current=current,
        recommended=value,
        change=value - current,
        lo=mv.lo,
        hi=mv.hi,
        rate_limit=float(mv.rate_limit or 0.0),
        plan=(value,),
        limits_held=mv.lo <= value <= mv.hi,
    )
    return Recommendation(
        ts=datetime.now(UTC),
        plant=spec.name,
        success=True,
        message="solved",
        moves=(move,),
        setpoints={},
        forecast=None,
        objective=0.0,
        solve_time_s=0.0,
        iterations=1,
        limits_held=move.limits_held,
    )


def test_the_guarded_write_moves_the_node_opcua_mv_within_its_limits(
    tank: node.HeatedTank,
    draft: tuple[str, Path],
    collected: Collected,  # the still MV's collection is over before anything is written
    tmp_path: Path,
) -> None:
    """The write-back path of ``twin run --write`` over the product's OPC-UA writer: a move
    within the MV's range and rate limit reaches node-opcua (it says the value changed, and the
    read-back agrees); one beyond the range is refused and node-opcua's value stays."""
    spec = load_spec(draft[1])
    audit = AuditLog(tmp_path)
    before = len(tank.written)

    async def operate() -> tuple[float, list[Decision], list[float]]:
        plant = OpcUaMoveWriter(tank.url)
        await plant.open(timeout_s=10.0)
        try:
            start = (await plant.read_measured(spec.mvs))[node.MV]
            decisions, measured = [], []
            # within [0, 100] kW and the 10 kW rate limit; then beyond EURange's 100 kW
            for current, value in ((start, start + 7.5), (start + 7.5, 150.0)):
                rec = _recommend(spec, current, value)
                decisions.append(
                    await write_moves(
                        plant,
                        spec,
                        rec,
                        WriteGuard(spec),
                        audit,
                        last_measured={},
                        data_age_s=0.2,
                        health_ratio=1.0,
                        enabled=True,
                    )
                )
                measured.append((await plant.read_measured(spec.mvs))[node.MV])
            return start, decisions, measured
        finally:
            await plant.close()

    start, (done, refused), (after_write, after_refusal) = asyncio.run(operate())
    target = start + 7.5
    assert done.allowed and done.written == ((node.MV, target),), done
    assert tank.wait_written(target) and after_write == target
    entries = audit.read()
    assert [(e["action"], e["ok"], e["value"]) for e in entries[:2]] == [
        ("write", True, target),
        ("readback", True, target),
    ]
    assert entries[0]["node"] == str(spec.tag(node.MV).write_node)

    assert not refused.allowed and "outside [0, 100]" in refused.why, refused
    assert after_refusal == target and tank.written[before:] == [target]
    assert [e["action"] for e in entries[2:]] == ["refuse"]


@dataclasses.dataclass(frozen=True)
class Restart:
    hist: Path
    gone: datetime
    """when the stopped server's process had exited"""
    started: datetime
    """when the new server's process was spawned: it steps (and stamps samples) before it
    says it serves, and a client that probes the port may subscribe before that line is read"""
    ready: datetime
    """when the restarted server said it serves"""

    def tag_rows(self, tag: str) -> pl.DataFrame:
        return Historian(self.hist).read([tag]).sort("ts")


@pytest.fixture(scope="module")
def restart(
    tank: node.HeatedTank, draft: tuple[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Restart:
    """The collector running while node-opcua is stopped by its PID and started again on the
    same port; stopped (SIGINT) once every measured tag flows again."""
    spec = load_spec(draft[1])
    hist = tmp_path_factory.mktemp("restart") / "hist"
    times: dict[str, datetime] = {}
    failure: list[BaseException] = []
    collecting = threading.Event()

    def flowing() -> bool:
        after = Historian(hist).read(list(node.MEASURED), times["ready"])
        return set(after["tag"]) == set(node.MEASURED)

    def operator() -> None:
        try:
            time.sleep(2.0)
            times["gone"] = tank.stop()
            time.sleep(1.0)
            tank.start()
            assert tank.ready_at is not None and tank.started_at is not None
            times["started"], times["ready"] = tank.started_at, tank.ready_at
            deadline = time.monotonic() + 15
            while not flowing() and time.monotonic() < deadline:
                time.sleep(0.2)
            time.sleep(0.5)
        except BaseException as exc:  # reported after the collector stopped
            failure.append(exc)
        finally:
            if collecting.is_set():
                os.kill(os.getpid(), signal.SIGINT)  # the collector's Ctrl-C

    thread = threading.Thread(target=operator, daemon=True)
    settings = CollectorSettings(backoff_max_s=1.0)
    collecting.set()
    thread.start()
    try:
        asyncio.run(
            run_collect(spec, tank.url, hist, settings=settings, duration_s=120, flush_every_s=0.5)
        )
    finally:
        collecting.clear()
    thread.join(10)
    if failure:
        raise failure[0]
    return Restart(hist, times["gone"], times["started"], times["ready"])


def _gap(restart: Restart, tag: str) -> tuple[datetime, datetime]:
    gaps = Historian(restart.hist).gaps().filter(pl.col("tag") == tag)
    assert gaps.height == 1, (tag, gaps)  # one outage, one gap
    return gaps["start"][0], gaps["end"][0]


def test_a_restart_is_one_gap_per_tag_and_collection_resumes(restart: Restart) -> None:
    """Every tag has one recorded gap over the moment the server was gone; no stored sample of
    a measured tag lies inside the hole, while no server process existed (the gap runs on until
    the collector's session is back, a few tens of ms after node-opcua's first new samples, which
    it stamps from its spawn on, before it says it serves), and they all flow again."""
    for name in TAGS:
        g0, g1 = _gap(restart, name)
        assert g0 <= restart.gone < g1, (name, g0, g1, restart.gone)
    for name in node.MEASURED:
        g0, g1 = _gap(restart, name)
        rows = restart.tag_rows(name)
        hole_end = min(g1, restart.started)
        inside = rows.filter((pl.col("ts") > g0 + ONE_STEP) & (pl.col("ts") < hole_end - ONE_STEP))
        assert inside.is_empty(), (name, g0, g1, inside["ts"].to_list())
        assert rows.filter(pl.col("ts") > restart.ready).height >= 2, name


def test_a_restart_gap_ends_where_the_measured_tags_flow_again(restart: Restart) -> None:
    """No unmarked hole after the outage: each measured tag's gap reaches its first sample
    after the restart (the still MV's sample, stamped when node-opcua set it at start-up, is
    older than those)."""
    for name in node.MEASURED:
        _, g1 = _gap(restart, name)
        rows = restart.tag_rows(name)
        first_after = rows.filter(pl.col("ts") > restart.gone)["ts"][0]
        assert g1 >= first_after - ONE_STEP, (name, g1, first_after)
