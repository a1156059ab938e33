"""sam2web: click-to-track video segmentation with SAM2, in the browser or from Python.

Importing this package is cheap and has no side effects; the model, the web UI and the
heavy libraries are imported by the modules that need them.
"""

__version__ = "0.1.0"
