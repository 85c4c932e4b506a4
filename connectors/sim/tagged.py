"""Plants whose every tag is one function of (x, u, d, p), for numpy and torch alike.

The built-in plants report states, MVs and DVs as they are; the newer ones report measurements
that are functions of the state (a pH from two reaction invariants, a sensor with a nonlinear
characteristic, a batch clock). :class:`TaggedPlant` writes that function once,
:meth:`TaggedPlant.tag_values`, so that :meth:`~TaggedPlant.outputs` (numpy, the plant) and
:meth:`~TaggedPlant.torch_outputs` (torch, differentiable: what an oracle controller reads after
:meth:`~connectors.sim.base.SimPlant.torch_step`) are the same physics.

:class:`XOps` extends the base class's :class:`~connectors.sim.base.Ops` by the few functions
these plants need besides (tanh, log, where); :func:`xops` maps the ops the base class passes to
``rhs`` onto them.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, ClassVar

import numpy as np
import torch

from connectors.sim.base import NUMPY_OPS, TORCH_OPS, Ops, SimPlant


@dataclass(frozen=True)
class XOps(Ops):
    """:class:`Ops` and a few more array functions, for numpy or torch alike."""

    tanh: Any
    log: Any
    where: Any  # where(condition, a, b)
    minimum: Any  # element-wise min(a, b)
    clip: Any  # clip(a, lo, hi) with scalar bounds
    cat: Any  # cat(list_of_arrays) along the last axis
    expand: Any  # expand(a [..., n], batch_shape) -> [*batch_shape, n]
    batch: Any  # batch(*shapes): the broadcast shape
    is_torch: bool


NUMPY_X = XOps(
    exp=NUMPY_OPS.exp,
    sqrt=NUMPY_OPS.sqrt,
    stack=NUMPY_OPS.stack,
    relu=NUMPY_OPS.relu,
    unstack=NUMPY_OPS.unstack,
    tanh=np.tanh,
    log=np.log,
    where=np.where,
    minimum=np.minimum,
    clip=np.clip,
    cat=lambda xs: np.concatenate(xs, axis=-1),
    expand=lambda a, batch: np.broadcast_to(a, (*batch, a.shape[-1])),
    batch=np.broadcast_shapes,
    is_torch=False,
)
TORCH_X = XOps(
    exp=TORCH_OPS.exp,
    sqrt=TORCH_OPS.sqrt,
    stack=TORCH_OPS.stack,
    relu=TORCH_OPS.relu,
    unstack=TORCH_OPS.unstack,
    tanh=torch.tanh,
    log=torch.log,
    where=torch.where,
    minimum=torch.minimum,
    clip=torch.clamp,
    cat=lambda xs: torch.cat(xs, dim=-1),
    expand=lambda a, batch: a.expand(*batch, a.shape[-1]),
    batch=torch.broadcast_shapes,
    is_torch=True,
)


def xops(ops: Ops) -> XOps:
    """The extended ops of the same array library as ``ops``."""
    if isinstance(ops, XOps):
        return ops
    return TORCH_X if ops is TORCH_OPS else NUMPY_X


class TaggedPlant(SimPlant):
    """A simulated plant whose tags come from :meth:`tag_values` (numpy and torch alike).

    Sensor noise is per tag in :attr:`sensor_noise` (engineering units); a subclass may set it
    per instance (a generated plant does).
    """

    measurement_noise: ClassVar[dict[str, float]] = {}  # unused: see sensor_noise
    #: std of each tag's measurement noise (engineering units), keyed by tag name
    sensor_noise: Mapping[str, float] = MappingProxyType({})

    @abstractmethod
    def tag_values(self, x: Any, u: Any, d: Any, p: Any, ops: XOps) -> list[Any]:
        """Noise-free value of every spec tag, in spec order; x ``[..., n_x]`` -> ``[...]`` each."""

    def outputs(self, x: np.ndarray, u: np.ndarray, d: np.ndarray) -> dict[str, float]:
        values = self.tag_values(x, u, d, self.p, NUMPY_X)
        return {name: float(v) for name, v in zip(self.spec.tag_names, values, strict=True)}

    def torch_outputs(
        self,
        x: torch.Tensor,
        u: torch.Tensor,
        d: torch.Tensor | None = None,
        p: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Noise-free value of every spec tag ``[..., n_tags]`` (spec order), differentiable.

        Shapes: x ``[..., n_x]``, u ``[..., n_mv]``, d ``[..., n_dv]`` (default: nominal),
        p ``[..., n_p]`` (default: the current drift); the same numbers as :meth:`outputs`.
        """
        d_t = torch.as_tensor(self.d0 if d is None else d, dtype=x.dtype)
        p_t = torch.as_tensor(self.p if p is None else p, dtype=x.dtype)
        values = self.tag_values(x, u, d_t, p_t, TORCH_X)
        shape = torch.broadcast_shapes(*(torch.as_tensor(v).shape for v in values))
        return torch.stack([torch.as_tensor(v, dtype=x.dtype).expand(shape) for v in values], -1)

    def measure(self) -> dict[str, float]:
        """Every tag's value as a sensor reports it (with its noise when enabled)."""
        values = self.outputs(self.x, self.u, self.d)
        if self.noise:
            for tag in self.spec.tag_names:
                sigma = self.sensor_noise.get(tag, 0.0)
                if sigma:
                    values[tag] += sigma * float(self.rng.standard_normal())
        return values
