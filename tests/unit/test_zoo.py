"""The plant zoo: generated plants (seeded, varied, bounded, differentiable), the new physical
plants and their character, the development / held-out split, and the histories it records."""

from __future__ import annotations

import asyncio
import math
import sys
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from asyncua import Client, ua

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import benchmarks.zoo as zoo  # noqa: E402
from connectors.sim.base import SimPlant  # noqa: E402
from connectors.sim.excitation import Excitation  # noqa: E402
from connectors.sim.fedbatch import BATCH_H, V0, FedBatch  # noqa: E402
from connectors.sim.generator import design  # noqa: E402
from connectors.sim.ph import mixed_invariants, solve_ph  # noqa: E402
from connectors.sim.plants import (  # noqa: E402
    NAMED_PLANTS,
    NEW_PLANTS,
    PLANTS,
    UnknownPlantError,
    is_plant_name,
    make_plant,
)
from connectors.sim.record import DEFAULT_START, record  # noqa: E402
from connectors.sim.recycle import ReactorFlashRecycle  # noqa: E402
from connectors.sim.server import PlantServer  # noqa: E402
from connectors.sim.tagged import NUMPY_X, TaggedPlant  # noqa: E402
from connectors.sim.zoo import ZooPlant  # noqa: E402
from twin.cli import main as twin_main  # noqa: E402
from twin.spec import builtin_spec, load_spec  # noqa: E402

PHYSICAL = ("ph", "recycle", "fedbatch")
GENERATED = tuple(n for n in zoo.DEVELOPMENT + zoo.HELD_OUT if n.startswith("zoo-"))
#: a few generated plants for the fast tests: delays, integrating levels, nonlinearities, DVs
FEW = ("zoo-5", "zoo-8", "zoo-105")


