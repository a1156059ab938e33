"""What guards the page: which files a request may name, which sessions are open, and how
errors reach the user.

:class:`UploadGuard` and :class:`CheckedBlocks` refuse requests that name files other than
uploads; :class:`SessionRegistry` knows the open sessions so a closed tab or an idle session
is cleaned up; :func:`friendly` turns any error of a handler into one sentence for the page.
"""

from __future__ import annotations

import contextlib
import functools
import html
import inspect
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import gradio as gr

from ..errors import OUT_OF_MEMORY, SessionClosedError, UserError
from ..session.keeper import SessionKeeper, idle_past
from .user import UserSession

log = logging.getLogger(__name__)


class SessionRegistry:
    """The sessions of the page's tabs by connection (Gradio's session hash), and the
    :class:`~sam2web.session.keeper.SessionKeeper` that keeps them across reloads.

    A tab's unload (:meth:`close`) detaches a kept session, which then stays until its idle
    expiry; a session that was never kept (an API client's) is closed as before."""

    def __init__(self, idle_ttl_s: float | None = None, ram_budget_mb: int = 0):
        self._lock = threading.Lock()
        self._by_hash: dict[str, UserSession] = {}
        self.idle_ttl_s = idle_ttl_s
        self.keeper = SessionKeeper(idle_ttl_s, ram_budget_mb)

    def tab_user(self, request: gr.Request | None, user: UserSession) -> UserSession:
        """The session of the request's tab, remembered: ``user``, unless ``user`` is still
        empty and another open session is already the tab's. Gradio makes a tab's state on
        its first use without a lock, so a page's load and a first action made at the same
        moment (Try an example at once) can each be handed a new session; the action's work
        then went into one while the page kept the other, and a reload found an empty one."""
        key = getattr(request, "session_hash", None)
        if not key:
            self.remember(request, user)
            return user
        # One lock around the look and the remembering: two first events of a tab that
        # both looked before either remembered would each keep their own session.
        with self._lock:
            other = self._by_hash.get(key)
            use_other = user.workspace is None and other is not None and other is not user
            if use_other and not other.closed:
                user = other
            self._by_hash[key] = user
        self._attached(user, key)
        return user

    def remember(self, request: gr.Request | None, user: UserSession) -> None:
        key = getattr(request, "session_hash", None)
        if key:
            with self._lock:
                self._by_hash[key] = user
        self._attached(user, key)

    def _attached(self, user: UserSession, key: str | None) -> None:
        """The keeper learns the tab now showing ``user``; the RAM budget is kept."""
        if key:
            self.keeper.attach(user, key)
        self.keeper.enforce_budget(spare=user)

    def close(self, request: gr.Request | None) -> None:
        """The page's unload: the tab closed, reloaded or lost its connection."""
        key = getattr(request, "session_hash", None)
        with self._lock:
            user = self._by_hash.pop(key, None) if key else None
        if user is None:
            return
        if user.kept:
            self.keeper.detach(user, key)
        else:
            user.close()

    def run_ended(self, run) -> None:
        """After a background run: a session no tab shows gives back its model state."""
        if self.keeper.tabs(run.user) == 0:
            run.user.release_model()
        self.keeper.enforce_budget()

    def live(self) -> list[UserSession]:
        with self._lock:
            tabs = list(self._by_hash.values())
        users = {id(u): u for u in [*tabs, *self.keeper.sessions()] if not u.closed}
        return list(users.values())

    def workspace_ids(self, now: float | None = None) -> set[str]:
        """Workspace ids of the open sessions. Sessions closed meanwhile are forgotten here,
        and sessions idle for longer than ``idle_ttl_s`` at ``now`` (default: the time
        now; no action, not even a frame viewed) are closed first; then the RAM cap is
        applied."""
        idle = []
        now = time.time() if now is None else now
        kept = self.keeper.expire(now)
        with self._lock:
            for key, user in list(self._by_hash.items()):
                expired = idle_past(user, self.idle_ttl_s, now)
                if expired:
                    idle.append(user)
                if user.closed or expired:
                    del self._by_hash[key]
            tabs = list(self._by_hash.values())
        for user in idle:
            log.info("closing a session idle for %.0f s", now - user.last_used)
            user.close()
        self.keeper.enforce_budget()
        return {u.workspace.id for u in [*kept, *tabs] if u.workspace is not None}


NOT_UPLOADED = (
    "The file is not on the server (it was not uploaded through this page, or it "
    "was removed); choose the file and upload it again."
)


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _in_session_folder(path: Path, data_dir: Path) -> bool:
    """True for a path inside a session's workspace (``data_dir/<32 hex digits>/...``)."""
    if not _inside(path, data_dir) or path == data_dir:
        return False
    first = path.relative_to(data_dir).parts[0]
    return len(first) == 32 and all(c in "0123456789abcdef" for c in first)


