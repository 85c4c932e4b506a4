"""What every simulated plant has in common: a spec, a state, noise, disturbances, one step.

A plant is a continuous-time model ``dx/dt = f(x, u, d)`` integrated with scipy's LSODA
over each sample period with the MVs held (zero-order hold), plus

- process noise: a random kick to the state after each step (Euler-Maruyama at the sample rate);
- a slow *unmeasured* disturbance: an Ornstein-Uhlenbeck drift in a model parameter;
- a *measured* disturbance where natural (a DV tag), also an OU process around its nominal value;
- measurement noise on every reported tag.

Each plant writes ``f`` once, in operations that work on numpy arrays and on torch tensors
(see :class:`Ops`), so that :meth:`SimPlant.torch_step` is the same physics, differentiable, for
the oracle controller. The learning code in ``twin/`` never imports this package.
"""

from __future__ import annotations

import logging
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from scipy.integrate import odeint, solve_ivp

from twin.errors import SimulationError
from twin.spec import PlantSpec, builtin_spec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Ops:
    """The few array functions a right-hand side needs, for numpy or torch alike."""

    exp: Any
    sqrt: Any
    stack: Any  # stack(list_of_arrays) along the last axis
    relu: Any  # max(x, 0)
    unstack: Any  # x[..., n] -> tuple of n arrays x[..., i] (plain floats for one numpy state)


def _np_stack(xs: list[Any]) -> np.ndarray:
    """Stack along the last axis; for scalars (one unbatched state) np.array is ~10x faster."""
    return np.array(xs) if np.ndim(xs[0]) == 0 else np.stack(xs, axis=-1)


def _np_unstack(x: np.ndarray) -> tuple[Any, ...]:
    """Split the last axis; one unbatched state gives numpy scalars (fast arithmetic)."""
    return tuple(x) if x.ndim == 1 else tuple(x[..., i] for i in range(x.shape[-1]))


NUMPY_OPS = Ops(
    exp=np.exp,
    sqrt=np.sqrt,
    stack=_np_stack,
    relu=lambda x: np.maximum(x, 0.0),
    unstack=_np_unstack,
)
TORCH_OPS = Ops(
    exp=torch.exp,
    sqrt=torch.sqrt,
    stack=lambda xs: torch.stack(xs, dim=-1),
    relu=torch.relu,
    unstack=lambda x: torch.unbind(x, dim=-1),
)


class OUProcess:
    """Ornstein-Uhlenbeck drift: mean-reverting with time constant ``tau`` (s), std ``sigma``."""

    def __init__(self, mean: float, sigma: float, tau: float, rng: np.random.Generator) -> None:
        self.mean, self.sigma, self.tau, self.rng = mean, sigma, tau, rng
        self.value = mean

    def step(self, dt: float) -> float:
        a = math.exp(-dt / self.tau)
        self.value = (
            self.mean
            + a * (self.value - self.mean)
            + self.sigma * math.sqrt(1 - a * a) * self.rng.standard_normal()
        )
        return self.value


