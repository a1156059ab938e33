"""The Docker image built from the project's Dockerfile, started as its CMD starts it, and
used: a clip uploaded, clicked, tracked and exported through the app inside the image.

The README's ``docker build`` and ``docker run`` lines are the ones run here, through buildah
(tests/imagebuild.py): only build arguments for how this machine reaches packages are added,
and the published port becomes a port on 127.0.0.1 (the container shares the network).
"""

from __future__ import annotations

import contextlib
import re
import shlex
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from sam2web.outputs.maskfiles import read_coco_rle
from tests import imagebuild, synth
from tests.appserver import free_port, start_app, wait_until
from tests.masks import assert_nontrivial

pytestmark = [pytest.mark.docker, pytest.mark.timeout(2400)]

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402

README = imagebuild.ROOT / "README.md"
# The settings the app outside the image runs with in tests/appserver.py, passed to the
# container as `-e` options would be, so both runs compute the same session.
SAME_AS_OUTSIDE = {
    "SAM2WEB_RESOLUTION": "256",
    "GRADIO_ANALYTICS_ENABLED": "False",
    "TQDM_DISABLE": "1",
}
# Files buildah itself puts into a container it runs a command in.
RUNTIME_FILES = {"/etc/hosts", "/etc/resolv.conf", "/etc/hostname", "/run/.containerenv", "/run"}


