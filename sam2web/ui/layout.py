"""The page's widgets, built in one place and returned as one record (:class:`Page`).

:func:`build_layout` creates every component inside the current ``gr.Blocks``, in page
order, and connects nothing: :mod:`.handlers` says what each action does and
:mod:`.wiring` which event runs which handler.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gradio as gr

from .. import __version__
from ..media.ingest import MAX_FRAME_STEP
from ..session.engine import Engine
from ..settings import Settings
from ..tracking.checkpoints import MODELS, get_spec
from .example import ExamplePanel, build_example
from .finders_panel import FindersPanel, build_finders_panel
from .keys import KeysPanel, build_keys
from .masks_panel import MasksPanel, build_masks_panel
from .objects_panel import ObjectsPanel, build_objects_panel
from .user import PROMPT_MODES, UserSession
from .views import NO_VIDEO, model_line, quality_label
from .zones_panel import ZonesPanel, build_zone_drawing, build_zones_panel

MODE_LABELS = {
    "positive": "Positive point (this is the object)",
    "negative": "Negative point (not the object)",
    "box": "Box (click two opposite corners)",
}
DIRECTION_LABELS = {"forward": "Forward", "backward": "Backward", "both": "Both directions"}
UPLOAD_TYPES = [
    ".mp4",
    ".mov",
    ".avi",
    ".mkv",
    ".webm",
    ".mpg",
    ".mpeg",
    ".m4v",
    ".gif",
    ".zip",
    ".tif",
    ".tiff",
    ".png",
    ".jpg",
    ".jpeg",
]

# Where the browser keeps its session token (localStorage, encrypted by Gradio with a key
# of this server process, so a token of an earlier run is unreadable and a new one is made).
TOKEN_KEY = "sam2web-session"

TITLE = "# sam2web — click to track"
HELP = """\
**1 Load** a video, a zip of images or a TIFF stack. **2 Mark**: click on an object in the
frame (add more objects with *Add object*). **3 Track**: press **Track ▶**, then play or
scrub the tracked frames in the viewer and fix any frame with more clicks; track again.
**4 Results** holds the overlay video and the downloads, **5 Measure** the tables and plots,
**6 Analysis** zones, behaviour and label stacks, **7 Project** saving and loading your work.
"""
# The steps as tabs beside the frame viewer: id -> label (sam2web.ui.flow says when each shows).
STEP_LABELS = {
    "load": "1 Load",
    "mark": "2 Mark",
    "track": "3 Track",
    "results": "4 Results",
    "measure": "5 Measure",
    "analysis": "6 Analysis",
    "project": "7 Project",
}
GUIDE_START = "**Next:** upload a video, a zip of images or a TIFF stack."
PLAY_INTERVAL_S = 0.3  # seconds per frame while the viewer plays
SUMMARY_HEADERS = ["id", "name", "frames present", "first", "last", "distance", "mean speed"]


@dataclass(frozen=True)
class Flow:
    """The guided flow's components (what they do: sam2web.ui.flow)."""

    guide: gr.Markdown  # what to do now
    viewer: gr.Column  # the frame, its slider and the status line
    steps: gr.Tabs
    tabs: dict  # step id -> gr.Tab
    play_btn: gr.Button
    pause_btn: gr.Button
    timer: gr.Timer


