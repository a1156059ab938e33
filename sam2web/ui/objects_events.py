"""What the objects panel does (:mod:`.objects_panel`), and its wiring.

Handlers follow :mod:`.handlers`: module-level functions taking the :class:`Context`, the
tab's session and the event's inputs, returning ``{component: value}``. The add, rename,
remove and select endpoints keep their names, inputs and outputs (``add_object``,
``rename_object``, ``remove_object``, ``select_object``, wired in :mod:`.wiring`); the
panel's table follows them, and every other change of the frame shown, with a private
refresh that sends the table only when what it shows changed (:func:`refresh_objects`:
playing the frames sends nothing while the objects stay as they were).
``set_object_shown`` is the API's show/hide endpoint.
"""

from __future__ import annotations

import gradio as gr

from . import handlers as h
from .guard import friendly
from .handlers import Context, Update, view
from .objects_panel import SHOW_COLUMN, table_key, table_value
from .user import UserSession


def show_objects(ctx: Context, user: UserSession) -> Update:
    """The panel's table as the session stands (hidden while there is no object)."""
    return {ctx.page.objects.table: gr.update(value=table_value(user), visible=bool(user.objects))}


def refresh_objects(ctx: Context, user: UserSession, sent) -> Update:
    """The table when it shows something else than ``sent`` (what this tab's table last
    received), with the controls that choose, rename and remove an object shown while there
    is one; else nothing."""
    o, key = ctx.page.objects, table_key(user)
    if sent is not None and tuple(sent) == key:
        return {o.table: gr.skip(), o.sent: gr.skip(), o.choice: gr.skip(), o.edit: gr.skip()}
    some = bool(user.objects)
    return {
        **show_objects(ctx, user),
        o.sent: key,
        o.choice: gr.update(visible=some),
        o.edit: gr.update(visible=some),
    }


def _with_table(ctx: Context, user: UserSession, frame, message: str = "") -> Update:
    return {**view(ctx, user, frame, message), **show_objects(ctx, user)}


def _row_object(user: UserSession, evt: gr.SelectData) -> int | None:
    """The object of the clicked row: its number in the row's first cell."""
    row = evt.row_value if isinstance(evt.row_value, list) else None
    if row:
        try:
            return int(str(row[0]).strip())
        except ValueError:
            pass
    index = evt.index[0] if isinstance(evt.index, (list, tuple)) else None
    objects = user.objects
    if isinstance(index, int) and 0 <= index < len(objects):
        return objects[index].obj_id
    return None


@friendly
def pick_object(ctx: Context, user: UserSession, frame, evt: gr.SelectData) -> Update:
    """A click in the table: on the *frame view* cell it shows or hides that object, on any
    other cell it makes the object the active one."""
    obj_id = _row_object(user, evt)
    sent = {ctx.page.objects.sent: table_key(user)}
    if obj_id is None or obj_id not in {o.obj_id for o in user.objects}:
        return {**show_objects(ctx, user), **sent}
    column = evt.index[1] if isinstance(evt.index, (list, tuple)) else None
    if column == SHOW_COLUMN:
        shown = set_object_shown(ctx, user, obj_id, obj_id in user.hidden_objects, frame)
        return {**shown, ctx.page.objects.sent: table_key(user)}
    obj = user.select_object(obj_id)
    message = f"{obj.name} is the active object; clicks go to it."
    return {**_with_table(ctx, user, frame, message), ctx.page.objects.sent: table_key(user)}


@friendly
def set_object_shown(ctx: Context, user: UserSession, object_id, shown, frame) -> Update:
    """Show or hide an object on this page's frame view (the overlay video and every
    download still show it)."""
    if object_id is None:
        raise gr.Error("Choose an object to show or hide.", print_exception=False)
    obj = user.show_object(int(object_id), bool(shown))
    message = (
        f"{obj.name} is shown on the frame."
        if shown
        else f"{obj.name} is hidden on the frame here (still in the video and downloads)."
    )
    return _with_table(ctx, user, frame, message)


PRIVATE = {"api_visibility": "private", "concurrency_limit": None}


def wire(ctx: Context, changed: list) -> None:
    """Connect the table; ``changed`` are the events of the object controls (add, rename,
    remove, select, reset), after which the table follows."""
    p, o = ctx.page, ctx.page.objects
    outputs = [p.frame_view, p.status, p.active, o.table]
    refresh = h.bind(refresh_objects, ctx)
    table = [o.table, o.sent, o.choice, o.edit]
    for event in changed:
        event.then(refresh, [p.state, o.sent], table, **PRIVATE)
    # Any other action that changes what the frame shows (a click, tracking, a fix, a
    # label image, a new video, a reload) may change where the objects are.
    p.frame_view.change(
        refresh,
        [p.state, o.sent],
        table,
        trigger_mode="always_last",
        show_progress="hidden",
        **PRIVATE,
    )
    o.table.select(
        h.bind(pick_object, ctx), [p.state, p.frame_slider], [*outputs, o.sent], **PRIVATE
    )
    shown = o.api_btn.click(
        h.bind(set_object_shown, ctx),
        [p.state, o.api_object, o.api_shown, p.frame_slider],
        outputs,
        api_name="set_object_shown",
        concurrency_limit=None,
    )
    shown.then(refresh, [p.state, o.sent], table, **PRIVATE)  # the endpoint keeps its outputs
