"""A DV that is a clock (a batch timer) is counted on in every forecast, not held.

A batch plant restarts every ``PERIOD`` samples: its CV ``y`` climbs with the batch clock ``c``
(1, 2, ..., PERIOD, then 1 again) and answers the MV. A forecaster that holds ``c`` at its last
value cannot see the next batch start coming; one that knows ``c`` is a clock can. The spec
says so with ``clock_step`` (and ``clock_reset``), and the baselines, the twin and the
controller's offset correction all count it on.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from twin.control.offset import OffsetCorrection
from twin.errors import SpecError
from twin.evaluate.linear import ARX
from twin.evaluate.report import forecast_cases, nrmse
from twin.model.dataset import clock_columns, dv_future, split_with_context
from twin.model.network import TwinConfig
from twin.model.twin import Twin
from twin.spec import PlantSpec, parse_spec

PERIOD = 12  # samples per batch
WINDOW, HORIZON = 6, 8
T0 = datetime(2026, 1, 1, tzinfo=UTC)

SPEC = """
[plant]
name = "batch"
sample_period_s = 60.0

[[tags]]
name = "y"
unit = "g/L"
role = "cv"
lo = -5.0
hi = 30.0

[[tags]]
name = "u"
unit = "L/h"
role = "mv"
lo = 0.0
hi = 4.0
rate_limit = 4.0

