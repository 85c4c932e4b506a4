"""Economics benchmark (issue 14): does the MPC run the plant at its most profitable point?

Each plant gets an *economic* spec (:data:`CASES`: the plant's own spec through
``dataclasses.replace``, every CV setpoint dropped, operating limits, priorities and costs added)
whose optimum lies on a CV operating limit. Cost rate ``J = sum_tags cost * value`` over CVs and
MVs, $/h (a negative cost is a product's value). At the scripted disturbance's final value:

- **cstr**: unconverted A is lost, ``cost(Ca) = 600`` $/h per mol/L (0.1 $/mol x 100 L/min),
  and chilling the coolant costs, ``cost(Tc) = -1.2`` $/h per K (warmer is cheaper). A hotter
  reactor converts more, so the optimum is T on its operating limit ``op_hi = 327 K`` (zone
  315-327 K; instrument 300-345 K) at Tc = 301.6 K, before the coolant's limit 302 K:
  J* = 139.7 $/h (MVs held at nominal: 157.9), 6.6 $/h per K of T's limit.
- **quadtank**: pumped water is the product, ``cost(v1) = -3.14``, ``cost(v2) = -3.29`` $/h per V
  (1 $/h per cm3/s). More flow raises the levels, so the optimum is the vertex where both lower
  tanks sit on ``op_hi = 15`` cm (zones 8-15 cm, h1 priority 1, h2 priority 2) at v = (3.49,
  3.16) V, inside 2.2-3.8 V: J* = -21.35 $/h (held: -20.25).
- **zoo-3** (generated, development set): the heat duty QC201 is throughput, ``cost = -10`` $/h
  per kW; the valve FV202 costs ``1`` $/h per %. More heat lowers the level LI103 to its
  ``op_lo = 43`` % and the pressure PI104, which only more valve opening holds at its ``op_lo =
  13.6`` bar: the vertex of both limits, QC201 72.5 kW, FV202 63.5 %: J* = -661.4 $/h (held:
  -506; its second drift, free in the run, moves LI103 and so J* a little).
- **zoo-7** (generated, development set): the feed FC201 is throughput, ``cost = -1`` $/h per
  m3/h; more feed heats TI102 to its ``op_hi = 205.6`` C at FC201 = 722.8: J* = -722.8 $/h
  (held: -641).
- **woodberry** (optional, not in the default set): reflux and steam cost energy (30 and 60 $/h
  per lb/min); XD on its ``op_lo = 96.3`` mol%, steam on its MV limit. Its MV ranges are narrow,
  so J hardly moves (J* 159.4, held 161.1) and the 2 % gap says little there.

``python benchmarks/economics.py optimum`` prints these optima. Prices are set so that a 2 % gap
is worth 2-10 standard deviations of the binding CVs' measurement noise at their shadow prices
(the report prints it): the target asks a controller to sit near its limits, not exactly on
them, and not merely to move toward them. The gap depends on where J's zero lies, which a spec
cannot state; ``captured`` below does not.

**True optimum** (:mod:`benchmarks.economics_optimum`): scipy (SLSQP, several starts) on the
plant's noise-free steady state for the disturbance values in force, within the MV limits and
every CV limit; with its active limits, their shadow prices and a KKT check.

**Closed loop** (:func:`run_case`): a :class:`benchmarks.control_loop.Scenario` without
setpoint steps (measurement and process noise, measured DVs held at nominal, the plant's other
drifts free), the scripted unmeasured disturbance ramping from 0.08 to 0.45 of the run, then
stepping and holding to the end; the last 20 % is the final stretch. Three controllers:

- **twin**: ``Controller(twin, econ_spec, horizon=H)``, no setpoints passed;
- **oracle**: the same on the plant's true physics from its true state
  (:class:`benchmarks.control_models.OraclePredictor`);
- **plain**: the twin controller with the plant's plain spec, setpoints at the nominal point and
  the control benchmark's weights: today's operation and the solve-time reference.

Scores per run: J, the true cost rate (noise-free outputs and the MVs applied, mean over the
final stretch); J*, the true optimum at the disturbance values in force then (the plant's drifts
and DVs averaged over the stretch); the gap ``(J - J*) / |J*|``; captured ``(J_hold - J) /
(J_hold - J*)`` (J_hold: the MVs held at nominal under the same disturbance); the operating-limit
violation, mean over the run of ``sum_c relu(y - op_hi) / s_c + relu(op_lo - y) / s_c`` (``s_c``
the tag's ``error_scale``, noise-free outputs); solve time per decision (CPU and wall, median and
p95); the controller's own targets, predicted cost rate and constraints. Targets (issue 14):
twin gap <= 2 %; twin violation <= the oracle's + 0.01 (1 % of the run); twin CPU median with the
economic spec <= 1.2 x with the plain spec (same plant and horizon). Shown beside it when
``<out>/before-issue-14.json`` is there: the plain spec's solve time under the controller before
issue 14 (the issue's "today's").

Twins: built-in plants ``data/models/<plant>`` or ``benchmarks/models/<plant>`` (else trained as
``benchmarks/control.py`` does and cached there); zoo plants ``benchmarks/models/<plant>-seed1``
(else trained as ``benchmarks/control_seeds.py`` does, 24 h recorded with seed 1,
``TwinConfig(minutes=--minutes (1), seed=1)``, and cached). Only development-set zoo plants are
accepted: settings may be tuned on what this benchmark shows.

    .venv/bin/python benchmarks/economics.py                        # ~3 min; ~8 with training
    .venv/bin/python benchmarks/economics.py --plants cstr --quick  # smoke check, ~15 s
    .venv/bin/python benchmarks/economics.py optimum                # the true optima only

Writes ``benchmarks/results/economics/economics.{md,json}`` (``economics-quick.*``: ``--quick``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.control_loop import Action, Scenario, Trace, run_closed_loop  # noqa: E402
from benchmarks.control_models import OraclePredictor  # noqa: E402
from benchmarks.control_seeds import TRAIN_HOURS, training_frame  # noqa: E402
from benchmarks.control_zoo import oracle_substeps, scenario_for  # noqa: E402
from benchmarks.economics_optimum import Optima, cost_vector, optimum_dict  # noqa: E402
from benchmarks.economics_report import EXTRA_VIOLATION, GAP_PCT, SOLVE_RATIO, checks, markdown  # noqa: E402
from benchmarks.zoo import DEVELOPMENT  # noqa: E402
from connectors.sim.base import SimPlant  # noqa: E402
from connectors.sim.plants import PLANTS, make_plant  # noqa: E402
from twin.control.controller import Controller  # noqa: E402
from twin.model.network import TwinConfig  # noqa: E402
from twin.model.twin import Twin  # noqa: E402
from twin.spec import PlantSpec  # noqa: E402

log = logging.getLogger("benchmarks.economics")

DEFAULT_PLANTS = ("cstr", "quadtank", "zoo-3", "zoo-7")
BASELINE_HELP = (
    "an earlier economics.json whose plain-spec solve times are today's controller's (default "
    "<out>/before-issue-14.json, if there): shown beside the economic spec's"
)


# --- the economic cases ------------------------------------------------------------------


@dataclass(frozen=True)
class EconCase:
    """One plant's economic test: the spec's changes and the closed-loop run (see module doc)."""

    plant: str
    changes: dict[str, dict[str, Any]]
    """tag -> ``Tag`` fields replaced; every CV's setpoint is dropped unless given here"""
    disturbance: str
    """the unmeasured parameter scripted (a ``param_names`` entry of the plant)"""
    drift_to: float
    """its value at the end of the ramp (0.08 -> 0.45 of the run, from nominal)"""
    step_to: float
    """its value from 0.45 of the run to the end"""
    steps: int
    expect: tuple[str, ...]
    """the limits the true optimum should sit on (``tag:kind``), checked by the tests"""
    note: str = ""

    def spec(self, base: PlantSpec) -> PlantSpec:
        """The economic spec: ``base`` with every CV's setpoint dropped and the changes made."""
        unknown = set(self.changes) - set(base.tag_names)
        if unknown:
            raise KeyError(f"{self.plant}: no tags {sorted(unknown)} (tags: {base.tag_names})")
        tags = []
        for t in base.tags:
            drop = {"setpoint": None} if t.role == "cv" else {}
            tags.append(replace(t, **{**drop, **self.changes.get(t.name, {})}))
        return replace(base, tags=tuple(tags))

    def scenario(self, steps: int | None = None) -> Scenario:
        """The closed-loop scenario: no setpoint steps, the disturbance's ramp and step."""
        return Scenario(
            plant=self.plant,
            steps=steps or self.steps,
            setpoints=(),
            disturbance=self.disturbance,
            drift=(0.08, 0.45, self.drift_to),
            step=(0.45, self.step_to),
            note=self.note,
        )


