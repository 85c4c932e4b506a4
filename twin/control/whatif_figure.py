"""The what-if figure (``twin whatif --out FILE.png``): one panel per CV and MV, every scenario.

matplotlib is imported on the first call, with its non-interactive Agg backend, so that the
rest of the library (and ``twin --help``) does not load it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from twin.control.whatif import WhatIf
    from twin.spec import PlantSpec


def plot_whatif(result: WhatIf, spec: PlantSpec, path: Path) -> None:
    """One panel per CV and MV: each scenario's mean and band, CV setpoints dashed, the
    steady-state targets its controller ended at (its new optimum) dotted."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    tags = list(spec.cvs + spec.mvs)
    fig, axes = plt.subplots(len(tags), 1, figsize=(8, 2.3 * len(tags)), sharex=True, squeeze=False)
    pct = f"{result.forecasts[0].coverage:.0%}"
    targets = result.targets or ({},) * len(result.scenarios)
    for i, (sc, fc, sps, tg) in enumerate(
        zip(result.scenarios, result.forecasts, result.setpoint_paths, targets, strict=True)
    ):
        minutes = np.arange(1, fc.horizon + 1) * spec.sample_period / 60.0
        color = f"C{i % 10}"
        for ax, t in zip(axes[:, 0], tags, strict=True):
            mean, lower, upper = fc.tag(t.name)
            if t.role == "cv":
                ax.fill_between(minutes, lower, upper, color=color, alpha=0.18, lw=0)
                ax.plot(minutes, sps[t.name], color=color, lw=1, ls="--", drawstyle="steps-post")
            if t.name in tg and np.isfinite(tg[t.name]):
                ax.axhline(tg[t.name], color=color, lw=1, ls=":")
            style = "steps-post" if t.role == "mv" else "default"
            ax.plot(minutes, mean, color=color, lw=1.5, label=sc.name, drawstyle=style)
            ax.set_ylabel(f"{t.name} [{t.unit}]", fontsize=8)
            ax.tick_params(labelsize=7)
    axes[0, 0].legend(
        fontsize=7,
        loc="best",
        title=f"mean, {pct} band, setpoint --, new target ..",
        title_fontsize=7,
    )
    axes[-1, 0].set_xlabel("minutes from now", fontsize=8)
    fig.suptitle(f"{spec.name}: what-if", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
