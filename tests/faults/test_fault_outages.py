"""``twin run --write`` through ten server restarts, two stalls, a model file replaced by garbage
and a spec edited under it: whole store, honest gaps, and no write-back during any fault.

The loop (collector, historian, twin, guarded writer) runs as a user runs it, as a ``twin run``
process, against a CSTR plant served 60x faster than real time (a sample every 0.1 s) by a
server this test restarts and freezes (see fault_helpers.FaultyServer). The twin is the shipped
CSTR model re-saved with that sample period, as in tests/integration/test_run_write.py.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from fault_helpers import Fault, check_holes, check_store, collector_helpers, faulty

from connectors.sim.plants import make_plant
from twin.loop.audit import AuditLog
from twin.loop.writer import MODEL_CHANGED, SPEC_CHANGED
from twin.model.twin import Twin
from twin.spec import PlantSpec, load_spec, spec_to_toml
from twin.store.historian import Historian

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
MODEL = REPO / "data" / "models" / "cstr"
PERIOD = 0.1  # wall seconds per plant sample
FLUSH, INTERVAL, STALE = 0.3, 1.0, 1.5
RESTARTS = 10
LONG_DOWN = (3, 7)  # these restarts keep the server down for 3 s, the others for 0.4 s
#: slack for a loaded 2-core machine: from a fault's end to data flowing again (reconnect,
#: subscribe, first publish), and before its start (the last sample, a missed flush)
AFTER, BEFORE = 6.0, 1.0
#: from a fault's start until the guard must refuse: stale data, one step, a write under way
GRACE = STALE + INTERVAL + 0.5


def _wait(what: str, pred: Callable[[], bool], proc: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert proc.poll() is None, f"twin run exited early while waiting for {what}"
        assert time.monotonic() < deadline, f"no {what} within {timeout} s"
        time.sleep(0.2)


def _fast_twin(tmp_path: Path) -> tuple[Path, Path, PlantSpec]:
    """The shipped twin re-saved with the fast plant's sample period, and that spec's file."""
    twin = Twin.load(MODEL)
    fast = dataclasses.replace(twin.spec, sample_period=PERIOD)
    model = Twin(fast, twin.config, twin.normalizer, twin.model, twin.calibration, twin.metrics)
    folder = model.save(tmp_path / "model")
    spec_file = tmp_path / "cstr-fast.toml"
    spec_file.write_text(spec_to_toml(fast), encoding="utf-8")
    return folder, spec_file, load_spec(spec_file)


def _at(entry: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(entry["ts"])


def test_no_write_back_and_a_whole_store_through_every_fault(tmp_path: Path) -> None:
    model, spec_file, spec = _fast_twin(tmp_path)
    plant = make_plant("cstr", seed=3)
    store, log = tmp_path / "hist", tmp_path / "run.log"
    audit = AuditLog(store)

    def written(since: datetime) -> bool:
        return any(e["action"] == "readback" and e["ok"] and _at(e) > since for e in audit.read())

    def refused(why: str) -> bool:
        return any(e["action"] == "refuse" and why in e["why"] for e in audit.read())

    with faulty(plant, speed=plant.spec.sample_period / PERIOD) as server:
        cmd = [sys.executable, "-m", "twin.cli", "run", "--spec", str(spec_file)]
        cmd += ["--endpoint", server.endpoint, "--model", str(model), "--historian", str(store)]
        cmd += ["--write", "--rate-slack", "0.5", "--setpoint", "T=327"]
        cmd += ["--interval", str(INTERVAL), "--flush-every", str(FLUSH)]
        cmd += ["--stale-after", str(STALE), "--max-backoff", "0.3"]
        run = collector_helpers.start(cmd, log)
        try:
            _wait(
                "write before the faults",
                lambda: written(datetime.min.replace(tzinfo=UTC)),
                run,
                180,
            )
            began = datetime.now(UTC)
            for i in range(RESTARTS):
                time.sleep(1.0)
                server.restart(down_s=3.0 if i in LONG_DOWN else 0.4)
                check_store(store)
            for seconds in (1.5, 6.0):  # shorter, and longer, than the 4 s liveness probe
                time.sleep(1.5)
                server.stall(seconds)
                check_store(store)
            outages = list(server.faults)
            _wait("write after the faults", lambda: written(outages[-1].end), run, 60)

            (model / "model.pt").write_bytes(os.urandom(4096))  # garbage under the running loop
            garbage = datetime.now(UTC)
            _wait("refusal for the changed model", lambda: refused(MODEL_CHANGED), run, 30)
            edited = datetime.now(UTC)
            slower = load_spec(spec_file)
            tags = tuple(
                dataclasses.replace(t, rate_limit=0.2) if t.role == "mv" else t for t in slower.tags
            )
            spec_file.write_text(spec_to_toml(dataclasses.replace(slower, tags=tags)), "utf-8")
            _wait("refusal for the edited spec", lambda: refused(SPEC_CHANGED), run, 30)
            settled = edited + timedelta(seconds=GRACE)
            _wait(
                "steps after the edit",
                lambda: sum(_at(e) > settled for e in audit.read()) >= 2,
                run,
                30,
            )
            ended = datetime.now(UTC)
            collector_helpers.kill(run, signal.SIGTERM)
        finally:
            collector_helpers.kill(run)
    text = log.read_text()
    assert run.returncode == 0, text[-5000:]

    # --- the store: whole, data missing and gaps recorded only while a server fault lasted
    lost = text.count("lost the OPC-UA server")
    assert RESTARTS <= lost <= RESTARTS + 2, text[-5000:]  # a short stall may pass unnoticed
    assert text.count("flows again") == lost
    assert "dropped 0 samples" in text, text[-5000:]
    rows = check_store(store, spec.tag_names, quiet=True)
    holes = check_holes(rows, outages, before=BEFORE, after=AFTER, longest=1.0, start=began)
    gaps = Historian(store).gaps().group_by("start", "end").agg(n=pl.len()).sort("start")
    assert gaps.height == lost and (gaps["n"] == len(spec.tags)).all()
    for g0, g1 in zip(gaps["start"], gaps["end"], strict=True):
        assert any(f.covers(g0, g1, BEFORE, AFTER) for f in outages), (g0, g1, outages)
    for fault in outages[:RESTARTS]:  # one gap per restart, inside it
        inside = gaps.filter((pl.col("start") <= fault.end) & (pl.col("end") >= fault.start))
        assert inside.height == 1, (fault, gaps)
    for fault in outages:  # data resumes after every fault
        resumed = rows.filter(
            pl.col("ts").is_between(fault.end, fault.end + timedelta(seconds=AFTER))
        )
        assert resumed["tag"].n_unique() == len(spec.tags), fault

    # --- write-back: never while a fault lasted, refused (and audited) instead
    entries = audit.read()
    writes = [e for e in entries if e["action"] == "write"]
    assert any(_at(w) < began for w in writes) and any(_at(w) > outages[-1].end for w in writes)
    for fault in outages:
        during = [w for w in writes if fault.start < _at(w) < fault.end]
        assert not [w for w in during if w["ok"]], (fault, during)  # nothing reached the plant
        late = [w for w in during if _at(w) > fault.start + timedelta(seconds=GRACE)]
        assert not late, (fault, late)  # nor was tried once the data went stale
        if fault.end - fault.start > timedelta(seconds=GRACE + INTERVAL):
            said = [
                e for e in entries if e["action"] == "refuse" and fault.start < _at(e) < fault.end
            ]
            assert said, fault  # the guard said why, in the audit log
    files = [Fault("model", garbage, ended), Fault("spec", edited, ended)]
    for fault in files:
        after = [w for w in writes if _at(w) > fault.start + timedelta(seconds=GRACE)]
        assert not after, (fault, after)
    last = [e for e in entries if _at(e) > settled]
    assert last and {e["action"] for e in last} == {"refuse"}, last
    assert all(MODEL_CHANGED in e["why"] and SPEC_CHANGED in e["why"] for e in last), last
    print(
        f"{len(outages)} server faults, {lost} outages seen, {holes.height} holes; "
        f"{len(writes)} writes, {sum(e['action'] == 'refuse' for e in entries)} refusals"
    )
