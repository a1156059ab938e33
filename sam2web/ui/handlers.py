"""What each action of the page does: one module-level function per event.

A handler takes a :class:`Context` (the engine, the page's components, the open sessions,
the upload guard), the tab's :class:`UserSession` and the event's inputs, calls the
session, and returns ``{component: value}`` for what changed; generators yield such dicts.
Components a handler leaves out keep their value. Handlers are plain functions: a test
builds the layout in a ``gr.Blocks()`` and calls them without a server.

Parameter names are the API's: Gradio shows them to ``gradio_client`` users
(``client.view_api()``), so they say what the value is (``pixels_per_unit``, ``fps``).
"""

from __future__ import annotations

import functools
import inspect
import re
import time
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from ..analysis.calibrate import calibration_from_video
from ..session.background import BackgroundRun, result_of, start_run
from ..session.engine import Engine
from ..session.projectload import load_project as read_project
from ..tracking.checkpoints import get_spec
from . import views
from .guard import SessionRegistry, UploadGuard, friendly, upload_path
from .layout import Page
from .user import UserSession

Update = dict  # {component: value}


@dataclass(frozen=True)
class Context:
    """What every handler needs besides its inputs, shared by all tabs of one app."""

    engine: Engine
    page: Page
    registry: SessionRegistry
    guard: UploadGuard


def bind(handler: Callable, ctx: Context) -> Callable:
    """``handler`` with ``ctx`` as its first argument, as Gradio needs it.

    Gradio reads the function's signature and type hints to name the API's parameters
    and to pass the request, the event data and the progress tracker; a
    ``functools.partial`` hides the hints, so this wrapper shows the handler's own
    signature without ``ctx``. Type hints that do not resolve fail here, not silently
    in Gradio.
    """
    typing.get_type_hints(handler)
    signature = inspect.signature(handler)
    if inspect.isgeneratorfunction(handler):

        @functools.wraps(handler)
        def bound(*args, **kwargs):
            yield from handler(ctx, *args, **kwargs)

    else:

        @functools.wraps(handler)
        def bound(*args, **kwargs):
            return handler(ctx, *args, **kwargs)

    bound.__signature__ = signature.replace(parameters=list(signature.parameters.values())[1:])
    return bound


def view(ctx: Context, user: UserSession, frame, message: str = "") -> Update:
    """The frame shown (with masks), the status line and the object list."""
    p = ctx.page
    image = None
    if user.folder is not None:
        image = user.view_frame(views.shown_frame(frame, user.info.num_frames))
    return {
        p.frame_view: image,
        p.status: views.status(user, message),
        p.active: views.objects_update(user),
    }


def _require_video(user: UserSession) -> None:
    if user.folder is None:
        raise gr.Error("Upload a video or image sequence first.")


# ------------------------------------------------------------------ video and frames
@friendly
def upload(
    ctx: Context,
    user: UserSession,
    file,
    request: gr.Request | None = None,
    progress=gr.Progress(),
) -> Update:
    """Read an uploaded video, image zip or TIFF stack, every frame, and show its first
    frame (the first upload endpoint; :func:`upload_v2` takes a frame step)."""
    return upload_v2(ctx, user, file, 1, request, progress)


@friendly
def upload_v2(
    ctx: Context,
    user: UserSession,
    file,
    frame_step: float | None,
    request: gr.Request | None = None,
    progress=gr.Progress(),
) -> Update:
    """Read an uploaded video, image zip or TIFF stack, every ``frame_step``-th frame of it
    (empty: every frame), and show its first frame. Frame numbers and times of every
    output stay the original's."""
    p = ctx.page
    user = ctx.registry.tab_user(request, user)
    path = upload_path(file)
    cleared = {p.state: user, p.video: None, p.files: None, p.gallery: []}
    if not path:
        return {
            **cleared,
            p.facts: views.NO_VIDEO,
            p.frame_view: None,
            p.status: "",
            p.active: views.objects_update(user),
            p.info: {},
        }
    progress(0, desc="Reading frames")

    def cb(done, total):
        progress((done, total) if total else done, desc="Reading frames", unit="frames")

    with ctx.guard.reading(path), user.busy():
        # A TIFF that needs a channel or axis is kept; the page then asks (masks_events).
        user.upload_or_hold(
            Path(path),
            source_name=Path(path).name,
            progress=cb,
            frame_step=1 if frame_step is None else frame_step,
        )
    return {**cleared, **loaded(ctx, user)}


