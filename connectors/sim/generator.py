"""The plant generator: a seeded design of a plant of varied character (``zoo-<n>``).

:func:`design` draws one plant's structure from its index alone (same index, same plant):

- 2-8 CVs, 1-4 MVs, 0-3 DVs, a sample period of 5-60 s;
- per CV a *unit*: a first-order lag, two lags in series, or an integrating (level-like)
  response (a lag feeding an integrator with a weak leak, 400-1000 samples, far beyond a
  forecast horizon, and walls where the level overflows or runs dry);
- time constants over at least two decades within the plant (the fastest 1-3 samples, the
  slowest 100-200 times that), log-uniform in between;
- dead times (transport delays) of whole samples on some input-to-CV channels (most plants);
- interactions: each CV is driven by a sparse set of MVs and DVs, some by an upstream CV;
- nonlinearities (most plants): Hammerstein input characteristics (valve, saturation,
  quadratic), Wiener output characteristics, gains that change with the operating point;
- unmeasured drifts (OU) entering some CVs, measured DVs drifting (OU), process and sensor noise.

Units are dimensionless inside (inputs normalised to [-1, 1], each CV's state scaled by its
``bound``, computed from the gains so that the CVs use a fair part of their spec range and stay
inside it: the tests check that over the zoo); tags carry engineering names,
units and ranges (:mod:`connectors.sim.zoo_tags`); :func:`zoo_spec` is its plant spec, in the same
form as the built-in plants' TOML specs. :class:`connectors.sim.zoo.ZooPlant` simulates a design.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from connectors.sim.zoo_tags import InputTag, OutputTag, cv_tag, dv_tag, mv_tag
from twin.spec import NodeRef, PlantSpec, Tag

#: the generator's fixed salt: zoo-<n> is drawn from default_rng([SALT, n])
SALT = 0x5A0_2026
SAMPLE_PERIODS = (5.0, 10.0, 15.0, 30.0, 60.0)
SHAPES = ("linear", "saturation", "valve", "quadratic")
#: rate (per sample) at which an integrating unit's wall pushes back beyond |s| = 1
WALL_RATE = 1.0
#: largest |normalised DV| the bounds allow for (DVs are scaled by 3 sigma of their drift)
DV_REACH = 1.3


@dataclass(frozen=True)
class Shape:
    """A static characteristic ``G(z)`` with ``G(0) = 0`` and slope 1 at 0 (``c`` its strength).

    linear: z; saturation: tanh(c z) / tanh(c); valve (equal-percentage-like, convex):
    (exp(c z) - 1) / c; quadratic: z + c z^2 (|c| < 0.5: monotone on [-1, 1]).
    """

    kind: str = "linear"
    c: float = 0.0

    def __call__(self, z: np.ndarray) -> np.ndarray:
        z = np.asarray(z, float)
        if self.kind == "saturation":
            return np.tanh(self.c * z) / np.tanh(self.c)
        if self.kind == "valve":
            return np.expm1(self.c * z) / self.c
        if self.kind == "quadratic":
            return z + self.c * z * z
        return z

    def reach(self, z_max: float) -> float:
        """``max |G(z)|`` for ``|z| <= z_max`` (the shapes are monotone there)."""
        return float(np.max(np.abs(self(np.array([-z_max, z_max])))))

    def describe(self) -> str:
        return self.kind if self.kind == "linear" else f"{self.kind}({self.c:+.2f})"


@dataclass(frozen=True)
class Unit:
    """One CV's process, in normalised units; times in samples."""

    kind: str  # "lag" | "lag2" | "integrating"
    tau: float  # the first lag (for integrating: the lag ahead of the integrator)
    tau2: float  # lag2: the second lag; 0 otherwise
    leak: float  # integrating: the leak's time constant; 0 otherwise
    rate: float  # integrating: ramp per sample at unit drive; 0 otherwise
    gains: tuple[float, ...]  # per input (MVs, then DVs); 0: no effect
    delays: tuple[int, ...]  # per input: dead time in samples
    upstream: int  # index of the CV that drives this one (-1: none)
    coupling: float  # gain from the upstream CV's normalised state
    state_gain: float  # a: the gain is (1 + a tanh(2 s / bound))
    drift: tuple[float, ...]  # gain from each unmeasured drift
    shape: Shape  # the output (Wiener) characteristic of s / bound
    bound: float  # the scale of |s| (see _reach; integrating: the walls at 1)
    noise: float  # process noise: std of the kick to s per sample


