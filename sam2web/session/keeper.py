"""Sessions kept across reloads and dropped connections, and the RAM they may hold.

A page that reloads (F5, a laptop that slept, a phone that locked, a dropped connection)
is a new page to the server. :class:`SessionKeeper` keeps each user's
:class:`~sam2web.session.user.UserSession` under a token it makes itself
(``secrets.token_urlsafe``, 256 bits), which the browser stores and sends back when the
page loads again; the session then continues where it was. A token is only ever a key of
this keeper: it never becomes a file name or a path (a session's folder keeps the name
the server gave it), and a token opens only the session it was issued for.

A session is closed (its files removed) when it was not used for SAM2WEB_SESSION_TTL_S,
not when its tab closes. A session without a tab gives back the RAM of its SAM 2 state
(:meth:`~sam2web.session.video.VideoSession.release_model`, rebuilt exactly from its history
when used again); with SAM2WEB_SESSION_RAM_MB the model state all kept sessions hold
together is capped, the longest idle released first.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from dataclasses import dataclass, field

from .user import UserSession

log = logging.getLogger(__name__)

TOKEN_BYTES = 32  # secrets.token_urlsafe(32): 43 characters


@dataclass
class Kept:
    """One kept session: the token it was issued under and the tabs showing it now."""

    token: str
    user: UserSession
    tabs: set[str] = field(default_factory=set)


def well_formed(token) -> bool:
    """True for a string that could be one of this keeper's tokens (checked before any
    look-up, so nothing else a browser sends is ever used as a key)."""
    return (
        isinstance(token, str) and len(token) == 43 and all(c.isalnum() or c in "-_" for c in token)
    )


def idle_past(user: UserSession, idle_ttl_s: float | None, now: float) -> bool:
    """True when an open session has been idle (no action, not even a frame viewed) for
    longer than ``idle_ttl_s`` (None: sessions never expire)."""
    return not user.closed and idle_ttl_s is not None and now - user.last_used > idle_ttl_s


class SessionKeeper:
    """Sessions by token, their tabs, their idle expiry and their RAM budget. Thread-safe."""

    def __init__(self, idle_ttl_s: float | None = None, ram_budget_mb: int = 0):
        self.idle_ttl_s = idle_ttl_s
        self.ram_budget_bytes = max(0, int(ram_budget_mb)) * 1024 * 1024
        self._lock = threading.Lock()
        self._by_token: dict[str, Kept] = {}

    # ------------------------------------------------------------------ tokens
    def keep(self, user: UserSession) -> str:
        """Keep ``user`` and return its new token (a session is kept under one token)."""
        token = secrets.token_urlsafe(TOKEN_BYTES)
        with self._lock:
            for kept in self._by_token.values():
                if kept.user is user:
                    return kept.token
            self._by_token[token] = Kept(token, user)
            user.kept = True
        return token

    def claim(self, token) -> UserSession | None:
        """The open session ``token`` was issued for, or None (an unknown, malformed or
        expired token, or a closed session)."""
        if not well_formed(token):
            return None
        with self._lock:
            kept = self._by_token.get(token)
            # The dictionary found it by value; the comparison states what is required.
            if kept is None or not secrets.compare_digest(kept.token, token):
                return None
            if kept.user.closed:
                del self._by_token[token]
                return None
        kept.user.touch()
        return kept.user

    def token_of(self, user: UserSession) -> str | None:
        with self._lock:
            return next((k.token for k in self._by_token.values() if k.user is user), None)

    # ------------------------------------------------------------------ tabs
    def attach(self, user: UserSession, tab: str | None) -> None:
        """Tab ``tab`` (a page's connection id) shows ``user`` now."""
        with self._lock:
            kept = self._kept(user)
            if kept is not None and tab:
                kept.tabs.add(tab)

    def detach(self, user: UserSession, tab: str | None) -> None:
        """Tab ``tab`` closed or lost its connection: the session stays until its idle
        expiry; once no tab shows it, its model state is released (a run in progress
        finishes first and releases it when it ends, see :mod:`.background`)."""
        with self._lock:
            kept = self._kept(user)
            if kept is None:
                return
            kept.tabs.discard(tab or "")
            alone = not kept.tabs
        if alone:
            user.release_model()

    def tabs(self, user: UserSession) -> int:
        """How many tabs show ``user`` now."""
        with self._lock:
            kept = self._kept(user)
            return 0 if kept is None else len(kept.tabs)

    def _kept(self, user: UserSession) -> Kept | None:
        return next((k for k in self._by_token.values() if k.user is user), None)

    # ------------------------------------------------------------------ expiry and memory
    def sessions(self) -> list[UserSession]:
        with self._lock:
            return [k.user for k in self._by_token.values()]

    def expire(self, now: float | None = None) -> list[UserSession]:
        """Close and forget the sessions idle for longer than the expiry (and forget
        closed ones); returns the sessions still kept."""
        now = time.time() if now is None else now
        idle = []
        with self._lock:
            for token, kept in list(self._by_token.items()):
                user = kept.user
                expired = idle_past(user, self.idle_ttl_s, now)
                if expired:
                    idle.append(user)
                if user.closed or expired:
                    del self._by_token[token]
            left = [k.user for k in self._by_token.values()]
        for user in idle:
            log.info("closing a kept session idle for %.0f s", now - user.last_used)
            user.close()
        return left

    def model_bytes(self) -> int:
        """Bytes of model state and cached frames all kept sessions hold now."""
        return sum(user.model_bytes() for user in self.sessions())

    def enforce_budget(self, spare: UserSession | None = None) -> int:
        """Release the model state of kept sessions, the longest idle first, until they
        hold no more than SAM2WEB_SESSION_RAM_MB together (0: no cap); ``spare`` (the
        session being served) is released last of all. Sessions that are tracking,
        exporting or loading are skipped. Returns how many were released."""
        if not self.ram_budget_bytes:
            return 0
        held = {id(u): u.model_bytes() for u in self.sessions()}
        total = sum(held.values())
        if total <= self.ram_budget_bytes:
            return 0
        order = sorted(
            (u for u in self.sessions() if held[id(u)] > 0),
            key=lambda u: (u is spare, u.last_used),
        )
        released = 0
        for user in order:
            if total <= self.ram_budget_bytes:
                break
            if user.release_model():
                total -= held[id(user)]
                released += 1
        if released:
            log.info("released the model state of %d idle session(s) for the RAM cap", released)
        return released
