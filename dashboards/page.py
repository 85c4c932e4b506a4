"""What the pages share: the opening (title, and a note in place of the page when the model or
the historian it needs is missing) and the pair of CSV / JSON download buttons."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TypeVar

import streamlit as st

from dashboards import auth, data, style
from twin.errors import TwinError
from twin.spec import PlantSpec

NO_HISTORIAN = "No historian: start the app with --historian DIR."
NO_SPEC = "No plant spec: start the app with --model MODEL or --spec SPEC."
T = TypeVar("T")


def open_page(
    title: str, *, no_model: str | None = None, historian: bool = False
) -> data.AppConfig | None:
    """The app's configuration after the page's title; None (with a note shown) when it lacks
    what the page needs: a model (``no_model`` is then the note) or a historian folder."""
    cfg = data.app_config()
    st.subheader(title)
    if no_model is not None and cfg.model is None:
        style.note(no_model)
        return None
    if historian and (cfg.historian is None or not cfg.historian.is_dir()):
        style.note(NO_HISTORIAN)
        return None
    return cfg


def open_plant_page(title: str) -> tuple[data.AppConfig, PlantSpec] | None:
    """The app's configuration and the plant's spec (read without loading the twin) after the
    page's title (``{plant}`` in it: the plant's name); None, with a note shown, when there is
    no spec or no historian folder."""
    cfg = data.app_config()
    try:
        spec = data.data_spec(cfg)
    except TwinError as exc:
        st.error(str(exc))
        return None
    st.subheader(title.format(plant=spec.name if spec is not None else ""))
    if spec is None:
        style.note(NO_SPEC)
        return None
    if cfg.historian is None:
        style.note(NO_HISTORIAN)
        return None
    if not cfg.historian.is_dir():
        st.error(f"historian folder {cfg.historian} does not exist")
        return None
    return cfg, spec


def download_pair(content: Callable[[str], bytes], stem: str, key: str) -> None:
    """ "Download CSV" and "Download JSON" side by side; ``content(suffix)`` makes each file.

    Exports are an engineer's: for other roles the buttons are replaced by the reason."""
    if not auth.can("export"):
        st.caption(f"downloads: {auth.why_not('export')}")
        return
    left, right = st.columns(2)
    for column, suffix, mime in ((left, ".csv", "text/csv"), (right, ".json", "application/json")):
        column.download_button(
            f"Download {suffix[1:].upper()}",
            content(suffix),
            f"{stem}{suffix}",
            mime,
            key=f"{key}_{suffix[1:]}",
            on_click="ignore",
        )


def paged(items: Sequence[T], key: str, per_page: int) -> list[T]:
    """The ``items`` of the page chosen by a "Page" control (``key``), ``per_page`` at most;
    all of them, with no control, when they fit on one page."""
    pages = math.ceil(len(items) / per_page)
    if pages <= 1:
        return list(items)
    if st.session_state.get(key) not in range(1, pages + 1):
        st.session_state[key] = 1
    number = st.segmented_control("Page", list(range(1, pages + 1)), key=key) or 1
    first = (number - 1) * per_page
    st.caption(
        f"{len(items)} tags, {per_page} panels per page: page {number} of {pages} "
        f"shows tags {first + 1} to {min(first + per_page, len(items))}"
    )
    return list(items[first : first + per_page])
