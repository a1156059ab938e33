"""A page that loads again finds its work again.

On every page load :func:`reattach` reads the browser's token (``gr.BrowserState``, kept
in the browser's localStorage) and asks the keeper (:mod:`sam2web.session.keeper`) for the
session it was issued for. When there is one, the tab's fresh session is replaced by it
and the page shows it as it was: the video and frame, objects, prompts and masks, the
results and downloads, the zones and the calibration, with the steps of the page that has
them (:mod:`.flow`: a video loaded, a run done) and the step it stands at open; a tracking
run still going shows its progress again and then its results. Without one (a first visit, an expired session, a
token this server never issued) the tab's own session is kept under a new token.

Two tabs of one browser share its localStorage, so they share one session: both show the
same video, objects and results; a long action (tracking, an export, loading) started in
one is refused in the other with the one-sentence "busy" refusal, and the other tab sees
its progress when it loads. Another browser has another token and never reaches it.
"""

from __future__ import annotations

from collections.abc import Iterator

import gradio as gr

from ..session.background import running
from ..session.user import SCIENCE_FILES
from ..tracking.checkpoints import get_spec
from . import flow, views
from . import handlers as h
from .example_events import restored_hint
from .handlers import Context, Update
from .user import UserSession
from .zones_handlers import after_run, show_setup


def reattach(
    ctx: Context,
    user: UserSession,
    token,
    request: gr.Request | None = None,
    progress=gr.Progress(),
) -> Iterator[Update]:
    """Attach the page to the browser's kept session (or keep this tab's new one) and
    restore what it shows; then follow a run in progress."""
    p = ctx.page
    keeper = ctx.registry.keeper
    kept = keeper.claim(token)
    if kept is None:
        # A first visit (or a token no longer kept). A first action of this tab made at the
        # same moment may have its own session; whatever it did, its own event shows. A
        # view of the session worked out here would arrive after that event's (an upload
        # that finished first, a find on its frame) and show the page an older state.
        kept = ctx.registry.tab_user(request, user)
        token = keeper.keep(kept)
        yield {p.state: kept, p.token: token}
        yield {p.model_status: views.model_line(ctx.engine, kept.model)}
        return
    if kept is not user and user.workspace is None:
        user.close()  # the tab's own, still empty session is not needed
    ctx.registry.remember(request, kept)
    # The browser keeps its token before anything slower is worked out (the first page of a
    # server checks the model's file): a reload in those seconds found no session to attach.
    yield {p.state: kept, p.token: token}
    yield {p.state: kept, p.token: token, **restore(ctx, kept)}
    run = running(kept)
    if run is not None:
        yield from h.follow_run(ctx, kept, run, run.progress.frame or 0, progress)
        yield {**after_run(ctx, kept), **flow.shown(ctx, kept)}


def restore(ctx: Context, user: UserSession) -> Update:
    """What the page shows of ``user``: nothing changes for a session without a video."""
    p = ctx.page
    steps = flow.shown(ctx, user, flow.opened_step(user))
    if user.folder is None:
        return {
            p.model_status: views.model_line(ctx.engine, user.model),
            p.example.hint: "",
            **steps,
        }
    frame = 0
    run = user.background
    if run is not None and getattr(run.progress, "frame", None) is not None:
        frame = run.progress.frame
    out = {
        **h.loaded(ctx, user),
        p.model_status: views.model_line(ctx.engine, user.model),
        p.quality: user.quality,
        p.model: get_spec(user.model).key,
        **_look(ctx, user),
    }
    out[p.frame_slider] = gr.update(**{**out[p.frame_slider], "value": frame})
    out[p.frame_number] = gr.update(**{**out[p.frame_number], "value": frame})
    out.update(show_setup(ctx, user, frame))
    if user.proposals_shown(frame):
        # Proposals wait on this frame: a reload shows them (unpicked: picks are the page's).
        out[p.frame_view] = user.proposals_image([])
    message = "Welcome back: your session was kept." if user.objects else ""
    out[p.status] = views.status(user, message)
    out.update(restored_hint(ctx, user))
    if running(user) is None and user.exports.csv is not None and user.results is not None:
        science = _science_files(user)
        if science:
            out.update(h.show_results(ctx, user, user.exports, science))
            out.update(after_run(ctx, user))
    return {**out, **steps}


def _look(ctx: Context, user: UserSession) -> Update:
    """The overlay's look and the calibration, in the controls they were set with."""
    p, style, cal = ctx.page, user.style, user.calibration
    return {
        p.opacity: style.opacity,
        p.contours: style.contours,
        p.labels: style.labels,
        p.trails: style.trails,
        p.pixels_per_unit: "" if cal.pixels_per_unit is None else f"{cal.pixels_per_unit:g}",
        p.unit: cal.unit if cal.pixels_per_unit is not None else "mm",
        p.fps: "" if cal.fps is None else f"{cal.fps:g}",
    }


def _science_files(user: UserSession) -> dict:
    """The analysis files of the last export, when they are all still on disk."""
    folder = user.workspace.exports_dir if user.workspace is not None else None
    if folder is None:
        return {}
    files = {key: folder / name for key, name in SCIENCE_FILES.items()}
    return files if all(f.is_file() for f in files.values()) else {}
