"""How the controller calls its model: batched, checked, float64 numpy out, traced when it can.

Nearly all of a solve's time is the model's ``torch_rollout``: on a small CPU the twin's
30-step loop costs a few ms per call in Python and dispatch overhead, whatever the batch.
:class:`ModelCalls` therefore

- batches everything one step of the solver needs into one call (with the pasts stacked
  ``[B, ...]`` for the offset correction's step-back members; a predictor that refuses
  stacked pasts is called once per past from then on);
- traces the rollout with ``torch.jit.trace`` once per input shape (``jit=True``), checks the
  traced function against the eager one on that first call, and uses it from then on (2-3x
  faster for the twin, to the bit the same numbers); anything that fails to trace or to match
  runs eagerly. Tracing freezes Python control flow, so it is only safe for models whose
  rollout is plain tensor code: :class:`twin.model.twin.Twin` (the default for it), not a model that
  calls numpy inside.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from twin.control.offset import Members
from twin.control.solve import SolveError

log = logging.getLogger(__name__)

#: traced functions kept (one per input shape; a controller uses a handful)
MAX_TRACES = 16


class ModelCalls:
    """Runs ``model.torch_rollout`` on float64 numpy plans, returns ``(mean, half)`` numpy."""

    def __init__(self, model: Any, n_tags: int, *, jit: bool) -> None:
        self.model = model
        self.n_tags = n_tags
        self.jit = jit
        self.batch_pasts = True
        self._traced: dict[tuple[Any, ...], Callable[..., tuple[Tensor, Tensor]]] = {}

    def reset(self) -> None:
        """Drop the traced functions (after the model's weights change)."""
        self._traced.clear()

    def __call__(
        self, past: Tensor, plans: np.ndarray, dv_ahead: np.ndarray | None, back: Members | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(mean, half)`` ``[B, H, n_tags]`` for ``plans [B, H, n_mv]`` and the DVs ahead
        ``dv_ahead [>= H, n_dv]`` (None without DVs), then ``back``'s members."""
        b, h = plans.shape[:2]
        dv = None if dv_ahead is None else np.broadcast_to(dv_ahead[:h], (b, h, dv_ahead.shape[1]))
        if back is not None and self.batch_pasts:
            try:
                all_dv = None if dv is None or back.dvs is None else np.concatenate([dv, back.dvs])
                return self.run(
                    torch.stack([past] * b + back.pasts),
                    np.concatenate([plans, back.plans]),
                    all_dv,
                )
            except Exception as exc:
                log.info("predictor refused stacked pasts (%s): one call per past", exc)
                self.batch_pasts = False
        mean, half = self.run(past, plans, dv)
        if back is None:
            return mean, half
        outs = [
            self.run(q, back.plans[i : i + 1], None if back.dvs is None else back.dvs[i : i + 1])
            for i, q in enumerate(back.pasts)
        ]
        return np.concatenate([mean, *[o[0] for o in outs]]), np.concatenate(
            [half, *[o[1] for o in outs]]
        )

    def run(
        self, past: Tensor, plans: np.ndarray, dv: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """One rollout call, checked for shape, as float64 numpy."""
        args = [past, torch.as_tensor(plans, dtype=torch.float64)]
        if dv is not None:
            args.append(torch.as_tensor(np.ascontiguousarray(dv), dtype=torch.float64))
        mean, half = self._rollout(args)
        out = mean.detach().double().cpu().numpy(), half.detach().double().cpu().numpy()
        want = (*plans.shape[:2], self.n_tags)
        if out[0].shape != want or out[1].shape != want:
            raise SolveError(f"model returned forecasts of shape {out[0].shape}, expected {want}")
        return out

    def _eager(self, *args: Tensor) -> tuple[Tensor, Tensor]:
        return self.model.torch_rollout(*args)

    def _rollout(self, args: list[Tensor]) -> tuple[Tensor, Tensor]:
        if not self.jit:
            return self._eager(*args)
        key = tuple((tuple(a.shape), a.dtype) for a in args)
        fn = self._traced.get(key)
        if fn is not None:
            return fn(*args)
        out = self._eager(*args)
        if len(self._traced) < MAX_TRACES:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    traced = torch.jit.trace(self._eager, tuple(args), check_trace=False)
                    again = traced(*args)
                if not all(
                    torch.equal(_nan0(a), _nan0(b)) for a, b in zip(out, again, strict=True)
                ):
                    raise ValueError("traced rollout differs from the eager one")
                self._traced[key] = traced
            except Exception as exc:  # untraceable model: stay eager
                log.info("rollout not traced (%s): running it eagerly", exc)
                self.jit = False
        return out


def _nan0(t: Tensor) -> Tensor:
    return torch.nan_to_num(t.detach(), nan=0.0, posinf=1e300, neginf=-1e300)
