"""The mask files written from tracking results: a zip of label images
(:class:`MasksZipSink`), a NumPy ``.npz`` (:class:`NpzSink`) and COCO run-length encoding
(:class:`CocoSink`), with the readers of the last two.

Each sink is a :class:`~sam2web.analysis.results.FrameSink` fed once per frame by the one
pass over the stored masks (:mod:`sam2web.analysis.results`), and writes its file under a
hidden temporary name that is renamed onto the final one when the pass ends. The
``write_*`` functions run one sink over every frame of a store. Coordinates follow
:mod:`sam2web.types`.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
import zipfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image

from ..analysis.results import walk
from ..analysis.rowtools import safe_cell
from ..tracking.maskstore import MaskStore, label_image
from ..types import FrameResult, Progress, TrackedObject, VideoInfo


def _padding(info: VideoInfo) -> int:
    """Digits of the zero-padded frame numbers in mask file names (at least five)."""
    return max(5, len(str(max(info.original_frame(info.num_frames - 1), 0))))


class _AtomicFile:
    """A file written under a hidden temporary name next to ``path`` (as
    :func:`~sam2web.fileio.atomic_output` does) and renamed onto it by :meth:`commit`;
    :meth:`discard` removes it. Sinks hold one open across frames."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(
            prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent
        )
        os.close(fd)
        self.tmp = Path(tmp)

    def commit(self) -> Path:
        os.replace(self.tmp, self.path)
        return self.path

    def discard(self) -> None:
        self.tmp.unlink(missing_ok=True)


class MasksZipSink:
    """A zip of label images, one PNG per frame of the video, plus README.txt and
    objects.csv.

    ``masks/00000.png`` ... hold frame 0, 1, ... (zero-padded frame number of the original
    video, at least five digits: with a frame step N the names are 0, N, 2N, ...). Pixel value = object id, 0 = background; frames without results are all zero,
    so the archive always has one image per frame. Only the listed objects are drawn; where
    two overlap, the later one in ``objects`` wins. Images are 8-bit greyscale PNGs when
    every id is below 256, else 16-bit.
    """

    def __init__(self, path: Path, objects: Iterable[TrackedObject], info: VideoInfo):
        self.objects = list(objects)
        self.info = info
        self.order = [o.obj_id for o in self.objects]
        self.sixteen_bit = any(i >= 256 for i in self.order)
        self.digits = _padding(info)
        self._file = _AtomicFile(path)
        self._zip = zipfile.ZipFile(self._file.tmp, "w", compression=zipfile.ZIP_STORED)
        readme = _readme(self.objects, info, self.digits, self.sixteen_bit)
        self._zip.writestr("README.txt", readme, compress_type=zipfile.ZIP_DEFLATED)
        self._zip.writestr(
            "objects.csv", _objects_csv(self.objects), compress_type=zipfile.ZIP_DEFLATED
        )

    def add(self, frame_idx: int, result: FrameResult | None) -> None:
        labels = label_image(result, self.info.height, self.info.width, self.order)
        image = Image.fromarray(labels if self.sixteen_bit else labels.astype(np.uint8))
        buf = io.BytesIO()
        image.save(buf, format="PNG", optimize=False, compress_level=6)
        # PNG data is already deflated; storing it again compressed gains nothing.
        name = f"masks/{self.info.original_frame(frame_idx):0{self.digits}d}.png"
        self._zip.writestr(name, buf.getvalue(), compress_type=zipfile.ZIP_STORED)

    def finish(self) -> Path:
        self._zip.close()
        return self._file.commit()

    def abort(self) -> None:
        self._zip.close()
        self._file.discard()


def write_masks_zip(
    store: MaskStore,
    objects: Iterable[TrackedObject],
    info: VideoInfo,
    path: Path,
    progress: Progress | None = None,
) -> Path:
    """:class:`MasksZipSink` over every frame of the store."""
    sink = MasksZipSink(path, objects, info)
    walk(store, range(info.num_frames), [sink], progress)
    return Path(path)


def _objects_csv(objects: list[TrackedObject]) -> str:
    buf = io.StringIO(newline="")
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(("id", "name", "color"))
    for o in objects:
        r, g, b = o.color
        writer.writerow((o.obj_id, safe_cell(o.name), f"#{r:02x}{g:02x}{b:02x}"))
    return buf.getvalue()


