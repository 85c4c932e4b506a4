"""Two stored zoo-mode control runs side by side, paired per plant and training seed.

``control.py compare BEFORE AFTER`` reads ``BEFORE/runs/*.json`` and ``AFTER/runs/*.json``
(``control.py run --out``) and prints, for each run stored in both, J_twin and J_oracle before
and after, their ratio, and whether the twin loop ended without offset; then the geometric
means of J after / J before, the median and the largest ratio, and on how many runs the twin's
J went down. Meant for runs on the same twins (``--models DIR``), so that the difference is the
controller's, not the training's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np


def _load(folder: Path) -> dict[str, dict[str, Any]]:
    runs = {}
    for path in sorted((folder / "runs").glob("*.json")):
        doc = json.loads(path.read_text(encoding="utf-8"))
        if doc.get("ratio") is not None:
            runs[path.stem] = doc
    return runs


def compare(before: Path, after: Path) -> str:
    """The markdown table and summary of the runs stored in both folders."""
    a, b = _load(before), _load(after)
    both = [k for k in a if k in b]
    if not both:
        raise SystemExit(f"no completed run is stored in both {before}/runs and {after}/runs")
    lines = [
        f"Paired runs: `{before}` (before) and `{after}` (after).",
        "",
        "| plant | seed | J_twin before | after | J_oracle before | after "
        "| J_twin / J_oracle before | after | twin offset-free before / after |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    rows = []
    for key in both:
        x, y = a[key], b[key]
        tx, ty = x["results"]["twin"], y["results"]["twin"]
        ox, oy = x["results"]["oracle"], y["results"]["oracle"]
        rows.append([tx["J"], ty["J"], ox["J"], oy["J"], x["ratio"], y["ratio"]])
        lines.append(
            f"| {x['plant']} | {x['seed']} | {tx['J']:.4g} | {ty['J']:.4g} | {ox['J']:.4g} "
            f"| {oy['J']:.4g} | {x['ratio']:.3f} | {y['ratio']:.3f} "
            f"| {tx['offset_ok']} / {ty['offset_ok']} |"
        )
    r = np.array(rows)

    def gmean(v: np.ndarray) -> float:
        return float(np.exp(np.mean(np.log(v))))

    lines += [
        "",
        f"{len(r)} runs. Geometric mean of J after / before: twin **{gmean(r[:, 1] / r[:, 0]):.3f}**, "
        f"oracle **{gmean(r[:, 3] / r[:, 2]):.3f}**. J_twin / J_oracle: median "
        f"{np.median(r[:, 4]):.3f} -> {np.median(r[:, 5]):.3f}, largest {r[:, 4].max():.3f} -> "
        f"{r[:, 5].max():.3f}. The twin's J went down on {int((r[:, 1] < r[:, 0]).sum())} of "
        f"{len(r)} runs.",
    ]
    return "\n".join(lines) + "\n"
