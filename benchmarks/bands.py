"""Per-tag band coverage on later data, for calibration variants, without retraining.

For each development plant (``benchmarks/zoo.py``; never the held-out set) and seed:

- ``record``: record the training history and a later calm test stretch exactly as
  ``benchmarks/generalise.py`` does (same seeds, same 6 h pause), train the twin once with its
  defaults and a small budget, and keep, under ``--cache`` (``/tmp/bands-cache``), the twin's
  folder and its raw ensemble mean, std and the truth (normalised) on the validation and the
  calibration windows and on the test windows (every sample an origin, thinned to 1500, DVs
  held, as ``twin.evaluate.report.evaluate`` does).
- ``report``: fit every calibration variant on the kept validation + calibration arrays in
  seconds and score it on the test windows, per CV: coverage over all steps (what the issue's
  target and ``generalise.md`` count), coverage per (tag, step) cell, and the band's mean
  half-width (normalised units; a variant that only widens everything shows its cost), for all
  runs and per length of history. ``--write`` writes ``benchmarks/results/bands/bands.md`` and
  ``bands.json``. ``old`` is the calibration before issue 12 (a quantile per step and tag,
  refused below 10 windows), ``new`` is ``Calibration.fit_splits`` as it stands; the rest are
  the variants tried (:data:`VARIANTS`). A run the old calibration refused is left out of its
  row and counted under "refused".

    nice -n 15 .venv/bin/python benchmarks/bands.py record --plants dev --seeds 1 --hours 24
    nice -n 15 .venv/bin/python benchmarks/bands.py record --plants dev --seeds 1 --hours 6
    nice -n 15 .venv/bin/python benchmarks/bands.py report --write

- ``record --set FIELD=JSON --cache DIR`` records with a ``TwinConfig`` field changed into its
  own cache (``--member0-full``: member 0 keeps the full-data linear fit; ``--uncentred``: the
  resampled members are not centred on it), and
  ``compare --caches A,B --labels a,b --write FILE`` puts the current calibration's per-tag
  coverage and the ensemble mean's NRMSE at k = 1, 5, 10 and H side by side on the runs every
  cache holds (``linear_bootstrap.md``)::

    nice -n 15 .venv/bin/python benchmarks/bands.py record --plants cstr,woodberry \\
        --cache /tmp/bands-boot --set linear_bootstrap=true
    nice -n 15 .venv/bin/python benchmarks/bands.py compare --caches /tmp/bands-cache,\\
        /tmp/bands-boot --labels before,bootstrap --write benchmarks/results/bands/linear_bootstrap.md
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.generalise import PAUSE_HOURS, TEST_HOURS, _record_test  # noqa: E402
from benchmarks.settings import add_set_option, parse_settings  # noqa: E402
from benchmarks.zoo import DEVELOPMENT, HELD_OUT  # noqa: E402
from connectors.sim.plants import make_plant  # noqa: E402
from connectors.sim.record import DEFAULT_START, record  # noqa: E402
from twin.errors import TwinError  # noqa: E402
from twin.model.dataset import cv_columns, split_with_context  # noqa: E402
from twin.model.forecast import Calibration  # noqa: E402

log = logging.getLogger("benchmarks.bands")

CACHE = Path("/tmp/bands-cache")
OUT = ROOT / "benchmarks" / "results" / "bands"
PLANTS = ("cstr", "woodberry", "zoo-1", "zoo-3", "zoo-5", "zoo-7", "fedbatch")
LO, HI, FLOOR = 0.85, 0.95, 0.75


def _name(plant: str, seed: int, hours: float) -> str:
    return f"{plant}-s{seed}-{hours:g}h"


def record_one(
    plant: str,
    seed: int,
    hours: float,
    minutes: float,
    cache: Path,
    settings: dict[str, Any] | None = None,
) -> Path:
    """Train once and keep the arrays every variant is fitted and scored on; ``settings``
    override the twin's defaults (``TwinConfig`` fields; record them under their own cache)."""
    import torch

    from twin.evaluate.report import forecast_cases
    from twin.model.network import TwinConfig
    from twin.model.train import predict
    from twin.model.twin import Twin, _windows
    from twin.store.historian import Historian

    if plant in HELD_OUT or plant not in DEVELOPMENT:
        raise SystemExit(f"{plant}: only development plants (benchmarks/zoo.py) are allowed here")
    out = cache / _name(plant, seed, hours)
    if (out / "arrays.npz").exists():
        return out
    torch.set_num_threads(1)
    sim = make_plant(plant, seed=seed)
    spec = sim.spec
    with tempfile.TemporaryDirectory(prefix="bands-") as tmp:
        folder = Path(tmp)
        record(sim, hours, folder / "train", seed=seed, progress=False)
        start = DEFAULT_START + timedelta(hours=hours + PAUSE_HOURS)
        test_dir = _record_test(plant, seed, folder, start, shifted=False)
        test = Historian(test_dir).frame(spec, start, start + timedelta(hours=TEST_HOURS))
        train = Historian(folder / "train").frame(
            spec, DEFAULT_START, DEFAULT_START + timedelta(hours=hours)
        )
    t0 = time.perf_counter()
    if (out / "twin" / "calibration.json").exists():  # trained before the arrays were kept
        twin = Twin.load(out / "twin")
    else:
        cfg = TwinConfig(seed=seed, minutes=minutes, device="cpu", **(settings or {}))
        twin = Twin.fit(spec, train, cfg, progress=False)
        twin.save(out / "twin")
    train_s = time.perf_counter() - t0
    arrays: dict[str, np.ndarray] = {}
    _, val_part, cal_part = split_with_context(train, twin.config.fractions, twin.window)
    for name, part in (("val", val_part), ("cal", cal_part)):
        w = _windows(part, spec, twin.config, twin.normalizer)
        arrays[f"{name}_mean"], arrays[f"{name}_std"] = predict(
            twin.model, w.past, w.future, clocks=twin.clock_cols
        )
        arrays[f"{name}_actual"] = w.future
    past, future, _ = forecast_cases(test, spec, twin.window, twin.horizon, 1500)
    p, f = (twin.normalizer.norm(a).astype(np.float32) for a in (past, future))
    arrays["test_mean"], arrays["test_std"] = predict(twin.model, p, f, clocks=twin.clock_cols)
    arrays["test_actual"] = f
    arrays["cv"] = np.asarray(cv_columns(spec))
    np.savez_compressed(out / "arrays.npz", **arrays)  # type: ignore[arg-type]
    meta = {"plant": plant, "seed": seed, "hours": hours, "minutes": minutes}
    meta |= {"train_seconds": round(train_s, 1), "tags": list(spec.tag_names)}
    meta |= {"settings": settings or {}, "linear_init": twin.metrics.get("linear_init")}
    meta["full_first"], meta["centred"] = _switches()
    (out / "meta.json").write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    return out