@dataclass(frozen=True)
class Drift:
    """An unmeasured disturbance: OU around 0 in drive units."""

    sigma: float
    tau_s: float


@dataclass(frozen=True)
class ZooDesign:
    """Everything that makes one generated plant, drawn from its index."""

    index: int
    sample_period: float
    units: tuple[Unit, ...]
    cvs: tuple[OutputTag, ...]
    mvs: tuple[InputTag, ...]
    dvs: tuple[InputTag, ...]
    input_shapes: tuple[Shape, ...]  # per input (MVs, then DVs; DVs linear)
    drifts: tuple[Drift, ...]

    @property
    def name(self) -> str:
        return f"zoo-{self.index}"

    @property
    def taus(self) -> list[float]:
        """Every lag's time constant (samples): the first lags and the second ones."""
        return [u.tau for u in self.units] + [u.tau2 for u in self.units if u.kind == "lag2"]

    @property
    def max_delay(self) -> int:
        return max(max(u.delays) for u in self.units)

    @property
    def integrating(self) -> list[str]:
        return [
            t.name for t, u in zip(self.cvs, self.units, strict=True) if u.kind == "integrating"
        ]

    @property
    def nonlinearities(self) -> list[str]:
        """What is nonlinear, in words: input and output characteristics, operating-point gains."""
        names = [t.name for t in (*self.mvs, *self.dvs)]
        out = [f"in {n}: {s.describe()}" for n, s in zip(names, self.input_shapes, strict=True)]
        out = [o for o, s in zip(out, self.input_shapes, strict=True) if s.kind != "linear"]
        for t, u in zip(self.cvs, self.units, strict=True):
            if u.shape.kind != "linear":
                out.append(f"out {t.name}: {u.shape.describe()}")
            if u.state_gain:
                out.append(f"gain {t.name}: x(1{u.state_gain:+.2f} tanh)")
        return out


