"""How good could any forecaster be on the shifted test? The true model run from the true state.

Issue 12 asks the twin for at most 0.8x the best baseline's NRMSE at H on plants with a
nonlinearity. Whether that is within reach of *any* forecaster depends on how much of the
error at H is unforecastable: drifts and disturbances that start after the forecast origin,
and sensor noise. This script measures it. For each stored ``generalise.py`` run it
re-records that run's shifted test stretch (the same plant, seeds and excitation, so the same
samples), keeping the plant's full state at every sample, and forecasts every origin the
report scored with the plant's own equations (``torch_step``/``torch_outputs``, batched):

- **bound**: from the true state (delay lines, unmeasured drifts and all) along the recorded MV
  plan, with the future DVs and unmeasured drifts unknown: either held at their values at the
  origin (``held``, as the twin holds its DVs) or on their expected paths (``expected``: each
  drift is an Ornstein-Uhlenbeck process and decays towards its mean), whichever scores
  better at each step. This answers the twin's question with perfect knowledge of the plant
  and of its present. It is the optimal forecast only approximately (the plant's response to
  the drifts' mean path, not the mean of its responses to their paths), but no forecaster
  given the twin's inputs can expect to do much better.
- **clairvoyant**: the same, with the future DVs and drifts as they happened; only process
  and sensor noise is left. It says how much of the bound's error is the future disturbances.

Both are scored as ``twin.evaluate.report`` scores the twin (NRMSE over the same origins,
scaled by each tag's std over the test); persistence is scored again beside them and must match
the stored run's (it checks that the origins and scale are the same). Only plants with a
differentiable model (``TaggedPlant``: the zoo, ph, recycle, fedbatch) are measured.

    .venv/bin/python benchmarks/forecast_bound.py run RUNS_DIR [RUNS_DIR ...] --out DIR
    .venv/bin/python benchmarks/forecast_bound.py report --out DIR
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from datetime import timedelta
from pathlib import Path
from statistics import median
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.generalise import TEST_HOURS, test_plant, test_start  # noqa: E402
from connectors.sim.plants import make_plant  # noqa: E402
from connectors.sim.record import record  # noqa: E402
from connectors.sim.tagged import TaggedPlant  # noqa: E402
from twin.evaluate.report import forecast_cases, nrmse  # noqa: E402
from twin.model.dataset import cv_columns, frame_to_array, frame_ts  # noqa: E402
from twin.store.historian import Historian  # noqa: E402

BASELINES = ("persistence", "arx", "subspace", "gru")  # the report's baselines (not iarx)
MAX_ORIGINS = 1500  # as generalise.py scores


def _recorded(plant: str, seed: int, hours: float, folder: Path) -> tuple[Any, dict[str, Any]]:
    """The run's shifted test as a frame, and the plant's state at every sample."""
    sim, test_seed, excitation = test_plant(plant, seed, shifted=True)
    if not isinstance(sim, TaggedPlant):
        raise TypeError(f"{plant}: no batched torch model (not a TaggedPlant)")
    states: dict[str, list[np.ndarray]] = {"x": [], "u": [], "d": [], "p": []}
    step = sim.step

    def step_and_keep(mv: dict[str, float] | None = None) -> dict[str, float]:
        values = step(mv)
        for key in states:
            states[key].append(np.array(getattr(sim, key), dtype=np.float64))
        return values

    sim.step = step_and_keep  # type: ignore[method-assign]
    start = test_start(hours)
    out = folder / f"{plant}-{seed}-shifted"
    record(sim, TEST_HOURS, out, seed=test_seed, start=start, excitation=excitation, progress=False)
    frame = Historian(out).frame(sim.spec, start, start + timedelta(hours=TEST_HOURS))
    arrays = {k: np.stack(v) for k, v in states.items()}
    if frame.height != len(arrays["x"]):  # row i of the frame must be the state after step i
        raise RuntimeError(f"{plant}: {frame.height} rows read back, {len(arrays['x'])} recorded")
    return frame, {"sim": sim, **arrays}


def _rollout(sim: TaggedPlant, x: np.ndarray, u: np.ndarray, d: np.ndarray, p: np.ndarray) -> Any:
    """Tags ``[N, H, n_tags]`` along the plan ``u [N, H, n_mv]``, DVs ``d`` and drifts ``p``
    ``[N, H, .]``, from states ``x [N, n_x]``."""
    t = lambda a: torch.as_tensor(a, dtype=torch.float64)  # noqa: E731
    xs, out = t(x), []
    with torch.no_grad():
        for k in range(u.shape[1]):
            uk, dk, pk = t(u[:, k]), t(d[:, k]), t(p[:, k])
            xs = sim.torch_step(xs, uk, dk, pk)
            out.append(sim.torch_outputs(xs, uk, dk, pk))
    return torch.stack(out, 1).numpy()


def _expected(
    sim: TaggedPlant, rec: dict[str, Any], rows: np.ndarray, h: int
) -> tuple[np.ndarray, np.ndarray]:
    """DVs and drifts ``[N, H, .]`` along their expected paths from the origin: each drifting
    one (an OU process) decays towards its mean, ``m + a^(k+1) (v - m)``; the others held."""
    decay = np.arange(1, h + 1)[None, :]
    out = []
    for key, drifts in (("d", sim._d_drift), ("p", sim._p_drift)):
        path = np.repeat(rec[key][rows][:, None], h, axis=1)
        for i, ou in enumerate(drifts):  # drift i moves entry i (SimPlant.step)
            a = np.exp(-sim.sample_period / ou.tau) ** decay
            path[..., i] = ou.mean + a * (path[..., i] - ou.mean)
        out.append(path)
    return out[0], out[1]


def bound_one(run: dict[str, Any], folder: Path) -> dict[str, Any]:
    """The bound and the clairvoyant forecast's NRMSE on one stored run's shifted test."""
    plant, seed, hours = run["plant"], run["seed"], run["hours"]
    frame, rec = _recorded(plant, seed, hours, folder)
    sim, spec = rec["sim"], rec["sim"].spec
    w, h = run["window"], run["horizon"]
    past, future, origins = forecast_cases(frame, spec, w, h, MAX_ORIGINS)
    rows = np.searchsorted(frame_ts(frame), origins)  # an origin's row: the state after its step
    ahead = rows[:, None] + 1 + np.arange(h)[None, :]
    cv = cv_columns(spec)
    values, _ = frame_to_array(frame, spec)
    std = np.nanstd(values, axis=0)
    scale = np.where(std > 1e-12, std, np.array([t.span for t in spec.tags]))
    held = lambda a: np.repeat(a[rows][:, None], h, axis=1)  # noqa: E731
    d_exp, p_exp = _expected(sim, rec, rows, h)
    preds = {
        "held": _rollout(sim, rec["x"][rows], rec["u"][ahead], held(rec["d"]), held(rec["p"])),
        "expected": _rollout(sim, rec["x"][rows], rec["u"][ahead], d_exp, p_exp),
        "clairvoyant": _rollout(
            sim, rec["x"][rows], rec["u"][ahead], rec["d"][ahead], rec["p"][ahead]
        ),
        "persistence": np.repeat(past[:, -1:], h, axis=1),
    }
    steps = [str(s) for s in run["steps"]]
    scores = {
        name: {s: round(float(e[int(s) - 1].mean()), 5) for s in steps}
        for name, p in preds.items()
        for e in [nrmse(p[..., cv], future[..., cv], scale[cv])]
    }
    scores["bound"] = {s: min(scores["held"][s], scores["expected"][s]) for s in steps}
    return {
        "plant": plant,
        "seed": seed,
        "hours": hours,
        "nonlinear": run["nonlinear"],
        "horizon": h,
        "origins": len(rows),
        "nrmse": scores,
        "stored": run["nrmse"],
    }


def cmd_run(args: argparse.Namespace) -> int:
    runs = [
        json.loads(f.read_text(encoding="utf-8"))
        for folder in args.runs
        for f in sorted(Path(folder).glob("*.json"))
    ]
    runs = [r for r in runs if "refused" not in r]
    (args.out / "runs").mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    for run in tqdm(runs, desc="forecast bound", unit="run"):
        path = args.out / "runs" / f"{run['plant']}-s{run['seed']}-{run['hours']:g}h.json"
        if path.exists():
            continue
        if not isinstance(make_plant(run["plant"]), TaggedPlant):
            tqdm.write(f"{run['plant']}: skipped, no batched torch model (not a TaggedPlant)")
            continue
        with tempfile.TemporaryDirectory(prefix="bound-") as tmp:
            res = bound_one(run, Path(tmp))
        path.write_text(json.dumps(res, indent=1) + "\n", encoding="utf-8")
        h = str(res["horizon"])
        tqdm.write(
            f"{run['plant']} {run['hours']:g} h: at H bound {res['nrmse']['bound'][h]:.3f}, "
            f"twin {run['nrmse']['twin'][h]:.3f}, persistence {res['nrmse']['persistence'][h]:.3f}"
            f" (stored {run['nrmse']['persistence'][h]:.3f})"
        )
    return 0


def _best(stored: dict[str, dict[str, float]], step: str) -> tuple[str, float]:
    return min(((b, stored[b][step]) for b in BASELINES if b in stored), key=lambda x: x[1])


def report(results: list[dict[str, Any]]) -> str:
    """The bound against the twin and the best baseline, per plant and over plants."""
    lines = []
    for hours in sorted({r["hours"] for r in results}):
        rs = sorted((r for r in results if r["hours"] == hours), key=lambda r: r["plant"])
        steps = list(rs[0]["nrmse"]["bound"])
        head = " | ".join(f"k={'H' if s == steps[-1] else s}" for s in steps)
        lines += [
            f"## {hours:g} h of training history ({len(rs)} runs)",
            "",
            "Each cell: twin / bound, both divided by the best baseline at that step "
            "(lower is better; the target asks the twin for <= 0.80 at H on nonlinear plants).",
            "",
            f"| plant | nonlinear | {head} | clairvoyant / best at H | persistence check |",
            "|---|---|" + "---|" * len(steps) + "---|---|",
        ]
        ratio: dict[str, dict[str, list[float]]] = {"twin": {}, "bound": {}}
        for r in rs:
            cells = []
            for s in steps:
                _, best = _best(r["stored"], s)
                t, b = r["stored"]["twin"][s] / best, r["nrmse"]["bound"][s] / best
                ratio["twin"].setdefault(s, []).append(t)
                ratio["bound"].setdefault(s, []).append(b)
                cells.append(f"{t:.2f} / {b:.2f}")
            hs = steps[-1]
            clair = r["nrmse"]["clairvoyant"][hs] / _best(r["stored"], hs)[1]
            check = abs(r["nrmse"]["persistence"][hs] - r["stored"]["persistence"][hs])
            nl = "yes" if r["nonlinear"] else "no"
            ok = "ok" if check < 1e-3 else f"off by {check:.4f}"
            lines.append(f"| {r['plant']} | {nl} | {' | '.join(cells)} | {clair:.2f} | {ok} |")
        hs = steps[-1]
        nl = [i for i, r in enumerate(rs) if r["nonlinear"]]
        for who in ("twin", "bound"):
            at_h = [ratio[who][hs][i] for i in nl]
            med = " / ".join(f"{median(ratio[who][s]):.2f}" for s in steps)
            lines.append(
                f"\n- {who} / best baseline, median over all plants at k = "
                f"{', '.join(steps[:-1])}, H: {med}; nonlinear plants at H: median "
                f"{median(at_h):.2f}, {sum(x <= 0.8 for x in at_h)} of {len(at_h)} at or below 0.80"
            )
        gained = [(1 - ratio["twin"][hs][i]) / (1 - ratio["bound"][hs][i]) for i in nl]
        lines.append(
            f"- share of the possible gain over the best baseline at H that the twin takes, "
            f"(1 - twin) / (1 - bound), nonlinear plants: median {median(gained):.2f}"
        )
        lines.append("")
    return "\n".join(lines)


def cmd_report(args: argparse.Namespace) -> int:
    results = [json.loads(f.read_text("utf-8")) for f in sorted((args.out / "runs").glob("*.json"))]
    text = report(results)
    (args.out / "bound.md").write_text(text, encoding="utf-8")
    print(text)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="measure the bound for stored generalise.py runs")
    r.add_argument("runs", nargs="+", type=Path, help="folders of generalise.py run JSONs")
    r.set_defaults(func=cmd_run)
    s = sub.add_parser("report", help="tables from the measured bounds")
    s.set_defaults(func=cmd_report)
    for q in (r, s):
        q.add_argument("--out", type=Path, required=True, help="folder of the bound's results")
    args = p.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