class SimPlant(ABC):
    """A simulated plant that advances one sample period at a time.

    Subclasses set ``name``, ``state_names``, ``x0`` (nominal steady state), ``u0``, ``d0`` and
    implement :meth:`rhs` and :meth:`outputs`. MVs and DVs are ordered as in the spec.
    """

    name: str
    state_names: tuple[str, ...]
    #: nominal state, MVs and DVs (the operating point the cited source gives)
    x0: np.ndarray
    u0: np.ndarray
    d0: np.ndarray
    #: time unit of ``rhs`` in seconds (60 for models written per minute)
    time_unit_s: float = 1.0
    #: std of the process-noise kick per sample, per state (state units)
    process_noise: np.ndarray
    #: std of the measurement noise per tag (engineering units), keyed by tag name
    measurement_noise: ClassVar[dict[str, float]]
    #: names of the unmeasured disturbance parameters ``p``, in order (see set_disturbance)
    param_names: ClassVar[tuple[str, ...]] = ()

    def __init__(self, seed: int = 0, *, noise: bool = True, spec: PlantSpec | None = None) -> None:
        self.spec = spec or builtin_spec(self.name)
        self.rng = np.random.default_rng(seed)
        self.noise = noise
        self.t = 0.0  # seconds since start
        self.x = self.x0.astype(float).copy()
        self.u = self.u0.astype(float).copy()
        self.d = self.d0.astype(float).copy()
        self.tripped: str | None = None  # set with the reason when the plant left its safe envelope
        self._held: set[tuple[str, int]] = set()  # disturbances pinned by set_disturbance
        self._setup_disturbances()

    # --- to implement ---------------------------------------------------------------------

    @abstractmethod
    def rhs(self, x: Any, u: Any, d: Any, p: Any, ops: Ops) -> Any:
        """``dx/dt`` in ``time_unit_s`` units; x ``[..., n_x]``, u ``[..., n_mv]``, d ``[..., n_dv]``.

        ``p`` is the unmeasured-disturbance parameter vector (``[..., n_p]``).
        """

    @abstractmethod
    def outputs(self, x: np.ndarray, u: np.ndarray, d: np.ndarray) -> dict[str, float]:
        """Noise-free value of every spec tag for this state and these inputs."""

    def _setup_disturbances(self) -> None:
        """Create ``self.p`` (unmeasured parameters) and the OU drivers. Default: none."""
        self.p = np.zeros(0)
        self._p_drift: list[OUProcess] = []
        self._d_drift: list[OUProcess] = []

    def check_safe(self) -> str | None:
        """A reason string if the state left the plant's safe envelope, else None."""
        return None

    # --- shared machinery -----------------------------------------------------------------

    @property
    def sample_period(self) -> float:
        return self.spec.sample_period

    @property
    def mv_names(self) -> list[str]:
        return [t.name for t in self.spec.mvs]

    @property
    def dv_names(self) -> list[str]:
        return [t.name for t in self.spec.dvs]

    def set_mv(self, name: str, value: float) -> None:
        """Set one MV (engineering units); used from the next step on. Range is the caller's job."""
        self.u[self.mv_names.index(name)] = float(value)

    def set_disturbance(self, name: str, value: float) -> None:
        """Set a disturbance and hold it there: its drift no longer moves it (scripted scenarios).

        ``name`` is an unmeasured parameter (one of :attr:`param_names`, e.g. the CSTR's feed
        concentration ``Caf``) or a measured DV tag (e.g. ``Tf``). Its drift keeps drawing its
        random numbers, so the plant's noise sequence is the same whether or not it is held.
        """
        if name in self.param_names:
            key = ("p", self.param_names.index(name))
            self.p[key[1]] = float(value)
        elif name in self.dv_names:
            key = ("d", self.dv_names.index(name))
            self.d[key[1]] = float(value)
        else:
            raise KeyError(
                f"{self.name} has no disturbance {name!r}: unmeasured {list(self.param_names)}, "
                f"measured {self.dv_names}"
            )
        self._held.add(key)

    def step(self, mv: dict[str, float] | None = None) -> dict[str, float]:
        """Advance one sample period with the MVs held; return the measured value of every tag."""
        for k, v in (mv or {}).items():
            self.set_mv(k, v)
        dt = self.sample_period
        if self.noise:
            for i, ou in enumerate(self._p_drift):
                drifted = ou.step(dt)
                if ("p", i) not in self._held:
                    self.p[i] = drifted
            for i, ou in enumerate(self._d_drift):
                drifted = ou.step(dt)
                if ("d", i) not in self._held:
                    self.d[i] = drifted
        x_new = self._advance(self.x, self.u.copy(), self.d.copy(), self.p.copy())
        if self.noise:
            x_new = x_new + self.process_noise * self.rng.standard_normal(x_new.shape)
        self.x = self.clip_state(x_new)
        self.t += dt
        reason = self.check_safe()
        if reason and not self.tripped:
            log.warning("%s: %s", self.name, reason)
        self.tripped = reason
        return self.measure()

    def _advance(self, x: np.ndarray, u: np.ndarray, d: np.ndarray, p: np.ndarray) -> np.ndarray:
        """Noise-free state one sample period after ``x`` with u, d, p held; SimulationError if not.

        LSODA (stiff/non-stiff switching) through ``odeint``: the same ODEPACK solver as
        ``solve_ivp(method="LSODA")`` at half its per-call overhead, which dominates here.
        Plants with an exact discretisation override this.
        """
        span = self.sample_period / self.time_unit_s
        y, info = odeint(
            lambda xx, _t: self.rhs(xx, u, d, p, NUMPY_OPS),
            x,
            [0.0, span],
            rtol=1e-6,
            atol=1e-9,
            mxstep=5000,
            full_output=True,
        )
        x_new = y[-1]
        if info["message"] != "Integration successful." or not np.all(np.isfinite(x_new)):
            self.tripped = f"integration failed at t={self.t:.0f}s: {info['message']}"
            raise SimulationError(
                f"{self.name}: {self.tripped} (state {dict(zip(self.state_names, x, strict=True))}, "
                f"MVs {dict(zip(self.mv_names, u, strict=True))})"
            )
        return np.asarray(x_new)

    def clip_state(self, x: np.ndarray) -> np.ndarray:
        """Keep physically impossible states out (e.g. negative levels). Default: unchanged."""
        return x

    def measure(self) -> dict[str, float]:
        """Every tag's value as a sensor reports it (with measurement noise when enabled)."""
        values = self.outputs(self.x, self.u, self.d)
        if self.noise:
            for tag, sigma in self.measurement_noise.items():
                values[tag] += sigma * float(self.rng.standard_normal())
        return values

    # --- torch: the same physics, differentiable ------------------------------------------

    def torch_step(
        self,
        x: torch.Tensor,
        u: torch.Tensor,
        d: torch.Tensor | None = None,
        p: torch.Tensor | None = None,
        substeps: int = 4,
    ) -> torch.Tensor:
        """One sample period of the noise-free model with classic RK4, differentiable in x and u.

        Shapes: x ``[..., n_x]``, u ``[..., n_mv]``, d ``[..., n_dv]`` (default: nominal),
        p ``[..., n_p]`` (default: the current drift). Returns ``[..., n_x]``.
        """
        d_t = torch.as_tensor(self.d0 if d is None else d, dtype=x.dtype)
        p_t = torch.as_tensor(self.p if p is None else p, dtype=x.dtype)
        h = self.sample_period / self.time_unit_s / substeps

        def f(xx: torch.Tensor) -> torch.Tensor:
            return self.rhs(xx, u, d_t, p_t, TORCH_OPS)

        for _ in range(substeps):
            k1 = f(x)
            k2 = f(x + 0.5 * h * k1)
            k3 = f(x + 0.5 * h * k2)
            k4 = f(x + h * k3)
            x = x + (h / 6.0) * (k1 + 2 * k2 + 2 * k3 + k4)
        return x

    def steady_state(self, u: np.ndarray | None = None, d: np.ndarray | None = None) -> np.ndarray:
        """The noise-free steady state reached from ``x0`` under constant u and d (by simulation)."""
        u = self.u0 if u is None else np.asarray(u, float)
        d = self.d0 if d is None else np.asarray(d, float)
        p = self.p.copy()
        sol = solve_ivp(
            lambda _t, x: self.rhs(x, u, d, p, NUMPY_OPS),
            (0.0, 1e4 * self.sample_period / self.time_unit_s),
            self.x0,
            method="LSODA",
            rtol=1e-9,
            atol=1e-11,
        )
        return sol.y[:, -1]
