"""Which event runs which handler: :func:`build_app` assembles the page, :func:`launch`
serves it.

Each tab (or API client) gets its own ``UserSession`` in a ``gr.State`` whose
``delete_callback`` removes its files; the page's ``unload`` event does the same as soon as
the tab closes. Only model compute is shared between users, and the engine's scheduler
shares it in small units (one click, one tracked frame), so events that use the model need no
shared queue slot of their own: clicks and object changes run as they come, and long runs
(tracking, comparisons, replays) in up to ``RUN_EVENTS`` at once. Work on files (decoding
uploads, exports, measurements, project files) never waits for the model and has its own
small group, ``concurrency_id="files"``, so it cannot starve the model either; viewing
frames answers at once. Every endpoint's inputs and outputs keep their order: API clients
call them by position.
"""

from __future__ import annotations

import logging

import gradio as gr

from ..session.engine import Engine, Housekeeping
from . import (
    example_events,
    finders_events,
    flow,
    keys_events,
    masks_events,
    objects_events,
    upload_events,
)
from . import handlers as h
from .a11y import A11Y_CSS
from .guard import CheckedBlocks, SessionRegistry, UploadGuard, served_paths
from .handlers import Context
from .keys import KEYS_JS
from .layout import Page, build_layout
from .reattach import reattach
from .style import PAGE_CSS
from .zones_handlers import wire_zones

log = logging.getLogger(__name__)

# Events of all users at once that work on files (decode, render, encode, write).
FILE_EVENTS = 4
# Long model events (a tracking run with its exports, a comparison, a replay) of all users
# at once; each waits for its turn on the model per frame, so this bounds threads, not the
# model.
RUN_EVENTS = 16
# A click or an object change: one unit on the model, where it waits for its turn.
PROMPT = {"concurrency_limit": None}
RUNS = {"concurrency_id": "runs", "concurrency_limit": RUN_EVENTS}
FILES = {"concurrency_id": "files", "concurrency_limit": FILE_EVENTS}


def build_app(engine: Engine | None = None) -> gr.Blocks:
    """The page for one engine, its events wired (not launched)."""
    engine = engine or Engine()
    settings = engine.settings
    # delete_cache: Gradio keeps a copy of every file it serves; drop copies older than a
    # session's lifetime so finished sessions leave nothing behind.
    ttl = int(settings.session_ttl_s)
    with CheckedBlocks(
        title="sam2web", fill_width=True, delete_cache=(max(60, min(ttl, 3600)), ttl)
    ) as demo:
        page = build_layout(engine)
        demo.upload_guard = UploadGuard(page.upload.GRADIO_CACHE, settings.data_dir)
        ctx = Context(
            engine=engine,
            page=page,
            registry=SessionRegistry(
                idle_ttl_s=settings.session_ttl_s, ram_budget_mb=settings.session_ram_mb
            ),
            guard=demo.upload_guard,
        )
        uploads, clicked = _wire_video(ctx)
        opened = masks_events.wire(ctx, uploads[0])
        found = finders_events.wire(ctx)
        keys_events.wire(ctx)
        example = example_events.wire(ctx, uploads[0])
        prompts, reset = _wire_objects(ctx)
        results_events = _wire_tracking(ctx)
        loaded, switched = _wire_project_and_model(ctx)
        wire_zones(ctx, results_events, loaded, clicked)
        flow.wire(
            demo,
            ctx,
            [*uploads, opened, example],
            [*results_events, reset, loaded, *switched],
            [clicked, *prompts, *found],
        )
        demo.unload(ctx.registry.close)  # the session stays for its idle expiry
        _wire_reattach(demo, ctx)
        demo.sam2web_registry = ctx.registry  # for tests and housekeeping
        demo.sam2web_page = page  # for tests
    # Gradio runs the per-tab state factory as a load event of its own, which would also be
    # listed as an API endpoint that takes and returns nothing.
    for fn in demo.fns.values():
        if fn.fn is page.state.value:
            fn.api_visibility = "private"
    return demo


def _wire_reattach(demo: gr.Blocks, ctx: Context) -> None:
    """On every page load: attach to the browser's kept session and show it again."""
    p, z = ctx.page, ctx.page.zones
    restored = [
        *[p.state, p.token, p.model_status, p.model, p.quality, p.facts, p.frame_view],
        *[p.frame_slider, p.frame_number, p.status, p.active, p.info, p.opacity, p.contours],
        *[p.labels, p.trails, p.pixels_per_unit, p.unit, p.fps],
        *[p.video, p.files, p.gallery, p.summary, p.events, p.trajectories, p.confidence],
        *[z.zone_list, z.membership, z.overlap, z.pair_within],
        *[z.zone_table, z.pair_table, z.heatmaps, z.files, p.example.hint],
        *flow.outputs(ctx.page),
    ]
    demo.load(
        h.bind(reattach, ctx),
        [p.state, p.token],
        restored,
        api_visibility="private",
        **RUNS,
    )


