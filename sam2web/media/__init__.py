"""Layer 1, media in: every upload (videos, GIFs, image zips, TIFF stacks, label images)
becomes a folder of frames and a ``video.json``, or is refused in one sentence."""
