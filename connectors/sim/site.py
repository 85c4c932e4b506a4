"""A simulated site (``site-<n>``): several generated units side by side, 53 tags in all.

What the operator app meets at plant scale: 9 CVs, 12 MVs and 32 DVs in groups, as a real site
has them. A site is

- four *units*, each a generated plant (:mod:`connectors.sim.generator`, ``zoo-<i>`` with the
  site's sample period), run as it is; its tags prefixed ``U1.``, ``U2.``, ... and carrying
  ``group = "Unit 1"``, ... (``U1.TI101``: unit 1's first CV);
- four *utilities* (group ``Utilities``, tags ``UT.*``): cooling water, steam, ambient and fuel
  gas, measured DVs drifting slowly (OU). Each unit's first unmeasured drift is one of them:
  what was a hidden disturbance of the generated plant is a measured one on the site;
- *indicators*, further measured DVs of each unit (side streams, tank farm), drifting (OU)
  but acting on no CV: a wide plant has many signals that a twin must learn to ignore.

Which units, utilities' assignment and indicators a site has is drawn from ``n`` alone (same
n, same site); the seed gives the noise. Every unit has the same sample period, so a site's
history is one grid. :meth:`SitePlant.torch_step` is the units' own, side by side (the
utilities' coupling enters as each unit's drift ``p``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from connectors.sim.base import Ops, OUProcess, SimPlant
from connectors.sim.generator import design, zoo_spec
from connectors.sim.tagged import xops
from connectors.sim.zoo import ZooPlant
from connectors.sim.zoo_tags import InputTag, dv_tag, nice
from twin.errors import SimulationError
from twin.spec import NodeRef, PlantSpec, Tag

SITE_PREFIX = "site-"
#: a site is drawn from default_rng([SITE_SALT, n])
SITE_SALT = 0x5173_2026
#: every unit of a site samples every 30 s (units are generated plants of that period)
SITE_PERIOD = 30.0
N_UNITS = 4
#: CVs, MVs and DVs of every site (the units' CVs and MVs; DVs with utilities and indicators)
N_CV, N_MV, N_DV = 9, 12, 32
#: utilities: (tag, unit, description, nominal, sigma of the drift)
UTILITIES = (
    ("UT.TI901", "°C", "cooling water supply temperature", 24.0, 1.5),
    ("UT.PI902", "bar", "steam header pressure", 11.0, 0.25),
    ("UT.TI903", "°C", "ambient temperature", 12.0, 3.0),
    ("UT.AI904", "MJ/m3", "fuel gas heating value", 37.5, 0.6),
)
UTILITY_GROUP = "Utilities"


def site_index(name: str) -> int | None:
    """The index of a site's name (``site-1`` -> 1), None if it is not one."""
    if not name.startswith(SITE_PREFIX):
        return None
    digits = name[len(SITE_PREFIX) :]
    return int(digits) if digits.isdigit() and digits == str(int(digits)) else None


@dataclass(frozen=True)
class SiteDesign:
    """Everything that makes ``site-<index>``."""

    index: int
    units: tuple[int, ...]
    """the zoo index of each unit"""
    utilities: tuple[InputTag, ...]
    drives: tuple[tuple[int, float], ...]
    """per unit: (utility index, sign) of the utility that is its first drift, or (-1, 0)"""
    indicators: tuple[tuple[InputTag, ...], ...]
    """per unit: its indicator DVs (names without the unit prefix)"""

    @property
    def name(self) -> str:
        return f"{SITE_PREFIX}{self.index}"


def _fits(cv: int, mv: int, after: int) -> bool:
    """Whether ``after`` more units (2-3 CVs, 2-4 MVs each) can take up ``cv`` CVs, ``mv`` MVs."""
    return 2 * after <= cv <= 3 * after and 2 * after <= mv <= 4 * after


@functools.lru_cache(maxsize=32)
def site_design(index: int) -> SiteDesign:
    """The design of ``site-<index>``: a pure function of ``index`` (>= 0)."""
    if index < 0:
        raise ValueError(f"sites are numbered from 0, got {index}")
    rng = np.random.default_rng([SITE_SALT, index])
    units: list[int] = []
    cv, mv, dv = N_CV, N_MV, 0
    for _ in range(100_000):  # about 300 draws are needed
        if len(units) == N_UNITS:
            break
        z = int(rng.integers(0, 1_000_000))
        d = design(z)
        after = N_UNITS - len(units) - 1
        fits = _fits(cv - len(d.cvs), mv - len(d.mvs), after)
        if d.sample_period == SITE_PERIOD and z not in units and fits:
            units.append(z)
            cv, mv, dv = cv - len(d.cvs), mv - len(d.mvs), dv + len(d.dvs)
    else:
        raise RuntimeError(f"no units found for site-{index}")
    utilities = tuple(
        InputTag(name, unit, what, nominal, 3.0 * sigma, nice(nominal - 5 * sigma),
                 nice(nominal + 5 * sigma), nice(0.05 * sigma, 2), sigma=sigma,
                 tau_s=float(rng.uniform(1800.0, 7200.0)))
        for name, unit, what, nominal, sigma in UTILITIES
    )  # fmt: skip
    drives = tuple((k % len(UTILITIES), float(rng.choice([-1.0, 1.0]))) for k in range(N_UNITS))
    n_ind = N_DV - dv - len(UTILITIES)
    indicators: list[tuple[InputTag, ...]] = []
    for k, z in enumerate(units):
        first = len(design(z).dvs)
        count = n_ind // N_UNITS + (k < n_ind % N_UNITS)
        tags = [dv_tag(rng, first + j) for j in range(count)]
        indicators.append(
            tuple(replace(t, description=f"{t.description}, side stream (indicator)") for t in tags)
        )
    return SiteDesign(index, tuple(units), utilities, drives, tuple(indicators))


