"""The brush's image editor: every image the page sends it is measured before it is decoded.

Gradio's :class:`gr.ImageEditor` turns each image of its value (the background, the painted
layer, the composite) into pixels before a handler sees it. :func:`brush_editor` reads the
size each image's header claims first (PIL opens an image without decoding it) and refuses
one larger than the largest frame this server takes, in one sentence; the handler then
compares the layer with the frame itself
(:func:`sam2web.session.corrections.brush_mask`).
"""

from __future__ import annotations

import io
import warnings

import gradio as gr
import PIL.Image


def brush_editor(max_pixels: int, **options) -> gr.ImageEditor:
    """A :class:`gr.ImageEditor` (``options`` as Gradio takes them) that refuses an image
    claiming more than ``max_pixels`` pixels before decoding it. The check wraps the one
    method through which the editor decodes each image; it is set on this instance, as a
    subclass of a Gradio component would make Gradio write a stub file beside this module
    on import."""
    editor = gr.ImageEditor(**options)
    decode = editor.convert_and_format_image

    def checked(file, flatten_on_white: bool = False):
        if file is not None:
            check_claimed_size(file, max_pixels)
        return decode(file, flatten_on_white)

    editor.convert_and_format_image = checked  # type: ignore[method-assign]
    return editor


def check_claimed_size(file, max_pixels: int) -> None:
    """A :class:`gr.Error` when the image ``file`` (Gradio's file record, or bytes) is not
    an image or claims more than ``max_pixels`` pixels; nothing of it is decoded."""
    source = io.BytesIO(file) if isinstance(file, (bytes, bytearray, memoryview)) else file.path
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the size is judged here, not by PIL's warning
            with PIL.Image.open(source) as im:
                width, height = im.size
    except (OSError, ValueError, PIL.Image.DecompressionBombError):
        raise gr.Error(
            "The painted layer is not an image; load the frame into the brush and paint again.",
            print_exception=False,
        ) from None
    if width * height > max_pixels:
        raise gr.Error(
            f"The painted layer is {width}x{height} pixels, more than the {max_pixels:,} "
            "pixels of the largest frame this server takes; load the frame into the brush "
            "and paint on it.",
            print_exception=False,
        )
