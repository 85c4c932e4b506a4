"""Closed-loop scenarios for any zoo plant, generated from the plant itself.

The three built-in plants keep their hand-written scenarios (:data:`control_loop.SCENARIOS`);
every other plant of the zoo (:mod:`benchmarks.zoo`) gets one from :func:`zoo_design`, the same
every time (drawn from the plant's name), in the same :class:`control_loop.Scenario` form:

- **tracked CVs**: at most as many as there are MVs, the subset whose steady-state gains from
  the MVs (per span, at the nominal point) are best conditioned (largest smallest singular
  value); the others weigh 0 and are only watched within their limits;
- **setpoints that can be met**: at 0.08, 0.22 and 0.60 of the run the MVs move (in the plan)
  to a point inside their limits; the plant's own noise-free steady state there (``steady_state``,
  or for a batch plant the mean over one batch) gives the tracked CVs' setpoints. A point is
  kept only if every CV's steady state is at least :data:`MARGIN` of its span inside its limits
  and moves at most :data:`MAX_MOVE` of its span from the previous one (a level that integrates
  must get there within the run), else it is drawn closer to the nominal point;
- **an unmeasured disturbance** (the plant's first drift parameter, or the documented one,
  :data:`DISTURBANCE`): a ramp to 2 sigma of its drift from 0.08 to 0.45, then a step to
  3 sigma the other way, held to the end. Both are scaled down until the MVs that hold the
  tracked CVs at their setpoints under it (by Newton on the steady-state map) stay
  :data:`MARGIN` inside their limits and the watched CVs inside theirs;
- **length**: twice the plant's slowest time constant (:func:`benchmarks.zoo.character`), within
  :data:`STEPS` samples.

:func:`oracle_substeps` is the RK4 substeps per sample the oracle MPC needs on a plant (its
fastest time constant at least two substeps long).
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from functools import cache
from itertools import combinations

import numpy as np

from benchmarks.control_loop import SCENARIOS, Scenario
from benchmarks.zoo import character
from connectors.sim.base import SimPlant
from connectors.sim.plants import make_plant

#: run length bounds (samples): long enough for the slow modes, short enough to afford
STEPS = (300, 500)
#: fraction of a CV's or an MV's span kept clear of its limits at every target steady state
MARGIN = 0.1
#: largest change of any CV's steady state from one setpoint change to the next (of its span)
MAX_MOVE = 0.25
#: when the setpoints change (fractions of the run), as in the hand-written scenarios
CHANGES = (0.08, 0.22, 0.60)
#: the drift's ramp (start, end) and the step (at), fractions of the run
RAMP, STEP_AT = (0.08, 0.45), 0.45
#: disturbances where a named plant documents one other than its first parameter
DISTURBANCE = {"fedbatch": "vitality"}
#: plants without a steady state: their setpoints are means over one batch
BATCH = ("fedbatch",)
#: smallest singular value (CV span per MV span) a tracked set must reach
MIN_GAIN = 0.02


@dataclass(frozen=True)
class ZooDesign:
    """A generated scenario and what it was built from (for tests and the report)."""

    scenario: Scenario
    tracked: tuple[str, ...]
    """the CVs with a setpoint (weight as in the spec); the rest weigh 0"""
    mv_points: tuple[dict[str, float], ...]
    """per setpoint change: the MVs at which the plant's steady state meets the setpoints"""
    held: tuple[dict[str, float], ...]
    """the MVs that hold the tracked CVs at their setpoints at the drift's end and the step"""
    disturbance_scale: float
    """the factor the disturbance was scaled down by to keep the MVs inside their limits"""


