"""Exothermic CSTR with a cooling jacket (Henson & Seborg 1997, Nonlinear Process Control, §1.2).

States: concentration of A ``Ca`` [mol/L] and reactor temperature ``T`` [K]; time in minutes.

    dCa/dt = q/V (Caf - Ca) - k0 exp(-E/(R T)) Ca
    dT/dt  = q/V (Tf - T) + (-dH)/(rho Cp) k0 exp(-E/(R T)) Ca + UA/(V rho Cp) (Tc - T)

The textbook point Ca = 0.5 mol/L, T = 350 K at Tc = 300 K is open-loop *unstable* (the middle of
three steady states): left alone the reactor falls to the stable lower branch, Ca = 0.877 mol/L,
T = 324.5 K, at the same coolant temperature. A plant without a stabilising temperature loop runs
there, so that is this simulation's nominal point. With the coolant too hot (above about 304 K,
or 302 K with a warmer, richer feed) the reactor ignites to the upper branch near 380 K. The
simulation flags that as a *runaway* (``tripped``, with the reason) and keeps integrating with a
stiff method, so the values stay finite and the server reports the trip instead of sending NaN.

Disturbances: the feed temperature Tf is measured (DV, slow OU drift around 350 K); the feed
concentration Caf drifts unmeasured (OU, ±1 % over tens of minutes).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from connectors.sim.base import Ops, OUProcess, SimPlant

Q = 100.0  # feed flow, L/min
V = 100.0  # volume, L
RHO = 1000.0  # density, g/L
CP = 0.239  # heat capacity, J/(g K)
MDH = 5e4  # -dH, heat of reaction, J/mol
E_R = 8750.0  # activation energy over R, K
K0 = 7.2e10  # pre-exponential factor, 1/min
UA = 5e4  # heat transfer coefficient times area, J/(min K)
CAF = 1.0  # nominal feed concentration, mol/L

#: reactor temperature above which the plant is called runaway
RUNAWAY_T = 360.0


class CSTR(SimPlant):
    """The Henson & Seborg CSTR: CVs T and Ca, MV Tc, DV Tf."""

    name = "cstr"
    state_names = ("Ca", "T")
    x0 = np.array([0.877253, 324.4754])
    u0 = np.array([300.0])  # Tc
    d0 = np.array([350.0])  # Tf
    time_unit_s = 60.0
    process_noise = np.array([5e-4, 0.02])
    measurement_noise: ClassVar[dict[str, float]] = {"T": 0.1, "Ca": 0.002, "Tc": 0.05, "Tf": 0.1}
    param_names: ClassVar[tuple[str, ...]] = ("Caf",)  # feed concentration, mol/L

    def _setup_disturbances(self) -> None:
        self.p = np.array([CAF])
        self._p_drift = [OUProcess(CAF, sigma=0.01, tau=1800.0, rng=self.rng)]
        self._d_drift = [OUProcess(350.0, sigma=0.5, tau=900.0, rng=self.rng)]

    def rhs(self, x: Any, u: Any, d: Any, p: Any, ops: Ops) -> Any:
        ca, temp = x[..., 0], x[..., 1]
        tc, tf, caf = u[..., 0], d[..., 0], p[..., 0]
        rate = K0 * ops.exp(-E_R / temp) * ca
        dca = Q / V * (caf - ca) - rate
        dtemp = Q / V * (tf - temp) + MDH / (RHO * CP) * rate + UA / (V * RHO * CP) * (tc - temp)
        return ops.stack([dca, dtemp])

    def clip_state(self, x: np.ndarray) -> np.ndarray:
        return np.array([max(x[0], 0.0), x[1]])

    def outputs(self, x: np.ndarray, u: np.ndarray, d: np.ndarray) -> dict[str, float]:
        return {"T": float(x[1]), "Ca": float(x[0]), "Tc": float(u[0]), "Tf": float(d[0])}

    def check_safe(self) -> str | None:
        if self.x[1] > RUNAWAY_T:
            return (
                f"thermal runaway: reactor temperature {self.x[1]:.1f} K above {RUNAWAY_T:.0f} K "
                f"(coolant {self.u[0]:.1f} K)"
            )
        return None
