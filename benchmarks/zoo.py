"""The plant zoo: a development set to tune on, and a held-out set that is only ever reported.

The split is made once, here, and nowhere else:

- :data:`DEVELOPMENT`: the three original built-in plants (cstr, quadtank, woodberry), ten
  generated plants (zoo-0 .. zoo-9) and one of the new physical plants, the repeated fed-batch
  bioreactor (fedbatch). Any setting of the twin, its training, the controller or a benchmark
  (window, horizon, learning rate, patience, band calibration, move penalty, ...) may be chosen
  by looking at results on these plants.
- :data:`HELD_OUT`: 24 generated plants (zoo-100 .. zoo-123) and two physical plants of
  character new to the project: the pH neutralisation tank (ph, a steep titration curve) and the
  reactor-flash loop with a tenfold recycle (recycle, a slow mode beside fast ones). These are
  only ever reported. **No setting may be chosen on the held-out set**: not by tuning on it, not
  by picking between variants after seeing its figures, not by changing a default because a
  held-out plant did badly. A finding on a held-out plant is fixed on the development set, and
  the held-out figures are reported as they come, good or bad.

Generated plants are numbered and drawn from their number alone (``zoo-<n>``, see
:mod:`connectors.sim.generator`), so the sets are the same plants on every machine.

:func:`record_histories` records a plant's training and test histories the way the forecast
benchmark does (reusing :func:`connectors.sim.record.record`) and writes its spec beside them.

    .venv/bin/python benchmarks/zoo.py                   # the zoo's character table
    .venv/bin/python benchmarks/zoo.py --set held-out --markdown
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from connectors.sim.base import NUMPY_OPS, SimPlant  # noqa: E402
from connectors.sim.excitation import ExcitationConfig  # noqa: E402
from connectors.sim.plants import make_plant  # noqa: E402
from connectors.sim.record import DEFAULT_START, record  # noqa: E402
from connectors.sim.zoo import ZooPlant  # noqa: E402
from twin.spec import PlantSpec, spec_to_toml  # noqa: E402
from twin.store.historian import Historian  # noqa: E402

BUILT_IN = ("cstr", "quadtank", "woodberry")
DEVELOPMENT: tuple[str, ...] = (*BUILT_IN, *(f"zoo-{n}" for n in range(10)), "fedbatch")
"""plants on which settings may be tuned"""
HELD_OUT: tuple[str, ...] = ("ph", "recycle", *(f"zoo-{n}" for n in range(100, 124)))
"""plants that are only ever reported: no setting may be chosen on them"""
SETS = {"development": DEVELOPMENT, "held-out": HELD_OUT}

#: the named plants' character, as their modules' docstrings give it: dead time, integrating
#: states, nonlinearity (their time constants come from the linearisation, see character())
NAMED: dict[str, tuple[str, str, str]] = {
    "cstr": (
        "none",
        "no",
        "Arrhenius rate (exp 1/T), three steady states, runaway above Tc ~303 K",
    ),
    "quadtank": ("none", "no", "Torricelli outflow (sqrt h), a right-half-plane zero"),
    "woodberry": ("1-8.1 min", "no", "linear (first order plus dead time)"),
    "ph": ("none", "no", "titration curve (implicit pH, steepest at 7.5-9), outlet valve (h^0.6)"),
    "recycle": ("none", "no", "Arrhenius rates, relative volatility, purity gain changes sign"),
    "fedbatch": ("none", "V (within a batch)", "Monod kinetics, bilinear dilution, batch resets"),
}


@dataclass(frozen=True)
class Character:
    """What a plant is like: the zoo table's row."""

    name: str
    set: str
    n_cv: int
    n_mv: int
    n_dv: int
    sample_period: float
    tau_s: tuple[float, float]
    """fastest and slowest time constant (s): lags of a generated plant, else the linearisation"""
    dead_time: str
    integrating: str
    nonlinearity: str


def set_of(name: str) -> str:
    """``development`` or ``held-out`` (ValueError for a plant in neither)."""
    for label, names in SETS.items():
        if name in names:
            return label
    raise ValueError(f"{name} is in neither zoo set")


def _linear_taus(plant: SimPlant) -> tuple[float, float]:
    """Time constants (s) of the linearisation at the nominal point, states that move only."""
    x, u, d, p = plant.x0.astype(float), plant.u0, plant.d0, plant.p
    cols = []
    for i in range(len(x)):
        dx = np.zeros_like(x)
        dx[i] = 1e-6 * max(1.0, abs(x[i]))
        f_hi, f_lo = plant.rhs(x + dx, u, d, p, NUMPY_OPS), plant.rhs(x - dx, u, d, p, NUMPY_OPS)
        cols.append((np.asarray(f_hi) - np.asarray(f_lo)) / (2 * dx[i]))
    jac = np.stack(cols, axis=1)
    moving = np.flatnonzero(np.abs(jac).sum(axis=1) > 0)  # not delay lines, clocks, volumes
    eig = np.linalg.eigvals(jac[np.ix_(moving, moving)])
    rates = np.abs(eig.real[np.abs(eig.real) > 1e-12])
    taus = plant.time_unit_s / rates
    return float(taus.min()), float(taus.max())


