"""How much of the stacked direct GRU's response to the MV plan is acausal.

The direct part (:mod:`twin.model.direct`) outputs every step of the horizon from the whole plan
at once, so nothing stops step ``k`` from answering a move at ``j > k``. This trains a twin with
``direct=True`` on a built-in plant (recorded with seed 1, 1-min budget) and prints the share
of ``sum |dy_k / du_j|`` (CVs, MVs and 200 windows summed) that falls on later moves, over all
steps and over steps 1-5, with the stack's weight on the part. A net that had learned nothing of
the plan would sit near ``(H - 1) / 2H``; a causal model at 0.

    .venv/bin/python benchmarks/direct_causality.py cstr 24      # plant, hours of history
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.control_seeds import training_frame  # noqa: E402
from connectors.sim.plants import make_plant  # noqa: E402
from twin.model.dataset import cv_columns, frame_to_array, make_windows  # noqa: E402
from twin.model.direct import DirectPart  # noqa: E402
from twin.model.network import TwinConfig  # noqa: E402
from twin.model.stack import Stacked  # noqa: E402
from twin.model.twin import Twin  # noqa: E402


def main(plant: str, hours: float) -> None:
    spec = make_plant(plant).spec
    with tempfile.TemporaryDirectory() as root:
        frame = training_frame(plant, hours, Path(root), seed=1)
    twin = Twin.fit(spec, frame, TwinConfig(minutes=1, seed=1, direct=True), progress=True)
    rec = twin.metrics["linear_init"]["stack"]
    print(f"{plant}: direct part {rec.get('direct')}")
    print("  its weight per step:", {k: v.get("direct GRU") for k, v in rec["weight"].items()})
    parts = list(twin.model.parts) if isinstance(twin.model, Stacked) else []
    found = [p for p in parts if isinstance(p, DirectPart)]
    if not found:
        print("  the stack dropped the part")
        return
    part = found[0]
    values, ok = frame_to_array(frame.tail(3000), spec)
    w = make_windows(values, ok, spec, twin.window, twin.horizon, twin.normalizer)
    take = np.linspace(0, len(w) - 1, 200).astype(int)
    past = torch.as_tensor(w.past[take])
    future = torch.as_tensor(w.future[take]).clone().requires_grad_(True)
    cv, mv = cv_columns(spec), part.mv_cols
    y = part.rollout(past, future).y[0]
    jac = np.zeros((twin.horizon, twin.horizon))  # [step k, move j]
    for k in range(twin.horizon):
        (g,) = torch.autograd.grad(y[:, k, cv].sum(), future, retain_graph=True)
        jac[k] = g[..., mv].abs().sum(dim=(0, 2)).numpy()
    later = np.triu(jac, 1)
    print(
        f"  share of |dy_k/du_j| on later moves (j > k): {later.sum() / jac.sum():.3f}; "
        f"at steps 1-5: {later[:5].sum() / jac[:5].sum():.3f}"
    )


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]) if len(sys.argv) > 2 else 24.0)
