"""``twin run --write`` against a real CSTR plant server on 127.0.0.1: the guarded write-back.

The plant runs 60x faster than real time (a sample every 0.1 s). The shipped CSTR twin knows
samples, not seconds: a copy whose spec says 0.1 s matches that plant one to one (as in
test_run_loop.py). The setpoint T = 327 K lies above the reactor's 324.5 K, so the advice is
warmer coolant. The measured coolant temperature Tc carries sensor noise (sigma 0.05 K), so the
rate limit is checked with --rate-slack 0.5 against the reading taken just before each write.
(A noise-free plant cannot be used: a tag that never changes sends no OPC-UA notifications.)
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from asyncua import Client, ua
from conftest import REPO, plant_server_thread

from connectors.collect import OpcUaFeed
from connectors.opcua_security import Security, connect_client
from connectors.opcua_write import OpcUaMoveWriter
from connectors.sim.plants import make_plant
from connectors.sim.server import PlantServer
from twin.control.recommendation_log import RecommendationLog
from twin.loop.audit import ApprovalQueue, AuditLog
from twin.loop.run import LoopSettings, LoopStats, run_loop
from twin.loop.writer import SPEC_CHANGED
from twin.model.twin import Twin
from twin.spec import PlantSpec, load_spec, spec_to_toml

pytestmark = pytest.mark.integration

SPEED = 60.0  # CSTR sample period 6 s -> a sample every 0.1 s
MODEL = REPO / "data" / "models" / "cstr"
START_TC = 300.0  # the plant's coolant setpoint before anything is written
LOOP = {"interval_s": 1.0, "stale_after_s": 1.5}
FEED = {"flush_every_s": 0.5, "duration_s": 45.0}
SLACK = 0.5  # rate limit 0.5 K per sample -> 0.75 K from the noisy reading


@dataclasses.dataclass
class Rig:
    spec: PlantSpec
    spec_file: Path
    model: Path
    hist: Path
    server: PlantServer
    serving: contextlib.AbstractContextManager[PlantServer] | None = None
    """the server's context when the rig owns it"""

    def stop_server(self) -> None:
        """Stop the rig's own plant server (once): the plant goes away mid-run."""
        if self.serving is not None:
            self.serving.__exit__(None, None, None)
            self.serving = None

    @property
    def audit(self) -> list[dict[str, Any]]:
        return AuditLog(self.hist).read()

    def good_recs(self) -> int:
        return sum(r.success for r in RecommendationLog(self.hist).read())


@pytest.fixture(scope="module")
def plant() -> Iterator[PlantServer]:
    """One CSTR server for the tests that keep it running (starting one takes seconds)."""
    with plant_server_thread(make_plant("cstr", seed=3), SPEED) as server:
        yield server


def make_rig(tmp_path: Path, server: PlantServer, serving: Any = None) -> Rig:
    """A fast copy of the shipped twin and its spec file; the plant's Tc setpoint back at start."""
    model = tmp_path / "model"
    shutil.copytree(MODEL, model)
    spec = load_spec(model / "spec.toml")
    fast = dataclasses.replace(spec, sample_period=spec.sample_period / SPEED)
    (model / "spec.toml").write_text(spec_to_toml(fast), encoding="utf-8")
    spec_file = tmp_path / "cstr-fast.toml"
    spec_file.write_text(spec_to_toml(fast), encoding="utf-8")
    rig = Rig(load_spec(spec_file), spec_file, model, tmp_path / "hist", server, serving)
    asyncio.run(_set_tc(server.endpoint, rig.spec, START_TC))  # what an earlier test wrote
    return rig


@pytest.fixture
def rig(tmp_path: Path, plant: PlantServer) -> Rig:
    """The shared plant with a fresh historian and twin."""
    return make_rig(tmp_path, plant)


@pytest.fixture
def own_rig(tmp_path: Path) -> Iterator[Rig]:
    """A plant server of its own (the test stops it) with a fresh historian and twin."""
    serving = plant_server_thread(make_plant("cstr", seed=4), SPEED)
    rig = make_rig(tmp_path, serving.__enter__(), serving)
    try:
        yield rig
    finally:
        rig.stop_server()


def wait_for(pred: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.2)
    return False