@dataclass(frozen=True)
class Page:
    """The components the handlers read and update, by what they are on the page."""

    state: gr.State  # the tab's UserSession
    token: gr.BrowserState  # the browser's key to its kept session (sam2web.session.keeper)
    # Model and quality
    model: gr.Dropdown
    quality: gr.Radio
    model_status: gr.Markdown
    # Video and objects
    frame_step: gr.Number  # every N-th frame is read at the next upload
    upload: gr.File
    upload_api: gr.Button  # hidden: the trigger of the API's upload endpoints
    upload_refused: gr.State  # whether the page's last upload was refused (upload_events)
    facts: gr.Markdown
    active: gr.Dropdown
    name: gr.Textbox
    add_btn: gr.Button
    rename_btn: gr.Button
    remove_btn: gr.Button
    mode: gr.Radio
    undo_btn: gr.Button
    clear_btn: gr.Button
    reset_btn: gr.Button
    # The frame
    frame_view: gr.Image
    frame_slider: gr.Slider
    frame_number: gr.Number
    status: gr.Markdown
    # Track
    direction: gr.Radio
    start_frame: gr.Textbox
    end_frame: gr.Textbox
    track_btn: gr.Button
    cancel_btn: gr.Button
    compare_frames: gr.Slider
    compare_candidate: gr.Radio
    compare_btn: gr.Button
    compare_result: gr.Markdown
    # Results
    video: gr.Video
    opacity: gr.Slider
    contours: gr.Checkbox
    labels: gr.Checkbox
    trails: gr.Slider
    rerender_btn: gr.Button
    files: gr.File
    gallery: gr.Gallery
    # Measurements
    pixels_per_unit: gr.Textbox
    unit: gr.Textbox
    fps: gr.Textbox
    measure_btn: gr.Button
    summary: gr.Dataframe
    events: gr.Dropdown
    trajectories: gr.Image
    confidence: gr.Image
    # Project
    save_project_btn: gr.Button
    project_file: gr.File
    project_in: gr.File
    # Hidden inputs of the API-only endpoints (clicks with coordinates, boxes)
    api_x: gr.Number
    api_y: gr.Number
    api_x1: gr.Number
    api_y1: gr.Number
    api_object: gr.Number
    api_positive: gr.Checkbox
    api_btn: gr.Button
    info: gr.JSON  # the uploaded video's facts, for API clients
    zones: ZonesPanel  # zones, ruler, pairs, heatmaps, label stacks (.zones_panel)
    masks: MasksPanel  # label images, brush, identity fixes, a TIFF's channel and axis
    objects: ObjectsPanel  # the object list (its active, name and buttons are above too)
    finders: FindersPanel  # objects found by motion or contrast
    example: ExamplePanel  # "Try an example" beside the upload, and its hint
    keys: KeysPanel  # the keyboard shortcuts' help line and hidden frame-step buttons
    flow: Flow  # the steps, the guide line, the player


def user_factory(engine: Engine) -> Callable[[], UserSession]:
    """What makes each tab's session (``gr.State``'s initial value)."""

    def new_user() -> UserSession:
        return UserSession(engine)

    return new_user


def close_user(user: UserSession | None) -> None:
    """``gr.State``'s delete callback: a forgotten session removes its files, unless a
    keeper keeps it (then its idle expiry does, see sam2web.session.keeper)."""
    if user and not user.kept:
        user.close()


def build_layout(engine: Engine) -> Page:
    """Every component of the page, created in page order inside the current ``gr.Blocks``:
    the guide line, then the frame viewer (main column, first on narrow screens) beside
    the steps (side column, one tab per step)."""
    parts: dict[str, Any] = {}
    # No time_to_live here: Gradio counts it from the state's last change (the upload),
    # not from the user's last action. Idle sessions are closed by the housekeeping
    # thread instead (SessionRegistry.workspace_ids); a closed tab detaches from its
    # session, which the page attaches to again when it loads with the browser's token.
    parts["state"] = gr.State(user_factory(engine), delete_callback=close_user)
    parts["token"] = gr.BrowserState("", storage_key=TOKEN_KEY)
    gr.Markdown(TITLE, elem_id="title")
    flow: dict[str, Any] = {"guide": gr.Markdown(GUIDE_START, elem_id="guide")}
    with gr.Row(elem_id="workspace", equal_height=False):
        with gr.Column(scale=5, min_width=320, visible=False, elem_id="viewer") as viewer:
            parts.update(_frame_column(flow))
        with gr.Column(scale=4, min_width=320, elem_id="steps-column"):
            parts.update(_steps(engine, flow))
    parts.update(_api_inputs())
    gr.Markdown(f"<small>sam2web {__version__}</small>")
    flow["timer"] = gr.Timer(PLAY_INTERVAL_S, active=False)
    parts["flow"] = Flow(viewer=viewer, **flow)
    return Page(**parts)


