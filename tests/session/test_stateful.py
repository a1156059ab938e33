"""The whole user session under random sequences of what a user does.

A hypothesis state machine drives :class:`~sam2web.session.user.UserSession` on a small
synthetic clip (bright discs on a still dark floor, or the same discs standing still),
uploaded with a frame step of 1, 2 or 3 (every frame, or every 2nd or 3rd of a clip whose
length is no multiple of the step): objects added, renamed and removed; positive and
negative clicks, boxes, label images and brush masks; objects found by the motion and the
contrast finder, picked by clicks or by number and accepted with their boxes or masks as
prompts; undo and clear; swaps, merges, their undo and gap filling; zones and the ruler;
tracking forward, backward, both ways and over a range, cancelled part way; save, load and
replay, and a load on the clip read with another step (refused); the model state released.
After every step every output is checked against every other (:func:`check_outputs`):
frame numbers in every file are the original's (multiples of the step), times are frame /
fps; the steps that can be undone are checked to give back the very files from before
them, and refusals (a finder on a still clip, no blob of the areas asked for, a pick of
nothing) to change no file.

Runs (each prints what it did). In CI's bound (the double: 40 sequences of up to 25
steps; the real model: 8 of up to 10) one run on 2 shared cores made 52 sequences and 813
steps with the double (27 uploads with step 1, 11 with step 2, 14 with step 3; 42 finder
runs with proposals, 27 refused; 13 accepts, 13 refused) and 10 sequences, 73 steps with
the real model, in about 50 seconds; ``exhaustive`` runs 2,000 sequences of up to 60 steps
and 50 of up to 20; a run of 250 sequences of up to 40 steps (284 sequences, 8,002
steps, 319 finder runs with proposals, 143 accepts) found nothing more. What they found: two merges in a row, the second keeping the object
the first had folded away (``labels(frame=0)``, ``labels(frame=3)``, ``fix(a=3, b=2,
frame=4, merge=True)``, ``box(frame=4, obj=3, x0=25, y0=24, w=21, h=15)``, ``fix(a=2,
b=3, frame=2, merge=True)``): every file showed object 2 on frame 4 with both objects'
pixels while the page refused it as merged into object 3 (fixed in
:func:`sam2web.analysis.identity.tracker_object`).

The model is a stand-in for sam2's video predictor (:class:`tests.double.PredictorDouble`)
whose masks follow the prompts, so that objects differ and a mistake of identity shows; a
shorter run uses the real architecture with random weights for the invariants that need no
distinct masks.

Conventions the checks compute by themselves, from the NPZ arrays (those of
:mod:`sam2web.analysis.results`): pixel [row, col] covers x in [col, col + 1) and y in
[row, row + 1), so a centroid is (mean(col) + 0.5, mean(row) + 0.5); the box is
(first column, first row, column count, row count). An object is present on a frame
when its mask is not empty and its score is not <= 0 (an unknown score counts as
present). The masks zip draws every stored mask; the label TIFF draws present objects
only; both are compared with the NPZ only where exactly one object (of those drawn)
covers a pixel, or none does.
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import io
import json
import math
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from sam2web.analysis.finders import FinderSettings
from sam2web.analysis.identity import Merge, fixes_in_force
from sam2web.analysis.zones import Rect
from sam2web.errors import UserError
from sam2web.history import identity_fixes
from sam2web.outputs.maskfiles import read_npz
from sam2web.session.finding import FINDERS, PROMPTS
from sam2web.session.user import UserSession
from tests import synth
from tests.double import disc, points_mask

# Edits (clicks, boxes, masks, undo, clear, removal) while a swap or merge is in force, and
# the label stacks and membership by overlap under fixes: checked like every other step
# (False skips them, to tell a fault of the identity rule from the rest).
EDITS_AFTER_FIXES = True

HEIGHT, WIDTH, FRAMES = 48, 64, 6  # FRAMES: the frames kept (tracked) of the upload
# Bright discs on a still dark background, in kept frames' terms (positions and velocities
# per kept frame): they move far enough between frames that the background (the frames'
# median) holds none of them, so both finders find them; the larger is proposal 1.
CLIP_DISCS = (
    synth.Disc(x0=10, y0=14, vx=8.0, vy=1.0, radius=7, color=(250, 240, 210)),
    synth.Disc(x0=54, y0=34, vx=-8.0, vy=-1.0, radius=5, color=(210, 240, 250)),
)
# Uploads keep every STEP-th frame of a clip of SOURCE_FRAMES[step] frames (not a multiple
# of the step, so the last frames are dropped); FRAMES are kept in every case.
SOURCE_FRAMES = {1: FRAMES, 2: 2 * FRAMES - 1, 3: 3 * FRAMES - 2}
FPS = 4.0  # the upload's frame rate: time_s is the original frame number / FPS
MAX_OBJECTS = 4


# ---------------------------------------------------------------------- reading the outputs
@dataclasses.dataclass
class Outputs:
    """Every file of one moment, read back (``files``: what must stay byte for byte)."""

    files: dict
    rows: dict  # (original frame number, object id) -> CSV row
    frames: np.ndarray  # the NPZ's: original frame numbers
    times: np.ndarray  # the NPZ's time_s
    frame_step: int  # the NPZ's
    ids: np.ndarray
    scores: np.ndarray
    masks: np.ndarray  # (T, K, H, W)
    coco: dict  # (original frame number, object id) -> (mask, annotation)
    coco_images: dict  # image id -> (file name, time_s)
    zip_labels: dict  # original frame number -> label image
    tiff: np.ndarray | None
    zones: list | None
    shown: dict  # (frame, object id) -> mask_on


def read_outputs(user: UserSession, labels: bool = True) -> Outputs | None:
    tracking = user.tracking
    if tracking is None or not tracking.store.frames():
        return None
    exports = user.export(video=False)
    files = user.results.files
    with zipfile.ZipFile(exports.masks) as zf:
        members = {n: zf.read(n) for n in sorted(zf.namelist())}
    from PIL import Image

    zip_labels = {
        n: np.array(Image.open(io.BytesIO(data)))
        for n, data in members.items()
        if n.startswith("masks/")
    }
    with np.load(files["npz"], allow_pickle=False) as data:
        npz = {k: data[k] for k in data.files}
    frames, ids, masks = read_npz(files["npz"])
    coco_text = Path(files["coco"]).read_text()
    coco_data = json.loads(coco_text)
    coco = _decode_coco(coco_data)
    coco_images = {im["id"]: (im["file_name"], im["time_s"]) for im in coco_data["images"]}
    csv_text = exports.csv.read_text()
    rows = {
        (int(r["frame"]), int(r["object_id"])): r for r in csv.DictReader(io.StringIO(csv_text))
    }
    tiff = None
    if labels:
        import tifffile

        tiff = tifffile.imread(user.export_label_stacks()["labels_tiff"])
        tiff = tiff.reshape(FRAMES, HEIGHT, WIDTH)
    zones = None
    if user.behaviour.setup.zones:
        out = user.export_behaviour()
        zones = list(csv.DictReader(io.StringIO(out.files["zones"].read_text())))
    shown = {}
    for f in range(FRAMES):
        for obj in user.objects:
            try:
                shown[(f, obj.obj_id)] = user.mask_on(f, obj.obj_id)
            except UserError:  # merged into another object there: the page shows none
                shown[(f, obj.obj_id)] = None
    files_now = {
        "csv": csv_text,
        "npz": {k: (v.dtype.str, v.shape, v.tobytes()) for k, v in npz.items()},
        "coco": coco_text,
        "zip": members,
        "tiff": None if tiff is None else tiff.tobytes(),
    }
    return Outputs(
        files=files_now,
        rows=rows,
        frames=frames,
        times=npz["time_s"],
        frame_step=int(npz["frame_step"]),
        ids=ids,
        scores=npz["scores"],
        masks=masks,
        coco=coco,
        coco_images=coco_images,
        zip_labels=zip_labels,
        tiff=tiff,
        zones=zones,
        shown=shown,
    )


def _decode_coco(data: dict) -> dict:
    from pycocotools import mask as mask_utils

    out = {}
    for ann in data["annotations"]:
        seg = ann["segmentation"]
        rle = {"size": seg["size"], "counts": seg["counts"].encode("ascii")}
        out[(int(ann["image_id"]), int(ann["category_id"]))] = (
            mask_utils.decode(rle).astype(bool),
            ann,
        )
    return out


# ---------------------------------------------------------------------- the invariants
def npz_mask(o: Outputs, frame: int, k: int) -> tuple[np.ndarray, float]:
    """The NPZ's mask and score of object index ``k`` on original frame ``frame``."""
    where = np.nonzero(o.frames == frame)[0]
    if where.size == 0:
        return np.zeros((HEIGHT, WIDTH), bool), math.nan
    t = int(where[0])
    return o.masks[t, k], float(o.scores[t, k])