[[tags]]
name = "c"
unit = "min"
role = "dv"
lo = 0.0
hi = 12.0
{clock}
"""
CLOCK = "clock_step = 1.0\nclock_reset = 12.0"


def spec(clock: str = CLOCK) -> PlantSpec:
    return parse_spec(SPEC.format(clock=clock), source="batch.toml")


def batch_frame(n: int, seed: int) -> pl.DataFrame:
    """``y = 1.5 c + 2 u_filtered + noise``: the batch's trajectory, restarted every PERIOD."""
    rng = np.random.default_rng(seed)
    c = (np.arange(n) % PERIOD + 1).astype(float)
    u = np.repeat(rng.uniform(0.0, 4.0, n // 4 + 1), 4)[:n]
    f = np.zeros(n)
    for k in range(1, n):
        f[k] = 0.6 * f[k - 1] + 0.4 * u[k]
    y = 1.5 * c + 2.0 * f + 0.05 * rng.standard_normal(n)
    ts = [T0 + timedelta(minutes=k) for k in range(n)]
    return pl.DataFrame({"ts": ts, "y": y, "u": u, "c": c}).with_columns(
        pl.col("ts").cast(pl.Datetime("us", "UTC"))
    )


# --- the spec -------------------------------------------------------------------------------


def test_a_clock_dv_is_read_and_written_back() -> None:
    s = spec()
    (c,) = s.dvs
    assert (c.clock_step, c.clock_reset) == (1.0, 12.0)
    assert clock_columns(s) == [2]
    assert s.to_dict()["tags"][2]["clock_reset"] == 12.0
    assert clock_columns(spec("")) == []


@pytest.mark.parametrize(
    ("clock", "field", "says"),
    [
        ("clock_step = 0.0", "clock_step", "must be > 0"),
        ("clock_reset = 12.0", "clock_reset", "needs clock_step"),
        ("clock_step = 1.0\nclock_reset = -1.0", "clock_reset", "must be above it"),
    ],
)
def test_a_bad_clock_is_refused_naming_tag_and_field(clock: str, field: str, says: str) -> None:
    with pytest.raises(SpecError) as err:
        spec(clock)
    assert err.value.tag == "c" and err.value.field == field and says in str(err.value)


def test_only_a_dv_may_be_a_clock() -> None:
    text = SPEC.format(clock="").replace('role = "cv"', 'role = "cv"\nclock_step = 1.0')
    with pytest.raises(SpecError, match="clock_step"):
        parse_spec(text, source="batch.toml")


def test_dv_future_counts_a_clock_on_through_its_reset_and_holds_the_rest() -> None:
    two = parse_spec(
        SPEC.format(clock=CLOCK) + '\n[[tags]]\nname = "T"\nrole = "dv"\nlo = 0.0\nhi = 9.0\n',
        source="batch.toml",
    )
    ahead = dv_future(two, np.array([[10.0, 4.0], [12.0, 5.0]]), 4)
    assert ahead[0, :, 0].tolist() == [11.0, 12.0, 1.0, 2.0]
    assert ahead[1, :, 0].tolist() == [1.0, 2.0, 3.0, 4.0]
    assert ahead[..., 1].tolist() == [[4.0] * 4, [5.0] * 4]
    hair = dv_future(two, np.array([[10.99999, 4.0], [11.00001, 4.0], [12.00001, 4.0]]), 2)
    assert np.allclose(hair[..., 0], [[12, 1], [12, 1], [1, 2]], atol=1e-4)  # float32 noise
    runs_on = parse_spec(SPEC.format(clock="clock_step = 0.5"), source="batch.toml")
    assert dv_future(runs_on, np.array([11.0]), 3)[:, 0].tolist() == [11.5, 12.0, 12.5]


# --- forecasts --------------------------------------------------------------------------------


def test_a_baseline_that_counts_the_clock_on_sees_the_batch_restart() -> None:
    """ARX on the same history, with and without the clock declared: across a restart the
    held clock says the batch goes on climbing, the counted one that it starts again."""
    frame, test = batch_frame(1500, seed=0), batch_frame(300, seed=1)
    err = {}
    for name, s in (("clock", spec()), ("held", spec(""))):
        fit, val = split_with_context(frame, (0.8, 0.2), WINDOW)
        arx = ARX().fit(s, fit, val, horizon=HORIZON, window=WINDOW)
        past, future, _ = forecast_cases(test, s, WINDOW, HORIZON)
        pred = arx.predict(past, future[..., [1]])
        err[name] = nrmse(pred[..., [0]], future[..., [0]], np.array([test["y"].std()]))[-1, 0]
    assert err["clock"] < 0.1, err  # the batch's trajectory is known, noise and MV aside
    assert err["held"] > 3 * err["clock"], err


def test_the_twin_forecasts_the_next_batch_start() -> None:
    cfg = TwinConfig(
        window=WINDOW,
        horizon=HORIZON,
        latent=4,
        hidden=16,
        ensemble=2,
        batch=64,
        minutes=5.0,  # the epoch count ends training
        max_epochs=8,
        seed=0,
    )
    twin = Twin.fit(spec(), batch_frame(1500, seed=0), cfg, progress=False)
    history = batch_frame(PERIOD - 2 + PERIOD, seed=3)  # ends at c = 10: two minutes to go
    assert history["c"][-1] == 10.0
    fc = twin.forecast(history, np.full(HORIZON, 2.0))
    assert fc.tag("c")[0] == pytest.approx([11, 12, 1, 2, 3, 4, 5, 6], abs=1e-4)
    y = fc.tag("y")[0]
    steady = 2.0 * 2.0  # the filtered MV at rest
    truth = 1.5 * np.array([11, 12, 1, 2, 3, 4, 5, 6]) + steady
    assert y[2] < y[1] - 10.0, y  # the restart: 1.5 * 11 down in one sample
    assert np.abs(y - truth).max() < 1.5, (y, truth)


def test_the_offset_correction_counts_the_clock_on_after_now() -> None:
    """The step-back members' DVs: recorded up to now, then as the forecast assumes them."""
    import torch

    frame = batch_frame(40, seed=4)
    values = frame.select("y", "u", "c").to_numpy()
    ts = np.arange(len(values)).astype("datetime64[m]")
    corr = OffsetCorrection(HORIZON, 3, ([0], [1], [2]))
    ahead = dv_future(spec(), values[-1, [2]], HORIZON)
    past = torch.zeros(WINDOW, 3)
    members = corr.members(lambda h: past, frame, values, ts, past, ahead)
    assert members is not None and members.dvs is not None
    assert members.dvs[0, :, 0].tolist() == ahead[:, 0].tolist()  # now: all of it ahead
    k = int(corr.steps[0])  # a member k samples back: k recorded clock values, then ahead
    assert members.dvs[1, :k, 0].tolist() == values[len(values) - k :, 2].tolist()
    assert members.dvs[1, k:, 0].tolist() == ahead[: HORIZON - k, 0].tolist()
