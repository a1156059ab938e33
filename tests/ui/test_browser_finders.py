"""Finding objects as a person does it, in headless Chromium (Debian's /usr/bin/chromium).

A clip of two discs moving over a still background: open *2 Mark*, find the moving
objects, click inside the smaller disc's proposal to pick it (its box is then drawn solid,
the other's stays dashed, read from the frame image's pixels), accept the picked (the
objects table lists exactly that one), find again and dismiss the proposals (they leave the
frame, and the button hides). Run alone with ``-m browser``.
"""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest

from tests import synth
from tests.appserver import start_app
from tests.browser import (
    click_image_pixel,
    full_page_screenshot,
    open_step,
    wait_status,
)

pytestmark = pytest.mark.browser

H, W, T = 120, 160, 16
# Fast enough that the median background of the frames shows no disc: each pixel is
# covered on at most three of the sixteen frames.
BIG = synth.Disc(x0=20, y0=40, vx=8.0, vy=0.0, radius=10, color=(230, 60, 40))
SMALL = synth.Disc(x0=140, y0=85, vx=-8.0, vy=0.0, radius=8, color=(40, 90, 230))
# The page draws proposal n in object n's colour (matplotlib's tab10 from 1): the largest
# blob, the big disc, is proposal 1 (blue), the small disc proposal 2 (orange).
BLUE, ORANGE = (31, 119, 180), (255, 127, 14)

FRAME_PNG = """() => {
    const img = document.querySelector('#frame-view img');
    const c = document.createElement('canvas');
    c.width = img.naturalWidth; c.height = img.naturalHeight;
    c.getContext('2d').drawImage(img, 0, 0);
    return c.toDataURL('image/png');
}"""
FRAME_SRC = "() => { const i = document.querySelector('#frame-view img'); return i && i.src; }"


@pytest.fixture(scope="module")
def app(tmp_path_factory, random_checkpoint):
    server = start_app(tmp_path_factory.mktemp("finders-app"), random_checkpoint)
    yield server
    server.stop()


def frame_pixels(page) -> np.ndarray:
    """The frame image the page shows, as (h, w, 3) uint8."""
    from PIL import Image

    url = page.evaluate(FRAME_PNG)
    data = base64.b64decode(url.split(",", 1)[1])
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def wait_new_frame(page, before: str) -> None:
    page.wait_for_function(
        f"""() => {{ const i = document.querySelector('#frame-view img');
                    return i && i.src !== {before!r} && i.complete && i.naturalWidth > 0; }}"""
    )


def coloured(image: np.ndarray, color) -> np.ndarray:
    return np.abs(image.astype(int) - np.array(color)).max(axis=2) <= 40


def bottom_edge_cover(image: np.ndarray, disc: synth.Disc, color) -> float:
    """How much of the bottom edge of the box around ``disc`` (at frame 0) is drawn in
    ``color``: the best row near the disc's lowest pixel, over the disc's width less a
    pixel each side. A solid line covers it all; a dashed one about half."""
    k = image.shape[1] / W
    rows = range(int((disc.y0 + disc.radius - 3) * k), int((disc.y0 + disc.radius + 4) * k))
    cols = slice(int((disc.x0 - disc.radius + 1) * k), int((disc.x0 + disc.radius - 1) * k))
    hits = coloured(image, color)
    return max(hits[r, cols].mean() for r in rows)


# The object names the objects table shows: its visible text only (the table also keeps
# hidden copies of its cells).
TABLE_NAMES = """() => {
    const table = document.querySelector('#objects-table');
    if (!table) return [];
    const names = [];
    const walk = document.createTreeWalker(table, NodeFilter.SHOW_TEXT);
    while (walk.nextNode()) {
        const el = walk.currentNode.parentElement;
        const found = walk.currentNode.textContent.match(/found [0-9]+/g);
        if (!found || !el.checkVisibility({visibilityProperty: true, opacityProperty: true}))
            continue;
        const r = el.getBoundingClientRect();
        if (r.width > 0 && r.height > 0) names.push(...found);
    }
    return names;
}"""


def table_names(page) -> list[str]:
    return page.evaluate(TABLE_NAMES)


def test_pick_one_proposal_accept_it_then_dismiss_the_next(app, page, tmp_path):
    frames = synth.make_frames(num_frames=T, height=H, width=W, discs=(BIG, SMALL))
    clip = synth.write_video(tmp_path / "moving_discs.mp4", frames, fps=10)
    page.goto(app.url)
    page.locator("#upload input[type=file]").set_input_files(str(clip))
    wait_status(page, "Loaded")
    open_step(page, "2 Mark")
    page.locator("#finders-panel").get_by_text("Find objects").first.click()
    page.locator("#find-objects").wait_for(state="visible")  # the panel is open
    count = page.get_by_label("How many objects (the largest)")
    count.fill("2")
    count.press("Tab")  # on to the next field, as a person does
    for control in ("#finder-picked", "#accept-found", "#accept-picked", "#dismiss-found"):
        # nothing to pick, accept or dismiss yet
        assert page.locator(control).count() == 0 or not page.locator(control).is_visible()

    assert count.input_value() == "2"  # still what was typed when Find is pressed
    before = page.evaluate(FRAME_SRC)
    page.locator("#find-objects").click()
    wait_status(page, "2 proposals on frame 0")
    wait_new_frame(page, before)
    page.locator("#dismiss-found").wait_for(state="visible")
    page.locator("#guide").get_by_text("Accept the picked").wait_for()  # what to do next
    dashed = frame_pixels(page)
    assert 0.2 <= bottom_edge_cover(dashed, SMALL, ORANGE) <= 0.8

    before = page.evaluate(FRAME_SRC)
    click_image_pixel(page, "#frame-view", SMALL.x0, SMALL.y0, W)
    wait_status(page, "Proposal 2 picked")
    wait_new_frame(page, before)
    assert page.locator("#finder-picked textarea, #finder-picked input").first.input_value() == "2"
    # The accept button for what was picked is now the one that stands out.
    page.wait_for_function(
        "() => document.querySelector('#accept-picked').classList.contains('primary')"
    )
    assert "primary" not in (page.locator("#accept-found").get_attribute("class") or "").split()
    shot = tmp_path / "finder_proposals.png"
    full_page_screenshot(page, shot)
    drawn = frame_pixels(page)
    assert bottom_edge_cover(drawn, SMALL, ORANGE) >= 0.95  # picked: solid
    assert 0.2 <= bottom_edge_cover(drawn, BIG, BLUE) <= 0.8  # not picked: dashed

    page.locator("#accept-picked").click()
    wait_status(page, "1 object added")
    page.wait_for_function(f"() => ({TABLE_NAMES})().length > 0")
    assert table_names(page) == ["found 2"]
    page.locator("#dismiss-found").wait_for(state="hidden")  # the proposals became objects
    page.locator("#guide").get_by_text("press Track").wait_for()
    assert not page.locator("#accept-found").is_visible()

    before = page.evaluate(FRAME_SRC)
    page.locator("#find-objects").click()
    wait_status(page, "2 proposals on frame 0")
    wait_new_frame(page, before)
    assert coloured(frame_pixels(page), ORANGE).sum() > 0
    before = page.evaluate(FRAME_SRC)
    page.locator("#dismiss-found").click()
    wait_status(page, "2 proposals dismissed")
    wait_new_frame(page, before)
    page.locator("#dismiss-found").wait_for(state="hidden")
    # Proposal 2's orange is gone (no object has it: the one object is drawn blue).
    assert coloured(frame_pixels(page), ORANGE).sum() == 0
    assert table_names(page) == ["found 2"]
