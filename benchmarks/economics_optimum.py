"""The economics benchmark's reference: the true steady-state optimum of a plant's economic spec.

``J = sum_tags cost * value`` ($/h; CVs and MVs, negative cost a product's value) is minimised
over the MVs at the plant's noise-free steady state ``y_ss(u, d, p)``
(:class:`SteadyState`: ``SimPlant.steady_state`` from the nominal state, for the disturbance
values given), the MVs within their limits (operating ones if given), subject to every CV's
operating limits and instrument limits (:func:`true_optimum`: SLSQP in MV-span units from
several starts on forward-difference gradients, the best feasible answer kept).

The answer (:class:`Optimum`) names the limits it sits on and their KKT multipliers, found by
NNLS on the stationarity condition (the cost gradient a non-negative combination of the active
limits' gradients; ``kkt_residual`` is what is left of it, relative): as shadow prices, the $/h
saved per unit a limit were relaxed. A residual near 0 with positive multipliers is the check
that the optimum sits on those limits because the economics push it there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import minimize, nnls

from connectors.sim.base import SimPlant
from connectors.sim.plants import make_plant
from twin.spec import PlantSpec


def cost_vector(spec: PlantSpec) -> np.ndarray:
    """``[n_tags]`` cost per unit of each tag ($/h per unit; 0 where none is given)."""
    return np.array([(t.cost or 0.0) if t.role != "dv" else 0.0 for t in spec.tags])


def mv_bounds(spec: PlantSpec) -> tuple[np.ndarray, np.ndarray]:
    """The MVs' limits for the controller: their operating limits, else instrument ones."""
    return np.array([t.op_low for t in spec.mvs]), np.array([t.op_high for t in spec.mvs])


# --- the true optimum --------------------------------------------------------------------


class SteadyState:
    """The plant's noise-free steady state: every tag's value ``[n_tags]`` from (u, d, p)."""

    def __init__(self, plant: str) -> None:
        self.plant: SimPlant = make_plant(plant, noise=False)
        self.names = self.plant.spec.tag_names
        self.calls = 0

    def __call__(self, u: np.ndarray, d: np.ndarray, p: np.ndarray) -> np.ndarray:
        plant = self.plant
        u, d = np.asarray(u, float), np.asarray(d, float)
        plant.p[:] = p
        x = plant.steady_state(u, d)
        self.calls += 1
        out = plant.outputs(x, u, d)
        return np.array([out[n] for n in self.names])


@dataclass(frozen=True)
class Limit:
    """One limit of the optimum, written ``g(u) >= 0`` in units of ``scale``."""

    tag: str
    kind: str
    """``op_lo`` / ``op_hi`` (CV operating), ``lo`` / ``hi`` (CV instrument), ``mv_lo`` / ``mv_hi``"""
    value: float
    scale: float


@dataclass(frozen=True)
class Optimum:
    """The true steady-state optimum for one set of disturbance values."""

    success: bool
    message: str
    u: dict[str, float]
    y: dict[str, float]
    """every tag's steady-state value there"""
    cost_rate: float
    """J* ($/h)"""
    active: list[dict[str, Any]]
    """the limits it sits on: tag, kind, value, shadow price ($/h per unit relaxed)"""
    kkt_residual: float
    """``|grad J - sum_i lambda_i grad g_i| / |grad J|`` over the active limits (lambda >= 0)"""
    d: dict[str, float] = field(default_factory=dict)
    p: dict[str, float] = field(default_factory=dict)

    def describe(self, spec: PlantSpec) -> str:
        """One line: the MVs, the active limits with shadow prices, J*."""
        units = {t.name: t.unit for t in spec.tags}
        mvs = ", ".join(f"{k} {v:.4g} {units[k]}" for k, v in self.u.items())
        act = "; ".join(
            f"{a['tag']} {a['kind']} {a['value']:g} {units[a['tag']]} "
            f"({a['shadow_price']:.3g} $/h per {units[a['tag']] or 'unit'})"
            for a in self.active
        )
        return f"J* {self.cost_rate:.4g} $/h at {mvs}; on {act or 'no limit'}"


def limits(spec: PlantSpec) -> list[Limit]:
    """Every CV limit the optimum must hold: operating limits, then instrument limits."""
    out = []
    for t in spec.cvs:
        if t.op_lo is not None:
            out.append(Limit(t.name, "op_lo", t.op_lo, t.error_scale))
        if t.op_hi is not None:
            out.append(Limit(t.name, "op_hi", t.op_hi, t.error_scale))
        out += [Limit(t.name, "lo", t.lo, t.span), Limit(t.name, "hi", t.hi, t.span)]
    return out


