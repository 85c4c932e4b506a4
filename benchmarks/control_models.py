"""What the benchmark's MPCs plan on, besides the twin: the true plant (oracle) and an ARX model.

Both satisfy :class:`twin.control.controller.Predictor`, so the *same* controller (same objective, horizon and
solver) runs on the twin, on the plant's own physics and on a linear model, and the closed-loop
costs compare the models alone:

- :class:`OraclePredictor`: the simulated plant's noise-free, differentiable dynamics
  (:meth:`SimPlant.torch_step`) rolled forward from the plant's *true* state, measured
  disturbances and unmeasured parameters at the moment of the call: the controller that knows
  the plant. Its band is zero.
- :class:`ARXPredictor`: a fitted :class:`twin.evaluate.linear.ARX` written in torch (its normaliser and
  coefficients, the same recursion as ``ARX.predict``), so the MPC on it is a linear MPC on the
  ARX baseline. Its band is zero.

Shapes follow the twin: ``mv_plan [H', n_mv]`` or ``[B, H', n_mv]`` in engineering units, the
result ``(mean, halfwidth)`` ``[..., H', n_tags]`` with every spec tag in spec order (MV columns
are the plan, DV columns the DV plan or the DVs held at their current value).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import numpy as np
import polars as pl
import torch
from torch import Tensor

from connectors.sim.base import TORCH_OPS, SimPlant
from connectors.sim.woodberry import WoodBerry
from twin.errors import TwinError
from twin.evaluate.linear import ARX
from twin.model.dataset import cv_columns, dv_columns, mv_columns
from twin.model.forecast import history_window
from twin.spec import PlantSpec

log = logging.getLogger(__name__)


def _batched(plan: Tensor) -> tuple[Tensor, bool]:
    """``[B, H', n]`` view of a plan and whether it came unbatched (``[H', n]``)."""
    return (plan.unsqueeze(0), True) if plan.dim() == 2 else (plan, False)


def _check_plan(spec: PlantSpec, plan: Tensor) -> None:
    n_mv = len(spec.mvs)
    if plan.dim() not in (2, 3) or plan.shape[-1] != n_mv or plan.shape[-2] < 1:
        raise TwinError(f"plan must be [H, {n_mv}] or [B, H, {n_mv}], got {tuple(plan.shape)}")


class OraclePredictor:
    """The true plant's physics as a Predictor: it plans from the plant's true state.

    The closed loop calls :meth:`observe` after every plant step with the sample's timestamp;
    :meth:`past_tensor` then answers, for the last timestamp of a history, the plant's true
    state, DVs and unmeasured parameters at that sample (``[n_x + n_dv + n_p]``, float64): the
    controller's offset correction re-forecasts from earlier samples, so the oracle must know
    them too. ``substeps`` RK4 steps per sample (the CSTR and quadtank ODEs; one is within
    1e-3 of LSODA there); Wood-Berry's discrete map is exact.
    """

    def __init__(self, plant: SimPlant, horizon: int = 30, substeps: int = 1) -> None:
        self.plant = plant
        self.spec: PlantSpec = plant.spec
        self._horizon = horizon
        self.substeps = substeps
        self._nx, self._nd = len(plant.x), len(plant.d)
        self._cols = (
            []
            if hasattr(plant, "torch_outputs")
            else [self._column(i) for i in range(len(self.spec.tags))]
        )
        self._truth: dict[np.datetime64, Tensor] = {}
        self.keep = 4 * horizon + 64
        """samples of truth remembered (the controller looks back at most H)"""

    @property
    def horizon(self) -> int:
        """The controller's horizon H (the physics forecasts a plan of any length)."""
        return self._horizon

    def _column(self, j: int) -> tuple[str, int]:
        """Where spec tag ``j`` comes from: ``("x"|"u"|"d"|"comp", index)``."""
        tag = self.spec.tags[j]
        if tag.role == "mv":
            return "u", self.plant.mv_names.index(tag.name)
        if tag.role == "dv":
            return "d", self.plant.dv_names.index(tag.name)
        if tag.name in self.plant.state_names:
            return "x", self.plant.state_names.index(tag.name)
        if isinstance(self.plant, WoodBerry) and tag.name in ("XD", "XB"):
            return "comp", ("XD", "XB").index(tag.name)
        raise TwinError(f"oracle: no torch output for tag {tag.name!r} of {self.plant.name}")

    def observe(self, ts: datetime) -> None:
        """Remember the plant's truth now as that of the sample stamped ``ts`` (UTC)."""
        p = self.plant
        key = _stamp(ts)
        self._truth[key] = torch.as_tensor(np.concatenate([p.x, p.d, p.p]), dtype=torch.float64)
        if len(self._truth) > self.keep:
            del self._truth[min(self._truth)]

    def past_tensor(self, history: pl.DataFrame) -> Tensor:
        """The truth ``[x, d, p]`` at the history's last sample; TwinError if never observed."""
        last = history.get_column("ts").max()
        if not isinstance(last, datetime):
            raise TwinError("oracle: the history has no timestamps")
        if _stamp(last) not in self._truth:
            raise TwinError(f"oracle: no true state observed for the sample at {last.isoformat()}")
        return self._truth[_stamp(last)]

    def outputs(self, x: Tensor, u: Tensor, d: Tensor, p: Tensor) -> Tensor:
        """Noise-free value of every spec tag ``[B, n_tags]`` (torch; like ``plant.outputs``).

        ``x [B, n_x]``, ``u [B, n_mv]``, ``d [B, n_dv]``, ``p [B, n_p]``.
        """
        torch_outputs = getattr(self.plant, "torch_outputs", None)
        if torch_outputs is not None:  # the zoo's plants compute every tag from their state
            return torch_outputs(x, u, d, p)
        comp = None
        cols = []
        for kind, i in self._cols:
            if kind == "x":
                cols.append(x[:, i])
            elif kind == "u":
                cols.append(u[:, i])
            elif kind == "d":
                cols.append(d[:, i])
            else:
                if comp is None:
                    assert isinstance(self.plant, WoodBerry)
                    comp = self.plant.compositions(x, p, TORCH_OPS)
                cols.append(comp[:, i])
        return torch.stack(cols, dim=-1)

    def torch_rollout(
        self, past: Tensor, mv_plan: Tensor, dv_plan: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Noise-free trajectories ``(mean, zeros)`` ``[..., H', n_tags]`` under the plan.

        ``past``: ``[n]`` from :meth:`past_tensor`, or ``[B, n]`` stacked (paired with plans).
        """
        _check_plan(self.spec, mv_plan)
        plan, single = _batched(mv_plan.to(torch.float64))
        truth = past.to(torch.float64)
        truth = truth.unsqueeze(0) if truth.dim() == 1 else truth
        batch = max(plan.shape[0], truth.shape[0])
        truth, plan = truth.expand(batch, -1), plan.expand(batch, -1, -1)
        nx, nd = self._nx, self._nd
        x, d, p = truth[:, :nx], truth[:, nx : nx + nd], truth[:, nx + nd :]
        dvs = None
        if dv_plan is not None and nd:
            dvs = _batched(dv_plan.to(torch.float64))[0].expand(batch, -1, -1)
        out = []
        for k in range(plan.shape[1]):
            u = plan[:, k]
            dk = d if dvs is None else dvs[:, k]
            x = self.plant.torch_step(x, u, dk, p, substeps=self.substeps)
            out.append(self.outputs(x, u, dk, p))
        mean = torch.stack(out, dim=1).to(mv_plan.dtype)
        if single and past.dim() == 1:
            mean = mean[0]
        return mean, torch.zeros_like(mean)


def _stamp(ts: datetime) -> np.datetime64:
    """A UTC datetime as a naive ``datetime64[us]`` dictionary key."""
    return np.datetime64(ts.astimezone(UTC).replace(tzinfo=None), "us")


class ARXPredictor:
    """A fitted :class:`ARX` as a differentiable torch Predictor (the linear MPC's model).

    The recursion is ``ARX._predict_z``'s: in the ARX's normalised units, each CV at ``t+1+k``
    from the last ``na`` CVs (measured, then predicted) and the last ``nb`` inputs (MVs and DVs;
    the plan for the future, DVs held), plus a constant.
    """

    def __init__(self, arx: ARX, max_gap: int = 3) -> None:
        if not hasattr(arx, "theta_"):
            raise TwinError("ARXPredictor needs a fitted ARX (call ARX().fit first)")
        self.arx = arx
        self.spec: PlantSpec = arx.spec_
        self.max_gap = max_gap
        self._cv, self._mv, self._dv = (
            cv_columns(self.spec),
            mv_columns(self.spec),
            dv_columns(self.spec),
        )
        self._ins = self._mv + self._dv
        self._theta = torch.as_tensor(arx.theta_, dtype=torch.float64)  # [n_terms, n_cv]
        self._mean = torch.as_tensor(arx.norm_.mean, dtype=torch.float64)
        self._scale = torch.as_tensor(arx.norm_.scale, dtype=torch.float64)

    @property
    def horizon(self) -> int:
        """The horizon the ARX was validated for (the recursion runs a plan of any length)."""
        return int(self.arx.horizon_)

    @property
    def window(self) -> int:
        """Past samples it starts from."""
        return int(self.arx.window_)

    def past_tensor(self, history: pl.DataFrame) -> Tensor:
        """The normalised last ``window`` samples ``[W, n_tags]`` (short gaps carried forward)."""
        values, _ = history_window(history, self.spec, self.window, self.max_gap)
        return torch.as_tensor(self.arx.norm_.norm(values), dtype=torch.float64)

    def torch_rollout(
        self, past: Tensor, mv_plan: Tensor, dv_plan: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """The ARX forecast ``(mean, zeros)`` ``[..., H', n_tags]``, eng. units, differentiable."""
        _check_plan(self.spec, mv_plan)
        plan, single = _batched(mv_plan.to(torch.float64))
        pz = past.to(torch.float64)
        pz = pz.unsqueeze(0) if pz.dim() == 2 else pz
        batch, steps = max(pz.shape[0], plan.shape[0]), plan.shape[1]
        pz = pz.expand(batch, -1, -1)
        mv, dv, ins, cv = self._mv, self._dv, self._ins, self._cv
        # future inputs, normalised: the plan, the DVs held (or their plan)
        f_mv = (plan - self._mean[mv]) / self._scale[mv]
        if dv_plan is not None and dv:
            dvp, _ = _batched(dv_plan.to(torch.float64))
            f_dv = ((dvp - self._mean[dv]) / self._scale[dv]).expand(batch, steps, -1)
        else:
            f_dv = pz[:, -1:, dv].expand(batch, steps, -1)
        f_in = torch.cat([f_mv.expand(batch, -1, -1), f_dv], dim=-1)
        na, nb = self.arx.orders_
        w = pz.shape[1]
        ys = list(pz[:, :, cv].unbind(1))
        us = list(torch.cat([pz[:, :, ins], f_in], dim=1).unbind(1))
        ones = torch.ones(batch, 1, dtype=torch.float64)
        for k in range(steps):
            t = w + k
            phi = torch.cat(
                [*(ys[t - a] for a in range(1, na + 1)), *(us[t - b] for b in range(nb)), ones],
                dim=-1,
            )
            ys.append(phi @ self._theta)
        y_cv = torch.stack(ys[w:], dim=1)  # [B, H', n_cv]
        z = pz[:, -1:, :].expand(batch, steps, -1).clone()
        z[..., ins] = f_in
        z[..., cv] = y_cv
        mean = (z * self._scale + self._mean).to(mv_plan.dtype)
        if single and past.dim() == 2:
            mean = mean[0]
        return mean, torch.zeros_like(mean)