CASES: dict[str, EconCase] = {
    "cstr": EconCase(
        plant="cstr",
        changes={
            "T": {"op_lo": 315.0, "op_hi": 327.0, "priority": 1},
            "Ca": {"cost": 600.0},
            "Tc": {"cost": -1.2},
        },
        disturbance="Caf",
        drift_to=1.02,
        step_to=0.98,
        steps=300,
        expect=("T:op_hi",),
        note="unconverted A costs 600 $/h per mol/L, chilling 1.2 $/h per K; T's 327 K limit binds",
    ),
    "quadtank": EconCase(
        plant="quadtank",
        changes={
            "h1": {"op_lo": 8.0, "op_hi": 15.0, "priority": 1},
            "h2": {"op_lo": 8.0, "op_hi": 15.0, "priority": 2},
            "v1": {"cost": -3.14},
            "v2": {"cost": -3.29},
        },
        disturbance="a1_scale",
        drift_to=0.98,
        step_to=0.95,
        steps=400,
        expect=("h1:op_hi", "h2:op_hi"),
        note="pumped water is worth 1 $/h per cm3/s; h1 and h2 on their 15 cm limits",
    ),
    "woodberry": EconCase(
        plant="woodberry",
        changes={
            "XD": {"op_lo": 96.3, "op_hi": 98.0, "priority": 1},
            "R": {"cost": 30.0},
            "S": {"cost": 60.0},
        },
        disturbance="zF",
        drift_to=0.5,
        step_to=-0.5,
        steps=400,
        expect=("XD:op_lo", "S:mv_lo"),
        note="reflux and steam cost energy; XD on its 96.3 mol% limit, steam at its minimum",
    ),
    "zoo-3": EconCase(
        plant="zoo-3",
        changes={
            "LI103": {"op_lo": 43.0, "op_hi": 60.0, "priority": 1},
            "PI104": {"op_lo": 13.6, "op_hi": 15.5, "priority": 2},
            "QC201": {"cost": -10.0},
            "FV202": {"cost": 1.0},
        },
        disturbance="drift1",
        drift_to=-0.06,
        step_to=0.08,
        steps=400,
        expect=("LI103:op_lo", "PI104:op_lo"),
        note="heat QC201 is throughput at 10 $/h per kW, the valve FV202 costs 1 $/h per %",
    ),
    "zoo-7": EconCase(
        plant="zoo-7",
        changes={
            "TI102": {"op_lo": 203.0, "op_hi": 205.6, "priority": 1},
            "FC201": {"cost": -1.0},
        },
        disturbance="drift1",
        drift_to=0.08,
        step_to=-0.1,
        steps=400,
        expect=("TI102:op_hi",),
        note="feed is throughput at 1 $/h per m3/h; TI102's 205.6 C limit binds",
    ),
}


