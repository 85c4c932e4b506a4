"""Plant page: alarms, trends of the plant's tags with setpoints and limits, current values,
history. A plant with more tags than fit in one view (:data:`dashboards.charts.MAX_PANELS`) shows
one unit (the spec's ``group``) or all tags, a page at a time.

Live (a collector writes the historian): everything is in one fragment that reruns on its own
every ``refresh_s`` seconds (the rest of the page does not rerun). Each refresh reads the
selected time range once, samples and liveness marks together, through the cache shared by
every session (:func:`dashboards.data.recent_rows`); the trends are drawn once per refresh
interval for every session together (:func:`figure`).

History (no collector writes it, :mod:`dashboards.modes`): a banner says so, a time cursor
chooses the instant shown (stored in ``st.session_state["as_of"]`` for the other pages), and
there is no staleness alarm; the fragment only rechecks now and then whether a collector started.

Alarms (:mod:`dashboards.alarms`): by priority, floods collapsed, acknowledge (one or all) and
shelve by the signed-in user, and the last events of the alarm log.
"""

from __future__ import annotations

import getpass
import importlib
from datetime import UTC, datetime, timedelta
from typing import Any

import plotly.graph_objects as go
import polars as pl
import streamlit as st

from dashboards import alarms, charts, data, modes, page, style, trends
from dashboards.alarm_book import AlarmLog
from dashboards.modes import human_duration
from twin.spec import PlantSpec, Tag

# (comments, not docstrings: Streamlit's magic would draw a bare string of a page script)
RANGES_MIN = (5, 15, 60, 240)
SHELVE_FOR_MIN = (15, 60, 480, 1440)  # how long an alarm may be shelved, in minutes
MAX_LISTED = 20  # alarm rows drawn at most (the rest is counted)
HISTORY_EVENTS = 50  # alarm log events shown
HISTORY_RECHECK_S = 30.0  # history mode: how often to check whether a collector started
ALL_TAGS = "all tags"
METRICS_PER_ROW = 6


def actor(action: str = "acknowledge") -> tuple[str, str | None]:
    """The signed-in user's name, and why they may not do ``action`` (None: they may).

    Without the login module (:mod:`dashboards.auth`) the local user is an engineer."""
    try:
        auth = importlib.import_module("dashboards.auth")
    except ModuleNotFoundError as exc:
        if exc.name != "dashboards.auth":
            raise
        return getpass.getuser(), None
    user = auth.current_user()
    if auth.can(action):
        return str(user.name), None
    return (str(user.name) if user else ""), auth.why_not(action) or f"not allowed: {action}"


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
                "age": human_duration((now - ts).total_seconds()) if ts is not None else None,
            }
        )
    return pl.DataFrame(rows, schema_overrides={"value": pl.Float64, "setpoint": pl.Float64})


def _line(alarm: alarms.Alarm, now: datetime) -> str:
    state = "active" if alarm.active else "cleared"
    ago = human_duration((now - alarm.since).total_seconds())
    text = f"**{alarm.priority.upper()}** {alarm.kind.upper()} {alarm.message} — {state}, raised {ago} ago"
    if alarm.acked:
        return f"{text}, acknowledged"
    colour = alarms.PRIORITY_COLOURS[alarm.priority]
    return f":{colour}-background[{text}]" if alarm.active else f":{colour}[{text}]"


def _ack(book: alarms.AlarmBook, key: str, user: str) -> None:
    book.acknowledge(key, user)


def _ack_all(book: alarms.AlarmBook, user: str) -> None:
    book.acknowledge_all(user)


def alarm_panel(book: alarms.AlarmBook, now: datetime, live: bool) -> None:
    """Live: the alarm list by priority with Acknowledge (each, all) and Shelve. History: the
    abnormal states at the cursor, nothing to acknowledge."""
    listing, s = book.listing(now), alarms.summary(book, now)
    counts = ", ".join(f"{s.counts[p]} {p}" for p in alarms.PRIORITIES)
    if not live:
        st.markdown(f"**Abnormal at {now:%Y-%m-%d %H:%M:%S} UTC** ({counts})")
    else:
        shelved = f", {s.shelved} shelved" if s.shelved else ""
        st.markdown(
            f"**Alarms** ({s.unacknowledged} unacknowledged, {len(listing)} listed: "
            f"{counts}{shelved})"
        )
    if not listing:
        st.caption("no alarms")
    user, why_not = actor("acknowledge")
    if live and listing:
        st.button(
            f"Acknowledge all ({s.unacknowledged})",
            key="ack_all",
            disabled=why_not is not None or not s.unacknowledged,
            on_click=_ack_all,
            args=(book, user),
            help=why_not,
        )
    for alarm in listing[:MAX_LISTED]:
        if not live:
            st.markdown(_line(alarm, now))
            continue
        left, right = st.columns([6, 1], vertical_alignment="center")
        left.markdown(_line(alarm, now))
        if not alarm.acked:
            right.button(
                "Acknowledge",
                key=f"ack:{alarm.key}",
                disabled=why_not is not None,
                on_click=_ack,
                args=(book, alarm.key, user),
                help=why_not,
            )
    if len(listing) > MAX_LISTED:
        st.caption(f"and {len(listing) - MAX_LISTED} more")
    if live:
        shelving(book, listing, now, user, why_not)


