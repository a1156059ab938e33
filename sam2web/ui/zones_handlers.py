"""What the zones section does (:mod:`.zones_panel`): drawing zones and the ruler with clicks
on the frame, the zone/pair/heatmap outputs and the label stacks; and which event runs which
handler (:func:`wire_zones`). Handlers follow :mod:`.handlers`: a :class:`Context`, the
tab's session and the inputs in, ``{component: value}`` out; parameter names are the API's.
"""

from __future__ import annotations

import json

import gradio as gr

from ..analysis.zones import MAX_ZONES_JSON_CHARS, zones_from_json
from ..errors import PromptError
from ..session.behaviour import ZONE_TABLE_HEADERS, BehaviourOutputs, optional_number, zone_table
from . import views
from .guard import friendly
from .handlers import Context, Update, bind, view
from .user import UserSession
from .zones_panel import PAIR_HEADERS


def _zone_names(user: UserSession) -> dict:
    return gr.update(choices=[z.name for z in user.behaviour.setup.zones], value=None)


def _frame_view(ctx: Context, user: UserSession, frame, message: str = "") -> Update:
    return {**view(ctx, user, frame, message), ctx.page.zones.zone_list: _zone_names(user)}


def _require_video(user: UserSession) -> None:
    if user.folder is None:
        raise gr.Error("Upload a video or image sequence first.")


# ------------------------------------------------------------------ drawing
def show_zones(ctx: Context, user: UserSession) -> Update:
    """The zone list, after a click on the frame may have added a zone."""
    return {ctx.page.zones.zone_list: _zone_names(user)}


@friendly
def close_shape(ctx: Context, user: UserSession, zone_name, centre_fraction, frame) -> Update:
    """Finish the polygon or arena being drawn."""
    _require_video(user)
    message = user.behaviour.close(zone_name or "", float(centre_fraction or 0.5))
    return _frame_view(ctx, user, frame, message)


@friendly
def remove_zone(ctx: Context, user: UserSession, zone, frame) -> Update:
    """Remove one zone by name."""
    user.behaviour.setup = user.behaviour.setup.without_zone(str(zone or ""))
    return _frame_view(ctx, user, frame, "Zone removed.")


def clear_zones(ctx: Context, user: UserSession, frame) -> Update:
    """Remove every zone and the shape being drawn."""
    user.behaviour.clear_zones()
    return _frame_view(ctx, user, frame, "Zones removed.")


@friendly
def set_zones(ctx: Context, user: UserSession, zones_json, frame) -> Update:
    """Replace the zones by a JSON list of shapes, e.g. [{"type": "rect", "name": "left",
    "x0": 0, "y0": 0, "x1": 100, "y1": 200}] (types rect, circle, polygon, ring; API only).
    The text's length, the number of zones and each polygon's corners are checked before
    anything is built from them."""
    text = zones_json or "[]"
    if not isinstance(text, str):
        raise PromptError("The zones must be a JSON list of shapes.")
    if len(text) > MAX_ZONES_JSON_CHARS:
        raise PromptError(
            f"The zones are {len(text):,} characters of JSON, more than the "
            f"{MAX_ZONES_JSON_CHARS:,} a set of zones may take; send fewer zones or corners."
        )
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        raise PromptError("The zones must be a JSON list of shapes.") from None
    if not isinstance(data, list) or not all(isinstance(d, dict) for d in data):
        raise PromptError("The zones must be a JSON list of shapes.")
    try:
        zones = zones_from_json(data)
    except (KeyError, TypeError, ValueError):
        raise PromptError("Each zone needs a type, a name and that shape's numbers.") from None
    user.behaviour.replace_zones(zones)
    return _frame_view(ctx, user, frame, f"{len(zones)} zones set.")


@friendly
def set_ruler(ctx: Context, user: UserSession, real_distance, unit, frame) -> Update:
    """Calibrate with the ruler just drawn: its two ends are ``real_distance`` ``unit``
    apart; fills the Measurements scale."""
    _require_video(user)
    cal = user.set_ruler(real_distance, (unit or "").strip() or "mm")
    p = ctx.page
    return {
        **_frame_view(ctx, user, frame, f"Scale: {cal.pixels_per_unit:.4g} pixels per {cal.unit}."),
        p.pixels_per_unit: f"{cal.pixels_per_unit:.6g}",
        p.unit: cal.unit,
    }


@friendly
def ruler(ctx: Context, user: UserSession, x0, y0, x1, y1, real_distance, unit) -> Update:
    """A ruler from (x0, y0) to (x1, y1), pixels of the original frame, ``real_distance``
    ``unit`` long: sets the scale (API only)."""
    _require_video(user)
    user.behaviour.draft.clear()
    for x, y in ((x0, y0), (x1, y1)):
        user.behaviour.click("ruler", x, y)
    return set_ruler(ctx, user, real_distance, unit, 0)


# ------------------------------------------------------------------ outputs
def _options(user: UserSession, membership, overlap, pair_within, on_video) -> None:
    within = optional_number(pair_within, "pair distance", "20")
    user.behaviour.set_options(membership == "overlap", overlap, within, bool(on_video))


@friendly
def zone_options(ctx: Context, user: UserSession, membership, overlap, pair_within, on_video):
    """Membership by centroid or mask overlap, the pair distance, zones on the video."""
    _options(user, membership, overlap, pair_within, on_video)
    return {}


