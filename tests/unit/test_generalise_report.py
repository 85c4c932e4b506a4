"""``benchmarks/generalise.py compare``: the twin's NRMSE of one results folder over another's."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.generalise_report import compare


def _run(folder: Path, name: str, twin: list[float], refused: bool = False) -> None:
    (folder / "runs").mkdir(parents=True, exist_ok=True)
    run: dict[str, object] = {"plant": name, "seed": 1, "hours": 24.0, "horizon": 30}
    if refused:
        run["refused"] = "too little history"
    else:
        run["nrmse"] = {"twin": dict(zip(("1", "5", "10", "30"), twin, strict=True))}
    (folder / "runs" / f"{name}-s1-24h.json").write_text(json.dumps(run), encoding="utf-8")


def test_compare_pairs_runs_by_name_and_takes_the_geometric_mean(tmp_path: Path) -> None:
    before, after = tmp_path / "before", tmp_path / "after"
    _run(before, "a", [0.1, 0.2, 0.4, 0.8])
    _run(after, "a", [0.05, 0.2, 0.4, 0.8])  # half at k=1
    _run(before, "b", [0.1, 0.2, 0.4, 0.8])
    _run(after, "b", [0.2, 0.2, 0.4, 0.4])  # twice at k=1, half at H
    _run(after, "c", [0.1, 0.1, 0.1, 0.1])  # not in before: left out
    _run(before, "d", [0.1, 0.1, 0.1, 0.1])
    _run(after, "d", [], refused=True)  # refused in one: left out
    text = compare(before, after)
    assert "| a-s1-24h | 0.500 | 1.000 | 1.000 | 1.000 |" in text
    assert "| b-s1-24h | 2.000 | 1.000 | 1.000 | 0.500 |" in text
    assert "| geometric mean (2) | 1.000 | 1.000 | 1.000 | 0.707 |" in text
    assert "c-s1" not in text and "d-s1" not in text
    assert compare(before, tmp_path / "none").startswith("no runs in both")
