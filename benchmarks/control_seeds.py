"""The control benchmark over the zoo and three training seeds: one run per plant and seed.

A run (:func:`run_seed`) records 24 h of the plant's history with the training seed (the data
:func:`benchmarks.zoo.record_histories` records for that seed), trains a twin on it
(``TwinConfig`` defaults but ``minutes`` and ``seed``: the training seed moves the data and the
initialisation alike), and runs the twin MPC and the oracle MPC (optionally the ARX MPC and SIMC
PI) on the plant's scenario (:func:`benchmarks.control_zoo.scenario_for`), scored as the
built-in benchmark scores them. Each run is one JSON file under ``<out>/runs/``; a run already
stored is skipped, so shards (``--shard i/n``: runs i, i+n, ... of the list) can share the folder
and an interrupted benchmark resumes. :func:`write_report` gathers the stored runs into
``<out>/control-zoo.{md,json}`` (:func:`benchmarks.control_report.zoo_summary`).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tqdm import tqdm

from benchmarks.control_loop import MPCPolicy, PIPolicy, Policy, Scenario, run_closed_loop, score
from benchmarks.control_models import ARXPredictor, OraclePredictor
from benchmarks.control_report import zoo_markdown, zoo_summary
from benchmarks.control_zoo import oracle_substeps, scenario_for
from benchmarks.pid import DecentralisedPI, tune
from connectors.sim.base import SimPlant
from connectors.sim.plants import make_plant
from connectors.sim.record import DEFAULT_START, record
from twin.control.controller import Controller, Predictor
from twin.evaluate.linear import ARX
from twin.model.dataset import split_with_context
from twin.model.network import TwinConfig
from twin.model.twin import Twin
from twin.store.historian import Historian

log = logging.getLogger(__name__)

TRAIN_HOURS, TRAIN_SEED = 24.0, 1


def training_frame(plant: str, hours: float, folder: Path, seed: int = TRAIN_SEED) -> Any:
    """``hours`` of plant data recorded with ``seed`` (the twin's training data), as a frame."""
    out = folder / f"{plant}-{seed}-train"
    sim = make_plant(plant, seed=seed)
    record(sim, hours, out, seed=seed, progress=False)
    return Historian(out).frame(sim.spec, DEFAULT_START, DEFAULT_START + timedelta(hours=hours))


def run_all(
    scenario: Scenario,
    makers: dict[str, Callable[[SimPlant], Policy]],
    reference: Controller,
    seed: int,
) -> dict[str, dict[str, Any]]:
    """Each controller ``makers`` builds, on the scenario, scored with ``reference``'s objective."""
    results = {}
    for name, make in makers.items():
        trace = run_closed_loop(scenario, make, seed, progress=True)
        results[name] = score(
            trace,
            scenario,
            reference.spec,
            horizon=reference.horizon,
            move_weight=reference.move_w,
            limit_weight=reference.limit_weight,
        )
    return results


def run_file(out: Path, plant: str, seed: int) -> Path:
    """Where the run of ``plant`` with training seed ``seed`` is stored."""
    return out / "runs" / f"{plant}-seed{seed}.json"


def run_seed(
    plant: str,
    seed: int,
    *,
    minutes: float,
    loop_seed: int,
    baselines: bool,
    steps: int | None,
    settings: dict[str, Any] | None = None,
    models: Path | None = None,
    data_seed: int | None = None,
) -> dict[str, Any]:
    """One plant and training seed: train the twin, run the MPCs, score them (plain data).

    ``models``: a folder of twins ``<plant>-seed<seed>``: one found there is used instead of
    training (so that two controller versions are compared on the same twins), one trained is
    saved there. ``data_seed``: record the history with this seed whatever the training seed
    (one plant history, several twins trained on it, as a user has); None: the training seed's
    own history (the seed moves data and initialisation alike).
    """
    t0 = time.perf_counter()
    spec = make_plant(plant).spec
    scenario = scenario_for(plant)
    scenario = scenario.with_steps(steps) if steps else scenario
    timing: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="control-zoo-") as tmp:
        frame = training_frame(
            plant, TRAIN_HOURS, Path(tmp), seed if data_seed is None else data_seed
        )
    timing["record_s"] = time.perf_counter() - t0
    saved = None if models is None else models / f"{plant}-seed{seed}"
    if saved is not None and (saved / "model.pt").is_file():
        twin = Twin.load(saved, spec=spec)
    else:
        cfg = TwinConfig(minutes=minutes, seed=seed, **(settings or {}))
        twin = Twin.fit(spec, frame, cfg, progress=True)
        if saved is not None:
            twin.save(saved)
    timing["train_s"] = time.perf_counter() - t0 - timing["record_s"]
    weights = scenario.weights(spec)
    h = twin.horizon
    substeps = oracle_substeps(plant)
    # the controllers look back a window before each of the last H samples (offset correction)
    scenario = replace(scenario, warmup=max(scenario.warmup, twin.window + h))

    def mpc(name: str, model: Predictor) -> MPCPolicy:
        return MPCPolicy(name, Controller(model, track_weights=weights, horizon=h))

    makers: dict[str, Callable[[SimPlant], Policy]] = {
        "twin": lambda p: mpc("twin", twin),
        "oracle": lambda p: mpc("oracle", OraclePredictor(p, horizon=h, substeps=substeps)),
    }
    skipped: dict[str, str] = {}
    if baselines:
        fit, val, _ = split_with_context(frame, twin.config.fractions, twin.window)
        try:
            arx = ARX().fit(spec, fit, val, horizon=h, window=twin.window)
            makers["arx"] = lambda p: mpc("arx", ARXPredictor(arx))
        except Exception as exc:  # a baseline that cannot be fitted is reported, not fatal
            skipped["arx"] = str(exc)
        try:
            loops = tune(plant)
            makers["pi"] = lambda p: PIPolicy("pi", DecentralisedPI(spec, loops))
        except Exception as exc:
            skipped["pi"] = str(exc)
    reference = Controller(twin, track_weights=weights, horizon=h)
    results: dict[str, dict[str, Any]] = {}
    for name, make in makers.items():
        t1 = time.perf_counter()
        try:
            results.update(run_all(scenario, {name: make}, reference, loop_seed))
        except Exception as exc:  # a plant that trips or a solver that fails: recorded
            log.warning("%s seed %d %s: %s", plant, seed, name, exc)
            results[name] = {"error": f"{type(exc).__name__}: {exc}"}
        timing[f"{name}_s"] = time.perf_counter() - t1
    timing["total_s"] = time.perf_counter() - t0
    ok = all("J" in results.get(c, {}) for c in ("twin", "oracle"))
    return {
        "plant": plant,
        "seed": seed,
        "data_seed": seed if data_seed is None else data_seed,
        "ratio": results["twin"]["J"] / results["oracle"]["J"] if ok else None,
        "scenario": describe(scenario, spec),
        "twin": {
            "horizon": h,
            "window": twin.window,
            "minutes": minutes,
            "saved": None if saved is None else str(saved),
            "training": twin.metrics.get("training", {}),
            "linear_init": twin.metrics.get("linear_init"),
        },
        "oracle_substeps": substeps,
        "results": results,
        "skipped": skipped,
        "timing_s": {k: round(v, 1) for k, v in timing.items()},
        "meta": {
            "loop_seed": loop_seed,
            "settings": settings or {},
            "finished": datetime.now(UTC).isoformat(timespec="seconds"),
            "load_average": round(os.getloadavg()[0], 2),
        },
    }


