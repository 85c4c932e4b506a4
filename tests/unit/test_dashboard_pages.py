"""Every page of the operator app, run with Streamlit's AppTest on a real historian and the
shipped CSTR twin: what an operator sees, the what-if run, the recommendations table, alarms.

One module fixture records an hour of the simulated CSTR into a temporary historian (ending
now) and logs two controller recommendations into it, as ``twin run`` would.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import polars as pl
import pytest
from streamlit.testing.v1 import AppTest

from connectors.sim.plants import make_plant
from connectors.sim.record import record
from dashboards import auth
from twin.control.controller import Controller
from twin.control.recommendation import ActiveConstraint, Recommendation
from twin.control.recommendation_log import RecommendationLog
from twin.loop.audit import ApprovalQueue, AuditLog
from twin.loop.audit import current_user as os_user
from twin.model.twin import Twin
from twin.spec import PlantSpec, Tag, spec_to_toml
from twin.store.historian import Historian
from twin.users import UsersFile

REPO = Path(__file__).resolve().parents[2]
APP = REPO / "dashboards" / "app.py"
MODEL = REPO / "data" / "models" / "cstr"
TIMEOUT = 60


@dataclass(frozen=True)
class PlantData:
    historian: Path
    twin: Twin
    recs: tuple[Recommendation, ...]


@pytest.fixture(scope="module")
def plant(tmp_path_factory: pytest.TempPathFactory) -> PlantData:
    root = tmp_path_factory.mktemp("historian")
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    record(make_plant("cstr", seed=5), 1.0, root, seed=5, start=start, progress=False)
    twin = Twin.load(MODEL)
    hist = Historian(root)
    newest = hist.read(["T"]).get_column("ts").max()
    assert isinstance(newest, datetime)
    period = timedelta(seconds=twin.spec.sample_period)
    frame = hist.frame(twin.spec, newest - 59 * period, newest + period / 2)
    controller, log = Controller(twin), RecommendationLog(root)
    recs = []
    for drop, sp in ((1, 324.5), (0, 327.0)):  # the newest asks for a hotter reactor
        rec = controller.recommend(frame.head(frame.height - drop), {"T": sp, "Ca": 0.877})
        log.append(rec)
        recs.append(rec)
    return PlantData(root, twin, tuple(recs))


def fresh(root: Path) -> None:
    """Append one good sample per tag at now, so that nothing is stale."""
    hist = Historian(root)
    last = hist.read(start=datetime.now(UTC) - timedelta(hours=2)).sort("ts").group_by("tag").last()
    hist.append(last.select("tag", "value").with_columns(ts=pl.lit(datetime.now(UTC))))


def app(
    monkeypatch: pytest.MonkeyPatch,
    historian: Path | None,
    *,
    model: Path | None = MODEL,
    spec: str | None = None,
    approve: bool = False,
    page: str | None = None,
) -> AppTest:
    for name, value in (
        ("TWIN_HISTORIAN", historian),
        ("TWIN_MODEL", model),
        ("TWIN_SPEC", spec),
        ("TWIN_APPROVE", "1" if approve else None),
    ):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, str(value))
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    if page is not None:
        at.switch_page(f"views/{page}.py").run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def table(at: AppTest, column: str) -> pd.DataFrame:
    """The first table on the page that has ``column``."""
    for df in at.dataframe:
        if column in df.value.columns:
            return df.value
    raise AssertionError(f"no table with column {column!r}")


def texts(at: AppTest) -> str:
    parts = [
        e.value
        for kind in ("markdown", "caption", "info", "warning", "error")
        for e in at.get(kind)
    ]
    return "\n".join(str(p) for p in parts)


def test_plant_page_shows_every_tag_live_with_units(
    plant: PlantData, monkeypatch: pytest.MonkeyPatch
) -> None:
    fresh(plant.historian)
    at = app(monkeypatch, plant.historian, page="plant")
    labels = {m.label: m.value for m in at.metric}
    assert set(labels) == {"T [K]", "Ca [mol/L]", "Tc [K]"}  # every CV and MV, with its unit
    assert 300 < float(labels["T [K]"]) < 345
    assert all(m.proto.delta and m.proto.color == 2 for m in at.metric)  # ISA-101: grey deltas
    values = table(at, "age")
    assert values["tag"].tolist() == ["T", "Ca", "Tc", "Tf"]
    assert values["unit"].tolist() == ["K", "mol/L", "K", "K"]
    assert values["quality"].tolist() == ["good"] * 4
    assert values["age"].str.fullmatch(r"\d+ s").all()  # in human units, under a minute
    assert "0 unacknowledged" in texts(at) and "no collector is writing" not in texts(at)
    assert len(at.get("plotly_chart")) == 1
    # a time range is chosen without error
    at.segmented_control(key="plant_minutes").set_value(60).run()
    assert not at.exception


def test_plant_alarms_show_in_colour_until_acknowledged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = datetime.now(UTC)
    rows = pl.DataFrame(
        {
            "tag": ["T", "Ca", "Tc", "Tf"],
            "ts": [now, now, now, now - timedelta(minutes=2)],
            "value": [350.0, 0.8, 302.0, 350.0],
            "quality": ["good", "bad", "good", "good"],
        }
    ).with_columns(pl.col("ts").dt.cast_time_unit("us"))
    Historian(tmp_path).append(rows)
    at = app(monkeypatch, tmp_path, model=None, spec="cstr", page="plant")  # the spec's limits
    shown = texts(at)
    assert ":red-background[**HIGH** LIMIT T 350 K above hi 345" in shown
    assert ":orange-background[**MEDIUM** QUALITY Ca: quality bad" in shown
    assert ":yellow-background[**LOW** AT LIMIT Tc 302 K at its hi limit" in shown
    assert ":yellow-background[**LOW** STALE Tf: no new data for 2 min" in shown  # live: per tag
    assert "4 unacknowledged, 4 listed: 1 high, 1 medium, 2 low" in shown
    at.button(key="ack:T:limit").click().run()
    shown = texts(at)
    assert "3 unacknowledged" in shown
    assert "**HIGH** LIMIT T 350 K above hi 345 K — active" in shown and "acknowledged" in shown
    assert ":red-background" not in shown  # acknowledged: no colour left for it


def test_alarms_acknowledge_all_and_shelve_by_the_signed_in_user_a_viewer_may_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = datetime.now(UTC)
    rows = pl.DataFrame(
        {"tag": ["T", "Ca", "Tc", "Tf"], "ts": [now] * 4, "value": [350.0, 1.2, 302.0, 350.0]}
    ).with_columns(pl.col("ts").dt.cast_time_unit("us"))
    Historian(tmp_path).append(rows)
    users = UsersFile(tmp_path / "users.json")  # a login is configured
    for name, role in (("vera", "viewer"), ("otto", "operator")):
        users.add(name, role, f"{name}-password")

    def sign_in(at: AppTest, name: str) -> None:
        account = users.load()[name]
        at.session_state[auth.KEY] = {"name": name, "fp": auth.fingerprint(account)}
        at.run()

    at = app(monkeypatch, tmp_path, model=None, spec="cstr", page="plant")
    sign_in(at, "vera")
    assert at.button(key="ack_all").disabled and at.button(key="ack:T:limit").disabled
    assert at.button(key="ack_all").help == (
        "Acknowledging alarms needs the operator or engineer role: vera is a viewer"
    )
    sign_in(at, "otto")
    at.text_input(key="shelve_reason").set_value("analyser recalibration")
    at.selectbox(key="shelve_key").set_value("Tc:at limit")
    at.button(key="shelve").click().run()
    assert "1 shelved" in texts(at) and "AT LIMIT Tc" not in texts(at)
    at.button(key="ack_all").click().run()
    assert "0 unacknowledged, 2 listed" in texts(at)
    events = [
        json.loads(line)
        for f in (tmp_path / "alarms").glob("*.jsonl")
        for line in f.read_text().splitlines()
    ]
    assert sorted((e["event"], e["tag"], e["user"]) for e in events if e["user"]) == [
        ("acknowledged", "Ca", "otto"),
        ("acknowledged", "T", "otto"),
        ("shelved", "Tc", "otto"),
    ]
    history = table(at, "event")
    assert history["event"].tolist()[:2] == ["acknowledged", "acknowledged"]  # newest first
    assert set(history["user"].tolist()) == {"", "otto"}


def wide_spec_file(tmp_path: Path) -> Path:
    """A 53-tag plant (9 CVs, 12 MVs, 32 DVs, period 3 s) as a spec file."""
    roles = ["cv"] * 9 + ["mv"] * 12 + ["dv"] * 32
    tags = [
        Tag(f"XMEAS{i:02d}", None, "kPa", r, 0.0, 100.0, rate_limit=5.0 if r == "mv" else None)
        for i, r in enumerate(roles, 1)
    ]
    path = tmp_path / "wide.toml"
    path.write_text(spec_to_toml(PlantSpec("wide", 3.0, tuple(tags))))
    return path


def test_a_collector_that_stops_is_one_alarm_not_53(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = wide_spec_file(tmp_path)
    root = tmp_path / "historian"
    last = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=2)
    names = [f"XMEAS{i:02d}" for i in range(1, 54)]
    Historian(root).append(
        pl.DataFrame(
            {
                "tag": names * 3,
                "ts": [last - timedelta(seconds=3 * k) for k in (2, 1, 0) for _ in names],
                "value": [50.0] * 159,
            }
        ).with_columns(pl.col("ts").dt.cast_time_unit("us"))
    )
    at = app(monkeypatch, root, model=None, spec=str(spec), page="plant")
    shown = texts(at)
    assert "1 unacknowledged, 1 listed: 1 high, 0 medium, 0 low" in shown
    assert (
        ":red-background[**HIGH** NO DATA no data from the collector for 2 min (53 of 53 tags)"
        in shown
    )
    assert "STALE" not in shown
    at.button(key="ack_all").click().run()
    assert "0 unacknowledged" in texts(at)


def test_an_imported_history_opens_in_history_mode_without_staleness_alarms(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1062)  # 2.9 years ago
    record(make_plant("cstr", seed=3), 0.5, tmp_path, seed=3, start=start, progress=False)
    newest = Historian(tmp_path).read(["T"]).get_column("ts").max()
    assert isinstance(newest, datetime)
    at = app(monkeypatch, tmp_path, model=None, spec="cstr", page="plant")
    shown = texts(at)
    assert "no collector is writing to this historian (newest sample 2.9 years ago)" in shown
    assert "STALE" not in shown and "no data" not in shown and "unacknowledged" not in shown
    assert not [b for b in at.button if str(b.key).startswith("ack")]  # nothing to acknowledge
    cursor = at.slider(key="plant_cursor")
    assert cursor.value == newest == at.session_state["as_of"]  # the cursor starts at the end
    assert f"as of {newest:%Y-%m-%d %H:%M:%S} UTC" in shown
    assert table(at, "age")["age"].tolist() == ["0 s"] * 4  # as of the cursor, not of today
    earlier = newest - timedelta(minutes=10)
    cursor.set_value(earlier).run()
    assert not at.exception
    assert at.session_state["as_of"] == earlier  # for the Forecast and What-if pages
    assert f"as of {earlier:%Y-%m-%d %H:%M:%S} UTC" in texts(at)
    assert len(at.get("plotly_chart")) == 1
    assert not (tmp_path / "alarms").exists()  # history raises nothing, logs nothing


def test_forecast_and_whatif_start_from_the_time_cursor_in_history_mode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An old history: the Forecast page forecasts from the Plant page's cursor (with what
    happened after drawn beside it) and the What-if page starts its scenarios there."""
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=400)
    record(make_plant("cstr", seed=4), 1.0, tmp_path, seed=4, start=start, progress=False)
    at = app(monkeypatch, tmp_path, spec="cstr", page="plant")
    cursor = at.slider(key="plant_cursor")
    earlier = cursor.value - timedelta(minutes=20)
    cursor.set_value(earlier).run()
    at.switch_page("views/forecast.py").run()
    assert not at.exception, [e.message for e in at.exception]
    shown = texts(at)
    assert f"forecast from the time cursor {earlier:%Y-%m-%d %H:%M:%S} UTC" in shown
    assert len(at.get("plotly_chart")) == 1  # no live scoring of the last hour in history
    at.switch_page("views/whatif.py").run()
    assert not at.exception, [e.message for e in at.exception]
    assert f"scenarios start at the time cursor {earlier:%Y-%m-%d %H:%M:%S} UTC" in texts(at)


