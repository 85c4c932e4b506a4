"""``twin run --write`` against a real CSTR plant server on 127.0.0.1: the guarded write-back.

The plant runs 60x faster than real time (a sample every 0.1 s) without measurement noise, so
the measured coolant temperature Tc is exactly the setpoint the plant applied and a rate-limit
check against it is exact. The shipped CSTR twin knows samples, not seconds: a copy whose spec
says 0.1 s matches that plant one to one (as in test_run_loop.py). The setpoint T = 327 K lies
above the reactor's 324.5 K, so every good recommendation moves the coolant up.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from asyncua import Client
from conftest import REPO, plant_server_thread

from connectors.opcua_security import Security, connect_client
from connectors.sim import make_plant
from connectors.sim.server import PlantServer
from twin.audit import ApprovalQueue, AuditLog
from twin.export import RecommendationLog
from twin.loop import LoopStats, run_loop
from twin.loop_write import SPEC_CHANGED
from twin.spec import PlantSpec, load_spec
from twin.twin import Twin, spec_to_toml

pytestmark = pytest.mark.integration

SPEED = 60.0  # CSTR sample period 6 s -> a sample every 0.1 s
MODEL = REPO / "data" / "models" / "cstr"
START_TC = 300.0  # the plant's coolant setpoint before anything is written
LOOP = {"interval_s": 1.0, "flush_every_s": 0.5, "stale_after_s": 1.5, "duration_s": 45.0}


@dataclasses.dataclass
class Rig:
    spec: PlantSpec
    spec_file: Path
    model: Path
    hist: Path
    server: PlantServer
    serving: contextlib.AbstractContextManager[PlantServer]
    stopped: bool = False

    def stop_server(self) -> None:
        """Stop the plant's server (once): the plant goes away mid-run."""
        if not self.stopped:
            self.stopped = True
            self.serving.__exit__(None, None, None)

    @property
    def audit(self) -> list[dict[str, Any]]:
        return AuditLog(self.hist).read()

    def good_recs(self) -> int:
        return sum(r.success for r in RecommendationLog(self.hist).read())


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    """A fast copy of the shipped twin, its spec file, and a noise-free CSTR served at SPEED."""
    model = tmp_path / "model"
    shutil.copytree(MODEL, model)
    spec = load_spec(model / "spec.toml")
    fast = dataclasses.replace(spec, sample_period=spec.sample_period / SPEED)
    (model / "spec.toml").write_text(spec_to_toml(fast), encoding="utf-8")
    spec_file = tmp_path / "cstr-fast.toml"
    spec_file.write_text(spec_to_toml(fast), encoding="utf-8")
    serving = plant_server_thread(make_plant("cstr", seed=3, noise=False), SPEED)
    server = serving.__enter__()
    rig = Rig(load_spec(spec_file), spec_file, model, tmp_path / "hist", server, serving)
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


def run_until(rig: Rig, operator: Callable[[], None], **options: Any) -> LoopStats:
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
    stats = asyncio.run(
        run_loop(
            rig.spec,
            rig.server.endpoint,
            twin,
            rig.hist,
            setpoints={"T": 327.0},
            model_dir=rig.model,
            **(LOOP | options),
        )
    )
    thread.join(10)
    if failure:
        raise failure[0]
    return stats


async def _tc_setpoint(url: str, spec: PlantSpec) -> float:
    client: Client = await connect_client(url, Security())
    try:
        node = spec.tag("Tc").write_node
        assert node is not None
        ns = await client.get_namespace_array()
        return float(await client.get_node(node.resolve(ns)).read_value())
    finally:
        await client.disconnect()


