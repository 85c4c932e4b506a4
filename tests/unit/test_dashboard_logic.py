"""The app's logic without a browser: alarms and acknowledgements, the download files, its
settings, and the ``twin dashboard`` command line."""

from __future__ import annotations

import csv
import io
import json
import logging
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from dashboards import data, exports
from dashboards.alarms import AlarmBook, detect
from twin.cli import build_parser, main
from twin.cli.dashboard import streamlit_command
from twin.control.export import EXPORT_COLUMNS
from twin.control.recommendation import SCHEMA_VERSION, Recommendation
from twin.control.whatif import Scenario, WhatIf
from twin.loop.step import hold_recommendation
from twin.model.forecast import Forecast
from twin.spec import builtin_spec

SPEC = builtin_spec("cstr")
NOW = datetime(2026, 5, 1, 12, tzinfo=UTC)


def latest(**values: float | None) -> pl.DataFrame:
    """Newest samples: every tag good at NOW unless given here."""
    base = {"T": 324.5, "Ca": 0.877, "Tc": 295.0, "Tf": 350.0} | values
    return pl.DataFrame(
        {
            "tag": list(base),
            "ts": [NOW] * len(base),
            "value": list(base.values()),
            "quality": ["good"] * len(base),
        }
    )


def test_normal_values_raise_no_alarm() -> None:
    assert detect(SPEC, latest(), NOW) == []


def test_each_abnormal_state_is_one_alarm_naming_tag_value_and_limit() -> None:
    rows = latest(T=299.0, Tc=285.0).with_columns(
        quality=pl.when(pl.col("tag") == "Ca").then(pl.lit("uncertain")).otherwise("quality")
    )
    found = {(a.tag, a.kind): a.message for a in detect(SPEC, rows, NOW + timedelta(seconds=5))}
    assert found == {
        ("T", "limit"): "T 299 K below lo 300 K",
        ("Ca", "quality"): "Ca: quality uncertain",
        ("Tc", "at limit"): "Tc 285 K at its lo limit",
    }
    stale = detect(SPEC, latest(), NOW + timedelta(seconds=3 * 6 + 1))
    assert {a.kind for a in stale} == {"stale"} and len(stale) == 4
    missing = detect(SPEC, latest().filter(pl.col("tag") != "Tf"), NOW)
    assert [(a.tag, a.kind) for a in missing] == [("Tf", "stale")]


def test_an_alarm_stays_until_cleared_and_acknowledged() -> None:
    book = AlarmBook()
    high = detect(SPEC, latest(T=350.0), NOW)
    book.update(high, NOW)
    assert book.unacknowledged == 1
    book.update(detect(SPEC, latest(), NOW), NOW)  # back to normal, not yet acknowledged
    (alarm,) = book.listing()
    assert not alarm.active and not alarm.acked  # still listed: a short excursion is not missed
    book.acknowledge(alarm.key, "ada")
    assert book.listing() == []
    # acknowledged while active: listed, grey, until it clears
    later = NOW + timedelta(seconds=6)
    book.update(high, later)
    book.acknowledge("T:limit", "ada")
    book.update(high, later)
    assert [(a.active, a.acked) for a in book.listing()] == [(True, True)]
    assert book.listing()[0].since == NOW
    book.update([], later)
    assert book.listing() == []


def recommendation() -> Recommendation:
    return hold_recommendation(
        SPEC, NOW, "held for a test", {"Tc": 296.5}, {"T": 324.5, "Ca": 0.877}, 30
    )


def test_recommendation_downloads_parse_with_the_documented_columns() -> None:
    rec = recommendation()
    rows = list(csv.DictReader(io.StringIO(exports.recommendation_bytes(rec, ".csv").decode())))
    assert tuple(rows[0]) == EXPORT_COLUMNS
    assert [(r["tag"], float(r["current"]), float(r["recommended"])) for r in rows] == [
        ("Tc", 296.5, 296.5)
    ]
    doc = json.loads(exports.recommendation_bytes(rec, ".json"))
    assert tuple(doc["columns"]) == EXPORT_COLUMNS and doc["schema_version"] == SCHEMA_VERSION
    assert doc["rows"][0]["tag"] == "Tc" and doc["recommendation"]["message"] == "held for a test"


