"""Plant page: live trends of every tag with setpoints and limits, current values, alarms.

Everything live is in one fragment that reruns on its own every ``refresh_s`` seconds (the
rest of the page does not rerun). Each refresh reads only the selected time range, through the
cache shared by every session (:func:`dashboards.data.recent_rows`), and the trends are drawn once
per refresh interval for every session together (:func:`dashboards.trends.shared`).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
import streamlit as st

from dashboards import data, page, style, trends
from dashboards.alarms import AlarmBook, detect
from dashboards.style import ALARM_COLOURS
from twin.spec import PlantSpec

RANGES_MIN = (5, 15, 60, 240)


def setpoints(cfg: data.AppConfig, spec: PlantSpec) -> dict[str, float]:
    """CV setpoints: those the controller used last (``twin run``), else the spec's."""
    out = {t.name: float(t.setpoint) for t in spec.cvs if t.setpoint is not None}
    if cfg.historian is not None:
        out.update(data.latest_setpoints(cfg.historian))
    return out


def values_table(
    spec: PlantSpec, latest: pl.DataFrame, sp: dict[str, float], now: datetime
) -> pl.DataFrame:
    """Current value of each tag with unit, limits, setpoint, quality and age."""
    by_tag = {r["tag"]: r for r in latest.iter_rows(named=True)}
    rows = []
    for t in spec.tags:
        r = by_tag.get(t.name, {})
        ts = r.get("ts")
        rows.append(
            {
                "tag": t.name,
                "role": t.role.upper(),
                "description": t.description,
                "value": r.get("value"),
                "unit": t.unit,
                "lo": t.lo,
                "hi": t.hi,
                "setpoint": sp.get(t.name),
                "quality": str(r.get("quality", "none")),
                "age [s]": round((now - ts).total_seconds(), 1) if ts is not None else None,
            }
        )
    return pl.DataFrame(rows, schema_overrides={"value": pl.Float64, "setpoint": pl.Float64})


def alarm_list(book: AlarmBook) -> None:
    """The alarm list, unacknowledged alarms in colour, each with an Acknowledge button."""
    listing = book.listing()
    st.markdown(f"**Alarms** ({book.unacknowledged} unacknowledged, {len(listing)} listed)")
    if not listing:
        st.caption("no alarms")
        return
    for alarm in listing:
        since = alarm.since.strftime("%H:%M:%S")
        state = "active" if alarm.active else "cleared"
        text = f"**{alarm.kind.upper()}** {alarm.message} — {state}, since {since} UTC"
        left, right = st.columns([6, 1], vertical_alignment="center")
        if alarm.acked:
            left.markdown(f"{text}, acknowledged")
        else:
            colour = ALARM_COLOURS[alarm.kind]
            left.markdown(f":{colour}-background[{text}]" if alarm.active else f":{colour}[{text}]")
            right.button(
                "Acknowledge", key=f"ack:{alarm.key}", on_click=book.acknowledge, args=(alarm.key,)
            )


def metrics(spec: PlantSpec, rows: pl.DataFrame, latest: pl.DataFrame) -> None:
    """A metric per CV and MV: the current value and its change over the last minute."""
    values = {r["tag"]: r for r in latest.iter_rows(named=True)}
    newest = latest.get_column("ts").max() if latest.height else None
    before: dict[str, float | None] = {}
    if isinstance(newest, datetime):  # each tag's last value a minute before the newest sample
        ago = data.latest_values(rows.filter(pl.col("ts") <= newest - timedelta(minutes=1)))
        before = dict(zip(ago.get_column("tag"), ago.get_column("value"), strict=True))
    shown = [*spec.cvs, *spec.mvs]
    for col, tag in zip(st.columns(len(shown)), shown, strict=True):
        row = values.get(tag.name)
        if row is None or row["value"] is None:
            col.metric(style.axis_title(tag.name, tag.unit), "—")
            continue
        old = before.get(tag.name)
        delta = None if old is None else f"{row['value'] - old:+.3g} {tag.unit} /min"
        col.metric(
            style.axis_title(tag.name, tag.unit),
            f"{row['value']:.4g}",
            delta,
            delta_color="off",
            help=tag.description or None,
        )


def live(cfg: data.AppConfig, spec: PlantSpec, minutes: float) -> None:
    """One refresh: read the range, update alarms, draw everything."""
    assert cfg.historian is not None
    now = datetime.now(UTC)
    version = data.stamp(cfg.historian)
    rows = data.recent_rows(str(cfg.historian), tuple(spec.tag_names), float(minutes), version)
    latest = data.latest_values(rows)
    book: AlarmBook = st.session_state.setdefault("alarm_book", AlarmBook())
    book.update(detect(spec, latest, now))
    sp = setpoints(cfg, spec)
    alarm_list(book)  # ISA-101: alarms first, then trends, then the numbers
    newest = latest.get_column("ts").max() if latest.height else None
    stamp = newest.strftime("%H:%M:%S") if isinstance(newest, datetime) else "none"
    updated = f"{now:%H:%M:%S}.{now.microsecond // 100_000}"
    st.caption(f"newest sample {stamp} UTC · updated {updated} UTC · every {cfg.refresh_s:g} s")
    slot = int(now.timestamp() // cfg.refresh_s)
    fig = trends.shared(
        str(cfg.historian), version, float(minutes), tuple(sorted(sp.items())), slot, spec
    )
    st.plotly_chart(fig, key="plant_trends", config={"displaylogo": False})
    metrics(spec, rows, latest)
    st.dataframe(values_table(spec, latest, sp, now), hide_index=True)


def main() -> None:
    cfg = data.app_config()
    spec = data.plant_spec(cfg)
    if spec is None:
        style.note("No plant spec: start the app with --model MODEL or --spec SPEC.")
        return
    st.subheader(f"Plant {spec.name}")
    if cfg.historian is None:
        style.note(page.NO_HISTORIAN)
        return
    if not cfg.historian.is_dir():
        st.error(f"historian folder {cfg.historian} does not exist")
        return
    minutes = (
        st.segmented_control(
            "Time range",
            RANGES_MIN,
            default=15,
            key="plant_minutes",
            format_func=lambda m: f"{m} min",
        )
        or 15
    )
    st.fragment(run_every=cfg.refresh_s)(live)(cfg, spec, minutes)


main()
