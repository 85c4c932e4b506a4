"""What-if on the shipped CSTR twin: setpoint scenarios move the CVs toward the new setpoint,
MV schedules run open loop, price / limit / priority scenarios move the controller's optimum,
"hold" holds the setpoints in force, and every scenario comes back side by side with its band."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from control_helpers import MODEL, steady_history, steady_rows

from twin.cli import main
from twin.cli.whatif import parse_limits, parse_priority
from twin.control.controller import Controller
from twin.control.recommendation_log import RecommendationLog
from twin.control.whatif import (
    HOLD,
    Scenario,
    WhatIf,
    scenario_controller,
    scenario_spec,
    setpoint_path,
    whatif,
)
from twin.errors import TwinError
from twin.model.twin import Twin
from twin.spec import PlantSpec, spec_to_toml
from twin.store.historian import Historian

STEPS = 12  # closed loop: one controller solve per step and scenario


@pytest.fixture(scope="module")
def twin() -> Twin:
    return Twin.load(MODEL)


@pytest.fixture(scope="module")
def history() -> pl.DataFrame:
    return steady_history()


@pytest.fixture(scope="module")
def zones(twin: Twin) -> PlantSpec:
    """The twin's spec as an APC engineer states it: T held within 315..335 K, no setpoints."""
    tags = []
    for t in twin.spec.tags:
        if t.name == "T":
            t = dataclasses.replace(t, setpoint=None, op_lo=315.0, op_hi=335.0)
        elif t.name == "Ca":
            t = dataclasses.replace(t, setpoint=None)
        tags.append(t)
    return dataclasses.replace(twin.spec, tags=tuple(tags))


@pytest.fixture(scope="module")
def priced(twin: Twin, zones: PlantSpec, history: pl.DataFrame) -> WhatIf:
    """Hold against a costly coolant temperature, and a valuable one under a tighter T limit."""
    scenarios = [
        HOLD,
        Scenario("dear coolant", prices=(("Tc", 1.0),)),
        Scenario("tight", prices=(("Tc", -1.0),), limits=(("T", None, 322.0),)),
    ]
    return whatif(twin, zones, history, scenarios, steps=STEPS)


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


def test_an_expensive_mv_goes_down_to_where_a_limit_binds(priced: WhatIf) -> None:
    dear = priced.subset(["dear coolant"])
    tg = dear.targets[0]
    # every kelvin of coolant costs: its target falls until T reaches its operating low limit
    assert tg["Tc"] < priced.targets[0]["Tc"] - 2.0, (tg, priced.targets[0])
    assert tg["T"] == pytest.approx(315.0, abs=0.05)
    assert [(c.tag, c.kind, c.state) for c in dear.constraints[0]] == [("T", "op_lo", "binding")]
    # the cost rate at the new optimum is lower than now, by what the coolant saves
    before, after = dear.cost_before[0], dear.cost_after[0]
    assert before == pytest.approx(steady_history().get_column("Tc")[-1])  # 1/K x Tc now
    assert after <= before - 2.0 and after == pytest.approx(tg["Tc"])
    # and the path there heads the same way, within the MV's limits
    tc, _, _ = priced.forecast("dear coolant").tag("Tc")
    hold_tc, _, _ = priced.forecast("hold").tag("Tc")
    assert tc[-1] < hold_tc[-1] - 1.0 and tc.min() >= 285.0


def test_a_tightened_operating_limit_holds_the_cv_target_below_it(priced: WhatIf) -> None:
    tg = priced.targets[2]
    assert tg["T"] <= 322.0 + 1e-6 and tg["T"] == pytest.approx(322.0, abs=0.05)
    assert ("T", "op_hi", 322.0, "binding") in [
        (c.tag, c.kind, c.limit, c.state) for c in priced.constraints[2]
    ]
    t, _, _ = priced.forecast("tight").tag("T")
    hold_t, _, _ = priced.forecast("hold").tag("T")
    assert t[-1] < hold_t[-1]  # the reactor is cooled toward the new limit
    assert math.isnan(priced.cost_before[0])  # hold: the spec has no prices


def test_summary_and_json_carry_the_new_optimum(priced: WhatIf, zones: PlantSpec) -> None:
    summary = priced.summary()
    assert summary.columns == ["scenario", "cost_before", "cost_after", "T", "Ca", "Tc"]
    assert summary.get_column("scenario").to_list() == ["hold", "dear coolant", "tight"]
    assert summary.get_column("cost_before")[0] is None  # no prices: no cost rate
    doc = json.loads(json.dumps(priced.to_json_dict(), allow_nan=False))
    assert doc["schema_version"] == 2
    tight = doc["scenarios"][2]
    assert tight["limits"] == [["T", None, 322.0]] and tight["prices"] == [["Tc", -1.0]]
    assert tight["targets"]["T"] == pytest.approx(322.0, abs=0.05)
    assert tight["cost_after"] == pytest.approx(-tight["targets"]["Tc"])
    assert {"tag": "T", "kind": "op_hi", "state": "binding"}.items() <= tight["constraints"][
        0
    ].items()
    assert {"name", "setpoints", "mv_schedule", "failed_solves"} <= set(tight)  # version 1's
    # the scenario's spec changed only its controller's copy: same error scale for T
    assert scenario_spec(zones, priced.scenarios[2]).tag("T").error_scale == 20.0