def _shown(ctx: Context, out: BehaviourOutputs) -> Update:
    z = ctx.page.zones
    pairs = [
        [s.name_a, s.name_b, s.frames_both_present, round(s.time_within_s, 2)]
        + [None if v is None else round(v, 2) for v in (s.mean_distance, s.min_distance)]
        + [s.unit]
        for s in out.pair_summaries
    ]
    zones = views_table(out)
    # Each table is shown only when it has rows.
    return {
        z.zone_table: gr.update(value=zones, visible=bool(zones["data"])),
        z.pair_table: gr.update(
            value={"headers": PAIR_HEADERS, "data": pairs}, visible=bool(pairs)
        ),
        z.heatmaps: [(str(p), caption) for p, caption in out.heatmaps],
        z.files: [str(f) for f in out.files.values()],
    }


def views_table(out: BehaviourOutputs) -> dict:
    return {"headers": list(ZONE_TABLE_HEADERS), "data": zone_table(out.zone_stats)}


@friendly
def analyse(
    ctx: Context,
    user: UserSession,
    membership,
    overlap,
    pair_within,
    on_video,
    pixels_per_unit,
    unit,
    fps,
) -> Update:
    """Time in zone, entries, latency and distance per object and zone; pair distances and
    time within the pair distance; occupancy heatmaps; as tables, pictures and CSV files."""
    _options(user, membership, overlap, pair_within, on_video)
    user.calibration = views.calibration(pixels_per_unit, unit, fps)
    return _shown(ctx, user.export_behaviour())


def after_run(ctx: Context, user: UserSession) -> Update:
    """The zone, pair and heatmap outputs after tracking or an export (nothing when there
    are no results)."""
    if user.tracking is None or not user.tracking.store.frames() or user.results is None:
        return {}
    return _shown(ctx, user.export_behaviour())


@friendly
def label_stacks(ctx: Context, user: UserSession, pixels_per_unit, unit, fps) -> Update:
    """The masks as one uint16 TIFF stack (pixel = object id, frame interval and pixel size
    in its metadata) and as a Cell Tracking Challenge zip (maskNNN.tif + res_track.txt)."""
    user.calibration = views.calibration(pixels_per_unit, unit, fps)
    files = user.export_label_stacks()
    return {ctx.page.zones.stacks: [str(f) for f in files.values()]}


def show_setup(ctx: Context, user: UserSession, frame) -> Update:
    """The zones and settings of a loaded project, in the section's controls."""
    setup = user.behaviour.setup
    z = ctx.page.zones
    return {
        **_frame_view(ctx, user, frame),
        z.membership: "centroid" if setup.min_overlap is None else "overlap",
        z.overlap: setup.min_overlap or 0.5,
        z.pair_within: "" if setup.pair_within is None else f"{setup.pair_within:g}",
    }


# ------------------------------------------------------------------ events
PRIVATE = {"api_visibility": "private", "concurrency_limit": None}
FILES = {"concurrency_id": "files", "concurrency_limit": 4}


def wire_zones(ctx: Context, results_events: list, loaded, clicked) -> None:
    """Connect the section's events; ``results_events`` (tracking, export), ``loaded`` (a
    project loaded) and ``clicked`` (a click on the frame, which draws zones while the
    click target says so) are followed by the outputs and controls they change."""
    p, z = ctx.page, ctx.page.zones
    shown = [p.frame_view, p.status, p.active, z.zone_list]
    outputs = [z.zone_table, z.pair_table, z.heatmaps, z.files]
    clicked.then(bind(show_zones, ctx), [p.state], [z.zone_list], **PRIVATE)
    z.close_btn.click(
        bind(close_shape, ctx),
        [p.state, z.zone_name, z.centre_fraction, p.frame_slider],
        shown,
        api_name="close_shape",
        concurrency_limit=None,
    )
    z.remove_btn.click(
        bind(remove_zone, ctx), [p.state, z.zone_list, p.frame_slider], shown,
        api_name="remove_zone", concurrency_limit=None,
    )  # fmt: skip
    z.clear_btn.click(
        bind(clear_zones, ctx), [p.state, p.frame_slider], shown,
        api_name="clear_zones", concurrency_limit=None,
    )  # fmt: skip
    z.api_btn.click(
        bind(set_zones, ctx), [p.state, z.api_zones, p.frame_slider], shown,
        api_name="set_zones", concurrency_limit=None,
    )  # fmt: skip
    with_scale = [*shown, p.pixels_per_unit, p.unit]
    z.ruler_btn.click(
        bind(set_ruler, ctx), [p.state, z.ruler_distance, p.unit, p.frame_slider], with_scale,
        api_name="set_ruler", concurrency_limit=None,
    )  # fmt: skip
    z.api_btn.click(
        bind(ruler, ctx),
        [p.state, p.api_x, p.api_y, p.api_x1, p.api_y1, z.ruler_distance, p.unit],
        with_scale,
        api_name="ruler",
        concurrency_limit=None,
    )
    options = [z.membership, z.overlap, z.pair_within, z.on_video]
    for control in options:
        control.input(bind(zone_options, ctx), [p.state, *options], [], **PRIVATE)
    z.analyse_btn.click(
        bind(analyse, ctx), [p.state, *options, p.pixels_per_unit, p.unit, p.fps], outputs,
        api_name="behaviour", **FILES,
    )  # fmt: skip
    z.stacks_btn.click(
        bind(label_stacks, ctx), [p.state, p.pixels_per_unit, p.unit, p.fps], [z.stacks],
        api_name="label_stacks", **FILES,
    )  # fmt: skip
    for event in results_events:
        event.then(bind(after_run, ctx), [p.state], outputs, api_visibility="private", **FILES)
    loaded.then(
        bind(show_setup, ctx),
        [p.state, p.frame_slider],
        [*shown, z.membership, z.overlap, z.pair_within],
        **PRIVATE,
    )