def test_pages_without_a_model_say_so(plant: PlantData, monkeypatch: pytest.MonkeyPatch) -> None:
    for page in ("forecast", "whatif", "model"):
        at = app(monkeypatch, plant.historian, model=None, spec="cstr", page=page)
        assert "No model loaded" in texts(at), page


def test_forecast_page_draws_the_forecast_and_scores_past_ones(
    plant: PlantData, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = app(monkeypatch, plant.historian, page="forecast")
    assert "30 steps of 6 s" in texts(at) and "adapted to the recent outcomes" in texts(at)
    assert len(at.get("plotly_chart")) == 2  # the forecast, and past forecasts vs. truth
    skill = table(at, "live NRMSE")
    assert set(skill["tag"]) == {"T", "Ca"} and set(skill["step"]) == {1, 5, 10, 30}
    # on data like its training data the twin is about as good as validated
    assert skill["live / validation"].between(0.3, 3.0).all(), skill
    at.segmented_control(key="forecast_plan").set_value("controller's plan").run()
    assert not at.exception and len(at.get("plotly_chart")) == 2


@pytest.fixture(scope="module")
def wide_plant(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(historian, twin) of a plant of 53 tags, 9 of them CVs: two hours of slow waves up to
    now, and a small twin fitted on them (a few seconds: what is checked is the drawing)."""
    from test_overview import wide_rows, wide_spec

    from twin.model.network import TwinConfig

    root = tmp_path_factory.mktemp("wide_forecast")
    spec = wide_spec()
    end = datetime.now(UTC).replace(microsecond=0)
    hist = Historian(root / "historian")
    hist.append(wide_rows(spec, end, 120))
    frame = hist.frame(spec, end - timedelta(hours=2), end + timedelta(seconds=3))
    config = TwinConfig(
        window=4, horizon=6, latent=4, hidden=8, ensemble=2, batch=64, minutes=1.0,
        max_epochs=1, patience=1, seed=0, linear_init=False,
    )  # fmt: skip
    Twin.fit(spec, frame, config, progress=False).save(root / "twin")
    return root / "historian", root / "twin"


def test_forecast_page_of_many_cvs_draws_one_panel_per_chosen_tag(
    wide_plant: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    historian, model = wide_plant
    at = app(monkeypatch, historian, model=model, page="forecast")
    chosen = at.multiselect(key="forecast_tags")
    cvs = [
        f"{u}_CV{k}"
        for u, n in (("REA", 3), ("SEP", 3), ("STR", 2), ("SIT", 1))
        for k in range(1, n + 1)
    ]
    assert chosen.value == cvs[:8]  # as many CVs as fit, not every tag of the plant
    assert "8 of 9 CVs and 12 MVs shown (at most 8 panels)" in texts(at)
    forecast, skill = (json.loads(c.proto.spec) for c in at.get("plotly_chart"))
    titles = [a["text"] for a in forecast["layout"]["annotations"]]
    assert [t.split("</b>")[0] for t in titles] == [f"CV <b>{n}" for n in cvs[:8]]
    axes = [k for k in forecast["layout"] if k.startswith("yaxis")]
    assert len(axes) == 8 and all(forecast["layout"][a]["title"]["text"] == "kPa" for a in axes)
    heights = [
        forecast["layout"][a]["domain"][1] - forecast["layout"][a]["domain"][0] for a in axes
    ]
    assert max(heights) - min(heights) < 1e-9  # the same height each, whatever their number
    assert forecast["layout"]["height"] >= 8 * 150  # each panel tall enough to read
    assert (
        len([k for k in skill["layout"] if k.startswith("yaxis")]) == 8
    )  # past ones: the same CVs
    chosen.set_value(["SIT_CV1", "REA_MV2"]).run()
    assert not at.exception, [e.message for e in at.exception]
    forecast = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert [a["text"].split("</b>")[0] for a in forecast["layout"]["annotations"]] == [
        "CV <b>SIT_CV1",
        "MV <b>REA_MV2",
    ]
    names = {t["name"] for t in forecast["data"] if t.get("yaxis") == "y"}
    assert {"measured", "forecast", "band", "setpoint", "op limit"} <= names


def test_whatif_page_runs_and_compares_two_scenarios(
    plant: PlantData, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = app(monkeypatch, plant.historian, page="whatif")
    at.number_input(key="wi_sp_1_T").set_value(329.0)
    at.button(key="wi_run").click().run()
    assert not at.exception, [e.message for e in at.exception]
    assert "**2 scenarios:** hold, scenario 2" in texts(at)
    values = table(at, "failed solves")
    assert values["scenario"].tolist() == ["hold", "scenario 2"]
    hold, hot = values["T end [K]"].tolist()
    assert hot > hold + 0.5  # the controller heats toward the higher setpoint
    assert [b.label for b in at.get("download_button")] == ["Download CSV", "Download JSON"]


def test_whatif_open_loop_schedule(plant: PlantData, monkeypatch: pytest.MonkeyPatch) -> None:
    at = app(monkeypatch, plant.historian, page="whatif")
    at.number_input(key="wi_count").set_value(3).run()
    for k, tc in ((1, 290.0), (2, 300.0)):
        at.radio(key=f"wi_mode_{k}").set_value("MV schedule (open loop)")
        at.number_input(key=f"wi_mv_{k}_Tc").set_value(tc)
    at.button(key="wi_run").click().run()
    values = table(at, "failed solves")
    assert values["mode"].tolist() == ["controller", "open loop", "open loop"]
    assert values["Tc end [K]"].tolist()[1:] == [290.0, 300.0]
    assert values["T end [K]"][1] < values["T end [K]"][2]  # colder coolant, colder reactor


def test_whatif_page_prices_a_scenario_and_holds_the_setpoints_in_force(
    plant: PlantData, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = app(monkeypatch, plant.historian, page="whatif")
    # hold holds what the newest logged recommendation asked for (T 327 K), not the spec's
    assert "setpoints in force (what 'hold' holds): T = 327 K" in texts(at)
    assert "those of the latest recommendation" in texts(at)
    at.selectbox(key="wi_chg_1_0").set_value("priority")
    at.selectbox(key="wi_chgtag_1_0").set_value("Tc")
    at.number_input(key="wi_chgval_1_0").set_value(2.0)
    at.button(key="wi_run").click().run()
    assert "priority of 'Tc': 'Tc' is an MV" in texts(at)  # refused, naming scenario and tag
    at.selectbox(key="wi_chg_1_0").set_value("price")
    at.number_input(key="wi_sp_1_T").set_value(327.0)
    at.button(key="wi_run").click().run()
    assert not at.exception, [e.message for e in at.exception]
    assert "**New optimum**" in texts(at)
    optimum = table(at, "cost rate at targets")
    assert optimum["scenario"].tolist() == ["hold", "scenario 2"]
    assert {"T target [K]", "Ca target [mol/L]", "Tc target [K]"} <= set(optimum.columns)
    assert optimum["T target [K]"][0] > 325.5  # toward 327 K, not the spec's 324.5 K
    assert optimum["cost rate now"].isna()[0] and optimum["cost rate now"][1] > 280
    (metric,) = at.metric  # only the priced scenario has a cost rate
    assert metric.label == "scenario 2: cost rate" and "from now" in metric.proto.delta


def test_recommendations_page_is_advisory_with_table_and_downloads(
    plant: PlantData, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = app(monkeypatch, plant.historian, page="recommendations")
    assert "Advisory" in texts(at)
    newest = plant.recs[-1]
    values = table(at, "limits held")
    assert values["tag"].tolist() == ["Tc"]
    assert values["recommended"][0] == pytest.approx(newest.moves[0].recommended)
    assert values["current"][0] == pytest.approx(newest.moves[0].current)
    assert {"change", "lo", "hi", "limits held", "unit"} <= set(values.columns)
    assert "T = 327" in texts(at)  # the setpoints of the newest recommendation
    solver = {m.label: m.value for m in at.metric}["solver"]
    assert solver == ("ok" if newest.success else "failed")
    assert [b.label for b in at.get("download_button")] == ["Download CSV", "Download JSON"]
    assert not [b for b in at.button if b.label.startswith("Approve")]
    assert len(at.get("plotly_chart")) == 1  # predicted CVs


def test_recommendations_page_says_why_given_up_constraint_and_frozen_mv(
    plant: PlantData, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = shutil.copytree(plant.historian, tmp_path / "historian")  # the shared log stays as is
    newest = plant.recs[-1]
    tc = newest.moves[0]
    rec = dataclasses.replace(
        newest,
        ts=newest.ts + timedelta(seconds=1),
        moves=(
            dataclasses.replace(
                tc, recommended=tc.current, change=0.0, target=tc.current, frozen=True
            ),
        ),
        targets={"Tc": tc.current, "T": 326.2, "Ca": 0.87},
        constraints=(
            ActiveConstraint("T", "op_hi", 326.0, "given up", by=0.2, priority=1),
            ActiveConstraint("Ca", "op_lo", 0.87, "binding", priority=2),
        ),
        cost_rate=-3.5,
        cost_rate_now=-2.25,
        frozen=("Tc",),
    )
    RecommendationLog(root).append(rec)
    at = app(monkeypatch, root, page="recommendations")
    values = table(at, "limits held")
    assert values["frozen"].tolist() == [True]
    assert values["target"][0] == pytest.approx(tc.current)
    shown = texts(at)
    assert "**Why**" in shown
    assert ":orange-background[T op_hi 326 K given up by 0.2 K (priority 1)]" in shown
    assert "- Ca op_lo 0.87 mol/L binding (priority 2)" in shown  # binding: no colour
    assert "predicted cost rate: -2.25 now → -3.5 at the targets" in shown
    assert (
        "**Tc** frozen: not moved in the twin's training data: held at its current value; "
        "release with `twin run --release Tc`" in shown
    )


def test_recommendations_page_says_which_setpoints_one_mv_cannot_hold(
    plant: PlantData, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CSTR has one MV for two CV setpoints: the targets trade them off, and the page says
    by how much each is given up (nothing is frozen)."""
    at = app(monkeypatch, plant.historian, page="recommendations")
    shown = texts(at)
    assert "**Why**" in shown and "frozen" not in shown.split("**Why**")[1]
    assert "setpoint" in shown and "given up by" in shown
    assert table(at, "limits held")["frozen"].tolist() == [False]


def test_approval_mode_records_the_station_user_without_a_login(
    plant: PlantData, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No users file and no OpenID Connect: this machine is a single-user station, and the
    approval is in the OS user's name (no free-text name box any more)."""
    root = shutil.copytree(plant.historian, tmp_path / "historian")
    at = app(monkeypatch, root, approve=True, page="recommendations")
    assert "Advisory" not in texts(at) and not at.text_input
    assert f"approving as {os_user()} (engineer)" in texts(at)
    at.button(key="rec_approve").click().run()
    entry = json.loads((root / "approvals.jsonl").read_text().splitlines()[-1])
    assert (entry["operator"], entry["role"], entry["via"]) == (os_user(), "engineer", "station")
    assert datetime.fromisoformat(entry["rec_ts"]) == plant.recs[-1].ts


def test_a_viewer_cannot_approve_and_an_operator_can_in_their_name(
    plant: PlantData, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = shutil.copytree(plant.historian, tmp_path / "historian")
    users = UsersFile(root / "users.json")  # the default place: a login is configured
    for name, role in (("vera", "viewer"), ("otto", "operator")):
        users.add(name, role, f"{name}-password")
    approvals = root / "approvals.jsonl"

    def sign_in(at: AppTest, name: str) -> None:  # what the sidebar's sign-in form leaves
        account = users.load()[name]
        at.session_state[auth.KEY] = {"name": name, "fp": auth.fingerprint(account)}
        at.run()

    at = app(monkeypatch, root, approve=True, page="recommendations")
    assert "Sign in (in the sidebar) to see the plant." in texts(at)  # signed out: nothing
    assert not [b for b in at.button if b.key == "rec_approve"]
    sign_in(at, "vera")
    button = at.button(key="rec_approve")
    why = "Approving a recommendation needs the operator or engineer role: vera is a viewer"
    assert button.disabled and button.help == why and why in texts(at)
    assert not approvals.exists()
    sign_in(at, "otto")
    assert not at.button(key="rec_approve").disabled
    at.button(key="rec_approve").click().run()
    assert "approved by otto (operator)" in texts(at)
    entry = json.loads(approvals.read_text().splitlines()[-1])
    assert (entry["operator"], entry["role"], entry["via"]) == ("otto", "operator", "password")
    # the write-back loop takes it and audits it in otto's name
    audit = AuditLog(root)
    approval = ApprovalQueue(root).take(plant.recs[-1].ts, audit)
    assert approval is not None and approval.operator == "otto"
    assert approval.why.endswith("by a signed-in operator (password)")


def test_model_page_shows_validation_training_and_health(
    plant: PlantData, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = app(monkeypatch, plant.historian, page="model")
    val = table(at, "twin NRMSE")
    assert len(val) == 8 and set(val["tag"]) == {"T", "Ca"}
    assert (val["twin NRMSE"].iloc[-2:] < val["persistence NRMSE"].iloc[-2:]).all()
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["epochs"] == str(plant.twin.metrics["training"]["epochs"])
    # what forecasts (the shipped twin predates linear first; test_stack checks a stacked one)
    assert "linear_init" not in plant.twin.metrics
    assert "no linear model was identified first: trained from a random start" in texts(at)
    # the twin forecasts the recorded plant about as well as it did in validation
    assert 0.3 < float(metrics["live / validation NRMSE, last hour (mean)"]) < 3
    assert 0 < float(metrics["health ratio, last samples (worst CV)"]) < 10
    assert len(table(at, "live NRMSE")) == 8
    # the band per tag: nominal, live coverage on the recorded hour, the adaptive band's scale
    bands = table(at, "live, adaptive band [%]")
    assert list(bands["tag"]) == ["T", "Ca", "Tf"]  # CVs and the DV; the MV's band is its plan
    assert (bands["nominal [%]"] == 90.0).all() and (bands["outcomes"] > 100).all()
    assert bands["live, adaptive band [%]"].between(80, 97).all(), bands
    assert bands["band scale [x]"].between(0.3, 3.0).all(), bands