def present(mask: np.ndarray, score: float) -> bool:
    return bool(mask.any()) and not score <= 0.0


def close(cell: str, value: float, decimals: int) -> bool:
    return abs(float(cell) - value) <= 0.5 * 10**-decimals + 1e-9


def check_outputs(
    user: UserSession, o: Outputs, step: int, check_fixed_labels: bool = True
) -> None:
    """Every output against every other, on an upload that kept every ``step``-th frame:
    kept frame f is the original's frame f * step, at f * step / FPS seconds, in every
    file."""
    objects = [obj.obj_id for obj in user.objects]
    numbers = [f * step for f in range(FRAMES)]  # the original frame numbers kept
    assert o.ids.tolist() == objects, "NPZ objects are the session's, in order"
    assert set(o.rows) == {(n, i) for n in numbers for i in objects}, "one row each"
    assert o.frame_step == step, "the NPZ's frame step"
    assert set(o.frames.tolist()) <= set(numbers), "NPZ frames are original frame numbers"
    assert np.allclose(o.times, o.frames / FPS), "NPZ times are original frame / fps"
    assert o.coco_images == {n: (f"{n:05d}.png", n / FPS) for n in numbers}, "COCO images"
    assert set(o.zip_labels) == {f"masks/{n:05d}.png" for n in numbers}, "masks zip names"
    by_frame_present: dict[int, list[tuple[int, np.ndarray]]] = {}
    for f, n in enumerate(numbers):
        for k, obj_id in enumerate(objects):
            mask, score = npz_mask(o, n, k)
            row = o.rows[(n, obj_id)]
            assert close(row["time_s"], n / FPS, 6), f"frame {n}: time_s = frame / fps"
            is_present = present(mask, score)
            where = f"frame {n}, object {obj_id}"
            if row.get("interpolated") == "1":
                assert not is_present, f"{where}: a filled row where the masks show the object"
                assert row["present"] == "1" and row["area_px"] == ""
            else:
                assert row["present"] == ("1" if is_present else "0"), f"{where}: presence"
            if is_present:
                rows_, cols = np.nonzero(mask)
                assert int(row["area_px"]) == rows_.size, f"{where}: area"
                assert close(row["centroid_x"], cols.mean() + 0.5, 3), f"{where}: centroid x"
                assert close(row["centroid_y"], rows_.mean() + 0.5, 3), f"{where}: centroid y"
                box = (cols.min(), rows_.min(), cols.max() - cols.min() + 1)
                box += (rows_.max() - rows_.min() + 1,)
                got = tuple(int(row[c]) for c in ("bbox_x", "bbox_y", "bbox_w", "bbox_h"))
                assert got == tuple(int(v) for v in box), f"{where}: box"
                by_frame_present.setdefault(n, []).append((obj_id, mask))
            elif row.get("interpolated") != "1":
                assert row["area_px"] == row["centroid_x"] == row["bbox_x"] == "", where
            if math.isnan(score) or row.get("interpolated") == "1":  # filled: unknown
                assert row["score"] == "", f"{where}: unknown score"
            else:
                assert close(row["score"], score, 4), f"{where}: score"
            # COCO: exactly the present objects, with the NPZ mask
            if is_present:
                assert (n, obj_id) in o.coco, f"{where}: missing from COCO"
                coco_mask, ann = o.coco[(n, obj_id)]
                assert np.array_equal(coco_mask, mask), f"{where}: COCO mask"
                assert ann["area"] == int(mask.sum())
            else:
                assert (n, obj_id) not in o.coco, f"{where}: in COCO while absent"
            # the page shows what is exported
            shown = o.shown[(f, obj_id)]
            if shown is None:
                assert not mask.any(), f"{where}: the page shows no mask, the NPZ has one"
            else:
                assert np.array_equal(shown, mask), f"{where}: the page shows another mask"
    assert {key for key in o.coco} <= {(n, i) for n in numbers for i in objects}
    # label images: where one drawn object covers a pixel it holds that id, where none 0
    # (the TIFF has one page per kept frame)
    for f, n in enumerate(numbers):
        stored = [(obj_id, npz_mask(o, n, k)[0]) for k, obj_id in enumerate(objects)]
        _check_labels(o.zip_labels[f"masks/{n:05d}.png"], stored, f"masks zip frame {n}")
        if o.tiff is not None and check_fixed_labels:
            _check_labels(o.tiff[f], by_frame_present.get(n, []), f"label TIFF frame {n}")
    if o.zones is not None:
        _check_zones(user, o, objects, numbers)


