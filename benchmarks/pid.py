"""The benchmark's PI baseline: decentralised loops tuned by SIMC from simulated step tests.

The recipe an engineer would follow on a real plant, run on the simulator:

1. **Step tests.** From the nominal steady state, noise off, each MV in turn steps up by
   ``step_fraction`` of its span; every CV is sampled at the spec's period until it settles.
2. **FOPDT fits.** Each response is fitted with ``k (1 - exp(-(t - theta) / tau))`` by least
   squares (``scipy.optimize.curve_fit``); higher-order responses come out with an apparent
   dead time, as Skogestad's half rule would give them.
3. **Pairing.** One MV per tracked CV (spec weight > 0): with one MV, the heaviest CV; with a
   square system, the pairing whose relative gain array (RGA, Bristol 1966) elements are
   positive and closest to 1 (quadruple tank at P+: h1-v2, h2-v1; Wood-Berry: XD-R, XB-S).
4. **SIMC PI** (Skogestad 2003, J. Process Control 13, 291-309), digital: with
   ``theta' = theta + Ts/2`` (the zero-order hold adds half a sample of delay) and the
   "tight control" choice ``tau_c = theta'``::

       Kc = tau / (k (tau_c + theta')),    tau_I = min(tau, 4 (tau_c + theta'))

5. **Loops.** Velocity-form PI, ``du = Kc (e_k - e_{k-1} + Ts / tau_I e_k)``, each move clipped
   to the MV's rate limit and the result to its bounds. The velocity form integrates only what
   was applied, so it cannot wind up at a limit (the anti-windup), and a loop starts bumplessly
   from the MV's current value.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass

import numpy as np
from scipy.optimize import curve_fit

from connectors.sim.plants import make_plant
from twin.spec import PlantSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FOPDT:
    """First order plus dead time: ``k e^(-theta s) / (tau s + 1)``; times in seconds."""

    gain: float
    """CV unit per MV unit"""
    tau: float
    theta: float
    fit_error: float
    """RMS misfit of the step response relative to ``|gain|``"""


@dataclass(frozen=True)
class PITuning:
    """One SIMC PI loop: the CV it holds, the MV it moves, its model and settings."""

    cv: str
    mv: str
    model: FOPDT
    kc: float
    """proportional gain, MV unit per CV unit (sign of the process gain)"""
    ti: float
    """integral time, s"""
    tau_c: float
    """closed-loop time constant chosen, s"""

    def describe(self) -> str:
        """One line for reports."""
        m = self.model
        return (
            f"{self.cv}<-{self.mv}: FOPDT k={m.gain:.4g}, tau={m.tau:.0f} s, theta={m.theta:.0f} s "
            f"-> Kc={self.kc:.4g}, tau_I={self.ti:.0f} s (tau_c={self.tau_c:.0f} s)"
        )


def _fopdt(t: np.ndarray, k: float, tau: float, theta: float) -> np.ndarray:
    return k * np.where(t > theta, 1.0 - np.exp(-(t - theta) / max(tau, 1e-9)), 0.0)


def fit_fopdt(t: np.ndarray, response: np.ndarray) -> FOPDT:
    """Least-squares FOPDT through a unit-step response ``response [n]`` sampled at ``t [n]`` s."""
    final = float(response[-1])
    i63 = int(np.argmax(np.abs(response) >= 0.63 * abs(final)))
    p0 = [final, max(float(t[i63]), float(t[0])), float(t[0])]
    popt, _ = curve_fit(
        _fopdt, t, response, p0=p0, bounds=([-np.inf, 1e-3, 0.0], [np.inf, 1e7, float(t[-1])])
    )
    k, tau, theta = (float(v) for v in popt)
    err = float(np.sqrt(np.mean((_fopdt(t, k, tau, theta) - response) ** 2)) / max(abs(k), 1e-12))
    return FOPDT(k, tau, theta, err)


def step_tests(
    plant_name: str, step_fraction: float = 0.05, settle: float = 8.0
) -> dict[tuple[str, str], FOPDT]:
    """FOPDT models ``(cv, mv) -> FOPDT`` from noise-free step tests at the nominal point.

    Each test runs until ``settle`` times the slowest time constant seen in a first short test
    (at least 100 samples); CVs that do not move are left out.
    """
    spec = make_plant(plant_name).spec
    models: dict[tuple[str, str], FOPDT] = {}
    for j, mv in enumerate(spec.mvs):
        samples = 100
        while True:
            plant = make_plant(plant_name, noise=False)
            y0 = plant.outputs(plant.x, plant.u, plant.d)
            du = step_fraction * mv.span
            target = float(plant.u[j] + du)
            rows = [plant.step({mv.name: target}) for _ in range(samples)]
            t = spec.sample_period * np.arange(1, samples + 1)
            fits = {}
            for cv in spec.cvs:
                dy = np.array([r[cv.name] for r in rows]) - y0[cv.name]
                if np.abs(dy).max() < 1e-6 * cv.span:
                    continue
                fits[(cv.name, mv.name)] = fit_fopdt(t, dy / du)
            slowest = max(f.tau + f.theta for f in fits.values())
            if t[-1] >= settle * slowest or samples >= 5000:
                break
            samples = int(np.ceil(settle * slowest / spec.sample_period))
        models.update(fits)
    return models


def rga(gains: np.ndarray) -> np.ndarray:
    """Relative gain array ``G .* inv(G)^T`` of a square steady-state gain matrix."""
    return gains * np.linalg.inv(gains).T


def pairing(spec: PlantSpec, models: dict[tuple[str, str], FOPDT]) -> list[tuple[str, str]]:
    """``(cv, mv)`` loops: one per MV, for the tracked CVs (weight > 0), chosen by the RGA."""
    cvs = [t.name for t in spec.cvs if (t.weight or 0.0) > 0]
    mvs = [t.name for t in spec.mvs]
    if len(mvs) == 1:
        best = max((t for t in spec.cvs if (t.name, mvs[0]) in models), key=lambda t: t.weight or 0)
        return [(best.name, mvs[0])]
    if len(cvs) != len(mvs):
        raise ValueError(f"{spec.name}: {len(cvs)} tracked CVs for {len(mvs)} MVs: not square")
    gains = np.array([[models[(c, m)].gain if (c, m) in models else 0.0 for m in mvs] for c in cvs])
    lam = rga(gains)
    options = []
    for perm in itertools.permutations(range(len(mvs))):
        picked = [lam[i, perm[i]] for i in range(len(cvs))]
        if all(v > 0 for v in picked):
            options.append((sum(abs(v - 1.0) for v in picked), perm))
    if not options:
        raise ValueError(f"{spec.name}: no pairing with positive relative gains (RGA {lam})")
    _, perm = min(options)
    return [(cvs[i], mvs[perm[i]]) for i in range(len(cvs))]


def simc(cv: str, mv: str, model: FOPDT, sample_period: float) -> PITuning:
    """SIMC PI settings for a digital loop, tight control ``tau_c = theta + Ts/2``."""
    theta = model.theta + sample_period / 2.0
    tau_c = theta
    kc = model.tau / (model.gain * (tau_c + theta))
    ti = min(model.tau, 4.0 * (tau_c + theta))
    return PITuning(cv, mv, model, kc, ti, tau_c)


def tune(plant_name: str) -> list[PITuning]:
    """Step tests, FOPDT fits, RGA pairing and SIMC settings for a built-in plant."""
    spec = make_plant(plant_name).spec
    models = step_tests(plant_name)
    loops = [simc(c, m, models[(c, m)], spec.sample_period) for c, m in pairing(spec, models)]
    for loop in loops:
        log.info("%s PI %s", plant_name, loop.describe())
    return loops


class DecentralisedPI:
    """Velocity-form PI loops, each move clipped to its MV's rate limit and bounds."""

    def __init__(self, spec: PlantSpec, loops: list[PITuning]) -> None:
        self.spec, self.loops = spec, loops
        self._mv = {t.name: t for t in spec.mvs}
        self.reset()

    def reset(self) -> None:
        """Forget the last errors (the next call starts bumplessly)."""
        self._last_error: dict[str, float] = {}

    def act(
        self, measured: dict[str, float], current: dict[str, float], setpoints: dict[str, float]
    ) -> dict[str, float]:
        """Next MV values from the measured CVs, the MVs' current values and the setpoints."""
        ts = self.spec.sample_period
        out = dict(current)
        for loop in self.loops:
            e = setpoints[loop.cv] - measured[loop.cv]
            e_prev = self._last_error.get(loop.cv, e)
            self._last_error[loop.cv] = e
            move = loop.kc * ((e - e_prev) + ts / loop.ti * e)
            tag = self._mv[loop.mv]
            rate = tag.rate_limit if tag.rate_limit is not None else np.inf
            move = float(np.clip(move, -rate, rate))
            out[loop.mv] = float(np.clip(current[loop.mv] + move, tag.lo, tag.hi))
        return out
