"""The page's own upload: the ``upload_v2`` endpoint's work, but a file that is refused is
said in one sentence in the status line (before any video, in the guide line at the top,
since the viewer is not shown yet), and nothing else on the page changes.

An error raised by a handler marks every output of its event with an error badge (the
frame, the facts, the slider ...), as if each of them had failed. So the page's upload
event answers a refusal with the status line alone; the events that follow an upload
(:func:`wire`'s ``after``: the file's scale, a TIFF's choices, the steps, the example's
hint) run only after one that was read, through a gate with no outputs. The named
``upload_v2`` endpoint keeps its inputs, outputs and errors for API clients.
"""

from __future__ import annotations

import html
import inspect

import gradio as gr

from ..errors import UserError
from ..media.tiff import StackChoiceError
from . import handlers as h
from . import views
from .guard import friendly
from .handlers import Context, Update
from .user import UserSession

_read = inspect.unwrap(h.upload_v2)  # upload_v2 without the error translation


def refusal_status(user: UserSession, err: UserError) -> str:
    """The status line with the refusal's sentence (escaped there once, whether or not a
    name in it was escaped before)."""
    return views.status(user, html.unescape(err.message))


@friendly
def upload_page(
    ctx: Context,
    user: UserSession,
    file,
    frame_step: float | None,
    request: gr.Request | None = None,
    progress=gr.Progress(),
) -> Update:
    """Read an upload as ``upload_v2`` does; a refused file leaves everything as it was
    and says why in the status line (the guide line before any video). A TIFF that needs a channel or axis is not refused:
    its sentence is shown and the page asks for the choice."""
    p = ctx.page
    try:
        out = _read(ctx, user, file, frame_step, request, progress)
    except StackChoiceError as err:
        return {p.status: refusal_status(user, err), p.upload_refused: False}
    except UserError as err:
        # Before a video the viewer, and its status line, is not shown: the line at the
        # top that says what to do next says it instead.
        line = p.status if user.folder is not None else p.flow.guide
        return {line: refusal_status(user, err), p.upload_refused: True}
    return {**out, p.upload_refused: False}


def gate(was_refused) -> None:
    """Stop the events after a refused upload (no outputs, so nothing is marked, and no
    message: the status line already says why)."""
    if was_refused:
        raise gr.Error("The upload was refused.", visible=False, print_exception=False)