def test_hold_holds_the_setpoints_in_force_not_the_specs(
    twin: Twin, history: pl.DataFrame, hotter: WhatIf
) -> None:
    result = whatif(twin, twin.spec, history, [HOLD], steps=STEPS, setpoints={"T": 327.0})
    assert (result.setpoint_paths[0]["T"] == 327.0).all()
    assert (result.setpoint_paths[0]["Ca"] == twin.spec.tag("Ca").setpoint).all()
    held, _, _ = result.forecast("hold").tag("T")
    spec_hold, _, _ = hotter.forecast("hold").tag("T")  # the spec's 324.5 K
    assert held[-1] > spec_hold[-1] + 0.5
    assert result.targets[0]["T"] > hotter.targets[0]["T"] + 0.5


def test_a_scenario_controller_keeps_the_given_settings(twin: Twin, zones: PlantSpec) -> None:
    like = Controller(
        twin, twin.spec, control_horizon=4, move_weight=0.3, frozen=("Tc",), offset_points=3
    )
    spec = scenario_spec(zones, Scenario("x", limits=(("Tc", 290.0, None),)))
    ctl = scenario_controller(twin, spec, like)
    assert ctl.spec is spec and ctl.spec.tag("Tc").op_lo == 290.0
    assert ctl.starts.tolist() == like.starts.tolist() and ctl.frozen == ("Tc",)
    assert ctl.move_w.tolist() == [0.3] and ctl.offset.steps.tolist() == like.offset.steps.tolist()


@pytest.mark.parametrize(
    ("scenario", "message"),
    [
        (Scenario("a", limits=(("T", 330.0, 320.0),)), r"'T' are crossed: op_lo 330 K"),
        (Scenario("a", limits=(("T", None, 310.0),)), r"'T' are crossed: op_lo 315 K"),
        (Scenario("a", limits=(("T", 290.0, None),)), r"op_lo of 'T' = 290 K is outside .*\[300"),
        (Scenario("a", limits=(("T", None, None),)), r"give op_lo, op_hi or both"),
        (Scenario("a", limits=(("T", math.nan, None),)), r"op_lo of 'T' must be a finite"),
        (Scenario("a", prices=(("X", 1.0),)), r"price of 'X': plant .* has no tag 'X'"),
        (Scenario("a", prices=(("Tf", 1.0),)), r"price of 'Tf': 'Tf' is a DV"),
        (Scenario("a", prices=(("Tc", math.inf),)), r"price of 'Tc' must be a finite"),
        (Scenario("a", priorities=(("T", 0),)), r"priority of 'T' must be a whole number >= 1"),
        (Scenario("a", priorities=(("Tc", 2),)), r"priority of 'Tc': 'Tc' is an MV"),
        (Scenario("a", priorities=(("Ca", 2),)), r"'Ca': a priority ranks .* it has none"),
        (Scenario("a", mv_schedule={"Tc": (299.0,)}, prices=(("Tc", 1.0),)), r"not both"),
    ],
)
def test_bad_economics_are_refused_by_scenario_and_tag(
    twin: Twin, zones: PlantSpec, history: pl.DataFrame, scenario: Scenario, message: str
) -> None:
    with pytest.raises(TwinError, match=message) as caught:
        whatif(twin, zones, history, [scenario], steps=3)
    assert str(caught.value).startswith("scenario 'a': ")


def test_limit_and_priority_syntax() -> None:
    assert parse_limits("T=315:330") == ("T", 315.0, 330.0)
    assert parse_limits("T=:330") == ("T", None, 330.0)
    assert parse_limits("T = -5 :") == ("T", -5.0, None)
    assert parse_priority("T=2") == ("T", 2)
    for bad, parse in (("T=330", parse_limits), ("T=:", parse_limits), ("T=0", parse_priority)):
        with pytest.raises(argparse.ArgumentTypeError, match="T"):
            parse(bad)


def test_cli_whatif_prices_limits_and_the_setpoints_in_force(
    twin: Twin, zones: PlantSpec, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "hist"
    Historian(root).append(steady_rows(60))
    rec = Controller(twin, zones).recommend(steady_history(60), {"T": 326.0})
    RecommendationLog(root).append(rec)  # as `twin run` logs it
    spec_file = tmp_path / "zones.toml"
    spec_file.write_text(spec_to_toml(zones))
    out = tmp_path / "whatif.json"
    args = ["whatif", "--model", MODEL, "--historian", root, "--steps", "4", "--out", out]
    args += ["--spec", spec_file, "--scenario", "dear", "--price", "Tc=1"]
    args += ["--limit", "T=:325", "--priority", "T=2"]
    assert main([str(a) for a in args]) == 0
    shown = capsys.readouterr().out
    assert "setpoints in force: T=326 (the recommendation of" in shown
    assert "cost rate now 300" in shown and "targets: T " in shown
    doc = json.loads(out.read_text())
    assert [s["name"] for s in doc["scenarios"]] == ["hold", "dear"]
    hold, dear = doc["scenarios"]
    assert dear["prices"] == [["Tc", 1.0]] and dear["limits"] == [["T", None, 325.0]]
    assert dear["priorities"] == [["T", 2]]
    # the tighter limit wins over the setpoint in force (326 K) at the new optimum
    assert dear["targets"]["T"] <= 325.0 + 1e-6 < hold["targets"]["T"]
    assert dear["cost_before"] == pytest.approx(steady_history(60).get_column("Tc")[-1])
    rows = [dict(zip(doc["columns"], r, strict=True)) for r in doc["rows"]]
    assert {r["setpoint"] for r in rows if r["scenario"] == "hold" and r["tag"] == "T"} == {326.0}
