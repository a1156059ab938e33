"""The web page: Gradio widgets wired to :class:`~sam2web.user_session.UserSession`.

This is the only module that imports gradio. Each browser tab (or API client) gets its own
``UserSession`` in a ``gr.State`` whose ``delete_callback`` removes its files; the page's
``unload`` event does the same as soon as the tab closes. Events that run the model share
one queue (``concurrency_id="model"``) so a small server is never oversubscribed, while
viewing frames stays outside it and answers at once.
"""

from __future__ import annotations

import contextlib
import functools
import html
import inspect
import logging
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import gradio as gr

from . import __version__
from .analysis import Calibration
from .engine import Engine, Housekeeping
from .errors import SessionClosedError, UserError
from .model import MODELS, get_spec
from .render import OverlayStyle
from .user_session import PROMPT_MODES, UserSession

log = logging.getLogger(__name__)

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

INTRO = """\
# sam2web — click to track
**1** Upload a video, a zip of images or a TIFF stack. **2** Click on an object in the frame
(add more objects with *Add object*). **3** Press **Track**. **4** Check the overlay video, fix
any frame with more clicks, track again, and download the video, masks and table.
"""


class SessionRegistry:
    """Live sessions by browser session id, so the page's unload event can clean up."""

    def __init__(self, idle_ttl_s: float | None = None):
        self._lock = threading.Lock()
        self._by_hash: dict[str, UserSession] = {}
        self.idle_ttl_s = idle_ttl_s

    def remember(self, request: gr.Request | None, user: UserSession) -> None:
        key = getattr(request, "session_hash", None)
        if key:
            with self._lock:
                self._by_hash[key] = user

    def close(self, request: gr.Request | None) -> None:
        key = getattr(request, "session_hash", None)
        with self._lock:
            user = self._by_hash.pop(key, None) if key else None
        if user is not None:
            user.close()

    def live(self) -> list[UserSession]:
        with self._lock:
            return list(self._by_hash.values())

    def workspace_ids(self) -> set[str]:
        """Workspace ids of the open sessions. Sessions closed meanwhile are forgotten here,
        and sessions idle for longer than ``idle_ttl_s`` (no action, not even a frame
        viewed) are closed first."""
        ids = set()
        idle = []
        now = time.time()
        with self._lock:
            for key, user in list(self._by_hash.items()):
                expired = (
                    not user.closed
                    and self.idle_ttl_s is not None
                    and now - user.last_used > self.idle_ttl_s
                )
                if expired:
                    idle.append(user)
                if user.closed or expired:
                    del self._by_hash[key]
                    continue
                ws = user.workspace
                if ws is not None:
                    ids.add(ws.id)
        for user in idle:
            log.info("closing a session idle for %.0f s", now - user.last_used)
            user.close()
        return ids


NOT_UPLOADED = (
    "The file is not on the server (it was not uploaded through this page, or it "
    "was removed); choose the file and upload it again."
)


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _in_session_folder(path: Path, data_dir: Path) -> bool:
    """True for a path inside a session's workspace (``data_dir/<32 hex digits>/...``)."""
    if not _inside(path, data_dir) or path == data_dir:
        return False
    first = path.relative_to(data_dir).parts[0]
    return len(first) == 32 and all(c in "0123456789abcdef" for c in first)


class UploadGuard:
    """Which files a request may name: only files uploaded to Gradio's upload cache.

    The page first sends a file to Gradio's upload route and then names the cached copy in
    the event; an API client can name any path instead. Gradio refuses paths outside its
    cache without a word, so requests are checked here first and answered with a sentence.
    Session folders are refused even where the sessions folder lies inside the cache. Once
    an upload has been read, :meth:`reading` removes the cached copy, so no second copy of a
    user's file stays on disk (the session's own folder holds what is needed).
    """

    def __init__(self, cache_dir: str | Path, data_dir: str | Path):
        self.cache_dir = Path(cache_dir).resolve()
        self.data_dir = Path(data_dir).resolve()

    def resolve(self, value) -> Path | None:
        """The cached file a File input's payload (or path) names, or None where it names
        something else."""
        path = value.get("path") if isinstance(value, dict) else value
        if not isinstance(path, (str, Path)) or not str(path):
            return None
        try:
            file = Path(path).resolve()
            is_file = file.is_file()
        except (OSError, ValueError):  # e.g. a NUL byte in the name
            return None
        if not is_file or file.parent == self.cache_dir or not _inside(file, self.cache_dir):
            return None
        return None if _in_session_folder(file, self.data_dir) else file

    def check(self, value) -> None:
        """Refuse, with one sentence, a File input's payload (one file or a list of them)
        that names anything but uploaded files."""
        for item in value if isinstance(value, list) else [value]:
            if item is not None and self.resolve(item) is None:
                raise gr.Error(NOT_UPLOADED, print_exception=False)

    @contextlib.contextmanager
    def reading(self, path) -> Iterator[None]:
        """Around reading an uploaded file: afterwards, whether reading worked or not, the
        cached copy is removed (with its folder, once empty), but only inside the cache.

        Uploads of the same bytes and name share one cached path, so the file is removed
        only while it is still the one this request found; a newer upload to the same path
        is left for its own request.
        """
        seen = _identity(path)
        try:
            yield
        finally:
            file = self.resolve(path)
            if file is not None and seen is not None and _identity(file) == seen:
                with contextlib.suppress(OSError):
                    file.unlink()
                with contextlib.suppress(OSError):
                    file.parent.rmdir()  # only when empty


