"""Trends page: find a tag by name, description, unit or group, pick tags into a trend, and
keep named trend sets per user.

A trend draws, one panel per tag with its own axis and title, the measured value and what is
asked for: the setpoint, the instrument and operating limits, the twin's forecast with its band.
At most :data:`dashboards.charts.MAX_PANELS` panels at once: a longer trend is paged. Trend sets
are kept per signed-in user under ``<historian>/trendsets/`` (:mod:`dashboards.trendsets`).
"""

from __future__ import annotations

import importlib
from datetime import UTC, datetime
from typing import Any

import streamlit as st

from dashboards import charts, data, page, style, trends, trendsets
from dashboards.trendsets import TrendSet, TrendSetError, TrendSets
from twin.errors import TwinError
from twin.model.forecast import Forecast
from twin.spec import PlantSpec

RANGES_MIN = (15, 60, 240, 1440)
RESULTS_SHOWN = 50
TAGS, PICK, MINUTES, SHOW, PAGE = (
    "trend_tags",
    "trend_pick",
    "trend_minutes",
    "trend_show",
    "trend_page",
)
SHOW_LABELS = {"setpoint": "setpoint", "limits": "limits", "forecast": "forecast with band"}


def _modes(name: str) -> Any:
    """``dashboards.modes.<name>`` where it exists (live / history mode), else None."""
    try:
        return getattr(importlib.import_module("dashboards.modes"), name, None)
    except ImportError:
        return None


def label(spec: PlantSpec, name: str) -> str:
    """How a tag reads in the pickers: name, description, unit."""
    tag = spec.tag(name)
    text = f"{name} · {tag.description}" if tag.description else name
    return f"{text} [{tag.unit}]" if tag.unit else text


# --- search -------------------------------------------------------------------------------


def add_picked() -> None:
    """The Add button: the tags picked from the search results join the trend."""
    picked = st.session_state.get(PICK) or []
    now = list(st.session_state.get(TAGS) or [])
    st.session_state[TAGS] = now + [t for t in picked if t not in now][: trendsets.MAX_TAGS]
    st.session_state[PICK] = []


def search_box(spec: PlantSpec) -> None:
    """Search field, the matching tags (role, unit, group), and a picker to add them."""
    query = st.text_input(
        "Find a tag",
        key="trend_query",
        placeholder="name, description, unit or group",
        help="case-insensitive; part of a word is enough",
    )
    if not query.strip():
        st.caption(f"{len(spec.tags)} tags: type part of a name, description, unit or group")
        return
    found = trendsets.search(spec, query)
    if not found:
        st.caption(f"no tag matches {query.strip()!r}")
        return
    shown = found[:RESULTS_SHOWN]
    more = f"; the first {RESULTS_SHOWN} listed" if len(found) > RESULTS_SHOWN else ""
    st.caption(f"{len(found)} of {len(spec.tags)} tags match {query.strip()!r}{more}")
    st.dataframe(
        trendsets.tag_table(shown),
        hide_index=True,
        height=min(36 * (len(shown) + 1) + 2, 300),
        key="trend_results",
    )
    left, right = st.columns([5, 1], vertical_alignment="bottom")
    left.multiselect(
        "Add to the trend",
        [t.name for t in shown],
        key=PICK,
        format_func=lambda n: label(spec, n),
        placeholder="pick from the results",
    )
    right.button(
        "Add", key="trend_add", on_click=add_picked, disabled=not st.session_state.get(PICK)
    )


# --- trend sets ---------------------------------------------------------------------------


def open_set(store: TrendSets, name: str, spec: PlantSpec) -> None:
    """The Open button: the saved set's tags and options become the trend."""
    try:
        saved = store.get(name)
    except TrendSetError as exc:
        st.session_state["trend_msg"] = ("error", str(exc))
        return
    known = [t for t in saved.tags if t in spec.tag_names]
    st.session_state[TAGS] = known
    st.session_state[SHOW] = list(saved.show)
    st.session_state[MINUTES] = min(RANGES_MIN, key=lambda m: abs(m - saved.minutes))
    st.session_state[PAGE] = 1
    gone = [t for t in saved.tags if t not in known]
    note = f"; not in this plant, left out: {', '.join(gone)}" if gone else ""
    st.session_state["trend_msg"] = ("ok", f"opened {saved.name!r} ({len(known)} tags){note}")


def save_set(store: TrendSets) -> None:
    """The Save button: the trend as it is, under the name typed."""
    try:
        store.save(
            TrendSet(
                name=str(st.session_state.get("trend_set_name") or ""),
                tags=tuple(st.session_state.get(TAGS) or ()),
                minutes=float(st.session_state.get(MINUTES) or 60),
                show=tuple(st.session_state.get(SHOW) or ()),
            )
        )
    except (TrendSetError, OSError) as exc:
        st.session_state["trend_msg"] = ("error", f"not saved: {exc}")
        return
    st.session_state["trend_msg"] = ("ok", f"saved {st.session_state['trend_set_name'].strip()!r}")


def delete_set(store: TrendSets, name: str) -> None:
    try:
        gone = store.delete(name)
    except (TrendSetError, OSError) as exc:
        st.session_state["trend_msg"] = ("error", f"not deleted: {exc}")
        return
    st.session_state["trend_msg"] = ("ok", f"deleted {name!r}" if gone else f"no set {name!r}")


