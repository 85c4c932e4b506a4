"""The control benchmark's report: the targets checked and the Markdown tables.

Reads the plain-data results :mod:`benchmarks.control` collects (one dict per plant with the
scenario, the PI tunings, the controller settings, the scores of :func:`control_loop.score`
per controller and the twin MPC's solve times per horizon).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from benchmarks.control_loop import OFFSET_TOL

NONLINEAR = ("cstr", "quadtank")
CONTROLLERS = ("twin", "oracle", "arx", "pi")
LABELS = {"twin": "twin MPC", "oracle": "oracle MPC", "arx": "ARX MPC", "pi": "SIMC PI"}
HORIZONS = (10, 20, 30)


def checks(plants: dict[str, dict[str, Any]]) -> list[dict[str, str]]:
    """The issue's targets, PASS / FAIL, per plant."""
    out: list[dict[str, str]] = []

    def add(plant: str, target: str, ok: bool, measured: str) -> None:
        out.append(
            {
                "plant": plant,
                "target": target,
                "measured": measured,
                "result": "PASS" if ok else "FAIL",
            }
        )

    for plant, d in plants.items():
        r = d["results"]
        ratio = r["twin"]["J"] / r["oracle"]["J"]
        add(plant, "J_twin / J_oracle <= 1.05", ratio <= 1.05, f"{ratio:.3f}")
        if plant in NONLINEAR:
            ratio = r["twin"]["J"] / r["arx"]["J"]
            add(plant, "J_twin <= 0.8 x J_ARX-MPC (nonlinear plant)", ratio <= 0.8, f"{ratio:.3f}")
        bad = {
            LABELS[c]: (v["bound_violations"], v["rate_violations"])
            for c, v in r.items()
            if v["bound_violations"] or v["rate_violations"]
        }
        add(
            plant, "zero MV bound or rate violations (all controllers)", not bad, str(bad or "none")
        )
        off = r["twin"]["offset"]
        add(
            plant,
            f"no steady-state offset, twin MPC (|mean error| <= {OFFSET_TOL:.1%} of span)",
            r["twin"]["offset_ok"],
            ", ".join(f"{k} {v:+.4g}" for k, v in off.items()),
        )
        if d["n_mv"] >= 2:
            cpu, wall = r["twin"]["cpu_ms_median"], r["twin"]["solve_ms_median"]
            add(
                plant,
                "twin MPC median solve <= 15 ms (H=30, two MVs; CPU time of the solve)",
                cpu <= 15.0,
                f"{cpu:.1f} ms CPU ({wall:.1f} ms wall on the shared machine)",
            )
    return out


