"""TIFF stacks, from plain stacks of pages to microscopy hyperstacks.

Layouts accepted, by shape: (H, W), (T, H, W), (H, W, 3|4), (T, H, W, 3|4) and (T, C, H, W)
with C = 3 colour planes; other layouts are refused with a message.

Microscopy TIFF (OME-TIFF, ImageJ hyperstacks): the axes come from the file's metadata
(tifffile's ``series[0].axes``, e.g. TCYX, TZCYX, ZYX, CYX).

* Frames run along T when the file has a time axis, else along Z; ``ingest(axis="Z")``
  makes the slices of a time-lapse the frames. The other of T and Z, when present, is
  merged into each frame by maximum-intensity projection (noted).
* Channels: ``ingest(channel=i)`` shows channel i (from 0) as gray, ``channel="name"`` the
  channel of that name (OME channel names; case is ignored when no name matches
  exactly), ``channel=COMPOSITE`` an RGB composite of channels 0, 1, 2 as red, green,
  blue (a third channel left black with two; channels beyond the third left out). High
  bit depths in a composite are scaled channel by channel, each with the rule of
  :mod:`.stretch`. A file with 3 channels and no choice is shown as that composite; with 2
  or more than 3 channels and no choice, ingest raises :class:`StackChoiceError`, which
  carries the channel names and axes for the page to offer.
* Time and scale: OME ``TimeIncrement`` (with its unit) or ImageJ ``finterval`` give the
  frame rate (1 / interval, not nominal) when frames run along T; OME ``PhysicalSizeX``
  with its unit, or ImageJ's X resolution with its ``unit``, give ``VideoInfo.pixel_size``
  and ``pixel_unit``. Unreadable metadata is ignored.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import MediaError
from ..types import VideoInfo
from .folder import FrameWriter
from .limits import DECODE_ERRORS, Limiter, display_name, fmt_num, the_file
from .sequence import FrameSequence, ingest_sequence
from .stretch import CHANNEL_COLOURS

log = logging.getLogger(__name__)

STACK_FRAME_AXES = ("T", "Z")  # axes of a TIFF whose positions can become frames
COMPOSITE = "composite"  # ingest(channel=COMPOSITE): channels 0, 1, 2 as red, green, blue


class StackChoiceError(MediaError):
    """A microscopy TIFF needs a choice ingest cannot make alone: which channel to show, or
    along which axis frames run. ``str(err)`` is one sentence; the attributes tell a page
    what to offer: ``axes`` (the file's axes, e.g. "TCYX"), ``channels`` (display names,
    index = channel number from 0) and ``frame_axes`` (axes frames can run along, from
    :data:`STACK_FRAME_AXES`)."""

    def __init__(
        self, message: str, *, axes: str, channels: tuple[str, ...], frame_axes: tuple[str, ...]
    ):
        super().__init__(message)
        self.axes = axes
        self.channels = channels
        self.frame_axes = frame_axes


@dataclass(frozen=True)
class StackChoice:
    """What ``ingest(channel=..., axis=...)`` asked a TIFF to show; None: the file's default."""

    channel: int | str | None = None
    axis: str | None = None


_MAX_PLANES_PER_FRAME = 64  # channels x slices one frame may merge (bounds the page count)
_TIME_UNITS = {
    "s": 1.0,
    "sec": 1.0,
    "second": 1.0,
    "seconds": 1.0,
    "ms": 1e-3,
    "msec": 1e-3,
    "µs": 1e-6,
    "us": 1e-6,
    "min": 60.0,
    "h": 3600.0,
    "hour": 3600.0,
    "hours": 3600.0,
}


def _tiff_unreadable(name: str) -> str:
    return (
        f"{the_file(name)} looks like a TIFF but cannot be read (it may be damaged); "
        "save it again and upload it."
    )


def _positive(value) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and number > 0 else None