def _steps(engine: Engine, flow: dict[str, Any]) -> dict[str, Any]:
    """The step tabs; only *Load* shows before a video."""
    parts: dict[str, Any] = {}
    tabs: dict[str, gr.Tab] = {}

    def step(key: str):
        tabs[key] = gr.Tab(STEP_LABELS[key], id=key, visible=key == "load", elem_id=f"step-{key}")
        return tabs[key]

    with gr.Tabs(selected="load", overflow_behavior="wrap", elem_id="steps") as flow["steps"]:
        with step("load"):
            parts.update(_load_step(engine))
        with step("mark"):
            parts.update(_mark_step(engine.settings))
        with step("track"):
            parts.update(_track_section(engine))
        with step("results"):
            parts.update(_results_section())
        with step("measure"):
            parts.update(_measurements_section())
        with step("analysis"):
            parts["zones"] = build_zones_panel(parts.pop("drawing"))
        with step("project"):
            parts.update(_project_section())
    flow["tabs"] = tabs
    return parts


def _load_step(engine: Engine) -> dict[str, Any]:
    """The upload (with room beside it), model and quality, help."""
    settings = engine.settings
    # The upload's row: quick starts (an example video) belong next to the upload here.
    with gr.Row(elem_id="upload-row"):
        parts: dict[str, Any] = {
            "upload": gr.File(
                label=(
                    f"Video or image sequence (up to {settings.max_upload_mb} MB, "
                    f"{settings.max_frames} frames)"
                ),
                file_types=UPLOAD_TYPES,
                type="filepath",
                elem_id="upload",
                scale=3,
            ),
            "example": build_example(),
        }
    parts["upload_api"] = gr.Button(visible=False)
    parts["upload_refused"] = gr.State(False)
    with gr.Row():
        parts.update(_model_row(engine))
    with gr.Accordion("Read every N-th frame (set before uploading)", open=False):
        parts["frame_step"] = gr.Number(
            value=1,
            precision=0,
            minimum=1,
            maximum=MAX_FRAME_STEP,
            step=1,
            label="Track every N-th frame (1: every frame; set before uploading)",
            info="A long recording at 30 fps tracked every 5th frame gives 6 positions per "
            "second in a fifth of the time; frame numbers and times stay the original's.",
            elem_id="frame-step",
        )
    with gr.Accordion("How it works", open=False, elem_id="help"):
        gr.Markdown(HELP)
    return parts


def _mark_step(settings: Settings) -> dict[str, Any]:
    """Objects and what a click adds, the finders, masks and identities, zone drawing."""
    parts: dict[str, Any] = _objects_controls()
    parts.update(_prompt_controls())
    parts["finders"] = build_finders_panel()
    parts["masks"] = build_masks_panel(settings.max_pixels)
    parts["drawing"] = build_zone_drawing()
    return parts


def _model_row(engine: Engine) -> dict[str, Any]:
    offered = engine.qualities()
    return {
        "model": gr.Dropdown(
            [(spec.label, key) for key, spec in MODELS.items()],
            value=get_spec(engine.settings.model).key,
            label="Model",
            interactive=True,
            scale=1,
            elem_id="model",
        ),
        "quality": gr.Radio(
            [(quality_label(q), q.key) for q in offered],
            value=engine.default_quality(),
            label="Quality",
            elem_id="quality",
            scale=1,
            visible=len(offered) > 1,
            info="The faster qualities track several times faster; their masks are close to "
            "full quality's but not the same (compare them in the Track step).",
        ),
        "model_status": gr.Markdown(model_line(engine), elem_id="model-status"),
    }


def _objects_controls() -> dict[str, Any]:
    """The objects panel: the list, the active one, its name, add, rename and remove."""
    panel = build_objects_panel()
    return {
        "objects": panel,
        "active": panel.active,
        "name": panel.name,
        "add_btn": panel.add_btn,
        "rename_btn": panel.rename_btn,
        "remove_btn": panel.remove_btn,
    }


