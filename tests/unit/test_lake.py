"""A lake of many plants: per-plant historians under one root, read per plant and all at once."""

from __future__ import annotations

import os
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from twin.cli import build_parser, main
from twin.errors import TwinError
from twin.store.historian import Historian
from twin.store.lake import DATA_GLOB, Lake
from twin.store.liveness import ALIVE

T0 = datetime(2026, 3, 1, 23, 0, tzinfo=UTC)  # the rows cross midnight: two day folders


def rows(tags: list[str], n: int, offset: float) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "tag": [t for t in tags for _ in range(n)],
            "ts": [T0 + timedelta(minutes=10 * i) for _ in tags for i in range(n)],
            "value": [offset + 10 * j + i for j in range(len(tags)) for i in range(n)],
        }
    )


def marks(n: int) -> pl.DataFrame:
    ts = [T0 + timedelta(minutes=10 * i) for i in range(n)]
    return pl.DataFrame({"tag": [ALIVE] * n, "ts": ts, "value": [600.0 * i for i in range(n)]})


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    """Two plants written by two writers, each with liveness marks and a recorded gap."""
    lake = Lake(tmp_path / "lake")
    for plant, tags, offset in (("cstr", ["T", "Ca"], 0.0), ("ph", ["pH"], 100.0)):
        hist = lake.historian(plant)
        hist.append(rows(tags, 12, offset))
        hist.append(marks(12))
        hist.record_gap(tags, T0, T0 + timedelta(minutes=5), "server restart")
    # things a lake-wide scan must not read: a stray Parquet export, a quarantined file,
    # a write under way
    rows(["X"], 3, 0.0).write_parquet(lake.path("cstr") / "export.parquet")
    (lake.path("cstr") / "quarantine" / "day=2026-03-01").mkdir(parents=True)
    (lake.path("cstr") / "quarantine" / "day=2026-03-01" / "p.parquet.corrupt").write_text("x")
    (lake.path("ph") / "day=2026-03-02" / "part-x.parquet.tmp").write_text("torn")
    return lake


def test_each_plant_reads_back_exactly_as_written_by_a_plain_historian(lake: Lake) -> None:
    assert lake.plants() == ["cstr", "ph"]
    for plant, tags, offset in (("cstr", ["T", "Ca"], 0.0), ("ph", ["pH"], 100.0)):
        got = Historian(lake.root / f"plant={plant}").read(tags)
        want = rows(tags, 12, offset).sort("tag", "ts")
        assert_frame_equal(got.select("tag", "ts", "value"), want, check_dtypes=False)
        assert set(got["quality"]) == {"good"}
        assert lake.historian(plant).gaps()["tag"].sort().to_list() == sorted(tags)
    info = lake.info("cstr")
    assert (info.first_day, info.last_day, info.days) == (date(2026, 3, 1), date(2026, 3, 2), 2)


def test_lake_wide_scan_sees_both_plants_and_only_data_rows(lake: Lake) -> None:
    got = lake.scan().collect().sort("plant", "tag", "ts")
    assert got.group_by("plant").len().sort("plant").rows() == [("cstr", 24), ("ph", 12)]
    assert set(got["tag"]) == {"T", "Ca", "pH"}  # no liveness marks, no stray export
    assert got.schema["plant"] == pl.String and got.schema["day"] == pl.Date
    assert sorted(set(got["day"].cast(pl.String))) == ["2026-03-01", "2026-03-02"]
    ph = got.filter(plant="ph").select("tag", "ts", "value")
    assert_frame_equal(ph, rows(["pH"], 12, 100.0), check_dtypes=False)
    # the documented glob, as any engine would use it, reads the same files
    raw = pl.scan_parquet(str(lake.root / DATA_GLOB), hive_partitioning=True).collect()
    assert raw.height == got.height + 2 * 12  # plus each plant's liveness marks
    assert set(raw["tag"]) == {"T", "Ca", "pH", ALIVE}


