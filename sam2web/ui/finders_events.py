"""What the "Find objects" panel does (:mod:`.finders_panel`), and its wiring. Handlers
follow :mod:`.handlers`; the API endpoints are ``find_objects`` (the proposals drawn on
the frame) and ``accept_found`` (all, or the numbers picked, become objects)."""

from __future__ import annotations

import re

import gradio as gr

from ..analysis.finders import FinderSettings
from . import handlers as h
from .guard import friendly
from .handlers import Context, Update, view
from .user import UserSession


def _number(value, what: str) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise gr.Error(f"Enter a whole number for the {what}.", print_exception=False)
    return value


def _settings(count, min_area, max_area, threshold, polarity) -> FinderSettings:
    max_area = _number(max_area, "maximum area")
    threshold = None if threshold is None or float(threshold) < 0 else float(threshold)
    return FinderSettings(
        count=_number(count, "number of objects"),
        min_area=_number(min_area, "minimum area"),
        max_area=max_area or None,
        threshold=threshold,
        polarity=polarity,
    )


@friendly
def find_objects(
    ctx: Context, user: UserSession, how, count, min_area, max_area, threshold, polarity, frame
) -> Update:
    """Find objects on the frame and show them numbered over it; nothing else changes."""
    if user.folder is None:
        raise gr.Error("Upload a video or image sequence first.", print_exception=False)
    frame = user.check_frame(frame)
    settings = _settings(count, min_area, max_area, threshold, polarity)
    with user.busy():
        proposals = user.find_objects(how, frame, settings)
    message = (
        f"{len(proposals)} proposal{'s' if len(proposals) != 1 else ''} on frame {frame}; "
        "accept all, or click the ones to keep (or type their numbers) and accept those."
    )
    return {**view(ctx, user, frame, message), ctx.page.frame_view: user.proposals_image([])}


@friendly
def accept_found(ctx: Context, user: UserSession, picked, prompt, frame) -> Update:
    """Make the proposals (all when ``picked`` is empty) into objects; then Track."""
    numbers = [int(n) for n in re.findall(r"\d+", picked or "")] or None
    added = user.accept_found(numbers, prompt or "box")
    message = f"{len(added)} object{'s' if len(added) != 1 else ''} added; press Track."
    return view(ctx, user, frame, message)


def wire(ctx: Context) -> None:
    p = ctx.page
    f = p.finders
    frame_outputs = [p.frame_view, p.status, p.active]
    f.find_btn.click(
        h.bind(find_objects, ctx),
        [p.state, f.how, f.count, f.min_area, f.max_area, f.threshold, f.polarity, p.frame_slider],
        frame_outputs,
        api_name="find_objects",
    )
    f.accept_all_btn.click(
        h.bind(accept_found, ctx),
        [p.state, gr.State(""), f.prompt, p.frame_slider],
        frame_outputs,
        api_name="accept_found",
        concurrency_limit=None,
    )
    f.accept_picked_btn.click(
        h.bind(accept_found, ctx),
        [p.state, f.picked, f.prompt, p.frame_slider],
        frame_outputs,
        api_name="accept_picked",
        concurrency_limit=None,
    )
