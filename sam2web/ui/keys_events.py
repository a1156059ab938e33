"""The frame keys' handlers (see :mod:`.keys`): a hidden button per step moves the frame
slider, and the slider's change event shows the frame."""

from __future__ import annotations

from collections.abc import Callable

import gradio as gr

from . import handlers as h
from .handlers import Context, Update
from .user import UserSession


def step_frame(ctx: Context, user: UserSession, frame, delta: int) -> Update:
    """The slider ``delta`` frames on from ``frame``, kept inside the video."""
    if user.folder is None:
        return gr.skip()
    last = user.info.num_frames - 1
    return {ctx.page.frame_slider: max(0, min(int(frame or 0) + delta, last))}


def _stepper(delta: int) -> Callable:
    def step(ctx: Context, user: UserSession, frame) -> Update:
        return step_frame(ctx, user, frame, delta)

    return step


def wire(ctx: Context) -> None:
    """Each hidden step button moves the slider. Presses that come while one is being
    answered count as one more step after it (``always_last``): queued presses would all
    read the slider's value from before the first answer."""
    p = ctx.page
    for delta, button in p.keys.steps.items():
        button.click(
            h.bind(_stepper(delta), ctx),
            [p.state, p.frame_slider],
            [p.frame_slider],
            api_visibility="private",
            concurrency_limit=None,
            trigger_mode="always_last",
            show_progress="hidden",
        )
