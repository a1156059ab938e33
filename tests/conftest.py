"""Shared fixtures: a random-weight SAM2.1-tiny checkpoint of the real architecture, cached
predictors, and synthetic clips with known ground truth."""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

os.environ.setdefault("TQDM_DISABLE", "1")  # sam2's per-frame progress bars clutter test logs

from tests import synth  # noqa: E402

# Small processing resolution for tests that check behaviour rather than fidelity at 1024.
TEST_RESOLUTION = 256


def pytest_addoption(parser):
    parser.addoption(
        "--run-exhaustive",
        action="store_true",
        default=False,
        help="also run tests marked 'exhaustive' (long)",
    )


def pytest_collection_modifyitems(config, items):
    if config.getoption("--run-exhaustive"):
        return
    skip = pytest.mark.skip(reason="exhaustive: run with --run-exhaustive")
    for item in items:
        if "exhaustive" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def random_checkpoint(tmp_path_factory) -> Path:
    """SAM2.1-tiny architecture with seeded random weights, saved like a real checkpoint."""
    from sam2web.tracking.model import write_random_checkpoint

    path = tmp_path_factory.mktemp("ckpt") / "sam2.1_hiera_tiny_random.pt"
    return write_random_checkpoint(path, "sam2.1-tiny", seed=0)


@pytest.fixture(scope="session")
def predictor_cache(random_checkpoint):
    """Builds sam2web predictors from the random checkpoint, one per configuration."""
    from sam2web.tracking.checkpoints import get_spec
    from sam2web.tracking.model import build_predictor, silence_missing_extension_warning

    cache: dict = {}

    def get(image_size: int = TEST_RESOLUTION, corrections: str = "keep"):
        key = (image_size, corrections)
        if key not in cache:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                cache[key] = build_predictor(
                    get_spec("sam2.1-tiny"),
                    random_checkpoint,
                    device="cpu",
                    image_size=image_size,
                    corrections=corrections,
                )
            silence_missing_extension_warning()
        return cache[key]

    return get


@pytest.fixture(scope="session")
def clip_frames():
    """8 frames, 160x120, two discs moving in different directions."""
    return synth.make_frames(num_frames=8, height=120, width=160)


@pytest.fixture
def clip_mp4(tmp_path, clip_frames) -> Path:
    return synth.write_video(tmp_path / "discs.mp4", clip_frames, fps=10.0)


@pytest.fixture
def clip_zip(tmp_path, clip_frames) -> Path:
    return synth.write_image_zip(tmp_path / "discs.zip", clip_frames)


@pytest.fixture
def make_session(tmp_path, predictor_cache):
    """Ingests a media file and opens a TrackingSession on it."""
    from sam2web.media.folder import FrameFolder
    from sam2web.media.ingest import ingest
    from sam2web.media.limits import MediaLimits
    from sam2web.tracking.tracker import TrackingSession

    limits = MediaLimits(
        max_bytes=200 << 20,
        max_frames=2000,
        max_duration_s=3600,
        max_pixels=4096 * 4096,
        max_zip_ratio=200,
    )
    counter = iter(range(10_000))

    def make(
        src: Path,
        image_size: int = TEST_RESOLUTION,
        corrections: str = "keep",
        full_memory_frames: int = 300,
        **kwargs,
    ):
        n = next(counter)
        frames_dir = tmp_path / f"s{n}" / "frames"
        ingest(src, frames_dir, limits=limits, **kwargs)
        folder = FrameFolder(frames_dir)
        return TrackingSession(
            predictor_cache(image_size, corrections),
            folder.frame_paths(),
            folder.info,
            tmp_path / f"s{n}" / "masks",
            full_memory_frames=full_memory_frames,
        )

    return make


@pytest.fixture
def engine(tmp_path, random_checkpoint):
    """An Engine on the random checkpoint at the test resolution, with its own data folder."""
    import dataclasses

    from sam2web.session.engine import Engine
    from sam2web.settings import Settings

    settings = dataclasses.replace(
        Settings.from_env({}),
        resolution=TEST_RESOLUTION,
        checkpoint=random_checkpoint,
        offline=True,
        data_dir=tmp_path / "sessions",
    )
    return Engine(settings)


@pytest.fixture
def ctx(engine, tmp_path):
    """The page's handler context without a server: the page built on ``engine``, an
    upload guard and a session registry (handlers are called directly)."""
    import gradio as gr

    from sam2web.ui import SessionRegistry, UploadGuard
    from sam2web.ui import handlers as h
    from sam2web.ui.layout import build_layout

    with gr.Blocks():
        page = build_layout(engine)
    guard = UploadGuard(tmp_path / "gradio-cache", engine.settings.data_dir)
    return h.Context(engine=engine, page=page, registry=SessionRegistry(), guard=guard)


@pytest.fixture
def user(engine):
    """A user session on ``engine``, closed after the test."""
    from sam2web.session.user import UserSession

    user = UserSession(engine)
    yield user
    user.close()


@pytest.fixture
def double_engine(engine, monkeypatch):
    """The engine, its predictors built as :class:`tests.double.PredictorDouble`."""
    import sam2web.tracking.model as model
    from tests.double import build_double

    monkeypatch.setattr(model, "build_predictor", build_double)
    engine.models.clear()
    return engine
