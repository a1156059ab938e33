"""What users really send (see BAD_INPUTS), through the running app.

One server with tiny limits (1 MB uploads, 20 frames, 5 s, 1280x720 pixels) so that "too
big" inputs stay small files. Every refused input must end in one clear sentence (what is
wrong, what to do) without a stack trace, a server path or raw exception text; it must leave
no session folder and no copy in Gradio's upload cache; and another user's session must be
served during and after. Unusual but valid inputs must load with the right frame count and
size. Bad event payloads (clicks outside, missing coordinates, removed objects, two runs at
once, a client gone mid-run) must be answered the same way.
"""

from __future__ import annotations

import contextlib
import csv
import re
import tempfile
import threading
import zipfile
from pathlib import Path

import httpx
import imageio_ffmpeg
import numpy as np
import pytest
import tifffile
from PIL import Image

from tests import synth
from tests.appserver import RunGate, start_app

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402

LIMITS = {
    "SAM2WEB_MAX_UPLOAD_MB": "1",
    "SAM2WEB_MAX_FRAMES": "20",
    "SAM2WEB_MAX_DURATION_S": "5",
    "SAM2WEB_MAX_PIXELS": str(1280 * 720),
    # Two model events at once, so two runs of one user really overlap here.
    "SAM2WEB_CONCURRENCY": "2",
}
RAW_ERROR_TEXT = (
    "Traceback",
    'File "',
    "Errno",
    "Exception",
    "Error:",
    "NoneType",
    "object has no attribute",
    "invalid literal",
    "unsupported operand",
)
TRACK_ARGS = ("forward", "", "", 0, 0.5, True, True, 0, "", "mm", "")  # /propagate after frame


@pytest.fixture(scope="module")
def app(tmp_path_factory, random_checkpoint):
    """The app with these limits; its runs can be held part-way (``app.gate``)."""
    workdir = tmp_path_factory.mktemp("hardening")
    server = start_app(
        workdir, random_checkpoint, resolution=128, extra_env=LIMITS, gate=RunGate(workdir / "gate")
    )
    yield server
    server.stop()


@pytest.fixture(scope="module")
def other(app, tmp_path_factory):
    """Another user, who uploaded a clip first; their frame view must keep answering."""
    clip = synth.write_video(
        tmp_path_factory.mktemp("other") / "other.mp4", synth.make_frames(4, 48, 64), fps=4
    )
    client = Client(app.url, verbose=False)
    assert client.predict(handle_file(str(clip)), api_name="/upload")[-1]["num_frames"] == 4
    return client


def assert_served(other: Client) -> None:
    image = other.predict(3, api_name="/frame")[0]
    assert image and Path(image).is_file()


def cache_dir(app) -> Path:
    return app.data_dir.parent / "gradio-cache"  # GRADIO_TEMP_DIR set by start_app


def session_folders(app) -> set[str]:
    return {p.name for p in app.data_dir.iterdir()} if app.data_dir.exists() else set()


def assert_one_clear_sentence(message: str, app) -> None:
    assert message and "\n" not in message, repr(message)
    assert message[0].isupper() and message.endswith("."), message
    assert not re.search(r"[.!?]\s", message[:-1]), f"more than one sentence: {message}"
    for text in RAW_ERROR_TEXT:
        assert text not in message, message
    for folder in (app.data_dir, app.data_dir.parent, tempfile.gettempdir()):
        assert str(folder) not in message, message


def refused(app, other: Client, call, *args, client: Client | None = None) -> str:
    """Submit ``call`` and expect a refusal; checks what every refusal must satisfy and
    returns its message."""
    before = session_folders(app)
    client = client or Client(app.url, verbose=False)
    job = client.submit(*args, api_name=call)
    assert_served(other)  # while the request is handled (or just after)
    with pytest.raises(Exception) as caught:
        job.result(timeout=120)
    message = str(caught.value)
    assert_one_clear_sentence(message, app)
    assert session_folders(app) <= before, "the failed attempt left a session folder"
    assert_served(other)
    return message


# --------------------------------------------------------------------------------------
# Refused uploads


def _write(name: str, data: bytes):
    def build(folder: Path) -> Path:
        path = folder / name
        path.write_bytes(data)
        return path

    return build


def _video(name: str, frames: int, fps: float, size=(48, 64)):
    return lambda folder: synth.write_video(
        folder / name, synth.make_frames(frames, *size), fps=fps
    )