def run_until(
    rig: Rig, operator: Callable[[], None], *, write: bool = False, approve: bool = False
) -> LoopStats:
    """``run_loop`` in this (main) thread while ``operator`` acts from another, then Ctrl-C."""
    failure: list[BaseException] = []

    def act() -> None:
        try:
            operator()
        except BaseException as exc:  # reported after the loop stopped
            failure.append(exc)
        finally:
            os.kill(os.getpid(), signal.SIGINT)

    thread = threading.Thread(target=act, daemon=True)
    thread.start()
    twin = Twin.load(rig.model, spec=rig.spec)
    feed = OpcUaFeed(rig.server.endpoint, **FEED)
    settings = LoopSettings(
        **LOOP,
        setpoints={"T": 327.0},
        model_dir=rig.model,
        rate_slack=SLACK,
        approve=approve,
    )
    writer = OpcUaMoveWriter(rig.server.endpoint) if write else None
    stats = asyncio.run(run_loop(rig.spec, feed, twin, rig.hist, settings=settings, writer=writer))
    thread.join(10)
    if failure:
        raise failure[0]
    return stats


async def _set_tc(url: str, spec: PlantSpec, value: float | None = None) -> float:
    """Write (if ``value`` is given) and read the plant's Tc setpoint node over OPC-UA."""
    client: Client = await connect_client(url, Security())
    try:
        ref = spec.tag("Tc").write_node
        assert ref is not None
        node = client.get_node(ref.resolve(await client.get_namespace_array()))
        if value is not None:
            await node.write_value(ua.Variant(value, ua.VariantType.Double))
        return float(await node.read_value())
    finally:
        await client.disconnect()


def tc_setpoint(rig: Rig) -> float:
    """The plant's Tc setpoint node as an OPC-UA client reads it now."""
    return asyncio.run(_set_tc(rig.server.endpoint, rig.spec))


def actions(entries: list[dict[str, Any]], action: str, ok: bool | None = None) -> list[dict]:
    return [e for e in entries if e["action"] == action and (ok is None or e.get("ok") is ok)]


