"""What the app reads, cached: its settings, the historian, the twin, recommendations, reports.

The app only reads files: the historian folder written by ``twin collect`` / ``twin run`` and
a saved twin. It never opens an OPC-UA session of its own.

Settings come from ``streamlit run dashboards/app.py -- --historian DIR --model MODEL ...``
or, for each one not given there, from the environment (:data:`ENV`).

Caching: a :class:`~twin.store.historian.Historian`, a twin and a spec are shared by every session
(``st.cache_resource``); frames are cached (``st.cache_data``) under the folder's change
stamp (:func:`stamp`: the modification time of the newest day folder, which changes whenever
a file is added there), so eight sessions refreshing every two seconds read the Parquet files
about once per collector flush between them.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl
import streamlit as st

from twin.spec import PlantSpec, spec_from_arg
from twin.store.historian import Historian
from twin.store.liveness import is_liveness, liveness_tags

if TYPE_CHECKING:
    from twin.control.recommendation import Recommendation
    from twin.model.twin import Twin

log = logging.getLogger(__name__)

#: environment variables read when the command line does not give a setting
ENV = {
    "historian": "TWIN_HISTORIAN",
    "model": "TWIN_MODEL",
    "spec": "TWIN_SPEC",
    "refresh": "TWIN_REFRESH_S",
    "approve": "TWIN_APPROVE",
}
DEFAULT_REFRESH_S = 2.0  # a browser redraws the trends in time on a busy 2-core machine
APP_SCRIPT = "app.py"


@dataclass(frozen=True)
class AppConfig:
    """The app's settings."""

    historian: Path | None
    """historian folder (written by ``twin collect`` / ``twin run``)"""
    model: Path | None
    """saved twin folder; None: the model pages say that no model is loaded"""
    spec: str | None
    """plant spec (file or built-in name) when no model gives one"""
    refresh_s: float = DEFAULT_REFRESH_S
    """Plant page refresh interval, 1 to 5 s"""
    approve: bool = False
    """write-back approval mode: the Recommendations page shows an Approve button"""


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The app's own arguments (those after ``--`` on the ``streamlit run`` line)."""
    p = argparse.ArgumentParser(prog="dashboards/app.py", add_help=False)
    p.add_argument("--historian")
    p.add_argument("--model")
    p.add_argument("--spec")
    p.add_argument("--refresh", type=float)
    p.add_argument("--approve", action="store_true", default=None)
    args, _ = p.parse_known_args(argv)
    return args


def app_config() -> AppConfig:
    """Settings from the command line, else the environment."""
    # only parse argv when it is the app's: under AppTest it is pytest's command line
    own = Path(sys.argv[0]).name == APP_SCRIPT if sys.argv else False
    args = parse_args(sys.argv[1:]) if own else argparse.Namespace()

    def get(name: str) -> str | None:
        value = getattr(args, name, None)
        return str(value) if value is not None else os.environ.get(ENV[name]) or None

    refresh = float(get("refresh") or DEFAULT_REFRESH_S)
    approve = (get("approve") or "").lower() in ("1", "true", "yes", "on")
    historian, model = get("historian"), get("model")
    return AppConfig(
        historian=Path(historian) if historian else None,
        model=Path(model) if model else None,
        spec=get("spec"),
        refresh_s=min(5.0, max(1.0, refresh)),
        approve=approve,
    )


# --- shared resources ---------------------------------------------------------------------


@st.cache_resource(show_spinner=False)
def historian(root: str) -> tuple[Historian, threading.Lock]:
    """The shared reader of ``root`` and a lock: reads of one store run one at a time."""
    return Historian(root, auto_compact_files=0), threading.Lock()


@st.cache_resource(show_spinner="loading the twin ...")
def load_twin(path: str) -> Twin:
    """The twin saved in ``path`` (loaded once per app process: sessions that ask while it loads
    wait for that one load). Fast once :func:`preload` has imported its code."""
    torch = import_model_code()
    from twin.model.twin import Twin

    torch.set_num_threads(1)  # the app shares the machine with the collector and the loop
    return Twin.load(path)


def import_model_code() -> Any:
    """Import torch and the twin's code, the controller's (scipy.optimize) with it: seconds, after
    which a twin's weights load in milliseconds and the What-if page's first run waits on none."""
    import torch

    import twin.control.whatif
    import twin.model.health
    import twin.model.twin  # noqa: F401

    return torch


_preloaded = threading.Event()
PRELOAD_DELAY_S = 1.0
"""how long :func:`preload` waits before it imports, so that the page that started it paints"""


def preload(cfg: AppConfig) -> None:
    """Import the twin's code (torch) in a background thread, once per process, when a model
    is configured: a page that shows data only must not wait for it, and a page that needs the
    twin later then loads it in milliseconds. Idempotent and cheap: call it on every run."""
    if cfg.model is None or _preloaded.is_set():
        return
    _preloaded.set()
    threading.Thread(target=_preload, name="twin-preload", daemon=True).start()


