"""The page's "Find objects" panel (:class:`FindersPanel`), in the section where objects
are marked: the finder (moving objects or bright / dark ones), its settings folded away,
the proposals overlaid on the frame, accepting all of them or the numbers picked, and
dismissing them (these shown only while there are proposals).
:mod:`.finders_events` holds what each control does and wires it."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr


@dataclass(frozen=True)
class FindersPanel:
    how: gr.Radio
    count: gr.Number
    min_area: gr.Number
    max_area: gr.Number
    threshold: gr.Number
    polarity: gr.Radio
    prompt: gr.Radio
    find_btn: gr.Button
    picked: gr.Textbox
    accept_all_btn: gr.Button
    accept_picked_btn: gr.Button
    dismiss_btn: gr.Button
    actions: gr.Group
    find_api: gr.Button  # the first find endpoint's trigger, which the page never fires


def build_finders_panel() -> FindersPanel:
    """Every component of the panel, in page order, inside the current ``gr.Blocks``."""
    parts = {}
    with gr.Accordion("Find objects", open=False, elem_id="finders-panel"):
        parts["how"] = gr.Radio(
            [("Moving objects (still camera)", "motion"), ("Bright or dark objects", "contrast")],
            value="motion",
            label="Find",
            elem_id="finder-how",
        )
        parts["count"] = gr.Number(
            value=1, precision=0, minimum=1, label="How many objects (the largest)"
        )
        with gr.Accordion("Finder settings", open=False, elem_id="finder-settings"):
            parts["min_area"] = gr.Number(
                value=30, precision=0, minimum=1, label="Minimum area (px)"
            )
            parts["max_area"] = gr.Number(
                value=0, precision=0, minimum=0, label="Maximum area (px; 0: none)"
            )
            parts["threshold"] = gr.Number(
                value=-1, label="Threshold (grey level 0-255; -1: Otsu's)", minimum=-1, maximum=255
            )
            parts["polarity"] = gr.Radio(
                ["bright", "dark"], value="bright", label="Objects brighter or darker"
            )
            parts["prompt"] = gr.Radio(
                [("Box", "box"), ("Mask", "mask")], value="box", label="Prompt each object with"
            )
        parts["find_btn"] = gr.Button("Find objects on this frame", elem_id="find-objects")
        # What can be done with proposals is shown only while there are proposals.
        with gr.Group(visible=False, elem_id="proposal-actions") as parts["actions"]:
            parts["picked"] = gr.Textbox(
                label="Proposals to accept (numbers, e.g. 1, 3)", elem_id="finder-picked"
            )
            with gr.Row():
                parts["accept_all_btn"] = gr.Button(
                    "Accept all", variant="primary", elem_id="accept-found"
                )
                parts["accept_picked_btn"] = gr.Button("Accept the picked", elem_id="accept-picked")
                parts["dismiss_btn"] = gr.Button("Dismiss proposals", elem_id="dismiss-found")
        parts["find_api"] = gr.Button(visible=False)
    return FindersPanel(**parts)
