"""What-if page: edit setpoints (or an MV schedule) per scenario, run, compare them side by side
with their bands, and export a scenario (the same CSV / JSON as ``twin whatif``)."""

from __future__ import annotations

from typing import Any

import polars as pl
import streamlit as st

from dashboards import charts, compute, data, exports, page
from twin.errors import TwinError
from twin.spec import PlantSpec

NO_MODEL = "No model loaded: start the app with --model MODEL to run what-if scenarios."
MODES = ("setpoints (controller acts)", "MV schedule (open loop)")


def defaults(spec: PlantSpec, setpoints: dict[str, float], k: int) -> float:
    """Default value of the first CV's setpoint in scenario ``k``: now, then steps of 5 % span."""
    cv = spec.cvs[0]
    return min(cv.hi, max(cv.lo, setpoints[cv.name] + 0.05 * k * cv.span))


def scenario_form(
    spec: PlantSpec,
    setpoints: dict[str, float],
    current: dict[str, float],
    horizon_min: float,
    count: int,
) -> list[Any] | None:
    """The editor: one column per scenario; returns the scenarios when Run is pressed."""
    from twin.control.whatif import Scenario

    with st.form("whatif_form", border=False):
        cols = st.columns(count)
        specs: list[dict[str, Any]] = []
        for k, col in enumerate(cols):
            with col:
                name = st.text_input(
                    "name", "hold" if k == 0 else f"scenario {k + 1}", key=f"wi_name_{k}"
                )
                mode = st.radio("change", MODES, key=f"wi_mode_{k}")
                sps, moves = [], {}
                for j, t in enumerate(spec.cvs):
                    value = defaults(spec, setpoints, k) if j == 0 else setpoints[t.name]
                    v = st.number_input(
                        f"{t.name} setpoint [{t.unit}]",
                        t.lo,
                        t.hi,
                        float(value),
                        key=f"wi_sp_{k}_{t.name}",
                        format="%.4g",
                    )
                    at = st.number_input(
                        f"{t.name} from minute", 0.0, horizon_min, 0.0, key=f"wi_at_{k}_{t.name}"
                    )
                    sps.append((t.name, float(v), float(at)))
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
                    }
                )
        run = st.form_submit_button("Run what-if", key="wi_run")
    if not run:
        return None
    out = []
    for s in specs:
        if s["mode"] == MODES[0]:
            out.append(Scenario(s["name"], setpoints=s["setpoints"]))
        else:
            schedule = {}
            for tag, (value, at) in s["moves"].items():
                steps = round(at * 60 / spec.sample_period)
                schedule[tag] = (current[tag],) * steps + (value,)
            out.append(Scenario(s["name"], mv_schedule=schedule))
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


def show(result: Any, history: pl.DataFrame, spec: PlantSpec) -> None:
    names = [s.name for s in result.scenarios]
    st.markdown(f"**{len(names)} scenarios:** " + ", ".join(names))
    fig = charts.forecast_figure(
        spec,
        [*spec.cvs, *spec.mvs],
        history,
        list(zip(names, result.forecasts, strict=True)),
        list(result.setpoint_paths),
    )
    st.plotly_chart(fig, key="whatif_chart", config={"displaylogo": False})
    st.dataframe(summary(result, spec), hide_index=True)
    pick = st.multiselect("Export scenarios", names, default=names, key="wi_export")
    if pick:
        page.download_pair(
            lambda suffix: exports.whatif_bytes(result, pick, suffix), "whatif", "wi"
        )


def main() -> None:
    cfg = page.open_page("What-if", no_model=NO_MODEL, historian=True)
    if cfg is None or cfg.historian is None:  # (open_page checked it: None only for mypy)
        return
    from twin.control.whatif import current_mvs, whatif

    twin = data.load_twin(str(cfg.model))
    spec = twin.spec
    root, model = str(cfg.historian), str(cfg.model)
    history = compute.frame_for(
        model, root, 3 * twin.horizon + twin.window, data.stamp(cfg.historian)
    )
    rec = data.latest_recommendation(cfg.historian)
    setpoints = {
        t.name: float(t.setpoint if t.setpoint is not None else (t.lo + t.hi) / 2) for t in spec.cvs
    }
    if rec is not None:
        setpoints.update(rec.setpoints)
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
        "sample; with setpoints the controller acts on the twin, with an MV schedule the "
        "MVs follow it"
    )
    count = int(st.number_input("Scenarios", 2, 4, 2, key="wi_count"))
    scenarios = scenario_form(spec, setpoints, current, horizon_min, count)
    if scenarios is not None:
        try:
            with st.spinner("running the scenarios ..."):
                st.session_state["whatif"] = (whatif(twin, spec, history, scenarios), history)
        except TwinError as exc:
            st.error(f"what-if failed: {exc}")
    if "whatif" in st.session_state:
        result, used = st.session_state["whatif"]
        show(result, used.tail(2 * twin.horizon), spec)


main()
