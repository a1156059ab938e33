"""A page that loads again, without a browser: the load handler re-attaches to the
browser's kept session and restores it, a run held mid-way goes on while no page follows
it, and a token opens only its own session."""

from __future__ import annotations

import threading
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

gr = pytest.importorskip("gradio")

from sam2web.session.background import running  # noqa: E402
from sam2web.ui import handlers as h  # noqa: E402
from sam2web.ui.reattach import reattach  # noqa: E402
from sam2web.ui.user import UserSession  # noqa: E402
from tests import synth  # noqa: E402
from tests.ui.attach import attached  # noqa: E402

# As the page sends it, with a calibration of 2.5 px per mm and 10 fps.
TRACK = ("forward", "", "", 0, 0.5, True, True, 0, "2.5", "mm", "10")


@pytest.fixture
def clip(tmp_path) -> Path:
    return synth.write_video(tmp_path / "discs.mp4", synth.make_frames(6, 120, 160), fps=10)


def tab(name: str) -> SimpleNamespace:
    return SimpleNamespace(session_hash=name)


def load(ctx, token, name: str) -> tuple[UserSession, list[dict]]:
    """A page load of tab ``name`` with the browser's ``token``: its session and updates."""
    fresh = UserSession(ctx.engine)
    loading = reattach(ctx, fresh, token, request=tab(name))
    updates = [attached(loading), *loading]
    return updates[0][ctx.page.state], updates


def masks_of(user: UserSession) -> dict:
    store = user.tracking.store
    return {(f, o): m for f in store.frames() for o, m in store.read(f).masks.items()}


def select(user: UserSession, x: float, y: float) -> gr.SelectData:
    k = user.display_scale
    return gr.SelectData(None, {"index": [x * k, y * k], "value": None})


def start(ctx, clip, name="tab-1"):
    """A first visit: load, upload, one click on the red disc."""
    user, updates = load(ctx, "", name)
    token = updates[0][ctx.page.token]
    h.upload(ctx, user, str(clip), request=tab(name))
    h.click_frame(ctx, user, 0, "positive", select(user, 40, 60))
    return user, token


def test_a_reload_restores_the_video_objects_masks_results_and_calibration(ctx, clip):
    p = ctx.page
    user, token = start(ctx, clip)
    tracked = list(h.track(ctx, user, *TRACK, request=tab("tab-1")))[-1]
    ctx.registry.close(tab("tab-1"))  # the reload's unload
    assert not user.closed and user.workspace.root.is_dir()

    again, updates = load(ctx, token, "tab-2")
    shown = updates[0]
    assert again is user and shown[p.token] == token
    assert "**discs.mp4** — 6 frames" in shown[p.facts]
    assert shown[p.active]["choices"] == [("1: object 1", 1)]
    frame = shown[p.frame_slider]["value"]  # the frame the run ended on
    assert frame == 5 and np.array_equal(shown[p.frame_view], user.view_frame(frame))
    assert shown[p.files] == tracked[p.files] and shown[p.video] == tracked[p.video]
    assert shown[p.summary] == tracked[p.summary]
    assert (shown[p.pixels_per_unit], shown[p.unit], shown[p.fps]) == ("2.5", "mm", "10")
    assert "Welcome back" in shown[p.status]


