"""Excitation signals for system identification: moves an operator would accept on a plant.

An amplitude-modulated pseudo-random binary-like sequence (APRBS): each MV holds a random level
for a random number of samples, the levels spread around the nominal value with an amplitude that
itself wanders slowly, so the data hold small and large moves alike. Now and then a long
*plateau* at a setpoint-like level lets the plant settle, as in normal operation. Every move
respects the MV's limits and its rate limit per sample, like the controller's moves will.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from twin.spec import Tag


@dataclass(frozen=True)
class ExcitationConfig:
    """How the excitation moves each MV. Durations are in samples."""

    min_hold: int = 5
    """shortest time a level is held"""
    max_hold: int = 60
    """longest time a level is held (outside plateaus)"""
    plateau_probability: float = 0.1
    """chance that a new segment is a long plateau instead of a random level"""
    plateau_hold: tuple[int, int] = (120, 360)
    """range of plateau lengths"""
    amplitude: tuple[float, float] = (0.2, 1.0)
    """range of the slowly varying amplitude, as a fraction of the half-span around nominal"""


class Excitation:
    """Pseudo-random MV moves within limits and rate limits; deterministic for a given seed."""

    def __init__(
        self,
        mvs: tuple[Tag, ...],
        nominal: np.ndarray,
        seed: int = 0,
        config: ExcitationConfig | None = None,
    ) -> None:
        self.mvs = mvs
        self.cfg = config or ExcitationConfig()
        self.rng = np.random.default_rng(seed)
        self.lo = np.array([t.lo for t in mvs])
        self.hi = np.array([t.hi for t in mvs])
        self.rate = np.array([t.rate_limit or np.inf for t in mvs])
        self.nominal = np.clip(np.asarray(nominal, float), self.lo, self.hi)
        self.value = self.nominal.copy()
        self.target = self.nominal.copy()
        self.hold_left = np.zeros(len(mvs), dtype=int)
        self.amp = np.full(len(mvs), 0.5)

    def _new_segment(self, i: int) -> None:
        cfg, rng = self.cfg, self.rng
        # the amplitude drifts slowly between its bounds (a bounded random walk)
        a_lo, a_hi = cfg.amplitude
        self.amp[i] = float(np.clip(self.amp[i] + rng.normal(0.0, 0.15), a_lo, a_hi))
        if rng.random() < cfg.plateau_probability:
            # a setpoint-like plateau near nominal, held long enough to settle
            level = self.nominal[i] + 0.3 * self._half_span(i, rng.uniform(-1, 1))
            hold = rng.integers(cfg.plateau_hold[0], cfg.plateau_hold[1] + 1)
        else:
            level = self.nominal[i] + self.amp[i] * self._half_span(i, rng.uniform(-1, 1))
            hold = rng.integers(cfg.min_hold, cfg.max_hold + 1)
        self.target[i] = float(np.clip(level, self.lo[i], self.hi[i]))
        self.hold_left[i] = int(hold)

    def _half_span(self, i: int, s: float) -> float:
        """Distance from nominal to the limit on the side that ``s`` points to, times ``s``."""
        room = (self.hi[i] - self.nominal[i]) if s >= 0 else (self.nominal[i] - self.lo[i])
        return s * room

    def next(self, back_off: bool = False) -> np.ndarray:
        """The MV values for the next sample ``[n_mv]``, engineering units.

        ``back_off=True`` (e.g. the plant reports a trip) steers every MV back to nominal,
        as an operator would, before random moves resume.
        """
        for i in range(len(self.mvs)):
            if back_off:
                self.target[i] = self.nominal[i]
                self.hold_left[i] = self.cfg.min_hold
            elif self.hold_left[i] <= 0:
                self._new_segment(i)
            self.hold_left[i] -= 1
        step = np.clip(self.target - self.value, -self.rate, self.rate)
        self.value = np.clip(self.value + step, self.lo, self.hi)
        return self.value.copy()