def loaded(ctx: Context, user: UserSession) -> Update:
    """The page once a video is loaded: its facts, first frame and frame range."""
    p = ctx.page
    last = user.info.num_frames - 1
    return {
        p.facts: views.facts(user),
        p.frame_view: user.view_frame(0),
        p.frame_slider: gr.update(minimum=0, maximum=max(last, 1), value=0, interactive=last > 0),
        p.frame_number: gr.update(value=0, maximum=last),
        p.status: views.status(user, "Loaded. Click on an object to start."),
        p.active: views.objects_update(user),
        p.info: views.video_facts(user),
    }


def file_scale(ctx: Context, user: UserSession) -> Update:
    """*Pixels per unit* and *Unit* from the pixel size the loaded file states (OME or
    ImageJ TIFF metadata); nothing changes for a file that states none."""
    p = ctx.page
    cal = calibration_from_video(user.info) if user.folder is not None else None
    if cal is None or not cal.calibrated:
        return {p.pixels_per_unit: gr.skip(), p.unit: gr.skip()}
    return {p.pixels_per_unit: f"{cal.pixels_per_unit:.6g}", p.unit: cal.unit}


@friendly
def show_frame(ctx: Context, user: UserSession, frame) -> Update:
    """Show a frame (with its masks) when the slider moves."""
    p = ctx.page
    if user.folder is None:
        return {p.frame_view: None, p.status: ""}
    frame = max(0, min(int(frame or 0), user.info.num_frames - 1))
    return {p.frame_view: user.view_frame(frame), p.frame_number: frame}


def enter_frame_number(ctx: Context, frame) -> Update:
    """Move the slider to the frame number typed into the box."""
    return {ctx.page.frame_slider: int(frame or 0)}


def open_event(ctx: Context, user: UserSession, frame) -> Update:
    """Open the frame picked in the list of lost or uncertain frames."""
    return gr.skip() if frame is None else {ctx.page.frame_slider: int(frame)}


@friendly
def open_gallery_frame(ctx: Context, user: UserSession, evt: gr.SelectData) -> Update:
    """Open the frame whose thumbnail was clicked (its caption is "frame N")."""
    caption = (evt.value or {}).get("caption", "") if isinstance(evt.value, dict) else ""
    try:
        frame = int(str(caption).split()[-1])
    except (ValueError, IndexError):
        return gr.skip()
    return {ctx.page.frame_slider: frame}


# ------------------------------------------------------------------ clicks and objects
@friendly
def click_frame(
    ctx: Context,
    user: UserSession,
    frame,
    mode,
    evt: gr.SelectData,
    target="objects",
    zone_name="",
    centre_fraction=0.5,
    picked="",
    progress=gr.Progress(),
) -> Update:
    """A click on the frame image: a point or a box corner for the active object (the
    first click creates object 1), a point of a zone or the ruler being drawn, or, while
    the finders' proposals are shown, a proposal picked or unpicked."""
    _require_video(user)
    if not evt.index or len(evt.index) != 2:
        raise gr.Error("Click inside the image.")
    # Gradio reports the click in pixels of the displayed image.
    x, y = user.to_original(float(evt.index[0]), float(evt.index[1]))
    if target and target != "objects":
        message = user.behaviour.click(target, x, y, zone_name or "", float(centre_fraction))
    elif user.proposals_shown(frame):
        numbers = [int(n) for n in re.findall(r"\d+", picked or "")]
        numbers, message = user.toggle_pick(numbers, x, y)
        p = ctx.page
        shown = {p.frame_view: user.proposals_image(numbers)}
        return {
            **view(ctx, user, frame, message),
            **shown,
            p.finders.picked: ", ".join(map(str, numbers)),
        }
    else:
        message = user.click(frame, x, y, mode or "positive")
    return view(ctx, user, frame, message)