def _switches() -> tuple[bool, bool]:
    import twin.model.linear_init as linear_init

    return bool(linear_init.FULL_FIRST), bool(linear_init.CENTRED)


def cmd_record(args: argparse.Namespace) -> int:
    plants = [p for x in args.plants.split(",") if x for p in (DEVELOPMENT if x == "dev" else (x,))]
    settings = parse_settings(args.set)
    if args.member0_full:  # a module switch, not a config field: measured, then fixed
        import twin.model.linear_init as linear_init

        linear_init.FULL_FIRST = True
    if args.uncentred:
        import twin.model.linear_init as linear_init

        linear_init.CENTRED = False
    for plant in plants:
        for seed in (int(s) for s in args.seeds.split(",")):
            t0 = time.perf_counter()
            try:
                out = record_one(plant, seed, args.hours, args.minutes, args.cache, settings)
            except TwinError as exc:  # e.g. too little history to train or calibrate on
                print(f"{_name(plant, seed, args.hours)}: refused: {exc}", flush=True)
                continue
            print(f"{out.name}: {time.perf_counter() - t0:.0f} s", flush=True)
    return 0


# --- variants and scoring ------------------------------------------------------------------

Split = tuple[np.ndarray, np.ndarray, np.ndarray]
Variant = Callable[[list[Split]], "Calibration | None"]


def _load(run: Path) -> tuple[list[Split], Split, np.ndarray]:
    a = np.load(run / "arrays.npz")
    keys = ("mean", "std", "actual")
    splits = [tuple(a[f"{s}_{k}"].astype(np.float64) for k in keys) for s in ("val", "cal")]
    test = tuple(a[f"test_{k}"].astype(np.float64) for k in keys)
    return splits, test, a["cv"]