def markdown(doc: dict[str, Any]) -> str:
    """The report as Markdown."""
    meta, plants = doc["meta"], doc["plants"]
    first = next(iter(plants.values()))["mpc"]
    mpc_text = ", ".join(f"{k} {v}" for k, v in first.items())
    lines = [
        "# Control benchmark",
        "",
        f"`{meta['command']}` (seed {meta['seed']}, "
        f"{meta['wall_seconds']:.0f} s wall on a shared 2-core machine, 1-min load average "
        f"{meta['load_average'][0]:.1f} at the start and {meta['load_average'][1]:.1f} at the "
        "end: wall-clock solve times include waiting for a core, so the CPU time of each "
        "solve, single-threaded, is shown beside them and the 15 ms target is judged on it).",
        "",
        "Every MPC is `twin.control.controller.Controller` with its default settings, the same for all three "
        f"({mpc_text}); the CV tracking weights are the spec's (overrides noted "
        "per plant). J is that objective evaluated on the plant's noise-free trajectory: "
        "1/N sum_k [sum_c w_c ((y - sp) / span_c)^2 + limit term] + H/N sum_k sum_m mw (du / "
        "span_m)^2, i.e. the MPC objective summed over consecutive H-sample windows, per "
        "window (lower is better; the PI loops are scored the same way). IAE in CV unit x min "
        "on the true trajectory; offset = mean(y - sp) over the final stretch.",
        "",
        "PI: decentralised velocity-form PI (anti-windup by construction, moves clipped to the "
        "rate limit and bounds), paired by the RGA of simulated step tests, tuned by SIMC "
        "(Skogestad 2003) on FOPDT fits of those tests: theta' = theta + Ts/2, tau_c = theta', "
        "Kc = tau / (k (tau_c + theta')), tau_I = min(tau, 4 (tau_c + theta')).",
        "",
    ]
    for plant, d in plants.items():
        sc, r = d["scenario"], d["results"]
        sps = "; ".join(
            f"at {s['at_step']}: " + ", ".join(f"{k} {v:g}" for k, v in s["values"].items())
            for s in sc["setpoints"]
        )
        lines += [
            f"## {plant}",
            "",
            f"{sc['steps']} samples ({sc['minutes']:.0f} min). Setpoints from the nominal point: "
            f"{sps}. Unmeasured {sc['disturbance']}: ramp to {sc['drift']['to']} over steps "
            f"{sc['drift']['from_step']}-{sc['drift']['to_step']}, step to {sc['step']['to']} at "
            f"{sc['step']['at_step']} held to the end; offset over the last "
            f"{sc['final_stretch_steps']} samples. {sc['note']}.",
            "",
            f"Twin: `{d['twin']}`; linear MPC model: {d['arx']}; PI: "
            + "; ".join(t["text"] for t in d["pi"])
            + ".",
            "",
        ]
        cvs, mvs = list(r["twin"]["iae"]), list(r["twin"]["movement"])
        head = (
            "| controller | J | J / J_oracle | "
            + " | ".join(f"IAE {c}" for c in cvs)
            + " | "
            + " | ".join(f"moves {m}" for m in mvs)
            + " | MV bound / rate viol. | CV out of limits | offset | solve ms median / p95 "
            "| CPU ms median / p95 | failed solves |"
        )
        lines += [head, "|---" * (head.count("|") - 1) + "|"]
        j_oracle = r["oracle"]["J"]
        for c in CONTROLLERS:
            v = r[c]
            cells = [
                LABELS[c],
                f"{v['J']:.4g}",
                f"{v['J'] / j_oracle:.3f}",
                *(f"{v['iae'][x]:.4g}" for x in cvs),
                *(f"{v['movement'][m]:.4g}" for m in mvs),
                f"{v['bound_violations']} / {v['rate_violations']}",
                str(v["cv_limit_samples"]),
                ", ".join(f"{k} {x:+.3g}" for k, x in v["offset"].items()),
                f"{v['solve_ms_median']:.1f} / {v['solve_ms_p95']:.1f}",
                f"{v['cpu_ms_median']:.1f} / {v['cpu_ms_p95']:.1f}",
                str(v["failures"]),
            ]
            lines.append("| " + " | ".join(cells) + " |")
        twin, arx = r["twin"]["J"], r["arx"]["J"]
        lines += [
            "",
            f"J_twin / J_oracle = {twin / j_oracle:.3f}; J_twin / J_ARX-MPC = {twin / arx:.3f}.",
            "",
        ]
    lines += ["## Targets", "", "| plant | target | measured | result |", "|---|---|---|---|"]
    lines += [
        f"| {c['plant']} | {c['target']} | {c['measured']} | {c['result']} |"
        for c in doc["targets"]
    ]
    scaled = {p: d for p, d in plants.items() if d["scaling"]}
    if scaled:
        lines += [
            "",
            "## Twin MPC solve time vs horizon and MV count",
            "",
            f"CPU ms per step, median / p95 (wall-clock median in brackets), over "
            f"{meta['scaling_steps']} samples of each scenario "
            f"(control_horizon {first.get('control_horizon')} throughout).",
            "",
            "| plant | MVs | " + " | ".join(f"H = {h}" for h in HORIZONS) + " |",
            "|---|---|" + "---|" * len(HORIZONS),
        ]
        for plant, d in scaled.items():
            cells = [
                _scaling_cell(d["scaling"][str(h)]) if str(h) in d["scaling"] else "-"
                for h in HORIZONS
            ]
            lines.append(f"| {plant} | {d['n_mv']} | " + " | ".join(cells) + " |")
        lines += ["", _scaling_summary(scaled)]
    return "\n".join(lines) + "\n"


