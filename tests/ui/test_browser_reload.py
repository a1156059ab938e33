"""A reload in the middle of a run, in headless Chromium: upload, click, Track, reload
while the run is held part-way (by an event, not by the CPU's speed), then the run ends on
the page that came back with the same masks and files as the same work without a reload.
The app runs in this process (127.0.0.1, stopped by the test) so the test can hold its run."""

from __future__ import annotations

import dataclasses
import socket
import threading
from pathlib import Path

import numpy as np
import pytest

from tests import synth
from tests.browser import CHROMIUM, CHROMIUM_ARGS, add_object_and_click, open_step, wait_status

pytestmark = pytest.mark.browser

RED = synth.DEFAULT_DISCS[0]
FRAMES = 8


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _masks(user) -> dict:
    store = user.tracking.store
    return {(f, o): m for f in store.frames() for o, m in store.read(f).masks.items()}


def test_a_reload_mid_run_gives_the_same_masks_and_files(tmp_path, engine, monkeypatch):
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM}")
    from sam2web.session.user import UserSession
    from sam2web.ui.a11y import A11Y_CSS
    from sam2web.ui.style import PAGE_CSS
    from sam2web.ui.wiring import build_app

    gate, held = threading.Event(), threading.Event()
    propagate = UserSession.propagate

    def gated(self, *args, **kwargs):
        for step in propagate(self, *args, **kwargs):
            yield step
            if step.done == 3:
                held.set()
                assert gate.wait(120)

    monkeypatch.setattr(UserSession, "propagate", gated)
    engine.settings = dataclasses.replace(engine.settings, host="127.0.0.1")
    clip = synth.write_video(tmp_path / "discs.mp4", synth.make_frames(FRAMES, 120, 160), fps=8)
    demo = build_app(engine).queue()
    port = _free_port()
    demo.launch(
        server_name="127.0.0.1",
        server_port=port,
        prevent_thread_lock=True,
        css=PAGE_CSS + A11Y_CSS,
    )
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.set_default_timeout(120_000)
                page.goto(f"http://127.0.0.1:{port}/")
                page.locator("#upload input[type=file]").set_input_files(str(clip))
                wait_status(page, "Loaded")
                add_object_and_click(page, "red disc", RED)
                open_step(page, "3 Track")
                page.locator("#track").click()
                assert held.wait(120), "the run did not start"
                page.reload()  # mid-run
                # The page that came back shows the session and the held run's progress.
                page.locator("#status").get_by_text("3/8 frames").first.wait_for()
                assert "discs.mp4" in page.locator("body").inner_text()
                gate.set()
                wait_status(page, f"Tracked {FRAMES} frames")
            finally:
                browser.close()
        (user,) = [u for u in demo.sam2web_registry.keeper.sessions() if u.folder is not None]
        got = _masks(user)
        files = {f.name: f.read_bytes() for f in user.exports.files() if f.suffix == ".csv"}
        history = list(user.tracking.history)
    finally:
        gate.set()
        demo.close()

    # The same work without a reload: the recorded clicks and run replayed on a new session.
    monkeypatch.setattr(UserSession, "propagate", propagate)
    reference = UserSession(engine)
    try:
        reference.upload(clip, source_name="discs.mp4")
        tracking = reference.ensure_tracking()
        for action in history:
            reference.replay_on_model(tracking, action)
        expected = _masks(reference)
        assert len(got) == FRAMES and got.keys() == expected.keys()
        for key, mask in expected.items():
            assert mask.any() and np.array_equal(got[key], mask), key
        reference.calibration = user.calibration
        ref_files = {
            f.name: f.read_bytes() for f in reference.export().files() if f.suffix == ".csv"
        }
        assert files and files == ref_files
    finally:
        reference.close()
