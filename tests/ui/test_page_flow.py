"""The page as a guided flow, in headless Chromium: before a video only the upload, the
model and help show; each step appears when it has something to show; the frame can be
played where it is corrected; at a phone's width nothing needs sideways scrolling.

Screenshots of each step are kept in the test's folder (their paths are printed), with
the page's height and its count of visible controls (tests.browser.VISIBLE_CONTROLS_JS).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import synth
from tests.appserver import start_app
from tests.browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    EMPTY_TABLES_JS,
    VISIBLE_CONTROLS_JS,
    add_object_and_click,
    full_page_screenshot,
    open_step,
    page_height,
    wait_status,
)

pytestmark = pytest.mark.browser
FRAMES = 8
MAX_CONTROLS_BEFORE_VIDEO = 15


@pytest.fixture(scope="module")
def app(tmp_path_factory, random_checkpoint):
    server = start_app(tmp_path_factory.mktemp("flow-app"), random_checkpoint)
    yield server
    server.stop()


def _record(page, tmp_path: Path, name: str) -> tuple[int, int]:
    """Screenshot, height and control count of the page now (printed)."""
    page.wait_for_timeout(500)  # the steps' visibility lands after the action's own output
    shot = tmp_path / f"{name}.png"
    full_page_screenshot(page, shot)
    height, controls = page_height(page), page.evaluate(VISIBLE_CONTROLS_JS)
    print(f"\n[flow] {name}: {controls} visible controls, page {height} px tall; {shot}")
    return controls, height


def _visible(page, selector: str) -> bool:
    return page.locator(selector).first.is_visible()


def test_the_page_shows_each_step_when_it_has_something_to_show(app, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM}")
    clip = synth.write_video(
        tmp_path / "discs.mp4", synth.make_frames(FRAMES, 120, 160), fps=FRAMES
    )
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        context = browser.new_context(viewport={"width": 1400, "height": 900})
        page = context.new_page()
        page.set_default_timeout(120_000)
        page.goto(app.url)
        page.locator("#upload").wait_for()
        page.locator("#guide").get_by_text("upload a video").wait_for()

        # Before a video: the upload, the model, help; no frame, no other step, no table.
        controls, _ = _record(page, tmp_path, "1_fresh")
        assert controls <= MAX_CONTROLS_BEFORE_VIDEO
        assert page.evaluate(EMPTY_TABLES_JS) == 0
        assert not _visible(page, "#frame-view") and not _visible(page, "#track")
        assert page.get_by_role("tab", name="2 Mark").count() == 0

        # After the upload: the marking step is open and the guide says to click.
        page.locator("#upload input[type=file]").set_input_files(str(clip))
        wait_status(page, "Loaded")
        page.locator("#guide").get_by_text("click on an animal").wait_for()
        assert page.get_by_role("tab", name="2 Mark", selected=True).is_visible()
        assert _visible(page, "#frame-view") and _visible(page, "#add-object")
        assert page.get_by_role("tab", name="4 Results").count() == 0
        assert page.evaluate(EMPTY_TABLES_JS) == 0
        _record(page, tmp_path, "2_loaded")

        add_object_and_click(page, "red disc", synth.DEFAULT_DISCS[0])
        page.locator("#guide").get_by_text("press Track").wait_for()
        _record(page, tmp_path, "3_marked")

        # After tracking: results, measurements and analysis appear, with their rows.
        open_step(page, "3 Track")
        page.locator("#track").click()
        wait_status(page, f"Tracked {FRAMES} frames", timeout=300_000)
        page.get_by_role("tab", name="4 Results").wait_for()
        page.locator("#guide").get_by_text("Play").wait_for()
        _record(page, tmp_path, "4_tracked")
        open_step(page, "4 Results")
        page.locator("#overlay-video video").first.wait_for(state="attached")
        page.locator('#downloads a[href*="sam2web_tracks.csv"]').first.wait_for()
        _record(page, tmp_path, "5_results")
        open_step(page, "5 Measure")
        page.wait_for_function(
            "() => (document.querySelector('#summary') || {}).textContent?.includes('red disc')"
        )
        assert page.evaluate(EMPTY_TABLES_JS) == 0
        _record(page, tmp_path, "6_measure")
        open_step(page, "6 Analysis")
        assert page.evaluate(EMPTY_TABLES_JS) == 0  # no zones drawn: no zone table
        _record(page, tmp_path, "7_analysis")

        # Play in the viewer: from the first frame to the last, then it stops by itself.
        number = page.locator("#frame-number input").first
        assert number.input_value() == str(FRAMES - 1)  # the run ended on the last frame
        page.locator("#play").click()
        page.locator("#pause").wait_for()
        page.wait_for_function(
            f"() => +document.querySelector('#frame-number input').value < {FRAMES - 1}"
        )
        page.locator("#play").wait_for(timeout=60_000)  # back at the end: stopped
        assert number.input_value() == str(FRAMES - 1)

        # A phone's width, the same session after a reload: frame first, no sideways scroll.
        page.set_viewport_size({"width": 390, "height": 844})
        page.reload()
        page.locator("#guide").get_by_text("Play").wait_for()
        wide = "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
        assert page.evaluate(wide) <= 1
        frame = page.locator("#frame-view").bounding_box()
        assert frame["x"] >= 0 and frame["x"] + frame["width"] <= 391
        steps = page.locator("#steps").bounding_box()
        assert frame["y"] < steps["y"]  # the frame comes first
        open_step(page, "3 Track")
        track = page.locator("#track")
        track.scroll_into_view_if_needed()
        box = track.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= 391
        assert page.evaluate(wide) <= 1
        _record(page, tmp_path, "8_phone_track")
        context.close()
        browser.close()