def _eps(splits: list[Split]) -> float:
    """As :meth:`Calibration.fit` sets it."""
    std = np.concatenate([x[1] for x in splits])
    return float(max(0.1 * np.median(std[std > 0]) if (std > 0).any() else 0.0, 1e-3))


def _scores(splits: list[Split], eps: float) -> np.ndarray:
    return np.concatenate([np.abs(a - m) / (s + eps) for m, s, a in splits])


def _cal(q: np.ndarray, eps: float) -> Calibration:
    return Calibration("scaled", q, eps, 0.9)


def _per_cell(splits: list[Split], p: float = 0.9) -> Calibration | None:
    """The calibration before issue 12: a finite-sample quantile per (step, tag) over the
    validation + calibration windows; refused below 10 windows."""
    eps = _eps(splits)
    s = _scores(splits, eps)
    if len(s) < 10:
        return None
    level = min(1.0, np.ceil((len(s) + 1) * p) / len(s))
    return _cal(np.quantile(s, level, axis=0, method="higher"), eps)


def _log_k_fit(q: np.ndarray) -> np.ndarray:
    """``q [H, n]`` smoothed per tag: log q a quadratic in log k."""
    h = q.shape[0]
    x = np.log(np.arange(1, h + 1))
    design = np.stack([np.ones(h), x, x**2], axis=1)
    beta, *_ = np.linalg.lstsq(design, np.log(np.maximum(q, 1e-12)), rcond=None)
    return np.exp(design @ beta)


def _smooth_k(splits: list[Split]) -> Calibration | None:
    c = _per_cell(splits)
    return None if c is None else _cal(_log_k_fit(c.quantile), c.eps)


def _pool_steps(splits: list[Split]) -> Calibration:
    """Per tag: the median score per step (smoothed in log k) times one quantile of the score
    over that median, pooled over all steps (each step borrows the tail from the others)."""
    eps = _eps(splits)
    s = _scores(splits, eps)
    shape = _log_k_fit(np.median(s, axis=0))
    ratio = (s / shape).reshape(-1, s.shape[-1])
    level = min(1.0, np.ceil((len(s) + 1) * 0.9) / len(s))
    return _cal(shape * np.quantile(ratio, level, axis=0, method="higher")[None], eps)


def _pooled_t(splits: list[Split]) -> Calibration:
    """The small-data path of :func:`twin.model.calibration.pooled` at every amount of data."""
    from twin.model.calibration import pooled

    eps = _eps(splits)
    return _cal(pooled(_scores(splits, eps), [0.9])[0], eps)


def _split_max(splits: list[Split]) -> Calibration | None:
    """Per tag, the per-cell band scaled up until it covers 90 % of each split on its own (a
    guard against drift between the validation and the calibration period)."""
    c = _per_cell(splits)
    if c is None:
        return None
    factors = []
    for sp in splits:
        ratio = _scores([sp], c.eps) / np.where(c.quantile > 0, c.quantile, np.inf)
        factors.append(np.quantile(ratio.reshape(-1, ratio.shape[-1]), 0.9, axis=0))
    return _cal(c.quantile * np.maximum(1.0, np.max(factors, axis=0)), c.eps)


def _margin(splits: list[Split], z: float = 1.0) -> Calibration | None:
    """Per-cell at a level raised by z standard errors of a tag's coverage from its
    independent stretches, 0.9 + z sqrt(0.09 (H / N))."""
    eps = _eps(splits)
    s = _scores(splits, eps)
    n, h = s.shape[:2]
    p = min(0.99, 0.9 + z * np.sqrt(0.09 * h / n))
    return _per_cell(splits, p)


def _eps_err(splits: list[Split], f: float = 0.5) -> Calibration | None:
    """Per-cell, with ``eps`` = ``f`` times the median absolute error (all tags, steps and
    windows of the splits) instead of a tenth of the median spread: a small bootstrap spread
    (``linear_bootstrap``) then scales the band without making the score a pure ratio."""
    err = np.concatenate([np.abs(a - m) for m, _, a in splits])
    eps = max(float(f * np.median(err)), 1e-3)
    s = _scores(splits, eps)
    if len(s) < 10:
        return None
    level = min(1.0, np.ceil((len(s) + 1) * 0.9) / len(s))
    return _cal(np.quantile(s, level, axis=0, method="higher"), eps)


