"""Tables and target checks for ``benchmarks/generalise.py``'s stored runs (issue 12's targets).

Per length of training history: each plant's NRMSE at k = 1, 5, 10, H (mean over seeds, and the
spread over seeds at H) for the twin and the best baseline at each step; the share of plants on
which the twin is no worse than the best baseline; the median ratio at H on the plants with a
nonlinearity; per-tag band coverage (calibrated and adapted, on the calm and the shifted test;
runs recorded before the calm test's adapted band was kept show none); the training time. A run
that has fewer seeds than others is counted as it is.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

LO, HI, FLOOR = 0.85, 0.95, 0.75
BASELINES = ("persistence", "arx", "subspace", "gru")


def _load(paths: list[Path]) -> dict[float, dict[str, list[dict[str, Any]]]]:
    by: dict[float, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for path in paths:
        run = json.loads(path.read_text(encoding="utf-8"))
        if "refused" not in run:
            by[run["hours"]][run["plant"]].append(run)
    return by


def _refused(paths: list[Path]) -> list[str]:
    """Runs in which the twin refused to train (too little history), one line each."""
    runs = [json.loads(p.read_text(encoding="utf-8")) for p in paths]
    return [
        f"- {r['plant']} seed {r['seed']}, {r['hours']:g} h: {r['refused']}"
        for r in runs
        if "refused" in r
    ]


def _mean(runs: list[dict[str, Any]], model: str, step: str) -> float:
    vals = [r["nrmse"][model][step] for r in runs if model in r["nrmse"]]
    return float(np.mean(vals)) if vals else float("nan")


def _accuracy(plants: dict[str, list[dict[str, Any]]]) -> tuple[list[str], list[str]]:
    """The per-plant table and the accuracy checks."""
    labels = ["1", "5", "10", "H"]
    head = " | ".join(f"k={k}: twin / best" for k in labels)
    lines = [
        f"| plant | seeds | nonlinear | {head} | twin at H, seed spread | linear start kept |",
        "|---" * (len(labels) + 5) + "|",
    ]
    wins = {k: 0 for k in labels}
    near = {k: 0 for k in labels}
    to_linear: dict[str, list[float]] = {k: [] for k in labels}
    to_iarx: dict[str, list[float]] = {k: [] for k in labels}  # recorded since 8220a46
    ratios_nl, spreads = [], []
    for plant, runs in sorted(plants.items(), key=lambda kv: _order(kv[0])):
        cells = []
        steps = {"1": "1", "5": "5", "10": "10", "H": str(runs[0]["horizon"])}
        for k in labels:
            s = steps[k]
            twin = _mean(runs, "twin", s)
            base = {m: _mean(runs, m, s) for m in BASELINES}
            base = {m: v for m, v in base.items() if np.isfinite(v)}
            best = min(base, key=base.__getitem__) if base else None
            bval = base[best] if best else float("nan")
            ok = not best or twin <= bval
            wins[k] += ok
            near[k] += not best or twin <= 1.02 * bval
            mark = "" if ok else "**"
            cells.append(f"{mark}{twin:.3f}{mark} / {bval:.3f} {best or ''}")
            linear = [base[m] for m in ("arx", "subspace") if m in base]
            if linear:
                to_linear[k].append(twin / min(linear))
            if np.isfinite(iarx := _mean(runs, "iarx", s)):
                to_iarx[k].append(twin / iarx)
            if k == "H" and runs[0]["nonlinear"] and best:
                ratios_nl.append(twin / bval)
        at_h = [r["nrmse"]["twin"][steps["H"]] for r in runs]
        spread = float(np.std(at_h, ddof=1)) if len(at_h) > 1 else float("nan")
        spreads.append(spread)
        kept = ", ".join(str(r["linear_init"].get("kept")) for r in runs)
        nl = "yes" if runs[0]["nonlinear"] else "no"
        lines.append(
            f"| {plant} | {len(runs)} | {nl} | " + " | ".join(cells) + f" | {spread:.3f} | {kept} |"
        )
    n = len(plants)
    checks = [
        "- twin no worse than the best baseline (target: >= 90% of plants): "
        + ", ".join(f"k={k} {wins[k]}/{n} ({wins[k] / n:.0%})" for k in labels)
        + "; within 2%: "
        + ", ".join(f"k={k} {near[k]}/{n}" for k in labels),
    ]
    if to_linear["1"]:
        r = {k: np.asarray(v) for k, v in to_linear.items()}
        checks.append(
            "- twin / the better linear model (ARX, subspace) at each step, geometric mean over "
            "plants (small data must not make the twin worse than the linear model): "
            + ", ".join(f"k={k} {np.exp(np.log(r[k]).mean()):.3f}" for k in labels)
            + "; no worse on "
            + ", ".join(f"k={k} {(r[k] <= 1 + 1e-9).sum()}/{len(r[k])}" for k in labels)
        )
    if to_iarx["1"]:
        r = {k: np.asarray(v) for k, v in to_iarx.items()}
        checks.append(
            "- twin / ARX on increments (one of the twin's parts, not a baseline), geometric mean: "
            + ", ".join(f"k={k} {np.exp(np.log(r[k]).mean()):.3f}" for k in labels)
            + f" over {len(r['1'])} plants"
        )
    if ratios_nl:
        med = float(np.median(ratios_nl))
        checks.append(
            f"- plants with a nonlinearity: median twin / best baseline at H {med:.2f} "
            f"(target <= 0.80) over {len(ratios_nl)} plants; range {min(ratios_nl):.2f}-"
            f"{max(ratios_nl):.2f}"
        )
    finite = [s for s in spreads if np.isfinite(s)]
    if finite:
        checks.append(
            f"- spread (std) of the twin's NRMSE at H over seeds: median {np.median(finite):.3f}, "
            f"largest {max(finite):.3f}"
        )
    return lines, checks


def _coverage(plants: dict[str, list[dict[str, Any]]]) -> list[str]:
    """Per-tag coverage shares: every (plant, seed, tag) counts once."""
    rows: dict[str, list[float]] = defaultdict(list)
    for runs in plants.values():
        for r in runs:
            for d in r["coverage"].values():
                for key, v in d.items():
                    rows[key].append(v)
    out = ["| band | tags | in 85-95% | below 75% | lowest | median |", "|---|---|---|---|---|---|"]
    names = {
        "calm": "calm test, calibrated, all steps",
        "calm_min": "calm test, calibrated, worst step",
        "calm_adapted": "calm test, adapted (from 1 H), all steps",
        "calm_adapted_min": "calm test, adapted (from 1 H), worst step",
        "shifted": "shifted test, calibrated, all steps",
        "adapted": "shifted test, adapted (from 1 H), all steps",
        "adapted_min": "shifted test, adapted (from 1 H), worst step",
    }
    for key, label in names.items():
        a = np.asarray(rows.get(key, []), dtype=float)
        a = a[np.isfinite(a)]
        if not len(a):
            continue
        inside = ((a >= LO - 1e-9) & (a <= HI + 1e-9)).mean()
        below = (a < FLOOR).sum()
        out.append(
            f"| {label} | {len(a)} | {inside:.0%} | {below} | {a.min():.0%} | {np.median(a):.0%} |"
        )
    return out


def _order(plant: str) -> tuple[int, str]:
    return (int(plant[4:]), "") if plant.startswith("zoo-") else (-1, plant)


def report(paths: list[Path]) -> str:
    by = _load(paths)
    if not by:
        return "no runs stored yet\n"
    lines = ["# The twin on plants nobody tuned it for", ""]
    for hours in sorted(by):
        plants = by[hours]
        runs = [r for rs in plants.values() for r in rs]
        sets = sorted({r["set"] for r in runs})
        secs = [r["seconds"]["twin"] for r in runs]
        lines += [
            f"## {hours:g} h of training history ({len(plants)} plants of {', '.join(sets)}, "
            f"{len(runs)} runs, budget {runs[0]['minutes']:g} min)",
            "",
            "NRMSE on the shifted test (RMSE / test std, mean over CVs; mean over seeds). "
            "Bold: the twin is worse than the best baseline at that step.",
            "",
        ]
        table, checks = _accuracy(plants)
        lines += [*table, "", *checks]
        lines += [
            f"- twin training time: median {np.median(secs):.0f} s, largest {max(secs):.0f} s "
            "(target <= 180 s on 2 cores)",
            "",
            "Band coverage per tag (nominal 90%; target: >= 90% of tags in 85-95%, none below "
            "75%):",
            "",
            *_coverage(plants),
            "",
        ]
        skipped = {f"{r['plant']}: {m}": w for r in runs for m, w in r["skipped"].items()}
        if skipped:
            lines += ["Skipped baselines:", ""] + [f"- {k}: {v}" for k, v in skipped.items()] + [""]
    refused = _refused(paths)
    if refused:
        lines += ["## Runs the twin refused", "", *refused, ""]
    return "\n".join(lines) + "\n"


def compare(before: Path, after: Path) -> str:
    """The twin's NRMSE after / before per plant and step, on the runs both folders hold (same
    plant, seed and hours), with the geometric mean over them."""
    pairs = []
    for path in sorted((after / "runs").glob("*.json")):
        old = before / "runs" / path.name
        if not old.is_file():
            continue
        a, b = (json.loads(p.read_text(encoding="utf-8")) for p in (path, old))
        if "refused" not in a and "refused" not in b:
            pairs.append((path.stem, a, b))
    if not pairs:
        return f"no runs in both {before} and {after}"
    lines = [
        f"Twin NRMSE on the shifted test, {after.name} / {before.name} (below 1: better)",
        "",
        "| run | k=1 | k=5 | k=10 | k=H |",
        "|---|---|---|---|---|",
    ]
    ratios = []
    for name, a, b in pairs:
        steps = ("1", "5", "10", str(a["horizon"]))
        r = [a["nrmse"]["twin"][s] / b["nrmse"]["twin"][s] for s in steps]
        ratios.append(r)
        lines.append(f"| {name} | " + " | ".join(f"{x:.3f}" for x in r) + " |")
    geo = np.exp(np.log(np.array(ratios)).mean(axis=0))
    lines.append(f"| geometric mean ({len(pairs)}) | " + " | ".join(f"{x:.3f}" for x in geo) + " |")
    return "\n".join(lines) + "\n"
