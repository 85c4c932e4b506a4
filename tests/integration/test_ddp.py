"""Training with torchrun: 2 gloo processes train one twin that loads and forecasts like any other.

The processes are real (``python -m torch.distributed.run``, the module behind ``torchrun``) on a
free loopback port; the single-process path is covered by test_twin, test_train_stop and
test_linear_init, which run with no process group at all.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import torch

from connectors.sim.plants import make_plant
from connectors.sim.record import record
from twin.model import distributed
from twin.model.train import _shard
from twin.model.twin import Twin
from twin.store.historian import Historian

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
START = datetime(2026, 1, 1, tzinfo=UTC)

#: trains ``train_model`` on synthetic windows on every rank and saves what each rank ends with
RANKS_SCRIPT = """
import sys, numpy as np, torch
from twin.model import distributed
from twin.model.dataset import Windows
from twin.model.network import LatentDynamics, TwinConfig
from twin.model.train import train_model

def windows(n, seed):
    rng = np.random.default_rng(seed)
    seq = (rng.standard_normal((n, 14, 3)).cumsum(1) * 0.1).astype(np.float32)
    return Windows(seq[:, :6].copy(), seq[:, 6:].copy(), np.arange(n))

cfg = TwinConfig(window=6, horizon=8, latent=4, hidden=8, ensemble=2, batch=16, max_epochs=4,
                 minutes=5.0, device="cpu")
with distributed.session("cpu") as rank:
    torch.manual_seed(rank)  # different starts: rank 0's weights must win
    model = LatentDynamics(cfg, 3, [2], [])
    res = train_model(model, windows(200, 0), windows(60, 1), cfg, [0, 1], progress=False)
    torch.save({"state": model.state_dict(), "result": res.__dict__,
                "world": distributed.world_size()}, f"{sys.argv[1]}/rank{rank}.pt")
"""


def _torchrun(args: list[str], port: int, cwd: Path, timeout: float = 240) -> str:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2"]
    cmd += ["--master-addr", "127.0.0.1", "--master-port", str(port), *args]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc.stdout


def test_two_gloo_processes_train_a_twin_that_loads_and_forecasts(
    tmp_path: Path, free_port: int
) -> None:
    record(make_plant("cstr", seed=3), 2.0, tmp_path / "hist", seed=3, start=START, progress=False)
    out = tmp_path / "model"
    args = ["-m", "twin", "train", "--spec", "cstr", "--historian", str(tmp_path / "hist")]
    args += ["--out", str(out), "--minutes", "0.05", "--ensemble", "2"]
    args += ["--window", "12", "--horizon", "12"]
    stdout = _torchrun(args, free_port, tmp_path)
    # rank 0 alone speaks and saves
    assert stdout.count("training a twin of cstr") == 1 and "2 processes" in stdout
    assert stdout.count("saved ") == 1
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["training"]["processes"] == 2
    twin = Twin.load(out)
    assert twin.metrics["training"]["processes"] == 2
    history = Historian(tmp_path / "hist").frame(twin.spec, START, START.replace(hour=1))
    plan = np.repeat(np.asarray([[t.lo + 0.5 * (t.hi - t.lo) for t in twin.spec.mvs]]), 12, 0)
    fc = twin.forecast(history, plan)
    assert fc.mean.shape == (12, len(twin.spec.tags))
    assert np.isfinite(fc.mean).all() and np.isfinite(fc.lower).all()
    assert (fc.lower <= fc.upper).all()


def test_ranks_end_with_identical_weights_and_the_same_stop(tmp_path: Path, free_port: int) -> None:
    script = tmp_path / "ranks.py"
    script.write_text(RANKS_SCRIPT, encoding="utf-8")
    _torchrun([str(script), str(tmp_path)], free_port, tmp_path)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1))
    assert r0["world"] == r1["world"] == 2
    for key, value in r0["state"].items():
        assert torch.equal(value, r1["state"][key]), key
    same = ("epochs", "steps", "best_val", "best_epoch", "stopped")
    assert {k: r0["result"][k] for k in same} == {k: r1["result"][k] for k in same}
    # 200 windows, a global batch of 16 per member (8 on each rank): ceil(200 / 16) = 13 steps
    # an epoch, as in one process
    assert r0["result"]["steps"] == 4 * 13


@pytest.mark.parametrize(("n", "world"), [(200, 2), (7, 3), (2, 4)])
def test_each_rank_takes_its_share_of_the_shuffled_windows(n: int, world: int) -> None:
    shards = [_shard(n, world, r, seed=5) for r in range(world)]
    assert len({len(s) for s in shards}) == 1  # equal shares, as DistributedSampler pads
    assert set(torch.cat(shards).tolist()) == set(range(n))
    if n % world == 0:  # no padding: disjoint
        assert len(torch.cat(shards).unique()) == n
    assert torch.equal(shards[0], _shard(n, world, 0, seed=5))  # the same seed, the same split
    assert not torch.equal(torch.cat(shards), _shard(n, world, 0, seed=6).repeat(world))


def test_a_single_process_joins_no_group(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with distributed.session("cpu") as rank:
        assert rank == 0 and not torch.distributed.is_initialized()
        assert distributed.world_size() == 1 and not distributed.active()