VARIANTS: dict[str, Variant] = {
    "old": _per_cell,
    "new": lambda sp: Calibration.fit_splits(sp),
    "cal-only": lambda sp: _per_cell(sp[1:]),
    "smooth-k": _smooth_k,
    "pool-steps": _pool_steps,
    "pooled-t": _pooled_t,
    "split-max": _split_max,
    "margin-1": _margin,
    "eps-err": _eps_err,
}
REFERENCE = "reference: test's 1st half -> 2nd"
"""``old``: the calibration before; ``new``: ``Calibration.fit_splits`` as it stands; the
rest tried on the way (see the module docstring of :mod:`twin.model.calibration`)"""


def score_run(cal: Calibration | None, test: Split, cv: np.ndarray) -> dict[str, Any] | None:
    """Coverage per CV (all steps) and per (CV, step) cell, and mean half-width, on the test."""
    if cal is None:
        return None
    covered, _ = cal.evaluate(*test)
    cells = covered[..., cv].mean(axis=0)  # [H, n_cv]
    width = float(cal.halfwidth(test[1])[..., cv].mean())
    return {
        "tags": cells.mean(axis=0).tolist(),
        "cells": cells.reshape(-1).tolist(),
        "width": width,
    }


def summarise(values: list[float]) -> dict[str, Any]:
    a = np.asarray(values, dtype=float)
    if not len(a):
        return {"n": 0}
    inside = (a >= LO - 1e-9) & (a <= HI + 1e-9)
    return {
        "n": len(a),
        "in_range": float(inside.mean()),
        "below_75": int((a < FLOOR).sum()),
        "below_85": int((a < LO - 1e-9).sum()),
        "above_95": int((a > HI + 1e-9).sum()),
        "lowest": float(a.min()),
        "median": float(np.median(a)),
    }


