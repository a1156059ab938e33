"""The Apple GPU rules, with faked backends: one model thread for every device operation
(session starts included), SAM2WEB_CONCURRENCY above 1 refused in one sentence, MPS's
operator fallback switched on before torch is imported, and no MPS before macOS 14 (sam2
keeps its memory in bfloat16). Real MPS arithmetic needs a Mac."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import threading

import pytest
import torch

import sam2web
from sam2web.errors import CheckpointError
from sam2web.session import engine as engine_module
from sam2web.session.engine import DeviceSchedulers, Engine, check_concurrency
from sam2web.settings import Settings
from sam2web.tracking import model
from tests.conftest import ROOT


@pytest.fixture
def fake_mps(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)

    def install(mac_version: str) -> None:
        monkeypatch.setattr("platform.mac_ver", lambda: (mac_version, ("", "", ""), "arm64"))

    return install


def test_mps_needs_macos_14(fake_mps):
    fake_mps("14.2")
    assert model.choose_device("auto").type == "mps"
    assert model.choose_device("mps").type == "mps"
    fake_mps("13.6")
    assert model.choose_device("auto").type == "cpu"
    with pytest.raises(CheckpointError, match="from macOS 14 only; update macOS or set"):
        model.choose_device("mps")
    assert model.macos_has_mps_bf16("") and not model.macos_has_mps_bf16("12.7")


def test_concurrency_above_one_is_refused_on_mps():
    with pytest.raises(CheckpointError) as refused:
        check_concurrency("mps:0", 2)
    message = str(refused.value)
    assert message.startswith("SAM2WEB_CONCURRENCY is 2, but on an Apple GPU")
    assert message.endswith("set SAM2WEB_CONCURRENCY=1.") and message.count(". ") == 0
    check_concurrency("mps:0", 1)
    check_concurrency("cuda:0", 4)
    schedulers = DeviceSchedulers(dataclasses.replace(Settings.from_env({}), concurrency=2))
    try:
        with pytest.raises(CheckpointError, match="Apple GPU"):
            schedulers.get("mps:0")
        assert schedulers.get("cpu") is not None
    finally:
        schedulers.close()


def test_session_starts_run_on_the_model_thread_on_mps(monkeypatch, tmp_path):
    settings = dataclasses.replace(Settings.from_env({}), data_dir=tmp_path)
    engine = Engine(settings, gpu_jobs=False)
    threads = []

    def start(self, *args):
        threads.append(threading.current_thread().name)
        return "session"

    monkeypatch.setattr(engine_module, "_start", start)
    ws = engine.create_workspace()
    try:
        monkeypatch.setattr(Engine, "device", property(lambda self: torch.device("cpu")))
        assert engine.start_session(ws) == "session"
        monkeypatch.setattr(Engine, "device", property(lambda self: torch.device("mps")))
        assert engine.start_session(ws) == "session"
    finally:
        engine.close()
    caller = threading.current_thread().name
    assert threads[0] == caller
    assert threads[1] != caller and "model-mps:0" in threads[1]
    assert engine_module.model_thread_key("mps") == "mps:0"


def test_mps_fallback_is_set_on_macos_before_torch():
    assert sam2web.mps_fallback_wanted("darwin", {})
    assert sam2web.mps_fallback_wanted("darwin", {"SAM2WEB_DEVICE": "mps"})
    assert not sam2web.mps_fallback_wanted("darwin", {"SAM2WEB_DEVICE": "cpu"})
    assert not sam2web.mps_fallback_wanted("linux", {})
    assert not sam2web.mps_fallback_wanted("darwin", {"PYTORCH_ENABLE_MPS_FALLBACK": "0"})
    code = (
        "import os, sys; sys.platform = 'darwin'; import sam2web; "
        "print(os.environ.get('PYTORCH_ENABLE_MPS_FALLBACK'), 'torch' in sys.modules)"
    )
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert out.stdout.split() == ["1", "False"]
