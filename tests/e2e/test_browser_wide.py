"""The operator app at plant scale in a real browser (issue 15's "Must show"): the 53-tag
simulated site ``site-1`` (9 CVs, 12 MVs, 32 DVs in five groups), Debian's Chromium.

Two apps, each started once for the module with ``twin dashboard`` on a free loopback port:

- *live*: a historian whose collector stopped :data:`STOPPED_S` ago (longer than three sample
  periods, so every tag is stale; shorter than :func:`dashboards.modes.threshold_s`, so the
  historian still counts as live: a dead collector, not history), users added with
  ``twin users add``, a recommendation in its log, and ``--approve``. The overview, tag search
  and trend, the alarm flood with acknowledge-all, and who may approve run on it, each in a
  fresh browser session signed in through the sidebar form.
- *history*: an old plant export brought in with ``twin import``, no users (this machine is a
  single-user station): it opens in history mode, without staleness alarms.

The first page each app is asked for is not its main one (a bookmarked ``/trends``, ``/plant``):
it must still be the app (its navigation, its sign-in gate), not a bare page script.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from browser_helpers import CHROMIUM_ARGS, REPO, chromium_path, twin_cli

from connectors.sim.plants import make_plant
from connectors.sim.record import record
from twin.control.recommendation import MoveRec, Recommendation
from twin.control.recommendation_log import RecommendationLog
from twin.spec import PlantSpec, load_spec
from twin.store.historian import Historian

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SITE = "site-1"
STOPPED_S = 100.0
"""the live historian's newest sample is this old when an alarm test starts (stale: > 3 periods
of 30 s; live: < 300 s)"""
OLD_START = datetime(2024, 3, 1, tzinfo=UTC)
"""the imported history starts here (years before any test runs)"""
USERS = {"vera": "viewer", "otto": "operator"}
TIMEOUT_MS = 60_000


def password(name: str) -> str:
    return f"{name}-password"


def twin(*args: str, stdin: str | None = None) -> str:
    """Run ``twin ARGS`` to completion; its output (fails with it on a non-zero exit)."""
    done = subprocess.run(
        [sys.executable, "-m", "twin.cli", *args],
        cwd=REPO,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, f"twin {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@dataclass(frozen=True)
class App:
    """A running ``twin dashboard`` on a historian of the site."""

    base: str
    historian: Path
    spec: PlantSpec


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("wide")


@pytest.fixture(scope="module")
def spec_file(work: Path) -> Path:
    path = work / f"{SITE}.toml"
    twin("plant", "spec", SITE, "--out", str(path))
    return path


def recommendation(spec: PlantSpec, ts: datetime) -> Recommendation:
    """A successful recommendation holding the first two MVs (what ``twin run`` would log)."""
    moves = []
    for tag in spec.mvs[:2]:
        mid = (tag.lo + tag.hi) / 2
        moves.append(
            MoveRec(
                tag=tag.name,
                node=str(tag.node),
                write_node=str(tag.write_node) if tag.write_node else None,
                unit=tag.unit,
                current=mid,
                recommended=mid,
                change=0.0,
                lo=tag.lo,
                hi=tag.hi,
                rate_limit=float(tag.rate_limit or 0.0),
                plan=(mid,) * 4,
                limits_held=True,
            )
        )
    return Recommendation(
        ts=ts,
        plant=spec.name,
        success=True,
        message="converged",
        moves=tuple(moves),
        setpoints={t.name: float(t.setpoint) for t in spec.cvs if t.setpoint is not None},
        forecast=None,
        objective=0.1,
        solve_time_s=0.02,
        iterations=5,
        limits_held=True,
    )


def collector_stopped(historian: Path, spec: PlantSpec) -> None:
    """Make the collector's last write :data:`STOPPED_S` ago: the newest value of every tag
    once more at that time (the app's caches see the new file)."""
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=STOPPED_S)
    hist = Historian(historian)
    last = hist.read(spec.tag_names, at - timedelta(hours=2), at).group_by("tag").last()
    assert last.height == len(spec.tags)
    hist.append(last.select("tag", pl.lit(at).alias("ts"), "value"))


