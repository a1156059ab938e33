"""What the browser tests share: Debian's Chromium and its flags, and the steps a person takes
on the page (click a pixel of the original frame, wait for a status, add an object)."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

CHROMIUM = os.environ.get("SAM2WEB_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-quic",
    "--disable-sync",
]


@contextlib.contextmanager
def chromium_page(**context_args) -> Iterator:
    """A page of Debian's headless Chromium at 1400x1000 (``context_args`` go to the
    browser context), closed afterwards; skips the test where Playwright or Chromium is
    missing."""
    import pytest

    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (scripts/run-tests.sh installs Debian's)")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        context = browser.new_context(viewport={"width": 1400, "height": 1000}, **context_args)
        page = context.new_page()
        page.set_default_timeout(60_000)
        try:
            yield page
        finally:
            context.close()
            browser.close()


def click_image_pixel(page, selector: str, x: float, y: float, frame_width: int) -> None:
    """Click the frame view at pixel (x, y) of the ORIGINAL frame.

    The page shows the frame resized (``naturalWidth / frame_width``), and the browser draws
    that image with ``object-fit: scale-down`` inside the element's box.
    """
    for _ in range(20):
        img = page.locator(f"{selector} img").first
        img.wait_for(state="visible")
        img.scroll_into_view_if_needed()
        geom = img.evaluate("""el => {
            const r = el.getBoundingClientRect();
            return {left: r.left, top: r.top, width: r.width, height: r.height,
                    nw: el.naturalWidth, nh: el.naturalHeight};
        }""")
        if geom["nw"] > 0:
            break
        page.wait_for_timeout(250)  # the frame was just replaced (an action redraws it)
    shown = geom["nw"] / frame_width  # original -> displayed image pixels
    fit = min(geom["width"] / geom["nw"], geom["height"] / geom["nh"], 1.0)
    off_x = (geom["width"] - geom["nw"] * fit) / 2
    off_y = (geom["height"] - geom["nh"] * fit) / 2
    page.mouse.click(geom["left"] + off_x + x * shown * fit, geom["top"] + off_y + y * shown * fit)


# What the page says when a wait for a status runs out: the status line and any error
# Gradio shows (its toasts), so a failure reads as what a person would have seen.
PAGE_SAYS_JS = """() => {
    const status = document.querySelector('#status');
    const toasts = [...document.querySelectorAll('.toast-body, [data-testid="toast-body"]')];
    return {status: status ? status.innerText : null,
            toasts: toasts.map(t => t.innerText.trim()).filter(Boolean)};
}"""


def wait_status(page, text: str, timeout: float = 120_000) -> None:
    """Wait until the status line says ``text``; on timeout, fail with what it said."""
    try:
        page.locator("#status").get_by_text(text).first.wait_for(timeout=timeout)
    except Exception as err:  # playwright's TimeoutError, or the page gone
        try:
            said = page.evaluate(PAGE_SAYS_JS)
        except Exception:  # the page itself is gone: the first error says why
            raise err from None
        raise AssertionError(
            f"the status never said {text!r} in {timeout / 1000:.0f} s; "
            f"it says {said['status']!r}, errors shown: {said['toasts']}"
        ) from err


def assert_click_near(page, x: float, y: float) -> None:
    """The page reports where the click landed in original-frame pixels."""
    text = page.locator("#status").inner_text()
    found = re.search(r"at x=(\d+), y=(\d+)", text)
    assert found, text
    assert abs(int(found[1]) - x) <= 1 and abs(int(found[2]) - y) <= 1, text


def add_object_and_click(page, name: str, disc, frame_width: int = 160):
    """Name and add an object in the page, then click the disc's centre at frame 0."""
    page.get_by_label("Name").fill(name)
    page.locator("#add-object").click()
    wait_status(page, f"Added {name}")
    click_image_pixel(page, "#frame-view", disc.x0, disc.y0, frame_width)
    wait_status(page, f"Positive click added to {name}")
    return disc


def full_page_screenshot(page, shot: Path) -> None:
    """A screenshot of the whole page (not blank: a real page of this app is over 20 kB),
    also copied to SAM2WEB_SCREENSHOT_DIR when that is set, for a person to look at."""
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 20_000
    keep = os.environ.get("SAM2WEB_SCREENSHOT_DIR")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(keep) / shot.name)


def open_step(page, label: str) -> None:
    """Open a step of the page by its tab's label (e.g. "3 Track")."""
    page.get_by_role("tab", name=label).click()


# What a person can operate on the page: buttons (with accordions' headers, tabs and file
# drops), fields, lists, sliders, and each radio or check box option, when they are drawn
# (not display:none, not zero-sized), outside Gradio's own footer. Options are measured by
# their label: Gradio draws the input itself as a small dot inside it.
VISIBLE_CONTROLS_JS = """() => {
    const sel = 'button, input:not([type=hidden]), select, textarea, [role=slider]';
    const seen = new Set();
    for (const el of document.querySelectorAll(sel)) {
        if (el.closest('footer')) continue;
        const option = ['radio', 'checkbox'].includes(el.type) && el.closest('label');
        const shown = option || el;
        const r = shown.getBoundingClientRect(), s = getComputedStyle(shown);
        if (r.width < 2 || r.height < 2 || s.visibility === 'hidden') continue;
        seen.add(shown);
    }
    return seen.size;
}"""

# Tables drawn on the page without a cell that holds any text (a Dataframe draws its header
# as a table and its rows as grid cells: they are judged together, by their block).
EMPTY_TABLES_JS = """() => {
    const blocks = new Set();
    for (const t of document.querySelectorAll('table')) {
        const r = t.getBoundingClientRect();
        if (r.width > 0 && r.height > 0) blocks.add(t.closest('.block') || t);
    }
    return [...blocks].filter(b => ![...b.querySelectorAll('td, [role=gridcell]')]
        .some(cell => cell.innerText.trim())).length;
}"""


def page_height(page) -> int:
    return page.evaluate("() => document.documentElement.scrollHeight")
