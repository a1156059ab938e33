"""The page's objects panel: its widgets as one record (:class:`ObjectsPanel`).

:func:`build_objects_panel` creates, inside the current ``gr.Blocks``, the list of objects
(a table: the object's colour as a swatch with its number, its name, the frames where it is
present, whether the frame view shows it), the active-object choice, the name box and the
add, rename and remove buttons. A click on a row makes that object the active one (clicks
on the frame go to it); a click on its *frame view* cell shows or hides it there.
:func:`table_value` is what the table shows of a session; :mod:`.objects_events` holds
what each control does and wires it.

The table is a ``gr.Dataframe`` of plain text cells: its ``select`` event names the row
and column clicked, the swatch is the cell's background colour (a pandas ``Styler``), and
text cells are shown as text, so an object's name needs no escaping there (it is escaped
where it meets Markdown, in :mod:`.views`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import gradio as gr
import pandas as pd

from ..types import TrackedObject
from .user import UserSession

COLUMNS = ["#", "object", "frames present", "frame view"]
SHOW_COLUMN = COLUMNS.index("frame view")  # a click on this cell shows or hides the object
SHOWN, HIDDEN = "shown", "hidden"  # plain text: not every browser has an emoji font
ACTIVE_MARK = "▶ "  # before the active object's name
ACTIVE_STYLE = "font-weight: bold; background-color: rgba(255, 200, 0, 0.25)"
HIDE_INFO = (
    "Click an object to make it the active one (clicks on the frame go to it); click its "
    "*frame view* cell to show or hide it on the frame here. Hiding changes only this "
    "page's frame view: the overlay video and every download still show every object."
)


@dataclass(frozen=True)
class ObjectsPanel:
    """The panel's components, by what they are on the page."""

    table: gr.Dataframe  # one row per object; select: row and column clicked
    sent: gr.State  # what this tab's table last received (see table_key)
    active: gr.Dropdown  # the active object (clicks on the frame go to it)
    name: gr.Textbox
    add_btn: gr.Button
    rename_btn: gr.Button
    remove_btn: gr.Button
    choice: gr.Group  # around ``active``: shown once there is an object
    edit: gr.Row  # around rename and remove: shown once there is an object
    # Hidden inputs of the API's show/hide endpoint
    api_object: gr.Number
    api_shown: gr.Checkbox
    api_btn: gr.Button


def build_objects_panel() -> ObjectsPanel:
    """Every component of the panel, in page order, inside the current ``gr.Blocks``."""
    parts: dict = {}
    gr.Markdown("### Objects")
    parts["table"] = gr.Dataframe(
        value=pd.DataFrame(columns=COLUMNS),
        headers=COLUMNS,
        datatype="str",
        interactive=False,
        label="Objects",
        show_label=False,
        wrap=True,
        max_height=320,
        column_widths=["12%", "38%", "32%", "18%"],
        elem_id="objects-table",
        visible=False,  # until there is an object
    )
    parts["sent"] = gr.State(None)
    gr.Markdown(f"<small>{HIDE_INFO}</small>", elem_id="objects-info")
    # Choosing, renaming and removing an object are shown once there is one.
    with gr.Group(visible=False, elem_id="object-choice") as parts["choice"]:
        parts["active"] = gr.Dropdown(
            label="Active object (clicks go to it)",
            choices=[],
            interactive=True,
            elem_id="active-object",
        )
    with gr.Row():
        parts["name"] = gr.Textbox(label="Name", placeholder="e.g. mouse 1", max_length=80, scale=2)
        parts["add_btn"] = gr.Button("Add object", elem_id="add-object", scale=1)
    with gr.Row(visible=False, elem_id="object-edit") as parts["edit"]:
        parts["rename_btn"] = gr.Button("Rename active", size="sm", elem_id="rename-object")
        parts["remove_btn"] = gr.Button(
            "Remove active", size="sm", variant="stop", elem_id="remove-object"
        )
    with gr.Row(visible=False):
        parts["api_object"] = gr.Number(label="object_id", precision=0, value=0)
        parts["api_shown"] = gr.Checkbox(label="shown", value=True)
        parts["api_btn"] = gr.Button("show")
    return ObjectsPanel(**parts)


# ------------------------------------------------------------------ what the table shows
def _frame_list(frames: Sequence[int]) -> str:
    shown = ", ".join(str(f) for f in frames[:5])
    return shown + (", …" if len(frames) > 5 else "")


def frames_text(present: Sequence[int], prompted: Sequence[int], num_frames: int) -> str:
    """Where an object is: "frames 0–39, 38 of 40" once tracked beyond its prompts,
    "prompted on frame 3" before, "no prompts yet" without either."""
    if present and not set(present) <= set(prompted):
        span = f"frame {present[0]}" if len(present) == 1 else f"frames {present[0]}–{present[-1]}"
        return f"{span}, {len(present)} of {num_frames}"
    if prompted:
        plural = "s" if len(prompted) > 1 else ""
        return f"prompted on frame{plural} {_frame_list(prompted)}"
    return "no prompts yet"


def rows(user: UserSession) -> list[list[str]]:
    """The table's cells, one row per object in the session's order."""
    if user.folder is None:
        return []
    present, prompted = user.frames_present(), user.prompted_frames()
    num_frames = user.info.num_frames
    return [
        [
            str(o.obj_id),
            (ACTIVE_MARK if o.obj_id == user.active_object else "") + o.name,
            frames_text(present.get(o.obj_id, []), prompted.get(o.obj_id, []), num_frames),
            HIDDEN if o.obj_id in user.hidden_objects else SHOWN,
        ]
        for o in user.objects
    ]


def _ink(color) -> str:
    r, g, b = color
    return "#000000" if 0.299 * r + 0.587 * g + 0.114 * b > 150 else "#ffffff"


def _styles(objects: list[TrackedObject], active: int | None, table: pd.DataFrame):
    css = pd.DataFrame("", index=table.index, columns=table.columns)
    for i, obj in enumerate(objects):
        r, g, b = obj.color
        swatch = f"background-color: rgb({r}, {g}, {b}); color: {_ink(obj.color)}"
        css.iloc[i, 0] = swatch + "; font-weight: bold; text-align: center"
        if obj.obj_id == active:
            css.iloc[i, 1] = ACTIVE_STYLE
    return css


def table_key(user: UserSession) -> tuple:
    """Everything the table shows of a session (cells, colours, the active row): the table
    is sent again only when this changes."""
    return (tuple(map(tuple, rows(user))), tuple(o.color for o in user.objects), user.active_object)


def table_value(user: UserSession):
    """The table as the panel shows it: the cells, each object's colour as its number's
    background, the active object's row marked."""
    cells = rows(user)
    table = pd.DataFrame(cells, columns=COLUMNS)
    if not cells:
        return table
    objects = user.objects
    return table.style.apply(lambda t: _styles(objects, user.active_object, t), axis=None)