class TiffStack(FrameSequence):
    """Frames of one TIFF file, laid out as described in the module doc."""

    def __init__(self, tif, label: str, lim: Limiter, choice: StackChoice | None = None):
        self.tif = tif
        self.name = label
        self.notes = []
        self.choice = choice or StackChoice()
        try:
            self._read_layout(tif, label, lim)
        except DECODE_ERRORS as exc:
            log.info("cannot read the structure of TIFF %r", label, exc_info=True)
            raise MediaError(_tiff_unreadable(label)) from exc
        try:
            self._read_metadata(tif)
        except (*DECODE_ERRORS, AttributeError):
            # Metadata only adds time and scale; a file whose pictures read is still used.
            log.info("ignoring unreadable metadata of TIFF %r", label, exc_info=True)

    # ------------------------------------------------------------------ layout
    def _read_layout(self, tif, label: str, lim: Limiter) -> None:
        # Counting the pages first walks the whole page chain once; tifffile's own walk
        # (in ``series``) can otherwise run on forever through a damaged chain.
        lim.check_frames(math.ceil(len(tif.pages) / _MAX_PLANES_PER_FRAME))
        series = tif.series
        if not series:
            raise MediaError(_tiff_unreadable(label))
        if len(series) == 1:
            pages = list(series[0].pages)
            shape = tuple(series[0].shape)
            axes = series[0].axes
        else:
            pages = list(tif.pages)
            shapes = {getattr(p, "shape", None) for p in pages}
            if len(shapes) != 1:
                raise MediaError(
                    f"The pages of '{display_name(label)}' have different "
                    "sizes; every frame of a TIFF stack must have the same width "
                    "and height, so save it again that way and upload it."
                )
            shape = (len(pages), *pages[0].shape)
            axes = ""
        self.shape_text = "x".join(map(str, shape))
        if not pages or any(p is None for p in pages):
            raise MediaError(self._layout_message())
        key = pages[0].keyframe if hasattr(pages[0], "keyframe") else pages[0]
        self.page_axes = key.axes
        page_shape = tuple(key.shape)
        if len(page_shape) == 3 and "S" not in self.page_axes:
            raise MediaError(self._layout_message())
        n_lead = len(shape) - len(page_shape)
        if n_lead < 0 or shape[n_lead:] != page_shape:
            raise MediaError(self._layout_message())
        lead_shape = shape[:n_lead]
        lead_axes = axes[:n_lead] if len(axes) == len(shape) else "Q" * n_lead
        self.axes = (lead_axes + self.page_axes) if len(axes) != len(shape) else axes
        samples = page_shape[self.page_axes.index("S")] if "S" in self.page_axes else 1
        if samples not in (1, 3, 4) or math.prod(lead_shape) != len(pages):
            raise MediaError(self._layout_message())

        named: dict[str, int] = {}  # "T", "Z", "C" -> position among the leading axes
        generic: list[int] = []
        for i, (a, n) in enumerate(zip(lead_axes, lead_shape, strict=True)):
            if n == 1:
                continue
            if a in "TZC" and a not in named:
                named[a] = i
            else:
                generic.append(i)
        legacy_colour = (
            not named and len(generic) == 2 and lead_shape[generic[1]] == 3 and samples == 1
        )
        if legacy_colour:  # (frames, 3, H, W): three colour planes per frame
            named["C"] = generic.pop()
        if len(generic) > 1 or (generic and ("T" in named or "Z" in named)):
            raise MediaError(self._layout_message())
        if samples > 1 and "C" in named:
            raise MediaError(self._layout_message())
        self.pages = pages
        self.lead_shape = lead_shape
        frame_axes = tuple(a for a in STACK_FRAME_AXES if a in named)
        self.frame_axes = frame_axes

        frame_pos = self._choose_frame_axis(label, named, generic, lead_shape)
        self.count = 1 if frame_pos is None else lead_shape[frame_pos]
        lim.check_frames(self.count)
        self.channel_pos = named.get("C")
        n_channels = 1 if self.channel_pos is None else lead_shape[self.channel_pos]
        self.channel_names = self._channel_names(tif, n_channels)
        self.channels = self._choose_channels(n_channels, samples, legacy_colour)
        self.stretch_per_channel = len(self.channels) > 1 and not legacy_colour
        plane = [d for a, d in zip(self.page_axes, page_shape, strict=True) if a in "YX"]
        if len(plane) != 2 or 0 in plane:
            raise MediaError(self._layout_message())
        lim.check_pixels(plane[1], plane[0])

    def _choose_frame_axis(
        self, label: str, named: dict[str, int], generic: list[int], lead_shape: tuple
    ) -> int | None:
        """Which leading axis runs through the frames (its position, None for a single
        frame); the other of T and Z is max-projected (noted)."""
        frame_axes = self.frame_axes
        wanted = self.choice.axis
        if wanted is not None and wanted not in named and not generic and frame_axes:
            raise StackChoiceError(
                f"{the_file(label)} has no {wanted} axis to take frames from (its axes are "
                f"{self.axes}); choose {' or '.join(frame_axes)}.",
                axes=self.axes,
                channels=(),
                frame_axes=frame_axes,
            )
        if wanted in named:
            frame_pos = named[wanted]
        elif generic:
            frame_pos = generic[0]
        else:
            first = next((a for a in STACK_FRAME_AXES if a in named), None)
            frame_pos = None if first is None else named[first]
        self.frame_pos = frame_pos
        self.frame_axis = next((a for a, i in named.items() if i == frame_pos), None)
        self.project_pos = None
        for a in STACK_FRAME_AXES:
            if a in named and named[a] != frame_pos:
                self.project_pos = named[a]
                what = "slices" if a == "Z" else "time points"
                self.notes.append(
                    f"Each frame is the maximum-intensity projection of the "
                    f"{lead_shape[named[a]]} {what} along {a}."
                )
        return frame_pos

    def _layout_message(self) -> str:
        return (
            f"The TIFF '{display_name(self.name)}' has a layout sam2web cannot use "
            f"({self.shape_text}); save it as one stack of gray frames (frames x height x "
            "width) or RGB frames (frames x height x width x 3) and upload it again."
        )

    def _choice_error(self, message: str) -> StackChoiceError:
        return StackChoiceError(
            message,
            axes=self.axes,
            channels=tuple(self.channel_names),
            frame_axes=self.frame_axes,
        )

    def _listed_channels(self) -> str:
        names = [display_name(n, 30) for n in self.channel_names[:8]]
        if len(self.channel_names) > 8:
            names.append("…")
        return ", ".join(names)

    def _choose_channels(self, n: int, samples: int, legacy_colour: bool) -> list[int | None]:
        """Channel indices shown as gray (one) or as red, green, blue (up to three)."""
        wanted = self.choice.channel
        the = the_file(self.name)
        if n == 1:
            if wanted in (None, 0, COMPOSITE) or wanted in self.channel_names:
                return [None if self.channel_pos is None else 0]
            raise self._choice_error(
                f"{the} has no channel {display_name(str(wanted), 30)} (it has one "
                f"{'colour picture' if samples > 1 else 'channel'} per frame); load it "
                "without choosing a channel."
            )
        if wanted is None:
            if n == 3:
                if not legacy_colour:
                    self.notes.append(
                        f"The 3 channels ({self._listed_channels()}) are shown as red, "
                        "green and blue."
                    )
                return [0, 1, 2]
            raise self._choice_error(
                f"{the} has {n} channels ({self._listed_channels()}); choose the channel to "
                "track, or the colour composite of the first three, and load it again."
            )
        if wanted == COMPOSITE:
            shown = list(range(min(3, n)))
            colours = ", ".join(
                f"{display_name(self.channel_names[c], 30)} as {CHANNEL_COLOURS[c]}" for c in shown
            )
            self.notes.append(f"Channels are shown as a colour composite: {colours}.")
            if n > 3:
                self.notes[-1] = self.notes[-1][:-1] + f"; the other {n - 3} are left out."
            return shown
        index = None
        if isinstance(wanted, int) and 0 <= wanted < n:
            index = wanted
        elif isinstance(wanted, str):
            exact = [i for i, c in enumerate(self.channel_names) if c == wanted]
            loose = [i for i, c in enumerate(self.channel_names) if c.lower() == wanted.lower()]
            index = (exact or loose or [None])[0]
        if index is None:
            raise self._choice_error(
                f"{the} has no channel {display_name(str(wanted), 30)}; choose one of its "
                f"{n} channels ({self._listed_channels()}) or the colour composite."
            )
        self.notes.append(
            f"Frames show channel {index} ({display_name(self.channel_names[index], 30)}) of {n}."
        )
        return [index]

    def _channel_names(self, tif, n: int) -> list[str]:
        names = [f"channel {i}" for i in range(n)]
        if n > 1 and getattr(tif, "is_ome", False):
            try:
                found = [
                    el.get("Name")
                    for el in self._ome_pixels(tif) or ()
                    if el.tag.rsplit("}", 1)[-1] == "Channel"
                ]
            except (*DECODE_ERRORS, AttributeError):
                found = []
            if len(found) == n:
                names = [f or names[i] for i, f in enumerate(found)]
        return names

    # ------------------------------------------------------------------ metadata
    @staticmethod
    def _ome_pixels(tif):
        import xml.etree.ElementTree as ElementTree

        root = ElementTree.fromstring(tif.ome_metadata)
        for el in root.iter():
            if el.tag.rsplit("}", 1)[-1] == "Pixels":
                return el
        return None

    def _read_metadata(self, tif) -> None:
        from ..units import normalize_length_unit

        interval = size = unit = None
        if getattr(tif, "is_ome", False) and tif.ome_metadata:
            pixels = self._ome_pixels(tif)
            if pixels is not None:
                step = _positive(pixels.get("TimeIncrement"))
                scale = _TIME_UNITS.get(pixels.get("TimeIncrementUnit", "s"))
                interval = step * scale if step and scale else None
                size = _positive(pixels.get("PhysicalSizeX"))
                unit = normalize_length_unit(pixels.get("PhysicalSizeXUnit", "µm"))
        elif getattr(tif, "is_imagej", False):
            ij = tif.imagej_metadata or {}
            step = _positive(ij.get("finterval"))
            scale = _TIME_UNITS.get(str(ij.get("tunit", "s")).strip().lower())
            interval = step * scale if step and scale else None
            unit = normalize_length_unit(ij.get("unit"))
            tag = tif.pages[0].tags.get("XResolution")
            if tag is not None and unit:
                num, den = tag.value
                size = _positive(den / num) if num else None
        if size and unit:
            self.pixel_size, self.pixel_unit = float(size), unit
        if interval and self.frame_axis == "T":
            self.fps = 1.0 / interval
            self.notes.append(
                f"Time stamps use the file's frame interval of {fmt_num(interval)} seconds."
            )

    # ------------------------------------------------------------------ pixels
    def label(self, index: int) -> str:
        return f"{self.name} frame {index + 1}"

    def _page(self, j: int) -> np.ndarray:
        try:
            arr = self.pages[j].asarray()
        except DECODE_ERRORS as exc:
            log.info("cannot decode TIFF %r page %d", self.name, j, exc_info=True)
            raise MediaError(
                f"The TIFF '{display_name(self.name)}' cannot be read (it may "
                "be damaged or use an unusual compression); save it again "
                "uncompressed or with LZW/zlib and upload it."
            ) from exc
        if self.page_axes.startswith("S") and arr.ndim == 3:
            arr = np.moveaxis(arr, 0, -1)
        return arr

    def _plane(self, index: int, channel: int | None) -> np.ndarray:
        """One channel of frame ``index``, projected along the other of T and Z."""
        idx = [0] * len(self.lead_shape)
        if self.frame_pos is not None:
            idx[self.frame_pos] = index
        if channel is not None:
            idx[self.channel_pos] = channel
        steps = range(self.lead_shape[self.project_pos]) if self.project_pos is not None else [0]
        planes = []
        for k in steps:
            if self.project_pos is not None:
                idx[self.project_pos] = k
            planes.append(self._page(int(np.ravel_multi_index(idx, self.lead_shape))))
        return planes[0] if len(planes) == 1 else np.fmax.reduce(planes)

    def read(self, index: int) -> np.ndarray:
        planes = [self._plane(index, c) for c in self.channels]
        if len(planes) == 1:
            return planes[0]
        while len(planes) < 3:
            planes.append(np.zeros_like(planes[0]))
        return np.stack(planes, axis=-1)


def ingest_tiff(
    src: Path,
    writer: FrameWriter,
    lim: Limiter,
    name: str,
    fps_override: float | None,
    choice: StackChoice | None = None,
) -> VideoInfo:
    import tifffile

    try:
        tif = tifffile.TiffFile(src)
    except DECODE_ERRORS as exc:
        log.info("cannot open TIFF %r", name, exc_info=True)
        raise MediaError(_tiff_unreadable(name)) from exc
    with tif:
        stack = TiffStack(tif, name, lim, choice)
        return ingest_sequence(stack, writer, lim, name, fps_override, kind="tiff")