def true_optimum(
    spec: PlantSpec,
    ss: SteadyState,
    d: np.ndarray,
    p: np.ndarray,
    *,
    starts: int = 4,
    seed: int = 0,
    active_tol: float = 1e-5,
) -> Optimum:
    """``min_u J(u, y_ss(u, d, p))`` within the MV limits and the CV limits (see module doc).

    SLSQP in MV-span units from the nominal MVs and ``starts - 1`` random points; the best
    feasible answer, its active limits (slack below ``active_tol`` in scale units) and their
    multipliers (NNLS on the KKT stationarity condition).
    """
    names = spec.tag_names
    mv_idx = [names.index(t.name) for t in spec.mvs]
    lo, hi = mv_bounds(spec)
    span = hi - lo
    cost = cost_vector(spec)
    lims = limits(spec)
    cols = [names.index(lim.tag) for lim in lims]
    sign = np.array([1.0 if lim.kind in ("op_lo", "lo") else -1.0 for lim in lims])
    value = np.array([lim.value for lim in lims])
    scale = np.array([lim.scale for lim in lims])
    plant = ss.plant
    u0 = np.clip(plant.u0.astype(float), lo, hi)
    j_scale = max(abs(float(cost @ ss(u0, d, p))), 1e-9)
    h = 1e-5  # forward-difference step, of the MV span
    cache: dict[bytes, tuple[np.ndarray, np.ndarray]] = {}

    def evaluate(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(f, g) at z: the scaled cost and every limit's scaled slack."""
        key = np.round(z, 12).tobytes()
        if key not in cache:
            y = ss(lo + z * span, d, p)
            cache[key] = (np.array([cost @ y / j_scale]), sign * (y[cols] - value) / scale)
        return cache[key]

    def jac(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        f0, g0 = evaluate(z)
        df, dg = np.empty((1, len(z))), np.empty((len(g0), len(z)))
        for i in range(len(z)):
            step = h if z[i] + h <= 1.0 else -h
            zi = z.copy()
            zi[i] += step
            f1, g1 = evaluate(zi)
            df[:, i], dg[:, i] = (f1 - f0) / step, (g1 - g0) / step
        return df, dg

    rng = np.random.default_rng(seed)
    z_starts = [(u0 - lo) / span] + [rng.uniform(0.05, 0.95, len(lo)) for _ in range(starts - 1)]
    best = None
    for z0 in z_starts:
        res = minimize(
            lambda z: evaluate(z)[0][0],
            z0,
            jac=lambda z: jac(z)[0][0],
            bounds=[(0.0, 1.0)] * len(z0),
            constraints=[
                {"type": "ineq", "fun": lambda z: evaluate(z)[1], "jac": lambda z: jac(z)[1]}
            ],
            method="SLSQP",
            options={"maxiter": 200, "ftol": 1e-10},
        )
        z = np.clip(res.x, 0.0, 1.0)
        f, g = evaluate(z)
        feasible = bool(g.min(initial=0.0) >= -1e-6)
        if feasible and (best is None or f[0] < best[1]):
            best = (z, f[0], res)
    if best is None:
        return Optimum(
            False, "no feasible steady state found", {}, {}, float("nan"), [], float("nan")
        )
    z, _, res = best
    y = ss(lo + z * span, d, p)
    df, dg = jac(z)
    # active limits: CV limits with small slack, MV bounds at 0 or 1 (as g = z or 1 - z >= 0)
    _, g = evaluate(z)
    rows, labels = [], []
    for i, lim in enumerate(lims):
        if g[i] <= active_tol:
            rows.append(dg[i])
            labels.append((lim.tag, lim.kind, lim.value, j_scale / lim.scale))
    for j, t in enumerate(spec.mvs):
        for kind, at, row in (("mv_lo", 0.0, 1.0), ("mv_hi", 1.0, -1.0)):
            if abs(z[j] - at) <= active_tol:
                e = np.zeros(len(z))
                e[j] = row
                rows.append(e)
                labels.append((t.name, kind, lo[j] if at == 0.0 else hi[j], j_scale / span[j]))
    grad = df[0]
    if rows:
        lam, resid = nnls(np.array(rows).T, grad)
    else:
        lam, resid = np.zeros(0), float(np.linalg.norm(grad))
    active = [
        {"tag": tag, "kind": kind, "value": float(v), "shadow_price": float(lm * unit_scale)}
        for (tag, kind, v, unit_scale), lm in zip(labels, lam, strict=True)
    ]
    kkt = float(resid / max(np.linalg.norm(grad), 1e-12))
    return Optimum(
        success=kkt <= 1e-3,  # feasible by construction; SLSQP may stop on FD noise at a vertex
        message=f"SLSQP: {res.message}",
        u={t.name: float(y[mv_idx[j]]) for j, t in enumerate(spec.mvs)},
        y={n: float(v) for n, v in zip(names, y, strict=True)},
        cost_rate=float(cost @ y),
        active=active,
        kkt_residual=kkt,
        d=dict(zip(plant.dv_names, map(float, d), strict=True)),
        p=dict(zip(plant.param_names, map(float, p), strict=True)),
    )


class Optima:
    """True optima of one plant's economic spec, memoised by the disturbance values."""

    def __init__(self, spec: PlantSpec) -> None:
        self.spec, self.ss = spec, SteadyState(spec.name)
        self._memo: dict[bytes, Optimum] = {}

    def __call__(self, d: np.ndarray, p: np.ndarray) -> Optimum:
        key = np.round(np.concatenate([d, p]), 9).tobytes()
        if key not in self._memo:
            self._memo[key] = true_optimum(self.spec, self.ss, d, p)
        return self._memo[key]

    def hold(self, d: np.ndarray, p: np.ndarray) -> float:
        """The true cost rate with the MVs held at nominal ($/h)."""
        return float(cost_vector(self.spec) @ self.ss(self.ss.plant.u0, d, p))

    def noise_worth(self, opt: Optimum) -> float:
        """$/h that one standard deviation of measurement noise on every binding CV is worth at
        its shadow price: the yardstick of how near its limits a gap asks a controller to sit."""
        plant = self.ss.plant
        sigma = dict(getattr(plant, "sensor_noise", None) or plant.measurement_noise)
        cvs = {t.name for t in self.spec.cvs}
        return sum(
            a["shadow_price"] * sigma.get(a["tag"], 0.0) for a in opt.active if a["tag"] in cvs
        )


def optimum_dict(opt: Optimum, spec: PlantSpec) -> dict[str, Any]:
    """An optimum as plain data, with its one-line description."""
    return {
        "success": opt.success,
        "message": opt.message,
        "cost_rate": opt.cost_rate,
        "u": opt.u,
        "y": opt.y,
        "active": opt.active,
        "kkt_residual": opt.kkt_residual,
        "disturbance": {**opt.p, **opt.d},
        "text": opt.describe(spec),
    }