def site_spec(site: SiteDesign) -> PlantSpec:
    """The spec of a site: the units' CVs, MVs and DVs (unit by unit), indicators, utilities.

    That order is the plant's ``u`` and ``d`` (:class:`SitePlant`); ``group`` says the unit.
    """
    name, uri = site.name, f"urn:process-twin:sim:{site.name}"

    def node(tag: str) -> NodeRef:
        return NodeRef(kind="s", identifier=f"{name}.{tag}", namespace_uri=uri)

    def dv(t: InputTag, tag: str, group: str) -> Tag:
        return Tag(name=tag, node=node(tag), unit=t.unit, role="dv", lo=t.lo, hi=t.hi,
                   description=t.description, group=group)  # fmt: skip

    cvs: list[Tag] = []
    mvs: list[Tag] = []
    dvs: list[Tag] = []
    for k, z in enumerate(site.units, start=1):
        group, prefix = f"Unit {k}", f"U{k}."
        for t in zoo_spec(design(z)).tags:
            tag = replace(
                t,
                name=prefix + t.name,
                node=node(prefix + t.name),
                write_node=node(f"{prefix}{t.name}.SP") if t.role == "mv" else None,
                group=group,
            )
            {"cv": cvs, "mv": mvs, "dv": dvs}[t.role].append(tag)
    for k, extra in enumerate(site.indicators, start=1):
        dvs += [dv(t, f"U{k}.{t.name}", f"Unit {k}") for t in extra]
    dvs += [dv(t, t.name, UTILITY_GROUP) for t in site.utilities]
    return PlantSpec(
        name=name,
        sample_period=SITE_PERIOD,
        tags=(*cvs, *mvs, *dvs),
        description=f"Simulated site #{site.index}: {N_UNITS} units (generated plants "
        f"{', '.join(f'zoo-{z}' for z in site.units)}) and utilities; {len(cvs)} CVs, "
        f"{len(mvs)} MVs, {len(dvs)} DVs",
        source=f"<generated: {name}>",
    )