def _check_labels(labels: np.ndarray, drawn: list, where: str) -> None:
    count = np.zeros((HEIGHT, WIDTH), int)
    for _, mask in drawn:
        count += mask
    assert np.all(labels[count == 0] == 0), f"{where}: a label where no object is"
    for obj_id, mask in drawn:
        alone = mask & (count == 1)
        assert np.all(labels[alone] == obj_id), f"{where}: object {obj_id} not labelled"


def _check_zones(user: UserSession, o: Outputs, objects: list[int], numbers: list[int]) -> None:
    setup = user.behaviour.setup
    got = {(int(r["object_id"]), r["zone"]): r for r in o.zones}
    assert set(got) == {(i, z.name) for i in objects for z in setup.zones}
    for k, obj_id in enumerate(objects):
        for zone in setup.zones:
            inside = []
            for n in numbers:
                mask, score = npz_mask(o, n, k)
                if not present(mask, score):
                    inside.append(False)
                elif setup.min_overlap is None:
                    rows_, cols = np.nonzero(mask)
                    inside.append(bool(zone.contains(cols.mean() + 0.5, rows_.mean() + 0.5)))
                else:
                    zone_mask = zone.mask(HEIGHT, WIDTH)
                    inside.append((mask & zone_mask).sum() / mask.sum() >= setup.min_overlap)
            row = got[(obj_id, zone.name)]
            where = f"zone {zone.name}, object {obj_id}"
            assert int(row["frames"]) == FRAMES, where
            assert int(row["frames_inside"]) == sum(inside), f"{where}: frames inside"
            entries = sum(1 for i, flag in enumerate(inside) if flag and not (i and inside[i - 1]))
            assert int(row["entries"]) == entries, f"{where}: entries"
            # a kept frame lasts step / fps seconds; times count from frame 0
            step = numbers[1] - numbers[0]
            assert math.isclose(float(row["time_in_zone_s"]), sum(inside) * step / FPS)
            first = next((n for n, flag in zip(numbers, inside, strict=True) if flag), None)
            if first is None:
                assert row["latency_s"] == "", f"{where}: latency"
            else:
                assert float(row["latency_s"]) == first / FPS, f"{where}: latency"


