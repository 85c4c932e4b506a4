"""Forecast benchmark: the twin against persistence, ARX, subspace ID and a direct GRU.

For each built-in plant and seed: record 24 h of training data (the plant and its excitation
seeded with the seed), and a later, separately seeded 6 h test set whose excitation holds
larger, setpoint-like steps and whose disturbances are twice as strong as in training. The twin
and every baseline learn from the same training frame (the same train / validation split),
then forecast the same test windows under the MV moves that really followed (DVs held).

Printed and written to ``benchmarks/results/forecast.{json,md}`` (``forecast-quick.*`` with
``--quick``): NRMSE at horizon steps 1, 5, 10 and H (mean +- std over seeds, mean over CVs),
the ablations (no JEPA term, each JEPA target variant, no anti-collapse term, a single model
instead of the ensemble), band coverage, training time, the effective rank of the embeddings,
and PASS / FAIL against the issue's targets.

    .venv/bin/python benchmarks/forecast.py                       # 3 plants x 3 seeds (long)
    .venv/bin/python benchmarks/forecast.py --plants cstr --seeds 1 --quick
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.zoo import DEVELOPMENT, HELD_OUT  # noqa: E402
from connectors.sim.excitation import ExcitationConfig  # noqa: E402
from connectors.sim.plants import PLANTS, is_plant_name, make_plant  # noqa: E402
from connectors.sim.record import DEFAULT_START, record  # noqa: E402
from twin.evaluate.baseline import Persistence  # noqa: E402
from twin.evaluate.gru import DirectGRU  # noqa: E402
from twin.evaluate.linear import ARX, Subspace  # noqa: E402
from twin.evaluate.report import effective_rank, evaluate, parameter_count  # noqa: E402
from twin.model.dataset import split_with_context  # noqa: E402
from twin.model.network import TwinConfig  # noqa: E402
from twin.model.twin import Twin  # noqa: E402
from twin.store.historian import Historian  # noqa: E402

log = logging.getLogger("benchmarks.forecast")

TRAIN_HOURS, TEST_HOURS = 24.0, 6.0
TEST_START = DEFAULT_START + timedelta(hours=30)  # later than training, with a pause between
TEST_EXCITATION = ExcitationConfig(
    min_hold=30, max_hold=120, plateau_probability=0.4, plateau_hold=(60, 200), amplitude=(0.6, 1.0)
)
"""setpoint-like steps, larger and held longer than the training excitation's"""
DISTURBANCE_GAIN = 2.0
"""test disturbances (the plants' OU drifts) are this many times stronger than in training"""
ABLATIONS: dict[str, tuple[str, dict[str, Any]]] = {
    "no-jepa": ("no JEPA term", {"w_jepa": 0.0}),
    "target-ema": ("JEPA target: EMA encoder", {"target": "ema"}),
    "target-none": ("JEPA target: no stop-gradient", {"target": "none"}),
    "sigreg": ("anti-collapse: SIGReg", {"anti_collapse": "sigreg"}),
    "no-anticollapse": ("no anti-collapse term", {"anti_collapse": "none"}),
    "single": ("single model (K=1)", {"ensemble": 1}),
}
"""id -> (label, TwinConfig changes); the default twin uses a stop-gradient target and VICReg"""
BASELINES = ("persistence", "arx", "subspace", "gru")
NONLINEAR, LINEAR = ("cstr", "quadtank"), ("woodberry",)