def design(index: int) -> ZooDesign:
    """The design of ``zoo-<index>``: a pure function of ``index`` (>= 0)."""
    if index < 0:
        raise ValueError(f"zoo plants are numbered from 0, got {index}")
    rng = np.random.default_rng([SALT, index])
    n_cv, n_mv, n_dv = int(rng.integers(2, 9)), int(rng.integers(1, 5)), int(rng.integers(0, 4))
    ts = float(rng.choice(SAMPLE_PERIODS, p=[0.1, 0.25, 0.25, 0.2, 0.2]))
    nonlinear = rng.random() < 0.8
    delayed = rng.random() < 0.7
    n_int = int(rng.random() < 0.4) + int(n_cv >= 5 and rng.random() < 0.2)
    kinds = ["integrating"] * n_int + [
        "lag2" if rng.random() < 0.4 else "lag" for _ in range(n_cv - n_int)
    ]
    kinds = [kinds[i] for i in rng.permutation(n_cv)]
    tau1, tau2 = _time_constants(rng, kinds)
    gains = _gains(rng, n_cv, n_mv, n_dv)
    delays = _delays(rng, gains, tau1, delayed)
    shapes = [_shape(rng, "input") if nonlinear else Shape() for _ in range(n_mv)]
    shapes += [Shape()] * n_dv
    drifts = [
        Drift(sigma=float(rng.uniform(0.03, 0.1)), tau_s=float(rng.uniform(1800.0, 7200.0)))
        for _ in range(int(rng.integers(1, 3)))
    ]
    drift_gains = np.where(rng.random((n_cv, len(drifts))) < 0.5, rng.uniform(0.5, 1.0), 0.0)
    regulating = [i for i, k in enumerate(kinds) if k != "integrating"]
    drift_gains[rng.choice(regulating, len(drifts)), np.arange(len(drifts))] = 1.0
    drift_gains *= rng.choice([-1.0, 1.0], drift_gains.shape)
    reach = [s.reach(1.0) for s in shapes[:n_mv]] + [DV_REACH] * n_dv
    units: list[Unit] = []
    for i, kind in enumerate(kinds):
        upstream, coupling = -1, 0.0
        if i > 0 and rng.random() < 0.35:
            upstream = int(rng.integers(0, i))
            coupling = float(rng.choice([-1.0, 1.0]) * rng.uniform(0.3, 0.8))
        integrating = kind == "integrating"
        a = 0.0
        if nonlinear and not integrating and rng.random() < 0.3:
            a = float(rng.choice([-1.0, 1.0]) * rng.uniform(0.2, 0.5))
        shape = _shape(rng, "output") if nonlinear and not integrating else Shape()
        if integrating:  # a level drifts off with any sustained offset: no unmeasured drift
            drift_gains[i] = 0.0
            gains[i, n_mv:] *= 0.5
        drive = _reach(np.abs(gains[i]) * reach) + abs(coupling)
        drive += float(np.abs(drift_gains[i]) @ [4.0 * d.sigma for d in drifts])
        units.append(
            Unit(
                kind=kind,
                tau=tau1[i],
                tau2=tau2[i],
                leak=float(10 ** rng.uniform(2.6, 3.0)) if integrating else 0.0,
                rate=float(1.0 / rng.uniform(150.0, 400.0)) if integrating else 0.0,
                gains=tuple(float(g) for g in gains[i]),
                delays=tuple(int(t) for t in delays[i]),
                upstream=upstream,
                coupling=coupling,
                state_gain=a,
                drift=tuple(float(g) for g in drift_gains[i]),
                shape=shape,
                bound=1.0 if integrating else 1.05 * (1.0 + abs(a)) * drive,
                noise=float(rng.uniform(0.001, 0.003)) * (1.0 if integrating else drive),
            )
        )
    cvs = tuple(cv_tag(rng, i, k == "integrating") for i, k in enumerate(kinds))
    mvs = tuple(mv_tag(rng, j) for j in range(n_mv))
    dvs = tuple(dv_tag(rng, j) for j in range(n_dv))
    return ZooDesign(index, ts, tuple(units), cvs, mvs, dvs, tuple(shapes), tuple(drifts))


def _reach(parts: np.ndarray) -> float:
    """How far a sum of bounded terms goes in practice: between its worst case and its RSS.

    All inputs at their extremes with the worst signs at once is the worst case (the sum); the
    excitation makes that rare, so the bound (and with it the CV's span) sits halfway to the
    root-sum-square, which keeps the CVs using a fair part of their range.
    """
    return 0.5 * float(parts.sum() + np.sqrt((parts**2).sum()))


def _time_constants(rng: np.random.Generator, kinds: list[str]) -> tuple[list[float], list[float]]:
    """First and second lags (samples), spanning 100-200x from the fastest (1-3 samples)."""
    slots = [(i, 1) for i in range(len(kinds))] + [
        (i, 2) for i, k in enumerate(kinds) if k == "lag2"
    ]
    fast = float(rng.uniform(1.0, 3.0))
    slow = fast * float(10 ** rng.uniform(2.0, 2.3))
    values = np.exp(rng.uniform(np.log(fast), np.log(slow), len(slots)))
    ends = rng.choice(len(slots), 2, replace=False)
    values[ends[0]], values[ends[1]] = fast, slow
    tau1, tau2 = [0.0] * len(kinds), [0.0] * len(kinds)
    for (i, which), v in zip(slots, values, strict=True):
        (tau1 if which == 1 else tau2)[i] = float(v)
    return tau1, tau2


def _gains(rng: np.random.Generator, n_cv: int, n_mv: int, n_dv: int) -> np.ndarray:
    """``[n_cv, n_mv + n_dv]`` sparse signed gains: every CV moved by an MV, every MV used."""
    mv = np.where(rng.random((n_cv, n_mv)) < 0.6, rng.uniform(0.3, 1.0, (n_cv, n_mv)), 0.0)
    for i in range(n_cv):
        if not mv[i].any():
            mv[i, rng.integers(0, n_mv)] = rng.uniform(0.3, 1.0)
    for j in range(n_mv):
        if not mv[:, j].any():
            mv[rng.integers(0, n_cv), j] = rng.uniform(0.3, 1.0)
    dv = np.where(rng.random((n_cv, n_dv)) < 0.4, rng.uniform(0.2, 0.6, (n_cv, n_dv)), 0.0)
    for j in range(n_dv):
        if not dv[:, j].any():
            dv[rng.integers(0, n_cv), j] = rng.uniform(0.2, 0.6)
    gains = np.hstack([mv, dv])
    return gains * rng.choice([-1.0, 1.0], gains.shape)


