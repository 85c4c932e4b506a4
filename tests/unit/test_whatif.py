"""What-if on the shipped CSTR twin: setpoint scenarios move the CVs toward the new setpoint,
MV schedules run open loop, and every scenario comes back side by side with its band."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from control_helpers import MODEL, steady_history

from twin.control.whatif import HOLD, Scenario, WhatIf, setpoint_path, whatif
from twin.errors import TwinError
from twin.model.twin import Twin
from twin.spec import PlantSpec

STEPS = 12  # closed loop: one controller solve per step and scenario


@pytest.fixture(scope="module")
def twin() -> Twin:
    return Twin.load(MODEL)


@pytest.fixture(scope="module")
def history() -> pl.DataFrame:
    return steady_history()


@pytest.fixture(scope="module")
def hotter(twin: Twin, history: pl.DataFrame) -> WhatIf:
    """Hold against T raised 4 K, closed loop."""
    return whatif(
        twin, twin.spec, history, [HOLD, Scenario("hotter", (("T", 328.5, 0.0),))], steps=STEPS
    )


def test_raising_the_setpoint_moves_predicted_t_toward_it(hotter: WhatIf) -> None:
    hold_t, _, _ = hotter.forecast("hold").tag("T")
    hot_t, lower, upper = hotter.forecast("hotter").tag("T")
    assert hot_t[-1] > hold_t[-1] + 0.5, (hold_t, hot_t)
    assert abs(hot_t[-1] - 328.5) < abs(hold_t[-1] - 328.5)
    assert (lower <= hot_t).all() and (hot_t <= upper).all() and (upper - lower).min() > 0
    # the controller did it by warming the coolant, within every limit of the spec
    hold_tc, _, _ = hotter.forecast("hold").tag("Tc")
    hot_tc, _, _ = hotter.forecast("hotter").tag("Tc")
    assert hot_tc[-1] > hold_tc[-1]


def test_closed_loop_moves_hold_the_mv_limits(
    twin: Twin, history: pl.DataFrame, hotter: WhatIf
) -> None:
    tc = twin.spec.tag("Tc")
    current = history.get_column("Tc").drop_nulls()[-1]
    for fc in hotter.forecasts:
        plan, _, _ = fc.tag("Tc")
        assert ((plan >= tc.lo) & (plan <= tc.hi)).all()
        moves = np.diff(np.concatenate([[current], plan]))
        assert np.abs(moves).max() <= tc.rate_limit + 1e-6, moves


def test_scenarios_come_back_side_by_side(twin: Twin, hotter: WhatIf) -> None:
    frame = hotter.to_frame()
    assert frame.columns[:2] == ["scenario", "step"]
    assert {"ts", "tag", "mean", "lower", "upper", "setpoint"} <= set(frame.columns)
    per = frame.group_by("scenario").len().sort("scenario")
    assert per.rows() == [
        ("hold", STEPS * len(twin.spec.tags)),
        ("hotter", STEPS * len(twin.spec.tags)),
    ]
    t = frame.filter(pl.col("tag") == "T")
    assert t.filter(pl.col("scenario") == "hold").get_column("setpoint").unique().to_list() == [
        324.5
    ]
    assert t.filter(pl.col("scenario") == "hotter").get_column("setpoint").unique().to_list() == [
        328.5
    ]
    assert frame.filter(pl.col("tag") == "Tc").get_column("setpoint").null_count() == 2 * STEPS
    wide = hotter.compare("T")
    assert wide.columns == [
        "step", "ts",
        "hold", "hold.lower", "hold.upper", "hold.setpoint",
        "hotter", "hotter.lower", "hotter.upper", "hotter.setpoint",
    ]  # fmt: skip
    assert wide.height == STEPS


def test_open_loop_schedule_runs_the_given_mv_values(twin: Twin, history: pl.DataFrame) -> None:
    schedule = (299.5, 299.0, 298.5, 298.0)
    result = whatif(
        twin,
        twin.spec,
        history,
        [Scenario("as is", mv_schedule={}), Scenario("cooler", mv_schedule={"Tc": schedule})],
    )
    assert result.forecasts[0].horizon == twin.horizon  # steps default to the horizon
    tc, lower, upper = result.forecast("cooler").tag("Tc")
    np.testing.assert_array_equal(tc[:4], schedule)
    assert (tc[4:] == 298.0).all() and (lower == tc).all() and (upper == tc).all()
    as_is, _, _ = result.forecast("as is").tag("Tc")
    assert np.ptp(as_is) == 0  # unscheduled MVs hold their last value
    cool_t, _, _ = result.forecast("cooler").tag("T")
    warm_t, _, _ = result.forecast("as is").tag("T")
    assert cool_t[-1] < warm_t[-1] - 1.0  # 2 K colder coolant cools the reactor by more than 1 K


def test_later_setpoint_change_holds_from_its_time_on(twin: Twin) -> None:
    spec: PlantSpec = twin.spec  # sample period 6 s: 1 minute = 10 steps
    path = setpoint_path(spec, Scenario("later", (("T", 330.0, 1.0), ("Ca", 0.85, 0.0))), 15)
    assert (path["T"][:10] == 324.5).all() and (path["T"][10:] == 330.0).all()
    assert (path["Ca"] == 0.85).all()


def test_more_steps_than_the_horizon_are_refused(twin: Twin, history: pl.DataFrame) -> None:
    with pytest.raises(TwinError, match=r"1 to 30 steps .*horizon.*got 31"):
        whatif(twin, twin.spec, history, [HOLD], steps=twin.horizon + 1)


@pytest.mark.parametrize(
    ("scenarios", "message"),
    [
        ([Scenario("a", (("X", 1.0, 0.0),))], r"no tag 'X'"),
        ([Scenario("a", (("Tc", 299.0, 0.0),))], r"'Tc' is an MV, not a CV"),
        ([Scenario("a", (("T", 400.0, 0.0),))], r"T=400 K is outside the limits .*\[300, 345\]"),
        ([Scenario("a", (("T", 330.0, -1.0),))], r"time must be >= 0"),
        ([Scenario("a", mv_schedule={"T": (1.0,)})], r"'T', which is not an MV"),
        ([Scenario("a", mv_schedule={"Tc": (299.0, 310.0)})], r"Tc = 310 K at step 2 is outside"),
        ([Scenario("a", (("T", 330.0, 0.0),), {"Tc": (299.0,)})], r"not both"),
        ([HOLD, HOLD], r"names must differ"),
        ([], r"at least one scenario"),
    ],
)
def test_bad_scenarios_are_refused_by_name(
    twin: Twin, history: pl.DataFrame, scenarios: list[Scenario], message: str
) -> None:
    with pytest.raises(TwinError, match=message):
        whatif(twin, twin.spec, history, scenarios, steps=3)
