"""The web page: Gradio widgets wired to the per-user session.

This package is the only part of sam2web that imports gradio. :mod:`.layout` builds the
widgets, :mod:`.handlers` holds what each action does, :mod:`.wiring` connects events to
handlers and serves the page, and :mod:`.guard` checks uploads, tracks open sessions and
turns errors into sentences.
"""

from __future__ import annotations

from .guard import SessionRegistry, UploadGuard, served_paths
from .wiring import build_app, launch

__all__ = ["SessionRegistry", "UploadGuard", "build_app", "launch", "served_paths"]
