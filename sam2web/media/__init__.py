"""Layer 1, media in: every upload (videos, GIFs, image zips, TIFF stacks, label images)
becomes a folder of frames and a ``video.json``, or is refused in one sentence.

:mod:`.ingest` (the entry point) tells the kind of file and hands it to its family:
:mod:`.video` (video containers and GIFs), :mod:`.images` (single images and zips) or
:mod:`.tiff` (TIFF stacks and microscopy channels and axes); image sequences share
:mod:`.sequence` and :mod:`.stretch` (conversion to 8-bit). :mod:`.limits` checks uploads
against the server's limits, :mod:`.folder` writes and reads the folder of frames, and
:mod:`.labels` reads label images.
"""
