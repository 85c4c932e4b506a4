"""pH neutralisation in a stirred tank (Henson & Seborg 1994, IEEE TCST 2(3), 169-182).

After Hall & Seborg (1989) and the model in Henson & Seborg (1994), "Adaptive nonlinear control
of a pH neutralization process" (also Henson & Seborg 1997, Nonlinear Process Control, ch. 4):
an acid stream q1 (HNO3), a buffer stream q2 (NaHCO3) and a base stream q3 (NaOH with a trace of
NaHCO3) mix in a tank of cross section A; the effluent leaves through a valve at the bottom.
The chemistry is written with two *reaction invariants* per stream (charge balance and carbonate
balance), which mix linearly, so the state is (Wa4, Wb4, h) and the pH is an implicit output:

    A h dWa4/dt = q1 (Wa1 - Wa4) + q2 (Wa2 - Wa4) + q3 (Wa3 - Wa4)
    A h dWb4/dt = q1 (Wb1 - Wb4) + q2 (Wb2 - Wb4) + q3 (Wb3 - Wb4)
    A   dh/dt   = q1 + q2 + q3 - Cv (h + z)^n

    0 = Wa4 + 10^(pH-14) - 10^(-pH) + Wb4 (1 + 2 10^(pH-pK2)) / (1 + 10^(pK1-pH) + 10^(pH-pK2))

Values (the paper's Table I; time in s, flows in ml/s, concentrations in mol/L):
Wa1 = 3e-3, Wa2 = -3e-2, Wa3 = -3.05e-3; Wb1 = 0, Wb2 = 3e-2, Wb3 = 5e-5; pK1 = 6.35,
pK2 = 10.33; A = 207 cm^2, z = 11.5 cm, n = 0.607; nominal q1 = 16.6, q2 = 0.55, q3 = 15.6 ml/s,
h = 14.0 cm, Wa4 = -4.32e-4, Wb4 = 5.28e-4 mol/L, pH = 7.0. The valve coefficient
Cv = 4.59 ml/(s cm^n) is the one that makes h = 14 cm the steady level at the nominal flows.
The exact steady state of these equations is Wa4 = -4.360e-4, Wb4 = 5.276e-4, pH 7.03 (the
paper rounds it).

The buffer is weak, so the titration curve is steep just above neutrality: at the nominal acid
flow the pH rises by up to 3 units per ml/s of base between pH 7.5 and 9 (the equivalence point
is near pH 8.3), about ten times as fast as at pH 6 or 10: the process gain changes tenfold
over the range the MVs reach.

This twin of the rig is 2x2, as in many MIMO studies of the model: the acid flow q1 and the base
flow q3 are the MVs, the pH and the level h the CVs; the buffer flow q2 is a measured DV (OU
drift around 0.55 ml/s). Unmeasured: the acid stream's strength Wa1 drifts (OU, about 1 %). The
pH is found by bisection in [-1, 15] (the residual rises monotonically with the pH) refined by a
Newton step, which also gives torch the implicit-function gradient of the pH.
"""

from __future__ import annotations

import math
from types import MappingProxyType
from typing import Any, ClassVar

import numpy as np
import torch
from scipy.optimize import brentq

from connectors.sim.base import Ops, OUProcess
from connectors.sim.tagged import TaggedPlant, XOps, xops

WA = (3e-3, -3e-2, -3.05e-3)  # reaction invariant A of acid, buffer, base streams, mol/L
WB = (0.0, 3e-2, 5e-5)  # reaction invariant B, mol/L
PK1, PK2 = 6.35, 10.33  # carbonic acid dissociation constants, -log10
AREA = 207.0  # tank cross section, cm^2
Z = 11.5  # outlet below the tank's level datum, cm
N_VALVE = 0.607  # valve exponent
Q1, Q2, Q3 = 16.6, 0.55, 15.6  # nominal acid, buffer, base flows, ml/s
H0 = 14.0  # nominal level, cm
CV = (Q1 + Q2 + Q3) / (H0 + Z) ** N_VALVE  # 4.586 ml/(s cm^n): h = 14 cm at nominal flows
LN10 = math.log(10.0)
#: the tank is 30 cm high; below 0.5 cm the level and the pH electrode are unreliable
H_MAX, H_MIN = 30.0, 0.5


def ph_residual(ph: Any, wa: Any, wb: Any, ops: XOps) -> Any:
    """The charge balance at this pH (mol/L): zero at the solution's pH, rising with the pH."""
    e1 = ops.exp((PK1 - ph) * LN10)
    e2 = ops.exp((ph - PK2) * LN10)
    water = ops.exp((ph - 14.0) * LN10) - ops.exp(-ph * LN10)
    return wa + water + wb * (1.0 + 2.0 * e2) / (1.0 + e1 + e2)


def _ph_slope(ph: Any, wa: Any, wb: Any, ops: XOps) -> Any:
    """d(residual)/d(pH) (mol/L per pH unit), always > 0."""
    e1 = ops.exp((PK1 - ph) * LN10)
    e2 = ops.exp((ph - PK2) * LN10)
    water = (ops.exp((ph - 14.0) * LN10) + ops.exp(-ph * LN10)) * LN10
    den = 1.0 + e1 + e2
    frac = (2.0 * e2 * LN10 * den - (1.0 + 2.0 * e2) * LN10 * (e2 - e1)) / (den * den)
    return water + wb * frac


