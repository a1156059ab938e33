"""Masks as label images for microscopy tools: one ImageJ TIFF stack, or the Cell Tracking
Challenge (CTC) result layout.

A label image is uint16 (H, W), indexed [row, col]: 0 is background, any other value an
object. An object is drawn on a frame when it is present there: its stored mask is not
empty and its score does not say absent (score > 0, or unknown), as in
:func:`sam2web.analysis.results.measurements`. Where masks overlap, the object later in
``object_ids`` wins (default: ascending ids, so the larger id wins).

Label TIFF (:func:`write_label_tiff`): one page per frame of the video, ImageJ hyperstack
metadata with axes TYX, the frame interval (``finterval``, seconds) when the frame rate is
known, and the pixel size (X/Y resolution = pixels per unit, and ``unit``) when known.
Pixel value = object id.

CTC layout (:func:`write_ctc`), following the challenge's naming and file conventions:
``maskT.tif`` per frame (T the frame index from 0, zero-padded to 3 digits, more when the
video has over 1000 frames), uint16, plus ``res_track.txt`` with one line ``L B E P`` per
track: label, first and last frame (inclusive), parent label (0 = none). A track is one
continuous range of frames: a label appears on every frame from B to E and on no other.
An object absent for some frames and back later therefore continues under a new label
whose parent is the label it had before the gap. An object's first track keeps the
object id as its label; continuations get labels above the largest object id, numbered in
order of their first frame (then object id).

Both read masks from a :class:`~sam2web.tracking.maskstore.MaskReader`: a session passes
the view with its identity fixes applied, so the stacks carry the identities of every
other output. Zip members carry a fixed timestamp, so the same masks give the same bytes.

A video tracked every N-th frame (``VideoInfo.frame_step``) gives one page or mask file
per frame tracked, in order: page or time point T is the original video's frame T * N, and
the TIFF's ``finterval`` is N / fps, the time between two tracked frames.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..analysis.tables import frame_runs
from ..fileio import atomic_output, write_bytes_atomic, write_zip_atomic
from ..tracking.maskstore import MaskReader, label_image
from ..types import FrameResult, VideoInfo
from ..units import normalize_length_unit

Progress = Callable[[int, "int | None"], None]

MAX_LABEL = 65535


def _order(object_ids: Iterable[int] | None) -> list[int] | None:
    if object_ids is None:
        return None
    ids = [int(i) for i in object_ids]
    bad = [i for i in ids if not 0 < i <= MAX_LABEL]
    if bad:
        raise ValueError(f"object id {bad[0]} does not fit a 16-bit label image")
    return ids


def draw_labels(
    result: FrameResult | None, height: int, width: int, object_ids: list[int] | None = None
) -> np.ndarray:
    """uint16 (H, W) label image of the objects present in one frame's result (module doc);
    all zero for None."""
    return label_image(result, height, width, object_ids, present_only=True)


# ---------------------------------------------------------------------------- label TIFF
@dataclass(frozen=True)
class LabelStack:
    """A label TIFF read back: ``labels`` uint16 (T, H, W); interval in seconds and pixel
    size in ``pixel_unit`` per pixel, None when the file does not say."""

    labels: np.ndarray
    frame_interval_s: float | None
    pixel_size: float | None
    pixel_unit: str | None


def _imagej_unit(unit: str) -> str:
    # ImageJ's own spelling of micrometre; its TIFF description is ASCII.
    return "micron" if unit == "µm" else unit


def write_label_tiff(
    store: MaskReader,
    info: VideoInfo,
    path: Path,
    object_ids: Iterable[int] | None = None,
    progress: Progress | None = None,
) -> Path:
    """Write every frame of the video as one uint16 ImageJ TIFF stack (module doc); frames
    are drawn and written one at a time. Returns ``path``."""
    import tifffile

    order = _order(object_ids)
    height, width = store.height, store.width
    metadata: dict = {"axes": "TYX"}
    if not info.fps_is_nominal and info.fps > 0:
        metadata["finterval"] = 1.0 / info.tracked_fps
    kwargs: dict = {}
    unit = normalize_length_unit(info.pixel_unit)
    if info.pixel_size and unit:
        kwargs["resolution"] = (1.0 / info.pixel_size, 1.0 / info.pixel_size)
        metadata["unit"] = _imagej_unit(unit)

    def frames():
        for f in range(info.num_frames):
            yield draw_labels(store.read(f), height, width, order)
            if progress is not None:
                progress(f + 1, info.num_frames)

    path = Path(path)
    with atomic_output(path) as tmp, tifffile.TiffWriter(tmp, imagej=True) as tw:
        tw.write(
            frames(),
            shape=(info.num_frames, height, width),
            dtype=np.uint16,
            metadata=metadata,
            **kwargs,
        )
    return path


def read_label_tiff(path: Path) -> LabelStack:
    """A stack written by :func:`write_label_tiff` (or any ImageJ TYX label stack)."""
    import tifffile

    with tifffile.TiffFile(path) as tif:
        labels = tif.series[0].asarray()
        if labels.ndim == 2:
            labels = labels[None]
        ij = tif.imagej_metadata or {}
        interval = ij.get("finterval")
        unit = normalize_length_unit(ij.get("unit"))
        size = None
        tag = tif.pages[0].tags.get("XResolution")
        if unit and tag is not None:
            num, den = tag.value
            if num > 0 and den > 0:
                size = den / num
    return LabelStack(
        labels=labels,
        frame_interval_s=float(interval) if interval else None,
        pixel_size=size,
        pixel_unit=unit if size is not None else None,
    )


# ---------------------------------------------------------------------------- CTC
@dataclass(frozen=True)
class CtcTrack:
    """One line of ``res_track.txt``: ``label`` on frames ``begin``..``end`` (inclusive),
    ``parent`` label or 0; ``object_id`` is the sam2web object it belongs to."""

    label: int
    begin: int
    end: int
    parent: int
    object_id: int


def _member(name: str) -> zipfile.ZipInfo:
    """A zip member named ``name`` with a fixed date (the earliest a zip can hold), so that
    the archive's bytes depend on its contents only."""
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_DEFLATED
    return info


