"""The twin on plants nobody tuned it for: accuracy against baselines, bands per tag, seeds.

For each plant of a zoo set (``benchmarks/zoo.py``: ``dev`` to tune on, ``held-out`` only ever
reported), seed and length of training history:

- record the training history (plant and excitation seeded with the seed), then two later test
  stretches of 6 h from separately seeded plants: **calm** (the training's excitation and
  disturbances) and **shifted** (setpoint-like steps, disturbances twice as strong);
- train the twin with its defaults (``twin train``'s, but for the budget ``--minutes``) and fit
  the baselines (persistence, ARX, subspace, a direct GRU of the twin's size) on the same split
  (and ARX on increments, recorded beside them: the twin is built from it, the targets are not);
- score on the shifted test NRMSE at k = 1, 5, 10, H (RMSE / std of the tag over the test,
  mean over CVs) for every model; per tag, the calibrated band's coverage on the calm test and
  on the shifted one, and the adapted band's (as the live loop adapts it from outcomes,
  :mod:`twin.evaluate.adaptive_replay`) on the shifted one from one horizon after its start.

Each run is one JSON file under ``<out>/runs/`` (a rerun skips what is there, so a long run can
be stopped, resumed and split over processes with ``--shard i/n``); ``report`` turns them into
the tables and the target checks, written to ``<out>/generalise.md``.

    .venv/bin/python benchmarks/generalise.py run --set held-out --seeds 1,2,3 --shard 0/2
    .venv/bin/python benchmarks/generalise.py run --plants zoo-3,cstr --seeds 1 --hours 6,24
    .venv/bin/python benchmarks/generalise.py report
    .venv/bin/python benchmarks/generalise.py compare BEFORE_DIR AFTER_DIR
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.forecast import DISTURBANCE_GAIN, TEST_EXCITATION  # noqa: E402
from benchmarks.settings import add_set_option, parse_settings  # noqa: E402
from benchmarks.zoo import DEVELOPMENT, HELD_OUT, character  # noqa: E402
from connectors.sim.base import SimPlant  # noqa: E402
from connectors.sim.plants import is_plant_name, make_plant  # noqa: E402
from connectors.sim.record import DEFAULT_START, record  # noqa: E402
from twin.errors import TwinError  # noqa: E402
from twin.evaluate.baseline import Baseline, Persistence, try_fit  # noqa: E402
from twin.evaluate.gru import DirectGRU  # noqa: E402
from twin.evaluate.linear import ARX, IntegratedARX, Subspace  # noqa: E402
from twin.evaluate.report import evaluate, parameter_count  # noqa: E402
from twin.model.dataset import split_with_context  # noqa: E402
from twin.model.network import TwinConfig  # noqa: E402
from twin.model.twin import Twin  # noqa: E402
from twin.store.historian import Historian  # noqa: E402

log = logging.getLogger("benchmarks.generalise")

TEST_HOURS, PAUSE_HOURS = 6.0, 6.0
SETS = {"dev": DEVELOPMENT, "held-out": HELD_OUT}
OUT = ROOT / "benchmarks" / "results" / "generalise"


def test_plant(plant: str, seed: int, shifted: bool) -> tuple[SimPlant, int, Any]:
    """The plant of a test stretch, its seed and its excitation (seeded apart from training's)."""
    test_seed = (20_000 if shifted else 30_000) + seed
    sim = make_plant(plant, seed=test_seed)
    if shifted:  # the plants' drifts are private OU processes: made stronger on purpose
        for ou in [*sim._d_drift, *sim._p_drift]:
            ou.sigma *= DISTURBANCE_GAIN
    return sim, test_seed, TEST_EXCITATION if shifted else None


def test_start(hours: float) -> Any:
    """When the test stretches of a run with ``hours`` of training history begin."""
    return DEFAULT_START + timedelta(hours=hours + PAUSE_HOURS)


def _record_test(plant: str, seed: int, folder: Path, start: Any, shifted: bool) -> Path:
    """Record a 6 h test stretch."""
    sim, test_seed, excitation = test_plant(plant, seed, shifted)
    out = folder / f"{plant}-{seed}-{'shifted' if shifted else 'calm'}"
    record(sim, TEST_HOURS, out, seed=test_seed, start=start, excitation=excitation, progress=False)
    return out


def run_one(
    plant: str,
    seed: int,
    hours: float,
    minutes: float,
    folder: Path,
    settings: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Everything measured for one plant, seed and length of training history; ``settings``
    override the twin's defaults (``TwinConfig`` fields)."""
    sim = make_plant(plant, seed=seed)
    spec = sim.spec
    t_rec = time.perf_counter()
    train_dir = folder / f"{plant}-{seed}-train"
    record(sim, hours, train_dir, seed=seed, progress=False)
    start = test_start(hours)
    end = start + timedelta(hours=TEST_HOURS)
    tests = {
        name: Historian(_record_test(plant, seed, folder, start, name == "shifted")).frame(
            spec, start, end
        )
        for name in ("calm", "shifted")
    }
    train = Historian(train_dir).frame(spec, DEFAULT_START, DEFAULT_START + timedelta(hours=hours))
    record_s = time.perf_counter() - t_rec

    cfg = TwinConfig(seed=seed, minutes=minutes, device="cpu", **(settings or {}))
    t0 = time.perf_counter()
    twin = Twin.fit(spec, train, cfg, progress=False)
    train_s = time.perf_counter() - t0
    fit_part, val_part, _ = split_with_context(train, twin.config.fractions, twin.window)
    candidates: list[Baseline] = [
        Persistence(),
        ARX(),
        Subspace(),
        IntegratedARX(),  # recorded, not one of the report's baselines (generalise_report)
        DirectGRU(n_params=parameter_count(twin), minutes=minutes, seed=seed),
    ]
    baselines, skipped, fit_s = [], {}, {}
    for b in candidates:
        t1 = time.perf_counter()
        why = try_fit(b, spec, fit_part, val_part, horizon=twin.horizon, window=twin.window)
        fit_s[b.name] = round(time.perf_counter() - t1, 1)
        if why is None:
            baselines.append(b)
        else:
            skipped[b.name] = why
    shifted = evaluate(twin, tests["shifted"], baselines, max_origins=1500, skipped=skipped)
    calm = evaluate(twin, tests["calm"], (), max_origins=1500)
    tags = {
        t: {
            "calm": calm["tags"][t]["coverage_all_steps"],
            "calm_min": calm["tags"][t]["coverage_min"]["value"],
            "calm_adapted": calm["tags"][t]["adaptive"]["coverage_all_steps"],
            "calm_adapted_min": calm["tags"][t]["adaptive"]["coverage_min"]["value"],
            "shifted": d["coverage_all_steps"],
            "shifted_min": d["coverage_min"]["value"],
            "adapted": d["adaptive"]["coverage_all_steps"],
            "adapted_min": d["adaptive"]["coverage_min"]["value"],
        }
        for t, d in shifted["tags"].items()
    }
    metrics = twin.metrics
    return {
        "plant": plant,
        "seed": seed,
        "hours": hours,
        "minutes": minutes,
        "set": "held-out" if plant in HELD_OUT else "dev",
        "settings": settings or {},
        "nonlinear": not character(plant).nonlinearity.startswith("linear"),
        "window": twin.window,
        "horizon": twin.horizon,
        "steps": shifted["steps"],
        "nrmse": shifted["summary"]["nrmse"],
        "nrmse_calm_twin": calm["summary"]["nrmse"]["twin"],
        "coverage": tags,
        "skipped": skipped,
        "models": {b.name: b.describe() for b in baselines},
        "seconds": {"record": round(record_s, 1), "twin": round(train_s, 1), **fit_s},
        "stopped": metrics["training"].get("reason") or metrics["training"].get("stopped"),
        "linear_init": {
            k: metrics.get("linear_init", {}).get(k)
            for k in ("model", "kept", "val_nrmse_linear", "val_nrmse_trained", "stack")
        },
    }


def _jobs(args: argparse.Namespace) -> list[tuple[str, int, float]]:
    plants = [n for x in args.plants.split(",") if x for n in SETS.get(x, (x,))]
    bad = [n for n in plants if not is_plant_name(n)]
    if bad:
        raise SystemExit(f"unknown plants {bad} (zoo-<n>, a named plant, dev or held-out)")
    seeds = [int(s) for s in args.seeds.split(",")]
    hours = [float(h) for h in args.hours.split(",")]
    jobs = [(p, s, h) for h in hours for s in seeds for p in plants]
    i, n = (int(x) for x in args.shard.split("/"))
    return jobs[i::n]


def _name(plant: str, seed: int, hours: float) -> str:
    return f"{plant}-s{seed}-{hours:g}h.json"


def cmd_run(args: argparse.Namespace) -> int:
    runs = args.out / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    settings = parse_settings(args.set) | ({"stack": False} if args.no_stack else {})
    todo = [j for j in _jobs(args) if not (runs / _name(*j)).exists()]
    for plant, seed, hours in tqdm(todo, desc="generalise", unit="run"):
        with tempfile.TemporaryDirectory(prefix="generalise-") as tmp:
            t0 = time.perf_counter()
            try:
                res = run_one(plant, seed, hours, args.minutes, Path(tmp), settings)
            except TwinError as exc:  # e.g. too little history to train or calibrate on
                res = {"plant": plant, "seed": seed, "hours": hours, "refused": str(exc)}
                tqdm.write(f"{plant} seed {seed} {hours:g} h: refused: {exc}")
            res["wall_seconds"] = round(time.perf_counter() - t0, 1)
        path = runs / _name(plant, seed, hours)
        path.write_text(json.dumps(res, indent=1) + "\n", encoding="utf-8")
        if "refused" in res:
            continue
        tqdm.write(
            f"{plant} seed {seed} {hours:g} h: twin at H {res['nrmse']['twin'][str(res['horizon'])]:.3f}"
            f", {res['wall_seconds']:.0f} s"
        )
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from benchmarks.generalise_report import report

    text = report(sorted((args.out / "runs").glob("*.json")))
    (args.out / "generalise.md").write_text(text, encoding="utf-8")
    print(text)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from benchmarks.generalise_report import compare

    print(compare(args.before, args.after))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="train and score (skips runs already stored)")
    r.add_argument("--plants", default="held-out", help="comma-separated plants, dev, held-out")
    r.add_argument("--seeds", default="1,2,3", help="comma-separated seeds")
    r.add_argument("--hours", default="24", help="comma-separated hours of training history")
    r.add_argument("--minutes", type=float, default=1.0, help="training budget per model")
    r.add_argument("--shard", default="0/1", metavar="I/N", help="this process's share of runs")
    r.add_argument("--no-stack", action="store_true", help="train the twin with stack=False")
    add_set_option(r)
    r.set_defaults(func=cmd_run)
    s = sub.add_parser("report", help="tables and target checks from the stored runs")
    s.set_defaults(func=cmd_report)
    for q in (r, s):
        q.add_argument("--out", type=Path, default=OUT, help=f"results folder (default {OUT})")
    c = sub.add_parser("compare", help="the twin's NRMSE in one results folder over another's")
    c.add_argument("before", type=Path)
    c.add_argument("after", type=Path)
    c.set_defaults(func=cmd_compare)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
