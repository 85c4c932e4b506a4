"""Non-isothermal reactor and flash separator with a large recycle: a plant with a slow mode.

The flowsheet and its balances follow the reactor-separator process of Liu, Muñoz de la Peña and
Christofides (2009), "Distributed model predictive control of nonlinear process systems",
AIChE J. 55(5), 1171-1184, reduced to one CSTR (their vessel 1) and the flash (vessel 3).
Consecutive exothermic reactions A -> B -> C in the liquid phase; the flash's vapour, rich in A,
is condensed and recycled to the reactor; the flash's liquid is the product (B). Mass fractions,
constant holdups and density, time in hours:

    dxA1/dt = F0/V1 (1 - xA1) + Fr/V1 (xAr - xA1) - k1(T1) xA1
    dxB1/dt = F0/V1 (0 - xB1) + Fr/V1 (xBr - xB1) + k1(T1) xA1 - k2(T1) xB1
    dT1/dt  = F0/V1 (T0 - T1) + Fr/V1 (T3 - T1) + (-dH1/M)/cp k1 xA1 + (-dH2/M)/cp k2 xB1
              + Q1 / (rho cp V1)
    dxA3/dt = F1/V3 (xA1 - xA3) - Fr/V3 (xAr - xA3)         F1 = F0 + Fr
    dxB3/dt = F1/V3 (xB1 - xB3) - Fr/V3 (xBr - xB3)
    dT3/dt  = F1/V3 (T1 - T3) + Q3 / (rho cp V3)

    ki(T) = ki0 exp(-Ei / (R T));  xjr = alpha_j xj3 / (alpha_A xA3 + alpha_B xB3 + alpha_C xC3)

Kinetic and physical constants as given for that process (their Table 1): k10 = 2.77e3 1/s,
k20 = 2.5e3 1/s, E1 = 5e4, E2 = 6e4 kJ/kmol, dH1 = -6e4, dH2 = -7e4 kJ/kmol, cp = 4.2
kJ/(kg K), rho = 1000 kg/m^3, R = 8.314 kJ/(kmol K), alpha_A = 3.5, alpha_B = 1.0,
alpha_C = 0.5, T0 = 300 K, pure A fed; molar mass M = 250 kg/kmol. (Taken from public
reproductions of the table; check them against the paper before citing a number from here.)

Chosen here for a *large recycle*: V1 = 1.0 m^3, V3 = 0.5 m^3, feed F0 = 1 m^3/h, recycle
Fr = 10 m^3/h (ten times the throughput), heat inputs Q1 = 36 kW, Q3 = 14 kW. At that point
T1 = 395.4 K, xA1 = 0.35, xB3 = 0.795 (near the top of the purity curve: the gain from Q1 to the
product purity changes sign a little above it). The recycle makes two time scales
(Kumar & Daoutidis 2002, J. Process Control 12, 475-484): the units exchange their contents
through Fr within minutes (time constants 1-3 min), while the loop as a whole changes its
inventory and heat content only through the throughput F0 (50-100 min): the slow mode.

MVs: Q1, Q3 (kW), Fr (m^3/h). CVs: T1, T3 (K), xA1 and xB3 (mass %). DV: the feed flow F0
(measured, OU drift). Unmeasured: a catalyst activity factor on k1 and k2 (OU around 1). Above
470 K the reactor is called runaway.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any, ClassVar

import numpy as np

from connectors.sim.base import Ops, OUProcess
from connectors.sim.tagged import TaggedPlant, XOps, xops

K10, K20 = 2.77e3 * 3600.0, 2.5e3 * 3600.0  # pre-exponential factors, 1/h
E1, E2 = 5e4, 6e4  # activation energies, kJ/kmol
DH1, DH2 = -6e4, -7e4  # heats of reaction, kJ/kmol
MOLAR_MASS = 250.0  # kg/kmol
CP, RHO, R_GAS = 4.2, 1000.0, 8.314  # kJ/(kg K), kg/m^3, kJ/(kmol K)
ALPHA = (3.5, 1.0, 0.5)  # relative volatilities of A, B, C
T_FEED = 300.0  # feed temperature, K
V1, V3 = 1.0, 0.5  # reactor and flash holdups, m^3 (chosen)
F0 = 1.0  # feed flow, m^3/h (chosen)
Q1, Q3, FR = 36.0, 14.0, 10.0  # nominal heat inputs (kW) and recycle (m^3/h) (chosen)
KW = 3600.0  # kJ/h per kW
RUNAWAY_T = 470.0


class ReactorFlashRecycle(TaggedPlant):
    """CSTR + flash with a tenfold recycle: CVs T1, xA1, xB3, T3; MVs Q1, Q3, Fr; DV F0."""

    name = "recycle"
    state_names = ("xA1", "xB1", "T1", "xA3", "xB3", "T3")
    #: the nominal steady state (by simulation, to 1e-9)
    x0 = np.array([0.3478866, 0.6230329, 395.439204, 0.1383211, 0.7951663, 396.530113])
    u0 = np.array([Q1, Q3, FR])
    d0 = np.array([F0])
    time_unit_s = 3600.0
    #: per 1-min sample: composition and temperature scatter from imperfect mixing
    process_noise = np.array([3e-4, 3e-4, 0.03, 3e-4, 3e-4, 0.03])
    sensor_noise = MappingProxyType(
        {"T1": 0.1, "xA1": 0.2, "xB3": 0.2, "T3": 0.1, "Q1": 0.1, "Q3": 0.1, "Fr": 0.03, "F0": 0.01}
    )
    #: catalyst activity, a factor on both rate constants
    param_names: ClassVar[tuple[str, ...]] = ("activity",)

    def _setup_disturbances(self) -> None:
        self.p = np.array([1.0])
        self._p_drift = [OUProcess(1.0, sigma=0.03, tau=3 * 3600.0, rng=self.rng)]
        self._d_drift = [OUProcess(F0, sigma=0.03, tau=3600.0, rng=self.rng)]

    def rhs(self, x: Any, u: Any, d: Any, p: Any, ops: Ops) -> Any:
        xo = xops(ops)
        xa1, xb1, t1, xa3, xb3, t3 = xo.unstack(x)
        q1, q3, fr = xo.unstack(u)
        f0 = xo.unstack(d)[0]
        act = xo.unstack(p)[0]
        r1 = act * K10 * xo.exp(-E1 / (R_GAS * t1)) * xa1
        r2 = act * K20 * xo.exp(-E2 / (R_GAS * t1)) * xb1
        xc3 = 1.0 - xa3 - xb3
        vol = ALPHA[0] * xa3 + ALPHA[1] * xb3 + ALPHA[2] * xc3
        xar, xbr = ALPHA[0] * xa3 / vol, ALPHA[1] * xb3 / vol
        f1 = f0 + fr
        heat = (-DH1 / MOLAR_MASS) / CP * r1 + (-DH2 / MOLAR_MASS) / CP * r2
        return xo.stack(
            [
                f0 / V1 * (1.0 - xa1) + fr / V1 * (xar - xa1) - r1,
                -f0 / V1 * xb1 + fr / V1 * (xbr - xb1) + r1 - r2,
                f0 / V1 * (T_FEED - t1) + fr / V1 * (t3 - t1) + heat + q1 * KW / (RHO * CP * V1),
                f1 / V3 * (xa1 - xa3) - fr / V3 * (xar - xa3),
                f1 / V3 * (xb1 - xb3) - fr / V3 * (xbr - xb3),
                f1 / V3 * (t1 - t3) + q3 * KW / (RHO * CP * V3),
            ]
        )

    def clip_state(self, x: np.ndarray) -> np.ndarray:
        out = x.copy()
        for a, b in ((0, 1), (3, 4)):  # mass fractions: each in [0, 1], their sum at most 1
            out[a], out[b] = np.clip(out[a], 0.0, 1.0), np.clip(out[b], 0.0, 1.0)
            excess = out[a] + out[b] - 1.0
            if excess > 0:
                out[a], out[b] = out[a] - excess / 2, out[b] - excess / 2
        return out

    def tag_values(self, x: Any, u: Any, d: Any, p: Any, ops: XOps) -> list[Any]:
        xa1, _xb1, t1, _xa3, xb3, t3 = ops.unstack(x)
        q1, q3, fr = ops.unstack(u)
        return [t1, 100.0 * xa1, 100.0 * xb3, t3, q1, q3, fr, ops.unstack(d)[0]]

    def check_safe(self) -> str | None:
        if self.x[2] > RUNAWAY_T:
            return (
                f"thermal runaway: reactor temperature {self.x[2]:.1f} K above {RUNAWAY_T:.0f} K "
                f"(Q1 = {self.u[0]:.1f} kW, Q3 = {self.u[1]:.1f} kW)"
            )
        return None
