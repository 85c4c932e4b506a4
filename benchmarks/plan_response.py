"""The twin's response to MV steps over its horizon against the plant's own (closed-loop study).

The controller plans on the twin's response to its moves over the horizon, not on the steady
state alone. A twin whose response is too small early on, or jagged from one step to the next,
leads the MPC to move more than the plant needs. For a continuous zoo plant and each training
seed this loads the twin the closed-loop benchmark trained (``--models DIR/<plant>-seed<s>``)
and, from the noise-free steady state at the MVs of the scenario's last setpoint, compares the
CVs' responses ``[H, n_cv]`` to a +-5 % step of each MV (per MV span, as
:mod:`benchmarks.steady_gains` reads them) of:

- **plant**: the noise-free plant;
- **twin**: the twin as the controller sees it (for a stacked twin, the combination);
- **parts**: each stacked part alone.

Per response it prints, over the MV-CV pairs the plant moves (true response above 5 % of the
CV's largest): ``err`` the root-mean-square error of the curve over the horizon relative to the
true curve's largest value; ``early`` the twin's mean response over the first quarter of the
horizon over the plant's (1 = right, below 1 = too slow or small, which a controller answers by
moving more); ``rough`` the mean absolute second difference of the curve relative to its
largest value (a smooth first-order response has about 1/H). With ``--runs DIR`` it adds each
seed's closed-loop move and tracking terms over the oracle's from the benchmark's run files.

    .venv/bin/python benchmarks/plan_response.py --plants zoo-8,zoo-9 --seeds 1,2,3 \
        --models /tmp/twins-dev --runs /tmp/base-dev --out DIR
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.control_zoo import BATCH, SteadyMap, zoo_design  # noqa: E402
from benchmarks.steady_gains import each_part, plant_curves, steady_row, twin_curves  # noqa: E402
from connectors.sim.plants import make_plant  # noqa: E402
from twin.model.twin import Twin  # noqa: E402

MOVED = 0.05
"""a pair counts when its true response reaches this fraction of its CV's largest response"""


def measures(curves: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """``err``, ``early`` and ``rough`` (module docstring) of ``curves`` against ``true``, both
    ``[n_mv, H, n_cv]``, averaged over the pairs the plant moves."""
    peak = np.abs(true).max(axis=1)  # [n_mv, n_cv]
    cv_peak = peak.max(axis=0, keepdims=True)
    pairs = peak >= MOVED * np.maximum(cv_peak, 1e-12)
    q = max(1, true.shape[1] // 4)
    err = np.sqrt(((curves - true) ** 2).mean(axis=1)) / np.maximum(peak, 1e-12)
    early = curves[:, :q].mean(axis=1) / np.where(pairs, true[:, :q].mean(axis=1), 1.0)
    own_peak = np.maximum(np.abs(curves).max(axis=1), 1e-12)
    rough = np.abs(np.diff(curves, 2, axis=1)).mean(axis=1) / own_peak
    return {
        "err": float(err[pairs].mean()),
        "early": float(np.median(early[pairs])),
        "rough": float(rough[pairs].mean()),
    }


def noise_gain(twin: Twin, row: np.ndarray, sigma: np.ndarray, draws: int = 64) -> float:
    """How much sensor noise in the window moves the forecast: the std over ``draws`` windows of
    the steady state with the plant's sensor noise ``sigma [n_tags]`` added, of each CV's
    forecast (MVs held), over the horizon's steps, relative to the CV's own sensor noise, the
    median over the CVs. The true plant's forecast from its state does not move at all; a twin
    that reads noise as plant movement passes it to the plan."""
    rng = np.random.default_rng(0)
    cvs = [j for j, t in enumerate(twin.spec.tags) if t.role == "cv"]
    past = row[None, None, :] + sigma[None, None, :] * rng.standard_normal(
        (draws, twin.window, len(row))
    )
    mv = [j for j, t in enumerate(twin.spec.tags) if t.role == "mv"]
    past[..., mv] = row[mv]  # the MVs are the values applied, not measured
    held = np.tile(row[mv], (draws, twin.horizon, 1))
    with torch.no_grad():
        mean, _ = twin.torch_rollout(
            torch.as_tensor(twin.normalizer.norm(past), dtype=torch.float32),
            torch.as_tensor(held, dtype=torch.float32),
        )
    std = mean.numpy()[..., cvs].std(axis=0).mean(axis=0)  # [n_cv]
    return float(np.median(std / np.maximum(sigma[cvs], 1e-12)))


def run_terms(runs: Path | None, plant: str, seed: int) -> str:
    """``move x.xx track x.xx`` over the oracle's, from the closed-loop run file, if there."""
    f = None if runs is None else runs / "runs" / f"{plant}-seed{seed}.json"
    if f is None or not f.is_file():
        return ""
    r = json.loads(f.read_text())["results"]
    move = r["twin"]["J_move"] / max(r["oracle"]["J_move"], 1e-12)
    track = r["twin"]["J_track"] / max(r["oracle"]["J_track"], 1e-12)
    return f"  | closed loop: move {move:.2f} track {track:.2f}"


def fmt(m: dict[str, float]) -> str:
    return (
        f"err {m['err']:.2f} early {m['early']:.2f} rough {m['rough']:.3f} "
        f"noise gain {m['noise']:.2f}"
    )


def study(plant: str, seeds: list[int], models: Path, runs: Path | None) -> dict[str, Any]:
    ss = SteadyMap(plant)
    spec = ss.plant.spec
    design = zoo_design(plant)
    u = np.array([design.mv_points[-1][t.name] for t in spec.mvs])
    span = np.array([t.hi - t.lo for t in spec.mvs])
    row = steady_row(ss, u)
    noisy = make_plant(plant)
    table = getattr(noisy, "sensor_noise", None) or noisy.measurement_noise
    sigma = np.array([table.get(t.name, 0.0) for t in spec.tags])
    out: dict[str, Any] = {"plant": plant, "u": u.tolist(), "seeds": {}}
    true = None
    for seed in seeds:
        saved = models / f"{plant}-seed{seed}"
        if not (saved / "model.pt").is_file():
            print(f"{plant} seed {seed}: no twin in {saved}")
            continue
        twin = Twin.load(saved, spec=spec)
        if true is None:
            true = np.stack(plant_curves(ss, u, span, twin.horizon))
        whole = measures(np.stack(twin_curves(twin, row, u, span)), true)
        whole["noise"] = noise_gain(twin, row, sigma)
        print(f"{plant} seed {seed}: twin  {fmt(whole)}{run_terms(runs, plant, seed)}")
        res: dict[str, Any] = {"twin": whole, "parts": {}}
        for name in each_part(twin):
            m = measures(np.stack(twin_curves(twin, row, u, span)), true)
            m["noise"] = noise_gain(twin, row, sigma)
            res["parts"][name] = m
            print(f"    part {name:28s} {fmt(m)}")
        out["seeds"][seed] = res
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--plants", required=True, help="comma-separated continuous zoo plants")
    p.add_argument("--seeds", default="1,2,3")
    p.add_argument("--models", type=Path, required=True, help="twins in DIR/<plant>-seed<s>")
    p.add_argument("--runs", type=Path, help="the closed-loop benchmark's --out folder")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    args.out.mkdir(parents=True, exist_ok=True)
    for plant in args.plants.split(","):
        if plant in BATCH:
            print(f"{plant}: a batch plant has no steady state to step from; skipped")
            continue
        result = study(plant, seeds, args.models, args.runs)
        (args.out / f"{plant}.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
