"""What the browser tests share: Debian's Chromium and its flags, and the steps a person takes
on the page (click a pixel of the original frame, wait for a status, add an object)."""

from __future__ import annotations

import os
import re
import shutil
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


def click_image_pixel(page, selector: str, x: float, y: float, frame_width: int) -> None:
    """Click the frame view at pixel (x, y) of the ORIGINAL frame.

    The page shows the frame resized (``naturalWidth / frame_width``), and the browser draws
    that image with ``object-fit: scale-down`` inside the element's box.
    """
    img = page.locator(f"{selector} img").first
    img.wait_for(state="visible")
    img.scroll_into_view_if_needed()
    geom = img.evaluate("""el => {
        const r = el.getBoundingClientRect();
        return {left: r.left, top: r.top, width: r.width, height: r.height,
                nw: el.naturalWidth, nh: el.naturalHeight};
    }""")
    shown = geom["nw"] / frame_width  # original -> displayed image pixels
    fit = min(geom["width"] / geom["nw"], geom["height"] / geom["nh"], 1.0)
    off_x = (geom["width"] - geom["nw"] * fit) / 2
    off_y = (geom["height"] - geom["nh"] * fit) / 2
    page.mouse.click(geom["left"] + off_x + x * shown * fit, geom["top"] + off_y + y * shown * fit)


def wait_status(page, text: str, timeout: float = 120_000) -> None:
    page.locator("#status").get_by_text(text).first.wait_for(timeout=timeout)


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