def violation(y: np.ndarray, spec: PlantSpec) -> np.ndarray:
    """``[N]`` operating-limit violation per sample: ``sum_c relu(y - op_hi) / scale_c + relu(op_lo
    - y) / scale_c`` over the CVs with operating limits; ``y [N, n_tags]`` in spec order."""
    total = np.zeros(len(y))
    for j, t in enumerate(spec.tags):
        if t.role != "cv":
            continue
        if t.op_hi is not None:
            total += np.maximum(y[:, j] - t.op_hi, 0.0) / t.error_scale
        if t.op_lo is not None:
            total += np.maximum(t.op_lo - y[:, j], 0.0) / t.error_scale
    return total


# --- the closed loop ---------------------------------------------------------------------


class EconPolicy:
    """A :class:`Controller` in the loop that also records what the scores need.

    ``setpoints``: pass the scenario's setpoints (the plain spec's run) or none (the economic
    spec's own). After each plant step it records the plant's unmeasured drifts ``p`` and DVs
    ``d`` (the disturbance values in force); per decision the recommendation's steady-state
    ``targets``, predicted ``cost_rate`` and ``constraints`` where the controller gives them,
    and the history frame and setpoints it was given (for :func:`paired_timing`).
    """

    def __init__(self, name: str, controller: Controller, plant: SimPlant, *, setpoints: bool):
        self.name, self.controller, self.plant, self.setpoints = name, controller, plant, setpoints
        self.calls: list[tuple[pl.DataFrame, dict[str, float] | None]] = []
        self.p_log: list[np.ndarray] = []
        self.d_log: list[np.ndarray] = []
        self.targets: list[dict[str, float]] = []
        self.cost_rate: list[float] = []
        self.constraints: list[tuple[str, ...]] = []

    def act(
        self, frame: pl.DataFrame, measured: dict[str, float], u: np.ndarray, sp: dict[str, float]
    ) -> Action:
        self.calls.append((frame, sp if self.setpoints else None))
        rec = self.controller.recommend(*self.calls[-1])
        self.targets.append(dict(getattr(rec, "targets", None) or {}))
        self.cost_rate.append(float(getattr(rec, "cost_rate", np.nan)))
        cons = getattr(rec, "constraints", None) or ()
        self.constraints.append(
            tuple(c.describe() if hasattr(c, "describe") else str(c) for c in cons)
        )
        mv = np.array([m.recommended for m in rec.moves])
        return Action(mv, rec.solve_time_s, rec.success, rec.message)

    def observe(self, ts: datetime) -> None:
        observe = getattr(self.controller.model, "observe", None)
        if observe is not None:
            observe(ts)
        self.p_log.append(self.plant.p.copy())
        self.d_log.append(self.plant.d.copy())