@pytest.fixture(scope="module")
def live(work: Path, spec_file: Path) -> Iterator[App]:
    """The app on a historian whose collector stopped, with users, a recommendation and
    ``--approve``."""
    spec = load_spec(spec_file)
    historian = work / "live"
    end = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=STOPPED_S)
    record(
        make_plant(SITE, seed=1),
        1.0,
        historian,
        seed=1,
        start=end - timedelta(hours=1),
        progress=False,
    )
    for name, role in USERS.items():
        args = ("users", "add", name, "--role", role, "--historian", str(historian))
        twin(*args, "--password-stdin", stdin=password(name) + "\n")
    RecommendationLog(historian).append(recommendation(spec, end))
    with twin_cli(
        "dashboard-live",
        work,
        "dashboard",
        "--historian",
        str(historian),
        "--spec",
        str(spec_file),
        "--approve",
        "--port",
        "0",
    ) as app:
        base = app.wait_for(r"twin dashboard: (http://127\.0\.0\.1:\d+)", 60).group(1)
        yield App(base, historian, spec)


@pytest.fixture(scope="module")
def history(work: Path, spec_file: Path) -> Iterator[App]:
    """The app on an imported old history (a wide CSV export of the site), no users."""
    spec = load_spec(spec_file)
    scratch, historian, export = work / "recorded", work / "imported", work / "export.csv"
    record(make_plant(SITE, seed=2), 2.0, scratch, seed=2, start=OLD_START, progress=False)
    rows = Historian(scratch).read(spec.tag_names)
    wide = rows.pivot(on="tag", index="ts", values="value").sort("ts")
    wide.with_columns(pl.col("ts").dt.strftime("%Y-%m-%dT%H:%M:%SZ")).write_csv(export)
    out = twin(
        "import", "--spec", str(spec_file), "--input", str(export), "--historian", str(historian)
    )
    assert re.search(r"\b240\b", out), out  # 2 h of 30 s samples
    with twin_cli(
        "dashboard-history",
        work,
        "dashboard",
        "--historian",
        str(historian),
        "--spec",
        str(spec_file),
        "--port",
        "0",
    ) as app:
        base = app.wait_for(r"twin dashboard: (http://127\.0\.0\.1:\d+)", 60).group(1)
        yield App(base, historian, spec)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One Chromium for the module; each test opens its own context (a new browser session)."""
    chromium = chromium_path()
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=TIMEOUT_MS)
    with sync_playwright() as pw:
        chrome = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield chrome
        chrome.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 1600})
    tab = context.new_page()
    tab.set_default_timeout(TIMEOUT_MS)
    yield tab
    context.close()


def the_apps_navigation(page: Any) -> None:
    """The sidebar lists the app's pages by title (dashboards/app.py ran, with its sign-in
    gate), not the scripts of a ``pages/`` folder by file name (Streamlit ran one directly)."""
    from playwright.sync_api import expect

    nav = page.locator('[data-testid="stSidebarNav"]')
    for title in ("Overview", "Plant", "Trends", "Recommendations"):
        expect(nav).to_contain_text(title)


def sign_in(page: Any, name: str) -> None:
    """Sign in through the sidebar's form (the session lasts until the tab reloads)."""
    from playwright.sync_api import expect

    side = page.locator('[data-testid="stSidebar"]')
    the_apps_navigation(page)
    side.get_by_role("textbox", name="name").fill(name)
    side.get_by_role("textbox", name="password").fill(password(name))
    side.get_by_role("button", name="Sign in").click()
    expect(side.get_by_text(f"signed in: {name} ({USERS[name]})")).to_be_visible()


def main_area(page: Any) -> Any:
    return page.locator('[data-testid="stMain"]')


# --- the live app ---------------------------------------------------------------------------