def _readme(objects: list[TrackedObject], info: VideoInfo, digits: int, sixteen_bit: bool) -> str:
    depth = "16-bit" if sixteen_bit else "8-bit"
    lines = [
        f"Object masks for {info.source_name}",
        "",
        f"masks/ holds one {depth} greyscale PNG per frame of the video ({info.num_frames} "
        f"frames, {info.width}x{info.height} pixels), named by the frame number counted from",
        f"0 and padded to {digits} digits: masks/{0:0{digits}d}.png is the first frame.",
        f"Frame n starts at n / {info.fps:g} seconds.",
        *(
            [
                f"Every {info.frame_step}-frame step of the original was tracked: frame "
                f"numbers are the original's (0, {info.frame_step}, {2 * info.frame_step}, ...).",
            ]
            if info.frame_step > 1
            else []
        ),
        "",
        "Each pixel holds the id of the object covering it; 0 is background. Where two",
        "objects overlap, the pixel holds the id of the object listed later below. A frame",
        "with no tracked object is all zeros. Image viewers show these small values as",
        "near-black; open them with an image-analysis tool (Python, ImageJ/Fiji).",
        "",
        "Objects (also in objects.csv, with their display colour):",
    ]
    lines += [f"  {o.obj_id}: {o.name}" for o in objects] or ["  (none)"]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------- npz
def _npy_header(shape: tuple[int, ...], dtype) -> bytes:
    from numpy.lib import format as npy

    buf = io.BytesIO()
    npy.write_array_header_1_0(
        buf,
        {
            "descr": npy.dtype_to_descr(np.dtype(dtype)),
            "fortran_order": False,
            "shape": tuple(int(s) for s in shape),
        },
    )
    return buf.getvalue()