def test_lake_add_moves_a_historian_in_and_it_reads_the_same(tmp_path: Path) -> None:
    old = Historian(tmp_path / "hist")
    old.append(rows(["T", "Ca"], 12, 0.0))
    before = old.read()
    assert main(["lake", "add", str(tmp_path / "hist"), "--lake", str(tmp_path / "lake"),
                 "--plant", "cstr"]) == 0  # fmt: skip
    assert not (tmp_path / "hist").exists()
    lake = Lake(tmp_path / "lake")
    assert lake.plants() == ["cstr"]
    assert_frame_equal(lake.historian("cstr").read(), before)
    # a plant the lake holds already is refused, and the source stays where it is
    Historian(tmp_path / "other").append(rows(["T"], 2, 0.0))
    with pytest.raises(TwinError, match="already holds plant 'cstr'"):
        lake.add(tmp_path / "other", "cstr")
    assert (tmp_path / "other").is_dir()
    with pytest.raises(TwinError, match="not a historian folder"):
        lake.add(tmp_path, "empty")  # a folder without day folders


def test_lake_add_across_filesystems_is_refused_and_moves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    Historian(tmp_path / "hist").append(rows(["T"], 3, 0.0))

    def cross_device(src: object, dst: object) -> None:
        raise OSError(18, "Invalid cross-device link")  # EXDEV

    monkeypatch.setattr(os, "rename", cross_device)
    with pytest.raises(TwinError, match="different filesystems: nothing was moved"):
        Lake(tmp_path / "lake").add(tmp_path / "hist", "cstr")
    assert len(Historian(tmp_path / "hist").read()) == 3


@pytest.mark.parametrize("name", ["../x", "a/b", "", "1plant", "_x", "x" * 65, "a b"])
def test_bad_plant_names_are_refused(tmp_path: Path, name: str, capsys) -> None:
    with pytest.raises(TwinError, match="plant name"):
        Lake(tmp_path).historian(name)
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(
            ["train", "--spec", "cstr", "--lake", str(tmp_path), "--plant", name, "--out", "m"]
        )
    assert exc.value.code == 2
    assert "plant name" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # nothing created


def test_lake_and_plant_resolve_to_the_plant_historian_for_import(tmp_path: Path, capsys) -> None:
    csv = tmp_path / "w.csv"
    csv.write_text(
        "time,T,Ca,Tc,Tf\n"
        + "".join(f"2026-03-01T00:0{i}:00Z,{350 + i},0.5,300,350\n" for i in range(5)),
        encoding="utf-8",
    )
    root = tmp_path / "lake"
    for plant in ("north", "south"):  # two `twin import` runs, two plants
        assert main(["import", "--spec", "cstr", "--input", str(csv), "--lake", str(root),
                     "--plant", plant]) == 0  # fmt: skip
    assert Lake(root).plants() == ["north", "south"]
    got = Historian(root / "plant=south").read(["T"])
    assert got["value"].to_list() == [350.0, 351.0, 352.0, 353.0, 354.0]
    # every command of the helper resolves the same way, in either option order
    for argv in (
        ["train", "--spec", "cstr", "--plant", "north", "--lake", str(root), "--out", "m"],
        ["evaluate", "--model", "m", "--lake", str(root), "--plant", "north", "--out", "r"],
        ["collect", "--spec", "cstr", "--endpoint", "opc.tcp://h:4840", "--lake", str(root),
         "--plant", "north"],
        ["recommend", "--model", "m", "--lake", str(root), "--plant", "north", "--out", "o.csv"],
        ["whatif", "--model", "m", "--lake", str(root), "--plant", "north", "--setpoint", "T=350",
         "--out", "w.json"],
        ["replay", "--spec", "cstr", "--from", "d", "--lake", str(root), "--plant", "north"],
        ["dashboard", "--plant", "north", "--lake", str(root)],
    ):  # fmt: skip
        assert build_parser().parse_args(argv).historian == root / "plant=north"
    capsys.readouterr()
    assert main(["lake", "list", "--lake", str(root)]) == 0
    listed = capsys.readouterr().out
    assert "north" in listed and "2026-03-01" in listed


@pytest.mark.parametrize(
    "extra, error",
    [
        (["--lake", "L"], "--lake ROOT needs --plant NAME"),
        (["--historian", "H", "--plant", "p"], "--plant needs --lake ROOT"),
        (["--historian", "H", "--lake", "L", "--plant", "p"], "not allowed with"),
    ],
)
def test_lake_options_must_come_together(extra: list[str], error: str, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["import", "--spec", "cstr", "--input", "f.csv", *extra])
    assert exc.value.code == 2
    assert error in capsys.readouterr().err
