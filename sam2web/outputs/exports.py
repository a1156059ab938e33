"""Every file sam2web writes from tracking results, in one place.

Tables: the per-frame measurements CSV (:func:`write_csv`), the calibrated CSV and the
per-object summary. Masks: a zip of label images, a NumPy ``.npz`` and COCO run-length
encoding, each a :class:`~sam2web.analysis.results.FrameSink` fed once per frame by the one pass over
the stored masks (:mod:`sam2web.analysis.results`). :class:`ExportRun` bundles the sinks of one run;
:func:`write_row_files` writes what is derived from the measurements alone.

Coordinates follow :mod:`sam2web.types` (see :mod:`sam2web.analysis.results` for centroids and
boxes).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
from PIL import Image

from ..analysis.identity import fill_gaps
from ..analysis.results import CSV_COLUMNS, MeasurementSink, Results, walk
from ..analysis.rowtools import safe_cell
from ..analysis.tables import (
    SUMMARY_COLUMNS,
    Calibration,
    ObjectSummary,
    calibrated_columns,
    calibrated_rows,
    plot_confidence,
    plot_trajectories,
    summarize,
)
from ..fileio import write_bytes_atomic
from ..tracking.maskstore import MaskStore, label_image
from ..types import FrameResult, Measurement, Progress, TrackedObject, VideoInfo
from .render import OverlayStyle
from .video import LiveOverlayVideo, render_overlay_video

# Files written for a run, by key; fixed names in the session's own exports folder.
FILES = {
    "video": "sam2web_overlay.mp4",
    "csv": "sam2web_tracks.csv",
    "masks": "sam2web_masks.zip",
    "summary": "sam2web_summary.csv",
    "calibrated": "sam2web_tracks_calibrated.csv",
    "trajectories": "sam2web_trajectories.png",
    "confidence": "sam2web_confidence.png",
    "npz": "sam2web_masks.npz",
    "coco": "sam2web_masks_coco.json",
}
MASK_FILES = ("masks", "npz", "coco")  # written from the masks, in the one pass
ROW_FILES = ("csv", "calibrated", "summary", "trajectories", "confidence")  # from the rows


def _fmt(value, digits: int) -> str:
    if value is None:
        return ""
    value = float(value)
    return "" if math.isnan(value) else f"{value:.{digits}f}"


def _int(value) -> str:
    return "" if value is None else str(int(value))


def write_csv(
    rows: Iterable[Measurement], path: Path, interpolated: list[bool] | None = None
) -> Path:
    """Write measurements as UTF-8 CSV with the columns of :data:`CSV_COLUMNS`, and a last
    column ``interpolated`` (1 or 0 per row) when ``interpolated`` is given.

    Empty cells stand for "no value" (absent object, unknown score). ``present`` is 1 or 0;
    time_s has 6 decimals, centroids 3, scores 4. Object names pass through
    :func:`safe_cell`. The file is written under a temporary name and renamed when complete.
    """
    buf = io.StringIO(newline="")
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS if interpolated is None else (*CSV_COLUMNS, "interpolated"))
    for i, r in enumerate(rows):
        extra = [] if interpolated is None else [1 if interpolated[i] else 0]
        writer.writerow(
            [
                r.frame,
                _fmt(r.time_s, 6),
                r.object_id,
                safe_cell(r.object_name),
                1 if r.present else 0,
                _fmt(r.score, 4),
                _int(r.area_px),
                _fmt(r.centroid_x, 3),
                _fmt(r.centroid_y, 3),
                _int(r.bbox_x),
                _int(r.bbox_y),
                _int(r.bbox_w),
                _int(r.bbox_h),
                *extra,
            ]
        )
    return write_bytes_atomic(Path(path), buf.getvalue().encode("utf-8"))


def write_calibrated_csv(
    rows: Iterable[Measurement],
    cal: Calibration,
    path: Path,
    interpolated: list[bool] | None = None,
) -> Path:
    """Write :func:`calibrated_rows` as UTF-8 CSV (header = :func:`calibrated_columns`,
    and ``interpolated`` last when given, as in :func:`write_csv`).

    Empty cells mean "no value"; ``present`` is 1/0; pixel columns use the formatting of
    :func:`sam2web.outputs.exports.write_csv`; calibrated columns keep 8 significant digits.
    """
    columns = calibrated_columns(cal)
    pixel_digits = {"time_s": 6, "score": 4, "centroid_x": 3, "centroid_y": 3}
    buf = io.StringIO(newline="")
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns if interpolated is None else [*columns, "interpolated"])
    for i, row in enumerate(calibrated_rows(rows, cal)):
        cells = []
        for name in columns:
            value = row[name]
            if name == "object_name":
                cells.append(safe_cell(value))
            elif name == "present":
                cells.append(1 if value else 0)
            elif name in pixel_digits:
                cells.append(_fixed(value, pixel_digits[name]))
            elif name in CSV_COLUMNS:
                cells.append("" if value is None else str(int(value)))
            else:
                cells.append(_general(value))
        if interpolated is not None:
            cells.append(1 if interpolated[i] else 0)
        writer.writerow(cells)
    return write_bytes_atomic(Path(path), buf.getvalue().encode("utf-8"))


def _fixed(value, digits: int) -> str:
    if value is None or math.isnan(float(value)):
        return ""
    return f"{float(value):.{digits}f}"


def _general(value) -> str:
    if value is None or math.isnan(float(value)):
        return ""
    return f"{float(value):.8g}"


def write_summary_csv(summaries: Iterable[ObjectSummary], path: Path) -> Path:
    """Write summaries as UTF-8 CSV with :data:`SUMMARY_COLUMNS` (empty cell = None).

    total_distance is in ``unit``, mean_speed and max_speed in ``unit``/s, mean_area in
    ``unit``² (the unit column says which).
    """
    buf = io.StringIO(newline="")
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(SUMMARY_COLUMNS)
    for s in summaries:
        writer.writerow(
            [
                s.object_id,
                safe_cell(s.object_name),
                s.frames_present,
                "" if s.first_frame is None else s.first_frame,
                "" if s.last_frame is None else s.last_frame,
                _general(s.total_distance),
                _general(s.mean_speed),
                _general(s.max_speed),
                _general(s.mean_area),
                safe_cell(s.unit),
            ]
        )
    return write_bytes_atomic(Path(path), buf.getvalue().encode("utf-8"))


def _padding(info: VideoInfo) -> int:
    """Digits of the zero-padded frame numbers in mask file names (at least five)."""
    return max(5, len(str(max(info.num_frames - 1, 0))))


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

    ``masks/00000.png`` ... hold frame 0, 1, ... (zero-padded frame index, at least five
    digits). Pixel value = object id, 0 = background; frames without results are all zero,
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
        name = f"masks/{frame_idx:0{self.digits}d}.png"
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

    - ``frames`` int64 (T,): frame indices that have a result for some object;
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
            "frames": np.asarray(self.frames, dtype=np.int64),
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

    - ``images``: one per frame of the video, ``id`` = frame index, ``file_name`` the
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
        digits = _padding(info)
        header = {
            "info": {
                "description": f"Object masks for {info.source_name}",
                "fps": info.fps,
                "num_frames": info.num_frames,
            },
            "images": [
                {
                    "id": f,
                    "file_name": f"{f:0{digits}d}.png",
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
                "image_id": frame_idx,
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


# ---------------------------------------------------------------------------- a run's exports
class ExportRun:
    """The sinks of one pass over a run's stored masks: the measurements and every mask
    file, written into ``out_dir`` under :data:`FILES` names. Feed it (as sinks of
    :func:`~sam2web.analysis.results.walk` or of the overlay video's pass), then :meth:`finish`."""

    def __init__(
        self, out_dir: Path, objects: Iterable[TrackedObject], info: VideoInfo, history_length: int
    ):
        self.objects = list(objects)
        self.info = info
        self.history_length = history_length
        self.measurements = MeasurementSink(self.objects, info)
        self.writers = {
            "masks": MasksZipSink(Path(out_dir) / FILES["masks"], self.objects, info),
            "npz": NpzSink(Path(out_dir) / FILES["npz"], self.objects, info),
            "coco": CocoSink(Path(out_dir) / FILES["coco"], self.objects, info),
        }

    @property
    def sinks(self) -> list:
        return [self.measurements, *self.writers.values()]

    def add(self, frame_idx: int, result: FrameResult | None) -> None:
        for sink in self.sinks:
            sink.add(frame_idx, result)

    def finish(self) -> Results:
        files = {key: sink.finish() for key, sink in self.writers.items()}
        return Results(self.info, self.objects, self.measurements.rows, self.history_length, files)

    def abort(self) -> None:
        for sink in self.sinks:
            sink.abort()


def write_row_files(
    results: Results,
    calibration: Calibration,
    first_frame: np.ndarray,
    out_dir: Path,
    max_gap: int = 0,
) -> dict[str, Path]:
    """Write the files derived from the measurements alone (:data:`ROW_FILES`): the
    per-frame CSV, the calibrated CSV, the per-object summary and the trajectory and
    confidence plots. Returns {key: path}; the masks are not read. With ``max_gap`` > 0
    the per-frame CSVs (pixels and calibrated) bridge absences of up to that many frames
    (:func:`sam2web.analysis.identity.fill_gaps`) and mark those rows in an ``interpolated``
    column; the summary and plots keep the tracked rows."""
    out = {key: Path(out_dir) / FILES[key] for key in ROW_FILES}
    rows, objects = results.rows, results.objects
    if max_gap > 0:
        filled, flags = fill_gaps(rows, max_gap)
        write_csv(filled, out["csv"], interpolated=flags)
        write_calibrated_csv(filled, calibration, out["calibrated"], interpolated=flags)
    else:
        write_csv(rows, out["csv"])
        write_calibrated_csv(rows, calibration, out["calibrated"])
    write_summary_csv(summarize(rows, objects, calibration), out["summary"])
    plot_trajectories(first_frame, rows, objects, out["trajectories"])
    plot_confidence(rows, objects, out["confidence"])
    return out


class LiveExports:
    """The overlay video and every mask export, produced by one pass over the stored masks
    that runs beside tracking (:class:`~sam2web.outputs.render.LiveOverlayVideo`): each frame is
    read once, when it is final, and feeds the video and an :class:`ExportRun`."""

    def __init__(
        self,
        read_rgb: Callable[[int], np.ndarray],
        store: MaskStore,
        objects: Iterable[TrackedObject],
        info: VideoInfo,
        style: OverlayStyle,
        out_dir: Path,
        pending: Iterable[int],
        history_length: int,
    ):
        objects = list(objects)
        self.style = style
        self.run = ExportRun(out_dir, objects, info, history_length)
        self.video = LiveOverlayVideo(
            read_rgb,
            info.num_frames,
            store,
            {o.obj_id: o for o in objects},
            style,
            Path(out_dir) / FILES["video"],
            info.fps,
            pending=pending,
            sinks=self.run.sinks,
        )

    def frame_done(self, frame_idx: int) -> None:
        self.video.frame_done(frame_idx)

    def finish(self, progress: Progress | None = None) -> tuple[Path, Results]:
        """Wait for the pass to end (every pending frame is final now); the video and the
        run's results."""
        try:
            video = self.video.finish(progress)
        except BaseException:
            self.run.abort()
            raise
        return video, self.run.finish()

    def abort(self) -> None:
        self.video.abort()
        self.run.abort()


def export_pass(
    read_rgb: Callable[[int], np.ndarray] | None,
    store: MaskStore,
    objects: Iterable[TrackedObject],
    info: VideoInfo,
    style: OverlayStyle,
    out_dir: Path,
    history_length: int,
    progress: Progress | None = None,
) -> tuple[Path | None, Results]:
    """One pass over every frame's stored masks, now: the overlay video (unless
    ``read_rgb`` is None) and every mask export from the same reads."""
    objects = list(objects)
    run = ExportRun(out_dir, objects, info, history_length)
    if read_rgb is None:
        walk(store, range(info.num_frames), run.sinks, progress, finish=False)
        return None, run.finish()
    frames = ((i, read_rgb(i)) for i in range(info.num_frames))
    try:
        video = render_overlay_video(
            frames,
            store,
            {o.obj_id: o for o in objects},
            style,
            Path(out_dir) / FILES["video"],
            info.fps,
            progress=progress,
            total=info.num_frames,
            sinks=run.sinks,
        )
    except BaseException:
        run.abort()
        raise
    return video, run.finish()


class SessionResults:
    """A session's results and the files written from them, kept current with as few
    passes over the stored masks as possible: the pass beside the last run when it still
    applies (nothing changed since, same overlay style), else one new pass."""

    def __init__(self) -> None:
        self.live: LiveExports | None = None
        self.results: Results | None = None
        self.video_style: OverlayStyle | None = None  # of the overlay video on disk
        self._row_files: dict[str, Path] = {}
        self._row_key: tuple | None = None  # (results, calibration) they were written for

    def start_live(
        self,
        read_rgb: Callable[[int], np.ndarray],
        store: MaskStore,
        objects: Iterable[TrackedObject],
        info: VideoInfo,
        style: OverlayStyle,
        out_dir: Path,
        pending: Iterable[int],
        history_length: int,
    ) -> LiveExports:
        """Begin the pass beside a run that will track ``pending`` frames and leave the
        history ``history_length`` actions long."""
        self.forget()
        self.live = LiveExports(
            read_rgb, store, objects, info, style, out_dir, pending, history_length
        )
        return self.live

    def current(
        self,
        read_rgb: Callable[[int], np.ndarray],
        store: MaskStore,
        objects: Iterable[TrackedObject],
        info: VideoInfo,
        style: OverlayStyle,
        out_dir: Path,
        history_length: int,
        video: bool,
        progress: Progress | None = None,
    ) -> Results:
        """The results for a history of ``history_length`` actions (with the overlay video
        on disk when ``video``), from the last pass when it still applies."""
        live, self.live = self.live, None
        if live is not None:
            if live.style == style and live.run.history_length == history_length:
                _, self.results = live.finish(progress)
                self.video_style = style
            else:
                live.abort()
        current = self.results is not None and self.results.history_length == history_length
        video_ok = (Path(out_dir) / FILES["video"]).is_file() and self.video_style == style
        if not current or (video and not video_ok):
            _, self.results = export_pass(
                read_rgb if video else None,
                store,
                objects,
                info,
                style,
                out_dir,
                history_length,
                progress,
            )
            if video:
                self.video_style = style
        return self.results

    def row_files(
        self,
        calibration: Calibration,
        first_frame: Callable[[], np.ndarray],
        out_dir: Path,
        max_gap: int = 0,
    ) -> dict[str, Path]:
        """The files of :func:`write_row_files` for the current results, ``calibration``
        and ``max_gap``, written only when they were not yet (``first_frame()`` gives the
        frame the trajectory plot is drawn on)."""
        assert self.results is not None, "no results yet"
        key = (id(self.results), calibration, max_gap)
        if key != self._row_key or not all(p.is_file() for p in self._row_files.values()):
            self._row_files = write_row_files(
                self.results, calibration, first_frame(), out_dir, max_gap
            )
            self._row_key = key
        return dict(self._row_files)

    def forget(self) -> None:
        """Drop the results (the files stay until overwritten or the folder goes)."""
        live, self.live = self.live, None
        if live is not None:
            live.abort()
        self.results = None
        self.video_style = None
        self._row_key = None