def _prompt_controls() -> dict[str, Any]:
    """What a click adds, undo, clear and reset."""
    parts: dict[str, Any] = {}
    parts["mode"] = gr.Radio(
        [(MODE_LABELS[m], m) for m in PROMPT_MODES],
        value="positive",
        label="What a click on the frame adds",
        elem_id="click-mode",
    )
    with gr.Row():
        parts["undo_btn"] = gr.Button("↶ Undo last click", elem_id="undo")
        parts["clear_btn"] = gr.Button("Clear object on this frame", elem_id="clear-frame")
    parts["reset_btn"] = gr.Button("Reset everything", variant="stop", size="sm", elem_id="reset")
    return parts


def _frame_column(flow: dict[str, Any]) -> dict[str, Any]:
    """The frame viewer: the frame (clicks go here), its slider and number, the player,
    the status line and the video's facts; it stays in view while marking and reviewing."""
    parts: dict[str, Any] = {
        "frame_view": gr.Image(
            label="Frame — click to add points",
            interactive=False,
            type="numpy",
            format="png",
            elem_id="frame-view",
            buttons=["fullscreen"],
            height=460,
        )
    }
    with gr.Row():
        parts["frame_slider"] = gr.Slider(
            0,
            1,
            value=0,
            step=1,
            label="Frame",
            scale=4,
            elem_id="frame-slider",
            interactive=True,
        )
        parts["frame_number"] = gr.Number(
            value=0,
            precision=0,
            label="Frame number",
            scale=1,
            minimum=0,
            elem_id="frame-number",
            min_width=100,
        )
        flow["play_btn"] = gr.Button("▶ Play", elem_id="play", scale=0, min_width=90)
        flow["pause_btn"] = gr.Button(
            "⏸ Pause", elem_id="pause", scale=0, min_width=90, visible=False
        )
    parts["status"] = gr.Markdown("", elem_id="status")
    parts["keys"] = build_keys()
    parts["facts"] = gr.Markdown(NO_VIDEO, elem_id="video-facts")
    return parts


def _track_section(engine: Engine) -> dict[str, Any]:
    parts: dict[str, Any] = {}
    with gr.Row():
        parts["track_btn"] = gr.Button("Track ▶", variant="primary", elem_id="track")
        parts["cancel_btn"] = gr.Button("Cancel", variant="stop", elem_id="cancel")
    gr.Markdown(
        "After tracking, press **▶ Play** or move the slider under the frame to review; "
        "click a wrong frame to correct it (in *2 Mark*'s mode) and track again."
    )
    parts["direction"] = gr.Radio(
        [(v, k) for k, v in DIRECTION_LABELS.items()],
        value="forward",
        label="Direction",
        elem_id="direction",
    )
    with gr.Accordion("Frame range", open=False, elem_id="track-range"), gr.Row():
        # Text boxes, not numbers: an empty number box is sent as 0, and "empty" means
        # "the first clicked frame" / "to the end of the video" here.
        parts["start_frame"] = gr.Textbox(
            value="",
            label="Start frame",
            max_length=12,
            placeholder="empty: first clicked frame",
            elem_id="start-frame",
        )
        parts["end_frame"] = gr.Textbox(
            value="",
            label="End frame",
            max_length=12,
            placeholder="empty: to the end",
            elem_id="end-frame",
        )
    faster = [q for q in engine.qualities() if not q.exact]
    with gr.Accordion(
        "Is a faster quality good enough for this video?", open=False, visible=bool(faster)
    ):
        gr.Markdown(
            "Tracks the first frames from your earliest click twice, at full "
            "quality and at the faster quality you pick, with your objects and clicks, and "
            "reports how well the masks agree (IoU: 1 = identical) and the speed-up "
            "on this machine. Your own results are not changed."
        )
        with gr.Row():
            parts["compare_frames"] = gr.Slider(
                1, 20, value=5, step=1, label="Frames to compare", elem_id="compare-frames"
            )
            keys = [q.key for q in faster]
            parts["compare_candidate"] = gr.Radio(
                [(quality_label(q), q.key) for q in faster],
                value="fast" if "fast" in keys else (keys[0] if keys else None),
                label="Faster quality",
                elem_id="compare-candidate",
            )
            parts["compare_btn"] = gr.Button("Compare with full quality", elem_id="compare")
        parts["compare_result"] = gr.Markdown("", elem_id="compare-result")
    return parts


