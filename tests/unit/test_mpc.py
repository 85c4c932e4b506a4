"""The controller: the known optimum, hard limits against any model, offset-free, the real twin.

Predictors here are small torch models written out in the test (the real ``Predictor`` protocol:
``spec``, ``horizon``, ``past_tensor``, ``torch_rollout``), so every expected number is
computed independently of the controller.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from control_helpers import LinearModel, frame
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.optimize import minimize

from twin.control.controller import Controller, Recommendation
from twin.control.problem import Problem, block_starts
from twin.control.qp import qp_step
from twin.control.setpoints import Setpoints
from twin.errors import TwinError
from twin.spec import PlantSpec, parse_spec

START = datetime(2026, 1, 1, tzinfo=UTC)
CSTR_MODEL = Path(__file__).resolve().parents[2] / "data" / "models" / "cstr"


def make_spec(
    n_cv: int = 2,
    n_mv: int = 2,
    *,
    mv_lo: float = -10.0,
    mv_hi: float = 10.0,
    rate: float = 10.0,
    cv_lim: float = 100.0,
    weights: tuple[float, ...] = (1.0, 0.5),
) -> PlantSpec:
    """A plant with CVs y0.. and MVs u0.. as a user would write its TOML."""
    parts = ['[plant]\nname = "lin"\nsample_period_s = 1.0\n']
    for i in range(n_cv):
        parts.append(
            f'[[tags]]\nname = "y{i}"\nnode = "ns=2;s=y{i}"\nunit = "m"\nrole = "cv"\n'
            f"lo = {-cv_lim}\nhi = {cv_lim}\nsetpoint = 0.0\nweight = {weights[i]}\n"
        )
    for i in range(n_mv):
        parts.append(
            f'[[tags]]\nname = "u{i}"\nnode = "ns=2;s=u{i}"\nunit = "%"\nrole = "mv"\n'
            f'lo = {mv_lo}\nhi = {mv_hi}\nrate_limit = {rate}\nwrite_node = "ns=2;s=u{i}.SP"\n'
        )
    return parse_spec("\n".join(parts), source="lin.toml")


def simulate(model: LinearModel, u: np.ndarray, x0: np.ndarray) -> np.ndarray:
    """Rows ``[y, u]`` of the model's own trajectory under ``u [T, n_mv]`` (consistent history)."""
    a, b = model.a.numpy(), model.b.numpy()
    xs = [x0]
    for k in range(1, len(u)):
        xs.append(a @ xs[-1] + b @ u[k])
    return np.hstack([np.array(xs), u])


A2 = np.array([[0.8, 0.1], [0.05, 0.7]])
B2 = np.array([[0.5, 0.1], [0.2, 0.4]])


# --- 1. the known optimum ---------------------------------------------------------------------


def batch_ls_optimum(
    a: np.ndarray,
    b: np.ndarray,
    x0: np.ndarray,
    u0: np.ndarray,
    sp: np.ndarray,
    blocks: tuple[int, ...],
    w: np.ndarray,
    mw: float,
    cv_span: np.ndarray,
    mv_span: np.ndarray,
) -> tuple[np.ndarray, float]:
    """Unconstrained finite-horizon MPC by batch least squares: the plan ``[H, n_mv]`` and J."""
    h, n_x, n_u = sum(blocks), a.shape[0], b.shape[1]
    starts = np.concatenate([[0], np.cumsum(blocks)[:-1]])
    m = len(blocks)
    expand = np.zeros((h, m))
    for j, (s, n) in enumerate(zip(starts, blocks, strict=True)):
        expand[s : s + n, j] = 1.0
    # y_k = A^k x0 + sum_{i<k} A^(k-1-i) B u_i,   u = (E kron I) v
    phi = np.vstack([np.linalg.matrix_power(a, k) for k in range(1, h + 1)])
    gamma = np.zeros((h * n_x, h * n_u))
    for k in range(h):
        for i in range(k + 1):
            gamma[k * n_x : (k + 1) * n_x, i * n_u : (i + 1) * n_u] = (
                np.linalg.matrix_power(a, k - i) @ b
            )
    g = gamma @ np.kron(expand, np.eye(n_u))
    free = phi @ x0
    wt = np.tile(np.sqrt(w / h) / cv_span, h)
    diff = np.kron(np.eye(m) - np.eye(m, k=-1), np.eye(n_u))
    wm = np.tile(np.sqrt(mw) / mv_span, m)
    first = np.concatenate([u0, np.zeros((m - 1) * n_u)])
    lhs = np.vstack([wt[:, None] * g, wm[:, None] * diff])
    rhs = np.concatenate([wt * (np.tile(sp, h) - free), wm * first])
    v = np.linalg.lstsq(lhs, rhs, rcond=None)[0]
    cost = float(np.sum((lhs @ v - rhs) ** 2))
    return (expand @ v.reshape(m, n_u)), cost