class SitePlant(SimPlant):
    """Simulated site ``site-<index>``: same index, same site; same seed, same noise."""

    def __init__(self, index: int, seed: int = 0, *, noise: bool = True) -> None:
        self.design = site_design(index)
        s = self.design
        self.name = s.name
        seeds = np.random.SeedSequence([seed, index]).generate_state(N_UNITS)
        self.units = [
            ZooPlant(z, seed=int(q), noise=noise) for z, q in zip(s.units, seeds, strict=True)
        ]
        self.prefixes = [f"U{k}." for k in range(1, N_UNITS + 1)]
        self._extra = [t for group in s.indicators for t in group] + list(s.utilities)
        self.extra_names = [
            p + t.name for p, group in zip(self.prefixes, s.indicators, strict=True) for t in group
        ] + [t.name for t in s.utilities]
        self._cut = {
            key: np.cumsum([0] + [len(getattr(u, attr)) for u in self.units])
            for key, attr in (("x", "x0"), ("u", "u0"), ("d", "d0"), ("p", "p"))
        }
        self.state_names = tuple(
            p + n for p, u in zip(self.prefixes, self.units, strict=True) for n in u.state_names
        )
        self.x0 = np.concatenate([u.x0 for u in self.units])
        self.u0 = np.concatenate([u.u0 for u in self.units])
        extra0 = [t.nominal for t in self._extra]
        self.d0 = np.concatenate([*(u.d0 for u in self.units), extra0])
        self.process_noise = np.concatenate([u.process_noise for u in self.units])
        self.__dict__["param_names"] = tuple(
            p + n for p, u in zip(self.prefixes, self.units, strict=True) for n in u.param_names
        )
        super().__init__(seed, noise=noise, spec=site_spec(s))

    def _setup_disturbances(self) -> None:
        self.p = np.concatenate([u.p for u in self.units])
        self._drift = [OUProcess(t.nominal, t.sigma, t.tau_s, self.rng) for t in self._extra]
        self._held_extra: set[int] = set()

    def _slice(self, key: str, k: int) -> slice:
        cut = self._cut[key]
        return slice(int(cut[k]), int(cut[k + 1]))

    def step(self, mv: dict[str, float] | None = None) -> dict[str, float]:
        """Advance every unit one sample with the MVs held; the measured value of every tag."""
        for name, value in (mv or {}).items():
            self.set_mv(name, value)
        n_units_d = int(self._cut["d"][-1])
        if self.noise:
            for i, ou in enumerate(self._drift):
                drifted = ou.step(self.sample_period)
                if i not in self._held_extra:
                    self.d[n_units_d + i] = drifted
        first_util = len(self._extra) - len(self.design.utilities)
        values: dict[str, float] = {}
        self.tripped = None
        for k, (unit, prefix) in enumerate(zip(self.units, self.prefixes, strict=True)):
            unit.u[:] = self.u[self._slice("u", k)]
            util, sign = self.design.drives[k]
            if util >= 0 and unit.param_names:  # the utility is the unit's first drift
                t = self.design.utilities[util]
                z = (self.d[n_units_d + first_util + util] - t.nominal) / t.sigma
                unit.set_disturbance(unit.param_names[0], sign * unit.design.drifts[0].sigma * z)
            try:
                measured = unit.step()
            except SimulationError as exc:
                self.tripped = f"{prefix[:-1]}: {unit.tripped}"
                raise SimulationError(f"{self.name}: unit {prefix[:-1]}: {exc}") from exc
            values.update({prefix + n: v for n, v in measured.items()})
            if unit.tripped and not self.tripped:
                self.tripped = f"{prefix[:-1]} {unit.tripped}"
            self.d[self._slice("d", k)] = unit.d
        self.x = np.concatenate([u.x for u in self.units])
        self.p = np.concatenate([u.p for u in self.units])
        self.t += self.sample_period
        values.update(self._extra_measured())
        return values

    def _extra_measured(self) -> dict[str, float]:
        """The indicators' and utilities' readings (with their noise when enabled)."""
        base = int(self._cut["d"][-1])
        out = {}
        for i, (name, t) in enumerate(zip(self.extra_names, self._extra, strict=True)):
            value = float(self.d[base + i])
            if self.noise:
                value += t.noise * float(self.rng.standard_normal())
            out[name] = value
        return out

    def measure(self) -> dict[str, float]:
        values: dict[str, float] = {}
        for unit, prefix in zip(self.units, self.prefixes, strict=True):
            values.update({prefix + n: v for n, v in unit.measure().items()})
        values.update(self._extra_measured())
        return values

    def outputs(self, x: np.ndarray, u: np.ndarray, d: np.ndarray) -> dict[str, float]:
        out: dict[str, float] = {}
        for k, (unit, prefix) in enumerate(zip(self.units, self.prefixes, strict=True)):
            xs, us, ds = x[self._slice("x", k)], u[self._slice("u", k)], d[self._slice("d", k)]
            out.update({prefix + n: v for n, v in unit.outputs(xs, us, ds).items()})
        base = int(self._cut["d"][-1])
        out.update({n: float(d[base + i]) for i, n in enumerate(self.extra_names)})
        return out

    def set_disturbance(self, name: str, value: float) -> None:
        """Hold a unit's drift or DV (``U2.drift1``, ``U1.TI301``), an indicator or a utility."""
        if name in self.extra_names:
            i = self.extra_names.index(name)
            self.d[int(self._cut["d"][-1]) + i] = float(value)
            self._held_extra.add(i)
            return
        for unit, prefix in zip(self.units, self.prefixes, strict=True):
            if name.startswith(prefix):
                unit.set_disturbance(name[len(prefix) :], value)
                self.p = np.concatenate([u.p for u in self.units])
                return
        raise KeyError(f"{self.name} has no disturbance {name!r}")

    def rhs(self, x: Any, u: Any, d: Any, p: Any, ops: Ops) -> Any:
        parts = [
            unit.rhs(x[..., self._slice("x", k)], u[..., self._slice("u", k)],
                     d[..., self._slice("d", k)], p[..., self._slice("p", k)], ops)
            for k, unit in enumerate(self.units)
        ]  # fmt: skip
        return xops(ops).cat(parts)

    def torch_step(
        self,
        x: torch.Tensor,
        u: torch.Tensor,
        d: torch.Tensor | None = None,
        p: torch.Tensor | None = None,
        substeps: int = 4,
    ) -> torch.Tensor:
        """Every unit's :meth:`ZooPlant.torch_step` on its slice; shapes as the base class's."""
        u = torch.as_tensor(u, dtype=x.dtype)
        d_t = torch.as_tensor(self.d0 if d is None else d, dtype=x.dtype)
        p_t = torch.as_tensor(self.p if p is None else p, dtype=x.dtype)
        return torch.cat(
            [
                unit.torch_step(x[..., self._slice("x", k)], u[..., self._slice("u", k)],
                                d_t[..., self._slice("d", k)], p_t[..., self._slice("p", k)],
                                substeps)
                for k, unit in enumerate(self.units)
            ],
            -1,
        )  # fmt: skip

    def steady_state(self, u: np.ndarray | None = None, d: np.ndarray | None = None) -> np.ndarray:
        u = self.u0 if u is None else np.asarray(u, float)
        d = self.d0 if d is None else np.asarray(d, float)
        return np.concatenate(
            [
                unit.steady_state(u[self._slice("u", k)], d[self._slice("d", k)])
                for k, unit in enumerate(self.units)
            ]
        )