class NpzSink:
    """Masks and scores as a compressed ``.npz`` (a zip of ``.npy`` files, as written by
    :func:`numpy.savez_compressed`).

    Arrays (T = frames with a result for some object, K = objects in the given order):

    - ``frames`` int64 (T,): frame numbers of the original video that have a result for
      some object (with a frame step N, multiples of N);
    - ``frame_step`` int64 (): the frame step N (1: every frame was tracked);
    - ``time_s`` float64 (T,): start time of each frame in seconds;
    - ``object_ids`` int64 (K,), ``object_names`` str (K,);
    - ``scores`` float64 (T, K): SAM2's object score logit, NaN where not stored;
    - ``masks_packed`` uint8 (T, K, ceil(H*W/8)): each (H, W) mask flattened row-major and
      packed with :func:`numpy.packbits`; an object without a result is all zero;
    - ``shape`` int64 (4,): (T, K, H, W).

    Unpack with ``np.unpackbits(d["masks_packed"], axis=-1, count=H*W).reshape(T, K, H,
    W).astype(bool)``, or use :func:`read_npz`. T is known only after the last frame, so
    packed masks are spooled to a temporary file beside the output until then.
    """

    def __init__(self, path: Path, objects: Iterable[TrackedObject], info: VideoInfo):
        self.path = Path(path)
        self.objects = list(objects)
        self.ids = [o.obj_id for o in self.objects]
        self.info = info
        self.nbytes = (info.height * info.width + 7) // 8
        self.frames: list[int] = []
        self.scores: list[list[float]] = []
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._spool = tempfile.TemporaryFile(dir=self.path.parent)  # noqa: SIM115 (held open)

    def add(self, frame_idx: int, result: FrameResult | None) -> None:
        if result is None or not any(i in result.scores for i in self.ids):
            return
        empty = bytes(self.nbytes)
        row = []
        for obj_id in self.ids:
            mask = result.masks.get(obj_id)
            row.append(float(result.scores.get(obj_id, np.nan)) if mask is not None else np.nan)
            self._spool.write(empty if mask is None else np.packbits(mask.reshape(-1)).tobytes())
        self.frames.append(frame_idx)
        self.scores.append(row)

    def finish(self) -> Path:
        t, k = len(self.frames), len(self.ids)
        arrays = {
            "frames": np.asarray(
                [self.info.original_frame(f) for f in self.frames], dtype=np.int64
            ),
            "frame_step": np.asarray(self.info.frame_step, dtype=np.int64),
            "time_s": np.asarray([self.info.time_of(f) for f in self.frames], dtype=np.float64),
            "object_ids": np.asarray(self.ids, dtype=np.int64),
            "object_names": np.asarray([o.name for o in self.objects], dtype=str),
            "scores": np.asarray(self.scores, dtype=np.float64).reshape(t, k),
            "shape": np.asarray([t, k, self.info.height, self.info.width], dtype=np.int64),
        }
        self._spool.seek(0)
        out = _AtomicFile(self.path)
        try:
            with zipfile.ZipFile(out.tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
                with zf.open("masks_packed.npy", "w", force_zip64=True) as fh:
                    fh.write(_npy_header((t, k, self.nbytes), np.uint8))
                    while block := self._spool.read(1 << 22):
                        fh.write(block)
                for name, array in arrays.items():
                    with zf.open(f"{name}.npy", "w", force_zip64=True) as fh:
                        np.lib.format.write_array(fh, array, allow_pickle=False)
        except BaseException:
            out.discard()
            raise
        finally:
            self._spool.close()
        return out.commit()

    def abort(self) -> None:
        self._spool.close()


def write_npz(
    store: MaskStore,
    objects: Iterable[TrackedObject],
    info: VideoInfo,
    path: Path,
    progress: Progress | None = None,
) -> Path:
    """:class:`NpzSink` over every frame of the store."""
    walk(store, range(info.num_frames), [NpzSink(path, objects, info)], progress)
    return Path(path)


def read_npz(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(frames (T,), object_ids (K,), masks bool (T, K, H, W)) from :class:`NpzSink`.

    Loads every mask into memory: T*K*H*W bytes.
    """
    with np.load(path, allow_pickle=False) as data:
        t, k, h, w = (int(v) for v in data["shape"])
        masks = np.unpackbits(data["masks_packed"], axis=-1, count=h * w)
        return data["frames"], data["object_ids"], masks.reshape(t, k, h, w).astype(bool)


# ---------------------------------------------------------------------------- COCO RLE
class CocoSink:
    """Masks as COCO-style JSON with run-length-encoded segmentations.

    - ``images``: one per frame tracked, ``id`` = the original video's frame number (with
      a frame step N: 0, N, 2N, ...; ``info.frame_step`` says N), ``file_name`` the
      zero-padded index as in the masks zip (``00000.png``), ``width``, ``height``,
      ``time_s``;
    - ``categories``: one per object, ``id`` = object id, ``name``;
    - ``annotations``: one per object present on a frame (non-empty mask, score > 0 or
      unknown), with ``segmentation`` {"size": [H, W], "counts": str} from
      :func:`pycocotools.mask.encode`, ``area`` (pixels), ``bbox`` [x, y, w, h] in pixels
      (pixel edges: x = first column, w = column count), ``image_id`` (frame),
      ``category_id`` (object id), ``score`` (SAM2's object score logit, null when
      unknown), ``iscrowd`` 0 and a running ``id`` from 1.
    """

    def __init__(self, path: Path, objects: Iterable[TrackedObject], info: VideoInfo):
        objects = list(objects)
        self.ids = [o.obj_id for o in objects]
        self.size = [info.height, info.width]
        self.original_frame = info.original_frame
        digits = _padding(info)
        header = {
            "info": {
                "description": f"Object masks for {info.source_name}",
                "fps": info.fps,
                "num_frames": info.num_frames,
                "frame_step": info.frame_step,
            },
            "images": [
                {
                    "id": info.original_frame(f),
                    "file_name": f"{info.original_frame(f):0{digits}d}.png",
                    "width": info.width,
                    "height": info.height,
                    "time_s": info.time_of(f),
                }
                for f in range(info.num_frames)
            ],
            "categories": [{"id": o.obj_id, "name": o.name} for o in objects],
        }
        self._file = _AtomicFile(path)
        self._fh = open(self._file.tmp, "w", encoding="utf-8")  # noqa: SIM115 (held open)
        self._fh.write(json.dumps(header, ensure_ascii=False)[:-1])
        self._fh.write(', "annotations": [')
        self._count = 0

    def add(self, frame_idx: int, result: FrameResult | None) -> None:
        from pycocotools import mask as mask_utils

        for obj_id in self.ids:
            if result is None or obj_id not in result.masks:
                continue
            score = float(result.scores.get(obj_id, math.nan))
            mask = result.masks[obj_id]
            if score <= 0.0 or not mask.any():
                continue
            rle = mask_utils.encode(np.asfortranarray(mask, dtype=np.uint8))
            x, y, w, h = (int(round(v)) for v in mask_utils.toBbox(rle))
            self._count += 1
            ann = {
                "id": self._count,
                "image_id": self.original_frame(frame_idx),
                "category_id": obj_id,
                "segmentation": {"size": self.size, "counts": rle["counts"].decode("ascii")},
                "area": int(mask.sum()),
                "bbox": [x, y, w, h],
                "score": None if math.isnan(score) else score,
                "iscrowd": 0,
            }
            self._fh.write(("" if self._count == 1 else ", ") + json.dumps(ann))

    def finish(self) -> Path:
        self._fh.write("]}\n")
        self._fh.close()
        return self._file.commit()

    def abort(self) -> None:
        self._fh.close()
        self._file.discard()


def write_coco_rle(
    store: MaskStore,
    objects: Iterable[TrackedObject],
    info: VideoInfo,
    path: Path,
    progress: Progress | None = None,
) -> Path:
    """:class:`CocoSink` over every frame of the store."""
    walk(store, range(info.num_frames), [CocoSink(path, objects, info)], progress)
    return Path(path)


def read_coco_rle(path: Path) -> dict[tuple[int, int], np.ndarray]:
    """{(frame, object id): bool mask (H, W)} decoded from :class:`CocoSink`'s file."""
    from pycocotools import mask as mask_utils

    with open(path, encoding="utf-8") as fh:
        data = json.load(fh)
    out = {}
    for ann in data["annotations"]:
        seg = ann["segmentation"]
        rle = {"size": seg["size"], "counts": seg["counts"].encode("ascii")}
        out[(int(ann["image_id"]), int(ann["category_id"]))] = mask_utils.decode(rle).astype(bool)
    return out
