"""Loading the example clip: the same path as an upload (the session decodes the file
into its own folder with the page's frame step), so every step works on it."""

from __future__ import annotations

import functools

import gradio as gr

from ..session.example import SOURCE_NAME, example_video
from ..session.project import file_sha256
from . import handlers as h
from . import views
from .example import hint_text
from .guard import friendly
from .handlers import Context, Update
from .masks_events import stack_choices
from .user import UserSession


@friendly
def load_example(
    ctx: Context,
    user: UserSession,
    frame_step: float | None,
    request: gr.Request | None = None,
    progress=gr.Progress(),
) -> Update:
    """Open sam2web's example clip (dark mice on a light floor, public domain) as if it
    had been uploaded, every ``frame_step``-th frame (empty: every frame), and say where
    to click."""
    p = ctx.page
    user = ctx.registry.tab_user(request, user)
    progress(0, desc="Reading frames")

    def cb(done, total):
        progress((done, total) if total else done, desc="Reading frames", unit="frames")

    path = example_video(ctx.engine)
    with user.busy():
        user.upload_or_hold(
            path,
            source_name=SOURCE_NAME,
            progress=cb,
            frame_step=1 if frame_step is None else frame_step,
        )
    return {
        p.state: user,
        p.video: None,
        p.files: None,
        p.gallery: [],
        **h.loaded(ctx, user),
        # In the status line under the frame: the marking step opens, the hint stays
        # beside the upload in the loading step.
        p.status: views.status(user, hint_text()),
        p.example.hint: hint_text(),
    }


def shows_example(ctx: Context, user: UserSession) -> bool:
    """Whether the session's video is the example clip (the same bytes)."""
    if user.folder is None or user.source_sha256 is None:
        return False
    path = example_video(ctx.engine)
    return user.source_sha256 == _digest(path, path.stat().st_mtime_ns)


@functools.lru_cache(maxsize=4)
def _digest(path, mtime_ns: int) -> str:
    return file_sha256(path)


def restored_hint(ctx: Context, user: UserSession) -> Update:
    """What a page loading again shows of the example: the hint beside the upload while
    the example is the video, and in the status line, as after *Try an example*, while
    nothing has been clicked (the first click or *Add object* replaces it there)."""
    p = ctx.page
    if not shows_example(ctx, user):
        return {p.example.hint: ""}
    out = {p.example.hint: hint_text()}
    if not user.objects:
        out[p.status] = views.status(user, hint_text())
    return out


def wire(ctx: Context, uploaded):
    """The button (and the API's ``load_example``); an upload of another file clears the
    hint. Returns the example's load event (the flow opens the marking step after it)."""
    p = ctx.page
    outputs = [
        *[p.state, p.facts, p.frame_view, p.frame_slider, p.frame_number],
        *[p.status, p.active, p.video, p.files, p.gallery, p.info, p.example.hint],
    ]
    loaded = p.example.button.click(
        h.bind(load_example, ctx),
        [p.state, p.frame_step],
        outputs,
        api_name="load_example",
        concurrency_id="files",
        concurrency_limit=4,
    )
    loaded.then(
        h.bind(h.file_scale, ctx),
        [p.state],
        [p.pixels_per_unit, p.unit],
        api_visibility="private",
        concurrency_limit=None,
    )
    loaded.then(
        h.bind(stack_choices, ctx),
        [p.state],
        [p.masks.stack_group, p.masks.stack_note, p.masks.channel, p.masks.axis],
        api_visibility="private",
        concurrency_limit=None,
    )
    uploaded.success(lambda: "", None, [p.example.hint], api_visibility="private", queue=False)
    return loaded
