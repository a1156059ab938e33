"""Objects found without clicks: the finders' proposals (:mod:`sam2web.analysis.finders`)
become objects, and a project's finder step runs again on each recording of a batch.

:class:`FindingSession` is the part of :class:`~sam2web.session.user.UserSession` that
finds proposals on a frame (:meth:`~FindingSession.find_objects`, which changes nothing),
forgets them on request (:meth:`~FindingSession.dismiss_found`, nothing else changes either)
and makes the ones the user accepts into objects (:meth:`~FindingSession.accept_found`):
each is an object prompted with its box or with its blob as a mask prompt; contrast
proposals go through the label-image start (:func:`sam2web.session.corrections.start_from_labels`).
The objects and prompts are ordinary history actions, so undo, save and load work on them
as on clicks, followed by one :class:`~sam2web.history.FindObjects` record of how they were
found. New objects are named by no identity fix, so their prompts go to themselves (the
identity rule holds: :meth:`edit_target` is asked all the same).

:func:`refit_found` is the batch's half: in a project fitted to another recording, the
actions a :class:`FindObjects` record made are replaced by what the finder finds on that
recording (same object ids and names, proposals picked by the same numbers). A recording
on which fewer than the ``count`` objects asked for are found is refused in one sentence.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from ..analysis.finders import (
    FinderSettings,
    Proposal,
    find_contrast,
    find_moving,
    proposals_from_labels,
)
from ..errors import PromptError, UserError, as_clause
from ..history import AddMask, AddObject, FindObjects, SetBox, encode_mask
from ..outputs.proposals import draw_proposals
from ..tracking.tracker import drop_objects_since, object_mark, record_found
from ..types import Box, TrackedObject, VideoInfo
from . import corrections
from .project import Project, ProjectError

FINDERS = ("motion", "contrast")
PROMPTS = ("box", "mask")


@dataclass(frozen=True)
class Found:
    """The last proposals shown: where and how they were found."""

    frame: int
    how: str
    settings: FinderSettings
    proposals: list[Proposal]


def run_finder(
    how: str,
    read_frame: Callable[[int], np.ndarray],
    num_frames: int,
    frame_idx: int,
    settings: FinderSettings,
) -> list[Proposal]:
    """The proposals of finder ``how`` on frame ``frame_idx`` (one sentence on refusal)."""
    if how == "motion":
        return find_moving(read_frame, num_frames, frame_idx, settings)
    if how == "contrast":
        return proposals_from_labels(find_contrast(read_frame(frame_idx), settings))
    raise PromptError("Choose motion or contrast as the way to find objects.")


class FindingSession:
    """Finding objects without clicks (see the module docstring); mixed into
    :class:`UserSession`, whose video, model and objects it uses."""

    found: Found | None = None

    def find_objects(
        self, how: str, frame_idx: int, settings: FinderSettings | None = None
    ) -> list[Proposal]:
        """Proposals of finder ``how`` on the frame, numbered from 1 (largest first); they
        are kept for :meth:`accept_found` and drawn by
        :func:`sam2web.outputs.proposals.draw_proposals`. Nothing else changes."""
        self.touch()
        frame_idx = self.check_frame(frame_idx)
        settings = dataclasses.replace(
            settings or FinderSettings(), max_blobs=self.engine.settings.max_labels
        )
        proposals = run_finder(how, self.frame_rgb, self.info.num_frames, frame_idx, settings)
        self.found = Found(frame_idx, how, settings, proposals)
        return proposals

    def dismiss_found(self) -> int:
        """Forget the proposals of the last :meth:`find_objects` (how many there were; 0
        when none were shown). No object, prompt or file changes."""
        self.touch()
        found, self.found = self.found, None
        return 0 if found is None else len(found.proposals)

    def drop_workspace(self) -> None:
        super().drop_workspace()
        self.found = None  # proposals of another video

    def proposals_shown(self, frame_idx) -> bool:
        """Whether proposals found on frame ``frame_idx`` wait to be accepted."""
        return self.found is not None and self.found.frame == int(frame_idx or 0)

    def toggle_pick(self, picked: list[int], x: float, y: float) -> tuple[list[int], str]:
        """The numbers ``picked`` with the proposal under pixel (x, y) of the original frame
        added or removed (its mask first, else its box), and what happened in a sentence."""
        found = self.found
        if found is None:
            raise PromptError("Find objects first, then pick the proposals.")
        col, row = int(x), int(y)
        hit = next((p for p in found.proposals if _in_mask(p, row, col)), None)
        hit = hit or next((p for p in found.proposals if _in_box(p, x, y)), None)
        if hit is None:
            return picked, "That click is outside every proposal; click inside one to pick it."
        if hit.number in picked:
            return sorted(set(picked) - {hit.number}), f"Proposal {hit.number} unpicked."
        return sorted({*picked, hit.number}), f"Proposal {hit.number} picked."

    def proposals_image(self, picked: list[int]) -> np.ndarray:
        """The frame of the proposals as the page shows it, the picked ones solid."""
        found = self.found
        shown = self.view_frame(found.frame)
        drawn = draw_proposals(self.frame_rgb(found.frame), found.proposals, picked)
        if drawn.shape != shown.shape:
            size = (shown.shape[1], shown.shape[0])
            drawn = cv2.resize(drawn, size, interpolation=cv2.INTER_AREA)
        return drawn

    def accept_found(
        self, picked: list[int] | None = None, prompt: str = "box"
    ) -> list[TrackedObject]:
        """Make proposals ``picked`` (their numbers; None: all) of the last
        :meth:`find_objects` into objects prompted by ``prompt`` ("box" or "mask"), all or
        nothing; records how they were found."""
        self.touch()
        found = self.found
        if found is None:
            raise PromptError("Find objects first, then accept the proposals.")
        numbers = [p.number for p in found.proposals]
        picked = numbers if picked is None else sorted({int(n) for n in picked})
        if not picked or any(n not in numbers for n in picked):
            raise PromptError(f"Pick proposals among {', '.join(map(str, numbers))}.")
        if prompt not in PROMPTS:
            raise PromptError("Prompt the found objects with their box or their mask.")
        chosen = [p for p in found.proposals if p.number in picked]
        tracking = self.ensure_tracking()
        mark = object_mark(tracking)
        with self.busy():
            if found.how == "contrast" and prompt == "mask":
                labels = {p.number: p.mask for p in chosen}
                added = corrections.start_from_labels(
                    tracking,
                    labels,
                    found.frame,
                    lambda fn: self.on_model(tracking, fn),
                    lambda obj: self.edit_target(obj, found.frame),
                )
            else:
                added = self._add_found(tracking, found.frame, chosen, prompt, mark)
            self.on_model(tracking, lambda: record_found(tracking, _record(found, picked, prompt)))
        self.found = None
        self.pending_corner = None
        self.active_object = added[-1].obj_id
        return added

    def _add_found(self, tracking, frame: int, chosen: list[Proposal], prompt: str, mark: int):
        def add(p: Proposal) -> TrackedObject:
            obj = tracking.add_object(f"found {p.number}")
            target = self.edit_target(obj, frame)
            if prompt == "box":
                tracking.set_box(frame, target, Box(*p.box))
            else:
                tracking.add_mask(frame, target, p.mask)
            return obj

        added = []
        try:
            for p in chosen:
                added.append(self.on_model(tracking, lambda p=p: add(p)))
        except BaseException:
            self.on_model(tracking, lambda: drop_objects_since(tracking, mark))
            raise
        return added


def _in_mask(p: Proposal, row: int, col: int) -> bool:
    h, w = p.mask.shape
    return 0 <= row < h and 0 <= col < w and bool(p.mask[row, col])


def _in_box(p: Proposal, x: float, y: float) -> bool:
    x0, y0, x1, y1 = p.box
    return x0 <= x < x1 and y0 <= y < y1


def _record(found: Found, picked: list[int], prompt: str) -> FindObjects:
    s = found.settings
    return FindObjects(
        found.frame,
        found.how,
        prompt,
        tuple(picked),
        s.count,
        s.min_area,
        s.max_area,
        s.threshold,
        s.polarity,
        s.split_depth,
    )


def finder_settings(action: FindObjects, area_scale: float = 1.0) -> FinderSettings:
    """The settings a :class:`FindObjects` record was made with, areas scaled by
    ``area_scale`` (a recording of another size)."""
    return FinderSettings(
        count=action.count,
        min_area=max(1, round(action.min_area * area_scale)),
        max_area=None if action.max_area is None else max(1, round(action.max_area * area_scale)),
        threshold=action.threshold,
        polarity=action.polarity,
        split_depth=action.split_depth,
        max_blobs=max(action.count, 50),
    )


def refit_found(
    project: Project,
    read_frame: Callable[[int], np.ndarray],
    info: VideoInfo,
    area_scale: float = 1.0,
) -> tuple[Project, int | None]:
    """``project`` (already fitted to the recording ``info`` describes) with each finder
    step run again on it (see the module docstring), and the number of objects found (the
    total of every step; None when the project has none)."""
    history = list(project.history)
    total: int | None = None
    for i, action in enumerate(history):
        if not isinstance(action, FindObjects):
            continue
        n = len(action.picked)
        made = history[i - 2 * n : i]
        adds = made[0::2]
        if i < 2 * n or not all(isinstance(a, AddObject) for a in adds):
            raise ProjectError(
                f"Step {i + 1} of the project (find) does not follow the objects it found."
            )
        settings = finder_settings(action, area_scale)
        try:
            proposals = run_finder(action.how, read_frame, info.num_frames, action.frame, settings)
        except UserError as err:
            raise ProjectError(
                f"The objects cannot be found on frame {action.frame + 1}: "
                f"{as_clause(err.message)}."
            ) from None
        if len(proposals) < action.count:
            raise ProjectError(
                f"Found {len(proposals)} of the {action.count} objects the project finds on "
                f"frame {action.frame + 1}; check the recording or the finder's settings."
            )
        by_number = {p.number: p for p in proposals}
        new = []
        for add, number in zip(adds, action.picked, strict=True):
            p = by_number[number]
            new.append(add)
            if action.prompt == "box":
                new.append(SetBox(action.frame, add.obj, *p.box))
            else:
                new.append(AddMask(action.frame, add.obj, encode_mask(p.mask)))
        history[i - 2 * n : i] = new
        total = (total or 0) + len(proposals)
    return dataclasses.replace(project, history=history), total