def _table(
    results: dict[str, dict[str, Any]], runs: list[str], title: str
) -> tuple[list[str], dict[str, Any]]:
    names = list(results)
    base = names[0]
    lines = [
        f"### {title} ({len(runs)} runs)",
        "",
        "| variant | tags | in 85-95 % | below 75 % | below 85 / above 95 | lowest | median "
        f"| cells in 85-95 % | cells below 75 % | width / {base} | refused |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    summary: dict[str, Any] = {}
    for v in names:
        got = {k: results[v][k] for k in runs if results[v][k] is not None}
        tags = summarise([c for x in got.values() for c in x["tags"]])
        cells = summarise([c for x in got.values() for c in x["cells"]])
        both = [k for k in got if results[base][k] is not None]
        ratio = (
            float(
                np.exp(np.mean([np.log(got[k]["width"] / results[base][k]["width"]) for k in both]))
            )
            if both
            else float("nan")
        )
        refused = len(runs) - len(got)
        summary[v] = {"tags": tags, "cells": cells, "width_ratio": ratio, "refused": refused}
        if not tags["n"]:
            lines.append(f"| {v} | 0 | | | | | | | | | {refused} |")
            continue
        lines.append(
            f"| {v} | {tags['n']} | {tags['in_range']:.0%} | {tags['below_75']} | "
            f"{tags['below_85']} / {tags['above_95']} | {tags['lowest']:.0%} | "
            f"{tags['median']:.1%} | {cells['in_range']:.0%} | {cells['below_75']} | "
            f"{ratio:.3f} | {refused} |"
        )
    return [*lines, ""], summary


def cmd_report(args: argparse.Namespace) -> int:
    runs = sorted(p for p in args.cache.iterdir() if (p / "arrays.npz").exists())
    names = args.variants.split(",") if args.variants else list(VARIANTS)
    results: dict[str, dict[str, Any]] = {v: {} for v in [*names, REFERENCE]}
    windows: dict[str, int] = {}
    for run in runs:
        splits, test, cv = _load(run)
        windows[run.name] = sum(len(x[0]) for x in splits)
        for v in names:
            results[v][run.name] = score_run(VARIANTS[v](splits), test, cv)
        half = len(test[0]) // 2  # reference: a band fitted on the test's first 3 h itself
        first, second = (tuple(a[:half] for a in test), tuple(a[half:] for a in test))
        results.setdefault(REFERENCE, {})[run.name] = score_run(_per_cell([first]), second, cv)
    text = [
        "# Calibrated band coverage per tag on later data (development plants)",
        "",
        "Written by `benchmarks/bands.py report --write`. Per CV: coverage over all H steps of "
        "the calm test stretch 6 h after the training history (as `generalise.md` counts it); "
        "cells: per (CV, step); width: geometric mean over runs of the mean half-width against "
        "the first variant's. Target: >= 90 % of tags in 85-95 %, none below 75 %. The last "
        "row is a reference, not a variant: the quantile per cell fitted on the test's first "
        "3 h and scored on its last 3 h (how far coverage moves within one stretch of data).",
        "",
    ]
    summary: dict[str, Any] = {}
    # tables over the runs every variant calibrated, so that rows compare the same tags; the
    # runs some variant refused (the old calibration below 10 windows) get their own table
    every = [r.name for r in runs if all(results[v][r.name] is not None for v in names)]
    groups = {"all runs every variant calibrated": every}
    for hours in sorted({r.name.rsplit("-", 1)[1] for r in runs}):
        groups[f"{hours} of history"] = [r for r in every if r.endswith(f"-{hours}")]
    refused = [r.name for r in runs if r.name not in every]
    if refused:
        groups["runs some variant refused (" + ", ".join(refused) + ")"] = refused
    for title, group in groups.items():
        lines, summary[title] = _table(results, group, title)
        text += lines
    text += [
        "### per run: coverage of each CV",
        "",
        "| run | windows | " + " | ".join(names) + " |",
    ]
    text += ["|---|---|" + "---|" * len(names)]
    for run in runs:
        row = [
            "refused"
            if results[v][run.name] is None
            else " ".join(f"{c:.2f}" for c in results[v][run.name]["tags"])
            for v in names
        ]
        text.append(f"| {run.name} | {windows[run.name]} | " + " | ".join(row) + " |")
    out = "\n".join(text) + "\n"
    print(out)
    if args.write:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "bands.md").write_text(out, encoding="utf-8")
        runs_out = {  # per CV and width per run; the (CV, step) cells only in the summary
            v: {
                k: None
                if r is None
                else {"tags": np.round(r["tags"], 4).tolist(), "width": r["width"]}
                for k, r in got.items()
            }
            for v, got in results.items()
        }
        payload = {"summary": summary, "windows": windows, "runs": runs_out}
        (args.out / "bands.json").write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")
    return 0


STEPS = (1, 5, 10)
"""forecast steps (1-based) whose NRMSE ``compare`` reports, with the horizon H"""


def _nrmse(test: Split, cv: np.ndarray) -> list[float]:
    """RMSE of the ensemble mean per step in :data:`STEPS` and H, in the twin's normalised
    units (per CV over the test windows, then the mean over CVs)."""
    mean, _, actual = test
    err = np.sqrt(np.mean((mean[..., cv] - actual[..., cv]) ** 2, axis=0)).mean(axis=1)  # [H]
    return [float(err[k - 1]) for k in (*STEPS, len(err))]