def _preload() -> None:
    import time

    time.sleep(PRELOAD_DELAY_S)
    t0 = time.perf_counter()
    import_model_code()
    log.info("imported the twin's code in %.1f s", time.perf_counter() - t0)


@st.cache_resource(show_spinner=False)
def _cached_spec(source: str, mtime_ns: int) -> PlantSpec:
    return spec_from_arg(source)


def _spec(source: str) -> PlantSpec:
    """The spec of a file or built-in plant, read again when the file changes."""
    try:
        mtime_ns = Path(source).stat().st_mtime_ns
    except OSError:  # a built-in plant's name, or a file spec_from_arg will name as missing
        mtime_ns = 0
    return _cached_spec(source, mtime_ns)


def plant_spec(cfg: AppConfig) -> PlantSpec | None:
    """The plant spec: the model's if a model is given, else ``cfg.spec``; None without both.

    The model's is read from its folder's ``spec.toml`` (the spec it was trained for, what
    :meth:`Twin.load <twin.model.twin.Twin.load>` returns), without loading the twin; its code
    is imported in the background (:func:`preload`).
    """
    if cfg.model is not None:
        saved = cfg.model / "spec.toml"
        if not saved.is_file():  # not a saved twin: load_twin says what is wrong
            return load_twin(str(cfg.model)).spec
        preload(cfg)
        return _spec(str(saved))
    if cfg.spec:
        return _spec(cfg.spec)
    return None


def data_spec(cfg: AppConfig) -> PlantSpec | None:
    """:func:`plant_spec` without loading the twin (its folder's ``spec.toml``, the spec it was
    trained for): what a page that only shows data needs for a fast first paint."""
    saved = cfg.model / "spec.toml" if cfg.model is not None else None
    if saved is not None and saved.is_file():
        return _spec(str(saved))
    return plant_spec(cfg)


# --- historian reads ----------------------------------------------------------------------


def stamp(root: Path) -> tuple[str, int]:
    """A cheap change stamp of the historian: newest day folder and its modification time."""
    try:
        days = sorted(e.name for e in os.scandir(root) if e.name.startswith("day="))
    except FileNotFoundError:
        return ("", 0)
    if not days:
        return ("", 0)
    return (days[-1], (root / days[-1]).stat().st_mtime_ns)


@st.cache_data(ttl=60, max_entries=16, show_spinner=False)
def newest_sample(root: str, tags: tuple[str, ...], version: Any) -> datetime | None:
    """Time of the newest sample of ``tags`` (None: the historian is empty).

    ``version`` (from :func:`stamp`) is part of the cache key: a new file invalidates it.
    """
    if not version[0]:
        return None
    day = datetime.fromisoformat(version[0].removeprefix("day=")).replace(tzinfo=UTC)
    hist, lock = historian(root)
    for attempt in range(3):  # a compaction may replace the files between listing and reading
        try:
            with lock:
                scan = hist.scan(list(tags), day - timedelta(days=1))
                ts = scan.select(pl.col("ts").max()).collect()
            break
        except FileNotFoundError:
            if attempt == 2:
                raise
    value = ts.item()
    return value if isinstance(value, datetime) else None


@st.cache_data(ttl=60, max_entries=8, show_spinner=False)  # each may hold 10^5+ rows
def recent_rows(root: str, tags: tuple[str, ...], minutes: float, version: Any) -> pl.DataFrame:
    """Long rows (tag, ts, value, quality) of ``tags`` over the last ``minutes``, sorted by ts.

    The window ends now, or at the newest sample when that is older than the window (replayed
    or stopped data).
    """
    newest = newest_sample(root, tags, version)
    now = datetime.now(UTC)
    end = newest if newest is not None and now - newest > timedelta(minutes=minutes) else now
    hist, lock = historian(root)
    with lock:
        rows = hist.read(list(tags), end - timedelta(minutes=minutes))
    return rows.select("tag", "ts", "value", "quality").sort("ts")


@st.cache_data(ttl=120, max_entries=16, show_spinner=False)
def history_frame(
    root: str, spec_key: str, samples: int, version: Any, _spec: PlantSpec
) -> pl.DataFrame:
    """The last ``samples`` grid points (wide frame on the spec's period) up to the newest sample.

    The grid is placed so that its last point is the newest sample's time: a forecast made
    from it starts where the data ends. ``spec_key`` names ``_spec`` in the cache key.
    """
    newest = newest_sample(root, tuple(_spec.tag_names), version)
    hist, lock = historian(root)
    if newest is None:
        now = datetime.now(UTC)
        return hist.frame(_spec, now, now)
    period = timedelta(seconds=_spec.sample_period)
    with lock:
        return hist.frame(_spec, newest - period * (samples - 1), newest + period / 2)


def plant_tags(spec: PlantSpec) -> tuple[str, ...]:
    """The spec's tags and the collector's liveness marks that may cover them (one read)."""
    return (*spec.tag_names, *liveness_tags(spec.tag_names))


