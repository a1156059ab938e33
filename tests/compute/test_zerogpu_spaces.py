"""The app in ZeroGPU mode with the real ``spaces`` package, on this machine's CPU.

The app runs from .venv-zerogpu (scripts/setup-zerogpu.sh: a CUDA build of torch, which
``spaces`` needs at import and which runs on a CPU, and ``spaces`` itself) with
SPACES_ZERO_GPU set, as on a Space, against the local stand-in for the device service
(tests/zerodevice.py). A visitor uploads, clicks (the click model is built and answers in
the web process) and tracks: Track goes through ``spaces.GPU``, which asks the service for a
GPU with the visitor's token and a duration that fits, forks its worker and lets the service
allow it; without a GPU the worker's CUDA initialisation fails there, and the visitor reads
one sentence while masks and history are as before.

Every wait is bounded; on failure the app's log tail is printed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sam2web.compute import gpuplan
from tests import synth
from tests.appserver import ROOT, start_app
from tests.zerodevice import ZeroDevice, visitor_token

ZEROGPU_PYTHON = ROOT / ".venv-zerogpu" / "bin" / "python"

pytestmark = pytest.mark.skipif(
    not ZEROGPU_PYTHON.exists(),
    reason="no .venv-zerogpu (run scripts/setup-zerogpu.sh, as scripts/run-tests.sh does)",
)
gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402

TRACK = ("forward", "", "", 0, 0.5, True, True, 0, "", "mm", "")


def _tail(path: Path, lines: int = 60) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as err:
        return f"(no log: {err})"


@pytest.fixture
def zerogpu_app(tmp_path, random_checkpoint):
    device = ZeroDevice().start()
    cgroup = tmp_path / "cgroup"
    cgroup.write_text("0::/sam2web-test\n")
    workdir = tmp_path / "app"
    try:
        app = start_app(
            workdir,
            random_checkpoint,
            python=ZEROGPU_PYTHON,
            timeout=180,
            extra_env={
                "SPACES_ZERO_GPU": "true",
                "SPACES_ZERO_DEVICE_API_URL": device.url,
                "ZEROGPU_PROC_SELF_CGROUP_PATH": str(cgroup),
                "SAM2WEB_DEVICE": "auto",
            },
        )
    except RuntimeError as err:
        device.stop()
        pytest.fail(f"the ZeroGPU app did not start: {str(err)[-4000:]}")
    try:
        yield app, device
    except BaseException:
        print("---- the app's log (tail) ----\n" + _tail(app.log_path))
        raise
    finally:
        app.stop()
        device.stop()


def test_upload_click_and_track_through_spaces_gpu(zerogpu_app, tmp_path):
    app, device = zerogpu_app
    token = visitor_token("visitor")
    # httpx timeouts bound every call; the app's handlers end on their own.
    client = Client(
        app.url, verbose=False, headers={"X-IP-Token": token}, httpx_kwargs={"timeout": 240}
    )
    assert device.of("/startup-report"), "spaces did not report the app's start"
    clip = synth.write_video(tmp_path / "c.mp4", synth.make_frames(6, 120, 160), fps=6)
    client.predict(handle_file(str(clip)), api_name="/upload")
    client.predict("disc", 0, api_name="/add_object")
    # The click model is built in a handler thread of the web process, where spaces makes
    # torch.cuda.is_available() answer True and CUDA's initialisation raise.
    client.predict(0, 1, 40, 60, True, api_name="/add_point")
    masks_before = sorted((app.data_dir).rglob("*.npz"))

    with pytest.raises(Exception) as refused:
        client.predict(*TRACK, api_name="/propagate")
    message = str(refused.value)
    (schedule,) = device.of("/schedule")
    # The visitor's identity reached ZeroGPU: the job's thread carried the request.
    assert schedule.params.get("token") == token, _tail(app.log_path)
    seconds = int(schedule.params["durationSeconds"])
    assert gpuplan.START_S["tiny"] <= seconds <= gpuplan.JOB_CAP_S
    # The forked worker asked to be allowed (spaces' worker_init), then the call was
    # released as failed: this machine has no GPU for its CUDA initialisation.
    (allow,) = device.of("/allow")
    assert allow.params["allowToken"] == "allow-1" and int(allow.params["pid"]) != app.process.pid
    assert [c.params.get("fail") for c in device.of("/release")] == ["true"]
    assert "GPU" in message and "nothing changed" in message, message
    assert sorted(app.data_dir.rglob("*.npz")) == masks_before
    # The session still answers clicks after the refusal.
    client.predict(0, 1, 75, 62, False, api_name="/add_point")


def test_a_quota_refusal_is_one_sentence(zerogpu_app, tmp_path):
    app, device = zerogpu_app
    device.refuse_left = 5
    client = Client(
        app.url,
        verbose=False,
        headers={"X-IP-Token": visitor_token("v")},
        httpx_kwargs={"timeout": 240},
    )
    clip = synth.write_video(tmp_path / "c.mp4", synth.make_frames(4, 120, 160), fps=4)
    client.predict(handle_file(str(clip)), api_name="/upload")
    client.predict("disc", 0, api_name="/add_object")
    client.predict(0, 1, 40, 60, True, api_name="/add_point")
    with pytest.raises(Exception, match="quota") as refused:
        client.predict(*TRACK, api_name="/propagate")
    assert "Track again later" in str(refused.value)
    assert not device.of("/allow")  # refused before any worker started