def _shelve(book: alarms.AlarmBook, user: str) -> None:
    """The Shelve button's callback: shelve the chosen alarm, or say what is missing."""
    key, reason = st.session_state.get("shelve_key"), st.session_state.get("shelve_reason", "")
    minutes = st.session_state.get("shelve_for", SHELVE_FOR_MIN[0])
    if not key or not str(reason).strip():
        st.session_state["shelve_error"] = "choose an alarm and give a reason to shelve it"
        return
    until = datetime.now(UTC) + timedelta(minutes=minutes)
    book.shelve(key, user, str(reason).strip(), until)
    st.session_state.pop("shelve_error", None)
    st.session_state["shelve_reason"] = ""  # the next shelve asks for its own reason


def shelving(
    book: alarms.AlarmBook,
    listing: list[alarms.Alarm],
    now: datetime,
    user: str,
    why_not: str | None,
) -> None:
    """Shelve an alarm for a while with a reason; the shelved ones, back when they expire."""
    hidden = book.shelved(now)
    with st.expander(f"Shelve an alarm ({len(hidden)} shelved)"):
        for alarm in hidden:
            back = human_duration(((alarm.shelved_until or now) - now).total_seconds())
            st.caption(
                f"**{alarm.priority.upper()}** {alarm.message}: shelved by {alarm.shelved_by or '?'}"
                f" ({alarm.shelve_reason}), back in {back}"
            )
        if not listing:
            return
        labels = {a.key: f"{a.priority.upper()} {a.message}" for a in listing}
        with st.form("shelve_form", border=False):
            st.selectbox("alarm", list(labels), format_func=labels.__getitem__, key="shelve_key")
            st.text_input("reason", key="shelve_reason")
            st.selectbox(
                "for",
                SHELVE_FOR_MIN,
                key="shelve_for",
                format_func=lambda m: human_duration(60 * m),
            )
            st.form_submit_button(
                "Shelve",
                key="shelve",
                disabled=why_not is not None,
                on_click=_shelve,
                args=(book, user),
                help=why_not,
            )
        if "shelve_error" in st.session_state:
            st.error(st.session_state["shelve_error"])


@st.cache_data(ttl=60, max_entries=8, show_spinner=False)
def _events(root: str, version: tuple[str, int]) -> pl.DataFrame:
    events = AlarmLog(root).tail(HISTORY_EVENTS)[::-1]
    cols = ("event", "priority", "tag", "kind", "message", "user", "reason")
    table = {"time (UTC)": [f"{e.ts:%Y-%m-%d %H:%M:%S}" for e in events]}
    table |= {c: [str(getattr(e, c)) for e in events] for c in cols}
    table["until (UTC)"] = [f"{e.until:%Y-%m-%d %H:%M}" if e.until else "" for e in events]
    return pl.DataFrame(table)


def alarm_history(root: str) -> None:
    """The last :data:`HISTORY_EVENTS` events of the alarm log, newest first."""
    files = AlarmLog(root).files()
    version = (files[-1].name, files[-1].stat().st_size) if files else ("", 0)
    table = _events(root, version)
    st.markdown(f"**Alarm history** (last {HISTORY_EVENTS} events, newest first)")
    if table.is_empty():
        st.caption("no alarm events logged")
    else:
        st.dataframe(table, hide_index=True, key="alarm_history")


def metrics(tags: list[Tag], rows: pl.DataFrame, latest: pl.DataFrame) -> None:
    """A metric per CV and MV among ``tags``: the current value and its change over the last
    minute, :data:`METRICS_PER_ROW` to a row."""
    values = {r["tag"]: r for r in latest.iter_rows(named=True)}
    newest = latest.get_column("ts").max() if latest.height else None
    before: dict[str, float | None] = {}
    if isinstance(newest, datetime):  # each tag's last value a minute before the newest sample
        ago = data.latest_values(rows.filter(pl.col("ts") <= newest - timedelta(minutes=1)))
        before = dict(zip(ago.get_column("tag"), ago.get_column("value"), strict=True))
    shown = [t for t in tags if t.role in ("cv", "mv")]
    cols = [c for i in range(0, len(shown), METRICS_PER_ROW) for c in st.columns(METRICS_PER_ROW)]
    for col, tag in zip(cols, shown, strict=False):
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


def read(
    root: str, spec: PlantSpec, minutes: float, at: datetime | None, version: Any
) -> pl.DataFrame:
    """The rows shown: live, the last ``minutes`` with liveness marks; history, up to ``at``."""
    if at is None:
        return data.recent_rows(root, data.plant_tags(spec), minutes, version)
    return data.rows_until(root, tuple(spec.tag_names), at, minutes, version)


