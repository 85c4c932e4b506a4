"""The economics benchmark's pure parts: the true optimum against optima known independently,
the economic specs, the violation score and the targets (no twin is trained, no loop is run)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy.optimize import brentq, fsolve

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks.economics import CASES, violation
from benchmarks.economics_optimum import Optima, SteadyState, true_optimum
from benchmarks.economics_report import checks, markdown
from benchmarks.zoo import DEVELOPMENT
from connectors.sim.plants import make_plant
from connectors.sim.quadtank import steady_levels
from twin.spec import PlantSpec


def _econ(plant: str) -> PlantSpec:
    return CASES[plant].spec(make_plant(plant).spec)


def test_the_cstr_optimum_is_where_the_temperature_meets_its_operating_limit() -> None:
    spec = _econ("cstr")
    ss = SteadyState("cstr")
    d, p = np.array([350.0]), np.array([0.98])
    opt = true_optimum(spec, ss, d, p)
    # independently: Ca falls and T rises with the coolant temperature on the lower branch, so
    # the optimum is the coolant temperature at which the steady T reaches op_hi = 327 K
    tc = brentq(lambda u: ss(np.array([u]), d, p)[0] - 327.0, 295.0, 302.0, xtol=1e-10)
    assert opt.success
    assert opt.u["Tc"] == pytest.approx(tc, abs=2e-3)
    assert opt.y["T"] == pytest.approx(327.0, abs=1e-3)
    assert [(a["tag"], a["kind"]) for a in opt.active] == [("T", "op_hi")]
    # the shadow price is -dJ/dT along the steady states: J = c_Ca Ca + c_Tc Tc
    c_ca, c_tc = spec.tag("Ca").cost or 0.0, spec.tag("Tc").cost or 0.0
    h = 0.01
    lo, hi = ss(np.array([tc - h]), d, p), ss(np.array([tc + h]), d, p)
    djdt = (c_ca * (hi[1] - lo[1]) + c_tc * 2 * h) / (hi[0] - lo[0])
    assert opt.active[0]["shadow_price"] == pytest.approx(-djdt, rel=0.02)
    assert opt.kkt_residual < 1e-6


def test_the_quadtank_optimum_is_the_vertex_of_the_two_level_limits_in_closed_form() -> None:
    spec = _econ("quadtank")
    opt = true_optimum(spec, SteadyState("quadtank"), np.zeros(0), np.array([0.95]))
    v = fsolve(lambda v: steady_levels(v[0], v[1], 0.95)[:2] - 15.0, [3.3, 3.3], xtol=1e-12)
    assert opt.u["v1"] == pytest.approx(v[0], abs=2e-4)
    assert opt.u["v2"] == pytest.approx(v[1], abs=2e-4)
    assert opt.cost_rate == pytest.approx(-(3.14 * v[0] + 3.29 * v[1]), abs=1e-3)
    assert {(a["tag"], a["kind"]) for a in opt.active} == {("h1", "op_hi"), ("h2", "op_hi")}
    assert all(a["shadow_price"] > 0 for a in opt.active)


@pytest.mark.parametrize(
    "plant",
    [pytest.param(p, marks=pytest.mark.slow) if p.startswith("zoo-") else p for p in sorted(CASES)],
)
def test_each_cases_optimum_sits_on_the_limits_its_economics_push_it_to(plant: str) -> None:
    case = CASES[plant]
    assert not plant.startswith("zoo-") or plant in DEVELOPMENT  # never tuned on held-out plants
    spec = _econ(plant)
    nominal = make_plant(plant, noise=False)
    optima = Optima(spec)
    i = nominal.param_names.index(case.disturbance)
    for value in (nominal.p[i], case.drift_to, case.step_to):
        p = nominal.p.astype(float).copy()
        p[i] = value
        opt = optima(nominal.d0.astype(float), p)
        assert opt.success, opt.message
        assert {f"{a['tag']}:{a['kind']}" for a in opt.active} == set(case.expect)
        assert all(a["shadow_price"] > 1e-6 for a in opt.active)  # each limit really binds
        assert opt.cost_rate < optima.hold(nominal.d0.astype(float), p)  # worth moving


def test_the_economic_spec_drops_setpoints_and_keeps_the_plain_spec_otherwise() -> None:
    plain = make_plant("cstr").spec
    econ = CASES["cstr"].spec(plain)
    assert [t.name for t in econ.tags] == plain.tag_names
    assert all(t.setpoint is None for t in econ.cvs)
    t = econ.tag("T")
    assert (t.op_lo, t.op_hi, t.error_scale, t.lo, t.hi) == (315.0, 327.0, 12.0, 300.0, 345.0)
    assert econ.tag("Ca").cost == 600.0 and econ.tag("Tc").cost == -1.2
    with pytest.raises(KeyError, match="no tags"):
        type(CASES["cstr"])(**{**CASES["cstr"].__dict__, "changes": {"X": {}}}).spec(plain)


def test_violation_counts_each_limit_in_its_scale_and_nothing_inside_the_zone() -> None:
    spec = _econ("cstr")  # T zone 315-327 K (scale 12 K); Ca, Tc, Tf have no operating limits
    y = np.array(
        [
            [320.0, 0.9, 300.0, 350.0],  # inside
            [330.0, 0.9, 300.0, 350.0],  # 3 K above
            [309.0, 0.2, 300.0, 350.0],  # 6 K below; Ca outside its instrument range: not counted
        ]
    )
    assert violation(y, spec) == pytest.approx([0.0, 0.25, 0.5])


def _result(cost: float, opt: float, viol: float, cpu: float) -> dict[str, object]:
    return {
        "cost_rate": cost,
        "optimum": opt,
        "gap_pct": 100 * (cost - opt) / abs(opt),
        "captured_pct": 50.0,
        "hold_cost_rate": cost + 1,
        "violation": viol,
        "violation_final": viol,
        "final_values": {"T": 327.0},
        "predicted_cost_rate": None,
        "targets": {},
        "constraints": [],
        "solve_ms_median": cpu,
        "solve_ms_p95": cpu,
        "cpu_ms_median": cpu,
        "cpu_ms_p95": cpu,
        "failures": 0,
        "first_failure": "",
        "trips": 0,
    }


def _timing(ms: float) -> dict[str, float]:
    return {"cpu_ms_median": ms, "cpu_ms_p95": ms}


def test_the_targets_pass_and_fail_where_issue_14_draws_the_lines() -> None:
    opt = {
        "text": "J* 100",
        "kkt_residual": 0.0,
        "disturbance": {"Caf": 1.0},
        "cost_rate": 100.0,
        "noise_worth": 0.5,
    }
    plant: dict[str, Any] = {
        "economics": "e",
        "changes": {"T": {"op_hi": 327.0}},
        "scenario": {
            "steps": 10,
            "minutes": 1.0,
            "disturbance": "Caf",
            "drift_to": 1.0,
            "step_to": 1.0,
            "step_at": 4,
            "final_steps": 2,
        },
        "twin": "t",
        "horizon": 30,
        "oracle_substeps": 1,
        "optimum_nominal": opt,
        "optimum_final": opt,
        "results": {
            "twin": _result(101.9, 100.0, 0.015, 12.0),  # gap 1.9 %, violation oracle's + 0.01
            "oracle": _result(100.5, 100.0, 0.005, 30.0),
            "plain": _result(110.0, 100.0, 0.0, 10.0),
        },
        "paired_timing": {"twin": _timing(12.0), "plain": _timing(10.0)},  # 1.2x
    }
    results = {c["target"].split(" <=")[0]: c["result"] for c in checks({"cstr": plant})}
    assert set(results.values()) == {"PASS"}
    plant["results"]["twin"] = _result(102.1, 100.0, 0.0151, 12.0)
    plant["paired_timing"] = {"twin": _timing(12.1), "plain": _timing(10.0)}
    assert {c["result"] for c in checks({"cstr": plant})} == {"FAIL"}
    doc = {
        "meta": {"command": "c", "wall_seconds": 1.0, "load_average": [0, 0]},
        "plants": {"cstr": plant},
        "targets": checks({"cstr": plant}),
    }
    text = markdown(doc)
    assert "| cstr | twin gap to the true optimum <= 2 % | 2.10 % | FAIL |" in text
    assert "a gap of 2 % is worth 4.0 sigma" in text
