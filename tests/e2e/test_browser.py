"""The operator app in a real browser, on a live plant: ``twin plant serve`` + ``twin run`` +
``twin dashboard``, all on free loopback ports, driven through Debian's Chromium.

Checks what an operator relies on: the Plant page's live values advance on their own, a
what-if run shows two scenarios, and the recommendation downloads parse and carry the
documented columns. A screenshot of each page goes to the test's temporary folder and, when
``TWIN_SCREENSHOTS=DIR`` is set, into DIR as well (documentation).
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from browser_helpers import CHROMIUM_ARGS, REPO, chromium_path, free_port, twin_cli

from connectors.sim.plants import make_plant
from connectors.sim.record import record
from twin.control.export import EXPORT_COLUMNS

pytestmark = pytest.mark.integration
MODEL = REPO / "data" / "models" / "cstr"
SPEED = 3.0  # a plant sample every 2 s of wall time
TIMEOUT_MS = 60_000


def shoot(page, name: str, folder: Path) -> None:  # type: ignore[no-untyped-def]
    """Screenshot the page into ``folder`` and, if set, ``$TWIN_SCREENSHOTS``."""
    from playwright.sync_api import expect

    expect(page.locator(".js-plotly-plot .scatterlayer .trace").first).to_be_attached()
    page.wait_for_timeout(1000)  # let the trends finish drawing
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    extra = os.environ.get("TWIN_SCREENSHOTS")
    if extra:
        Path(extra).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(extra) / path.name)


def newest_sample(page) -> str:  # type: ignore[no-untyped-def]
    text = page.get_by_text(re.compile(r"newest sample \d")).inner_text(timeout=TIMEOUT_MS)
    found = re.search(r"newest sample (\S+)", text)
    assert found, text
    return found.group(1)


def test_operator_app_in_a_browser(tmp_path: Path) -> None:
    chromium = chromium_path()
    from playwright.sync_api import expect, sync_playwright

    historian, shots = tmp_path / "historian", tmp_path / "screenshots"
    shots.mkdir()
    # 20 min of history up to now, so that forecasts and what-ifs work from the start
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=20)
    record(make_plant("cstr", seed=2), 1 / 3, historian, seed=2, start=start, progress=False)
    port = free_port()
    with (
        twin_cli(
            "plant", tmp_path, "plant", "serve", "cstr", "--port", str(port), "--speed", str(SPEED)
        ) as plant,
    ):
        url = plant.wait_for(r"serving \S+ at (opc\.tcp://\S+)", 60).group(1)
        with (
            twin_cli(
                "run",
                tmp_path,
                "run",
                "--spec",
                "cstr",
                "--endpoint",
                url,
                "--model",
                str(MODEL),
                "--historian",
                str(historian),
                "--interval",
                "2",
                "--flush-every",
                "1",
            ) as run,
            twin_cli(
                "dashboard",
                tmp_path,
                "dashboard",
                "--historian",
                str(historian),
                "--model",
                str(MODEL),
                "--port",
                "0",
                "--refresh",
                "2",
            ) as app,
        ):
            base = app.wait_for(r"twin dashboard: (http://127\.0\.0\.1:\d+)", 60).group(1)
            run.wait_for(r"recommend", 60)
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
                page = browser.new_page(
                    viewport={"width": 1400, "height": 2600}, accept_downloads=True
                )
                page.set_default_timeout(TIMEOUT_MS)
                expect.set_options(timeout=TIMEOUT_MS)

                # Plant (the Overview is the default page): the live values advance without any click
                page.goto(f"{base}/plant")
                first = newest_sample(page)
                t_first = page.locator('[data-testid="stMetricValue"]').first.inner_text()
                deadline = time.monotonic() + 30
                while newest_sample(page) == first and time.monotonic() < deadline:
                    time.sleep(0.5)
                assert newest_sample(page) != first, "the Plant page did not refresh on its own"
                deadline = time.monotonic() + 20
                while (
                    page.locator('[data-testid="stMetricValue"]').first.inner_text() == t_first
                    and time.monotonic() < deadline
                ):
                    time.sleep(0.5)
                assert page.locator('[data-testid="stMetricValue"]').first.inner_text() != t_first
                expect(page.get_by_text("T [K]").first).to_be_visible()
                shoot(page, "plant", shots)

                # Forecast
                page.goto(f"{base}/forecast")
                expect(page.get_by_text(re.compile(r"30 steps of 6 s"))).to_be_visible()
                expect(page.locator(".js-plotly-plot").first).to_be_visible()
                shoot(page, "forecast", shots)

                # What-if: the default form holds two scenarios; run it
                page.goto(f"{base}/whatif")
                page.get_by_role("button", name="Run what-if").click()
                expect(page.get_by_text("hold, scenario 2")).to_be_visible(timeout=90_000)
                legend = page.locator(".js-plotly-plot .legendtext")
                expect(legend.filter(has_text="scenario 2")).to_have_count(1)  # drawn, with its
                expect(legend.filter(has_text="hold")).to_have_count(1)  # own legend entry
                shoot(page, "whatif", shots)

                # Recommendations: advisory, CSV and JSON downloads with the documented columns
                page.goto(f"{base}/recommendations")
                expect(page.get_by_text(re.compile("^Advisory"))).to_be_visible()
                files = {}
                for kind in ("CSV", "JSON"):
                    with page.expect_download() as info:
                        page.get_by_role("button", name=f"Download {kind}").click()
                    files[kind] = Path(info.value.path()).read_text(encoding="utf-8")
                rows = list(csv.DictReader(files["CSV"].splitlines()))
                assert rows and tuple(rows[0]) == EXPORT_COLUMNS
                assert [r["tag"] for r in rows] == ["Tc"]
                doc = json.loads(files["JSON"])
                assert tuple(doc["columns"]) == EXPORT_COLUMNS and doc["rows"][0]["tag"] == "Tc"
                assert doc["recommendation"]["plant"] == "cstr"
                shoot(page, "recommendations", shots)

                # Model
                page.goto(f"{base}/model")
                expect(page.get_by_text("Validation", exact=False).first).to_be_visible()
                shoot(page, "model", shots)
                browser.close()
            assert app.interrupt(40) == 0  # Ctrl-C stops the app and its server
            with pytest.raises(OSError):
                import urllib.request

                urllib.request.urlopen(f"{base}/_stcore/health", timeout=2)
    assert sorted(p.name for p in shots.iterdir()) == [
        "forecast.png",
        "model.png",
        "plant.png",
        "recommendations.png",
        "whatif.png",
    ]