def record_data(plant: str, seed: int, folder: Path) -> tuple[Any, Any]:
    """Training and test frames of ``plant`` for ``seed`` (recorded into ``folder``)."""
    train_dir, test_dir = folder / f"{plant}-{seed}-train", folder / f"{plant}-{seed}-test"
    sim = make_plant(plant, seed=seed)
    record(sim, TRAIN_HOURS, train_dir, seed=seed, progress=False)
    test_sim = make_plant(plant, seed=10_000 + seed)
    # the plants' drifts are private OU processes: the benchmark makes them stronger on purpose
    for ou in [*test_sim._d_drift, *test_sim._p_drift]:
        ou.sigma *= DISTURBANCE_GAIN
    record(
        test_sim,
        TEST_HOURS,
        test_dir,
        seed=10_000 + seed,
        start=TEST_START,
        excitation=TEST_EXCITATION,
        progress=False,
    )
    spec = sim.spec
    train = Historian(train_dir).frame(
        spec, DEFAULT_START, DEFAULT_START + timedelta(hours=TRAIN_HOURS)
    )
    test = Historian(test_dir).frame(spec, TEST_START, TEST_START + timedelta(hours=TEST_HOURS))
    return train, test


def run_one(plant: str, seed: int, args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    """Everything measured for one plant and seed."""
    train, test = record_data(plant, seed, folder)
    spec = make_plant(plant).spec
    cfg = TwinConfig(seed=seed, threads=args.threads, minutes=args.minutes, device="cpu")
    t0 = time.perf_counter()
    twin = Twin.fit(spec, train, cfg, progress=False)
    train_s = time.perf_counter() - t0
    fit_part, val_part, _ = split_with_context(train, cfg.fractions, twin.window)
    makers = {
        "persistence": Persistence,
        "arx": ARX,
        "subspace": Subspace,
        "gru": lambda: DirectGRU(n_params=parameter_count(twin), minutes=args.minutes, seed=seed),
    }
    baselines = [makers[name]() for name in args.baselines]
    kw = {"horizon": cfg.horizon, "window": cfg.window}
    fit_s = {}
    for b in baselines:
        t1 = time.perf_counter()
        b.fit(spec, fit_part, val_part, **kw)
        fit_s[b.name] = time.perf_counter() - t1
    report = evaluate(twin, test, baselines, max_origins=args.origins)
    out: dict[str, Any] = {
        "nrmse": report["summary"]["nrmse"],
        "nrmse_tags": {t: d["nrmse"] for t, d in report["tags"].items()},
        "coverage": report["summary"]["coverage_all_steps"],
        "coverage_steps": report["summary"]["coverage"],
        "train_seconds": {"twin": train_s, **fit_s},
        "effective_rank": effective_rank(twin, test),
        "latent": cfg.latent,
        "models": {b.name: b.describe() for b in baselines},
        "ablations": {},
    }
    for key in args.ablations:
        name, change = ABLATIONS[key]
        t1 = time.perf_counter()
        variant = Twin.fit(spec, train, replace(cfg, **change), progress=False)
        seconds = time.perf_counter() - t1
        rep = evaluate(variant, test, (), max_origins=args.origins)
        out["ablations"][name] = {
            "nrmse": rep["summary"]["nrmse"]["twin"],
            "coverage": rep["summary"]["coverage_all_steps"],
            "effective_rank": effective_rank(variant, test),
            "train_seconds": seconds,
        }
    return out


def _ms(values: list[float]) -> str:
    """``mean ± std`` (just the value for one seed)."""
    a = np.asarray(values, dtype=float)
    return f"{a.mean():.3f}" if len(a) == 1 else f"{a.mean():.3f} ± {a.std(ddof=1):.3f}"


def summarise(results: dict[str, list[dict[str, Any]]]) -> tuple[str, list[dict[str, Any]]]:
    """Markdown tables over seeds and the target checks."""
    lines: list[str] = []
    checks: list[dict[str, Any]] = []
    for plant, runs in results.items():
        steps = list(runs[0]["nrmse"]["twin"])
        head = "| model | " + " | ".join(f"k={s}" for s in steps) + " |"
        rule = "|---" * (len(steps) + 1) + "|"
        lines += [f"## {plant} ({len(runs)} seed{'s' * (len(runs) > 1)})", "", head, rule]
        for model in runs[0]["nrmse"]:
            cells = [_ms([r["nrmse"][model][s] for r in runs]) for s in steps]
            lines.append(f"| {model} | " + " | ".join(cells) + " |")
        for name in runs[0]["ablations"]:
            cells = [_ms([r["ablations"][name]["nrmse"][s] for r in runs]) for s in steps]
            lines.append(f"| twin, {name} | " + " | ".join(cells) + " |")
        cov = [r["coverage"] for r in runs]
        lines += [
            "",
            f"- 90% band coverage (all CVs and steps): {_ms(cov)}",
            f"- twin training time: {_ms([r['train_seconds']['twin'] for r in runs])} s; "
            + ", ".join(
                f"{m} {_ms([r['train_seconds'][m] for r in runs])} s"
                for m in runs[0]["train_seconds"]
                if m != "twin"
            ),
            f"- effective rank of the embeddings (latent {runs[0]['latent']}): "
            f"{_ms([r['effective_rank'] for r in runs])}"
            + "".join(
                f"; {name}: {_ms([r['ablations'][name]['effective_rank'] for r in runs])}"
                for name in runs[0]["ablations"]
            ),
            f"- baselines: {', '.join(runs[0]['models'].values())}",
            "",
        ]
        checks += _checks(plant, runs, steps[-1])
    lines += ["## Targets", "", "| plant | target | measured | result |", "|---|---|---|---|"]
    for c in checks:
        lines.append(f"| {c['plant']} | {c['target']} | {c['measured']} | {c['result']} |")
    return "\n".join(lines) + "\n", checks


def _checks(plant: str, runs: list[dict[str, Any]], h: str) -> list[dict[str, Any]]:
    """The issue's targets for one plant, on the means over seeds (skipped if a model is absent)."""

    def mean(model: str, step: str, tag: str | None = None) -> float:
        rows = [r["nrmse_tags"][tag] if tag else r["nrmse"] for r in runs]
        return float(np.mean([row[model][step] for row in rows]))

    def check(target: str, ok: bool, measured: str) -> dict[str, Any]:
        result = "PASS" if ok else "FAIL"
        return {"plant": plant, "target": target, "measured": measured, "result": result}

    models = set(runs[0]["nrmse"])
    out = []
    twin_h = mean("twin", h)
    linear = {"arx", "subspace"} & models
    if plant in NONLINEAR and len(models) > 1:
        best = min(models - {"twin"}, key=lambda m: mean(m, h))
        bound = 0.75 * mean(best, h)
        target = f"NRMSE at H <= 0.75 x best baseline ({best})"
        out.append(check(target, twin_h <= bound, f"{twin_h:.3f} vs {bound:.3f}"))
    if plant in LINEAR and linear:
        best = min(linear, key=lambda m: mean(m, h))
        bound = 1.1 * mean(best, h)
        target = f"NRMSE at H within 10% of best linear baseline ({best})"
        out.append(check(target, twin_h <= bound, f"{twin_h:.3f} vs {bound:.3f}"))
    if "arx" in models:
        pairs = {t: (mean("twin", "1", t), mean("arx", "1", t)) for t in runs[0]["nrmse_tags"]}
        measured = "; ".join(f"{t}: twin {a:.3f}, arx {b:.3f}" for t, (a, b) in pairs.items())
        ok = all(a <= b for a, b in pairs.values())
        out.append(check("never worse than ARX at step 1 (each CV)", ok, measured))
    cov = float(np.mean([r["coverage"] for r in runs]))
    out.append(check("90% band covers 85-95%", 0.85 <= cov <= 0.95, f"{cov:.1%}"))
    secs = max(r["train_seconds"]["twin"] for r in runs)
    out.append(check("training under 3 minutes (2 cores)", secs < 180, f"{secs:.0f} s (max)"))
    return out


def _write(
    results: dict[str, list[dict[str, Any]]],
    args: argparse.Namespace,
    argv: list[str] | None,
    seconds: float,
) -> tuple[str, list[dict[str, Any]]]:
    """Write the JSON and Markdown results so far (after every run: a long run shows progress)."""
    table, checks = summarise(results)
    stem = "forecast-quick" if args.quick else "forecast"
    meta = {
        "plants": list(results),
        "seeds_done": {p: len(r) for p, r in results.items()},
        "quick": args.quick,
        "ablations": args.ablations,
        "minutes": args.minutes,
        "threads": args.threads,
        "train_hours": TRAIN_HOURS,
        "test_hours": TEST_HOURS,
        "wall_seconds": round(seconds, 1),
        "command": "benchmarks/forecast.py " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    doc = {"meta": meta, "results": results, "targets": checks}
    (args.out / f"{stem}.json").write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    header = (
        f"# Forecast benchmark\n\n`{meta['command']}`: {TRAIN_HOURS:g} h training, "
        f"{TEST_HOURS:g} h separately seeded test per seed; NRMSE = RMSE / std of the tag over "
        "the test data, mean over CVs, mean ± std over seeds; training budget "
        f"{args.minutes:g} min per model, {args.threads} torch threads.\n\n"
    )
    (args.out / f"{stem}.md").write_text(header + table, encoding="utf-8")
    return header + table, checks


def _choose(p: argparse.ArgumentParser, text: str, known: list[str], what: str) -> list[str]:
    """A comma-separated choice ('all', 'none' or ids) as a list; exits naming unknown ids."""
    if text in ("all", "none"):
        return known if text == "all" else []
    chosen = [x.strip() for x in text.split(",") if x.strip()]
    unknown = sorted(set(chosen) - set(known))
    if unknown:
        p.error(f"unknown {what} {unknown}; choose from {known}")
    return chosen


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--plants", default=",".join(sorted(PLANTS)),
        help="comma-separated plants (any of `twin plant list`, zoo-<n>), or 'dev' / 'held-out' "
        "for the zoo's sets (benchmarks/zoo.py)",
    )  # fmt: skip
    p.add_argument("--seeds", type=int, default=3, help="seeds per plant (1, 2, ...)")
    p.add_argument(
        "--quick", action="store_true", help="0.5 min budgets, no ablations (a smoke run)"
    )
    p.add_argument("--minutes", type=float, default=None, help="training budget per model")
    p.add_argument(
        "--ablations",
        default="all",
        help=f"comma-separated ablation ids, 'all' or 'none' (ids: {', '.join(ABLATIONS)})",
    )
    p.add_argument(
        "--baselines", default=",".join(BASELINES), help="comma-separated baselines (default all)"
    )
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (the target: 2)")
    p.add_argument("--origins", type=int, default=1500, help="test forecast origins per run")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.quick:
        args.ablations = "none"
        args.minutes = args.minutes or 0.5
    args.ablations = _choose(p, args.ablations, list(ABLATIONS), "ablations")
    args.baselines = _choose(p, args.baselines, list(BASELINES), "baselines")
    args.minutes = args.minutes or TwinConfig().minutes
    sets = {"dev": DEVELOPMENT, "held-out": HELD_OUT}
    plants = [
        n for x in args.plants.split(",") if x.strip() for n in sets.get(x.strip(), [x.strip()])
    ]
    unknown = sorted(n for n in set(plants) if not is_plant_name(n))
    if unknown:
        p.error(f"unknown plants {unknown}; see `twin plant list` (or zoo-<n>, dev, held-out)")
    torch.set_num_threads(args.threads)
    results: dict[str, list[dict[str, Any]]] = {}
    jobs = [(plant, seed) for seed in range(1, args.seeds + 1) for plant in plants]
    t0 = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    checks: list[dict[str, Any]] = []
    text = ""
    with tempfile.TemporaryDirectory(prefix="forecast-bench-") as tmp:
        for plant, seed in tqdm(jobs, desc="forecast benchmark", unit="run"):
            results.setdefault(plant, []).append(run_one(plant, seed, args, Path(tmp)))
            text, checks = _write(results, args, argv, time.perf_counter() - t0)
    print(text)
    return 0 if all(c["result"] == "PASS" for c in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
