"""What-if page: edit setpoints, prices, operating limits and priorities (or an MV schedule) per
scenario, run, compare them side by side with their bands, see where each ends up (the new
optimum: steady-state targets, the cost rate before and after, active constraints), and export
a scenario (the same CSV / JSON as ``twin whatif``)."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import polars as pl
import streamlit as st

from dashboards import auth, charts, compute, data, exports, modes, page, style
from twin.errors import TwinError
from twin.spec import PlantSpec

NO_MODEL = "No model loaded: start the app with --model MODEL to run what-if scenarios."
MODES = ("controller acts (setpoints, prices, limits)", "MV schedule (open loop)")
#: the changes of the economics a scenario may make, and their rows per scenario in the form
CHANGES = ("none", "price", "op_lo", "op_hi", "priority")
CHANGE_ROWS = 2


def setpoints_now(spec: PlantSpec, rec: Any) -> tuple[dict[str, float], str]:
    """The setpoints in force now and where they come from: those of the newest logged
    recommendation ``rec`` (over the spec's) when there is one, else the spec's. A CV with
    neither has none (it is held within its limits only)."""
    values = {t.name: float(t.setpoint) for t in spec.cvs if t.setpoint is not None}
    if rec is None or rec.plant != spec.name:
        return values, "the spec's (no recommendation logged yet)"
    cvs = {t.name: t for t in spec.cvs}
    for tag, value in rec.setpoints.items():
        if tag in cvs and cvs[tag].lo <= value <= cvs[tag].hi:
            values[tag] = float(value)
    return values, f"those of the latest recommendation ({rec.ts:%Y-%m-%d %H:%M:%S} UTC)"


def economics_table(spec: PlantSpec, setpoints: dict[str, float]) -> pl.DataFrame:
    """Per CV and MV: its limits, operating limits, price, priority and setpoint in force."""
    rows = [
        {
            "tag": t.name,
            "role": t.role.upper(),
            "unit": t.unit,
            "lo": t.lo,
            "hi": t.hi,
            "op_lo": t.op_lo,
            "op_hi": t.op_hi,
            "price": t.cost,
            "priority": t.priority,
            "setpoint": setpoints.get(t.name),
        }
        for t in [*spec.cvs, *spec.mvs]
    ]
    schema = {
        "tag": pl.String,
        "role": pl.String,
        "unit": pl.String,
        **dict.fromkeys(("lo", "hi", "op_lo", "op_hi", "price"), pl.Float64),
        "priority": pl.Int64,
        "setpoint": pl.Float64,
    }
    return pl.DataFrame(rows, schema=schema, orient="row")


def defaults(spec: PlantSpec, setpoints: dict[str, float], k: int) -> float | None:
    """Default value of the first CV's setpoint in scenario ``k``: now, then steps of 5 % span
    (None: it has no setpoint in force)."""
    cv = spec.cvs[0]
    if cv.name not in setpoints:
        return None
    return min(cv.hi, max(cv.lo, setpoints[cv.name] + 0.05 * k * cv.span))


def economics(changes: list[tuple[str, str, float | None]], name: str) -> Any:
    """A scenario called ``name`` with the prices, operating limits and priorities of its form
    rows ``(change, tag, value)``; a row without a change or a value is left out."""
    from twin.control.whatif import Scenario

    prices: list[tuple[str, float]] = []
    limits: list[tuple[str, float | None, float | None]] = []
    priorities: list[tuple[str, int]] = []
    for kind, tag, value in changes:
        if kind == "none" or value is None:
            continue
        if kind == "price":
            prices.append((tag, float(value)))
        elif kind == "op_lo":
            limits.append((tag, float(value), None))
        elif kind == "op_hi":
            limits.append((tag, None, float(value)))
        elif kind == "priority":
            if not float(value).is_integer():
                raise TwinError(
                    f"scenario {name!r}: priority of {tag!r} must be a whole number >= 1, "
                    f"got {value:g}"
                )
            priorities.append((tag, int(value)))
    return Scenario(name, prices=tuple(prices), limits=tuple(limits), priorities=tuple(priorities))


def scenario_form(
    spec: PlantSpec,
    setpoints: dict[str, float],
    current: dict[str, float],
    horizon_min: float,
    count: int,
) -> list[Any] | None:
    """The editor: one column per scenario; returns the scenarios when Run is pressed."""
    controlled = [t.name for t in [*spec.cvs, *spec.mvs]]
    with st.form("whatif_form", border=False):
        cols = st.columns(count)
        specs: list[dict[str, Any]] = []
        for k, col in enumerate(cols):
            with col:
                name = st.text_input(
                    "name", "hold" if k == 0 else f"scenario {k + 1}", key=f"wi_name_{k}"
                )
                mode = st.radio("change", MODES, key=f"wi_mode_{k}")
                sps, moves, changes = [], {}, []
                for j, t in enumerate(spec.cvs):
                    value = defaults(spec, setpoints, k) if j == 0 else setpoints.get(t.name)
                    v = st.number_input(
                        f"{t.name} setpoint [{t.unit}]",
                        t.lo,
                        t.hi,
                        None if value is None else float(value),
                        key=f"wi_sp_{k}_{t.name}",
                        format="%.4g",
                        placeholder="none: held within its limits",
                    )
                    at = st.number_input(
                        f"{t.name} from minute", 0.0, horizon_min, 0.0, key=f"wi_at_{k}_{t.name}"
                    )
                    if v is not None:
                        sps.append((t.name, float(v), float(at)))
                st.markdown("**prices, limits, priorities**")
                for j in range(CHANGE_ROWS):
                    kind = st.selectbox("change", CHANGES, key=f"wi_chg_{k}_{j}")
                    tag = st.selectbox("of tag", controlled, key=f"wi_chgtag_{k}_{j}")
                    v = st.number_input(
                        "to", value=None, key=f"wi_chgval_{k}_{j}", format="%.6g",
                        placeholder="price per unit, limit or rank",
                    )  # fmt: skip
                    changes.append((str(kind), str(tag), None if v is None else float(v)))
                for t in spec.mvs:
                    now = min(t.hi, max(t.lo, current[t.name]))
                    v = st.number_input(
                        f"{t.name} [{t.unit}]",
                        t.lo,
                        t.hi,
                        now,
                        key=f"wi_mv_{k}_{t.name}",
                        format="%.4g",
                        help="used in MV schedule mode",
                    )
                    at = st.number_input(
                        f"{t.name} from minute", 0.0, horizon_min, 0.0, key=f"wi_mvat_{k}_{t.name}"
                    )
                    moves[t.name] = (float(v), float(at))
                specs.append(
                    {
                        "name": name.strip() or f"scenario {k + 1}",
                        "mode": mode,
                        "setpoints": tuple(sps),
                        "moves": moves,
                        "changes": changes,
                    }
                )
        run = st.form_submit_button("Run what-if", key="wi_run")
    if not run:
        return None
    out = []
    for s in specs:
        base = economics(s["changes"], s["name"])
        if s["mode"] == MODES[0]:
            out.append(dataclasses.replace(base, setpoints=s["setpoints"]))
        else:
            schedule = {}
            for tag, (value, at) in s["moves"].items():
                steps = round(at * 60 / spec.sample_period)
                schedule[tag] = (current[tag],) * steps + (value,)
            out.append(dataclasses.replace(base, mv_schedule=schedule))
    return out


def summary(result: Any, spec: PlantSpec) -> pl.DataFrame:
    """Per scenario: each CV and MV at the end of the run, and failed controller solves."""
    rows = []
    for sc, fc, failed in zip(
        result.scenarios, result.forecasts, result.failed_solves, strict=True
    ):
        row: dict[str, Any] = {
            "scenario": sc.name,
            "mode": "open loop" if sc.open_loop else "controller",
        }
        for t in [*spec.cvs, *spec.mvs]:
            mean, lower, upper = fc.tag(t.name)
            row[f"{t.name} end [{t.unit}]"] = round(float(mean[-1]), 4)
            if t.role == "cv":
                row[f"{t.name} band [{t.unit}]"] = f"{lower[-1]:.4g} .. {upper[-1]:.4g}"
        row["failed solves"] = failed
        rows.append(row)
    return pl.DataFrame(rows)


def optimum_table(result: Any, spec: PlantSpec) -> pl.DataFrame:
    """Per closed-loop scenario: the cost rate before and after and each steady-state target
    (the new optimum), headed with units."""
    frame = result.summary()
    units = {t.name: t.unit for t in spec.tags}
    closed = [not s.open_loop for s in result.scenarios]
    return frame.filter(pl.Series(closed)).rename(
        {
            "cost_before": "cost rate now",
            "cost_after": "cost rate at targets",
            **{c: f"{c} target [{units[c]}]" for c in frame.columns if c in units},
        }
    )


def cost_metrics(result: Any) -> None:
    """The cost rate at the new targets of each scenario that has one, its change from now."""
    shown = [
        (s.name, before, after)
        for s, before, after in zip(
            result.scenarios, result.cost_before, result.cost_after, strict=True
        )
        if math.isfinite(after)
    ]
    if not shown:
        st.caption("no tag has a price: give one in a scenario to see the cost rate")
        return
    for col, (name, before, after) in zip(st.columns(len(shown)), shown, strict=True):
        delta = f"{after - before:+.4g} from now" if math.isfinite(before) else None
        col.metric(
            f"{name}: cost rate",
            f"{after:.4g}",
            delta,
            delta_color="off",  # grey, as every delta of the app (ISA-101)
            help=f"now {before:.4g}, at the new targets {after:.4g} (price x value, summed)",
        )


def constraint_lines(result: Any, spec: PlantSpec) -> list[str]:
    """Markdown lines: per scenario, the limits its targets sit on or gave up."""
    lines = []
    for sc, cons in zip(result.scenarios, result.constraints, strict=True):
        for c in cons:
            lines.append(f"{sc.name}: {c.describe(spec.tag(c.tag).unit)}")
    return lines


def show(result: Any, history: pl.DataFrame, spec: PlantSpec) -> None:
    names = [s.name for s in result.scenarios]
    st.markdown(f"**{len(names)} scenarios:** " + ", ".join(names))
    fig = charts.forecast_figure(
        spec,
        [*spec.cvs, *spec.mvs],
        history,
        list(zip(names, result.forecasts, strict=True)),
        [{k: v for k, v in p.items() if np.isfinite(v).any()} for p in result.setpoint_paths],
    )
    st.plotly_chart(fig, key="whatif_chart", config={"displaylogo": False})
    st.dataframe(summary(result, spec), hide_index=True)
    if any(not s.open_loop for s in result.scenarios):
        st.markdown("**New optimum** (the controller's steady-state targets at the end)")
        cost_metrics(result)
        st.dataframe(optimum_table(result, spec), hide_index=True, key="wi_optimum")
        lines = constraint_lines(result, spec)
        if lines:
            st.markdown("".join(f"\n- {line}" for line in lines))
    pick = st.multiselect("Export scenarios", names, default=names, key="wi_export")
    if pick:
        page.download_pair(
            lambda suffix: exports.whatif_bytes(result, pick, suffix), "whatif", "wi"
        )


def main() -> None:
    cfg = page.open_page("What-if", no_model=NO_MODEL, historian=True)
    if cfg is None or cfg.historian is None:  # (open_page checked it: None only for mypy)
        return
    if not auth.can("whatif"):
        style.note(f"What-if scenarios: {auth.why_not('whatif')}")
        return
    from twin.control.whatif import current_mvs, whatif

    twin = data.load_twin(str(cfg.model))
    spec = twin.spec
    root, model = str(cfg.historian), str(cfg.model)
    samples, at = 3 * twin.horizon + twin.window, modes.as_of()
    if at is None:
        history = compute.frame_for(model, root, samples, data.stamp(cfg.historian))
    else:  # history mode: from the Plant page's time cursor
        history = data.history_frame_at(root, model, samples, at, data.stamp(cfg.historian), spec)
        st.caption(f"history: scenarios start at the time cursor {at:%Y-%m-%d %H:%M:%S} UTC")
    setpoints, source = setpoints_now(spec, data.latest_recommendation(cfg.historian))
    try:
        current = dict(
            zip([t.name for t in spec.mvs], current_mvs(history, spec).tolist(), strict=True)
        )
    except TwinError as exc:
        st.warning(f"cannot start a what-if: {exc}")
        return
    horizon_min = twin.horizon * spec.sample_period / 60
    st.caption(
        f"each scenario runs {twin.horizon} steps ({horizon_min:g} min) from the newest "
        "sample; with setpoint, price, limit or priority changes the controller acts on the "
        "twin, with an MV schedule the MVs follow it"
    )
    in_force = ", ".join(f"{k} = {v:g} {spec.tag(k).unit}" for k, v in setpoints.items())
    st.caption(f"setpoints in force (what 'hold' holds): {in_force or 'none'}: {source}")
    with st.expander("limits, prices and priorities of the spec"):
        st.dataframe(economics_table(spec, setpoints), hide_index=True)
    count = int(st.number_input("Scenarios", 2, 4, 2, key="wi_count"))
    try:
        scenarios = scenario_form(spec, setpoints, current, horizon_min, count)
        if scenarios is not None:
            with st.spinner("running the scenarios ..."):
                result = whatif(twin, spec, history, scenarios, setpoints=setpoints)
            st.session_state["whatif"] = (result, history)
    except TwinError as exc:
        st.error(f"what-if failed: {exc}")
    if "whatif" in st.session_state:
        result, used = st.session_state["whatif"]
        show(result, used.tail(2 * twin.horizon), spec)


main()