def solve_ph(wa: Any, wb: Any, ops: XOps) -> Any:
    """The pH of an effluent with invariants ``wa``, ``wb`` (arrays or scalars, numpy or torch).

    numpy scalars: Brent's method (scipy) to 1e-12. Arrays and torch: 64 bisection steps in
    [-1, 15], then one Newton step, which in torch carries the implicit gradient
    ``dpH/dw = -(df/dw) / (df/dpH)``.
    """
    if not ops.is_torch and np.ndim(wa) == 0 and np.ndim(wb) == 0:
        return brentq(lambda ph: ph_residual(ph, wa, wb, ops), -1.0, 15.0, xtol=1e-13)
    if ops.is_torch:
        with torch.no_grad():
            root = _bisect(wa.detach(), wb.detach(), ops)
    else:
        root = _bisect(np.asarray(wa, float), np.asarray(wb, float), ops)
    return root - ph_residual(root, wa, wb, ops) / _ph_slope(root, wa, wb, ops)


def _bisect(wa: Any, wb: Any, ops: XOps) -> Any:
    lo = wa * 0.0 - 1.0
    hi = wa * 0.0 + 15.0
    for _ in range(64):
        mid = 0.5 * (lo + hi)
        above = ph_residual(mid, wa, wb, ops) > 0  # the root is below mid
        lo = ops.where(above, lo, mid)
        hi = ops.where(above, mid, hi)
    return 0.5 * (lo + hi)


def mixed_invariants(q1: float, q2: float, q3: float) -> tuple[float, float]:
    """Steady-state effluent invariants (Wa4, Wb4) for constant flows: flow-weighted means."""
    q = q1 + q2 + q3
    wa = (q1 * WA[0] + q2 * WA[1] + q3 * WA[2]) / q
    wb = (q1 * WB[0] + q2 * WB[1] + q3 * WB[2]) / q
    return wa, wb


def steady_level(q: float) -> float:
    """The level (cm) at which the valve passes a total flow ``q`` (ml/s)."""
    return (q / CV) ** (1.0 / N_VALVE) - Z


class PHNeutralisation(TaggedPlant):
    """Henson & Seborg's pH tank: CVs pH and h (cm), MVs q1, q3 (ml/s), DV q2 (ml/s)."""

    name = "ph"
    state_names = ("Wa4", "Wb4", "h")
    x0 = np.array([*mixed_invariants(Q1, Q2, Q3), H0])
    u0 = np.array([Q1, Q3])
    d0 = np.array([Q2])
    time_unit_s = 1.0
    #: per 10 s sample: small mixing imperfections in the invariants, ripple on the level
    process_noise = np.array([2e-7, 5e-8, 0.01])
    sensor_noise = MappingProxyType({"pH": 0.02, "h": 0.05, "q1": 0.05, "q3": 0.05, "q2": 0.005})
    #: acid stream strength Wa1 (mol/L)
    param_names: ClassVar[tuple[str, ...]] = ("Wa1",)

    def _setup_disturbances(self) -> None:
        self.p = np.array([WA[0]])
        self._p_drift = [OUProcess(WA[0], sigma=0.01 * WA[0], tau=3600.0, rng=self.rng)]
        self._d_drift = [OUProcess(Q2, sigma=0.05, tau=1800.0, rng=self.rng)]

    def rhs(self, x: Any, u: Any, d: Any, p: Any, ops: Ops) -> Any:
        xo = xops(ops)
        wa4, wb4, h = xo.unstack(x)
        q1, q3 = xo.unstack(u)
        q2 = xo.unstack(d)[0]
        wa1 = xo.unstack(p)[0]
        volume = AREA * (H_MIN + xo.relu(h - H_MIN))  # the level never reaches zero (clip_state)
        dwa = (q1 * (wa1 - wa4) + q2 * (WA[1] - wa4) + q3 * (WA[2] - wa4)) / volume
        dwb = (q1 * (WB[0] - wb4) + q2 * (WB[1] - wb4) + q3 * (WB[2] - wb4)) / volume
        head = xo.relu(h + Z) + 1e-9
        dh = (q1 + q2 + q3 - CV * xo.exp(N_VALVE * xo.log(head))) / AREA
        return xo.stack([dwa, dwb, dh])

    def clip_state(self, x: np.ndarray) -> np.ndarray:
        return np.array([x[0], max(x[1], 0.0), min(max(x[2], H_MIN), H_MAX)])

    def tag_values(self, x: Any, u: Any, d: Any, p: Any, ops: XOps) -> list[Any]:
        wa4, wb4, h = ops.unstack(x)
        q1, q3 = ops.unstack(u)
        return [solve_ph(wa4, wb4, ops), h, q1, q3, ops.unstack(d)[0]]

    def check_safe(self) -> str | None:
        if self.x[2] >= H_MAX - 1e-6:
            return f"tank overflowing (level at the {H_MAX:.0f} cm rim; q1={self.u[0]:.1f}, " + (
                f"q3={self.u[1]:.1f} ml/s)"
            )
        if self.x[2] <= H_MIN + 1e-6:
            return f"tank nearly empty (level {self.x[2]:.1f} cm): the pH electrode runs dry"
        return None
