"""Training and forecasting speed of the twin on the CPU and on a CUDA GPU, on the same history.

Records one built-in plant's history once, then trains the twin in this process once per run
spec ``DEVICE[:THREADS[:BATCH]]`` (the same seed and budget), and prints for each run the
optimiser steps per second, the training windows per second (steps x batch x members), the
epochs reached, why training stopped, the validation NRMSE at H (mean over CVs) and the wall
time of the whole fit (identification, training, stack and calibration). Then it times the
trained model's rollout where a fitted twin serves (the CPU, whatever it trained on): as the
controller calls it (one window, with the gradient through the MV plan) and as a batch
forecast (256 windows, no gradient). A run that fails prints its error
and the others go on. Writes ``benchmarks/results/device-speed.json``.

    .venv/bin/python benchmarks/device_speed.py                                 # cpu:2 and cuda
    .venv/bin/python benchmarks/device_speed.py --runs cpu:1,cpu:2 --minutes 0.2  # no GPU here
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import traceback
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.ddp import training_figures  # noqa: E402
from connectors.sim.plants import make_plant  # noqa: E402
from connectors.sim.record import DEFAULT_START, record  # noqa: E402
from twin.model.network import TwinConfig  # noqa: E402
from twin.model.train import resolve_device  # noqa: E402
from twin.model.twin import Twin  # noqa: E402
from twin.store.historian import Historian  # noqa: E402


def parse_run(text: str) -> tuple[str, int, int]:
    """``cuda``, ``cpu:2`` or ``cuda:0:1024`` -> (device, threads, batch)."""
    parts = text.split(":")
    device = parts[0]
    threads = int(parts[1]) if len(parts) > 1 and parts[1] else 1
    batch = int(parts[2]) if len(parts) > 2 else TwinConfig.batch
    return device, threads, batch


def rollout_timing(twin: Twin, repeats: int) -> dict[str, float]:
    """Milliseconds per rollout where the fitted twin runs (the CPU): one window with the
    gradient wrt the plan (the controller's call), and 256 windows without."""
    n = len(twin.spec.tags)
    out = {}
    for name, batch, grad in (("plan_1_grad_ms", 1, True), ("forecast_256_ms", 256, False)):
        past = torch.randn(batch, twin.window, n)
        future = torch.randn(batch, twin.horizon, n, requires_grad=grad)
        times = []
        for i in range(repeats + 3):  # three warm-ups
            t0 = time.perf_counter()
            with torch.set_grad_enabled(grad):
                y = twin.model.rollout(past, future).y
                if grad:
                    y.square().mean().backward()
            if i >= 3:
                times.append(time.perf_counter() - t0)
        out[name] = round(1000 * float(np.median(times)), 3)
    return out


def one_run(spec_text: str, frame: Any, spec: Any, args: argparse.Namespace) -> dict[str, Any]:
    device, threads, batch = parse_run(spec_text)
    cfg = TwinConfig(
        seed=args.seed, minutes=args.minutes, device=device, threads=threads, batch=batch
    )
    t0 = time.perf_counter()
    twin = Twin.fit(spec, frame, cfg, progress=False)
    wall = time.perf_counter() - t0
    row = {
        "run": spec_text,
        "trained_on": str(resolve_device(device)),
        "served_on": str(next(twin.model.parameters()).device),  # a fitted twin serves on the CPU
        "gpu": torch.cuda.get_device_name(0) if device.startswith("cuda") else None,
        "threads": threads,
        "batch": batch,
        **training_figures(twin.metrics, twin.horizon, batch, twin.config.ensemble),
        "fit_wall_s": round(wall, 1),
    }
    row.update(rollout_timing(twin, args.repeats))
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--plant", default="cstr", help="built-in plant")
    p.add_argument("--hours", type=float, default=24.0, help="history to record")
    p.add_argument("--minutes", type=float, default=1.0, help="training budget of each run")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--runs",
        default="cpu:2,cuda,cuda:1:1024",
        help="comma-separated DEVICE[:THREADS[:BATCH]] (default: cpu:2,cuda,cuda:1:1024)",
    )
    p.add_argument("--repeats", type=int, default=20, help="timed rollouts per figure")
    p.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "results" / "device-speed.json"
    )
    args = p.parse_args(argv)
    print(
        f"torch {torch.__version__}, CUDA available: {torch.cuda.is_available()}"
        + (f" ({torch.cuda.get_device_name(0)})" if torch.cuda.is_available() else ""),
        flush=True,
    )
    plant = make_plant(args.plant, seed=3)
    with tempfile.TemporaryDirectory(prefix="device-speed-") as tmp:
        hist = Path(tmp) / "hist"
        record(plant, args.hours, hist, seed=3, progress=False)
        end = DEFAULT_START + timedelta(hours=args.hours)
        frame = Historian(hist).frame(plant.spec, DEFAULT_START, end)
    print(f"{args.plant}: {frame.height} rows recorded; budget {args.minutes:g} min per run")
    rows: list[dict[str, Any]] = []
    for text in args.runs.split(","):
        print(f"-- {text}", flush=True)
        try:
            rows.append(one_run(text, frame, plant.spec, args))
            print(json.dumps(rows[-1]), flush=True)
        except Exception as exc:  # report and go on: one call of a lent GPU must say it all
            traceback.print_exc()
            rows.append({"run": text, "error": f"{type(exc).__name__}: {exc}"})
    ok = [r for r in rows if "error" not in r]
    head = f"{'run':14s} {'steps/s':>8s} {'windows/s':>10s} {'epochs':>6s} {'stopped':>9s}"
    print(f"\n{head} {'NRMSE@H':>8s} {'fit s':>6s} {'plan ms':>8s} {'fc256 ms':>8s}")
    for r in ok:
        print(
            f"{r['run']:14s} {r['steps_per_s']:8.2f} {r['windows_per_s']:10d} {r['epochs']:6d} "
            f"{r['stopped']:>9s} {r['nrmse_H']:8.4f} {r['fit_wall_s']:6.1f} "
            f"{r['plan_1_grad_ms']:8.2f} {r['forecast_256_ms']:8.2f}"
        )
    for r in rows:
        if "error" in r:
            print(f"{r['run']:14s} failed: {r['error']}")
    if ok:
        first = ok[0]
        for r in ok[1:]:
            print(
                f"{r['run']} against {first['run']}: steps/s "
                f"{r['steps_per_s'] / first['steps_per_s']:.2f}x, windows/s "
                f"{r['windows_per_s'] / max(first['windows_per_s'], 1):.2f}x, plan call "
                f"{r['plan_1_grad_ms'] / first['plan_1_grad_ms']:.2f}x the time"
            )
    summary = {"plant": args.plant, "hours": args.hours, "minutes": args.minutes, "runs": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    return 0 if len(ok) == len(rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
