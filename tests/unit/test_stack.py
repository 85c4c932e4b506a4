"""Per-step stacking of the twin's network with its identified linear models (issue 12)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from connectors.sim.plants import make_plant
from connectors.sim.record import record
from twin.model import linear_init
from twin.model.dataset import cv_columns, frame_to_array, make_windows, split_with_context
from twin.model.network import TwinConfig
from twin.model.stack import OFFSET, FullMean, Stacked, copy_size, fit_weights, offset_copy
from twin.model.train import window_errors
from twin.model.twin import Twin
from twin.spec import PlantSpec
from twin.store.historian import Historian

START = datetime(2026, 1, 1, tzinfo=UTC)
CFG = TwinConfig(window=16, horizon=20, latent=8, hidden=16, ensemble=3, max_epochs=2, seed=1)


def test_weights_recover_a_known_mix_per_step_and_stay_on_the_simplex() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((2, 800, 12, 3))
    truth = a.copy()
    truth[..., 0] = 0.3 * a[..., 0] + 0.7 * b[..., 0]  # column 0: a mix; column 1: a alone
    truth[:, 6:, 1] = b[:, 6:, 1]  # ... up to step 6, then b alone
    truth += 0.05 * rng.standard_normal(truth.shape)
    w = fit_weights([a, b], truth, [0, 1])  # column 2 is not a CV (an MV, say)
    assert w.shape == (2, 12, 3)
    assert (w >= 0).all() and np.allclose(w.sum(axis=0), 1.0)
    np.testing.assert_allclose(w[1, :, 0], 0.7, atol=0.03)
    assert (w[0, :2, 1] > 0.97).all() and (w[1, -2:, 1] > 0.97).all()  # smoothed at the switch
    assert (w[0, :, 2] == 1.0).all()
    short = fit_weights([a[:, :3], b[:, :3]], truth[:, :3], [0, 1])  # fewer steps than smoothed
    assert short.shape == (2, 3, 3) and np.allclose(short.sum(axis=0), 1.0)
    np.testing.assert_allclose(short[1, :, 0], 0.7, atol=0.03)


def test_an_offset_copy_of_the_validation_windows_favours_the_part_that_follows_the_plant() -> None:
    """Two parts alike on calm validation windows: one forecasts from the measurement (an
    unmeasured offset persists), the other pulls back to the training level. The recorded windows
    cannot tell them apart; with their offset copy the weights go to the first."""
    rng = np.random.default_rng(1)
    past = rng.standard_normal((300, 8, 2))
    future = past[:, -1:, :] + 0.1 * rng.standard_normal((300, 6, 2))
    moved_past, moved_future = offset_copy(past, future, [0], 1.0, seed=3)
    shift = moved_past[:, -1:, 0] - past[:, -1:, 0]
    assert set(np.unique(np.abs(shift)).round(9)) == {1.0} and 0.3 < (shift > 0).mean() < 0.7
    np.testing.assert_array_equal(moved_past[..., 1], past[..., 1])  # not a CV: untouched
    follows = future + 0.05 * rng.standard_normal(future.shape)  # recorded windows: both as good
    pulls_back = future + 0.05 * rng.standard_normal(future.shape)
    calm = fit_weights([pulls_back, follows], future, [0])
    assert 0.3 < calm[1, :, 0].mean() < 0.7
    both = [
        np.concatenate([pulls_back, pulls_back]),  # the same forecast whatever the offset
        np.concatenate([follows, follows + (moved_future - future)]),
    ]
    w = fit_weights(both, np.concatenate([future, moved_future]), [0])
    assert w[1, :, 0].min() > 0.9


@pytest.fixture(scope="module")
def stacked(tmp_path_factory: pytest.TempPathFactory) -> tuple[PlantSpec, pl.DataFrame, Twin]:
    root = tmp_path_factory.mktemp("cstr")
    sim = make_plant("cstr", seed=3)
    record(sim, 4.0, root, seed=3, start=START, progress=False)
    frame = Historian(root).frame(sim.spec, START, START + timedelta(hours=4))
    return sim.spec, frame, Twin.fit(sim.spec, frame, CFG, progress=False)


def test_a_stacked_twin_forecasts_its_parts_weighted_and_validates_no_worse_than_any(
    stacked: tuple[PlantSpec, pl.DataFrame, Twin],
) -> None:
    spec, frame, twin = stacked
    lin = twin.metrics["linear_init"]
    rec = lin["stack"]
    assert isinstance(twin.model, Stacked), rec
    # the network linear first set aside is offered to the stack; its start is not offered twice
    assert ("network (not kept)" in rec["parts"]) == (lin["kept"] == "linear"), lin
    # three identified linear models (ARX, subspace, ARX on increments) and the network
    assert len(rec["parts"]) == 4 and rec["parts"][0] in ("network", f"{lin['model']} (start)")
    assert len(rec["used"]) == len(twin.model.parts) >= 2
    assert all(sum(w.values()) == pytest.approx(1.0, abs=2e-3) for w in rec["weight"].values())
    parts = split_with_context(frame, twin.config.fractions, twin.window)
    values, ok = frame_to_array(parts[1], spec)
    val = make_windows(values, ok, spec, twin.window, twin.horizon, twin.normalizer)
    past, future = torch.as_tensor(val.past[:50]), torch.as_tensor(val.future[:50])
    with torch.no_grad():
        ys = [p.rollout(past, future).y for p in twin.model.parts]
        y = twin.model.rollout(past, future).y
    mix = sum(twin.model.weights[m] * ys[m] for m in range(len(ys)))
    torch.testing.assert_close(y, mix)
    cv = cv_columns(spec)  # fitted on the validation windows and their offset copy (OFFSET)
    size = copy_size(len(val), twin.horizon)
    moved = offset_copy(val.past, val.future, cv, OFFSET, twin.config.seed, size)
    both = (np.concatenate([val.past, moved[0]]), np.concatenate([val.future, moved[1]]))

    def error(model: torch.nn.Module) -> float:
        return float(np.sqrt(window_errors(model, *both, cv).mean()))  # type: ignore[arg-type]

    alone = [error(p) for p in twin.model.parts]
    assert error(twin.model) <= min(alone) * 1.005, (alone, rec)


def test_a_stacked_twin_saves_loads_and_plans_with_gradients(
    stacked: tuple[PlantSpec, pl.DataFrame, Twin], tmp_path: Path
) -> None:
    spec, frame, twin = stacked
    loaded = Twin.load(twin.save(tmp_path / "m"), spec)
    assert isinstance(loaded.model, Stacked)
    assert loaded.config.stack_latents == twin.config.stack_latents
    history = frame.tail(twin.window + 5)
    plan = np.tile(frame.select([t.name for t in spec.mvs]).tail(1).to_numpy(), (twin.horizon, 1))
    a, b = twin.forecast(history, plan), loaded.forecast(history, plan)
    np.testing.assert_allclose(a.mean, b.mean, atol=1e-5)
    np.testing.assert_allclose(a.upper, b.upper, atol=1e-5)
    mv = torch.as_tensor(plan, dtype=torch.float32).requires_grad_(True)
    mean, half = loaded.torch_rollout(loaded.past_tensor(history), mv)
    (mean[:, cv_columns(spec)].sum() + half.sum()).backward()
    assert mv.grad is not None and bool(torch.isfinite(mv.grad).all())
    assert float(mv.grad.abs().sum()) > 0.0  # the controller sees the plan's effect


def test_the_model_page_says_what_the_stack_combines(
    stacked: tuple[PlantSpec, pl.DataFrame, Twin],
) -> None:
    from dashboards.views.model import structure

    _, _, twin = stacked
    lin = twin.metrics["linear_init"]
    line = structure(twin.metrics)
    assert line.startswith(f"linear first: {lin['model']} identified; kept the {lin['kept']}")
    at_h = lin["stack"]["weight"][str(twin.horizon)]
    assert f"at step {twin.horizon}: " in line
    assert all(name in line for name, w in at_h.items() if w >= 0.005), (line, at_h)


def test_stack_off_keeps_the_network_alone(stacked: tuple[PlantSpec, pl.DataFrame, Twin]) -> None:
    spec, frame, _ = stacked
    twin = Twin.fit(spec, frame, dataclasses.replace(CFG, stack=False), progress=False)
    assert "stack" not in twin.metrics["linear_init"]
    assert not isinstance(twin.model, Stacked) and twin.config.stack_latents == ()


def test_full_mean_plans_on_the_full_fit_and_keeps_the_resamples_spread(
    stacked: tuple[PlantSpec, pl.DataFrame, Twin], tmp_path: Path
) -> None:
    spec, frame, _ = stacked
    twin = Twin.fit(spec, frame, dataclasses.replace(CFG, linear_mean="full"), progress=False)
    model = twin.model
    parts = list(model.parts) if isinstance(model, Stacked) else [model]
    wrapped = [p for p in parts if isinstance(p, FullMean)]
    assert twin.config.stack_full_mean == tuple(isinstance(p, FullMean) for p in parts)
    assert wrapped, twin.metrics["linear_init"]  # a kept start or a linear part, resampled
    values, ok = frame_to_array(frame.tail(400), spec)
    w = make_windows(values, ok, spec, twin.window, twin.horizon, twin.normalizer)
    past, future = torch.as_tensor(w.past[:40]), torch.as_tensor(w.future[:40])
    with torch.no_grad():
        for part in wrapped:
            y = part.rollout(past, future).y
            members = part.members.rollout(past, future).y
            full = part.full.rollout(past, future).y[0]
            torch.testing.assert_close(y.mean(0), full, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(y.std(0), members.std(0), atol=1e-5, rtol=1e-5)
            assert float(members.std(0).mean()) > 0  # the resamples do disagree
    loaded = Twin.load(twin.save(tmp_path / "m"), spec)
    history = frame.tail(twin.window + 5)
    plan = np.tile(frame.select([t.name for t in spec.mvs]).tail(1).to_numpy(), (twin.horizon, 1))
    a, b = twin.forecast(history, plan), loaded.forecast(history, plan)
    np.testing.assert_allclose(a.mean, b.mean, atol=1e-5)
    np.testing.assert_allclose(a.upper, b.upper, atol=1e-5)


def test_a_linear_model_too_large_to_start_the_network_is_still_stacked(
    stacked: tuple[PlantSpec, pl.DataFrame, Twin], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The latent limit for the network's start (MAX_LATENT) does not keep a larger linear model
    out of the stack (MAX_PART_LATENT): a plant with many inputs has an ARX on increments whose
    state is too large to train through, and it may be the best forecaster of a drifting plant."""
    spec, frame, twin = stacked
    lin, ncv = twin.metrics["linear_init"], len(cv_columns(spec))
    states = {c["model"]: c["state"] for c in lin["candidates"].values() if "state" in c}
    start = lin["model"]
    larger = sorted(name for name, n in states.items() if n > states[start])
    assert larger, states  # cstr: the subspace model (5) starts, both ARX (34, 38) are larger
    monkeypatch.setattr(linear_init, "MAX_LATENT", states[start] + ncv)
    small = Twin.fit(spec, frame, CFG, progress=False)
    rec = small.metrics["linear_init"]
    assert rec["model"] == start and small.config.latent <= max(CFG.latent, states[start] + ncv)
    for name in larger:  # too large to start, offered to the stack all the same
        assert name in rec["stack"]["parts"], rec["stack"]
    monkeypatch.setattr(linear_init, "MAX_LATENT", min(states.values()) + ncv - 1)
    none = Twin.fit(spec, frame, CFG, progress=False)  # nothing can start: no linear first
    rec = none.metrics["linear_init"]
    assert rec["model"] is None and not isinstance(none.model, Stacked), rec
    assert all("latent over" in c["skipped"] for c in rec["candidates"].values()), rec


