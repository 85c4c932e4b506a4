"""The twin's steady-state gains against the plant's own, per training seed (closed-loop study).

Where a setpoint cannot be reached, the controller settles on the compromise its model's
steady-state gains call best, so a twin whose gains are off settles elsewhere than the oracle.
For a zoo plant and each training seed this trains the twin as the closed-loop benchmark does
(24 h recorded with the seed, ``TwinConfig(minutes=--minutes, seed=seed)``, or loads it from
``--models DIR/<plant>-seed<s>``), and at the MV point of the scenario's last setpoint compares:

- **true**: the plant's noise-free steady-state gains (central differences of
  :class:`benchmarks.control_zoo.SteadyMap`), in CV units per MV span;
- **read**: what the oracle controller reads: the plant's noise-free response over the twin's
  horizon to the same steps, extrapolated from the tail as below (a CV much slower than the
  horizon is under-read here too);
- **twin**: the twin's forecast from that steady state under the MVs stepped by +-5 % of their
  span, the difference extrapolated from the horizon's tail as the controller does
  (:func:`twin.control.steady_target.final_values`), in the same units; for a stacked twin,
  each part's own gains as well.

    .venv/bin/python benchmarks/steady_gains.py --plant zoo-101 --seeds 1,2,3 --out DIR
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.control_seeds import TRAIN_HOURS, training_frame  # noqa: E402
from benchmarks.control_zoo import SteadyMap, _gains, zoo_design  # noqa: E402
from benchmarks.settings import add_set_option, parse_settings  # noqa: E402
from connectors.sim.plants import make_plant  # noqa: E402
from twin.control.steady_target import final_values  # noqa: E402
from twin.model.network import TwinConfig  # noqa: E402
from twin.model.stack import Stacked  # noqa: E402
from twin.model.twin import Twin  # noqa: E402

STEP = 0.05
"""the MV step, as a fraction of the MV's span (each way)"""


def steady_row(ss: SteadyMap, u: np.ndarray) -> np.ndarray:
    """Every tag's noise-free steady-state value at MVs ``u`` (spec order)."""
    plant = ss.plant
    x = plant.steady_state(u, plant.d0)
    out = plant.outputs(x, np.asarray(u, float), plant.d0)
    return np.array([out[t.name] for t in plant.spec.tags])


def step_curves(
    u: np.ndarray, span: np.ndarray, respond: Callable[[np.ndarray, np.ndarray], np.ndarray]
) -> list[np.ndarray]:
    """For each MV: ``respond(u + du, u - du)`` (the CVs' curves ``[2, H, n_cv]`` under the two
    MV plans held over the horizon, ``du`` :data:`STEP` of the MV's span), as the difference
    ``[H, n_cv]`` per MV span."""
    diffs = []
    for j, s in enumerate(span):
        du = np.zeros_like(u)
        du[j] = STEP * s
        up, down = respond(u + du, u - du)
        diffs.append((up - down) / (2 * STEP))
    return diffs


def plant_curves(ss: SteadyMap, u: np.ndarray, span: np.ndarray, horizon: int) -> list[np.ndarray]:
    """The plant's noise-free step responses ``[H, n_cv]`` per MV span, one per MV (as
    :func:`step_curves`), from the steady state at ``u`` over ``horizon`` samples."""

    def respond(*plans: np.ndarray) -> np.ndarray:
        curves = []
        for plan in plans:
            sim = make_plant(ss.plant.name, noise=False)
            sim.x = sim.steady_state(u, sim.d0)
            move = dict(zip(sim.mv_names, plan.tolist(), strict=True))
            outs = [sim.step(move) for _ in range(horizon)]  # one plant step per sample
            curves.append([[out[c] for c in ss.cvs] for out in outs])
        return np.array(curves)

    return step_curves(u, span, respond)


def plant_read(ss: SteadyMap, u: np.ndarray, span: np.ndarray, horizon: int) -> np.ndarray:
    """The plant's own gains ``[n_cv, n_mv]`` per MV span as a controller of ``horizon`` reads
    them: its noise-free step responses from the steady state at ``u``, tail-extrapolated."""
    curves = plant_curves(ss, u, span, horizon)
    return np.stack([final_values(d)[0] for d in curves], axis=1)


def twin_curves(twin: Twin, row: np.ndarray, u: np.ndarray, span: np.ndarray) -> list[np.ndarray]:
    """The twin's step responses ``[H, n_cv]`` per MV span, one per MV (as :func:`step_curves`),
    forecast from the steady state ``row`` held over its window."""
    past = np.repeat(row[None, :], twin.window, axis=0)
    past_norm = torch.as_tensor(twin.normalizer.norm(past), dtype=torch.float32)
    cvs = [j for j, t in enumerate(twin.spec.tags) if t.role == "cv"]

    def respond(*plans: np.ndarray) -> np.ndarray:
        held = np.stack([np.tile(plan, (twin.horizon, 1)) for plan in plans])
        with torch.no_grad():
            mean, _ = twin.torch_rollout(past_norm, torch.as_tensor(held, dtype=torch.float32))
        return mean.numpy()[..., cvs]

    return step_curves(u, span, respond)