def test_a_tag_found_by_search_is_trended(live: App, page: Any) -> None:
    from playwright.sync_api import expect

    page.goto(f"{live.base}/trends")  # the first page of a fresh app, opened by its URL
    the_apps_navigation(page)
    gate = "Sign in (in the sidebar) to see the plant."
    expect(main_area(page).get_by_text(gate)).to_be_visible()
    expect(main_area(page).get_by_text("Find a tag")).to_have_count(0)
    sign_in(page, "vera")
    main = main_area(page)
    expect(main.get_by_text("53 tags: type part of a name")).to_be_visible()
    search = main.get_by_role("textbox", name="Find a tag")
    search.fill("steam header")  # by description
    search.press("Enter")
    expect(main.get_by_text("1 of 53 tags match 'steam header'")).to_be_visible()
    expect(main.locator(".js-plotly-plot")).to_have_count(0)
    main.locator('[data-testid="stMultiSelect"]').filter(has_text="Add to the trend").click()
    page.get_by_role("option", name=re.compile(r"^UT\.PI902")).click()
    page.keyboard.press("Escape")
    main.get_by_role("button", name="Add", exact=True).click()
    chart = main.locator(".js-plotly-plot")
    expect(chart).to_have_count(1)  # one panel, of the tag found
    expect(chart.get_by_text("steam header pressure [bar]")).to_be_attached()
    expect(chart.locator(".scatterlayer .trace").first).to_be_attached()
    chosen = main.locator('[data-testid="stMultiSelect"]').filter(
        has=page.get_by_text("Trend", exact=True)
    )
    expect(chosen).to_contain_text("UT.PI902 · steam header pressure [bar]")


def test_the_overview_shows_the_cvs_by_unit(live: App, page: Any) -> None:
    from playwright.sync_api import expect

    page.goto(live.base)
    expect(
        main_area(page).get_by_text("Sign in (in the sidebar) to see the plant.")
    ).to_be_visible()
    sign_in(page, "vera")
    main = main_area(page)
    expect(main.get_by_text(f"Overview {SITE}")).to_be_visible()
    expect(main.get_by_text("9 CVs here; 12 MVs and 32 DVs on the Trends page")).to_be_visible()
    units: dict[str, list[str]] = {}
    for tag in live.spec.cvs:
        units.setdefault(str(tag.group), []).append(tag.name)
    assert sorted(units) == ["Unit 1", "Unit 2", "Unit 3", "Unit 4"]
    expanders = main.locator('[data-testid="stExpander"]')
    expect(expanders).to_have_count(len(units))
    for unit, names in units.items():
        box = expanders.filter(has=page.get_by_text(unit, exact=True))
        tiles = box.locator('[data-testid="stMetricLabel"]')
        expect(tiles).to_have_count(len(names))
        labels = tiles.all_inner_texts()
        assert [label.split(" [")[0] for label in labels] == names, labels
        expect(box.locator('[data-testid="stMetricValue"]').first).to_have_text(re.compile(r"\d"))
        expect(box.locator("svg").first).to_be_attached()  # a sparkline per tile
    expect(main.get_by_text("approval", exact=True)).to_be_visible()  # the loop's state


def alarm_events(historian: Path) -> list[dict[str, Any]]:
    return [
        json.loads(line)
        for path in sorted((historian / "alarms").glob("*.jsonl"))
        for line in path.read_text(encoding="utf-8").splitlines()
    ]


def test_an_alarm_flood_is_one_alarm_and_acknowledge_all_takes_it(live: App, page: Any) -> None:
    from playwright.sync_api import expect

    collector_stopped(live.historian, live.spec)
    page.goto(f"{live.base}/plant")
    sign_in(page, "otto")
    main = main_area(page)
    header = main.get_by_text(re.compile(r"^Alarms \(\d+ unacknowledged"))
    expect(header).to_be_visible()
    flood = main.get_by_text(
        re.compile(r"HIGH NO DATA no data from the collector for \d+ min \(53 of 53 tags\)")
    )
    expect(flood).to_have_count(1)
    expect(main.get_by_text(re.compile(r"\bSTALE\b"))).to_have_count(0)  # not one per tag
    found = re.search(r"(\d+) unacknowledged, (\d+) listed", header.inner_text())
    assert found and found.group(1) == found.group(2), header.inner_text()
    listed = int(found.group(2))
    assert listed < 5, header.inner_text()  # the flood and at most a few states of the plant
    expect(main.get_by_text("no data from the collector")).to_have_count(1)

    main.get_by_role("button", name=f"Acknowledge all ({listed})").click()
    expect(
        main.get_by_text(re.compile(rf"^Alarms \(0 unacknowledged, {listed} listed"))
    ).to_be_visible()
    expect(flood).to_contain_text("acknowledged")
    expect(main.get_by_role("button", name="Acknowledge", exact=True)).to_have_count(0)
    expect(main.get_by_role("button", name="Acknowledge all (0)")).to_be_disabled()
    events = alarm_events(live.historian)
    acked = [e for e in events if e["event"] == "acknowledged"]
    assert len(acked) == listed and {e["user"] for e in acked} == {"otto"}, acked
    assert [(e["tag"], e["kind"]) for e in acked if e["kind"] == "no data"] == [("*", "no data")]
    assert not [e for e in events if e["kind"] == "stale"], "a stale alarm per tag was raised"