def _truncated_mp4(folder: Path) -> Path:
    full = synth.write_video(folder / "full.mp4", synth.make_frames(8, 120, 160))
    return synth.truncated(folder / "cut.mp4", full, 0.5)  # its index (moov) is at the end


def _png_8k(folder: Path) -> Path:
    path = folder / "poster_8k.png"
    Image.new("L", (7680, 4320), 128).save(path)  # tiny file, 33 megapixels
    return path


def _mp4_8k(folder: Path) -> Path:
    path = folder / "drone_8k.mp4"
    synth.ffmpeg(
        "-f",
        "lavfi",
        "-i",
        "color=c=gray:s=7680x4320:r=1",
        "-frames:v",
        "1",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        str(path),
    )
    return path


def _zip(name: str, members):
    def build(folder: Path) -> Path:
        frames = synth.make_frames(3, 48, 64)
        return synth.zip_of(folder / name, members(frames))

    return build


def _damaged_zip_image(frames) -> dict[str, bytes]:
    return {"a_1.png": synth.png_bytes(frames[0]), "a_2.png": synth.png_bytes(frames[1])[:200]}


def _two_channel_tiff(folder: Path) -> Path:
    path = folder / "two_channels.tif"
    tifffile.imwrite(
        path, np.zeros((4, 2, 20, 30), np.uint16), imagej=True, metadata={"axes": "TCYX"}
    )
    return path


REFUSED_UPLOADS = [
    (
        "random-bytes",
        _write("holiday.mp4", np.random.default_rng(0).bytes(20_000)),
        "is not a video or image sequence sam2web can read",
    ),
    (
        "text",
        _write("notes.mp4", b"This is not a video, just some text.\n" * 50),
        "is not a video or image sequence sam2web can read",
    ),
    ("empty-file", _write("empty.mp4", b""), "is empty"),
    ("truncated-mp4", _truncated_mp4, "is incomplete or damaged"),
    ("audio-only", lambda folder: synth.audio_only(folder / "voice.mp4"), "only sound"),
    (
        "zero-frames",
        lambda folder: synth.video_without_frames(folder / "nothing.mp4"),
        "contains no video frames",
    ),
    ("over-frame-limit", _video("long.mp4", 25, fps=25), "more than 20 frames"),
    ("over-duration-limit", _video("slow.mp4", 8, fps=1), "longer than this server's limit"),
    ("8k-image", _png_8k, "7680x4320 pixels, more than this server's limit"),
    ("8k-video", _mp4_8k, "7680x4320 pixels, more than this server's limit"),
    ("zip-bomb", lambda folder: synth.zip_bomb(folder / "frames.zip", 20), "zip bomb"),
    (
        "zip-dotdot-names",
        _zip(
            "evil.zip",
            lambda f: {"frame_1.png": synth.png_bytes(f[0]), "../evil.png": synth.png_bytes(f[1])},
        ),
        "unsafe file names",
    ),
    (
        "zip-absolute-names",
        _zip("abs.zip", lambda f: {"/etc/evil.png": synth.png_bytes(f[0])}),
        "unsafe file names",
    ),
    (
        "zip-mixed-sizes",
        _zip(
            "mixed.zip",
            lambda f: {"f_1.png": synth.png_bytes(f[0]), "f_2.png": synth.png_bytes(f[1][:20])},
        ),
        "must have the same size",
    ),
    (
        "zip-no-images",
        _zip("docs.zip", lambda f: {"readme.txt": b"hi", "d/t.csv": b"1,2"}),
        "contains no images",
    ),
    ("zip-damaged-image", _zip("damaged.zip", _damaged_zip_image), "cannot be read"),
    (
        "gif-damaged",
        _write("broken.gif", b"GIF89a" + np.random.default_rng(5).bytes(3000)),
        "GIF that cannot be read",
    ),
]


@pytest.mark.parametrize(
    ("build", "words"), [c[1:] for c in REFUSED_UPLOADS], ids=[c[0] for c in REFUSED_UPLOADS]
)
def test_bad_upload_is_refused_cleanly(app, other, tmp_path, build, words):
    src = build(tmp_path)
    message = refused(app, other, "/upload", handle_file(str(src)))
    assert re.search(words, message), message
    # Gradio's copy of the upload is gone too.
    assert not list(cache_dir(app).rglob(src.name))