# ---------------------------------------------------------------------- the machine
def label_png(frame: int) -> bytes:
    from PIL import Image

    labels = np.zeros((HEIGHT, WIDTH), np.uint8)
    for i, d in enumerate(CLIP_DISCS):
        labels[synth.disc_mask(HEIGHT, WIDTH, d, frame)] = i + 1
    buf = io.BytesIO()
    Image.fromarray(labels).save(buf, format="PNG")
    return buf.getvalue()


frames_st = st.integers(0, FRAMES - 1)
xs = st.integers(0, WIDTH - 1)
ys = st.integers(0, HEIGHT - 1)
obj_st = st.integers(1, MAX_OBJECTS + 1)  # one more than may exist: refusals are tried too


class SessionMachine(RuleBasedStateMachine):
    """One user; ``engine`` and ``clips`` are set by the test that runs the machine."""

    engine = None
    clips: dict = None  # (frame step, still) -> the clip to upload with that step
    distinct = True  # the double: prompts' masks are known
    counts: collections.Counter = None  # what a run did, printed at its end

    def __init__(self):
        super().__init__()
        self.user: UserSession | None = None
        self.before: Outputs | None = None  # the files before the last undoable step
        self.undoable: tuple | None = None  # what the last step was, to undo it
        self.prompts: dict[tuple[int, int], dict] = {}  # (frame, shown id) -> prompts
        self.last: Outputs | None = None
        self.step = 1  # the upload's frame step
        self.still = False  # the clip's discs do not move
        self.found: tuple | None = None  # the proposals shown: (how, frame, proposals)
        self.picked: list[int] = []  # the numbers picked among them by clicks

    # ------------------------------------------------------------------ helpers
    @property
    def clip(self) -> Path:
        return self.clips[(self.step, self.still)]

    def open_clip(self, step: int | None = None) -> UserSession:
        """A new session on the machine's clip, read with ``step`` (default: the machine's)."""
        user = UserSession(self.engine)
        user.upload(self.clip, source_name="discs.zip", fps=FPS, frame_step=step or self.step)
        return user

    @property
    def tracking(self):
        return self.user.tracking

    def ids(self) -> list[int]:
        return [o.obj_id for o in self.user.objects]

    def fixes(self) -> bool:
        return self.tracking is not None and bool(identity_fixes(self.tracking.history))

    def edits_allowed(self) -> bool:
        return EDITS_AFTER_FIXES or not self.fixes()

    def outputs(self) -> Outputs | None:
        return read_outputs(self.user, labels=True)

    def attempt(self, fn) -> bool:
        """Run a user action; one refused (a UserError) must change nothing."""
        before = self.last
        try:
            fn()
        except UserError as err:
            assert err.message.endswith("."), err.message
            after = self.outputs()
            assert (before is None) == (after is None)
            if before is not None:
                assert after.files == before.files, f"a refused action changed files: {err}"
            return False
        return True

    def edit(self, frame: int, obj: int, fn, record=None) -> None:
        """A prompt on (frame, obj): only that object's mask on that frame may change as
        shown; with the double, it becomes the prompts' mask (contains it where a merge
        covering the frame adds the other object's pixels to the kept one)."""
        before = self.last
        history = None if self.tracking is None else len(self.tracking.history)
        ok = self.attempt(fn)
        self.undoable = None
        if not ok:
            return
        if record is not None:
            record(self.prompts.setdefault((frame, obj), {"clicks": [], "box": None, "mask": None}))
        after = self.outputs()
        if before is not None and after is not None:
            for key, mask in before.shown.items():
                if key == (frame, obj) or key not in after.shown:
                    continue
                now = after.shown[key]
                same = (mask is None and now is None) or (
                    mask is not None and now is not None and np.array_equal(mask, now)
                )
                assert same, f"an edit of object {obj} on frame {frame} changed {key}"
        if self.distinct and after is not None and (frame, obj) in self.prompts:
            expected = prompt_mask(self.prompts[(frame, obj)])
            shown = after.shown.get((frame, obj))
            # a merge covering the frame adds the other object's pixels to the kept one
            merged = any(
                isinstance(fix, Merge) and fix.covers(frame)
                for fix in fixes_in_force(self.tracking.history)
            )
            if expected is not None:
                assert shown is not None, f"object {obj} on frame {frame} shows no mask"
                assert (
                    np.array_equal(shown | expected, shown)
                    if merged
                    else np.array_equal(shown, expected)
                ), f"object {obj} on frame {frame} does not show its prompts' mask"
        self.before, self.last = before, after
        self.undoable = ("prompt", frame, obj, history)

    def run(self, direction: str, start=None, end=None, cancel_after: int | None = None):
        def go():
            for n, _ in enumerate(self.user.propagate(direction, start, end), start=1):
                if cancel_after is not None and n == cancel_after:
                    self.user.cancel()

        self.attempt(go)
        self.undoable = None
        self.last = self.outputs()

    # ------------------------------------------------------------------ rules
    @initialize(step=st.sampled_from([1, 2, 3]), still=st.sampled_from([False, False, True]))
    def upload(self, step, still):
        """An upload of the clip read every ``step``-th frame: FRAMES kept of
        SOURCE_FRAMES[step], at the original's rate."""
        self.step, self.still = step, still
        self.user = self.open_clip()
        info = self.user.info
        assert (info.num_frames, info.frame_step) == (FRAMES, step)
        assert (info.source_frames, info.fps) == (SOURCE_FRAMES[step], FPS)
        self.last = None
        self.counts["sequences"] += 1
        self.counts[f"step {step}"] += 1

    def teardown(self):
        if self.user is not None:
            self.user.close()

    @precondition(lambda self: len(self.user.objects) < MAX_OBJECTS and self.edits_allowed())
    @rule(name=st.sampled_from(["", "mouse", "a b"]))
    def add_object(self, name):
        self.attempt(lambda: self.user.add_object(name or None))
        self.undoable = None
        self.last = self.outputs()

    @precondition(lambda self: self.tracking is not None)
    @rule(obj=obj_st, name=st.sampled_from(["left", "right one"]))
    def rename(self, obj, name):
        self.attempt(lambda: self.user.rename_object(obj, name))
        self.undoable = None
        self.last = self.outputs()

    @precondition(lambda self: self.tracking is not None and self.edits_allowed())
    @rule(obj=obj_st)
    def remove(self, obj):
        if self.attempt(lambda: self.user.remove_object(obj)):
            self.prompts = {k: v for k, v in self.prompts.items() if k[1] != obj}
        self.undoable = None
        self.last = self.outputs()

    @precondition(lambda self: self.tracking is not None and self.edits_allowed())
    @rule(frame=frames_st, obj=obj_st, x=xs, y=ys, positive=st.booleans())
    def click(self, frame, obj, x, y, positive):
        mode = "positive" if positive else "negative"
        self.edit(
            frame,
            obj,
            lambda: self.user.click(frame, x + 0.5, y + 0.5, mode, obj_id=obj),
            lambda p: p["clicks"].append((x + 0.5, y + 0.5, positive)),
        )

    @precondition(lambda self: self.tracking is not None and self.edits_allowed())
    @rule(frame=frames_st, obj=obj_st, x0=xs, y0=ys, w=st.integers(1, 30), h=st.integers(1, 30))
    def box(self, frame, obj, x0, y0, w, h):
        x1, y1 = min(WIDTH, x0 + w), min(HEIGHT, y0 + h)

        def record(p):
            p["box"] = (x0, y0, x1, y1)

        self.edit(frame, obj, lambda: self.user.add_box(frame, x0, y0, x1, y1, obj), record)

    @precondition(lambda self: self.tracking is not None and self.edits_allowed())
    @rule(frame=frames_st, obj=obj_st, x=xs, y=ys, r=st.integers(2, 9))
    def paint(self, frame, obj, x, y, r):
        mask = disc(x + 0.5, y + 0.5, r)

        def record(p):
            p.update(clicks=[], box=None, mask=mask)

        self.edit(frame, obj, lambda: self.user.paint(frame, mask, obj), record)

    @precondition(lambda self: self.edits_allowed() and len(self.user.objects) <= MAX_OBJECTS - 2)
    @rule(frame=frames_st)
    def labels(self, frame):
        before = self.last
        added = []
        ok = self.attempt(
            lambda: added.extend(self.user.start_from_labels(label_png(frame), frame))
        )
        self.undoable = None
        self.last = self.outputs()
        if not ok:
            return
        for i, obj in enumerate(added):
            mask = synth.disc_mask(HEIGHT, WIDTH, CLIP_DISCS[i], frame)
            self.prompts[(frame, obj.obj_id)] = {"clicks": [], "box": None, "mask": mask}
            if self.distinct:
                assert np.array_equal(self.last.shown[(frame, obj.obj_id)], mask)
        if before is not None:  # objects there before keep their masks
            for key, mask in before.shown.items():
                now = self.last.shown[key]
                assert (mask is None) == (now is None)
                assert mask is None or np.array_equal(mask, now), key

    # objects found without clicks
    @rule(
        how=st.sampled_from(FINDERS),
        frame=frames_st,
        count=st.integers(1, 3),
        min_area=st.sampled_from([20, 20, 20, 1000]),  # mostly proposals, some refusals
        threshold=st.sampled_from([None, None, None, 250.0]),
    )
    def find(self, how, frame, count, min_area, threshold):
        """A finder run on a frame changes no file. On the moving clip both finders find
        the discs of that frame, the larger first, at most ``count``; nothing moves in the
        still clip, no disc is 1000 pixels large and none is brighter than grey 250: those
        are refused, and the proposals shown before stay."""
        before, shown_before = self.last, self.user.found
        finder = FinderSettings(count=count, min_area=min_area, threshold=threshold)
        proposals = []
        ok = self.attempt(lambda: proposals.extend(self.user.find_objects(how, frame, finder)))
        self.last = self.outputs()
        assert (before is None) == (self.last is None)
        if before is not None:
            assert self.last.files == before.files, "finding objects changed the files"
        refused = (how == "motion" and self.still) or min_area > 200
        refused = refused or (how == "contrast" and threshold is not None)
        assert ok == (not refused), f"{how} on frame {frame}: refused {not ok}"
        self.counts["finds refused" if refused else f"finds ({how})"] += 1
        if not ok:
            assert self.user.found is shown_before, "a refused finder changed the proposals"
            return
        truths = [synth.disc_mask(HEIGHT, WIDTH, d, 0 if self.still else frame) for d in CLIP_DISCS]
        truths = truths[:count]
        assert [p.number for p in proposals] == list(range(1, len(truths) + 1))
        for p, truth in zip(proposals, truths, strict=True):
            rows_, cols = np.nonzero(truth)
            assert math.dist(p.centroid, (cols.mean() + 0.5, rows_.mean() + 0.5)) <= 1.0
            assert (p.mask & truth).sum() >= 0.8 * (p.mask | truth).sum(), "the disc's pixels"
            rows_, cols = np.nonzero(p.mask)
            assert p.box == (cols.min(), rows_.min(), cols.max() + 1, rows_.max() + 1)
        self.found, self.picked = (how, frame, proposals), []

    @rule(n=st.integers(0, 3))
    def pick(self, n):
        """A click on proposal ``n``'s centroid picks or unpicks it; a click on a corner of
        the frame (0: no disc there), or on a proposal not shown, picks nothing."""
        proposals = [] if self.found is None else self.found[2]
        x, y = proposals[n - 1].centroid if 0 < n <= len(proposals) else (0.5, 0.5)
        try:
            picked, message = self.user.toggle_pick(self.picked, x, y)
        except UserError:
            assert self.found is None
            return
        hit = 0 < n <= len(proposals)
        assert picked == (sorted(set(self.picked) ^ {n}) if hit else self.picked), message
        self.picked = picked

    @precondition(lambda self: self.edits_allowed() and len(self.user.objects) <= MAX_OBJECTS - 2)
    @rule(
        which=st.sampled_from([None, None, "picked", [1], [2], [1, 2], [], [0, 3]]),
        prompt=st.sampled_from(PROMPTS),
    )
    def accept(self, which, prompt):
        """The proposals shown, all (None), those picked by clicks or a list of numbers,
        made objects prompted with their box or their mask: one each, named after its
        proposal, that shows (the double) the box filled or the mask on the finder's frame;
        the objects before keep their masks. Nothing shown, nothing picked or a number not
        shown is refused."""
        before, found = self.last, self.found
        picked = self.picked if which == "picked" else which
        numbers = [] if found is None else [p.number for p in found[2]]
        chosen = numbers if picked is None else sorted(set(picked))
        refused = found is None or not chosen or not set(chosen) <= set(numbers)
        added = []
        ok = self.attempt(lambda: added.extend(self.user.accept_found(picked, prompt)))
        self.undoable = None
        self.last = self.outputs()
        assert ok == (not refused), f"accepting {picked} of {numbers}: refused {not ok}"
        self.counts["accepts refused" if refused else f"accepts ({prompt})"] += 1
        if not ok:
            return
        how, frame, proposals = found
        self.found, self.picked = None, []
        stem = "label" if how == "contrast" and prompt == "mask" else "found"
        assert [o.name for o in added] == [f"{stem} {n}" for n in chosen]
        for obj, n in zip(added, chosen, strict=True):
            p = proposals[n - 1]
            record = {"clicks": [], "box": None, "mask": None}
            record["box" if prompt == "box" else "mask"] = p.box if prompt == "box" else p.mask
            self.prompts[(frame, obj.obj_id)] = record
            if self.distinct:
                expected = p.mask
                if prompt == "box":  # the pixels the box encloses
                    expected = np.zeros_like(p.mask)
                    x0, y0, x1, y1 = (int(v) for v in p.box)
                    expected[y0:y1, x0:x1] = True
                shown = self.last.shown[(frame, obj.obj_id)]
                assert np.array_equal(shown, expected), f"{obj.name} does not show its {prompt}"
        if before is not None:  # objects there before keep their masks
            for key, mask in before.shown.items():
                now = self.last.shown[key]
                assert (mask is None) == (now is None)
                assert mask is None or np.array_equal(mask, now), key

    @precondition(lambda self: self.edits_allowed() and len(self.user.objects) <= MAX_OBJECTS - 2)
    @rule(
        how=st.sampled_from(FINDERS),
        frame=frames_st,
        prompt=st.sampled_from(PROMPTS),
        every=st.booleans(),
    )
    def find_and_accept(self, how, frame, prompt, every):
        """The usual way: a finder run for two objects, then all its proposals accepted, or
        the first one picked by a click and accepted (checked as :meth:`find`,
        :meth:`pick` and :meth:`accept` are)."""
        self.find(how, frame, 2, 20, None)
        if not every:
            self.pick(1)
        self.accept(None if every else "picked", prompt)

    @precondition(lambda self: self.tracking is not None and self.edits_allowed())
    @rule(frame=frames_st, obj=obj_st)
    def undo(self, frame, obj):
        expect = self.before if self.undoable and self.undoable[1:3] == (frame, obj) else None

        def record(p):
            if p["clicks"]:
                p["clicks"].pop()
            elif p["box"] is not None:
                p["box"] = None
            else:
                p["mask"] = None

        self.edit(frame, obj, lambda: self.user.undo(frame, obj), record)
        if expect is not None and self.undoable is not None:
            assert self.last.files == expect.files, "undo did not give back the files"

    @precondition(lambda self: self.tracking is not None and self.edits_allowed())
    @rule(frame=frames_st, obj=obj_st)
    def clear(self, frame, obj):
        def record(p):
            p.update(clicks=[], box=None, mask=None)

        self.edit(frame, obj, lambda: self.user.clear_frame(frame, obj), record)

    # tracking
    @precondition(lambda self: self.tracking is not None)
    @rule(
        direction=st.sampled_from(["forward", "backward", "both"]),
        start=st.none() | frames_st,
        cancel_after=st.none() | st.integers(1, 3),
    )
    def track(self, direction, start, cancel_after):
        self.run(direction, start, None, cancel_after)

    @precondition(lambda self: self.tracking is not None)
    @rule(start=frames_st, end=frames_st)
    def track_range(self, start, end):
        self.run("forward" if end >= start else "backward", start, end)

    # fixes
    @precondition(lambda self: len(self.user.objects) >= 2 and self.last is not None)
    @rule(merge=st.booleans(), a=obj_st, b=obj_st, frame=frames_st)
    def fix(self, merge, a, b, frame):
        before = self.last
        ok = self.attempt(lambda: self.user.fix_identity("merge" if merge else "swap", a, b, frame))
        self.last = self.outputs()
        self.undoable = ("fix",) if ok else None
        self.before = before
        if ok and not merge:  # a swap exchanges exactly the two objects' masks from frame on
            for (f, i), mask in before.shown.items():
                j = {a: b, b: a}.get(i, i) if f >= frame else i
                now = self.last.shown[(f, j)]
                assert (mask is None) == (now is None), (f, i)
                assert mask is None or np.array_equal(mask, now), (f, i)

    @precondition(lambda self: self.fixes())
    @rule()
    def undo_fix(self):
        expect = self.before if self.undoable == ("fix",) else None
        self.attempt(self.user.undo_fix)
        self.last = self.outputs()
        self.undoable = None
        if expect is not None:
            assert self.last.files == expect.files, "undoing the fix did not give back the files"

    @precondition(lambda self: self.last is not None)
    @rule(frames=st.integers(0, 3))
    def fill_gaps(self, frames):
        self.attempt(lambda: self.user.fill_gaps(frames))
        self.last = self.outputs()
        self.undoable = None

    # zones and the ruler
    @rule(x0=xs, y0=ys, w=st.integers(4, 40), h=st.integers(4, 30), name=st.sampled_from("ab"))
    def zone(self, x0, y0, w, h, name):
        self.user.behaviour.add([Rect(name, x0, y0, x0 + w, y0 + h)])
        self.last = self.outputs()

    @precondition(lambda self: bool(self.user.behaviour.setup.zones))
    @rule(by_overlap=st.booleans(), fraction=st.sampled_from([0.25, 0.5, 1.0]))
    def zone_options(self, by_overlap, fraction):
        if by_overlap and not (EDITS_AFTER_FIXES or not self.fixes()):
            by_overlap = False  # membership by overlap reads masks without the fixes
        self.user.behaviour.set_options(by_overlap, fraction, None, False)
        self.last = self.outputs()

    @rule(x0=xs, y0=ys, x1=xs, y1=ys)
    def ruler(self, x0, y0, x1, y1):
        self.user.behaviour.click("ruler", x0, y0)
        self.user.behaviour.click("ruler", x1, y1)
        self.attempt(lambda: self.user.set_ruler(10, "mm"))
        self.last = self.outputs()

    # projects
    @precondition(lambda self: self.tracking is not None)
    @rule()
    def save_load(self):
        """Save, load into a new session on the same clip (replaying every action): the
        same files, names and zones."""
        path = self.user.save_project(self.user.calibration)
        saved = Path(path).read_bytes()
        assert json.loads(saved)["source"].get("frame_step", 1) == self.step
        other = self.open_clip()
        project = other.workspace.root / "loaded.json"
        project.write_bytes(saved)
        other.load_project(project)
        other.calibration = self.user.calibration
        other.behaviour.setup = self.user.behaviour.setup
        assert [(o.obj_id, o.name) for o in other.objects] == [
            (o.obj_id, o.name) for o in self.user.objects
        ]
        theirs = read_outputs(other, labels=True)
        mine = self.outputs()
        assert (mine is None) == (theirs is None)
        if mine is not None:
            assert theirs.files == mine.files, "save, load and replay changed the files"
        self.user.close()
        self.user, self.last, self.undoable = other, theirs, None
        self.found, self.picked = None, []

    @precondition(lambda self: self.tracking is not None)
    @rule(other_step=st.sampled_from([1, 2, 3]))
    def load_with_another_step(self, other_step):
        """A project loaded on the clip read with another frame step (other frames of the
        original) is refused in one sentence naming both steps; the session it was loaded
        into stays empty."""
        if other_step == self.step:
            return
        path = self.user.save_project(self.user.calibration)
        other = self.open_clip(other_step)
        try:
            project = other.workspace.root / "loaded.json"
            project.write_bytes(Path(path).read_bytes())
            with pytest.raises(UserError) as refused:
                other.load_project(project)
            assert f"frame step {self.step} " in refused.value.message
            assert f"frame step {other_step};" in refused.value.message
            assert other.objects == [] and other.tracking is None
        finally:
            other.close()

    # kept sessions
    @precondition(lambda self: self.tracking is not None)
    @rule()
    def release(self):
        """The kept session's model state released (as for an unseen tab or the RAM cap):
        nothing a user sees changes, and the next click, undo or run rebuilds the state by
        replaying the history; the checks of those steps (each prompt's known mask, undo's
        files, the agreement of every output) then hold as if it had stayed.

        Recorded runs of wrong variants: a rebuild replaying all but the last action failed
        at the next ``add_object`` (the rebuilt history differs); a rebuild whose adopted
        state lost its mask prompts failed on ``labels(frame=0)``, ``release()``,
        ``track_range(start=0, end=0)`` (no input for object 1)."""
        before = self.outputs()
        was_released = self.user.model_released
        assert self.user.release_model() is not was_released  # a released one: nothing to do
        assert self.user.model_released
        self.counts["releases"] += 1
        after = self.outputs()
        assert (before is None) == (after is None)
        if before is not None:
            assert after.files == before.files, "releasing the model state changed the files"
        self.last = after

    # ------------------------------------------------------------------ after every step
    @invariant()
    def outputs_agree(self):
        if self.user is None:
            return
        self.counts["steps"] += 1
        if self.last is None:
            self.last = self.outputs()
        if self.last is not None:
            check_outputs(self.user, self.last, self.step, EDITS_AFTER_FIXES or not self.fixes())


