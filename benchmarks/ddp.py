"""Training with torchrun, measured: the CSTR twin on one process (three seeds) vs N processes.

Records the CSTR's history once, then trains the same twin with the same command line, once as
one process per seed and once under ``torchrun --nproc-per-node N`` (gloo on CPU, NCCL with
``--device cuda``), and prints for each run the validation NRMSE at H (mean over CVs), the
optimiser steps per second and the training windows per second (steps x batch x members; the
batch is global, shared by the processes). Target (issue 16): the N-process NRMSE lies within the spread (min..max) of the
single-process seeds. Writes ``benchmarks/results/ddp.json``.

    .venv/bin/python benchmarks/ddp.py                           # 24 h of history, 2 min budget
    .venv/bin/python benchmarks/ddp.py --hours 2 --minutes 0.1   # a quick check that it runs
    .venv/bin/python benchmarks/ddp.py --device cuda --nproc 1   # the same training on a GPU
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from connectors.sim.plants import make_plant  # noqa: E402
from connectors.sim.record import record  # noqa: E402

START = datetime(2026, 1, 1, tzinfo=UTC)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def train(hist: Path, out: Path, seed: int, nproc: int, args: argparse.Namespace) -> dict[str, Any]:
    """Run ``twin train`` (under torchrun when ``nproc > 1``); the figures from its metrics."""
    cmd = [sys.executable]
    if nproc > 1:
        cmd += ["-m", "torch.distributed.run", "--nproc-per-node", str(nproc)]
        cmd += ["--master-addr", "127.0.0.1", "--master-port", str(_free_port())]
    cmd += ["-m", "twin", "train", "--spec", "cstr", "--historian", str(hist), "--out", str(out)]
    cmd += ["--minutes", str(args.minutes), "--seed", str(seed)]
    if args.device:
        cmd += ["--device", args.device]
    t0 = time.perf_counter()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-4000:]}")
    m = json.loads((out / "metrics.json").read_text())
    cfg = json.loads((out / "config.json").read_text())
    return {
        "processes": m["training"].get("processes", 1),
        "seed": seed,
        **training_figures(m, cfg["horizon"], cfg["batch"], cfg["ensemble"]),  # global batch
        "wall_seconds": round(wall, 1),
        "kept": (m.get("linear_init") or {}).get("kept", "trained"),  # or the linear start
    }


def training_figures(
    metrics: dict[str, Any], horizon: int, batch: int, ensemble: int
) -> dict[str, Any]:
    """From a twin's metrics: validation NRMSE at H (mean over CVs), steps, epochs, training
    seconds, why it stopped, optimiser steps/s and training windows/s (steps x batch x
    members)."""
    tr = metrics["training"]
    nrmse = metrics["nrmse"][str(horizon)]
    steps_s = tr["steps"] / max(tr["seconds"], 1e-9)
    return {
        "nrmse_H": round(sum(nrmse.values()) / len(nrmse), 5),
        "steps": tr["steps"],
        "epochs": tr["epochs"],
        "train_seconds": tr["seconds"],
        "steps_per_s": round(steps_s, 2),
        "windows_per_s": round(steps_s * batch * ensemble),
        "stopped": tr["stopped"],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--hours", type=float, default=24.0, help="CSTR history to record")
    p.add_argument("--minutes", type=float, default=2.0, help="training budget of each run")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="single-process seeds")
    p.add_argument("--nproc", type=int, default=2, help="torchrun processes")
    p.add_argument(
        "--ddp-seeds", type=int, nargs="+", help="seeds of the N-process runs (default: the first)"
    )
    p.add_argument("--device", help="cpu, cuda or auto (twin train's default)")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "ddp.json")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="ddp-bench-") as tmp:
        hist = Path(tmp) / "hist"
        record(make_plant("cstr", seed=3), args.hours, hist, seed=3, start=START, progress=False)
        runs = []
        for seed in args.seeds:
            runs.append(train(hist, Path(tmp) / f"single-{seed}", seed, 1, args))
            print(json.dumps(runs[-1]), flush=True)
        for seed in args.ddp_seeds or args.seeds[:1]:
            runs.append(train(hist, Path(tmp) / f"ddp-{seed}", seed, args.nproc, args))
            print(json.dumps(runs[-1]), flush=True)
    single = [r for r in runs if r["processes"] == 1]
    multi = [r for r in runs if r["processes"] > 1]
    lo, hi = min(r["nrmse_H"] for r in single), max(r["nrmse_H"] for r in single)
    mean_sps = sum(r["steps_per_s"] for r in single) / len(single)
    mean_wps = sum(r["windows_per_s"] for r in single) / len(single)
    ddp = {k: sum(r[k] for r in multi) / len(multi) for k in ("nrmse_H", "steps_per_s")}
    ddp["windows_per_s"] = sum(r["windows_per_s"] for r in multi) / len(multi)
    within = lo <= ddp["nrmse_H"] <= hi
    print(f"\nCSTR, {args.hours:g} h of history, budget {args.minutes:g} min per run")
    print(f"{'run':18s} {'NRMSE@H':>8s} {'steps/s':>8s} {'windows/s':>10s} {'epochs':>7s} kept")
    for r in runs:
        name = f"{r['processes']} proc, seed {r['seed']}"
        print(
            f"{name:18s} {r['nrmse_H']:8.4f} {r['steps_per_s']:8.2f} {r['windows_per_s']:10d} "
            f"{r['epochs']:7d} {r['kept']}"
        )
    print(
        f"target: {args.nproc}-process NRMSE (mean of {len(multi)}) {ddp['nrmse_H']:.4f} "
        "within the single-process "
        f"spread {lo:.4f}..{hi:.4f}: {'met' if within else 'NOT met'}; steps/s "
        f"{ddp['steps_per_s'] / mean_sps:.2f}x, windows/s {ddp['windows_per_s'] / mean_wps:.2f}x "
        "one process"
    )
    summary = {
        "hours": args.hours,
        "minutes": args.minutes,
        "nproc": args.nproc,
        "device": args.device or "auto",
        "runs": runs,
        "single_spread": [lo, hi],
        "multi_nrmse_H": [r["nrmse_H"] for r in multi],
        "target_met": within,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
