"""Shared by the controller-side unit tests: the shipped CSTR twin, a steady CSTR history, and
a linear state-space model that satisfies the controller's Predictor protocol."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import torch

from connectors.sim.plants import make_plant
from twin.errors import TwinError
from twin.spec import PlantSpec
from twin.store.frames import make_frame

MODEL = Path(__file__).resolve().parents[2] / "data" / "models" / "cstr"
START = datetime(2026, 3, 1, tzinfo=UTC)


def steady_rows(samples: int = 40, seed: int = 1) -> pl.DataFrame:
    """Historian rows (tag, ts, value) of the CSTR at its nominal point, MVs held."""
    plant = make_plant("cstr", seed=seed)
    spec = plant.spec
    rows = []
    for k in range(samples):
        values = plant.step()
        ts = START + timedelta(seconds=k * spec.sample_period)
        rows += [(name, ts, values[name]) for name in spec.tag_names]
    return pl.DataFrame(
        rows,
        schema={"tag": pl.String, "ts": pl.Datetime("us", "UTC"), "value": pl.Float64},
        orient="row",
    )


def steady_history(samples: int = 40, seed: int = 1) -> pl.DataFrame:
    """:func:`steady_rows` as a frame on the CSTR's sample period (6 s)."""
    spec = make_plant("cstr").spec
    end = START + timedelta(seconds=samples * spec.sample_period)
    return make_frame(steady_rows(samples, seed), spec, START, end)


LINEAR_START = datetime(2026, 1, 1, tzinfo=UTC)


def frame(spec: PlantSpec, rows: np.ndarray) -> pl.DataFrame:
    """A wide history frame, one row per sample (columns in spec order), a sample period apart."""
    ts = [LINEAR_START + timedelta(seconds=spec.sample_period * i) for i in range(len(rows))]
    return pl.DataFrame(
        {"ts": ts, **{name: rows[:, j] for j, name in enumerate(spec.tag_names)}}
    ).with_columns(pl.col("ts").dt.cast_time_unit("us"))


class LinearModel:
    """``x+ = A x + B u``, ``y = x`` (the CVs), in float64 torch; the past is the last row.

    ``u_k`` (plan row k) acts on the step to sample ``t+1+k``, as in the twin.
    """

    def __init__(self, spec: PlantSpec, a: np.ndarray, b: np.ndarray, horizon: int = 10) -> None:
        self.spec = spec
        self.a, self.b = torch.as_tensor(a), torch.as_tensor(b)
        self._horizon = horizon
        self.n_cv = len(spec.cvs)

    @property
    def horizon(self) -> int:
        return self._horizon

    def past_tensor(self, history: pl.DataFrame) -> torch.Tensor:
        if history.height < 1:
            raise TwinError("history is empty")
        return torch.tensor(history.select(self.spec.tag_names).to_numpy()[-1])

    def torch_rollout(
        self, past: torch.Tensor, mv_plan: torch.Tensor, dv_plan: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x = past[..., : self.n_cv].to(torch.float64)
        plan = mv_plan.to(torch.float64)
        if plan.dim() == 3 and x.dim() == 1:
            x = x.expand(plan.shape[0], -1)
        ys = []
        for k in range(plan.shape[-2]):
            x = x @ self.a.T + plan[..., k, :] @ self.b.T
            ys.append(x)
        y = torch.stack(ys, dim=-2)
        mean = torch.cat([y, plan], dim=-1)
        return mean, torch.full_like(mean, 0.1)