def split_marks(rows: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Long ``rows`` read with :func:`plant_tags`: (samples, liveness marks)."""
    marks = is_liveness(pl.col("tag"))
    return rows.filter(~marks), rows.filter(marks)


def oldest_sample(root: str, tags: tuple[str, ...]) -> datetime | None:
    """Time of the oldest sample of ``tags`` (None: none), read from the oldest day folder."""
    try:
        first = min((e.name for e in os.scandir(root) if e.name.startswith("day=")), default="")
    except FileNotFoundError:
        return None
    return _oldest(root, tags, first) if first else None


@st.cache_data(ttl=3600, max_entries=16, show_spinner=False)
def _oldest(root: str, tags: tuple[str, ...], first_day: str) -> datetime | None:
    day = datetime.fromisoformat(first_day.removeprefix("day=")).replace(tzinfo=UTC)
    hist, lock = historian(root)
    with lock:
        ts = hist.scan(list(tags), day, day + timedelta(days=1)).select(pl.col("ts").min())
        value = ts.collect().item()
    return value if isinstance(value, datetime) else None


@st.cache_data(ttl=600, max_entries=8, show_spinner=False)
def rows_until(
    root: str, tags: tuple[str, ...], end: datetime, minutes: float, version: Any
) -> pl.DataFrame:
    """Long rows (tag, ts, value, quality) of ``tags`` over ``(end - minutes, end]``, by ts:
    :func:`recent_rows` as of an instant of the past (history mode)."""
    hist, lock = historian(root)
    with lock:
        rows = hist.read(
            list(tags), end - timedelta(minutes=minutes), end + timedelta(microseconds=1)
        )
    return rows.select("tag", "ts", "value", "quality").sort("ts")


@st.cache_data(ttl=300, max_entries=8, show_spinner=False)
def history_frame_at(
    root: str, spec_key: str, samples: int, end: datetime, version: Any, _spec: PlantSpec
) -> pl.DataFrame:
    """:func:`history_frame` ending at the instant ``end`` (history mode: the time cursor)."""
    period = timedelta(seconds=_spec.sample_period)
    hist, lock = historian(root)
    with lock:
        return hist.frame(_spec, end - period * (samples - 1), end + period / 2)


def latest_values(rows: pl.DataFrame) -> pl.DataFrame:
    """The newest row of each tag (tag, ts, value, quality) of long ``rows``."""
    return rows.sort("ts").group_by("tag", maintain_order=True).last()


# --- recommendations and reports ----------------------------------------------------------


def recommendations_stamp(root: Path) -> tuple[str, int, int]:
    """Change stamp of the recommendation log: its newest file's name, mtime and size."""
    folder = root / "recommendations"
    try:
        files = sorted(p for p in folder.iterdir() if p.suffix == ".jsonl")
    except FileNotFoundError:
        return ("", 0, 0)
    if not files:
        return ("", 0, 0)
    st_ = files[-1].stat()
    return (files[-1].name, st_.st_mtime_ns, st_.st_size)


@st.cache_data(ttl=300, max_entries=8, show_spinner=False)
def latest_recommendation_dict(
    root: str, version: Any, at: datetime | None = None
) -> dict[str, Any] | None:
    """The newest recommendation ``twin run`` logged (at or before ``at``), as its dict (None:
    none yet)."""
    from twin.control.recommendation_log import RecommendationLog

    rec = RecommendationLog(root).latest(at)
    return rec.to_dict() if rec is not None else None


def setpoints_in_force(
    cfg: AppConfig, spec: PlantSpec, at: datetime | None = None
) -> dict[str, float]:
    """CV setpoints in force (at the instant ``at`` in history): those of the controller's last
    recommendation (``twin run``) then, else the spec's."""
    out = {t.name: float(t.setpoint) for t in spec.cvs if t.setpoint is not None}
    if cfg.historian is not None:
        version = recommendations_stamp(cfg.historian)
        doc = latest_recommendation_dict(str(cfg.historian), version, at) if version[0] else None
        out.update({str(k): float(v) for k, v in (doc or {}).get("setpoints", {}).items()})
    return out


def latest_recommendation(root: Path) -> Recommendation | None:
    """The newest recommendation in ``root``'s log, or None (no log yet)."""
    from twin.control.recommendation import Recommendation

    version = recommendations_stamp(root)
    doc = latest_recommendation_dict(str(root), version) if version[0] else None
    return Recommendation.from_dict(doc) if doc else None


def model_files(model: Path) -> dict[str, Any]:
    """The model folder's JSON documents: ``metrics``, ``config``, ``report`` (None if absent)."""
    out: dict[str, Any] = {}
    for key, rel in (
        ("metrics", "metrics.json"),
        ("config", "config.json"),
        ("report", "report/report.json"),
    ):
        path = model / rel
        try:
            out[key] = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            out[key] = None
        except (OSError, ValueError) as exc:
            log.warning("cannot read %s: %s", path, exc)
            out[key] = None
    return out