def _scaling_summary(scaled: dict[str, dict[str, Any]]) -> str:
    """One sentence: growth with the horizon per plant, and two MVs against one at H = 30."""

    def med(d: dict[str, Any], h: int) -> float | None:
        cell = d["scaling"].get(str(h))
        return None if cell is None else float(cell["cpu_median_ms"])

    parts = []
    for plant, d in scaled.items():
        lo, hi = med(d, HORIZONS[0]), med(d, HORIZONS[-1])
        if lo and hi:
            parts.append(f"{plant} x{hi / lo:.2f}")
    text = f"From H = {HORIZONS[0]} to H = {HORIZONS[-1]} the median CPU time grows " + ", ".join(
        parts
    )
    by_mv: dict[int, list[float]] = {}
    for d in scaled.values():
        m = med(d, HORIZONS[-1])
        if m is not None:
            by_mv.setdefault(int(d["n_mv"]), []).append(m)
    if 1 in by_mv and 2 in by_mv:
        one, two = min(by_mv[1]), min(by_mv[2])
        text += f"; at H = {HORIZONS[-1]} two MVs take x{two / one:.2f} the time of one"
    return text + "."


def _scaling_cell(cell: dict[str, float]) -> str:
    return f"{cell['cpu_median_ms']:.1f} / {cell['cpu_p95_ms']:.1f} ({cell['median_ms']:.1f})"


# --- the zoo over training seeds ----------------------------------------------------------

#: the issue's closed-loop targets on the held-out plants with an oracle
ZOO_TARGETS = {"median": 1.10, "max": 1.25, "spread": 0.05}


def zoo_summary(runs: list[dict[str, Any]], plants: list[str], seeds: list[int]) -> dict[str, Any]:
    """Per plant J_twin / J_oracle per seed, mean and spread; the targets over the plants.

    Spread is the sample standard deviation over the seeds (ddof 1). The median is over the
    plants' means; the maximum over every plant and seed; the spread target holds for the
    largest spread of a plant. A plant counts only with every seed run and scored.
    """
    by_plant: dict[str, dict[int, float | None]] = {p: {} for p in plants}
    errors: list[str] = []
    for r in runs:
        by_plant[r["plant"]][r["seed"]] = r["ratio"]
        for c, v in r["results"].items():
            if "error" in v:
                errors.append(f"{r['plant']} seed {r['seed']} {c}: {v['error']}")
    per_plant: dict[str, dict[str, Any]] = {}
    for plant, got in by_plant.items():
        ratios = [float(x) for x in (got.get(s) for s in seeds) if x is not None]
        complete = len(ratios) == len(seeds)
        per_plant[plant] = {
            "ratios": {str(s): got.get(s) for s in seeds},
            "mean": float(np.mean(ratios)) if ratios else None,
            "spread": float(np.std(ratios, ddof=1)) if len(ratios) > 1 else None,
            "complete": complete,
        }
    done = [d for d in per_plant.values() if d["complete"]]
    out: dict[str, Any] = {
        "plants": per_plant,
        "complete": len(done),
        "missing": [p for p, d in per_plant.items() if not d["complete"]],
        "errors": errors,
        "targets": [],
    }
    if done:
        measured = {
            "median": float(np.median([d["mean"] for d in done])),
            "max": max(float(x) for d in done for x in d["ratios"].values()),
            "spread": max((d["spread"] or 0.0) for d in done),
        }
        words = {
            "median": "median over plants of mean J_twin / J_oracle",
            "max": "largest J_twin / J_oracle (any plant, any seed)",
            "spread": "largest spread (std over seeds) of a plant",
        }
        out["targets"] = [
            {
                "target": f"{words[k]} <= {ZOO_TARGETS[k]:.2f}",
                "measured": f"{measured[k]:.3f}",
                "result": "PASS" if measured[k] <= ZOO_TARGETS[k] else "FAIL",
            }
            for k in ("median", "max", "spread")
            if k != "spread" or len(seeds) > 1  # one seed has no spread
        ]
    return out


