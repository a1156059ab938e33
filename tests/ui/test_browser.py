"""The page as a person uses it, in headless Chromium (Debian's /usr/bin/chromium).

Upload a synthetic clip, click on two discs (screen positions computed from the frame
image's natural size), add a second object, track, wait until the overlay video can play,
download the CSV, and keep a screenshot. Run alone with ``-m browser``.
"""

from __future__ import annotations

import csv
import json
import time

import numpy as np
import pytest

from sam2web.history import decode_mask
from tests import loadrun, synth
from tests.appserver import RunGate, start_app
from tests.browser import (
    add_object_and_click,
    assert_click_near,
    chromium_page,
    click_image_pixel,
    full_page_screenshot,
    open_step,
    wait_status,
)
from tests.masks import assert_nontrivial

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def app(tmp_path_factory, random_checkpoint):
    """The app; its runs can be held part-way (``app.gate``)."""
    workdir = tmp_path_factory.mktemp("browser-app")
    server = start_app(workdir, random_checkpoint, gate=RunGate(workdir / "gate"))
    yield server
    server.stop()


@pytest.fixture
def page(tmp_path):
    with chromium_page(accept_downloads=True) as page:
        yield page


def test_track_two_discs_in_the_browser(app, page, tmp_path):
    frames = synth.make_frames(num_frames=8, height=120, width=160)
    clip = synth.write_video(tmp_path / "two_discs.mp4", frames, fps=8)
    page.goto(app.url)
    page.locator("#upload input[type=file]").set_input_files(str(clip))
    page.locator("#video-facts").get_by_text("8 frames").wait_for()
    wait_status(page, "Loaded")

    # First object: name it, add it, click on the red disc (its centre at frame 0).
    red = add_object_and_click(page, "red disc", synth.DEFAULT_DISCS[0])
    assert_click_near(page, red.x0, red.y0)

    # Second object, then a click on the blue disc.
    blue = add_object_and_click(page, "blue disc", synth.DEFAULT_DISCS[1])
    assert_click_near(page, blue.x0, blue.y0)

    # The clicks reached the server at the disc centres (within a displayed pixel).
    open_step(page, "3 Track")
    page.locator("#track").click()
    wait_status(page, "Tracked 8 frames", timeout=300_000)

    open_step(page, "4 Results")
    video = page.locator("#overlay-video video").first
    video.wait_for(state="attached")
    page.wait_for_function(
        """() => { const v = document.querySelector('#overlay-video video');
                   return v && v.readyState >= 2 && v.videoWidth > 0; }""",
        timeout=120_000,
    )
    assert video.evaluate("v => [v.videoWidth, v.videoHeight]") == [160, 120]

    link = page.locator('#downloads a[href*="sam2web_tracks.csv"]').first
    with page.expect_download() as download_info:
        link.click()
    csv_path = tmp_path / "tracks.csv"
    download_info.value.save_as(csv_path)
    with open(csv_path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 16
    assert {r["object_name"] for r in rows} == {"red disc", "blue disc"}

    # The measurements a scientist reads next: the summary table and both plots.
    open_step(page, "5 Measure")
    page.wait_for_function(
        "() => (document.querySelector('#summary') || {}).textContent?.includes('blue disc')"
    )
    for plot in ("#trajectories img", "#confidence img"):
        page.wait_for_function(
            f"() => {{ const i = document.querySelector('{plot}');"
            " return i && i.complete && i.naturalWidth > 200; }"
        )

    full_page_screenshot(page, tmp_path / "after_tracking.png")


def test_a_second_user_is_served_in_the_browser_while_another_run_tracks(app, page, tmp_path):
    """One user tracks through gradio_client, held by the server after frame 4 of 24, so
    it is still tracking by construction while a second user, in the browser, uploads,
    clicks and starts tracking; the page says the model is shared. Then the first run is
    let go, both end, and each user's masks equal those of the same work tracked alone."""
    from gradio_client import Client

    from tests.appserver import session_folders

    first = loadrun.UserClip("first", 24, 160, 120, ("long run",))
    second = loadrun.UserClip("second", 12, 160, 120, ("second user",))
    first_path, second_path = first.write(tmp_path), second.write(tmp_path)
    runner = Client(app.url, verbose=False)
    runner_folder = loadrun.upload(runner, first_path, app.data_dir)
    loadrun.prompt(runner, first)
    page.goto(app.url)
    app.gate.hold(runner_folder, after=4)
    job = runner.submit("forward", *loadrun.TRACK_ARGS, api_name="/propagate")
    try:
        assert app.gate.held(runner_folder) == {"frames": 4}, "the first run did not start"
        t0 = time.perf_counter()
        before = session_folders(app.data_dir)
        page.locator("#upload input[type=file]").set_input_files(str(second_path))
        wait_status(page, "Loaded")
        uploaded = time.perf_counter() - t0
        (page_folder,) = session_folders(app.data_dir) - before
        add_object_and_click(page, "second user", second.discs()[0])
        first_mask = time.perf_counter() - t0
        open_step(page, "3 Track")
        page.locator("#track").click()
        wait_status(page, "The model is shared with 1 other user tracking")
        assert not job.done() and not app.gate.has(runner_folder, "ended")
    finally:
        app.gate.release(runner_folder)
    wait_status(page, f"Tracked {second.frames} frames", timeout=300_000)
    assert f"Tracked {first.frames} frames" in job.result(timeout=300)[1]
    print(
        f"\n[browser] upload shown {uploaded:.1f} s, first mask {first_mask:.1f} s after "
        f"choosing the file, while the other user's run was held after frame 4"
    )
    clicked = _recorded_click(page, tmp_path)
    together = {
        "first": loadrun.read_masks(runner_folder, first),
        "second": loadrun.read_masks(page_folder, second),
    }
    # The same work, each user alone on the server.
    alone = {}
    for clip, path in ((first, first_path), (second, second_path)):
        client = Client(app.url, verbose=False)
        folder = loadrun.upload(client, path, app.data_dir)
        if clip is first:
            loadrun.prompt(client, clip)
        else:
            client.predict("second user", 0, api_name="/add_object")
            client.predict(0, 1, *clicked, True, api_name="/add_point")
        assert f"Tracked {clip.frames} frames" in loadrun.track(client, clip)
        alone[clip.key] = loadrun.read_masks(folder, clip)
    for clip in (first, second):
        got, expected = together[clip.key], alone[clip.key]
        assert sorted(got) == sorted(expected) == list(range(clip.frames)), clip.key
        assert_nontrivial([m for f in expected.values() for m in f.values()], clip.key)
        for frame, objects in expected.items():
            assert sorted(got[frame]) == sorted(objects) == [1], (clip.key, frame)
            assert np.array_equal(got[frame][1], objects[1]), (clip.key, frame)


def _recorded_click(page, tmp_path) -> tuple[float, float]:
    """Where the page's one click landed, in original-frame pixels, as its session
    recorded it (the project file's history; the status line rounds it)."""
    open_step(page, "7 Project")
    page.locator("#save-project").click()
    link = page.locator('#project-file a[href*="sam2web_project.json"]').first
    with page.expect_download() as download_info:
        link.click()
    path = tmp_path / "second_user_project.json"
    download_info.value.save_as(path)
    history = json.loads(path.read_text(encoding="utf-8"))["history"]
    (click,) = [step for step in history if step["op"] == "click"]
    return click["x"], click["y"]


def test_draw_a_zone_and_a_ruler_then_see_the_zone_table(app, page, tmp_path):
    frames = synth.make_frames(num_frames=8, height=120, width=160)
    clip = synth.write_video(tmp_path / "zones.mp4", frames, fps=8)
    page.goto(app.url)
    page.locator("#upload input[type=file]").set_input_files(str(clip))
    wait_status(page, "Loaded")
    add_object_and_click(page, "red disc", synth.DEFAULT_DISCS[0])

    # A rectangle zone over the left half: two corner clicks on the frame.
    page.locator("#zones-draw").get_by_text("Zones and ruler").click()  # opens the drawing
    page.locator("#click-target").get_by_text("Rectangle zone").click()
    page.locator("#zone-name textarea, #zone-name input").first.fill("left half")
    click_image_pixel(page, "#frame-view", 2, 2, 160)
    wait_status(page, "1 point clicked")
    click_image_pixel(page, "#frame-view", 80, 118, 160)
    wait_status(page, "added")
    # A ruler: two clicks 100 px apart, 50 mm long -> 2 pixels per mm.
    page.locator("#click-target").get_by_text("Ruler").click()
    click_image_pixel(page, "#frame-view", 20, 100, 160)
    wait_status(page, "first end set")
    click_image_pixel(page, "#frame-view", 120, 100, 160)
    wait_status(page, "Ruler drawn")
    page.locator("#ruler-distance textarea, #ruler-distance input").first.fill("50")
    page.locator("#set-ruler").click()
    wait_status(page, "pixels per mm")

    open_step(page, "3 Track")
    page.locator("#track").click()
    wait_status(page, "Tracked 8 frames", timeout=300_000)
    # The ruler's scale is the calibration of the measurements.
    open_step(page, "5 Measure")
    page.locator("#cal").get_by_text("Calibration").click()
    scale = page.locator("#cal-scale textarea, #cal-scale input").first.input_value()
    assert float(scale) == pytest.approx(2.0, abs=0.01)  # clicks land within a shown pixel
    open_step(page, "6 Analysis")
    page.wait_for_function(
        "() => (document.querySelector('#zone-table') || {}).textContent?.includes('left half')",
        timeout=120_000,
    )
    table = page.locator("#zone-table").inner_text()
    assert "red disc" in table and "mm" in table
    page.locator("#heatmaps").scroll_into_view_if_needed()
    page.wait_for_function(
        "() => { const i = document.querySelector('#heatmaps img');"
        " return i && i.complete && i.naturalWidth >= 160; }"
    )
    page.locator("#frame-view").scroll_into_view_if_needed()
    full_page_screenshot(page, tmp_path / "zones.png")


def test_the_brush_paints_a_mask_prompt_where_it_was_painted(app, page, tmp_path):
    """Paint a short stroke through the middle of the frame in the brush editor, use it as
    the prompt, and read the saved project: its mask prompt covers the frame's centre and
    not its corners (the editor's layer maps onto the original frame's pixels)."""
    clip = synth.write_video(tmp_path / "b.mp4", synth.make_frames(4, 120, 160), fps=4)
    page.goto(app.url)
    page.locator("#upload input[type=file]").set_input_files(str(clip))
    wait_status(page, "Loaded")
    page.get_by_label("Name").fill("painted")
    page.locator("#add-object").click()
    wait_status(page, "Added painted")
    page.locator("#masks-panel").get_by_text("Masks and identities").first.click()
    page.get_by_role("button", name="Load the active object's mask").click()
    canvas = page.locator("#brush canvas").first
    canvas.scroll_into_view_if_needed()
    page.wait_for_timeout(1000)  # the frame is drawn into the editor
    box = canvas.bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(cx - 10, cy)
    page.mouse.down()
    for step in range(11):
        page.mouse.move(cx - 10 + 2 * step, cy)
    page.mouse.up()
    page.get_by_role("button", name="Use the painted mask").click()
    wait_status(page, "painted mask is now the prompt on frame 0")

    open_step(page, "7 Project")
    page.locator("#save-project").click()
    link = page.locator('#project-file a[href*="sam2web_project.json"]').first
    with page.expect_download() as download_info:
        link.click()
    path = tmp_path / "project.json"
    download_info.value.save_as(path)
    history = json.loads(path.read_text(encoding="utf-8"))["history"]
    (prompt,) = [step for step in history if step["op"] == "mask"]
    mask = decode_mask(prompt["rle"], 120, 160)
    assert mask[60, 80] and 0 < mask.sum() < 0.25 * mask.size
    assert not (mask[:10, :10].any() or mask[-10:, -10:].any())