def test_a_tiff_that_needs_a_choice_is_held_until_the_choice(app, other, tmp_path):
    """Not a refusal: the page asks for the channel. The answer is one sentence, Gradio's
    copy is gone, the session keeps one copy of its own until the choice opens it."""
    src = _two_channel_tiff(tmp_path)
    before = session_folders(app)
    client = Client(app.url, verbose=False)
    with pytest.raises(Exception) as caught:
        client.predict(handle_file(str(src)), api_name="/upload")
    message = str(caught.value)
    assert_one_clear_sentence(message, app)
    assert "has 2 channels" in message
    assert not list(cache_dir(app).rglob(src.name))
    held = session_folders(app) - before
    assert len(held) == 1
    client.predict(api_name="/stack_choices")
    client.predict("1", None, api_name="/open_stack")
    opened = session_folders(app) - before
    assert len(opened) == 1 and opened.isdisjoint(held)  # the held copy went with the choice
    assert_served(other)


def test_upload_over_the_size_limit(app, other, tmp_path):
    big = tmp_path / "big.mp4"
    big.write_bytes(np.random.default_rng(1).bytes(1536 * 1024))
    # The page states the limit next to the upload box.
    config = httpx.get(f"{app.url}config", timeout=30).json()
    labels = [c.get("props", {}).get("label") or "" for c in config["components"]]
    assert any("up to 1 MB" in label for label in labels), labels
    # gradio_client refuses before sending, with the limit in bytes (its own sentence).
    client = Client(app.url, verbose=False)
    with pytest.raises(ValueError, match="exceeds the maximum file size of 1048576 bytes"):
        client.predict(handle_file(str(big)), api_name="/upload")
    # A raw upload is cut off by the server with one sentence (HTTP 413).
    before = {p for p in cache_dir(app).rglob("*") if p.is_file()}
    response = httpx.post(
        f"{app.url}gradio_api/upload", files=[("files", ("big.mp4", big.read_bytes()))], timeout=60
    )
    assert response.status_code == 413
    assert response.text == "File size exceeded maximum allowed size of 1048576 bytes."
    after = {p for p in cache_dir(app).rglob("*") if p.is_file()}
    assert after <= before, after - before
    assert_served(other)


# --------------------------------------------------------------------------------------
# Unusual inputs that must be accepted


def _rgba_zip(folder: Path) -> Path:
    frames = synth.make_frames(4, 120, 160)
    alpha = np.full(frames.shape[:3] + (1,), 100, np.uint8)
    return synth.write_image_zip(folder / "rgba.zip", np.concatenate([frames, alpha], -1))


def _fragmented_cut(folder: Path) -> Path:
    full = synth.write_video(
        folder / "frag.mp4",
        synth.make_frames(16, 120, 160),
        extra=["-g", "4", "-movflags", "frag_keyframe+empty_moov"],
    )
    return synth.truncated(folder / "frag_cut.mp4", full, 0.5)


def _tiff(name: str, data: np.ndarray, **kwargs):
    def build(folder: Path) -> Path:
        tifffile.imwrite(folder / name, data, **kwargs)
        return folder / name

    return build


def _float_stack() -> np.ndarray:
    stack = np.random.default_rng(2).uniform(-1, 3, size=(4, 30, 40)).astype(np.float32)
    stack[1, 5:8, 5:8] = np.nan
    return stack


def _nested_zip(folder: Path) -> Path:
    frames = synth.make_frames(4, 120, 160)
    members = {
        f"Experiment 1/run/IMG_{i + 1}.png": synth.png_bytes(f) for i, f in enumerate(frames)
    }
    members |= {"Experiment 1/notes.txt": b"lab notes", "__MACOSX/._IMG_1.png": b"\0fork"}
    return synth.zip_of(folder / "export.zip", members)


def _video_with(name: str, pix_fmt: str, codec: str = "libx264"):
    return lambda folder: synth.write_video(
        folder / name, synth.make_frames(6, 120, 160), codec=codec, pix_fmt=pix_fmt
    )


