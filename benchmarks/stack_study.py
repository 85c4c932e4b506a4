"""How the stack's weights are fitted, studied offline on saved twins (``twin.model.stack``).

``record`` trains the twin of each plant as ``generalise.py`` does (same seeds, training history
and shifted test stretch) and saves its folder with the validation windows the stack was fitted
on and the test windows. ``schemes`` then refits the weights of the saved parts in several ways
and scores each on the shifted test (NRMSE at k = 1, 5, 10, H, as ``generalise.py`` does):

- ``start``: the first part alone (the kept network, or the linear start);
- ``offset=D, S stretches``: fitted on the validation windows and on a copy moved by an
  unmeasured offset of +-D training standard deviations (``stack.offset_copy``) that holds the
  windows of S independent stretches of the horizon (``stack.copy_size``; without S: a copy of
  every window); ``offset=0`` is the recorded windows alone;
- ``..., fading``: the kept scheme with a copy of ``S ** 2 / stretches`` stretches (at most S)
  for a validation split of ``stretches``: a prior that fades faster than the split grows;
- ``... no set-aside network``: the kept scheme (:data:`KEPT`) without the trained network that
  linear first set aside (where it did), as if it were never offered to the stack.

The parts do not depend on the scheme, so one training per plant serves every scheme.

    .venv/bin/python benchmarks/stack_study.py record --plants dev --hours 6 --shard 0/2 --out DIR
    .venv/bin/python benchmarks/stack_study.py schemes --out DIR
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

import numpy as np
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.generalise import PAUSE_HOURS, SETS, TEST_HOURS, _record_test  # noqa: E402
from connectors.sim.plants import make_plant  # noqa: E402
from connectors.sim.record import DEFAULT_START, record  # noqa: E402
from twin.evaluate.report import forecast_cases, forecast_windows, nrmse  # noqa: E402
from twin.model.calibration import stretches_of  # noqa: E402
from twin.model.dataset import cv_columns, evenly, frame_to_array, split_by_time, with_context  # noqa: E402
from twin.model.network import TwinConfig  # noqa: E402
from twin.model.stack import Part, Stacked, copy_size, fit_weights, offset_copy  # noqa: E402
from twin.model.train import predict  # noqa: E402
from twin.model.twin import HELD_WINDOWS, Twin, _windows  # noqa: E402
from twin.store.historian import Historian  # noqa: E402

OFFSETS = ((0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (1.0, 2.0), (1.0, 4.0))
"""(offset, prior): the copy's offset and how many stretches of the horizon it holds (0: every
validation window)"""
KEPT = (1.0, 2.0)
"""the (offset, prior) of ``twin.model.stack``'s defaults"""
SET_ASIDE = "network (not kept)"
"""the stack's name for the trained network linear first set aside"""


def record_one(plant: str, hours: float, out: Path, seed: int = 1) -> None:
    """Train and save one plant's twin with its validation and shifted-test windows."""
    folder = Path(tempfile.mkdtemp())
    sim = make_plant(plant, seed=seed)
    spec = sim.spec
    record(sim, hours, folder / "train", seed=seed, progress=False)
    start = DEFAULT_START + timedelta(hours=hours + PAUSE_HOURS)
    test = Historian(_record_test(plant, seed, folder, start, True)).frame(
        spec, start, start + timedelta(hours=TEST_HOURS)
    )
    end = DEFAULT_START + timedelta(hours=hours)
    train = Historian(folder / "train").frame(spec, DEFAULT_START, end)
    twin = Twin.fit(spec, train, TwinConfig(seed=seed, minutes=1.0, device="cpu"), progress=False)
    cfg = twin.config
    parts = with_context(split_by_time(train, cfg.fractions), cfg.window)
    val = evenly(_windows(parts[1], spec, cfg, twin.normalizer), HELD_WINDOWS)
    past, future, _ = forecast_cases(test, spec, cfg.window, cfg.horizon, 1500)
    values, _ = frame_to_array(test, spec)
    twin.save(out)
    np.savez_compressed(
        out / "windows.npz",
        vpast=val.past,
        vfuture=val.future,
        tpast=past,
        tfuture=future,
        tstd=np.nanstd(values, axis=0),
        seed=seed,
    )


def _nrmse(mean: np.ndarray, future: np.ndarray, std: np.ndarray, cv: list[int]) -> np.ndarray:
    err = nrmse(mean, future, std)
    return np.array([err[k - 1, cv].mean() for k in (1, 5, 10, future.shape[1])])


