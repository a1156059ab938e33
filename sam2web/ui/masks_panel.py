"""The page's "Masks and identities" panel: its widgets as one record (:class:`MasksPanel`).

:func:`build_masks_panel` creates, inside the current ``gr.Blocks``: the choice a
multi-channel or volume TIFF needs (hidden until such a file is uploaded), a label image
to start objects from, the brush that corrects the active object's mask, the identity fixes
(swap, merge, undo) and gap filling. :mod:`.masks_events` holds what each control does and
wires it.
"""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from ..media.tiff import COMPOSITE, StackChoiceError
from .brush_editor import brush_editor

LABEL_TYPES = [".png", ".tif", ".tiff"]
FIX_LABELS = {
    "swap": "Swap the two objects from the frame on",
    "merge": "Merge the second object into the first from the frame on",
}


@dataclass(frozen=True)
class MasksPanel:
    """The panel's components, by what they are on the page."""

    # A microscopy TIFF's choice
    stack_group: gr.Group
    stack_note: gr.Markdown
    channel: gr.Dropdown
    axis: gr.Radio
    stack_btn: gr.Button
    # Start from a label image
    label_image: gr.File
    label_frame: gr.Number
    labels_btn: gr.Button
    # Brush
    editor: gr.ImageEditor
    brush_load_btn: gr.Button
    brush_apply_btn: gr.Button
    # Identity fixes and gaps
    fix_kind: gr.Radio
    fix_first: gr.Number
    fix_second: gr.Number
    fix_frame: gr.Number
    fix_btn: gr.Button
    undo_fix_btn: gr.Button
    max_gap: gr.Number
    gap_btn: gr.Button


def build_masks_panel(max_pixels: int) -> MasksPanel:
    """Every component of the panel, in page order, inside the current ``gr.Blocks``; the
    brush takes images of at most ``max_pixels`` pixels (the largest frame)."""
    parts = _stack_choice()
    with gr.Accordion("Masks and identities", open=False, elem_id="masks-panel"):
        parts.update(_labels_and_brush(max_pixels))
        parts.update(_fixes())
    return MasksPanel(**parts)


def _stack_choice() -> dict:
    parts = {}
    with gr.Group(visible=False) as parts["stack_group"]:
        parts["stack_note"] = gr.Markdown("")
        with gr.Row():
            parts["channel"] = gr.Dropdown(label="Channel to track", choices=[], interactive=True)
            parts["axis"] = gr.Radio(
                [("Time (T)", "T"), ("Depth (Z)", "Z")],
                label="Frames run along",
                value=None,
                interactive=True,
            )
        parts["stack_btn"] = gr.Button(
            "Open with this choice", variant="primary", elem_id="open-stack"
        )
    return parts


def _labels_and_brush(max_pixels: int) -> dict:
    parts = {}
    gr.Markdown(
        "**Start from masks**: a label image (PNG or TIFF, 8 or 16 bit; each pixel holds "
        "its object's number, 0 = background, e.g. from Cellpose or StarDist, or a mask "
        "sam2web exported) makes one object per label on the chosen frame; then Track."
    )
    with gr.Row():
        parts["label_image"] = gr.File(
            label="Label image", file_types=LABEL_TYPES, type="filepath", scale=3
        )
        parts["label_frame"] = gr.Number(value=0, precision=0, minimum=0, label="On frame", scale=1)
    parts["labels_btn"] = gr.Button("Start objects from the labels", elem_id="start-from-labels")
    gr.Markdown(
        "**Brush**: load the active object's mask on the current frame, paint to add "
        "and erase to remove, then use the painted mask as that frame's prompt."
    )
    parts["editor"] = brush_editor(
        max_pixels,
        label="Brush",
        type="numpy",
        image_mode="RGBA",
        format="png",
        sources=(),
        transforms=(),
        brush=gr.Brush(colors=["#ff3030"], color_mode="fixed", default_size=12),
        eraser=gr.Eraser(default_size=12),
        layers=gr.LayerOptions(allow_additional_layers=False),  # one layer: the mask
        elem_id="brush",
    )
    with gr.Row():
        parts["brush_load_btn"] = gr.Button("Load the active object's mask")
        parts["brush_apply_btn"] = gr.Button("Use the painted mask", variant="primary")
    return parts


def _fixes() -> dict:
    parts = {}
    gr.Markdown(
        "**Identity fixes** act on the masks, the tables and every download from the "
        "frame on; they are saved in the project and can be undone."
    )
    parts["fix_kind"] = gr.Radio(
        [(label, key) for key, label in FIX_LABELS.items()], value="swap", label="Fix"
    )
    with gr.Row():
        parts["fix_first"] = gr.Number(
            value=1, precision=0, minimum=1, label="First object (number)"
        )
        parts["fix_second"] = gr.Number(
            value=2, precision=0, minimum=1, label="Second object (number)"
        )
        parts["fix_frame"] = gr.Number(value=0, precision=0, minimum=0, label="From frame")
    with gr.Row():
        parts["fix_btn"] = gr.Button("Apply the fix", elem_id="fix-identity")
        parts["undo_fix_btn"] = gr.Button("Undo the last fix", elem_id="undo-fix")
    with gr.Row():
        parts["max_gap"] = gr.Number(
            value=0,
            precision=0,
            minimum=0,
            maximum=1000,
            label="Fill gaps of up to N frames in the table (0: off)",
            info="Short losses get a centroid on the straight line between the frames "
            "around them, marked in the CSV's 'interpolated' column; masks are never "
            "invented.",
        )
        parts["gap_btn"] = gr.Button("Set gap filling")
    return parts


def stack_choice_update(panel: MasksPanel, err: StackChoiceError | None) -> dict:
    """What the stack-choice controls show: hidden without a pending choice, else the
    file's channels (and the composite) and the axes frames can run along."""
    if err is None:
        return {panel.stack_group: gr.update(visible=False), panel.stack_note: ""}
    channels = [(f"{i}: {name}", str(i)) for i, name in enumerate(err.channels)]
    if len(err.channels) > 1:
        channels.append(("All channels blended (composite)", COMPOSITE))
    axes = [(a, a) for a in err.frame_axes]
    return {
        panel.stack_group: gr.update(visible=True),
        panel.stack_note: f"{err.message} Choose below and press *Open with this choice*.",
        panel.channel: gr.update(
            choices=channels, value=channels[0][1] if channels else None, visible=bool(channels)
        ),
        panel.axis: gr.update(
            choices=axes, value=axes[0][1] if axes else None, visible=len(axes) > 1
        ),
    }