ACCEPTED_UPLOADS = [
    (
        "rotated-phone-video",
        lambda f: synth.rotated_video(f / "phone.mp4", synth.make_frames(6, 120, 160)),
        (6, 120, 160),
        "orientation",
    ),
    (
        "variable-frame-rate",
        lambda f: synth.variable_rate_video(f / "vfr.mkv", synth.make_frames(8, 120, 160)),
        (8, 160, 120),
        None,
    ),
    ("10-bit", _video_with("ten.mp4", "yuv420p10le"), (6, 160, 120), None),
    ("yuv444p", _video_with("full_chroma.mp4", "yuv444p"), (6, 160, 120), None),
    ("gray", _video_with("gray.mp4", "gray"), (6, 160, 120), None),
    ("rgba-video", _video_with("alpha.mov", "rgba", codec="png"), (6, 160, 120), None),
    ("rgba-png-zip", _rgba_zip, (4, 160, 120), "alpha"),
    (
        "gif-palette-variable-delays",
        lambda f: synth.write_gif(
            f / "vary.gif", synth.make_frames(6, 120, 160), [40, 40, 200, 40, 80, 40]
        ),
        (6, 160, 120),
        "delays vary",
    ),
    (
        "tiff-16bit",
        _tiff(
            "gray16.tif",
            np.random.default_rng(1)
            .normal(2000, 500, size=(6, 40, 50))
            .clip(0, 65535)
            .astype(np.uint16),
            photometric="minisblack",
        ),
        (6, 50, 40),
        "16-bit values scaled to 8-bit",
    ),
    (
        "tiff-float",
        _tiff("float.tif", _float_stack(), photometric="minisblack"),
        (4, 40, 30),
        "floating-point values scaled to 8-bit",
    ),
    (
        "tiff-multichannel",
        _tiff(
            "tcyx.tif",
            np.random.default_rng(3).integers(0, 256, size=(5, 3, 24, 32), dtype=np.uint8),
            imagej=True,
            metadata={"axes": "TCYX"},
        ),
        (5, 32, 24),
        None,
    ),
    # Keeps the frames that decode; whether it can tell that frames are missing depends
    # on what the cut-off part announced.
    ("truncated-fragmented-mp4", _fragmented_cut, None, None),
    ("zip-nested-folders-and-extras", _nested_zip, (4, 160, 120), "ignored"),
    (
        "single-png",
        lambda f: synth.write_image_zip(f / "one.zip", synth.make_frames(1)),
        (1, 160, 120),
        None,
    ),
]


@pytest.mark.parametrize(
    ("build", "expected", "note"),
    [c[1:] for c in ACCEPTED_UPLOADS],
    ids=[c[0] for c in ACCEPTED_UPLOADS],
)
def test_unusual_upload_is_accepted(app, other, tmp_path, build, expected, note):
    src = build(tmp_path)
    client = Client(app.url, verbose=False)
    info = client.predict(handle_file(str(src)), api_name="/upload")[-1]
    if expected is None:  # a cut-off file keeps what decodes
        assert 0 < info["num_frames"] < 16
    else:
        assert (info["num_frames"], info["width"], info["height"]) == expected
    if note:
        assert any(note in n for n in info["notes"]), info["notes"]
    # The last frame is shown upright, with the frame's proportions.
    shown = Image.open(client.predict(info["num_frames"] - 1, api_name="/frame")[0])
    assert abs(shown.width / shown.height - info["width"] / info["height"]) < 0.02
    assert not list(cache_dir(app).rglob(src.name))  # the upload copy was removed
    assert_served(other)


def decode_video(path) -> list[np.ndarray]:
    reader = imageio_ffmpeg.read_frames(str(path))
    w, h = next(reader)["size"]
    return [np.frombuffer(f, np.uint8).reshape(h, w, 3) for f in reader]


def test_odd_size_gives_an_aligned_overlay_video(app, tmp_path):
    """720x405 cannot be encoded as H.264 4:2:0 as is: the overlay is padded, not scaled."""
    frames = synth.make_frames(3, 405, 720)
    frames[:, ::16] = frames[:, :, ::16] = 0  # a grid of 1-pixel lines shows any offset
    clip = synth.write_video(tmp_path / "odd.mp4", frames, pix_fmt="yuv444p")
    client = Client(app.url, verbose=False)
    info = client.predict(handle_file(str(clip)), api_name="/upload")[-1]
    assert (info["width"], info["height"], info["num_frames"]) == (720, 405, 3)
    client.predict("disc", 0, api_name="/add_object")
    client.predict(0, 1, 40, 60, True, api_name="/add_point")
    # No tint, contours or labels: the overlay video must show the source pixels in place.
    result = client.predict(
        "forward", "", "", 0, 0.0, False, False, 0, "", "mm", "", api_name="/propagate"
    )
    video = decode_video(result[4])
    assert len(video) == 3 and video[0].shape == (406, 720, 3)
    assert video[0][405].max() < 20  # the added row is black padding
    for shown, source in zip(video, frames, strict=True):
        aligned = np.abs(shown[:405].astype(int) - source).mean()
        # A picture scaled to even sizes would be off by up to a few pixels at the bottom.
        bottom = np.abs(shown[360:405].astype(int) - source[360:]).mean()
        moved = np.abs(shown[362:405].astype(int) - source[360:403]).mean()
        assert aligned < 6 and bottom < 6 and moved > bottom + 5, (aligned, bottom, moved)
    masks = next(f for f in result[5] if f.endswith("sam2web_masks.zip"))
    with zipfile.ZipFile(masks) as zf:
        first = sorted(n for n in zf.namelist() if n.endswith(".png"))[0]
        assert Image.open(zf.open(first)).size == (720, 405)


