"""Model page: the validation report (twin against baselines by horizon, band coverage), how the
twin was trained, its live forecast error against the validation error as a health signal, and
the band's coverage per tag (calibration, live, and how far the adaptive band has moved)."""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go
import polars as pl
import streamlit as st

from dashboards import compute, data, page, style
from dashboards.skill import band_table, skill_table
from twin.errors import TwinError
from twin.model.adaptive import MEMORY, AdaptiveBands

NO_MODEL = "No model loaded: start the app with --model MODEL to see its validation and health."
#: health ratio above which the page flags the twin (where the write-back guard refuses)
WARN_RATIO = 3.0


def validation_table(metrics: dict[str, Any]) -> pl.DataFrame:
    """Per step and CV: twin and persistence NRMSE on the validation split, band coverage."""
    rows = []
    for step, per_tag in metrics.get("nrmse", {}).items():
        for tag, err in per_tag.items():
            rows.append(
                {
                    "step": int(step),
                    "tag": tag,
                    "twin NRMSE": err,
                    "persistence NRMSE": metrics.get("persistence_nrmse", {})
                    .get(step, {})
                    .get(tag),
                    "band coverage (all CVs)": metrics.get("coverage", {}).get(step),
                }
            )
    return pl.DataFrame(rows)


def report_figure(report: dict[str, Any]) -> go.Figure:
    """NRMSE against horizon step for the twin and each baseline (test split, all CVs)."""
    fig = style.figure(
        height=320, xaxis_title="horizon step [samples]", yaxis_title="NRMSE [-] (RMSE / std)"
    )
    for k, (name, by_step) in enumerate(report["summary"]["nrmse"].items()):
        colour, dash, _ = style.SCENARIO_STYLES[k % len(style.SCENARIO_STYLES)]
        steps = sorted(by_step, key=int)
        fig.add_trace(
            go.Scatter(
                x=[int(s) for s in steps],
                y=[by_step[s] for s in steps],
                mode="lines+markers",
                name=name,
                line={"color": colour, "dash": dash, "width": 2},
            )
        )
    return fig


def evaluation(report: dict[str, Any] | None) -> None:
    st.markdown("**Test report** (`twin evaluate`: twin against baselines on held-out data)")
    if report is None:
        st.caption("no report in MODEL/report/report.json: run `twin evaluate --out MODEL/report`")
        return
    st.plotly_chart(report_figure(report), key="report_chart", config={"displaylogo": False})
    steps = [str(s) for s in report["steps"]]
    rows = [
        {"model": name, **{f"k={s}": by_step.get(s) for s in steps}}
        for name, by_step in report["summary"]["nrmse"].items()
    ]
    st.dataframe(pl.DataFrame(rows), hide_index=True)
    cover = report["summary"].get("coverage", {})
    st.caption(
        "band coverage by step: "
        + ", ".join(f"k={s}: {v:.0%}" for s, v in cover.items())
        + f" (nominal {report.get('nominal_coverage', 0.9):.0%}); test data "
        f"{report['test']['start']} .. {report['test']['end']}, {report['test']['origins']} origins"
    )


def structure(metrics: dict[str, Any]) -> str:
    """One line on what forecasts: the linear model identified first, what was kept, and the
    stack's weights at the last step."""
    lin = metrics.get("linear_init")
    if not lin or not lin.get("model"):
        return "no linear model was identified first: trained from a random start"
    line = f"linear first: {lin['model']} identified; kept the {lin.get('kept', '?')} network"
    weights = (lin.get("stack") or {}).get("weight") or {}
    if weights:
        step = max(weights, key=int)
        mix = " + ".join(f"{w:.2f} {name}" for name, w in weights[step].items() if w >= 0.005)
        line += f"; forecasts are a per-step combination, at step {step}: {mix}"
    return line


def training(metrics: dict[str, Any], config: dict[str, Any] | None) -> None:
    st.markdown("**Training**")
    info = metrics.get("training", {})
    cols = st.columns(4)
    cols[0].metric("epochs", info.get("epochs", "—"), delta_color="off")
    cols[1].metric("training time [s]", info.get("seconds", "—"), delta_color="off")
    windows = info.get("windows", {})
    cols[2].metric("training windows", windows.get("train", "—"), delta_color="off")
    cols[3].metric("stopped by", info.get("stopped", "—"), delta_color="off")
    st.caption(structure(metrics))
    if config:
        keys = (
            "window",
            "horizon",
            "latent",
            "hidden",
            "ensemble",
            "anti_collapse",
            "target",
            "w_jepa",
            "lr",
            "batch",
            "coverage",
            "band_score",
        )
        st.dataframe(
            pl.DataFrame([{"setting": k, "value": str(config[k])} for k in keys if k in config]),
            hide_index=True,
            key="config_table",
        )


