"""The controller as an APC engineer states it: zones, priorities, economics, frozen MVs.

The plant is a linear model whose steady state is known in closed form, so the constrained
economic optimum is a vertex computed by hand; the loop must drive the plant there, say which
limits bind, give up the lowest-priority limit when they cannot all hold, and never move a
frozen MV.
"""

from __future__ import annotations

import numpy as np
import pytest
from control_helpers import LinearModel, frame

from twin.control.controller import Controller
from twin.control.recommendation import Recommendation
from twin.spec import PlantSpec, parse_spec

A = np.diag([0.5, 0.5])
B = np.array([[0.5, 0.25], [0.1, 0.5]])
GAIN = np.linalg.solve(np.eye(2) - A, B)  # [[1, 0.5], [0.2, 1]]


def spec_of(cv0: str = "", cv1: str = "", mv0: str = "", mv1: str = "") -> PlantSpec:
    """Two CVs y0, y1 in [-10, 10] and two MVs u0, u1 in [-6, 6], with extra TOML lines."""
    text = '[plant]\nname = "econ"\nsample_period_s = 1.0\n'
    for name, extra in (("y0", cv0), ("y1", cv1)):
        text += f'[[tags]]\nname = "{name}"\nrole = "cv"\nlo = -10.0\nhi = 10.0\n{extra}\n'
    for name, extra in (("u0", mv0), ("u1", mv1)):
        text += (
            f'[[tags]]\nname = "{name}"\nrole = "mv"\nlo = -6.0\nhi = 6.0\nrate_limit = 0.5\n'
            f"{extra}\n"
        )
    return parse_spec(text, source="econ.toml")


def closed_loop(ctl: Controller, steps: int = 90) -> tuple[np.ndarray, Recommendation]:
    """The linear plant (the model itself) under the controller from rest; last row, last rec."""
    rows = [np.zeros(4)]
    rec = None
    for _ in range(steps):
        rec = ctl.recommend(frame(ctl.spec, np.array(rows[-60:])))
        assert rec.success, rec.message
        u = np.array([m.recommended for m in rec.moves])
        y = A @ rows[-1][:2] + B @ u
        rows.append(np.concatenate([y, u]))
    assert rec is not None
    return rows[-1], rec


def states(rec: Recommendation) -> set[tuple[str, str, str]]:
    return {(c.tag, c.kind, c.state) for c in rec.constraints}


def test_costs_and_zones_drive_the_plant_to_the_constrained_optimum() -> None:
    """min -u0 + u1 s.t. y0 = u0 + 0.5 u1 <= 2, u in [-5, 5] (operating limits): the vertex
    u = (4.5, -5), y0 = 2 on its operating limit, y1 = 0.2*4.5 - 5 = -4.1."""
    spec = spec_of(
        cv0="op_hi = 2.0",
        mv0="op_lo = -5.0\nop_hi = 5.0\ncost = -1.0",
        mv1="op_lo = -5.0\nop_hi = 5.0\ncost = 1.0",
    )
    model = LinearModel(spec, A, B, horizon=15)
    last, rec = closed_loop(Controller(model, control_horizon=4, move_weight=0.05))
    assert last[2:] == pytest.approx([4.5, -5.0], abs=2e-3)
    assert last[:2] == pytest.approx([2.0, GAIN[1] @ [4.5, -5.0]], abs=2e-3)
    assert rec.targets["u0"] == pytest.approx(4.5, abs=1e-6)
    assert rec.targets["y0"] == pytest.approx(2.0, abs=1e-6)
    assert rec.cost_rate == pytest.approx(-9.5, abs=1e-5)
    assert rec.cost_rate_now == pytest.approx(-9.5, abs=1e-2)
    assert {("y0", "op_hi", "binding"), ("u1", "mv_lo", "binding")} <= states(rec)
    assert rec.move("u0").target == pytest.approx(4.5, abs=1e-6)


@pytest.mark.parametrize(("first", "last"), [("y0", "y1"), ("y1", "y0")])
def test_the_lowest_priority_limit_is_given_up_first(first: str, last: str) -> None:
    """y0 >= 3 and y1 <= 0.5 cannot both hold with u1 fixed at 0 (y1 = 0.2 y0): the limit of
    priority 2 gives way, the one of priority 1 holds, whichever CV it belongs to."""
    ranks = {first: 1, last: 2}
    spec = spec_of(
        cv0=f"op_lo = 3.0\npriority = {ranks['y0']}",
        cv1=f"op_hi = 0.5\npriority = {ranks['y1']}",
    )
    model = LinearModel(spec, A, B, horizon=15)
    ctl = Controller(model, control_horizon=4, move_weight=0.05, frozen=["u1"])
    final, rec = closed_loop(ctl)
    y0, y1 = final[:2]
    if first == "y0":  # y0 held at 3, y1 = 0.6 over its 0.5
        assert y0 == pytest.approx(3.0, abs=2e-3) and y1 == pytest.approx(0.6, abs=2e-3)
    else:  # y1 held at 0.5, y0 = 2.5 under its 3
        assert y1 == pytest.approx(0.5, abs=2e-3) and y0 == pytest.approx(2.5, abs=2e-3)
    given_up = [c for c in rec.constraints if c.state == "given up"]
    assert [(c.tag, c.priority) for c in given_up] == [(last, 2)]
    assert f"{last} op_" in "; ".join(c.describe() for c in given_up)


class Untested(LinearModel):
    """The linear model of a plant whose u1 never moved in its training data."""

    def unmoved_mvs(self) -> tuple[str, ...]:
        return ("u1",)


def test_an_mv_the_twin_never_saw_move_is_frozen_and_named_until_released() -> None:
    spec = spec_of(cv0="setpoint = 2.0", cv1="setpoint = 1.5")
    model = Untested(spec, A, B, horizon=15)
    final, rec = closed_loop(Controller(model, control_horizon=4, move_weight=0.05), 40)
    assert final[3] == 0.0  # never moved, not even by a rounding
    assert rec.frozen == ("u1",) and rec.move("u1").frozen and not rec.move("u0").frozen
    assert "u1 frozen at 0" in rec.message and "--release u1" in rec.message
    assert all(v == 0.0 for v in rec.move("u1").plan)
    # released, it moves and both setpoints are reached
    released = Controller(model, control_horizon=4, move_weight=0.05, release=["u1"])
    final, rec = closed_loop(released, 90)
    assert rec.frozen == () and final[:2] == pytest.approx([2.0, 1.5], abs=2e-3)


def test_a_cv_without_setpoint_or_zone_is_only_shown() -> None:
    """y1 has no setpoint and no operating limits: it does not pull the MVs; y0 is tracked
    with u0 alone (u1 rests at its ideal value)."""
    spec = spec_of(cv0="setpoint = 2.0", mv1="ideal = 1.0")
    model = LinearModel(spec, A, B, horizon=15)
    final, rec = closed_loop(Controller(model, control_horizon=4, move_weight=0.05))
    assert final[0] == pytest.approx(2.0, abs=2e-3) and final[3] == pytest.approx(1.0, abs=2e-3)
    assert final[2] == pytest.approx(2.0 - 0.5 * 1.0, abs=2e-3)
    assert rec.setpoints == {"y0": 2.0}
