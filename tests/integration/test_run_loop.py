"""``twin run`` against a real CSTR plant server on 127.0.0.1: it collects, recommends every
interval into the historian folder, keeps every MV limit, and rides out a server outage.

The plant runs 60x faster than real time (a sample every 0.1 s). The shipped CSTR twin knows
samples, not seconds, so a copy of it whose spec says 0.1 s matches that plant one to one.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, plant_server_thread

from connectors.collect import OpcUaFeed
from connectors.sim.plants import make_plant
from twin.control.controller import Controller
from twin.control.recommendation import Recommendation
from twin.control.recommendation_log import RecommendationLog
from twin.loop.run import LoopSettings, run_loop
from twin.loop.step import recommend_from_historian
from twin.model.adaptive import BANDS_FILE, AdaptiveBands
from twin.model.twin import Twin
from twin.spec import PlantSpec, load_spec, spec_to_toml
from twin.store.historian import Historian

pytestmark = pytest.mark.integration

SPEED = 60.0  # CSTR sample period 6 s -> a sample every 0.1 s
MODEL = REPO / "data" / "models" / "cstr"


def fast_twin(tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the shipped CSTR twin (and its spec file) for a plant served at SPEED."""
    model = tmp_path / "model"
    shutil.copytree(MODEL, model)
    spec = load_spec(model / "spec.toml")
    fast = dataclasses.replace(spec, sample_period=spec.sample_period / SPEED)
    (model / "spec.toml").write_text(spec_to_toml(fast), encoding="utf-8")
    spec_file = tmp_path / "cstr-fast.toml"
    spec_file.write_text(spec_to_toml(fast), encoding="utf-8")
    return model, spec_file


def check_limits(rec: Recommendation, spec: PlantSpec) -> None:
    """Every move of ``rec`` within its MV's limits and rate limit."""
    assert [m.tag for m in rec.moves] == [t.name for t in spec.mvs]
    for m in rec.moves:
        tag = spec.tag(m.tag)
        if not rec.success and math.isnan(m.current):  # no data at all yet: nothing to hold
            assert math.isnan(m.recommended) and not m.limits_held
            continue
        assert tag.lo <= m.recommended <= tag.hi, rec
        assert all(tag.lo - 1e-9 <= v <= tag.hi + 1e-9 for v in m.plan), rec
        if rec.success:
            assert abs(m.recommended - m.current) <= tag.rate_limit + 1e-6, rec
            assert m.limits_held


def wait_for(pred: object, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():  # type: ignore[operator]
            return True
        time.sleep(0.5)
    return False


def test_twin_run_logs_recommendations_within_limits(tmp_path: Path) -> None:
    model, spec_file = fast_twin(tmp_path)
    spec = load_spec(spec_file)
    hist = tmp_path / "hist"
    log = RecommendationLog(hist)
    with plant_server_thread(make_plant("cstr", seed=1), SPEED) as server:
        cmd = [sys.executable, "-m", "twin.cli", "run", "--spec", str(spec_file)]
        cmd += ["--endpoint", server.endpoint, "--model", str(model), "--historian", str(hist)]
        cmd += ["--setpoint", "T=327", "--interval", "1", "--flush-every", "0.5"]
        cmd += ["--stale-after", "3"]
        proc = subprocess.Popen(cmd, cwd=REPO, stderr=subprocess.PIPE, text=True)
        try:
            done = wait_for(lambda: sum(r.success for r in log.read()) >= 4, 60)
            proc.send_signal(signal.SIGINT)
            _, stderr = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert done, f"no 4 good recommendations in 60 s:\n{stderr[-3000:]}"
    assert proc.returncode == 0, stderr[-3000:]
    recs = log.read()
    good = [r for r in recs if r.success]
    assert len(good) >= 4
    for rec in recs:
        assert rec.plant == "cstr"
        check_limits(rec, spec)
    assert all(r.setpoints["T"] == 327.0 for r in recs)
    assert [r.ts for r in good] == sorted(r.ts for r in good)
    assert all(r.forecast is not None and r.forecast.horizon == 30 for r in good)
    # 327 K is above the reactor's 324.5 K: the advice is warmer coolant
    assert all(r.moves[0].change > 0 for r in good[-3:])
    assert "recommend Tc" in stderr and "health" in stderr
    # the bands learned from the outcomes measured meanwhile, kept for a restarted loop
    bands = AdaptiveBands.load(hist / BANDS_FILE)
    assert bands.updates[:, 0].sum() > 0 and "band coverage T" in stderr, stderr[-3000:]
    # a step with the bands carries the adapted band: the calibrated one times their scale
    twin = Twin.load(model, spec=spec)
    reader = Historian(hist)
    steps = [  # a fresh controller each: the same plan (no warm start from the other)
        recommend_from_historian(
            Controller(twin, spec), twin, reader, setpoints={"T": 327.0}, bands=b
        )
        for b in (None, bands)
    ]
    plain, adapted = (s.rec.forecast for s in steps)
    assert plain is not None and adapted is not None
    np.testing.assert_allclose(adapted.mean, plain.mean)
    np.testing.assert_allclose(
        adapted.upper - adapted.lower, (plain.upper - plain.lower) * bands.scale(), atol=1e-9
    )
    assert steps[1].coverage is not None and set(steps[1].coverage) == {"T", "Ca", "Tf"}


def test_loop_logs_stale_data_when_the_server_stops_and_goes_on(tmp_path: Path) -> None:
    model, spec_file = fast_twin(tmp_path)
    spec = load_spec(spec_file)
    twin = Twin.load(model, spec=spec)
    hist = tmp_path / "hist"
    log = RecommendationLog(hist)
    server = plant_server_thread(make_plant("cstr", seed=2), SPEED)
    url = server.__enter__().endpoint
    seen: dict[str, bool] = {}

    def operator() -> None:  # stops the server after 2 good recommendations, then Ctrl-C
        try:
            seen["good"] = wait_for(lambda: sum(r.success for r in log.read()) >= 2, 40)
        finally:
            server.__exit__(None, None, None)
        seen["stale"] = wait_for(lambda: len(after_last_good(log.read())) >= 3, 20)
        os.kill(os.getpid(), signal.SIGINT)

    watcher = threading.Thread(target=operator, daemon=True)
    watcher.start()
    stats = asyncio.run(
        run_loop(
            spec,
            # duration: a safety net, the operator thread stops it first
            OpcUaFeed(url, flush_every_s=0.5, duration_s=60.0),
            twin,
            hist,
            settings=LoopSettings(interval_s=1.0, stale_after_s=1.5),
        )
    )
    watcher.join(5)
    assert seen == {"good": True, "stale": True}
    assert stats.errors == 0
    assert stats.recommended >= 2 and stats.stale >= 3, stats
    recs = log.read()
    assert len(recs) == stats.steps
    after = after_last_good(recs)
    assert len(after) >= 3 and all(stale(r) for r in after)
    for rec in after:  # no move: every MV held where it was last seen
        check_limits(rec, spec)
        assert all(m.recommended == m.current and m.change == 0 for m in rec.moves)


def stale(rec: Recommendation) -> bool:
    return not rec.success and rec.message.startswith("stale data")


def after_last_good(recs: list[Recommendation]) -> list[Recommendation]:
    """The recommendations logged after the last successful one."""
    good = [i for i, r in enumerate(recs) if r.success]
    return recs[good[-1] + 1 :] if good else []
