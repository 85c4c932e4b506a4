"""A real plant in ten minutes: from a server that keeps history, with no hand-written tag entry
beyond choosing the CVs, to recommendations.

The CSTR is served on 127.0.0.1 at 20x real time (a sample every 0.3 s) by a server that
historizes its tags; its history storage holds the last 4 h of plant time (recorded with
``twin plant record``, stamped to end now). The engineer's steps, each a ``twin`` command:
``spec discover`` drafts the spec, the test sets the two CVs' roles (what an engineer types),
``backfill`` reads the history, ``train`` learns a twin from it and ``run`` recommends moves
from live data. Nothing is written to the plant (no ``--write``).
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from asyncua import ua
from conftest import REPO, plant_server_thread

from connectors.sim.plants import make_plant
from connectors.sim.record import record
from connectors.sim.server import PlantServer
from twin.control.recommendation_log import RecommendationLog
from twin.spec import load_spec
from twin.store.historian import Historian

pytestmark = pytest.mark.integration

SPEED = 20.0  # the CSTR's 6 s sample every 0.3 s
PERIOD = 6.0 / SPEED
SAMPLES = 2400  # of history in the server: 12 min of wall time, 4 h of plant time
CVS = {"T": (324.5, 1.0), "Ca": (0.877, 0.5)}  # what the engineer chooses: setpoint, weight


def _twin(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "twin", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


async def _fill_history(server: PlantServer, recorded: pl.DataFrame, end: datetime) -> None:
    """Write the recorded samples into the server's history, re-stamped PERIOD apart up to end."""
    assert server.history is not None
    first = recorded["ts"].min()
    for tag, node in server.nodes.values.items():
        rows = recorded.filter(pl.col("tag") == tag).sort("ts")
        for ts, value in zip(rows["ts"], rows["value"], strict=True):
            k = round((ts - first).total_seconds() / 6.0)
            stamp = end - (SAMPLES - k) * timedelta(seconds=PERIOD)
            dv = ua.DataValue(
                ua.Variant(float(value), ua.VariantType.Double),
                StatusCode=ua.StatusCode(ua.StatusCodes.Good),
                SourceTimestamp=stamp,
                ServerTimestamp=stamp,
            )
            await server.history.save_node_value(node, dv)


def _choose_cvs(draft: str) -> str:
    """Set role = "cv" with a setpoint and weight on the CVs: the engineer's only edit."""
    for name, (sp, weight) in CVS.items():
        pattern = rf'(name = "{name}"\n(?:(?!\[\[tags\]\]).)*?)role = "dv"[^\n]*'
        draft, n = re.subn(
            pattern,
            rf'\1role = "cv"\nsetpoint = {sp}\nweight = {weight}',
            draft,
            count=1,
            flags=re.DOTALL,
        )
        assert n == 1, f"no dv role line for {name} in the draft:\n{draft}"
    return draft


def test_discovered_spec_and_backfilled_history_train_a_twin_that_recommends(
    tmp_path: Path,
) -> None:
    plant = make_plant("cstr", seed=3)
    record(plant, SAMPLES * 6.0 / 3600, tmp_path / "recorded", seed=3, progress=False)
    recorded = Historian(tmp_path / "recorded").read()
    live = make_plant("cstr", seed=3)
    with plant_server_thread(live, SPEED, historize=True, history_count=SAMPLES + 5000) as server:
        end = datetime.now(UTC).replace(microsecond=0)
        asyncio.run(_fill_history(server, recorded, end))
        endpoint = server.endpoint

        spec_file = tmp_path / "plant.toml"
        run = _twin("spec", "discover", "--endpoint", endpoint, "--out", str(spec_file),
                    "--period", str(PERIOD), "--sample", "0")  # fmt: skip
        assert run.returncode == 0, run.stderr
        spec_file.write_text(_choose_cvs(spec_file.read_text(encoding="utf-8")), encoding="utf-8")
        spec = load_spec(spec_file)
        assert [t.name for t in spec.cvs] == ["T", "Ca"] and [t.name for t in spec.mvs] == ["Tc"]

        hist = tmp_path / "hist"
        start = end - SAMPLES * timedelta(seconds=PERIOD)
        run = _twin("backfill", "--spec", str(spec_file), "--endpoint", endpoint,
                    "--start", start.isoformat(), "--end", end.isoformat(),
                    "--historian", str(hist), "--no-progress")  # fmt: skip
        assert run.returncode == 0, run.stderr
        stored = Historian(hist).read()
        per_tag = stored.group_by("tag").len()
        assert set(per_tag["tag"]) == set(spec.tag_names)
        assert per_tag["len"].min() >= SAMPLES - 2  # every sample of the range, every tag

        model = tmp_path / "model"
        run = _twin("train", "--spec", str(spec_file), "--historian", str(hist),
                    "--out", str(model), "--minutes", "0.3", "--ensemble", "2",
                    "--end", end.isoformat())  # fmt: skip
        assert run.returncode == 0, run.stderr
        assert (model / "model.pt").exists()

        run = _twin("run", "--spec", str(spec_file), "--model", str(model),
                    "--historian", str(hist), "--endpoint", endpoint, "--duration", "20",
                    "--interval", "2", "--flush-every", "1", timeout=120)  # fmt: skip
        assert run.returncode == 0, run.stderr
    recs = RecommendationLog(hist).read()
    assert recs, run.stderr
    good = [r for r in recs if r.success]
    assert good, [r.message for r in recs]
    tc = spec.tag("Tc")
    for r in good:
        (move,) = r.moves
        assert tc.lo <= move.recommended <= tc.hi
        assert abs(move.recommended - move.current) <= (tc.rate_limit or 0) + 1e-6