def test_a_viewer_cannot_approve_and_an_operator_can(live: App, page: Any) -> None:
    from playwright.sync_api import expect

    approvals = live.historian / "approvals.jsonl"
    rec = RecommendationLog(live.historian).latest()
    assert rec is not None
    page.goto(f"{live.base}/recommendations")
    sign_in(page, "vera")
    main = main_area(page)
    button = main.get_by_role("button", name="Approve these moves")
    why = "Approving a recommendation needs the operator or engineer role: vera is a viewer"
    expect(main.get_by_text(why)).to_be_visible()
    expect(button).to_be_disabled()
    assert not approvals.exists()

    page.locator('[data-testid="stSidebar"]').get_by_role("button", name="Sign out").click()
    sign_in(page, "otto")
    expect(main.get_by_text("approving as otto (operator)")).to_be_visible()
    expect(button).to_be_enabled()
    button.click()
    expect(main.get_by_text(re.compile(r"approved by otto \(operator\) at"))).to_be_visible()
    entries = [json.loads(line) for line in approvals.read_text(encoding="utf-8").splitlines()]
    assert len(entries) == 1
    entry = entries[0]
    assert (entry["operator"], entry["role"], entry["via"]) == ("otto", "operator", "password")
    assert datetime.fromisoformat(entry["rec_ts"]) == rec.ts


# --- the imported history -------------------------------------------------------------------


def test_an_imported_history_opens_as_history_without_staleness_alarms(
    history: App, page: Any
) -> None:
    from playwright.sync_api import expect

    page.goto(f"{history.base}/plant")  # no users: a single-user station, nobody signs in
    the_apps_navigation(page)  # the first page opened of a fresh app is not the main one
    side = page.locator('[data-testid="stSidebar"]')
    expect(side.get_by_text(re.compile(r"^single-user station: .+ \(engineer\)"))).to_be_visible()
    main = main_area(page)
    expect(main.get_by_text(f"Plant {SITE}")).to_be_visible()
    expect(
        main.get_by_text(
            re.compile(
                r"history: no collector is writing to this historian \(newest sample .+ ago\)"
            )
        )
    ).to_be_visible()
    expect(main.get_by_text("Time cursor (UTC)")).to_be_visible()
    expect(main.get_by_text(re.compile(r"^Abnormal at 2024-03-01 01:59:30 UTC"))).to_be_visible()
    expect(main.locator(".js-plotly-plot .scatterlayer .trace").first).to_be_attached()
    for alarm in ("STALE", "NO DATA", "no data from the collector", "no new data"):
        expect(main.get_by_text(alarm)).to_have_count(0)
    expect(main.get_by_role("button", name=re.compile("^Acknowledge"))).to_have_count(0)

    page.goto(history.base)  # the overview agrees
    main = main_area(page)
    expect(main.get_by_text(f"Overview {SITE}")).to_be_visible()
    expect(main.get_by_text("history", exact=True)).to_be_visible()
    expect(main.get_by_text(re.compile(r"^as of 2024-03-01 01:59:30 UTC"))).to_be_visible()
    expect(main.get_by_text("no data from the collector")).to_have_count(0)
    events = alarm_events(history.historian) if (history.historian / "alarms").is_dir() else []
    assert not [e for e in events if e["kind"] in ("stale", "no data")], events