# --------------------------------------------------------------------------------------
# Bad event payloads


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """8 frames, 160x120, two moving discs."""
    return synth.write_video(
        tmp_path_factory.mktemp("clip") / "discs.mp4", synth.make_frames(8, 120, 160), fps=8
    )


@pytest.fixture(scope="module")
def user(app, clip):
    """A session with the clip and one object ("disc", id 1) clicked on frame 0."""
    client = Client(app.url, verbose=False)
    client.predict(handle_file(str(clip)), api_name="/upload")
    client.predict("disc", 0, api_name="/add_object")
    client.predict(0, 1, 40, 60, True, api_name="/add_point")
    return client


BAD_EVENTS = [
    ("click-outside", "/add_point", (0, 1, 500, 10, True), "outside the 160x120 image"),
    ("click-left-of-image", "/add_point", (0, 1, -3, 10, True), "outside the 160x120 image"),
    ("click-without-x", "/add_point", (0, 1, None, 10, True), "no valid position"),
    ("click-without-y", "/add_point", (0, 1, 10, None, True), "no valid position"),
    (
        "click-without-frame",
        "/add_point",
        (None, 1, 10, 10, True),
        "frame number is missing or not a whole number; pick a frame from 0 to 7",
    ),
    (
        "click-on-frame-not-loaded",
        "/add_point",
        (99, 1, 10, 10, True),
        "does not exist|greater than maximum value",
    ),
    ("click-for-unknown-object", "/add_point", (0, 7, 10, 10, True), "does not exist"),
    ("box-without-corner", "/add_box", (0, 1, 10, 10, None, 20), "two corners"),
    ("undo-with-nothing-to-undo", "/undo", (5,), "nothing to undo"),
    ("undo-on-frame-not-loaded", "/undo", (99,), "does not exist|greater than maximum value"),
]


@pytest.mark.parametrize(
    ("call", "args", "words"), [c[1:] for c in BAD_EVENTS], ids=[c[0] for c in BAD_EVENTS]
)
def test_bad_event_is_refused_cleanly(app, other, user, call, args, words):
    message = refused(app, other, call, *args, client=user)
    assert re.search(words, message), message
    # The session goes on working.
    assert Path(user.predict(2, api_name="/frame")[0]).is_file()


def test_prompt_for_a_removed_object(app, other, user):
    status = user.predict("temporary", 0, api_name="/add_object")[1]
    assert "Added temporary" in status
    user.predict(0, 2, 120, 40, True, api_name="/add_point")
    user.predict(0, api_name="/remove_object")  # removes the active object, id 2
    message = refused(app, other, "/add_point", 0, 2, 120, 40, True, client=user)
    assert "does not exist (it may have been removed)" in message
    user.predict(0, 1, 40, 60, True, api_name="/add_point")  # object 1 still works


def test_track_without_clicks_and_export_before_tracking(app, other, clip):
    client = Client(app.url, verbose=False)
    client.predict(handle_file(str(clip)), api_name="/upload")
    message = refused(app, other, "/export", 0, 0.5, True, True, 0, "", "mm", "", client=client)
    assert "Nothing is tracked yet" in message
    message = refused(app, other, "/propagate", *TRACK_ARGS, client=client)
    assert "Add an object and click on it before tracking" in message
    client.predict("disc", 0, api_name="/add_object")
    message = refused(app, other, "/propagate", *TRACK_ARGS, client=client)
    assert "has no clicks yet" in message
    message = refused(app, other, "/measure", 0, 0.5, True, True, 0, "", "mm", "", client=client)
    assert "Nothing is tracked yet" in message