@pytest.mark.parametrize("mw", [0.05, 1.0])
def test_first_move_and_plan_match_the_batch_least_squares_optimum(mw: float) -> None:
    spec = make_spec()
    model = LinearModel(spec, A2, B2, horizon=10)
    rng = np.random.default_rng(0)
    rows = simulate(model, rng.uniform(-1, 1, (30, 2)), np.array([0.3, -0.2]))
    history = frame(spec, rows)
    blocks = (1, 2, 3, 4)
    sp = np.array([2.0, -1.0])
    ctl = Controller(model, blocks=blocks, move_weight=mw, limit_weight=100.0, target_weight=0.0)
    rec = ctl.recommend(history, {"y0": sp[0], "y1": sp[1]})

    want, cost = batch_ls_optimum(
        A2,
        B2,
        rows[-1, :2],
        rows[-1, 2:],
        sp,
        blocks,
        np.array([1.0, 0.5]),
        mw,
        np.array([200.0, 200.0]),
        np.array([20.0, 20.0]),
    )
    got = np.array([m.plan for m in rec.moves]).T
    assert rec.success, rec.message
    assert np.abs(got - want).max() < 1e-7, (got, want)
    assert [m.recommended for m in rec.moves] == pytest.approx(want[0], abs=1e-7)
    assert rec.objective == pytest.approx(cost, rel=1e-7)
    assert rec.limits_held and rec.iterations == 1
    # the forecast is the model's: the CVs under the plan, the MVs exactly the plan
    assert rec.forecast is not None
    assert rec.forecast.mean[:, 2:] == pytest.approx(want)
    y = rows[-1, :2]
    for k in range(10):
        y = A2 @ y + B2 @ want[k]
        assert rec.forecast.mean[k, :2] == pytest.approx(y, abs=1e-9)


def test_warm_start_on_the_next_sample_keeps_the_optimum() -> None:
    """Applying the first move and asking again gives the new optimum (not the old plan)."""
    spec = make_spec()
    model = LinearModel(spec, A2, B2, horizon=10)
    rows = simulate(model, np.zeros((20, 2)), np.zeros(2))
    ctl = Controller(model, blocks=(1, 2, 3, 4), move_weight=0.1)
    sp = {"y0": 1.0, "y1": 0.5}
    rec = ctl.recommend(frame(spec, rows), sp)
    u = np.array([m.recommended for m in rec.moves])
    nxt = np.hstack([A2 @ rows[-1, :2] + B2 @ u, u])
    rows2 = np.vstack([rows, nxt])
    rec2 = ctl.recommend(frame(spec, rows2), sp)
    fresh = Controller(model, blocks=(1, 2, 3, 4), move_weight=0.1).recommend(
        frame(spec, rows2), sp
    )
    assert np.array([m.plan for m in rec2.moves]) == pytest.approx(
        np.array([m.plan for m in fresh.moves]), abs=1e-7
    )


