"""The page as a guided flow: which steps it shows, the line that says what to do next,
and playing the tracked frames in the frame viewer.

The steps are tabs beside the frame viewer (:mod:`.layout`): *Load* always, *Mark*,
*Track* and *Project* once a video is loaded (or a TIFF waits for its channel choice),
*Results*, *Measure* and *Analysis* once a run has results. :func:`shown` says all of it
for one session; the page asks after every action that changes it (chained, private
events, so the named API endpoints keep their outputs) and when it loads again
(:mod:`.reattach`). Playing moves the frame slider on a timer, so the frames play where
they are corrected; it stops at the last frame, on Pause, on the slider, and on every
action that changes what the viewer shows or edits it (:func:`actions`: a click on the
frame, a frame key, undo, an object or mask change, another click mode or step).
"""

from __future__ import annotations

import gradio as gr

from ..session.background import running
from .handlers import Context, Update, bind
from .layout import GUIDE_START
from .user import UserSession

# When each step (a tab id of sam2web.ui.layout.STEP_LABELS) is shown besides "load".
WITH_VIDEO = ("mark", "track", "project")
WITH_RESULTS = ("results", "measure", "analysis")


def stage(user: UserSession | None) -> str:
    """Where the session stands: "empty", "choice" (a TIFF waits for its channel or
    axis), "video", "marked" (an object has a prompt) or "tracked"."""
    if user is None or user.folder is None:
        return "choice" if user is not None and user.held_stack is not None else "empty"
    if user.results is not None and user.tracking is not None and user.tracking.store.frames():
        return "tracked"
    if user.objects and user.tracking is not None and user.tracking.store.frames():
        return "marked"
    return "video"


GUIDE = {
    "empty": GUIDE_START,
    "choice": "**Next:** choose the TIFF's channel and axis in *2 Mark*, then press "
    "*Open with this choice*.",
    "video": "**Next:** click on an animal (or any object) in the frame; *2 Mark* adds "
    "more objects.",
    "marked": "**Next:** click on every other object (*Add object* first), then press "
    "**Track ▶** in *3 Track*.",
    "tracked": "**Next:** press **▶ Play** or move the slider to review; click a frame to "
    "correct it and track again. Results, measurements and downloads are in *4*-*7*.",
}


# While found objects wait on the frame, whatever the stage: deciding on them comes first.
GUIDE_FOUND = (
    "**Next:** click the numbered proposals to keep (or type their numbers) and press "
    "*Accept the picked*, or press *Accept all*; *Dismiss proposals* takes them away."
)


def guide(user: UserSession | None) -> str:
    """The line that says what to do now."""
    if user is not None and user.folder is not None and user.found is not None:
        return GUIDE_FOUND
    return GUIDE[stage(user)]


def shown(ctx: Context, user: UserSession | None, select: str | None = None) -> Update:
    """Which steps the page shows for ``user``, the viewer and the guide line; ``select``
    opens that step."""
    f = ctx.page.flow
    now = stage(user)
    video = now in ("video", "marked", "tracked")
    out: Update = {
        f.guide: guide(user),
        f.viewer: gr.update(visible=video),
        f.play_btn: gr.update(visible=video),
        f.pause_btn: gr.update(visible=False),
        f.timer: gr.Timer(active=False),
    }
    for step, tab in f.tabs.items():
        visible = (
            step == "load"
            or (step in WITH_VIDEO and (video or (step == "mark" and now == "choice")))
            or (step in WITH_RESULTS and now == "tracked")
        )
        out[tab] = gr.Tab(visible=visible)
    if select is not None:
        out[f.steps] = gr.Tabs(selected=select)
    return out


def outputs(page) -> list:
    """The components :func:`shown` updates (with the step tabs' selection)."""
    f = page.flow
    return [f.guide, f.viewer, f.play_btn, f.pause_btn, f.timer, *f.tabs.values(), f.steps]


def opened_step(user: UserSession | None) -> str:
    """The step a page opens on for a session: where its work stands (tracking while a
    run goes on)."""
    if user is not None and running(user) is not None:
        return "track"
    return {"empty": "load", "tracked": "track"}.get(stage(user), "mark")


def after_upload(ctx: Context, user: UserSession) -> Update:
    """After an upload: the marking step opens (or the step where the TIFF's choice is)."""
    return shown(ctx, user, "load" if stage(user) == "empty" else "mark")


