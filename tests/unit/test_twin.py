"""The twin learns a known linear system, round-trips through its folder, and guards its inputs.

One small twin is trained once per module on a simulated 2-state linear system with one MV
(process and measurement noise), then every test asks it something a user or the controller
relies on.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from twin.errors import DataQualityError, SpecError, TwinError
from twin.model.dataset import Normalizer
from twin.model.network import TwinConfig
from twin.model.twin import Twin
from twin.spec import PlantSpec, parse_spec

SPEC_TOML = """
[plant]
name = "lti"
sample_period_s = 2.0

[[tags]]
name = "y1"
node = "ns=2;s=y1"
unit = "{unit}"
role = "cv"
lo = -5.0
hi = 5.0
setpoint = 0.0
weight = 1.0

[[tags]]
name = "y2"
node = "ns=2;s=y2"
unit = "m"
role = "cv"
lo = -5.0
hi = 5.0
setpoint = 0.0
weight = 1.0

[[tags]]
name = "u"
node = "ns=2;s=u"
unit = "%"
role = "mv"
lo = -2.0
hi = 2.0
rate_limit = 1.0
write_node = "ns=2;s=u.SP"
"""

A = np.array([[0.9, 0.1], [0.0, 0.8]])
B = np.array([0.05, 0.2])  # u drives x2 directly and x1 through x2: positive gains
SIGMA_W, SIGMA_V = 0.01, 0.02  # process and measurement noise
WINDOW, HORIZON = 8, 12
CONFIG = TwinConfig(
    window=WINDOW,
    horizon=HORIZON,
    latent=8,
    hidden=32,
    ensemble=3,
    batch=64,
    lr=5e-3,
    minutes=5.0,  # the epoch count ends training: the same result on a busy machine
    max_epochs=10,
    patience=10,
    seed=3,
)


def lti_spec(unit: str = "m") -> PlantSpec:
    return parse_spec(SPEC_TOML.format(unit=unit), source="lti.toml")


def simulate(n: int, seed: int) -> tuple[pl.DataFrame, np.ndarray]:
    """A wide frame of the linear plant under random steps, and the noise-free one-step errors.

    The second value is ``y[t+1] - C (A x[t] + B u[t+1])`` with the *true* state: what even a
    perfect model that knew the state could not predict (the noise floor of step 1).
    """
    rng = np.random.default_rng(seed)
    u = np.repeat(rng.uniform(-1.5, 1.5, n // 10 + 1), 10)[:n]
    x = np.zeros(2)
    ys, floor = [], []
    for k in range(n):
        pred = A @ x + B * u[k]
        x = pred + SIGMA_W * rng.standard_normal(2)
        y = x + SIGMA_V * rng.standard_normal(2)
        ys.append(y)
        floor.append(y - pred)
    ys_arr = np.array(ys)
    ts = pl.datetime_range(
        pl.datetime(2026, 1, 1, time_zone="UTC"),
        pl.datetime(2026, 1, 1, time_zone="UTC") + pl.duration(seconds=2 * (n - 1)),
        "2s",
        eager=True,
    ).dt.cast_time_unit("us")
    frame = pl.DataFrame({"ts": ts, "y1": ys_arr[:, 0], "y2": ys_arr[:, 1], "u": u})
    return frame, np.array(floor)


@pytest.fixture(scope="module")
def twin() -> Twin:
    frame, _ = simulate(4000, seed=1)
    return Twin.fit(lti_spec(), frame, CONFIG, progress=False)


def batch_forecast(twin: Twin, frame: pl.DataFrame, starts: np.ndarray) -> tuple[np.ndarray, ...]:
    """Mean forecasts ``[N, H, n]`` from the torch entry point, the truth, and persistence."""
    values = frame.select(["y1", "y2", "u"]).to_numpy()
    past = np.stack([values[s : s + WINDOW] for s in starts])
    truth = np.stack([values[s + WINDOW : s + WINDOW + HORIZON] for s in starts])
    past_norm = torch.as_tensor(twin.normalizer.norm(past), dtype=torch.float32)
    with torch.no_grad():
        mean, _ = twin.torch_rollout(past_norm, torch.as_tensor(truth[..., 2:]))
    return mean.numpy(), truth, np.repeat(past[:, -1:], HORIZON, axis=1)


def test_learns_linear_system_to_noise_level(twin: Twin) -> None:
    frame, floor = simulate(2000, seed=7)
    starts = np.arange(0, 2000 - WINDOW - HORIZON, 3)
    mean, truth, persistence = batch_forecast(twin, frame, starts)
    rmse = np.sqrt(((mean - truth) ** 2).mean(axis=0))  # [H, n]
    rmse_persist = np.sqrt(((persistence - truth) ** 2).mean(axis=0))
    noise_floor = np.sqrt((floor**2).mean(axis=0))
    # step 1 within 1.5x what a model that knew the true state would get
    assert np.all(rmse[0, :2] < 1.5 * noise_floor), (rmse[0, :2], noise_floor)
    # at the horizon far better than holding the last value
    assert np.all(rmse[-1, :2] < 0.3 * rmse_persist[-1, :2]), (rmse[-1], rmse_persist[-1])


def test_forecast_shapes_band_and_plan(twin: Twin) -> None:
    frame, _ = simulate(200, seed=11)
    plan = np.linspace(-1.0, 1.0, HORIZON)[:, None]
    fc = twin.forecast(frame, plan)
    assert fc.mean.shape == fc.lower.shape == fc.upper.shape == (HORIZON, 3)
    assert np.all(np.isfinite(fc.mean))
    assert np.all(fc.lower <= fc.mean) and np.all(fc.mean <= fc.upper)
    assert np.all(fc.upper[:, :2] > fc.lower[:, :2])  # CVs get a band of non-zero width
    np.testing.assert_array_equal(fc.mean[:, 2], plan[:, 0])  # MV column is the plan
    last = frame.get_column("ts")[-1]
    assert fc.to_frame().filter(pl.col("step") == 1)["ts"][0] == last + timedelta(seconds=2)
    assert fc.to_frame().height == HORIZON * 3


def test_band_covers_held_out_outcomes(twin: Twin) -> None:
    frame, _ = simulate(2000, seed=5)
    starts = np.arange(0, 2000 - WINDOW - HORIZON, 5)
    values = frame.select(["y1", "y2", "u"]).to_numpy()
    past = np.stack([values[s : s + WINDOW] for s in starts])
    truth = np.stack([values[s + WINDOW : s + WINDOW + HORIZON] for s in starts])
    past_norm = torch.as_tensor(twin.normalizer.norm(past), dtype=torch.float32)
    with torch.no_grad():
        mean, half = twin.torch_rollout(past_norm, torch.as_tensor(truth[..., 2:]))
    covered = np.abs(truth[..., :2] - mean.numpy()[..., :2]) <= half.numpy()[..., :2]
    assert 0.8 <= covered.mean() <= 0.98, covered.mean()


def test_band_is_calibrated_per_tag_and_step_with_a_held_out_check(twin: Twin, tmp_path) -> None:
    cal = twin.calibration
    assert cal.fitted is not None and cal.held_out is not None and cal.grid is not None
    assert np.all(cal.fitted[:, :2] >= 0.9), cal.fitted  # every step of each CV, on its windows
    assert np.all(np.abs(cal.held_out[:, :2].mean(axis=0) - 0.9) < 0.1), cal.held_out
    # metrics.json states the held-out check, not the coverage on the band's own windows
    assert twin.metrics["coverage_all"] == round(float(cal.held_out[:, :2].mean()), 4)
    loaded = Twin.load(twin.save(tmp_path / "lti"), spec=lti_spec()).calibration
    assert loaded.levels == cal.levels and loaded.windows == cal.windows
    np.testing.assert_allclose(loaded.grid, cal.grid)
    np.testing.assert_allclose(loaded.held_out, cal.held_out, atol=1e-5)


def test_saved_and_loaded_twin_forecast_identically(twin: Twin, tmp_path) -> None:
    frame, _ = simulate(200, seed=12)
    plan = np.full((HORIZON, 1), 0.5)
    folder = twin.save(tmp_path / "lti")
    assert {p.name for p in folder.iterdir()} >= {"model.pt", "spec.toml", "metrics.json"}
    loaded = Twin.load(folder, spec=lti_spec())
    a, b = twin.forecast(frame, plan), loaded.forecast(frame, plan)
    np.testing.assert_array_equal(a.mean, b.mean)
    np.testing.assert_array_equal(a.upper, b.upper)
    assert loaded.metrics["nrmse"]["1"]["y1"] == twin.metrics["nrmse"]["1"]["y1"]


def test_spec_mismatch_is_refused_naming_the_difference(twin: Twin, tmp_path) -> None:
    folder = twin.save(tmp_path / "lti")
    with pytest.raises(SpecError, match=r"'y1'.*unit 'm'.*'degC'"):
        Twin.load(folder, spec=lti_spec(unit="degC"))
    renamed = parse_spec(SPEC_TOML.format(unit="m").replace('"y2"', '"level2"'), "other.toml")
    with pytest.raises(SpecError, match="level2"):
        Twin.load(folder, spec=renamed)
    with pytest.raises(TwinError, match="not a saved twin"):
        Twin.load(tmp_path)


def test_short_gaps_are_carried_forward_long_gaps_refused(twin: Twin) -> None:
    frame, _ = simulate(100, seed=13)
    plan = np.zeros((HORIZON, 1))
    n = frame.height
    short = frame.with_columns(
        pl.when(pl.int_range(n) == n - 2).then(None).otherwise(pl.col("y1")).alias("y1")
    )
    fc = twin.forecast(short, plan)
    assert np.all(np.isfinite(fc.mean)) and np.all(np.isfinite(fc.upper))
    long = frame.with_columns(
        pl.when(pl.int_range(n) >= n - 6).then(float("nan")).otherwise(pl.col("y2")).alias("y2")
    )
    with pytest.raises(DataQualityError, match=r"y2.*2026-01-01"):
        twin.forecast(long, plan)
    with pytest.raises(DataQualityError, match="needs the last 8"):
        twin.forecast(frame.head(5), plan)
    with pytest.raises(TwinError, match="1 to 12"):
        twin.forecast(frame, np.zeros((HORIZON + 1, 1)))


def test_gradient_wrt_plan_has_the_plant_sign(twin: Twin) -> None:
    frame, _ = simulate(100, seed=14)
    past = twin.past_tensor(frame)
    plan = torch.zeros(HORIZON, 1, requires_grad=True)
    mean, half = twin.torch_rollout(past, plan)
    (grad,) = torch.autograd.grad(mean[:, :2].sum(), plan, retain_graph=True)
    (grad_band,) = torch.autograd.grad(half.sum(), plan)
    assert torch.isfinite(grad).all() and torch.isfinite(grad_band).all()
    # raising u raises both outputs (positive gains), so the early moves have positive effect
    assert (grad[: HORIZON // 2] > 0).all(), grad.ravel()


def test_same_seed_same_weights() -> None:
    frame, _ = simulate(600, seed=2)
    cfg = dataclasses.replace(CONFIG, max_epochs=2, ensemble=2)
    a = Twin.fit(lti_spec(), frame, cfg, progress=False)
    b = Twin.fit(lti_spec(), frame, cfg, progress=False)
    for (name, p), q in zip(
        a.model.state_dict().items(), b.model.state_dict().values(), strict=True
    ):
        assert torch.equal(p, q), name
    c = Twin.fit(lti_spec(), frame, dataclasses.replace(cfg, seed=4), progress=False)
    # (started from the same linear model, the members may keep its readout: look at them all)
    pairs = zip(a.model.state_dict().values(), c.model.state_dict().values(), strict=True)
    assert not all(torch.equal(p, q) for p, q in pairs)
    assert isinstance(a.normalizer, Normalizer)


def test_readout_mlp_trains_and_round_trips(tmp_path) -> None:
    """``readout_hidden``: the readout's MLP starts at zero, learns, and is saved and loaded
    with the twin; a folder saved before the option existed loads with a linear readout."""
    frame, _ = simulate(600, seed=2)
    cfg = dataclasses.replace(
        CONFIG, max_epochs=3, ensemble=2, readout_hidden=8, linear_init=False, stack=False
    )
    a = Twin.fit(lti_spec(), frame, cfg, progress=False)
    assert a.model.readout_mlp is not None
    assert a.model.readout_mlp.l3.weight.abs().max() > 0  # trained away from its zero start
    loaded = Twin.load(a.save(tmp_path / "ro"), spec=lti_spec())
    assert loaded.config.readout_hidden == 8
    plan = np.full((HORIZON, 1), 0.5)
    np.testing.assert_array_equal(a.forecast(frame, plan).mean, loaded.forecast(frame, plan).mean)
    old = {k: v for k, v in cfg.to_dict().items() if k != "readout_hidden"}
    assert TwinConfig.from_dict(old).readout_hidden == 0  # a folder from before the option


def _lti_historian(tmp_path: Path) -> Path:
    """900 samples of the LTI plant in a historian under ``tmp_path``, and its spec file."""
    from twin.store.historian import Historian

    frame, _ = simulate(900, seed=21)
    long = frame.unpivot(index="ts", variable_name="tag", value_name="value").with_columns(
        pl.lit(0, dtype=pl.UInt32).alias("status")
    )
    Historian(tmp_path / "hist").append(long.select("tag", "ts", "value", "status"))
    spec_file = tmp_path / "lti.toml"
    spec_file.write_text(SPEC_TOML.format(unit="m"), encoding="utf-8")
    return spec_file


def test_train_command_writes_a_loadable_twin(tmp_path, capsys) -> None:
    import twin.cli

    spec_file = _lti_historian(tmp_path)
    argv = ["train", "--spec", str(spec_file), "--historian", str(tmp_path / "hist")]
    argv += ["--out", str(tmp_path / "model"), "--minutes", "0.05", "--window", "8"]
    argv += ["--horizon", "12", "--ensemble", "2", "--seed", "1"]
    assert twin.cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "900 samples" in out and "band coverage" in out
    loaded = Twin.load(tmp_path / "model", spec=lti_spec())
    assert loaded.horizon == 12 and loaded.config.ensemble == 2
    missing = ["train", "--spec", str(spec_file), "--historian", str(tmp_path / "none")]
    assert twin.cli.main([*missing, "--out", str(tmp_path / "m2")]) == 2


def test_train_command_paced_by_epochs_makes_the_same_twin_twice(tmp_path) -> None:
    """With --max-epochs binding well inside --minutes, the same data and seed give the same
    weights whatever the machine's load (the clock neither cuts nor paces the run)."""
    import twin.cli

    spec_file = _lti_historian(tmp_path)
    argv = ["train", "--spec", str(spec_file), "--historian", str(tmp_path / "hist")]
    argv += ["--minutes", "10", "--max-epochs", "3", "--window", "8", "--horizon", "12"]
    argv += ["--ensemble", "2", "--seed", "5"]
    for name in ("a", "b"):
        assert twin.cli.main([*argv, "--out", str(tmp_path / name)]) == 0
    a, b = (Twin.load(tmp_path / name, spec=lti_spec()) for name in ("a", "b"))
    assert a.metrics["training"]["epochs"] == 3
    assert "max_epochs" in a.metrics["training"]["stopped"] + a.metrics["training"]["reason"]
    for (name, p), q in zip(
        a.model.state_dict().items(), b.model.state_dict().values(), strict=True
    ):
        assert torch.equal(p, q), name