def _results_section() -> dict[str, Any]:
    parts: dict[str, Any] = {
        "video": gr.Video(label="Overlay video", interactive=False, elem_id="overlay-video"),
        "files": gr.File(
            label="Downloads", file_count="multiple", interactive=False, elem_id="downloads"
        ),
    }
    with gr.Accordion("Overlay style", open=False, elem_id="overlay-style"):
        parts["opacity"] = gr.Slider(0, 1, value=0.5, step=0.05, label="Mask opacity")
        with gr.Row():
            parts["contours"] = gr.Checkbox(value=True, label="Contours")
            parts["labels"] = gr.Checkbox(value=True, label="Object labels")
        parts["trails"] = gr.Slider(
            0, 200, value=0, step=1, label="Trajectory trail (frames, 0 = off)"
        )
    parts["rerender_btn"] = gr.Button("Update video and downloads", elem_id="rerender")
    parts["gallery"] = gr.Gallery(
        label="Every N-th frame (click one to open it)",
        columns=4,
        height=260,
        object_fit="contain",
        elem_id="gallery",
    )
    return parts


def _measurements_section() -> dict[str, Any]:
    parts: dict[str, Any] = {}
    with gr.Accordion("Calibration (pixels per unit, frame rate)", open=False, elem_id="cal"):
        parts["pixels_per_unit"] = gr.Textbox(
            label="Pixels per unit (empty: pixels)",
            max_length=20,
            placeholder="e.g. 12.5",
            elem_id="cal-scale",
        )
        parts["unit"] = gr.Textbox(label="Unit", value="mm", max_length=16, elem_id="cal-unit")
        parts["fps"] = gr.Textbox(
            label="Frame rate override (empty: the video's)", max_length=20, elem_id="cal-fps"
        )
    parts["measure_btn"] = gr.Button("Update measurements", elem_id="measure")
    # Hidden until it has rows (sam2web.ui.views.review_tables).
    parts["summary"] = gr.Dataframe(
        headers=SUMMARY_HEADERS,
        label="Per-object summary",
        interactive=False,
        elem_id="summary",
        wrap=True,
        visible=False,
    )
    parts["events"] = gr.Dropdown(
        label="Frames where an object is lost or uncertain (pick one to open it)",
        choices=[],
        elem_id="events",
    )
    with gr.Row():
        parts["trajectories"] = gr.Image(
            label="Trajectories", type="filepath", interactive=False, elem_id="trajectories"
        )
        parts["confidence"] = gr.Image(
            label="Confidence (SAM 2 object score per frame)",
            type="filepath",
            interactive=False,
            elem_id="confidence",
        )
    return parts


def _project_section() -> dict[str, Any]:
    with gr.Column():
        return {
            "save_project_btn": gr.Button("Save project", elem_id="save-project"),
            "project_file": gr.File(
                label="Project file", interactive=False, elem_id="project-file"
            ),
            "project_in": gr.File(
                label="Load a project (.json) onto this video",
                file_types=[".json"],
                type="filepath",
                elem_id="load-project",
            ),
        }


def _api_inputs() -> dict[str, Any]:
    with gr.Row(visible=False):
        return {
            "api_x": gr.Number(label="x"),
            "api_y": gr.Number(label="y"),
            "api_x1": gr.Number(label="x1"),
            "api_y1": gr.Number(label="y1"),
            # 0: the active object (a first click creates object 1), so it may be left out.
            "api_object": gr.Number(label="object_id", precision=0, value=0),
            "api_positive": gr.Checkbox(label="positive", value=True),
            "api_btn": gr.Button("api"),
            "info": gr.JSON(label="info"),
        }
