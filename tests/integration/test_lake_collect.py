"""Two plants collected by two ``twin collect`` processes into one lake, read back per plant."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import collector_helpers as helpers
import polars as pl
import pytest

from twin.spec import load_spec
from twin.store.lake import Lake

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PERIOD = 0.2  # s between the toy servers' updates


def test_two_collectors_write_two_plants_of_one_lake(tmp_path: Path) -> None:
    root = tmp_path / "lake"
    plants = {"north": 2, "south": 3}  # plant -> tags its server has
    servers, collectors = [], []
    try:
        for plant, n in plants.items():
            port = helpers.free_port()
            servers.append(helpers.start_toy_server(port, n, PERIOD, tmp_path / f"{plant}.log"))
            spec_file = helpers.toy_spec(tmp_path / f"{plant}.toml", helpers.tag_names(n), PERIOD)
            cmd = [
                sys.executable, "-m", "twin.cli", "collect", "--spec", str(spec_file),
                "--endpoint", f"opc.tcp://127.0.0.1:{port}/toy/",
                "--lake", str(root), "--plant", plant, "--duration", "4", "--flush-every", "1",
            ]  # fmt: skip
            collectors.append(
                subprocess.Popen(
                    cmd, cwd=helpers.REPO, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True
                )
            )
        outcomes = [c.communicate(timeout=60) for c in collectors]
    finally:
        for proc in [*collectors, *servers]:
            helpers.kill(proc)
    for c, (_, err) in zip(collectors, outcomes, strict=True):
        assert c.returncode == 0, err
        assert "Traceback" not in err

    lake = Lake(root)
    assert lake.plants() == ["north", "south"]
    for plant in plants:
        spec = load_spec(tmp_path / f"{plant}.toml")
        rows = lake.historian(plant).read(spec.tag_names)
        assert set(rows["tag"]) == set(spec.tag_names)  # its own tags, and only those
        # the toy server sends k + j/1000 to tag j: each value came from its own tag's node
        j = (rows["value"] * 1000).round().cast(pl.Int64) % 1000
        assert (j == rows["tag"].str.slice(1).cast(pl.Int64)).all()
        per_tag = rows.group_by("tag").len()["len"]
        assert per_tag.min() >= 8  # ~4 s at 5 updates per second, allowing for start-up
        frame = lake.historian(plant).frame(spec, rows["ts"].min(), rows["ts"].max())
        assert frame.height > 0
    everything = lake.scan().collect()
    tags_per_plant = everything.group_by("plant").agg(pl.col("tag").n_unique()).sort("plant")
    assert tags_per_plant.rows() == [("north", 2), ("south", 3)]