def load_twin(plant: str, spec: PlantSpec, args: argparse.Namespace, tmp: Path) -> tuple[Twin, str]:
    """The plant's twin and where it came from (see module doc); trained and cached if none."""
    builtin = plant in PLANTS
    cache = ROOT / "benchmarks" / "models" / (plant if builtin else f"{plant}-seed1")
    folders = [ROOT / "data" / "models" / plant, cache] if builtin else [cache]
    for folder in folders:
        if (folder / "model.pt").is_file():
            return Twin.load(folder, spec=spec), str(folder.relative_to(ROOT))
    minutes = args.minutes or (0.25 if args.quick else 2.5 if builtin else 1.0)
    config = TwinConfig(minutes=minutes) if builtin else TwinConfig(minutes=minutes, seed=1)
    hours = 4.0 if args.quick else TRAIN_HOURS
    log.warning("no twin of %s found: training one (%.2f min on %.0f h)", plant, minutes, hours)
    twin = Twin.fit(spec, training_frame(plant, hours, tmp, seed=1), config, progress=True)
    if args.quick:
        return twin, f"trained now ({minutes:g} min on {hours:g} h, not cached: --quick)"
    twin.save(cache)
    return twin, f"{cache.relative_to(ROOT)} (trained now, {minutes:g} min)"


def score(
    trace: Trace, policy: EconPolicy, spec: PlantSpec, optima: Optima, final: float
) -> dict[str, Any]:
    """One run's economic figures (module doc); ``final``: the steady stretch's share."""
    n = len(trace.y)
    nf = max(1, round(final * n))
    cost = cost_vector(spec)
    j_path = trace.y @ cost
    p_mean = np.mean(policy.p_log[-nf:], axis=0) if policy.p_log else np.zeros(0)
    d_mean = np.mean(policy.d_log[-nf:], axis=0) if policy.d_log else np.zeros(0)
    opt = optima(d_mean, p_mean)
    j = float(j_path[-nf:].mean())
    viol = violation(trace.y, spec)
    names = spec.tag_names
    shown = [
        t.name
        for t in spec.tags
        if t.role == "mv" or t.op_lo is not None or t.op_hi is not None or t.cost
    ]
    pred = np.array(policy.cost_rate[-nf:])
    targets = {
        k: float(np.mean([t[k] for t in policy.targets[-nf:] if k in t]))
        for k in (policy.targets[-1] if policy.targets else {})
    }
    return {
        "cost_rate": j,
        "optimum": opt.cost_rate,
        "optimum_detail": {**optimum_dict(opt, spec), "noise_worth": optima.noise_worth(opt)},
        "gap_pct": 100.0 * (j - opt.cost_rate) / abs(opt.cost_rate),
        "hold_cost_rate": optima.hold(d_mean, p_mean),
        "violation": float(viol.mean()),
        "violation_final": float(viol[-nf:].mean()),
        "final_values": {k: float(trace.y[-nf:, names.index(k)].mean()) for k in shown},
        "predicted_cost_rate": float(np.nanmean(pred)) if np.isfinite(pred).any() else None,
        "targets": targets,
        "constraints": list(policy.constraints[-1]) if policy.constraints else [],
        "disturbance_final": {**opt.p, **opt.d},
        "solve_ms_median": float(np.median(trace.seconds) * 1e3),
        "solve_ms_p95": float(np.percentile(trace.seconds, 95) * 1e3),
        "cpu_ms_median": float(np.median(trace.cpu_seconds) * 1e3),
        "cpu_ms_p95": float(np.percentile(trace.cpu_seconds, 95) * 1e3),
        "failures": trace.failures,
        "first_failure": trace.first_failure,
        "trips": trace.trips,
    }


