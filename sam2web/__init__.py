"""sam2web: click-to-track video segmentation with SAM2, in the browser or from Python.

Importing this package is cheap; the model, the web UI and the heavy libraries are imported
by the modules that need them. Its one side effect: on macOS, where the model may run on the
Apple GPU (SAM2WEB_DEVICE auto or mps), PYTORCH_ENABLE_MPS_FALLBACK=1 is set unless already
set, before torch is imported, so that operators MPS lacks run on the CPU instead of failing
(as sam2's own notebooks do).
"""

import os as _os
import sys as _sys


def mps_fallback_wanted(platform: str, env) -> bool:
    """Whether PYTORCH_ENABLE_MPS_FALLBACK should be set: on macOS (``darwin``) when
    SAM2WEB_DEVICE is auto or mps and the variable is not set already."""
    device = (env.get("SAM2WEB_DEVICE", "") or "auto").strip().lower()
    return (
        platform == "darwin"
        and device in ("auto", "mps")
        and "PYTORCH_ENABLE_MPS_FALLBACK" not in env
    )


if mps_fallback_wanted(_sys.platform, _os.environ):
    _os.environ["PYTORCH_ENABLE_MPS_FALLBACK"] = "1"

__version__ = "0.1.0"