def zoo_markdown(runs: list[dict[str, Any]], summary: dict[str, Any], command: str) -> str:
    """The zoo report: per plant the ratio per seed, mean and spread; the targets."""
    seeds = sorted({int(s) for d in summary["plants"].values() for s in d["ratios"]})
    by_key = {(r["plant"], r["seed"]): r for r in runs}
    data = {r.get("data_seed", r["seed"]) for r in runs}
    own = all(r.get("data_seed", r["seed"]) == r["seed"] for r in runs)
    history = (
        "24 h of history recorded with that seed"
        if own
        else f"24 h of history recorded with seed {'/'.join(str(d) for d in sorted(data))} "
        "(one history per plant, the same for every training seed)"
    )
    lines = [
        "# Control benchmark over the zoo and training seeds",
        "",
        f"`{command}`. Per plant and training seed: {history}, a "
        "twin trained on it (`TwinConfig` defaults, its `minutes` and `seed` as stated), the "
        "twin MPC and the oracle MPC (the same `Controller` on the plant's own physics from its "
        "true state) on the plant's closed-loop scenario (generated from the plant itself, "
        "`benchmarks/control_zoo.py`; hand-written for cstr, quadtank, woodberry). J is the "
        "MPC objective on the noise-free trajectory (see `benchmarks/control_loop.py`). Spread: "
        "the standard deviation over seeds (ddof 1).",
        "",
        "| plant | " + " | ".join(f"seed {s}" for s in seeds) + " | mean | spread "
        "| twin offset ok | steps | twin H | run s (train s) |",
        "|---|" + "---|" * (len(seeds) + 6),
    ]
    for plant, d in summary["plants"].items():
        cells = [
            "-" if d["ratios"][str(s)] is None else f"{d['ratios'][str(s)]:.3f}" for s in seeds
        ]
        got = [by_key[(plant, s)] for s in seeds if (plant, s) in by_key]
        offset = [str(r["results"].get("twin", {}).get("offset_ok", "-")) for r in got]
        steps = {str(r["scenario"]["steps"]) for r in got}
        horizon = {str(r["twin"]["horizon"]) for r in got}
        secs = [f"{r['timing_s']['total_s']:.0f} ({r['timing_s']['train_s']:.0f})" for r in got]
        lines.append(
            f"| {plant} | "
            + " | ".join(cells)
            + f" | {_num(d['mean'])} | {_num(d['spread'])} | {'/'.join(offset) or '-'} "
            + f"| {'/'.join(sorted(steps)) or '-'} | {'/'.join(sorted(horizon)) or '-'} "
            + f"| {', '.join(secs) or '-'} |"
        )
    lines += ["", "## Targets", ""]
    if summary["targets"]:
        lines += ["| target | measured | result |", "|---|---|---|"]
        lines += [
            f"| {t['target']} | {t['measured']} | {t['result']} |" for t in summary["targets"]
        ]
    else:
        lines.append("No plant has all its seeds run yet.")
    lines += [
        "",
        f"{summary['complete']} plants complete"
        + (f"; missing or unscored: {', '.join(summary['missing'])}" if summary["missing"] else "")
        + ".",
    ]
    if summary["errors"]:
        lines += ["", "Errors:", "", *(f"- {e}" for e in summary["errors"])]
    lines += ["", "## Scenarios", ""]
    for plant in summary["plants"]:
        r = next((by_key[(plant, s)] for s in seeds if (plant, s) in by_key), None)
        if r is not None:
            sc = r["scenario"]
            sps = "; ".join(
                f"at {s['at_step']}: " + ", ".join(f"{k} {v:.4g}" for k, v in s["values"].items())
                for s in sc["setpoints"]
            )
            lines.append(
                f"- **{plant}**: {sc['steps']} samples; {sps}; unmeasured {sc['disturbance']} "
                f"ramp to {sc['drift']['to']:.4g}, step at {sc['step']['at_step']} to "
                f"{sc['step']['to']:.4g}. {sc['note']}."
            )
    return "\n".join(lines) + "\n"


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"