@st.cache_resource(ttl=60, max_entries=32, show_spinner=False)
def figure(
    root: str,
    version: Any,
    minutes: float,
    setpoints: tuple[tuple[str, float], ...],
    slot: int,
    at: datetime | None,
    spec_key: str,
    names: tuple[str, ...],
    _spec: PlantSpec,
) -> go.Figure:
    """The trends of the tags ``names`` for the refresh ``slot`` (live) or at the instant ``at``
    (history), shared by every session; returned as is (callers only draw it)."""
    samples, _ = data.split_marks(read(root, _spec, minutes, at, version))
    tags = [_spec.tag(n) for n in names]
    return trends.build(_spec, samples, dict(setpoints), at or datetime.now(UTC), minutes, tags)


def chosen_tags(spec: PlantSpec) -> list[Tag]:
    """The tags to trend: all (CVs, MVs, DVs) when they fit in one view; else those of the unit
    picked (the spec's groups, or all tags), a page at a time."""
    every = [*spec.cvs, *spec.mvs, *spec.dvs]
    if len(every) <= charts.MAX_PANELS:
        return every
    groups = list(dict.fromkeys(t.group for t in every if t.group))
    if groups:
        unit = st.segmented_control("Unit", [ALL_TAGS, *groups], default=ALL_TAGS, key="plant_unit")
        if unit and unit != ALL_TAGS:
            every = [t for t in every if t.group == unit]
    return page.paged(every, "plant_page", charts.MAX_PANELS)


def show(
    cfg: data.AppConfig, spec: PlantSpec, minutes: float, mode: modes.Mode, tags: list[Tag]
) -> None:
    """One refresh: read the range, update alarms, draw everything."""
    assert cfg.historian is not None
    at = None if mode.live else modes.as_of() or mode.end
    if at is not None and modes.mode(cfg, spec).live:
        st.rerun()  # a collector has started writing: the whole page turns live
    now = at or datetime.now(UTC)
    root, version = str(cfg.historian), data.stamp(cfg.historian)
    rows = read(root, spec, float(minutes), at, version)
    samples, _ = data.split_marks(rows)
    latest = data.latest_values(samples)
    book = alarms.refresh(root, spec, rows, now, mode)
    sp = data.setpoints_in_force(cfg, spec, at)
    alarm_panel(book, now, mode.live)  # ISA-101: alarms first, then trends, then the numbers
    newest = latest.get_column("ts").max() if latest.height else None
    if mode.live:
        stamp = newest.strftime("%H:%M:%S") if isinstance(newest, datetime) else "none"
        updated = f"{now:%H:%M:%S}.{now.microsecond // 100_000}"
        st.caption(f"newest sample {stamp} UTC · updated {updated} UTC · every {cfg.refresh_s:g} s")
    else:
        stamp = f"{newest:%Y-%m-%d %H:%M:%S} UTC" if isinstance(newest, datetime) else "none"
        st.caption(f"as of {now:%Y-%m-%d %H:%M:%S} UTC · the last sample before it: {stamp}")
    slot = int(now.timestamp() // cfg.refresh_s) if mode.live else 0
    key = f"{spec.name}:{spec.source}"
    names = tuple(t.name for t in tags)
    fig = figure(
        root, version, float(minutes), tuple(sorted(sp.items())), slot, at, key, names, spec
    )
    st.plotly_chart(fig, key="plant_trends", config={"displaylogo": False})
    metrics(tags, samples, latest)
    st.dataframe(values_table(spec, latest, sp, now), hide_index=True)
    alarm_history(root)


def cursor(mode: modes.Mode, spec: PlantSpec) -> None:
    """History mode: the time cursor over the historian's range (default its end), kept in
    ``st.session_state[modes.AS_OF]`` for the other pages."""
    assert mode.end is not None
    start = mode.start if mode.start is not None and mode.start < mode.end else None
    at = mode.end
    if start is not None:
        at = st.slider(
            "Time cursor (UTC)",
            min_value=start,
            max_value=mode.end,
            value=mode.end,
            step=timedelta(seconds=spec.sample_period),
            format="YYYY-MM-DD HH:mm:ss",
            key="plant_cursor",
        )
    st.session_state[modes.AS_OF] = at


def main() -> None:
    opened = page.open_plant_page("Plant {plant}")
    if opened is None:
        return
    cfg, spec = opened
    mode = modes.session_mode(cfg, spec)
    if not mode.live:
        style.note(f"**history**: {mode.why}")
        cursor(mode, spec)
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
    tags = chosen_tags(spec)
    every = cfg.refresh_s if mode.live else HISTORY_RECHECK_S
    st.fragment(run_every=every)(show)(cfg, spec, minutes, mode, tags)


main()