def run(
    scenario: Scenario, make: Callable[[SimPlant], EconPolicy], seed: int
) -> tuple[Trace, EconPolicy]:
    """One closed loop (:func:`benchmarks.control_loop.run_closed_loop`) and its policy."""
    made: list[EconPolicy] = []

    def build(plant: SimPlant) -> EconPolicy:
        made.append(make(plant))
        return made[-1]

    trace = run_closed_loop(scenario, build, seed, progress=True)
    return trace, made[0]


def paired_timing(
    runs: dict[str, tuple[Controller, list[tuple[pl.DataFrame, dict[str, float] | None]]]],
) -> dict[str, dict[str, float]]:
    """CPU ms per decision (median, p95) of fresh controllers re-solving their own runs' decisions,
    interleaved decision by decision so that every controller meets the same machine load."""
    n = min(len(c) for _, c in runs.values())
    cpu = {name: np.empty(n) for name in runs}
    for k in tqdm(range(n), desc="paired timing", leave=False):
        for name, (ctl, calls) in runs.items():
            t0 = time.thread_time()
            ctl.recommend(*calls[k])
            cpu[name][k] = time.thread_time() - t0
    return {
        name: {
            "cpu_ms_median": float(np.median(v) * 1e3),
            "cpu_ms_p95": float(np.percentile(v, 95) * 1e3),
        }
        for name, v in cpu.items()
    }