class SteadyMap:
    """A plant's noise-free steady state: CV values ``[n_cv]`` from MVs and the disturbance."""

    def __init__(self, name: str) -> None:
        self.plant: SimPlant = make_plant(name, noise=False)
        spec = self.plant.spec
        self.cvs = [t.name for t in spec.cvs]
        self.disturbance = DISTURBANCE.get(name, self.plant.param_names[0])
        self.p_index = self.plant.param_names.index(self.disturbance)
        self.p_nominal = float(self.plant.p[self.p_index])
        self.batch = name in BATCH

    def __call__(self, u: np.ndarray, p: float | None = None) -> np.ndarray:
        plant = self.plant
        p_saved = plant.p.copy()
        plant.p[self.p_index] = self.p_nominal if p is None else p
        try:
            if self.batch:  # no steady state: the mean over one batch from its start
                return self._batch_mean(u)
            x = plant.steady_state(u, plant.d0)
            out = plant.outputs(x, np.asarray(u, float), plant.d0)
            return np.array([out[c] for c in self.cvs])
        finally:
            plant.p[:] = p_saved

    def _batch_mean(self, u: np.ndarray) -> np.ndarray:
        sim = make_plant(self.plant.name, noise=False)
        sim.p[:] = self.plant.p
        rows = []
        for _ in range(round(5400 / sim.sample_period)):  # 90 min
            out = sim.step(dict(zip(sim.mv_names, np.asarray(u, float).tolist(), strict=True)))
            rows.append([out[c] for c in self.cvs])
        return np.mean(rows, axis=0)


def oracle_substeps(name: str) -> int:
    """RK4 substeps per sample for the oracle: the fastest time constant >= 2 substeps."""
    c = character(name)
    return max(1, math.ceil(2.0 * c.sample_period / max(c.tau_s[0], 1e-9)))


def run_steps(name: str) -> int:
    """Samples per run: twice the slowest time constant, within :data:`STEPS`, a multiple of 10."""
    c = character(name)
    return int(np.clip(round(2.0 * c.tau_s[1] / c.sample_period, -1), *STEPS))


def scenario_for(name: str) -> Scenario:
    """The closed-loop scenario of any zoo plant: hand-written for the built-in three."""
    return SCENARIOS[name] if name in SCENARIOS else zoo_design(name).scenario


@cache
def zoo_design(name: str) -> ZooDesign:
    """The generated scenario of ``name`` (see the module doc); deterministic from the name."""
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    ss = SteadyMap(name)
    spec = ss.plant.spec
    cv_span = np.array([t.span for t in spec.cvs])
    cv_lo, cv_hi = np.array([t.lo for t in spec.cvs]), np.array([t.hi for t in spec.cvs])
    mv_lo, mv_hi = np.array([t.lo for t in spec.mvs]), np.array([t.hi for t in spec.mvs])
    mv_span = mv_hi - mv_lo
    u0 = ss.plant.u0.astype(float)
    y0 = ss(u0)
    gain = _gains(ss, u0, y0, mv_span) / cv_span[:, None]  # [n_cv, n_mv], span per span
    tracked = _tracked(gain, ss.cvs, [t.weight for t in spec.cvs])

    def inside(y: np.ndarray, watched_only: bool = False) -> bool:
        keep = np.array([(c not in tracked) or not watched_only for c in ss.cvs])
        lo_ok = y >= cv_lo + MARGIN * cv_span
        hi_ok = y <= cv_hi - MARGIN * cv_span
        return bool(np.all((lo_ok & hi_ok) | ~keep))

    points: list[np.ndarray] = []
    setpoints: list[tuple[float, dict[str, float]]] = []
    room = np.minimum(u0 - mv_lo, mv_hi - u0) - MARGIN * mv_span  # [n_mv] >= 0 by the spec
    last = y0
    for frac in CHANGES:
        delta = rng.uniform(0.3, 0.6, len(u0)) * rng.choice([-1.0, 1.0], len(u0))
        for _ in range(8):
            u = u0 + delta * room
            y = ss(u)
            if inside(y) and np.all(np.abs(y - last) <= MAX_MOVE * cv_span):
                break
            delta = 0.6 * delta
        else:
            u, y = u0.copy(), y0
        points.append(u)
        last = y
        setpoints.append((frac, {c: float(y[ss.cvs.index(c)]) for c in tracked}))
    sigma = _sigma(ss)
    sign = float(rng.choice([-1.0, 1.0]))
    idx = [ss.cvs.index(c) for c in tracked]
    scale = 1.0
    held_mvs: tuple[dict[str, float], ...] = ()
    for _ in range(6):
        drift_to = ss.p_nominal + sign * 2.0 * sigma * scale
        step_to = ss.p_nominal - sign * 3.0 * sigma * scale
        # under the drift's end the second setpoints hold; under the step, the second and third
        cases = ((points[1], drift_to), (points[1], step_to), (points[2], step_to))
        solved = [_hold(ss, u, p, idx, ss(u)[idx], cv_span[idx], (mv_lo, mv_hi)) for u, p in cases]
        ok = all(
            s is not None
            and np.all(s >= mv_lo + MARGIN * mv_span)
            and np.all(s <= mv_hi - MARGIN * mv_span)
            and inside(ss(s, p), watched_only=True)
            for s, (_, p) in zip(solved, cases, strict=True)
        )
        if ok:
            held_mvs = tuple(_named(ss.plant.mv_names, s) for s in solved if s is not None)
            break
        scale *= 0.5
    untracked = [c for c in ss.cvs if c not in tracked]
    note = (
        f"generated from the plant: tracked {', '.join(tracked) or 'none'} at steady states of "
        f"MV points inside their limits"
        + (f"; watched within limits (weight 0): {', '.join(untracked)}" if untracked else "")
        + f"; unmeasured {ss.disturbance} ramps {sign * 2 * scale:+.2g} sigma then steps "
        f"{-sign * 3 * scale:+.2g} sigma of its drift"
    )
    scenario = Scenario(
        plant=name,
        steps=run_steps(name),
        setpoints=tuple(setpoints),
        disturbance=ss.disturbance,
        drift=(RAMP[0], RAMP[1], float(drift_to)),
        step=(STEP_AT, float(step_to)),
        track_weights={c: 0.0 for c in untracked},
        note=note,
    )
    names = ss.plant.mv_names
    return ZooDesign(
        scenario, tuple(tracked), tuple(_named(names, u) for u in points), held_mvs, scale
    )