def _known_object(user: UserSession, object_id) -> int | None:
    """The object an API click names: 0 or empty means the active one (None: the first
    click creates object 1, as on the page); another id must exist."""
    if object_id is None or object_id == 0:
        return user.active_object
    if user.folder is not None and not user.objects:
        raise gr.Error(
            f"Object {object_id:g} does not exist yet; add an object first, or send object "
            "id 0 to let the first click create object 1.",
            print_exception=False,
        )
    return object_id


@friendly
def add_point(ctx: Context, user: UserSession, frame, object_id, x, y, positive) -> Update:
    """A click at (x, y) pixels of the original frame (API only)."""
    object_id = _known_object(user, object_id)
    user.click(frame, x, y, "positive" if positive else "negative", obj_id=object_id)
    return view(ctx, user, frame)


@friendly
def add_box(ctx: Context, user: UserSession, frame, object_id, x0, y0, x1, y1) -> Update:
    """A box from (x0, y0) to (x1, y1), pixels of the original frame (API only)."""
    user.add_box(frame, x0, y0, x1, y1, obj_id=object_id or user.active_object)
    return view(ctx, user, frame)


@friendly
def add_object(
    ctx: Context,
    user: UserSession,
    name,
    frame,
    request: gr.Request | None = None,
    progress=gr.Progress(),
) -> Update:
    """Add an object (it becomes the active one); loads the model on first use."""
    user = ctx.registry.tab_user(request, user)
    _require_video(user)
    progress(0, desc="Loading the model")
    obj = user.add_object(name)
    return {
        **view(ctx, user, frame, f"Added {obj.name}; click on it in the frame."),
        ctx.page.name: "",
        ctx.page.model_status: views.model_line(ctx.engine, user.model),
    }


@friendly
def select_object(ctx: Context, user: UserSession, object_id, frame) -> Update:
    """Make another object the active one."""
    if object_id is not None and user.objects:
        user.select_object(object_id)
    return view(ctx, user, frame)


@friendly
def rename_object(ctx: Context, user: UserSession, name, frame) -> Update:
    """Rename the active object."""
    if user.active_object is None:
        raise gr.Error("Add an object first.")
    obj = user.rename_object(user.active_object, name or "")
    return {**view(ctx, user, frame, f"Renamed to {obj.name}."), ctx.page.name: ""}


@friendly
def remove_object(ctx: Context, user: UserSession, frame) -> Update:
    """Remove the active object with its clicks and masks."""
    active = user.active_object
    if active is None:
        raise gr.Error("There is no object to remove.")
    name = next(o.name for o in user.objects if o.obj_id == active)
    user.remove_object(active)
    return view(ctx, user, frame, f"Removed {name}.")


@friendly
def undo(ctx: Context, user: UserSession, frame) -> Update:
    """Undo the active object's last click on this frame."""
    user.undo(frame)
    return view(ctx, user, frame, "Undone.")


@friendly
def clear_frame(ctx: Context, user: UserSession, frame) -> Update:
    """Remove the active object's clicks on this frame."""
    user.clear_frame(frame)
    return view(ctx, user, frame, "Cleared this object's clicks on this frame.")


@friendly
def reset(ctx: Context, user: UserSession, frame) -> Update:
    """Remove every object, click, mask and result (the video stays)."""
    user.reset()
    p = ctx.page
    return {
        **view(ctx, user, frame, "Everything was reset."),
        p.video: None,
        p.files: None,
        p.gallery: [],
    }


# ------------------------------------------------------------------ tracking and results
def _results(ctx: Context, user: UserSession, progress) -> Update:
    """Write the overlay video, downloads, measurements and plots, and show them."""

    def cb(done, total):
        progress((done, total), desc="Writing the overlay video", unit="frames")

    exports = user.export(progress=cb)
    progress(1.0, desc="Measuring and plotting")
    return show_results(ctx, user, exports, user.export_science(user.calibration))


def show_results(ctx: Context, user: UserSession, exports, science: dict) -> Update:
    """The written results (``exports`` and the analysis files ``science``) on the page."""
    p = ctx.page
    summary, events = views.review_tables(user)
    return {
        p.video: None if exports.video is None else str(exports.video),
        p.files: [str(f) for f in exports.files()] + [str(f) for f in science.values()],
        p.gallery: user.gallery(),
        p.summary: summary,
        p.events: events,
        p.trajectories: str(science["trajectories"]),
        p.confidence: str(science["confidence"]),
    }


