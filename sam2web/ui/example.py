"""The *Try an example* button beside the upload and the hint it shows (the clip is
:mod:`sam2web.media.example`'s; :mod:`.example_events` loads it)."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from ..media.example import LICENCE, hint_points


def hint_text() -> str:
    """Where to click in the example, from where its animals are on frame 0."""
    points = [f"({x}, {y})" for x, y in hint_points(0)]
    where = ", ".join(points[:-1]) + f" and {points[-1]}"
    return (
        f"**Example clip** ({LICENCE}). Click the centre of each dark mouse: about {where} "
        "(x, y in pixels of the frame; the status line says where a click landed). Your "
        "first click makes object 1; press *Add object* before clicking the next mouse. "
        "Then press **Track**."
    )


@dataclass(frozen=True)
class ExamplePanel:
    button: gr.Button
    hint: gr.Markdown  # empty until the example is loaded


def build_example() -> ExamplePanel:
    """The button and its hint line (empty until the example is loaded)."""
    with gr.Column(scale=1, min_width=160):
        button = gr.Button("Try an example", size="sm", elem_id="try-example")
        hint = gr.Markdown("", elem_id="example-hint")
    return ExamplePanel(button, hint)