@pytest.mark.parametrize("beside", [True, False], ids=["second-process", "one-core"])
def test_a_direct_part_learns_is_stacked_saved_and_planned_through(
    stacked: tuple[PlantSpec, pl.DataFrame, Twin],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    beside: bool,
) -> None:
    """``direct``: a direct multi-step GRU is trained beside the network (in a second process
    where a core is free, else after it in half the budget) and stacked as one more part; the
    twin with it saves, loads to the same forecast, and the controller's gradient reaches the
    plan through it."""
    from twin.model import direct, stack
    from twin.model.direct import DirectPart

    spec, frame, _ = stacked
    monkeypatch.setattr(stack, "WEIGHT_FLOOR", -1.0)  # keep the part whatever its weight
    monkeypatch.setattr(direct, "beside", lambda cfg: beside)
    cfg = dataclasses.replace(CFG, direct=True, max_epochs=15)
    twin = Twin.fit(spec, frame, cfg, progress=False)
    rec = twin.metrics["linear_init"]["stack"]
    assert rec["used"][-1] == "direct GRU" and isinstance(twin.model, Stacked), rec
    where = "beside the network" if beside else "after the network"
    assert rec["direct"]["process"] == where and "kept epoch" in rec["direct"]["stopped"], rec
    part = twin.model.parts[-1]
    assert isinstance(part, DirectPart) and twin.config.stack_direct == part.net.hidden > 0
    assert rec["direct"]["parameters"] == sum(p.numel() for p in part.parameters())
    values, ok = frame_to_array(frame.tail(900), spec)
    w = make_windows(values, ok, spec, twin.window, twin.horizon, twin.normalizer)
    cv = cv_columns(spec)
    past, future = torch.as_tensor(w.past), torch.as_tensor(w.future)
    with torch.no_grad():
        y = part.rollout(past, future).y
    assert y.shape == (1, *future.shape)
    err = float(((y[0, :, :, cv] - future[..., cv]) ** 2).mean().sqrt())
    held = float(((past[:, -1:, cv] - future[..., cv]) ** 2).mean().sqrt())
    assert err < 0.8 * held, (err, held)  # it learned more than persistence knows

    loaded = Twin.load(twin.save(tmp_path / "m"), spec)
    assert loaded.config.stack_direct == twin.config.stack_direct
    history = frame.tail(twin.window + 5)
    plan = np.tile(frame.select([t.name for t in spec.mvs]).tail(1).to_numpy(), (twin.horizon, 1))
    np.testing.assert_allclose(
        twin.forecast(history, plan).mean, loaded.forecast(history, plan).mean, atol=1e-5
    )
    plan_z = future[:1].clone().requires_grad_(True)
    part.rollout(past[:1], plan_z).y[..., cv].sum().backward()
    assert plan_z.grad is not None and float(plan_z.grad[..., part.mv_cols].abs().sum()) > 0


def test_a_direct_part_whose_process_dies_costs_the_part_not_the_twin(
    stacked: tuple[PlantSpec, pl.DataFrame, Twin], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second process killed (out of memory, say) as the network starts training: the twin
    is trained and stacked without the part at once, not after the part's budget, and its
    record says why."""
    import time

    from twin.model import direct

    spec, frame, _ = stacked
    monkeypatch.setattr(direct, "beside", lambda cfg: True)
    started = direct.DirectJob.__init__

    def killed(self: direct.DirectJob, *args: object) -> None:
        started(self, *args)  # type: ignore[arg-type]
        self.process.kill()

    monkeypatch.setattr(direct.DirectJob, "__init__", killed)
    cfg = dataclasses.replace(CFG, direct=True, minutes=2.0)
    t0 = time.monotonic()
    twin = Twin.fit(spec, frame, cfg, progress=False)
    assert time.monotonic() - t0 < 60.0  # the network's 2 epochs, not the part's 2 + 5 minutes
    rec = twin.metrics["linear_init"]["stack"]
    assert "direct GRU" not in rec["used"] and twin.config.stack_direct == 0, rec
    assert rec["direct"] == {"error": "RuntimeError: the second process ended with exit code -9"}
