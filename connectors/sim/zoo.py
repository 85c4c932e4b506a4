"""A generated plant (``zoo-<n>``) as a simulated plant: the design of :mod:`.generator`, run.

State layout ``x = [first stages (n_cv), second stages, delay lines]``, every entry normalised:

- a unit's first stage is a lag on its drive; for a ``lag`` unit it is the CV's state ``s``;
- ``lag2`` and ``integrating`` units have a second stage, which is ``s``: a second lag, or an
  integrator with a weak leak and walls at ``|s| = 1`` (a level overflowing or running dry);
- one delay line per input holds its normalised past values ``xi[k-1], xi[k-2], ...`` for the
  channels with dead times.

Over one sample the inputs are held, so the delayed inputs are constant and so is each unit's
*drive* ``D = sum_j K_ij G_j(xi_j[k - theta_ij]) + sum_k g_ik p_k``. Within the sample:

    first' = ((1 + a tanh(2 s / bound)) D + c s_up / bound_up - first) / tau1
    s'     = (first - s) / tau2                                        (lag2)
    s'     = rate first - s / leak - w (s - clip(s, -1, 1))              (integrating)

(per sample). :meth:`ZooPlant.step` integrates that with scipy's LSODA and shifts the delay
lines; :meth:`ZooPlant.torch_step` computes the same drive and integrates the same right-hand
side with RK4 in torch, then shifts: the same physics, differentiable in x and u. A CV reports
``nominal + reach * G_out(s / bound) / G_out_max`` (see :mod:`.zoo_tags`).
"""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from scipy.integrate import odeint, solve_ivp

from connectors.sim.base import Ops, OUProcess
from connectors.sim.generator import WALL_RATE, Shape, ZooDesign, design, zoo_spec
from connectors.sim.tagged import NUMPY_X, TORCH_X, TaggedPlant, XOps, xops
from twin.errors import SimulationError

log = logging.getLogger(__name__)

ZOO_PREFIX = "zoo-"
#: |s| of an integrating unit beyond which the plant reports overflowing or running dry
WALL_TRIP = 0.97


def zoo_index(name: str) -> int | None:
    """The index of a generated plant's name (``zoo-17`` -> 17), None if it is not one."""
    if not name.startswith(ZOO_PREFIX):
        return None
    digits = name[len(ZOO_PREFIX) :]
    return int(digits) if digits.isdigit() and digits == str(int(digits)) else None


def _shape_params(shapes: list[Shape]) -> dict[str, np.ndarray]:
    """Masks and strengths that evaluate a list of shapes element-wise (see :func:`_shape`)."""
    kinds = [s.kind for s in shapes]
    c = np.array([s.c if s.kind != "linear" else 1.0 for s in shapes])
    return {
        "lin": np.array([k == "linear" for k in kinds], float),
        "sat": np.array([k == "saturation" for k in kinds], float),
        "valve": np.array([k == "valve" for k in kinds], float),
        "quad": np.array([k == "quadratic" for k in kinds], float),
        "c": c,
        "tanh_c": np.tanh(c),
    }


def _shape(z: Any, prm: SimpleNamespace, key: str, ops: XOps) -> Any:
    """Element-wise ``G(z)`` of the shapes packed under ``key`` (numpy or torch)."""
    c, tanh_c = getattr(prm, f"{key}_c"), getattr(prm, f"{key}_tanh_c")
    return (
        getattr(prm, f"{key}_lin") * z
        + getattr(prm, f"{key}_sat") * ops.tanh(c * z) / tanh_c
        + getattr(prm, f"{key}_valve") * (ops.exp(c * z) - 1.0) / c
        + getattr(prm, f"{key}_quad") * (z + c * z * z)
    )