def read_rows(files) -> list[dict]:
    path = next(f for f in files if f.endswith("sam2web_tracks.csv"))
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_two_propagations_at_once_in_one_session(app, other, user):
    """Both end: each either tracks every frame or is refused in one sentence (never a
    mix of the two runs), and at least one of them tracks."""
    jobs = [user.submit(*TRACK_ARGS, api_name="/propagate") for _ in range(2)]
    finished, refusals = [], []
    for job in jobs:
        try:
            finished.append(job.result(timeout=300))
        except Exception as err:  # gradio_client's AppError carries the sentence
            refusals.append(str(err))
    assert finished, refusals
    for message in refusals:
        assert_one_clear_sentence(message, app)
        assert re.search(r"busy with another action|Tracking is running", message), message
    tables = []
    for result in finished:
        assert "Tracked 8 frames" in result[1], result[1]
        rows = read_rows(result[5])
        assert len(rows) == 8 and {r["object_name"] for r in rows} == {"disc"}
        assert [int(r["frame"]) for r in rows] == list(range(8))
        tables.append([(r["frame"], r["present"], r["area_px"]) for r in rows])
    assert all(t == tables[0] for t in tables)  # the same clicks give the same masks
    assert_served(other)


def test_second_click_while_tracking(app, other, tmp_path):
    """A user's own click while their tracking runs (held by the server after frame 3 of
    20) is refused in one sentence (the run would not include it); the run goes on once let
    go, and the same click works once it ended."""
    clip = synth.write_video(tmp_path / "run.mp4", synth.make_frames(20, 120, 160), fps=10)
    client = Client(app.url, verbose=False)
    before = session_folders(app)
    client.predict(handle_file(str(clip)), api_name="/upload")
    (name,) = session_folders(app) - before
    folder = app.data_dir / name
    client.predict("disc", 0, api_name="/add_object")
    client.predict(0, 1, 40, 60, True, api_name="/add_point")
    app.gate.hold(folder, after=3)
    job = client.submit(*TRACK_ARGS, api_name="/propagate")
    try:
        assert app.gate.held(folder) == {"frames": 3}, "tracking did not reach frame 3"
        with pytest.raises(Exception) as refused:
            client.predict(3, 1, 44, 62, True, api_name="/add_point")
        assert not job.done(), "the run ended before the click was answered"
    finally:
        app.gate.release(folder)
    assert_one_clear_sentence(str(refused.value), app)
    assert "Tracking is running; wait for it to finish or press Cancel first." in str(refused.value)
    assert "Tracked 20 frames" in job.result(timeout=300)[1]
    assert app.gate.ended(folder) == {"frames": 20, "closed": False}
    with pytest.raises(Exception, match="nothing to undo for this object on this frame"):
        client.predict(3, api_name="/undo")  # the refused click was not recorded
    answer = client.predict(3, 1, 44, 62, True, api_name="/add_point")
    assert answer[1] == "1 object(s); 20 of 20 frames have masks."
    assert_served(other)


def test_a_client_gone_mid_run_stops_its_run_and_frees_its_session(app, other, tmp_path):
    """A connection that ends (its heartbeat stream closes) runs the page's unload for its
    session. An API client's session is never kept under a browser's token (a page's is,
    until its idle expiry: tests/session/test_keeper.py), so the unload closes it: the run,
    held by the server after frame 3 of 20, tracks no further frame, and the session's
    files are removed once the run let go of them; the server keeps serving."""
    frames, held_at = 20, 3
    long_clip = synth.write_video(
        tmp_path / "long.mp4", synth.make_frames(frames, 120, 160), fps=10
    )
    client = Client(app.url, verbose=False)
    before = session_folders(app)
    client.predict(handle_file(str(long_clip)), api_name="/upload")
    (name,) = session_folders(app) - before
    folder = app.data_dir / name
    client.predict("disc", 0, api_name="/add_object")
    client.predict(0, 1, 40, 60, True, api_name="/add_point")
    app.gate.hold(folder, after=held_at)
    # The page keeps a heartbeat stream open; a closed tab ends it, and the server then
    # runs the page's unload for that session.
    heartbeat = f"{app.url}gradio_api/heartbeat/{client.session_hash}"
    with httpx.stream("GET", heartbeat, timeout=30) as response:
        lines = response.iter_lines()  # dropping this iterator would close the stream
        next(lines)
        job = client.submit(*TRACK_ARGS, api_name="/propagate")
        assert app.gate.held(folder) == {"frames": held_at}, "the run did not reach frame 3"
        assert len(list((folder / "masks").glob("*.npz"))) == held_at  # frames 0, 1, 2
        assert not job.done()
    # The stream is closed: the client is gone while its run is held.
    ended = app.gate.ended(folder)
    assert ended == {"frames": held_at, "closed": True}, f"the run went on: {ended}"
    assert app.gate.finished(folder) == {"phase": "cancelled"}
    assert not folder.exists(), "the closed session kept its files"
    ending = threading.Thread(target=_wait, args=(job,), daemon=True)
    ending.start()
    ending.join(120)
    assert not ending.is_alive(), "the request of the closed session did not end"
    assert not folder.exists(), "an ending request wrote the files again"
    assert_served(other)