def test_a_run_goes_on_while_no_page_follows_it_and_shows_on_return(ctx, clip, engine):
    p = ctx.page
    reference, _ = start(ctx, clip, "ref")
    ref_final = list(h.track(ctx, reference, *TRACK, request=tab("ref")))[-1]
    expected = masks_of(reference)

    user, token = start(ctx, clip)
    gate, held = threading.Event(), threading.Event()
    propagate = user.propagate

    def gated(*args, **kwargs):
        for step in propagate(*args, **kwargs):
            yield step
            if step.done == 2:  # hold the run after two frames until the test lets it go
                held.set()
                assert gate.wait(60)

    user.propagate = gated
    following = h.track(ctx, user, *TRACK, request=tab("tab-1"))
    first = next(following)
    assert first[p.frame_slider] == 0
    assert held.wait(60)
    following.close()  # the page went away mid-run (a reload)
    ctx.registry.close(tab("tab-1"))
    assert running(user) is not None  # the run did not stop with the page

    # A second tab of the same browser (same token) is the same session: it is busy.
    fresh = UserSession(engine)
    loading = reattach(ctx, fresh, token, request=tab("tab-2"))
    restored = next(loading)
    assert restored[p.state] is user
    with pytest.raises(gr.Error, match="busy"):
        list(h.track(ctx, user, *TRACK, request=tab("tab-3")))
    gate.set()
    rest = list(loading)
    final = next(u for u in rest if p.files in u)
    assert "Tracked 6 frames" in final[p.status]
    assert masks_of(user).keys() == expected.keys()
    for key, mask in expected.items():
        assert np.array_equal(masks_of(user)[key], mask), key
    ours = {Path(f).name: Path(f) for f in final[p.files]}
    theirs = {Path(f).name: Path(f) for f in ref_final[p.files]}
    assert ours.keys() == theirs.keys()
    for name in ("sam2web_tracks.csv", "sam2web_summary.csv"):
        assert ours[name].read_bytes() == theirs[name].read_bytes(), name
    assert running(user) is None and not user.model_released  # tabs 2 and 3 show it
    ctx.registry.close(tab("tab-2"))
    assert not user.model_released
    ctx.registry.close(tab("tab-3"))
    assert user.model_released and not user.closed  # no tab: state given back, files kept


def test_another_browsers_token_never_opens_the_session(ctx, clip):
    p = ctx.page
    user, token = start(ctx, clip)
    for other in ("", "not-a-token", token[:-1] + ("a" if token[-1] != "a" else "b")):
        theirs, updates = load(ctx, other, "other-browser")
        assert theirs is not user and updates[0][p.token] != token
        assert theirs.folder is None and p.facts not in updates[0]
    assert ctx.registry.keeper.claim(token) is user


@pytest.mark.parametrize("first", ["the page's load", "the example"])
def test_an_example_tried_while_the_page_loads_is_what_a_reload_shows(ctx, first):
    """Gradio makes a tab's state on first use without a lock, so the page's load and an
    action started at the same moment can each be handed a new session. Either order: the
    example goes into the session the page keeps, and a reload right after shows it (before,
    the page kept an empty session and a reload said "upload a video")."""
    from sam2web.ui.example_events import load_example

    p = ctx.page
    own, other = UserSession(ctx.engine), UserSession(ctx.engine)  # two of one tab
    if first == "the example":
        loaded = load_example(ctx, other, None, request=tab("tab-1"))
        shown = attached(reattach(ctx, own, "", request=tab("tab-1")))
    else:
        shown = attached(reattach(ctx, own, "", request=tab("tab-1")))
        loaded = load_example(ctx, other, None, request=tab("tab-1"))
    page_user = loaded[p.state]
    assert page_user.folder is not None and page_user.info.num_frames == 60
    assert shown[p.state] is page_user
    # The reload: a new tab of the same browser, with the token the page kept.
    again, updates = load(ctx, shown[p.token], "tab-2")
    assert again is page_user
    assert "sam2web_example.mp4" in updates[0][p.facts]


def test_a_first_visits_load_never_shows_an_older_page_than_the_tabs_own_upload(ctx, clip):
    """The page's load event can finish after the tab's first upload (and a find on its
    frame) have shown their results; it then gives the page its session and token only.
    Before, it also sent the frame, status and steps it had worked out, and those arrived
    after the find's: the proposals vanished from the frame."""
    from sam2web.analysis.finders import FinderSettings

    p = ctx.page
    user = UserSession(ctx.engine)
    h.upload(ctx, user, str(clip), request=tab("tab-1"))
    user.find_objects("contrast", 0, FinderSettings(count=2))
    loading = reattach(ctx, user, "", request=tab("tab-1"))
    updates = list(loading)
    assert updates[0][p.state] is user and updates[0][p.token]
    shown = {component for update in updates for component in update}
    for component in (p.frame_view, p.frame_slider, p.status, p.facts, p.active):
        assert component not in shown
    assert not any(tab in shown for tab in p.flow.tabs.values())
    # The token it kept opens the same session, proposals and all, on a reload.
    again, reloaded = load(ctx, updates[0][p.token], "tab-2")
    assert again is user and reloaded[0][p.frame_slider]["value"] == 0
    assert np.array_equal(reloaded[0][p.frame_view], user.proposals_image([]))
    assert not np.array_equal(reloaded[0][p.frame_view], user.view_frame(0))