def follow_run(
    ctx: Context, user: UserSession, run: BackgroundRun, shown: int, progress
) -> Iterator[Update]:
    """Show a background run as it goes (the progress bar per frame, and while the next
    frame waits for the shared model; a tracked frame about once a second), then its
    results. Any page showing the session follows it this way; leaving stops only the
    following, never the run."""
    p = ctx.page
    t0, last_view, seen, viewed = time.perf_counter(), 0.0, None, None
    while True:
        state = run.wait(1.0, seen)
        seen = run.mark()
        # The last tracked frame is always shown, however the polls fell.
        last = state.frame is not None and state.done == state.total and viewed != state.frame
        if state.phase == "tracking" or last:
            shared = _report_run(user, state, t0, progress) if state.phase == "tracking" else None
            if state.frame is not None and (last or time.perf_counter() - last_view > 1.0):
                last_view, shown = time.perf_counter(), state.frame
                viewed = shown
                message = f"{shared}." if shared else f"Tracking… {state.done}/{state.total} frames"
                if user.last_run.notes:  # where the run goes (the Ray cluster), in a sentence
                    message = f"{message}. {' '.join(user.last_run.notes)}"
                yield {
                    p.frame_view: user.view_frame(shown),
                    p.status: views.status(user, message),
                    p.frame_slider: shown,
                }
        if state.finished:
            break
        if state.phase == "exporting":
            done = (state.export_done, max(state.export_total, 1))
            progress(done, desc="Writing the overlay video", unit="frames")
    if user.closed:  # the session ended: nobody waits for the results
        return
    ended = result_of(run)
    shown = shown if ended.frame is None else ended.frame
    last = user.last_run
    verb = "Cancelled after" if last.cancelled else "Tracked"
    message = " ".join(
        [f"{verb} {last.frames} frames in {last.seconds:.1f} s.", *last.notes, *step_note(user)]
    )
    yield {
        **view(ctx, user, shown, message),
        p.frame_slider: shown,
        **show_results(ctx, user, ended.exports, ended.science),
    }


def _report_run(user: UserSession, state, t0: float, progress) -> str | None:
    """Update the progress bar; the sentence when others track too, else None."""
    run = user.last_run
    if run.replaying:  # after runs on the cluster: their history is replayed here first
        desc = "Replaying the runs made on the Ray cluster on this server first"
        progress((run.replayed, run.to_replay), desc=desc, unit="steps")
        return None
    done, total = state.done, state.total
    plain = (time.perf_counter() - t0) / done * (total - done) if done else None
    standing = user.model_standing(user.tracking)
    desc = views.tracking_progress(standing, state.frame or 0, done, total, plain)
    progress((done, max(total, 1)), desc=desc, unit="frames")
    return desc if standing is not None and standing.other_tracking_owners else None


@friendly
def track(
    ctx: Context,
    user: UserSession,
    direction,
    start_frame,
    end_frame,
    frame,
    opacity,
    contours,
    labels,
    trails,
    pixels_per_unit,
    unit,
    fps,
    request: gr.Request | None = None,
    progress=gr.Progress(),
) -> Iterator[Update]:
    """Track every object through the video, then write the results. Empty start or end
    frames mean the first clicked frame and the end of the video. The run belongs to the
    session: it goes on while the page is reloaded or away, and shows again on return."""
    user = ctx.registry.tab_user(request, user)
    _require_video(user)
    style = views.overlay_style(opacity, contours, labels, trails)
    calibration = views.calibration(pixels_per_unit, unit, fps)
    start = views.frame_field(start_frame, "start frame")
    end = views.frame_field(end_frame, "end frame")
    progress(0, desc="Loading the model")
    run = start_run(
        user, direction or "forward", start, end, style, calibration, ctx.registry.run_ended
    )
    yield from follow_run(ctx, user, run, int(frame or 0), progress)


