"""Threads that carry the caller's context variables.

A ``threading.Thread`` starts with empty context variables. Gradio keeps the request being
served (and the event and progress it reports to) in context variables, and ZeroGPU's
``spaces.GPU`` reads them from the thread that calls it: the visitor's token (their quota
and queue priority) and the page the "waiting for a GPU" and duration notices go to. A job's
thread made here runs in a copy of the context of the thread that made it.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable


def context_thread(target: Callable[[], None], *, name: str) -> threading.Thread:
    """A daemon thread that runs ``target`` in a copy of the current context."""
    context = contextvars.copy_context()
    return threading.Thread(target=context.run, args=(target,), name=name, daemon=True)