def _frame_outputs(page: Page) -> list:
    """What most actions update: the frame shown, the status line and the object list."""
    return [page.frame_view, page.status, page.active]


def _wire_video(ctx: Context):
    """Wire the upload and the frame controls; returns the upload events (the page's
    first) and the event of a click on the frame."""
    p = ctx.page
    outputs = [
        *[p.state, p.facts, p.frame_view, p.frame_slider, p.frame_number],
        *[p.status, p.active, p.video, p.files, p.gallery, p.info],
    ]
    # The page uploads with its frame step, and says a refusal in the status line
    # (upload_events); "upload_v2" and "upload" keep their parameters and errors for API
    # clients (the latter reads every frame), on a hidden trigger the page never fires.
    page_upload = p.upload.upload(
        h.bind(upload_events.upload_page, ctx),
        [p.state, p.upload, p.frame_step],
        [*outputs, p.flow.guide, p.upload_refused],
        api_visibility="private",
        preprocess=False,
        **FILES,
    )
    uploaded = page_upload.then(
        upload_events.gate, [p.upload_refused], None, api_visibility="private", queue=False
    )
    uploaded_v2 = p.upload_api.click(
        h.bind(h.upload_v2, ctx),
        [p.state, p.upload, p.frame_step],
        outputs,
        api_name="upload_v2",
        preprocess=False,
        **FILES,
    )
    uploaded_all = p.upload_api.click(
        h.bind(h.upload, ctx),
        [p.state, p.upload],
        outputs,
        api_name="upload",
        preprocess=False,
        **FILES,
    )
    for event in (uploaded, uploaded_v2, uploaded_all):
        event.success(
            h.bind(h.file_scale, ctx),
            [p.state],
            [p.pixels_per_unit, p.unit],
            api_visibility="private",
            concurrency_limit=None,
        )
    p.frame_slider.change(
        h.bind(h.show_frame, ctx),
        [p.state, p.frame_slider],
        [p.frame_view, p.status, p.frame_number],
        api_name="frame",
        concurrency_limit=None,
        trigger_mode="always_last",
        show_progress="hidden",
    )
    p.frame_number.submit(
        h.bind(h.enter_frame_number, ctx),
        [p.frame_number],
        [p.frame_slider],
        api_visibility="private",
        concurrency_limit=None,
    )
    drawing = [p.zones.target, p.zones.zone_name, p.zones.centre_fraction]
    clicked = p.frame_view.select(
        h.bind(h.click_frame, ctx),
        [p.state, p.frame_slider, p.mode, *drawing, p.finders.picked],
        [*_frame_outputs(p), p.finders.picked],
        api_visibility="private",
        **PROMPT,
    )
    return [uploaded, uploaded_v2, uploaded_all], clicked


def _wire_objects(ctx: Context):
    """Returns the events that change objects or prompts, and the reset's."""
    p = ctx.page
    frame_outputs = _frame_outputs(p)
    p.api_btn.click(
        h.bind(h.add_point, ctx),
        [p.state, p.frame_number, p.api_object, p.api_x, p.api_y, p.api_positive],
        frame_outputs,
        api_name="add_point",
        **PROMPT,
    )
    p.api_btn.click(
        h.bind(h.add_box, ctx),
        [p.state, p.frame_number, p.api_object, p.api_x, p.api_y, p.api_x1, p.api_y1],
        frame_outputs,
        api_name="add_box",
        **PROMPT,
    )
    added = p.add_btn.click(
        h.bind(h.add_object, ctx),
        [p.state, p.name, p.frame_slider],
        [*frame_outputs, p.name, p.model_status],
        api_name="add_object",
        **PROMPT,
    )
    selected = p.active.input(
        h.bind(h.select_object, ctx),
        [p.state, p.active, p.frame_slider],
        frame_outputs,
        api_name="select_object",
        concurrency_limit=None,
    )
    renamed = p.rename_btn.click(
        h.bind(h.rename_object, ctx),
        [p.state, p.name, p.frame_slider],
        [*frame_outputs, p.name],
        api_name="rename_object",
        concurrency_limit=None,
    )
    on_frame = [p.state, p.frame_slider]
    removed = p.remove_btn.click(
        h.bind(h.remove_object, ctx),
        on_frame,
        frame_outputs,
        api_name="remove_object",
        **PROMPT,
    )
    undone = p.undo_btn.click(
        h.bind(h.undo, ctx), on_frame, frame_outputs, api_name="undo", **PROMPT
    )
    cleared = p.clear_btn.click(
        h.bind(h.clear_frame, ctx), on_frame, frame_outputs, api_name="clear_frame", **PROMPT
    )
    reset = p.reset_btn.click(
        h.bind(h.reset, ctx),
        on_frame,
        [*frame_outputs, p.video, p.files, p.gallery],
        api_name="reset",
        **PROMPT,
    )
    objects_events.wire(ctx, [added, selected, renamed, removed, reset])
    return [added, removed, undone, cleared], reset


