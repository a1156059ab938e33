"""The package is usable without the web layer, and importing it does nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHECK = """
import os, sys
before = set(os.listdir(os.environ["SAM2WEB_DATA_DIR_PARENT"]))
import importlib, pkgutil, sam2web
for module in pkgutil.iter_modules(sam2web.__path__, "sam2web."):
    if module.name == "sam2web.ui":  # the page: the one part that imports gradio
        continue
    package = importlib.import_module(module.name)
    for sub in pkgutil.iter_modules(getattr(package, "__path__", []), module.name + "."):
        importlib.import_module(sub.name)
assert "sam2web.cli.main" in sys.modules and "sam2web.session.engine" in sys.modules
assert "gradio" not in sys.modules, "gradio was imported"
after = set(os.listdir(os.environ["SAM2WEB_DATA_DIR_PARENT"]))
assert before == after, after - before
print("ok")
"""


def test_engine_imports_no_gradio_and_creates_nothing(tmp_path):
    env = {
        "PATH": "/usr/bin:/bin",
        "SAM2WEB_DATA_DIR": str(tmp_path / "sessions"),
        "SAM2WEB_CACHE_DIR": str(tmp_path / "cache"),
        "SAM2WEB_DATA_DIR_PARENT": str(tmp_path),
        "HOME": str(tmp_path),
    }
    out = subprocess.run(
        [sys.executable, "-c", CHECK],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
    assert not (tmp_path / "sessions").exists() and not (tmp_path / "cache").exists()
