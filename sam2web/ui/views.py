"""What the page shows of a session, and how it reads what the user typed.

Plain functions of a :class:`UserSession` (or of text from an input box) that return text,
tables and values; the handlers put them into components. Text from the user or from a file
name is HTML-escaped here, where it meets Markdown.
"""

from __future__ import annotations

import html

import gradio as gr

from ..analysis.tables import Calibration
from ..outputs.render import OverlayStyle
from ..session.engine import Engine
from ..tracking.accel import Quality
from ..tracking.scheduler import Snapshot
from .user import QualityAgreement, UserSession

NO_VIDEO = "*No video loaded.*"


# ------------------------------------------------------------------ reading the inputs
def _parse_optional(value) -> float | None:
    """Text typed into an optional number box: empty -> None, not a number -> NaN."""
    text = "" if value is None else str(value).strip()
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        return float("nan")


def frame_field(value, what: str) -> int | None:
    """An optional frame number typed by the user: empty -> None."""
    number = _parse_optional(value)
    if number is None:
        return None
    if not number.is_integer() or number < 0:
        raise gr.Error(
            f"The {what} must be a frame number (0 or more) or empty.", print_exception=False
        )
    return int(number)


def number_field(value, what: str) -> float | None:
    """An optional positive number typed by the user: empty -> None."""
    number = _parse_optional(value)
    if number is None:
        return None
    if not (number > 0 and number != float("inf")):
        raise gr.Error(f"The {what} must be a positive number or empty.", print_exception=False)
    return number


def shown_frame(value, num_frames: int) -> int:
    """The frame to show after an action: the slider's value, kept inside the video."""
    try:
        frame = int(float(value or 0))
    except (TypeError, ValueError, OverflowError):
        frame = 0
    return max(0, min(frame, num_frames - 1))


def overlay_style(opacity, contours, labels, trails) -> OverlayStyle:
    """The overlay video's look from the Results controls."""
    return OverlayStyle(
        opacity=float(opacity),
        contours=bool(contours),
        labels=bool(labels),
        trails=int(trails or 0),
    )


def calibration(pixels_per_unit, unit, fps) -> Calibration:
    """The Measurements boxes as a calibration; without a scale the unit is pixels."""
    scale = number_field(pixels_per_unit, "pixels per unit")
    return Calibration(
        pixels_per_unit=scale,
        unit=(unit or "px").strip() if scale else "px",
        fps=number_field(fps, "frame rate"),
    )


# ------------------------------------------------------------------ text and tables
def model_line(engine: Engine, model_key: str | None = None) -> str:
    """The model's status line: loaded, downloading, missing; and whether it approximates."""
    status = engine.checkpoint_status(model_key)
    approx = (
        f" Processing at {engine.settings.resolution} px — **approximate** (SAM2's native "
        "size is 1024 px)."
        if engine.approximate
        else ""
    )
    compiling = engine.models.compile_status()
    compiling = f" {html.escape(compiling)}" if compiling else ""
    return f"**Model:** {html.escape(status.message)}{compiling}{approx}"


def facts(user: UserSession) -> str:
    """The loaded video in one line (name, frames, rate, size, length) and its notes."""
    if user.folder is None:
        return NO_VIDEO
    info = user.info
    fps = f"{info.fps:.3g} fps" + (" (nominal)" if info.fps_is_nominal else "")
    frames = f"{info.num_frames} frames"
    if info.frame_step > 1:
        frames += f" (frame step {info.frame_step}: one in every {info.frame_step} of {info.source_frames})"
    lines = [
        f"**{html.escape(info.source_name)}** — {frames}, {fps}, "
        f"{info.width}×{info.height} px, {info.duration_s:.1f} s"
    ]
    lines += [f"- {html.escape(note)}" for note in info.notes]
    return "\n".join(lines)


def video_facts(user: UserSession) -> dict:
    """The loaded video's facts as the API's ``info`` output returns them."""
    info = user.info
    return {
        "num_frames": info.num_frames,
        "fps": info.fps,
        "width": info.width,
        "height": info.height,
        "duration_s": info.duration_s,
        "frame_step": info.frame_step,
        "source_frames": info.source_frames or info.num_frames,
        "notes": list(info.notes),
    }


