"""The Overview and Trends pages, run with Streamlit's AppTest: on the recorded CSTR of
``test_dashboard_pages`` (with its twin and logged recommendations) and on a wide plant of 53
tags in three units (9 CVs, 12 MVs, 32 DVs) written straight into a historian.

Each page is run from its own file, as the app's navigation runs it.
"""

from __future__ import annotations

import base64
import json
import shutil
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
import test_dashboard_pages as pages_tests
from streamlit.testing.v1 import AppTest

from twin.loop.audit import AuditLog, iso
from twin.spec import PlantSpec, builtin_spec, parse_spec, spec_to_toml
from twin.store.historian import Historian

REPO = Path(__file__).resolve().parents[2]
PAGES = REPO / "dashboards" / "views"
TIMEOUT = 60
UNITS = (("Reactor", 3, 4, 10), ("Separator", 3, 4, 10), ("Stripper", 2, 4, 8), ("", 1, 0, 4))
"""group, CVs, MVs, DVs of the wide plant ("" : no group)"""

plant = pages_tests.plant  # the recorded CSTR hour, its twin and two logged recommendations
texts = pages_tests.texts


def wide_spec_toml() -> str:
    """A plant of 53 tags in three units and a few without one; CVs with setpoints and
    operating zones 40 to 60 kPa inside 0 to 100 kPa."""
    out = ['[plant]\nname = "wide"\nsample_period_s = 6.0\n']
    for group, *counts in UNITS:
        prefix = (group or "Site")[:3].upper()
        for role, n in zip(("cv", "mv", "dv"), counts, strict=True):
            for k in range(1, n + 1):
                unit = {"cv": "kPa", "mv": "m3/h", "dv": "degC"}[role]
                lines = [
                    "[[tags]]",
                    f'name = "{prefix}_{role.upper()}{k}"',
                    f'unit = "{unit}"',
                    f'role = "{role}"',
                    "lo = 0.0",
                    "hi = 100.0",
                    f'description = "{group or "Site"} {role.upper()} {k}"',
                ]
                if group:
                    lines.append(f'group = "{group}"')
                if role == "cv":
                    lines += ["setpoint = 50.0", "op_lo = 40.0", "op_hi = 60.0"]
                if role == "mv":
                    lines.append("rate_limit = 5.0")
                out.append("\n".join(lines) + "\n")
    return "\n".join(out)


def wide_spec() -> PlantSpec:
    return parse_spec(wide_spec_toml(), source="wide.toml")


def wide_rows(
    spec: PlantSpec, end: datetime, minutes: float, last: dict[str, float] | None = None
) -> pl.DataFrame:
    """Long rows of every tag over ``minutes`` up to ``end``: slow waves around 50 (inside every
    operating zone); the tags in ``last`` end at that value."""
    n = int(minutes * 60 / spec.sample_period)
    ts = [end - timedelta(seconds=spec.sample_period * (n - 1 - i)) for i in range(n)]
    rng = np.random.default_rng(0)
    parts = []
    for j, tag in enumerate(spec.tags):
        v = 50 + 4 * np.sin(np.arange(n) / (20 + j)) + np.cumsum(rng.normal(0, 0.03, n))
        if last and tag.name in last:
            v[-3:] = last[tag.name]
        parts.append(pl.DataFrame({"tag": tag.name, "ts": ts, "value": v}))
    return pl.concat(parts).with_columns(pl.col("ts").dt.cast_time_unit("us"))