def _delays(
    rng: np.random.Generator, gains: np.ndarray, tau1: list[float], delayed: bool
) -> np.ndarray:
    """Dead times in samples per channel: up to half the CV's lag (at most 12), on some channels."""
    delays = np.zeros(gains.shape, dtype=int)
    if not delayed:
        return delays
    for i, j in zip(*np.nonzero(gains), strict=True):
        if rng.random() < 0.6:
            delays[i, j] = rng.integers(1, max(1, min(12, round(0.5 * tau1[i]))) + 1)
    if not delays.any():
        i, j = (int(v) for v in next(zip(*np.nonzero(gains), strict=True)))
        delays[i, j] = rng.integers(1, 4)
    return delays


def _shape(rng: np.random.Generator, where: str) -> Shape:
    """A characteristic: about half linear, the rest one of the nonlinear shapes."""
    kind = str(
        rng.choice(SHAPES, p=[0.4, 0.2, 0.2, 0.2] if where == "input" else [0.5, 0.2, 0.15, 0.15])
    )
    if kind == "saturation":
        return Shape(kind, float(rng.uniform(1.5, 3.0)))
    if kind == "valve":
        return Shape(kind, float(rng.uniform(1.0, 2.0)))
    if kind == "quadratic":
        return Shape(kind, float(rng.choice([-1.0, 1.0]) * rng.uniform(0.2, 0.45)))
    return Shape()


def zoo_spec(plant: ZooDesign) -> PlantSpec:
    """The plant spec of a design: CVs, MVs, DVs in that order, nodes as the built-ins have."""
    name = plant.name
    uri = f"urn:process-twin:sim:{name}"

    def node(tag: str) -> NodeRef:
        return NodeRef(kind="s", identifier=f"{name}.{tag}", namespace_uri=uri)

    tags = [
        Tag(
            name=t.name,
            node=node(t.name),
            unit=t.unit,
            role="cv",
            lo=t.lo,
            hi=t.hi,
            description=t.description,
            setpoint=t.nominal,
            weight=t.weight,
        )
        for t in plant.cvs
    ]
    tags += [
        Tag(
            name=t.name,
            node=node(t.name),
            unit=t.unit,
            role="mv",
            lo=t.lo,
            hi=t.hi,
            description=t.description,
            rate_limit=t.rate,
            write_node=node(f"{t.name}.SP"),
        )
        for t in plant.mvs
    ]
    tags += [
        Tag(
            name=t.name,
            node=node(t.name),
            unit=t.unit,
            role="dv",
            lo=t.lo,
            hi=t.hi,
            description=f"{t.description} (measured disturbance)",
        )
        for t in plant.dvs
    ]
    return PlantSpec(
        name=name,
        sample_period=plant.sample_period,
        tags=tuple(tags),
        description=describe(plant),
        source=f"<generated: {name}>",
    )


def _count(n: int, what: str) -> str:
    return f"{n} {what}" + ("" if n == 1 else "s")


def describe(plant: ZooDesign) -> str:
    """One line on a generated plant's character."""
    n_int = len(plant.integrating)
    taus = plant.taus
    parts = [
        f"Generated plant #{plant.index}: {len(plant.cvs)} CVs"
        + (f" ({n_int} integrating)" if n_int else ""),
        f"{_count(len(plant.mvs), 'MV')}, {_count(len(plant.dvs), 'DV')}",
        f"time constants {min(taus):.1f}-{max(taus):.0f} samples",
        f"dead times up to {plant.max_delay} samples" if plant.max_delay else "no dead time",
        "nonlinear" if plant.nonlinearities else "linear",
    ]
    return "; ".join(parts)
