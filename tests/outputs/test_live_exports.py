"""The pass beside tracking, with each tracked frame's masks handed over in memory, writes
byte for byte the files of a plain export pass over the same stored masks; a run's live
progress reports every frame."""

from __future__ import annotations

import hashlib
import zipfile

import numpy as np
import pytest

from sam2web.analysis.identity import FixedStore, Swap
from sam2web.analysis.tables import Calibration
from sam2web.outputs.exports import FILES, LiveExports, export_pass, write_row_files
from sam2web.outputs.render import OverlayStyle
from sam2web.session.background import BackgroundRun, start_run
from sam2web.tracking.maskstore import MaskStore
from sam2web.types import TrackedObject, VideoInfo, color_for
from tests import synth
from tests.masks import assert_nontrivial, stored_masks

H, W, N = 120, 160, 8
DISCS = synth.DEFAULT_DISCS
INFO = VideoInfo(num_frames=N, width=W, height=H, fps=10.0, source_name="discs.mp4", kind="video")
OBJECTS = [TrackedObject(1, "one", color_for(1)), TrackedObject(2, "two", color_for(2))]
COMPARED = ("masks", "npz", "coco", "csv", "calibrated", "summary", "video")


def disc(obj_id: int, t: int) -> np.ndarray:
    return synth.disc_mask(H, W, DISCS[obj_id - 1], t)


def digests(folder) -> dict[str, str]:
    """Each file's SHA-256; of the masks zip, of its members' names and bytes (a zip entry
    also holds the time it was written)."""
    out = {k: hashlib.sha256((folder / FILES[k]).read_bytes()).hexdigest() for k in COMPARED}
    with zipfile.ZipFile(folder / FILES["masks"]) as zf:
        members = hashlib.sha256()
        for name in zf.namelist():
            members.update(name.encode() + b"\0" + zf.read(name))
    out["masks"] = members.hexdigest()
    return out


def scripted_run(store: MaskStore, view, out_dir) -> None:
    """A run that tracks frames 2..7 (frames 0 and 1 were stored before it), writing
    each frame's discs as tracking would and handing the store's answer to the pass:
    on frame 4 object 1 is absent (empty mask, negative score); frame 6 is written one
    object at a time, so the answer handed last lacks object 1."""
    frames = np.asarray(synth.make_frames(N, H, W))
    for t in (0, 1):
        store.write(t, {1: disc(1, t), 2: disc(2, t)}, {1: 2.0, 2: 3.0})
    live = LiveExports(
        lambda i: frames[i].copy(), view, OBJECTS, INFO, OverlayStyle(), out_dir, range(2, N), 5
    )
    for t in range(2, N):
        one = np.zeros((H, W), bool) if t == 4 else disc(1, t)
        if t == 6:
            store.write(t, {1: one}, {1: 1.0})
            answer = store.write(t, {2: disc(2, t)}, {2: 0.5})
            answer = type(answer)(t, {2: answer.masks[2]}, {2: 0.5})  # object 2 only
        else:
            answer = store.write(t, {1: one, 2: disc(2, t)}, {1: -1.5 if t == 4 else 1.0, 2: 4})
        live.frame_done(t, answer)
    _, results = live.finish()
    write_row_files(results, Calibration(2.0, "mm"), frames[0], out_dir)


def plain_pass(view, out_dir) -> None:
    frames = np.asarray(synth.make_frames(N, H, W))
    _, results = export_pass(
        lambda i: frames[i].copy(), view, OBJECTS, INFO, OverlayStyle(), out_dir, 5
    )
    write_row_files(results, Calibration(2.0, "mm"), frames[0], out_dir)


@pytest.mark.parametrize("fixed", [False, True], ids=["store", "swap in force"])
def test_the_pass_beside_tracking_writes_the_plain_pass_files(tmp_path, fixed):
    store = MaskStore(tmp_path / "masks", H, W)
    # With a fix in force the handed answers (as tracked) must not be used: the files
    # show the swap on frames 3 on, as a plain pass over the view does.
    view = FixedStore(store, [Swap(1, 2, 3)]) if fixed else store
    scripted_run(store, view, tmp_path / "live")
    assert_nontrivial(stored_masks(store))
    plain_pass(view, tmp_path / "plain")
    assert digests(tmp_path / "live") == digests(tmp_path / "plain")


def test_a_swap_changes_the_files(tmp_path):
    # The comparison above can fail: the same run read without and with the swap differs.
    store = MaskStore(tmp_path / "masks", H, W)
    scripted_run(store, store, tmp_path / "live")
    plain_pass(FixedStore(store, [Swap(1, 2, 3)]), tmp_path / "plain")
    live, plain = digests(tmp_path / "live"), digests(tmp_path / "plain")
    assert all(live[k] != plain[k] for k in ("masks", "npz", "coco", "csv"))


def test_a_run_reports_every_frame_and_writes_the_plain_pass_files(engine, tmp_path, monkeypatch):
    clip = synth.write_video(tmp_path / "c.mp4", synth.make_frames(6, H, W))
    from sam2web.session.user import UserSession

    user = UserSession(engine)
    try:
        user.upload(clip)
        user.add_object("one")
        user.click(0, 40, 60, "positive", 1)
        tracked: list[tuple[int, int, int]] = []
        exported: list[tuple[int, int]] = []
        track, export = BackgroundRun._track, BackgroundRun._exported

        def on_track(run, step):
            tracked.append((step.result.frame_idx, step.done, step.total))
            track(run, step)

        def on_export(run, done, total):
            exported.append((done, total))
            export(run, done, total)

        monkeypatch.setattr(BackgroundRun, "_track", on_track)
        monkeypatch.setattr(BackgroundRun, "_exported", on_export)
        run = start_run(user, "forward", None, None)
        assert run.join(120)
        assert run.progress.phase == "done", run.progress.error
        assert tracked == [(f, f + 1, 6) for f in range(6)]
        assert exported and exported[-1] == (6, 6)
        store = user.tracking.store
        assert_nontrivial(stored_masks(store))
        live = digests(user.workspace.exports_dir)
        objects = list(user.tracking.objects.values())
        _, results = export_pass(
            user.frame_rgb, store, objects, user.info, user.video_style, tmp_path / "plain", 2
        )
        write_row_files(results, user.calibration, user.frame_rgb(0), tmp_path / "plain")
        assert live == digests(tmp_path / "plain")
    finally:
        user.close()