class UploadGuard:
    """Which files a request may name: only files uploaded to Gradio's upload cache.

    The page first sends a file to Gradio's upload route and then names the cached copy in
    the event; an API client can name any path instead. Gradio refuses paths outside its
    cache without a word, so requests are checked here first and answered with a sentence.
    Session folders are refused even where the sessions folder lies inside the cache. Once
    an upload has been read, :meth:`reading` removes the cached copy, so no second copy of a
    user's file stays on disk (the session's own folder holds what is needed).
    """

    def __init__(self, cache_dir: str | Path, data_dir: str | Path):
        self.cache_dir = Path(cache_dir).resolve()
        self.data_dir = Path(data_dir).resolve()

    def resolve(self, value) -> Path | None:
        """The cached file a File input's payload (or path) names, or None where it names
        something else."""
        path = value.get("path") if isinstance(value, dict) else value
        if not isinstance(path, (str, Path)) or not str(path):
            return None
        try:
            file = Path(path).resolve()
            is_file = file.is_file()
        except (OSError, ValueError):  # e.g. a NUL byte in the name
            return None
        if not is_file or file.parent == self.cache_dir or not _inside(file, self.cache_dir):
            return None
        return None if _in_session_folder(file, self.data_dir) else file

    def check(self, value) -> None:
        """Refuse, with one sentence, a File input's payload (one file or a list of them)
        that names anything but uploaded files."""
        for item in value if isinstance(value, list) else [value]:
            if item is not None and self.resolve(item) is None:
                raise gr.Error(NOT_UPLOADED, print_exception=False)

    @contextlib.contextmanager
    def reading(self, path) -> Iterator[None]:
        """Around reading an uploaded file: afterwards, whether reading worked or not, the
        cached copy is removed (with its folder, once empty), but only inside the cache.

        Uploads of the same bytes and name share one cached path, so the file is removed
        only while it is still the one this request found; a newer upload to the same path
        is left for its own request.
        """
        seen = _identity(path)
        try:
            yield
        finally:
            file = self.resolve(path)
            if file is not None and seen is not None and _identity(file) == seen:
                with contextlib.suppress(OSError):
                    file.unlink()
                with contextlib.suppress(OSError):
                    file.parent.rmdir()  # only when empty


def upload_path(value) -> str | None:
    """The cached file's path from a File input's payload. The upload events skip Gradio's
    own preprocessing, which would leave an empty temporary file in the cache per event."""
    if isinstance(value, dict):
        value = value.get("path")
    return str(value) if value else None


def _identity(path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except (OSError, TypeError, ValueError):
        return None
    return st.st_dev, st.st_ino


class CheckedBlocks(gr.Blocks):
    """gr.Blocks that checks the files named in every request with an :class:`UploadGuard`
    before Gradio reads them (Gradio offers no hook of its own for this)."""

    upload_guard: UploadGuard | None = None

    async def preprocess_data(self, block_fn, inputs, *args, **kwargs):
        if self.upload_guard is not None:
            for component, value in zip(block_fn.inputs, inputs or [], strict=False):
                if isinstance(component, gr.File):
                    self.upload_guard.check(value)
        return await super().preprocess_data(block_fn, inputs, *args, **kwargs)


def _for_toast(message: str) -> str:
    """A sentence as the page's error toast shows it (HTML): markup escaped exactly once,
    whether or not the raising layer already escaped names in it; quotes stay readable
    for API clients, who get the same text."""
    return html.escape(html.unescape(message), quote=False)


def _translate(err: Exception, user: UserSession | None = None) -> gr.Error:
    if user is not None and user.closed:
        # Expected: the tab closed (or the session expired) and its files went away while
        # this request ran; nobody is waiting for the answer.
        log.info("a request of a closed session ended with %s: %s", type(err).__name__, err)
        return gr.Error(SessionClosedError().message, print_exception=False)
    if isinstance(err, UserError):
        return gr.Error(_for_toast(err.message), print_exception=False)
    if isinstance(err, MemoryError):
        log.error("a request ran out of memory", exc_info=err)
        return gr.Error(OUT_OF_MEMORY, print_exception=False)
    log.error("unexpected error", exc_info=err)
    return gr.Error(
        "Something went wrong on the server (details are in its log); try "
        "again, or reload the page.",
        print_exception=False,
    )


def _user_in(args: tuple) -> UserSession | None:
    """The session among a handler's arguments (the page's handlers take one)."""
    return next((a for a in args if isinstance(a, UserSession)), None)


def friendly(fn: Callable) -> Callable:
    """Turn errors into one readable sentence in the page (never a stack trace)."""
    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def gen_wrapper(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except gr.Error:
                raise
            except Exception as err:
                raise _translate(err, _user_in(args)) from None

        return gen_wrapper

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except Exception as err:
            raise _translate(err, _user_in(args)) from None

    return wrapper


def served_paths(data_dir: Path) -> list[str]:
    """What to pass as Gradio's ``allowed_paths``.

    Gradio serves every file under ``allowed_paths`` to anyone who names its path. Session
    files never need that: results are copied into Gradio's cache before the page gets a
    link. Gradio only has to be allowed to read them, which it is anyway inside the temp
    directory and the working directory; elsewhere (``/data/sessions`` in the Docker image)
    the sessions folder must be listed, and its files are then reachable only by their
    exact path, which holds the session's random 32-digit id and is never sent to a page.
    """
    folder = Path(data_dir).resolve()
    readable = (Path(tempfile.gettempdir()).resolve(), Path.cwd().resolve())
    return [] if any(_inside(folder, root) for root in readable) else [str(data_dir)]
