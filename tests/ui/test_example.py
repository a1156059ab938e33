"""*Try an example* called as the page calls it (no browser): the clip opens as an upload
would, with the size the README states, its hint names a point inside each animal, and a
reload shows the hint again while nothing has been clicked."""

from __future__ import annotations

import re

import numpy as np
import pytest

gr = pytest.importorskip("gradio")

from sam2web.media import example as ex  # noqa: E402
from sam2web.session.example import example_video  # noqa: E402
from sam2web.ui import handlers as h  # noqa: E402
from sam2web.ui.example_events import load_example  # noqa: E402
from tests import synth  # noqa: E402
from tests.ui.attach import attached  # noqa: E402
from tests.ui.test_handlers import select  # noqa: E402


def _points(hint: str) -> list[tuple[int, int]]:
    return [(int(x), int(y)) for x, y in re.findall(r"\((\d+), (\d+)\)", hint)]


def test_the_example_opens_with_the_stated_frames_and_size(ctx, user):
    p = ctx.page
    out = load_example(ctx, user, 1)
    # README: "60 frames of 480×270 px at 15 fps".
    assert out[p.info]["num_frames"] == 60
    assert (out[p.info]["width"], out[p.info]["height"]) == (480, 270)
    assert "**sam2web_example.mp4** — 60 frames, 15 fps, 480×270 px, 4.0 s" in out[p.facts]
    assert out[p.frame_slider]["maximum"] == 59
    assert "CC0" in out[p.example.hint] and "made by sam2web" in out[p.example.hint]
    assert "**Example clip**" in out[p.status]
    assert user.info.num_frames == 60


def test_the_example_is_written_once_and_kept_by_the_housekeeping(engine):
    path = example_video(engine)
    stamp = path.stat().st_mtime_ns
    assert example_video(engine) == path and path.stat().st_mtime_ns == stamp
    assert path.parent.parent == engine.data_dir
    engine.sweep(max_age_s=0)  # removes every session folder older than now
    assert path.is_file()


def test_the_frame_step_applies_to_the_example(ctx, user):
    out = load_example(ctx, user, 3)
    assert out[ctx.page.info]["num_frames"] == 20


def test_the_hinted_points_lie_inside_the_animals_on_the_decoded_first_frame(ctx, user):
    out = load_example(ctx, user, 1)
    points = _points(out[ctx.page.example.hint])
    assert len(points) == len(ex.ANIMALS) == 3
    frame = user.folder.read_rgb(0).astype(float).mean(axis=2)  # as the model sees it
    # The decoded frame's dark pixels are the animals the generator placed (H.264 blurs
    # only their edges).
    truth = [ex.animal_mask(a.pose(0)) for a in ex.ANIMALS]
    dark = frame < (ex.FLOOR_LEVEL + ex.ANIMAL_LEVEL) / 2
    union = np.logical_or.reduce(truth)
    assert (dark & union).sum() / (dark | union).sum() > 0.95
    # Each hinted point, with its 5x5 neighbourhood, lies inside a different animal.
    hit = []
    for x, y in points:
        inside = [i for i, m in enumerate(truth) if m[y - 2 : y + 3, x - 2 : x + 3].all()]
        assert len(inside) == 1, (x, y)
        hit += inside
        assert frame[y, x] < 80
    assert sorted(hit) == [0, 1, 2]


def test_a_click_at_the_first_hinted_point_adds_object_1(ctx, user):
    p = ctx.page
    out = load_example(ctx, user, 1)
    x, y = _points(out[p.example.hint])[0]
    clicked = h.click_frame(ctx, user, 0, "positive", select(user, x, y))
    assert clicked[p.status].startswith(f"Positive click added to object 1 at x={x}, y={y}.")
    assert [o.obj_id for o in user.objects] == [1]
    assert 1 in user.tracking.result(0).masks


def test_the_api_loads_the_example_and_a_click_at_the_hint_adds_object_1(
    tmp_path, random_checkpoint
):
    gradio_client = pytest.importorskip("gradio_client")
    from tests.appserver import start_app

    server = start_app(tmp_path / "app", random_checkpoint)
    try:
        client = gradio_client.Client(server.url, verbose=False)
        out = client.predict(1, api_name="/load_example")
        info, hint = out[9], out[10]  # the outputs after the session state
        assert (info["num_frames"], info["width"], info["height"]) == (60, 480, 270)
        x, y = _points(hint)[1]
        clicked = client.predict(0, 0, x, y, True, api_name="/add_point")
        assert clicked[1] == "1 object(s); 1 of 60 frames have masks."
        assert clicked[2]["choices"] == [["1: object 1", 1]]  # made by the click
    finally:
        server.stop()


def test_a_reload_shows_the_hint_again_until_the_first_click(ctx, user, tmp_path):
    from types import SimpleNamespace

    from sam2web.ui.reattach import reattach
    from sam2web.ui.user import UserSession

    p = ctx.page
    tab = SimpleNamespace(session_hash="tab-1")
    token = attached(reattach(ctx, user, "", request=tab))[p.token]
    hint = load_example(ctx, user, 1)[p.example.hint]

    def reload() -> dict:
        again = attached(reattach(ctx, UserSession(ctx.engine), token, request=tab))
        assert again[p.state] is user
        return again

    again = reload()
    assert "Click the centre of each dark mouse" in again[p.status]
    assert _points(again[p.status]) == _points(hint) and again[p.example.hint] == hint
    x, y = _points(hint)[0]
    h.click_frame(ctx, user, 0, "positive", select(user, x, y))
    again = reload()  # clicked: the status line says where the work stands, not the hint
    assert "dark mouse" not in again[p.status] and "Welcome back" in again[p.status]
    assert again[p.example.hint] == hint  # still beside the upload, as on the live page
    clip = synth.write_video(tmp_path / "discs.mp4", synth.make_frames(4, 120, 160), fps=4)
    h.upload(ctx, user, str(clip))  # another video: no hint anywhere
    again = reload()
    assert again[p.example.hint] == "" and "dark mouse" not in again[p.status]