@pytest.mark.parametrize("seed", range(30))
def test_qp_step_finds_the_constrained_optimum_slsqp_finds(seed: int) -> None:
    """The linearised subproblem with active bounds, rates and soft-limit hinges, against SLSQP."""
    rng = np.random.default_rng(seed)
    h, n_mv, n_cv = int(rng.integers(3, 20)), int(rng.integers(1, 3)), int(rng.integers(1, 3))
    starts = block_starts(h, int(rng.integers(1, 5)))
    m = len(starts)
    u0 = rng.uniform(-1.5, 1.5, n_mv)  # sometimes outside [-1, 1]
    p = Problem(
        starts=starts,
        horizon=h,
        u0=u0,
        lo=-np.ones(n_mv),
        hi=np.ones(n_mv),
        rate=rng.uniform(0.05, 1.0, n_mv),
        mv_span=np.full(n_mv, 2.0),
        move_w=rng.uniform(0.01, 1.0, n_mv),
        sp=rng.normal(0, 3, n_cv),
        track_w=rng.uniform(0, 1, n_cv),
        cv_lo=-2 * np.ones(n_cv),
        cv_hi=2 * np.ones(n_cv),
        cv_scale=np.full(n_cv, 4.0),
        limit_w=float(rng.choice([0.0, 100.0])),
        risk_w=float(rng.choice([0.0, 10.0])),
    )
    x0 = p.feasible(np.repeat(u0[None], m, 0))
    y0, h0 = rng.normal(0, 1, (h, n_cv)), np.abs(rng.normal(0, 0.3, (h, n_cv)))
    jy, jh = rng.normal(size=(h, n_cv, m * n_mv)), rng.normal(0, 0.1, (h, n_cv, m * n_mv))

    def linearised(x: np.ndarray) -> float:
        y, band = y0 + jy @ (x - x0), h0 + jh @ (x - x0)
        return float(p.objective(x[None], y[None], band[None])[0])

    step = qp_step(p, x0, y0, h0, jy, jh)
    moves = p.moves(step.x[None])[0]
    assert np.all(np.abs(moves) <= p.rate + 1e-9)
    assert np.all(step.x >= p.lo_eff.reshape(-1) - 1e-9)
    assert np.all(step.x <= p.hi_eff.reshape(-1) + 1e-9)
    assert step.predicted == pytest.approx(linearised(step.x), rel=1e-9, abs=1e-12)
    diff = np.kron(np.eye(m) - np.eye(m, k=-1), np.eye(n_mv))
    first = np.concatenate([u0, np.zeros((m - 1) * n_mv)])
    rate = np.tile(p.rate, m)
    ref = minimize(
        linearised,
        x0,
        method="SLSQP",
        bounds=list(zip(p.lo_eff.reshape(-1), p.hi_eff.reshape(-1), strict=True)),
        constraints=[
            {
                "type": "ineq",
                "fun": lambda x: np.concatenate([rate - diff @ x + first, rate + diff @ x - first]),
                "jac": lambda x: np.vstack([-diff, diff]),
            }
        ],
        options={"ftol": 1e-14, "maxiter": 500},
    )
    assert step.predicted <= linearised(ref.x) + 1e-9 * (1 + abs(ref.fun)), seed