def _pack(d: ZooDesign) -> tuple[SimpleNamespace, tuple[str, ...]]:
    """A design as flat arrays for the vectorised physics, and the state's names.

    Channels are the (CV, input) pairs with a gain; ``hist`` says where each channel reads its
    input in ``[xi now (n_in), delay lines]``, ``shift`` how the delay lines move on a sample.
    """
    units = d.units
    n_cv, n_in = len(units), len(d.mvs) + len(d.dvs)
    two = [i for i, u in enumerate(units) if u.kind != "lag"]
    lengths = [max(u.delays[j] for u in units) for j in range(n_in)]
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(int)
    ch = [(i, j) for i, u in enumerate(units) for j in range(n_in) if u.gains[j]]
    hist = [
        j if units[i].delays[j] == 0 else n_in + starts[j] + units[i].delays[j] - 1 for i, j in ch
    ]
    shift = [
        j if m == 0 else n_in + starts[j] + m - 1 for j in range(n_in) for m in range(lengths[j])
    ]
    assign = np.zeros((len(ch), n_cv))
    assign[np.arange(len(ch)), [i for i, _ in ch]] = 1.0
    in_shapes = [d.input_shapes[j] for _, j in ch]
    out_shapes = [u.shape for u in units]
    prm: dict[str, Any] = {
        "n_cv": n_cv,
        "s_idx": np.array([n_cv + two.index(i) if i in two else i for i in range(n_cv)]),
        "two_idx": np.array(two, dtype=int),
        "n_two": len(two),
        "any_gain": any(u.state_gain for u in units),
        "any_coupling": any(u.coupling for u in units),
        "any_integ": any(u.kind == "integrating" for u in units),
        "inv_tau1": np.array([1.0 / u.tau for u in units]),
        "lag2_rate": np.array([1.0 / units[i].tau2 if units[i].tau2 else 0.0 for i in two]),
        "integ": np.array([units[i].kind == "integrating" for i in two], float),
        "rate": np.array([units[i].rate for i in two]),
        "inv_leak": np.array([1.0 / units[i].leak if units[i].leak else 0.0 for i in two]),
        "bound": np.array([u.bound for u in units]),
        "inv_bound": np.array([1.0 / u.bound for u in units]),
        "a": np.array([u.state_gain for u in units]),
        "up_idx": np.array([max(u.upstream, 0) for u in units]),
        "coupling": np.array([u.coupling for u in units]),
        "hist": np.array(hist, dtype=int),
        "shift": np.array(shift, dtype=int),
        "gain": np.array([units[i].gains[j] for i, j in ch]),
        "assign": assign,
        "drift": np.array([u.drift for u in units]).T.copy(),  # [n_p, n_cv]
        "in_nominal": np.array([t.nominal for t in (*d.mvs, *d.dvs)]),
        "in_scale": np.array([t.scale for t in (*d.mvs, *d.dvs)]),
        "y0": np.array([t.nominal for t in d.cvs]),
        "reach": np.array([t.reach for t in d.cvs]),
        "gmax": np.array([s.reach(1.0) for s in out_shapes]),
    }
    for key, shapes in (("in", in_shapes), ("out", out_shapes)):
        prm.update({f"{key}_{k}": v for k, v in _shape_params(shapes).items()})
    names = [
        t.name if u.kind == "lag" else f"{t.name}.in" for t, u in zip(d.cvs, units, strict=True)
    ]
    names += [d.cvs[i].name for i in two]
    for t, length in zip((*d.mvs, *d.dvs), lengths, strict=True):
        names += [f"{t.name}[k-{m + 1}]" for m in range(length)]
    return SimpleNamespace(**prm), tuple(names)


