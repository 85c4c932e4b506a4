"""``twin recommend`` and ``twin whatif`` on the shipped CSTR twin and a real historian folder:
the files they write, and the errors that name a bad --setpoint."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import polars as pl
import pytest
from control_helpers import MODEL, steady_rows

from twin.cli import main
from twin.cli.control import parse_setpoint, parse_setpoint_now
from twin.cli.whatif import parse_schedule
from twin.control.export import EXPORT_COLUMNS
from twin.spec import builtin_spec
from twin.store.historian import Historian

SPEC = builtin_spec("cstr")


@pytest.fixture(scope="module")
def historian(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("hist")
    Historian(folder).append(steady_rows(60))
    return folder


def cli(*args: str | Path) -> int:
    return main([str(a) for a in args])


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("T=330", ("T", 330.0, 0.0)),
        ("T = 330.5 @ +5", ("T", 330.5, 5.0)),
        ("Ca=0.85@2.5", ("Ca", 0.85, 2.5)),
    ],
)
def test_setpoint_syntax(text: str, parsed: tuple[str, float, float]) -> None:
    assert parse_setpoint(text) == parsed


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("T330", r"expected TAG=VALUE\[@\+MINUTES\], got 'T330'"),
        ("T=", r"expected TAG=VALUE"),
        ("T=abc", r"setpoint of 'T' 'abc' is not a number"),
        ("T=nan", r"must be finite"),
        ("T=330@+soon", r"minutes 'soon' is not a number"),
        ("T=330@-2", r"minutes must be >= 0"),
    ],
)
def test_bad_setpoint_syntax_names_the_fault(text: str, message: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=message):
        parse_setpoint(text)


def test_later_changes_and_schedules_parse_only_where_they_mean_something() -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=r"@\+MINUTES\) is for `twin whatif`"):
        parse_setpoint_now("T=330@+5")
    assert parse_schedule("Tc=299,298.5, 298") == ("Tc", (299.0, 298.5, 298.0))
    with pytest.raises(argparse.ArgumentTypeError, match=r"value of 'Tc' 'x' is not a number"):
        parse_schedule("Tc=299,x")


def test_recommend_writes_the_documented_csv(historian: Path, tmp_path: Path) -> None:
    out = tmp_path / "rec.csv"
    assert cli("recommend", "--model", MODEL, "--historian", historian, "--out", out) == 0
    rows = pl.read_csv(out)
    assert tuple(rows.columns) == EXPORT_COLUMNS
    assert rows.get_column("tag").to_list() == ["Tc"]
    row = rows.row(0, named=True)
    tc = SPEC.tag("Tc")
    assert row["node"] == str(tc.node) and row["write_node"] == str(tc.write_node)
    assert tc.lo <= row["recommended"] <= tc.hi
    assert abs(row["recommended"] - row["current"]) <= tc.rate_limit + 1e-6
    assert row["success"] is True and row["limits_held"] is True


def test_recommend_json_follows_a_raised_setpoint(historian: Path, tmp_path: Path) -> None:
    out = tmp_path / "rec.json"
    args = ("recommend", "--model", MODEL, "--historian", historian, "--out", out)
    assert cli(*args, "--setpoint", "T=329") == 0
    doc = json.loads(out.read_text())
    assert doc["columns"] == list(EXPORT_COLUMNS)
    assert doc["recommendation"]["setpoints"]["T"] == 329.0
    move = doc["recommendation"]["moves"][0]
    assert move["tag"] == "Tc" and move["change"] > 0  # warmer coolant to heat the reactor
    assert len(move["plan"]) >= 1 and move["plan"][0] == move["recommended"]


@pytest.mark.parametrize(
    ("setpoint", "message"),
    [
        ("X=1", "plant 'cstr' has no tag 'X'"),
        ("Tc=299", "'Tc' is an MV, not a CV"),
        ("T=999", "T=999 K is outside the limits of 'T'"),
    ],
)
def test_recommend_refuses_a_setpoint_the_plant_cannot_take(
    historian: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, setpoint: str, message: str
) -> None:
    out = tmp_path / "rec.csv"
    args = ("recommend", "--model", MODEL, "--historian", historian, "--out", out)
    assert cli(*args, "--setpoint", setpoint) == 2
    assert message in caplog.text
    assert not out.exists()


def test_recommend_refuses_a_non_number_with_exit_2(
    historian: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ("recommend", "--model", MODEL, "--historian", historian, "--out", tmp_path / "r.csv")
    with pytest.raises(SystemExit) as exit_:
        cli(*args, "--setpoint", "T=hot")
    assert exit_.value.code == 2
    assert "setpoint of 'T' 'hot' is not a number" in capsys.readouterr().err


def test_recommend_refuses_an_unknown_file_type(
    historian: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "rec.xlsx"
    assert cli("recommend", "--model", MODEL, "--historian", historian, "--out", out) == 2
    assert ".csv or .json" in caplog.text


def test_whatif_writes_scenarios_side_by_side(historian: Path, tmp_path: Path) -> None:
    out = tmp_path / "whatif.csv"
    args = ("whatif", "--model", MODEL, "--historian", historian, "--steps", "6", "--out", out)
    assert cli(*args, "--setpoint", "T=328@+0.3", "--scenario", "cooler", "--mv", "Tc=299") == 0
    frame = pl.read_csv(out)
    assert frame.get_column("scenario").unique(maintain_order=True).to_list() == [
        "hold",
        "T=328@+0.3",
        "cooler",
    ]
    t = frame.filter(pl.col("tag") == "T", pl.col("scenario") == "T=328@+0.3").sort("step")
    assert t.get_column("setpoint").to_list() == [324.5, 324.5, 328.0, 328.0, 328.0, 328.0]
    tc = frame.filter(pl.col("tag") == "Tc", pl.col("scenario") == "cooler")
    assert tc.get_column("mean").to_list() == [299.0] * 6


def test_whatif_draws_a_png(historian: Path, tmp_path: Path) -> None:
    out = tmp_path / "whatif.png"
    args = ("whatif", "--model", MODEL, "--historian", historian, "--steps", "4", "--out", out)
    assert cli(*args, "--setpoint", "T=327") == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_whatif_refuses_more_steps_than_the_horizon(
    historian: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "whatif.csv"
    args = ("whatif", "--model", MODEL, "--historian", historian, "--steps", "31", "--out", out)
    assert cli(*args, "--setpoint", "T=327") == 2
    assert "1 to 30 steps" in caplog.text


def test_whatif_json_lists_scenarios_and_rows(historian: Path, tmp_path: Path) -> None:
    out = tmp_path / "whatif.json"
    args = ("whatif", "--model", MODEL, "--historian", historian, "--steps", "3", "--out", out)
    assert cli(*args, "--scenario", "coolant 299", "--mv", "Tc=299") == 0
    doc = json.loads(out.read_text())
    assert [s["name"] for s in doc["scenarios"]] == ["hold", "coolant 299"]
    assert doc["scenarios"][1]["mv_schedule"] == {"Tc": [299.0]}
    rows = [dict(zip(doc["columns"], row, strict=True)) for row in doc["rows"]]
    assert len(rows) == 2 * 3 * len(SPEC.tags)
    assert rows[0]["ts"].endswith("+00:00") and rows[0]["scenario"] == "hold"
