"""The evaluation report as files: ``report.json``, ``report.md`` and ``forecast.png``.

The report dict is :func:`twin.evaluate.report.evaluate`'s; nothing here computes a score.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


def write_report(report: dict[str, Any], out: str | Path) -> list[Path]:
    """Write ``report.json``, ``report.md`` and ``forecast.png`` into ``out``; their paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "report.json", out / "report.md", out / "forecast.png"]
    paths[0].write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    _figure(report, paths[2])
    paths[1].write_text(markdown(report, figure=paths[2].name), encoding="utf-8")
    log.info("report written to %s", out)
    return paths


def markdown(report: dict[str, Any], figure: str | None = None) -> str:
    """The report as Markdown: NRMSE tables, per-tag band coverage, skipped baselines, notes."""
    steps = [str(s) for s in report["steps"]]
    head = "| model | " + " | ".join(f"k={s}" for s in steps) + " |"
    rule = "|---" * (len(steps) + 1) + "|"
    test = report["test"]
    lines = [
        f"# Forecast evaluation: {report['plant']}",
        "",
        f"Test data {test['start']} .. {test['end']} ({test['samples']} samples, "
        f"{test['origins']} forecast origins); window {report['window']}, horizon "
        f"{report['horizon']} samples of {report['sample_period_s']:g} s. {report['scale']}.",
        "",
        "## NRMSE, mean over CVs (lower is better)",
        "",
        head,
        rule,
    ]
    for name, row in report["summary"]["nrmse"].items():
        lines.append(f"| {name} | " + " | ".join(f"{row[s]:.3f}" for s in steps) + " |")
    skipped = report.get("skipped", {})
    if skipped:
        lines += ["", "Skipped (could not be fitted):", ""]
        lines += [f"- {name}: {reason}" for name, reason in skipped.items()]
    lines += ["", *_coverage_table(report)]
    lines += [
        "",
        "## Twin band: mean width",
        "",
        "| tag | " + " | ".join(f"k={s}" for s in steps) + " |",
        rule,
    ]
    for tag, d in report["tags"].items():
        cells = [f"{d['band_width'][s]:.3g} {d['unit']}" for s in steps]
        lines.append(f"| {tag} | " + " | ".join(cells) + " |")
    for tag, d in report["tags"].items():
        lines += ["", f"## {tag} [{d['unit']}], NRMSE (std {d['std']:.4g})", "", head, rule]
        for name, row in d["nrmse"].items():
            lines.append(f"| {name} | " + " | ".join(f"{row[s]:.3f}" for s in steps) + " |")
    lines += ["", "## Models", ""]
    for name, m in report["models"].items():
        lines.append(f"- {name}: {m.get('describe', name)}, forecast {m['forecast_seconds']} s")
        lines += [f"  - {note}" for note in m.get("notes", [])]
    lines += [f"- {name}: skipped: {reason}" for name, reason in skipped.items()]
    if report["notes"]:
        lines += ["", "## Notes", "", *(f"- {n}" for n in report["notes"])]
    if figure:
        lines += ["", f"![forecast vs truth]({figure})", ""]
    return "\n".join(lines) + "\n"


def _coverage_table(report: dict[str, Any]) -> list[str]:
    """Per tag: coverage over all steps, at the report steps and its minimum; flags."""
    steps = [str(s) for s in report["steps"]]
    nominal = report["nominal_coverage"]
    lo, hi = report.get("coverage_range", (nominal - 0.05, nominal + 0.05))
    origins = report["test"]["origins"]
    se = (nominal * (1 - nominal) / max(origins, 1)) ** 0.5
    out = [
        f"## Twin band coverage per tag (nominal {nominal:.0%}, expected {lo:.0%}-{hi:.0%})",
        "",
        f"Cells outside the expected range are in bold. From {origins} forecast origins one "
        f"step's coverage has a sampling error of about ±{se:.0%} (more where origins overlap). "
        "'adapted': the band as the live loop adapts it from outcomes as they arrive, all steps, "
        "from one horizon after the test's start.",
        "",
        "| tag | all steps | "
        + " | ".join(f"k={s}" for s in steps)
        + " | min (step) | flag | adapted | adapted flag |",
        "|---" * (len(steps) + 6) + "|",
    ]

    def cell(v: float) -> str:
        if lo - 1e-9 <= v <= hi + 1e-9:
            return f"{v:.0%}"
        text = f"{v:.0%}"  # one decimal where rounding would land on the range's edge
        return f"**{v:.1%}**" if text in (f"{lo:.0%}", f"{hi:.0%}") else f"**{text}**"

    for tag, d in report["tags"].items():
        low = d["coverage_min"]
        cells = [cell(d["coverage_all_steps"]), *(cell(d["coverage"][s]) for s in steps)]
        cells += [f"{cell(low['value'])} (k={low['step']})", d["coverage_flag"] or ""]
        adapted = d.get("adaptive")  # reports written before adaptation was scored lack it
        cells += (
            [cell(adapted["coverage_all_steps"]), adapted["coverage_flag"] or ""]
            if adapted
            else ["", ""]
        )
        out.append(f"| {tag} | " + " | ".join(cells) + " |")
    return out


def _figure(report: dict[str, Any], path: Path) -> None:
    """Per CV, for a few origins: past, truth, the twin with its band, the best baseline at H."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    tags = list(report["tags"])
    examples = report["examples"]
    fig, axes = plt.subplots(
        len(tags),
        max(len(examples), 1),
        figsize=(4.2 * max(len(examples), 1), 2.4 * len(tags)),
        squeeze=False,
    )
    pct = f"{report['nominal_coverage']:.0%}"
    h = str(report["horizon"])
    others = {m: row[h] for m, row in report["summary"]["nrmse"].items() if m != "twin"}
    best = min(others, key=others.__getitem__) if others else None  # best baseline at H
    for col, ex in enumerate(examples):
        for row, tag in enumerate(tags):
            ax = axes[row][col]
            w = len(ex["past"][tag])
            k_past, k_fut = np.arange(-w + 1, 1), np.arange(1, len(ex["truth"][tag]) + 1)
            ax.plot(k_past, ex["past"][tag], color="0.3", lw=1)
            ax.plot(k_fut, ex["truth"][tag], color="black", lw=1.2, label="truth")
            ax.fill_between(
                k_fut,
                ex["lower"][tag],
                ex["upper"][tag],
                color="C0",
                alpha=0.25,
                label=f"{pct} band",
            )
            ax.plot(k_fut, ex["forecasts"]["twin"][tag], color="C0", lw=1.2, label="twin")
            if best:
                ax.plot(k_fut, ex["forecasts"][best][tag], color="C3", lw=1, ls="--", label=best)
            ax.axvline(0, color="0.6", lw=0.8, ls=":")
            if row == 0:
                ax.set_title(ex["origin"][:19], fontsize=8)
            if col == 0:
                ax.set_ylabel(f"{tag} [{report['tags'][tag]['unit']}]", fontsize=8)
            ax.tick_params(labelsize=7)
    axes[-1][0].set_xlabel("samples from origin", fontsize=8)
    axes[0][0].legend(fontsize=7, loc="best")
    fig.suptitle(f"{report['plant']}: forecast vs truth", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
