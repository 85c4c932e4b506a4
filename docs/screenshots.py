"""The README's screenshots of the operator app at plant scale: the Overview and a trend set on
the Trends page, on the 53-tag simulated site ``site-1`` with a trained twin.

    python docs/screenshots.py                      # writes docs/screenshots/{overview,trends}.png
    python docs/screenshots.py --model DIR --out /tmp/shots

What it sets up, all in a temporary folder but the twin: three hours of the site's history up to
now, kept fresh by a feeder that steps the same simulated plant every sample period (a collector,
without the OPC-UA round trip), the twin's recommendation for the newest sample in the
recommendation log, and a trend set of unit 3 for the user of this machine. The twin is
``--model``, else the one ``benchmarks/dashboard_paint.py`` caches in ``benchmarks/models/site-1``
(trained here on 24 h of recorded history with the same recipe when it is missing, about
``--minutes`` of CPU). Then ``twin dashboard`` on a free loopback port (no users file: a
single-user station) and Debian's Chromium through Playwright (never ``playwright install``)
capture the main area of each page, about 1400 px wide.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import polars as pl  # noqa: E402

from connectors.sim.plants import make_plant  # noqa: E402
from connectors.sim.record import DEFAULT_START, record  # noqa: E402
from twin.store.historian import Historian  # noqa: E402

SITE = "site-1"
CACHED = REPO / "benchmarks" / "models" / SITE
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]
VIEWPORT = {"width": 1800, "height": 1300}
"""the sidebar and the margins take about 450 px: the content is about 1400 px wide"""
MARGIN = 24
"""pixels of background kept around the page's content"""
TREND_SET = "Unit 3"
TREND_TAGS = ("U3.TI101", "U3.FI102", "U3.SC201", "U3.QC204", "UT.TI903")
"""unit 3's CVs, two of its MVs and the ambient temperature, a utility acting on it"""
HISTORY_H = 3.0
TIMEOUT_MS = 120_000


def twin_model(model: Path | None, minutes: float, work: Path) -> Path:
    """``model``, else the cached twin of the site, trained now if it is missing."""
    if model is not None:
        return model
    if (CACHED / "model.pt").is_file():
        return CACHED
    from twin.model.network import TwinConfig
    from twin.model.twin import Twin

    print(f"training a twin of {SITE} ({minutes:g} min) into {CACHED} ...", flush=True)
    plant = make_plant(SITE, seed=1)
    root = work / "train"
    record(plant, 24.0, root, seed=1, progress=False)
    frame = Historian(root).frame(plant.spec, DEFAULT_START, DEFAULT_START + timedelta(hours=24))
    Twin.fit(plant.spec, frame, TwinConfig(minutes=minutes, seed=0), progress=True).save(CACHED)
    return CACHED


@contextlib.contextmanager
def live_history(root: Path) -> Iterator[None]:
    """History up to now in ``root``, a new sample of every tag each sample period while open."""
    plant = make_plant(SITE, seed=1)
    period = plant.spec.sample_period
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=HISTORY_H)
    record(plant, HISTORY_H, root, seed=1, start=start, progress=False)
    hist, stop = Historian(root), threading.Event()
    newest = hist.read(plant.spec.tag_names).get_column("ts").max()
    assert isinstance(newest, datetime)
    step = timedelta(seconds=period)

    def feed(at: datetime) -> None:
        while not stop.wait(max(0.0, (at + step - datetime.now(UTC)).total_seconds())):
            at += step
            values = plant.step()  # the MVs held where the recording left them
            rows = pl.DataFrame({"tag": list(values), "value": list(values.values())})
            hist.append(rows.with_columns(ts=pl.lit(at)))

    feeder = threading.Thread(target=feed, args=(newest,), name="feeder", daemon=True)
    feeder.start()
    try:
        yield
    finally:
        stop.set()
        feeder.join(10)


def recommend(model: Path, root: Path) -> None:
    """The twin's recommendation for the newest sample, in the recommendation log (the loop's
    state on the overview)."""
    from twin.control.controller import Controller
    from twin.control.recommendation_log import RecommendationLog
    from twin.errors import TwinError
    from twin.model.twin import Twin

    twin = Twin.load(model)
    spec, hist = twin.spec, Historian(root)
    newest = hist.read([spec.cvs[0].name]).get_column("ts").max()
    assert isinstance(newest, datetime)
    period = timedelta(seconds=spec.sample_period)
    frame = hist.frame(spec, newest - (twin.window + 10) * period, newest + period / 2)
    setpoints = {t.name: float(t.setpoint) for t in spec.cvs if t.setpoint is not None}
    try:
        RecommendationLog(root).append(Controller(twin).recommend(frame, setpoints))
    except TwinError as exc:
        print(f"no recommendation: {exc}", flush=True)


