"""The page's upload called as the page calls it (no browser): a refused file is said in
the status line and changes nothing; the events after an upload stop behind the gate."""

from __future__ import annotations

import pytest

gr = pytest.importorskip("gradio")

from sam2web.ui import upload_events as ue  # noqa: E402
from tests import synth  # noqa: E402


def test_a_refused_upload_is_one_sentence_in_the_status_line_and_changes_nothing(
    ctx, user, tmp_path
):
    p = ctx.page
    clip = synth.write_video(tmp_path / "discs.mp4", synth.make_frames(4, 120, 160), fps=4)
    notes = tmp_path / "<i>notes.mp4"
    notes.write_bytes(b"not a video, only notes\n" * 50)
    first = ue.upload_page(ctx, user, str(notes), 1)  # no video yet: no status line shown
    assert set(first) == {p.flow.guide, p.upload_refused} and first[p.upload_refused] is True
    assert "&lt;i&gt;notes.mp4" in first[p.flow.guide] and user.folder is None
    loaded = ue.upload_page(ctx, user, str(clip), 1)
    assert loaded[p.upload_refused] is False and loaded[p.info]["num_frames"] == 4
    before, frame = user.info, user.view_frame(0)
    out = ue.upload_page(ctx, user, str(notes), 1)
    assert set(out) == {p.status, p.upload_refused}  # nothing else is sent
    assert out[p.upload_refused] is True
    status = out[p.status]
    assert status.startswith("The file ") and "&lt;i&gt;notes.mp4" in status and "<i>" not in status
    assert "is not a video or image sequence sam2web can read" in status
    assert status.endswith("1 object(s); 0 of 4 frames have masks.") or "object(s)" not in status
    assert user.info == before and (user.view_frame(0) == frame).all()
    step = ue.upload_page(ctx, user, str(clip), 2.5)  # a refused frame step, the same way
    assert set(step) == {p.status, p.upload_refused}
    assert step[p.status].startswith("The frame step must be a whole number")
    # The events after an upload stop behind the gate after a refusal, and only then.
    assert ue.gate(False) is None
    with pytest.raises(gr.Error) as stopped:
        ue.gate(True)
    assert stopped.value.visible is False  # the status line says it; no second message


def test_the_events_after_the_page_upload_run_only_after_one_that_was_read(engine):
    from sam2web.ui.wiring import build_app

    demo = build_app(engine)
    p = demo.sam2web_page
    fns = list(demo.fns.values())
    (page,) = [i for i, fn in demo.fns.items() if fn.name == "upload_page"]
    assert [demo.blocks[b] for b, _ in demo.fns[page].targets] == [p.upload]
    assert demo.fns[page].api_visibility == "private"
    assert p.upload_refused in demo.fns[page].outputs
    (gate,) = [i for i, fn in demo.fns.items() if fn.trigger_after == page]
    assert demo.fns[gate].name == "gate" and demo.fns[gate].outputs == []
    after = [fn for fn in fns if fn.trigger_after == gate]
    assert {fn.name for fn in after} >= {"file_scale", "stack_choices", "after_upload"}
    assert p.example.hint in [o for fn in after for o in fn.outputs]  # the hint is cleared
    assert all(fn.trigger_only_on_success for fn in after)
    # The API's upload endpoints keep their inputs and outputs.
    (v2,) = [fn for fn in fns if fn.api_name == "upload_v2"]
    assert v2.inputs == [p.state, p.upload, p.frame_step] and p.upload_refused not in v2.outputs


def test_a_tiff_that_needs_a_choice_is_asked_for_not_refused(ctx, user, tmp_path):
    import numpy as np

    tifffile = pytest.importorskip("tifffile")
    from sam2web.ui import masks_events as m

    data = np.zeros((3, 2, 48, 64), np.uint8)
    cache = tmp_path / "gradio-cache" / "upload3"
    cache.mkdir(parents=True)
    src = cache / "cells.tif"
    tifffile.imwrite(src, data, imagej=True, metadata={"axes": "TCYX"})
    out = ue.upload_page(ctx, user, {"path": str(src)}, 1)
    assert out[ctx.page.upload_refused] is False  # the events after it run: they ask
    assert "has 2 channels" in out[ctx.page.status]
    assert m.stack_choices(ctx, user)[ctx.page.masks.stack_group]["visible"] is True


def test_the_upload_v2_endpoint_still_reads_with_a_step_and_refuses_with_an_error(
    tmp_path, random_checkpoint
):
    gradio_client = pytest.importorskip("gradio_client")
    from tests.appserver import start_app

    clip = synth.write_video(tmp_path / "discs.mp4", synth.make_frames(6, 120, 160), fps=6)
    notes = tmp_path / "holiday.mp4"
    notes.write_bytes(b"not a video, only notes\n" * 50)
    server = start_app(tmp_path / "app", random_checkpoint)
    try:
        client = gradio_client.Client(server.url, verbose=False)
        endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
        params = [q["parameter_name"] for q in endpoints["/upload_v2"]["parameters"]]
        assert params == ["file", "frame_step"]
        assert "/upload_page" not in endpoints  # the page's own event is not an endpoint
        out = client.predict(gradio_client.handle_file(str(clip)), 2, api_name="/upload_v2")
        assert out[9]["num_frames"] == 3  # every 2nd of 6 frames
        with pytest.raises(Exception, match="is not a video or image sequence"):
            client.predict(gradio_client.handle_file(str(notes)), 1, api_name="/upload_v2")
    finally:
        server.stop()