def live_health(cfg: data.AppConfig) -> None:
    """The health ratio (live / validation error) and the live error by step."""
    assert cfg.model is not None
    st.markdown("**Live health** (recent forecasts against the validation error)")
    if cfg.historian is None or not cfg.historian.is_dir():
        st.caption("no historian: start the app with --historian DIR")
        return
    twin = data.load_twin(str(cfg.model))
    root, model = str(cfg.historian), str(cfg.model)
    version = data.stamp(cfg.historian)
    ratio = compute.health(model, root, version)
    try:
        live = compute.skill(model, root, version)
        table = skill_table(live, twin.metrics)
    except TwinError as exc:
        live, table = None, None
        why = str(exc)
    left, right = st.columns(2)
    left.metric(
        "health ratio, last samples (worst CV)",
        "n/a" if ratio is None else f"{ratio:.2f}",
        delta_color="off",
        help="live / validation NRMSE as the write-back guard computes it from the last few "
        "samples (n/a: not enough clean recent data); about 1: as validated; the guard refuses "
        f"above {WARN_RATIO:g}",
    )
    ratios = table.get_column("live / validation").drop_nulls() if table is not None else None
    mean = float(ratios.mean()) if ratios is not None and len(ratios) else None  # type: ignore[arg-type]
    right.metric(
        "live / validation NRMSE, last hour (mean)",
        "n/a" if mean is None else f"{mean:.2f}",
        delta_color="off",
        help=f"over {live.origins if live else 0} forecasts of the last hour, every step and CV",
    )
    worst = max(r for r in (ratio, mean) if r is not None) if (ratio or mean) else None
    if worst is not None and worst > WARN_RATIO:
        st.markdown(
            f":orange-background[the twin's recent forecasts miss {worst:.1f} times more than "
            "in validation: the plant may have moved away from its data]"
        )
    if table is None:
        st.caption(f"no live error by step: {why}")
    else:
        st.dataframe(table, hide_index=True)


def bands_per_tag(cfg: data.AppConfig) -> None:
    """Coverage of the band per CV and DV: nominal, calibration, live; the adaptive band's state."""
    assert cfg.model is not None
    twin = data.load_twin(str(cfg.model))
    st.markdown(f"**Bands per tag** ({twin.calibration.coverage:.0%} band)")
    if cfg.historian is not None and cfg.historian.is_dir():
        version = data.stamp(cfg.historian)
        bands = compute.bands(str(cfg.model), str(cfg.historian), version)
    else:
        bands = AdaptiveBands.start(twin.spec.tag_names, twin.calibration)
    table = band_table(twin, bands)
    st.dataframe(table, hide_index=True, key="band_table")
    st.caption(
        "calibration: coverage on the windows the band was fitted on; held-out check: the band "
        "fitted on the later windows alone, scored on the earlier ones; live: the last "
        f"{MEMORY} outcomes per step (the twin's forecasts of the recent past under the MV moves "
        "that followed); band scale: the adaptive band against the calibrated one, widened after "
        "misses and narrowed after hits (adaptive conformal inference); adaptive level: the "
        "calibration quantile level the adaptive band now stands at. Empty: not known (a model "
        "saved before these were recorded, or no outcomes yet)."
    )
    low = table.filter(pl.col("live, calibrated band [%]") < 80.0)
    for row in low.iter_rows(named=True):
        st.markdown(
            f":orange-background[the calibrated band of {row['tag']} covered only "
            f"{row['live, calibrated band [%]']:.0f} % of recent outcomes: the adaptive band is "
            f"{row['band scale [x]']:.2f} times as wide]"
        )


def main() -> None:
    cfg = page.open_page("Model", no_model=NO_MODEL)
    if cfg is None or cfg.model is None:
        return
    twin = data.load_twin(str(cfg.model))
    files = data.model_files(cfg.model)
    metrics = files["metrics"] or twin.metrics
    st.caption(
        f"twin of plant {twin.spec.name} from `{cfg.model}`: window {twin.window}, "
        f"horizon {twin.horizon} samples of {twin.spec.sample_period:g} s"
    )
    live_health(cfg)
    bands_per_tag(cfg)
    st.markdown("**Validation** (held-out split of the training data; NRMSE = RMSE / std)")
    if metrics.get("nrmse"):
        st.dataframe(validation_table(metrics), hide_index=True)
        st.caption(f"band coverage, all steps: {metrics.get('coverage_all', float('nan')):.1%}")
    else:
        st.caption("the model folder holds no validation metrics")
    evaluation(files["report"])
    training(metrics, files["config"])


main()
