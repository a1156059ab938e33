"""SAM2WEB_COMPILE=on|vos is refused in one sentence where no C compiler is present
(PATH emptied here), before anything is built; off never needs one."""

from __future__ import annotations

import pytest

from sam2web.errors import CheckpointError
from sam2web.tracking import accel
from sam2web.tracking.checkpoints import get_spec
from sam2web.tracking.model import build_predictor


@pytest.fixture
def no_compiler(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: nothing to find
    monkeypatch.delenv("CC", raising=False)
    monkeypatch.delenv("CXX", raising=False)


def test_compile_is_refused_without_a_c_compiler(no_compiler, monkeypatch):
    assert accel.c_compiler() is None
    built = []
    import sam2.build_sam

    monkeypatch.setattr(
        sam2.build_sam, "build_sam2_video_predictor", lambda *a, **k: built.append(1)
    )
    with pytest.raises(CheckpointError) as refused:
        build_predictor(get_spec("sam2.1-tiny"), None, device="cpu", compile="on")
    message = refused.value.message if hasattr(refused.value, "message") else str(refused.value)
    assert "SAM2WEB_COMPILE=on needs a C compiler" in message and message.count(". ") == 0
    assert message.endswith("SAM2WEB_COMPILE=off.")
    with pytest.raises(CheckpointError, match="SAM2WEB_COMPILE=vos needs a C compiler"):
        accel.check_compile_possible("vos", "cuda")
    assert built == []
    # vos applies to CUDA only (ignored elsewhere), and off needs nothing.
    accel.check_compile_possible("vos", "cpu")
    accel.check_compile_possible("off", "cuda")


def test_a_compiler_on_path_is_found(tmp_path, monkeypatch):
    gcc = tmp_path / "gcc"
    gcc.write_text("#!/bin/sh\n")
    gcc.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("CC", raising=False)
    monkeypatch.delenv("CXX", raising=False)
    assert accel.c_compiler() == str(gcc)
    accel.check_compile_possible("on", "cpu")
