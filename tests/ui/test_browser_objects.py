"""The objects panel, the example's hint after a reload, Play and a refused upload as a
person meets them, in headless Chromium.

Objects: load the example clip, click two mice (two objects), read the table (colour,
name, where each is), click a row (it becomes the active object: the frame outlines it
thicker and the active-object list follows) and its *frame view* cell (the object's
colour leaves the frame, and comes back). The hint: load the example, reload, the status
line says where to click again; then Play stops on a frame key. A refused upload: one
sentence in the status line, no error badge, the page as it was. Screenshots are written
into each test's folder (their paths are printed).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sam2web.types import color_for
from tests.appserver import start_app
from tests.browser import (
    click_image_pixel,
    full_page_screenshot,
    open_step,
    wait_status,
)

pytestmark = pytest.mark.browser

WIDTH = 480  # the example clip's frame width

# How many pixels of the frame shown are tinted or outlined in the colour [r, g, b]: their
# difference from their own grey points the way the colour's does (cosine > 0.9), by more
# than 20 levels. The floor and the animals are grey, so only overlays count.
COLOURED_JS = """([r, g, b]) => {
    const img = document.querySelector('#frame-view img');
    if (!img || !img.complete || !img.naturalWidth) return -1;
    const c = document.createElement('canvas');
    c.width = img.naturalWidth; c.height = img.naturalHeight;
    const ctx = c.getContext('2d');
    ctx.drawImage(img, 0, 0);
    const d = ctx.getImageData(0, 0, c.width, c.height).data;
    const m = (r + g + b) / 3, o = [r - m, g - m, b - m];
    const on = Math.hypot(...o);
    let n = 0;
    for (let i = 0; i < d.length; i += 4) {
        const k = (d[i] + d[i + 1] + d[i + 2]) / 3;
        const p = [d[i] - k, d[i + 1] - k, d[i + 2] - k];
        const pn = Math.hypot(...p);
        if (pn > 20 && (p[0] * o[0] + p[1] * o[1] + p[2] * o[2]) / (pn * on) > 0.9) n++;
    }
    return n;
}"""


@pytest.fixture(scope="module")
def app(tmp_path_factory, random_checkpoint):
    server = start_app(tmp_path_factory.mktemp("objects-app"), random_checkpoint)
    yield server
    server.stop()


def shot(page, tmp_path: Path, name: str) -> None:
    path = tmp_path / f"{name}.png"
    full_page_screenshot(page, path)
    print(f"\n[objects] {name}: {path}")


def coloured(page, obj_id: int) -> int:
    return page.evaluate(COLOURED_JS, list(color_for(obj_id)))


def wait_coloured(page, obj_id: int, test: str) -> int:
    """Wait until the frame shown has ``n`` pixels of the object's colour with ``test``
    (a JavaScript condition on n) true; returns n."""
    page.wait_for_function(
        f"(rgb) => {{ const n = ({COLOURED_JS})(rgb); return n >= 0 && ({test}); }}",
        arg=list(color_for(obj_id)),
    )
    return coloured(page, obj_id)


def load_example(page, app) -> list[tuple[int, int]]:
    page.goto(app.url)
    page.locator("#try-example").click()
    wait_status(page, "Example clip")
    hint = page.locator("#status").inner_text()
    return [(int(x), int(y)) for x, y in re.findall(r"\((\d+), (\d+)\)", hint)]


# The table's rows as drawn: Gradio's Dataframe draws each cell as a grid cell.
ROWS_JS = """() => {
    const rows = [];
    for (const c of document.querySelectorAll('#objects-table [role=gridcell][data-row]')) {
        (rows[+c.dataset.row] ??= [])[+c.dataset.col] = c.innerText.trim();
    }
    return rows;
}"""


def table_rows(page) -> list[list[str]]:
    return page.evaluate(ROWS_JS)


def cell(page, row: int, column: int):
    return page.locator(f'#objects-table [data-testid="cell-{row}-{column}"]')


def test_the_objects_table_lists_picks_hides_and_shows_objects(app, page, tmp_path):
    points = load_example(page, app)
    first, second = points[0], points[1]
    click_image_pixel(page, "#frame-view", *first, WIDTH)
    wait_status(page, "Positive click added to object 1")
    page.get_by_label("Name").fill("mouse 2")
    page.locator("#add-object").click()
    wait_status(page, "Added mouse 2")
    click_image_pixel(page, "#frame-view", *second, WIDTH)
    wait_status(page, "Positive click added to mouse 2")
    # The table follows the click (after the status line): both objects prompted.
    page.wait_for_function(
        f"() => ({ROWS_JS})().filter(r => r[2] === 'prompted on frame 0').length === 2"
    )
    rows = table_rows(page)
    assert [r[:2] for r in rows] == [["1", "object 1"], ["2", "▶ mouse 2"]]
    assert [r[2:] for r in rows] == [["prompted on frame 0", "shown"]] * 2
    for i in (0, 1):  # each number on its object's colour
        background = cell(page, i, 0).evaluate("el => getComputedStyle(el).backgroundColor")
        r, g, b = color_for(i + 1)
        assert background == f"rgb({r}, {g}, {b})"
    shot(page, tmp_path, "1_two_objects")
    one = wait_coloured(page, 1, "n > 0")
    wait_coloured(page, 2, "n > 200")  # mouse 2 is drawn on the frame

    # A click on object 1's row: it is the active object, outlined thicker on the frame.
    cell(page, 0, 1).click()
    wait_status(page, "object 1 is the active object")
    page.locator("#active-object input").first.wait_for()
    page.wait_for_function(
        "() => document.querySelector('#active-object input').value === '1: object 1'"
    )
    assert wait_coloured(page, 1, f"n > {one}") > one
    assert table_rows(page)[0][1] == "▶ object 1"
    two = wait_coloured(page, 2, "n > 200")  # mouse 2 as drawn with object 1 active
    shot(page, tmp_path, "2_object_1_active")

    # Its frame view cell hides mouse 2 on the frame, and shows it again.
    cell(page, 1, 3).click()
    wait_status(page, "mouse 2 is hidden on the frame here")
    assert wait_coloured(page, 2, f"n < {two} / 50") < two / 50
    assert table_rows(page)[1][3] == "hidden"
    shot(page, tmp_path, "3_mouse_2_hidden")
    cell(page, 1, 3).click()
    wait_status(page, "mouse 2 is shown on the frame")
    assert wait_coloured(page, 2, f"n === {two}") == two  # the same picture again
    assert table_rows(page)[1][3] == "shown"
    shot(page, tmp_path, "4_mouse_2_shown")


def frame_number(page) -> int:
    return int(float(page.locator("#frame-number input").first.input_value()))


def test_a_reload_shows_the_hint_again_and_a_frame_key_stops_play(app, page, tmp_path):
    points = load_example(page, app)
    page.reload()
    status = page.locator("#status")
    status.get_by_text("Click the centre of each dark mouse").wait_for()
    shown = [(int(x), int(y)) for x, y in re.findall(r"\((\d+), (\d+)\)", status.inner_text())]
    assert shown == points
    open_step(page, "1 Load")
    assert "Click the centre of each dark mouse" in page.locator("#example-hint").inner_text()
    shot(page, tmp_path, "1_reloaded_with_hint")

    page.locator("#play").click()
    page.locator("#pause").wait_for()
    page.wait_for_function("() => +document.querySelector('#frame-number input').value >= 2")
    page.evaluate("() => document.activeElement && document.activeElement.blur()")
    page.keyboard.press("ArrowRight")
    page.locator("#play").wait_for()  # stopped
    assert not page.locator("#pause").is_visible()
    # A tick already on its way when the key was pressed may still land: one frame more.
    page.wait_for_timeout(1000)
    stopped = frame_number(page)
    # Ten ticks' time later (0.3 s each) the frame has not moved on.
    page.wait_for_timeout(3000)
    assert frame_number(page) == stopped < 59
    shot(page, tmp_path, "2_play_stopped_by_a_key")


def test_a_refused_upload_says_why_in_the_status_line_and_changes_nothing(app, page, tmp_path):
    bad = tmp_path / "holiday.mp4"
    bad.write_text("a text file, not a video\n" * 40)
    load_example(page, app)  # a video is shown; the upload field is still empty
    page.locator("#key-help").wait_for()
    open_step(page, "1 Load")
    facts = page.locator("#video-facts").inner_text()
    hint = page.locator("#example-hint").inner_text()
    picture = page.locator("#frame-view img").first.get_attribute("src")
    page.locator("#upload input[type=file]").set_input_files(str(bad))
    sentence = "The file 'holiday.mp4' is not a video or image sequence sam2web can read"
    wait_status(page, sentence)
    assert page.get_by_role("tab", name="1 Load", selected=True).is_visible()  # no step opened
    assert page.locator("#video-facts").inner_text() == facts  # the loaded clip stays
    assert "sam2web_example.mp4" in facts
    assert page.locator("#example-hint").inner_text() == hint and "dark mouse" in hint
    assert page.locator("#frame-view img").first.get_attribute("src") == picture
    assert page.locator("#status").inner_text().startswith(sentence)  # the sentence alone
    # A frame key's answer comes after everything the upload set off has been answered.
    page.evaluate("() => document.activeElement && document.activeElement.blur()")
    page.keyboard.press("ArrowRight")
    page.wait_for_function("() => +document.querySelector('#frame-number input').value === 1")
    badges = page.locator('[data-testid="status-tracker"] .error, .toast-body')
    visible = [badges.nth(i).is_visible() for i in range(badges.count())]
    assert not any(visible), f"{sum(visible)} error badge(s) or message(s) shown"
    assert sentence in page.locator("#status").inner_text()
    shot(page, tmp_path, "refused_upload")
