"""The page's zones, ruler, pairs, heatmaps and label stacks: its components, built in one
place and returned as one record (:class:`ZonesPanel`). What they do is in
:mod:`.zones_handlers`.
"""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from ..session.behaviour import CLICK_TARGETS, ZONE_TABLE_HEADERS

TARGET_LABELS = {
    "objects": "Object prompts (as chosen above)",
    "ruler": "Ruler (two ends of a known distance)",
    "rectangle": "Rectangle zone (two corners)",
    "circle": "Circle zone (centre, then rim)",
    "polygon": "Polygon zone (corners, then Close shape)",
    "round arena": "Round arena: centre / periphery (rim points, then Close shape)",
    "square arena": "Square arena: centre / periphery (4 corners, or 2 and Close shape)",
}
PAIR_HEADERS = [
    "object a",
    "object b",
    "frames both present",
    "time within (s)",
    "mean distance",
    "min distance",
    "unit",
]
MEMBERSHIP_LABELS = {"centroid": "Centroid in zone", "overlap": "Share of the mask in zone"}


@dataclass(frozen=True)
class ZonesPanel:
    """Components of the zones section, by what they are on the page."""

    target: gr.Radio  # what a click on the frame draws
    zone_name: gr.Textbox
    centre_fraction: gr.Slider
    close_btn: gr.Button
    zone_list: gr.Dropdown
    remove_btn: gr.Button
    clear_btn: gr.Button
    ruler_distance: gr.Textbox
    ruler_btn: gr.Button
    membership: gr.Radio
    overlap: gr.Slider
    pair_within: gr.Textbox
    on_video: gr.Checkbox
    analyse_btn: gr.Button
    zone_table: gr.Dataframe
    pair_table: gr.Dataframe
    heatmaps: gr.Gallery
    files: gr.File
    stacks_btn: gr.Button
    stacks: gr.File
    # Hidden inputs of the API-only endpoints
    api_zones: gr.Textbox  # zones as JSON (sam2web.analysis.zones.zones_to_json)
    api_btn: gr.Button


def build_zone_drawing() -> dict:
    """The controls of what a click on the frame draws (zones, the ruler), in a closed
    accordion right under the frame, where the clicks are made; returns them by name for
    :func:`build_zones_panel`."""
    parts: dict = {}
    with gr.Accordion("Zones and ruler (draw on the frame)", open=False, elem_id="zones-draw"):
        _drawing_controls(parts)
    return parts


def _drawing_controls(parts: dict) -> None:
    parts["target"] = gr.Radio(
        [(TARGET_LABELS[t], t) for t in CLICK_TARGETS],
        value="objects",
        label="What a click on the frame draws",
        elem_id="click-target",
    )
    with gr.Row():
        parts["zone_name"] = gr.Textbox(
            label="Label of the next zone",
            placeholder="e.g. left corner",
            max_length=40,
            elem_id="zone-name",
        )
        parts["centre_fraction"] = gr.Slider(
            0.1, 0.9, value=0.5, step=0.05, label="Arena centre: share of the arena's size"
        )
        parts["close_btn"] = gr.Button("Close shape", elem_id="close-shape")
    with gr.Row():
        parts["zone_list"] = gr.Dropdown(label="Zones", choices=[], elem_id="zone-list")
        parts["remove_btn"] = gr.Button("Remove zone", size="sm")
        parts["clear_btn"] = gr.Button("Remove all zones", size="sm", variant="stop")
    with gr.Row():
        parts["ruler_distance"] = gr.Textbox(
            label="Ruler's real length (unit as in Measurements)",
            max_length=20,
            placeholder="e.g. 10",
            elem_id="ruler-distance",
        )
        parts["ruler_btn"] = gr.Button("Set scale from ruler", elem_id="set-ruler")


def build_zones_panel(drawing: dict) -> ZonesPanel:
    """The zone, pair and heatmap results section (created in page order inside the current
    ``gr.Blocks``) joined with the ``drawing`` controls of :func:`build_zone_drawing`."""
    parts: dict = dict(drawing)
    gr.Markdown("### Zones and behaviour")
    with gr.Row():
        parts["membership"] = gr.Radio(
            [(v, k) for k, v in MEMBERSHIP_LABELS.items()],
            value="centroid",
            label="An object is in a zone when its",
            elem_id="membership",
        )
        parts["overlap"] = gr.Slider(
            0.05, 1.0, value=0.5, step=0.05, label="Share of the mask (overlap membership)"
        )
        parts["pair_within"] = gr.Textbox(
            label="Pairs: close within (calibrated unit; empty: no summary)",
            max_length=20,
            elem_id="pair-within",
        )
        parts["on_video"] = gr.Checkbox(value=False, label="Zones on the overlay video")
    with gr.Row():
        parts["analyse_btn"] = gr.Button("Update zones, pairs and heatmaps", elem_id="analyse")
        parts["stacks_btn"] = gr.Button("Label stacks (TIFF, CTC)", elem_id="label-stacks")
    parts["zone_table"] = gr.Dataframe(
        headers=list(ZONE_TABLE_HEADERS),
        label="Per object and zone",
        interactive=False,
        elem_id="zone-table",
        wrap=True,
        visible=False,  # each table shows once it has rows
    )
    parts["pair_table"] = gr.Dataframe(
        headers=PAIR_HEADERS,
        label="Per pair of objects",
        interactive=False,
        elem_id="pair-table",
        wrap=True,
        visible=False,
    )
    parts["heatmaps"] = gr.Gallery(
        label="Occupancy per object (over the first frame)",
        columns=4,
        height=260,
        object_fit="contain",
        fit_columns=False,  # one object's heatmap stays a thumbnail, not the page's width
        elem_id="heatmaps",
    )
    with gr.Row():
        parts["files"] = gr.File(
            label="Zone, pair and occupancy files", file_count="multiple", interactive=False
        )
        parts["stacks"] = gr.File(
            label="Label stacks", file_count="multiple", interactive=False, elem_id="stacks"
        )
    with gr.Row(visible=False):
        parts["api_zones"] = gr.Textbox(label="zones_json", max_length=100_000)
        parts["api_btn"] = gr.Button("zones api")
    return ZonesPanel(**parts)
