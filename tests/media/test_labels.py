"""Label images (PNG and TIFF, 8/16-bit) read into masks, and every way they can be wrong."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
import tifffile
from PIL import Image

from sam2web.media.labels import LabelImageError, read_label_array, read_label_image, split_labels
from sam2web.outputs.maskfiles import write_masks_zip
from sam2web.tracking.maskstore import MaskStore
from sam2web.types import TrackedObject, VideoInfo


def labels_image(height: int = 30, width: int = 40, ids=(1, 2, 7)) -> np.ndarray:
    """Rectangles of known pixels: id k covers rows 2..9, columns 4k..4k+3."""
    arr = np.zeros((height, width), dtype=np.int64)
    for k in ids:
        arr[2:10, 4 * (k % 10) : 4 * (k % 10) + 4] = k
    return arr


def png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def tiff(arr: np.ndarray, **kwargs) -> bytes:
    buf = io.BytesIO()
    tifffile.imwrite(buf, arr, **kwargs)
    return buf.getvalue()


def check_sentence(err: pytest.ExceptionInfo, *words: str) -> str:
    message = str(err.value)
    assert type(err.value) is LabelImageError and message == err.value.message
    assert message[0].isupper() and message.endswith(".") and "\n" not in message
    assert not re.search(r"[.!?]\s", message[:-1]), message
    for w in words:
        assert w in message, message
    return message


def expect_masks(masks: dict, arr: np.ndarray) -> None:
    ids = sorted(int(i) for i in np.unique(arr) if i)
    assert list(masks) == ids
    for k, m in masks.items():
        assert m.dtype == bool and np.array_equal(m, arr == k)


@pytest.mark.parametrize(
    ("encode", "dtype"),
    [
        (lambda a: png(a.astype(np.uint8)), np.uint8),
        (lambda a: png(a.astype(np.uint16)), np.uint16),
        (lambda a: tiff(a.astype(np.uint8)), np.uint8),
        (lambda a: tiff(a.astype(np.uint16)), np.uint16),
        (lambda a: tiff(a.astype(np.int32)), np.int32),
        (lambda a: tiff(a.astype(np.float32)), np.float32),
    ],
)
def test_png_and_tiff_labels(encode, dtype):
    arr = labels_image(ids=(1, 2, 7))
    if dtype == np.uint16:
        arr[20:25, 0:5] = 40000
    expect_masks(read_label_image(encode(arr), size=(40, 30)), arr)


def test_from_a_path_and_a_tiff_stack(tmp_path):
    stack = np.stack([labels_image(ids=(1,)), labels_image(ids=(3, 4))]).astype(np.uint16)
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, stack)
    expect_masks(read_label_image(path, frame=1), stack[1])
    with pytest.raises(LabelImageError) as err:
        read_label_image(path, frame=2, name="stack.tif")
    check_sentence(err, "'stack.tif' has 2 frames", "no frame 2", "from 0 to 1")
    with pytest.raises(TypeError):
        read_label_image(str(path))


def test_palette_png_and_equal_channel_rgb_are_labels():
    arr = labels_image().astype(np.uint8)
    img = Image.fromarray(arr, mode="L").convert("P")
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    assert np.array_equal(read_label_array(buf.getvalue()), np.asarray(img))
    grey_rgb = np.repeat(arr[:, :, None], 3, axis=2)
    expect_masks(read_label_image(png(grey_rgb)), arr)


def test_reads_what_the_masks_zip_writes(tmp_path):
    import zipfile

    store = MaskStore(tmp_path / "m", 30, 40)
    arr = labels_image(ids=(1, 2))
    store.write(0, {1: arr == 1, 2: arr == 2}, {1: 1.0, 2: 1.0})
    objects = [TrackedObject(1, "a", (1, 2, 3)), TrackedObject(2, "b", (1, 2, 3))]
    out = write_masks_zip(store, objects, VideoInfo(1, 40, 30, 1.0, "x", "video"), tmp_path / "z")
    with zipfile.ZipFile(out) as zf:
        data = zf.read("masks/00000.png")
    expect_masks(read_label_image(data, size=(40, 30)), arr)


def test_wrong_size_names_both_sizes():
    with pytest.raises(LabelImageError) as err:
        read_label_image(png(labels_image().astype(np.uint8)), size=(1280, 720), name="cells.png")
    check_sentence(err, "'cells.png' is 40x30 pixels", "frames are 1280x720")


def test_too_many_labels():
    arr = np.arange(1, 13, dtype=np.uint8).reshape(3, 4)
    with pytest.raises(LabelImageError) as err:
        read_label_image(png(arr), max_labels=10)
    check_sentence(err, "12 labels", "more than the 10 allowed")
    assert len(read_label_image(png(arr), max_labels=12)) == 12


def test_empty_image():
    with pytest.raises(LabelImageError) as err:
        read_label_image(png(np.zeros((5, 5), np.uint8)))
    check_sentence(err, "no labels")


def test_colour_picture_is_refused():
    rgb = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    for data in (png(rgb), tiff(rgb, photometric="rgb")):
        with pytest.raises(LabelImageError) as err:
            read_label_image(data)
        check_sentence(err, "colour picture")


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"\x89PNG\r\n\x1a\n" + bytes(100), "cannot be read"),
        (b"II*\x00" + np.random.default_rng(1).bytes(300), "cannot be read"),
        (b"hello, not an image", "cannot be read"),
        (b"\xff\xd8\xff\xe0" + bytes(50), "JPEG"),
    ],
)
def test_damaged_or_wrong_files(data, words):
    with pytest.raises(LabelImageError) as err:
        read_label_image(data)
    check_sentence(err, words)


def test_values_that_are_not_object_numbers():
    for arr in (np.full((4, 4), -3, np.int16), np.full((4, 4), 1.5, np.float32)):
        with pytest.raises(LabelImageError) as err:
            read_label_image(tiff(arr))
        check_sentence(err, "not object numbers")


def test_truncated_png(tmp_path):
    data = png(labels_image().astype(np.uint8))
    with pytest.raises(LabelImageError) as err:
        read_label_image(data[: len(data) // 2])
    check_sentence(err, "cannot be read")
    with pytest.raises(LabelImageError):
        split_labels(np.zeros((2, 2), int))
