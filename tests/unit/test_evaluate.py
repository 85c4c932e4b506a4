"""``twin evaluate`` on a plant the code has never seen: only a spec and an imported CSV history."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from twin.cli import main
from twin.evaluate.render import markdown
from twin.evaluate.report import evaluate, forecast_cases, nrmse, report_steps, tag_coverage
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
TRAIN_END = START + timedelta(seconds=10 * 1600)
"""the twins here learn from the first 1600 of the 2400 samples"""


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
    frame = Historian(hist).frame(spec, START, TRAIN_END)
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
    argv += ["--start", later, "--out", str(out), "--gru-minutes", "0.05", "--fit-fraction", "0.5"]
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
        low = tag["coverage_min"]  # the lowest step, over all H steps
        assert 1 <= low["step"] <= 12 and low["value"] <= min(tag["coverage"].values())
        inside = 0.85 <= tag["coverage_all_steps"] <= 0.95
        assert (tag["coverage_flag"] in (None, "low at some steps")) == inside
    # the average over tags is the mean of the per-tag figures the report now shows
    per_tag = np.mean([t["coverage_all_steps"] for t in report["tags"].values()])
    assert report["summary"]["coverage_all_steps"] == pytest.approx(per_tag, abs=1e-4)
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
    assert "## Twin band coverage per tag (nominal 90%, expected 85%-95%)" in md
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


def _evaluate_cli(
    model: Path, hist: Path, out: Path, *extra: str, baselines: str = "persistence,arx,subspace"
) -> dict:
    argv = ["evaluate", "--model", str(model), "--historian", str(hist), "--out", str(out)]
    argv += ["--baselines", baselines, *extra]
    assert main(["--log-level", "ERROR", *argv]) == 0
    return json.loads((out / "report.json").read_text())


def test_evaluate_cli_reports_a_baseline_it_cannot_fit_and_completes(
    setup: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    # the baselines get 15 samples: fewer than one window + horizon (8 + 12); persistence needs
    # no fitting, the others are skipped with the reason, and the twin is still scored
    out = setup["tmp"] / "skipped"
    b_end = (START + timedelta(seconds=150)).isoformat()
    extra = ["--baseline-start", START.isoformat(), "--baseline-end", b_end]
    extra += ["--start", TRAIN_END.isoformat(), "--gru-minutes", "0.05"]
    report = _evaluate_cli(
        setup["model"], setup["hist"], out, *extra, baselines="persistence,arx,subspace,gru"
    )
    assert set(report["skipped"]) == {"arx", "subspace", "gru"}
    for reason in report["skipped"].values():
        assert "window + horizon = 8 + 12 = 20 samples" in reason
    assert set(report["models"]) == set(report["summary"]["nrmse"]) == {"twin", "persistence"}
    assert (
        report["summary"]["nrmse"]["twin"]["12"] < report["summary"]["nrmse"]["persistence"]["12"]
    )
    md = (out / "report.md").read_text()
    assert "Skipped (could not be fitted):" in md
    # the validation frame: its 3 samples and the window (8) before them, the past it forecasts from
    assert "- arx: neither the validation frame (11 samples) nor the training frame (12" in md
    assert "arx skipped: neither" in capsys.readouterr().out


def test_evaluate_cli_names_a_test_history_shorter_than_window_plus_horizon(
    setup: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    out = setup["tmp"] / "too-short"
    near_end = (START + timedelta(seconds=10 * 2385)).isoformat()  # 15 samples left
    argv = ["evaluate", "--model", str(setup["model"]), "--historian", str(setup["hist"])]
    argv += ["--start", near_end, "--out", str(out), "--baselines", "persistence"]
    assert main(["--log-level", "ERROR", *argv]) == 2
    assert "hold 15 samples" in caplog.text
    assert "window + horizon = 8 + 12 = 20 samples" in caplog.text
    assert not (out / "report.json").exists()


@pytest.fixture(scope="module")
def trained_by_cli(setup: dict[str, Path]) -> Path:
    """A twin fitted by `twin train` on the first 1600 samples (it records its historian)."""
    out = setup["tmp"] / "cli-model"
    argv = ["train", "--spec", str(setup["spec"]), "--historian", str(setup["hist"])]
    argv += ["--end", TRAIN_END.isoformat(), "--out", str(out), "--minutes", "0.05"]
    argv += ["--window", "8", "--horizon", "12", "--ensemble", "2"]
    assert main(["--log-level", "WARNING", *argv]) == 0
    return out


def test_evaluate_on_a_short_test_history_fits_baselines_on_the_twins_training_data(
    setup: dict[str, Path], trained_by_cli: Path
) -> None:
    record = json.loads((trained_by_cli / "metrics.json").read_text())["training_data"]
    assert record["historian"] == str(setup["hist"].resolve())
    assert (record["start"], record["end"]) == (START.isoformat(), TRAIN_END.isoformat())
    assert record["samples"] == 1600
    # a test historian of 10 minutes (60 samples), later than the training data
    csv, short = setup["tmp"] / "short.csv", setup["tmp"] / "short-hist"
    _history(2400).slice(2000, 60).write_csv(csv)
    argv = ["import", "--spec", str(setup["spec"]), "--input", str(csv), "--historian", str(short)]
    assert main(["--log-level", "WARNING", *argv]) == 0

    report = _evaluate_cli(trained_by_cli, short, setup["tmp"] / "short-report")
    assert report["test"]["samples"] == 60 and report["test"]["origins"] == 60 - 20 + 1
    assert report["skipped"] == {}
    learnt = f"training data: historian {setup['hist'].resolve()}, {START.isoformat()} .. "
    assert any(learnt in n for n in report["notes"]), report["notes"]
    nrmse_h = report["summary"]["nrmse"]
    assert nrmse_h["arx"]["12"] < 0.7 * nrmse_h["persistence"]["12"]  # learnt the valve's effect

    # as before, from the first half of the test history (30 samples): it completes, and says how
    report = _evaluate_cli(
        trained_by_cli, short, setup["tmp"] / "short-half", "--fit-fraction", "0.5"
    )
    assert report["test"]["samples"] == 30
    assert "twin" in report["summary"]["nrmse"] and "persistence" in report["summary"]["nrmse"]
    fitted_or_skipped = set(report["models"]) | set(report["skipped"])
    assert fitted_or_skipped == {"twin", "persistence", "arx", "subspace"}


def test_evaluate_keeps_its_test_range_out_of_the_twins_training_data(
    setup: dict[str, Path],
) -> None:
    # the same historian the twin learnt from, no --start: scored on the 800 samples after it
    report = _evaluate_cli(setup["model"], setup["hist"], setup["tmp"] / "after", baselines="arx")
    assert report["test"]["samples"] == 800
    assert report["test"]["start"].startswith(TRAIN_END.strftime("%Y-%m-%dT%H:%M:%S"))
    assert any("test range starts where the twin's training data end" in n for n in report["notes"])
    assert not any("in-sample" in n for n in report["notes"])


def test_a_model_folder_without_a_training_record_evaluates_as_before(
    setup: dict[str, Path],
) -> None:
    old = setup["tmp"] / "old-model"
    shutil.copytree(setup["model"], old)
    metrics = json.loads((old / "metrics.json").read_text())
    del metrics["training_data"]  # as saved before the record existed
    (old / "metrics.json").write_text(json.dumps(metrics))
    later = (START + timedelta(seconds=10 * 1600)).isoformat()
    report = _evaluate_cli(old, setup["hist"], setup["tmp"] / "old", "--start", later)
    assert report["test"]["samples"] == 400  # the first half of the range fits the baselines
    assert any("first 50%" in n for n in report["notes"])
    assert any("does not record its training range" in n for n in report["notes"])


def test_band_coverage_is_reported_per_tag_and_step(setup: dict[str, Path]) -> None:
    twin = Twin.load(setup["model"])
    # a constructed band: always wide for brine_out; for salt_ppm wide for steps 1-6 and of zero
    # width from step 7 on, where the truth is never inside it
    q = np.full_like(twin.calibration.quantile, 1e6)
    q[6:, twin.spec.tag_names.index("salt_ppm")] = 0.0
    band = replace(twin.calibration, quantile=q)
    constructed = Twin(twin.spec, twin.config, twin.normalizer, twin.model, band)
    frame = Historian(setup["hist"]).frame(twin.spec, TRAIN_END, START + timedelta(hours=7))
    report = evaluate(constructed, frame, max_origins=200)

    brine, salt = report["tags"]["brine_out"], report["tags"]["salt_ppm"]
    assert brine["coverage_all_steps"] == 1.0 and brine["coverage_flag"] == "high"
    assert salt["coverage"] == {"1": 1.0, "5": 1.0, "10": 0.0, "12": 0.0}
    assert salt["coverage_all_steps"] == 0.5  # 6 of 12 steps
    assert salt["coverage_min"] == {"step": 7, "value": 0.0}
    assert salt["coverage_flag"] == "low" and salt["coverage_steps_outside"] == list(range(1, 13))
    # the average over tags (75%) would hide both
    assert report["summary"]["coverage_all_steps"] == 0.75
    assert report["summary"]["coverage_tags_flagged"] == ["brine_out", "salt_ppm"]
    # adaptation narrows a band after hits and widens it after misses, but a band of zero
    # width has nothing to scale: salt_ppm's stays at 50%, brine_out's (1e6) stays above range
    assert salt["adaptive"]["coverage_all_steps"] == 0.5
    assert brine["adaptive"]["coverage_flag"] == "high"
    assert report["summary"]["coverage_adaptive_tags_flagged"] == ["brine_out", "salt_ppm"]
    row = (
        "| salt_ppm | **50%** | **100%** | **100%** | **0%** | **0%** | **0%** (k=7) | low "
        "| **50%** | low |"
    )
    assert row in markdown(report)


def test_tag_coverage_flags_steps_below_the_range_even_when_the_average_is_inside() -> None:
    summary = tag_coverage(np.array([0.90, 0.86, 0.80, 0.95, 0.93]), nominal=0.9)
    assert summary["coverage_all_steps"] == pytest.approx(0.888)
    assert summary["coverage_min"] == {"step": 3, "value": 0.8}
    assert summary["coverage_steps_outside"] == [3]
    assert summary["coverage_flag"] == "low at some steps"
    assert tag_coverage(np.array([0.88, 0.91]), nominal=0.9)["coverage_flag"] is None
