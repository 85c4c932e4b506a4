"""Control benchmark: the twin MPC against the oracle MPC, a linear (ARX) MPC and SIMC PI loops.

On each built-in plant one fixed, seeded closed-loop scenario (:mod:`benchmarks.control_loop`:
setpoint steps, an unmeasured disturbance that drifts and then steps and holds, measurement and
process noise) is run with

- **twin MPC**: :class:`twin.control.controller.Controller` on the trained twin;
- **oracle MPC**: the same controller (objective, horizon, solver) on the plant's own noise-free
  physics from its true state (:class:`benchmarks.control_models.OraclePredictor`);
- **ARX MPC**: the same controller on an ARX model fitted to the twin's training data
  (:class:`benchmarks.control_models.ARXPredictor`): a linear MPC;
- **PI**: decentralised SIMC PI loops from simulated step tests (:mod:`benchmarks.pid`).

Printed and written to ``benchmarks/results/control.{md,json}`` (``control-quick.*`` with
``--quick``): the closed-loop cost J (the MPC objective on the true trajectory), IAE per CV,
total MV movement, MV bound and rate violations, the steady-state offset, solve time per step
(median, p95), the ratios J_twin / J_oracle and J_twin / J_ARX with PASS / FAIL against the
issue's targets, and how the twin MPC's solve time scales with the horizon and the MV count.

Twins: ``--models DIR`` loads ``DIR/<plant>``; otherwise ``data/models/<plant>`` (shipped)
or ``benchmarks/models/<plant>`` (a cache), else one is trained on 24 h recorded with seed 1
(``TwinConfig(minutes=2.5)``) and saved to the cache.

    .venv/bin/python benchmarks/control.py                  # 3 plants (CPU-heavy: ~30 min)
    .venv/bin/python benchmarks/control.py --plants cstr --quick

Zoo mode (``--seeds``, a zoo set, or any plant beyond the built-in three;
:mod:`benchmarks.control_seeds`): per plant and training seed a twin trained on 24 h recorded
with that seed (``TwinConfig(minutes=--minutes (1), seed=seed)``), the twin MPC and the oracle
MPC (``--baselines``: ARX MPC and PI too) on the plant's scenario
(:mod:`benchmarks.control_zoo`: generated from the plant; hand-written for the built-in three);
one JSON per run under ``benchmarks/results/control-zoo/runs/`` (stored runs are skipped), and
``control-zoo.{md,json}`` beside it: J_twin / J_oracle per seed, mean, spread, the targets.

    .venv/bin/python benchmarks/control.py --plants held-out --seeds 1,2,3 --shard 1/2  # and 2/2
    .venv/bin/python benchmarks/control.py report --plants held-out --seeds 1,2,3

``control.py compare BEFORE AFTER`` pairs two such folders per plant and seed
(:mod:`benchmarks.control_compare`). With ``--models DIR`` zoo mode keeps each twin it trains
in ``DIR/<plant>-seed<s>`` and uses the ones already there, so that two versions of the
controller are compared on the same twins (a twin's training depends on the machine's load
through its time budget).
"""

from __future__ import annotations

import argparse
import inspect
import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.control_compare import compare  # noqa: E402
from benchmarks.control_loop import (  # noqa: E402
    OFFSET_TOL,
    SCENARIOS,
    MPCPolicy,
    PIPolicy,
    Policy,
    Scenario,
    run_closed_loop,
)
from benchmarks.control_models import ARXPredictor, OraclePredictor  # noqa: E402
from benchmarks.control_report import CONTROLLERS, HORIZONS, checks, markdown  # noqa: E402
from benchmarks.control_seeds import (  # noqa: E402
    TRAIN_HOURS,
    run_all,
    run_many,
    training_frame,
    write_report,
)
from benchmarks.pid import DecentralisedPI, PITuning, tune  # noqa: E402
from benchmarks.settings import add_set_option, parse_settings  # noqa: E402
from benchmarks.zoo import SETS  # noqa: E402
from connectors.sim.base import SimPlant  # noqa: E402
from connectors.sim.plants import PLANTS, is_plant_name, make_plant  # noqa: E402
from twin.control.controller import Controller, Predictor  # noqa: E402
from twin.evaluate.linear import ARX  # noqa: E402
from twin.model.dataset import split_with_context  # noqa: E402
from twin.model.network import TwinConfig  # noqa: E402
from twin.model.twin import Twin  # noqa: E402
from twin.spec import PlantSpec  # noqa: E402

