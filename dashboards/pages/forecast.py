"""Forecast page: the twin's forecast of every CV with its band, drawn on the recent history,
and how its past forecasts compared with what happened. The band is the adaptive one
(:mod:`twin.model.adaptive`): calibrated, then widened or narrowed per tag and step by the
recent outcomes."""

from __future__ import annotations

from datetime import timedelta

import streamlit as st

from dashboards import charts, compute, data, page, style
from dashboards.skill import skill_table
from twin.errors import TwinError

NO_MODEL = "No model loaded: start the app with --model MODEL to see the twin's forecasts."
HISTORY_MIN = (15, 30, 60)


def now_forecast(cfg: data.AppConfig, minutes: int) -> None:
    """The forecast from now, on the last ``minutes`` of history (redrawn as data arrives)."""
    assert cfg.model is not None and cfg.historian is not None
    twin = data.load_twin(str(cfg.model))
    spec = twin.spec
    version = data.stamp(cfg.historian)
    samples = max(twin.window + twin.config.max_gap, int(minutes * 60 / spec.sample_period))
    root, model = str(cfg.historian), str(cfg.model)
    history = compute.frame_for(model, root, samples, version)
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
            bands = compute.bands(model, root, version)
            fc = bands.adjust(compute.forecast_hold(model, root, samples, version))
            sps = {t.name: t.setpoint for t in spec.cvs}
        else:  # the loop put its adaptive band on the forecast it logged
            assert rec is not None and rec.forecast is not None
            fc, sps = rec.forecast, dict(rec.setpoints)
    except TwinError as exc:
        st.warning(f"no forecast: {exc}")
        return
    st.caption(
        f"forecast from {charts.utc(fc.ts[0]) - timedelta(seconds=spec.sample_period):%H:%M:%S} UTC, {twin.horizon} steps of "
        f"{spec.sample_period:g} s ({twin.horizon * spec.sample_period / 60:g} min), "
        f"band: {fc.coverage:.0%} prediction interval, adapted to the recent outcomes of each "
        "tag (Model page: coverage per tag)"
    )
    tags = [*spec.cvs, *spec.mvs]
    fig = charts.forecast_figure(spec, tags, history, [("forecast", fc)], [sps])
    st.plotly_chart(fig, key="forecast_chart", config={"displaylogo": False})


def past_forecasts(cfg: data.AppConfig) -> None:
    """Forecasts of the last hour's origins against what happened, and their error by step."""
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
    st.plotly_chart(
        charts.skill_figure(twin.spec, history, live.examples),
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
    every = max(cfg.refresh_s, twin.spec.sample_period)
    st.fragment(run_every=every)(now_forecast)(cfg, minutes)
    past_forecasts(cfg)


main()