def ctc_tracks(frames_of: dict[int, list[int]]) -> list[CtcTrack]:
    """Tracks (by label) from the sorted frames on which each object id is drawn; labels
    as in the module doc."""
    if not frames_of:
        return []
    next_label = max(frames_of) + 1
    pieces = []
    for obj_id in sorted(frames_of):
        for k, (begin, end) in enumerate(frame_runs(sorted(frames_of[obj_id]))):
            pieces.append((begin, obj_id, k, end))
    first: dict[int, list[CtcTrack]] = {}
    tracks = []
    for begin, obj_id, k, end in sorted(pieces):
        if k == 0:
            label, parent = obj_id, 0
        else:
            label, parent = next_label, first[obj_id][-1].label
            next_label += 1
        if label > MAX_LABEL:
            raise ValueError("too many tracks for 16-bit CTC label images")
        track = CtcTrack(label, begin, end, parent, obj_id)
        first.setdefault(obj_id, []).append(track)
        tracks.append(track)
    return sorted(tracks, key=lambda t: t.label)


def write_ctc(
    store: MaskReader,
    info: VideoInfo,
    dest: Path,
    object_ids: Iterable[int] | None = None,
    progress: Progress | None = None,
) -> list[CtcTrack]:
    """Write the CTC result layout (module doc) into the folder ``dest``, or into a zip
    when ``dest`` ends in ``.zip``; returns the tracks written to ``res_track.txt``.

    Every frame of the video gets a mask file. Frames are drawn twice (once to find the
    tracks, once to write), one at a time.
    """
    import tifffile

    order = _order(object_ids)
    height, width = store.height, store.width
    digits = max(3, len(str(max(info.num_frames - 1, 0))))
    frames_of: dict[int, list[int]] = {}
    for f in range(info.num_frames):
        drawn = draw_labels(store.read(f), height, width, order)
        for obj_id in np.unique(drawn):
            if obj_id:
                frames_of.setdefault(int(obj_id), []).append(f)
    tracks = ctc_tracks(frames_of)
    by_object: dict[int, list[CtcTrack]] = {}
    for t in tracks:
        by_object.setdefault(t.object_id, []).append(t)
    track_text = "".join(f"{t.label} {t.begin} {t.end} {t.parent}\n" for t in tracks)

    def members():
        for f in range(info.num_frames):
            drawn = draw_labels(store.read(f), height, width, order)
            out = np.zeros_like(drawn)
            for obj_id, pieces in by_object.items():
                track = next((t for t in pieces if t.begin <= f <= t.end), None)
                if track is not None:
                    out[drawn == obj_id] = track.label
            buf = io.BytesIO()
            tifffile.imwrite(buf, out, compression="zlib")
            yield f"mask{f:0{digits}d}.tif", buf.getvalue()
            if progress is not None:
                progress(f + 1, info.num_frames)

    dest = Path(dest)
    if dest.suffix.lower() == ".zip":

        def fill(zf: zipfile.ZipFile) -> None:
            for name, data in members():
                zf.writestr(_member(name), data)
            zf.writestr(_member("res_track.txt"), track_text)

        write_zip_atomic(dest, fill)
    else:
        dest.mkdir(parents=True, exist_ok=True)
        for name, data in members():
            write_bytes_atomic(dest / name, data)
        write_bytes_atomic(dest / "res_track.txt", track_text.encode("ascii"))
    return tracks
