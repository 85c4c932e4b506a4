"""Forecast page: the twin's forecast of each CV and MV with its band, one panel per tag with its
own axis, drawn on the recent history, and how its past forecasts compared with what happened.
A plant with more tags than fit (:data:`dashboards.charts.MAX_PANELS`) shows a chosen few. The band is the adaptive one
(:mod:`twin.model.adaptive`): calibrated, then widened or narrowed per tag and step by the
recent outcomes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import streamlit as st

from dashboards import charts, compute, data, modes, page, style, trends
from dashboards.skill import skill_table
from twin.errors import TwinError
from twin.spec import PlantSpec, Tag

NO_MODEL = "No model loaded: start the app with --model MODEL to see the twin's forecasts."
HISTORY_MIN = (15, 30, 60)


def chosen_tags(spec: PlantSpec) -> list[Tag]:
    """The tags the operator chose to see (one panel each), at most ``MAX_PANELS``; by default
    the CVs, then the MVs, as many as fit."""
    options = [t.name for t in (*spec.cvs, *spec.mvs)]
    default = options[: charts.MAX_PANELS]
    if len(options) <= charts.MAX_PANELS:
        return [spec.tag(n) for n in options]
    names = st.multiselect(
        "Tags shown",
        options,
        default=default,
        key="forecast_tags",
        max_selections=charts.MAX_PANELS,
        format_func=lambda n: f"{spec.tag(n).role.upper()} {n}",
        help=f"one panel per tag, at most {charts.MAX_PANELS}",
    )
    st.caption(
        f"{len(names)} of {len(spec.cvs)} CVs and {len(spec.mvs)} MVs shown (at most "
        f"{charts.MAX_PANELS} panels): choose them in 'Tags shown'"
    )
    return [spec.tag(n) for n in names]


def now_forecast(cfg: data.AppConfig, minutes: int, tags: list[Tag]) -> None:
    """The forecast from now of ``tags``, one panel each, on the last ``minutes`` of history
    (redrawn as data arrives)."""
    assert cfg.model is not None and cfg.historian is not None
    twin = data.load_twin(str(cfg.model))
    spec = twin.spec
    version = data.stamp(cfg.historian)
    root, model = str(cfg.historian), str(cfg.model)
    at = modes.as_of()
    if at is not None:
        history_at(cfg, minutes, tags, at)
        return
    rec = data.latest_recommendation(cfg.historian)
    plans = ["hold MVs"] + (["controller's plan"] if rec and rec.forecast is not None else [])
    plan = (
        st.segmented_control(
            "MV plan",
            plans,
            default=plans[0],
            key="forecast_plan",
            help="hold every MV at its current value, or follow the moves "
            "the controller recommended last (twin run)",
        )
        or plans[0]
    )
    try:
        if plan == "hold MVs":
            fc = trends.hold_forecast(model, root, version)
            sps = data.setpoints_in_force(cfg, spec)
        else:  # the loop put its adaptive band on the forecast it logged
            assert rec is not None and rec.forecast is not None
            fc, sps = rec.forecast, dict(rec.setpoints)
    except TwinError as exc:
        st.warning(f"no forecast: {exc}")
        return
    st.caption(
        f"forecast from {charts.utc(fc.ts[0]) - timedelta(seconds=spec.sample_period):%H:%M:%S} "
        f"UTC, {twin.horizon} steps of {spec.sample_period:g} s "
        f"({twin.horizon * spec.sample_period / 60:g} min), band: {fc.coverage:.0%} prediction "
        "interval, adapted to the recent outcomes of each tag (Model page: coverage per tag)"
    )
    if not tags:
        style.note("No tag chosen: pick some in 'Tags shown'.")
        return
    rows = data.recent_rows(root, tuple(t.name for t in tags), float(minutes), version)
    fig = charts.tag_panels(
        tags,
        rows,
        trends.edge(rows, datetime.now(UTC), minutes),
        setpoints=sps,
        forecast=fc,
        uirevision="forecast",
        legend=True,
    )
    st.plotly_chart(fig, key="forecast_chart", config={"displaylogo": False})


def history_at(cfg: data.AppConfig, minutes: int, tags: list[Tag], at: datetime) -> None:
    """History mode: the forecast the twin makes from the Plant page's time cursor ``at`` with
    the MVs held, drawn on the history before it and what happened after."""
    assert cfg.model is not None and cfg.historian is not None
    twin = data.load_twin(str(cfg.model))
    spec = twin.spec
    version = data.stamp(cfg.historian)
    root, model = str(cfg.historian), str(cfg.model)
    try:
        fc = compute.forecast_hold_at(model, root, trends.forecast_samples(twin), at, version)
    except TwinError as exc:
        st.warning(f"no forecast from {at:%Y-%m-%d %H:%M:%S} UTC: {exc}")
        return
    ahead = twin.horizon * spec.sample_period / 60
    st.caption(
        f"history: forecast from the time cursor {at:%Y-%m-%d %H:%M:%S} UTC (Plant page) with "
        f"the MVs held, {twin.horizon} steps ({ahead:g} min), {fc.coverage:.0%} calibrated "
        "band, drawn with what the historian recorded after it"
    )
    if not tags:
        style.note("No tag chosen: pick some in 'Tags shown'.")
        return
    end = at + timedelta(minutes=ahead)
    rows = data.rows_until(root, tuple(t.name for t in tags), end, minutes + ahead, version)
    sps = data.setpoints_in_force(cfg, spec, at)
    fig = charts.tag_panels(
        tags, rows, (end - timedelta(minutes=minutes + ahead), end), setpoints=sps, forecast=fc,
        uirevision="forecast", legend=True,
    )  # fmt: skip
    st.plotly_chart(fig, key="forecast_chart", config={"displaylogo": False})


def past_forecasts(cfg: data.AppConfig, tags: list[Tag]) -> None:
    """Forecasts of the last hour's origins against what happened (the CVs among ``tags``),
    and their error by step."""
    assert cfg.model is not None and cfg.historian is not None
    twin = data.load_twin(str(cfg.model))
    root, model = str(cfg.historian), str(cfg.model)
    version = data.stamp(cfg.historian)
    st.markdown("**Past forecasts against what happened**")
    try:
        live = compute.skill(model, root, version)
    except TwinError as exc:
        style.note(f"not enough recent data to score forecasts: {exc}")
        return
    h = twin.horizon
    samples = 3 * h + twin.window
    history = compute.frame_for(model, root, samples, version)
    st.caption(
        f"{live.origins} forecasts made over the last {compute.SKILL_MINUTES:g} min with the MV "
        "moves that followed, scored like the validation (NRMSE: RMSE / training std)"
    )
    if any(t.role == "cv" for t in tags):
        st.plotly_chart(
            charts.skill_figure(twin.spec, history, live.examples, tags),
            key="skill_chart",
            config={"displaylogo": False},
        )
    st.dataframe(skill_table(live, twin.metrics), hide_index=True)


def main() -> None:
    cfg = page.open_page("Forecast", no_model=NO_MODEL, historian=True)
    if cfg is None:
        return
    minutes = (
        st.segmented_control(
            "History shown",
            HISTORY_MIN,
            default=30,
            key="forecast_min",
            format_func=lambda m: f"{m} min",
        )
        or 30
    )
    twin = data.load_twin(str(cfg.model))
    tags = chosen_tags(twin.spec)
    every = max(cfg.refresh_s, twin.spec.sample_period)
    st.fragment(run_every=None if modes.as_of() else every)(now_forecast)(cfg, minutes, tags)
    if modes.as_of() is None:  # the live error of the last hour belongs to the present
        past_forecasts(cfg, tags)


main()
