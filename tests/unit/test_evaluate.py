"""``twin evaluate`` on a plant the code has never seen: only a spec and an imported CSV history."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from twin.cli import main
from twin.evaluate.report import forecast_cases, nrmse, report_steps
from twin.model.network import TwinConfig
from twin.model.twin import Twin
from twin.spec import load_spec, parse_spec
from twin.store.historian import Historian

SPEC = """
[plant]
name = "brine-chiller"
description = "A made-up brine chiller: two CVs, one MV, one measured disturbance"
sample_period_s = 10.0

[[tags]]
name = "brine_out"
node = "ns=3;s=Chiller/BrineOut"
unit = "degC"
role = "cv"
lo = -20.0
hi = 10.0
setpoint = -8.0
weight = 1.0

[[tags]]
name = "salt_ppm"
node = "ns=3;s=Chiller/Salt"
unit = "ppm"
role = "cv"
lo = 100.0
hi = 400.0
setpoint = 250.0
weight = 0.5

[[tags]]
name = "glycol_valve"
node = "ns=3;s=Chiller/Valve"
unit = "%"
role = "mv"
lo = 0.0
hi = 100.0
rate_limit = 5.0
write_node = "ns=3;s=Chiller/Valve.SP"

[[tags]]
name = "ambient"
node = "ns=3;s=Chiller/Ambient"
unit = "degC"
role = "dv"
lo = -10.0
hi = 40.0
"""

START = datetime(2026, 3, 2, tzinfo=UTC)


def _history(n: int, seed: int = 0) -> pl.DataFrame:
    """A nonlinear two-CV process under staircase valve moves and a wandering ambient."""
    rng = np.random.default_rng(seed)
    valve = np.empty(n)
    level, left = 50.0, 0
    for t in range(n):
        if left == 0:
            level, left = rng.uniform(10, 90), int(rng.integers(10, 60))
        valve[t], left = level, left - 1
    ambient = 20 + np.cumsum(rng.normal(0, 0.05, n)).clip(-8, 8)
    brine, salt = np.empty(n), np.empty(n)
    b, s = -5.0, 250.0
    for t in range(n):
        cooling = 12.0 * (valve[t] / 100.0) ** 0.7  # a valve with a nonlinear characteristic
        b += 0.08 * (0.3 * (ambient[t] - 20) + 2.0 - cooling - b)
        s += 0.04 * (250 + 8.0 * b - s)
        brine[t], salt[t] = b + rng.normal(0, 0.03), s + rng.normal(0, 0.3)
    ts = [START + timedelta(seconds=10 * i) for i in range(n)]
    return pl.DataFrame(
        {
            "ts": [t.strftime("%Y-%m-%dT%H:%M:%SZ") for t in ts],
            "brine_out": brine,
            "salt_ppm": salt,
            "glycol_valve": valve,
            "ambient": ambient,
        }
    )


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("chiller")
    spec_file = tmp / "chiller.toml"
    spec_file.write_text(SPEC, encoding="utf-8")
    csv = tmp / "export.csv"
    _history(2400).write_csv(csv)
    hist = tmp / "hist"
    args = ["import", "--spec", str(spec_file), "--input", str(csv), "--historian", str(hist)]
    assert main(["--log-level", "WARNING", *args]) == 0
    spec = load_spec(spec_file)
    train_end = START + timedelta(seconds=10 * 1600)
    frame = Historian(hist).frame(spec, START, train_end)
    cfg = TwinConfig(
        window=8, horizon=12, latent=8, hidden=24, ensemble=2, minutes=0.5, max_epochs=10
    )
    Twin.fit(spec, frame, cfg, progress=False).save(tmp / "model")
    return {"spec": spec_file, "hist": hist, "model": tmp / "model", "tmp": tmp}


def test_evaluate_cli_writes_a_report_for_a_plant_it_has_never_seen(
    setup: dict[str, Path],
) -> None:
    out = setup["tmp"] / "report"
    later = (START + timedelta(seconds=10 * 1600)).isoformat()
    argv = ["evaluate", "--model", str(setup["model"]), "--historian", str(setup["hist"])]
    argv += ["--start", later, "--out", str(out), "--gru-minutes", "0.05"]
    assert main(["--log-level", "WARNING", *argv]) == 0

    report = json.loads((out / "report.json").read_text())
    assert report["plant"] == "brine-chiller"
    assert report["steps"] == [1, 5, 10, 12]
    models = {"twin", "persistence", "arx", "subspace", "gru"}
    assert set(report["models"]) == models
    assert set(report["tags"]) == {"brine_out", "salt_ppm"}  # CVs only
    for tag in report["tags"].values():
        assert set(tag["nrmse"]) == models
        for scores in tag["nrmse"].values():
            assert set(scores) == {"1", "5", "10", "12"}
            assert all(np.isfinite(v) and v >= 0 for v in scores.values())
        assert all(0.0 <= c <= 1.0 for c in tag["coverage"].values())
        assert all(w > 0 for w in tag["band_width"].values())
    summary = report["summary"]["nrmse"]
    # a model that knows the valve beats "nothing changes" far out, for this process
    assert summary["arx"]["12"] < 0.7 * summary["persistence"]["12"]
    assert summary["twin"]["12"] < summary["persistence"]["12"]
    assert 0.0 < report["models"]["twin"]["embedding_effective_rank"] <= 8.0
    assert any("first 50%" in n for n in report["notes"])  # says how baselines were fitted
    # the test range: the later 400 samples only (the first 400 of the range fit the baselines)
    assert report["test"]["samples"] == 400

    md = (out / "report.md").read_text()
    assert "| twin |" in md and "| subspace |" in md and "![forecast vs truth](forecast.png)" in md
    png = (out / "forecast.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


def test_evaluate_cli_names_an_empty_range(
    setup: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    out = setup["tmp"] / "empty"
    argv = ["evaluate", "--model", str(setup["model"]), "--historian", str(setup["hist"])]
    argv += ["--start", "2030-01-01T00:00:00Z", "--out", str(out)]
    assert main(["--log-level", "ERROR", *argv]) == 2
    assert "empty range: start 2030-01-01" in caplog.text
    assert not (out / "report.json").exists()


def test_nrmse_is_rmse_over_the_tag_std() -> None:
    truth = np.zeros((4, 2, 1))
    pred = np.array([1.0, -1.0, 1.0, -1.0])[:, None, None] * np.ones((4, 2, 1))
    np.testing.assert_allclose(nrmse(pred, truth, np.array([2.0])), 0.5)
    assert report_steps(30) == [1, 5, 10, 30] and report_steps(7) == [1, 5, 7]


def test_forecast_cases_skip_windows_with_gaps() -> None:
    spec = parse_spec(SPEC)
    n = 60
    frame = _history(n).with_columns(pl.col("ts").str.to_datetime(time_zone="UTC"))
    salt = pl.when(pl.int_range(n) == 30).then(None).otherwise("salt_ppm")
    frame = frame.with_columns(salt.alias("salt_ppm"))
    past, future, origins = forecast_cases(frame, spec, window=8, horizon=5)
    # a window + horizon of 13 samples must not contain sample 30
    t0 = np.datetime64(START.replace(tzinfo=None), "us")
    last = (origins - t0) // np.timedelta64(10, "s")  # index of each origin's last past sample
    assert len(past) == len(future) == len(origins) > 0
    assert np.all((last + 5 < 30) | (last - 7 > 30))
    assert np.isfinite(past).all() and np.isfinite(future).all()