log = logging.getLogger("benchmarks.control")

ALIASES = {"dev": "development", "development": "development", "held-out": "held-out"}
PLANTS_HELP = "comma-separated plants, or a zoo set: dev, held-out (default: the built-in three)"
ZOO_STEP = (
    "zoo mode: run (and report unless sharded), only report the stored runs, or compare two "
    "folders of runs (BEFORE AFTER, paired per plant and seed)"
)
MODELS_HELP = (
    "folder with a twin per plant (zoo mode: DIR/<plant>-seed<s>, used if there, else trained "
    "and saved there)"
)
DATA_SEED_HELP = (
    "zoo mode: record one history with this seed and train every seed's twin on it (default: "
    "each training seed records its own history)"
)
MINUTES_HELP = "training budget of a new twin (default 2.5; zoo mode 1)"
OUT_HELP = "results folder (default benchmarks/results, zoo mode benchmarks/results/control-zoo)"


def load_twin(
    plant: str, spec: PlantSpec, frame: Any, args: argparse.Namespace
) -> tuple[Twin, str]:
    """The twin of ``plant`` and where it came from (trained and cached if none is found)."""
    if args.models is not None:
        return Twin.load(args.models / plant, spec=spec), str(args.models / plant)
    for folder in (ROOT / "data" / "models" / plant, ROOT / "benchmarks" / "models" / plant):
        if (folder / "model.pt").is_file():
            return Twin.load(folder, spec=spec), str(folder.relative_to(ROOT))
    folder = ROOT / "benchmarks" / "models" / plant
    log.warning("no twin of %s found: training one (%.1f min)", plant, args.minutes)
    twin = Twin.fit(spec, frame, TwinConfig(minutes=args.minutes), progress=True)
    twin.save(folder)
    return twin, f"{folder.relative_to(ROOT)} (trained now)"


