"""The closed-loop scenarios generated for zoo plants: setpoints the plant can meet, the same
every time, and an oracle whose physics is the plant's (no twin is trained here)."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks.control_compare import compare
from benchmarks.control_loop import SCENARIOS, Scenario
from benchmarks.control_models import OraclePredictor
from benchmarks.control_seeds import shard_of
from benchmarks.control_zoo import (
    STEPS,
    SteadyMap,
    oracle_substeps,
    scenario_for,
    zoo_design,
)
from benchmarks.steady_gains import STEP, plant_curves
from connectors.sim.plants import make_plant

PLANTS = ("zoo-2", "zoo-5")  # development plants only: nothing is looked at on the held-out set


@pytest.mark.parametrize("name", PLANTS)
def test_the_plants_steady_state_at_each_mv_point_meets_the_setpoints(name: str) -> None:
    d = zoo_design(name)
    spec = make_plant(name).spec
    ss = SteadyMap(name)
    assert 1 <= len(d.tracked) <= len(spec.mvs)
    for (_, setpoints), point in zip(d.scenario.setpoints, d.mv_points, strict=True):
        assert set(setpoints) == set(d.tracked)
        u = np.array([point[m] for m in ss.plant.mv_names])
        for mv in spec.mvs:
            assert mv.lo <= point[mv.name] <= mv.hi
        y = dict(zip(ss.cvs, ss(u), strict=True))
        for cv in spec.cvs:  # every CV, tracked or only watched, inside its limits there
            assert cv.lo <= y[cv.name] <= cv.hi
        for cv, sp in setpoints.items():
            assert y[cv] == pytest.approx(sp, abs=1e-6 * spec.tag(cv).span)
    # the MVs that hold the setpoints against the disturbance are inside their limits too
    assert d.held and all(
        spec.tag(m).lo <= v <= spec.tag(m).hi for h in d.held for m, v in h.items()
    )


@pytest.mark.parametrize("name", PLANTS)
def test_the_scenario_is_the_same_every_time_and_fits_the_plant(name: str) -> None:
    first = zoo_design(name).scenario
    zoo_design.cache_clear()
    again = zoo_design(name).scenario
    assert again == first
    assert isinstance(first, Scenario) and first.plant == name
    assert STEPS[0] <= first.steps <= STEPS[1]
    plant = make_plant(name)
    assert first.disturbance == plant.param_names[0]
    weights = first.weights(plant.spec)
    assert sum(w > 0 for w in weights.values()) <= len(plant.spec.mvs)
    nominal = float(plant.p[plant.param_names.index(first.disturbance)])
    path = first.disturbance_path(nominal)
    assert path[0] == nominal and path[-1] == first.step[1]
    assert np.sign(first.drift[2] - nominal) == -np.sign(first.step[1] - nominal)


def test_the_built_in_plants_keep_their_hand_written_scenarios() -> None:
    assert scenario_for("cstr") is SCENARIOS["cstr"]


@pytest.mark.parametrize("name", PLANTS)
def test_the_oracle_forecasts_what_the_plant_does(name: str) -> None:
    plant = make_plant(name, noise=False)
    oracle = OraclePredictor(plant, horizon=20, substeps=oracle_substeps(name))
    t = datetime(2026, 3, 1, tzinfo=UTC)
    for _ in range(3):
        plant.step()
        t += timedelta(seconds=plant.sample_period)
    oracle.observe(t)
    past = oracle.past_tensor(pl.DataFrame({"ts": [t]}))
    plan = np.array([[m.lo + 0.7 * m.span for m in plant.spec.mvs]] * 20)
    mean, band = oracle.torch_rollout(past, torch.tensor(plan))
    truth = [list(plant.step(dict(zip(plant.mv_names, row, strict=True))).values()) for row in plan]
    span = np.array([tag.span for tag in plant.spec.tags])
    assert np.max(np.abs(mean.numpy() - np.array(truth)) / span) < 1e-3
    assert float(band.abs().max()) == 0.0


def test_shards_split_the_runs_without_overlap() -> None:
    runs = [(p, s) for p in ("a", "b", "c") for s in (1, 2, 3)]
    parts = [shard_of(runs, f"{i}/4") for i in range(1, 5)]
    assert sorted(r for part in parts for r in part) == sorted(runs)
    with pytest.raises(ValueError, match="1 <= i <= n"):
        shard_of(runs, "0/4")


def _runs(folder: Path, js: dict[str, tuple[float, float]]) -> Path:
    (folder / "runs").mkdir(parents=True)
    for key, (twin, oracle) in js.items():
        plant, seed = key.rsplit("-seed", 1)
        doc = {
            "plant": plant,
            "seed": int(seed),
            "ratio": twin / oracle,
            "results": {
                "twin": {"J": twin, "offset_ok": True},
                "oracle": {"J": oracle, "offset_ok": True},
            },
        }
        (folder / "runs" / f"{key}.json").write_text(json.dumps(doc), encoding="utf-8")
    return folder


def test_compare_pairs_the_runs_stored_in_both_folders(tmp_path: Path) -> None:
    before = _runs(tmp_path / "a", {"zoo-2-seed1": (2.0, 1.0), "zoo-5-seed1": (3.0, 2.0)})
    after = _runs(tmp_path / "b", {"zoo-2-seed1": (1.0, 1.0), "zoo-9-seed1": (1.0, 1.0)})
    text = compare(before, after)
    assert "| zoo-2 | 1 | 2 | 1 | 1 | 1 | 2.000 | 1.000 | True / True |" in text
    assert "zoo-5" not in text and "zoo-9" not in text  # stored in one folder only
    assert "twin **0.500**, oracle **1.000**" in text
    assert "went down on 1 of 1 runs" in text


def test_the_plants_step_response_covers_one_sample_per_step() -> None:
    """What the oracle reads over H (``steady_gains.plant_curves``) is the plant H samples after
    the step, not a multiple of H: zoo-5 has three CVs, and its level keeps moving over 30 samples,
    so a reading that stepped the plant once per CV would read it three times as far."""
    ss = SteadyMap("zoo-5")
    u = ss.plant.u0.copy()
    span = np.array([t.hi - t.lo for t in ss.plant.spec.mvs])
    horizon = 30
    curves = plant_curves(ss, u, span, horizon)
    ends = []
    for sign in (1.0, -1.0):
        sim = make_plant("zoo-5", noise=False)
        sim.x = sim.steady_state(u, sim.d0)
        plan = u.copy()
        plan[1] += sign * STEP * span[1]
        for _ in range(horizon):
            out = sim.step(dict(zip(sim.mv_names, plan.tolist(), strict=True)))
        ends.append([out[c] for c in ss.cvs])
    expected = (np.array(ends[0]) - np.array(ends[1])) / (2 * STEP)
    np.testing.assert_allclose(curves[1][-1], expected, rtol=1e-9, atol=1e-9)
    assert abs(curves[1][-1][0]) > 1.0  # the level does move over the horizon
