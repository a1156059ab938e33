"""The page as a guided flow. Without a browser: the steps an upload, a click and a run
show, and the same steps after a reload. In headless Chromium (marker ``browser``): before
a video only the upload, the model and help show; each step appears when it has something
to show; the frame can be played where it is corrected; at a phone's width nothing needs
sideways scrolling.

Screenshots of each step are kept in the test's folder (their paths are printed), with
the page's height and its count of visible controls (tests.browser.VISIBLE_CONTROLS_JS).
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

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
from tests.ui.attach import attached

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


@pytest.mark.browser
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


def _prop(update, name: str):
    """A property of an update, given as ``gr.update(...)`` or as a component."""
    return update[name] if isinstance(update, dict) else getattr(update, name)


def _shown_steps(ctx, update: dict) -> set[str]:
    return {step for step, tab in ctx.page.flow.tabs.items() if _prop(update[tab], "visible")}


def test_upload_and_tracking_show_their_steps_and_a_reload_restores_them(ctx, user, tmp_path):
    gr = pytest.importorskip("gradio")
    from sam2web.ui import flow
    from sam2web.ui import handlers as h
    from sam2web.ui.reattach import reattach
    from sam2web.ui.user import UserSession

    f = ctx.page.flow
    clip = synth.write_video(tmp_path / "discs.mp4", synth.make_frames(4, 120, 160), fps=4)
    before = flow.shown(ctx, user)
    assert _shown_steps(ctx, before) == {"load"} and not _prop(before[f.viewer], "visible")
    assert "upload" in before[f.guide]

    h.upload(ctx, user, str(clip))
    loaded = flow.after_upload(ctx, user)
    assert _shown_steps(ctx, loaded) == {"load", "mark", "track", "project"}
    assert _prop(loaded[f.viewer], "visible") and _prop(loaded[f.steps], "selected") == "mark"
    assert "click on an animal" in loaded[f.guide]

    k = user.display_scale
    disc = synth.DEFAULT_DISCS[0]
    h.click_frame(
        ctx,
        user,
        0,
        "positive",
        gr.SelectData(None, {"index": [disc.x0 * k, disc.y0 * k], "value": None}),
    )
    assert "press **Track" in flow.show_guide(ctx, user)[f.guide]
    run = ("forward", "", "", 0, 0.5, True, True, 0, "", "mm", "")
    tracked = list(h.track(ctx, user, *run))[-1]
    assert tracked[ctx.page.summary]["visible"]  # the summary has a row: it shows
    done = flow.after_change(ctx, user)
    assert _shown_steps(ctx, done) == set(flow.WITH_VIDEO) | set(flow.WITH_RESULTS) | {"load"}
    assert f.steps not in done  # the step the user is in stays open
    assert "Play" in done[f.guide]

    # A reload attaches to the kept session and shows the same steps, on the review step.
    tab = SimpleNamespace(session_hash="tab-1")
    first = attached(reattach(ctx, user, "", request=tab))
    token = first[ctx.page.token]
    again = attached(reattach(ctx, UserSession(ctx.engine), token, request=tab))
    assert again[ctx.page.state] is user
    assert _shown_steps(ctx, again) == _shown_steps(ctx, done)
    assert _prop(again[f.viewer], "visible") and _prop(again[f.steps], "selected") == "track"

    # After a reset the results' steps go and the guide asks for a click again.
    h.reset(ctx, user, 0)
    reset = flow.after_change(ctx, user)
    assert _shown_steps(ctx, reset) == {"load", "mark", "track", "project"}
    assert "click on an animal" in reset[f.guide]


def test_playing_advances_one_frame_per_tick_and_stops_at_the_last(ctx, user, tmp_path):
    from sam2web.ui import flow
    from sam2web.ui import handlers as h

    f, p = ctx.page.flow, ctx.page
    clip = synth.write_video(tmp_path / "d.mp4", synth.make_frames(3, 120, 160), fps=3)
    h.upload(ctx, user, str(clip))
    started = flow.play(ctx, user, 2)  # at the last frame: from the first
    assert started[p.frame_slider] == 0 and _prop(started[f.timer], "active")
    assert flow.tick(ctx, user, 0) == {p.frame_slider: 1}
    assert flow.tick(ctx, user, 1) == {p.frame_slider: 2}
    stopped = flow.tick(ctx, user, 2)
    assert not _prop(stopped[f.timer], "active") and p.frame_slider not in stopped
    assert _prop(stopped[f.play_btn], "visible") and not _prop(stopped[f.pause_btn], "visible")


def test_every_action_that_changes_the_frame_shown_or_edits_stops_playing(engine):
    from sam2web.ui.wiring import build_app

    demo = build_app(engine)
    p = demo.sam2web_page
    f = p.flow
    stops = set()
    for fn in demo.fns.values():
        if fn.name == "pause":
            assert fn.outputs == [f.timer, f.play_btn, f.pause_btn]
            stops |= {(demo.blocks[b], event) for b, event in fn.targets}
    keys = [(button, "click") for button in p.keys.steps.values()]  # the arrow keys
    expected = [
        (f.pause_btn, "click"),
        (p.frame_slider, "release"),
        (p.frame_view, "select"),  # a click on the frame
        *keys,
        (p.mode, "change"),  # P, N, B
        (p.undo_btn, "click"),  # and Z
        (p.clear_btn, "click"),
        (f.steps, "select"),  # another step
        (p.add_btn, "click"),
        (p.remove_btn, "click"),
        (p.rename_btn, "click"),
        (p.active, "input"),
        (p.objects.table, "select"),
        (p.frame_number, "submit"),
        (p.gallery, "select"),
        (p.events, "input"),
        (p.track_btn, "click"),
        (p.reset_btn, "click"),
        (p.upload, "upload"),
        (p.example.button, "click"),
        (p.masks.fix_btn, "click"),
        (p.finders.find_btn, "click"),
    ]
    missing = [(getattr(c, "elem_id", None) or c, e) for c, e in expected if (c, e) not in stops]
    assert not missing
    # Play itself, its ticks and the frame they show do not stop it.
    for trigger in [(f.play_btn, "click"), (f.timer, "tick"), (p.frame_slider, "change")]:
        assert trigger not in stops
    assert (p.frame_view, "change") not in stops
