"""Masks written behind: a propagation's frames reach their files on the store's writer
thread, while every read answers the new content at once and nothing is lost or comes back.

The writer is held (started only when the test lets it) or slowed, so the frames a test
looks at are certainly still waiting for their files."""

from __future__ import annotations

import errno
import shutil
import tempfile
import threading
import time
import types
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from sam2web.tracking import behind
from sam2web.tracking.behind import MAX_PENDING_FRAMES
from sam2web.tracking.maskstore import MaskStore
from tests import synth

H, W = 120, 160


def gt(t: int) -> dict[int, np.ndarray]:
    return {i + 1: synth.disc_mask(H, W, d, t) for i, d in enumerate(synth.DEFAULT_DISCS)}


def contents(store) -> dict[int, dict[int, tuple[bytes, float]]]:
    """Every frame's masks (as bytes) and scores, as ``store``'s reads give them."""
    out = {}
    for frame in store.frames():
        result = store.read(frame)
        assert result is not None, f"frame {frame} is listed but reads as empty"
        out[frame] = {o: (m.tobytes(), result.scores[o]) for o, m in result.masks.items()}
    return out


class HeldWriters:
    """Stands in for the store's writer threads: each is started only by ``release()``."""

    def __init__(self) -> None:
        self.threads: list[_HeldThread] = []

    def release(self) -> None:
        for thread in self.threads:
            thread.release()


class _HeldThread:
    def __init__(self, held: HeldWriters, target, name: str, daemon: bool) -> None:
        self._target, self.name, self._real = target, name, None
        held.threads.append(self)

    def start(self) -> None:  # held: it runs when the test releases it
        pass

    def is_alive(self) -> bool:
        return self._real is None or self._real.is_alive()

    def release(self) -> None:
        if self._real is None:
            self._real = threading.Thread(target=self._target, name=self.name, daemon=True)
            self._real.start()


@pytest.fixture
def held(monkeypatch) -> HeldWriters:
    writers = HeldWriters()
    fake = types.SimpleNamespace(
        RLock=threading.RLock,
        Condition=threading.Condition,
        current_thread=threading.current_thread,
        Thread=lambda target, name, daemon: _HeldThread(writers, target, name, daemon),
    )
    monkeypatch.setattr(behind, "threading", fake)
    return writers


def test_a_frame_written_behind_is_read_at_once_and_reaches_its_file(tmp_path, held):
    root = tmp_path / "masks"
    store = MaskStore(root, H, W)
    first = gt(2)
    store.write(2, {1: first[1]}, {1: 1.5})  # on disk at once
    masks = gt(3)
    answer = store.write(3, masks, {1: 2.0, 2: -1.0}, behind=True)
    store.write(2, {2: first[2]}, {2: 0.5}, behind=True)  # a frame with a file already
    waiting = store.stamp(3)

    # What another process sees: only the files.
    other = MaskStore(root, H, W)
    assert other.frames() == [2] and set(other.read(2).masks) == {1}
    assert not store.on_disk(3) and not store.on_disk(2)

    # This store answers every read with the new content.
    assert store.frames() == [2, 3]
    result = store.read(3)
    assert all(np.array_equal(result.masks[o], masks[o]) for o in (1, 2))
    assert result.scores == {1: 2.0, 2: -1.0} == answer.scores
    assert np.array_equal(store.mask(3, 2), masks[2]) and store.score(3, 2) == -1.0
    assert store.presence(3) == ({1: True, 2: True}, {1: 2.0, 2: -1.0})
    assert np.array_equal(store.label_image(3) == 2, masks[2])
    assert set(store.read(2).masks) == {1, 2} and store.score(2, 1) == 1.5
    assert [r.frame_idx for r in store.iter_frames()] == [2, 3]

    held.release()
    store.flush()
    assert store.on_disk(3) and store.on_disk(2) and store.stamp(3) != waiting
    assert contents(MaskStore(root, H, W)) == contents(store)
    assert set(MaskStore(root, H, W).read(2).masks) == {1, 2}


def test_removing_frames_that_wait_for_their_files_leaves_nothing_to_come_back(tmp_path, held):
    """A drop, an object's removal and a clear while frames wait: the waiting content is
    edited like a file's, and no file comes back with what was removed once the writer runs."""
    root = tmp_path / "masks"
    store = MaskStore(root, H, W)
    for t in range(4):
        store.write(t, gt(t), {1: 1.0, 2: 2.0}, behind=True)
    store.drop(1, 2)
    store.drop(2)
    store.remove_object(1)
    assert store.frames() == [0, 3] and set(store.read(0).masks) == {2}
    assert store.mask(1, 2) is None and store.read(1) is None
    expected = contents(store)
    held.release()
    store.flush()
    time.sleep(0.1)  # a writer with something left would write it now
    assert contents(MaskStore(root, H, W)) == expected

    for t in range(3):
        store.write(t, gt(t), {1: 1.0, 2: 2.0}, behind=True)
    store.clear()
    held.release()
    store.flush()
    assert store.frames() == [] and MaskStore(root, H, W).frames() == []