def prompt_mask(p: dict) -> np.ndarray | None:
    """What the double answers to an object's prompts on a frame (None: no prompts)."""
    if p["clicks"] or p["box"] is not None:
        points = [(x, y) for x, y, _ in p["clicks"]] or None
        labels = [1 if pos else 0 for _, _, pos in p["clicks"]] or None
        return points_mask(points, labels, p["box"])
    return p["mask"]


# ---------------------------------------------------------------------- the runs
def clip_frames(step: int, still: bool) -> np.ndarray:
    """The SOURCE_FRAMES[step] frames of the clip whose every ``step``-th frame is
    :data:`CLIP_DISCS` on frame f // step (still: the discs of frame 0 on every frame)."""
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
    grey = 20 + 6 * np.sin(xx / 7.0) * np.cos(yy / 5.0)  # a still, dark, textured floor
    background = np.repeat(grey.astype(np.uint8)[:, :, None], 3, axis=2)
    frames = np.empty((SOURCE_FRAMES[step], HEIGHT, WIDTH, 3), np.uint8)
    for t in range(len(frames)):
        frames[t] = background
        for d in CLIP_DISCS:
            if not still:
                d = dataclasses.replace(d, vx=d.vx / step, vy=d.vy / step)
            frames[t][synth.disc_mask(HEIGHT, WIDTH, d, 0 if still else t)] = d.color
    return frames