def trend_set(root: Path) -> None:
    """Unit 3's trend set, kept for the user of this machine (the app's single-user station)."""
    from dashboards.trendsets import TrendSet, TrendSets
    from twin.loop.audit import current_user

    TrendSets(root, current_user()).save(TrendSet(TREND_SET, TREND_TAGS, minutes=60.0))


@contextlib.contextmanager
def dashboard(root: Path, model: Path, log: Path) -> Iterator[str]:
    """``twin dashboard`` on a free port; its URL."""
    cmd = [sys.executable, "-m", "twin.cli", "dashboard", "--historian", str(root)]
    cmd += ["--model", str(model), "--port", "0", "--refresh", "5"]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and proc.poll() is None:
            found = re.search(r"twin dashboard: (http://127\.0\.0\.1:\d+)", log.read_text())
            if found:
                yield found.group(1)
                return
            time.sleep(0.2)
        raise RuntimeError(f"twin dashboard did not start:\n{log.read_text()}")
    finally:
        proc.terminate()
        proc.wait(20)


def shoot(page: Any, path: Path) -> None:
    """The page's main area (no sidebar) into ``path``, once nothing runs or spins there."""
    from playwright.sync_api import expect

    main = page.locator('[data-testid="stMain"]')
    expect(page.locator('[data-testid="stStatusWidget"]')).to_have_count(0)  # not running
    expect(main.locator('[data-testid="stSpinner"]')).to_have_count(0)
    # the main area scrolls: make the window as tall as its content, so all of it is drawn
    height = main.evaluate("el => el.scrollHeight")
    page.set_viewport_size({"width": VIEWPORT["width"], "height": int(height) + 20})
    page.wait_for_timeout(1500)  # charts and sparklines redraw at the new size
    content = page.locator('[data-testid="stMainBlockContainer"] > [data-testid="stVerticalBlock"]')
    box = content.bounding_box()
    assert box is not None
    clip = {k: box[k] - MARGIN for k in ("x", "y")}
    clip |= {k: box[k] + 2 * MARGIN for k in ("width", "height")}
    page.screenshot(path=str(path), clip=clip)
    page.set_viewport_size(VIEWPORT)
    print(f"wrote {path} ({path.stat().st_size // 1024} KiB)", flush=True)


def screenshots(base: str, out: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=TIMEOUT_MS)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport=VIEWPORT)  # type: ignore[arg-type]
        page.set_default_timeout(TIMEOUT_MS)
        main = page.locator('[data-testid="stMain"]')

        page.goto(base)
        expect(main.get_by_text(f"Overview {SITE}")).to_be_visible()
        health = main.locator('[data-testid="stMetric"]').filter(has_text="model health")
        expect(health.locator('[data-testid="stMetricValue"]')).to_have_text(re.compile(r"\d"))
        forecast = main.get_by_text(re.compile(r" to \S+ in .+ · band ")).first
        expect(forecast).to_be_visible()  # the twin's forecast in the tiles
        shoot(page, out / "overview.png")

        page.goto(f"{base}/trends")
        main.get_by_text(re.compile(r"^Trend sets of ")).click()
        main.locator("button").filter(has_text=re.compile(r"^Open$")).click()
        chart = main.locator(".js-plotly-plot")
        expect(chart.locator(".legendtext").filter(has_text="forecast")).not_to_have_count(0)
        expect(chart.locator(".scatterlayer .trace").first).to_be_attached()
        page.mouse.move(0, 0)  # no hover label on the chart
        shoot(page, out / "trends.png")
        browser.close()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=REPO / "docs" / "screenshots", help="folder")
    p.add_argument("--model", type=Path, help=f"twin of {SITE} (default: {CACHED})")
    p.add_argument("--minutes", type=float, default=1.5, help="training budget of a new twin")
    args = p.parse_args()
    if not Path(CHROMIUM).exists():
        print(f"{CHROMIUM} is not installed (make browser)", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="twin-shots-") as tmp:
        work = Path(tmp)
        model = twin_model(args.model, args.minutes, work)
        root = work / "historian"
        with live_history(root):
            recommend(model, root)
            trend_set(root)
            with dashboard(root, model, work / "dashboard.log") as base:
                screenshots(base, args.out)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
