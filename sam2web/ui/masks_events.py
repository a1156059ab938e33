"""What the "Masks and identities" panel does (:mod:`.masks_panel`), and its wiring.

Handlers follow :mod:`.handlers`: module-level functions taking the :class:`Context`, the
tab's session and the event's inputs, returning ``{component: value}``. Each is an API
endpoint (``api_name`` below): ``stack_choices`` and ``open_stack`` (a microscopy TIFF's
channel and axis), ``start_from_labels``, ``brush_load`` and ``brush_apply``,
``fix_identity``, ``undo_fix`` and ``fill_gaps``.
"""

from __future__ import annotations

from pathlib import Path

import gradio as gr
import numpy as np

from ..media.tiff import COMPOSITE
from ..session.corrections import brush_mask, mask_layer
from . import handlers as h
from .guard import friendly, upload_path
from .handlers import Context, Update, view
from .masks_panel import stack_choice_update
from .user import UserSession

# Events that use the model once (as a click does) and events that only record.
PROMPT = {"concurrency_limit": None}
FILES = {"concurrency_id": "files", "concurrency_limit": 4}


def _require_video(user: UserSession) -> None:
    if user.folder is None:
        raise gr.Error("Upload a video or image sequence first.", print_exception=False)


def _whole(value, what: str) -> int:
    """A whole number from a Number input, or one sentence."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise gr.Error(f"Enter a whole number for the {what}.", print_exception=False)
    return value


# ------------------------------------------------------------------ a TIFF's choice
def _channel(value) -> int | str | None:
    """A channel as ingest takes it: a number is an index, other text a name."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if not isinstance(value, str) or not value.strip():
        return None
    value = value.strip()
    if value.isdigit():
        return int(value)
    return COMPOSITE if value.lower() == COMPOSITE else value


@friendly
def stack_choices(ctx: Context, user: UserSession) -> Update:
    """Show the channel and axis a held TIFF needs (hidden when none is held)."""
    held = user.held_stack
    return stack_choice_update(ctx.page.masks, None if held is None else held[3])


@friendly
def open_stack(ctx: Context, user: UserSession, channel, axis, progress=gr.Progress()) -> Update:
    """Open the held TIFF with the chosen channel (its number from 0, its name, or
    "composite") and axis ("T" or "Z"; empty: the file's own)."""
    channel = _channel(channel)
    axis = axis or None
    if axis not in (None, "T", "Z"):
        raise gr.Error("Choose T or Z as the axis frames run along.", print_exception=False)
    progress(0, desc="Reading frames")

    def cb(done, total):
        progress((done, total) if total else done, desc="Reading frames", unit="frames")

    with user.busy():
        user.choose_stack(channel, axis, progress=cb)
    p = ctx.page
    return {
        p.video: None,
        p.files: None,
        p.gallery: [],
        **h.loaded(ctx, user),
        **stack_choice_update(p.masks, None),
    }


# ------------------------------------------------------------------ masks as prompts
@friendly
def start_from_labels(ctx: Context, user: UserSession, label_image, label_frame) -> Update:
    """Make one object per label of the uploaded label image, prompted with its mask on
    ``label_frame``."""
    _require_video(user)
    path = upload_path(label_image)
    if not path:
        raise gr.Error("Choose a label image (PNG or TIFF) first.", print_exception=False)
    frame = _whole(label_frame, "frame of the label image")
    with ctx.guard.reading(path):
        data = Path(path).read_bytes()
    added = user.start_from_labels(data, frame, name=Path(path).name)
    message = (
        f"{len(added)} object{'s' if len(added) != 1 else ''} started from the labels on "
        f"frame {frame}; press Track."
    )
    return {**view(ctx, user, frame, message), ctx.page.frame_slider: frame}


@friendly
def brush_load(ctx: Context, user: UserSession, frame) -> Update:
    """Put the frame and the active object's mask on it into the brush."""
    _require_video(user)
    frame = user.check_frame(frame)
    rgb = user.frame_rgb(frame)
    obj = next((o for o in user.objects if o.obj_id == user.active_object), None)
    mask = None if obj is None else user.mask_on(frame, obj.obj_id)
    color = obj.color if obj is not None else (255, 48, 48)
    layer = mask_layer(mask, tuple(color), (rgb.shape[1], rgb.shape[0]))
    return {ctx.page.masks.editor: {"background": rgb, "layers": [layer], "composite": None}}