def ts(entry: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(entry["ts"])


def test_write_moves_the_plant_setpoint_with_the_recommendations(rig: Rig) -> None:
    def operator() -> None:
        assert wait_for(lambda: len(actions(rig.audit, "readback", True)) >= 3, 40), rig.audit

    stats = run_until(rig, operator, write=True)
    assert stats.errors == 0 and stats.write is not None
    entries = rig.audit
    writes, readbacks = actions(entries, "write", True), actions(entries, "readback", True)
    assert len(writes) >= 3 and len(readbacks) == len(writes) == stats.write.written
    assert not actions(entries, "write", False) and not actions(entries, "readback", False)
    recs = {r.ts.isoformat(): r for r in RecommendationLog(rig.hist).read()}
    for w, rb in zip(writes, readbacks, strict=True):
        assert w["tag"] == "Tc" and w["node"] == str(rig.spec.tag("Tc").write_node)
        assert w["why"] == "all checks passed" and w["who"]
        move = recs[w["rec_ts"]].moves[0]  # each write is the recommendation it says it is
        assert w["value"] == move.recommended and abs(move.change) <= 0.5 + 1e-9
        assert rb["rec_ts"] == w["rec_ts"] and rb["value"] == w["value"]
    # warmer coolant for a warmer reactor, each write within the (slack) rate limit of the last
    values = [START_TC] + [w["value"] for w in writes]
    assert all(abs(b - a) <= 0.5 * (1 + SLACK) + 0.3 for a, b in itertools.pairwise(values))
    assert tc_setpoint(rig) == writes[-1]["value"] > START_TC
    # the plant applied it (at its next step: the setpoint node can be written between steps)
    assert wait_for(lambda: rig.server.plant.u[0] == writes[-1]["value"], 5), rig.server.plant.u


def test_without_write_nothing_is_written(rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="twin")

    def operator() -> None:
        assert wait_for(lambda: rig.good_recs() >= 3, 40)

    stats = run_until(rig, operator)  # write-back is off unless asked for
    assert stats.errors == 0 and stats.write is None and stats.recommended >= 3
    good = [r for r in RecommendationLog(rig.hist).read() if r.success]
    assert any(abs(r.moves[0].change) > 0.05 for r in good)  # there was advice to act on
    assert "advisory loop" in caplog.text and "nothing is written to the plant" in caplog.text
    assert "WRITE-BACK" not in caplog.text
    assert not (rig.hist / "audit.jsonl").exists()
    assert tc_setpoint(rig) == START_TC and rig.server.plant.u[0] == START_TC


def test_stale_data_during_an_outage_is_refused_never_written(own_rig: Rig) -> None:
    rig = own_rig
    stopped: list[datetime] = []
    grace = 1.5  # a step under way when the server went may still end in a failed write

    def outage(grace: float = grace) -> list[dict[str, Any]]:
        return [e for e in rig.audit if (ts(e) - stopped[0]).total_seconds() > grace]

    def operator() -> None:
        assert wait_for(lambda: len(actions(rig.audit, "readback", True)) >= 1, 40), rig.audit
        rig.stop_server()
        stopped.append(datetime.now().astimezone())
        assert wait_for(lambda: len(outage()) >= 3, 20), rig.audit

    stats = run_until(rig, operator, write=True)
    assert stats.errors == 0 and stats.write is not None and stats.write.written >= 1
    assert not actions(outage(0.0), "write", True)  # nothing reached the plant once it was gone
    during = outage()
    assert len(during) >= 3
    assert {e["action"] for e in during} == {"refuse"}, during
    for e in during:
        assert "stale data" in e["why"] or "no OPC-UA connection" in e["why"], e["why"]
    assert any("no OPC-UA connection to write with" in e["why"] for e in during)


def test_approval_mode_writes_only_an_approved_recommendation_once(rig: Rig) -> None:
    approved: list[datetime] = []

    def operator() -> None:
        assert wait_for(lambda: rig.good_recs() >= 3, 40)
        assert not actions(rig.audit, "write") and tc_setpoint(rig) == START_TC
        queue = ApprovalQueue(rig.hist)
        for _ in range(4):  # the app's approve button on the newest recommendation
            rec = [r for r in RecommendationLog(rig.hist).read() if r.success][-1]
            queue.approve(rec.ts, "alice")
            approved.append(rec.ts)
            if wait_for(lambda: bool(actions(rig.audit, "write")), 4):
                break
        steps = len(RecommendationLog(rig.hist).read())  # two more steps: used once only
        assert wait_for(lambda: len(RecommendationLog(rig.hist).read()) >= steps + 2, 10)

    stats = run_until(rig, operator, write=True, approve=True)
    assert stats.errors == 0 and stats.write is not None
    entries = rig.audit
    writes = actions(entries, "write")
    assert len(writes) == 1 and writes[0]["ok"], entries
    w = writes[0]
    assert w["rec_ts"] in {t.isoformat() for t in approved}
    assert w["approved_by"] == "operator:alice"
    approvals = actions(entries, "approve")
    assert [a["rec_ts"] for a in approvals] == [w["rec_ts"]]
    assert approvals[0]["who"] == "operator:alice" and ts(approvals[0]) <= ts(w)
    assert [e["rec_ts"] for e in actions(entries, "readback", True)] == [w["rec_ts"]]
    assert stats.write.written == stats.write.approved == 1 and stats.write.waiting >= 2
    assert tc_setpoint(rig) == w["value"] != START_TC


def test_a_spec_file_changed_under_the_running_loop_stops_writing(rig: Rig) -> None:
    changed: list[datetime] = []

    def operator() -> None:
        assert wait_for(lambda: len(actions(rig.audit, "readback", True)) >= 1, 40), rig.audit
        slower = dataclasses.replace(
            rig.spec,
            tags=tuple(
                dataclasses.replace(t, rate_limit=0.2) if t.name == "Tc" else t
                for t in rig.spec.tags
            ),
        )
        changed.append(datetime.now().astimezone())
        rig.spec_file.write_text(spec_to_toml(slower), encoding="utf-8")
        spec_refusals = lambda: [  # noqa: E731
            e for e in actions(rig.audit, "refuse") if SPEC_CHANGED in e["why"]
        ]
        good_after = lambda: [  # noqa: E731
            r for r in RecommendationLog(rig.hist).read() if r.ts > changed[0] and r.success
        ]
        assert wait_for(lambda: len(spec_refusals()) >= 2 and len(good_after()) >= 2, 20)

    stats = run_until(rig, operator, write=True)
    assert stats.errors == 0 and stats.write is not None and stats.write.written >= 1
    entries = rig.audit
    first = next(i for i, e in enumerate(entries) if SPEC_CHANGED in e["why"])
    assert ts(entries[first]) > changed[0]
    after = entries[first:]
    assert {e["action"] for e in after} == {"refuse"}, after
    assert all(SPEC_CHANGED in e["why"] and str(rig.spec_file) in e["why"] for e in after)
    # collecting and advising went on with the spec the loop was started with
    later = [r for r in RecommendationLog(rig.hist).read() if r.ts > changed[0] and r.success]
    assert len(later) >= 2