def _named(names: list[str], u: np.ndarray) -> dict[str, float]:
    return {n: float(v) for n, v in zip(names, u, strict=True)}


def _gains(ss: SteadyMap, u0: np.ndarray, y0: np.ndarray, mv_span: np.ndarray) -> np.ndarray:
    """Steady-state gains ``[n_cv, n_mv]`` in CV units per MV span (central differences)."""
    cols = []
    for j, span in enumerate(mv_span):
        du = np.zeros_like(u0)
        du[j] = 0.05 * span
        cols.append((ss(u0 + du) - ss(u0 - du)) / 0.1)
    return np.stack(cols, axis=1) if cols else np.zeros((len(y0), 0))


def _tracked(gain: np.ndarray, names: list[str], weights: list[float | None]) -> list[str]:
    """The CVs to track: of those the spec weighs, the subset of at most n_mv whose gains are
    best conditioned (largest smallest singular value), as many as reach :data:`MIN_GAIN`."""
    candidates = [i for i, w in enumerate(weights) if w is None or w > 0]
    for k in range(min(gain.shape[1], len(candidates)), 0, -1):
        best = max(
            combinations(candidates, k),
            key=lambda sub: float(np.linalg.svd(gain[list(sub)], compute_uv=False)[-1]),
        )
        if np.linalg.svd(gain[list(best)], compute_uv=False)[-1] >= MIN_GAIN:
            return [names[i] for i in sorted(best)]
    return []


def _sigma(ss: SteadyMap) -> float:
    """The OU std of the scripted disturbance's drift (its natural size)."""
    return float(ss.plant._p_drift[ss.p_index].sigma)


def _hold(
    ss: SteadyMap,
    u: np.ndarray,
    p: float,
    idx: list[int],
    target: np.ndarray,
    span: np.ndarray,
    limits: tuple[np.ndarray, np.ndarray],
) -> np.ndarray | None:
    """MVs near ``u`` that hold the tracked CVs ``idx`` at ``target`` under disturbance ``p``.

    Newton steps on the steady-state map (least squares where fewer CVs than MVs), at most 8,
    inside the MV limits; None unless it meets the targets to 0.2 % of the CVs' spans.
    """
    lo, hi = limits
    if not idx:
        return u.copy()
    for _ in range(8):
        y = ss(u, p)[idx]
        err = target - y
        if np.all(np.abs(err) <= 2e-3 * span):
            return u
        h = 0.01 * (hi - lo)
        jac = np.stack(
            [(ss(u + e, p)[idx] - y) / hj for e, hj in zip(np.diag(h), h, strict=True)], axis=1
        )
        u = np.clip(u + np.linalg.lstsq(jac, err, rcond=None)[0], lo, hi)
    return u if np.all(np.abs(target - ss(u, p)[idx]) <= 2e-3 * span) else None