def step_note(user: UserSession) -> list[str]:
    """What the downloads say about a frame step (nothing when every frame was read)."""
    step = user.info.frame_step
    if step == 1:
        return []
    return [
        f"Frame step {step}: the downloads hold frames 0, {step}, {2 * step}, ... with the "
        "original video's frame numbers and times; the overlay video plays them in real time."
    ]


def cancel(ctx: Context, user: UserSession) -> Update:
    """Stop tracking after the frame being tracked."""
    running = user.cancel()
    message = "Cancelling after the current frame…" if running else "Nothing is running."
    return {ctx.page.status: message}


@friendly
def export(
    ctx: Context,
    user: UserSession,
    frame,
    opacity,
    contours,
    labels,
    trails,
    pixels_per_unit,
    unit,
    fps,
    progress=gr.Progress(),
) -> Update:
    """Write the video, downloads and measurements again with the current look and
    calibration (no tracking)."""
    with user.busy():
        user.style = views.overlay_style(opacity, contours, labels, trails)
        user.calibration = views.calibration(pixels_per_unit, unit, fps)
        results = _results(ctx, user, progress)
    return {ctx.page.frame_view: user.view_frame(int(frame or 0)), **results}


# ------------------------------------------------------------------ projects
@friendly
def save_project(ctx: Context, user: UserSession, pixels_per_unit, unit, fps) -> Update:
    """Save objects, clicks and calibration as a project file (JSON)."""
    user.calibration = views.calibration(pixels_per_unit, unit, fps)
    return {ctx.page.project_file: str(user.save_project(user.calibration))}


@friendly
def load_project(ctx: Context, user: UserSession, project, frame, progress=gr.Progress()) -> Update:
    """Replay a saved project's objects and clicks onto the same video."""
    path = upload_path(project)
    if not path:
        return gr.skip()

    def cb(done, total):
        progress((done, total), desc="Replaying the project", unit="steps")

    with ctx.guard.reading(path):
        if user.folder is None:
            raise gr.Error("Upload the project's video first, then load the project.")
        with user.busy():
            notes = user.load_project(Path(path), progress=cb)
            cal = read_project(Path(path)).calibration
    p = ctx.page
    return {
        **view(ctx, user, frame, "Project loaded. " + " ".join(notes)),
        p.pixels_per_unit: "" if cal.pixels_per_unit is None else f"{cal.pixels_per_unit:g}",
        p.fps: "" if cal.fps is None else f"{cal.fps:g}",
    }


# ------------------------------------------------------------------ model and quality
def show_model(ctx: Context) -> Update:
    """The model's status line when the page opens."""
    return {ctx.page.model_status: views.model_line(ctx.engine)}


@friendly
def set_model(ctx: Context, user: UserSession, model, frame) -> Update:
    """Switch this session to another SAM2 model (objects and clicks are cleared)."""
    cleared = user.set_model(model)
    message = f"Model: {get_spec(model).label}."
    if cleared:
        message += " Objects and clicks were cleared (they belong to the old model)."
    return {
        **view(ctx, user, frame, message),
        ctx.page.model_status: views.model_line(ctx.engine, model),
    }


@friendly
def set_quality(ctx: Context, user: UserSession, quality, frame, progress=gr.Progress()) -> Update:
    """Switch to another quality this server offers, keeping objects and clicks."""
    if user.folder is None:  # nothing to replay yet
        user.set_quality(quality or "full")
        return view(ctx, user, frame)

    def cb(done, total):
        progress((done, total), desc="Giving your clicks to the model again", unit="steps")

    with user.busy():
        replayed = user.set_quality(quality or "full", progress=cb)
    message = views.quality_sentence(user.engine.quality(user.quality))
    if replayed:
        message += " Your objects and clicks were kept; press Track to track again."
    return view(ctx, user, frame, message)


@friendly
def compare_quality(
    ctx: Context, user: UserSession, frames, quality="fast", progress=gr.Progress()
) -> Update:
    """Track the first frames at full quality and at ``quality`` and report how well the
    masks agree."""
    _require_video(user)

    def cb(done, total):
        progress((done, total), desc="Tracking at both qualities", unit="steps")

    with user.busy():
        report = user.compare_qualities(int(frames or 5), progress=cb, candidate=quality or "fast")
    return {ctx.page.compare_result: views.quality_report(report)}
