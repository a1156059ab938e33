"""Errors a user can cause. Each carries one sentence fit to show a non-programmer.

Everything else (bugs, library failures) stays an ordinary exception: the UI logs it with
detail and shows a short generic sentence; running out of memory is told as
:data:`OUT_OF_MEMORY`.
"""

from __future__ import annotations

# What a user is told when their request ran out of memory (never "something went wrong").
OUT_OF_MEMORY = (
    "The server ran out of memory for this request; try again with a smaller file, fewer "
    "frames or a lower processing quality."
)


class UserError(Exception):
    """Base class: ``str(err)`` is one sentence saying what is wrong and what to do."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class MediaError(UserError):
    """The uploaded file cannot be read as a video or image sequence."""


class LimitError(UserError):
    """The upload is readable but exceeds a configured size, length or resolution limit."""


class CheckpointError(UserError):
    """No usable model checkpoint: missing, offline, corrupt or for another model."""


class PromptError(UserError):
    """A click, box or object reference that does not fit the current video or session."""


class TrackingError(UserError):
    """A tracking action that cannot run in the session's current state."""


class StorageFullError(UserError):
    """The disk space this server allows for session folders (SAM2WEB_MAX_DISK_MB) is used
    up, or an upload's decoded frames would go beyond it."""

    def __init__(
        self, message: str = "The server's storage for sessions is full; try again later."
    ):
        super().__init__(message)


class SessionClosedError(TrackingError):
    """The session ended (its tab closed or it expired) while a request was still running."""

    def __init__(self, message: str = "This session was closed; reload the page to start again."):
        super().__init__(message)


def as_clause(sentence: str) -> str:
    """A one-sentence message as a clause inside another sentence."""
    text = sentence.strip().rstrip(".")
    return text[:1].lower() + text[1:] if text[1:2].islower() else text