def cmd_compare(args: argparse.Namespace) -> int:
    """Per-tag coverage of one calibration variant (``new``: as it stands) and the mean's
    accuracy on the same runs recorded under several caches (a setting off and on), side by
    side."""
    caches = [Path(c) for c in args.caches.split(",")]
    labels = args.labels.split(",") if args.labels else [c.name for c in caches]
    names = [{p.name for p in c.iterdir() if (p / "arrays.npz").exists()} for c in caches]
    runs = sorted(set.intersection(*names))
    per: dict[str, dict[str, Any]] = {}
    for label, cache in zip(labels, caches, strict=True):
        per[label] = {}
        for run in runs:
            splits, test, cv = _load(cache / run)
            meta = json.loads((cache / run / "meta.json").read_text(encoding="utf-8"))
            saved = cache / run / "twin" / "metrics.json"
            lin = meta.get("linear_init") or (
                json.loads(saved.read_text(encoding="utf-8")).get("linear_init", {})
                if saved.exists()
                else {}
            )
            spread = float(np.median(test[1][..., cv]))
            per[label][run] = score_run(VARIANTS[args.variant](splits), test, cv)
            per[label][run] |= {"nrmse": _nrmse(test, cv), "spread": spread, "linear": lin}
    steps = ", ".join(f"k={k}" for k in STEPS)
    lines = [
        "# Per-member linear starts (linear_bootstrap): band coverage and accuracy, side by side",
        "",
        f"Written by `benchmarks/bands.py compare`. {len(runs)} development runs recorded under "
        f"each of: {', '.join(f'{lab} ({c})' for lab, c in zip(labels, caches, strict=True))}. "
        "Coverage per CV over all H steps of the calm test 6 h after training, calibrated by "
        f"variant `{args.variant}`; width against the first row's; NRMSE: "
        f"RMSE of the ensemble mean in the twin's normalised units at {steps} and H, mean over "
        "CVs and runs; spread: median ensemble std on the test (normalised).",
        "",
        "| setting | tags | in 85-95 % | below 75 % | below 85 / above 95 | lowest | median "
        f"| width / {labels[0]} | NRMSE {steps}, H | median spread |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    base = per[labels[0]]
    for label in labels:
        got = per[label]
        t = summarise([c for r in runs for c in got[r]["tags"]])
        ratio = float(np.exp(np.mean([np.log(got[r]["width"] / base[r]["width"]) for r in runs])))
        acc = np.mean([got[r]["nrmse"] for r in runs], axis=0)
        spread = float(np.median([got[r]["spread"] for r in runs]))
        lines.append(
            f"| {label} | {t['n']} | {t['in_range']:.0%} | {t['below_75']} | "
            f"{t['below_85']} / {t['above_95']} | {t['lowest']:.0%} | {t['median']:.1%} | "
            f"{ratio:.3f} | {' / '.join(f'{a:.4f}' for a in acc)} | {spread:.4f} |"
        )
    lines += [
        "",
        "### per run",
        "",
        f"| run | setting | coverage per CV | NRMSE {steps}, H | spread | kept | identify s "
        "| of which bootstrap s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        for label in labels:
            r = per[label][run]
            lin = r["linear"]
            lines.append(
                f"| {run} | {label} | {' '.join(f'{c:.2f}' for c in r['tags'])} | "
                f"{' / '.join(f'{a:.3f}' for a in r['nrmse'])} | {r['spread']:.4f} | "
                f"{lin.get('kept', '')} | {lin.get('identify_seconds', '')} | "
                f"{lin.get('bootstrap_seconds', '')} |"
            )
    out = "\n".join(lines) + "\n"
    print(out)
    if args.write:
        args.write.parent.mkdir(parents=True, exist_ok=True)
        args.write.write_text(out, encoding="utf-8")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("record", help="record, train once, keep the arrays (skips what is kept)")
    r.add_argument("--plants", default=",".join(PLANTS), help="comma-separated dev plants, or dev")
    r.add_argument("--seeds", default="1", help="comma-separated seeds")
    r.add_argument("--hours", type=float, default=24.0, help="hours of training history")
    r.add_argument("--minutes", type=float, default=1.0, help="training budget per twin")
    add_set_option(r)
    r.add_argument(
        "--member0-full",
        action="store_true",
        help="with linear_bootstrap: member 0 keeps the full-data linear fit (FULL_FIRST)",
    )
    r.add_argument(
        "--uncentred",
        action="store_true",
        help="with linear_bootstrap: do not shift the members' mean to the full fit (CENTRED)",
    )
    r.set_defaults(func=cmd_record)
    s = sub.add_parser("report", help="fit the variants on the kept arrays and score them")
    s.add_argument("--variants", default="", help="comma-separated variants (default: all)")
    s.add_argument("--write", action="store_true", help=f"write bands.md and bands.json to {OUT}")
    s.add_argument("--out", type=Path, default=OUT, help="results folder")
    s.set_defaults(func=cmd_report)
    c = sub.add_parser("compare", help="the same runs under several caches, side by side")
    c.add_argument("--caches", required=True, help="comma-separated caches (first: reference)")
    c.add_argument("--labels", default="", help="comma-separated names for the caches")
    c.add_argument("--write", type=Path, default=None, help="also write the table to this file")
    c.add_argument("--variant", default="new", help="the calibration variant (default new)")
    c.set_defaults(func=cmd_compare)
    for q in (r, s):
        q.add_argument("--cache", type=Path, default=CACHE, help=f"kept runs (default {CACHE})")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
