"""Wood-Berry methanol-water column (Wood & Berry 1973, Chem. Eng. Sci. 28, 1707-1717).

The published model is six first-order-plus-dead-time transfer functions (time in minutes,
compositions in mol%, flows in lb/min, all as deviations from the nominal point):

    XD = 12.8 e^-1s/(16.7s+1) R - 18.9 e^-3s/(21s+1) S + 3.8 e^-8.1s/(14.9s+1) F
    XB =  6.6 e^-7s/(10.9s+1) R - 19.4 e^-3s/(14.4s+1) S + 4.9 e^-3.4s/(13.2s+1) F

nominal XD = 96.25, XB = 0.5 mol% at R = 1.95, S = 1.71, F = 2.45 lb/min.

Here each term is one lag state ``dx/dt = (K w(t - theta) - x) / tau`` driven by its input ``w``
delayed by ``theta``. The inputs are held over each sample (zero-order hold), so the delayed input
is piecewise constant too and the lag has a closed-form solution: with ``theta = (n + f) Ts``
(``Ts`` the sample period, ``0 <= f < 1``) the delayed input during sample k is ``w[k-n-1]``
for the first fraction ``f`` of the interval and ``w[k-n]`` for the rest, so

    x[k+1] = e^(-Ts/tau) x[k] + K e^(-(1-f)Ts/tau) (1 - e^(-f Ts/tau)) w[k-n-1]
                              + K (1 - e^(-(1-f)Ts/tau)) w[k-n]

This is the interval split at the switching point, integrated exactly (no rounding of the
fractional dead times 8.1 and 3.4 min, no ODE-solver error). ``step`` and ``torch_step`` run the
same formula, so the differentiable model is the plant's discrete dynamics, exactly.

State layout (25 entries at the spec's 1-min sample; every entry a deviation from nominal):

- ``x[0:6]``  lag outputs [mol%]: XD<-R, XD<-S, XD<-F, XB<-R, XB<-S, XB<-F;
- ``x[6:13]`` delay line of R [lb/min]: R[k-1], R[k-2], ..., R[k-7] (most recent first);
- ``x[13:16]`` delay line of S: S[k-1] .. S[k-3];
- ``x[16:25]`` delay line of F: F[k-1] .. F[k-9].

A spec with another sample period gets delay lines of the length its dead times need
(``state_names`` says which).

Disturbances: the feed flow F is the measured DV (OU around 2.45 lb/min). The feed composition
drifts unmeasured (OU) and shifts both products the same way, as an additive output disturbance
of a few tenths of a mol% (illustrative sizes; the paper gives no feed-composition model).
The linear model knows no physical bounds: reported compositions are clipped to 0-100 mol% and
the plant reports a trip while the model would leave that range.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from connectors.sim.base import NUMPY_OPS, TORCH_OPS, Ops, OUProcess, SimPlant
from twin.spec import PlantSpec, builtin_spec

XD0, XB0 = 96.25, 0.5  # nominal compositions, mol%
R0, S0, F0 = 1.95, 1.71, 2.45  # nominal reflux, steam, feed, lb/min
INPUTS = ("R", "S", "F")  # w = [R, S, F]: u = [R, S], d = [F]

#: (output, input, gain K [mol% per lb/min], time constant tau [min], dead time theta [min])
TRANSFER_FUNCTIONS: tuple[tuple[str, str, float, float, float], ...] = (
    ("XD", "R", 12.8, 16.7, 1.0),
    ("XD", "S", -18.9, 21.0, 3.0),
    ("XD", "F", 3.8, 14.9, 8.1),
    ("XB", "R", 6.6, 10.9, 7.0),
    ("XB", "S", -19.4, 14.4, 3.0),
    ("XB", "F", 4.9, 13.2, 3.4),
)
#: effect of the unmeasured feed-composition drift (p[0], mol% of feed) on XD and XB
FEED_COMPOSITION_GAIN = (0.2, 0.05)


@dataclass(frozen=True)
class _Channel:
    """One transfer function discretised exactly at the sample period (see module docstring)."""

    lag: int  # index of its lag state
    inp: int  # index of its input in w = [R, S, F]
    phi: float  # e^(-Ts/tau)
    g_new: float  # weight of w[k-n]
    g_old: float  # weight of w[k-n-1] (0 for a whole-sample dead time)
    new_col: int | None  # state column of w[k-n]; None: n = 0, the current input
    old_col: int | None  # state column of w[k-n-1]; None when g_old = 0


@dataclass(frozen=True)
class _Layout:
    """Where the lags and the delay lines sit in the state, for one sample period."""

    channels: tuple[_Channel, ...]
    hist: tuple[tuple[int, int], ...]  # per input: (first state column, length)
    state_names: tuple[str, ...]

    @classmethod
    def build(cls, ts: float) -> _Layout:
        """The layout for sample period ``ts`` (minutes)."""
        split = []
        for _out, _inp, _k, _tau, theta in TRANSFER_FUNCTIONS:
            r = theta / ts
            n = round(r) if abs(r - round(r)) < 1e-9 else math.floor(r)
            split.append((n, max(r - n, 0.0)))
        lengths = [
            max(
                n + (f > 0)
                for (n, f), tf in zip(split, TRANSFER_FUNCTIONS, strict=True)
                if tf[1] == name
            )
            for name in INPUTS
        ]
        starts = np.cumsum([len(TRANSFER_FUNCTIONS), *lengths[:-1]]).tolist()
        channels = []
        for j, ((n, f), (_out, inp_name, k, tau, _theta)) in enumerate(
            zip(split, TRANSFER_FUNCTIONS, strict=True)
        ):
            i = INPUTS.index(inp_name)
            a_new = math.exp(-(1 - f) * ts / tau)  # decay over the part after the switch
            channels.append(
                _Channel(
                    lag=j,
                    inp=i,
                    phi=math.exp(-ts / tau),
                    g_new=k * (1 - a_new),
                    g_old=k * a_new * (1 - math.exp(-f * ts / tau)),
                    new_col=None if n == 0 else starts[i] + n - 1,
                    old_col=starts[i] + n if f > 0 else None,
                )
            )
        names = [f"{o}<-{i}" for o, i, *_ in TRANSFER_FUNCTIONS]
        for name, length in zip(INPUTS, lengths, strict=True):
            names += [f"{name}[k-{m + 1}]" for m in range(length)]
        return cls(tuple(channels), tuple(zip(starts, lengths, strict=True)), tuple(names))


_DEFAULT = _Layout.build(1.0)  # the spec's 1-minute sample


def _process_noise(layout: _Layout) -> np.ndarray:
    """Per-sample kick std: on the lag states only (the delay line holds known inputs)."""
    noise = np.zeros(len(layout.state_names))
    noise[:3], noise[3:6] = 0.01, 0.004  # mol%
    return noise


class WoodBerry(SimPlant):
    """The Wood-Berry column: CVs XD, XB (mol%), MVs R, S (lb/min), DV F (lb/min)."""

    name = "woodberry"
    state_names = _DEFAULT.state_names
    x0 = np.zeros(len(_DEFAULT.state_names))
    u0 = np.array([R0, S0])
    d0 = np.array([F0])
    time_unit_s = 60.0
    process_noise = _process_noise(_DEFAULT)
    measurement_noise: ClassVar[dict[str, float]] = {
        "XD": 0.05,
        "XB": 0.02,
        "R": 0.001,  # flow meters: about 1 % of the narrow MV span
        "S": 0.0003,
        "F": 0.01,
    }
    #: feed methanol composition, deviation from nominal (mol%)
    param_names: ClassVar[tuple[str, ...]] = ("zF",)

    def __init__(self, seed: int = 0, *, noise: bool = True, spec: PlantSpec | None = None) -> None:
        spec = spec or builtin_spec(self.name)
        self._layout = _Layout.build(spec.sample_period / self.time_unit_s)
        self.state_names = self._layout.state_names
        self.x0 = np.zeros(len(self.state_names))
        self.process_noise = _process_noise(self._layout)
        super().__init__(seed, noise=noise, spec=spec)

    def _setup_disturbances(self) -> None:
        # p[0]: feed methanol composition deviation, mol%; drifts over hours
        self.p = np.array([0.0])
        self._p_drift = [OUProcess(0.0, sigma=1.0, tau=7200.0, rng=self.rng)]
        # F: +-0.03 lb/min (about 1 %); through the gain 4.9 that moves XB by +-0.15 mol%
        self._d_drift = [OUProcess(F0, sigma=0.03, tau=1800.0, rng=self.rng)]

    # --- dynamics -------------------------------------------------------------------------

    def rhs(self, x: Any, u: Any, d: Any, p: Any, ops: Ops) -> Any:
        """Lag dynamics with the dead times left out (delay line constant), per minute.

        Not used for stepping (which is exact, with the dead times); it shows the continuous
        model and gives the same steady state.
        """
        w = (u[..., 0] - R0, u[..., 1] - S0, d[..., 0] - F0)
        cols = [
            (k * w[INPUTS.index(inp)] - x[..., j]) / tau
            for j, (_out, inp, k, tau, _theta) in enumerate(TRANSFER_FUNCTIONS)
        ]
        cols += [0.0 * x[..., j] for j in range(len(cols), len(self.state_names))]
        return ops.stack(cols)

    def _discrete(self, x: Any, w: tuple[Any, Any, Any], ops: Ops) -> Any:
        """The exact one-sample map: lags and delay lines ``[..., n_x]`` under inputs ``w``."""
        cols = []
        for c in self._layout.channels:
            new = w[c.inp] if c.new_col is None else x[..., c.new_col]
            value = c.phi * x[..., c.lag] + c.g_new * new
            if c.old_col is not None:
                value = value + c.g_old * x[..., c.old_col]
            cols.append(value)
        for i, (start, length) in enumerate(self._layout.hist):
            if length:  # shift: the current input becomes [k-1]
                cols.append(w[i])
                cols.extend(x[..., start + m] for m in range(length - 1))
        return ops.stack(cols)

    def _advance(self, x: np.ndarray, u: np.ndarray, d: np.ndarray, p: np.ndarray) -> np.ndarray:
        return np.asarray(self._discrete(x, (u[0] - R0, u[1] - S0, d[0] - F0), NUMPY_OPS))

    def torch_step(
        self,
        x: torch.Tensor,
        u: torch.Tensor,
        d: torch.Tensor | None = None,
        p: torch.Tensor | None = None,
        substeps: int = 4,
    ) -> torch.Tensor:
        """One sample of the exact discrete dynamics (``substeps`` is ignored: no ODE error).

        Shapes: x ``[..., n_x]`` (layout in the module docstring), u ``[..., 2]`` (R, S lb/min),
        d ``[..., 1]`` (F, default nominal). ``p`` moves only the outputs, see :meth:`compositions`.
        """
        batch = x.shape[:-1]
        u = torch.as_tensor(u, dtype=x.dtype).expand(*batch, 2)
        d_t = torch.as_tensor(self.d0 if d is None else d, dtype=x.dtype).expand(*batch, 1)
        w = (u[..., 0] - R0, u[..., 1] - S0, d_t[..., 0] - F0)
        out: torch.Tensor = self._discrete(x, w, TORCH_OPS)
        return out

    def compositions(self, x: Any, p: Any = None, ops: Ops = NUMPY_OPS) -> Any:
        """Noise-free, unclipped ``[..., 2]`` (XD, XB) in mol% from a state (numpy or torch)."""
        drift = self.p[0] if p is None else p[..., 0]
        xd = XD0 + x[..., 0] + x[..., 1] + x[..., 2] + FEED_COMPOSITION_GAIN[0] * drift
        xb = XB0 + x[..., 3] + x[..., 4] + x[..., 5] + FEED_COMPOSITION_GAIN[1] * drift
        return ops.stack([xd, xb])

    def steady_state(self, u: np.ndarray | None = None, d: np.ndarray | None = None) -> np.ndarray:
        """Closed form: each lag at ``K w``, each delay line full of the constant input."""
        u = self.u0 if u is None else np.asarray(u, float)
        d = self.d0 if d is None else np.asarray(d, float)
        w = np.array([u[0] - R0, u[1] - S0, d[0] - F0])
        x = np.zeros(len(self.state_names))
        for j, (_out, inp, k, _tau, _theta) in enumerate(TRANSFER_FUNCTIONS):
            x[j] = k * w[INPUTS.index(inp)]
        for i, (start, length) in enumerate(self._layout.hist):
            x[start : start + length] = w[i]
        return x

    # --- tags -----------------------------------------------------------------------------

    def outputs(self, x: np.ndarray, u: np.ndarray, d: np.ndarray) -> dict[str, float]:
        xd, xb = np.clip(self.compositions(x), 0.0, 100.0)
        return {
            "XD": float(xd),
            "XB": float(xb),
            "R": float(u[0]),
            "S": float(u[1]),
            "F": float(d[0]),
        }

    def check_safe(self) -> str | None:
        xd, xb = self.compositions(self.x)
        bad = [f"{n} = {v:.2f} mol%" for n, v in (("XD", xd), ("XB", xb)) if not 0.0 <= v <= 100.0]
        if bad:
            return (
                f"composition outside 0-100 mol% ({', '.join(bad)}): the linear Wood-Berry model "
                f"is beyond its range at R={self.u[0]:.3f}, S={self.u[1]:.3f} lb/min; "
                "reported values are clipped"
            )
        return None
