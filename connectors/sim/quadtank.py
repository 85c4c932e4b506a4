"""Quadruple-tank process at the non-minimum-phase point P+ (Johansson 2000, IEEE TCST 8(3)).

Four tanks; pump 1 feeds tank 1 (fraction ``gamma1``) and tank 4 (the rest), pump 2 feeds tank 2
(``gamma2``) and tank 3; the upper tanks 3 and 4 drain into the lower tanks 1 and 2. States are
the levels ``h1..h4`` [cm], time in seconds, Torricelli outflow ``a sqrt(2 g h)`` (made linear
below 0.05 cm, so that an empty tank is no singularity):

    dh1/dt = -a1/A1 sqrt(2g h1) + a3/A1 sqrt(2g h3) + gamma1 k1/A1 v1
    dh2/dt = -a2/A2 sqrt(2g h2) + a4/A2 sqrt(2g h4) + gamma2 k2/A2 v2
    dh3/dt = -a3/A3 sqrt(2g h3) + (1 - gamma2) k2/A3 v2
    dh4/dt = -a4/A4 sqrt(2g h4) + (1 - gamma1) k1/A4 v1

At P+ (v = 3.15 V, gamma1 + gamma2 = 0.77 < 1) the linearised 2x2 system from (v1, v2) to
(h1, h2) has one transmission zero in the right half plane (Johansson, section III): the zeros
solve ``(1 + s T3)(1 + s T4) = (1 - gamma1)(1 - gamma2) / (gamma1 gamma2)``, and with all four
static gains positive, ``det G(0) < 0``. The exact steady state of these equations at P+ is
h = (12.44, 13.17, 4.73, 4.99) cm; the paper rounds it to (12.6, 13.0, 4.8, 4.9).

Disturbance: the outlet of tank 1 partially clogs and clears (unmeasured OU drift of ``a1``,
about 2 %, time constant 30 min). No measured DV. Levels stay in [0, 20] cm; a full tank
overflows, which the plant reports as a trip.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from connectors.sim.base import Ops, OUProcess, SimPlant

A1 = A3 = 28.0  # tank cross sections, cm^2
A2 = A4 = 32.0
a1 = a3 = 0.071  # outlet cross sections, cm^2
a2 = a4 = 0.057
G = 981.0  # gravity, cm/s^2
K1, K2 = 3.14, 3.29  # pump gains at P+, cm^3/(V s)
GAMMA1, GAMMA2 = 0.43, 0.34  # valve splits at P+
KC = 0.50  # level sensor gain, V/cm (the paper's outputs are kc h; the tags here report h in cm)
V_NOMINAL = 3.15  # pump voltages at P+, V
H_MAX = 20.0  # tank height, cm
#: below this level (cm) the outflow falls linearly to zero instead of as sqrt(h)
H_FILM = 0.05


def steady_levels(v1: float, v2: float, a1_scale: float = 1.0) -> np.ndarray:
    """Exact steady levels ``[4]`` (cm) for constant pump voltages (mass balance per tank)."""
    q3 = (1 - GAMMA2) * K2 * v2  # inflow of tank 3 = its outflow
    q4 = (1 - GAMMA1) * K1 * v1
    q1 = GAMMA1 * K1 * v1 + q3
    q2 = GAMMA2 * K2 * v2 + q4
    outlet = np.array([a1 * a1_scale, a2, a3, a4])
    return (np.array([q1, q2, q3, q4]) / outlet) ** 2 / (2 * G)


def _torricelli(h: Any, ops: Ops) -> Any:
    """``sqrt(2 g h)`` per tank [cm/s], made linear in h below ``H_FILM`` and zero below 0.

    Torricelli's law fails at a film of water anyway; the linear end keeps the ODE Lipschitz,
    so LSODA does not stall when a tank runs dry and the torch gradient stays finite.
    Above ``H_FILM`` it is the exact law (steady states unchanged).
    """
    h = ops.relu(h)
    above = ops.sqrt(2 * G * (H_FILM + ops.relu(h - H_FILM)))  # sqrt(2 g max(h, H_FILM))
    return above * (H_FILM - ops.relu(H_FILM - h)) / H_FILM  # times min(h, H_FILM) / H_FILM


class QuadTank(SimPlant):
    """Johansson's quadruple-tank rig at P+: CVs h1..h4 (cm), MVs v1, v2 (V), no DV."""

    name = "quadtank"
    state_names = ("h1", "h2", "h3", "h4")
    x0 = steady_levels(V_NOMINAL, V_NOMINAL)
    u0 = np.array([V_NOMINAL, V_NOMINAL])
    d0 = np.zeros(0)
    time_unit_s = 1.0
    #: level kick per 5 s sample (cm): inflow turbulence, small beside the sensor noise
    process_noise = np.array([0.01, 0.01, 0.01, 0.01])
    measurement_noise: ClassVar[dict[str, float]] = {
        "h1": 0.05,
        "h2": 0.05,
        "h3": 0.05,
        "h4": 0.05,
        "v1": 0.005,
        "v2": 0.005,
    }
    #: tank 1's outlet area relative to nominal (1.0; below 1: partly clogged)
    param_names: ClassVar[tuple[str, ...]] = ("a1_scale",)

    def _setup_disturbances(self) -> None:
        # p[0]: a1 / a1_nominal; partial clogging of tank 1's outlet, +-2 % over ~30 min
        self.p = np.array([1.0])
        self._p_drift = [OUProcess(1.0, sigma=0.02, tau=1800.0, rng=self.rng)]
        self._d_drift = []

    def rhs(self, x: Any, u: Any, d: Any, p: Any, ops: Ops) -> Any:
        r1, r2, r3, r4 = ops.unstack(_torricelli(x, ops))
        q1, q2, q3, q4 = a1 * ops.unstack(p)[0] * r1, a2 * r2, a3 * r3, a4 * r4
        v1, v2 = ops.unstack(u)
        pump1, pump2 = K1 * v1, K2 * v2
        dh1 = (q3 - q1 + GAMMA1 * pump1) / A1
        dh2 = (q4 - q2 + GAMMA2 * pump2) / A2
        dh3 = ((1 - GAMMA2) * pump2 - q3) / A3
        dh4 = ((1 - GAMMA1) * pump1 - q4) / A4
        return ops.stack([dh1, dh2, dh3, dh4])

    def clip_state(self, x: np.ndarray) -> np.ndarray:
        return np.clip(x, 0.0, H_MAX)

    def outputs(self, x: np.ndarray, u: np.ndarray, d: np.ndarray) -> dict[str, float]:
        values = {f"h{i + 1}": float(x[i]) for i in range(4)}
        values.update(v1=float(u[0]), v2=float(u[1]))
        return values

    def check_safe(self) -> str | None:
        full = [i + 1 for i in range(4) if self.x[i] >= H_MAX - 1e-6]
        if full:
            return ", ".join(f"tank {i} overflowing" for i in full) + (
                f" (level at the {H_MAX:.0f} cm rim; pumps v1={self.u[0]:.2f} V, "
                f"v2={self.u[1]:.2f} V)"
            )
        return None
