"""The control benchmark's parts: the oracle and ARX predictors, the PI baseline, the harness.

The benchmark's verdicts rest on these: the oracle must be the plant (its rollout equals the
simulator's noise-free steps), the linear MPC's model must be the ARX baseline (its torch rollout
equals ``ARX.predict``), the PI loops must control, and a scripted disturbance must really be
held. The last test runs ``benchmarks/control.py --quick`` end to end on the CSTR.
"""

from __future__ import annotations

import json
import sys
from datetime import timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks.control_loop import SCENARIOS, START, PIPolicy, run_closed_loop  # noqa: E402
from benchmarks.control_models import ARXPredictor, OraclePredictor  # noqa: E402
from benchmarks.pid import DecentralisedPI, pairing, step_tests, tune  # noqa: E402
from connectors.sim.plants import make_plant  # noqa: E402
from connectors.sim.record import DEFAULT_START, record  # noqa: E402
from twin.errors import TwinError  # noqa: E402
from twin.evaluate.linear import ARX  # noqa: E402
from twin.model.dataset import frame_to_array, mv_columns, split_by_time  # noqa: E402
from twin.store.historian import Historian  # noqa: E402

#: largest rollout error allowed per plant (RK4 against LSODA; Wood-Berry's map is exact)
ROLLOUT_TOL = {"cstr": 2e-3, "quadtank": 1e-3, "woodberry": 1e-9}


def _random_plan(plant_name: str, steps: int, seed: int) -> np.ndarray:
    spec = make_plant(plant_name).spec
    rng = np.random.default_rng(seed)
    return np.array(
        [
            [rng.uniform(t.lo + 0.3 * t.span, t.hi - 0.3 * t.span) for t in spec.mvs]
            for _ in range(steps)
        ]
    )


@pytest.mark.parametrize("plant_name", ["cstr", "quadtank", "woodberry"])
def test_oracle_rollout_is_the_simulators_noise_free_steps(plant_name: str) -> None:
    plant = make_plant(plant_name, seed=3)
    for _ in range(15):  # a state off nominal, drifted disturbances
        plant.step()
    oracle = OraclePredictor(plant, horizon=30)
    oracle.observe(START)
    twin_plant = make_plant(plant_name, noise=False)
    twin_plant.x, twin_plant.d, twin_plant.p = plant.x.copy(), plant.d.copy(), plant.p.copy()
    plan = _random_plan(plant_name, 30, seed=0)
    truth = []
    for row in plan:
        values = twin_plant.step(dict(zip(plant.mv_names, row, strict=True)))
        truth.append([values[name] for name in plant.spec.tag_names])
    history = pl.DataFrame({"ts": [START]})
    mean, half = oracle.torch_rollout(oracle.past_tensor(history), torch.as_tensor(plan))
    assert mean.shape == (30, len(plant.spec.tags))
    assert np.abs(mean.numpy() - np.array(truth)).max() <= ROLLOUT_TOL[plant_name]
    assert float(half.abs().max()) == 0.0
    # stacked pasts paired with plans (as the controller's offset correction calls it)
    past = oracle.past_tensor(history)
    both, _ = oracle.torch_rollout(
        torch.stack([past, past]), torch.as_tensor(np.stack([plan, plan]))
    )
    assert torch.allclose(both[1], mean)


def test_oracle_knows_only_the_samples_it_observed() -> None:
    oracle = OraclePredictor(make_plant("cstr"))
    oracle.observe(START)
    with pytest.raises(TwinError, match="no true state"):
        oracle.past_tensor(pl.DataFrame({"ts": [START + timedelta(seconds=6)]}))


@pytest.fixture(scope="module")
def cstr_arx(tmp_path_factory: pytest.TempPathFactory) -> tuple[ARX, object]:
    out = tmp_path_factory.mktemp("cstr-data")
    plant = make_plant("cstr", seed=1)
    record(plant, 3.0, out, seed=1, progress=False)
    frame = Historian(out).frame(plant.spec, DEFAULT_START, DEFAULT_START + timedelta(hours=3))
    fit, val, _ = split_by_time(frame)
    return ARX(na=(1, 2), nb=(1, 4)).fit(plant.spec, fit, val, horizon=20, window=8), frame