def describe(sc: Scenario, spec: Any) -> dict[str, Any]:
    """A scenario as plain data: setpoints per change, the disturbance, the weights."""
    return {
        "steps": sc.steps,
        "minutes": sc.steps * spec.sample_period / 60.0,
        "setpoints": [
            {"at_step": round(frac * sc.steps), "values": values} for frac, values in sc.setpoints
        ],
        "disturbance": sc.disturbance,
        "drift": {"from_step": round(sc.drift[0] * sc.steps), "to": sc.drift[2]},
        "step": {"at_step": round(sc.step[0] * sc.steps), "to": sc.step[1]},
        "track_weights": sc.weights(spec),
        "note": sc.note,
    }


def shard_of(runs: list[tuple[str, int]], shard: str | None) -> list[tuple[str, int]]:
    """The runs of shard ``i/n`` (1 <= i <= n): the i-th, (i+n)-th, ... of ``runs``."""
    if not shard:
        return runs
    i, n = (int(v) for v in shard.split("/"))
    if not 1 <= i <= n:
        raise ValueError(f"--shard must be i/n with 1 <= i <= n, got {shard!r}")
    return runs[i - 1 :: n]


def run_many(
    plants: list[str],
    seeds: list[int],
    out: Path,
    *,
    shard: str | None = None,
    force: bool = False,
    **kwargs: Any,
) -> list[Path]:
    """Every plant x seed of this shard not yet stored, each written as soon as it is done."""
    todo = shard_of([(p, s) for p in plants for s in seeds], shard)
    written = []
    for plant, seed in tqdm(todo, desc="control zoo", unit="run"):
        path = run_file(out, plant, seed)
        if path.is_file() and not force:
            log.info("%s seed %d: stored, skipped", plant, seed)
            continue
        doc = run_seed(plant, seed, **kwargs)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
        tmp.replace(path)
        written.append(path)
        log.warning(
            "%s seed %d: J_twin/J_oracle %s (%.0f s)",
            plant,
            seed,
            "n/a" if doc["ratio"] is None else f"{doc['ratio']:.3f}",
            doc["timing_s"]["total_s"],
        )
    return written


def write_report(plants: list[str], seeds: list[int], out: Path, command: str) -> str:
    """``control-zoo.{md,json}`` from the stored runs of ``plants`` x ``seeds``; the Markdown."""
    runs = [
        json.loads(run_file(out, p, s).read_text(encoding="utf-8"))
        for p in plants
        for s in seeds
        if run_file(out, p, s).is_file()
    ]
    summary = zoo_summary(runs, plants, seeds)
    text = zoo_markdown(runs, summary, command)
    out.mkdir(parents=True, exist_ok=True)
    doc = {"command": command, "summary": summary, "runs": runs}
    (out / "control-zoo.json").write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    (out / "control-zoo.md").write_text(text, encoding="utf-8")
    return text