def whatif_result() -> WhatIf:
    h = 3
    ts = np.datetime64("2026-05-01T12:00:06", "us") + np.arange(h) * np.timedelta64(6, "s")
    mean = np.tile([324.5, 0.877, 295.0, 350.0], (h, 1))
    fc = Forecast(
        tuple(SPEC.tag_names), tuple(t.unit for t in SPEC.tags), ts, mean, mean - 1, mean + 1
    )
    hot = Forecast(fc.tags, fc.units, ts, mean + 2, mean + 1, mean + 3)
    paths = {"T": np.full(h, 324.5), "Ca": np.full(h, 0.877)}
    return WhatIf(
        (Scenario("hold"), Scenario("hot", (("T", 326.5, 0.0),)), Scenario("cold")),
        (fc, hot, fc),
        (paths, {**paths, "T": np.full(h, 326.5)}, paths),
        (0, 0, 0),
    )


def test_whatif_downloads_hold_the_chosen_scenarios() -> None:
    result = whatif_result()
    text = exports.whatif_bytes(result, ["hold", "hot"], ".csv").decode()
    frame = pl.read_csv(io.StringIO(text))
    assert frame.columns[:2] == ["scenario", "step"]
    assert frame.get_column("scenario").unique(maintain_order=True).to_list() == ["hold", "hot"]
    doc = json.loads(exports.whatif_bytes(result, ["hot"], ".json"))
    assert [s["name"] for s in doc["scenarios"]] == ["hot"]
    assert doc["scenarios"][0]["setpoints"] == [["T", 326.5, 0.0]]
    with pytest.raises(ValueError, match=r"\.png"):
        exports.whatif_bytes(result, ["hot"], ".png")


def test_settings_come_from_the_app_arguments_then_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("TWIN_MODEL", "/models/m")
    monkeypatch.setenv("TWIN_HISTORIAN", "/from/env")
    monkeypatch.setattr(
        sys,
        "argv",
        ["dashboards/app.py", "--historian", str(tmp_path), "--refresh", "9", "--approve"],
    )
    cfg = data.app_config()
    assert cfg.historian == tmp_path and cfg.model == Path("/models/m")
    assert cfg.refresh_s == 5.0 and cfg.approve  # the refresh is kept within 1 to 5 s
    monkeypatch.setattr(sys, "argv", ["pytest", "--historian", "/not/mine"])  # not the app's
    cfg = data.app_config()
    assert cfg.historian == Path("/from/env") and not cfg.approve and cfg.refresh_s == 2.0


def test_dashboard_command_binds_loopback_in_viewer_mode(tmp_path: Path) -> None:
    args = build_parser().parse_args(
        ["dashboard", "--historian", str(tmp_path), "--model", "m", "--port", "8123"]
    )
    cmd = streamlit_command(args, 8123)
    flags = dict(zip(cmd[5::2], cmd[6::2], strict=False))
    assert cmd[1:4] == ["-m", "dashboards.serve", "run"] and cmd[4].endswith("dashboards/app.py")
    assert flags["--server.address"] == "127.0.0.1" and flags["--server.port"] == "8123"
    assert flags["--client.toolbarMode"] == "viewer"
    assert flags["--browser.gatherUsageStats"] == "false"
    assert flags["--theme.backgroundColor"] == "#D4D4D4"
    app_args = cmd[cmd.index("--") + 1 :]
    assert app_args == ["--historian", str(tmp_path), "--refresh", "2", "--model", "m"]


def test_dashboard_command_refuses_a_missing_historian(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    missing = tmp_path / "nowhere"
    with caplog.at_level(logging.ERROR):
        assert main(["dashboard", "--historian", str(missing)]) == 2
    assert f"historian folder {missing} does not exist" in caplog.text
    with caplog.at_level(logging.ERROR):
        assert main(["dashboard", "--historian", str(tmp_path), "--model", str(tmp_path)]) == 2
    assert "is not a saved twin" in caplog.text
