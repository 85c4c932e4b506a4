"""Linear first, measured: the twin started from the identified linear model vs from scratch.

For each plant (the built-in ones and, where the zoo is there, a few of its *development*
plants; never the held-out ones): record 24 h of training history and a later 6 h test history
(:func:`benchmarks.zoo.record_histories`: the test's disturbances as in training unless
``--disturbance-gain``), then on the test windows (MV moves that really followed, DVs held)
compare the NRMSE (RMSE / training std, mean over CVs) at steps 1, 5, 10 and H of

- ``linear``: the identified linear model alone (ARX or subspace, the better on validation),
- ``twin+lin``: the twin with ``linear_init=True`` (started from that model, best kept),
- ``twin``: the twin with ``linear_init=False`` (the old behaviour),

with one seed and a short budget, and the training time of each twin.

    .venv/bin/python benchmarks/linear_first.py                       # cstr quadtank woodberry
    .venv/bin/python benchmarks/linear_first.py --plants cstr zoo-0 --minutes 1
    .venv/bin/python benchmarks/linear_first.py --plants woodberry --stop smoothed --no-scratch
"""

from __future__ import annotations

import argparse
import ast
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from zoo import DEVELOPMENT, record_histories  # noqa: E402

from twin.model.dataset import (  # noqa: E402
    cv_columns,
    dv_columns,
    frame_to_array,
    make_windows,
    mv_columns,
    split_with_context,
)
from twin.model.linear_init import identify  # noqa: E402
from twin.model.network import TwinConfig  # noqa: E402
from twin.model.time_scales import step_times  # noqa: E402
from twin.model.train import predict  # noqa: E402
from twin.model.twin import Twin  # noqa: E402


def _steps(h: int) -> list[int]:
    return sorted({s for s in (1, 5, 10, h) if s <= h})


def run_plant(
    plant: str,
    seed: int,
    minutes: float,
    folder: Path,
    stop: str = "patience",
    scratch: bool = True,
    lr: float = TwinConfig.lr,
    linear_lr: float = TwinConfig.linear_lr,
    overrides: dict[str, Any] | None = None,
) -> dict[str, object]:
    """NRMSE per step of the three models on ``plant``'s test windows, and training times."""
    hist = record_histories(plant, seed, folder)
    spec = hist.spec
    train_frame, test_frame = hist.frames()
    cv, mv, dv = cv_columns(spec), mv_columns(spec), dv_columns(spec)
    out: dict[str, object] = {"plant": plant}
    rows: dict[str, list[float]] = {}
    for name, flag in (("twin+lin", True), ("twin", False))[: 2 if scratch else 1]:
        cfg = TwinConfig(
            minutes=minutes,
            seed=seed,
            linear_init=flag,
            stop=stop,  # type: ignore[arg-type]
            lr=lr,
            linear_lr=linear_lr,
            **(overrides or {}),
        )
        t0 = time.perf_counter()
        twin = Twin.fit(spec, train_frame, cfg, progress=False)
        out[f"{name} s"] = round(time.perf_counter() - t0, 1)
        tv, tok = frame_to_array(test_frame, spec)
        w = make_windows(tv, tok, spec, cfg.window, cfg.horizon, twin.normalizer)
        mean, _ = predict(twin.model, w.past, w.future, clocks=twin.clock_cols)
        err = np.sqrt(((mean - w.future)[..., cv] ** 2).mean(axis=0)).mean(axis=1)
        rows[name] = [float(err[s - 1]) for s in _steps(cfg.horizon)]
        out[f"{name} stopped"] = twin.metrics["training"]["stopped"]
        if flag:
            lin = twin.metrics.get("linear_init", {})
            out["linear"] = lin.get("model")
            out["kept"] = lin.get("kept")
            out["init s"] = out[f"{name} s"]
            parts = split_with_context(train_frame, cfg.fractions, twin.window)
            t1 = time.perf_counter()
            ss, _ = identify(spec, parts[0], parts[1], cfg, twin.normalizer)
            out["identify s"] = round(time.perf_counter() - t1, 1)
            if ss is not None:
                out["step times"] = step_times(ss)  # (dead, settling) samples: item 4's input
                fut = w.future.astype(np.float64).copy()
                fut[..., dv] = w.past[:, -1:, dv]
                pred = ss.forecast(w.past.astype(np.float64), fut, mv, dv)
                e = np.sqrt(((pred - w.future[..., cv]) ** 2).mean(axis=0)).mean(axis=1)
                rows["linear"] = [float(e[s - 1]) for s in _steps(cfg.horizon)]
    out["nrmse"] = rows
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--plants", nargs="+", default=["cstr", "quadtank", "woodberry"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--minutes", type=float, default=1.0)
    ap.add_argument("--stop", choices=("patience", "smoothed"), default="patience")
    ap.add_argument("--lr", type=float, default=TwinConfig.lr, help="peak learning rate")
    ap.add_argument(
        "--linear-lr", type=float, default=TwinConfig.linear_lr, help="linear path's lr fraction"
    )
    ap.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="other TwinConfig fields, e.g. w_jepa=0 patience_steps=800 (values as Python literals)",
    )
    ap.add_argument("--no-scratch", action="store_true", help="leave out linear_init=False")
    args = ap.parse_args(argv)
    bad = [p for p in args.plants if p not in DEVELOPMENT]
    if bad:
        ap.error(f"only development plants may be used here (not {bad})")
    steps = _steps(TwinConfig().horizon)
    head = " | ".join(f"k={s}" for s in steps)
    print(f"| plant | model | {head} | train s | stopped |")
    print("|---|---|" + "---|" * len(steps) + "---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for plant in args.plants:
            res = run_plant(
                plant,
                args.seed,
                args.minutes,
                Path(tmp),
                args.stop,
                not args.no_scratch,
                args.lr,
                args.linear_lr,
                {k: ast.literal_eval(v) for k, v in (kv.split("=", 1) for kv in args.set)},
            )
            nrmse = res["nrmse"]
            assert isinstance(nrmse, dict)
            for name in ("linear", "twin+lin", "twin"):
                if name not in nrmse:
                    continue
                vals = " | ".join(f"{v:.3f}" for v in nrmse[name])
                label = {
                    "linear": f"linear {res['linear']}",
                    "twin+lin": f"twin+lin (kept {res['kept']})",
                }.get(name, name)
                secs = res.get(f"{name} s", res.get("identify s", ""))
                stop = res.get(f"{name} stopped", "")
                print(f"| {plant} | {label} | {vals} | {secs} | {stop} |", flush=True)
            print(
                f"<!-- {plant}: linear model's (dead, settling) samples {res.get('step times')} -->"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