def set_aside(store: TrendSets) -> None:
    aside = store.set_aside()
    st.session_state["trend_msg"] = ("ok", f"the unreadable file is kept as {aside}")


def trend_sets(cfg: data.AppConfig, spec: PlantSpec) -> None:
    """Open, save and delete this user's named trend sets."""
    assert cfg.historian is not None
    user = trendsets.user_name()
    box = st.expander("Trend sets" + (f" of {user}" if user else ""), expanded=False)
    if user is None:
        box.caption("sign in to keep trend sets")
        return
    store = TrendSets(cfg.historian, user)
    try:
        names = store.names()
    except TrendSetError as exc:
        box.error(str(exc))
        box.button("Set the file aside", key="trend_set_aside", on_click=set_aside, args=(store,))
        names = None
    if names:
        left, mid, right = box.columns([4, 1, 1], vertical_alignment="bottom")
        chosen = left.selectbox("Saved sets", names, key="trend_set_open")
        mid.button("Open", key="trend_open", on_click=open_set, args=(store, chosen, spec))
        right.button("Delete", key="trend_delete", on_click=delete_set, args=(store, chosen))
    elif names is not None:
        box.caption("no saved trend set yet")
    if names is not None:
        left, right = box.columns([5, 1], vertical_alignment="bottom")
        left.text_input("Save the trend as", key="trend_set_name", max_chars=trendsets.MAX_NAME)
        right.button(
            "Save",
            key="trend_save",
            on_click=save_set,
            args=(store,),
            disabled=not st.session_state.get(TAGS),
        )
    msg = st.session_state.pop("trend_msg", None)
    if msg is not None:
        (box.error if msg[0] == "error" else box.caption)(msg[1])


# --- the trend ----------------------------------------------------------------------------


def forecast_for(cfg: data.AppConfig, show: list[str], cursor: datetime | None) -> Forecast | None:
    """The twin's hold-MV forecast when it is asked for and can be made (else a note, None)."""
    if "forecast" not in show:
        return None
    if cfg.model is None:
        st.caption("no forecast: no twin loaded (start the app with --model MODEL)")
        return None
    if cursor is not None:
        st.caption("no forecast from the time cursor here: the Forecast page makes one")
        return None
    assert cfg.historian is not None
    try:
        return trends.hold_forecast(str(cfg.model), str(cfg.historian), data.stamp(cfg.historian))
    except TwinError as exc:
        st.caption(f"no forecast: {exc}")
        return None


def draw(
    cfg: data.AppConfig, spec: PlantSpec, names: list[str], minutes: float, show: list[str]
) -> None:
    """The panels of ``names``: one read of their rows, the forecast if asked for."""
    assert cfg.historian is not None
    root, version = str(cfg.historian), data.stamp(cfg.historian)
    as_of, rows_until = _modes("as_of"), getattr(data, "rows_until", None)
    cursor = as_of() if as_of is not None else None
    if cursor is not None and rows_until is not None:
        rows, now = rows_until(root, tuple(names), cursor, minutes, version), cursor
    else:
        cursor = None
        rows, now = data.recent_rows(root, tuple(names), minutes, version), datetime.now(UTC)
    fc = forecast_for(cfg, show, cursor)
    fig = charts.tag_panels(
        [spec.tag(n) for n in names],
        rows,
        trends.edge(rows, now, minutes),
        setpoints=data.setpoints_in_force(cfg, spec, cursor),
        forecast=fc,
        show=show,
    )
    st.plotly_chart(fig, key="trend_chart", config={"displaylogo": False})


def main() -> None:
    opened = page.open_plant_page("Trends")
    if opened is None:
        return
    cfg, spec = opened
    trend_sets(cfg, spec)
    search_box(spec)
    known = [t for t in st.session_state.get(TAGS) or [] if t in spec.tag_names]
    st.session_state[TAGS] = known  # a tag of another plant's set does not break the picker
    names = st.multiselect(
        "Trend",
        spec.tag_names,
        key=TAGS,
        format_func=lambda n: label(spec, n),
        max_selections=trendsets.MAX_TAGS,
        placeholder="tags to trend: find them above, or type here",
    )
    drawable = [s for s in charts.SHOW if s != "forecast" or cfg.model is not None]
    st.session_state.setdefault(MINUTES, 60)  # defaults here, not on the widgets: a set opened
    st.session_state.setdefault(SHOW, drawable)  # sets them through the session state
    st.session_state[SHOW] = [s for s in st.session_state[SHOW] if s in drawable]
    left, right = st.columns(2)
    minutes = (
        left.segmented_control(
            "History shown",
            RANGES_MIN,
            key=MINUTES,
            format_func=lambda m: f"{m // 60} h" if m >= 60 else f"{m} min",
        )
        or 60
    )
    show = right.pills(
        "Draw",
        drawable,
        selection_mode="multi",
        key=SHOW,
        format_func=lambda s: SHOW_LABELS[s],
    )
    if not names:
        style.note("Find a tag above and add it, or open a saved trend set.")
        return
    shown = page.paged(names, PAGE, charts.MAX_PANELS)
    live = _modes("session_mode")
    refresh = cfg.refresh_s if live is None or live(cfg, spec).live else None
    st.fragment(run_every=refresh)(draw)(cfg, spec, shown, float(minutes), list(show or []))


main()
