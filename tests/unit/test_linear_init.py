"""Linear first: the twin at initialisation forecasts exactly what the identified linear model
does, every ensemble member alike, and after training it is no worse on validation.

Two plants: a linear one (2 CVs, 1 MV) and the simulated CSTR recorded into a real historian
(2 CVs, 1 MV, 1 DV), for each identified model (ARX, subspace and ARX on increments).
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from test_twin import lti_spec, simulate

from connectors.sim.plants import make_plant
from connectors.sim.record import record
from twin.evaluate.baseline import Baseline
from twin.evaluate.linear import ARX, IntegratedARX, Subspace
from twin.model.dataset import (
    Normalizer,
    cv_columns,
    dv_columns,
    frame_to_array,
    make_windows,
    mv_columns,
    spans,
    split_by_time,
    split_with_context,
)
from twin.model.linear_init import (
    CENTRED,
    FULL_FIRST,
    KEEP_T,
    embed,
    member_starts,
)
from twin.model.network import LatentDynamics, TwinConfig
from twin.model.state_space import StateSpace, from_arx, from_subspace
from twin.model.time_scales import step_times
from twin.model.train import paired_t, validation_error
from twin.model.twin import Twin
from twin.spec import PlantSpec, load_spec, spec_to_toml
from twin.store.historian import Historian

REPO = Path(__file__).resolve().parents[2]
START = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def cstr(tmp_path_factory: pytest.TempPathFactory) -> tuple[PlantSpec, pl.DataFrame]:
    root = tmp_path_factory.mktemp("cstr")
    record(make_plant("cstr", seed=3), 4.0, root, seed=3, start=START, progress=False)
    spec = load_spec(REPO / "data" / "plants" / "cstr.toml")
    return spec, Historian(root).frame(spec, START, START + timedelta(hours=4))


@pytest.fixture(scope="module")
def lti() -> tuple[PlantSpec, pl.DataFrame]:
    frame, _ = simulate(3000, seed=2)
    return lti_spec(), frame


CFG = TwinConfig(window=16, horizon=20, latent=8, hidden=16, ensemble=3)


@pytest.mark.parametrize("readout", [0, 8])
@pytest.mark.parametrize("plant", ["lti", "cstr"])
@pytest.mark.parametrize("kind", [ARX, Subspace, IntegratedARX])
def test_twin_at_init_forecasts_what_the_linear_model_does(
    plant: str, kind: type[Baseline], readout: int, request: pytest.FixtureRequest
) -> None:
    """Every member reproduces the identified model, with a readout MLP (``readout_hidden``)
    as without: linear first zeroes its output layer."""
    spec, frame = request.getfixturevalue(plant)
    parts = split_by_time(frame, CFG.fractions)
    values, _ = frame_to_array(parts[0], spec)
    norm = Normalizer.fit(values, fallback=0.1 * spans(spec))
    linear = kind().fit(spec, parts[0], parts[1], horizon=CFG.horizon, window=CFG.window)
    np.testing.assert_allclose(linear.norm_.scale, norm.scale)  # the same normalised units
    n_tags, cv = len(spec.tags), cv_columns(spec)
    ss = (
        from_arx(linear, CFG.window, n_tags)
        if isinstance(linear, ARX)
        else from_subspace(linear, CFG.window, n_tags)  # type: ignore[arg-type]
    )
    cfg = dataclasses.replace(
        CFG, latent=max(CFG.latent, ss.order + len(cv)), readout_hidden=readout
    )
    torch.manual_seed(0)
    net = LatentDynamics(cfg, n_tags, mv_columns(spec), dv_columns(spec))
    if net.readout_mlp is not None:  # as a trained twin's would be: not zero
        torch.nn.init.normal_(net.readout_mlp.l3.weight)
    embed(net, ss, cv)
    vv, vok = frame_to_array(parts[1], spec)
    val = make_windows(vv, vok, spec, CFG.window, CFG.horizon, norm)
    past, future = val.past[::5], val.future[::5].copy()
    expected = linear._predict_z(past.astype(np.float64), future.astype(np.float64))
    direct = ss.forecast(
        past.astype(float), future.astype(float), mv_columns(spec), dv_columns(spec)
    )
    np.testing.assert_allclose(direct, expected, atol=1e-8)
    with torch.no_grad():
        y = net.rollout(torch.as_tensor(past), torch.as_tensor(future)).y.numpy()
    assert y.shape[0] == CFG.ensemble
    for member in y:  # every member, not only their mean
        np.testing.assert_allclose(member[..., cv], expected, atol=2e-3)
    # and the model is good: the linear forecast beats persistence over the horizon
    pers = np.repeat(past[:, -1:, cv], CFG.horizon, axis=1)
    assert np.mean((expected - future[..., cv]) ** 2) < np.mean((pers - future[..., cv]) ** 2)


@pytest.mark.parametrize("kind", [ARX, Subspace, IntegratedARX])
def test_bootstrap_starts_agree_on_the_data_and_spread_off_it(
    kind: type[Baseline], lti: tuple[PlantSpec, pl.DataFrame]
) -> None:
    """linear_bootstrap: each member starts from its own resampled linear model, exactly; their
    mean forecasts what the full-data fit does, and they disagree where the data say little."""
    spec, frame = lti
    cfg = dataclasses.replace(CFG, linear_bootstrap=True, seed=4)
    parts = split_by_time(frame, cfg.fractions)
    values, _ = frame_to_array(parts[0], spec)
    norm = Normalizer.fit(values, fallback=0.1 * spans(spec))
    linear = kind().fit(spec, parts[0], parts[1], horizon=cfg.horizon, window=cfg.window)
    n_tags, cv, mv, dv = len(spec.tags), cv_columns(spec), mv_columns(spec), dv_columns(spec)
    full = (
        from_arx(linear, cfg.window, n_tags)
        if isinstance(linear, ARX)
        else from_subspace(linear, cfg.window, n_tags)  # type: ignore[arg-type]
    )
    starts = member_starts(spec, parts[0], linear, full, cfg, norm)  # type: ignore[arg-type]
    assert len(starts) == cfg.ensemble and {s.order for s in starts} == {full.order}
    again = member_starts(spec, parts[0], linear, full, cfg, norm)  # type: ignore[arg-type]
    for s, t in zip(starts, again, strict=True):  # deterministic: seeded by the config's seed
        np.testing.assert_array_equal(s.b, t.b)
    assert (starts[0] is full) == FULL_FIRST
    torch.manual_seed(0)
    net = LatentDynamics(
        dataclasses.replace(cfg, latent=max(cfg.latent, full.order + len(cv))), n_tags, mv, dv
    )
    embed(net, starts, cv)
    vv, vok = frame_to_array(parts[1], spec)
    val = make_windows(vv, vok, spec, cfg.window, cfg.horizon, norm)
    past, future = val.past[::5], val.future[::5].copy()

    def rollout(fut: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return net.rollout(torch.as_tensor(past), torch.as_tensor(fut)).y.numpy()[..., cv]

    y = rollout(future)
    for member, ss in zip(y, starts, strict=True):  # each member is exactly its own start
        np.testing.assert_allclose(member, ss.forecast(past, future, mv, dv), atol=2e-3)
    assert not np.allclose(y[0], y[1], atol=1e-4)

    def rmse(pred: np.ndarray) -> float:
        return float(np.sqrt(np.mean((pred - future[..., cv]) ** 2)))

    exact = full.forecast(past, future, mv, dv)
    assert rmse(y.mean(axis=0)) < 1.02 * rmse(exact)
    if CENTRED:  # the members' mean is the full-data fit's forecast, to first order
        assert np.sqrt(np.mean((y.mean(axis=0) - exact) ** 2)) < 0.5 * y.std(axis=0).mean()
    far = future.copy()  # an MV plan well outside the training range (normalised units)
    far[..., mv] = 3.0 * future[..., mv] + 10.0
    assert rollout(far).std(axis=0).mean() > 2.0 * y.std(axis=0).mean()


def test_linear_bootstrap_in_fit_is_cheap_recorded_and_no_worse_than_one_start(
    lti: tuple[PlantSpec, pl.DataFrame],
) -> None:
    spec, frame = lti
    cfg = dataclasses.replace(CFG, max_epochs=1, seed=1)
    alike = dataclasses.replace(cfg, linear_bootstrap=False)
    one = Twin.fit(spec, frame, alike, progress=False).metrics["linear_init"]
    rec = Twin.fit(
        spec, frame, dataclasses.replace(cfg, linear_bootstrap=True), progress=False
    ).metrics["linear_init"]
    assert "bootstrap_seconds" not in one
    assert rec["bootstrap_fallbacks"] == 0 and rec["bootstrap_seconds"] < 5.0
    # the members' mean at the start validates as well as the one full-data start
    assert rec["val_nrmse_linear"] < 1.02 * one["val_nrmse_linear"]


def test_trained_twin_is_no_worse_on_validation_than_its_linear_start(
    lti: tuple[PlantSpec, pl.DataFrame],
) -> None:
    spec, frame = lti
    cfg = dataclasses.replace(CFG, max_epochs=3, minutes=5.0, seed=1, stack=False)
    twin = Twin.fit(spec, frame, cfg, progress=False)  # the network alone (test_stack: stacked)
    rec = twin.metrics["linear_init"]
    assert rec["model"].startswith(("arx", "subspace", "iarx"))
    assert set(rec["candidates"]) == {"arx", "subspace", "iarx"}
    assert rec["kept"] in ("trained", "linear")
    parts = split_with_context(frame, cfg.fractions, cfg.window)  # the twin's own split
    vv, vok = frame_to_array(parts[1], spec)
    val = make_windows(vv, vok, spec, cfg.window, cfg.horizon, twin.normalizer)
    score = validation_error(twin.model, val, cv_columns(spec))
    assert score <= rec["val_nrmse_linear"] + 1e-4
    kept = rec[f"val_nrmse_{rec['kept']}"]
    assert score == pytest.approx(kept, abs=1e-4)
    # the trained weights replace the linear start only for a gain beyond the validation noise
    assert (rec["kept"] == "trained") == (rec["gain_t"] > KEEP_T)


def test_paired_t_needs_a_gain_beyond_the_noise_of_overlapping_windows() -> None:
    rng = np.random.default_rng(0)
    before = 1.0 + rng.standard_normal(600).repeat(10)[:600] * 0.5  # errors correlated in 10s
    noise_only = before - 0.002 + rng.standard_normal(600) * 0.05
    assert paired_t(before, noise_only, 10) < KEEP_T
    assert paired_t(before, before * 0.8, 10) > KEEP_T  # 20 % better on every window
    assert paired_t(before, before * 1.2, 10) < 0
    assert paired_t(before[:20], before[:20] * 0.5, 10) == 0.0  # two blocks decide nothing


def test_linear_init_off_trains_from_scratch_as_before(
    lti: tuple[PlantSpec, pl.DataFrame],
) -> None:
    spec, frame = lti
    cfg = dataclasses.replace(CFG, max_epochs=1, linear_init=False)
    twin = Twin.fit(spec, frame, cfg, progress=False)
    assert "linear_init" not in twin.metrics
    assert twin.config.latent == CFG.latent


def _first_order(a: float, integrating: bool = False) -> StateSpace:
    one = np.ones((1, 1))
    return StateSpace(
        "toy",
        one * (1.0 if integrating else a),
        one * (1 - a),
        np.zeros(1),
        one,
        np.zeros((1, 1)),
        np.zeros(1),
        np.zeros((1, 4)),
        np.zeros(1),
    )


def test_time_scales_from_the_step_response() -> None:
    # 0.9^k < 0.05 from k = 29 on (3 time constants); the move shows one sample later
    assert step_times(_first_order(0.9)) == (1, 29)
    assert step_times(_first_order(0.9, integrating=True)) == (1, 480)  # never settles: the cap
    assert step_times(dataclasses.replace(_first_order(0.9), c=np.zeros((1, 1)))) is None


def test_auto_time_scales_are_chosen_stored_and_used(
    lti: tuple[PlantSpec, pl.DataFrame],
) -> None:
    spec, frame = lti
    cfg = dataclasses.replace(CFG, max_epochs=1, time_scales="auto_window", horizon=15)
    twin = Twin.fit(spec, frame, cfg, progress=False)
    ts = twin.metrics["time_scales"]
    # the plant's slow pole 0.9: settles in about 30 samples, so a window of about 15
    assert 20 <= ts["settling_samples"] <= 45 and ts["dead_samples"] <= 1
    assert (
        twin.window
        == twin.config.window
        == ts["window"]
        == round(ts["settling_samples"] / 2 + ts["dead_samples"])
    )
    assert twin.horizon == 15 and ts["given"] == {"window": False, "horizon": True}


def test_train_command_says_what_linear_first_and_the_time_scales_chose(
    lti: tuple[PlantSpec, pl.DataFrame], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    import twin.cli

    spec, frame = lti
    long = frame.head(1200).unpivot(index="ts", variable_name="tag", value_name="value")
    long = long.with_columns(pl.lit(0, dtype=pl.UInt32).alias("status"))
    Historian(tmp_path / "hist").append(long.select("tag", "ts", "value", "status"))
    spec_file = tmp_path / "lti.toml"
    spec_file.write_text(spec_to_toml(spec), encoding="utf-8")
    argv = ["train", "--spec", str(spec_file), "--historian", str(tmp_path / "hist")]
    argv += ["--out", str(tmp_path / "model"), "--minutes", "0.05", "--horizon", "12"]
    argv += ["--ensemble", "2", "--time-scales", "auto"]
    assert twin.cli.main(argv) == 0
    out = capsys.readouterr().out
    metrics = json.loads((tmp_path / "model" / "metrics.json").read_text())
    assert "linear first: " in out and f"kept the {metrics['linear_init']['kept']}" in out
    assert "stopped: " in out and metrics["training"]["reason"] in out
    stack = metrics["linear_init"].get("stack", {})
    assert ("stacked: " in out) == (len(stack.get("used", ())) > 1), (out, stack)
    window = metrics["time_scales"]["window"]
    assert f"window {window}, horizon 12 samples" in out and "horizon given" in out
    assert Twin.load(tmp_path / "model").window == window