def after_change(ctx: Context, user: UserSession) -> Update:
    """After any other action that may change the steps: the same step stays open."""
    return shown(ctx, user)


def show_guide(ctx: Context, user: UserSession) -> Update:
    """After a click or an object change: only the guide line."""
    return {ctx.page.flow.guide: guide(user)}


# ------------------------------------------------------------------ playing
def play(ctx: Context, user: UserSession, frame) -> Update:
    """Start playing from the slider's frame (from the first when at the last)."""
    f, p = ctx.page.flow, ctx.page
    if user.folder is None:
        return {}
    last = user.info.num_frames - 1
    start = 0 if int(frame or 0) >= last else int(frame or 0)
    return {
        f.timer: gr.Timer(active=True),
        f.play_btn: gr.update(visible=False),
        f.pause_btn: gr.update(visible=True),
        p.frame_slider: start,
    }


def pause(ctx: Context) -> Update:
    """Stop playing."""
    f = ctx.page.flow
    return {
        f.timer: gr.Timer(active=False),
        f.play_btn: gr.update(visible=True),
        f.pause_btn: gr.update(visible=False),
    }


def tick(ctx: Context, user: UserSession, frame) -> Update:
    """One step of playing: the next frame, or stop at the last."""
    if user.folder is None or int(frame or 0) >= user.info.num_frames - 1:
        return pause(ctx)
    return {ctx.page.frame_slider: int(frame or 0) + 1}


# ------------------------------------------------------------------ events
PRIVATE = {"api_visibility": "private", "concurrency_limit": None}
# Events that run after another, or that are not a person's action.
FOLLOWING = {"then", "success", "failure", "load", "unload"}


def actions(demo: gr.Blocks, ctx: Context) -> list:
    """The triggers that stop playing: every event a person starts whose answer draws the
    frame or moves the slider (except Play itself, its ticks and what follows the frame
    shown), with the click mode (P, N, B) and the step tabs."""
    p, f = ctx.page, ctx.page.flow
    playing = [
        (f.play_btn, "click"),
        (f.timer, "tick"),
        (p.frame_slider, "change"),  # the slider moved: a tick, or any of these
        (p.frame_view, "change"),
    ]
    found: list[tuple] = []
    for fn in demo.fns.values():
        if not any(o is p.frame_view or o is p.frame_slider for o in fn.outputs):
            continue
        for block_id, event in fn.targets:
            block = demo.blocks.get(block_id)
            seen = [*playing, *found]
            if block is None or event in FOLLOWING:
                continue
            if not any(block is b and event == e for b, e in seen):
                found.append((block, event))
    triggers = [getattr(block, event) for block, event in found]
    return [*triggers, p.mode.change, f.steps.select]


def wire(demo: gr.Blocks, ctx: Context, uploads: list, changes: list, prompts: list) -> None:
    """Connect the flow: ``uploads`` (events that load a video) open the marking step,
    ``changes`` (runs, resets, projects, model switches) update the steps, ``prompts``
    (clicks, objects) the guide line; then the player, which every action already wired
    in ``demo`` stops (:func:`actions`)."""
    p, f = ctx.page, ctx.page.flow
    steps = outputs(p)
    for event in uploads:
        event.success(bind(after_upload, ctx), [p.state], steps, **PRIVATE)
    for event in changes:
        event.then(bind(after_change, ctx), [p.state], steps[:-1], **PRIVATE)
    for event in prompts:
        event.then(bind(show_guide, ctx), [p.state], [f.guide], **PRIVATE)
    player = [f.timer, f.play_btn, f.pause_btn]
    f.play_btn.click(
        bind(play, ctx), [p.state, p.frame_slider], [*player, p.frame_slider], **PRIVATE
    )
    stop = bind(pause, ctx)
    f.pause_btn.click(stop, None, player, **PRIVATE)
    p.frame_slider.release(stop, None, player, **PRIVATE)
    gr.on(actions(demo, ctx), stop, None, player, show_progress="hidden", **PRIVATE)
    f.timer.tick(
        bind(tick, ctx),
        [p.state, p.frame_slider],
        [*player, p.frame_slider],
        show_progress="hidden",
        **PRIVATE,
    )
