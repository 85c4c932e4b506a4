"""``twin spec infer``: a spec draft from an export that loads, imports the export, and says what
the engineer must still confirm or fill."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

import twin.cli
from connectors.files import import_file
from connectors.files_read import ExportError, ReadOptions
from connectors.infer import infer_spec
from twin.spec import load_spec
from twin.store.historian import Historian


@pytest.fixture(autouse=True)
def _only_spec_commands(monkeypatch) -> None:
    monkeypatch.setattr(twin.cli, "COMMAND_MODULES", ["twin.cli.spec", "twin.cli.files"])


def tep_export(path: Path, n: int = 600) -> Path:
    """A ';'-separated historian export, dd.mm.yyyy times every 3 min, decimal commas; the level
    has two spikes far above the rest, the feed steps once."""
    rng = random.Random(1)
    lines = ["Timestamp;XMEAS(01);XMEAS(02);XMV(10);Level %;Status"]
    start = datetime(2024, 1, 1, 1, 0)
    for i in range(n):
        t = (start + timedelta(minutes=3 * (i + 1))).strftime("%d.%m.%Y %H:%M:%S")
        level = 50 + 10 * math.sin(i / 30) if i not in (100, 400) else 900.0
        cells = [
            f"{0.25 + 0.01 * math.sin(i / 20) + rng.gauss(0, 0.002):.4f}",
            f"{3600 + 20 * math.sin(i / 50):.2f}",
            "40.0" if i < n // 2 else "42.5",
            f"{level:.3f}",
        ]
        lines.append(";".join([t, *(c.replace(".", ",") for c in cells), "RUN"]))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_draft_from_a_real_export_loads_and_imports_it(tmp_path) -> None:
    export = tep_export(tmp_path / "tep.csv")
    draft = infer_spec(export, cv=["XMEAS(01)"], mv=["XMV_10"], units={"Level %": "%"})
    out = tmp_path / "tep.toml"
    out.write_text(draft.toml)
    spec = load_spec(out)
    assert spec.name == "tep" and spec.sample_period == 180.0
    assert spec.tag_names == ["XMEAS_01", "XMEAS_02", "XMV_10", "Level"]  # Status is text
    assert [t.column for t in spec.tags] == ["XMEAS(01)", "XMEAS(02)", "XMV(10)", "Level %"]
    assert [t.role for t in spec.tags] == ["cv", "dv", "mv", "dv"]
    assert [t.unit for t in spec.tags] == ["", "", "", "%"]
    assert all(t.node is None and t.write_node is None for t in spec.tags)
    level = spec.tag("Level")
    assert 35 < level.lo < 40 and 60 < level.hi < 65  # the two spikes at 900 do not widen it
    cv, mv = spec.tag("XMEAS_01"), spec.tag("XMV_10")
    assert cv.lo < 0.24 and cv.hi > 0.26 and cv.setpoint is not None and cv.lo < cv.setpoint < cv.hi
    assert mv.lo < 40 and mv.hi > 42.5 and mv.rate_limit == 2.5
    # the comments tell the engineer what to confirm and what to fill
    assert 'role = "dv"  # confirm: not in --cv/--mv/--dv' in draft.toml
    assert 'unit = ""  # fill' in draft.toml and "node" in draft.toml
    assert any(line.startswith("unit (fill): XMEAS_01, XMEAS_02, XMV_10") for line in draft.to_fill)
    assert any("Status" in line for line in draft.to_fill)  # the text column left out, said so
    # the draft imports its export with no mapping: every tag found, only the spikes flagged
    report = import_file(export, spec, Historian(tmp_path / "h"))
    assert report.missing_tags == () and report.bad_count == 0
    assert report.out_of_range == {"Level": 2} and report.still_mvs == ()


def test_cli_writes_the_draft_and_lists_what_is_left(tmp_path, capsys, caplog) -> None:
    export = tep_export(tmp_path / "tep.csv")
    out = tmp_path / "spec.toml"
    argv = ["spec", "infer", "--input", str(export), "--out", str(out), "--name", "unit1"]
    argv += ["--cv", "XMEAS(01),Level %", "--mv", "XMV(10)", "--map", "XMEAS(02)=Pressure"]
    assert twin.cli.main(argv) == 0
    printed = capsys.readouterr().out
    spec = load_spec(out)
    assert spec.name == "unit1" and spec.tag("Pressure").column == "XMEAS(02)"
    assert [t.name for t in spec.cvs] == ["XMEAS_01", "Level"]
    assert "4 tags (2 CV, 1 MV, 1 DV), sample period 180 s" in printed
    assert "role (confirm): not in --cv/--mv/--dv, so DVs: Pressure" in printed
    assert "unit (fill): XMEAS_01, Pressure, XMV_10, Level" in printed
    assert f"twin import --spec {out} --input {export}" in printed
    # a second run does not overwrite the engineer's edits
    assert twin.cli.main(argv) == 2 and "--force" in caplog.text
    assert twin.cli.main([*argv, "--force"]) == 0


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--cv", "XMEAS(99)"], "--cv XMEAS(99): no numeric column or tag 'XMEAS(99)'"),
        (["--cv", "XMEAS(01)", "--mv", "XMEAS_01"], "given as both cv and mv"),
        (["--map", "XMEAS(01)=1bad"], "a tag name starts with a letter"),
        (["--unit", "Nope=K"], "--unit Nope: no column or tag"),
        (["--tz", "Mars/Olympus"], "unknown time zone"),
    ],
)
def test_bad_options_exit_2_naming_what_is_wrong(tmp_path, caplog, extra, words) -> None:
    export = tep_export(tmp_path / "tep.csv", n=20)
    argv = ["spec", "infer", "--input", str(export), "--out", str(tmp_path / "s.toml"), *extra]
    assert twin.cli.main(argv) == 2
    assert words in caplog.text and not (tmp_path / "s.toml").exists()


def test_one_row_is_not_enough_for_a_sample_period(tmp_path) -> None:
    path = tmp_path / "one.csv"
    path.write_text("ts,A\n2024-01-01T00:00:00Z,1\n")
    with pytest.raises(ExportError, match="fewer than two distinct times"):
        infer_spec(path)


def test_long_parquet_export_with_an_explicit_time_format(tmp_path) -> None:
    t0 = datetime(2024, 1, 1)
    rows = [
        (f"{(t0 + timedelta(seconds=10 * i)):%Y/%m/%d %H-%M-%S}", tag, v + i % 5)
        for i in range(50)
        for tag, v in (("FIC-101.PV", 10.0), ("TIC-200.PV", 300.0))
    ]
    path = tmp_path / "long.parquet"
    pl.DataFrame(rows, schema=["ts", "tag", "value"], orient="row").write_parquet(path)
    draft = infer_spec(path, ReadOptions(time_format="%Y/%m/%d %H-%M-%S"), mv=["FIC-101.PV"])
    spec = draft.spec
    assert spec.tag_names == ["FIC-101.PV", "TIC-200.PV"] and spec.sample_period == 10.0
    assert [t.role for t in spec.tags] == ["mv", "dv"]
    assert spec.tag("TIC-200.PV").lo < 300 and spec.tag("TIC-200.PV").hi > 304
    report = import_file(
        path, spec, Historian(tmp_path / "h"), ReadOptions(time_format="%Y/%m/%d %H-%M-%S")
    )
    assert report.rows_stored == 100 and report.start == t0.replace(tzinfo=UTC)