class ZooPlant(TaggedPlant):
    """Generated plant ``zoo-<index>``: same index, same plant; same seed, same noise."""

    def __init__(self, index: int, seed: int = 0, *, noise: bool = True) -> None:
        self.design: ZooDesign = design(index)
        d = self.design
        self.name = d.name
        self._np, self.state_names = _pack(d)
        self._n_dyn = len(d.units) + self._np.n_two
        self._torch: dict[torch.dtype, SimpleNamespace] = {}
        self.x0 = np.zeros(len(self.state_names))
        self.u0 = np.array([t.nominal for t in d.mvs])
        self.d0 = np.array([t.nominal for t in d.dvs])
        self.time_unit_s = d.sample_period
        self.process_noise = np.zeros(len(self.state_names))
        self.process_noise[self._np.s_idx] = [u.noise for u in d.units]
        noise_std = {t.name: t.noise for t in d.cvs}
        noise_std.update({t.name: t.noise for t in (*d.mvs, *d.dvs)})
        self.sensor_noise = noise_std
        # param_names is a class attribute of the built-in plants; here the drifts are per plant
        self.__dict__["param_names"] = tuple(f"drift{k + 1}" for k in range(len(d.drifts)))
        super().__init__(seed, noise=noise, spec=zoo_spec(d))

    def _setup_disturbances(self) -> None:
        d = self.design
        self.p = np.zeros(len(d.drifts))
        self._p_drift = [OUProcess(0.0, q.sigma, q.tau_s, self.rng) for q in d.drifts]
        self._d_drift = [OUProcess(t.nominal, t.sigma, t.tau_s, self.rng) for t in d.dvs]

    def _params(self, ops: XOps, dtype: torch.dtype = torch.float64) -> SimpleNamespace:
        if not ops.is_torch:
            return self._np
        if dtype not in self._torch:
            self._torch[dtype] = SimpleNamespace(
                **{
                    k: torch.as_tensor(v, dtype=torch.long if v.dtype.kind == "i" else dtype)
                    if isinstance(v, np.ndarray)
                    else v
                    for k, v in vars(self._np).items()
                }
            )
        return self._torch[dtype]

    # --- the physics, once ------------------------------------------------------------------

    def _history(self, x: Any, u: Any, d: Any, prm: SimpleNamespace, ops: XOps) -> Any:
        """``[xi (n_in), delay lines]``: the inputs now and before, normalised."""
        parts = [u, d, x[..., self._n_dyn :]] if len(self.d0) else [u, x[..., self._n_dyn :]]
        batch = ops.batch(*(a.shape[:-1] for a in parts))
        now, buf = ops.cat([ops.expand(a, batch) for a in parts[:-1]]), ops.expand(parts[-1], batch)
        return ops.cat([(now - prm.in_nominal) / prm.in_scale, buf])

    def _drive(self, hist: Any, p: Any, prm: SimpleNamespace, ops: XOps) -> Any:
        """Each unit's drive ``D`` over this sample ``[..., n_cv]`` (constant within it)."""
        g = _shape(hist[..., prm.hist], prm, "in", ops) * prm.gain
        return g @ prm.assign + p @ prm.drift

    def _dynamics(self, z: Any, drive: Any, prm: SimpleNamespace, ops: XOps) -> Any:
        """``dz/dt`` per sample of the units' states ``z = x[..., :n_dyn]``."""
        n_cv = prm.n_cv
        first, target = z[..., :n_cv], drive
        if prm.any_gain or prm.any_coupling:
            sigma = z[..., prm.s_idx] * prm.inv_bound
            if prm.any_gain:
                target = target * (1.0 + prm.a * ops.tanh(2.0 * sigma))
            if prm.any_coupling:
                target = target + prm.coupling * sigma[..., prm.up_idx]
        d1 = (target - first) * prm.inv_tau1
        if not prm.n_two:
            return d1
        q, s2 = first[..., prm.two_idx], z[..., n_cv:]
        d2 = prm.lag2_rate * (q - s2)
        if prm.any_integ:
            beyond = s2 - ops.clip(s2, -1.0, 1.0)  # how far past a wall (0 between them)
            d2 = d2 + prm.integ * (prm.rate * q - s2 * prm.inv_leak - WALL_RATE * beyond)
        return ops.cat([d1, d2])

    def rhs(self, x: Any, u: Any, d: Any, p: Any, ops: Ops) -> Any:
        xo = xops(ops)
        prm = self._params(xo, x.dtype) if xo.is_torch else self._np
        drive = self._drive(self._history(x, u, d, prm, xo), p, prm, xo)
        dz = self._dynamics(x[..., : self._n_dyn], drive, prm, xo)
        return xo.cat([dz, x[..., self._n_dyn :] * 0.0])

    def _advance(self, x: np.ndarray, u: np.ndarray, d: np.ndarray, p: np.ndarray) -> np.ndarray:
        """One sample: the drive from the held and delayed inputs, LSODA over it, then the shift."""
        prm = self._np
        hist = self._history(x, u, d, prm, NUMPY_X)
        drive = self._drive(hist, p, prm, NUMPY_X)
        z, info = odeint(
            lambda zz, _t: self._dynamics(zz, drive, prm, NUMPY_X),
            x[: self._n_dyn],
            [0.0, 1.0],
            rtol=1e-6,
            atol=1e-9,
            mxstep=5000,
            full_output=True,
        )
        if info["message"] != "Integration successful." or not np.all(np.isfinite(z[-1])):
            self.tripped = f"integration failed at t={self.t:.0f}s: {info['message']}"
            raise SimulationError(f"{self.name}: {self.tripped}")
        return np.concatenate([z[-1], hist[prm.shift]])

    def torch_step(
        self,
        x: torch.Tensor,
        u: torch.Tensor,
        d: torch.Tensor | None = None,
        p: torch.Tensor | None = None,
        substeps: int = 4,
    ) -> torch.Tensor:
        """One sample of the noise-free model, differentiable: the drive, RK4, the shift.

        Shapes: x ``[..., n_x]`` (layout in the module docstring), u ``[..., n_mv]``,
        d ``[..., n_dv]`` (default nominal), p ``[..., n_p]`` (default: the current drift).
        """
        prm = self._params(TORCH_X, x.dtype)
        u = torch.as_tensor(u, dtype=x.dtype)
        d_t = torch.as_tensor(self.d0 if d is None else d, dtype=x.dtype)
        p_t = torch.as_tensor(self.p if p is None else p, dtype=x.dtype)
        hist = self._history(x, u, d_t, prm, TORCH_X)
        drive = self._drive(hist, p_t, prm, TORCH_X)
        z, h = x[..., : self._n_dyn], 1.0 / substeps
        for _ in range(substeps):
            k1 = self._dynamics(z, drive, prm, TORCH_X)
            k2 = self._dynamics(z + 0.5 * h * k1, drive, prm, TORCH_X)
            k3 = self._dynamics(z + 0.5 * h * k2, drive, prm, TORCH_X)
            k4 = self._dynamics(z + h * k3, drive, prm, TORCH_X)
            z = z + (h / 6.0) * (k1 + 2 * k2 + 2 * k3 + k4)
        return torch.cat([z, hist[..., prm.shift]], -1)

    def tag_values(self, x: Any, u: Any, d: Any, p: Any, ops: XOps) -> list[Any]:
        prm = self._params(ops, x.dtype) if ops.is_torch else self._np
        sigma = x[..., prm.s_idx] / prm.bound
        y = prm.y0 + prm.reach * _shape(sigma, prm, "out", ops) / prm.gmax
        out = [*ops.unstack(y), *ops.unstack(u)]
        return out + list(ops.unstack(d)) if len(self.d0) else out

    def steady_state(self, u: np.ndarray | None = None, d: np.ndarray | None = None) -> np.ndarray:
        """The noise-free steady state under constant u and d (delay lines full of them)."""
        u = self.u0 if u is None else np.asarray(u, float)
        d = self.d0 if d is None else np.asarray(d, float)
        prm, x = self._np, self.x0.copy()
        now = np.concatenate([u, d])
        xi = (now - prm.in_nominal) / prm.in_scale
        x[self._n_dyn :] = [xi[j] for j, length in self._lines() for _ in range(length)]
        drive = self._drive(np.concatenate([xi, x[self._n_dyn :]]), self.p, prm, NUMPY_X)
        span = 20.0 * max(u.tau + u.tau2 + u.leak for u in self.design.units)
        sol = solve_ivp(
            lambda _t, z: self._dynamics(z, drive, prm, NUMPY_X),
            (0.0, span),
            x[: self._n_dyn],
            method="LSODA",
            rtol=1e-9,
            atol=1e-12,
        )
        x[: self._n_dyn] = sol.y[:, -1]
        return x

    def _lines(self) -> list[tuple[int, int]]:
        """``(input index, delay-line length)`` for every input, in state order."""
        n_in = len(self.design.mvs) + len(self.design.dvs)
        return [(j, max(u.delays[j] for u in self.design.units)) for j in range(n_in)]

    def check_safe(self) -> str | None:
        s = self.x[self._np.s_idx]
        for t, unit, v in zip(self.design.cvs, self.design.units, s, strict=True):
            if unit.kind == "integrating" and abs(v) > WALL_TRIP:
                what = "overflowing" if v > 0 else "running dry"
                return f"{t.name} {what} (level at {self.outputs(self.x, self.u, self.d)[t.name]:.1f} %)"
        return None