def test_arx_predictor_rolls_out_what_arx_predicts(cstr_arx: tuple[ARX, object]) -> None:
    arx, frame = cstr_arx
    pred = ARXPredictor(arx)
    spec = arx.spec_
    history = frame.slice(400, 8)  # type: ignore[attr-defined]
    values, _ = frame_to_array(history, spec)
    plan = _random_plan("cstr", 20, seed=1)
    expected = arx.predict(values[None], plan[None])[0]
    plan_t = torch.tensor(plan, requires_grad=True)
    mean, half = pred.torch_rollout(pred.past_tensor(history), plan_t)
    assert np.allclose(mean.detach().numpy(), expected, atol=1e-9)
    assert float(half.abs().max()) == 0.0
    # differentiable in the plan, and a hotter coolant heats the reactor
    t_col = spec.tag_names.index("T")
    mean[:, t_col].sum().backward()
    assert plan_t.grad is not None and float(plan_t.grad.sum()) > 0
    mv = mv_columns(spec)
    assert np.allclose(mean.detach().numpy()[:, mv], plan)


def test_simc_pi_pairs_by_rga_and_holds_the_cstr_temperature() -> None:
    quadtank = make_plant("quadtank").spec
    # at P+ the diagonal relative gain is negative: each lower tank is paired with the far pump
    assert sorted(pairing(quadtank, step_tests("quadtank"))) == [("h1", "v2"), ("h2", "v1")]
    loops = tune("cstr")
    assert [(t.cv, t.mv) for t in loops] == [("T", "Tc")] and loops[0].kc > 0
    scenario = SCENARIOS["cstr"].with_steps(200)
    trace = run_closed_loop(
        scenario, lambda p: PIPolicy("pi", DecentralisedPI(p.spec, loops)), seed=4, progress=False
    )
    spec = make_plant("cstr").spec
    t = spec.tag_names.index("T")
    last = slice(170, 200)  # settled after the last setpoint step (T 326 K from sample 120)
    assert abs(float(np.mean(trace.y[last, t] - trace.sp[last, 0]))) < 0.3
    tc = spec.tag("Tc")
    assert tc.rate_limit is not None
    assert np.all(np.abs(np.diff(trace.u[:, 0])) <= tc.rate_limit + 1e-9)
    assert np.all((trace.u >= tc.lo) & (trace.u <= tc.hi))
    assert trace.trips == 0


def test_set_disturbance_holds_it_without_changing_the_noise() -> None:
    free, held = make_plant("cstr", seed=5), make_plant("cstr", seed=5)
    held.set_disturbance("Caf", 1.02)
    held.set_disturbance("Tf", 351.0)
    free_vals = [free.step()["Ca"] for _ in range(50)]
    held_vals = [held.step()["Ca"] for _ in range(50)]
    assert held.p[0] == 1.02 and held.d[0] == 351.0
    assert free.p[0] != 1.02
    assert np.mean(held_vals[-10:]) > np.mean(free_vals[-10:])  # richer feed, more A left
    # the same random draws either way: the process noise matches step for step
    assert free.rng.standard_normal() == held.rng.standard_normal()
    with pytest.raises(KeyError, match="Caf"):
        held.set_disturbance("nope", 1.0)


@pytest.mark.slow
def test_quick_benchmark_runs_end_to_end_on_the_cstr(tmp_path: Path) -> None:
    from benchmarks import control

    shipped = ROOT / "data" / "models" / "cstr"
    if not (shipped / "model.pt").is_file():
        pytest.skip("the shipped CSTR twin (data/models/cstr) is not there")
    argv = ["--plants", "cstr", "--quick", "--steps", "12", "--models", str(shipped.parent)]
    code = control.main([*argv, "--out", str(tmp_path)])
    doc = json.loads((tmp_path / "control-quick.json").read_text())
    results = doc["plants"]["cstr"]["results"]
    assert set(results) == {"twin", "oracle", "arx", "pi"}
    for r in results.values():
        assert r["bound_violations"] == 0 and r["rate_violations"] == 0
        assert np.isfinite(r["J"]) and r["failures"] == 0
    text = (tmp_path / "control-quick.md").read_text()
    assert "J_twin / J_oracle" in text and "SIMC PI" in text
    assert code in (0, 1)