def tc_setpoint(rig: Rig) -> float:
    """The plant's Tc setpoint node as an OPC-UA client reads it now."""
    return asyncio.run(_tc_setpoint(rig.server.endpoint, rig.spec))


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
        rec = recs[w["rec_ts"]]  # each write is the recommendation it says it is
        assert rec.success and w["value"] == rec.moves[0].recommended
        assert rb["rec_ts"] == w["rec_ts"] and rb["value"] == w["value"]
    # warmer coolant for a warmer reactor, each write within the rate limit of the one before
    values = [START_TC] + [w["value"] for w in writes]
    assert all(abs(b - a) <= 0.5 + 1e-9 for a, b in itertools.pairwise(values))
    assert tc_setpoint(rig) == writes[-1]["value"] > START_TC
    assert rig.server.plant.u[0] == writes[-1]["value"]  # the plant applied it


def test_without_write_nothing_is_written(rig: Rig) -> None:
    cmd = [sys.executable, "-m", "twin.cli", "run", "--spec", str(rig.spec_file)]
    cmd += ["--endpoint", rig.server.endpoint, "--model", str(rig.model)]
    cmd += ["--historian", str(rig.hist), "--setpoint", "T=327", "--interval", "1"]
    cmd += ["--flush-every", "0.5", "--stale-after", "1.5"]
    proc = subprocess.Popen(cmd, cwd=REPO, stderr=subprocess.PIPE, text=True)
    try:
        done = wait_for(lambda: rig.good_recs() >= 3, 40)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert done and proc.returncode == 0, stderr[-3000:]
    good = [r for r in RecommendationLog(rig.hist).read() if r.success]
    assert all(r.moves[0].change > 0 for r in good[-2:])  # there was advice to act on
    assert "advisory loop" in stderr and "nothing is written to the plant" in stderr
    assert "WRITE-BACK" not in stderr
    assert not (rig.hist / "audit.jsonl").exists()
    assert tc_setpoint(rig) == START_TC and rig.server.plant.u[0] == START_TC


def test_stale_data_during_an_outage_is_refused_never_written(rig: Rig) -> None:
    stopped: list[datetime] = []

    def operator() -> None:
        assert wait_for(lambda: len(actions(rig.audit, "readback", True)) >= 1, 40), rig.audit
        rig.stop_server()
        stopped.append(datetime.now().astimezone())
        outage = lambda: [e for e in rig.audit if ts(e) > stopped[0]]  # noqa: E731
        assert wait_for(lambda: len(actions(outage(), "refuse")) >= 4, 20), rig.audit

    stats = run_until(rig, operator, write=True)
    assert stats.errors == 0 and stats.write is not None and stats.write.written >= 1
    grace = 1.5  # a step under way when the server went may still end as a failed write
    outage = [e for e in rig.audit if (ts(e) - stopped[0]).total_seconds() > grace]
    assert len(outage) >= 3
    assert {e["action"] for e in outage} == {"refuse"}, outage
    for e in outage:
        assert "stale data" in e["why"] or "no OPC-UA connection" in e["why"], e["why"]
    assert any("no OPC-UA connection to write with" in e["why"] for e in outage)


def test_approval_mode_writes_only_an_approved_recommendation_once(rig: Rig) -> None:
    approved: list[datetime] = []

    def operator() -> None:
        assert wait_for(lambda: rig.good_recs() >= 4, 40)
        time.sleep(1.5)  # another step or two: still nothing may be written
        assert not actions(rig.audit, "write") and tc_setpoint(rig) == START_TC
        queue = ApprovalQueue(rig.hist)
        for _ in range(4):  # the app's approve button on the newest recommendation
            rec = [r for r in RecommendationLog(rig.hist).read() if r.success][-1]
            queue.approve(rec.ts, "alice")
            approved.append(rec.ts)
            if wait_for(lambda: bool(actions(rig.audit, "write")), 4):
                break
        time.sleep(2.5)  # more steps: the approval is used once only

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
    assert stats.write.written == stats.write.approved == 1 and stats.write.waiting >= 3
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
        assert wait_for(lambda: len(spec_refusals()) >= 3, 20), rig.audit

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