def objects_update(user: UserSession) -> dict:
    """The active-object dropdown: every object as "id: name", the active one chosen."""
    choices = [(f"{o.obj_id}: {o.name}", o.obj_id) for o in user.objects]
    return gr.update(choices=choices, value=user.active_object if choices else None)


def status(user: UserSession, message: str = "") -> str:
    """The status line: the message, then how many objects and tracked frames there are."""
    parts = []
    if message:
        parts.append(html.escape(message))
    if user.tracking is not None and user.folder is not None:
        tracked = len(user.tracking.store.frames())
        parts.append(
            f"{len(user.objects)} object(s); {tracked} of {user.info.num_frames} frames have masks."
        )
    return " ".join(parts)


def duration(seconds: float) -> str:
    """A rough duration for a sentence: "about 40 s", "about 6 min"."""
    if seconds < 90:
        return f"about {max(0, round(seconds))} s"
    return f"about {round(seconds / 60)} min"


def tracking_progress(
    standing: Snapshot | None, frame: int, done: int, total: int, plain_eta_s: float | None
) -> str:
    """One sentence on a tracking run's progress: where the user stands with the shared
    model when others track too (an ETA that counts the sharing), else the plain ETA.
    ``frame`` is the frame tracked last; ``done`` of ``total`` frames are tracked."""
    others = 0 if standing is None else standing.other_tracking_owners
    if others == 0:
        if plain_eta_s is None:
            return f"Tracking frame {frame}"
        return f"Tracking frame {frame} — {duration(plain_eta_s)} left"
    eta = standing.eta_s(total - done)
    if eta is None:
        eta = plain_eta_s
    users = "1 other user" if others == 1 else f"{others} other users"
    if done == 0:
        where = f"yours has not tracked a frame yet ({total} to track)"
    else:
        where = f"yours has tracked {done} of {total} frame{'s' if total != 1 else ''}"
    left = "" if eta is None else f", {duration(eta)} left"
    return f"The model is shared with {users} tracking; {where}{left}"


def _fmt(value) -> str:
    return "" if value is None else f"{value:.4g}"


def review_tables(user: UserSession) -> tuple[dict, dict]:
    """The per-object summary table and the lost/uncertain frames dropdown, as updates."""
    review = user.review()
    unit = user.calibration.length_unit
    headers = [
        "id",
        "name",
        "frames present",
        "first",
        "last",
        f"distance ({unit})",
        f"mean speed ({unit}/s)",
        f"max speed ({unit}/s)",
        f"mean area ({unit}²)",
    ]
    table = [
        [
            s.object_id,
            s.object_name,
            s.frames_present,
            s.first_frame,
            s.last_frame,
            _fmt(s.total_distance),
            _fmt(s.mean_speed),
            _fmt(s.max_speed),
            _fmt(s.mean_area),
        ]
        for s in review.summaries
    ]
    choices = [(f"frame {f}: {name} {kind}", f) for f, _, name, kind in review.events]
    return (
        gr.update(value=table, headers=headers, visible=bool(table)),
        gr.update(choices=choices[:500], value=None),
    )


def quality_report(report: QualityAgreement) -> str:
    """The fast-preview comparison as a sentence and a Markdown table of IoUs per object."""
    rows = [
        f"| {html.escape(report.names[oid])} | {mean:.3f} | {low:.3f} |"
        for oid, (mean, low) in report.iou.items()
    ]
    return "\n".join(
        [
            html.escape(report.sentence()),
            "",
            "| object | mean IoU | lowest IoU |",
            "|---|---:|---:|",
            *rows,
        ]
    )


def quality_label(q: Quality) -> str:
    """A quality as the page's choice names it."""
    if q.key == "full":
        return f"Full quality ({q.resolution} px)"
    if q.key in ("full-bf16", "full-fp16"):
        return f"Full resolution, faster ({q.resolution} px, {q.precision})"
    return f"Fast preview ({q.resolution} px, approximate)"


def quality_sentence(q: Quality) -> str:
    """What the page says after switching to ``q``."""
    names = {
        "full": "Full quality",
        "full-bf16": "Full resolution, faster (bfloat16)",
        "full-fp16": "Full resolution, faster (float16)",
    }
    name = names.get(q.key, "Fast preview (approximate)")
    precision = f" in {q.precision}" if q.key in ("full-bf16", "full-fp16") else ""
    return f"{name}: processing at {q.resolution} px{precision}."
