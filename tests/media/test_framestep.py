"""Reading every N-th frame: the frames kept are exactly the original's 0, N, 2N, ..."""

from __future__ import annotations

import numpy as np
import pytest

from sam2web.errors import MediaError
from sam2web.media.folder import FrameFolder
from sam2web.media.ingest import ingest
from sam2web.media.limits import MediaLimits
from tests import synth

LIMITS = MediaLimits(
    max_bytes=1 << 30, max_frames=10_000, max_duration_s=3600, max_pixels=1 << 24, max_zip_ratio=100
)
LENGTH = 23  # not a multiple of 2 or 5


def _numbered_frames(count: int) -> np.ndarray:
    """Flat grey frames whose level says their number (10, 20, ...): a codec keeps flat
    areas within a few levels, so the frame read back is known."""
    levels = 10 + 10 * np.arange(count, dtype=np.uint8)
    return np.broadcast_to(levels[:, None, None, None], (count, 48, 64, 3)).copy()


@pytest.fixture(scope="module")
def numbered_mp4(tmp_path_factory):
    path = tmp_path_factory.mktemp("clip") / "numbered.mp4"
    return synth.write_video(path, _numbered_frames(LENGTH), fps=10.0)


@pytest.mark.parametrize("step", [1, 2, 5, 7])
def test_every_nth_frame_of_the_original_is_kept_with_its_number_and_time(
    tmp_path, numbered_mp4, step
):
    info = ingest(numbered_mp4, tmp_path / "frames", limits=LIMITS, frame_step=step)
    kept = len(range(0, LENGTH, step))
    assert (info.num_frames, info.frame_step, info.source_frames) == (kept, step, LENGTH)
    assert info.duration_s == pytest.approx(LENGTH / 10.0)
    folder = FrameFolder(tmp_path / "frames")
    assert folder.info == info  # video.json keeps the step
    for i in range(kept):
        original = i * step
        level = float(folder.read_rgb(i).mean())
        assert level == pytest.approx(10 + 10 * original, abs=3), (i, original)
        assert info.original_frame(i) == original
        assert info.time_of(i) == pytest.approx(original / 10.0)
    assert info.tracked_fps == pytest.approx(10.0 / step)
    assert (step > 1) == any("One frame in every" in n for n in info.notes)


def test_a_zip_of_images_is_stepped_too(tmp_path):
    frames = _numbered_frames(11)
    zipped = synth.write_image_zip(tmp_path / "seq.zip", frames)
    info = ingest(zipped, tmp_path / "frames", limits=LIMITS, frame_step=5)
    assert (info.num_frames, info.source_frames) == (3, 11)
    folder = FrameFolder(tmp_path / "frames")
    assert [round(float(folder.read_rgb(i).mean())) for i in range(3)] == [10, 60, 110]


@pytest.mark.parametrize("step", [0, -3, 2.5, "five", None, True, 10_000])
def test_a_bad_frame_step_is_one_sentence_and_writes_nothing(tmp_path, numbered_mp4, step):
    dest = tmp_path / "frames"
    with pytest.raises(MediaError, match="The frame step must be a whole number"):
        ingest(numbered_mp4, dest, limits=LIMITS, frame_step=step)
    assert not dest.exists()


def test_the_frame_limit_counts_the_frames_kept(tmp_path, numbered_mp4):
    limits = MediaLimits(**{**LIMITS.__dict__, "max_frames": 5})
    info = ingest(numbered_mp4, tmp_path / "frames", limits=limits, frame_step=5)
    assert info.num_frames == 5
