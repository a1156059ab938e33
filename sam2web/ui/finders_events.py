"""What the "Find objects" panel does (:mod:`.finders_panel`), and its wiring. Handlers
follow :mod:`.handlers`; the API endpoints are ``find_objects_v2`` (the proposals drawn on
the frame, the numbers picked on the last ones cleared), ``find_objects`` (its first
version, without the picks), ``accept_found`` (all become objects), ``accept_picked`` (the
numbers picked do; none picked is refused) and ``dismiss_found`` (the proposals taken off
the frame and forgotten; no object or file changes)."""

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


def _numbers(picked) -> list[int]:
    return [int(n) for n in re.findall(r"\d+", picked or "")]


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'s' if n != 1 else ''}"


def _find(user: UserSession, how, count, min_area, max_area, threshold, polarity, frame):
    """The frame and the sentence of a find (the proposals are kept by the session)."""
    if user.folder is None:
        raise gr.Error("Upload a video or image sequence first.", print_exception=False)
    frame = user.check_frame(frame)
    settings = _settings(count, min_area, max_area, threshold, polarity)
    with user.busy():
        proposals = user.find_objects(how, frame, settings)
    message = (
        f"{_plural(len(proposals), 'proposal')} on frame {frame}; "
        "accept all, or click the ones to keep (or type their numbers) and accept those."
    )
    return frame, message


@friendly
def find_objects(
    ctx: Context, user: UserSession, how, count, min_area, max_area, threshold, polarity, frame
) -> Update:
    """Find objects on the frame and show them numbered over it; nothing else changes."""
    frame, message = _find(user, how, count, min_area, max_area, threshold, polarity, frame)
    return {**view(ctx, user, frame, message), ctx.page.frame_view: user.proposals_image([])}


@friendly
def find_objects_v2(
    ctx: Context,
    user: UserSession,
    how,
    count,
    min_area,
    max_area,
    threshold,
    polarity,
    frame,
    picked,
) -> Update:
    """As :func:`find_objects`, and the numbers ``picked`` on the last proposals are
    cleared (said when there were some): the new proposals are numbered afresh, so the
    old numbers would name other blobs."""
    stale = _numbers(picked)
    frame, message = _find(user, how, count, min_area, max_area, threshold, polarity, frame)
    if stale:
        listed = ", ".join(map(str, stale))
        message = f"The picks of the last proposals ({listed}) are cleared. {message}"
    f = ctx.page.finders
    return {
        **view(ctx, user, frame, message),
        ctx.page.frame_view: user.proposals_image([]),
        f.picked: "",
        f.actions: gr.update(visible=True),
    }


@friendly
def accept_found(ctx: Context, user: UserSession, picked, prompt, frame) -> Update:
    """Make the proposals (all when ``picked`` is empty) into objects; then Track."""
    added = user.accept_found(_numbers(picked) or None, prompt or "box")
    message = f"{_plural(len(added), 'object')} added; press Track."
    return view(ctx, user, frame, message)


@friendly
def accept_picked(ctx: Context, user: UserSession, picked, prompt, frame) -> Update:
    """Make the proposals picked into objects; none picked is refused (not taken as all)."""
    if user.found is not None and not _numbers(picked):
        raise gr.Error(
            "Pick proposals first: click inside them on the frame, or type their numbers.",
            print_exception=False,
        )
    return accept_found(ctx, user, picked, prompt, frame)


@friendly
def dismiss_found(ctx: Context, user: UserSession, frame) -> Update:
    """Take the proposals off the frame and forget them and the numbers picked; no object
    and no file changes."""
    if user.folder is None:
        raise gr.Error("Upload a video or image sequence first.", print_exception=False)
    count = user.dismiss_found()
    message = (
        f"{_plural(count, 'proposal')} dismissed; no object changed."
        if count
        else "There are no proposals to dismiss."
    )
    return {**view(ctx, user, frame, message), **finder_controls(ctx, user)}


def finder_controls(ctx: Context, user: UserSession) -> Update:
    """The picks, accept and dismiss controls shown while there are proposals; without them,
    no numbers picked."""
    f = ctx.page.finders
    if user.found is not None:
        return {f.actions: gr.update(visible=True)}
    return {f.actions: gr.update(visible=False), f.picked: ""}


def emphasis(ctx: Context, picked) -> Update:
    """The accept button to press stands out: *Accept the picked* once numbers are picked,
    else *Accept all*."""
    f, some = ctx.page.finders, bool(_numbers(picked))
    return {
        f.accept_all_btn: gr.update(variant="secondary" if some else "primary"),
        f.accept_picked_btn: gr.update(variant="primary" if some else "secondary"),
    }


def wire(ctx: Context) -> list:
    """Wires the panel; returns the events after which the guide line may change (a find,
    an accept, a dismiss)."""
    p = ctx.page
    f = p.finders
    frame_outputs = [p.frame_view, p.status, p.active]
    settings = [f.how, f.count, f.min_area, f.max_area, f.threshold, f.polarity, p.frame_slider]
    found = f.find_btn.click(
        h.bind(find_objects_v2, ctx),
        [p.state, *settings, f.picked],
        [*frame_outputs, f.picked, f.actions],
        api_name="find_objects_v2",
    )
    # "find_objects" keeps its parameters for API clients, on a trigger the page never fires.
    f.find_api.click(
        h.bind(find_objects, ctx), [p.state, *settings], frame_outputs, api_name="find_objects"
    )
    accepted_all = f.accept_all_btn.click(
        h.bind(accept_found, ctx),
        [p.state, gr.State(""), f.prompt, p.frame_slider],
        frame_outputs,
        api_name="accept_found",
        concurrency_limit=None,
    )
    accepted = f.accept_picked_btn.click(
        h.bind(accept_picked, ctx),
        [p.state, f.picked, f.prompt, p.frame_slider],
        frame_outputs,
        api_name="accept_picked",
        concurrency_limit=None,
    )
    dismissed = f.dismiss_btn.click(
        h.bind(dismiss_found, ctx),
        [p.state, p.frame_slider],
        [*frame_outputs, f.picked, f.actions],
        api_name="dismiss_found",
        concurrency_limit=None,
    )
    f.picked.change(
        lambda picked: emphasis(ctx, picked),
        [f.picked],
        [f.accept_all_btn, f.accept_picked_btn],
        api_visibility="private",
        concurrency_limit=None,
        trigger_mode="always_last",
        show_progress="hidden",
    )
    # Whatever else changes the frame shown (an accept, a new video, a reload) may have
    # used or dropped the proposals: the controls for proposals and the picks follow.
    p.frame_view.change(
        h.bind(finder_controls, ctx),
        [p.state],
        [f.picked, f.actions],
        api_visibility="private",
        concurrency_limit=None,
        trigger_mode="always_last",
        show_progress="hidden",
    )
    return [found, accepted_all, accepted, dismissed]
