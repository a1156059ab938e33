"""Kept sessions: tokens, tabs, idle expiry, and the SAM 2 state released and rebuilt."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from sam2web.session.keeper import SessionKeeper, well_formed
from sam2web.session.user import UserSession
from tests import synth


@pytest.fixture
def clip(tmp_path):
    return synth.write_video(tmp_path / "c.mp4", synth.make_frames(6, 120, 160), fps=10)


def masks_of(user: UserSession) -> dict[tuple[int, int], np.ndarray]:
    """Every stored mask by (frame, object id)."""
    out = {}
    for frame in user.tracking.store.frames():
        result = user.tracking.store.read(frame)
        for obj_id, mask in result.masks.items():
            out[(frame, obj_id)] = mask
    return out


def work(user: UserSession, clip, release: bool) -> list[dict]:
    """Upload, click, track, correct, track again; with ``release`` the model state is
    given back before every later step. Returns the masks after each step."""
    user.upload(clip, source_name="c.mp4")
    steps = []

    def step(fn):
        if release:
            assert user.release_model() and user.model_released
            assert user.tracking.held_bytes()["state"] == 0
        fn()
        steps.append(masks_of(user))

    user.click(0, 40, 60)  # the red disc
    steps.append(masks_of(user))
    step(lambda: list(user.propagate()))
    step(lambda: user.click(3, 50, 62))  # a correction on a tracked frame
    step(lambda: user.add_object("blue"))
    step(lambda: user.click(0, 120, 40))
    step(lambda: list(user.propagate()))
    return steps


def test_a_released_session_gives_the_same_masks_as_one_that_stayed(engine, clip):
    stayed, released = UserSession(engine), UserSession(engine)
    try:
        expected = work(stayed, clip, release=False)
        got = work(released, clip, release=True)
        assert len(expected) == len(got) == 6
        for want, have in zip(expected, got, strict=True):
            assert want.keys() == have.keys() and want
            for key in want:
                assert np.array_equal(want[key], have[key]), key
        assert released.tracking.history == stayed.tracking.history
        assert not released.model_released  # the last step rebuilt it
    finally:
        stayed.close()
        released.close()


def test_a_token_opens_only_its_own_session(engine):
    keeper = SessionKeeper(idle_ttl_s=60)
    first, second = UserSession(engine), UserSession(engine)
    t1, t2 = keeper.keep(first), keeper.keep(second)
    assert well_formed(t1) and t1 != t2 and first.kept
    assert keeper.claim(t1) is first and keeper.claim(t2) is second
    assert keeper.keep(first) == t1  # one token per session
    for forged in ("", None, 42, t1[:-1], t1 + "x", t1[:-1] + ("A" if t1[-1] != "A" else "B")):
        assert keeper.claim(forged) is None
    assert keeper.claim("../" + t1[3:]) is None  # never a path, never another session
    first.close()
    assert keeper.claim(t1) is None  # a closed session is forgotten
    second.close()


def test_closing_the_last_tab_keeps_the_session_and_releases_its_state(engine, clip):
    keeper = SessionKeeper(idle_ttl_s=60)
    user = UserSession(engine)
    token = keeper.keep(user)
    user.upload(clip)
    user.click(0, 40, 60)
    keeper.attach(user, "tab-1")
    keeper.attach(user, "tab-2")
    keeper.detach(user, "tab-1")
    assert not user.model_released  # another tab still shows it
    keeper.detach(user, "tab-2")
    assert user.model_released and not user.closed and user.workspace.root.is_dir()
    assert keeper.claim(token) is user
    # The idle expiry, not the tab, ends it.
    assert keeper.expire(now=user.last_used + 30) == [user]
    root = user.workspace.root
    assert keeper.expire(now=user.last_used + 61) == []
    assert user.closed and not root.exists() and keeper.claim(token) is None


def test_the_ram_cap_releases_the_longest_idle_sessions_first(engine, tmp_path, clip):
    users = [UserSession(engine) for _ in range(3)]
    try:
        for i, user in enumerate(users):
            user.upload(clip)
            user.click(0, 40, 60)
            user.last_used = 1000.0 + i  # the first is the longest idle
        one = users[0].model_bytes()
        assert one > 0
        keeper = SessionKeeper(ram_budget_mb=1)
        keeper.ram_budget_bytes = int(one * 1.5)  # room for one session's state
        for user in users:
            keeper.keep(user)
        assert keeper.enforce_budget(spare=users[0]) == 2
        # The spared one (being served) goes last, then the oldest idle.
        assert [u.model_released for u in users] == [False, True, True]
        assert keeper.model_bytes() <= keeper.ram_budget_bytes
    finally:
        for user in users:
            user.close()


def test_the_ram_cap_is_a_documented_setting(engine):
    from sam2web.settings import Settings

    assert Settings.from_env({}).session_ram_mb == 4096
    assert Settings.from_env({"SAM2WEB_SESSION_RAM_MB": "0"}).session_ram_mb == 0
    with pytest.raises(ValueError, match="SAM2WEB_SESSION_RAM_MB"):
        Settings.from_env({"SAM2WEB_SESSION_RAM_MB": "-1"})
    assert dataclasses.is_dataclass(engine.settings)