def run_plant(plant: str, args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    """Every controller on one plant's scenario, and the twin's solve-time scaling."""
    spec = make_plant(plant).spec
    scenario = SCENARIOS[plant].with_steps(args.steps or _default_steps(plant, args.quick))
    frame = training_frame(plant, 4.0 if args.quick else TRAIN_HOURS, folder)
    twin, twin_from = load_twin(plant, spec, frame, args)
    fit, val, _ = split_with_context(frame, twin.config.fractions, twin.window)
    arx = ARX().fit(spec, fit, val, horizon=twin.horizon, window=twin.window)
    loops = tune(plant)
    weights = scenario.weights(spec)
    h = twin.horizon

    def mpc(name: str, model: Predictor, horizon: int = h) -> MPCPolicy:
        return MPCPolicy(name, Controller(model, track_weights=weights, horizon=horizon))

    makers: dict[str, Callable[[SimPlant], Policy]] = {
        "twin": lambda p: mpc("twin", twin),
        "oracle": lambda p: mpc("oracle", OraclePredictor(p, horizon=h)),
        "arx": lambda p: mpc("arx", ARXPredictor(arx)),
        "pi": lambda p: PIPolicy("pi", DecentralisedPI(spec, loops)),
    }
    reference = Controller(twin, track_weights=weights)  # the settings every MPC runs with
    results = run_all(scenario, {c: makers[c] for c in CONTROLLERS}, reference, args.seed)
    scaling = {} if args.no_scaling else solve_scaling(twin, scenario, weights, args)
    return {
        "scenario": _describe(scenario, spec),
        "twin": twin_from,
        "arx": arx.describe(),
        "pi": [_tuning(t) for t in loops],
        "n_mv": len(spec.mvs),
        "mpc": settings(reference),
        "results": results,
        "scaling": scaling,
    }


def solve_scaling(
    twin: Twin, scenario: Scenario, weights: dict[str, float], args: argparse.Namespace
) -> dict[str, dict[str, float]]:
    """Twin MPC solve time (median, p95 ms) per horizon over a shortened run of the scenario."""
    short = scenario.with_steps(args.scaling_steps)
    out = {}
    for horizon in (hh for hh in HORIZONS if hh <= twin.horizon):

        def make(p: SimPlant, horizon: int = horizon) -> MPCPolicy:
            ctl = Controller(twin, track_weights=weights, horizon=horizon)
            return MPCPolicy(f"twin H={horizon}", ctl)

        trace = run_closed_loop(short, make, args.seed, progress=True)
        out[str(horizon)] = {
            "median_ms": float(np.median(trace.seconds) * 1e3),
            "p95_ms": float(np.percentile(trace.seconds, 95) * 1e3),
            "cpu_median_ms": float(np.median(trace.cpu_seconds) * 1e3),
            "cpu_p95_ms": float(np.percentile(trace.cpu_seconds, 95) * 1e3),
        }
    return out


def settings(ctl: Controller) -> dict[str, Any]:
    """The controller settings a run used: the :class:`twin.control.controller.Controller` defaults, and H."""
    params = inspect.signature(Controller.__init__).parameters.values()
    out = {
        p.name: p.default
        for p in params
        if p.default is not inspect.Parameter.empty
        and p.name not in ("spec", "horizon", "track_weights")
    }
    return {"horizon": ctl.horizon, **out}


def _default_steps(plant: str, quick: bool) -> int:
    return 40 if quick else SCENARIOS[plant].steps


def _describe(sc: Scenario, spec: PlantSpec) -> dict[str, Any]:
    minutes = spec.sample_period / 60.0
    return {
        "steps": sc.steps,
        "minutes": sc.steps * minutes,
        "setpoints": [
            {"at_step": round(frac * sc.steps), "values": values} for frac, values in sc.setpoints
        ],
        "disturbance": sc.disturbance,
        "drift": {
            "from_step": round(sc.drift[0] * sc.steps),
            "to_step": round(sc.drift[1] * sc.steps),
            "to": sc.drift[2],
        },
        "step": {"at_step": round(sc.step[0] * sc.steps), "to": sc.step[1]},
        "final_stretch_steps": round(sc.final * sc.steps),
        "track_weights": sc.weights(spec),
        "note": sc.note,
    }


def _tuning(t: PITuning) -> dict[str, Any]:
    m = t.model
    return {
        "cv": t.cv,
        "mv": t.mv,
        "k": m.gain,
        "tau_s": m.tau,
        "theta_s": m.theta,
        "fit_error": m.fit_error,
        "kc": t.kc,
        "ti_s": t.ti,
        "tau_c_s": t.tau_c,
        "text": t.describe(),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "step", nargs="?", choices=("run", "report", "compare"), default="run", help=ZOO_STEP
    )
    p.add_argument("folders", nargs="*", type=Path, help="compare: BEFORE AFTER")
    p.add_argument("--plants", default=",".join(sorted(PLANTS)), help=PLANTS_HELP)
    p.add_argument("--seeds", default=None, help="training seeds, e.g. 1,2,3 (zoo mode)")
    p.add_argument("--data-seed", type=int, default=None, help=DATA_SEED_HELP)
    p.add_argument("--shard", default=None, help="i/n: this process's share of the runs (zoo)")
    p.add_argument("--baselines", action="store_true", help="zoo mode: ARX MPC and PI too")
    p.add_argument("--force", action="store_true", help="zoo mode: rerun stored runs")
    p.add_argument("--steps", type=int, default=None, help="closed-loop samples per run")
    p.add_argument("--seed", type=int, default=2, help="seed of the closed-loop plant's noise")
    p.add_argument("--quick", action="store_true", help="40 samples, 4 h ARX data, no scaling")
    p.add_argument("--models", type=Path, default=None, help=MODELS_HELP)
    p.add_argument("--minutes", type=float, default=None, help=MINUTES_HELP)
    p.add_argument("--threads", type=int, default=1, help="torch threads (solves use 1)")
    p.add_argument("--scaling-steps", type=int, default=120, help="samples per scaling run")
    p.add_argument("--no-scaling", action="store_true", help="skip the solve-time scaling runs")
    p.add_argument("--no-stack", action="store_true", help="zoo mode: twins with stack=False")
    add_set_option(p)
    p.add_argument("--out", type=Path, default=None, help=OUT_HELP)
    args = p.parse_args(argv)
    if args.step == "compare":
        if len(args.folders) != 2:
            p.error("compare needs two folders: BEFORE AFTER")
        print(compare(*args.folders))
        return 0
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    plants: list[str] = []
    for x in (x.strip() for x in args.plants.split(",") if x.strip()):
        plants += list(SETS[ALIASES.get(x, x)]) if ALIASES.get(x, x) in SETS else [x]
    torch.set_num_threads(args.threads)
    command = "benchmarks/control.py " + " ".join(argv if argv is not None else sys.argv[1:])
    if args.seeds is not None or args.step == "report" or set(plants) - set(SCENARIOS):
        unknown = [x for x in plants if not is_plant_name(x)]
        if unknown:
            p.error(f"unknown plants {unknown}; sets: {sorted(ALIASES)}, or plant names")
        seeds = [int(s) for s in (args.seeds or "1,2,3").split(",") if s.strip()]
        out = args.out or ROOT / "benchmarks" / "results" / "control-zoo"
        if args.step == "run":
            run_many(
                plants,
                seeds,
                out,
                shard=args.shard,
                force=args.force,
                minutes=1.0 if args.minutes is None else args.minutes,
                loop_seed=args.seed,
                baselines=args.baselines,
                steps=args.steps,
                settings=parse_settings(args.set) | ({"stack": False} if args.no_stack else {}),
                models=args.models,
                data_seed=args.data_seed,
            )
        if args.step == "report" or not args.shard:
            print(write_report(plants, seeds, out, command))
        return 0
    args.minutes = 2.5 if args.minutes is None else args.minutes
    args.out = args.out or ROOT / "benchmarks" / "results"
    args.no_scaling = args.no_scaling or args.quick
    torch.set_num_threads(args.threads)
    t0, load_start = time.perf_counter(), os.getloadavg()[0]
    done: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="control-bench-") as tmp:
        for plant in tqdm(plants, desc="control benchmark", unit="plant"):
            done[plant] = run_plant(plant, args, Path(tmp))
    doc: dict[str, Any] = {
        "meta": {
            "command": command,
            "seed": args.seed,
            "quick": args.quick,
            "scaling_steps": args.scaling_steps,
            "offset_tolerance_of_span": OFFSET_TOL,
            "wall_seconds": round(time.perf_counter() - t0, 1),
            "load_average": [round(load_start, 2), round(os.getloadavg()[0], 2)],
        },
        "plants": done,
    }
    doc["targets"] = checks(done)
    text = markdown(doc)
    stem = "control-quick" if args.quick else "control"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{stem}.json").write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    (args.out / f"{stem}.md").write_text(text, encoding="utf-8")
    print(text)
    return 0 if all(c["result"] == "PASS" for c in doc["targets"]) else 1


if __name__ == "__main__":
    sys.exit(main())