def test_soft_limits_hold_the_cv_at_its_limit_and_risk_keeps_the_band_inside() -> None:
    """A setpoint beyond a CV's hi: the forecast stops near hi; with the risk term, its band does."""
    spec = make_spec(n_cv=1, n_mv=1, cv_lim=1.0, weights=(1.0,))
    a, b = np.array([[0.5]]), np.array([[0.5]])
    rows = np.zeros((5, 2))

    def settle(**weights: float) -> float:
        ctl = Controller(LinearModel(spec, a, b, horizon=20), control_horizon=3, **weights)
        rec = ctl.recommend(frame(spec, rows), {"y0": 3.0})
        assert rec.success and rec.forecast is not None
        return float(rec.forecast.mean[-1, 0])  # where the plan leaves y0

    free = settle(limit_weight=0.0, move_weight=1e-4)
    soft = settle(limit_weight=1e3, move_weight=1e-4)
    risky = settle(limit_weight=1e3, risk_weight=1e3, move_weight=1e-4)
    assert free == pytest.approx(3.0, abs=0.05)  # no limit term: the setpoint
    assert soft == pytest.approx(1.0, abs=0.02)  # at hi = 1 (a soft limit: a little over)
    assert risky == pytest.approx(0.9, abs=0.02)  # the band (+-0.1) kept under hi


# --- 2. hard limits against any model ---------------------------------------------------------


class Adversary(LinearModel):
    """A linear model whose output is spoiled in one of several ways."""

    KINDS = (
        "exact",
        "random",
        "nan",
        "inf",
        "huge",
        "raise",
        "shape",
        "nan_off_base",
        "nan_band",
        "flat",
    )

    def __init__(self, spec: PlantSpec, kind: str, seed: int) -> None:
        super().__init__(spec, A2, B2, horizon=8)
        self.kind = kind
        self.rng = np.random.default_rng(seed)

    def torch_rollout(
        self, past: torch.Tensor, mv_plan: torch.Tensor, dv_plan: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        mean, half = super().torch_rollout(past, mv_plan, dv_plan)
        kind = self.kind
        if kind == "random":
            mean = torch.as_tensor(self.rng.normal(0, 1e3, mean.shape))
        elif kind in ("nan", "inf", "huge"):
            mean = torch.full_like(mean, {"nan": math.nan, "inf": math.inf, "huge": 1e200}[kind])
        elif kind == "raise":
            raise RuntimeError("model crashed")
        elif kind == "shape":
            mean = mean[..., :1]
        elif kind == "nan_off_base" and mean.dim() == 3:
            mean[1:] = math.nan  # finite for one plan, NaN for the Jacobian's other plans
        elif kind == "nan_band":
            half = torch.full_like(half, math.nan)
        elif kind == "flat":
            mean = torch.zeros_like(mean)  # no gradient at all
        return mean, half


def expected_hold(u: float, lo: float, hi: float, rate: float, h: int) -> np.ndarray:
    """Holding ``u``: itself inside the range, else toward the range at the rate limit."""
    out, prev = [], u
    for _ in range(h):
        nxt = min(max(prev, lo), hi)
        prev = prev + float(np.clip(nxt - prev, -rate, rate))
        out.append(prev)
    return np.array(out)


def check_limits(rec: Recommendation) -> None:
    """Every plan keeps bounds and rates (from outside: closing in at the rate limit)."""
    for m in rec.moves:
        plan = np.array(m.plan)
        full = np.concatenate([[m.current], plan])
        assert np.isfinite(plan).all()
        assert np.all(np.abs(np.diff(full)) <= m.rate_limit + 1e-9), (m.current, plan)
        outside0 = max(m.lo - m.current, m.current - m.hi, 0.0)
        for k, v in enumerate(plan):
            allowed = max(outside0 - (k + 1) * m.rate_limit, 0.0)
            assert max(m.lo - v, v - m.hi, 0.0) <= allowed + 1e-9, (k, v, m)
        inside = bool(np.all((plan >= m.lo - 1e-9) & (plan <= m.hi + 1e-9)))
        assert m.limits_held == inside
        if m.lo <= m.current <= m.hi:
            assert m.limits_held
        assert m.recommended == plan[0]
        assert m.change == pytest.approx(m.recommended - m.current)
    assert rec.limits_held == all(m.limits_held for m in rec.moves)


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,
)
@given(
    kind=st.sampled_from(Adversary.KINDS),
    u=st.tuples(st.floats(-40, 40), st.floats(-40, 40)),
    sp=st.tuples(st.floats(-300, 300), st.floats(-300, 300)),
    rate=st.floats(0.01, 25.0),
    risk=st.sampled_from([0.0, 10.0]),
    cv_lim=st.sampled_from([1.0, 100.0]),
    seed=st.integers(0, 2**16),
)
def test_every_recommendation_keeps_bounds_and_rates_whatever_the_model(
    kind: str,
    u: tuple[float, float],
    sp: tuple[float, float],
    rate: float,
    risk: float,
    cv_lim: float,
    seed: int,
) -> None:
    spec = make_spec(rate=rate, cv_lim=cv_lim)
    model = Adversary(spec, kind, seed)
    rows = np.tile(np.array([0.5, -0.5, *u]), (6, 1))
    ctl = Controller(model, control_horizon=3, risk_weight=risk)
    rec = ctl.recommend(frame(spec, rows), {"y0": sp[0], "y1": sp[1]})
    check_limits(rec)
    if kind in ("exact", "random", "flat"):
        assert rec.success, rec.message
    if not rec.success:
        assert kind not in ("exact", "flat")
        assert rec.message.startswith("failed:")
        assert math.isnan(rec.objective) and rec.forecast is None
        for m in rec.moves:
            assert m.plan == pytest.approx(expected_hold(m.current, m.lo, m.hi, rate, 8))
    else:
        assert math.isfinite(rec.objective) and rec.forecast is not None