@pytest.fixture
def clips(tmp_path) -> dict:
    return {
        (step, still): synth.write_image_zip(
            tmp_path / f"discs_{step}_{int(still)}.zip", clip_frames(step, still)
        )
        for step in SOURCE_FRAMES
        for still in (False, True)
    }


@pytest.fixture(autouse=True)
def no_plots(monkeypatch):
    """The trajectory and confidence plots are drawn from the same rows and checked
    elsewhere; drawing them at every step would take most of the run."""
    import sam2web.outputs.exports as exports

    def blank(*args):
        Path(args[-1]).write_bytes(b"")
        return Path(args[-1])

    monkeypatch.setattr(exports, "plot_trajectories", blank)
    monkeypatch.setattr(exports, "plot_confidence", blank)


def _run(machine, engine, clips, **kwargs):
    machine.engine, machine.clips = engine, clips
    machine.counts = collections.Counter()
    run_state_machine_as_test(
        machine,
        settings=settings(
            deadline=None,
            suppress_health_check=list(HealthCheck),
            **kwargs,
        ),
    )
    print(f"{machine.__name__}: " + ", ".join(f"{n} {what}" for what, n in machine.counts.items()))


class DoubleMachine(SessionMachine):
    pass


class RealMachine(SessionMachine):
    """The real architecture with random weights: its masks are not known, so only the
    agreement of the outputs, undo and save/load are checked."""

    distinct = False


def test_session_with_the_double(double_engine, clips):
    _run(DoubleMachine, double_engine, clips, max_examples=40, stateful_step_count=25)


@pytest.mark.exhaustive
def test_session_with_the_double_exhaustive(double_engine, clips):
    _run(DoubleMachine, double_engine, clips, max_examples=2000, stateful_step_count=60)


def test_session_with_the_real_model(engine, clips):
    _run(RealMachine, engine, clips, max_examples=8, stateful_step_count=10)


@pytest.mark.exhaustive
def test_session_with_the_real_model_exhaustive(engine, clips):
    _run(RealMachine, engine, clips, max_examples=50, stateful_step_count=20)
