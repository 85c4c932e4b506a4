"""The economics benchmark's targets and Markdown report (see :mod:`benchmarks.economics`)."""

from __future__ import annotations

from typing import Any

import numpy as np

#: issue 14's targets: gap to the true optimum (% of |J*|), extra violation over the oracle's
#: (in scale units, time-averaged), solve-time ratio economic / plain spec
GAP_PCT, EXTRA_VIOLATION, SOLVE_RATIO = 2.0, 0.01, 1.2


def checks(plants: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """PASS / FAIL of issue 14's targets per plant."""
    out = []
    for plant, d in plants.items():
        tw, orc = d["results"]["twin"], d["results"]["oracle"]
        pt = d["paired_timing"]
        econ, plain = pt["twin"], pt["plain"]
        ratio = econ["cpu_ms_median"] / plain["cpu_ms_median"]
        rows = [
            (
                f"twin gap to the true optimum <= {GAP_PCT:g} %",
                f"{tw['gap_pct']:.2f} %",
                tw["gap_pct"] <= GAP_PCT,
            ),
            (
                f"twin op-limit violation <= oracle's + {EXTRA_VIOLATION:g}",
                f"{tw['violation']:.4f} vs {orc['violation']:.4f} + {EXTRA_VIOLATION:g}",
                tw["violation"] <= orc["violation"] + EXTRA_VIOLATION,
            ),
            (
                f"twin solve CPU median, economic / plain spec (paired) <= {SOLVE_RATIO:g}",
                f"{econ['cpu_ms_median']:.1f} / {plain['cpu_ms_median']:.1f} ms = {ratio:.2f} "
                f"(p95 {econ['cpu_ms_p95'] / plain['cpu_ms_p95']:.2f})",
                ratio <= SOLVE_RATIO,
            ),
        ]
        out += [
            {"plant": plant, "target": t, "measured": m, "result": "PASS" if ok else "FAIL"}
            for t, m, ok in rows
        ]
    return out


def _f(x: float | None, fmt: str = ".1f") -> str:
    return "n/a" if x is None or not np.isfinite(x) else format(x, fmt)


def markdown(doc: dict[str, Any]) -> str:
    """The report: summary table, targets, then per plant its economics and optimum."""
    meta, plants = doc["meta"], doc["plants"]
    lines = [
        "# Economics benchmark (issue 14)",
        "",
        f"`{meta['command']}` ({meta['wall_seconds']:.0f} s, load {meta['load_average']}). Per plant an "
        "economic spec whose optimum lies on a CV operating limit (the economics are in "
        "`benchmarks/economics.py`); the twin MPC and the oracle MPC (the same controller on the "
        "plant's true physics) on it, and the twin MPC with the plain spec (setpoints at the "
        "nominal point) for reference, in one seeded scenario with the plant's noise, its drifts "
        "and a scripted unmeasured disturbance that steps and holds. J: the true cost rate "
        "(noise-free outputs and the MVs applied, mean over the final stretch); J*: the true "
        "optimum (scipy on the plant's model) at the disturbance values in force then; gap = "
        "(J - J*) / |J*|; captured = (J_hold - J) / (J_hold - J*), the share reached of the "
        "improvement over holding the MVs at nominal (free of the cost's arbitrary zero); violation: mean over the run "
        "of sum_c relu(y - op_hi) / scale + relu(op_lo - y) / scale (noise-free). Solve times "
        "per decision, CPU (single thread), in the closed loops; the solve-time target is judged "
        "on a paired re-timing: fresh twin controllers with the economic and the plain spec "
        "re-solve their own runs' decisions, interleaved one by one, so that both meet the same "
        "machine load (in-loop times on a shared machine vary by 20-30 % from run to run).",
        "",
        "| plant | J* $/h | twin J | twin gap % | twin captured % | oracle J | oracle gap % "
        "| oracle captured % | plain J | violation twin / oracle / plain | CPU ms median / p95 "
        "twin econ | plain | oracle | failed solves (twin/oracle/plain) |",
        "|---" * 14 + "|",
    ]
    for plant, d in plants.items():
        r = d["results"]
        tw, orc, pln = r["twin"], r["oracle"], r["plain"]
        lines.append(
            f"| {plant} | {tw['optimum']:.4g} | {tw['cost_rate']:.4g} | {tw['gap_pct']:.2f} | "
            f"{_f(tw['captured_pct'])} | {orc['cost_rate']:.4g} | {orc['gap_pct']:.2f} | "
            f"{_f(orc['captured_pct'])} | {pln['cost_rate']:.4g} | "
            f"{tw['violation']:.4f} / {orc['violation']:.4f} / {pln['violation']:.4f} | "
            f"{tw['cpu_ms_median']:.1f} / {tw['cpu_ms_p95']:.1f} | "
            f"{pln['cpu_ms_median']:.1f} / {pln['cpu_ms_p95']:.1f} | "
            f"{orc['cpu_ms_median']:.1f} / {orc['cpu_ms_p95']:.1f} | "
            f"{tw['failures']}/{orc['failures']}/{pln['failures']} |"
        )
    lines += ["", "## Targets", "", "| plant | target | measured | result |", "|---|---|---|---|"]
    lines += [
        f"| {c['plant']} | {c['target']} | {c['measured']} | {c['result']} |"
        for c in doc["targets"]
    ]
    if "baseline" in doc:
        b = doc["baseline"]
        lines += [
            "",
            f"Solve time against the controller before issue 14 (`{b['command']}`, stored in "
            f"`{b['file']}`: its plain-spec run, the same scenario and seed, another moment's "
            "machine load):",
            "",
            "| plant | before: plain spec CPU ms median / p95 | now: economic spec | ratio median / p95 |",
            "|---|---|---|---|",
        ]
        for plant, d in plants.items():
            old, now = b["plain"].get(plant), d["results"]["twin"]
            if old is None:
                continue
            lines.append(
                f"| {plant} | {old['cpu_ms_median']:.1f} / {old['cpu_ms_p95']:.1f} | "
                f"{now['cpu_ms_median']:.1f} / {now['cpu_ms_p95']:.1f} | "
                f"{now['cpu_ms_median'] / old['cpu_ms_median']:.2f} / "
                f"{now['cpu_ms_p95'] / old['cpu_ms_p95']:.2f} |"
            )
    for plant, d in plants.items():
        sc, r = d["scenario"], d["results"]
        changes = "; ".join(
            f"{tag}: " + ", ".join(f"{k} {v}" for k, v in ch.items())
            for tag, ch in d["changes"].items()
        )
        lines += [
            "",
            f"## {plant}",
            "",
            f"{d['economics']}. Spec changes (every CV's setpoint dropped): {changes}.",
            "",
            f"{sc['steps']} samples ({sc['minutes']:.0f} min); unmeasured {sc['disturbance']} ramps to "
            f"{sc['drift_to']:g} by step {round(0.45 * sc['steps'])}, steps to {sc['step_to']:g} at "
            f"{sc['step_at']} and holds; final stretch the last {sc['final_steps']} samples. Twin: "
            f"`{d['twin']}`, H = {d['horizon']}; oracle RK4 substeps {d['oracle_substeps']}.",
            "",
            f"- true optimum at the nominal disturbance: {d['optimum_nominal']['text']} "
            f"(KKT residual {d['optimum_nominal']['kkt_residual']:.1e})",
            f"- true optimum in the final stretch ({_kv(d['optimum_final']['disturbance'])}): "
            f"{d['optimum_final']['text']} (KKT residual {d['optimum_final']['kkt_residual']:.1e}); "
            f"a gap of {GAP_PCT:g} % is worth {_sigmas(d['optimum_final'], GAP_PCT)} of the binding "
            "CVs' measurement noise at their shadow prices",
        ]
        for name in ("twin", "oracle", "plain"):
            v = r[name]
            extra = ""
            if v["predicted_cost_rate"] is not None:
                extra += f"; predicted cost rate {v['predicted_cost_rate']:.4g} $/h"
            if v["targets"]:
                extra += f"; targets {_kv(v['targets'])}"
            if v["constraints"]:
                extra += f"; constraints: {', '.join(v['constraints'])}"
            lines.append(
                f"- {name}: J {v['cost_rate']:.4g} $/h (MVs held at nominal: {v['hold_cost_rate']:.4g}); "
                f"final {_kv(v['final_values'])}; violation {v['violation']:.4f} (final stretch "
                f"{v['violation_final']:.4f}); trips {v['trips']}{extra}"
                + (f"; first failure: {v['first_failure']}" if v["failures"] else "")
            )
    return "\n".join(lines) + "\n"


def _sigmas(opt: dict[str, Any], pct: float) -> str:
    worth = opt.get("noise_worth") or 0.0
    return f"{pct / 100 * abs(opt['cost_rate']) / worth:.1f} sigma" if worth > 0 else "n/a"


def _kv(d: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.4g}" for k, v in d.items())