def test_mv_outside_its_range_moves_back_at_the_rate_limit_and_says_so() -> None:
    spec = make_spec(rate=0.5)
    model = LinearModel(spec, A2, B2, horizon=8)
    rows = np.tile(np.array([0.0, 0.0, 12.0, 0.0]), (5, 1))
    rec = Controller(model).recommend(frame(spec, rows), {"y0": 100.0, "y1": 0.0})
    u0 = rec.move("u0")
    assert u0.plan[:4] == pytest.approx([11.5, 11.0, 10.5, 10.0])
    assert not u0.limits_held and not rec.limits_held and rec.success
    assert "u0 = 12 is outside [-10, 10]" in rec.message


def test_bad_input_raises_a_twin_error_naming_it() -> None:
    spec = make_spec()
    model = LinearModel(spec, A2, B2)
    ctl = Controller(model)
    history = frame(spec, np.zeros((5, 4)))
    with pytest.raises(TwinError, match="'T'"):
        ctl.recommend(history, {"T": 1.0})
    with pytest.raises(TwinError, match="u0"):
        ctl.recommend(history, {"u0": 1.0})  # an MV is not a CV
    with pytest.raises(TwinError, match="finite"):
        ctl.recommend(history, {"y0": math.nan})
    with pytest.raises(TwinError, match="u1"):
        ctl.recommend(history.drop("u1"))
    with pytest.raises(TwinError, match="empty"):
        ctl.recommend(history.head(0))
    with pytest.raises(TwinError, match="u0"):
        ctl.recommend(history.with_columns(pl.lit(None, dtype=pl.Float64).alias("u0")))
    with pytest.raises(TwinError, match="horizon"):
        Controller(model, horizon=99)
    with pytest.raises(TwinError, match="move_weight"):
        Controller(model, move_weight={"nope": 1.0})