@friendly
def brush_apply(ctx: Context, user: UserSession, editor, frame) -> Update:
    """Make what the brush holds the active object's mask prompt on the frame."""
    _require_video(user)
    frame = user.check_frame(frame)
    layers = [x for x in editor.get("layers") or [] if x is not None] if editor else []
    if not layers:
        raise gr.Error(
            "Nothing was painted; load the mask into the brush and paint first.",
            print_exception=False,
        )
    info = user.info
    painted = np.zeros((info.height, info.width), dtype=bool)
    for layer in layers:
        painted |= brush_mask(layer, info.width, info.height)
    user.paint(frame, painted)
    return view(ctx, user, frame, f"The painted mask is now the prompt on frame {frame}.")


# ------------------------------------------------------------------ identities and gaps
@friendly
def fix_identity(
    ctx: Context, user: UserSession, kind, first_object, second_object, from_frame, frame
) -> Update:
    """Swap two objects, or merge the second into the first, from ``from_frame`` on."""
    first = _whole(first_object, "first object")
    second = _whole(second_object, "second object")
    start = _whole(from_frame, "first frame of the fix")
    message = user.fix_identity(kind or "swap", first, second, start)
    return view(ctx, user, frame, message + " Press Update or Download to refresh the files.")


@friendly
def undo_fix(ctx: Context, user: UserSession, frame) -> Update:
    """Take back the last identity fix."""
    user.undo_fix()
    return view(ctx, user, frame, "The last identity fix was undone.")


@friendly
def fill_gaps(ctx: Context, user: UserSession, max_gap_frames, frame) -> Update:
    """Bridge absences of up to ``max_gap_frames`` frames in the per-frame table."""
    frames = _whole(max_gap_frames, "longest gap")
    user.fill_gaps(frames)
    message = (
        "Gap filling is off."
        if frames == 0
        else f"Gaps of up to {frames} frames are filled in the per-frame table."
    )
    return view(ctx, user, frame, message)


# ------------------------------------------------------------------ wiring
def wire(ctx: Context, uploaded):
    """Connect the panel's controls to their handlers; ``uploaded`` is the upload's event,
    after which the page asks for a TIFF's channel and axis when it needs them. Returns
    the event of a TIFF opened with the choice made."""
    p, m = ctx.page, ctx.page.masks
    frame_outputs = [p.frame_view, p.status, p.active]
    uploaded.success(
        h.bind(stack_choices, ctx),
        [p.state],
        [m.stack_group, m.stack_note, m.channel, m.axis],
        api_name="stack_choices",
        concurrency_limit=None,
    )
    opened = m.stack_btn.click(
        h.bind(open_stack, ctx),
        [p.state, m.channel, m.axis],
        [
            *[p.video, p.files, p.gallery, p.facts, p.frame_view, p.frame_slider],
            *[p.frame_number, p.status, p.active, p.info, m.stack_group, m.stack_note],
        ],
        api_name="open_stack",
        **FILES,
    )
    opened.then(
        h.bind(h.file_scale, ctx),
        [p.state],
        [p.pixels_per_unit, p.unit],
        api_visibility="private",
        concurrency_limit=None,
    )
    m.labels_btn.click(
        h.bind(start_from_labels, ctx),
        [p.state, m.label_image, m.label_frame],
        [*frame_outputs, p.frame_slider],
        api_name="start_from_labels",
        preprocess=False,
        **PROMPT,
    )
    m.brush_load_btn.click(
        h.bind(brush_load, ctx), [p.state, p.frame_slider], [m.editor], api_name="brush_load"
    )
    m.brush_apply_btn.click(
        h.bind(brush_apply, ctx),
        [p.state, m.editor, p.frame_slider],
        frame_outputs,
        api_name="brush_apply",
        **PROMPT,
    )
    m.fix_btn.click(
        h.bind(fix_identity, ctx),
        [p.state, m.fix_kind, m.fix_first, m.fix_second, m.fix_frame, p.frame_slider],
        frame_outputs,
        api_name="fix_identity",
        concurrency_limit=None,
    )
    m.undo_fix_btn.click(
        h.bind(undo_fix, ctx),
        [p.state, p.frame_slider],
        frame_outputs,
        api_name="undo_fix",
        concurrency_limit=None,
    )
    m.gap_btn.click(
        h.bind(fill_gaps, ctx),
        [p.state, m.max_gap, p.frame_slider],
        frame_outputs,
        api_name="fill_gaps",
        concurrency_limit=None,
    )
    return opened