def _wire_tracking(ctx: Context) -> list:
    """Returns the events that write results (tracking, exports)."""
    p = ctx.page
    look = [p.opacity, p.contours, p.labels, p.trails, p.pixels_per_unit, p.unit, p.fps]
    results = [p.video, p.files, p.gallery, p.summary, p.events, p.trajectories, p.confidence]
    tracked = p.track_btn.click(
        h.bind(h.track, ctx),
        [p.state, p.direction, p.start_frame, p.end_frame, p.frame_slider, *look],
        [*_frame_outputs(p), p.frame_slider, *results],
        api_name="propagate",
        **RUNS,
    )
    events = [tracked]
    p.cancel_btn.click(
        h.bind(h.cancel, ctx),
        [p.state],
        [p.status],
        api_name="cancel",
        concurrency_limit=None,
        queue=False,
    )
    export = h.bind(h.export, ctx)
    for button, api_name in ((p.rerender_btn, "export"), (p.measure_btn, "measure")):
        exported = button.click(
            export,
            [p.state, p.frame_slider, *look],
            [p.frame_view, *results],
            api_name=api_name,
            **FILES,
        )
        events.append(exported)
    p.events.input(
        h.bind(h.open_event, ctx),
        [p.state, p.events],
        [p.frame_slider],
        api_visibility="private",
        concurrency_limit=None,
    )
    p.gallery.select(
        h.bind(h.open_gallery_frame, ctx),
        [p.state],
        [p.frame_slider],
        api_visibility="private",
        concurrency_limit=None,
    )
    p.compare_btn.click(
        h.bind(h.compare_quality, ctx),
        [p.state, p.compare_frames, p.compare_candidate],
        [p.compare_result],
        api_name="compare_quality",
        **RUNS,
    )
    return events


def _wire_project_and_model(ctx: Context):
    """Returns the event of a project loaded and those of a model or quality switch."""
    p = ctx.page
    p.save_project_btn.click(
        h.bind(h.save_project, ctx),
        [p.state, p.pixels_per_unit, p.unit, p.fps],
        [p.project_file],
        api_name="save_project",
        **FILES,
    )
    loaded = p.project_in.upload(
        h.bind(h.load_project, ctx),
        [p.state, p.project_in, p.frame_slider],
        [*_frame_outputs(p), p.pixels_per_unit, p.fps],
        api_name="load_project",
        preprocess=False,
        **RUNS,
    )
    model = p.model.input(
        h.bind(h.set_model, ctx),
        [p.state, p.model, p.frame_slider],
        [*_frame_outputs(p), p.model_status],
        api_name="set_model",
        **PROMPT,
    )
    quality = p.quality.input(
        h.bind(h.set_quality, ctx),
        [p.state, p.quality, p.frame_slider],
        _frame_outputs(p),
        api_name="set_quality",
        **RUNS,
    )
    return loaded, [model, quality]


def launch(engine: Engine | None = None, **kwargs) -> None:
    """Start the web app with the engine's settings (host, port, limits)."""
    engine = engine or Engine()
    s = engine.settings
    s.data_dir.mkdir(parents=True, exist_ok=True)
    removed = engine.sweep()
    if removed:
        log.info("removed %d stale session folders", removed)
    demo = build_app(engine)
    demo.queue(default_concurrency_limit=FILE_EVENTS)
    housekeeping = Housekeeping(
        engine, s.sweep_interval_s, demo.sam2web_registry.workspace_ids
    ).start()
    demo.sam2web_housekeeping = housekeeping
    kwargs.setdefault("js", KEYS_JS)  # the keyboard shortcuts (sam2web.ui.keys)
    try:
        demo.launch(
            server_name=s.host,
            server_port=s.port,
            max_file_size=s.max_upload_mb * 1024 * 1024,
            allowed_paths=served_paths(s.data_dir),
            **{"css": PAGE_CSS + A11Y_CSS, **kwargs},
        )
    finally:
        # A blocking launch returns once the server is closed; a non-blocking one (e.g.
        # prevent_thread_lock, notebooks) leaves the server and its housekeeping running.
        if not getattr(demo, "is_running", False):
            housekeeping.stop()
            engine.close()