def test_setpoints_are_checked_once_and_the_controller_takes_one_beyond_a_limit() -> None:
    """The command line's check (within the limits) is not repeated; the controller's own
    (a CV, a finite number) lets a setpoint beyond the CV's limits through."""
    spec = make_spec(cv_lim=1.0)
    with pytest.raises(TwinError, match=r"y0=3 m is outside the limits of 'y0' \[-1, 1\]"):
        Setpoints.resolve(spec, {"y0": 3.0})
    beyond = Setpoints.resolve(spec, {"y0": 3.0}, within_limits=False)
    assert dict(beyond) == {"y0": 3.0, "y1": 0.0}  # the spec's setpoint of y1 merged in
    with pytest.raises(TwinError, match="outside the limits"):
        Setpoints.resolve(spec, beyond)  # a check it did not have is not skipped
    checked = Setpoints.resolve(spec, {"y0": 0.5})
    assert Setpoints.resolve(spec, checked) is checked
    assert Setpoints.resolve(spec, checked, within_limits=False) is checked
    rec = Controller(LinearModel(spec, A2, B2)).recommend(frame(spec, np.zeros((5, 4))), checked)
    assert rec.success and rec.setpoints == {"y0": 0.5, "y1": 0.0}


# --- 3. offset-free in closed loop ------------------------------------------------------------


class ParallelModel(LinearModel):
    """The same linear model, its state simulated from the MV history alone (no feedback)."""

    def past_tensor(self, history: pl.DataFrame) -> torch.Tensor:
        u = history.select([t.name for t in self.spec.mvs]).to_numpy()
        x = np.zeros(self.n_cv)
        a, b = self.a.numpy(), self.b.numpy()
        for k in range(1, len(u)):
            x = a @ x + b @ u[k]
        return torch.as_tensor(np.concatenate([x, u[-1]]))


@pytest.mark.parametrize("structure", [LinearModel, ParallelModel])
def test_constant_unmeasured_disturbance_and_gain_error_leave_no_offset(
    structure: type[LinearModel],
) -> None:
    spec = make_spec(rate=0.5, mv_lo=-5.0, mv_hi=5.0, cv_lim=5.0)
    # the plant: stronger gains, other dynamics, and a disturbance the model does not know of
    a_true = np.array([[0.85, 0.1], [0.0, 0.75]])
    b_true = np.array([[0.6, 0.15], [0.3, 0.5]])
    model = structure(spec, A2, B2 * 0.6, horizon=15)
    ctl = Controller(model, control_horizon=4, move_weight=0.05)
    sp = {"y0": 1.5, "y1": -0.8}
    rows = [np.zeros(4)]
    for k in range(90):
        rec = ctl.recommend(frame(spec, np.array(rows)), sp)
        assert rec.success, rec.message
        check_limits(rec)
        assert rec.limits_held
        u = np.array([m.recommended for m in rec.moves])
        d = np.array([0.4, -0.3]) if k >= 30 else np.zeros(2)
        y = a_true @ rows[-1][:2] + b_true @ u + d
        rows.append(np.concatenate([y, u]))
    final = np.array(rows[-1][:2])
    assert final == pytest.approx([1.5, -0.8], abs=1e-4)

    # the same loop without the correction keeps an offset: the test can fail
    ctl = Controller(model, control_horizon=4, move_weight=0.05, offset_free=False)
    rows = [np.zeros(4)]
    for _ in range(60):
        rec = ctl.recommend(frame(spec, np.array(rows)), sp)
        u = np.array([m.recommended for m in rec.moves])
        rows.append(np.concatenate([a_true @ rows[-1][:2] + b_true @ u + [0.4, -0.3], u]))
    assert np.abs(np.array(rows[-1][:2]) - [1.5, -0.8]).max() > 0.05