def _upload_path(value) -> str | None:
    """The cached file's path from a File input's payload. The upload events skip Gradio's
    own preprocessing, which would leave an empty temporary file in the cache per event."""
    if isinstance(value, dict):
        value = value.get("path")
    return str(value) if value else None


def _identity(path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except (OSError, TypeError, ValueError):
        return None
    return st.st_dev, st.st_ino


class CheckedBlocks(gr.Blocks):
    """gr.Blocks that checks the files named in every request with an :class:`UploadGuard`
    before Gradio reads them (Gradio offers no hook of its own for this)."""

    upload_guard: UploadGuard | None = None

    async def preprocess_data(self, block_fn, inputs, *args, **kwargs):
        if self.upload_guard is not None:
            for component, value in zip(block_fn.inputs, inputs or [], strict=False):
                if isinstance(component, gr.File):
                    self.upload_guard.check(value)
        return await super().preprocess_data(block_fn, inputs, *args, **kwargs)


def _for_toast(message: str) -> str:
    """A sentence as the page's error toast shows it (HTML): markup escaped exactly once,
    whether or not the raising layer already escaped names in it; quotes stay readable
    for API clients, who get the same text."""
    return html.escape(html.unescape(message), quote=False)


def _translate(err: Exception, user=None) -> gr.Error:
    if isinstance(user, UserSession) and user.closed:
        # Expected: the tab closed (or the session expired) and its files went away while
        # this request ran; nobody is waiting for the answer.
        log.info("a request of a closed session ended with %s: %s", type(err).__name__, err)
        return gr.Error(SessionClosedError().message, print_exception=False)
    if isinstance(err, UserError):
        return gr.Error(_for_toast(err.message), print_exception=False)
    log.error("unexpected error", exc_info=err)
    return gr.Error(
        "Something went wrong on the server (details are in its log); try "
        "again, or reload the page.",
        print_exception=False,
    )


def _friendly(fn):
    """Turn errors into one readable sentence in the page (never a stack trace)."""
    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def gen_wrapper(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except gr.Error:
                raise
            except Exception as err:
                raise _translate(err, args[0] if args else None) from None

        return gen_wrapper

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except Exception as err:
            raise _translate(err, args[0] if args else None) from None

    return wrapper


def _parse_optional(value) -> float | None:
    """Text typed into an optional number box: empty -> None, not a number -> NaN."""
    text = "" if value is None else str(value).strip()
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        return float("nan")


def _frame_field(value, what: str) -> int | None:
    """An optional frame number typed by the user: empty -> None."""
    number = _parse_optional(value)
    if number is None:
        return None
    if not number.is_integer() or number < 0:
        raise gr.Error(
            f"The {what} must be a frame number (0 or more) or empty.", print_exception=False
        )
    return int(number)


def _number_field(value, what: str) -> float | None:
    """An optional positive number typed by the user: empty -> None."""
    number = _parse_optional(value)
    if number is None:
        return None
    if not (number > 0 and number != float("inf")):
        raise gr.Error(f"The {what} must be a positive number or empty.", print_exception=False)
    return number


def _shown_frame(value, num_frames: int) -> int:
    """The frame to show after an action: the slider's value, kept inside the video."""
    try:
        frame = int(float(value or 0))
    except (TypeError, ValueError, OverflowError):
        frame = 0
    return max(0, min(frame, num_frames - 1))


def _fmt(value) -> str:
    return "" if value is None else f"{value:.4g}"


def _facts(user: UserSession) -> str:
    if user.folder is None:
        return "*No video loaded.*"
    info = user.info
    fps = f"{info.fps:.3g} fps" + (" (nominal)" if info.fps_is_nominal else "")
    lines = [
        f"**{html.escape(info.source_name)}** — {info.num_frames} frames, {fps}, "
        f"{info.width}×{info.height} px, {info.duration_s:.1f} s"
    ]
    lines += [f"- {html.escape(note)}" for note in info.notes]
    return "\n".join(lines)


def _objects_update(user: UserSession):
    choices = [(f"{o.obj_id}: {o.name}", o.obj_id) for o in user.objects]
    return gr.update(choices=choices, value=user.active_object if choices else None)


def _status(user: UserSession, message: str = "") -> str:
    parts = []
    if message:
        parts.append(html.escape(message))
    if user.tracking is not None and user.folder is not None:
        tracked = len(user.tracking.store.frames())
        parts.append(
            f"{len(user.objects)} object(s); {tracked} of {user.info.num_frames} frames have masks."
        )
    return " ".join(parts)


def build_app(engine: Engine | None = None) -> gr.Blocks:
    engine = engine or Engine()
    settings = engine.settings
    registry = SessionRegistry(idle_ttl_s=settings.session_ttl_s)
    model_queue = {"concurrency_id": "model", "concurrency_limit": settings.concurrency}
    approx = (
        f" Processing at {settings.resolution} px — **approximate** (SAM2's native "
        "size is 1024 px)."
        if engine.approximate
        else ""
    )

    def new_user() -> UserSession:
        return UserSession(engine)

    def model_line(model_key: str | None = None) -> str:
        status = engine.checkpoint_status(model_key)
        return f"**Model:** {html.escape(status.message)}{approx}"

    # delete_cache: Gradio keeps a copy of every file it serves; drop copies older than a
    # session's lifetime so finished sessions leave nothing behind.
    ttl = int(settings.session_ttl_s)
    with CheckedBlocks(
        title="sam2web", fill_width=True, delete_cache=(max(60, min(ttl, 3600)), ttl)
    ) as demo:
        # No time_to_live here: Gradio counts it from the state's last change (the upload),
        # not from the user's last action. Idle sessions are closed by the housekeeping
        # thread instead (SessionRegistry.workspace_ids); a closed tab closes its session.
        state = gr.State(new_user, delete_callback=lambda u: u.close() if u else None)
        gr.Markdown(INTRO)
        with gr.Row():
            model_dd = gr.Dropdown(
                [(spec.label, key) for key, spec in MODELS.items()],
                value=get_spec(settings.model).key,
                label="Model",
                interactive=True,
                scale=1,
                elem_id="model",
            )
            full_px, fast_px = engine.resolution("full"), engine.resolution("fast")
            quality = gr.Radio(
                [
                    (f"Full quality ({full_px} px)", "full"),
                    (f"Fast preview ({fast_px} px, approximate)", "fast"),
                ],
                value="full",
                label="Quality",
                elem_id="quality",
                scale=1,
                visible=fast_px != full_px,
                info="The fast preview tracks several times faster; its masks are close to "
                "full quality's but not the same (compare them below Track).",
            )
            model_md = gr.Markdown(model_line(), elem_id="model-status")
        with gr.Row():
            with gr.Column(scale=1, min_width=320):
                upload = gr.File(
                    label=(
                        f"Video or image sequence (up to {settings.max_upload_mb} MB, "
                        f"{settings.max_frames} frames)"
                    ),
                    file_types=UPLOAD_TYPES,
                    type="filepath",
                    elem_id="upload",
                )
                demo.upload_guard = UploadGuard(upload.GRADIO_CACHE, settings.data_dir)
                facts = gr.Markdown("*No video loaded.*", elem_id="video-facts")
                gr.Markdown("### Objects")
                active = gr.Dropdown(
                    label="Active object (clicks go to it)",
                    choices=[],
                    interactive=True,
                    elem_id="active-object",
                )
                with gr.Row():
                    name_box = gr.Textbox(
                        label="Name", placeholder="e.g. mouse 1", max_length=80, scale=2
                    )
                    add_btn = gr.Button("Add object", elem_id="add-object", scale=1)
                with gr.Row():
                    rename_btn = gr.Button("Rename active", size="sm")
                    remove_btn = gr.Button("Remove active", size="sm", variant="stop")
                mode = gr.Radio(
                    [(MODE_LABELS[m], m) for m in PROMPT_MODES],
                    value="positive",
                    label="What a click on the frame adds",
                    elem_id="click-mode",
                )
                with gr.Row():
                    undo_btn = gr.Button("↶ Undo last click", elem_id="undo")
                    clear_btn = gr.Button("Clear object on this frame", elem_id="clear-frame")
                reset_btn = gr.Button(
                    "Reset everything", variant="stop", size="sm", elem_id="reset"
                )
            with gr.Column(scale=2):
                frame_img = gr.Image(
                    label="Frame — click to add points",
                    interactive=False,
                    type="numpy",
                    format="png",
                    elem_id="frame-view",
                    buttons=["fullscreen"],
                    height=460,
                )
                with gr.Row():
                    slider = gr.Slider(
                        0,
                        1,
                        value=0,
                        step=1,
                        label="Frame",
                        scale=4,
                        elem_id="frame-slider",
                        interactive=True,
                    )
                    frame_no = gr.Number(
                        value=0,
                        precision=0,
                        label="Frame number",
                        scale=1,
                        minimum=0,
                        elem_id="frame-number",
                    )
                status = gr.Markdown("", elem_id="status")
        gr.Markdown("### Track")
        with gr.Row():
            direction = gr.Radio(
                [(v, k) for k, v in DIRECTION_LABELS.items()],
                value="forward",
                label="Direction",
                elem_id="direction",
            )
            # Text boxes, not numbers: an empty number box is sent as 0, and "empty" means
            # "the first clicked frame" / "to the end of the video" here.
            start_no = gr.Textbox(
                value="",
                label="Start frame",
                max_length=12,
                placeholder="empty: first clicked frame",
                elem_id="start-frame",
            )
            end_no = gr.Textbox(
                value="",
                label="End frame",
                max_length=12,
                placeholder="empty: to the end",
                elem_id="end-frame",
            )
            with gr.Column(min_width=160):
                track_btn = gr.Button("Track ▶", variant="primary", elem_id="track")
                cancel_btn = gr.Button("Cancel", variant="stop", elem_id="cancel")
        with gr.Accordion(
            "Is the fast preview good enough for this video?",
            open=False,
            visible=engine.resolution("fast") != engine.resolution("full"),
        ):
            gr.Markdown(
                "Tracks the first frames from your earliest click twice, at full "
                "quality and as a fast preview, with your objects and clicks, and "
                "reports how well the masks agree (IoU: 1 = identical) and the speed-up "
                "on this machine. Your own results are not changed."
            )
            with gr.Row():
                compare_frames = gr.Slider(
                    1, 20, value=5, step=1, label="Frames to compare", elem_id="compare-frames"
                )
                compare_btn = gr.Button("Compare fast preview with full quality", elem_id="compare")
            compare_md = gr.Markdown("", elem_id="compare-result")
        gr.Markdown("### Results")
        with gr.Row():
            with gr.Column(scale=2):
                video = gr.Video(label="Overlay video", interactive=False, elem_id="overlay-video")
            with gr.Column(scale=1):
                opacity = gr.Slider(0, 1, value=0.5, step=0.05, label="Mask opacity")
                contours = gr.Checkbox(value=True, label="Contours")
                labels = gr.Checkbox(value=True, label="Object labels")
                trails = gr.Slider(
                    0, 200, value=0, step=1, label="Trajectory trail (frames, 0 = off)"
                )
                rerender_btn = gr.Button("Update video and downloads", elem_id="rerender")
                files = gr.File(
                    label="Downloads", file_count="multiple", interactive=False, elem_id="downloads"
                )
        gallery = gr.Gallery(
            label="Every N-th frame (click one to open it)",
            columns=8,
            height=260,
            object_fit="contain",
            elem_id="gallery",
        )

        gr.Markdown("### Measurements")
        with gr.Row():
            cal_scale = gr.Textbox(
                label="Pixels per unit (empty: pixels)",
                max_length=20,
                placeholder="e.g. 12.5",
                elem_id="cal-scale",
            )
            cal_unit = gr.Textbox(label="Unit", value="mm", max_length=16, elem_id="cal-unit")
            cal_fps = gr.Textbox(
                label="Frame rate override (empty: the video's)", max_length=20, elem_id="cal-fps"
            )
            measure_btn = gr.Button("Update measurements", elem_id="measure")
        summary_df = gr.Dataframe(
            label="Per-object summary", interactive=False, elem_id="summary", wrap=True
        )
        events_dd = gr.Dropdown(
            label="Frames where an object is lost or uncertain (pick one to open it)",
            choices=[],
            elem_id="events",
        )
        with gr.Row():
            traj_img = gr.Image(
                label="Trajectories", type="filepath", interactive=False, elem_id="trajectories"
            )
            conf_img = gr.Image(
                label="Confidence (SAM 2 object score per frame)",
                type="filepath",
                interactive=False,
                elem_id="confidence",
            )
        gr.Markdown("### Project")
        with gr.Row():
            save_project_btn = gr.Button("Save project", elem_id="save-project")
            project_out = gr.File(label="Project file", interactive=False, elem_id="project-file")
            project_in = gr.File(
                label="Load a project (.json) onto this video",
                file_types=[".json"],
                type="filepath",
                elem_id="load-project",
            )

        # Hidden inputs for API-only endpoints (clicks with coordinates, boxes).
        with gr.Row(visible=False):
            api_x = gr.Number(label="x")
            api_y = gr.Number(label="y")
            api_x1 = gr.Number(label="x1")
            api_y1 = gr.Number(label="y1")
            api_obj = gr.Number(label="object_id", precision=0)
            api_positive = gr.Checkbox(label="positive", value=True)
            api_btn = gr.Button("api")
            info_json = gr.JSON(label="info")

        # ------------------------------------------------------------ handlers
        frame_outputs = [frame_img, status, active]

        def view(user: UserSession, frame, message=""):
            image = None
            if user.folder is not None:
                image = user.view_frame(_shown_frame(frame, user.info.num_frames))
            return image, _status(user, message), _objects_update(user)

        @_friendly
        def on_upload(user: UserSession, payload, request: gr.Request, progress=gr.Progress()):
            registry.remember(request, user)
            path = _upload_path(payload)
            if not path:
                return (
                    user,
                    "*No video loaded.*",
                    None,
                    gr.update(),
                    gr.update(),
                    "",
                    _objects_update(user),
                    None,
                    None,
                    [],
                    {},
                )
            progress(0, desc="Reading frames")

            def cb(done, total):
                progress((done, total) if total else done, desc="Reading frames", unit="frames")

            with demo.upload_guard.reading(path), user.busy():
                info = user.upload(Path(path), source_name=Path(path).name, progress=cb)
            last = info.num_frames - 1
            return (
                user,
                _facts(user),
                user.view_frame(0),
                gr.update(minimum=0, maximum=max(last, 1), value=0, interactive=last > 0),
                gr.update(value=0, maximum=last),
                _status(user, "Loaded. Click on an object to start."),
                _objects_update(user),
                None,
                None,
                [],
                {
                    "num_frames": info.num_frames,
                    "fps": info.fps,
                    "width": info.width,
                    "height": info.height,
                    "duration_s": info.duration_s,
                    "notes": list(info.notes),
                },
            )

        upload.upload(
            on_upload,
            [state, upload],
            [
                state,
                facts,
                frame_img,
                slider,
                frame_no,
                status,
                active,
                video,
                files,
                gallery,
                info_json,
            ],
            api_name="upload",
            preprocess=False,
            **model_queue,
        )

        @_friendly
        def on_frame(user: UserSession, frame):
            if user.folder is None:
                return None, "", gr.update()
            frame = max(0, min(int(frame or 0), user.info.num_frames - 1))
            return user.view_frame(frame), gr.update(), gr.update(value=frame)

        slider.change(
            on_frame,
            [state, slider],
            [frame_img, status, frame_no],
            api_name="frame",
            concurrency_limit=None,
            trigger_mode="always_last",
            show_progress="hidden",
        )
        frame_no.submit(
            lambda f: gr.update(value=int(f or 0)),
            [frame_no],
            [slider],
            api_visibility="private",
            concurrency_limit=None,
        )

        @_friendly
        def on_click(
            user: UserSession, frame, mode_value, evt: gr.SelectData, progress=gr.Progress()
        ):
            if user.folder is None:
                raise gr.Error("Upload a video or image sequence first.")
            if not evt.index or len(evt.index) != 2:
                raise gr.Error("Click inside the image.")
            # Gradio reports the click in pixels of the displayed image.
            x, y = user.to_original(float(evt.index[0]), float(evt.index[1]))
            message = user.click(frame, x, y, mode_value or "positive")
            return view(user, frame, message)

        frame_img.select(
            on_click, [state, slider, mode], frame_outputs, api_visibility="private", **model_queue
        )

        @_friendly
        def api_add_point(user: UserSession, frame, obj_id, x, y, positive):
            if obj_id is None or obj_id == 0:
                obj_id = user.active_object
            user.click(frame, x, y, "positive" if positive else "negative", obj_id=obj_id)
            return view(user, frame)

        api_btn.click(
            api_add_point,
            [state, frame_no, api_obj, api_x, api_y, api_positive],
            frame_outputs,
            api_name="add_point",
            **model_queue,
        )

        @_friendly
        def api_add_box(user: UserSession, frame, obj_id, x0, y0, x1, y1):
            user.add_box(frame, x0, y0, x1, y1, obj_id=obj_id or user.active_object)
            return view(user, frame)

        api_btn.click(
            api_add_box,
            [state, frame_no, api_obj, api_x, api_y, api_x1, api_y1],
            frame_outputs,
            api_name="add_box",
            **model_queue,
        )

        @_friendly
        def on_add_object(
            user: UserSession, name, frame, request: gr.Request, progress=gr.Progress()
        ):
            registry.remember(request, user)
            if user.folder is None:
                raise gr.Error("Upload a video or image sequence first.")
            progress(0, desc="Loading the model")
            obj = user.add_object(name)
            return (
                *view(user, frame, f"Added {obj.name}; click on it in the frame."),
                "",
                model_line(user.model),
            )

        add_btn.click(
            on_add_object,
            [state, name_box, slider],
            [*frame_outputs, name_box, model_md],
            api_name="add_object",
            **model_queue,
        )

        @_friendly
        def on_select_object(user: UserSession, obj_id, frame):
            if obj_id is not None and user.tracking is not None:
                user.select_object(obj_id)
            return view(user, frame)

        active.input(
            on_select_object,
            [state, active, slider],
            frame_outputs,
            api_name="select_object",
            concurrency_limit=None,
        )

        @_friendly
        def on_rename(user: UserSession, name, frame):
            if user.active_object is None:
                raise gr.Error("Add an object first.")
            obj = user.rename_object(user.active_object, name or "")
            return (*view(user, frame, f"Renamed to {obj.name}."), "")

        rename_btn.click(
            on_rename,
            [state, name_box, slider],
            [*frame_outputs, name_box],
            api_name="rename_object",
            concurrency_limit=None,
        )

        @_friendly
        def on_remove(user: UserSession, frame):
            if user.active_object is None:
                raise gr.Error("There is no object to remove.")
            name = user.tracking.objects[user.active_object].name
            user.remove_object(user.active_object)
            return view(user, frame, f"Removed {name}.")

        remove_btn.click(
            on_remove, [state, slider], frame_outputs, api_name="remove_object", **model_queue
        )

        @_friendly
        def on_undo(user: UserSession, frame):
            user.undo(frame)
            return view(user, frame, "Undone.")

        undo_btn.click(on_undo, [state, slider], frame_outputs, api_name="undo", **model_queue)

        @_friendly
        def on_clear(user: UserSession, frame):
            user.clear_frame(frame)
            return view(user, frame, "Cleared this object's clicks on this frame.")

        clear_btn.click(
            on_clear, [state, slider], frame_outputs, api_name="clear_frame", **model_queue
        )

        @_friendly
        def on_reset(user: UserSession, frame):
            user.reset()
            return (*view(user, frame, "Everything was reset."), None, None, [])

        reset_btn.click(
            on_reset,
            [state, slider],
            [*frame_outputs, video, files, gallery],
            api_name="reset",
            **model_queue,
        )

        def _style(user, opacity_v, contours_v, labels_v, trails_v):
            user.style = OverlayStyle(
                opacity=float(opacity_v),
                contours=bool(contours_v),
                labels=bool(labels_v),
                trails=int(trails_v or 0),
            )

        def _calibrate(user, scale_v, unit_v, fps_v):
            user.calibration = Calibration(
                pixels_per_unit=_number_field(scale_v, "pixels per unit"),
                unit=(unit_v or "px").strip()
                if _number_field(scale_v, "pixels per unit")
                else "px",
                fps=_number_field(fps_v, "frame rate"),
            )

        def _review(user):
            review = user.review()
            headers = [
                "id",
                "name",
                "frames present",
                "first",
                "last",
                f"distance ({user.calibration.length_unit})",
                f"mean speed ({user.calibration.length_unit}/s)",
                f"max speed ({user.calibration.length_unit}/s)",
                f"mean area ({user.calibration.length_unit}²)",
            ]
            table = [
                [
                    s.object_id,
                    s.object_name,
                    s.frames_present,
                    s.first_frame,
                    s.last_frame,
                    _fmt(s.total_distance),
                    _fmt(s.mean_speed),
                    _fmt(s.max_speed),
                    _fmt(s.mean_area),
                ]
                for s in review.summaries
            ]
            choices = [(f"frame {f}: {name} {kind}", f) for f, _, name, kind in review.events]
            return (
                gr.update(value=table, headers=headers),
                gr.update(choices=choices[:500], value=None),
            )

        def _export(user, progress):
            def cb(done, total):
                progress((done, total), desc="Writing the overlay video", unit="frames")

            exports = user.export(progress=cb)
            progress(1.0, desc="Measuring and plotting")
            science = user.export_science(user.calibration)
            files = [str(p) for p in exports.files()] + [str(p) for p in science.values()]
            table, events = _review(user)
            return (
                str(exports.video),
                files,
                table,
                events,
                str(science["trajectories"]),
                str(science["confidence"]),
            )

        @_friendly
        def on_track(
            user: UserSession,
            direction_v,
            start,
            end,
            frame,
            opacity_v,
            contours_v,
            labels_v,
            trails_v,
            scale_v,
            unit_v,
            fps_v,
            request: gr.Request,
            progress=gr.Progress(),
        ):
            registry.remember(request, user)
            if user.folder is None:
                raise gr.Error("Upload a video or image sequence first.")
            # Held through the exports too, so a second run cannot start in between.
            with user.busy():
                _style(user, opacity_v, contours_v, labels_v, trails_v)
                _calibrate(user, scale_v, unit_v, fps_v)
                start = _frame_field(start, "start frame")
                end = _frame_field(end, "end frame")
                progress(0, desc="Loading the model")
                user.ensure_tracking()
                t0 = time.perf_counter()
                last_view = 0.0
                shown = int(frame or 0)
                for step in user.propagate(direction_v or "forward", start, end):
                    elapsed = time.perf_counter() - t0
                    eta = elapsed / step.done * (step.total - step.done)
                    progress(
                        (step.done, step.total),
                        desc=f"Tracking frame {step.result.frame_idx} — about {eta:.0f} s left",
                        unit="frames",
                    )
                    if time.perf_counter() - last_view > 1.0 or step.done == step.total:
                        last_view = time.perf_counter()
                        shown = step.result.frame_idx
                        yield (
                            user.view_frame(shown),
                            _status(user, f"Tracking… {step.done}/{step.total} frames"),
                            gr.update(),
                            gr.update(value=shown),
                            *[gr.update()] * 7,
                        )
                if user.closed:  # the tab was closed: nobody waits for the exports
                    return
                run = user.last_run
                verb = "Cancelled after" if run.cancelled else "Tracked"
                message = f"{verb} {run.frames} frames in {run.seconds:.1f} s."
                video_path, file_list, table, events, traj, conf = _export(user, progress)
                yield (
                    user.view_frame(shown),
                    _status(user, message),
                    _objects_update(user),
                    gr.update(value=shown),
                    video_path,
                    file_list,
                    user.gallery(),
                    table,
                    events,
                    traj,
                    conf,
                )

        track_btn.click(
            on_track,
            [
                state,
                direction,
                start_no,
                end_no,
                slider,
                opacity,
                contours,
                labels,
                trails,
                cal_scale,
                cal_unit,
                cal_fps,
            ],
            [
                frame_img,
                status,
                active,
                slider,
                video,
                files,
                gallery,
                summary_df,
                events_dd,
                traj_img,
                conf_img,
            ],
            api_name="propagate",
            **model_queue,
        )

        def on_cancel(user: UserSession):
            running = user.cancel()
            return "Cancelling after the current frame…" if running else "Nothing is running."

        cancel_btn.click(
            on_cancel, [state], [status], api_name="cancel", concurrency_limit=None, queue=False
        )

        @_friendly
        def on_rerender(
            user: UserSession,
            frame,
            opacity_v,
            contours_v,
            labels_v,
            trails_v,
            scale_v,
            unit_v,
            fps_v,
            progress=gr.Progress(),
        ):
            with user.busy():
                _style(user, opacity_v, contours_v, labels_v, trails_v)
                _calibrate(user, scale_v, unit_v, fps_v)
                video_path, file_list, table, events, traj, conf = _export(user, progress)
            return (
                user.view_frame(int(frame or 0)),
                video_path,
                file_list,
                user.gallery(),
                table,
                events,
                traj,
                conf,
            )

        rerender_outputs = [
            frame_img,
            video,
            files,
            gallery,
            summary_df,
            events_dd,
            traj_img,
            conf_img,
        ]
        rerender_inputs = [
            state,
            slider,
            opacity,
            contours,
            labels,
            trails,
            cal_scale,
            cal_unit,
            cal_fps,
        ]
        rerender_btn.click(
            on_rerender, rerender_inputs, rerender_outputs, api_name="export", **model_queue
        )
        measure_btn.click(
            on_rerender, rerender_inputs, rerender_outputs, api_name="measure", **model_queue
        )

        def on_event(user: UserSession, frame):
            return gr.update() if frame is None else gr.update(value=int(frame))

        events_dd.input(
            on_event, [state, events_dd], [slider], api_visibility="private", concurrency_limit=None
        )

        @_friendly
        def on_save_project(user: UserSession, scale_v, unit_v, fps_v):
            _calibrate(user, scale_v, unit_v, fps_v)
            return str(user.save_project(user.calibration))

        save_project_btn.click(
            on_save_project,
            [state, cal_scale, cal_unit, cal_fps],
            [project_out],
            api_name="save_project",
            concurrency_limit=None,
        )

        @_friendly
        def on_load_project(user: UserSession, payload, frame, progress=gr.Progress()):
            path = _upload_path(payload)
            if not path:
                return gr.update(), gr.update(), gr.update(), gr.update(), gr.update()

            def cb(done, total):
                progress((done, total), desc="Replaying the project", unit="steps")

            from .project import load_project as read_project

            with demo.upload_guard.reading(path):
                if user.folder is None:
                    raise gr.Error("Upload the project's video first, then load the project.")
                with user.busy():
                    notes = user.load_project(Path(path), progress=cb)
                    cal = read_project(Path(path)).calibration
            message = "Project loaded. " + " ".join(notes)
            return (
                *view(user, frame, message),
                "" if cal.pixels_per_unit is None else f"{cal.pixels_per_unit:g}",
                "" if cal.fps is None else f"{cal.fps:g}",
            )

        project_in.upload(
            on_load_project,
            [state, project_in, slider],
            [*frame_outputs, cal_scale, cal_fps],
            api_name="load_project",
            preprocess=False,
            **model_queue,
        )

        @_friendly
        def on_gallery(user: UserSession, evt: gr.SelectData):
            caption = (evt.value or {}).get("caption", "") if isinstance(evt.value, dict) else ""
            try:
                frame = int(str(caption).split()[-1])
            except (ValueError, IndexError):
                return gr.update()
            return gr.update(value=frame)

        gallery.select(
            on_gallery, [state], [slider], api_visibility="private", concurrency_limit=None
        )

        @_friendly
        def on_model(user: UserSession, key, frame):
            cleared = user.set_model(key)
            message = f"Model: {get_spec(key).label}."
            if cleared:
                message += " Objects and clicks were cleared (they belong to the old model)."
            image = (
                view(user, frame, message)
                if user.folder is not None
                else (None, html.escape(message), _objects_update(user))
            )
            return (*image, model_line(key))

        model_dd.input(
            on_model,
            [state, model_dd, slider],
            [*frame_outputs, model_md],
            api_name="set_model",
            **model_queue,
        )

        @_friendly
        def on_quality(user: UserSession, quality_v, frame, progress=gr.Progress()):
            if user.folder is None:  # nothing to replay yet
                user.set_quality(quality_v or "full")
                return None, "", _objects_update(user)

            def cb(done, total):
                progress((done, total), desc="Giving your clicks to the model again", unit="steps")

            with user.busy():
                replayed = user.set_quality(quality_v or "full", progress=cb)
            label = "Full quality" if user.quality == "full" else "Fast preview (approximate)"
            message = f"{label}: processing at {user.resolution} px."
            if replayed:
                message += " Your objects and clicks were kept; press Track to track again."
            return view(user, frame, message)

        quality.input(
            on_quality,
            [state, quality, slider],
            frame_outputs,
            api_name="set_quality",
            **model_queue,
        )

        @_friendly
        def on_compare(user: UserSession, frames_v, progress=gr.Progress()):
            if user.folder is None:
                raise gr.Error("Upload a video or image sequence first.")

            def cb(done, total):
                progress((done, total), desc="Tracking at both qualities", unit="steps")

            with user.busy():
                report = user.compare_qualities(int(frames_v or 5), progress=cb)
            rows = [
                f"| {html.escape(report.names[oid])} | {mean:.3f} | {low:.3f} |"
                for oid, (mean, low) in report.iou.items()
            ]
            return "\n".join(
                [
                    html.escape(report.sentence()),
                    "",
                    "| object | mean IoU | lowest IoU |",
                    "|---|---:|---:|",
                    *rows,
                ]
            )

        compare_btn.click(
            on_compare,
            [state, compare_frames],
            [compare_md],
            api_name="compare_quality",
            **model_queue,
        )

        demo.unload(registry.close)
        demo.load(lambda: model_line(), None, [model_md], api_visibility="private")
        demo.sam2web_registry = registry  # for tests and housekeeping
        gr.Markdown(f"<small>sam2web {__version__}</small>")
    # Gradio runs the per-tab state factory as a load event of its own, which would also be
    # listed as an API endpoint that takes and returns nothing.
    for fn in demo.fns.values():
        if fn.name == new_user.__name__:
            fn.api_visibility = "private"
    return demo


def launch(engine: Engine | None = None, **kwargs) -> None:
    """Start the web app with the engine's settings (host, port, limits)."""
    engine = engine or Engine()
    s = engine.settings
    s.data_dir.mkdir(parents=True, exist_ok=True)
    removed = engine.sweep()
    if removed:
        log.info("removed %d stale session folders", removed)
    demo = build_app(engine)
    demo.queue(default_concurrency_limit=s.concurrency)
    housekeeping = Housekeeping(
        engine, s.sweep_interval_s, demo.sam2web_registry.workspace_ids
    ).start()
    demo.sam2web_housekeeping = housekeeping
    try:
        demo.launch(
            server_name=s.host,
            server_port=s.port,
            max_file_size=s.max_upload_mb * 1024 * 1024,
            allowed_paths=served_paths(s.data_dir),
            **kwargs,
        )
    finally:
        # A blocking launch returns once the server is closed; a non-blocking one (e.g.
        # prevent_thread_lock, notebooks) leaves the server and its housekeeping running.
        if not getattr(demo, "is_running", False):
            housekeeping.stop()


def served_paths(data_dir: Path) -> list[str]:
    """What to pass as Gradio's ``allowed_paths``.

    Gradio serves every file under ``allowed_paths`` to anyone who names its path. Session
    files never need that: results are copied into Gradio's cache before the page gets a
    link. Gradio only has to be allowed to read them, which it is anyway inside the temp
    directory and the working directory; elsewhere (``/data/sessions`` in the Docker image)
    the sessions folder must be listed, and its files are then reachable only by their
    exact path, which holds the session's random 32-digit id and is never sent to a page.
    """
    folder = Path(data_dir).resolve()
    readable = (Path(tempfile.gettempdir()).resolve(), Path.cwd().resolve())
    return [] if any(_inside(folder, root) for root in readable) else [str(data_dir)]