@pytest.fixture(scope="module")
def wide(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(historian, spec file) of the wide plant: the last hour up to now; REA_CV1 above its
    operating zone, SEP_CV2 above its instrument range."""
    root = tmp_path_factory.mktemp("wide")
    spec = wide_spec()
    end = datetime.now(UTC).replace(microsecond=0)
    Historian(root / "historian").append(
        wide_rows(spec, end, 60, {"REA_CV1": 63.0, "SEP_CV2": 104.0})
    )
    (root / "wide.toml").write_text(wide_spec_toml(), encoding="utf-8")
    return root / "historian", root / "wide.toml"


def run_page(
    monkeypatch: pytest.MonkeyPatch,
    page: str,
    historian: Path,
    *,
    model: Path | None = None,
    spec: Path | str | None = None,
) -> AppTest:
    for name, value in (
        ("TWIN_HISTORIAN", historian),
        ("TWIN_MODEL", model),
        ("TWIN_SPEC", spec),
        ("TWIN_APPROVE", None),
    ):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, str(value))
    at = AppTest.from_file(str(PAGES / f"{page}.py"), default_timeout=TIMEOUT).run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def tiles(at: AppTest) -> dict[str, Any]:
    """The metrics of the CV tiles: label -> (value, delta)."""
    status = {"data", "loop", "model", "model health", "alarms"}
    return {m.label: (m.value, m.proto.delta) for m in at.metric if m.label not in status}


def figure(at: AppTest, index: int = 0) -> dict[str, Any]:
    return json.loads(at.get("plotly_chart")[index].proto.spec)


def values(y: Any) -> np.ndarray:
    """A trace's numbers (plotly writes numpy arrays as base64 typed arrays)."""
    if isinstance(y, dict):
        return np.frombuffer(base64.b64decode(y["bdata"]), dtype=np.dtype(y["dtype"]))
    return np.asarray(y, dtype=float)


def panel_titles(fig: dict[str, Any]) -> list[str]:
    return [a["text"] for a in fig["layout"]["annotations"]]


# --- overview -----------------------------------------------------------------------------


def test_overview_of_a_wide_plant_shows_a_tile_per_cv_grouped_by_unit(
    wide: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    historian, spec_file = wide
    at = run_page(monkeypatch, "overview", historian, spec=spec_file)
    spec = wide_spec()
    shown = tiles(at)
    assert list(shown) == [f"{t.name} [kPa]" for t in spec.cvs]  # every CV, with its unit
    assert shown["REA_CV2 [kPa]"][1].endswith("from SP 50")  # deviation from the setpoint
    assert float(shown["REA_CV1 [kPa]"][0]) == 63 and shown["REA_CV1 [kPa]"][1] == "+13 from SP 50"
    # one header per unit in the spec's order, the CV without a unit last
    assert [e.label for e in at.expander] == ["Reactor", "Separator", "Stripper", "Other tags"]
    assert [len(e.get("metric")) for e in at.expander] == [3, 3, 2, 1]
    shown_text = texts(at)
    # colour only for what is abnormal: above the operating zone amber, above the range red
    assert ":red-background[**2 of 9 CVs abnormal:** REA_CV1 (above op hi 60 kPa), " in shown_text
    assert ":orange-background[above op hi 60 kPa]" in shown_text
    assert ":red-background[above hi 100 kPa]" in shown_text
    coloured = [
        m.value for e in at.expander for m in e.get("markdown") if "-background[" in m.value
    ]
    assert len(coloured) == 2  # the other seven tiles are grey
    sparklines = [m.value for m in at.markdown if str(m.value).startswith("<svg")]
    assert len(sparklines) == 9 and all("<polyline" in s for s in sparklines)
    assert "9 CVs here; 12 MVs and 32 DVs on the Trends page" in shown_text
    # a new session of a warm app draws the whole overview well within the 2 s of first paint
    start = time.perf_counter()
    again = AppTest.from_file(str(PAGES / "overview.py"), default_timeout=TIMEOUT).run()
    assert time.perf_counter() - start < 2.0 and len(tiles(again)) == 9


def test_overview_of_the_cstr_with_its_twin(
    plant: pages_tests.PlantData, monkeypatch: pytest.MonkeyPatch
) -> None:
    pages_tests.fresh(plant.historian)
    at = run_page(monkeypatch, "overview", plant.historian, model=pages_tests.MODEL)
    shown = tiles(at)
    assert list(shown) == ["T [K]", "Ca [mol/L]"]
    assert 300 < float(shown["T [K]"][0]) < 345
    assert shown["T [K]"][1].endswith("from SP 327")  # the setpoint in force: the newest logged
    assert not at.expander  # no tag has a group: no headers
    metrics = {m.label: m.value for m in at.metric}
    assert 0 < float(metrics["model health"]) < 10
    assert metrics["loop"] == "advisory"  # recommendations logged, nothing written
    assert metrics["data"] == "live"
    forecasts = [c.value for c in at.caption if " in 3 min · band " in c.value]
    assert len(forecasts) == 2, texts(at)  # each CV: direction, value at H and band
    assert all(f.split()[0] in ("→", "↗", "↘") for f in forecasts)
    assert "recommendations only: nothing is written to the plant" in texts(at)


def test_overview_groups_the_cstr_by_the_spec_groups(
    plant: pages_tests.PlantData, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = builtin_spec("cstr")
    text = spec_to_toml(spec).replace(
        'description = "Reactor temperature"',
        'description = "Reactor temperature"\ngroup = "Reactor"',
    )
    (tmp_path / "cstr.toml").write_text(text, encoding="utf-8")
    at = run_page(monkeypatch, "overview", plant.historian, spec=tmp_path / "cstr.toml")
    assert [e.label for e in at.expander] == ["Reactor", "Other tags"]
    assert [m.label for m in at.expander[0].get("metric")] == ["T [K]"]
    assert [m.label for m in at.expander[1].get("metric")] == ["Ca [mol/L]"]
    assert float(at.expander[0].get("metric")[0].value) > 300


def test_overview_says_what_the_write_back_does(
    plant: pages_tests.PlantData, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = shutil.copytree(plant.historian, tmp_path / "historian")
    newest = plant.recs[-1]
    audit = AuditLog(root, who="loop")
    why = "model unhealthy: live forecast error 3.40x its validation error (limit 3)"
    audit.record("refuse", tag="Tc", value=300.0, why=why, ok=False, rec_ts=iso(newest.ts))
    at = run_page(monkeypatch, "overview", root, spec="cstr")
    assert {m.label: m.value for m in at.metric}["loop"] == "refusing"
    assert f":orange-background[{why}]" in texts(at)
    audit.record(
        "write",
        tag="Tc",
        value=299.5,
        why="all checks passed",
        ok=True,
        rec_ts=iso(newest.ts + timedelta(seconds=6)),
    )
    at = run_page(monkeypatch, "overview", root, spec="cstr")
    assert {m.label: m.value for m in at.metric}["loop"] == "writing"
    assert "wrote Tc = 299.5" in texts(at)


# --- trends -------------------------------------------------------------------------------


def test_plant_page_of_a_wide_plant_shows_one_unit_a_page_at_a_time(
    wide: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """53 tags are not drawn as 53 strips: at most 8 panels, paged, or one unit picked."""
    historian, spec_file = wide
    at = run_page(monkeypatch, "plant", historian, spec=spec_file)
    spec = wide_spec()
    names = [t.name for t in (*spec.cvs, *spec.mvs, *spec.dvs)]
    drawn = [t.split("</b>")[0].split("<b>")[1] for t in panel_titles(figure(at))]
    assert drawn == names[:8]
    assert "53 tags, 8 panels per page: page 1 of 7 shows tags 1 to 8" in texts(at)
    at.segmented_control(key="plant_unit").set_value("Stripper").run()
    assert not at.exception, [e.message for e in at.exception]
    drawn = [t.split("</b>")[0].split("<b>")[1] for t in panel_titles(figure(at))]
    stripper = [t.name for t in (*spec.cvs, *spec.mvs, *spec.dvs) if t.group == "Stripper"]
    assert len(stripper) == 14 and drawn == stripper[:8]
    # the numbers under the trends are those of the CVs and MVs on the page
    assert [m.label.split(" [")[0] for m in at.metric] == stripper[:6]
    at.segmented_control(key="plant_page").set_value(2).run()
    drawn = [t.split("</b>")[0].split("<b>")[1] for t in panel_titles(figure(at))]
    assert drawn == stripper[8:] and not at.metric  # DVs only


def test_trends_page_finds_a_tag_and_draws_its_trend(
    plant: pages_tests.PlantData, monkeypatch: pytest.MonkeyPatch
) -> None:
    pages_tests.fresh(plant.historian)
    at = run_page(monkeypatch, "trends", plant.historian, model=pages_tests.MODEL)
    at.text_input(key="trend_query").input("COOLANT").run()
    results = at.dataframe[0].value
    assert results["tag"].tolist() == ["Tc"] and results["role"].tolist() == ["MV"]
    assert results["unit"].tolist() == ["K"]
    at.multiselect(key="trend_pick").select("Tc").run()
    at.button(key="trend_add").click().run()
    assert not at.exception, [e.message for e in at.exception]
    assert at.multiselect(key="trend_tags").value == ["Tc"]
    fig = figure(at)
    assert panel_titles(fig) == ["MV <b>Tc</b> · Coolant (jacket) temperature [K]"]
    kinds = {t["name"] for t in fig["data"]}
    assert {"measured", "limit", "forecast"} <= kinds  # an MV's plan has no band
    assert fig["layout"]["yaxis"]["title"]["text"] == "K"
    measured = next(t for t in fig["data"] if t["name"] == "measured")
    assert values(measured["y"]).min() >= 285 and values(measured["y"]).max() <= 302
    # a CV found by its unit joins: its own panel, with its setpoint and forecast band
    at.text_input(key="trend_query").input("mol/l").run()
    at.multiselect(key="trend_pick").select("Ca").run()
    at.button(key="trend_add").click().run()
    fig = figure(at)
    assert [t.split("</b>")[0] for t in panel_titles(fig)] == ["MV <b>Tc", "CV <b>Ca"]
    ca = {t["name"] for t in fig["data"] if t.get("yaxis") == "y2"}
    assert {"measured", "setpoint", "forecast", "band", "limit"} <= ca
    assert fig["layout"]["yaxis2"]["title"]["text"] == "mol/L"


def test_trends_page_pages_a_long_trend_and_keeps_it_as_a_set(
    wide: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    historian, spec_file = wide
    at = run_page(monkeypatch, "trends", historian, spec=spec_file)
    at.text_input(key="trend_query").input("separator").run()
    assert "17 of 53 tags match 'separator'" in texts(at)
    picks = at.dataframe[0].value["tag"].tolist()
    assert set(at.dataframe[0].value["group"]) == {"Separator"}
    at.multiselect(key="trend_pick").set_value(picks).run()
    at.button(key="trend_add").click().run()
    assert len(panel_titles(figure(at))) == 8  # never more panels than fit
    assert "17 tags, 8 panels per page: page 1 of 3 shows tags 1 to 8" in texts(at)
    at.segmented_control(key="trend_page").set_value(3).run()
    assert [t.split("</b>")[0].split("<b>")[1] for t in panel_titles(figure(at))] == picks[16:]
    # saved under a name, and reopened after the trend was cleared
    at.text_input(key="trend_set_name").input("separator").run()
    at.button(key="trend_save").click().run()
    assert "saved 'separator'" in texts(at)
    at.multiselect(key="trend_tags").set_value([]).run()
    assert not at.get("plotly_chart")
    at.selectbox(key="trend_set_open").set_value("separator").run()
    at.button(key="trend_open").click().run()
    assert at.multiselect(key="trend_tags").value == picks
    assert "opened 'separator' (17 tags)" in texts(at)
    files = list((historian / "trendsets").glob("*.json"))
    assert len(files) == 1 and json.loads(files[0].read_text())["sets"][0]["tags"] == picks
    at.button(key="trend_delete").click().run()
    assert "deleted 'separator'" in texts(at) and "no saved trend set yet" in texts(at)


def test_trends_page_names_a_corrupt_trend_set_file(
    wide: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    historian = shutil.copytree(wide[0], tmp_path / "historian")
    from dashboards.trendsets import TrendSets, user_name

    user = user_name()
    assert user is not None
    store = TrendSets(historian, user)
    store.folder.mkdir(parents=True, exist_ok=True)
    store.path.write_text("{not json", encoding="utf-8")
    at = run_page(monkeypatch, "trends", historian, spec=wide[1])
    (error,) = at.error
    assert str(store.path) in error.value and "is not valid JSON" in error.value
    at.button(key="trend_set_aside").click().run()
    assert not at.error and "the unreadable file is kept as" in texts(at)
    assert not store.path.exists() and list(store.folder.glob("*.bad-*"))