def run_case(case: EconCase, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """The twin, oracle and plain runs on one plant's economic scenario, scored."""
    plain = make_plant(case.plant).spec
    econ = case.spec(plain)
    scenario = case.scenario(args.steps or (60 if args.quick else None))
    twin, twin_from = load_twin(case.plant, plain, args, tmp)
    h = twin.horizon
    weights = scenario_for(case.plant).weights(plain)
    substeps = oracle_substeps(case.plant)
    controllers = {
        "twin": lambda: Controller(twin, econ, horizon=h),
        "plain": lambda: Controller(twin, track_weights=weights, horizon=h),
    }
    makers = {
        "twin": lambda p: EconPolicy("twin", controllers["twin"](), p, setpoints=False),
        "oracle": lambda p: EconPolicy(
            "oracle",
            Controller(OraclePredictor(p, horizon=h, substeps=substeps), econ, horizon=h),
            p,
            setpoints=False,
        ),
        "plain": lambda p: EconPolicy("plain", controllers["plain"](), p, setpoints=True),
    }
    optima = Optima(econ)
    results, calls = {}, {}
    for name, make in makers.items():
        t0 = time.perf_counter()
        trace, policy = run(scenario, make, args.seed)
        results[name] = score(trace, policy, econ, optima, scenario.final)
        results[name]["run_s"] = round(time.perf_counter() - t0, 1)
        calls[name] = policy.calls
    timing = paired_timing({c: (controllers[c](), calls[c]) for c in controllers})
    final_optimum = results["twin"]["optimum_detail"]
    for r in results.values():
        r.pop("optimum_detail")
        room = r["hold_cost_rate"] - r["optimum"]
        r["captured_pct"] = 100.0 * (r["hold_cost_rate"] - r["cost_rate"]) / room if room else None
    fresh = make_plant(case.plant, noise=False)
    nominal = optima(fresh.d0.astype(float), fresh.p.astype(float))
    return {
        "economics": case.note,
        "changes": case.changes,
        "expect": list(case.expect),
        "scenario": {
            "steps": scenario.steps,
            "minutes": scenario.steps * plain.sample_period / 60.0,
            "disturbance": case.disturbance,
            "drift_to": case.drift_to,
            "step_to": case.step_to,
            "step_at": round(scenario.step[0] * scenario.steps),
            "final_steps": max(1, round(scenario.final * scenario.steps)),
            "plain_track_weights": weights,
        },
        "twin": twin_from,
        "horizon": h,
        "oracle_substeps": substeps,
        "optimum_nominal": optimum_dict(nominal, econ),
        "optimum_final": final_optimum,
        "results": results,
        "paired_timing": timing,
    }


def print_optima(plants: list[str]) -> None:
    """The true optima of each plant at the nominal disturbance, the drift's end and the step."""
    for plant in plants:
        case = CASES[plant]
        spec = case.spec(make_plant(plant).spec)
        optima = Optima(spec)
        pl0 = make_plant(plant, noise=False)
        i = pl0.param_names.index(case.disturbance)
        print(f"{plant}: {case.note}")
        for label, value in (
            ("nominal", pl0.p[i]),
            ("drift", case.drift_to),
            ("step", case.step_to),
        ):
            p = pl0.p.astype(float).copy()
            p[i] = value
            opt = optima(pl0.d0.astype(float), p)
            print(
                f"  {case.disturbance} {value:g} ({label}): {opt.describe(spec)}; MVs held: "
                f"{optima.hold(pl0.d0.astype(float), p):.4g} $/h; KKT residual {opt.kkt_residual:.1e}"
            )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument(
        "step",
        nargs="?",
        choices=("run", "optimum"),
        default="run",
        help="run the benchmark or print the true optima only",
    )
    ap.add_argument(
        "--plants", default=",".join(DEFAULT_PLANTS), help=f"comma-separated, of {sorted(CASES)}"
    )
    ap.add_argument(
        "--quick",
        action="store_true",
        help="60-sample runs (a smoke check); twins trained if missing are not cached",
    )
    ap.add_argument(
        "--steps", type=int, default=None, help="closed-loop samples per run (default per plant)"
    )
    ap.add_argument(
        "--minutes",
        type=float,
        default=None,
        help="training budget of a missing twin (built-in 2.5, zoo 1)",
    )
    ap.add_argument("--seed", type=int, default=2, help="seed of the closed-loop plant's noise")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "economics")
    ap.add_argument("--baseline", type=Path, default=None, help=BASELINE_HELP)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    plants = [x.strip() for x in args.plants.split(",") if x.strip()]
    unknown = [x for x in plants if x not in CASES]
    if unknown:
        ap.error(f"no economic case for {unknown}; cases: {sorted(CASES)}")
    held_out = [x for x in plants if x.startswith("zoo-") and x not in DEVELOPMENT]
    if held_out:
        ap.error(f"{held_out} are not development-set plants: settings are tuned on this benchmark")
    if args.step == "optimum":
        print_optima(plants)
        return 0
    torch.set_num_threads(1)
    command = "benchmarks/economics.py " + " ".join(argv if argv is not None else sys.argv[1:])
    t0, load0 = time.perf_counter(), os.getloadavg()[0]
    done: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="economics-") as tmp:
        for plant in tqdm(plants, desc="economics", unit="plant"):
            done[plant] = run_case(CASES[plant], args, Path(tmp))
    doc: dict[str, Any] = {
        "meta": {
            "command": command,
            "seed": args.seed,
            "quick": args.quick,
            "wall_seconds": round(time.perf_counter() - t0, 1),
            "load_average": [round(load0, 2), round(os.getloadavg()[0], 2)],
            "targets": {
                "gap_pct": GAP_PCT,
                "extra_violation": EXTRA_VIOLATION,
                "solve_ratio": SOLVE_RATIO,
            },
        },
        "plants": done,
    }
    doc["targets"] = checks(done)
    baseline = args.baseline or args.out / "before-issue-14.json"
    before = json.loads(baseline.read_text(encoding="utf-8")) if baseline.is_file() else None
    if before is not None and before["meta"]["quick"] == args.quick:  # the same scenarios
        doc["baseline"] = {
            "file": str(baseline.relative_to(ROOT) if baseline.is_relative_to(ROOT) else baseline),
            "command": before["meta"]["command"],
            "plain": {
                p: {k: d["results"]["plain"][k] for k in ("cpu_ms_median", "cpu_ms_p95")}
                for p, d in before["plants"].items()
            },
        }
    text = markdown(doc)
    stem = "economics-quick" if args.quick else "economics"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{stem}.json").write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    (args.out / f"{stem}.md").write_text(text, encoding="utf-8")
    print(text)
    return 0 if all(c["result"] == "PASS" for c in doc["targets"]) else 1


if __name__ == "__main__":
    sys.exit(main())