def schemes_one(folder: Path) -> dict[str, np.ndarray]:
    """Shifted-test NRMSE at k = 1, 5, 10, H of each way of fitting the weights."""
    twin, w = Twin.load(folder), np.load(folder / "windows.npz")
    cv, model = cv_columns(twin.spec), twin.model
    parts = [cast(Part, p) for p in model.parts] if isinstance(model, Stacked) else [model]
    test = []
    for p in parts:
        twin.model = p
        test.append(forecast_windows(twin, w["tpast"], w["tfuture"][..., twin.mv_cols])[0])
    test_arr = np.stack(test)
    shape = (len(parts), twin.horizon, len(twin.spec.tags))
    start = np.zeros(shape)
    start[0] = 1.0
    weights = {"start": start}
    val = [predict(p, w["vpast"], w["vfuture"])[0] for p in parts]
    n = len(w["vpast"])
    for d, prior in OFFSETS:
        name = f"offset={d:g}" + (f", {prior:g} stretches" if prior else "")
        if len(parts) == 1:  # nothing to weigh: every scheme is the start
            extra = [", fading", ", no set-aside network"] if (d, prior) == KEPT else []
            weights.update({name + e: start for e in ["", *extra]})
            continue
        means, future = val, w["vfuture"]
        if d:
            size = copy_size(n, twin.horizon, prior) if prior else None
            means, future = _with_copy(parts, val, w, cv, d, size)
        weights[name] = fit_weights(means, future, cv)
        if (d, prior) == KEPT:  # a copy of prior^2 / stretches stretches, at most prior
            held = min(prior, prior**2 / stretches_of(n, twin.horizon))
            fading = _with_copy(parts, val, w, cv, d, copy_size(n, twin.horizon, held))
            weights[f"{name}, fading"] = fit_weights(*fading, cv)
            weights[f"{name}, no set-aside network"] = _without_set_aside(
                twin.metrics, means, future, cv, weights[name]
            )
    return {
        k: _nrmse(np.einsum("mhn,mbhn->bhn", wt, test_arr), w["tfuture"], w["tstd"], cv)
        for k, wt in weights.items()
    }


def _with_copy(
    parts: list[Part],
    val: list[np.ndarray],
    w: Any,
    cv: list[int],
    offset: float,
    size: int | None,
) -> tuple[list[np.ndarray], np.ndarray]:
    """The parts' forecasts ``val`` of the recorded validation windows and the outcomes, each
    followed by those of an offset copy of ``size`` windows (``stack.offset_copy``)."""
    moved = offset_copy(w["vpast"], w["vfuture"], cv, offset, int(w["seed"]), size)
    means = [np.concatenate([m, predict(p, *moved)[0]]) for m, p in zip(val, parts, strict=True)]
    return means, np.concatenate([w["vfuture"], moved[1]])


def _without_set_aside(
    metrics: dict, means: list[np.ndarray], future: np.ndarray, cv: list[int], kept: np.ndarray
) -> np.ndarray:
    """The weights refitted without the set-aside network (zero weight); ``kept`` if none."""
    names = metrics.get("linear_init", {}).get("stack", {}).get("used", [])
    if SET_ASIDE not in names:
        return kept
    j = names.index(SET_ASIDE)
    others = [m for i, m in enumerate(means) if i != j]
    w = fit_weights(others, future, cv)
    return np.insert(w, j, 0.0, axis=0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("command", choices=["record", "schemes"])
    ap.add_argument(
        "--plants", default="dev", help="a set (dev, held-out) or names, comma-separated"
    )
    ap.add_argument("--hours", type=float, default=6.0)
    ap.add_argument("--shard", default="0/1", help="i/n: the i-th (0-based) of n slices of plants")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    if args.command == "record":
        plants = SETS.get(args.plants) or args.plants.split(",")
        i, n = (int(x) for x in args.shard.split("/"))
        for plant in tqdm(list(plants)[i::n], desc="stack study", unit="plant"):
            out = args.out / f"{plant}-{args.hours:g}h"
            if not (out / "windows.npz").exists():
                record_one(plant, args.hours, out)
        return 0
    res = {
        f.name: schemes_one(f) for f in sorted(args.out.iterdir()) if (f / "windows.npz").exists()
    }
    names = list(next(iter(res.values())))
    print("| plant | " + " | ".join(names) + " |")
    print("|---" * (len(names) + 1) + "|")
    for plant, r in res.items():
        print(
            f"| {plant} | " + " | ".join("/".join(f"{x:.3f}" for x in r[k]) for k in names) + " |"
        )
    base = "offset=0"
    for k in names:
        ratio = np.exp(np.mean([np.log(r[k] / r[base]) for r in res.values()], axis=0))
        print(
            f"{k} / {base}, geometric mean over {len(res)} plants, k = 1/5/10/H: "
            + " / ".join(f"{x:.3f}" for x in ratio)
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
