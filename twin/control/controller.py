"""Model-predictive controller on the twin: recommended MV moves within every limit.

    ctl = Controller(twin, control_horizon=6, move_weight=0.1)
    rec = ctl.recommend(history, setpoints={"T": 330.0})   # history: Historian.frame(...)
    rec.moves[0].recommended, rec.moves[0].plan, rec.forecast, rec.success, rec.limits_held

Each cycle has two stages, as in industrial (DMC-style) MPC:

1. **Steady-state targets** (:mod:`twin.control.targets`): from the twin's steady-state gains at
   the current point (extrapolated from the tail of the horizon's offset-corrected response,
   :func:`twin.control.steady_target.steady_state`), MV and CV targets that keep the CVs within
   their operating limits (given up in ``priority`` order when they cannot all hold: the
   largest number first; instrument limits last of all), reach the setpoints as far as those
   limits allow, minimise the spec's economic cost rate with the freedom left, and otherwise
   rest at each MV's ``ideal`` value (or stay where they are). MVs stay within their operating
   limits and move at most ``target_step`` horizons of rate-limited travel per cycle.
2. **Dynamic plan**: the moves over the horizon ``k = 1..H`` (CVs ``c``, MVs ``m``, block
   starts ``j``) that minimise::

    J = 1/H sum_k sum_c w_c ((y_kc - r_c) / s_c)^2                               tracking
      + sum_j sum_m mw_m (du_jm / span_m)^2                                      move suppression
      + limit_weight/H sum_k sum_c (relu(y_kc - hi_c)^2 + relu(lo_c - y_kc)^2) / s_c^2
      + risk_weight/H  sum_k sum_c (relu(y_kc + b_kc - hi_c)^2 + relu(lo_c - y_kc + b_kc)^2) / s_c^2
      + target_weight sum_m ((v_Mm - u_ss_m) / span_m)^2                         steady-state target

``y`` the offset-corrected mean forecast of the CVs, ``b`` its band half-width (the risk term
penalises the band, not only the mean, crossing a limit), ``r_c`` the CV's steady-state target
(its setpoint when the limits allow it), ``w_c`` the spec's CV weight (or ``track_weights``; 0
for a CV without a setpoint: it is held only within its zone), ``s_c`` the CV's error scale
(:attr:`twin.spec.Tag.error_scale`: its ``scale``, else its operating range, else its
instrument span), ``[lo_c, hi_c]`` its zone (operating limits as the targets relaxed them, else
instrument limits), ``mw`` ``move_weight``, ``du_jm`` the move of MV m at block start j (the
first from the current value), ``u_ss`` the MV targets, ``span_m`` the MV's instrument span.

- **Why targets**: a horizon shorter than the settling time of a plant whose interaction
  changes sign over time (the quadruple tank in its non-minimum-phase configuration) lets the
  tracking term drive the MVs the way that helps within the horizon and hurts at steady state:
  the loop keeps an offset or pins an MV at a bound. With the targets the loop is offset-free
  there too, and an economic optimum on a limit is reached however short the horizon. The
  setpoint stage pays the move weight for the targets' distance from the current MVs, so that
  measurement noise does not pass through the inverse of an ill-conditioned steady-state gain
  (Wood-Berry) into the MV moves.
- **Frozen MVs**: an MV the twin never saw move (``model.unmoved_mvs()``: spread in its training
  data below a threshold) knows nothing of its effect: it is held at its current value and
  named in every recommendation, unless released (``release=``, ``twin run --release TAG``).
- **Move blocking**: the MVs move only at ``control_horizon`` block starts spread over the
  horizon (:func:`twin.control.problem.block_starts`, or ``blocks=`` lengths) and hold in
  between.
- **Hard limits**: every planned value lies in the MV's operating limits (else ``[lo, hi]``)
  and every move within the rate limit, by construction of the QP and by a final per-sample projection checked in float64
  (``limits_held``). An MV found outside its range moves back toward it at the rate limit;
  the message says so and ``limits_held`` is False until it is back.
- **Offset-free**: the CV forecast at step k is corrected by ``y_t - yhat(t | t-k)``, the
  model's k-step error at the current sample (:mod:`twin.control.offset`): a constant unmeasured
  disturbance or a gain error leaves no steady-state offset, whatever the model.
- **Solver**: Gauss-Newton on the block values (:func:`twin.control.solve.gauss_newton`),
  warm-started from the previous plan shifted by the samples elapsed: one batched rollout
  gives a forward-difference Jacobian (and the offset correction), a least-squares step (a
  constrained one, by NNLS, when limits bind: :mod:`twin.control.qp`) solves the linearised
  problem within the limits, a second batched rollout line-searches it; more iterations only while the model
  proves nonlinear along the step (``max_iter``).
- **Failure**: a non-finite forecast, Jacobian or objective, or a model that raises, gives
  ``success=False`` holding the current MVs (moved toward the range if outside it), with the
  reason in ``message``. Bad *input* (a setpoint for a tag that is not a CV, a non-finite
  setpoint, history without the plant's columns or too short: :mod:`twin.control.setpoints`,
  :mod:`twin.control.history_window`) raises :class:`~twin.errors.TwinError`. A setpoint
  beyond its CV's limits is allowed: the limit terms hold the CV near the limit.
- **Modules**: the problem (blocking, objective, projection) :mod:`twin.control.problem`; the
  iterations :mod:`twin.control.solve`; the answer :mod:`twin.control.answer`.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable, Mapping
from typing import Protocol

import numpy as np
import polars as pl
import torch
from torch import Tensor

from twin.control.aims import Aims, frozen_mvs, known_names
from twin.control.answer import (
    Economics,
    frozen_notes,
    outside_notes,
    plan_forecast,
    recommendation,
)
from twin.control.history_window import last_finite, recent_window
from twin.control.offset import OffsetCorrection
from twin.control.problem import Problem, block_starts, project, starts_from_blocks
from twin.control.recommendation import MoveRec, Recommendation
from twin.control.rollout import ModelCalls
from twin.control.setpoints import Setpoints
from twin.control.solve import Solution, SolveError, fd_plans, gauss_newton
from twin.control.targets import Targets
from twin.errors import TwinError
from twin.model.dataset import dv_future
from twin.model.train import torch_threads
from twin.spec import PlantSpec

log = logging.getLogger(__name__)

__all__ = ["Controller", "MoveRec", "Predictor", "Recommendation"]


class Predictor(Protocol):
    """What the controller plans on; :class:`twin.model.twin.Twin` satisfies it.

    ``torch_rollout(past, mv_plan, dv_plan)``: ``mv_plan [H', n_mv]`` or ``[B, H', n_mv]`` (eng.
    units) to ``(mean, halfwidth)`` ``[H', n_tags]`` or ``[B, H', n_tags]`` (eng. units, every
    spec tag in spec order). The offset correction also passes ``past`` stacked ``[B, ...]``
    from several ``past_tensor`` calls, paired with the plans; a predictor that refuses that
    is called once per past instead.
    """

    spec: PlantSpec

    @property
    def horizon(self) -> int: ...

    def past_tensor(self, history: pl.DataFrame) -> Tensor: ...

    def torch_rollout(
        self, past: Tensor, mv_plan: Tensor, dv_plan: Tensor | None = None
    ) -> tuple[Tensor, Tensor]: ...


class Controller:
    """Recommends the next MV moves for a plant from its recent history (see module doc).

    ``model``: the Predictor (a Twin); ``spec``: the same tags with possibly narrower limits
    (default: the model's); ``horizon``: samples planned (default and most: the model's);
    ``control_horizon``: number of move blocks (or ``blocks``: their lengths, summing to the
    horizon); ``track_weights``: per-CV weight (default: the spec's); ``move_weight``: one or
    per MV (0.1 for an MV not named); ``limit_weight`` / ``risk_weight``: soft CV limits on the
    mean / on the band; ``target_weight``: the steady-state target term (0: none; with no
    setpoint ``u_ss`` is the current MVs); ``offset_free``: the correction of
    :mod:`twin.control.offset`, with ``offset_points`` nodes (None: every step); ``frozen``:
    MVs held at their current value (default: ``model.unmoved_mvs()`` when the model has it),
    ``release``: MVs taken out of that; ``target_step``: how far the steady-state targets may
    move per cycle, in horizons of rate-limited travel; ``max_iter``:
    Gauss-Newton iterations per call; ``threads``: torch CPU threads while solving (0: leave as
    is); ``jit``: trace the rollout (default: for a Twin, see :mod:`twin.control.rollout`).
    """

    def __init__(
        self,
        model: Predictor,
        spec: PlantSpec | None = None,
        *,
        horizon: int | None = None,
        control_horizon: int = 6,
        track_weights: dict[str, float] | None = None,
        move_weight: float | dict[str, float] = 0.1,
        limit_weight: float = 100.0,
        risk_weight: float = 0.0,
        target_weight: float = 0.1,
        offset_free: bool = True,
        max_iter: int = 3,
        blocks: tuple[int, ...] | None = None,
        offset_points: int | None = 4,
        threads: int = 1,
        jit: bool | None = None,
        frozen: Iterable[str] | None = None,
        release: Iterable[str] = (),
        target_step: float = 1.0,
    ) -> None:
        release = tuple(release)
        frozen = None if frozen is None else tuple(frozen)
        self._settings = {k: v for k, v in locals().items() if k not in ("self", "model", "spec")}
        self.model = model
        self.spec = spec if spec is not None else model.spec
        if self.spec.tag_names != model.spec.tag_names:
            raise TwinError(
                f"spec tags {self.spec.tag_names} differ from the model's {model.spec.tag_names}"
            )
        self.horizon = model.horizon if horizon is None else int(horizon)
        if not 1 <= self.horizon <= model.horizon:
            raise TwinError(f"horizon must be 1..{model.horizon} (the model's), got {horizon}")
        if blocks is not None:
            try:
                self.starts = starts_from_blocks(tuple(blocks), self.horizon)
            except ValueError as exc:
                raise TwinError(str(exc)) from None
        else:
            if control_horizon < 1:
                raise TwinError(f"control_horizon must be >= 1, got {control_horizon}")
            self.starts = block_starts(self.horizon, control_horizon)
        names = self.spec.tag_names
        self.mvs, self.cvs, self.dvs = self.spec.mvs, self.spec.cvs, self.spec.dvs
        self.mv_idx = [names.index(t.name) for t in self.mvs]
        self.cv_idx = [names.index(t.name) for t in self.cvs]
        self.dv_idx = [names.index(t.name) for t in self.dvs]
        if not self.mvs:
            raise TwinError(f"plant {self.spec.name!r} has no MVs to recommend")
        self.frozen = frozen_mvs(model, self.mvs, frozen, release)
        self.frozen_mask = np.array([t.name in self.frozen for t in self.mvs])
        if not (math.isfinite(target_step) and target_step > 0):
            raise TwinError(f"target_step must be > 0, got {target_step}")
        self.target_step = float(target_step)
        self.aims = Aims.of(self.cvs, self.mvs, limits=limit_weight > 0, step=self.target_step)
        self._sp = np.full(len(self.cvs), math.nan)
        self._targets: Targets | None = None
        tw = dict(track_weights or {})
        known_names(tw, [t.name for t in self.cvs], "track_weights", "CV")
        self.track_w = np.array(
            [float(tw.get(t.name, 1.0 if t.weight is None else t.weight)) for t in self.cvs]
        )
        mw = move_weight if isinstance(move_weight, dict) else {}
        known_names(mw, [t.name for t in self.mvs], "move_weight", "MV")
        default = float(move_weight) if not isinstance(move_weight, dict) else 0.1
        self.move_w = np.array([float(mw.get(t.name, default)) for t in self.mvs])
        for label, arr in (("track_weights", self.track_w), ("move_weight", self.move_w)):
            if not (np.isfinite(arr).all() and (arr >= 0).all()):
                raise TwinError(f"{label} must be finite and >= 0, got {arr.tolist()}")
        if not (limit_weight >= 0 and risk_weight >= 0 and target_weight >= 0 and max_iter >= 1):
            raise TwinError(
                "limit_weight, risk_weight and target_weight must be >= 0 and max_iter >= 1"
            )
        self.limit_weight, self.risk_weight = float(limit_weight), float(risk_weight)
        self.target_weight = float(target_weight)
        self.offset_free, self.max_iter, self.threads = offset_free, int(max_iter), threads
        if jit is None:
            from twin.model.twin import Twin

            jit = isinstance(model, Twin)
        self.calls = ModelCalls(model, len(self.spec.tags), jit=jit)
        cols = (self.cv_idx, self.mv_idx, self.dv_idx)
        self.offset = OffsetCorrection(self.horizon, offset_points, cols)
        self.reset()

    def with_spec(self, spec: PlantSpec) -> Controller:
        """A new controller on the same model with these settings and ``spec``'s limits,
        priorities and costs (a what-if scenario's)."""
        return Controller(self.model, spec, **self._settings)

    def reset(self) -> None:
        """Forget the warm start and the cached past windows (offset-free state)."""
        self._plan: np.ndarray | None = None
        self._plan_ts: np.datetime64 | None = None
        self.offset.reset()
        self.calls.reset()

    # --- the public call ---------------------------------------------------------------------

    def recommend(
        self, history: pl.DataFrame, setpoints: Mapping[str, float] | None = None
    ) -> Recommendation:
        """The next moves for the plant whose recent samples are ``history`` (last row: now).

        ``setpoints``: CV -> setpoint over the spec's (a :class:`Setpoints` is used as is); a
        CV with neither is not tracked. A setpoint beyond the CV's limits is allowed: the
        limit terms then hold the CV near the limit.
        """
        t0 = time.perf_counter()
        resolved = Setpoints.resolve(self.spec, setpoints, within_limits=False)
        sp = np.array([resolved.get(t.name, math.nan) for t in self.cvs], dtype=float)
        history, values, tail_ts = recent_window(self.spec, history, self.horizon)
        ts_now = tail_ts[-1]
        u0 = last_finite(values[:, self.mv_idx], [t.name for t in self.mvs], "MV")
        p = self._problem(u0, sp)
        self._sp, self._targets = sp, None
        notes = outside_notes(self.mvs, u0) + frozen_notes(self.mvs, self.frozen, u0)
        economics = Economics.of(self.spec, values[-1, self.cv_idx], u0, self.frozen)
        outcome = self._attempt(p, history, values, tail_ts)
        base = (self.spec, p)
        if not isinstance(outcome, Solution):
            log.warning("MPC solve failed: %r", outcome)
            plan = project(np.repeat(u0[None], self.horizon, 0), p)
            self._plan = None
            why = outcome if isinstance(outcome, SolveError) else repr(outcome)
            message = f"failed: {why}; holding"
            return recommendation(
                *base, plan, sp, ts_now, t0, success=False, message=message, notes=notes,
                economics=economics,
            )  # fmt: skip
        sol = outcome
        plan = project(p.plans(sol.x[None])[0], p)
        self._plan, self._plan_ts = plan, ts_now
        fc = plan_forecast(self.spec, self.mv_idx, plan, sol.mean, sol.half, ts_now)
        if self._targets is not None and self._targets.message:
            notes = [self._targets.message, *notes]
        return recommendation(
            *base, plan, sp, ts_now, t0, success=True, message=sol.message, notes=notes,
            forecast=fc, objective=sol.objective, iterations=sol.iterations,
            economics=economics.with_targets(self._targets),
        )  # fmt: skip

    # --- steps -------------------------------------------------------------------------------

    def _attempt(
        self, p: Problem, history: pl.DataFrame, values: np.ndarray, tail_ts: np.ndarray
    ) -> Solution | Exception:
        """Solve; a TwinError building the past window (unusable history) propagates, any
        other failure (the model's output, a solver fault) is returned."""
        with torch_threads(self.threads), torch.no_grad():
            try:
                past = self.model.past_tensor(history)
            except TwinError:
                raise
            except Exception as exc:
                return exc
            try:
                return self._solve(p, history, values, tail_ts, past)
            except Exception as exc:
                return exc

    def _problem(self, u0: np.ndarray, sp: np.ndarray) -> Problem:
        """The solve's data: MVs within their operating limits (a frozen MV held at ``u0``),
        CVs tracking their setpoints within their operating limits, errors in their scales."""
        mvs, cvs = self.mvs, self.cvs
        has_sp = np.isfinite(sp)
        fz = self.frozen_mask
        return Problem(
            starts=self.starts,
            horizon=self.horizon,
            u0=u0,
            lo=np.where(fz, u0, [t.op_low for t in mvs]),
            hi=np.where(fz, u0, [t.op_high for t in mvs]),
            rate=np.where(fz, 0.0, [t.rate_limit or t.span for t in mvs]),
            mv_span=np.array([t.span for t in mvs]),
            move_w=self.move_w,
            sp=np.where(has_sp, sp, 0.0),
            track_w=np.where(has_sp, self.track_w, 0.0),
            cv_lo=np.array([t.op_low for t in cvs]),
            cv_hi=np.array([t.op_high for t in cvs]),
            cv_scale=np.array([t.error_scale for t in cvs]),
            limit_w=self.limit_weight,
            risk_w=self.risk_weight,
            target_w=self.target_weight,
        )

    def _retarget(self, p: Problem, x: np.ndarray, y0: np.ndarray, jy: np.ndarray) -> Problem:
        """``p`` with the steady-state targets set from the first Jacobian (:class:`Aims`)."""
        p, self._targets = self.aims.retarget(p, x, y0, jy, self._sp, self.track_w)
        return p

    def _solve(
        self,
        p: Problem,
        history: pl.DataFrame,
        values: np.ndarray,
        tail_ts: np.ndarray,
        past: Tensor,
    ) -> Solution:
        x0 = p.feasible(self._warm_start(p, tail_ts[-1]))
        fd = p.plans(fd_plans(p, x0))
        dvs = values[-1, self.dv_idx] if self.dv_idx else None  # held ahead, clocks counted on:
        dv_ahead = None if dvs is None else dv_future(self.spec, dvs, self.horizon)
        back = None
        if self.offset_free:
            pasts = self.model.past_tensor
            back = self.offset.members(pasts, history, values, tail_ts, past, dv_ahead)
        mean, half = self.calls(past, fd, dv_ahead, back)
        n_fd = len(fd)
        offset = np.zeros((self.horizon, len(self.cv_idx)))
        if back is not None:
            offset = self.offset.correction(values[-1, self.cv_idx], mean[n_fd:])
        mean, half = mean[:n_fd], half[:n_fd]
        mean[:, :, self.cv_idx] += offset

        def rollout(plans: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            m, h = self.calls(past, plans, dv_ahead, None)
            m[:, :, self.cv_idx] += offset
            return m, h

        retarget = self._retarget if self.target_weight > 0 else None
        return gauss_newton(
            p,
            x0,
            rollout,
            self.cv_idx,
            first=(mean, half),
            max_iter=self.max_iter,
            retarget=retarget,
        )

    def _warm_start(self, p: Problem, ts_now: np.datetime64) -> np.ndarray:
        """Block values ``[M, n_mv]`` from the previous plan shifted by the samples elapsed."""
        hold = np.repeat(p.u0[None], len(self.starts), 0)
        if self._plan is None or self._plan_ts is None or self._plan.shape[0] != self.horizon:
            return hold
        shift = round(float((ts_now - self._plan_ts) / np.timedelta64(1, "us")) / self._period_us)
        if not 0 <= shift < self.horizon:
            return hold
        plan = np.concatenate([self._plan[shift:], np.repeat(self._plan[-1:], shift, 0)])
        return plan[self.starts]

    @property
    def _period_us(self) -> float:
        return self.spec.sample_period * 1e6
