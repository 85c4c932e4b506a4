"""Repeated fed-batch bioreactor with Monod kinetics (Seborg, Edgar, Mellichamp & Doyle).

The model of the fed-batch bioreactor in Seborg, Edgar, Mellichamp and Doyle, *Process Dynamics
and Control* (Wiley; 3rd ed. 2011, section 2.4.9; 4th ed. 2016, section 2.4.8, Table 2.3 for the
values, as reproduced in J. Kantor's course notes on it): cells X grow on a substrate S fed at
concentration Sf and flow F, and form a product P; time in hours, concentrations in g/L, F in
L/h, V in L:

    d(XV)/dt = V rg                    rg = mu X,  mu = mu_max S / (Ks + S)   (Monod)
    d(PV)/dt = V rp                    rp = Y_P/X rg
    d(SV)/dt = F Sf - V rg / Y_X/S
    dV/dt    = F

i.e. dX/dt = mu X - (F/V) X, dP/dt = Y_P/X mu X - (F/V) P,
dS/dt = (F/V)(Sf - S) - mu X / Y_X/S. The book's values: mu_max = 0.20 1/h, Ks = 1.0 g/L,
Y_X/S = 0.5 g/g, Y_P/X = 0.2 g/g, Sf = 10 g/L.

Operation (chosen here, not the book's single 50-h batch from X = 0.05 g/L): *repeated* fed-batch
with a dense inoculum, so that a batch takes 90 minutes. Every batch starts from
X = 8 g/L (scaled by an unmeasured batch-to-batch factor, OU around 1, about 3 %),
S = 2 g/L, P = 0, V = 1.0 L; after 90 min the broth is harvested and the next batch starts from
those initial conditions again. The plant records and serves continuously through the resets;
the batch clock ``t_batch`` (min) is a measured DV tag, so a model can learn where in the batch it
is. A reset happens at the start of the sample interval after the batch's last sample: the
sample at 90 min shows the batch's end, the next one the new batch 1 min in. :meth:`torch_step`
does the same from the clock in the state, so the differentiable model knows the schedule.

MV: the feed F (0 to 0.5 L/h). CVs: S (tracked, setpoint 2 g/L), X, P and V (watched: weight 0).
DVs: the feed's substrate concentration Sf (measured, OU around 10 g/L) and the batch clock.
Unmeasured: the inoculum factor and the culture's vitality (a factor on mu_max, OU around 1).
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any, ClassVar

import numpy as np
import torch

from connectors.sim.base import Ops, OUProcess
from connectors.sim.tagged import NUMPY_X, TORCH_X, TaggedPlant, XOps, xops

MU_MAX = 0.20  # maximum specific growth rate, 1/h
KS = 1.0  # Monod constant, g/L
Y_XS = 0.5  # cell yield on substrate, g/g
Y_PX = 0.2  # product yield on cells, g/g
SF = 10.0  # feed substrate concentration, g/L
#: initial conditions of every batch (chosen): X, S, P in g/L, V in L
X0, S0, P0, V0 = 8.0, 2.0, 0.0, 1.0
BATCH_H = 1.5  # batch length, h (90 min)
V_MAX = 2.0  # working volume, L


class FedBatch(TaggedPlant):
    """Repeated fed-batch bioreactor: CVs S, X, P (g/L), V (L); MV F (L/h); DVs Sf, t_batch."""

    name = "fedbatch"
    state_names = ("X", "S", "P", "V", "t_batch")
    x0 = np.array([X0, S0, P0, V0, 0.0])
    u0 = np.array([0.2])
    d0 = np.array([SF, 0.0])  # d[1] mirrors the batch clock (min), see step()
    time_unit_s = 3600.0
    #: per 1-min sample: growth and uptake scatter; the volume and the clock are exact
    process_noise = np.array([0.004, 0.004, 0.0005, 0.0, 0.0])
    sensor_noise = MappingProxyType(
        {"S": 0.02, "X": 0.05, "P": 0.005, "V": 0.003, "F": 0.002, "Sf": 0.05}
    )
    #: inoculum factor (the next batch's X0 relative to nominal), vitality factor on mu_max
    param_names: ClassVar[tuple[str, ...]] = ("inoculum", "vitality")

    def _setup_disturbances(self) -> None:
        self.p = np.array([1.0, 1.0])
        self._p_drift = [
            OUProcess(1.0, sigma=0.03, tau=6 * 3600.0, rng=self.rng),
            OUProcess(1.0, sigma=0.03, tau=4 * 3600.0, rng=self.rng),
        ]
        self._d_drift = [OUProcess(SF, sigma=0.2, tau=3 * 3600.0, rng=self.rng)]

    # --- dynamics -------------------------------------------------------------------------

    def rhs(self, x: Any, u: Any, d: Any, p: Any, ops: Ops) -> Any:
        """Within a batch: the book's balances, per hour; the clock runs at 1 h/h."""
        xo = xops(ops)
        cells, sub, prod, vol, _clock = xo.unstack(x)
        feed = xo.unstack(u)[0]
        sf = xo.unstack(d)[0]
        vitality = xo.unstack(p)[1]
        sub_pos = xo.relu(sub)
        mu = vitality * MU_MAX * sub_pos / (KS + sub_pos)
        dil = feed / vol
        return xo.stack(
            [
                mu * cells - dil * cells,
                dil * (sf - sub) - mu * cells / Y_XS,
                Y_PX * mu * cells - dil * prod,
                feed,
                feed * 0.0 + 1.0,
            ]
        )

    def _reset(self, x: Any, p: Any, ops: XOps) -> Any:
        """The state at the start of this interval: a fresh batch if the last one is over."""
        cells, sub, prod, vol, clock = ops.unstack(x)
        over = clock >= BATCH_H - 0.5 * self.sample_period / 3600.0
        fresh = [X0 * ops.unstack(p)[0], S0, P0, V0, 0.0]
        now = (cells, sub, prod, vol, clock)
        return ops.stack([ops.where(over, f + 0.0 * c, c) for f, c in zip(fresh, now, strict=True)])

    def _advance(self, x: np.ndarray, u: np.ndarray, d: np.ndarray, p: np.ndarray) -> np.ndarray:
        x = np.asarray(self._reset(x, p, NUMPY_X), float)
        return super()._advance(x, u, d, p)

    def torch_step(
        self,
        x: torch.Tensor,
        u: torch.Tensor,
        d: torch.Tensor | None = None,
        p: torch.Tensor | None = None,
        substeps: int = 4,
    ) -> torch.Tensor:
        """One sample: the batch reset on schedule (from the clock in x), then RK4 (see base)."""
        p_t = torch.as_tensor(self.p if p is None else p, dtype=x.dtype)
        return super().torch_step(self._reset(x, p_t, TORCH_X), u, d, p_t, substeps)

    def step(self, mv: dict[str, float] | None = None) -> dict[str, float]:
        values = super().step(mv)
        self.d[1] = values["t_batch"]  # the clock tag, mirrored for callers that read d
        return values

    def clip_state(self, x: np.ndarray) -> np.ndarray:
        out = x.copy()
        out[:3] = np.maximum(out[:3], 0.0)
        return out

    def tag_values(self, x: Any, u: Any, d: Any, p: Any, ops: XOps) -> list[Any]:
        cells, sub, prod, vol, clock = ops.unstack(x)
        return [sub, cells, prod, vol, ops.unstack(u)[0], ops.unstack(d)[0], clock * 60.0]

    def check_safe(self) -> str | None:
        if self.x[3] > V_MAX:
            return f"broth volume {self.x[3]:.2f} L above the {V_MAX:.1f} L working volume"
        return None

    def steady_state(self, u: np.ndarray | None = None, d: np.ndarray | None = None) -> np.ndarray:
        """A batch process has no steady state: the state at the start of a batch."""
        return self.x0.copy()
