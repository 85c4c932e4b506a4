"""``twin train --frames``: a twin trained on frame shards (as ``twin frames build`` writes them)
learns from exactly the frame it would have read from the historian, records that historian for
``twin evaluate``, and refuses shards built with another spec.

The shards here are written straight from :func:`twin.store.frames.read_frame` in two chunks,
with the shard writer Spark's job uses; that Spark builds the same frames is
``tests/integration/test_spark_frames.py``'s.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from connectors.sim.plants import make_plant
from connectors.sim.record import record
from twin.cli import main
from twin.model.twin import Twin
from twin.scale.shards import read_shards, shard_name, spec_digest, write_manifest, write_shard
from twin.spec import builtin_spec, parse_spec, spec_to_toml
from twin.store.frames import read_frame
from twin.store.historian import Historian

START = datetime(2026, 1, 1, tzinfo=UTC)
HOURS = 2.0


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(lake plant historian, shard folder) of two recorded CSTR hours, in two shards."""
    root = tmp_path_factory.mktemp("frames")
    hist_dir = root / "lake" / "plant=cstr"
    record(make_plant("cstr", seed=5), HOURS, hist_dir, seed=5, start=START, progress=False)
    spec, hist = builtin_spec("cstr"), Historian(hist_dir)
    out = root / "shards"
    entries = []
    for k in range(2):
        a, b = START + timedelta(hours=k), START + timedelta(hours=k + 1)
        name = shard_name("cstr", a)
        frame = read_frame(hist, spec, a, b)
        write_shard(out, name, frame)
        entries.append({"path": name, "start": a.isoformat(), "end": b.isoformat(),
                        "rows": frame.height})  # fmt: skip
    write_manifest(out, {
        "lake": str(root / "lake"), "start": START.isoformat(),
        "end": (START + timedelta(hours=HOURS)).isoformat(), "chunk_days": {"cstr": 1 / 24},
        "plants": {"cstr": {"spec": spec.to_dict(), "spec_sha256": spec_digest(spec),
                            "spec_source": spec.source, "sample_period_s": spec.sample_period,
                            "max_gap_s": None, "shards": entries}},
    })  # fmt: skip
    return hist_dir, out


def test_a_twin_trained_on_shards_learns_the_historians_frame_and_forecasts(
    shards: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hist_dir, out = shards
    spec = builtin_spec("cstr")
    whole = read_frame(Historian(hist_dir), spec, START, START + timedelta(hours=HOURS))
    assert read_shards(out, "cstr").equals(whole)  # the two shards join to the whole frame
    model = tmp_path / "model"
    argv = ["train", "--spec", "cstr", "--frames", str(out), "--out", str(model)]
    argv += ["--minutes", "0.05", "--ensemble", "2", "--window", "12", "--horizon", "12"]
    assert main(argv) == 0
    said = capsys.readouterr().out
    assert f"{whole.height} samples" in said and "saved" in said
    metrics = json.loads((model / "metrics.json").read_text())
    data = metrics["training_data"]
    assert data["samples"] == whole.height
    assert data["historian"] == str(hist_dir.resolve())  # twin evaluate fits baselines there
    twin = Twin.load(model)
    fc = twin.forecast(whole.tail(40), np.tile([300.0], (twin.horizon, 1)))
    assert np.isfinite(fc.mean).all() and fc.mean.shape[0] == twin.horizon


def test_shards_built_with_another_spec_are_refused(
    shards: tuple[Path, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _, out = shards
    spec = builtin_spec("cstr")
    other = parse_spec(spec_to_toml(spec).replace("sample_period_s = 6", "sample_period_s = 12"))
    path = tmp_path / "cstr-12s.toml"
    path.write_text(spec_to_toml(other), encoding="utf-8")
    argv = ["train", "--spec", str(path), "--frames", str(out), "--out", str(tmp_path / "m")]
    assert main(argv) == 2
    assert f"{out}: the frames of cstr were built with another spec" in caplog.text
    assert not (tmp_path / "m").exists()
