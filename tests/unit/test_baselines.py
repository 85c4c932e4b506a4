"""Baselines recover known systems and forecast as well as their class allows."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import polars as pl
import pytest

from twin.evaluate.baseline import Baseline, Persistence, try_fit
from twin.evaluate.gru import DirectGRU
from twin.evaluate.linear import ARX, IntegratedARX, Subspace
from twin.model.dataset import cv_columns, frame_to_array, mv_columns, split_by_time
from twin.spec import PlantSpec, parse_spec


def _spec(cvs: list[str], mvs: list[str], dvs: list[str] = ()) -> PlantSpec:  # type: ignore[assignment]
    """A spec with these tags (wide limits), as a user would write it."""
    parts = ['[plant]\nname = "toy"\nsample_period_s = 1.0\n']
    for role, names in (("cv", cvs), ("mv", mvs), ("dv", dvs)):
        for name in names:
            extra = {"cv": "setpoint = 0.0\nweight = 1.0", "mv": "rate_limit = 10.0\n"}.get(
                role, ""
            )
            if role == "mv":
                extra += f'write_node = "ns=2;s={name}.SP"'
            parts.append(
                f'[[tags]]\nname = "{name}"\nnode = "ns=2;s={name}"\nunit = "-"\n'
                f'role = "{role}"\nlo = -100.0\nhi = 100.0\n{extra}\n'
            )
    return parse_spec("\n".join(parts))


def _frame(columns: dict[str, np.ndarray]) -> pl.DataFrame:
    n = len(next(iter(columns.values())))
    start_us = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp() * 1e6)
    ts = pl.Series("ts", start_us + np.arange(n) * 1_000_000).cast(pl.Datetime("us", "UTC"))
    return pl.DataFrame({"ts": ts, **columns})


def _steps(n: int, rng: np.random.Generator, hold: tuple[int, int] = (3, 30)) -> np.ndarray:
    """A random staircase input (levels held for a random time), like plant excitation."""
    out, level, left = np.empty(n), 0.0, 0
    for t in range(n):
        if left == 0:
            level, left = rng.uniform(-1, 1), int(rng.integers(*hold))
        out[t], left = level, left - 1
    return out


def _rmse(
    model: Baseline, spec: PlantSpec, frame: pl.DataFrame, window: int, horizon: int
) -> float:
    """RMSE of the CV forecasts over every window of ``frame``, given the true MV moves."""
    values, _ = frame_to_array(frame, spec)
    cv, mv = cv_columns(spec), mv_columns(spec)
    starts = np.arange(0, len(values) - window - horizon, 3)
    past = np.stack([values[s : s + window] for s in starts])
    future = np.stack([values[s + window : s + window + horizon] for s in starts])
    pred = model.predict(past, future[..., mv])
    return float(np.sqrt(np.mean((pred[..., cv] - future[..., cv]) ** 2)))


def _arx_data(n: int, seed: int) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    u = 2.0 + _steps(n, rng)
    y = np.zeros(n)
    for t in range(2, n):
        y[t] = 0.8 * y[t - 1] - 0.15 * y[t - 2] + 0.5 * u[t] + 0.3 * u[t - 1] + 0.1
        y[t] += 0.01 * rng.standard_normal()
    return _frame({"level": y, "pump": u})


def test_arx_recovers_the_coefficients_of_a_known_arx_system() -> None:
    spec = _spec(["level"], ["pump"])
    train, val = split_by_time(_arx_data(3000, seed=1), (0.8, 0.2))
    arx = ARX(na=(2,), nb=(2,)).fit(spec, train, val, horizon=10, window=8)
    theta = arx.theta_[:, 0]  # [a1, a2, b0, b1, c] in normalised units
    s_y, s_u = arx.norm_.scale[0], arx.norm_.scale[1]
    assert theta[:2] == pytest.approx([0.8, -0.15], abs=0.02)
    assert theta[2:4] * s_y / s_u == pytest.approx([0.5, 0.3], abs=0.02)


def test_arx_chooses_orders_on_validation_and_forecasts_under_a_plan() -> None:
    spec = _spec(["level"], ["pump"])
    train, val = split_by_time(_arx_data(3000, seed=2), (0.8, 0.2))
    arx = ARX().fit(spec, train, val, horizon=20, window=24)
    na, nb = arx.orders_
    assert na >= 2 and nb >= 2  # the true orders (2, 2) or richer, never too poor
    # open-loop forecast from a fresh history under a known plan matches the noise-free system
    test = _arx_data(400, seed=3)
    values, _ = frame_to_array(test, spec)
    plan = np.full((1, 20, 1), 2.5)
    pred = arx.predict(values[None, -24:], plan)
    y, u = list(values[-2:, 0]), [values[-1, 1], *plan[0, :, 0]]
    for k in range(20):
        y.append(0.8 * y[-1] - 0.15 * y[-2] + 0.5 * u[k + 1] + 0.3 * u[k] + 0.1)
    assert pred[0, :, 0] == pytest.approx(y[2:], abs=0.05)
    assert np.all(pred[0, :, 1] == 2.5)  # the MV column is the plan


def _two_state(n: int, seed: int, noise: float = 0.005) -> tuple[pl.DataFrame, np.ndarray]:
    a = np.array([[0.9, 0.2], [0.0, 0.7]])
    b = np.array([[0.0, 1.0], [1.0, 0.5]])  # inputs: MV, DV
    c = np.array([[1.0, 0.0], [0.3, 1.0]])
    rng = np.random.default_rng(seed)
    u = np.stack([_steps(n, rng), 0.5 * _steps(n, rng, (20, 80))], axis=1)
    x, y = np.zeros(2), np.zeros((n, 2))
    for t in range(n):
        x = a @ x + b @ u[t]
        y[t] = c @ x + noise * rng.standard_normal(2)
    gain = c @ np.linalg.solve(np.eye(2) - a, b)
    frame = _frame({"y1": 5.0 + y[:, 0], "y2": y[:, 1], "valve": u[:, 0], "feed": 10.0 + u[:, 1]})
    return frame, gain


def _offset_plant(n: int, seed: int, offset: float = 0.0) -> pl.DataFrame:
    """A second-order plant; ``offset``: an unmeasured disturbance (a fouling, a feed quality)
    has moved its output to a level the training data never had."""
    rng = np.random.default_rng(seed)
    u = _steps(n, rng)
    x = np.zeros(n)
    for t in range(2, n):
        x[t] = 1.2 * x[t - 1] - 0.35 * x[t - 2] + 0.3 * u[t - 1]
    return _frame({"level": offset + x + 0.005 * rng.standard_normal(n), "pump": u})


def test_integrated_arx_is_an_arx_in_levels_and_carries_an_unmeasured_offset() -> None:
    """ARX on increments forecasts as the ARX in levels it converts to (orders one higher, no
    constant), and on a stretch where an unmeasured disturbance moved the output to a level the
    training never saw it forecasts from the measurement: at steps 1 and 10 it beats an ARX in
    levels, which pulls back towards the training data's level, and persistence, which ignores
    the moves."""
    spec = _spec(["level"], ["pump"])
    train, val = split_by_time(_offset_plant(4000, seed=1), (0.8, 0.2))
    iarx = IntegratedARX(na=(2,), nb=(3,)).fit(spec, train, val, horizon=10, window=8)
    assert iarx.describe() == "iarx(na=2, nb=3)" and iarx.orders_ == (3, 4)
    theta = iarx.theta_[:, 0]  # [y lags 1..3, u lags 0..3, constant] in levels
    assert theta[-1] == 0.0 and theta[:3].sum() == pytest.approx(1.0)  # an integrator
    assert theta[3:7].sum() == pytest.approx(0.0, abs=1e-12)  # inputs act through increments
    # the forecast is the recursion on increments: y(t) = y(t-1) + sum A dy + sum B du
    z = iarx.norm_.norm(frame_to_array(val, spec)[0])
    raw = np.linalg.lstsq(*iarx._design(iarx.norm_.norm(frame_to_array(train, spec)[0]), 2, 3))[0]
    past, fut = z[None, :8], z[None, 8:18]
    series = list(past[0, :, 0])
    for k in range(10):
        t, dy = 8 + k, np.diff(series)
        du = np.diff(np.concatenate([past[0, :, 1], fut[0, :, 1]]))
        step = (
            raw[0, 0] * dy[-1]
            + raw[1, 0] * dy[-2]
            + sum(raw[2 + b, 0] * du[t - 1 - b] for b in range(3))
        )
        series.append(series[-1] + step)
    np.testing.assert_allclose(iarx._predict_z(past, fut)[0, :, 0], series[8:], atol=1e-6)

    test = _offset_plant(1500, seed=2, offset=3.0)
    arx = ARX().fit(spec, train, val, horizon=10, window=8)
    pers = Persistence().fit(spec, train, val, horizon=10, window=8)
    for steps in (1, 10):
        err = {m.name: _rmse(m, spec, test, 8, steps) for m in (arx, iarx, pers)}
        assert err["iarx"] < 0.5 * min(err["arx"], err["persistence"]), (steps, err)


def test_subspace_recovers_poles_and_steady_state_gain() -> None:
    spec = _spec(["y1", "y2"], ["valve"], ["feed"])
    frame, gain = _two_state(4000, seed=4)
    train, val = split_by_time(frame, (0.8, 0.2))
    sub = Subspace(block_rows=(10,), max_order=2).fit(spec, train, val, horizon=20, window=20)
    a, b, _, _, c, d, _ = sub.model_
    poles = np.sort(np.abs(np.linalg.eigvals(a)))
    assert poles == pytest.approx([0.7, 0.9], abs=0.02)
    scale = sub.norm_.scale
    gain_z = c @ np.linalg.solve(np.eye(2) - a, b) + d  # normalised units
    gain_eng = gain_z * scale[:2, None] / scale[None, 2:]
    np.testing.assert_allclose(gain_eng, gain, rtol=0.05, atol=0.05)
    # with the order left to validation it forecasts fresh data far better than persistence
    free = Subspace(block_rows=(10,)).fit(spec, train, val, horizon=20, window=20)
    pers = Persistence().fit(spec, train, val, horizon=20, window=20)
    test, _ = _two_state(1000, seed=6)
    errors = {m.name: _rmse(m, spec, test, window=20, horizon=20) for m in (free, pers)}
    assert errors["subspace"] < 0.5 * errors["persistence"], errors


def test_persistence_is_exact_on_a_constant_signal() -> None:
    spec = _spec(["T"], ["Q"], ["F"])
    n = 200
    frame = _frame({"T": np.full(n, 321.5), "Q": np.full(n, 3.0), "F": np.full(n, 7.0)})
    train, val = split_by_time(frame, (0.5, 0.5))
    model = Persistence().fit(spec, train, val, horizon=5, window=4)
    values, _ = frame_to_array(frame, spec)
    plan = np.linspace(3.0, 4.0, 5)[None, :, None]
    pred = model.predict(values[None, :4], plan)
    assert pred.shape == (1, 5, 3)
    np.testing.assert_array_equal(pred[0, :, 0], 321.5)
    np.testing.assert_allclose(pred[0, :, 1], plan[0, :, 0])
    np.testing.assert_array_equal(pred[0, :, 2], 7.0)  # DVs held at their last value


def test_gru_trains_and_beats_persistence_on_a_simple_system() -> None:
    spec = _spec(["y1", "y2"], ["valve"], ["feed"])
    frame, _ = _two_state(2000, seed=5, noise=0.02)
    train, val, test = split_by_time(frame, (0.6, 0.15, 0.25))
    kw = {"horizon": 10, "window": 12}
    gru = DirectGRU(n_params=5000, minutes=1.0, max_epochs=15, seed=0)
    gru.fit(spec, train, val, **kw)
    pers = Persistence().fit(spec, train, val, **kw)
    assert 3000 < gru.params_ < 7000
    errors = {m.name: _rmse(m, spec, test, **kw) for m in (gru, pers)}
    assert errors["gru"] < 0.5 * errors["persistence"], errors


def _many_inputs(n: int, seed: int, n_dv: int = 14) -> tuple[PlantSpec, pl.DataFrame]:
    """One level driven by two MVs, with ``n_dv`` measured but irrelevant noisy DVs (a wide plant)."""
    rng = np.random.default_rng(seed)
    pump, valve = _steps(n, rng, (3, 10)), _steps(n, rng, (3, 10))
    y = np.zeros(n)
    for t in range(1, n):
        y[t] = 0.8 * y[t - 1] + 0.5 * pump[t] - 0.3 * valve[t - 1] + 0.01 * rng.standard_normal()
    dvs = {f"d{j}": rng.standard_normal(n) for j in range(n_dv)}
    return _spec(["level"], ["pump", "valve"], list(dvs)), _frame(
        {"level": y, "pump": pump, "valve": valve, **dvs}
    )


def test_linear_baselines_get_by_with_many_inputs_and_few_rows() -> None:
    # 16 inputs, 320 training rows: ARX cannot afford nb >= 8 (>= 130 terms at 3 rows per term),
    # subspace cannot afford 10 block rows (990 stretches); both fit smaller models and say so
    spec, frame = _many_inputs(400, seed=7)
    train, val = split_by_time(frame, (0.8, 0.2))
    kw = {"horizon": 20, "window": 24}
    arx = ARX().fit(spec, train, val, **kw)
    sub = Subspace().fit(spec, train, val, **kw)
    pers = Persistence().fit(spec, train, val, **kw)
    assert arx.orders_[1] <= 4 and any("nb in [1, 2, 4]" in n for n in arx.notes_)
    assert sub.orders_[0] < 10 and any("block rows reduced" in n for n in sub.notes_)
    _, test = _many_inputs(600, seed=8)
    errors = {m.name: _rmse(m, spec, test, **kw) for m in (arx, sub, pers)}
    assert errors["arx"] < 0.5 * errors["persistence"], errors
    assert errors["subspace"] < 0.5 * errors["persistence"], errors

    # 50 training rows: not even (na, nb) = (1, 1) has 3 rows per term: ARX regularises
    short_train, short_val = frame.slice(0, 50), frame.slice(50, 40)
    short = {"horizon": 5, "window": 6}
    ridge = ARX().fit(spec, short_train, short_val, **short)
    pers = Persistence().fit(spec, short_train, short_val, **short)
    assert "ridge" in ridge.describe() and ridge.orders_ == (1, 1)
    assert _rmse(ridge, spec, test, **short) < 0.8 * _rmse(pers, spec, test, **short)


def test_try_fit_says_why_a_baseline_cannot_be_fitted() -> None:
    spec, frame = _many_inputs(15, seed=9)
    kw = {"horizon": 3, "window": 4}
    reasons = {b.name: try_fit(b, spec, frame, frame, **kw) for b in (ARX(), Subspace())}
    # 14 complete rows cannot fit 18 terms (1 CV lag, 16 inputs, a constant), ridge or not
    assert reasons["arx"] is not None and "14 complete rows for 18 terms" in reasons["arx"]
    assert reasons["subspace"] is not None and "too few to identify" in reasons["subspace"]
    assert try_fit(Persistence(), spec, frame.clear(), frame.clear(), **kw) is None