def readme_docker_lines() -> dict[str, list[str]]:
    """The README's Docker section: its first `docker build` line and the `docker run`
    line that mounts a checkpoint, continuation lines joined."""
    section = README.read_text().split("\n## Docker\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, re.DOTALL)
    lines = [
        shlex.split(cmd) for block in blocks for cmd in block.replace("\\\n", " ").splitlines()
    ]
    build = next(t for t in lines if t[:2] == ["docker", "build"])
    run = next(
        t
        for t in lines
        if t[:2] == ["docker", "run"] and any("SAM2WEB_CHECKPOINT=" in x for x in t)
    )
    return {"build": build, "run": run}


@pytest.fixture(scope="module")
def image():
    missing = imagebuild.tools_missing()
    if missing:
        pytest.fail(f"{', '.join(missing)} missing: run bash scripts/setup.sh --docker")
    built = imagebuild.build_image(readme_docker_lines()["build"])
    print(f"\nimage built in {built.seconds:.0f} s")
    return built


def test_the_image_keeps_the_dockerfiles_healthcheck_user_and_command(image):
    config = imagebuild.image_config(image.tag)
    assert config["Cmd"] == ["python", "app.py"]
    assert config["User"] == "1000:1000"
    assert config["WorkingDir"] == "/app"
    assert imagebuild.healthcheck_argv(config)[:2] == ["python", "-c"]
    env = dict(e.split("=", 1) for e in config["Env"])
    assert env["SAM2WEB_DATA_DIR"] == "/data/sessions"
    assert env["MPLCONFIGDIR"].startswith("/tmp/")
    # Only build arguments differed: nothing of this machine's pip set-up is in the image.
    assert not {"PIP_INDEX_URL", "PIP_FIND_LINKS", "PIP_CERT"} & set(env)


def track_and_export(url: str, clip: Path) -> list[Path]:
    """Upload, one object with a positive and a negative click, track, export (the files)."""
    client = Client(url, verbose=False)
    client.predict(handle_file(str(clip)), api_name="/upload")
    client.predict("disc", 0, api_name="/add_object")
    client.predict(0, 1, 40, 60, True, api_name="/add_point")
    client.predict(0, 1, 75, 62, False, api_name="/add_point")
    result = client.predict(
        "forward", "", "", 0, 0.5, True, True, 0, "", "mm", "", api_name="/propagate"
    )
    assert "Tracked 6 frames" in result[1], result[1]
    return [Path(f) for f in result[5]]


def by_name(files: list[Path], name: str) -> Path:
    (match,) = [f for f in files if f.name == name]
    return match


def listener_pid(port: int) -> int | None:
    import psutil

    for conn in psutil.net_connections(kind="tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr.port == port and conn.pid:
            return conn.pid
    return None


def stop(process: subprocess.Popen, pid: int | None) -> None:
    """Stop the app inside (SIGTERM, then SIGKILL) and the buildah run that started it."""
    import psutil

    procs = [psutil.Process(process.pid)]
    with contextlib.suppress(psutil.NoSuchProcess):
        procs += procs[0].children(recursive=True)
    if pid is not None:
        with contextlib.suppress(psutil.NoSuchProcess):
            psutil.Process(pid).send_signal(signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=30)
    _, alive = psutil.wait_procs([p for p in procs if p.is_running()], timeout=10)
    for p in alive:
        p.kill()
    psutil.wait_procs(alive, timeout=10)


def test_the_app_inside_the_image_tracks_like_the_app_outside(image, tmp_path, random_checkpoint):
    import psutil

    config = imagebuild.image_config(image.tag)
    docker_run = imagebuild.parse_run(readme_docker_lines()["run"])
    assert docker_run.image == image.tag
    # The README's checkpoint folder, with the random-weight checkpoint under the name it uses.
    volumes = [v.replace("$PWD", str(tmp_path)) for v in docker_run.volumes]
    checkpoint_in_image = Path(docker_run.env["SAM2WEB_CHECKPOINT"])
    (host_dir, mount, *_) = volumes[0].split(":")
    assert checkpoint_in_image.parent == Path(mount)
    Path(host_dir).mkdir(mode=0o755)
    shutil.copy(random_checkpoint, Path(host_dir) / checkpoint_in_image.name)
    (Path(host_dir) / checkpoint_in_image.name).chmod(0o644)  # readable by uid 1000

    # -p 7860:7860 becomes a free port on 127.0.0.1: the container shares this network.
    port = free_port()
    env = {**docker_run.env, **SAME_AS_OUTSIDE, "SAM2WEB_HOST": "127.0.0.1"}
    env["SAM2WEB_PORT"] = str(port)
    container = imagebuild.Container.create(image.tag, volumes, env)
    log = tmp_path / "server.log"
    process = None
    pid = None
    try:
        container.run(["touch", "/tmp/.before-start"], user="0:0")
        started = time.monotonic()
        process = container.start(config["Cmd"], user=config["User"], log=log)
        health = container.command(imagebuild.healthcheck_argv(config))

        def healthy() -> bool:
            if process.poll() is not None:
                raise AssertionError("the app exited at start:\n" + log.read_text())
            return subprocess.run(health, capture_output=True, timeout=30).returncode == 0

        assert wait_until(healthy, timeout=180, step=1), log.read_text()
        start_s = time.monotonic() - started
        print(f"\napp answered its HEALTHCHECK {start_s:.1f} s after start")
        pid = listener_pid(port)
        assert pid is not None
        assert psutil.Process(pid).uids().real == 1000
        assert psutil.Process(pid).uids().effective == 1000

        clip = synth.write_video(tmp_path / "discs.mp4", synth.make_frames(6, 120, 160), fps=6)
        inside = track_and_export(f"http://127.0.0.1:{port}/", clip)
    finally:
        if process is not None:
            stop(process, pid)
    try:
        written = container.run(
            [
                "find",
                "/",
                "(",
                *("-path", "/proc", "-o", "-path", "/sys", "-o", "-path", "/dev"),
                *("-o", "-path", mount, ")", "-prune", "-o", "-newer", "/tmp/.before-start"),
                "-print",
            ],
            user="0:0",
        ).split()
    finally:
        container.remove()
    outside_writes = [
        w
        for w in written
        if not w.startswith(("/data/", "/tmp/")) and w not in {"/data", "/tmp", *RUNTIME_FILES}
    ]
    assert not outside_writes, f"the app wrote outside /data and /tmp: {outside_writes}"
    assert any(w.startswith("/data/sessions/") for w in written), written

    server = start_app(tmp_path / "outside", random_checkpoint)
    try:
        outside = track_and_export(server.url, clip)
    finally:
        server.stop()
    assert {f.name for f in inside} == {f.name for f in outside}
    masks_in = read_coco_rle(by_name(inside, "sam2web_masks_coco.json"))
    masks_out = read_coco_rle(by_name(outside, "sam2web_masks_coco.json"))
    assert masks_in.keys() == masks_out.keys()
    assert len(masks_in) == 6
    assert_nontrivial(masks_in.values())
    for key in masks_out:
        assert np.array_equal(masks_in[key], masks_out[key]), key
    for table in ("sam2web_tracks.csv", "sam2web_summary.csv"):
        assert by_name(inside, table).read_text() == by_name(outside, table).read_text()
