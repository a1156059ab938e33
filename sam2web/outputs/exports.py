"""Every file sam2web writes from tracking results, and the passes that write them.

Tables: the per-frame measurements CSV, the calibrated CSV and the per-object summary
(:mod:`sam2web.outputs.rowfiles`). Masks: a zip of label images, a NumPy ``.npz`` and COCO
run-length encoding, each a :class:`~sam2web.analysis.results.FrameSink` fed once per frame
by the one pass over the stored masks (:mod:`sam2web.outputs.maskfiles`). Here: the names of
the files (:data:`FILES`); :class:`ExportRun` bundles the sinks of one run;
:func:`write_row_files` writes what is derived from the measurements alone;
:class:`LiveExports` and :class:`SessionResults` keep the files current with as few passes
as possible.

Coordinates follow :mod:`sam2web.types` (see :mod:`sam2web.analysis.results` for centroids and
boxes).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from ..analysis.identity import fill_gaps
from ..analysis.results import MeasurementSink, Results, walk
from ..analysis.tables import Calibration, plot_confidence, plot_trajectories, summarize
from ..tracking.maskstore import MaskStore
from ..types import FrameResult, Progress, TrackedObject, VideoInfo
from .maskfiles import CocoSink, MasksZipSink, NpzSink
from .render import OverlayStyle
from .rowfiles import write_calibrated_csv, write_csv, write_summary_csv
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
    that runs beside tracking (:class:`~sam2web.outputs.video.LiveOverlayVideo`): each frame is
    read once, when it is final, and feeds the video and an :class:`ExportRun`. A tracked
    frame's result handed to :meth:`frame_done` is not read back at all where it holds
    what reading would give the outputs: the store is read as it is (no identity fix in
    force) and the result has every object of the pass (each output looks at those only)."""

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
        self._ids = {o.obj_id for o in objects}
        self._plain = isinstance(store, MaskStore)
        self.video = LiveOverlayVideo(
            read_rgb,
            info.num_frames,
            store,
            {o.obj_id: o for o in objects},
            style,
            Path(out_dir) / FILES["video"],
            info.tracked_fps,  # a stepped video plays in real time
            pending=pending,
            sinks=self.run.sinks,
        )

    def frame_done(self, frame_idx: int, result: FrameResult | None = None) -> None:
        """The run stored frame ``frame_idx``'s masks (``result``: what it stored)."""
        usable = (
            result is not None
            and self._plain
            and result.frame_idx == frame_idx
            and self._ids <= result.masks.keys()
            and self._ids <= result.scores.keys()
        )
        self.video.frame_done(frame_idx, result if usable else None)

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
            info.tracked_fps,  # a stepped video plays in real time
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