def _wait(job) -> None:
    with contextlib.suppress(Exception):  # cancelled or failed: the tab is gone
        job.result(timeout=120)


# --------------------------------------------------------------------------------------
# What the page shows


@pytest.mark.browser
def test_page_shows_the_sentences(app, tmp_path):
    """Gradio's own size check speaks first, in its toast; a refused file's sentence is in
    the guide line while no video is shown (in the status line under it once one is)."""
    sync_api = pytest.importorskip("playwright.sync_api")
    from tests.browser import CHROMIUM, CHROMIUM_ARGS

    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM}")
    big = tmp_path / "big.mp4"
    big.write_bytes(np.random.default_rng(1).bytes(1536 * 1024))
    bad = tmp_path / "holiday.mp4"
    bad.write_bytes(np.random.default_rng(2).bytes(5000))
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page()
        page.set_default_timeout(60_000)
        try:
            page.goto(app.url)
            page.locator("#upload input[type=file]").set_input_files(str(big))
            toast = page.locator(".toast-body").first
            toast.wait_for()
            too_big = toast.inner_text()
            page.goto(app.url)
            page.locator("#upload input[type=file]").set_input_files(str(bad))
            refused = "The file 'holiday.mp4' is not a video or image sequence sam2web can read"
            page.locator("#guide").get_by_text(refused).wait_for()  # no video yet
        finally:
            browser.close()
    assert 'exceed the maximum allowed size of 1.0 Mb: "big.mp4"' in too_big


def test_server_logged_no_unexpected_error(app, tmp_path):
    """Refused inputs must not reach the generic 'Something went wrong' path, which logs
    'unexpected error' with a traceback. The test makes its own requests first (an upload,
    a file that is no video, an export before tracking, a click outside the frame, a click
    on the disc), so run alone it checks those; after the module's other tests it
    checks theirs too, as it reads the server's whole log.

    It can fail: with the refusal of a text file in sam2web/media/ingest.py raising a plain
    ValueError instead of its MediaError, that upload still got one sentence (the generic
    one, which passes ``refused``), and this test, run alone, failed on the log's
    'unexpected error' and its traceback."""
    clip = synth.write_video(tmp_path / "log.mp4", synth.make_frames(4, 120, 160), fps=4)
    client = Client(app.url, verbose=False)
    assert client.predict(handle_file(str(clip)), api_name="/upload")[-1]["num_frames"] == 4
    fake = tmp_path / "notes.mp4"
    fake.write_bytes(b"these are notes, not a video\n" * 20)
    refused(app, client, "/upload", handle_file(str(fake)))
    message = refused(app, client, "/export", 0, 0.5, True, True, 0, "", "mm", "", client=client)
    assert "Nothing is tracked yet" in message
    client.predict("disc", 0, api_name="/add_object")
    message = refused(app, client, "/add_point", 0, 1, 500, 10, True, client=client)
    assert "outside the 160x120 image" in message
    answer = client.predict(0, 1, 40, 60, True, api_name="/add_point")
    assert answer[1] == "1 object(s); 1 of 4 frames have masks."
    log = app.log()
    assert log.strip(), "the server wrote no log at all"
    assert "unexpected error" not in log
    # A refused file's decoder error is kept at INFO with its traceback, for diagnosis; a
    # traceback in a warning or an error is something the server did not expect.
    records = re.split(r"\n(?=\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ )", log)
    alarming = [
        r for r in records if "Traceback" in r and not re.match(r"\S+ \S+ (INFO|DEBUG) ", r)
    ]
    assert not alarming, alarming[0][:2000]
