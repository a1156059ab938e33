"""The keyboard shortcuts and *Try an example* as a person uses them, in headless Chromium.

Keys: upload a clip, step with the arrow keys (the frame number and the picture shown
follow, and stepping back shows the first picture again), pick the negative mode with N,
undo with Z, type letters into the Name box without setting anything off, track with T
and cancel with Esc. Example: press the button, read the hint, click where it says, track
a few frames. Run alone with ``-m browser``.
"""

from __future__ import annotations

import re

import pytest

from tests import synth
from tests.appserver import start_app
from tests.browser import (
    assert_click_near,
    click_image_pixel,
    full_page_screenshot,
    open_step,
    wait_status,
)

pytestmark = pytest.mark.browser

# The picture shown, as a digest of its pixels (the same frame renders the same pixels).
PICTURE = """() => {
    const img = document.querySelector('#frame-view img');
    if (!img || !img.complete || !img.naturalWidth) return null;
    const c = document.createElement('canvas');
    c.width = img.naturalWidth; c.height = img.naturalHeight;
    const g = c.getContext('2d');
    g.drawImage(img, 0, 0);
    const d = g.getImageData(0, 0, c.width, c.height).data;
    let h = 0;
    for (let i = 0; i < d.length; i += 7) h = (h * 31 + d[i]) >>> 0;
    return img.src + '|' + h;
}"""


@pytest.fixture(scope="module")
def app(tmp_path_factory, random_checkpoint):
    server = start_app(tmp_path_factory.mktemp("keys-app"), random_checkpoint)
    yield server
    server.stop()


def frame_number(page) -> int:
    return int(float(page.locator("#frame-number input").first.input_value()))


def picture(page) -> str:
    return page.evaluate(PICTURE) or ""


def press_outside_fields(page, key: str) -> None:
    page.evaluate("() => document.activeElement && document.activeElement.blur()")
    page.keyboard.press(key)


def step_to(page, key: str, expected: int, before: str) -> str:
    """Press ``key``; the frame number becomes ``expected`` and the picture changes."""
    press_outside_fields(page, key)
    page.wait_for_function(
        f"() => Number(document.querySelector('#frame-number input').value) === {expected}"
    )
    page.wait_for_function(f"() => ({PICTURE})() !== {before!r} && ({PICTURE})() !== null")
    return picture(page)


def test_keyboard_shortcuts_step_frames_pick_modes_undo_track_and_cancel(app, page, tmp_path):
    frames = synth.make_frames(num_frames=40, height=120, width=160)
    clip = synth.write_video(tmp_path / "keys.mp4", frames, fps=10)
    page.goto(app.url)
    page.locator("#upload input[type=file]").set_input_files(str(clip))
    wait_status(page, "Loaded")
    page.locator("#key-help").get_by_text("Shift").first.wait_for()  # under the frame
    page.wait_for_function(f"() => ({PICTURE})() !== null")
    first = picture(page)

    at_1 = step_to(page, "ArrowRight", 1, first)
    at_11 = step_to(page, "Shift+ArrowRight", 11, at_1)
    at_1_again = step_to(page, "Shift+ArrowLeft", 1, at_11)
    step_to(page, "ArrowLeft", 0, at_1_again)
    assert picture(page).split("|")[1] == first.split("|")[1]  # frame 0's pixels again
    assert at_1_again.split("|")[1] == at_1.split("|")[1]

    red = synth.DEFAULT_DISCS[0]
    click_image_pixel(page, "#frame-view", red.x0, red.y0, 160)
    wait_status(page, "Positive click added to object 1")
    press_outside_fields(page, "n")
    page.wait_for_function(
        "() => document.querySelector('#click-mode input[value=\"negative\"]').checked"
    )
    click_image_pixel(page, "#frame-view", 150, 10, 160)
    wait_status(page, "Negative click added to object 1")
    assert_click_near(page, 150, 10)
    press_outside_fields(page, "z")
    wait_status(page, "Undone.")
    press_outside_fields(page, "p")
    page.wait_for_function(
        "() => document.querySelector('#click-mode input[value=\"positive\"]').checked"
    )
    click_image_pixel(page, "#frame-view", red.x0, red.y0, 160)
    wait_status(page, "Positive click added to object 1")
    before = page.locator("#status").inner_text()

    # Typing into the Name box types; it neither undoes nor tracks nor steps.
    name = page.get_by_label("Name")
    name.click()
    name.press_sequentially("tz")
    name.press("ArrowLeft")
    page.wait_for_timeout(1500)
    assert name.input_value() == "tz"
    assert page.locator("#status").inner_text() == before
    assert frame_number(page) == 0

    press_outside_fields(page, "t")
    wait_status(page, "Tracking…", timeout=120_000)
    press_outside_fields(page, "Escape")
    wait_status(page, "Cancelled after", timeout=120_000)
    found = re.search(r"Cancelled after (\d+) frames", page.locator("#status").inner_text())
    assert found and int(found[1]) < 40


def test_try_an_example_then_click_where_the_hint_says_and_track(app, page, tmp_path):
    page.goto(app.url)
    page.locator("#try-example").click()
    wait_status(page, "Example clip")
    page.locator("#video-facts").get_by_text("60 frames").wait_for()
    # the marking step opens; the hint is in the status line under the frame
    hint = page.locator("#status")
    hint.get_by_text("Click the centre of each dark mouse").wait_for()
    assert "CC0" in hint.inner_text()
    points = [(int(x), int(y)) for x, y in re.findall(r"\((\d+), (\d+)\)", hint.inner_text())]
    assert len(points) == 3
    x, y = points[0]
    click_image_pixel(page, "#frame-view", x, y, 480)
    wait_status(page, "Positive click added to object 1")
    assert_click_near(page, x, y)
    open_step(page, "3 Track")
    page.locator("#track-range").get_by_text("Frame range").click()
    page.locator("#end-frame input, #end-frame textarea").first.fill("3")
    page.locator("#track").click()
    wait_status(page, "Tracked 4 frames", timeout=300_000)
    full_page_screenshot(page, tmp_path / "example.png")
