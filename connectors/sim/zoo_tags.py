"""Engineering faces of a generated plant: tag names, units, nominal values, ranges, noise.

A generated plant computes in normalised units (:mod:`connectors.sim.generator`); its tags
look like a real plant's: ISA-style names (``TI101`` a temperature, ``LI103`` a level, ``FC201``
a flow setpoint, ``TI301`` a measured feed temperature), units, a nominal value and a range.
A CV reports ``nominal + reach * G(s / bound) / G_max``, so it stays within about
``nominal +- reach``; its spec range (``lo``, ``hi``) is 10 % wider (an integrating level: the
transmitter's 0-100 %).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: CV kinds: (ISA letters, unit, description, nominal range, reach as a fraction of nominal
#: or, where the nominal is None, absolute)
_CV_KINDS = (
    ("TI", "°C", "temperature", (40.0, 300.0), (5.0, 40.0)),
    ("PI", "bar", "pressure", (1.5, 30.0), (0.1, 0.3)),
    ("FI", "m3/h", "flow", (10.0, 500.0), (0.1, 0.4)),
    ("AI", "mol%", "composition", (5.0, 95.0), (0.3, 0.8)),
    ("LI", "%", "level", (30.0, 70.0), (10.0, 25.0)),
)
_MV_KINDS = (
    ("FV", "%", "valve opening"),
    ("FC", "m3/h", "flow setpoint"),
    ("QC", "kW", "heat duty"),
    ("SC", "rpm", "speed"),
)
_DV_KINDS = (
    ("TI", "°C", "feed temperature"),
    ("FI", "m3/h", "feed flow"),
    ("AI", "mol%", "feed composition"),
)


@dataclass(frozen=True)
class OutputTag:
    """A CV as the plant reports it."""

    name: str
    unit: str
    description: str
    nominal: float
    reach: float  # |value - nominal| <= reach (noise-free)
    lo: float
    hi: float
    noise: float  # sensor noise std, engineering units
    weight: float  # tracking weight in the spec


@dataclass(frozen=True)
class InputTag:
    """An MV or DV: engineering value = nominal + scale * normalised value."""

    name: str
    unit: str
    description: str
    nominal: float
    scale: float  # MV: half its span (normalised range [-1, 1]); DV: 3 sigma of its drift
    lo: float
    hi: float
    noise: float
    rate: float = 0.0  # MV: rate limit per sample
    sigma: float = 0.0  # DV: OU std of its drift (engineering units)
    tau_s: float = 0.0  # DV: OU time constant of its drift (s)


def nice(x: float, digits: int = 3) -> float:
    """``x`` rounded to ``digits`` significant digits (spec values a person would write)."""
    if x == 0 or not math.isfinite(x):
        return x
    return round(x, digits - 1 - math.floor(math.log10(abs(x))))


def cv_tag(rng: np.random.Generator, i: int, integrating: bool) -> OutputTag:
    """CV number ``i`` (a level if it integrates) with its nominal value, reach and limits."""
    letters, unit, what, (n_lo, n_hi), (r_lo, r_hi) = (
        _CV_KINDS[4] if integrating else _CV_KINDS[int(rng.integers(0, len(_CV_KINDS)))]
    )
    name = f"{letters}{101 + i}"
    weight = float(rng.choice([1.0, 0.5]))
    if integrating:
        noise = float(rng.uniform(0.1, 0.4))
        return OutputTag(name, unit, "level (integrating)", 50.0, 45.0, 0.0, 100.0, noise, weight)
    nominal = nice(float(rng.uniform(n_lo, n_hi)))
    if letters in ("TI", "LI"):
        reach = nice(float(rng.uniform(r_lo, r_hi)))
    else:
        reach = nice(nominal * float(rng.uniform(r_lo, r_hi)))
    if letters == "AI":
        reach = nice(min(reach, 0.85 * nominal, 0.85 * (100.0 - nominal)))
    lo, hi = nice(nominal - 1.1 * reach), nice(nominal + 1.1 * reach)
    if letters == "AI":
        lo, hi = max(lo, 0.0), min(hi, 100.0)
    noise = nice(reach * float(rng.uniform(0.003, 0.01)), 2)
    return OutputTag(name, unit, what, nominal, reach, lo, hi, noise, weight)


def mv_tag(rng: np.random.Generator, j: int) -> InputTag:
    """MV number ``j``: nominal mid-range, a span, and a rate limit of 10-60 samples a stroke."""
    letters, unit, what = _MV_KINDS[int(rng.integers(0, len(_MV_KINDS)))]
    if letters == "FV":
        nominal, half = 50.0, nice(float(rng.uniform(20.0, 40.0)), 2)
    else:
        nominal = nice(float(10 ** rng.uniform(0.7, 3.3)))
        half = nice(nominal * float(rng.uniform(0.15, 0.45)))
    rate = nice(2.0 * half / float(rng.uniform(10.0, 60.0)))
    noise = nice(half * float(rng.uniform(0.001, 0.005)), 2)
    name = f"{letters}{201 + j}"
    return InputTag(name, unit, what, nominal, half, nominal - half, nominal + half, noise, rate)


def dv_tag(rng: np.random.Generator, j: int) -> InputTag:
    """DV number ``j``: a measured feed property drifting (OU) around its nominal value."""
    letters, unit, what = _DV_KINDS[int(rng.integers(0, len(_DV_KINDS)))]
    if letters == "TI":
        nominal, sigma = nice(float(rng.uniform(10.0, 60.0))), nice(float(rng.uniform(1.0, 4.0)))
    elif letters == "FI":
        nominal = nice(float(rng.uniform(10.0, 300.0)))
        sigma = nice(nominal * float(rng.uniform(0.02, 0.05)))
    else:
        nominal, sigma = nice(float(rng.uniform(10.0, 90.0))), nice(float(rng.uniform(0.5, 2.0)))
    tau = float(rng.uniform(600.0, 3600.0))
    noise = nice(sigma * float(rng.uniform(0.02, 0.1)), 2)
    lo, hi = nice(nominal - 5.0 * sigma), nice(nominal + 5.0 * sigma)
    name = f"{letters}{301 + j}"
    return InputTag(name, unit, what, nominal, 3.0 * sigma, lo, hi, noise, sigma=sigma, tau_s=tau)