def twin_gains(twin: Twin, row: np.ndarray, u: np.ndarray, span: np.ndarray) -> dict[str, Any]:
    """The twin's gains ``[n_cv, n_mv]`` per MV span from the steady state ``row``: read at H,
    and extrapolated from the tail as the controller's steady-state targets read them."""
    diffs = twin_curves(twin, row, u, span)
    return {
        "at_H": np.stack([d[-1] for d in diffs], axis=1),
        "final": np.stack([final_values(d)[0] for d in diffs], axis=1),
    }


def each_part(twin: Twin) -> Iterator[str]:
    """Each stacked part's name, as the stack names it, with ``twin.model`` set to that part
    while the caller looks at it (and restored after); nothing for a twin that is not a stack."""
    model = twin.model
    if not isinstance(model, Stacked):
        return
    names = twin.metrics.get("linear_init", {}).get("stack", {}).get("used")
    names = names or [f"part {i}" for i in range(len(model.parts))]
    try:
        for name, part in zip(names, model.parts, strict=True):
            twin.model = part
            yield name
    finally:
        twin.model = model


def part_gains(
    twin: Twin, row: np.ndarray, u: np.ndarray, span: np.ndarray
) -> dict[str, np.ndarray]:
    """Each stacked part's own gains (extrapolated), named as the stack names them; {} for a
    twin that is not a stack."""
    return {name: twin_gains(twin, row, u, span)["final"] for name in each_part(twin)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--plant", default="zoo-101")
    p.add_argument("--seeds", default="1,2,3")
    p.add_argument("--minutes", type=float, default=1.0, help="training budget per twin")
    p.add_argument("--models", type=Path, help="load / keep twins in DIR/<plant>-seed<s>")
    p.add_argument("--out", type=Path, required=True)
    add_set_option(p)
    args = p.parse_args(argv)
    settings = parse_settings(args.set)
    design = zoo_design(args.plant)
    ss = SteadyMap(args.plant)
    spec = ss.plant.spec
    mvs = [t.name for t in spec.mvs]
    cvs = [t.name for t in spec.cvs]
    u = np.array([design.mv_points[-1][m] for m in mvs])
    span = np.array([t.hi - t.lo for t in spec.mvs])
    row = steady_row(ss, u)
    true = _gains(ss, u, row, span)
    print(f"{args.plant}: gains in CV units per MV span at the last setpoint's MVs {u.round(3)}")
    print(f"  true  {json.dumps(np.round(true, 4).tolist())}")
    result: dict[str, Any] = {
        "settings": settings,
        "plant": args.plant,
        "cvs": cvs,
        "mvs": mvs,
        "u": u.tolist(),
        "true": true.tolist(),
        "seeds": {},
    }
    for seed in (int(s) for s in args.seeds.split(",")):
        saved = None if args.models is None else args.models / f"{args.plant}-seed{seed}"
        if saved is not None and (saved / "model.pt").is_file():
            twin = Twin.load(saved, spec=spec)
        else:
            with tempfile.TemporaryDirectory(prefix="steady-gains-") as tmp:
                frame = training_frame(args.plant, TRAIN_HOURS, Path(tmp), seed)
            twin = Twin.fit(
                spec, frame, TwinConfig(minutes=args.minutes, seed=seed, **settings), progress=False
            )
            if saved is not None:
                twin.save(saved)
        g = twin_gains(twin, row, u, span)
        parts = part_gains(twin, row, u, span)
        if "read" not in result:  # the oracle's reading over this horizon (the same each seed)
            result["read"] = plant_read(ss, u, span, twin.horizon).tolist()
            print(
                f"  read over H={twin.horizon}  {json.dumps(np.round(result['read'], 4).tolist())}"
            )
        err = np.abs(g["final"] - true) / np.maximum(np.abs(true).max(axis=1, keepdims=True), 1e-12)
        result["seeds"][seed] = {k: v.tolist() for k, v in g.items()} | {
            "error_of_row_max": err.tolist(),
            "parts": {name: v.tolist() for name, v in parts.items()},
        }
        print(
            f"  seed {seed}: final {json.dumps(np.round(g['final'], 4).tolist())}; "
            f"at H {json.dumps(np.round(g['at_H'], 4).tolist())}; largest error "
            f"{err.max():.2f} of its CV's largest gain"
        )
        for name, v in parts.items():
            print(f"    part {name}: {json.dumps(np.round(v, 4).tolist())}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.plant}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out / (args.plant + '.json')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