def character(name: str) -> Character:
    """The character of a zoo plant (generated: from its design; named: linearised + docs)."""
    plant = make_plant(name, noise=False)
    spec = plant.spec
    ts = spec.sample_period
    counts = (len(spec.cvs), len(spec.mvs), len(spec.dvs))
    if isinstance(plant, ZooPlant):
        d = plant.design
        samples = f"{d.max_delay} sample" + ("s" if d.max_delay > 1 else "")
        delay = f"up to {samples} ({d.max_delay * ts:g} s)" if d.max_delay else "none"
        return Character(
            name,
            set_of(name),
            *counts,
            ts,
            (min(d.taus) * ts, max(d.taus) * ts),
            delay,
            ", ".join(d.integrating) or "no",
            "; ".join(d.nonlinearities) or "linear",
        )
    dead, integrating, nonlinear = NAMED[name]
    taus = _linear_taus(plant)
    return Character(name, set_of(name), *counts, ts, taus, dead, integrating, nonlinear)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def table(names: tuple[str, ...], markdown: bool = False) -> str:
    """The zoo table of ``names``, plain or Markdown."""
    rows = []
    for name in names:
        c = character(name)
        rows.append(
            [
                c.name,
                c.set,
                f"{c.n_cv}/{c.n_mv}/{c.n_dv}",
                f"{c.sample_period:g} s",
                f"{_duration(c.tau_s[0])}-{_duration(c.tau_s[1])}",
                c.dead_time,
                c.integrating,
                c.nonlinearity,
            ]
        )
    head = ["plant", "set", "CV/MV/DV", "sample", "time constants", "dead time", "integrating"]
    head.append("nonlinearity")
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head) - 1)]
    fmt = "  ".join(f"{{:{w}s}}" for w in widths) + "  {}"
    return "\n".join(fmt.format(*r) for r in [head, *rows])


# --- histories for the benchmarks ------------------------------------------------------------


@dataclass(frozen=True)
class Histories:
    """A plant's recorded training and test histories (historian folders) and its spec file."""

    plant: str
    seed: int
    spec: PlantSpec
    spec_file: Path
    train: Path
    test: Path
    train_span: tuple[datetime, datetime]
    test_span: tuple[datetime, datetime]

    def frames(self) -> tuple[Any, Any]:
        """The regular training and test frames (polars) on the spec's sample period."""
        train = Historian(self.train).frame(self.spec, *self.train_span)
        return train, Historian(self.test).frame(self.spec, *self.test_span)


def record_histories(
    plant: str,
    seed: int,
    folder: str | Path,
    *,
    train_hours: float = 24.0,
    test_hours: float = 6.0,
    pause_hours: float = 6.0,
    test_excitation: ExcitationConfig | None = None,
    disturbance_gain: float = 1.0,
    progress: bool = False,
) -> Histories:
    """Record ``plant``'s training history (plant and excitation seeded ``seed``) and a later
    test history (seeded ``10_000 + seed``, starting ``pause_hours`` after training ends, with
    ``test_excitation`` and its drifts ``disturbance_gain`` times stronger) under ``folder``.

    Folders ``<plant>-<seed>-train`` and ``-test`` and the spec ``<plant>.toml`` (what
    ``twin train --spec`` takes, generated plants included). Same arguments, same data.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    train_dir, test_dir = folder / f"{plant}-{seed}-train", folder / f"{plant}-{seed}-test"
    sim = make_plant(plant, seed=seed)
    record(sim, train_hours, train_dir, seed=seed, progress=progress)
    test_start = DEFAULT_START + timedelta(hours=train_hours + pause_hours)
    test_sim = make_plant(plant, seed=10_000 + seed)
    for ou in [*test_sim._d_drift, *test_sim._p_drift]:  # the drifts are the plant's own OUs
        ou.sigma *= disturbance_gain
    record(
        test_sim,
        test_hours,
        test_dir,
        seed=10_000 + seed,
        start=test_start,
        excitation=test_excitation,
        progress=progress,
    )
    spec_file = folder / f"{plant}.toml"
    spec_file.write_text(spec_to_toml(sim.spec), encoding="utf-8")
    return Histories(
        plant,
        seed,
        sim.spec,
        spec_file,
        train_dir,
        test_dir,
        (DEFAULT_START, DEFAULT_START + timedelta(hours=train_hours)),
        (test_start, test_start + timedelta(hours=test_hours)),
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--set", choices=[*SETS, "all"], default="all", help="which plants to list")
    p.add_argument("--markdown", action="store_true", help="a Markdown table")
    args = p.parse_args(argv)
    names = DEVELOPMENT + HELD_OUT if args.set == "all" else SETS[args.set]
    print(table(names, markdown=args.markdown))
    n_gen = sum(n.startswith("zoo-") for n in names)
    print(
        f"\n{len(names)} plants ({n_gen} generated). No setting may be chosen on the held-out set."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