def test_a_writer_too_far_behind_makes_the_next_write_wait(tmp_path, held):
    """A write behind waits while eight frames wait for their files; an edit of the same
    frame made meanwhile is kept (the waiting write reads the frame after its wait)."""
    store = MaskStore(tmp_path / "masks", H, W)
    for t in range(MAX_PENDING_FRAMES):
        store.write(t, {1: gt(t)[1]}, {1: 1.0}, behind=True)
    done = threading.Event()

    def one_more():
        store.write(3, {2: gt(3)[2]}, {2: 2.0}, behind=True)
        done.set()

    thread = threading.Thread(target=one_more, daemon=True)
    thread.start()
    assert not done.wait(0.5), "a write went on with the writer eight frames behind"
    store.write(3, {5: gt(4)[1]}, {5: 5.0})  # a click on that frame meanwhile
    held.release()
    assert done.wait(10), "the write did not go on once the writer caught up"
    store.flush()
    files = MaskStore(tmp_path / "masks", H, W)
    assert files.frames() == list(range(MAX_PENDING_FRAMES))
    assert files.read(3).scores == {1: 1.0, 2: 2.0, 5: 5.0}


def test_a_file_the_writer_could_not_write_is_said_and_kept_until_a_flush_writes_it(
    tmp_path, monkeypatch
):
    real = MaskStore._save_file
    failed = threading.Event()

    def full_disk_once(self, frame_idx, packed, scores):
        if threading.current_thread().name.startswith("mask-writer") and not failed.is_set():
            failed.set()
            raise OSError(errno.ENOSPC, "No space left on device")
        real(self, frame_idx, packed, scores)

    monkeypatch.setattr(MaskStore, "_save_file", full_disk_once)
    root = tmp_path / "masks"
    store = MaskStore(root, H, W)
    store.write(0, gt(0), {1: 1.0, 2: 2.0}, behind=True)
    assert failed.wait(10)
    time.sleep(0.1)  # the writer records what failed
    with pytest.raises(OSError, match="No space left"):
        store.write(1, gt(1), {1: 1.0, 2: 2.0}, behind=True)
    assert set(store.read(0).masks) == {1, 2}  # still read from memory
    assert MaskStore(root, H, W).frames() == []
    store.flush()  # the disk has room again
    assert contents(MaskStore(root, H, W)) == contents(store)
    assert MaskStore(root, H, W).frames() == [0]


def test_after_close_no_file_is_written_so_the_folder_can_be_removed(tmp_path, monkeypatch):
    real = MaskStore._save_file

    def slow(self, frame_idx, packed, scores):  # a slow disk
        time.sleep(0.05)
        real(self, frame_idx, packed, scores)

    monkeypatch.setattr(MaskStore, "_save_file", slow)
    root = tmp_path / "masks"
    store = MaskStore(root, H, W)
    for t in range(6):
        store.write(t, gt(t), {1: 1.0, 2: 2.0}, behind=True)
    store.close()
    assert MaskStore(root, H, W).frames() == list(range(6))
    shutil.rmtree(root)
    time.sleep(0.8)  # longer than an idle writer waits for more
    assert not root.exists()


class WritesBehind(RuleBasedStateMachine):
    """Any sequence of writes (behind or not), drops, removals, clears, flushes and
    refreshes: this store's reads always give what was done, and after a flush the files
    (what another process reads) give exactly the same."""

    h, w = 12, 16

    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp())
        self.store = MaskStore(self.tmp / "m", self.h, self.w)
        self.model: dict[int, dict[int, tuple[bytes, float]]] = {}

    @rule(
        frame=st.integers(0, 5),
        objs=st.lists(st.integers(1, 3), min_size=1, max_size=3, unique=True),
        behind=st.booleans(),
        seed=st.integers(0, 1 << 16),
    )
    def write(self, frame, objs, behind, seed):
        rng = np.random.default_rng(seed)
        masks = {o: rng.random((self.h, self.w)) > 0.5 for o in objs}
        scores = {o: float(rng.normal()) for o in objs}
        self.store.write(frame, masks, scores, behind=behind)
        entry = self.model.setdefault(frame, {})
        entry.update({o: (masks[o].tobytes(), scores[o]) for o in objs})

    @rule(frame=st.integers(0, 5), obj=st.none() | st.integers(1, 3))
    def drop(self, frame, obj):
        self.store.drop(frame, obj)
        if obj is None:
            self.model.pop(frame, None)
        elif frame in self.model:
            self.model[frame].pop(obj, None)
            if not self.model[frame]:
                del self.model[frame]

    @rule(obj=st.integers(1, 3))
    def remove_object(self, obj):
        self.store.remove_object(obj)
        for frame in list(self.model):
            self.model[frame].pop(obj, None)
            if not self.model[frame]:
                del self.model[frame]

    @rule()
    def clear(self):
        self.store.clear()
        self.model.clear()

    @rule()
    def flush(self):
        self.store.flush()
        assert contents(MaskStore(self.tmp / "m", self.h, self.w)) == self.model

    @rule()
    def refresh(self):
        self.store.refresh()
        assert contents(self.store) == self.model

    @invariant()
    def reads_give_what_was_done(self):
        assert contents(self.store) == self.model

    def teardown(self):
        self.store.close()
        try:
            assert contents(MaskStore(self.tmp / "m", self.h, self.w)) == self.model
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)


WritesBehind.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_any_sequence_of_edits_reads_and_lands_on_disk_the_same = WritesBehind.TestCase