def excited_run(plant: SimPlant, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` samples under the recording excitation: measured and noise-free values ``[n, tags]``."""
    excite = Excitation(plant.spec.mvs, plant.u0, seed=seed)
    measured, true = [], []
    for _ in range(n):
        moves = excite.next(back_off=plant.tripped is not None)
        values = plant.step(dict(zip(plant.mv_names, moves, strict=True)))
        measured.append([values[t] for t in plant.spec.tag_names])
        clean = plant.outputs(plant.x, plant.u, plant.d)
        true.append([clean[t] for t in plant.spec.tag_names])
    return np.array(measured), np.array(true)


# --- the generator ---------------------------------------------------------------------------


def test_same_index_same_plant_same_seed_same_data() -> None:
    assert design(17) == design(17) and design(17) != design(18)
    assert make_plant("zoo-17").spec == make_plant("zoo-17").spec

    def trace(seed: int) -> np.ndarray:
        return excited_run(make_plant("zoo-17", seed=seed), 60, seed=seed)[0]

    assert np.array_equal(trace(3), trace(3))
    assert not np.allclose(trace(3), trace(4))


def test_same_seed_same_recorded_history(tmp_path: Path) -> None:
    frames = []
    for folder in ("a", "b"):
        record(make_plant("zoo-5", seed=2), 0.2, tmp_path / folder, seed=2, progress=False)
        lf = pl.scan_parquet(tmp_path / folder / "**" / "*.parquet", hive_partitioning=True)
        frames.append(lf.select("tag", "ts", "value", "status").sort("tag", "ts").collect())
    assert frames[0].equals(frames[1])
    spec = make_plant("zoo-5").spec
    assert set(frames[0]["tag"].unique()) == set(spec.tag_names)
    assert frames[0].height == round(0.2 * 3600 / spec.sample_period) * len(spec.tags)


def test_thirty_seeds_give_plants_of_varied_character() -> None:
    designs = [design(n) for n in range(30)]
    n_cv = [len(d.cvs) for d in designs]
    n_mv = [len(d.mvs) for d in designs]
    n_dv = [len(d.dvs) for d in designs]
    assert min(n_cv) >= 2 and max(n_cv) <= 8 and len(set(n_cv)) >= 5
    assert min(n_mv) >= 1 and max(n_mv) <= 4 and set(n_mv) == {1, 2, 3, 4}
    assert min(n_dv) >= 0 and max(n_dv) <= 3 and set(n_dv) == {0, 1, 2, 3}
    for d in designs:  # two decades of time constants within every plant
        assert max(d.taus) / min(d.taus) >= 100.0, d.name
        assert all(any(u.gains[j] for u in d.units) for j in range(len(d.mvs)))  # MVs all act
    assert sum(bool(d.integrating) for d in designs) >= 5
    assert sum(d.max_delay > 0 for d in designs) >= 10
    assert sum(bool(d.nonlinearities) for d in designs) >= 15
    assert 1 <= sum(not d.nonlinearities for d in designs) <= 15  # linear references too
    assert len({d.sample_period for d in designs}) >= 4
    kinds = {s.kind for d in designs for s in (*d.input_shapes, *(u.shape for u in d.units))}
    assert kinds == {"linear", "saturation", "valve", "quadratic"}
    assert any(u.state_gain for d in designs for u in d.units)


def test_names_resolve_and_unknown_names_are_refused() -> None:
    plant = make_plant("zoo-42", seed=1)
    assert isinstance(plant, ZooPlant) and plant.spec.name == "zoo-42"
    assert set(plant.measure()) == set(plant.spec.tag_names)
    assert all(is_plant_name(n) for n in (*NAMED_PLANTS, "zoo-0", "zoo-123"))
    assert set(PLANTS) == {"cstr", "quadtank", "woodberry"}  # the benchmarks' default, as it was
    assert set(NEW_PLANTS) == set(PHYSICAL)
    for bad in ("zoo-", "zoo-x", "zoo--1", "zoo-07", "ZOO-1", "nope"):
        assert not is_plant_name(bad)
        with pytest.raises(UnknownPlantError, match="zoo-<n>"):
            make_plant(bad)


# --- every plant runs within its spec --------------------------------------------------------


def _within_limits(name: str) -> None:
    plant = make_plant(name, seed=7)
    measured, true = excited_run(plant, 200, seed=7)
    assert np.all(np.isfinite(measured)), name
    lo = np.array([t.lo for t in plant.spec.tags])
    hi = np.array([t.hi for t in plant.spec.tags])
    # noise-free values: the plant's own; sensors may read a little beyond a limit at it
    assert np.all(true >= lo) and np.all(true <= hi), (name, true.min(0), true.max(0))
    assert plant.tripped is None, (name, plant.tripped)
    # the CVs respond to the moves: each has moved, none is a constant
    cv = [i for i, t in enumerate(plant.spec.tags) if t.role == "cv"]
    assert np.all(true[:, cv].std(axis=0) > 0), name


@pytest.mark.parametrize("name", PHYSICAL + FEW)
def test_plants_step_200_samples_within_their_limits(name: str) -> None:
    _within_limits(name)


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in GENERATED if n not in FEW])
def test_every_zoo_plant_steps_200_samples_within_its_limits(name: str) -> None:
    _within_limits(name)


@pytest.mark.parametrize("name", PHYSICAL)
def test_new_specs_load_and_their_setpoints_are_the_nominal_point(name: str) -> None:
    spec = builtin_spec(name)
    plant = make_plant(name, noise=False)
    assert plant.spec == spec and spec.cvs and spec.mvs
    nominal = plant.outputs(plant.x0, plant.u0, plant.d0)
    for t in spec.mvs:
        assert t.lo <= nominal[t.name] <= t.hi and t.write_node is not None
    batch = name == "fedbatch"  # no steady state: a batch's start, and S tracked from there
    if not batch:
        steady = plant.steady_state()
        assert steady == pytest.approx(plant.x0, rel=1e-5, abs=1e-7)
    for t in (t for t in spec.cvs if t.weight or not batch):
        assert nominal[t.name] == pytest.approx(t.setpoint, abs=0.02 * t.span), t.name


# --- the differentiable model ----------------------------------------------------------------


@pytest.mark.parametrize("name", PHYSICAL + FEW)
def test_torch_step_and_outputs_are_the_numpy_physics(name: str) -> None:
    plant = make_plant(name, seed=5, noise=False)
    assert isinstance(plant, TaggedPlant)
    rng = np.random.default_rng(0)
    excite = Excitation(plant.spec.mvs, plant.u0, seed=5)
    for k in range(40):  # wander off nominal: lags, delay lines, batch clock all in play
        plant.step(dict(zip(plant.mv_names, excite.next(), strict=True)))
        if k % 10 == 9:
            u = np.array([rng.uniform(t.lo, t.hi) for t in plant.spec.mvs])
            x = torch.tensor(plant.x, dtype=torch.float64)
            ut = torch.tensor(u, dtype=torch.float64)
            d = torch.tensor(plant.d, dtype=torch.float64)
            p = torch.tensor(plant.p, dtype=torch.float64)
            nxt = plant.torch_step(x, ut, d, p, substeps=8)
            plant.step(dict(zip(plant.mv_names, u, strict=True)))
            scale = np.maximum(np.abs(plant.x), 1e-3 if name == "ph" else 1.0)
            assert np.max(np.abs(nxt.numpy() - plant.x) / scale) < 1e-5, (name, k)
            tags = plant.torch_outputs(nxt, ut, d, p).numpy()
            clean = plant.outputs(nxt.numpy(), u, plant.d)
            spans = np.array([t.span for t in plant.spec.tags])
            values = np.array([clean[t] for t in plant.spec.tag_names])
            assert np.max(np.abs(tags - values) / spans) < 1e-9, name


@pytest.mark.parametrize("name", ("ph", "recycle", "zoo-3", "zoo-108"))
def test_the_oracle_can_plan_on_the_torch_model(name: str) -> None:
    """Batched rollouts with gradients from every MV to every tracked CV's outputs."""
    plant = make_plant(name, noise=False)
    assert isinstance(plant, TaggedPlant)
    x = torch.tensor(plant.x0, dtype=torch.float64).expand(3, -1)
    u = torch.tensor(plant.u0, dtype=torch.float64).repeat(3, 1).requires_grad_(True)
    for _ in range(30):
        x = plant.torch_step(x, u, substeps=1)
    y = plant.torch_outputs(x, u)
    assert y.shape == (3, len(plant.spec.tags)) and torch.isfinite(y).all()
    cv = [i for i, t in enumerate(plant.spec.tags) if t.role == "cv" and t.weight]
    y[:, cv].sum().backward()
    assert u.grad is not None and torch.isfinite(u.grad).all() and (u.grad != 0).any()


# --- the physical plants show their character ------------------------------------------------


def test_ph_titration_curve_is_steep_just_above_neutrality() -> None:
    def ph(q3: float) -> float:
        return float(solve_ph(*mixed_invariants(16.6, 0.55, q3), NUMPY_X))

    q3 = np.linspace(12.0, 19.0, 141)
    curve = np.array([ph(q) for q in q3])
    slope = np.gradient(curve, q3)  # pH per ml/s of base
    assert ph(15.6) == pytest.approx(7.03, abs=0.01)  # the paper's nominal point, pH 7.0
    steepest = int(slope.argmax())
    assert 7.0 < curve[steepest] < 9.0
    at_6, at_10 = slope[np.abs(curve - 6.0).argmin()], slope[-1]  # pH 6.0 and 9.9
    assert slope[steepest] > 8 * at_6 and slope[steepest] > 8 * at_10
    assert np.all(np.diff(curve) > 0)  # more base, higher pH, everywhere
    # the plant itself: the same base step moves the pH far more at neutral than when acidic
    moves = []
    for q1 in (16.6, 19.5):
        plant = make_plant("ph", noise=False)
        plant.x = plant.steady_state(np.array([q1, 15.6]))
        before = plant.step({"q1": q1})["pH"]
        after = [plant.step({"q3": 16.6}) for _ in range(60)][-1]["pH"]  # 10 min
        moves.append(after - before)
    assert moves[0] > 3 * moves[1] > 0


def test_fedbatch_resets_on_schedule_and_keeps_running() -> None:
    plant = FedBatch(noise=False)
    per_batch = round(BATCH_H * 3600 / plant.sample_period)  # 90 samples of 1 min
    ys = [plant.step({"F": 0.3}) for _ in range(200)]
    clock = np.array([y["t_batch"] for y in ys])
    volume = np.array([y["V"] for y in ys])
    resets = np.flatnonzero(np.diff(clock) < 0) + 1
    assert list(resets) == [per_batch, 2 * per_batch]
    assert clock[per_batch - 1] == pytest.approx(90.0) and clock[per_batch] == pytest.approx(1.0)
    for start in resets:  # a fresh batch: the initial volume plus one minute of feed
        assert volume[start] == pytest.approx(V0 + 0.3 / 60, abs=1e-9)
    batch = volume[per_batch : 2 * per_batch]
    assert np.all(np.diff(batch) > 0) and volume[per_batch - 1] > 1.4
    # the differentiable model resets from the clock in its state, as the plant does
    ended = torch.tensor(plant.x, dtype=torch.float64)
    ended[4] = BATCH_H
    fresh = plant.torch_step(ended, torch.tensor([0.3], dtype=torch.float64))
    assert float(fresh[3]) == pytest.approx(V0 + 0.3 / 60, rel=1e-9)
    assert float(fresh[4]) * 60 == pytest.approx(1.0)


def test_recycle_plant_has_fast_units_and_a_slow_loop() -> None:
    c = zoo.character("recycle")
    assert c.tau_s[0] < 180.0 and c.tau_s[1] > 3600.0  # minutes against more than an hour
    plant = ReactorFlashRecycle(noise=False)
    t1 = np.array([plant.step({"Q3": 16.0})["T1"] for _ in range(300)]) - plant.x0[2]
    assert t1[29] < 0.2 * t1[-1]  # after 30 min, under a fifth of the 5-h change
    assert t1[-1] - t1[-61] > 0.05 * t1[-1]  # and still moving after 4 h


# --- the split and the histories -------------------------------------------------------------


def test_the_split_is_made_once_with_a_held_out_set_only_reported() -> None:
    dev, held = set(zoo.DEVELOPMENT), set(zoo.HELD_OUT)
    assert not dev & held and len(dev) == len(zoo.DEVELOPMENT)
    assert {"cstr", "quadtank", "woodberry"} <= dev
    assert sum(n.startswith("zoo-") for n in dev) >= 10
    assert len([n for n in dev if n in PHYSICAL]) <= 1
    assert sum(n.startswith("zoo-") for n in held) >= 20
    assert len([n for n in held if n in PHYSICAL]) >= 2
    assert all(is_plant_name(n) for n in dev | held)
    assert "No setting may be chosen on the held-out set" in (zoo.__doc__ or "")
    for names in (zoo.DEVELOPMENT, zoo.HELD_OUT):  # each set has every kind of character
        chars = [design(int(n[4:])) for n in names if n.startswith("zoo-")]
        assert any(d.integrating for d in chars) and any(d.max_delay for d in chars)
        assert any(d.nonlinearities for d in chars)


def test_record_histories_gives_train_and_test_frames_and_a_spec(tmp_path: Path) -> None:
    h = zoo.record_histories("zoo-3", 1, tmp_path, train_hours=0.1, test_hours=0.05)
    train, test = h.frames()
    spec = load_spec(h.spec_file)
    assert spec.tag_names == h.spec.tag_names and spec.name == "zoo-3"
    assert train.height == round(0.1 * 3600 / spec.sample_period)
    assert test.height == round(0.05 * 3600 / spec.sample_period)
    assert h.test_span[0] - h.train_span[1] == timedelta(hours=6)
    assert h.train_span[0] == DEFAULT_START
    again = zoo.record_histories("zoo-3", 1, tmp_path / "again", train_hours=0.1, test_hours=0.05)
    assert again.frames()[0].equals(train)


def test_the_table_and_the_cli_describe_the_zoo(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = zoo.table(("cstr", "ph", "zoo-105"))
    assert "zoo-105" in text and "held-out" in text and "LI105" in text
    assert twin_main(["plant", "list"]) == 0
    listed = capsys.readouterr().out
    assert all(name in listed for name in NAMED_PLANTS) and "zoo-<n>" in listed
    out = tmp_path / "zoo-105.toml"
    assert twin_main(["plant", "spec", "zoo-105", "--out", str(out)]) == 0
    assert load_spec(out).tags == make_plant("zoo-105").spec.tags
    assert twin_main(["plant", "spec", "zoo-x"]) == 2


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.parametrize("name", ("fedbatch", "zoo-105"))
def test_new_plants_are_served_over_opcua(name: str) -> None:
    """Served on 127.0.0.1 from their specs: good values, setpoints written, and the fed-batch
    plant served straight through its batch resets."""
    plant = make_plant(name, seed=1)
    spec = plant.spec

    async def check() -> None:
        speed = spec.sample_period / 0.005  # 200 samples a second: two batches in a second
        async with (
            PlantServer(plant, port=0, speed=speed) as server,
            Client(server.endpoint) as client,
        ):
            ns = await client.get_namespace_array()
            nodes = {t.name: client.get_node(t.node.resolve(ns)) for t in spec.tags}
            mv = spec.mvs[0]
            assert mv.write_node is not None
            mid = (mv.lo + mv.hi) / 2
            setpoint = client.get_node(mv.write_node.resolve(ns))
            await setpoint.write_value(ua.DataValue(ua.Variant(mid, ua.VariantType.Double)))
            deadline = time.monotonic() + 10.0
            while server.steps < 200 and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert server.steps >= 200 and server.failure is None
            for t in spec.tags:
                dv = await nodes[t.name].read_data_value()
                assert dv.StatusCode.is_good(), t.name
                assert math.isfinite(dv.Value.Value), t.name
            assert plant.u[0] == mid
        if name == "fedbatch":  # after k steps the batch clock reads ((k - 1) mod 90) + 1 min
            k = round(plant.t / spec.sample_period)  # the plant's own count (a step may finish
            assert k >= 200  # in its thread after the server stopped counting)
            assert plant.x[4] * 60 == pytest.approx((k - 1) % 90 + 1.0)

    asyncio.run(check())