class FilterModel:
    """``y_i = sum_j x_ij`` with ``x_ij+ = a_ij x_ij + (1 - a_ij) k_ij u_j``: one lag per pair.

    The direct lags are fast, the cross ones slow and twice as strong, so the interaction
    changes sign: the gain matrix's determinant is positive over a short horizon, -3 at steady
    state (like the quadruple tank in its non-minimum-phase configuration). The past is the
    state, simulated from the MV history (a plant started at rest).
    """

    K = np.array([[1.0, 2.0], [2.0, 1.0]])
    A = np.array([[0.7, 0.93], [0.93, 0.7]])

    def __init__(self, spec: PlantSpec, horizon: int) -> None:
        self.spec, self._horizon = spec, horizon

    @property
    def horizon(self) -> int:
        return self._horizon

    def step(self, x: np.ndarray, u: np.ndarray) -> np.ndarray:
        return self.A * x + (1 - self.A) * self.K * u[None, :]

    def past_tensor(self, history: pl.DataFrame) -> torch.Tensor:
        u = history.select(["u0", "u1"]).to_numpy()
        x = np.zeros((2, 2))
        for k in range(1, len(u)):
            x = self.step(x, u[k])
        return torch.as_tensor(np.concatenate([x.reshape(-1), u[-1]]))

    def torch_rollout(
        self, past: torch.Tensor, mv_plan: torch.Tensor, dv_plan: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        plan = mv_plan.to(torch.float64)
        a, k = torch.as_tensor(self.A), torch.as_tensor(self.K)
        x = past[..., :4].to(torch.float64).reshape(*past.shape[:-1], 2, 2)
        if plan.dim() == 3 and x.dim() == 2:
            x = x.expand(plan.shape[0], 2, 2)
        ys = []
        for i in range(plan.shape[-2]):
            x = a * x + (1 - a) * k * plan[..., i, None, :]
            ys.append(x.sum(-1))
        mean = torch.cat([torch.stack(ys, -2), plan], -1)
        return mean, torch.zeros_like(mean)


def test_horizon_shorter_than_settling_on_a_sign_changing_plant_still_reaches_the_setpoints() -> (
    None
):
    """The steady-state target makes the loop offset-free where the horizon alone misleads it."""
    spec = make_spec(rate=0.5, mv_lo=-5.0, mv_hi=5.0, cv_lim=20.0, weights=(1.0, 1.0))
    model = FilterModel(spec, horizon=8)  # the cross lags settle in ~60 samples
    sp = {"y0": 1.0, "y1": 2.0}
    d = np.array([0.3, -0.3])  # unmeasured, from sample 20 on

    def loop(ctl: Controller, n: int) -> np.ndarray:
        rows, x = [np.zeros(4)], np.zeros((2, 2))
        for k in range(n):
            rec = ctl.recommend(frame(spec, np.array(rows)), sp)
            assert rec.success and rec.limits_held, rec.message
            u = np.array([m.recommended for m in rec.moves])
            x = model.step(x, u)
            rows.append(np.concatenate([x.sum(1) + (d if k >= 20 else 0.0), u]))
        return np.array(rows)

    rows = loop(Controller(model, control_horizon=3, move_weight=0.05, target_weight=1.0), 150)
    assert np.abs(rows[-1, :2] - [1.0, 2.0]).max() < 0.02
    # u_ss = K^-1 (sp - d), inside the bounds
    assert rows[-1, 2:] == pytest.approx(np.linalg.solve(FilterModel.K, [0.7, 2.3]), abs=0.02)

    # without the target the horizon's gains drive the MVs the wrong way, to their bounds
    rows = loop(Controller(model, control_horizon=3, move_weight=0.05, target_weight=0.0), 60)
    assert np.abs(rows[-1, :2] - [1.0, 2.0]).max() > 1.0
    assert np.abs(rows[-1, 2:]).max() > 4.0


# --- 4. the shipped CSTR twin -----------------------------------------------------------------


@pytest.fixture(scope="module")
def cstr_twin(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    from twin.model.twin import Twin

    if (CSTR_MODEL / "model.pt").is_file():
        return Twin.load(CSTR_MODEL)
    # no shipped model in this checkout: a tiny one from 2 h of recorded data
    from connectors.sim.plants import make_plant
    from connectors.sim.record import record
    from twin.model.network import TwinConfig
    from twin.store.historian import Historian

    out = tmp_path_factory.mktemp("cstr")
    summary = record(make_plant("cstr", seed=1), 2.0, out, seed=1, progress=False)
    plant_spec = make_plant("cstr").spec
    data = Historian(out).frame(plant_spec, summary.start, summary.end)
    cfg = TwinConfig(window=12, horizon=30, latent=8, hidden=32, ensemble=3, max_epochs=10)
    return Twin.fit(plant_spec, data, cfg, progress=False)


def test_cstr_twin_raising_the_temperature_setpoint_raises_the_coolant(cstr_twin) -> None:  # type: ignore[no-untyped-def]
    from connectors.sim.plants import make_plant

    plant = make_plant("cstr", seed=5)
    spec = cstr_twin.spec
    names = spec.tag_names
    samples = [plant.step() for _ in range(cstr_twin.window + 40)]
    rows = np.array([[s[n] for n in names] for s in samples])
    ts = [START + timedelta(seconds=spec.sample_period * i) for i in range(len(rows))]
    history = pl.DataFrame({"ts": ts, **{n: rows[:, j] for j, n in enumerate(names)}})
    now = Controller(cstr_twin).recommend(history, {"T": 324.5})
    up = Controller(cstr_twin).recommend(history, {"T": 329.0})
    down = Controller(cstr_twin).recommend(history, {"T": 320.0})
    assert now.success and up.success and down.success, (up.message, down.message)
    tc_now, tc_up, tc_down = (r.move("Tc").recommended for r in (now, up, down))
    assert tc_up > tc_now + 0.2 and tc_down < tc_now - 0.2, (tc_down, tc_now, tc_up)
    assert up.move("Tc").plan[-1] > up.move("Tc").current  # the whole plan heads up
    assert up.forecast is not None and up.forecast.tag("T")[0][-1] > now.forecast.tag("T")[0][-1]  # type: ignore[union-attr]

    # closed loop against the simulated plant: solve times (measured, not asserted)
    ctl = Controller(cstr_twin)
    times = []
    for _ in range(50):
        rec = ctl.recommend(history.tail(80), {"T": 327.0})
        times.append(rec.solve_time_s)
        assert rec.success and rec.limits_held, rec.message
        step = plant.step({"Tc": rec.move("Tc").recommended})
        row = {"ts": history["ts"][-1] + timedelta(seconds=spec.sample_period)}
        history = pl.concat([history, pl.DataFrame([{**row, **step}]).select(history.columns)])
    med, p95 = 1e3 * np.median(times), 1e3 * np.percentile(times, 95)
    print(f"CSTR MPC solve time over {len(times)} calls: median {med:.1f} ms, p95 {p95:.1f} ms")


def test_a_gap_early_in_the_recent_history_does_not_fail_the_solve(cstr_twin) -> None:  # type: ignore[no-untyped-def]
    """A short outage (e.g. a collector restart) a horizon back: fewer offset nodes, no failure."""
    from connectors.sim.plants import make_plant

    plant = make_plant("cstr", seed=6)
    spec = cstr_twin.spec
    names = spec.tag_names
    samples = [plant.step() for _ in range(cstr_twin.window + 60)]
    rows = np.array([[s[n] for n in names] for s in samples])
    gap_at = len(rows) - cstr_twin.horizon + 2  # inside the last horizon of samples
    rows[gap_at : gap_at + 2] = np.nan  # two samples missing: short enough to carry forward
    ts = [START + timedelta(seconds=spec.sample_period * i) for i in range(len(rows))]
    history = pl.DataFrame({"ts": ts, **{n: rows[:, j] for j, n in enumerate(names)}})
    ctl = Controller(cstr_twin)
    for _ in range(cstr_twin.horizon):  # the gap moves back through the offset nodes
        rec = ctl.recommend(history, {"T": 326.0})
        assert rec.success and rec.limits_held, rec.message
        step = plant.step({"Tc": rec.move("Tc").recommended})
        row = {"ts": history["ts"][-1] + timedelta(seconds=spec.sample_period), **step}
        history = pl.concat([history, pl.DataFrame([row]).select(history.columns)])
